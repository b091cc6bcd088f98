package e2e

// The binary in production mode against a real identity provider's key set
// (a loopback HTTP server in the test that counts its fetches): forged
// tokens must not make kontakt fetch the key set (issue 13, hole 6), a key
// the provider removed must stop being honoured within
// auth.oidc.jwks_refresh_interval, a new key must be accepted after one
// fetch, and a provider that fails keeps the last good set in use.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

const oidcAudience = "kontakt-e2e"

// testIDP is an OpenID provider: discovery and a JWKS whose keys the test
// changes, over loopback HTTP (which kontakt accepts for loopback only).
type testIDP struct {
	srv *httptest.Server

	mu      sync.Mutex
	keys    map[string]*rsa.PrivateKey // kid -> key, as published
	signers map[string]*rsa.PrivateKey // kid -> key, every key ever made
	fetches []jwksFetch
	failing bool
}

// jwksFetch is one request for the key set.
type jwksFetch struct {
	at     time.Time
	kids   []string
	failed bool
}

func newTestIDP(t *testing.T, kids ...string) *testIDP {
	t.Helper()
	p := &testIDP{keys: map[string]*rsa.PrivateKey{}, signers: map[string]*rsa.PrivateKey{}}
	for _, kid := range kids {
		p.addKey(t, kid)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                p.srv.URL,
			"jwks_uri":                              p.srv.URL + "/jwks",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		p.mu.Lock()
		f := jwksFetch{at: time.Now(), failed: p.failing}
		var set jose.JSONWebKeySet
		for kid, key := range p.keys {
			f.kids = append(f.kids, kid)
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &key.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
		}
		p.fetches = append(p.fetches, f)
		p.mu.Unlock()
		if f.failed {
			http.Error(w, "identity provider down", http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *testIDP) addKey(t *testing.T, kid string) time.Time {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[kid], p.signers[kid] = key, key
	return time.Now()
}

func (p *testIDP) removeKey(kid string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.keys, kid)
	return time.Now()
}

func (p *testIDP) setFailing(v bool) {
	p.mu.Lock()
	p.failing = v
	p.mu.Unlock()
}

// fetchCount counts the key set requests that arrived after since.
func (p *testIDP) fetchCount(since time.Time, failed bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, f := range p.fetches {
		if !f.at.Before(since) && f.failed == failed {
			n++
		}
	}
	return n
}

func (p *testIDP) allFetches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.fetches)
}

// token signs a supervisor's access token with the key of kid. A kid the
// provider never had gets a key of its own (a forger's).
func (p *testIDP) token(t *testing.T, kid string) string {
	t.Helper()
	p.mu.Lock()
	key := p.signers[kid]
	p.mu.Unlock()
	if key == nil {
		var err error
		key, err = rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
	}
	return signToken(t, key, kid, p.srv.URL)
}

var jtiSeq struct {
	sync.Mutex
	n int
}

func signToken(t *testing.T, key *rsa.PrivateKey, kid, issuer string) string {
	t.Helper()
	jtiSeq.Lock()
	jtiSeq.n++
	jti := fmt.Sprintf("e2e-%d", jtiSeq.n)
	jtiSeq.Unlock()
	now := time.Now()
	claims, err := json.Marshal(map[string]any{
		"iss": issuer, "aud": oidcAudience, "sub": "sara-oidc", "jti": jti,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"roles": []string{"supervisor"},
	})
	require.NoError(t, err)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	require.NoError(t, err)
	jws, err := signer.Sign(claims)
	require.NoError(t, err)
	s, err := jws.CompactSerialize()
	require.NoError(t, err)
	return s
}

// startProduction starts the binary in production mode with its tokens
// from idp. discovery leaves auth.oidc.jwks_url empty, so the key set is
// found through OpenID discovery. env is set for the binary (the key set
// intervals are given as KONTAKT_* variables, which a binary that does not
// know them ignores, so the same test runs against the base binary).
func startProduction(t *testing.T, idp *testIDP, discovery bool, env map[string]string) *Kontakt {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "master.key")
	master := make([]byte, 32)
	_, err := rand.Read(master)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keyFile, master, 0o600))
	jwks := idp.srv.URL + "/jwks"
	if discovery {
		jwks = ""
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	// Production requires the shred journal outside the data directory.
	return Start(t, Options{ExtraConfig: fmt.Sprintf(
		"mode: production\nmaster_key_file: %s\nauth:\n  oidc: {issuer: %q, audience: %s, jwks_url: %q}\nretention:\n  journal_dir: %s\n",
		keyFile, idp.srv.URL, oidcAudience, jwks, filepath.Join(dir, "journal"))})
}

// listQueues calls ListQueues over grpc-go with token and returns the code.
func listQueues(t *testing.T, rc routingv1.RoutingServiceClient, token string) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	_, err := rc.ListQueues(ctx, &routingv1.ListQueuesRequest{})
	return status.Code(err)
}

