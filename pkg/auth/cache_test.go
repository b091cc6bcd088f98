package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// countingVerifier accepts tokens starting with "ok" and counts its calls.
type countingVerifier struct {
	calls   int
	expires time.Time
}

func (v *countingVerifier) Verify(_ context.Context, raw string) (Principal, error) {
	v.calls++
	if len(raw) < 2 || raw[:2] != "ok" {
		return Principal{}, ErrInvalidToken
	}
	return Principal{Subject: raw, Roles: []Role{RoleAgent}, Queues: []string{"q"}, ExpiresAt: v.expires}, nil
}

// rotatingVerifier is a countingVerifier whose keys change.
type rotatingVerifier struct {
	countingVerifier
	gen uint64
}

func (v *rotatingVerifier) KeyGeneration() uint64 { return v.gen }

func TestCachingVerifier(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ctx := context.Background()

	t.Run("verifies a token once within the TTL", func(t *testing.T) {
		next := &countingVerifier{expires: now.Add(time.Hour)}
		c := NewCachingVerifier(next, time.Minute, 10, clock)
		for range 5 {
			p, err := c.Verify(ctx, "ok-1")
			require.NoError(t, err)
			require.Equal(t, "ok-1", p.Subject)
		}
		require.Equal(t, 1, next.calls)
		now = now.Add(time.Minute)
		_, err := c.Verify(ctx, "ok-1")
		require.NoError(t, err)
		require.Equal(t, 2, next.calls, "after the TTL the token is checked again")
	})
	t.Run("never past the token's expiry", func(t *testing.T) {
		next := &countingVerifier{expires: now.Add(10 * time.Second)}
		c := NewCachingVerifier(next, time.Minute, 10, clock)
		_, err := c.Verify(ctx, "ok-2")
		require.NoError(t, err)
		now = now.Add(10 * time.Second)
		_, err = c.Verify(ctx, "ok-2")
		require.NoError(t, err)
		require.Equal(t, 2, next.calls, "an expired token goes back to the verifier, which refuses it")
	})
	t.Run("a new key generation voids every entry", func(t *testing.T) {
		next := &rotatingVerifier{countingVerifier: countingVerifier{expires: now.Add(time.Hour)}}
		c := NewCachingVerifier(next, time.Minute, 10, clock)
		for range 3 {
			_, err := c.Verify(ctx, "ok-3")
			require.NoError(t, err)
		}
		require.Equal(t, 1, next.calls)
		next.gen++
		_, err := c.Verify(ctx, "ok-3")
		require.NoError(t, err)
		require.Equal(t, 2, next.calls, "after the key set changed the token is checked again at once, not a TTL later")
		_, err = c.Verify(ctx, "ok-3")
		require.NoError(t, err)
		require.Equal(t, 2, next.calls, "and then remembered under the new generation")
	})
	t.Run("failures are not cached", func(t *testing.T) {
		next := &countingVerifier{expires: now.Add(time.Hour)}
		c := NewCachingVerifier(next, time.Minute, 10, clock)
		for range 3 {
			_, err := c.Verify(ctx, "bad")
			require.True(t, errors.Is(err, ErrInvalidToken))
		}
		require.Equal(t, 3, next.calls)
	})
	t.Run("bounded, and callers cannot change cached principals", func(t *testing.T) {
		next := &countingVerifier{expires: now.Add(time.Hour)}
		c := NewCachingVerifier(next, time.Minute, 3, clock)
		for _, tok := range []string{"ok-a", "ok-b", "ok-c", "ok-d"} {
			_, err := c.Verify(ctx, tok)
			require.NoError(t, err)
		}
		require.LessOrEqual(t, len(c.entries), 3)
		p, err := c.Verify(ctx, "ok-d")
		require.NoError(t, err)
		p.Roles[0], p.Queues[0] = RoleSupervisor, "other"
		again, err := c.Verify(ctx, "ok-d")
		require.NoError(t, err)
		require.Equal(t, []Role{RoleAgent}, again.Roles)
		require.Equal(t, []string{"q"}, again.Queues)
	})
}
