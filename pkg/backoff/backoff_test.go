package backoff_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/backoff"
)

func TestDelay(t *testing.T) {
	tests := []struct {
		name   string
		policy backoff.Policy
		want   []time.Duration // after 1, 2, 3, … failures
	}{
		{"doubles up to the cap", backoff.Policy{Initial: 50 * time.Millisecond, Max: 300 * time.Millisecond},
			[]time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}},
		{"no cap is a constant pause", backoff.Policy{Initial: time.Second},
			[]time.Duration{time.Second, time.Second, time.Second}},
		{"a cap below Initial is Initial", backoff.Policy{Initial: time.Second, Max: time.Millisecond},
			[]time.Duration{time.Second, time.Second}},
		{"the zero policy does not wait", backoff.Policy{}, []time.Duration{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, want := range tt.want {
				require.Equal(t, want, tt.policy.Delay(i+1), "after %d failures", i+1)
			}
			b := backoff.New(tt.policy)
			for i, want := range tt.want {
				require.Equal(t, want, b.Next(), "Next after %d failures", i+1)
			}
		})
	}
	// Many failures in a row neither overflow nor pass the cap.
	p := backoff.Policy{Initial: time.Nanosecond, Max: time.Hour}
	require.Equal(t, time.Hour, p.Delay(10_000))
}

func TestJitterStaysWithinTheCeiling(t *testing.T) {
	p := backoff.Policy{Initial: 4 * time.Millisecond, Max: 32 * time.Millisecond, Jitter: true}
	b := backoff.New(p)
	seen := map[time.Duration]bool{}
	for i := 1; i <= 200; i++ {
		d := b.Next()
		require.Greater(t, d, time.Duration(0), "a jittered pause is never none")
		require.LessOrEqual(t, d, p.Delay(b.Failures()))
		seen[d] = true
	}
	require.Greater(t, len(seen), 1, "jitter varies the pause")
}

func TestResetStartsAgain(t *testing.T) {
	b := backoff.New(backoff.Policy{Initial: time.Millisecond, Max: time.Second})
	b.Next()
	b.Next()
	require.Equal(t, 4*time.Millisecond, b.Next())
	b.Reset()
	require.Zero(t, b.Failures())
	require.Equal(t, time.Millisecond, b.Next())
}

func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		require.NoError(t, backoff.Sleep(context.Background(), 3*time.Second))
		require.Equal(t, 3*time.Second, time.Since(start))

		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Second, cancel)
		start = time.Now()
		require.ErrorIs(t, backoff.Sleep(ctx, time.Hour), context.Canceled)
		require.Equal(t, time.Second, time.Since(start), "an ended context ends the sleep")

		require.ErrorIs(t, backoff.Sleep(ctx, 0), context.Canceled, "an ended context is reported even for no pause")
	})
}

var errAway = errors.New("server away")

func TestRetry(t *testing.T) {
	policy := backoff.Policy{Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond}
	t.Run("until success, waiting the policy's pauses", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var calls []time.Duration
			start := time.Now()
			var waits []time.Duration
			p := policy
			p.OnRetry = func(err error, wait time.Duration) {
				require.ErrorIs(t, err, errAway)
				waits = append(waits, wait)
			}
			err := backoff.Retry(context.Background(), p, func() error {
				calls = append(calls, time.Since(start))
				if len(calls) < 5 {
					return errAway
				}
				return nil
			})
			require.NoError(t, err)
			ms := time.Millisecond
			require.Equal(t, []time.Duration{0, 100 * ms, 300 * ms, 700 * ms, 1100 * ms}, calls)
			require.Equal(t, []time.Duration{100 * ms, 200 * ms, 400 * ms, 400 * ms}, waits)
		})
	})
	t.Run("a permanent failure ends it at once, unmarked", func(t *testing.T) {
		calls := 0
		err := backoff.Retry(context.Background(), policy, func() error {
			calls++
			return backoff.Permanent(errAway)
		})
		require.Same(t, errAway, err)
		require.Equal(t, 1, calls)
	})
	t.Run("attempts bound the calls", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := policy
			p.Attempts = 3
			calls := 0
			err := backoff.Retry(context.Background(), p, func() error {
				calls++
				return errAway
			})
			require.Same(t, errAway, err, "the last failure, as it was")
			require.Equal(t, 3, calls)
		})
	})
	t.Run("an ended context reports itself and the last failure", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
			defer cancel()
			calls := 0
			start := time.Now()
			err := backoff.Retry(ctx, policy, func() error {
				calls++
				return errAway
			})
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.ErrorIs(t, err, errAway)
			require.Equal(t, 2, calls, "called at 0 and 100 ms; the pause to 300 ms is cut off")
			require.Equal(t, 250*time.Millisecond, time.Since(start))
		})
	})
	t.Run("fn runs once even under an ended context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		calls := 0
		err := backoff.Retry(ctx, policy, func() error {
			calls++
			return errAway
		})
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorIs(t, err, errAway)
		require.Equal(t, 1, calls)
	})
}

func TestWaitResetsAfterProgress(t *testing.T) {
	// The shape of a subscription: it drops, and when it delivered
	// something before dropping the pause starts again from Initial.
	synctest.Test(t, func(t *testing.T) {
		b := backoff.New(backoff.Policy{Initial: time.Second, Max: 8 * time.Second})
		var waited []time.Duration
		for _, progress := range []bool{false, false, false, true, false} {
			if progress {
				b.Reset()
			}
			start := time.Now()
			require.NoError(t, b.Wait(context.Background()))
			waited = append(waited, time.Since(start))
		}
		s := time.Second
		require.Equal(t, []time.Duration{s, 2 * s, 4 * s, s, 2 * s}, waited)
	})
}
