// Package eventstoretest is the conformance suite for eventstore backends.
// Every backend runs the same tests through Run, so that the services can
// rely on the eventstore contract (expected revisions, retries after a
// lost acknowledgement, deletion for good, ordered subscriptions) and not
// on the quirks of one product.
package eventstoretest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// Harness adapts a backend to the suite.
type Harness struct {
	// NewStore returns an empty store for one subtest, isolated from every
	// other store it returned (a fresh server, database or stream), because
	// subtests run in parallel and subscriptions see the whole log. It
	// registers its own clean-up with t.Cleanup.
	NewStore func(t *testing.T) eventstore.Store
	// SimulateLostAck writes ev to stream under the expectation expected,
	// the way the store's Append would, but without going through Append:
	// it plays an earlier append attempt that landed while its
	// acknowledgement was lost. The suite then retries the append and
	// expects the store to recognise its own event.
	SimulateLostAck func(t *testing.T, s eventstore.Store, stream string, expected eventstore.ExpectedRevision, ev eventstore.Event)
	// DuplicateWindow is how long the backend's own de-duplication remembers
	// an event id (for JetStream, the stream's duplicate window). The suite
	// waits past it once, to check that a retry is recognised without that
	// help too. Zero means the backend has no such window, and the check is
	// skipped.
	DuplicateWindow time.Duration
}

// waitTimeout bounds every wait for a subscription to deliver.
const waitTimeout = 15 * time.Second

// Run runs the conformance suite against the backend h adapts. The
// subtests run in parallel, each on its own store.
func Run(t *testing.T, h Harness) {
	t.Helper()
	require.NotNil(t, h.NewStore, "Harness.NewStore is required")
	require.NotNil(t, h.SimulateLostAck, "Harness.SimulateLostAck is required")

	t.Run("Append", func(t *testing.T) { t.Parallel(); testAppend(t, h) })
	t.Run("ConcurrentAppend", func(t *testing.T) { t.Parallel(); testConcurrentAppend(t, h) })
	t.Run("Read", func(t *testing.T) { t.Parallel(); testRead(t, h) })
	t.Run("Subscribe", func(t *testing.T) { t.Parallel(); testSubscribe(t, h) })
	t.Run("Delete", func(t *testing.T) { t.Parallel(); testDelete(t, h) })
	t.Run("LostAck", func(t *testing.T) { t.Parallel(); testLostAck(t, h) })
	t.Run("Invalid", func(t *testing.T) { t.Parallel(); testInvalid(t, h) })
	t.Run("AppendBatch", func(t *testing.T) { t.Parallel(); testAppendBatch(t, h) })
}

// newEvent returns an event with a fresh id.
func newEvent(typ string) eventstore.Event {
	return eventstore.Event{
		ID:       uuid.NewString(),
		Type:     typ,
		Data:     []byte("data of " + typ),
		Metadata: map[string]string{"correlation-id": uuid.NewString()},
	}
}

func mustAppend(t *testing.T, s eventstore.Store, stream string, exp eventstore.ExpectedRevision, ev eventstore.Event) eventstore.Revision {
	t.Helper()
	rev, err := s.Append(t.Context(), stream, exp, ev)
	require.NoError(t, err, "append %s to %s", ev.Type, stream)
	return rev
}

func mustRead(t *testing.T, s eventstore.Store, stream string) []eventstore.RecordedEvent {
	t.Helper()
	evs, err := s.Read(t.Context(), stream)
	require.NoError(t, err, "read %s", stream)
	return evs
}

