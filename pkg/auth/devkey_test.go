package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

func TestLoadOrCreateDevKeyCreatesPrivateFileAndReloadsSameKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	path := DevKeyPath(dir)

	k1, err := LoadOrCreateDevKey(path)
	require.NoError(t, err)

	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	dirInfo, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), dirInfo.Mode().Perm())

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(data), "-----BEGIN PRIVATE KEY-----"))

	k2, err := LoadOrCreateDevKey(path)
	require.NoError(t, err)
	require.Equal(t, k1.PublicKey(), k2.PublicKey())

	// A token minted before a restart verifies after it.
	tok := mint(t, k1, "agent-1", RoleAgent)
	_, err = k2.Verifier(fixedClock(testNow())).Verify(context.Background(), tok)
	require.NoError(t, err)

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary files may be left behind")
}

func TestLoadOrCreateDevKeyConcurrentCreatorsAgree(t *testing.T) {
	path := DevKeyPath(t.TempDir())
	const n = 16
	keys := make([]*DevKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = LoadOrCreateDevKey(path) })
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, keys[0].PublicKey(), keys[i].PublicKey(), "creator %d has another key", i)
	}
}

func TestLoadOrCreateDevKeyRejectsUnusableFiles(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rsaDER, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	require.NoError(t, err)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	edDER, err := x509.MarshalPKCS8PrivateKey(edKey)
	require.NoError(t, err)

	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		wantErr error
	}{
		{name: "not PEM", content: []byte("hello"), mode: 0o600, wantErr: ErrInvalidDevKey},
		{name: "wrong PEM type", content: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: edDER}), mode: 0o600, wantErr: ErrInvalidDevKey},
		{name: "corrupt DER", content: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), mode: 0o600, wantErr: ErrInvalidDevKey},
		{name: "RSA key", content: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER}), mode: 0o600, wantErr: ErrInvalidDevKey},
		{name: "readable by others", content: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER}), mode: 0o644, wantErr: ErrInvalidDevKey},
		{name: "readable by group", content: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER}), mode: 0o640, wantErr: ErrInvalidDevKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := DevKeyPath(t.TempDir())
			require.NoError(t, os.WriteFile(path, tt.content, tt.mode))
			require.NoError(t, os.Chmod(path, tt.mode)) // WriteFile's mode is subject to umask
			_, err := LoadOrCreateDevKey(path)
			require.ErrorIs(t, err, tt.wantErr)

			after, rerr := os.ReadFile(path)
			require.NoError(t, rerr)
			require.Equal(t, tt.content, after, "an unusable key file must not be replaced")
		})
	}

	t.Run("valid PKCS8 Ed25519 written by another tool", func(t *testing.T) {
		path := DevKeyPath(t.TempDir())
		require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER}), 0o600))
		k, err := LoadOrCreateDevKey(path)
		require.NoError(t, err)
		require.Equal(t, edKey.Public(), k.PublicKey())
	})

	t.Run("directory in place of the file", func(t *testing.T) {
		path := DevKeyPath(t.TempDir())
		require.NoError(t, os.Mkdir(path, 0o700))
		_, err := LoadOrCreateDevKey(path)
		require.ErrorIs(t, err, ErrInvalidDevKey)
	})
}

func TestMintRejectsBadInput(t *testing.T) {
	k := newTestDevKey(t)
	tests := []struct {
		name    string
		subject string
		roles   []Role
		ttl     time.Duration
		wantErr error
	}{
		{name: "empty subject", subject: "", roles: []Role{RoleAgent}, ttl: time.Hour},
		{name: "zero ttl", subject: "s", roles: []Role{RoleAgent}, ttl: 0},
		{name: "negative ttl", subject: "s", roles: []Role{RoleAgent}, ttl: -time.Minute},
		{name: "unknown role", subject: "s", roles: []Role{RoleAgent, "root"}, ttl: time.Hour, wantErr: ErrUnknownRole},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := k.Mint(tt.subject, tt.roles, nil, "", tt.ttl, testNow())
			require.Error(t, err)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			}
			require.Empty(t, tok)
		})
	}
}

