package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/kontakt-se/kontakt/pkg/blindindex"
)

// EnvMasterKey names the environment variable that holds the master key,
// base64-encoded. It takes precedence over the master key file, so that a
// secret manager that injects environment variables can override a file.
const EnvMasterKey = "KONTAKT_MASTER_KEY"

// MasterKeySize is the size of a master key in bytes (AES-256).
const MasterKeySize = 32

// maxKeyFileSize bounds how much of a key file is read; a key file is a few
// dozen bytes, and anything much larger is the wrong file.
const maxKeyFileSize = 1024

// wrapPurpose is the DeriveKey purpose of the key that wraps data keys. The
// master key itself never encrypts anything, so that it can also be the
// root of other derived keys (the blind-index key) without those uses
// interfering with each other.
const wrapPurpose = "kontakt/seal/wrap/v1"

// MasterKey is the root secret that wraps every data key. It is loaded once
// at start-up (LoadMasterKey) and never leaves the process: it cannot be
// printed, logged or marshalled, and the key store only ever sees data keys
// wrapped with a key derived from it. Losing it makes all sealed data
// unreadable, so it must be backed up outside the system.
//
// The zero MasterKey is unusable; NewSealer refuses it.
type MasterKey struct {
	// m is a pointer so that printing a struct that contains a MasterKey
	// shows an address, never the key bytes.
	m *masterKey
}

type masterKey struct {
	key     []byte
	id      string
	idRaw   [masterKeyIDSize]byte
	origin  string
	created bool
	wrap    cipher.AEAD
}

// NewMasterKey makes a MasterKey from 32 bytes of key material (copied).
// Most callers want LoadMasterKey; this is for tests and for callers that
// fetch the key from elsewhere.
func NewMasterKey(key []byte) (MasterKey, error) {
	return newMasterKey(key, "given by the caller", false)
}

func newMasterKey(key []byte, origin string, created bool) (MasterKey, error) {
	if len(key) != MasterKeySize {
		return MasterKey{}, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidMasterKey, len(key), MasterKeySize)
	}
	k := append([]byte(nil), key...)
	sum := sha256.Sum256(k)
	block, err := aes.NewCipher(blindindex.DeriveKey(k, wrapPurpose))
	if err != nil {
		return MasterKey{}, fmt.Errorf("seal: wrapping cipher: %w", err)
	}
	wrap, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return MasterKey{}, fmt.Errorf("seal: wrapping cipher: %w", err)
	}
	mk := &masterKey{
		key:     k,
		id:      hex.EncodeToString(sum[:masterKeyIDSize]),
		origin:  origin,
		created: created,
		wrap:    wrap,
	}
	copy(mk.idRaw[:], sum[:masterKeyIDSize])
	return MasterKey{m: mk}, nil
}

// masterKeyIDSize is how many bytes of the master key's SHA-256 form its id.
const masterKeyIDSize = 8

// IsZero reports whether k is the zero MasterKey (no key loaded).
func (k MasterKey) IsZero() bool { return k.m == nil }

// ID returns the master key's id: the first 8 bytes of its SHA-256, in hex.
// It is stored with every wrapped data key so that a process started with
// the wrong master key reports ErrWrongMasterKey instead of a baffling
// authentication failure, and it is safe to log.
func (k MasterKey) ID() string {
	if k.m == nil {
		return ""
	}
	return k.m.id
}

// Origin says where the key came from (the environment, a file, or a file
// created just now), for the start-up log. It contains no key material.
func (k MasterKey) Origin() string {
	if k.m == nil {
		return ""
	}
	return k.m.origin
}

// Created reports whether LoadMasterKey generated this key just now
// (development mode only). The caller should say so loudly: data sealed
// with it is lost if the file is lost.
func (k MasterKey) Created() bool { return k.m != nil && k.m.created }

// DeriveKey derives an independent 32-byte key for purpose (for example
// blindindex.KeyPurpose) with HKDF-SHA256, so that other components get
// their own keys without ever holding the master key. The purpose of the
// data-key wrapping key is reserved and refused.
func (k MasterKey) DeriveKey(purpose string) ([]byte, error) {
	if k.m == nil {
		return nil, fmt.Errorf("%w: no master key loaded", ErrInvalidMasterKey)
	}
	if strings.TrimSpace(purpose) == "" {
		return nil, errors.New("seal: DeriveKey: empty purpose")
	}
	if purpose == wrapPurpose {
		return nil, fmt.Errorf("seal: DeriveKey: purpose %q is reserved for wrapping data keys", purpose)
	}
	return blindindex.DeriveKey(k.m.key, purpose), nil
}

