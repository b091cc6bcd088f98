package readmodel

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/caseaccess"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	sealpkg "github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/routing/app"
	"github.com/kontakt-se/kontakt/services/routing/domain"
)

// drawHistory draws a random history over a few cases: any event in any
// order, including events for cases that do not exist (yet or any more),
// repeated registrations and deletions, and unknown event types.
func drawHistory(t *rapid.T) []draft {
	ids := []string{"a", "b", "c", "d", "e"}
	qs := []string{"q", "qq", "gata"}
	people := []string{"", "anna", "bertil"}
	n := rapid.IntRange(1, 120).Draw(t, "events")
	out := make([]draft, 0, n)
	for range n {
		id := rapid.SampledFrom(ids).Draw(t, "case")
		at := t0().Add(time.Duration(rapid.IntRange(0, 100).Draw(t, "minutes")) * time.Minute)
		sealedOrNil := func(label string) *casev1.SealedPersonalData {
			// Few distinct values, so tokens are shared between cases.
			v := rapid.IntRange(0, 3).Draw(t, label)
			if v == 0 {
				return nil
			}
			return sealedAs("k-"+label, fmt.Sprintf("%s-%d", label, v))
		}
		var m proto.Message
		switch rapid.IntRange(0, 17).Draw(t, "kind") {
		case 0, 1:
			m = &casev1.CaseRegistered{
				CaseId: id, CaseNumber: rapid.SampledFrom([]string{"", "KC-" + id, "KC-" + id + "-2"}).Draw(t, "number"),
				Type:         casev1.CaseType(rapid.IntRange(0, 5).Draw(t, "type")),
				Channel:      casev1.Channel(rapid.IntRange(0, 6).Draw(t, "channel")),
				RegisteredAt: ts(at),
				Contact:      sealedOrNil("contact"), Identity: sealedOrNil("identity"), FreeText: sealedOrNil("free"),
			}
		case 2, 3:
			m = routed(id, rapid.SampledFrom(qs).Draw(t, "queue"), at)
		case 4:
			m = &casev1.CaseMoved{CaseId: id, ToQueue: rapid.SampledFrom(qs).Draw(t, "queue")}
		case 5, 6:
			m = &casev1.CaseAssigned{CaseId: id, Assignee: rapid.SampledFrom(people).Draw(t, "assignee")}
		case 7:
			m = &casev1.CaseReleased{CaseId: id}
		case 8:
			m = &casev1.CaseForwarded{
				CaseId: id, ToQueue: rapid.SampledFrom(append([]string{""}, qs...)).Draw(t, "queue"),
				ToOfficer: rapid.SampledFrom(people).Draw(t, "officer"), Comment: sealedOrNil("comment"),
			}
		case 9:
			m = &casev1.NoteAdded{CaseId: id, Text: sealedOrNil("note")}
		case 10:
			m = &casev1.CaseClosed{CaseId: id, ClosedAt: ts(at)}
		case 11:
			m = &casev1.CaseReopened{CaseId: id}
		case 12:
			m = &casev1.HoldPlaced{CaseId: id, HoldId: rapid.SampledFrom([]string{"h1", "h2"}).Draw(t, "hold")}
		case 13:
			m = &casev1.HoldReleased{CaseId: id, HoldId: rapid.SampledFrom([]string{"h1", "h2"}).Draw(t, "hold")}
		case 14:
			m = &casev1.PersonalDataRedacted{CaseId: id, DataClasses: rapid.SliceOfN(rapid.Map(rapid.IntRange(0, 6), func(i int) casev1.DataClass { return casev1.DataClass(i) }), 0, 4).Draw(t, "classes")}
		case 15:
			m = &casev1.PersonalDataRectified{CaseId: id, DataClass: casev1.DataClass(rapid.IntRange(0, 6).Draw(t, "class")), Value: sealedOrNil("rectified")}
		case 16:
			if rapid.Bool().Draw(t, "stream deleted") {
				out = append(out, ev(id, nil))
				continue
			}
			m = &casev1.CaseDeleted{CaseId: id}
		case 17:
			m = &casev1.CaseMarkedForPreservation{CaseId: id}
		}
		out = append(out, ev(id, m))
	}
	return out
}

func openQuick(t *rapid.T, dir string, name string) *Store {
	s, err := Open(filepath.Join(dir, name), Options{Tokenizer: &fakeTokenizer{}})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	// Durability is not what this test is about; fsync would dominate.
	s.db.NoSync = true
	return s
}

