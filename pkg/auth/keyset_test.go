package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// fakeJWKS is an identity provider's key set that the key set under test
// fetches directly (no network, so synctest can run the schedule).
type fakeJWKS struct {
	mu      sync.Mutex
	keys    map[string]ed25519.PrivateKey
	fetches int
	fail    error
	// hold, when set, makes fetches wait until it is closed.
	hold chan struct{}
}

func newFakeJWKS(kids ...string) *fakeJWKS {
	f := &fakeJWKS{keys: map[string]ed25519.PrivateKey{}}
	for _, kid := range kids {
		f.add(kid)
	}
	return f
}

func (f *fakeJWKS) add(kid string) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	f.mu.Lock()
	f.keys[kid] = priv
	f.mu.Unlock()
}

func (f *fakeJWKS) remove(kid string) {
	f.mu.Lock()
	delete(f.keys, kid)
	f.mu.Unlock()
}

func (f *fakeJWKS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fetches
}

func (f *fakeJWKS) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	f.mu.Lock()
	f.fetches++
	hold, fail := f.hold, f.fail
	var keys []jose.JSONWebKey
	for kid, priv := range f.keys {
		keys = append(keys, jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"})
	}
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail != nil {
		return nil, fail
	}
	return keys, nil
}

// sign signs a payload with the key of kid (or, when the set no longer
// has it, with a key of its own: the forger's).
func (f *fakeJWKS) sign(t *testing.T, kid string) string {
	t.Helper()
	f.mu.Lock()
	priv, ok := f.keys[kid]
	f.mu.Unlock()
	if !ok {
		_, priv, _ = ed25519.GenerateKey(rand.Reader)
	}
	return signWith(t, priv, kid)
}

func signWith(t *testing.T, priv ed25519.PrivateKey, kid string) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv}, opts)
	require.NoError(t, err)
	jws, err := s.Sign([]byte(`{"sub":"x"}`))
	require.NoError(t, err)
	out, err := jws.CompactSerialize()
	require.NoError(t, err)
	return out
}

func forged(t *testing.T, kid string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return signWith(t, priv, kid)
}

const (
	testRefresh    = 5 * time.Minute
	testMinRefresh = 30 * time.Second
)

// newTestKeySet starts a key set over f inside the synctest bubble and
// waits for its first fetch.
func newTestKeySet(t *testing.T, f *fakeJWKS) (*remoteKeySet, *logBuffer) {
	t.Helper()
	logger, logs := newTestLogger()
	k := newRemoteKeySet(keySetConfig{
		fetch:              f.fetch,
		algorithms:         []jose.SignatureAlgorithm{jose.EdDSA, jose.RS256},
		refreshInterval:    testRefresh,
		minRefreshInterval: testMinRefresh,
		logger:             logger,
	})
	t.Cleanup(k.close)
	synctest.Wait()
	return k, logs
}

func TestRemoteKeySetFetchesOnScheduleOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeJWKS("k1")
		k, _ := newTestKeySet(t, f)
		require.Equal(t, 1, f.count(), "the set is fetched at start")

		_, err := k.VerifySignature(t.Context(), f.sign(t, "k1"))
		require.NoError(t, err)
		for range 200 {
			_, err := k.VerifySignature(t.Context(), forged(t, "k1"))
			require.ErrorIs(t, err, errBadSignature)
		}
		for range 200 {
			_, err := k.VerifySignature(t.Context(), forged(t, ""))
			require.ErrorIs(t, err, errBadSignature, "without a key id every key is a candidate, and none verifies")
		}
		require.Equal(t, 1, f.count(), "a bad signature under a known key never causes a fetch")

		time.Sleep(testRefresh)
		synctest.Wait()
		require.Equal(t, 2, f.count(), "the schedule fetches again after the refresh interval")
		time.Sleep(10 * testRefresh)
		synctest.Wait()
		require.Equal(t, 12, f.count())
		require.Equal(t, 12.0, testutil.ToFloat64(k.fetches.WithLabelValues(reasonSchedule, "ok")))
	})
}

