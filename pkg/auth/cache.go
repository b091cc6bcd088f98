package auth

import (
	"context"
	"crypto/sha256"
	"slices"
	"sync"
	"time"
)

// CachingVerifier remembers the tokens it has verified. Agents' browsers
// and e-services send the same bearer token with every call, and checking
// its signature again each time is a large share of a small call's CPU
// (an Ed25519 or RSA verification, and JSON decoding). An entry lives until
// the token expires or for the cache's TTL, whichever comes first, and no
// longer than the key set it was verified with: when the next verifier
// reports a new key generation (OIDCVerifier does when the identity
// provider's key set changes), every earlier entry is void, so a key
// removed from the set stops being honoured as soon as kontakt has fetched
// the set without it, not a TTL later. Failures are never cached. Entries
// are keyed by the token's SHA-256, so the cache holds nothing that could
// be replayed.
type CachingVerifier struct {
	next Verifier
	ttl  time.Duration
	max  int
	now  func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]cachedPrincipal
}

// keyGenerations is implemented by verifiers whose keys can change while
// they run (OIDCVerifier): the generation changes whenever they do.
type keyGenerations interface {
	KeyGeneration() uint64
}

type cachedPrincipal struct {
	p          Principal
	until      time.Time
	generation uint64
}

// generation is the next verifier's key generation (0 for one whose keys
// never change).
func (c *CachingVerifier) generation() uint64 {
	if g, ok := c.next.(keyGenerations); ok {
		return g.KeyGeneration()
	}
	return 0
}

// NewCachingVerifier wraps next. ttl bounds how long a verification is
// trusted, max how many tokens are remembered (the cache is cleared of
// expired entries, and then entirely, when it is full).
func NewCachingVerifier(next Verifier, ttl time.Duration, max int, now func() time.Time) *CachingVerifier {
	if next == nil {
		panic("auth: NewCachingVerifier called with a nil Verifier")
	}
	return &CachingVerifier{next: next, ttl: ttl, max: max, now: now, entries: map[[sha256.Size]byte]cachedPrincipal{}}
}

// Verify implements Verifier.
func (c *CachingVerifier) Verify(ctx context.Context, rawToken string) (Principal, error) {
	key := sha256.Sum256([]byte(rawToken))
	now := c.now()
	// Read before verifying: an entry verified while the key set changes
	// is stored under the old generation and so never used.
	gen := c.generation()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Before(e.until) && e.generation == gen {
		return clonePrincipal(e.p), nil
	}
	p, err := c.next.Verify(ctx, rawToken)
	if err != nil {
		return Principal{}, err
	}
	until := now.Add(c.ttl)
	if !p.ExpiresAt.IsZero() && p.ExpiresAt.Before(until) {
		until = p.ExpiresAt
	}
	c.mu.Lock()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.until) || e.generation != gen {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
	}
	c.entries[key] = cachedPrincipal{p: clonePrincipal(p), until: until, generation: gen}
	c.mu.Unlock()
	return p, nil
}

// clonePrincipal copies the slices, so no caller can change what the cache
// hands to the next one.
func clonePrincipal(p Principal) Principal {
	p.Roles = slices.Clone(p.Roles)
	p.Queues = slices.Clone(p.Queues)
	return p
}