func ids(evs []eventstore.RecordedEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

func testAppend(t *testing.T, h Harness) {
	tests := []struct {
		name string
		run  func(t *testing.T, s eventstore.Store)
	}{
		{"NoStream creates the stream", func(t *testing.T, s eventstore.Store) {
			ev := newEvent("Created")
			rev := mustAppend(t, s, "c1", eventstore.NoStream(), ev)
			evs := mustRead(t, s, "c1")
			require.Equal(t, []string{ev.ID}, ids(evs))
			require.Equal(t, rev, evs[0].Revision)
		}},
		{"Exact revision appends", func(t *testing.T, s eventstore.Store) {
			r1 := mustAppend(t, s, "c1", eventstore.NoStream(), newEvent("A"))
			r2 := mustAppend(t, s, "c1", eventstore.Exact(r1), newEvent("B"))
			r3 := mustAppend(t, s, "c1", eventstore.Exact(r2), newEvent("C"))
			require.NotEqual(t, r1, r2)
			require.NotEqual(t, r2, r3)
			evs := mustRead(t, s, "c1")
			require.Len(t, evs, 3)
			require.Equal(t, []eventstore.Revision{r1, r2, r3}, []eventstore.Revision{evs[0].Revision, evs[1].Revision, evs[2].Revision})
		}},
		{"stale revision conflicts", func(t *testing.T, s eventstore.Store) {
			r1 := mustAppend(t, s, "c1", eventstore.NoStream(), newEvent("A"))
			mustAppend(t, s, "c1", eventstore.Exact(r1), newEvent("B"))
			_, err := s.Append(t.Context(), "c1", eventstore.Exact(r1), newEvent("C"))
			require.ErrorIs(t, err, eventstore.ErrConflict)
			require.NotErrorIs(t, err, eventstore.ErrStreamDeleted)
			require.Len(t, mustRead(t, s, "c1"), 2)
		}},
		{"NoStream on an existing stream conflicts", func(t *testing.T, s eventstore.Store) {
			mustAppend(t, s, "c1", eventstore.NoStream(), newEvent("A"))
			_, err := s.Append(t.Context(), "c1", eventstore.NoStream(), newEvent("B"))
			require.ErrorIs(t, err, eventstore.ErrConflict)
			require.Len(t, mustRead(t, s, "c1"), 1)
		}},
		{"Exact on a missing stream conflicts", func(t *testing.T, s eventstore.Store) {
			r1 := mustAppend(t, s, "other", eventstore.NoStream(), newEvent("A"))
			_, err := s.Append(t.Context(), "c1", eventstore.Exact(r1), newEvent("B"))
			require.ErrorIs(t, err, eventstore.ErrConflict)
			_, err = s.Read(t.Context(), "c1")
			require.ErrorIs(t, err, eventstore.ErrStreamNotFound)
		}},
		{"Any appends to new and existing streams", func(t *testing.T, s eventstore.Store) {
			r1 := mustAppend(t, s, "c1", eventstore.Any(), newEvent("A"))
			r2 := mustAppend(t, s, "c1", eventstore.Any(), newEvent("B"))
			require.NotEqual(t, r1, r2)
			evs := mustRead(t, s, "c1")
			require.Len(t, evs, 2)
			require.Equal(t, r2, evs[1].Revision)
		}},
		{"streams are independent", func(t *testing.T, s eventstore.Store) {
			a := mustAppend(t, s, "a", eventstore.NoStream(), newEvent("A"))
			mustAppend(t, s, "b", eventstore.NoStream(), newEvent("B"))
			mustAppend(t, s, "a", eventstore.Exact(a), newEvent("A2"))
			require.Len(t, mustRead(t, s, "a"), 2)
			require.Len(t, mustRead(t, s, "b"), 1)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, h.NewStore(t))
		})
	}
}

func testConcurrentAppend(t *testing.T, h Harness) {
	const writers = 16
	s := h.NewStore(t)
	first := newEvent("First")
	r1 := mustAppend(t, s, "race", eventstore.NoStream(), first)

	var (
		start   = make(chan struct{})
		ready   sync.WaitGroup
		done    sync.WaitGroup
		mu      sync.Mutex
		winners []string
		errs    []error
	)
	for i := range writers {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ev := newEvent(fmt.Sprintf("Writer%d", i))
			ready.Done()
			<-start // The barrier: all writers append at once.
			_, err := s.Append(context.Background(), "race", eventstore.Exact(r1), ev)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				winners = append(winners, ev.ID)
			} else {
				errs = append(errs, err)
			}
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()

	require.Len(t, winners, 1, "exactly one writer must win")
	require.Len(t, errs, writers-1)
	for _, err := range errs {
		require.ErrorIs(t, err, eventstore.ErrConflict)
	}
	require.Equal(t, []string{first.ID, winners[0]}, ids(mustRead(t, s, "race")))
}

