package ratelimit

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// clock is a test clock moved by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestLimiter(t *testing.T, cfg Config) (*Limiter, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}
	cfg.Now = c.now
	l, err := New(cfg)
	require.NoError(t, err)
	return l, c
}

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
)

func TestBurstThenRate(t *testing.T) {
	l, c := newTestLimiter(t, Config{PerCredential: Limit{PerMinute: 60, Burst: 3}})
	for i := range 3 {
		require.Zero(t, l.Allow("client:a", addrA), "call %d is within the burst", i)
	}
	wait := l.Allow("client:a", addrA)
	require.Equal(t, time.Second, wait, "one token a second")
	require.Equal(t, 1, RetryAfterSeconds(wait))
	require.NotZero(t, l.Allow("client:a", addrA), "a refused call takes no token")
	require.Zero(t, l.Allow("client:b", addrA), "another credential has its own bucket")
	c.advance(time.Second)
	require.Zero(t, l.Allow("client:a", addrA), "after the wait the call is allowed")
}

func TestAddressBucketLimitsEveryCredential(t *testing.T) {
	l, _ := newTestLimiter(t, Config{
		PerCredential: Limit{PerMinute: 600, Burst: 10},
		PerAddress:    Limit{PerMinute: 60, Burst: 2},
	})
	require.Zero(t, l.Allow("client:a", addrA))
	require.Zero(t, l.Allow("client:b", addrA))
	require.NotZero(t, l.Allow("client:c", addrA), "the address's bucket is empty")
	require.Zero(t, l.Allow("client:c", addrB), "another address is not")
	// The refused call gave its credential token back: c still has 9 left
	// after its one call from B.
	for i := range 9 {
		require.Zero(t, l.Allow("client:c", netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})), "call %d", i)
	}
	require.NotZero(t, l.Allow("client:c", netip.MustParseAddr("203.0.113.9")))
}

func TestOffBucketsLimitNothing(t *testing.T) {
	l, _ := newTestLimiter(t, Config{})
	for range 1000 {
		require.Zero(t, l.Allow("client:a", addrA))
	}
	creds, addrs := l.Len()
	require.Zero(t, creds+addrs, "no buckets are kept when limiting is off")
}

func TestMemoryIsBounded(t *testing.T) {
	l, c := newTestLimiter(t, Config{PerAddress: Limit{PerMinute: 60, Burst: 5}, MaxKeys: 1000})
	for i := range 100_000 {
		l.Allow("", netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	_, addrs := l.Len()
	require.Equal(t, 1000, addrs, "a flood of addresses keeps at most MaxKeys buckets")

	// Once the buckets have refilled they are idle and go, two per call.
	c.advance(10 * time.Second)
	for range 600 {
		l.Allow("", addrA)
	}
	_, addrs = l.Len()
	require.Less(t, addrs, 10, "idle buckets are dropped")
}

func TestIPv6IsLimitedPerSlash64(t *testing.T) {
	l, _ := newTestLimiter(t, Config{PerAddress: Limit{PerMinute: 60, Burst: 2}})
	for i := range 2 {
		require.Zero(t, l.Allow("", netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2::%x", i+1))))
	}
	require.NotZero(t, l.Allow("", netip.MustParseAddr("2001:db8:1:2:ffff::1")), "same /64")
	require.Zero(t, l.Allow("", netip.MustParseAddr("2001:db8:1:3::1")), "another /64")
}

func TestClientAddr(t *testing.T) {
	proxies, err := ParseProxies([]string{"10.0.0.0/8", "192.0.2.7"})
	require.NoError(t, err)
	l, _ := newTestLimiter(t, Config{TrustedProxies: proxies})
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{name: "direct client", remote: "198.51.100.4:5555", want: "198.51.100.4"},
		{name: "direct client lies", remote: "198.51.100.4:5555", xff: []string{"203.0.113.1"}, want: "198.51.100.4"},
		{name: "through a trusted proxy", remote: "10.1.2.3:443", xff: []string{"203.0.113.1"}, want: "203.0.113.1"},
		{name: "forged hops before the proxy's", remote: "10.1.2.3:443", xff: []string{"1.1.1.1, 203.0.113.1"}, want: "203.0.113.1"},
		{name: "two trusted proxies", remote: "192.0.2.7:443", xff: []string{"203.0.113.1", "10.9.9.9"}, want: "203.0.113.1"},
		{name: "broken chain", remote: "10.1.2.3:443", xff: []string{"not-an-address"}, want: "10.1.2.3"},
		{name: "no header", remote: "10.1.2.3:443", want: "10.1.2.3"},
		{name: "mapped IPv4", remote: "[::ffff:198.51.100.4]:1", want: "198.51.100.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, l.ClientAddr(tt.remote, tt.xff).String())
		})
	}
	_, err = ParseProxies([]string{"nonsense"})
	require.Error(t, err)
}

func TestNewRefusesEmptyBurst(t *testing.T) {
	_, err := New(Config{PerAddress: Limit{PerMinute: 10}})
	require.ErrorContains(t, err, "burst")
}