// applyInRandomBatches applies events in batches of random sizes.
func applyInRandomBatches(t *rapid.T, s *Store, evs []eventstore.RecordedEvent) {
	for rest := evs; len(rest) > 0; {
		n := rapid.IntRange(1, len(rest)).Draw(t, "batch")
		require.NoError(t, s.Apply(context.Background(), rest[:n]...))
		rest = rest[n:]
	}
}

// TestQueueLoadsMatchRecount checks after random histories, applied in
// random batches, that the incrementally kept counters, indexes and
// tokens equal a full recount from the rows, that the batching does not
// matter, and that applying everything again changes nothing.
func TestQueueLoadsMatchRecount(t *testing.T) {
	dir := t.TempDir()
	run := 0
	rapid.Check(t, func(rt *rapid.T) {
		run++
		evs := history(0, drawHistory(rt)...)

		batched := openQuick(rt, dir, fmt.Sprintf("batched-%d.db", run))
		defer batched.Close()
		applyInRandomBatches(rt, batched, evs)
		checkConsistent(rt, batched)

		whole := openQuick(rt, dir, fmt.Sprintf("whole-%d.db", run))
		defer whole.Close()
		require.NoError(rt, whole.Apply(t.Context(), evs...))
		want := dump(rt, whole)
		require.Equal(rt, want, dump(rt, batched), "batch boundaries changed the result")

		require.NoError(rt, batched.Apply(t.Context(), evs...))
		require.Equal(rt, want, dump(rt, batched), "applying again changed the result")

		// The queue views agree with the counters.
		loads, err := batched.AllQueueLoads()
		require.NoError(rt, err)
		for _, l := range loads {
			rows, _, err := listQueue(batched, l.Queue, routingv1.QueueOrder_QUEUE_ORDER_AGE, nil, nil, MaxPageSize, "")
			require.NoError(rt, err)
			require.Len(rt, rows, int(l.Open))
			require.Equal(rt, l.OldestOpenAt, rows[0].RegisteredAt)
			unassigned := slices.DeleteFunc(rows, func(r app.CaseRow) bool { return !r.IsUnassigned() })
			require.Len(rt, unassigned, int(l.Unassigned))
		}
	})
}

// requireSameRow compares two rows, the sealed values and attachments by
// their content.
func requireSameRow(t tb, want, got app.CaseRow, msgAndArgs ...any) {
	t.Helper()
	sealedOf := func(r *app.CaseRow) []*casev1.SealedPersonalData {
		return []*casev1.SealedPersonalData{r.FreeText, r.Contact, r.Identity, r.AttachmentNames}
	}
	w, g := sealedOf(&want), sealedOf(&got)
	for i := range w {
		require.True(t, proto.Equal(w[i], g[i]), "sealed value %d: %v", i, msgAndArgs)
	}
	require.Len(t, got.Attachments, len(want.Attachments), msgAndArgs...)
	for i := range want.Attachments {
		require.True(t, proto.Equal(want.Attachments[i], got.Attachments[i]), "attachment %d: %v", i, msgAndArgs)
	}
	for _, r := range []*app.CaseRow{&want, &got} {
		r.FreeText, r.Contact, r.Identity, r.AttachmentNames, r.Attachments = nil, nil, nil, nil, nil
		if len(r.Redacted) == 0 {
			r.Redacted = nil
		}
	}
	require.Equal(t, want, got, msgAndArgs...)
}