func TestOIDCForgedTokensDoNotFetchTheKeySet(t *testing.T) {
	idp := newTestIDP(t, "k1")
	// The documented defaults: refresh every 5 minutes, an unknown key id
	// at most every 30 seconds.
	k := startProduction(t, idp, false, nil)
	rc := routingv1.NewRoutingServiceClient(k.Dial(t))
	require.Equal(t, codes.OK, listQueues(t, rc, idp.token(t, "k1")), "a token signed with the published key is accepted")

	const perKind = 200
	before := idp.allFetches()
	start := time.Now()
	sent := 0
	for i := range perKind {
		// A known key id, signed with another key: a bad signature.
		require.Equal(t, codes.Unauthenticated, listQueues(t, rc, signToken(t, forger(t), "k1", idp.srv.URL)))
		// A key id the provider never published.
		require.Equal(t, codes.Unauthenticated, listQueues(t, rc, signToken(t, forger(t), fmt.Sprintf("unknown-%d", i), idp.srv.URL)))
		sent += 2
	}
	elapsed := time.Since(start)
	fetches := idp.allFetches() - before
	bound := 2 + int(elapsed/(30*time.Second)) + int(elapsed/(5*time.Minute))
	t.Logf("%d forged tokens (%d bad signatures, %d unknown key ids) in %s: %d key set fetches (bound %d)",
		sent, perKind, perKind, elapsed.Round(time.Millisecond), fetches, bound)
	require.LessOrEqual(t, fetches, bound, "forged tokens made kontakt fetch the identity provider's key set")
	require.Equal(t, codes.OK, listQueues(t, rc, idp.token(t, "k1")), "the real key still works")
}

// forger is a key the identity provider never published. A few are made
// once and reused: making a 2048-bit key per token would make the test
// slow, not the server.
func forger(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	forgersOnce.Do(func() {
		for range 4 {
			key, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			forgers = append(forgers, key)
		}
	})
	jtiSeq.Lock()
	i := jtiSeq.n
	jtiSeq.Unlock()
	return forgers[i%len(forgers)]
}

var (
	forgersOnce sync.Once
	forgers     []*rsa.PrivateKey
)

func TestOIDCKeyRotation(t *testing.T) {
	const (
		refresh    = 2 * time.Second
		minRefresh = time.Second
		// slack covers one fetch and a loaded machine: the key set is
		// fetched on schedule, then the next call sees the new set.
		slack = 2 * time.Second
	)
	idp := newTestIDP(t, "k1", "k2")
	k := startProduction(t, idp, true, map[string]string{
		"KONTAKT_AUTH_OIDC_JWKS_REFRESH_INTERVAL":     refresh.String(),
		"KONTAKT_AUTH_OIDC_JWKS_MIN_REFRESH_INTERVAL": minRefresh.String(),
	})
	rc := routingv1.NewRoutingServiceClient(k.Dial(t))

	// One token, sent again and again as a client does: it is remembered
	// by the server, which must not outlive its key.
	t2 := idp.token(t, "k2")
	require.Equal(t, codes.OK, listQueues(t, rc, t2))

	removed := idp.removeKey("k2")
	var refusedAfter time.Duration
	ok := eventually(refresh+slack+5*time.Second, func() bool {
		if listQueues(t, rc, t2) == codes.Unauthenticated {
			refusedAfter = time.Since(removed)
			return true
		}
		return false
	})
	require.True(t, ok, "a token signed with a key removed from the key set was still accepted %s after the removal (refresh interval %s)",
		time.Since(removed).Round(time.Millisecond), refresh)
	t.Logf("key removed from the set: its token refused %s later (refresh interval %s)", refusedAfter.Round(time.Millisecond), refresh)
	require.LessOrEqual(t, refusedAfter, refresh+slack, "the removed key was honoured longer than the documented interval")
	for range 5 {
		require.Equal(t, codes.Unauthenticated, listQueues(t, rc, t2), "a removed key stays refused")
		require.Equal(t, codes.Unauthenticated, listQueues(t, rc, idp.token(t, "k2")))
	}
	require.Equal(t, codes.OK, listQueues(t, rc, idp.token(t, "k1")), "the key still published still works")

	added := idp.addKey(t, "k3")
	t3 := idp.token(t, "k3")
	var acceptedAfter time.Duration
	var lastSent time.Time
	ok = eventually(refresh+slack, func() bool {
		lastSent = time.Now()
		if listQueues(t, rc, t3) == codes.OK {
			acceptedAfter = time.Since(added)
			return true
		}
		return false
	})
	require.True(t, ok, "a key added to the set was not accepted within %s", refresh+slack)
	// Fetches before the call that was accepted (that call may have made
	// the fetch it needed itself).
	fetched := idp.fetchCount(added, false) - idp.fetchCount(lastSent, false)
	t.Logf("key added to the set: accepted %s later, with %d fetch(es) before the accepted call", acceptedAfter.Round(time.Millisecond), fetched)
	require.LessOrEqual(t, fetched, 1, "a new key must be accepted after the first fetch that offers it")

	// The provider fails: the last good set stays in use, and the
	// operator is told.
	idp.setFailing(true)
	failedSince := time.Now()
	require.True(t, eventually(3*refresh+slack, func() bool { return idp.fetchCount(failedSince, true) >= 2 }),
		"kontakt did not try the key set again on schedule")
	require.Equal(t, codes.OK, listQueues(t, rc, idp.token(t, "k3")), "a failed refresh must keep the last good set")
	require.Equal(t, codes.Unauthenticated, listQueues(t, rc, t2))
	require.True(t, eventually(5*time.Second, func() bool {
		return strings.Contains(k.stderr.String(), "fetching the identity provider's key set failed")
	}), "a failed key set fetch must be logged")
	// And the failures show in the metrics an operator alerts on.
	resp, err := http.Get("http://" + k.Metrics + "/metrics")
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Regexp(t, `kontakt_auth_jwks_fetches_total\{reason="schedule",result="error"\} [1-9]`, string(body))
	require.Contains(t, string(body), "kontakt_auth_jwks_last_success_timestamp_seconds")
	idp.setFailing(false)
}
