package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/caseevents"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/shredjournal"
	"github.com/kontakt-se/kontakt/pkg/subject"
	"github.com/kontakt-se/kontakt/services/retention/app"
)

// orderSealer is the real sealer, but every Destroy first checks that the
// shred journal on disk already names the case and the classes: the
// journal-first order that lets a restore destroy the keys again.
type orderSealer struct {
	*seal.Sealer
	t   *testing.T
	dir string

	mu        sync.Mutex
	destroyed int
}

func (s *orderSealer) DestroyBatch(ctx context.Context, ds []seal.Destruction) error {
	entries, err := shredjournal.Read(s.dir)
	require.NoError(s.t, err)
	for _, d := range ds {
		covered := false
		for _, e := range entries {
			if e.Kind != shredjournal.KindEvent || e.Event.Stream != d.CaseID {
				continue
			}
			if e.Event.DestroyAll {
				covered = true
				break
			}
			if len(d.Classes) > 0 && !slices.ContainsFunc(d.Classes, func(c seal.Class) bool { return !slices.Contains(e.Event.Destroy, string(c)) }) {
				covered = true
				break
			}
		}
		require.True(s.t, covered, "Destroy(%s, %v) before the journal named it", d.CaseID, d.Classes)
	}
	s.mu.Lock()
	s.destroyed += len(ds)
	s.mu.Unlock()
	return s.Sealer.DestroyBatch(ctx, ds)
}

// TestJournalBeforeKeysAndReceiptsAfter: the plan's redaction, an erasure
// and a deletion each reach the journal before their keys are destroyed
// (checked at every Destroy), the receipts reach it as the ledger stores
// them, byte for byte, and the erasure's note does not reach it.
func TestJournalBeforeKeysAndReceiptsAfter(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	dir := t.TempDir()
	j, err := shredjournal.Open(dir)
	require.NoError(t, err)
	t.Cleanup(func() { _ = j.Close() })
	sealer := &orderSealer{Sealer: b.sealer, t: t, dir: dir}
	in := w.newInstance(t, b, instanceOpts{journal: j, sealer: sealer})
	in.start(t)

	byPlan := b.register(t, caseSpec{name: "Plan Person", email: "plan@example.se", text: "planmarkör"})
	b.answer(t, byPlan, "svar")
	erased := b.register(t, caseSpec{name: "Radera Mig", email: "radera@example.se", identity: "198112189876", text: "raderamarkör"})
	in.caughtUp(t)
	out, err := in.svc.EraseSubject(t.Context(), "dpo-1", subject.Key{Email: "radera@example.se"}, "begäran från Radera Mig")
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.True(t, out[0].Erased)
	in.caughtUp(t)
	w.clock.Set(day(91))
	require.Positive(t, in.sweep(t))
	w.clock.Set(day(731))
	require.Positive(t, in.sweep(t))

	entries, err := shredjournal.Read(dir)
	require.NoError(t, err)
	events := map[string][]*shredjournal.Event{}
	var receipts []*shredjournal.Receipt
	for _, e := range entries {
		switch e.Kind {
		case shredjournal.KindEvent:
			events[e.Event.Stream] = append(events[e.Event.Stream], e.Event)
		case shredjournal.KindReceipt:
			receipts = append(receipts, e.Receipt)
		}
	}
	require.Positive(t, sealer.destroyed)

	// The erasure: every class it destroyed, its note cleared.
	er := events[erased.ID][0]
	require.Equal(t, caseevents.TypeOf(&casev1.PersonalDataRedacted{}), er.Type)
	require.Equal(t, []string{"note"}, er.Stripped)
	var m casev1.PersonalDataRedacted
	require.NoError(t, proto.Unmarshal(er.Data, &m))
	require.Equal(t, "erasure", m.GetReason())
	require.Empty(t, m.GetNote())
	require.ElementsMatch(t, []string{"contact", "identity", "freetext"}, er.Destroy, "the classes the case sealed")
	for _, e := range entries {
		raw, err := json.Marshal(e)
		require.NoError(t, err)
		require.NotContains(t, string(raw), "Radera Mig", "the erasure's note is in the journal")
	}
	// The plan's redaction, then both deletions.
	for _, c := range []*testCase{byPlan, erased} {
		evs := events[c.ID]
		last := evs[len(evs)-1]
		require.Equal(t, caseevents.TypeOf(&casev1.CaseDeleted{}), last.Type, c.ID)
		require.True(t, last.DestroyAll)
	}
	require.Equal(t, caseevents.TypeOf(&casev1.PersonalDataRedacted{}), events[byPlan.ID][0].Type)
	require.ElementsMatch(t, []string{"contact", "freetext", "answer"}, events[byPlan.ID][0].Destroy)

	// Every receipt, as stored, in chain order.
	ledgerReceipts := b.receipts(t)
	require.Len(t, receipts, len(ledgerReceipts))
	for i, r := range ledgerReceipts {
		want, err := json.Marshal(r)
		require.NoError(t, err)
		require.Equal(t, r.Key, receipts[i].Key)
		require.Equal(t, r.Hash, receipts[i].Hash)
		require.Equal(t, r.Prev, receipts[i].Prev)
		require.Equal(t, string(want), string(receipts[i].Data))
	}
	require.NoError(t, in.svc.CheckJournal(t.Context(), j.Tail()), "a store that holds everything its journal names passes")
}