func testRead(t *testing.T, h Harness) {
	t.Run("round trip in order", func(t *testing.T) {
		t.Parallel()
		s := h.NewStore(t)
		written := []eventstore.Event{
			{ID: uuid.NewString(), Type: "kontakt.case.v1.CaseRegistered", Data: []byte{0, 1, 2, 0xff, '\n'},
				Metadata: map[string]string{"correlation-id": "c-1", "Actor": "subject-42", "empty": ""}},
			{ID: uuid.NewString(), Type: "kontakt.case.v1.NoData"},
			{ID: uuid.NewString(), Type: "kontakt.case.v1.Big", Data: bytes.Repeat([]byte("x"), 64<<10),
				Metadata: map[string]string{"note": "two words, and UTF-8: åäö"}},
		}
		var revs []eventstore.Revision
		exp := eventstore.NoStream()
		for _, ev := range written {
			rev := mustAppend(t, s, "case-1", exp, ev)
			revs = append(revs, rev)
			exp = eventstore.Exact(rev)
		}
		before := time.Now().Add(-time.Minute)

		got := mustRead(t, s, "case-1")
		require.Len(t, got, len(written))
		for i, ev := range got {
			want := written[i]
			require.Equal(t, want.ID, ev.ID)
			require.Equal(t, want.Type, ev.Type)
			require.True(t, bytes.Equal(want.Data, ev.Data), "data of event %d", i)
			require.True(t, equalMeta(want.Metadata, ev.Metadata), "metadata of event %d: %v", i, ev.Metadata)
			require.Equal(t, "case-1", ev.Stream)
			require.Equal(t, revs[i], ev.Revision)
			require.True(t, ev.Recorded.After(before), "recorded time %v", ev.Recorded)
			if i > 0 {
				require.Greater(t, ev.Revision, got[i-1].Revision)
				require.Greater(t, ev.Position, got[i-1].Position)
			}
		}
	})
	t.Run("missing stream", func(t *testing.T) {
		t.Parallel()
		s := h.NewStore(t)
		mustAppend(t, s, "other", eventstore.NoStream(), newEvent("A"))
		_, err := s.Read(t.Context(), "missing")
		require.ErrorIs(t, err, eventstore.ErrStreamNotFound)
		require.NotErrorIs(t, err, eventstore.ErrStreamDeleted)
	})
}

// equalMeta compares metadata, treating nil and empty maps alike.
func equalMeta(a, b map[string]string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return maps.Equal(a, b)
}

// subscription runs Subscribe in the background and hands delivered events
// to the test through a channel.
type subscription struct {
	events chan eventstore.RecordedEvent
	// ended receives what Subscribe returned; it is closed afterwards.
	ended chan error
}

// endedEarly fails the test: Subscribe returned while the test still
// waited for events.
func (sub *subscription) endedEarly(t *testing.T, err error, have int) {
	t.Helper()
	t.Fatalf("Subscribe returned before delivering the awaited events (got %d): %v", have, err)
}

