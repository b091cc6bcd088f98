package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of the key set's refresh schedule.
const (
	// DefaultJWKSRefreshInterval is how often the identity provider's key
	// set is fetched on schedule, and so the longest a key removed from it
	// is still honoured (while the provider answers).
	DefaultJWKSRefreshInterval = 5 * time.Minute
	// DefaultJWKSMinRefreshInterval is the least time between two fetches
	// caused by tokens naming a key id the set does not hold. A provider
	// that rotates its keys publishes the new key before it signs with it,
	// so one fetch per interval finds it; more would let anyone who can
	// send a forged token make kontakt hammer the provider.
	DefaultJWKSMinRefreshInterval = 30 * time.Second
)

// maxJWKSBytes bounds a key set document. Real sets hold a handful of
// keys (a few KiB); a larger answer is a fault, and must not be read into
// memory whole.
const maxJWKSBytes = 1 << 20

// Errors of key set verification. They wrap into ErrInvalidToken through
// OIDCVerifier.Verify, so callers never need them; tests and logs do.
var (
	// errNoKeySet: no key set was ever fetched, so nothing can verify.
	errNoKeySet = errors.New("no key set has been fetched from the identity provider yet")
	// errUnknownKey: the token names a key the current set does not hold.
	errUnknownKey = errors.New("token signed with a key that is not in the identity provider's key set")
	// errBadSignature: the named key does not verify the signature.
	errBadSignature = errors.New("signature does not verify")
)

// keySnapshot is one fetched key set. It is never changed after it is
// published, so readers need no lock.
type keySnapshot struct {
	keys      []jose.JSONWebKey
	fetchedAt time.Time
	// fingerprint identifies the set's content (key ids and thumbprints),
	// to tell a changed set from the same set fetched again.
	fingerprint string
}

// refreshCall is one fetch that several callers wait for.
type refreshCall struct {
	done chan struct{}
	err  error
}

// keySetConfig configures a remoteKeySet.
type keySetConfig struct {
	// fetch gets the current key set from the provider.
	fetch func(context.Context) ([]jose.JSONWebKey, error)
	// algorithms are the signature algorithms a token may use.
	algorithms []jose.SignatureAlgorithm
	// refreshInterval is the schedule; minRefreshInterval bounds fetches
	// caused by unknown key ids.
	refreshInterval, minRefreshInterval time.Duration
	logger                              *slog.Logger
}

// remoteKeySet is the identity provider's key set as kontakt holds it: an
// oidc.KeySet (go-oidc calls VerifySignature after checking the algorithm)
// that keeps the current set in memory and fetches it on a schedule.
//
// It replaces go-oidc's RemoteKeySet, which fetches the set again whenever a
// token fails to verify with the cached keys: every forged token (a bad
// signature or a made-up key id) cost a request to the provider, and a key
// the provider removed was honoured until some such token happened to force
// a fetch. Here:
//
//   - the set is fetched at start and then every refreshInterval, so a key
//     removed from it stops verifying within that interval;
//   - a token naming a key id the set does not hold (a rotation kontakt has
//     not seen yet) causes at most one fetch per minRefreshInterval, shared by
//     every caller waiting at that moment; within the interval it is refused
//     at once;
//   - a bad signature under a known key id never causes a fetch: the set is
//     not stale, the token is forged;
//   - a failed fetch keeps the last good set (logged at WARN and counted),
//     and while no set was ever fetched every token is refused.
type remoteKeySet struct {
	cfg keySetConfig

	snap       atomic.Pointer[keySnapshot]
	generation atomic.Uint64

	mu        sync.Mutex
	inflight  *refreshCall
	lastFetch time.Time // start of the last fetch, on schedule or on demand

	stop     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once

	fetches   *prometheus.CounterVec
	keysGauge prometheus.Gauge
	lastOK    prometheus.Gauge
}

// newRemoteKeySet builds the key set and starts its schedule, whose first
// fetch begins at once. Close stops it.
func newRemoteKeySet(cfg keySetConfig) *remoteKeySet {
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.refreshInterval <= 0 {
		cfg.refreshInterval = DefaultJWKSRefreshInterval
	}
	if cfg.minRefreshInterval <= 0 {
		cfg.minRefreshInterval = DefaultJWKSMinRefreshInterval
	}
	k := &remoteKeySet{
		cfg:     cfg,
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kontakt_auth_jwks_fetches_total",
			Help: "Fetches of the identity provider's key set, by reason (schedule, unknown_key) and result (ok, error).",
		}, []string{"reason", "result"}),
		keysGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kontakt_auth_jwks_keys",
			Help: "Keys in the identity provider's key set as last fetched.",
		}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kontakt_auth_jwks_last_success_timestamp_seconds",
			Help: "When the identity provider's key set was last fetched successfully (Unix time); a stale value means kontakt is verifying with an old set.",
		}),
	}
	for _, reason := range []string{reasonSchedule, reasonUnknownKey} {
		for _, result := range []string{"ok", "error"} {
			k.fetches.WithLabelValues(reason, result)
		}
	}
	go k.run()
	return k
}