func TestRemoteKeySetUnknownKeyIDsAreRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeJWKS("k1")
		k, _ := newTestKeySet(t, f)

		// Within the minimum interval of the start-up fetch: refused at
		// once, no fetch.
		for range 200 {
			_, err := k.VerifySignature(t.Context(), forged(t, "made-up"))
			require.ErrorIs(t, err, errUnknownKey)
		}
		require.Equal(t, 1, f.count())

		// After it, one fetch for a crowd of concurrent callers, however
		// many there are, and none for the callers after it.
		time.Sleep(testMinRefresh)
		f.mu.Lock()
		f.hold = make(chan struct{})
		hold := f.hold
		f.mu.Unlock()
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for range 50 {
			wg.Go(func() {
				_, err := k.VerifySignature(context.Background(), forged(t, "made-up"))
				errs <- err
			})
		}
		synctest.Wait()
		require.Equal(t, 2, f.count(), "concurrent callers share one fetch")
		close(hold)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.ErrorIs(t, err, errUnknownKey)
		}
		for range 200 {
			_, err := k.VerifySignature(t.Context(), forged(t, "made-up-too"))
			require.ErrorIs(t, err, errUnknownKey)
		}
		require.Equal(t, 2, f.count())
		require.Equal(t, 1.0, testutil.ToFloat64(k.fetches.WithLabelValues(reasonUnknownKey, "ok")))

		// An attacker sending unknown key ids for ten minutes costs one
		// fetch per minimum interval plus the schedule's.
		for range 20 {
			time.Sleep(testMinRefresh)
			for range 10 {
				_, _ = k.VerifySignature(t.Context(), forged(t, "made-up"))
			}
		}
		synctest.Wait()
		require.LessOrEqual(t, f.count(), 2+20+2)
	})
}

func TestRemoteKeySetRotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeJWKS("old")
		k, logs := newTestKeySet(t, f)
		oldToken := f.sign(t, "old")
		_, err := k.VerifySignature(t.Context(), oldToken)
		require.NoError(t, err)
		gen := k.generation.Load()

		// A new key is accepted after one fetch.
		time.Sleep(testMinRefresh)
		f.add("new")
		before := f.count()
		_, err = k.VerifySignature(t.Context(), f.sign(t, "new"))
		require.NoError(t, err)
		require.Equal(t, before+1, f.count())
		require.Greater(t, k.generation.Load(), gen, "a changed set is a new generation")

		// The same set fetched again is the same generation.
		gen = k.generation.Load()
		time.Sleep(testRefresh)
		synctest.Wait()
		require.Equal(t, gen, k.generation.Load())

		// A removed key stops verifying within the refresh interval.
		f.remove("old")
		_, err = k.VerifySignature(t.Context(), oldToken)
		require.NoError(t, err, "until the next scheduled fetch the old set holds")
		time.Sleep(testRefresh)
		synctest.Wait()
		_, err = k.VerifySignature(t.Context(), oldToken)
		require.ErrorIs(t, err, errUnknownKey)
		require.Greater(t, k.generation.Load(), gen)
		require.Contains(t, logs.String(), "key set loaded")
	})
}

func TestRemoteKeySetFailures(t *testing.T) {
	t.Run("a failed refresh keeps the last good set", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFakeJWKS("k1")
			k, logs := newTestKeySet(t, f)
			f.mu.Lock()
			f.fail = errors.New("provider down")
			f.mu.Unlock()
			time.Sleep(testRefresh)
			synctest.Wait()
			require.Equal(t, 2, f.count())
			_, err := k.VerifySignature(t.Context(), f.sign(t, "k1"))
			require.NoError(t, err)
			require.Contains(t, logs.String(), "level=WARN")
			require.Contains(t, logs.String(), "provider down")
			require.Equal(t, 1.0, testutil.ToFloat64(k.fetches.WithLabelValues(reasonSchedule, "error")))

			// A failed fetch is tried again after the minimum interval.
			time.Sleep(testMinRefresh)
			synctest.Wait()
			require.Equal(t, 3, f.count())
		})
	})
	t.Run("no set ever fetched refuses everything", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFakeJWKS("k1")
			f.fail = errors.New("provider down")
			k, _ := newTestKeySet(t, f)
			for range 100 {
				_, err := k.VerifySignature(t.Context(), f.sign(t, "k1"))
				require.ErrorIs(t, err, errNoKeySet)
			}
			require.Equal(t, 1, f.count())
			time.Sleep(testMinRefresh)
			synctest.Wait()
			require.Equal(t, 2, f.count(), "retried after the minimum interval")
			f.mu.Lock()
			f.fail = nil
			f.mu.Unlock()
			time.Sleep(testMinRefresh)
			synctest.Wait()
			_, err := k.VerifySignature(t.Context(), f.sign(t, "k1"))
			require.NoError(t, err, "served once the provider answers")
		})
	})
	t.Run("a caller that gives up does not cancel the fetch", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFakeJWKS("k1")
			k, _ := newTestKeySet(t, f)
			time.Sleep(testMinRefresh)
			f.add("k2")
			f.mu.Lock()
			f.hold = make(chan struct{})
			hold := f.hold
			f.mu.Unlock()
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			_, err := k.VerifySignature(ctx, f.sign(t, "k2"))
			require.ErrorIs(t, err, context.Canceled)
			close(hold)
			synctest.Wait()
			_, err = k.VerifySignature(t.Context(), f.sign(t, "k2"))
			require.NoError(t, err)
		})
	})
}