// TestRecordRoundTrip checks the stored form of a case (the private
// proto) on random records: decoding gives the record back, encoding is
// deterministic, and a key id that pkg/seal derives from the case, the
// class and the generation is not stored, while any other is kept as it
// is.
func TestRecordRoundTrip(t *testing.T) {
	str := rapid.StringN(0, 20, -1)
	optTime := rapid.Custom(func(t *rapid.T) time.Time {
		if rapid.Bool().Draw(t, "zero") {
			return time.Time{}
		}
		return time.Unix(0, rapid.Int64Range(-1<<60, 1<<60).Draw(t, "nanos")).UTC()
	})
	rapid.Check(t, func(rt *rapid.T) {
		caseID := rapid.SampledFrom([]string{uuid.NewString(), "01ARZ3NDEKTSV4RRFFQ69G5FAV", "a", ""}).Draw(rt, "case id")
		otherCase := uuid.NewString()
		var derived []string // key ids that must not be stored
		optSealed := func(class sealpkg.Class, label string) *casev1.SealedPersonalData {
			ct := rapid.SliceOfN(rapid.Byte(), 1, 64).Draw(rt, label+" ciphertext")
			switch rapid.IntRange(0, 4).Draw(rt, label) {
			case 0:
				return nil
			case 1, 2: // the key pkg/seal derives, of some generation
				keyID, err := sealpkg.KeyID(caseID, class, rapid.Uint32Range(0, 1000).Draw(rt, label+" generation"))
				if err != nil {
					return &casev1.SealedPersonalData{KeyId: caseID, Ciphertext: ct} // not a case id pkg/seal takes
				}
				derived = append(derived, keyID)
				return &casev1.SealedPersonalData{KeyId: keyID, Ciphertext: ct}
			case 3: // another case's or another class's key
				keyID, err := sealpkg.KeyID(otherCase, rapid.SampledFrom(sealpkg.Classes()).Draw(rt, label+" class"), 0)
				require.NoError(rt, err)
				return &casev1.SealedPersonalData{KeyId: keyID, Ciphertext: ct}
			default: // anything, even empty
				return &casev1.SealedPersonalData{KeyId: str.Draw(rt, label+" key id"), Ciphertext: ct}
			}
		}
		r := &record{c: domain.Case{
			ID: caseID, Number: str.Draw(rt, "number"),
			Type: casev1.CaseType(rapid.Int32Range(0, 1000).Draw(rt, "type")), Channel: casev1.Channel(rapid.Int32Range(0, 7).Draw(rt, "channel")),
			Category: str.Draw(rt, "category"), RegisteredAt: optTime.Draw(rt, "registered"),
			Status: casev1.CaseStatus(rapid.Int32Range(0, 5).Draw(rt, "status")), Routed: rapid.Bool().Draw(rt, "routed"),
			Facts: caseaccess.Facts{
				Queue: str.Draw(rt, "queue"), Assignee: str.Draw(rt, "assignee"),
				ForwardedToDepartment: str.Draw(rt, "department"), ForwardedToOfficer: str.Draw(rt, "officer"),
			},
			Forwarded: rapid.Bool().Draw(rt, "forwarded"), ClosedAt: optTime.Draw(rt, "closed"),
			Resolution: casev1.Resolution(rapid.Int32Range(0, 4).Draw(rt, "resolution")),
			Reopenings: rapid.IntRange(0, 1000).Draw(rt, "reopenings"), Version: rapid.Uint64().Draw(rt, "revision"),
		}}
		for _, h := range rapid.SliceOfN(str, 0, 3).Draw(rt, "holds") {
			if r.c.Holds == nil {
				r.c.Holds = map[string]bool{}
			}
			r.c.Holds[h] = true
		}
		r.freeText = optSealed(sealpkg.ClassFreeText, "free text")
		r.contact = optSealed(sealpkg.ClassContact, "contact")
		r.identity = optSealed(sealpkg.ClassIdentity, "identity")
		r.attachmentNames = optSealed(sealpkg.ClassAttachments, "attachment names")
		for range rapid.IntRange(0, 3).Draw(rt, "attachments") {
			r.attachments = append(r.attachments, &casev1.Attachment{AttachmentId: str.Draw(rt, "aid"), ContentType: str.Draw(rt, "ct"), SizeBytes: rapid.Int64Range(0, 1<<40).Draw(rt, "size")})
		}
		r.redacted = rapid.SliceOfDistinct(rapid.Map(rapid.Int32Range(1, 5), func(i int32) casev1.DataClass { return casev1.DataClass(i) }), func(c casev1.DataClass) casev1.DataClass { return c }).Draw(rt, "redacted")
		slices.Sort(r.redacted)

		b, err := encodeRecord(r)
		require.NoError(rt, err)
		got, err := decodeRecord(caseID, b)
		require.NoError(rt, err)
		again, err := encodeRecord(got)
		require.NoError(rt, err)
		require.Equal(rt, b, again, "encoding is deterministic and decoding loses nothing it stores")
		sla := DefaultSLA()
		requireSameRow(rt, r.row(sla), got.row(sla))
		require.Equal(rt, r.c.Routed, got.c.Routed)
		require.Equal(rt, r.c.Forwarded, got.c.Forwarded)
		for _, keyID := range derived {
			require.NotContains(rt, string(b), keyID, "a derived key id is stored")
		}

		// History entries, whose texts are sealed in the answer class.
		entries := []app.HistoryEntry{}
		for range rapid.IntRange(0, 5).Draw(rt, "entries") {
			entries = append(entries, app.HistoryEntry{
				Kind: rapid.SampledFrom(slices.Sorted(maps.Keys(historyKinds))).Draw(rt, "kind"), Actor: str.Draw(rt, "actor"),
				At: optTime.Draw(rt, "at"), Text: optSealed(sealpkg.ClassAnswer, "text"), Queue: str.Draw(rt, "entry queue"),
				Resolution: casev1.Resolution(rapid.Int32Range(0, 4).Draw(rt, "entry resolution")),
			})
		}
		hb, err := encodeHistory(caseID, entries)
		require.NoError(rt, err)
		gotEntries, err := decodeHistory(caseID, hb)
		require.NoError(rt, err)
		require.Len(rt, gotEntries, len(entries))
		for i := range entries {
			require.True(rt, proto.Equal(entries[i].Text, gotEntries[i].Text))
			entries[i].Text, gotEntries[i].Text = nil, nil
		}
		require.Equal(rt, entries, gotEntries)
	})
}

