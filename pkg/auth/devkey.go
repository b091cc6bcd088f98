package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Development-mode token constants. The issuer differs from any real
// identity provider's, so a development token can never pass an OIDC
// verifier and the other way round.
const (
	// DevIssuer is the "iss" of development tokens.
	DevIssuer = "kontakt-dev"
	// DevAudience is the "aud" of development tokens.
	DevAudience = "kontakt"
	// DevKeyFile is the file name of the development signing key inside
	// the data directory; see DevKeyPath.
	DevKeyFile = "dev-signing-key.pem"
	// DefaultLeeway is the clock skew tolerated on exp, nbf and iat. It is
	// small because tokens are short-lived and the clocks are NTP-synced.
	DefaultLeeway = 30 * time.Second
)

// maxDevKeyFileSize bounds how much of a key file is read; a PEM-encoded
// Ed25519 key is about 120 bytes, so anything near this is not a key.
const maxDevKeyFileSize = 64 << 10

// pemTypePrivateKey is the PEM block type of a PKCS #8 private key, the
// format openssl and step-cli also read, so the key can be inspected.
const pemTypePrivateKey = "PRIVATE KEY"

// DevKey is the local Ed25519 key of development mode. It both mints tokens
// (for the admin CLI and tests) and verifies them, so that the system runs
// with real token checks but without an identity provider.
type DevKey struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

// DevKeyPath returns where the development key lives in dataDir, so that the
// server and the CLI that mints tokens agree on it.
func DevKeyPath(dataDir string) string {
	return filepath.Join(dataDir, DevKeyFile)
}

// ErrNoDevKey means there is no development signing key where one was
// looked for: the server creates it, so a command that mints tokens runs
// after the server has started on the same data directory.
var ErrNoDevKey = errors.New("no development signing key")

// LoadDevKey reads the development signing key at path and never creates
// one. The CLI mints tokens with it: a key it created itself would sign
// tokens that the server, holding another key, refuses, so a command run
// from the wrong folder must fail and say so instead.
func LoadDevKey(path string) (*DevKey, error) {
	k, err := loadDevKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s", ErrNoDevKey, path)
	}
	return k, err
}

// LoadOrCreateDevKey reads the development signing key at path, creating it
// (mode 0600, parent directories 0700) when it does not exist. Creation is
// atomic: the key is written to a temporary file and hard-linked into place,
// so processes starting at the same time end up with the same key and none
// reads a half-written file.
//
// An existing file that is not a PKCS #8 Ed25519 key, or that other users
// may read, is an error (ErrInvalidDevKey) rather than being replaced:
// replacing it would invalidate every token minted so far, and a key others
// can read lets them mint tokens for any role.
func LoadOrCreateDevKey(path string) (*DevKey, error) {
	k, err := loadDevKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = createDevKey(path)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it between our read and our link.
		return loadDevKey(path)
	}
	return k, err
}

// loadDevKey reads and checks an existing key file.
func loadDevKey(path string) (*DevKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open development signing key: %w", err)
	}
	defer f.Close()

	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat development signing key: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrInvalidDevKey, path)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; it must not be accessible to group or others (chmod 600)",
			ErrInvalidDevKey, path, info.Mode().Perm())
	}

	data, err := io.ReadAll(io.LimitReader(f, maxDevKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read development signing key: %w", err)
	}
	if len(data) > maxDevKeyFileSize {
		return nil, fmt.Errorf("%w: %s is too large to be a key", ErrInvalidDevKey, path)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemTypePrivateKey {
		return nil, fmt.Errorf("%w: %s holds no PEM %q block", ErrInvalidDevKey, path, pemTypePrivateKey)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidDevKey, path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s holds a %T, not an Ed25519 key", ErrInvalidDevKey, path, key)
	}
	return newDevKey(priv), nil
}

// createDevKey generates a key and links it into place. It returns an error
// wrapping fs.ErrExist when path already exists.
func createDevKey(path string) (*DevKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate development signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode development signing key: %w", err)
	}

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create directory for development signing key: %w", err)
	}
	// CreateTemp makes the file with mode 0600.
	tmp, err := os.CreateTemp(dir, ".dev-signing-key-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("create development signing key: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)

	werr := pem.Encode(tmp, &pem.Block{Type: pemTypePrivateKey, Bytes: der})
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("write development signing key: %w", werr)
	}
	if err := os.Link(tmpName, path); err != nil {
		return nil, fmt.Errorf("install development signing key: %w", err)
	}
	syncDir(dir)
	return newDevKey(priv), nil
}

