package natsserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"
)

// Names of the files LoadOrCreateCredentials keeps in its directory.
const (
	// ServiceSeedFile holds the seed of the service user: every right in
	// the service account. kontakt connects with it, and so may an
	// operator (nats --nkey) who needs to look into the store.
	ServiceSeedFile = "service.nk"
	// AnalystSeedFile holds the seed of the analyst user, who may only
	// read the statistics stream. It is the file an analyst is given.
	AnalystSeedFile = "analyst.nk"
	// AnalystContextFile is a nats CLI context (nats --context FILE) with
	// the server's URL and the analyst's seed file, rewritten at every
	// start so that it names the address the server listens on.
	AnalystContextFile = "analyst.json"
)

// ErrCredentialsExposed is returned when a credentials file or its
// directory can be read or replaced by other users. Such a key may have
// been copied, so kontakt refuses to start rather than go on with it.
var ErrCredentialsExposed = errors.New("natsserver: NATS credentials are accessible to other users")

// Credentials are the keys of the users that may connect to an embedded
// server: the service user, whose key the process holds, and the analyst
// user, of whom the server needs only the public key.
type Credentials struct {
	// Dir is the absolute directory that holds the seed files.
	Dir string
	// Service is the service user's key pair.
	Service nkeys.KeyPair
	// AnalystPublicKey is the analyst user's public key.
	AnalystPublicKey string
}

// ServiceSeedPath is the file with the service user's seed.
func (c *Credentials) ServiceSeedPath() string { return filepath.Join(c.Dir, ServiceSeedFile) }

// AnalystSeedPath is the file with the analyst user's seed.
func (c *Credentials) AnalystSeedPath() string { return filepath.Join(c.Dir, AnalystSeedFile) }

// AnalystContextPath is the nats CLI context file for analysts.
func (c *Credentials) AnalystContextPath() string { return filepath.Join(c.Dir, AnalystContextFile) }

// LoadOrCreateCredentials reads the service and analyst keys from dir,
// creating the directory (mode 0700) and any missing key (a new seed in a
// file of mode 0600) first. Deleting a seed file and restarting is
// therefore how a key is replaced. It refuses, with ErrCredentialsExposed,
// a seed file that other users may read or a directory they may write:
// chmod does not undo a copy that may have been taken, so the operator
// decides (restrict the mode, or delete the file to get a new key).
//
// NATS nkeys rather than passwords: the server holds only public keys and
// a client proves that it has the seed by signing a nonce, so no secret
// crosses the (plain-text) client connection, and the nats CLI reads the
// same seed file with --nkey.
func LoadOrCreateCredentials(dir string) (*Credentials, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("natsserver: credentials directory %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("natsserver: cannot create credentials directory %q: %w", abs, err)
	}
	info, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("natsserver: credentials directory %q: %w", abs, err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("natsserver: credentials directory %q is not a directory", abs)
	}
	if perm := info.Mode().Perm(); perm&0o022 != 0 {
		return nil, fmt.Errorf("%w: directory %q has mode %04o, so other users could replace a key; run chmod 700 on it", ErrCredentialsExposed, abs, perm)
	}
	c := &Credentials{Dir: abs}
	if c.Service, err = loadOrCreateSeed(c.ServiceSeedPath()); err != nil {
		return nil, err
	}
	analyst, err := loadOrCreateSeed(c.AnalystSeedPath())
	if err != nil {
		return nil, err
	}
	defer analyst.Wipe()
	if c.AnalystPublicKey, err = analyst.PublicKey(); err != nil {
		return nil, fmt.Errorf("natsserver: analyst key in %q: %w", c.AnalystSeedPath(), err)
	}
	return c, nil
}

// loadOrCreateSeed reads the user seed in path, or creates the file with a
// new one when there is none.
func loadOrCreateSeed(path string) (nkeys.KeyPair, error) {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createSeed(path)
	}
	if err != nil {
		return nil, fmt.Errorf("natsserver: credentials file %q: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("natsserver: credentials file %q is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %q has mode %04o; run chmod 600 on it, or delete it and restart to make a new key (then hand out the new file)", ErrCredentialsExposed, path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("natsserver: credentials file %q: %w", path, err)
	}
	defer wipe(data)
	kp, err := nkeys.FromSeed(bytes.TrimSpace(data))
	if err != nil {
		// The error of nkeys never repeats the seed.
		return nil, fmt.Errorf("natsserver: credentials file %q does not hold an nkey seed: %w", path, err)
	}
	if pub, err := kp.PublicKey(); err != nil || !nkeys.IsValidPublicUserKey(pub) {
		kp.Wipe()
		return nil, fmt.Errorf("natsserver: credentials file %q does not hold a user nkey seed", path)
	}
	return kp, nil
}

// createSeed makes a new user key and writes its seed to a new file that
// only the owner may read; O_EXCL keeps a file that appeared meanwhile.
func createSeed(path string) (nkeys.KeyPair, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("natsserver: create a user key: %w", err)
	}
	// Seed returns the key pair's own bytes: the copy with the newline is
	// what is wiped.
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("natsserver: create a user key: %w", err)
	}
	line := append(append(make([]byte, 0, len(seed)+1), seed...), '\n')
	defer wipe(line)
	if err := writeNewFile(path, line); err != nil {
		kp.Wipe()
		return nil, err
	}
	return kp, nil
}

// writeNewFile writes data to a file that must not exist yet, with mode
// 0600, and syncs file and directory so that a key handed out survives a
// power cut.
func writeNewFile(path string, data []byte) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("natsserver: create credentials file %q: %w", path, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("natsserver: write credentials file %q: %w", path, cerr)
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("natsserver: write credentials file %q: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("natsserver: write credentials file %q: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("natsserver: sync directory %q: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("natsserver: sync directory %q: %w", dir, err)
	}
	return nil
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 'x'
	}
}

// natsContext is the part of a nats CLI context file kontakt writes.
type natsContext struct {
	Description string `json:"description"`
	URL         string `json:"url"`
	NKey        string `json:"nkey"`
}

// WriteAnalystContext writes the analyst's nats CLI context: the server's
// URL and the path of the analyst's seed file (not the seed), so that
// `nats --context FILE sub 'kontakt.stats.>' --stream KONTAKT_STATS --all`
// works as written. It replaces the file atomically, mode 0600, because
// the URL changes with nats.embedded_listen.
func (c *Credentials) WriteAnalystContext(url string) error {
	data, err := json.MarshalIndent(natsContext{
		Description: "kontakt analyst: read-only access to the statistics stream",
		URL:         url,
		NKey:        c.AnalystSeedPath(),
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("natsserver: analyst context: %w", err)
	}
	path := c.AnalystContextPath()
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	if err := writeNewFile(tmp, append(data, '\n')); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("natsserver: analyst context %q: %w", path, err)
	}
	return syncDir(c.Dir)
}