func subscribe(t *testing.T, s eventstore.Store, from eventstore.Position) *subscription {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sub := &subscription{events: make(chan eventstore.RecordedEvent, 1024), ended: make(chan error, 1)}
	type result struct {
		err   error
		early bool // Subscribe returned before its context ended.
	}
	done := make(chan result, 1)
	go func() {
		err := s.Subscribe(ctx, from, func(ctx context.Context, ev eventstore.RecordedEvent) error {
			select {
			case sub.events <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		early := ctx.Err() == nil
		done <- result{err, early}
		if early {
			sub.ended <- err
		}
		close(sub.ended)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case r := <-done:
			switch {
			case r.early:
				t.Errorf("Subscribe returned before its context ended: %v", r.err)
			case r.err != nil && !errors.Is(r.err, context.Canceled):
				t.Errorf("Subscribe returned %v after its context ended; want nil or context.Canceled", r.err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Subscribe did not return within %s after its context ended", waitTimeout)
		}
	})
	return sub
}

// next waits for n events.
func (sub *subscription) next(t *testing.T, n int) []eventstore.RecordedEvent {
	t.Helper()
	var out []eventstore.RecordedEvent
	timeout := time.After(waitTimeout)
	for len(out) < n {
		select {
		case ev := <-sub.events:
			out = append(out, ev)
		case err := <-sub.ended:
			sub.endedEarly(t, err, len(out))
		case <-timeout:
			t.Fatalf("subscription delivered %d of %d events within %s", len(out), n, waitTimeout)
		}
	}
	return out
}

// until waits for the first event that matches, returning it and the ones
// before.
func (sub *subscription) until(t *testing.T, match func(eventstore.RecordedEvent) bool) []eventstore.RecordedEvent {
	t.Helper()
	var out []eventstore.RecordedEvent
	timeout := time.After(waitTimeout)
	for {
		select {
		case ev := <-sub.events:
			out = append(out, ev)
			if match(ev) {
				return out
			}
		case err := <-sub.ended:
			sub.endedEarly(t, err, len(out))
		case <-timeout:
			t.Fatalf("subscription did not deliver the awaited event within %s (got %d events)", waitTimeout, len(out))
		}
	}
}

func requireIncreasing(t *testing.T, evs []eventstore.RecordedEvent) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		require.Greater(t, evs[i].Position, evs[i-1].Position, "positions must strictly increase")
	}
}

type appended struct {
	stream string
	id     string
	rev    eventstore.Revision
}

// appendMixed appends to several streams, interleaved, and returns what it
// appended in append order.
func appendMixed(t *testing.T, s eventstore.Store) []appended {
	t.Helper()
	last := map[string]eventstore.Revision{}
	var out []appended
	for _, stream := range []string{"a", "b", "a", "c", "b", "a"} {
		exp := eventstore.NoStream()
		if r, ok := last[stream]; ok {
			exp = eventstore.Exact(r)
		}
		ev := newEvent("Mixed")
		rev := mustAppend(t, s, stream, exp, ev)
		last[stream] = rev
		out = append(out, appended{stream, ev.ID, rev})
	}
	return out
}

func requireSame(t *testing.T, want []appended, got []eventstore.RecordedEvent) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		require.Equal(t, want[i].stream, got[i].Stream, "event %d", i)
		require.Equal(t, want[i].id, got[i].ID, "event %d", i)
		require.Equal(t, want[i].rev, got[i].Revision, "event %d", i)
		require.Equal(t, "Mixed", got[i].Type, "event %d", i)
	}
	requireIncreasing(t, got)
}

func testSubscribe(t *testing.T, h Harness) {
	tests := []struct {
		name string
		run  func(t *testing.T, s eventstore.Store)
	}{
		{"from the start in log order", func(t *testing.T, s eventstore.Store) {
			want := appendMixed(t, s)
			requireSame(t, want, subscribe(t, s, 0).next(t, len(want)))
		}},
		{"from a checkpoint", func(t *testing.T, s eventstore.Store) {
			want := appendMixed(t, s)
			all := subscribe(t, s, 0).next(t, len(want))
			checkpoint := all[2].Position

			marker := newEvent("Marker")
			mustAppend(t, s, "marker", eventstore.NoStream(), marker)
			got := subscribe(t, s, checkpoint).until(t, func(ev eventstore.RecordedEvent) bool { return ev.ID == marker.ID })
			requireSame(t, want[3:], got[:len(got)-1])
			require.Greater(t, got[0].Position, checkpoint)
		}},
		{"keeps receiving live appends", func(t *testing.T, s eventstore.Store) {
			before := appendMixed(t, s)
			sub := subscribe(t, s, 0)
			first := sub.next(t, len(before))
			requireSame(t, before, first)

			var live []appended
			for i := range 5 {
				ev := newEvent("Mixed")
				stream := fmt.Sprintf("live%d", i%2)
				rev := mustAppend(t, s, stream, eventstore.Any(), ev)
				live = append(live, appended{stream, ev.ID, rev})
			}
			got := sub.next(t, len(live))
			requireSame(t, live, got)
			require.Greater(t, got[0].Position, first[len(first)-1].Position)
		}},
		{"handler error stops it", func(t *testing.T, s eventstore.Store) {
			mustAppend(t, s, "a", eventstore.NoStream(), newEvent("A"))
			mustAppend(t, s, "a", eventstore.Any(), newEvent("B"))
			boom := errors.New("boom")
			calls := 0
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			err := s.Subscribe(ctx, 0, func(context.Context, eventstore.RecordedEvent) error {
				calls++
				return boom
			})
			require.ErrorIs(t, err, boom)
			require.Equal(t, 1, calls)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, h.NewStore(t))
		})
	}
}