// syncDir makes the new directory entry durable. It is best effort: a key
// lost in a crash is simply created again, at the cost of minted tokens.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

func newDevKey(priv ed25519.PrivateKey) *DevKey {
	return &DevKey{priv: priv, pub: priv.Public().(ed25519.PublicKey)}
}

// devClaims is the payload of a development token.
type devClaims struct {
	jwt.RegisteredClaims
	Roles      []string `json:"roles"`
	Queues     []string `json:"queues,omitempty"`
	Department string   `json:"department,omitempty"`
	Client     string   `json:"client,omitempty"`
}

// Mint issues a development token for subject with the given roles, queue
// memberships and department, valid for ttl from now. The admin CLI uses it
// so that a person can call the API in development mode, and tests use it
// to act as any role. now is a parameter because kontakt's clock can be
// moved forward for demonstrations and tests.
func (k *DevKey) Mint(subject string, roles []Role, queues []string, department string, ttl time.Duration, now time.Time) (string, error) {
	if subject == "" {
		return "", errors.New("mint development token: subject is empty")
	}
	if ttl <= 0 {
		return "", fmt.Errorf("mint development token: ttl %s is not positive", ttl)
	}
	names := make([]string, 0, len(roles))
	for _, r := range roles {
		if !r.Valid() {
			return "", fmt.Errorf("mint development token: %w %q", ErrUnknownRole, truncate(string(r), 64))
		}
		names = append(names, string(r))
	}
	now = now.Truncate(time.Second)
	claims := devClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    DevIssuer,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{DevAudience},
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        rand.Text(),
		},
		Roles:      names,
		Queues:     queues,
		Department: department,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(k.priv)
	if err != nil {
		return "", fmt.Errorf("mint development token: %w", err)
	}
	return s, nil
}

// PublicKey returns the key that verifies development tokens, for tools
// that want to check a token outside the server.
func (k *DevKey) PublicKey() ed25519.PublicKey {
	return append(ed25519.PublicKey(nil), k.pub...)
}

// DevVerifier verifies development tokens. It accepts only EdDSA tokens
// signed by its key, from DevIssuer for DevAudience, within their lifetime
// (give or take DefaultLeeway), naming only kontakt roles.
type DevVerifier struct {
	pub    ed25519.PublicKey
	parser *jwt.Parser
}

// Verifier returns a verifier for tokens minted by k. clock supplies the
// current time, so that tests and demonstrations that move time forward
// also expire tokens; nil means time.Now.
func (k *DevKey) Verifier(clock func() time.Time) *DevVerifier {
	if clock == nil {
		clock = time.Now
	}
	return &DevVerifier{
		pub: k.pub,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
			jwt.WithIssuer(DevIssuer),
			jwt.WithAudience(DevAudience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(DefaultLeeway),
			jwt.WithTimeFunc(clock),
			jwt.WithStrictDecoding(),
		),
	}
}

// Verify checks rawToken and returns its principal. Every failure wraps
// ErrInvalidToken; an expired token also wraps ErrTokenExpired, and a token
// naming a role kontakt does not define also wraps ErrUnknownRole, because
// development tokens come from our own minting code and an unknown role
// there is a bug worth seeing.
func (v *DevVerifier) Verify(_ context.Context, rawToken string) (Principal, error) {
	var claims devClaims
	_, err := v.parser.ParseWithClaims(rawToken, &claims, func(t *jwt.Token) (any, error) {
		// WithValidMethods already restricts "alg"; checking the type too
		// keeps the key from ever reaching another algorithm's code.
		if _, ok := t.Method.(*jwt.SigningMethodEd25519); !ok {
			return nil, fmt.Errorf("unexpected signing method %q", t.Method.Alg())
		}
		return v.pub, nil
	})
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Principal{}, fmt.Errorf("%w: %w: %w", ErrInvalidToken, ErrTokenExpired, err)
		}
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if claims.Subject == "" {
		return Principal{}, fmt.Errorf("%w: no subject", ErrInvalidToken)
	}
	roles, err := ParseRoles(claims.Roles)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return newPrincipal(claims.Subject, roles, claims.Queues, claims.Department, claims.Client, claims.ExpiresAt.Time), nil
}
