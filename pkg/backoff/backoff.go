// Package backoff is the one way kontakt waits before trying again: after
// a lost race for the end of a chain, while NATS elects a leader, after a
// failed accept, or while a subscription's server is away.
//
// A Policy says how the pause grows: it starts at Initial, doubles with
// every failure in a row up to Max, and with Jitter is a random time up to
// that ceiling ("full jitter"), so that writers that just collided do not
// collide again in lock step. Retry runs the common loop (call, wait,
// call again, until success, a permanent failure, the attempts or the
// context run out); a Backoff is the same pause for loops of another shape
// that also start again from Initial after progress (a subscription that
// delivered events before it dropped).
//
// It is written here rather than taken from github.com/cenkalti/backoff,
// whose Retry loses the last failure when the context ends (callers here
// report why they were retrying), cannot start the pause again after
// progress within one Retry, and stops by default after fifteen minutes,
// which a projector following the log for months must not.
package backoff

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Policy describes the pauses between attempts. The zero Policy does not
// wait at all.
type Policy struct {
	// Initial is the pause after the first failure; each further failure
	// in a row doubles it.
	Initial time.Duration
	// Max caps the pause; zero means Initial (a constant pause).
	Max time.Duration
	// Jitter waits a random time up to the pause instead of the pause
	// itself, for writers contending for one thing.
	Jitter bool
	// Attempts bounds how often Retry calls; zero means until success, a
	// permanent failure or the end of the context.
	Attempts int
	// OnRetry, if set, is told every failure Retry will try again after,
	// and the pause before the next attempt (for a log line).
	OnRetry func(err error, wait time.Duration)
}

// Delay is the pause after failures failures in a row (1 for the first),
// before jitter: Initial doubled failures-1 times, at most Max. It is for
// callers that keep a schedule rather than sleep (retry a case at a time).
func (p Policy) Delay(failures int) time.Duration {
	limit := max(p.Max, p.Initial)
	if failures < 1 || p.Initial <= 0 {
		return max(p.Initial, 0)
	}
	d := p.Initial
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// Backoff is one running sequence of pauses. It is not safe for
// concurrent use.
type Backoff struct {
	policy   Policy
	failures int
}

// New starts a sequence of pauses under p.
func New(p Policy) *Backoff { return &Backoff{policy: p} }

// Next counts a failure and returns the pause to take before the next
// attempt.
func (b *Backoff) Next() time.Duration {
	b.failures++
	d := b.policy.Delay(b.failures)
	if b.policy.Jitter && d > 0 {
		// In [1ns, d]: never no pause at all.
		d = rand.N(d) + 1
	}
	return d
}

// Reset starts again from Initial, after progress.
func (b *Backoff) Reset() { b.failures = 0 }

// Failures is the number of failures in a row since New or Reset.
func (b *Backoff) Failures() int { return b.failures }

// Wait counts a failure and sleeps the pause Next returns, or until ctx
// ends, whose error it then returns.
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Sleep waits for d, or until ctx ends, whose error it then returns. A
// context that has already ended returns at once, even for d <= 0.
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// permanent marks an error that retrying will not cure.
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

// Permanent marks err as not worth another attempt: Retry returns it (as
// err itself, unmarked) at once. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanent{err: err}
}

// Retry calls fn until it returns nil and then returns nil. It returns
// fn's error at once when fn marks it Permanent, the last error when
// p.Attempts calls have failed, and, when ctx ends while it waits, an
// error that wraps both ctx.Err() and the last failure (errors.Is finds
// either). fn is called at least once.
func Retry(ctx context.Context, p Policy, fn func() error) error {
	b := New(p)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if pe, ok := errors.AsType[*permanent](err); ok {
			return pe.err
		}
		if p.Attempts > 0 && b.Failures()+1 >= p.Attempts {
			return err
		}
		wait := b.Next()
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("%w (last attempt: %w)", cerr, err)
		}
		if p.OnRetry != nil {
			p.OnRetry(err, wait)
		}
		if cerr := Sleep(ctx, wait); cerr != nil {
			return fmt.Errorf("%w (last attempt: %w)", cerr, err)
		}
	}
}