// TestRowsFollowTheDomainFold folds random histories of many cases two
// ways: through the store, in random batches, with every case written to
// the file and read back between batches; and in memory, with the
// domain's fold (domain.Case.Apply) over each case's events and nothing
// else. The rows must show the same case. So the read model shows what
// the commands decide on, the file keeps all of the fold's state that
// the rows need, and the batching changes nothing.
func TestRowsFollowTheDomainFold(t *testing.T) {
	dir := t.TempDir()
	run := 0
	rapid.Check(t, func(rt *rapid.T) {
		run++
		var drafts []draft
		if rapid.Bool().Draw(rt, "generated") {
			drafts = genHistory(rand.New(rand.NewPCG(rapid.Uint64().Draw(rt, "seed"), 1)), rapid.IntRange(1, 300).Draw(rt, "events"))
		} else {
			drafts = drawHistory(rt)
		}
		evs := history(0, drafts...)

		s := openQuick(rt, dir, fmt.Sprintf("fold-%d.db", run))
		defer s.Close()
		applyInRandomBatches(rt, s, evs)

		// The domain's fold of each case, from its registration; a
		// deleted case is gone, and events of a case that is not there
		// change nothing.
		folds := map[string]*domain.Case{}
		var ids []string
		for _, e := range evs {
			if !slices.Contains(ids, e.Stream) {
				ids = append(ids, e.Stream)
			}
			if e.Type == eventstore.TypeStreamDeleted || e.Type == typeOf(&casev1.CaseDeleted{}) {
				delete(folds, e.Stream)
				continue
			}
			msg, err := domain.Decode(e.Type, e.Data)
			require.NoError(rt, err)
			c, ok := folds[e.Stream]
			if !ok {
				if _, reg := msg.(*casev1.CaseRegistered); !reg {
					continue
				}
				c = &domain.Case{}
			}
			if c.Apply(domain.Event{Type: e.Type, Message: msg, Revision: uint64(e.Revision), Recorded: e.Recorded}) == nil {
				folds[e.Stream] = c
			}
		}

		sla := DefaultSLA()
		for _, id := range ids {
			row, err := s.Get(id)
			c, ok := folds[id]
			if !ok {
				require.ErrorIs(rt, err, app.ErrNotFound, "case %s", id)
				continue
			}
			require.NoError(rt, err)
			want := app.CaseRow{
				CaseID: c.ID, Number: c.Number, Type: c.Type, Channel: c.Channel, Category: c.Category,
				Status: c.Status, Facts: c.Facts, RegisteredAt: c.RegisteredAt, ClosedAt: c.ClosedAt,
				Resolution: c.Resolution, Reopenings: c.Reopenings, OnHold: c.OnHold(), Revision: eventstore.Revision(c.Version),
			}
			if d, ok := sla[c.Type]; ok {
				want.DueAt = c.RegisteredAt.Add(d)
			}
			// The sealed copies are the read model's own; the rest is the
			// fold's.
			row.FreeText, row.Contact, row.Identity, row.AttachmentNames, row.Attachments, row.Redacted = nil, nil, nil, nil, nil, nil
			require.Equal(rt, want, row, "case %s", id)
		}
		checkConsistent(rt, s)
	})
}
