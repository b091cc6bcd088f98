package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

const (
	testAudience = "kontakt-api"
	testKID      = "k1"
)

// idp is a minimal OpenID provider: a discovery document and a JWKS with
// one RSA key, served over TLS like a real provider.
type idp struct {
	srv        *httptest.Server
	key        *rsa.PrivateKey
	jwksHits   atomic.Int64
	issuerJSON string // issuer announced by discovery; defaults to the URL
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	p := &idp{key: key}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		iss := p.issuerJSON
		if iss == "" {
			iss = p.srv.URL
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                iss,
			"jwks_uri":                              p.srv.URL + "/jwks",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		p.jwksHits.Add(1)
		pub := p.key.PublicKey
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"keys": []map[string]string{{
				"kty": "RSA",
				"use": "sig",
				"alg": "RS256",
				"kid": testKID,
				"n":   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
				"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
			}},
		})
	})
	p.srv = httptest.NewTLSServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

// config returns a verifier configuration for this provider with the
// clock at testNow() and JWKS given explicitly.
func (p *idp) config() OIDCConfig {
	return OIDCConfig{
		Issuer:     p.srv.URL,
		Audience:   testAudience,
		JWKSURL:    p.srv.URL + "/jwks",
		Clock:      fixedClock(testNow()),
		HTTPClient: p.srv.Client(),
	}
}

// claims are those of a valid access token at testNow().
func (p *idp) claims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss":        p.srv.URL,
		"aud":        testAudience,
		"sub":        "5d1c2b7e-officer",
		"iat":        testNow().Add(-time.Minute).Unix(),
		"exp":        testNow().Add(5 * time.Minute).Unix(),
		"roles":      []string{"officer", "offline_access", "agent"},
		"queues":     []string{"bygglov"},
		"department": "stadsbyggnad",
	}
}

// sign signs claims with the provider's key and kid.
func (p *idp) sign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	return signRSA(t, p.key, testKID, claims)
}