func TestMintClaims(t *testing.T) {
	k := newTestDevKey(t)
	tok, err := k.Mint("agent-7", []Role{RoleAgent, RoleSupervisor}, []string{"q1"}, "socialtjanst", 15*time.Minute, testNow())
	require.NoError(t, err)

	claims := jwt.MapClaims{}
	parsed, err := jwt.NewParser(jwt.WithTimeFunc(fixedClock(testNow()))).ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return k.PublicKey(), nil })
	require.NoError(t, err)
	require.Equal(t, "EdDSA", parsed.Header["alg"])
	require.Equal(t, DevIssuer, claims["iss"])
	require.Equal(t, []any{DevAudience}, claims["aud"])
	require.Equal(t, "agent-7", claims["sub"])
	require.Equal(t, []any{"agent", "supervisor"}, claims["roles"])
	require.Equal(t, []any{"q1"}, claims["queues"])
	require.Equal(t, "socialtjanst", claims["department"])
	require.InDelta(t, float64(testNow().Unix()), claims["iat"], 0)
	require.InDelta(t, float64(testNow().Unix()), claims["nbf"], 0)
	require.InDelta(t, float64(testNow().Add(15*time.Minute).Unix()), claims["exp"], 0)
	require.NotEmpty(t, claims["jti"])

	other, err := k.Mint("agent-7", []Role{RoleAgent}, nil, "", time.Minute, testNow())
	require.NoError(t, err)
	otherClaims := jwt.MapClaims{}
	_, _, err = jwt.NewParser().ParseUnverified(other, otherClaims)
	require.NoError(t, err)
	require.NotEqual(t, claims["jti"], otherClaims["jti"], "every token needs its own jti")
}

// devTokenClaims are the claims of a valid development token at testNow();
// tests change one thing to make it invalid.
func devTokenClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss":   DevIssuer,
		"aud":   []string{DevAudience},
		"sub":   "agent-1",
		"iat":   testNow().Unix(),
		"nbf":   testNow().Unix(),
		"exp":   testNow().Add(time.Hour).Unix(),
		"jti":   "id-1",
		"roles": []string{"agent"},
	}
}