const (
	reasonSchedule   = "schedule"
	reasonUnknownKey = "unknown_key"
)

// collectors are the key set's metrics.
func (k *remoteKeySet) collectors() []prometheus.Collector {
	return []prometheus.Collector{k.fetches, k.keysGauge, k.lastOK}
}

// close stops the schedule and waits for it to end. A fetch in flight is
// abandoned, so close returns promptly.
func (k *remoteKeySet) close() {
	k.stopOnce.Do(func() { close(k.stop) })
	<-k.stopped
}

// run fetches the set now and then on schedule until close. After a failed
// fetch it tries again sooner, after minRefreshInterval, so a provider that
// was briefly away (or away at start) is reached soon after it is back.
func (k *remoteKeySet) run() {
	defer close(k.stopped)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-k.stop
		cancel()
	}()
	for {
		wait := k.cfg.refreshInterval
		if err := k.refresh(ctx, reasonSchedule); err != nil {
			wait = min(k.cfg.minRefreshInterval, k.cfg.refreshInterval)
		}
		t := time.NewTimer(wait)
		select {
		case <-k.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// refresh fetches the set, or waits for a fetch already under way. It
// returns that fetch's error, or ctx's if ctx ends first.
func (k *remoteKeySet) refresh(ctx context.Context, reason string) error {
	k.mu.Lock()
	call := k.inflight
	if call == nil {
		call = k.startFetch(reason)
	}
	k.mu.Unlock()
	return k.await(ctx, call)
}

// refreshForUnknownKey is refresh for a token whose key id the set does
// not hold: it joins a fetch under way, starts one when the last began
// minRefreshInterval ago or longer, and otherwise returns errUnknownKey at
// once without any fetch.
func (k *remoteKeySet) refreshForUnknownKey(ctx context.Context) error {
	k.mu.Lock()
	call := k.inflight
	if call == nil {
		if !k.lastFetch.IsZero() && time.Since(k.lastFetch) < k.cfg.minRefreshInterval {
			k.mu.Unlock()
			return errUnknownKey
		}
		call = k.startFetch(reasonUnknownKey)
	}
	k.mu.Unlock()
	return k.await(ctx, call)
}

// startFetch starts one fetch; k.mu must be held. The fetch runs on its
// own context, bounded by the HTTP client's time-out, so a caller that
// gives up does not cancel it for the others.
func (k *remoteKeySet) startFetch(reason string) *refreshCall {
	call := &refreshCall{done: make(chan struct{})}
	k.inflight = call
	k.lastFetch = time.Now()
	go func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-k.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		keys, err := k.cfg.fetch(ctx)
		if err == nil {
			k.publish(keys)
			k.fetches.WithLabelValues(reason, "ok").Inc()
		} else {
			k.fetches.WithLabelValues(reason, "error").Inc()
			held := "none: every token is refused until a fetch succeeds"
			if s := k.snap.Load(); s != nil {
				held = fmt.Sprintf("the set fetched at %s", s.fetchedAt.UTC().Format(time.RFC3339))
			}
			k.cfg.logger.Warn("auth: fetching the identity provider's key set failed; verifying with the last good set",
				slog.String("reason", reason), slog.String("last_good_set", held), slog.String("error", truncate(err.Error(), 512)))
		}
		call.err = err
		k.mu.Lock()
		k.inflight = nil
		k.mu.Unlock()
		close(call.done)
	}()
	return call
}

func (k *remoteKeySet) await(ctx context.Context, call *refreshCall) error {
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// publish makes keys the current set. A set whose content differs from the
// last one advances the generation, which tells CachingVerifier to forget
// the tokens it verified with the old set.
func (k *remoteKeySet) publish(keys []jose.JSONWebKey) {
	s := &keySnapshot{keys: keys, fetchedAt: time.Now(), fingerprint: fingerprint(keys)}
	old := k.snap.Swap(s)
	k.keysGauge.Set(float64(len(keys)))
	k.lastOK.Set(float64(s.fetchedAt.Unix()))
	if old == nil || old.fingerprint != s.fingerprint {
		k.generation.Add(1)
		ids := make([]string, 0, len(keys))
		for _, key := range keys {
			ids = append(ids, key.KeyID)
		}
		k.cfg.logger.Info("auth: identity provider's key set loaded", slog.Int("keys", len(keys)), slog.Any("key_ids", ids))
		if len(keys) == 0 {
			k.cfg.logger.Warn("auth: the identity provider's key set holds no usable signing key; every token is refused")
		}
	}
}

// VerifySignature implements oidc.KeySet. go-oidc has checked the
// algorithm against the allow-list before calling it and checks the claims
// after; this checks the signature with the key the token names.
func (k *remoteKeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, k.cfg.algorithms)
	if err != nil {
		return nil, fmt.Errorf("malformed token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("token must carry exactly one signature")
	}
	header := jws.Signatures[0].Header
	snap := k.snap.Load()
	if snap != nil {
		if payload, known, err := verifyWith(snap.keys, jws, header); known {
			return payload, err
		}
	}
	// The set does not hold the key (or there is no set yet): a rotation
	// kontakt has not seen, or a forgery. Look once, within the limit.
	if err := k.refreshForUnknownKey(ctx); err != nil {
		if snap == nil && k.snap.Load() == nil {
			return nil, fmt.Errorf("%w: %w", errNoKeySet, err)
		}
		if errors.Is(err, errUnknownKey) {
			return nil, err
		}
		// The fetch failed; the last good set (if any) was kept.
		return nil, fmt.Errorf("%w (refresh failed: %w)", errUnknownKey, err)
	}
	if snap = k.snap.Load(); snap != nil {
		if payload, known, err := verifyWith(snap.keys, jws, header); known {
			return payload, err
		}
	}
	return nil, errUnknownKey
}

// verifyWith checks the signature with the keys the header names: the key
// with its key id, or, for a token without one, every key. known is false
// when no key of the set was a candidate, which is the case that may
// justify a fetch.
func verifyWith(keys []jose.JSONWebKey, jws *jose.JSONWebSignature, header jose.Header) (payload []byte, known bool, err error) {
	for i := range keys {
		key := &keys[i]
		if header.KeyID != "" && key.KeyID != header.KeyID {
			continue
		}
		if key.Algorithm != "" && key.Algorithm != header.Algorithm {
			// The provider says what this key signs with; a token that
			// claims another algorithm with it is not the provider's.
			if header.KeyID != "" {
				known = true
			}
			continue
		}
		known = true
		if p, err := jws.Verify(key); err == nil {
			return p, true, nil
		}
	}
	if known {
		return nil, true, errBadSignature
	}
	return nil, false, nil
}

// fingerprint identifies a key set by its key ids and key thumbprints.
func fingerprint(keys []jose.JSONWebKey) string {
	parts := make([]string, 0, len(keys))
	for _, key := range keys {
		tp, _ := key.Thumbprint(crypto.SHA256)
		parts = append(parts, fmt.Sprintf("%s:%s:%x", key.KeyID, key.Algorithm, tp))
	}
	slices.Sort(parts)
	var b bytes.Buffer
	for _, p := range parts {
		b.WriteString(p)
		b.WriteByte('\n')
	}
	return b.String()
}

// httpFetcher returns the fetch function of a key set served at url.
func httpFetcher(client *http.Client, url string) func(context.Context) ([]jose.JSONWebKey, error) {
	return func(ctx context.Context) ([]jose.JSONWebKey, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json, application/jwk-set+json")
		// Proxies must not answer from a cache: a removed key has to
		// disappear when the provider says so.
		req.Header.Set("Cache-Control", "no-cache")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != http.StatusOK {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxJWKSBytes))
			return nil, fmt.Errorf("key set answer %s", resp.Status)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
		if err != nil {
			return nil, fmt.Errorf("read key set: %w", err)
		}
		if len(body) > maxJWKSBytes {
			return nil, fmt.Errorf("key set larger than %d bytes", maxJWKSBytes)
		}
		return parseJWKS(body)
	}
}

// parseJWKS reads a JWK Set (RFC 7517) with go-jose, keeping the public
// signature keys kontakt can use. As RFC 7517 section 5 asks, a key of a
// type or algorithm it does not understand, or with members missing or out
// of range, is skipped rather than failing the whole set (providers publish
// such keys for other clients, and one broken key must not lock everyone
// out); so are encryption keys and symmetric keys, which never verify a
// token here. The key ids kept are logged when the set changes.
func parseJWKS(body []byte) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("key set is not a JWK Set: %w", err)
	}
	if raw.Keys == nil {
		return nil, errors.New(`key set is not a JWK Set: no "keys"`)
	}
	supported := map[string]bool{}
	for _, a := range asymmetricAlgorithms() {
		supported[a] = true
	}
	keys := []jose.JSONWebKey{}
	for _, r := range *raw.Keys {
		var meta struct {
			Alg string `json:"alg"`
			Use string `json:"use"`
		}
		if err := json.Unmarshal(r, &meta); err != nil {
			return nil, fmt.Errorf("key set holds a key that is not an object: %w", err)
		}
		if (meta.Alg != "" && !supported[meta.Alg]) || (meta.Use != "" && meta.Use != "sig") {
			continue
		}
		var key jose.JSONWebKey
		if err := json.Unmarshal(r, &key); err != nil || !key.Valid() {
			continue
		}
		if !key.IsPublic() {
			// A provider must never publish a private key, but if it
			// does, only its public half is kept in memory.
			key = key.Public()
		}
		switch key.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys = append(keys, key)
		}
	}
	return keys, nil
}