// TestReappendedRedactionKeepsItsReceipt: an event that `kontakt restore`
// appends again from the journal lands at another revision; it carries
// the revision it first had, and its receipt (restored with it) is
// recognised instead of a second one being written.
func TestReappendedRedactionKeepsItsReceipt(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{})
	in.start(t)
	c := b.register(t, caseSpec{name: "Åter Igen", email: "ater@example.se"})
	in.caughtUp(t)
	_, err := in.svc.EraseSubject(t.Context(), "dpo-1", subject.Key{Email: "ater@example.se"}, "")
	require.NoError(t, err)
	in.caughtUp(t)
	before := b.receipts(t)
	require.Len(t, before, 1)
	reds, revs := b.redactions(t, c.ID)
	require.Len(t, reds, 1)

	// The same redaction again, later in the stream, as a restore appends
	// it: with the original revision it is the same receipt.
	recs, err := b.store.Read(t.Context(), c.ID)
	require.NoError(t, err)
	data, err := proto.Marshal(reds[0])
	require.NoError(t, err)
	_, err = b.store.Append(t.Context(), c.ID, eventstore.Exact(recs[len(recs)-1].Revision), eventstore.Event{
		ID: uuid.NewString(), Type: caseevents.TypeOf(reds[0]), Data: data,
		Metadata: map[string]string{shredjournal.MetaOriginalRevision: strconv.FormatUint(uint64(revs[0]), 10)},
	})
	require.NoError(t, err)
	in.caughtUp(t)
	require.Equal(t, before, b.receipts(t), "no second receipt")

	// Without it, it would have been a receipt of its own: the control.
	recs, err = b.store.Read(t.Context(), c.ID)
	require.NoError(t, err)
	again := proto.CloneOf(reds[0])
	again.RedactedAt = timestamppb.New(day(2))
	data, err = proto.Marshal(again)
	require.NoError(t, err)
	_, err = b.store.Append(t.Context(), c.ID, eventstore.Exact(recs[len(recs)-1].Revision), eventstore.Event{
		ID: uuid.NewString(), Type: caseevents.TypeOf(again), Data: data,
	})
	require.NoError(t, err)
	in.caughtUp(t)
	require.Len(t, b.receipts(t), 2)
}

// TestCheckJournalFindsAnOlderStore: a store that lacks the newest
// receipt or event of the journal is refused; one that has them (or whose
// case stream is gone) passes.
func TestCheckJournalFindsAnOlderStore(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{})
	in.start(t)
	c := b.register(t, caseSpec{name: "Kontroll", email: "kontroll@example.se"})
	in.caughtUp(t)
	recs, err := b.store.Read(t.Context(), c.ID)
	require.NoError(t, err)
	present := shredjournal.Entry{Kind: shredjournal.KindEvent, Event: &shredjournal.Event{Stream: c.ID, ID: recs[0].ID, Type: recs[0].Type}}
	gone := shredjournal.Entry{Kind: shredjournal.KindEvent, Event: &shredjournal.Event{Stream: uuid.NewString(), ID: "x", Type: "t"}}
	require.NoError(t, in.svc.CheckJournal(t.Context(), []shredjournal.Entry{present, gone}))

	missingEvent := shredjournal.Entry{Kind: shredjournal.KindEvent, Event: &shredjournal.Event{Stream: c.ID, ID: uuid.NewString(), Type: "t"}}
	err = in.svc.CheckJournal(t.Context(), []shredjournal.Entry{present, missingEvent})
	require.ErrorIs(t, err, app.ErrStaleStore)
	missingReceipt := shredjournal.Entry{Kind: shredjournal.KindReceipt, Receipt: &shredjournal.Receipt{Key: fmt.Sprintf("%s.redaction.99", c.ID), Hash: "h", Data: []byte("{}")}}
	err = in.svc.CheckJournal(t.Context(), []shredjournal.Entry{missingReceipt, present})
	require.ErrorIs(t, err, app.ErrStaleStore)
	require.Contains(t, err.Error(), c.ID+".redaction.99")
}
