package groupcommit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/groupcommit"
)

// recorder is a Commit that remembers its batches and holds each until
// hold is closed, so a test can queue requests behind a write in flight.
type recorder struct {
	mu      sync.Mutex
	batches [][]string
	hold    chan struct{} // closed to let commits through
	entered chan struct{} // receives once per commit
}

func newRecorder() *recorder {
	return &recorder{hold: make(chan struct{}), entered: make(chan struct{}, 100)}
}

func (r *recorder) commit(ctx context.Context, reqs []string) []groupcommit.Result[string] {
	r.entered <- struct{}{}
	select {
	case <-r.hold:
	case <-ctx.Done():
		out := make([]groupcommit.Result[string], len(reqs))
		for i := range out {
			out[i].Err = ctx.Err()
		}
		return out
	}
	r.mu.Lock()
	r.batches = append(r.batches, append([]string(nil), reqs...))
	r.mu.Unlock()
	out := make([]groupcommit.Result[string], len(reqs))
	for i, req := range reqs {
		out[i].Value = "ok:" + req
	}
	return out
}

func (r *recorder) committed() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]string(nil), r.batches...)
}

func TestQueueSharesWritesAndAnswersEachRequest(t *testing.T) {
	tests := []struct {
		name     string
		maxBatch int
		key      func(string) string
		reqs     []string
		// wantBatches are the batches after the first, held one ("first").
		wantBatches [][]string
	}{
		{
			name: "requests queued behind a write share the next", maxBatch: 10,
			reqs:        []string{"a", "b", "c", "d"},
			wantBatches: [][]string{{"a", "b", "c", "d"}},
		},
		{
			name: "a batch holds at most MaxBatch", maxBatch: 3,
			reqs:        []string{"a", "b", "c", "d", "e"},
			wantBatches: [][]string{{"a", "b", "c"}, {"d", "e"}},
		},
		{
			name: "one request per key in a batch", maxBatch: 10,
			key:         func(s string) string { return s[:1] },
			reqs:        []string{"a1", "b1", "a2", "c1", "a3"},
			wantBatches: [][]string{{"a1", "b1", "c1"}, {"a2"}, {"a3"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder()
			q := groupcommit.New(rec.commit, groupcommit.Config[string]{MaxBatch: tt.maxBatch, Timeout: 10 * time.Second, Key: tt.key})
			ctx := t.Context()
			var wg sync.WaitGroup
			t.Cleanup(wg.Wait)
			t.Cleanup(func() {
				select {
				case <-rec.hold:
				default:
					close(rec.hold)
				}
			})
			wg.Go(func() {
				got, err := q.Do(ctx, "first")
				assert.NoError(t, err)
				assert.Equal(t, "ok:first", got)
			})
			<-rec.entered // "first" is being written; the rest queue behind it
			answers := make([]string, len(tt.reqs))
			errs := make([]error, len(tt.reqs))
			var reqs sync.WaitGroup
			for i, req := range tt.reqs {
				reqs.Go(func() { answers[i], errs[i] = q.Do(ctx, req) })
				require.Eventually(t, func() bool { return q.QueuedForTest() == i+1 }, 5*time.Second, time.Millisecond)
			}
			close(rec.hold)
			reqs.Wait()
			for i, req := range tt.reqs {
				require.NoError(t, errs[i])
				require.Equal(t, "ok:"+req, answers[i])
			}
			require.Equal(t, append([][]string{{"first"}}, tt.wantBatches...), rec.committed())
		})
	}
}

func TestQueueDoesNotWriteRequestsWhoseCallerGaveUp(t *testing.T) {
	rec := newRecorder()
	q := groupcommit.New(rec.commit, groupcommit.Config[string]{MaxBatch: 10, Timeout: 10 * time.Second})
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() {
		_, err := q.Do(t.Context(), "first")
		assert.NoError(t, err)
	})
	<-rec.entered
	gone, cancel := context.WithCancel(t.Context())
	var goneErr error
	var waited sync.WaitGroup
	waited.Go(func() { _, goneErr = q.Do(gone, "gone") })
	require.Eventually(t, func() bool { return q.QueuedForTest() == 1 }, 5*time.Second, time.Millisecond)
	cancel()
	waited.Wait()
	require.ErrorIs(t, goneErr, context.Canceled)
	var keptErr error
	waited.Go(func() { _, keptErr = q.Do(t.Context(), "kept") })
	require.Eventually(t, func() bool { return q.QueuedForTest() == 2 }, 5*time.Second, time.Millisecond)
	close(rec.hold)
	waited.Wait()
	require.NoError(t, keptErr)
	require.Equal(t, [][]string{{"first"}, {"kept"}}, rec.committed())
}