// String describes the key by its id only.
func (k MasterKey) String() string { return "seal.MasterKey{id: " + k.ID() + "}" }

// Format implements fmt.Formatter so that every verb (%v, %+v, %#v, %x,
// %d, ...) prints String and never the key bytes.
func (k MasterKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// LogValue implements slog.LogValuer so that logging a MasterKey logs only
// its id.
func (k MasterKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// LoadMasterKey finds the master key at start-up. In order:
//
//  1. The environment variable KONTAKT_MASTER_KEY (base64 of 32 bytes), read
//     through env (pass os.LookupEnv; nil means no environment). Set but
//     empty is an error, not "unset", because it is a broken deployment.
//  2. The file at path: 32 raw bytes, or base64 of them. On Unix the file
//     must not be accessible by group or others (chmod 600 or 400; for a
//     Kubernetes secret volume set defaultMode 0400), because anyone who
//     can read it can read every case's personal data.
//  3. In development mode (dev) only, when the file does not exist: a new
//     random key is written to path with mode 0600 (parent directories
//     0700), and Created and Origin say so for the caller to log.
//
// In production mode a missing key fails with ErrNoMasterKey, whose
// message tells the operator what to set. Errors never contain key
// material.
func LoadMasterKey(path string, env func(string) (string, bool), dev bool) (MasterKey, error) {
	if env != nil {
		if v, ok := env(EnvMasterKey); ok {
			key, err := decodeBase64Key(strings.TrimSpace(v))
			if err != nil {
				return MasterKey{}, fmt.Errorf("%w: %s: %w", ErrInvalidMasterKey, EnvMasterKey, err)
			}
			return newMasterKey(key, "environment variable "+EnvMasterKey, false)
		}
	}
	if path == "" {
		if dev {
			return MasterKey{}, fmt.Errorf("%w (development mode creates one only when master_key_file names a path)", ErrNoMasterKey)
		}
		return MasterKey{}, ErrNoMasterKey
	}
	key, err := readKeyFile(path)
	switch {
	case err == nil:
		return newMasterKey(key, "file "+path, false)
	case !errors.Is(err, fs.ErrNotExist):
		return MasterKey{}, err
	case !dev:
		return MasterKey{}, fmt.Errorf("%w (master_key_file %s does not exist)", ErrNoMasterKey, path)
	}
	key, created, err := createKeyFile(path)
	if err != nil {
		return MasterKey{}, err
	}
	if !created {
		// Another process created it first; use that one.
		return newMasterKey(key, "file "+path, false)
	}
	return newMasterKey(key, "created file "+path+
		" (development mode; all sealed data is lost if this file is lost)", true)
}

// readKeyFile reads and checks a master key file. The permission check is
// made on the opened file, so the file cannot be swapped in between.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("seal: master key file: %w", err)
	}
	defer func() { _ = f.Close() }()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("seal: master key file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: master key file %s is not a regular file", ErrInvalidMasterKey, path)
	}
	// Windows has no Unix permission bits; there the file's ACL is the
	// operator's responsibility.
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: master key file %s has mode %04o: group and others must have no access (chmod 600, or defaultMode 0400 for a Kubernetes secret volume)",
			ErrInvalidMasterKey, path, info.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("seal: master key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("%w: master key file %s is larger than %d bytes", ErrInvalidMasterKey, path, maxKeyFileSize)
	}
	if len(data) == MasterKeySize {
		return data, nil
	}
	key, err := decodeBase64Key(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: master key file %s: want 32 raw bytes or their base64: %w", ErrInvalidMasterKey, path, err)
	}
	return key, nil
}

// decodeBase64Key decodes base64 in any of the usual alphabets, with or
// without padding, and checks the length. Its errors say what is wrong but
// never repeat the input.
func decodeBase64Key(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		key, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(key) != MasterKeySize {
			return nil, fmt.Errorf("decodes to %d bytes, want %d", len(key), MasterKeySize)
		}
		return key, nil
	}
	return nil, errors.New("not valid base64")
}

// createKeyFile writes a new random key to path unless the file exists,
// in which case it returns the existing key and created == false (two
// processes starting at once in development mode then share one key).
func createKeyFile(path string) (key []byte, created bool, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("seal: create master key file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		key, err := readKeyFile(path)
		return key, false, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("seal: create master key file: %w", err)
	}
	key = make([]byte, MasterKeySize)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (it crashes the program instead).
	_, werr := io.WriteString(f, base64.StdEncoding.EncodeToString(key)+"\n")
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return nil, false, fmt.Errorf("seal: write master key file %s: %w", path, werr)
	}
	return key, true, nil
}
