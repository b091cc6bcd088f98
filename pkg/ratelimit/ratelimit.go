// Package ratelimit limits public submissions (e-service forms, Open311
// posts) with token buckets, one per credential and one per client address,
// so that neither one leaked form credential nor one busy address can flood
// intake. Which calls count as public submissions is declared in the API
// (the public_submission flag of the access option); Open311, a plain HTTP
// route, asks the same Limiter itself.
//
// Memory is bounded: each dimension keeps at most MaxKeys buckets, least
// recently used first out, and a bucket that has filled up again (idle for
// burst/rate) is dropped as soon as it is the oldest, since a full bucket
// holds no state. A flood of distinct addresses therefore costs at most
// MaxKeys buckets (IPv6 addresses are counted per /64, the block one
// subscriber usually holds).
package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// DefaultMaxKeys is how many buckets each dimension keeps at most.
const DefaultMaxKeys = 65536

// Limit is one token bucket: PerMinute calls per minute on average, and up
// to Burst at once after a quiet spell.
type Limit struct {
	// PerMinute is the refill rate; 0 turns this bucket off.
	PerMinute int
	// Burst is the bucket's size.
	Burst int
}

// Enabled reports whether the bucket limits anything.
func (l Limit) Enabled() bool { return l.PerMinute > 0 }

// Config says how public submissions are limited.
type Config struct {
	// PerCredential limits each form credential (one e-service).
	PerCredential Limit
	// PerAddress limits each client address.
	PerAddress Limit
	// TrustedProxies are the reverse proxies whose X-Forwarded-For header
	// is believed. From any other peer the header is ignored: a client
	// could otherwise pick a fresh address for every call.
	TrustedProxies []netip.Prefix
	// MaxKeys bounds the buckets kept per dimension; 0 means
	// DefaultMaxKeys.
	MaxKeys int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Limiter holds the buckets. It is safe for concurrent use.
type Limiter struct {
	now     func() time.Time
	proxies []netip.Prefix

	mu          sync.Mutex
	credentials *buckets // nil when off
	addresses   *buckets // nil when off
}

// New builds a Limiter.
func New(cfg Config) (*Limiter, error) {
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Limiter{now: cfg.Now, proxies: cfg.TrustedProxies}
	var err error
	if l.credentials, err = newBuckets(cfg.PerCredential, cfg.MaxKeys); err != nil {
		return nil, fmt.Errorf("ratelimit: per credential: %w", err)
	}
	if l.addresses, err = newBuckets(cfg.PerAddress, cfg.MaxKeys); err != nil {
		return nil, fmt.Errorf("ratelimit: per address: %w", err)
	}
	return l, nil
}

// Allow takes one token from the credential's bucket and one from the
// address's bucket, or none at all: a call refused by one bucket does not
// use up the other. It returns 0 when the call may go ahead, and otherwise
// how long to wait before it would be allowed. An empty credential or an
// invalid address skips that bucket.
func (l *Limiter) Allow(credential string, addr netip.Addr) time.Duration {
	if l == nil {
		return 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var (
		taken []*rate.Reservation
		wait  time.Duration
	)
	take := func(b *buckets, key string) {
		if b == nil || key == "" {
			return
		}
		r := b.bucket(key, now).ReserveN(now, 1)
		if !r.OK() {
			wait = max(wait, time.Minute)
			return
		}
		taken = append(taken, r)
		wait = max(wait, r.DelayFrom(now))
	}
	take(l.credentials, credential)
	take(l.addresses, addressKey(addr))
	if wait > 0 {
		for _, r := range taken {
			r.CancelAt(now)
		}
	}
	return wait
}

// Len returns how many buckets each dimension holds now, for tests and
// metrics.
func (l *Limiter) Len() (credentials, addresses int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.credentials != nil {
		credentials = l.credentials.lru.Len()
	}
	if l.addresses != nil {
		addresses = l.addresses.lru.Len()
	}
	return credentials, addresses
}

// ClientAddr is the address a call is limited by: the peer's, or, when the
// peer is a trusted proxy, the nearest address in X-Forwarded-For (read
// from the right) that is not a trusted proxy. remote is host:port or a
// bare address; forwardedFor holds the header's values.
func (l *Limiter) ClientAddr(remote string, forwardedFor []string) netip.Addr {
	addr := parseRemote(remote)
	if l == nil || !l.trusted(addr) {
		return addr
	}
	var hops []string
	for _, v := range forwardedFor {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			// A broken chain: limit by the last proxy we can vouch for.
			return addr
		}
		hop = hop.Unmap()
		if !l.trusted(hop) {
			return hop
		}
		addr = hop
	}
	return addr
}

func (l *Limiter) trusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range l.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func parseRemote(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(remote); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// addressKey is the bucket key of an address: IPv4 as it is, IPv6 by its
// /64, since one subscriber usually holds a whole /64.
func addressKey(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return ""
	case a.Is4():
		return a.String()
	default:
		p, err := a.Prefix(64)
		if err != nil {
			return a.String()
		}
		return p.String()
	}
}

// RetryAfterSeconds rounds a wait up to whole seconds, at least one, as
// HTTP's Retry-After wants it.
func RetryAfterSeconds(wait time.Duration) int {
	return max(1, int(math.Ceil(wait.Seconds())))
}

// ParseProxies parses CIDR prefixes or single addresses.
func ParseProxies(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	var errs []error
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q is neither an address nor a CIDR prefix", s))
			continue
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, errors.Join(errs...)
}

// buckets is one dimension's token buckets, least recently used first.
type buckets struct {
	limit Limit
	lru   *simplelru.LRU[string, *rate.Limiter]
}

func newBuckets(limit Limit, maxKeys int) (*buckets, error) {
	if !limit.Enabled() {
		return nil, nil
	}
	if limit.Burst < 1 {
		return nil, errors.New("burst must be at least 1")
	}
	lru, err := simplelru.NewLRU[string, *rate.Limiter](maxKeys, nil)
	if err != nil {
		return nil, err
	}
	return &buckets{limit: limit, lru: lru}, nil
}

// bucket returns key's bucket, creating a full one if there is none. It
// first drops up to two idle buckets from the old end, so memory follows
// the number of recently active keys, not the number ever seen.
func (b *buckets) bucket(key string, now time.Time) *rate.Limiter {
	for range 2 {
		_, oldest, ok := b.lru.GetOldest()
		if !ok || oldest.TokensAt(now) < float64(b.limit.Burst) {
			break
		}
		b.lru.RemoveOldest()
	}
	if l, ok := b.lru.Get(key); ok {
		return l
	}
	l := rate.NewLimiter(rate.Limit(float64(b.limit.PerMinute)/60), b.limit.Burst)
	b.lru.Add(key, l) // evicts the least recently used bucket when full
	return l
}