func TestVerifyWithChecksTheKeysAlgorithm(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	tok := signWith(t, priv, "k1")
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	require.NoError(t, err)
	header := jws.Signatures[0].Header

	_, known, err := verifyWith([]jose.JSONWebKey{{Key: priv.Public(), KeyID: "k1", Algorithm: "ES256"}}, jws, header)
	require.True(t, known, "a known key id with the wrong algorithm is a bad signature, not a reason to fetch")
	require.ErrorIs(t, err, errBadSignature)

	p, known, err := verifyWith([]jose.JSONWebKey{{Key: priv.Public(), KeyID: "k1"}}, jws, header)
	require.True(t, known)
	require.NoError(t, err)
	require.JSONEq(t, `{"sub":"x"}`, string(p))
}

func TestParseJWKS(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	jwk := func(k jose.JSONWebKey) json.RawMessage {
		b, err := json.Marshal(k)
		require.NoError(t, err)
		return b
	}
	set := func(keys ...json.RawMessage) []byte {
		b, err := json.Marshal(map[string]any{"keys": keys})
		require.NoError(t, err)
		return b
	}

	tests := []struct {
		name    string
		body    []byte
		wantIDs []string
		wantErr bool
	}{
		{
			name:    "RSA and Ed25519 signature keys",
			body:    set(jwk(jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "r", Algorithm: "RS256", Use: "sig"}), jwk(jose.JSONWebKey{Key: edPub, KeyID: "e"})),
			wantIDs: []string{"r", "e"},
		},
		{
			name: "encryption, symmetric and unsupported keys are skipped",
			body: set(
				jwk(jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "enc", Use: "enc"}),
				jwk(jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "hmac", Algorithm: "HS256"}),
				jwk(jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "oct"}),
				json.RawMessage(`{"kty":"EC","crv":"secp256k1","alg":"ES256K","kid":"k256","x":"AA","y":"AA"}`),
				json.RawMessage(`{"kty":"OKP","crv":"Ed448","kid":"ed448","x":"AA"}`),
				jwk(jose.JSONWebKey{Key: edPub, KeyID: "e"}),
			),
			wantIDs: []string{"e"},
		},
		{
			name:    "a published private key keeps only its public half",
			body:    set(jwk(jose.JSONWebKey{Key: edPriv, KeyID: "p"})),
			wantIDs: []string{"p"},
		},
		{name: "an empty set is a set", body: []byte(`{"keys":[]}`), wantIDs: []string{}},
		{name: "not JSON", body: []byte(`<html>login</html>`), wantErr: true},
		{name: "no keys member", body: []byte(`{"issuer":"x"}`), wantErr: true},
		{name: "a key that is not an object", body: []byte(`{"keys":[3]}`), wantErr: true},
		{
			name: "broken keys are skipped",
			body: set(
				json.RawMessage(`{"kty":"RSA","kid":"empty","n":"","e":""}`),
				json.RawMessage(`{"kty":"RSA","kid":"no-modulus","e":"AQAB"}`),
				json.RawMessage(`{"kty":"EC","crv":"P-256","kid":"off-curve","x":"AQ","y":"AQ"}`),
				jwk(jose.JSONWebKey{Key: edPub, KeyID: "e"}),
			),
			wantIDs: []string{"e"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := parseJWKS(tt.body)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			ids := []string{}
			for _, k := range keys {
				require.True(t, k.IsPublic())
				ids = append(ids, k.KeyID)
			}
			require.Equal(t, tt.wantIDs, ids)
		})
	}
}