func testDelete(t *testing.T, h Harness) {
	t.Run("deleted for good", func(t *testing.T) {
		t.Parallel()
		s := h.NewStore(t)
		ctx := t.Context()
		r1 := mustAppend(t, s, "victim", eventstore.NoStream(), newEvent("A"))
		r2 := mustAppend(t, s, "victim", eventstore.Exact(r1), newEvent("B"))
		b1 := mustAppend(t, s, "bystander", eventstore.NoStream(), newEvent("C"))
		sub := subscribe(t, s, 0)
		seen := sub.next(t, 3)

		require.NoError(t, s.Delete(ctx, "victim"))

		_, err := s.Read(ctx, "victim")
		require.ErrorIs(t, err, eventstore.ErrStreamDeleted)
		require.ErrorIs(t, err, eventstore.ErrStreamNotFound)

		for name, exp := range map[string]eventstore.ExpectedRevision{
			"NoStream":      eventstore.NoStream(),
			"old Exact":     eventstore.Exact(r2),
			"older Exact":   eventstore.Exact(r1),
			"Any":           eventstore.Any(),
			"unknown Exact": eventstore.Exact(r2 + 1000),
		} {
			_, err := s.Append(ctx, "victim", exp, newEvent("Zombie"))
			require.ErrorIs(t, err, eventstore.ErrStreamDeleted, "append with %s", name)
		}
		_, err = s.Read(ctx, "victim")
		require.ErrorIs(t, err, eventstore.ErrStreamDeleted, "refused appends must not revive the stream")

		require.ErrorIs(t, s.Delete(ctx, "victim"), eventstore.ErrStreamDeleted, "deleting twice")

		// The subscriber learns about the deletion.
		got := sub.until(t, func(ev eventstore.RecordedEvent) bool { return ev.Type == eventstore.TypeStreamDeleted })
		del := got[len(got)-1]
		require.Equal(t, "victim", del.Stream)
		require.Zero(t, del.Revision, "a tombstone hands out no revision to append after")
		require.Greater(t, del.Position, seen[len(seen)-1].Position)

		// So does one that starts afterwards.
		late := subscribe(t, s, 0).until(t, func(ev eventstore.RecordedEvent) bool { return ev.Type == eventstore.TypeStreamDeleted })
		require.Equal(t, "victim", late[len(late)-1].Stream)

		// Other streams are unaffected.
		evs := mustRead(t, s, "bystander")
		require.Len(t, evs, 1)
		require.Equal(t, b1, evs[0].Revision)
		mustAppend(t, s, "bystander", eventstore.Exact(b1), newEvent("D"))
	})
	t.Run("missing stream", func(t *testing.T) {
		t.Parallel()
		s := h.NewStore(t)
		err := s.Delete(t.Context(), "never")
		require.ErrorIs(t, err, eventstore.ErrStreamNotFound)
		require.NotErrorIs(t, err, eventstore.ErrStreamDeleted)
	})
}

// lostAckCase prepares a stream, loses the acknowledgement of one append
// and lets the test retry it.
type lostAckCase struct {
	name string
	// setup appends what comes before the lost write and returns the
	// expectation the write used.
	setup func(t *testing.T, s eventstore.Store, stream string) eventstore.ExpectedRevision
	// between runs after the lost write, before the retry.
	between func(t *testing.T, s eventstore.Store, stream string)
	// wantEvents is how many events the stream holds in the end.
	wantEvents int
}

func lostAckCases() []lostAckCase {
	one := func(t *testing.T, s eventstore.Store, stream string) eventstore.ExpectedRevision {
		return eventstore.Exact(mustAppend(t, s, stream, eventstore.NoStream(), newEvent("Before")))
	}
	return []lostAckCase{
		{name: "NoStream", setup: func(*testing.T, eventstore.Store, string) eventstore.ExpectedRevision {
			return eventstore.NoStream()
		}, wantEvents: 1},
		{name: "Exact", setup: one, wantEvents: 2},
		{name: "Any", setup: func(t *testing.T, s eventstore.Store, stream string) eventstore.ExpectedRevision {
			mustAppend(t, s, stream, eventstore.NoStream(), newEvent("Before"))
			return eventstore.Any()
		}, wantEvents: 2},
		{name: "Exact then others appended", setup: one, between: func(t *testing.T, s eventstore.Store, stream string) {
			evs := mustRead(t, s, stream)
			mustAppend(t, s, stream, eventstore.Exact(evs[len(evs)-1].Revision), newEvent("After"))
		}, wantEvents: 3},
	}
}

