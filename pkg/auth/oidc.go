package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultRolesClaim is the claim that carries roles when OIDCConfig does not
// name another; it is what Microsoft Entra ID app roles and most Keycloak
// client-role mappers emit.
const DefaultRolesClaim = "roles"

// defaultJWKSTimeout bounds a JWKS or discovery request. go-oidc otherwise
// uses http.DefaultClient, which has no timeout, and a hung key refresh
// would stall every later refresh.
const defaultJWKSTimeout = 10 * time.Second

// DefaultAlgorithms returns the signing algorithms accepted when OIDCConfig
// names none: the asymmetric algorithms common identity providers use. A
// new slice is returned each time so that callers cannot change the default.
func DefaultAlgorithms() []string {
	return []string{oidc.RS256, oidc.ES256, oidc.EdDSA}
}

// asymmetricAlgorithms are the only algorithms a configuration may allow.
// Symmetric (HS*) algorithms are excluded because a verifier that holds
// only public keys could be tricked into using a public key as an HMAC
// secret, and "none" because it is no signature at all.
func asymmetricAlgorithms() []string {
	return []string{
		oidc.RS256, oidc.RS384, oidc.RS512,
		oidc.ES256, oidc.ES384, oidc.ES512,
		oidc.PS256, oidc.PS384, oidc.PS512,
		oidc.EdDSA,
	}
}

// OIDCConfig configures verification of tokens from an OpenID Connect
// identity provider.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL; tokens must carry exactly this
	// "iss". Required.
	Issuer string
	// Audience is the value that must appear in a token's "aud", i.e. the
	// identifier kontakt is registered under at the provider. Required.
	Audience string
	// JWKSURL is the provider's key set. When empty, it is found through
	// OpenID discovery at Issuer + "/.well-known/openid-configuration",
	// which then must be reachable when the verifier is created.
	JWKSURL string
	// RolesClaim names the claim holding the caller's roles; default
	// DefaultRolesClaim. A dotted name such as "realm_access.roles" reads a
	// nested claim when no top-level claim has that exact name.
	RolesClaim string
	// AllowedAlgorithms restricts the signing algorithms; default
	// DefaultAlgorithms(). Only asymmetric algorithms are accepted.
	AllowedAlgorithms []string
	// Leeway is the clock skew tolerated on expiry; zero means
	// DefaultLeeway.
	Leeway time.Duration
	// Clock supplies the current time; nil means time.Now. It is here so
	// that moving kontakt's clock forward also expires tokens.
	Clock func() time.Time
	// HTTPClient fetches discovery documents and keys; nil means a client
	// with a 10 s timeout.
	HTTPClient *http.Client
	// AllowInsecureHTTP permits http:// issuer and JWKS URLs for hosts
	// other than loopback. Keys fetched over plain HTTP can be replaced by
	// anyone on the path, so set it only for a provider reached over a
	// trusted network (for example inside a cluster).
	AllowInsecureHTTP bool
	// JWKSRefreshInterval is how often the key set is fetched on
	// schedule, and so the longest a key the provider removed is still
	// honoured; zero means DefaultJWKSRefreshInterval.
	JWKSRefreshInterval time.Duration
	// JWKSMinRefreshInterval is the least time between fetches caused by
	// tokens naming a key id the set does not hold; zero means
	// DefaultJWKSMinRefreshInterval. It may not exceed
	// JWKSRefreshInterval.
	JWKSMinRefreshInterval time.Duration
	// Logger receives key set fetches and failures; nil discards them.
	Logger *slog.Logger
}

// OIDCVerifier verifies bearer tokens issued by an OpenID Connect provider,
// with keys from its JWKS, held in memory and fetched on a schedule (see
// remoteKeySet). Close stops the schedule.
type OIDCVerifier struct {
	verifier   *oidc.IDTokenVerifier
	keys       *remoteKeySet
	rolesClaim string
}

