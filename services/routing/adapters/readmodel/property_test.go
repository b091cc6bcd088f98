package readmodel

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
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
			return seal("k-"+label, fmt.Sprintf("%s-%d", label, v))
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
		for rest := evs; len(rest) > 0; {
			n := rapid.IntRange(1, len(rest)).Draw(rt, "batch")
			require.NoError(rt, batched.Apply(t.Context(), rest[:n]...))
			rest = rest[n:]
		}
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
			rows, _, err := batched.ListQueue(l.Queue, routingv1.QueueOrder_QUEUE_ORDER_AGE, nil, nil, MaxPageSize, "")
			require.NoError(rt, err)
			require.Len(rt, rows, int(l.Open))
			require.Equal(rt, l.OldestOpenAt, rows[0].RegisteredAt)
			unassigned := slices.DeleteFunc(rows, func(r CaseRow) bool { return !r.IsUnassigned() })
			require.Len(rt, unassigned, int(l.Unassigned))
		}
	})
}

// TestRecordRoundTrip checks the hand-written encoding on random records.
func TestRecordRoundTrip(t *testing.T) {
	str := rapid.StringN(0, 20, -1)
	optTime := rapid.Custom(func(t *rapid.T) time.Time {
		if rapid.Bool().Draw(t, "zero") {
			return time.Time{}
		}
		return time.Unix(0, rapid.Int64Range(-1<<60, 1<<60).Draw(t, "nanos")).UTC()
	})
	optSealed := rapid.Custom(func(t *rapid.T) *casev1.SealedPersonalData {
		if rapid.Bool().Draw(t, "nil") {
			return nil
		}
		return &casev1.SealedPersonalData{KeyId: str.Draw(t, "key"), Ciphertext: rapid.SliceOfN(rapid.Byte(), 1, 64).Draw(t, "ct")}
	})
	rapid.Check(t, func(rt *rapid.T) {
		r := &record{CaseRow: CaseRow{
			CaseID: str.Draw(rt, "id"), Number: str.Draw(rt, "number"),
			Type: casev1.CaseType(rapid.Int32Range(0, 1000).Draw(rt, "type")), Channel: casev1.Channel(rapid.Int32Range(0, 7).Draw(rt, "channel")),
			Category: str.Draw(rt, "category"), Queue: str.Draw(rt, "queue"),
			Status: casev1.CaseStatus(rapid.Int32Range(0, 5).Draw(rt, "status")), Assignee: str.Draw(rt, "assignee"),
			RegisteredAt: optTime.Draw(rt, "reg"), DueAt: optTime.Draw(rt, "due"), ClosedAt: optTime.Draw(rt, "closed"), UpdatedAt: optTime.Draw(rt, "updated"),
			Resolution:          casev1.Resolution(rapid.Int32Range(0, 4).Draw(rt, "resolution")),
			ForwardedDepartment: str.Draw(rt, "dept"), ForwardedOfficer: str.Draw(rt, "officer"),
			FreeText: optSealed.Draw(rt, "free"), Contact: optSealed.Draw(rt, "contact"), Identity: optSealed.Draw(rt, "identity"), AttachmentNames: optSealed.Draw(rt, "att"),
			Reopenings: rapid.IntRange(0, 1000).Draw(rt, "reopenings"),
		}}
		r.Revision = eventstore.Revision(1 + rapid.Uint64().Draw(rt, "revision")%(1<<62))
		for range rapid.IntRange(0, 3).Draw(rt, "attachments") {
			r.Attachments = append(r.Attachments, &casev1.Attachment{AttachmentId: str.Draw(rt, "aid"), ContentType: str.Draw(rt, "ct"), SizeBytes: rapid.Int64Range(0, 1<<40).Draw(rt, "size")})
		}
		r.Redacted = rapid.SliceOfDistinct(rapid.Map(rapid.Int32Range(1, 5), func(i int32) casev1.DataClass { return casev1.DataClass(i) }), func(c casev1.DataClass) casev1.DataClass { return c }).Draw(rt, "redacted")
		slices.Sort(r.Redacted)
		r.holds = rapid.SliceOfN(str, 0, 3).Draw(rt, "holds")
		r.OnHold = len(r.holds) > 0

		got, err := decodeRecord(encodeRecord(r))
		require.NoError(rt, err)
		// Empty slices come back as nil.
		for _, p := range []*record{r, got} {
			if len(p.holds) == 0 {
				p.holds = nil
			}
			if len(p.Redacted) == 0 {
				p.Redacted = nil
			}
		}
		require.Equal(rt, encodeRecord(r), encodeRecord(got))
		require.Equal(rt, r.CaseID, got.CaseID)
		require.True(rt, r.RegisteredAt.Equal(got.RegisteredAt))
		require.Equal(rt, r.holds, got.holds)
		require.Equal(rt, r.Redacted, got.Redacted)
		for _, pair := range [][2]*casev1.SealedPersonalData{{r.FreeText, got.FreeText}, {r.Contact, got.Contact}, {r.Identity, got.Identity}, {r.AttachmentNames, got.AttachmentNames}} {
			require.True(rt, proto.Equal(pair[0], pair[1]))
		}
	})
}
