package app_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
	"github.com/kontakt-se/kontakt/pkg/receipt"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// faultyBatchStore is the event store with a fault in front of or behind
// the first AppendBatch, counting the batches and the single appends the
// sweeper makes.
type faultyBatchStore struct {
	*jetstream.Store
	// before runs before the first batch is handed to the store.
	before func(appends []eventstore.BatchAppend)
	// loseAck reports the first stored batch as unavailable, as a lost
	// acknowledgement would.
	loseAck bool

	batches, refused, singles atomic.Int32
	faulted                   atomic.Bool
}

func (s *faultyBatchStore) AppendBatch(ctx context.Context, appends []eventstore.BatchAppend) ([]eventstore.Revision, error) {
	s.batches.Add(1)
	first := s.faulted.CompareAndSwap(false, true)
	if first && s.before != nil {
		s.before(appends)
	}
	revs, err := s.Store.AppendBatch(ctx, appends)
	if err == nil && first && s.loseAck {
		err = fmt.Errorf("%w: acknowledgement lost", eventstore.ErrUnavailable)
	}
	if err != nil {
		s.refused.Add(1)
	}
	return revs, err
}

func (s *faultyBatchStore) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, ev eventstore.Event) (eventstore.Revision, error) {
	s.singles.Add(1)
	return s.Store.Append(ctx, stream, expected, ev)
}

// TestSweepAppendsDeadlinesInBatches: the sweeper appends the deadline
// events of the due cases as atomic batches. A batch refused because
// another writer moved one of its cases, or one stored but reported
// unavailable (a lost acknowledgement), is settled one event at a time:
// whatever happens, every case ends with exactly one redaction, one
// receipt for it, and its keys destroyed.
func TestSweepAppendsDeadlinesInBatches(t *testing.T) {
	const n = 12
	for _, tt := range []struct {
		name     string
		conflict bool // another writer appends to a case of the first batch
		loseAck  bool
	}{
		{name: "accepted"},
		{name: "another writer moved a case", conflict: true},
		{name: "acknowledgement lost", loseAck: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			b := w.connect(t)
			cases := map[string]*testCase{}
			for i := range n {
				tc := b.register(t, caseSpec{email: fmt.Sprintf("person%d@example.se", i), text: fmt.Sprintf("FRITEXT-%d", i)})
				cases[tc.ID] = tc
			}
			store := &faultyBatchStore{Store: b.store, loseAck: tt.loseAck}
			var moved string
			if tt.conflict {
				store.before = func(appends []eventstore.BatchAppend) {
					moved = appends[0].Stream
					b.answer(t, cases[moved], "svar efter förfallodagen")
				}
			}
			in := w.newInstance(t, b, instanceOpts{store: store, workers: 4})
			in.start(t)
			in.caughtUp(t)

			w.clock.Set(day(91))
			in.caughtUp(t)
			// The operator's view: every case a day past its deadline.
			overdue, earliest, _, err := in.svc.Backlog()
			require.NoError(t, err)
			require.Equal(t, n, overdue)
			require.False(t, earliest.IsZero())
			require.Less(t, w.clock.Now().Sub(earliest), 2*24*time.Hour)
			require.Greater(t, w.clock.Now().Sub(earliest), 12*time.Hour)
			first := in.sweep(t)
			require.Positive(t, store.batches.Load(), "the deadline events went as batches")
			switch {
			case tt.conflict:
				require.EqualValues(t, 1, store.refused.Load())
				require.Equal(t, n-1, first, "the moved case waits for the next pass")
				require.EqualValues(t, n, store.singles.Load(), "the refused batch is appended one by one")
			case tt.loseAck:
				require.EqualValues(t, 1, store.refused.Load())
				require.EqualValues(t, n, store.singles.Load(), "the batch of unknown outcome is appended one by one")
			default:
				require.Zero(t, store.refused.Load())
				require.Equal(t, n, first)
				require.Zero(t, store.singles.Load(), "nothing appended one by one")
			}
			in.sweep(t)
			require.Zero(t, in.sweep(t), "nothing left to do")
			overdue, earliest, last, err := in.svc.Backlog()
			require.NoError(t, err)
			require.Zero(t, overdue, "nothing overdue once swept")
			require.True(t, earliest.IsZero())
			require.WithinDuration(t, time.Now(), last, time.Minute, "the last pass ended without an error")

			rs := b.receipts(t)
			require.Len(t, rs, n)
			for _, tc := range cases {
				reds, revs := b.redactions(t, tc.ID)
				require.Len(t, reds, 1, "case %s", tc.Number)
				got := receiptsOf(rs, tc.ID, receipt.KindRedaction)
				require.Len(t, got, 1, "case %s", tc.Number)
				require.Equal(t, fmt.Sprintf("%s.redaction.%d", tc.ID, revs[0]), got[0].Key)
				b.requireDestroyed(t, tc, seal.Classes()...)
			}
			if tt.conflict {
				require.Contains(t, b.typesOf(t, moved), "CaseAnswered", "the other writer's event stays")
			}
		})
	}
}