func TestQueueGivesUpAWriteNobodyWaitsFor(t *testing.T) {
	gaveUp := make(chan error, 1)
	q := groupcommit.New(func(ctx context.Context, reqs []string) []groupcommit.Result[string] {
		out := make([]groupcommit.Result[string], len(reqs))
		if reqs[0] == "lost" { // its acknowledgement never comes
			<-ctx.Done()
			gaveUp <- ctx.Err()
			out[0].Err = ctx.Err()
			return out
		}
		for i, r := range reqs {
			out[i].Value = "ok:" + r
		}
		return out
	}, groupcommit.Config[string]{MaxBatch: 10, Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := q.Do(ctx, "lost")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	// The write is given up as soon as its only caller left, not after the
	// minute-long batch timeout, and the next request is written.
	select {
	case err := <-gaveUp:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("the write nobody waits for was not given up")
	}
	got, err := q.Do(t.Context(), "next")
	require.NoError(t, err)
	require.Equal(t, "ok:next", got)
}

func TestQueueAnswersRequestsACommitForgot(t *testing.T) {
	q := groupcommit.New(func(context.Context, []string) []groupcommit.Result[string] { return nil },
		groupcommit.Config[string]{MaxBatch: 10, Timeout: time.Second})
	_, err := q.Do(t.Context(), "x")
	require.ErrorContains(t, err, "no result")
}

func TestNewRefusesUnusableConfig(t *testing.T) {
	commit := func(context.Context, []string) []groupcommit.Result[string] { return nil }
	for _, cfg := range []groupcommit.Config[string]{
		{MaxBatch: 0, Timeout: time.Second},
		{MaxBatch: 1, Timeout: 0},
	} {
		t.Run(fmt.Sprintf("%+v", cfg), func(t *testing.T) {
			require.Panics(t, func() { groupcommit.New(commit, cfg) })
		})
	}
	require.Panics(t, func() {
		groupcommit.New[string, string](nil, groupcommit.Config[string]{MaxBatch: 1, Timeout: time.Second})
	})
}

func TestContext(t *testing.T) {
	tests := []struct {
		name string
		// act ends some of the contexts and reports whether the write's
		// context must have ended.
		act     func(parentCancel context.CancelFunc, memberCancels []context.CancelFunc) bool
		timeout time.Duration
		wantErr error
	}{
		{
			name: "ends when every member ended", timeout: time.Minute,
			act: func(_ context.CancelFunc, m []context.CancelFunc) bool {
				for _, c := range m {
					c()
				}
				return true
			},
			wantErr: context.Canceled,
		},
		{
			name: "lives while one member waits", timeout: time.Minute,
			act: func(_ context.CancelFunc, m []context.CancelFunc) bool {
				m[0]()
				m[1]()
				return false
			},
		},
		{
			name: "parent's end does not cut the write", timeout: time.Minute,
			act: func(p context.CancelFunc, _ []context.CancelFunc) bool {
				p()
				return false
			},
		},
		{
			name: "timeout", timeout: 10 * time.Millisecond,
			act:     func(context.CancelFunc, []context.CancelFunc) bool { return true },
			wantErr: context.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, parentCancel := context.WithCancel(t.Context())
			defer parentCancel()
			members := make([]context.Context, 3)
			cancels := make([]context.CancelFunc, 3)
			for i := range members {
				members[i], cancels[i] = context.WithCancel(t.Context())
				defer cancels[i]()
			}
			ctx, cancel := groupcommit.Context(parent, tt.timeout, members)
			defer cancel()
			if tt.act(parentCancel, cancels) {
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Second):
					t.Fatal("the write's context did not end")
				}
				require.True(t, errors.Is(ctx.Err(), tt.wantErr), "got %v", ctx.Err())
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("the write's context ended: %v", ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
			cancel()
			require.ErrorIs(t, ctx.Err(), context.Canceled)
		})
	}
}