func TestDevVerifier(t *testing.T) {
	k := newTestDevKey(t)
	otherKey := newTestDevKey(t)

	signEd := func(t *testing.T, key *DevKey, edit func(jwt.MapClaims)) string {
		t.Helper()
		c := devTokenClaims()
		if edit != nil {
			edit(c)
		}
		s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(key.priv)
		require.NoError(t, err)
		return s
	}

	tests := []struct {
		name        string
		token       func(t *testing.T) string
		now         time.Time
		wantErr     []error
		wantPrinc   *Principal
		wantSubject string
	}{
		{
			name:  "minted token",
			token: func(t *testing.T) string { return mint(t, k, "agent-1", RoleAgent, RoleOfficer) },
			now:   testNow().Add(30 * time.Minute),
			wantPrinc: &Principal{
				Subject: "agent-1", Roles: []Role{RoleAgent, RoleOfficer},
				Queues: []string{"q-bygglov", "q-skola"}, Department: "stadsbyggnad",
				ExpiresAt: testNow().Add(time.Hour),
			},
		},
		{
			name:  "form client gets subject as client",
			token: func(t *testing.T) string { return mint(t, k, "e-tjanst-17", RoleFormClient) },
			now:   testNow(),
			wantPrinc: &Principal{
				Subject: "e-tjanst-17", Roles: []Role{RoleFormClient},
				Queues: []string{"q-bygglov", "q-skola"}, Department: "stadsbyggnad",
				Client: "e-tjanst-17", ExpiresAt: testNow().Add(time.Hour),
			},
		},
		{
			name:        "expired within leeway",
			token:       func(t *testing.T) string { return mint(t, k, "agent-1", RoleAgent) },
			now:         testNow().Add(time.Hour + 20*time.Second),
			wantSubject: "agent-1",
		},
		{
			name:    "expired beyond leeway",
			token:   func(t *testing.T) string { return mint(t, k, "agent-1", RoleAgent) },
			now:     testNow().Add(time.Hour + 31*time.Second),
			wantErr: []error{ErrInvalidToken, ErrTokenExpired},
		},
		{
			name:    "months later",
			token:   func(t *testing.T) string { return mint(t, k, "agent-1", RoleAgent) },
			now:     testNow().AddDate(0, 3, 0),
			wantErr: []error{ErrInvalidToken, ErrTokenExpired},
		},
		{
			name:    "not yet valid",
			token:   func(t *testing.T) string { return mint(t, k, "agent-1", RoleAgent) },
			now:     testNow().Add(-2 * time.Minute),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name: "wrong issuer",
			token: func(t *testing.T) string {
				return signEd(t, k, func(c jwt.MapClaims) { c["iss"] = "https://idp.example.se" })
			},
			now:     testNow(),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name: "wrong audience",
			token: func(t *testing.T) string {
				return signEd(t, k, func(c jwt.MapClaims) { c["aud"] = []string{"other-app"} })
			},
			now:     testNow(),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name:    "no expiry",
			token:   func(t *testing.T) string { return signEd(t, k, func(c jwt.MapClaims) { delete(c, "exp") }) },
			now:     testNow(),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name: "issued in the future",
			token: func(t *testing.T) string {
				return signEd(t, k, func(c jwt.MapClaims) { c["iat"] = testNow().Add(10 * time.Minute).Unix() })
			},
			now:     testNow(),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name:    "no subject",
			token:   func(t *testing.T) string { return signEd(t, k, func(c jwt.MapClaims) { delete(c, "sub") }) },
			now:     testNow(),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name: "unknown role",
			token: func(t *testing.T) string {
				return signEd(t, k, func(c jwt.MapClaims) { c["roles"] = []string{"agent", "root"} })
			},
			now:     testNow(),
			wantErr: []error{ErrInvalidToken, ErrUnknownRole},
		},
		{
			name:    "roles not an array",
			token:   func(t *testing.T) string { return signEd(t, k, func(c jwt.MapClaims) { c["roles"] = 7 }) },
			now:     testNow(),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name:    "signed by another development key",
			token:   func(t *testing.T) string { return mint(t, otherKey, "agent-1", RoleAgent) },
			now:     testNow(),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name: "alg none",
			token: func(t *testing.T) string {
				s, err := jwt.NewWithClaims(jwt.SigningMethodNone, devTokenClaims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
				require.NoError(t, err)
				return s
			},
			now:     testNow(),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name: "HS256 with the public key as secret",
			token: func(t *testing.T) string {
				s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, devTokenClaims()).SignedString([]byte(k.pub))
				require.NoError(t, err)
				return s
			},
			now:     testNow(),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name: "payload swapped to grant dpo",
			token: func(t *testing.T) string {
				tok := mint(t, k, "agent-1", RoleAgent)
				parts := strings.Split(tok, ".")
				c := devTokenClaims()
				c["roles"] = []string{"dpo"}
				forged, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SigningString()
				require.NoError(t, err)
				return strings.Split(forged, ".")[0] + "." + strings.Split(forged, ".")[1] + "." + parts[2]
			},
			now:     testNow(),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name: "signature stripped",
			token: func(t *testing.T) string {
				tok := mint(t, k, "agent-1", RoleAgent)
				return tok[:strings.LastIndexByte(tok, '.')+1]
			},
			now:     testNow(),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name: "header claims alg EdDSA but carries garbage",
			token: func(t *testing.T) string {
				h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JWT"}`))
				return h + ".e30.AAAA"
			},
			now:     testNow(),
			wantErr: []error{ErrInvalidToken},
		},
		{name: "garbage", token: func(*testing.T) string { return "not-a-jwt" }, now: testNow(), wantErr: []error{ErrInvalidToken}},
		{name: "empty", token: func(*testing.T) string { return "" }, now: testNow(), wantErr: []error{ErrInvalidToken}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.token(t)
			p, err := k.Verifier(fixedClock(tt.now)).Verify(context.Background(), tok)
			if len(tt.wantErr) > 0 {
				for _, want := range tt.wantErr {
					require.ErrorIs(t, err, want)
				}
				require.Equal(t, Principal{}, p)
				if tok != "" {
					require.NotContains(t, err.Error(), tok, "errors must not echo the token")
				}
				return
			}
			require.NoError(t, err)
			if tt.wantPrinc != nil {
				require.Equal(t, *tt.wantPrinc, p)
			}
			if tt.wantSubject != "" {
				require.Equal(t, tt.wantSubject, p.Subject)
			}
		})
	}
}

func TestDevVerifierDefaultsToWallClock(t *testing.T) {
	k := newTestDevKey(t)
	fresh, err := k.Mint("s", []Role{RoleAgent}, nil, "", time.Minute, time.Now())
	require.NoError(t, err)
	_, err = k.Verifier(nil).Verify(context.Background(), fresh)
	require.NoError(t, err)

	stale, err := k.Mint("s", []Role{RoleAgent}, nil, "", time.Minute, time.Now().Add(-2*time.Hour))
	require.NoError(t, err)
	_, err = k.Verifier(nil).Verify(context.Background(), stale)
	require.ErrorIs(t, err, ErrTokenExpired)
}