// NewOIDCVerifier checks cfg and builds a verifier, whose first fetch of
// the key set starts at once. Without JWKSURL it runs discovery, so it
// fails at start-up, not at the first call, when the provider is
// unreachable or announces another issuer. ctx bounds only the discovery
// request; key fetches later use their own timeout. Call Close when done.
func NewOIDCVerifier(ctx context.Context, cfg OIDCConfig) (*OIDCVerifier, error) {
	if cfg.Issuer == "" {
		return nil, fmt.Errorf("%w: OIDC issuer is empty", ErrInvalidConfig)
	}
	if cfg.Audience == "" {
		return nil, fmt.Errorf("%w: OIDC audience is empty", ErrInvalidConfig)
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("%w: OIDC leeway %s is negative", ErrInvalidConfig, cfg.Leeway)
	}
	refresh, minRefresh := cfg.JWKSRefreshInterval, cfg.JWKSMinRefreshInterval
	if refresh == 0 {
		refresh = DefaultJWKSRefreshInterval
	}
	if minRefresh == 0 {
		minRefresh = min(DefaultJWKSMinRefreshInterval, refresh)
	}
	if refresh < 0 || minRefresh < 0 || minRefresh > refresh {
		return nil, fmt.Errorf("%w: JWKS refresh interval %s and minimum refresh interval %s must be positive, the minimum no longer than the interval",
			ErrInvalidConfig, refresh, minRefresh)
	}
	if err := checkURL("issuer", cfg.Issuer, cfg.AllowInsecureHTTP); err != nil {
		return nil, err
	}
	if cfg.JWKSURL != "" {
		if err := checkURL("JWKS URL", cfg.JWKSURL, cfg.AllowInsecureHTTP); err != nil {
			return nil, err
		}
	}
	algs := cfg.AllowedAlgorithms
	if len(algs) == 0 {
		algs = DefaultAlgorithms()
	}
	allowed := asymmetricAlgorithms()
	for _, a := range algs {
		if !slices.Contains(allowed, a) {
			return nil, fmt.Errorf("%w: signing algorithm %q is not allowed (allowed: %v)", ErrInvalidConfig, a, allowed)
		}
	}
	rolesClaim := cfg.RolesClaim
	if rolesClaim == "" {
		rolesClaim = DefaultRolesClaim
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	clock := cfg.Clock
	if clock == nil {
		clock = time.Now
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: defaultJWKSTimeout}
	}

	oidcCfg := &oidc.Config{
		ClientID:             cfg.Audience,
		SupportedSigningAlgs: slices.Clone(algs),
		// go-oidc compares expiry without leeway; shifting "now" back
		// grants the leeway on expiry (nbf already has 5 minutes there).
		Now: func() time.Time { return clock().Add(-leeway) },
	}
	jwksURL := cfg.JWKSURL
	if jwksURL == "" {
		// go-oidc takes its HTTP client from the context; discovery must
		// honour ctx's cancellation.
		discoveryCtx := oidc.ClientContext(ctx, client)
		provider, err := oidc.NewProvider(discoveryCtx, cfg.Issuer)
		if err != nil {
			return nil, fmt.Errorf("OIDC discovery for %s: %w", cfg.Issuer, err)
		}
		var meta struct {
			JWKSURL string `json:"jwks_uri"`
		}
		if err := provider.Claims(&meta); err != nil {
			return nil, fmt.Errorf("OIDC discovery for %s: %w", cfg.Issuer, err)
		}
		if meta.JWKSURL == "" {
			return nil, fmt.Errorf("OIDC discovery for %s: no jwks_uri", cfg.Issuer)
		}
		if err := checkURL("discovered JWKS URL", meta.JWKSURL, cfg.AllowInsecureHTTP); err != nil {
			return nil, err
		}
		jwksURL = meta.JWKSURL
	}
	joseAlgs := make([]jose.SignatureAlgorithm, 0, len(algs))
	for _, a := range algs {
		joseAlgs = append(joseAlgs, jose.SignatureAlgorithm(a))
	}
	keys := newRemoteKeySet(keySetConfig{
		fetch:              httpFetcher(client, jwksURL),
		algorithms:         joseAlgs,
		refreshInterval:    refresh,
		minRefreshInterval: minRefresh,
		logger:             cfg.Logger,
	})
	return &OIDCVerifier{
		verifier:   oidc.NewVerifier(cfg.Issuer, keys, oidcCfg),
		keys:       keys,
		rolesClaim: rolesClaim,
	}, nil
}

// Close stops fetching the key set. The verifier refuses nothing new
// because of it, but its keys are no longer refreshed.
func (v *OIDCVerifier) Close() error {
	v.keys.close()
	return nil
}

// KeyGeneration changes whenever the provider's key set changes, so that
// CachingVerifier forgets tokens verified with keys that may be gone.
func (v *OIDCVerifier) KeyGeneration() uint64 { return v.keys.generation.Load() }

// Collectors are the verifier's Prometheus metrics (key set fetches by
// reason and result, keys held, time of the last good fetch).
func (v *OIDCVerifier) Collectors() []prometheus.Collector { return v.keys.collectors() }

// checkURL refuses URLs over which keys could be swapped in transit.
func checkURL(what, raw string, allowHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: OIDC %s: %w", ErrInvalidConfig, what, err)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if allowHTTP || isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%w: OIDC %s %q uses plain HTTP (set AllowInsecureHTTP only for a trusted network)", ErrInvalidConfig, what, raw)
	default:
		return fmt.Errorf("%w: OIDC %s %q is not an http(s) URL", ErrInvalidConfig, what, raw)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Verify checks rawToken's signature, algorithm, issuer, audience and
// lifetime, and maps its claims to a Principal. Roles kontakt does not know
// are ignored, because the provider's tokens serve other applications too; a
// token with no kontakt role still verifies, and the interceptor then
// refuses it with PermissionDenied, which tells the caller that they are
// known but not allowed. Every failure wraps ErrInvalidToken, and an
// expired token also wraps ErrTokenExpired.
func (v *OIDCVerifier) Verify(ctx context.Context, rawToken string) (Principal, error) {
	tok, err := v.verifier.Verify(ctx, rawToken)
	if err != nil {
		if _, ok := errors.AsType[*oidc.TokenExpiredError](err); ok {
			return Principal{}, fmt.Errorf("%w: %w: %w", ErrInvalidToken, ErrTokenExpired, err)
		}
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if tok.Subject == "" {
		return Principal{}, fmt.Errorf("%w: no subject", ErrInvalidToken)
	}
	var claims map[string]json.RawMessage
	if err := tok.Claims(&claims); err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}

	roleNames, err := stringsClaim(claims, v.rolesClaim)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	var roles []Role
	for _, n := range roleNames {
		if r := Role(n); r.Valid() {
			roles = append(roles, r)
		}
	}
	queues, err := stringsClaim(claims, claimQueues)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	department, err := stringClaim(claims, claimDepartment)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	client, err := stringClaim(claims, claimClient)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return newPrincipal(tok.Subject, roles, queues, department, client, tok.Expiry), nil
}