func testLostAck(t *testing.T, h Harness) {
	run := func(t *testing.T, wait time.Duration) {
		s := h.NewStore(t)
		type pending struct {
			c      lostAckCase
			stream string
			exp    eventstore.ExpectedRevision
			ev     eventstore.Event
		}
		var ps []pending
		for _, c := range lostAckCases() {
			stream := "lost-" + strings.ReplaceAll(c.name, " ", "-")
			exp := c.setup(t, s, stream)
			ev := newEvent("Lost")
			h.SimulateLostAck(t, s, stream, exp, ev)
			if c.between != nil {
				c.between(t, s, stream)
			}
			ps = append(ps, pending{c, stream, exp, ev})
		}
		time.Sleep(wait)
		for _, p := range ps {
			t.Run(p.c.name, func(t *testing.T) {
				rev, err := s.Append(t.Context(), p.stream, p.exp, p.ev)
				require.NoError(t, err, "retrying an append that landed must succeed")
				evs := mustRead(t, s, p.stream)
				require.Len(t, evs, p.c.wantEvents)
				var copies []eventstore.RecordedEvent
				for _, ev := range evs {
					if ev.ID == p.ev.ID {
						copies = append(copies, ev)
					}
				}
				require.Len(t, copies, 1, "the event must be stored exactly once")
				require.Equal(t, copies[0].Revision, rev, "the retry must return the landed event's revision")
			})
		}
	}
	t.Run("within the duplicate window", func(t *testing.T) {
		t.Parallel()
		run(t, 0)
	})
	t.Run("after the duplicate window", func(t *testing.T) {
		t.Parallel()
		if h.DuplicateWindow <= 0 {
			t.Skip("the backend has no duplicate window")
		}
		run(t, h.DuplicateWindow+h.DuplicateWindow/2+200*time.Millisecond)
	})
}

func testInvalid(t *testing.T, h Harness) {
	s := h.NewStore(t)
	good := newEvent("Good")
	tests := []struct {
		name   string
		stream string
		ev     eventstore.Event
	}{
		{"empty stream id", "", good},
		{"space in stream id", "a b", good},
		{"dot in stream id", "a.b", good},
		{"wildcard in stream id", "a*", good},
		{"tail wildcard as stream id", ">", good},
		{"non-ASCII stream id", "ärende", good},
		{"stream id too long", strings.Repeat("x", 129), good},
		{"event without id", "s", eventstore.Event{Type: "T"}},
		{"event without type", "s", eventstore.Event{ID: uuid.NewString()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Append(t.Context(), tc.stream, eventstore.Any(), tc.ev)
			require.ErrorIs(t, err, eventstore.ErrInvalid)
			if tc.ev.ID != "" && tc.ev.Type != "" {
				_, err = s.Read(t.Context(), tc.stream)
				require.ErrorIs(t, err, eventstore.ErrInvalid)
				require.ErrorIs(t, s.Delete(t.Context(), tc.stream), eventstore.ErrInvalid)
			}
		})
	}
	t.Run("longest valid stream id", func(t *testing.T) {
		id := strings.Repeat("Az09_-", 21) + "xy" // 128 characters
		mustAppend(t, s, id, eventstore.NoStream(), newEvent("A"))
		require.Len(t, mustRead(t, s, id), 1)
	})
	t.Run("nothing was written", func(t *testing.T) {
		_, err := s.Read(t.Context(), "s")
		require.ErrorIs(t, err, eventstore.ErrStreamNotFound)
	})
}