func signRSA(t *testing.T, key *rsa.PrivateKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func TestOIDCVerifier(t *testing.T) {
	p := newIDP(t)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	pubDER, err := x509.MarshalPKIXPublicKey(&p.key.PublicKey)
	require.NoError(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	with := func(edit func(jwt.MapClaims)) func(t *testing.T) string {
		return func(t *testing.T) string {
			c := p.claims()
			edit(c)
			return p.sign(t, c)
		}
	}

	tests := []struct {
		name      string
		cfg       func(*OIDCConfig)
		token     func(t *testing.T) string
		wantErr   []error
		wantPrinc *Principal
	}{
		{
			name:  "valid, unknown roles ignored",
			token: func(t *testing.T) string { return p.sign(t, p.claims()) },
			wantPrinc: &Principal{
				Subject: "5d1c2b7e-officer", Roles: []Role{RoleOfficer, RoleAgent},
				Queues: []string{"bygglov"}, Department: "stadsbyggnad",
				ExpiresAt: testNow().Add(5 * time.Minute),
			},
		},
		{
			name:  "audience in an array",
			token: with(func(c jwt.MapClaims) { c["aud"] = []string{"account", testAudience} }),
			wantPrinc: &Principal{
				Subject: "5d1c2b7e-officer", Roles: []Role{RoleOfficer, RoleAgent},
				Queues: []string{"bygglov"}, Department: "stadsbyggnad",
				ExpiresAt: testNow().Add(5 * time.Minute),
			},
		},
		{
			name:  "no kontakt role still verifies",
			token: with(func(c jwt.MapClaims) { c["roles"] = []string{"offline_access", "uma_authorization"} }),
			wantPrinc: &Principal{
				Subject: "5d1c2b7e-officer", Queues: []string{"bygglov"}, Department: "stadsbyggnad",
				ExpiresAt: testNow().Add(5 * time.Minute),
			},
		},
		{
			name: "no roles claim at all",
			token: with(func(c jwt.MapClaims) {
				delete(c, "roles")
				delete(c, "queues")
				delete(c, "department")
			}),
			wantPrinc: &Principal{Subject: "5d1c2b7e-officer", ExpiresAt: testNow().Add(5 * time.Minute)},
		},
		{
			name: "form client with client claim",
			token: with(func(c jwt.MapClaims) {
				c["sub"] = "service-account-forms"
				c["roles"] = "form-client"
				c["client"] = "felanmalan-gata"
				delete(c, "queues")
				delete(c, "department")
			}),
			wantPrinc: &Principal{
				Subject: "service-account-forms", Roles: []Role{RoleFormClient},
				Client: "felanmalan-gata", ExpiresAt: testNow().Add(5 * time.Minute),
			},
		},
		{
			name: "nested roles claim (Keycloak realm roles)",
			cfg:  func(c *OIDCConfig) { c.RolesClaim = "realm_access.roles" },
			token: with(func(c jwt.MapClaims) {
				c["roles"] = []string{"dpo"} // must be ignored: another claim is configured
				c["realm_access"] = map[string]any{"roles": []string{"supervisor", "default-roles-kommun"}}
			}),
			wantPrinc: &Principal{
				Subject: "5d1c2b7e-officer", Roles: []Role{RoleSupervisor},
				Queues: []string{"bygglov"}, Department: "stadsbyggnad",
				ExpiresAt: testNow().Add(5 * time.Minute),
			},
		},
		{
			name:  "namespaced roles claim with dots",
			cfg:   func(c *OIDCConfig) { c.RolesClaim = "https://kontakt.example.se/roles" },
			token: with(func(c jwt.MapClaims) { c["https://kontakt.example.se/roles"] = []string{"analyst"} }),
			wantPrinc: &Principal{
				Subject: "5d1c2b7e-officer", Roles: []Role{RoleAnalyst},
				Queues: []string{"bygglov"}, Department: "stadsbyggnad",
				ExpiresAt: testNow().Add(5 * time.Minute),
			},
		},
		{
			name:    "wrong issuer",
			token:   with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example.com" }),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name:    "wrong audience",
			token:   with(func(c jwt.MapClaims) { c["aud"] = "some-other-app" }),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name:    "expired",
			token:   with(func(c jwt.MapClaims) { c["exp"] = testNow().Add(-time.Minute).Unix() }),
			wantErr: []error{ErrInvalidToken, ErrTokenExpired},
		},
		{
			name: "expired within leeway",
			token: with(func(c jwt.MapClaims) {
				c["exp"] = testNow().Add(-10 * time.Second).Unix()
			}),
			wantPrinc: &Principal{
				Subject: "5d1c2b7e-officer", Roles: []Role{RoleOfficer, RoleAgent},
				Queues: []string{"bygglov"}, Department: "stadsbyggnad",
				ExpiresAt: testNow().Add(-10 * time.Second),
			},
		},
		{
			name:    "no expiry",
			token:   with(func(c jwt.MapClaims) { delete(c, "exp") }),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name:    "no subject",
			token:   with(func(c jwt.MapClaims) { delete(c, "sub") }),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name:    "roles claim of the wrong type",
			token:   with(func(c jwt.MapClaims) { c["roles"] = map[string]any{"agent": true} }),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name:    "queues claim of the wrong type",
			token:   with(func(c jwt.MapClaims) { c["queues"] = 3 }),
			wantErr: []error{ErrInvalidToken},
		},
		{
			name: "HS256 signed with the public key as secret",
			token: func(t *testing.T) string {
				tok := jwt.NewWithClaims(jwt.SigningMethodHS256, p.claims())
				tok.Header["kid"] = testKID
				s, err := tok.SignedString(pubPEM)
				require.NoError(t, err)
				return s
			},
			wantErr: []error{ErrInvalidToken},
		},
		{
			name: "alg none",
			token: func(t *testing.T) string {
				tok := jwt.NewWithClaims(jwt.SigningMethodNone, p.claims())
				tok.Header["kid"] = testKID
				s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
				require.NoError(t, err)
				return s
			},
			wantErr: []error{ErrInvalidToken},
		},
		{
			name:    "unknown kid",
			token:   func(t *testing.T) string { return signRSA(t, otherKey, "k-unknown", p.claims()) },
			wantErr: []error{ErrInvalidToken},
		},
		{
			name:    "known kid, wrong key",
			token:   func(t *testing.T) string { return signRSA(t, otherKey, testKID, p.claims()) },
			wantErr: []error{ErrInvalidToken},
		},
		{
			name:    "algorithm not allowed by configuration",
			cfg:     func(c *OIDCConfig) { c.AllowedAlgorithms = []string{"ES256"} },
			token:   func(t *testing.T) string { return p.sign(t, p.claims()) },
			wantErr: []error{ErrInvalidToken},
		},
		{
			name:    "garbage",
			token:   func(*testing.T) string { return "eyJhbGciOiJSUzI1NiJ9.garbage.garbage" },
			wantErr: []error{ErrInvalidToken},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := p.config()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			v := newOIDCVerifier(t, cfg)

			tok := tt.token(t)
			got, err := v.Verify(t.Context(), tok)
			if len(tt.wantErr) > 0 {
				for _, want := range tt.wantErr {
					require.ErrorIs(t, err, want)
				}
				require.NotContains(t, err.Error(), tok, "errors must not echo the token")
				require.Equal(t, Principal{}, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, *tt.wantPrinc, got)
		})
	}
}

// newOIDCVerifier builds a verifier that is closed at the end of the test.
func newOIDCVerifier(t *testing.T, cfg OIDCConfig) *OIDCVerifier {
	t.Helper()
	v, err := NewOIDCVerifier(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	return v
}

// TestOIDCVerifierKeyFetches checks, against a real HTTPS key set, that
// forged tokens do not make the verifier fetch keys: a bad signature under
// a known key id never, an unknown key id at most once per minimum
// interval (the key set's own tests cover the schedule in fake time).
func TestOIDCVerifierKeyFetches(t *testing.T) {
	p := newIDP(t)
	cfg := p.config()
	cfg.JWKSRefreshInterval = time.Hour
	cfg.JWKSMinRefreshInterval = 200 * time.Millisecond
	v := newOIDCVerifier(t, cfg)

	_, err := v.Verify(t.Context(), p.sign(t, p.claims()))
	require.NoError(t, err)
	require.EqualValues(t, 1, p.jwksHits.Load(), "the first call waits for the start-up fetch")

	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	for range 50 {
		_, err = v.Verify(t.Context(), signRSA(t, otherKey, testKID, p.claims()))
		require.ErrorIs(t, err, ErrInvalidToken)
	}
	require.EqualValues(t, 1, p.jwksHits.Load(), "a bad signature under a known key id never fetches")

	start := time.Now()
	for range 50 {
		_, err = v.Verify(t.Context(), signRSA(t, otherKey, "k-unknown", p.claims()))
		require.ErrorIs(t, err, ErrInvalidToken)
	}
	bound := 1 + 1 + int64(time.Since(start)/cfg.JWKSMinRefreshInterval)
	require.LessOrEqual(t, p.jwksHits.Load(), bound, "unknown key ids fetch at most once per minimum interval")
	ok := testutil.ToFloat64(v.keys.fetches.WithLabelValues(reasonSchedule, "ok")) +
		testutil.ToFloat64(v.keys.fetches.WithLabelValues(reasonUnknownKey, "ok"))
	require.EqualValues(t, p.jwksHits.Load(), ok, "the metric counts every fetch")
}

func TestOIDCVerifierDiscovery(t *testing.T) {
	p := newIDP(t)
	cfg := p.config()
	cfg.JWKSURL = ""
	v := newOIDCVerifier(t, cfg)

	got, err := v.Verify(t.Context(), p.sign(t, p.claims()))
	require.NoError(t, err)
	require.Equal(t, "5d1c2b7e-officer", got.Subject)

	bad := p.claims()
	bad["aud"] = "other"
	_, err = v.Verify(t.Context(), p.sign(t, bad))
	require.ErrorIs(t, err, ErrInvalidToken)
}

func TestOIDCVerifierDiscoveryFailures(t *testing.T) {
	t.Run("provider announces another issuer", func(t *testing.T) {
		p := newIDP(t)
		p.issuerJSON = "https://impostor.example.com"
		cfg := p.config()
		cfg.JWKSURL = ""
		_, err := NewOIDCVerifier(t.Context(), cfg)
		require.Error(t, err)
	})
	t.Run("provider unreachable", func(t *testing.T) {
		p := newIDP(t)
		cfg := p.config()
		cfg.JWKSURL = ""
		p.srv.Close()
		_, err := NewOIDCVerifier(t.Context(), cfg)
		require.Error(t, err)
	})
	t.Run("cancelled context", func(t *testing.T) {
		p := newIDP(t)
		cfg := p.config()
		cfg.JWKSURL = ""
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := NewOIDCVerifier(ctx, cfg)
		require.ErrorIs(t, err, context.Canceled)
	})
}

func TestOIDCVerifierPlainHTTPOnLoopback(t *testing.T) {
	// Plain HTTP is accepted for loopback, as for a provider on a
	// developer's machine; this also exercises the default HTTP client.
	p := newIDP(t)
	plain := httptest.NewServer(p.srv.Config.Handler)
	t.Cleanup(plain.Close)

	claims := p.claims()
	claims["iss"] = plain.URL
	v := newOIDCVerifier(t, OIDCConfig{
		Issuer:   plain.URL,
		Audience: testAudience,
		JWKSURL:  plain.URL + "/jwks",
		Clock:    fixedClock(testNow()),
	})
	_, err := v.Verify(t.Context(), p.sign(t, claims))
	require.NoError(t, err)
}

func TestNewOIDCVerifierRejectsBadConfig(t *testing.T) {
	valid := OIDCConfig{Issuer: "https://idp.example.se/realms/kommun", Audience: "kontakt", JWKSURL: "https://idp.example.se/jwks"}
	tests := []struct {
		name string
		edit func(*OIDCConfig)
	}{
		{name: "no issuer", edit: func(c *OIDCConfig) { c.Issuer = "" }},
		{name: "no audience", edit: func(c *OIDCConfig) { c.Audience = "" }},
		{name: "HS256 allowed", edit: func(c *OIDCConfig) { c.AllowedAlgorithms = []string{"RS256", "HS256"} }},
		{name: "none allowed", edit: func(c *OIDCConfig) { c.AllowedAlgorithms = []string{"none"} }},
		{name: "lower-case algorithm", edit: func(c *OIDCConfig) { c.AllowedAlgorithms = []string{"rs256"} }},
		{name: "negative leeway", edit: func(c *OIDCConfig) { c.Leeway = -time.Second }},
		{name: "plain HTTP JWKS", edit: func(c *OIDCConfig) { c.JWKSURL = "http://idp.example.se/jwks" }},
		{name: "negative refresh interval", edit: func(c *OIDCConfig) { c.JWKSRefreshInterval = -time.Minute }},
		{name: "minimum refresh longer than the interval", edit: func(c *OIDCConfig) {
			c.JWKSRefreshInterval, c.JWKSMinRefreshInterval = time.Minute, 2*time.Minute
		}},
		{name: "plain HTTP issuer", edit: func(c *OIDCConfig) { c.Issuer = "http://idp.example.se/realms/kommun" }},
		{name: "file URL", edit: func(c *OIDCConfig) { c.JWKSURL = "file:///etc/jwks.json" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.edit(&cfg)
			v, err := NewOIDCVerifier(t.Context(), cfg)
			require.ErrorIs(t, err, ErrInvalidConfig)
			require.Nil(t, v)
		})
	}

	t.Run("valid configuration", func(t *testing.T) {
		require.NotNil(t, newOIDCVerifier(t, valid))
	})
	t.Run("plain HTTP allowed explicitly", func(t *testing.T) {
		cfg := valid
		cfg.JWKSURL = "http://keycloak.kontakt.svc:8080/jwks"
		cfg.AllowInsecureHTTP = true
		require.NotNil(t, newOIDCVerifier(t, cfg))
	})
}