// testAppendBatch checks the optional BatchAppender: all or nothing,
// revisions that Read agrees with, log order, and the refusals. A backend
// without it skips, saying so.
func testAppendBatch(t *testing.T, h Harness) {
	s := h.NewStore(t)
	b, ok := s.(eventstore.BatchAppender)
	if !ok {
		t.Skipf("%T does not implement eventstore.BatchAppender; callers append one by one", s)
	}
	newBatch := func(prefix string, n int) []eventstore.BatchAppend {
		out := make([]eventstore.BatchAppend, n)
		for i := range out {
			out[i] = eventstore.BatchAppend{Stream: fmt.Sprintf("%s-%d", prefix, i), Expected: eventstore.NoStream(), Event: newEvent("Registered")}
		}
		return out
	}

	t.Run("stores every event with the revision Read reports, in log order", func(t *testing.T) {
		sub := subscribe(t, s, 0)
		batch := newBatch("new", 40)
		revs, err := b.AppendBatch(t.Context(), batch)
		require.NoError(t, err)
		require.Len(t, revs, len(batch))
		for i, a := range batch {
			evs := mustRead(t, s, a.Stream)
			require.Len(t, evs, 1)
			require.Equal(t, a.Event.ID, evs[0].ID)
			require.Equal(t, a.Event.Data, evs[0].Data)
			require.True(t, equalMeta(a.Event.Metadata, evs[0].Metadata))
			require.Equal(t, revs[i], evs[0].Revision)
		}
		got := sub.next(t, len(batch))
		requireIncreasing(t, got)
		for i, ev := range got {
			require.Equal(t, batch[i].Event.ID, ev.ID, "log order is batch order")
		}
		// Exact expectations, on the revisions just returned.
		next := make([]eventstore.BatchAppend, 3)
		for i := range next {
			next[i] = eventstore.BatchAppend{Stream: batch[i].Stream, Expected: eventstore.Exact(revs[i]), Event: newEvent("Answered")}
		}
		_, err = b.AppendBatch(t.Context(), next)
		require.NoError(t, err)
		require.Len(t, mustRead(t, s, batch[0].Stream), 2)
	})

	t.Run("one failed expectation stores nothing", func(t *testing.T) {
		batch := newBatch("conflict", 10)
		mustAppend(t, s, batch[6].Stream, eventstore.NoStream(), newEvent("First"))
		_, err := b.AppendBatch(t.Context(), batch)
		require.ErrorIs(t, err, eventstore.ErrConflict)
		for i, a := range batch {
			evs, err := s.Read(t.Context(), a.Stream)
			if i == 6 {
				require.NoError(t, err)
				require.Len(t, evs, 1)
				continue
			}
			require.ErrorIs(t, err, eventstore.ErrStreamNotFound, "stream %d", i)
		}
		// Appended one by one, the others go through.
		for i, a := range batch {
			if i != 6 {
				mustAppend(t, s, a.Stream, a.Expected, a.Event)
			}
		}
	})

	t.Run("a landed batch retried one by one is recognised", func(t *testing.T) {
		batch := newBatch("retry", 5)
		revs, err := b.AppendBatch(t.Context(), batch)
		require.NoError(t, err)
		_, err = b.AppendBatch(t.Context(), batch)
		require.ErrorIs(t, err, eventstore.ErrConflict)
		for i, a := range batch {
			rev, err := s.Append(t.Context(), a.Stream, a.Expected, a.Event)
			require.NoError(t, err)
			require.Equal(t, revs[i], rev)
			require.Len(t, mustRead(t, s, a.Stream), 1)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		twice := newBatch("twice", 2)
		twice[1].Stream = twice[0].Stream
		anyExp := newBatch("any", 2)
		anyExp[1].Expected = eventstore.Any()
		badID := newBatch("badid", 2)
		badID[0].Stream = "a.b"
		noType := newBatch("notype", 2)
		noType[1].Event.Type = ""
		deleted := newBatch("deleted", 2)
		mustAppend(t, s, deleted[0].Stream, eventstore.NoStream(), newEvent("X"))
		require.NoError(t, s.Delete(t.Context(), deleted[0].Stream))
		for _, tc := range []struct {
			name  string
			batch []eventstore.BatchAppend
			want  error
		}{
			{"empty", nil, eventstore.ErrInvalid},
			{"stream twice", twice, eventstore.ErrInvalid},
			{"expectation Any", anyExp, eventstore.ErrInvalid},
			{"invalid stream id", badID, eventstore.ErrInvalid},
			{"event without type", noType, eventstore.ErrInvalid},
			{"deleted stream", deleted, eventstore.ErrConflict},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := b.AppendBatch(t.Context(), tc.batch)
				require.ErrorIs(t, err, tc.want)
				for _, a := range tc.batch {
					if eventstore.ValidateStreamID(a.Stream) != nil || a.Stream == deleted[0].Stream {
						continue
					}
					_, err := s.Read(t.Context(), a.Stream)
					require.ErrorIs(t, err, eventstore.ErrStreamNotFound, "nothing of a refused batch is stored")
				}
			})
		}
	})
}
