package app_test

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/blindindex"
	"github.com/kontakt-se/kontakt/pkg/caseevents"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/receipt"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/subject"
	"github.com/kontakt-se/kontakt/services/retention/adapters/archive"
	"github.com/kontakt-se/kontakt/services/retention/adapters/index"
	"github.com/kontakt-se/kontakt/services/retention/app"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

// markedSpecs are cases of several types and channels whose personal data
// carries a marker, so the tests can tell each case's data apart.
func markedSpecs(tag string) []caseSpec {
	mk := func(s string) string { return fmt.Sprintf("%s-%s", s, tag) }
	return []caseSpec{
		{typ: casev1.CaseType_CASE_TYPE_FRAGA, channel: casev1.Channel_CHANNEL_EMAIL, name: mk("NAMN-fraga"), email: mk("fraga") + "@example.se",
			identity: personnummer("19800101", "123"), subject: mk("RUBRIK-fraga"), text: mk("FRITEXT-fraga"), files: []string{mk("BILAGA-fraga") + ".pdf"}},
		{typ: casev1.CaseType_CASE_TYPE_FELANMALAN, channel: casev1.Channel_CHANNEL_FORM, email: mk("fel") + "@example.se", phone: "070-123 45 67",
			text: mk("FRITEXT-fel"), files: []string{mk("BILAGA-fel") + ".jpg"}},
		{typ: casev1.CaseType_CASE_TYPE_SYNPUNKT, channel: casev1.Channel_CHANNEL_PHONE, email: mk("synpunkt") + "@example.se", phone: "+46701112233",
			text: mk("FRITEXT-synpunkt")},
		{typ: casev1.CaseType_CASE_TYPE_BREV, channel: casev1.Channel_CHANNEL_LETTER, name: mk("NAMN-brev"), email: mk("brev") + "@example.se",
			identity: personnummer("19751224", "456"), text: mk("FRITEXT-brev")},
		{typ: casev1.CaseType_CASE_TYPE_FRAGA, channel: casev1.Channel_CHANNEL_VISIT, email: mk("besok") + "@example.se", text: mk("FRITEXT-besok")},
		{typ: casev1.CaseType_CASE_TYPE_FRAGA, channel: casev1.Channel_CHANNEL_CHAT, email: mk("chatt") + "@example.se", chat: mk("CHATT-transkript")},
	}
}

func subjectAccess(t *testing.T, in *instance, key subject.Key) []app.SubjectCase {
	t.Helper()
	out, err := in.svc.SubjectAccess(t.Context(), "dso-1", "registrator", key, "")
	require.NoError(t, err)
	return out.Cases
}

func caseIDs(cs []app.SubjectCase) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.CaseID)
	}
	return out
}

func TestRedactionAtNinetyDays(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{})
	in.start(t)

	var cases []*testCase
	for i, s := range markedSpecs("t1") {
		tc := b.register(t, s)
		if i%2 == 0 {
			b.answer(t, tc, "SVAR-"+tc.Number)
		}
		cases = append(cases, tc)
	}
	in.caughtUp(t)
	for _, tc := range cases {
		got := subjectAccess(t, in, subject.Key{Email: tc.Spec.email})
		require.Equal(t, []string{tc.ID}, caseIDs(got), "before redaction the e-mail finds case %s", tc.Number)
	}
	chat := cases[len(cases)-1]
	require.Equal(t, casev1.Channel_CHANNEL_CHAT, chat.Spec.channel)

	// Day 31: only the chat transcript is due.
	w.clock.Set(day(31))
	require.Equal(t, 1, in.sweep(t))
	reds, _ := b.redactions(t, chat.ID)
	require.Len(t, reds, 1)
	require.Equal(t, []string{"freetext"}, classNames(reds[0].GetDataClasses()))
	require.Equal(t, "chatt-konversation", reds[0].GetRule())
	require.Equal(t, "retention", reds[0].GetReason())
	b.requireDestroyed(t, chat, seal.ClassFreeText)
	b.requireOpens(t, chat, seal.ClassContact, seal.ClassAnswer)

	// Day 89: nothing is due; the log does not move.
	head, err := b.store.Head(t.Context())
	require.NoError(t, err)
	w.clock.Set(day(89))
	require.Zero(t, in.sweep(t))
	after, err := b.store.Head(t.Context())
	require.NoError(t, err)
	require.Equal(t, head, after)
	for _, tc := range cases[:len(cases)-1] {
		reds, _ := b.redactions(t, tc.ID)
		require.Empty(t, reds, "case %s at day 89", tc.Number)
	}

	// Day 91: every case's remaining personal data goes, in one event.
	w.clock.Set(day(91))
	require.Equal(t, len(cases), in.sweep(t))
	require.Zero(t, in.sweep(t), "a second pass finds nothing left to do")

	rs := b.receipts(t)
	totalRedactions := 0
	for _, tc := range cases {
		reds, revs := b.redactions(t, tc.ID)
		totalRedactions += len(reds)
		last := reds[len(reds)-1]
		if tc == chat {
			require.Len(t, reds, 2, "chat: transcript at day 31, the rest at day 91")
			require.Equal(t, []string{"answer", "attachments", "contact", "identity"}, classNames(last.GetDataClasses()))
		} else {
			require.Len(t, reds, 1, "case %s (%s/%s)", tc.Number, tc.Spec.typ, tc.Spec.channel)
			require.Equal(t, allClassNames(), classNames(last.GetDataClasses()))
		}
		require.Equal(t, "retention", last.GetReason())
		require.Equal(t, "personuppgifter", last.GetRule())
		require.Equal(t, "2021.1", last.GetPlanVersion())
		require.True(t, last.GetRedactedAt().AsTime().Equal(day(91)))

		b.requireDestroyed(t, tc, seal.Classes()...)

		// The index forgets the person.
		require.Empty(t, subjectAccess(t, in, subject.Key{Email: tc.Spec.email}))
		ids, err := in.idx.FindByToken(w.emailToken(tc.Spec.email))
		require.NoError(t, err)
		require.Empty(t, ids, "case %s keeps no e-mail token", tc.Number)
		if tc.Spec.identity != "" {
			ids, err := in.idx.FindByToken(w.blind.Token(blindindex.IdentityNumber, tc.Spec.identity))
			require.NoError(t, err)
			require.Empty(t, ids, "case %s keeps no identity token", tc.Number)
		}
		e, found, err := in.idx.Get(tc.ID)
		require.NoError(t, err)
		require.True(t, found)
		require.True(t, e.NextDue.Equal(t0.AddDate(2, 0, 0)), "next is the deletion at two years, got %s", e.NextDue)

		// One receipt per redaction event, keyed by its revision.
		got := receiptsOf(rs, tc.ID, receipt.KindRedaction)
		require.Len(t, got, len(reds))
		for i, r := range got {
			require.Equal(t, fmt.Sprintf("%s.redaction.%d", tc.ID, revs[i]), r.Key)
			require.Equal(t, classNames(reds[i].GetDataClasses()), sortedCopy(r.Classes))
			require.Equal(t, "retention", r.Reason)
			require.Equal(t, reds[i].GetRule(), r.Rule)
			require.Equal(t, tc.Number, r.CaseNumber)
			require.Equal(t, "Mölndal stad, Kontaktcenter", r.PlanName)
		}
	}
	require.Len(t, rs, totalRedactions, "the ledger holds redaction receipts only, one per event")
}

func sortedCopy(xs []string) []string {
	out := append([]string(nil), xs...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestConcurrentSweepersActExactlyOnce(t *testing.T) {
	w := newWorld(t)
	// Two instances as two processes: own connections, own adapters, own
	// index files, the same server.
	ba, bb := w.connect(t), w.connect(t)
	ia := w.newInstance(t, ba, instanceOpts{workers: 4})
	ib := w.newInstance(t, bb, instanceOpts{workers: 4})
	ia.start(t)
	ib.start(t)

	const n = 24
	var cases []*testCase
	for i := range n {
		s := caseSpec{email: fmt.Sprintf("person%d@example.se", i), text: fmt.Sprintf("FRITEXT-%d", i)}
		if i%4 == 0 {
			s.channel = casev1.Channel_CHANNEL_CHAT
			s.chat = fmt.Sprintf("CHATT-%d", i)
		}
		cases = append(cases, ba.register(t, s))
	}
	ia.caughtUp(t)
	ib.caughtUp(t)

	sweepBoth := func(rounds int) {
		t.Helper()
		for range rounds {
			var wg sync.WaitGroup
			errs := make(chan error, 2)
			for _, in := range []*instance{ia, ib} {
				wg.Go(func() {
					_, err := in.svc.Sweep(t.Context())
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
		}
		ia.caughtUp(t)
		ib.caughtUp(t)
	}

	w.clock.Set(day(91))
	sweepBoth(4)
	rs := ba.receipts(t)
	for _, tc := range cases {
		reds, revs := ba.redactions(t, tc.ID)
		want := 1
		if tc.Spec.channel == casev1.Channel_CHANNEL_CHAT {
			want = 2 // the transcript's 30-day rule and the 90-day rule
		}
		require.Len(t, reds, want, "case %s", tc.Number)
		got := receiptsOf(rs, tc.ID, receipt.KindRedaction)
		require.Len(t, got, want, "case %s: one receipt per redaction", tc.Number)
		for i := range got {
			require.Equal(t, fmt.Sprintf("%s.redaction.%d", tc.ID, revs[i]), got[i].Key)
		}
		ba.requireDestroyed(t, tc, seal.Classes()...)
	}

	// The deletion at two years, raced the same way.
	w.clock.Set(day(731))
	sweepBoth(3)
	rs = ba.receipts(t)
	for _, tc := range cases {
		require.Len(t, receiptsOf(rs, tc.ID, receipt.KindDeletion), 1, "case %s", tc.Number)
		_, err := ba.store.Read(t.Context(), tc.ID)
		require.True(t, isNotFound(err), "case %s: %v", tc.Number, err)
	}
	for _, in := range []*instance{ia, ib} {
		n, err := in.idx.Count()
		require.NoError(t, err)
		require.Zero(t, n, "both indexes dropped the deleted cases")
	}
}

func TestApplyBatchTwiceIsIdempotent(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{})
	ctx := t.Context()
	// No projector: the test feeds the index itself.
	var cases []*testCase
	for i := range 3 {
		cases = append(cases, b.register(t, caseSpec{email: fmt.Sprintf("p%d@example.se", i), identity: personnummer("19900101", fmt.Sprintf("%03d", 100+i))}))
	}
	var batch []eventstore.RecordedEvent
	for _, tc := range cases {
		for _, e := range b.events(t, tc.ID) {
			batch = append(batch, e.rec)
		}
	}
	applyBatch(t, in, batch)
	ids, err := in.idx.FindByToken(w.emailToken("p1@example.se"))
	require.NoError(t, err)
	require.Equal(t, []string{cases[1].ID}, ids)

	w.clock.Set(day(91))
	n, err := in.svc.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, len(cases), n)

	var redactions []eventstore.RecordedEvent
	for _, tc := range cases {
		for _, e := range b.events(t, tc.ID) {
			if _, ok := e.msg.(*casev1.PersonalDataRedacted); ok {
				redactions = append(redactions, e.rec)
			}
		}
	}
	require.Len(t, redactions, len(cases))
	// Applied, then applied again as after a crash before the checkpoint
	// moved; and once more with the registrations in front, as a replay
	// from an older checkpoint would.
	applyBatch(t, in, redactions)
	applyBatch(t, in, redactions)
	applyBatch(t, in, append(append([]eventstore.RecordedEvent(nil), batch...), redactions...))

	rs := b.receipts(t)
	require.Len(t, rs, len(cases))
	keys := map[string]int{}
	for _, r := range rs {
		keys[r.Key]++
	}
	for _, rec := range redactions {
		require.Equal(t, 1, keys[fmt.Sprintf("%s.redaction.%d", rec.Stream, rec.Revision)])
	}
	for _, tc := range cases {
		b.requireDestroyed(t, tc, seal.ClassContact, seal.ClassIdentity)
		e, found, err := in.idx.Get(tc.ID)
		require.NoError(t, err)
		require.True(t, found)
		require.Len(t, e.Case.Redacted, 5)
	}
	require.NoError(t, in.idx.Tokens(func(caseID, slot string, toks []string) error {
		return fmt.Errorf("the replayed registration brought back the %s tokens of case %s", slot, caseID)
	}))
	cp, err := in.idx.Checkpoint()
	require.NoError(t, err)
	require.Equal(t, redactions[len(redactions)-1].Position, cp)
	due, err := in.idx.Due(w.clock.Now(), 10)
	require.NoError(t, err)
	require.Empty(t, due)
}

func TestDeletionAtTwoYears(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{})
	in.start(t)
	ctx := t.Context()

	tests := []struct {
		name string
		held bool // held past both deadlines, so both are applied in one pass
	}{
		{"redacted at day 91, deleted at two years", false},
		{"both deadlines in one pass after a hold", true},
	}
	var cases []*testCase
	for i := range tests {
		tc := b.register(t, caseSpec{name: "NAMN", email: fmt.Sprintf("del%d@example.se", i), identity: personnummer("19700101", fmt.Sprintf("%03d", 200+i)), text: "FRITEXT", files: []string{"a.pdf"}})
		b.answer(t, tc, "SVAR")
		cases = append(cases, tc)
	}
	in.caughtUp(t)
	holdID, err := in.svc.PlaceHold(ctx, "jurist", cases[1].ID, "tvist")
	require.NoError(t, err)

	w.clock.Set(day(91))
	require.Equal(t, 1, in.sweep(t))
	// Two calendar years from 2026-03-02 are 731 days (2028 is a leap
	// year): day 730 is still before the deadline.
	w.clock.Set(day(730))
	require.Zero(t, in.sweep(t))

	w.clock.Set(t0.AddDate(2, 0, 0))
	require.Equal(t, 731, int(w.clock.Now().Sub(t0)/(24*time.Hour)))
	require.NoError(t, in.svc.ReleaseHold(ctx, "jurist", cases[1].ID, holdID))
	require.Equal(t, 3, in.sweep(t), "one deletion, and a redaction followed by a deletion")

	rs := b.receipts(t)
	for i, tc := range cases {
		t.Run(tests[i].name, func(t *testing.T) {
			ctx := t.Context()
			_, err := b.store.Read(ctx, tc.ID)
			require.ErrorIs(t, err, eventstore.ErrStreamDeleted)
			require.ErrorIs(t, err, eventstore.ErrStreamNotFound)

			del := receiptsOf(rs, tc.ID, receipt.KindDeletion)
			require.Len(t, del, 1)
			require.Equal(t, tc.ID+".deletion", del[0].Key)
			require.Equal(t, "arendet", del[0].Rule)
			require.Equal(t, tc.Number, del[0].CaseNumber)
			require.Equal(t, []string{"case"}, del[0].Classes)
			require.True(t, del[0].At.Equal(t0.AddDate(2, 0, 0)))
			red := receiptsOf(rs, tc.ID, receipt.KindRedaction)
			require.Len(t, red, 1)
			require.Less(t, indexOfKey(rs, red[0].Key), indexOfKey(rs, del[0].Key))

			b.requireDestroyed(t, tc, seal.Classes()...)
			// Every class of the case is closed for good, also those that
			// never had data.
			_, err = b.sealer.SealMessage(ctx, tc.ID, seal.ClassAttachments, 0, &casev1.AttachmentNames{Names: []string{"x"}})
			require.ErrorIs(t, err, seal.ErrKeyDestroyed)

			_, found, err := in.idx.Get(tc.ID)
			require.NoError(t, err)
			require.False(t, found, "the index dropped the case")

			_, err = b.store.Append(ctx, tc.ID, eventstore.Any(), eventstore.Event{ID: uuid.NewString(), Type: "kontakt.case.v1.CaseReopened"})
			require.ErrorIs(t, err, eventstore.ErrStreamDeleted, "a deleted case id is never reused")
			_, err = b.store.Append(ctx, tc.ID, eventstore.NoStream(), eventstore.Event{ID: uuid.NewString(), Type: "kontakt.case.v1.CaseRegistered"})
			require.ErrorIs(t, err, eventstore.ErrStreamDeleted)
			_, err = in.svc.PlaceHold(ctx, "jurist", tc.ID, "för sent")
			require.ErrorIs(t, err, app.ErrNotFound)
		})
	}
	require.Zero(t, in.sweep(t))
}

func TestHolds(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{})
	in.start(t)
	ctx := t.Context()

	held := b.register(t, caseSpec{email: "held@example.se", text: "FRITEXT-held"})
	free := b.register(t, caseSpec{email: "free@example.se", text: "FRITEXT-free"})
	in.caughtUp(t)

	w.clock.Set(day(60))
	holdID, err := in.svc.PlaceHold(ctx, "jurist-1", held.ID, "överklagande")
	require.NoError(t, err)
	require.NotEmpty(t, holdID)
	in.caughtUp(t)

	w.clock.Set(day(91))
	require.Equal(t, 1, in.sweep(t), "only the free case is redacted")
	reds, _ := b.redactions(t, held.ID)
	require.Empty(t, reds)
	b.requireOpens(t, held, seal.ClassContact, seal.ClassFreeText)
	reds, _ = b.redactions(t, free.ID)
	require.Len(t, reds, 1)

	preview, err := in.svc.Preview(0)
	require.NoError(t, err)
	var heldItems []app.DueItem
	for _, it := range preview {
		if it.CaseID == held.ID {
			heldItems = append(heldItems, it)
		}
	}
	require.Len(t, heldItems, 1, "the hold defers the redaction, the preview still shows it")
	require.True(t, heldItems[0].OnHold)
	require.Equal(t, "personuppgifter", heldItems[0].Due.Rule)
	require.True(t, heldItems[0].Due.At.Equal(t0.AddDate(0, 0, 90)))

	w.clock.Set(day(95))
	require.Zero(t, in.sweep(t), "still held at day 95")

	// Errors.
	err = in.svc.ReleaseHold(ctx, "jurist-1", held.ID, uuid.NewString())
	require.ErrorIs(t, err, app.ErrHoldNotFound)
	_, err = in.svc.PlaceHold(ctx, "jurist-1", uuid.NewString(), "ingen sådan")
	require.ErrorIs(t, err, app.ErrNotFound)
	_, err = in.svc.PlaceHold(ctx, "jurist-1", "not-a-case-id", "ingen sådan")
	require.ErrorIs(t, err, app.ErrNotFound)
	err = in.svc.ReleaseHold(ctx, "jurist-1", uuid.NewString(), holdID)
	require.ErrorIs(t, err, app.ErrNotFound)

	w.clock.Set(day(100))
	require.NoError(t, in.svc.ReleaseHold(ctx, "jurist-1", held.ID, holdID))
	require.ErrorIs(t, in.svc.ReleaseHold(ctx, "jurist-1", held.ID, holdID), app.ErrHoldNotFound, "released once")
	require.Equal(t, 1, in.sweep(t), "the overdue redaction happens at the next sweep")
	reds, _ = b.redactions(t, held.ID)
	require.Len(t, reds, 1)
	require.True(t, reds[0].GetRedactedAt().AsTime().Equal(day(100)))
	b.requireDestroyed(t, held, seal.Classes()...)
}

func TestPreservation(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{})
	in.start(t)
	ctx := t.Context()

	tc := b.register(t, caseSpec{typ: casev1.CaseType_CASE_TYPE_SYNPUNKT, channel: casev1.Channel_CHANNEL_LETTER,
		name: "NAMN-bevaras", email: "bevaras@example.se", identity: personnummer("19650315", "789"),
		text: "FRITEXT-bevaras", files: []string{"BILAGA-bevaras.pdf"}})
	b.answer(t, tc, "SVAR-bevaras")
	other := b.register(t, caseSpec{email: "gallras@example.se", text: "FRITEXT-gallras"})
	in.caughtUp(t)

	markCase(ctx, t, in.svc, tc.ID, "av vikt")
	markCase(ctx, t, in.svc, tc.ID, "igen")
	require.Equal(t, []string{"CaseRegistered", "CaseAnswered", "CaseMarkedForPreservation"}, b.typesOf(t, tc.ID), "marking twice appends once")

	w.clock.Set(day(91))
	require.Equal(t, 3, in.sweep(t), "archive + redaction of the marked case, redaction of the other")

	types := b.typesOf(t, tc.ID)
	require.Equal(t, []string{"CaseRegistered", "CaseAnswered", "CaseMarkedForPreservation", "CaseArchived", "PersonalDataRedacted"}, types)
	var archived *casev1.CaseArchived
	for _, e := range b.events(t, tc.ID) {
		if m, ok := e.msg.(*casev1.CaseArchived); ok {
			archived = m
		}
	}
	require.NotNil(t, archived)
	// The package is named after the case (archive.FileName, perhaps with
	// a suffix) and the event names it.
	require.True(t, strings.HasPrefix(archived.GetPackage(), strings.TrimSuffix(archive.FileName(tc.Number, tc.ID), ".zip")), archived.GetPackage())
	path := filepath.Join(in.archiveDir, archived.GetPackage())
	m, err := archive.Verify(path)
	require.NoError(t, err)
	require.Equal(t, tc.ID, m.CaseID)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	sum := sha256.Sum256(data)
	require.Equal(t, hex.EncodeToString(sum[:]), archived.GetSha256())

	caseJSON := readZipFile(t, path, "case.json")
	for _, marker := range []string{"NAMN-bevaras", "bevaras@example.se", tc.Spec.identity, "FRITEXT-bevaras", "BILAGA-bevaras.pdf", "SVAR-bevaras"} {
		require.Contains(t, caseJSON, marker, "the package keeps the personal data as it was")
	}
	require.Contains(t, readZipFile(t, path, "attachments.json"), "BILAGA-bevaras.pdf")
	entries, err := os.ReadDir(in.archiveDir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "the unmarked case is not archived")

	b.requireDestroyed(t, tc, seal.Classes()...)
	rs := b.receipts(t)
	arch := receiptsOf(rs, tc.ID, receipt.KindArchive)
	require.Len(t, arch, 1)
	require.Equal(t, archived.GetSha256(), arch[0].ArchiveSHA256)
	require.Len(t, receiptsOf(rs, tc.ID, receipt.KindRedaction), 1)
	require.Empty(t, receiptsOf(rs, other.ID, receipt.KindArchive))
	require.Less(t, indexOfKey(rs, tc.ID+".archive"), indexOfKey(rs, receiptsOf(rs, tc.ID, receipt.KindRedaction)[0].Key), "the archive receipt comes first")

	// Two years on the marked rule (preserve) removes the case, the
	// package stays.
	w.clock.Set(day(731))
	require.Equal(t, 2, in.sweep(t))
	_, err = b.store.Read(ctx, tc.ID)
	require.True(t, isNotFound(err))
	rs = b.receipts(t)
	del := receiptsOf(rs, tc.ID, receipt.KindDeletion)
	require.Len(t, del, 1)
	require.Equal(t, "arendet-bevaras", del[0].Rule)
	require.Equal(t, "arendet", receiptsOf(rs, other.ID, receipt.KindDeletion)[0].Rule)
	require.Len(t, receiptsOf(rs, tc.ID, receipt.KindArchive), 1, "no second export")
	_, err = archive.Verify(path)
	require.NoError(t, err)
}

func indexOfKey(rs []receipt.Receipt, key string) int {
	for i, r := range rs {
		if r.Key == key {
			return i
		}
	}
	return -1
}

func readZipFile(t *testing.T, path, name string) string {
	t.Helper()
	zr, err := zip.OpenReader(path)
	require.NoError(t, err)
	defer zr.Close()
	for _, f := range zr.File {
		if f.Name == name {
			rc, err := f.Open()
			require.NoError(t, err)
			defer rc.Close()
			b, err := io.ReadAll(rc)
			require.NoError(t, err)
			return string(b)
		}
	}
	t.Fatalf("%s has no %s", path, name)
	return ""
}

func TestEraseSubject(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{})
	in.start(t)
	ctx := t.Context()

	email := "anna.andersson@example.se"
	a := b.register(t, caseSpec{email: email, text: "FRITEXT-a", identity: personnummer("19850505", "111")})
	b.answer(t, a, "SVAR-a")
	held := b.register(t, caseSpec{typ: casev1.CaseType_CASE_TYPE_SYNPUNKT, email: email, text: "FRITEXT-held"})
	c := b.register(t, caseSpec{channel: casev1.Channel_CHANNEL_PHONE, email: email, phone: "0701234567", text: "FRITEXT-c"})
	other := b.register(t, caseSpec{email: "bertil@example.se", text: "FRITEXT-other"})
	in.caughtUp(t)
	holdID, err := in.svc.PlaceHold(ctx, "jurist", held.ID, "JO-anmälan")
	require.NoError(t, err)
	require.NotEmpty(t, holdID)

	w.clock.Set(day(10))
	out, err := in.svc.EraseSubject(ctx, "dso-1", subject.Key{Email: "Anna.Andersson@EXAMPLE.se"}, "begäran 2026-17")
	require.NoError(t, err)
	byID := map[string]app.EraseOutcome{}
	for _, o := range out {
		byID[o.CaseID] = o
	}
	require.Len(t, out, 3, "every case of the person, no other")
	require.True(t, byID[a.ID].Erased)
	require.True(t, byID[c.ID].Erased)
	require.Equal(t, a.Number, byID[a.ID].CaseNumber)
	require.False(t, byID[held.ID].Erased)
	require.Equal(t, held.Number, byID[held.ID].CaseNumber)
	require.Contains(t, byID[held.ID].Explanation, "hold")
	require.Contains(t, byID[held.ID].Explanation, "JO-anmälan")
	in.caughtUp(t)

	rs := b.receipts(t)
	for _, tc := range []*testCase{a, c} {
		reds, revs := b.redactions(t, tc.ID)
		require.Len(t, reds, 1)
		require.Equal(t, "erasure", reds[0].GetReason())
		require.Equal(t, "dso-1", reds[0].GetRequestedBy())
		require.Equal(t, "begäran 2026-17", reds[0].GetNote())
		require.Equal(t, allClassNames(), classNames(reds[0].GetDataClasses()))
		require.True(t, reds[0].GetRedactedAt().AsTime().Equal(day(10)), "now, not at the plan's deadline")
		b.requireDestroyed(t, tc, seal.Classes()...)
		got := receiptsOf(rs, tc.ID, receipt.KindRedaction)
		require.Len(t, got, 1)
		require.Equal(t, fmt.Sprintf("%s.redaction.%d", tc.ID, revs[0]), got[0].Key)
		require.Equal(t, "erasure", got[0].Reason)
		require.NotContains(t, got[0].Reason+got[0].Rule, "begäran", "the note stays out of the ledger")
	}
	for _, tc := range []*testCase{held, other} {
		reds, _ := b.redactions(t, tc.ID)
		require.Empty(t, reds, "case %s untouched", tc.Number)
		b.requireOpens(t, tc, seal.ClassContact, seal.ClassFreeText)
	}
	require.Equal(t, []string{held.ID}, caseIDs(subjectAccess(t, in, subject.Key{Email: email})))
	require.Equal(t, []string{other.ID}, caseIDs(subjectAccess(t, in, subject.Key{Email: "bertil@example.se"})))

	// Erasing again changes nothing more.
	out, err = in.svc.EraseSubject(ctx, "dso-1", subject.Key{Email: email}, "igen")
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.False(t, out[0].Erased)

	for _, tt := range []struct {
		key   subject.Key
		field string
	}{
		{subject.Key{Email: "inte-en-adress"}, "subject.email"},
		{subject.Key{Phone: "abc"}, "subject.phone"},
		{subject.Key{IdentityNumber: "19121212-1213"}, "subject.identity_number"},
		{subject.Key{}, "subject"},
	} {
		_, err := in.svc.EraseSubject(ctx, "dso-1", tt.key, "")
		var fe *app.FieldError
		require.ErrorAs(t, err, &fe, "%+v", tt.key)
		require.Equal(t, tt.field, fe.Field)
		require.ErrorIs(t, err, app.ErrInvalid)
	}
}

func TestRectifyAndSubjectAccess(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{})
	in.start(t)
	ctx := t.Context()

	oldID := personnummer("19800808", "222")
	newID := personnummer("19800808", "333")
	tc := b.register(t, caseSpec{name: "Anna Gammal", email: "old@example.se", identity: oldID, text: "FRITEXT-r"})
	b.answer(t, tc, "SVAR-r")
	second := b.register(t, caseSpec{typ: casev1.CaseType_CASE_TYPE_FELANMALAN, email: "old@example.se", text: "FRITEXT-second"})
	visit := b.register(t, caseSpec{channel: casev1.Channel_CHANNEL_VISIT, email: "besok@example.se"})
	in.caughtUp(t)

	// The register extract before rectification, and its audit records.
	got := subjectAccess(t, in, subject.Key{Email: "old@example.se"})
	require.ElementsMatch(t, []string{tc.ID, second.ID}, caseIDs(got))
	for _, sc := range got {
		require.Empty(t, sc.Reads, "no reads before the first extract")
		if sc.CaseID == tc.ID {
			require.Equal(t, "old@example.se", sc.Contact.GetEmail())
			require.Equal(t, oldID, sc.Identity.GetNumber())
			require.Equal(t, "FRITEXT-r", sc.FreeText.GetDescription())
			require.Equal(t, []string{"SVAR-r"}, sc.Answers)
			require.True(t, sc.RedactionDueAt.Equal(t0.AddDate(0, 0, 90)))
			require.True(t, sc.DeletionDueAt.Equal(t0.AddDate(2, 0, 0)))
		}
	}
	for _, id := range []string{tc.ID, second.ID} {
		recs, err := b.audit.ForCase(ctx, id)
		require.NoError(t, err)
		require.Len(t, recs, 1, "one audit record per case returned")
		require.Equal(t, "dso-1", recs[0].GetActor())
		require.Equal(t, "kontakt.retention.v1.RetentionService/SubjectAccess", recs[0].GetRpc())
	}

	w.clock.Set(day(5))
	require.NoError(t, in.svc.Rectify(ctx, "dso-1", tc.ID, app.Rectification{Contact: &casev1.ContactDetails{Name: "Anna Ny", Email: "New@Example.SE"}}))
	require.NoError(t, in.svc.Rectify(ctx, "dso-1", tc.ID, app.Rectification{Identity: &casev1.IdentityNumber{Number: newID[2:8] + "-" + newID[8:]}}))
	in.caughtUp(t)

	got = subjectAccess(t, in, subject.Key{Email: "new@example.se"})
	require.Equal(t, []string{tc.ID}, caseIDs(got))
	require.Equal(t, "New@example.se", got[0].Contact.GetEmail(), "the e-mail was normalised as intake stores it: the domain in lower case, the local part as written")
	require.Equal(t, "Anna Ny", got[0].Contact.GetName())
	require.Equal(t, newID, got[0].Identity.GetNumber())
	require.Len(t, got[0].Reads, 1, "the earlier extract is listed")
	require.Equal(t, []string{second.ID}, caseIDs(subjectAccess(t, in, subject.Key{Email: "old@example.se"})), "the old address finds only the other case")
	require.Equal(t, []string{tc.ID}, caseIDs(subjectAccess(t, in, subject.Key{IdentityNumber: newID})))
	require.Empty(t, subjectAccess(t, in, subject.Key{IdentityNumber: oldID}))
	recs, err := b.audit.ForCase(ctx, tc.ID)
	require.NoError(t, err)
	require.Len(t, recs, 3, "three extracts found the case")

	// Refused values.
	for _, tt := range []struct {
		name   string
		caseID string
		r      app.Rectification
		field  string
	}{
		{"visit with a name", visit.ID, app.Rectification{Contact: &casev1.ContactDetails{Name: "Namn", Email: "besok@example.se"}}, "contact.name"},
		{"visit with an identity number", visit.ID, app.Rectification{Identity: &casev1.IdentityNumber{Number: newID}}, "identity"},
		{"bad e-mail", tc.ID, app.Rectification{Contact: &casev1.ContactDetails{Email: "ingen-adress"}}, "contact.email"},
		{"bad phone", tc.ID, app.Rectification{Contact: &casev1.ContactDetails{Phone: "12"}}, "contact.phone"},
		{"bad identity number", tc.ID, app.Rectification{Identity: &casev1.IdentityNumber{Number: "191212121213"}}, "identity.number"},
		{"nothing", tc.ID, app.Rectification{}, "value"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := in.svc.Rectify(ctx, "dso-1", tt.caseID, tt.r)
			var fe *app.FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tt.field, fe.Field)
		})
	}
	require.NoError(t, in.svc.Rectify(ctx, "dso-1", visit.ID, app.Rectification{Contact: &casev1.ContactDetails{Email: "besok2@example.se"}}), "a visit may correct its e-mail")
	require.ErrorIs(t, in.svc.Rectify(ctx, "dso-1", uuid.NewString(), app.Rectification{FreeText: &casev1.FreeText{Description: "x"}}), app.ErrNotFound)

	// After the redaction the class holds nothing; a rectification then
	// completes it: new data under the class's next key, which the plan
	// counts from when it was written, and the blind index follows it.
	w.clock.Set(day(91))
	require.Equal(t, 3, in.sweep(t))
	require.Empty(t, subjectAccess(t, in, subject.Key{Email: "new@example.se"}))
	require.NoError(t, in.svc.Rectify(ctx, "dso-1", tc.ID, app.Rectification{Contact: &casev1.ContactDetails{Email: "third@example.se"}}))
	in.caughtUp(t)
	got = subjectAccess(t, in, subject.Key{Email: "third@example.se"})
	require.Equal(t, []string{tc.ID}, caseIDs(got), "the new address finds the case")
	require.Equal(t, "third@example.se", got[0].Contact.GetEmail())
	require.Nil(t, got[0].FreeText, "the other classes stay redacted")
	require.Empty(t, got[0].Answers)
	require.True(t, got[0].RedactionDueAt.Equal(day(91).AddDate(0, 0, 90)), "due 90 days after the rectification, not at once: %s", got[0].RedactionDueAt)
	var rectified *casev1.SealedPersonalData
	for _, e := range b.events(t, tc.ID) {
		if m, ok := e.msg.(*casev1.PersonalDataRectified); ok {
			rectified = m.GetValue()
		}
	}
	require.Equal(t, tc.ID+".contact.1", rectified.GetKeyId(), "sealed under a fresh key")

	w.clock.Set(day(180))
	require.Zero(t, in.sweep(t), "not due yet")
	require.Len(t, subjectAccess(t, in, subject.Key{Email: "third@example.se"}), 1)
	w.clock.Set(day(181))
	require.Equal(t, 1, in.sweep(t), "redacted 90 days after it was written")
	_, err = b.sealer.Open(ctx, tc.ID, rectified)
	require.ErrorIs(t, err, seal.ErrKeyDestroyed)
	require.Empty(t, subjectAccess(t, in, subject.Key{Email: "third@example.se"}), "its tokens went with it")
	var classes [][]string
	for _, r := range receiptsOf(b.receipts(t), tc.ID, receipt.KindRedaction) {
		classes = append(classes, r.Classes)
	}
	require.Equal(t, [][]string{{"contact", "identity", "freetext", "attachments", "answer"}, {"contact"}}, classes,
		"one receipt per redaction: the first generation, then the rectified contact")
}

func TestPreviewChangesNothing(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{})
	in.start(t)

	a := b.register(t, caseSpec{email: "a@example.se", at: t0})                                                              // due day 90
	bb := b.register(t, caseSpec{typ: casev1.CaseType_CASE_TYPE_FELANMALAN, email: "b@example.se", at: t0.AddDate(0, 0, 5)}) // due day 95
	late := b.register(t, caseSpec{email: "c@example.se", at: t0.AddDate(0, 0, 15)})                                         // due day 105
	chat := b.register(t, caseSpec{channel: casev1.Channel_CHANNEL_CHAT, email: "d@example.se", chat: "hej", at: t0.AddDate(0, 0, 50)})
	in.caughtUp(t)

	w.clock.Set(day(70))
	head, err := b.store.Head(t.Context())
	require.NoError(t, err)
	items, err := in.svc.Preview(30)
	require.NoError(t, err)

	type row struct {
		number, rule string
		at           time.Time
		classes      string
	}
	var rows []row
	for _, it := range items {
		require.Equal(t, domain.ActionRedact, it.Due.Action)
		require.False(t, it.OnHold)
		var cls []string
		for _, c := range it.Due.Classes {
			cls = append(cls, string(c))
		}
		rows = append(rows, row{it.CaseNumber, it.Due.Rule, it.Due.At, strings.Join(cls, ",")})
	}
	require.Equal(t, []row{
		{chat.Number, "chatt-konversation", t0.AddDate(0, 0, 80), "freetext"},
		{a.Number, "personuppgifter", t0.AddDate(0, 0, 90), "contact,identity,freetext,attachments,answer"},
		{bb.Number, "personuppgifter", t0.AddDate(0, 0, 95), "contact,identity,freetext,attachments,answer"},
	}, rows)
	for _, it := range items {
		require.NotEqual(t, late.ID, it.CaseID)
	}

	after, err := b.store.Head(t.Context())
	require.NoError(t, err)
	require.Equal(t, head, after, "a preview appends nothing")
	require.Empty(t, b.receipts(t))
	for _, tc := range []*testCase{a, bb, late, chat} {
		require.Len(t, b.events(t, tc.ID), 1)
	}
}

func TestPlanChangeReschedules(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	idxPath := filepath.Join(t.TempDir(), "index.db")
	archiveDir := t.TempDir()

	first := w.newInstance(t, b, instanceOpts{idxPath: idxPath, archiveDir: archiveDir})
	first.start(t)
	fraga := b.register(t, caseSpec{email: "f@example.se"})
	fel := b.register(t, caseSpec{typ: casev1.CaseType_CASE_TYPE_FELANMALAN, email: "g@example.se"})
	first.caughtUp(t)
	fp, err := first.idx.Plan()
	require.NoError(t, err)
	require.Equal(t, "Mölndal stad, Kontaktcenter@2021.1", fp)
	for _, tc := range []*testCase{fraga, fel} {
		e, found, err := first.idx.Get(tc.ID)
		require.NoError(t, err)
		require.True(t, found)
		require.True(t, e.NextDue.Equal(t0.AddDate(0, 0, 90)))
	}
	first.stop(t)

	second := w.newInstance(t, b, instanceOpts{idxPath: idxPath, archiveDir: archiveDir, plan: plan(t, "vaxjo")})
	second.start(t)
	require.Eventually(t, func() bool {
		fp, err := second.idx.Plan()
		require.NoError(t, err)
		return fp == "Växjö kommun, Invånar- och kundservice@2020.1"
	}, 10*time.Second, 5*time.Millisecond)
	for _, tc := range []*testCase{fraga, fel} {
		e, found, err := second.idx.Get(tc.ID)
		require.NoError(t, err)
		require.True(t, found)
		require.True(t, e.NextDue.Equal(t0.AddDate(0, 6, 0)), "Växjö keeps personal data six months: %s", e.NextDue)
	}
	w.clock.Set(day(91))
	require.Zero(t, second.sweep(t), "nothing is due at day 91 under Växjö's plan")
	w.clock.Set(t0.AddDate(0, 6, 1))
	require.Equal(t, 2, second.sweep(t))
	reds, _ := b.redactions(t, fraga.ID)
	require.Len(t, reds, 1)
	require.Equal(t, "fragor-personuppgifter", reds[0].GetRule())
	require.Equal(t, "2020.1", reds[0].GetPlanVersion())
	require.Equal(t, []string{"answer", "contact", "freetext", "identity"}, classNames(reds[0].GetDataClasses()))
	reds, _ = b.redactions(t, fel.ID)
	require.Len(t, reds, 1)
	require.Equal(t, "ovriga-personuppgifter", reds[0].GetRule())
}

// laggingStore delivers HoldReleased events to subscribers late, as a
// projector that is busy with a backlog would see them.
type laggingStore struct {
	app.EventStore
	lag time.Duration
}

func (s *laggingStore) Subscribe(ctx context.Context, from eventstore.Position, h eventstore.Handler) error {
	return s.EventStore.Subscribe(ctx, from, func(ctx context.Context, ev eventstore.RecordedEvent) error {
		if ev.Type == caseevents.TypeOf(&casev1.HoldReleased{}) {
			select {
			case <-time.After(s.lag):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return h(ctx, ev)
	})
}

// A deadline that passed while the case was held applies at once after
// the release, not at the next SweepInterval (an hour here), even when
// the projector lags: the sweeper only sees cases the index lists as due,
// and a held case has no due time until the index applies the release.
// (Waking the sweeper right after the append, as the first version did,
// made the woken pass miss the case.)
func TestReleaseHoldAppliesOverdueDeadlineAtOnce(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{interval: time.Hour, store: &laggingStore{EventStore: b.store, lag: 500 * time.Millisecond}})
	in.start(t)
	ctx := t.Context()

	tc := b.register(t, caseSpec{email: "held@example.se", text: "FRITEXT"})
	in.caughtUp(t)
	holdID, err := in.svc.PlaceHold(ctx, "jurist", tc.ID, "tvist")
	require.NoError(t, err)
	in.caughtUp(t)

	w.clock.Set(day(100))
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.svc.RunSweeper(sctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	// The sweeper's first pass, at start, leaves the held case alone.
	require.Never(t, func() bool {
		reds, _ := b.redactions(t, tc.ID)
		return len(reds) > 0
	}, 300*time.Millisecond, 20*time.Millisecond)

	require.NoError(t, in.svc.ReleaseHold(ctx, "jurist", tc.ID, holdID))
	require.Eventually(t, func() bool {
		reds, _ := b.redactions(t, tc.ID)
		return len(reds) == 1
	}, 5*time.Second, 20*time.Millisecond, "the overdue redaction should follow the release at once, not at the next interval")
}

func TestSubjectKeysAreNormalised(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{})
	in.start(t)

	pnr := personnummer("19850101", "121")
	tc := b.register(t, caseSpec{channel: casev1.Channel_CHANNEL_PHONE, email: "Karin.Berg@Example.SE", phone: "070-123 45 67", identity: pnr})
	other := b.register(t, caseSpec{email: "someone@example.se", phone: "+46 8 123 456 78"})
	in.caughtUp(t)
	for _, tt := range []struct {
		name string
		key  subject.Key
		want []string
	}{
		{"e-mail in other case", subject.Key{Email: "karin.berg@example.se"}, []string{tc.ID}},
		{"e-mail as registered", subject.Key{Email: "Karin.Berg@Example.SE"}, []string{tc.ID}},
		{"national phone number", subject.Key{Phone: "0701234567"}, []string{tc.ID}},
		{"E.164 phone number", subject.Key{Phone: "+46701234567"}, []string{tc.ID}},
		{"12-digit identity number", subject.Key{IdentityNumber: pnr}, []string{tc.ID}},
		{"10-digit identity number with hyphen", subject.Key{IdentityNumber: pnr[2:8] + "-" + pnr[8:]}, []string{tc.ID}},
		{"other person's phone", subject.Key{Phone: "08-123 456 78"}, []string{other.ID}},
		{"nobody", subject.Key{Email: "nobody@example.se"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, caseIDs(subjectAccess(t, in, tt.key)))
		})
	}

	// Erasure by identity number reaches the case as well.
	out, err := in.svc.EraseSubject(t.Context(), "dso-1", subject.Key{IdentityNumber: pnr}, "")
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.True(t, out[0].Erased)
	in.caughtUp(t)
	b.requireDestroyed(t, tc, seal.Classes()...)
	require.Empty(t, subjectAccess(t, in, subject.Key{Phone: "0701234567"}))
	require.Equal(t, []string{other.ID}, caseIDs(subjectAccess(t, in, subject.Key{Phone: "08-123 456 78"})))
}

func TestProjectorResumesAndRebuilds(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	idxPath := filepath.Join(t.TempDir(), "index.db")
	archiveDir := t.TempDir()

	first := w.newInstance(t, b, instanceOpts{idxPath: idxPath, archiveDir: archiveDir})
	first.start(t)
	var cases []*testCase
	for i := range 5 {
		cases = append(cases, b.register(t, caseSpec{email: fmt.Sprintf("r%d@example.se", i), text: "FRITEXT"}))
	}
	first.caughtUp(t)
	first.stop(t)

	// While no projector runs, the sweeper of a restarted instance acts
	// on what the index says, and a new case comes in.
	second := w.newInstance(t, b, instanceOpts{idxPath: idxPath, archiveDir: archiveDir})
	w.clock.Set(day(91))
	n, err := second.svc.Sweep(t.Context())
	require.NoError(t, err)
	require.Equal(t, len(cases), n)
	late := b.register(t, caseSpec{email: "late@example.se", at: day(91)})
	for _, tc := range cases {
		b.requireOpens(t, tc, seal.ClassContact) // the effects wait for the projector
	}
	cp, err := second.idx.Checkpoint()
	require.NoError(t, err)

	// The projector resumes from its checkpoint and carries out what was
	// appended meanwhile.
	second.start(t)
	second.caughtUp(t)
	rs := b.receipts(t)
	require.Len(t, rs, len(cases))
	for _, tc := range cases {
		b.requireDestroyed(t, tc, seal.Classes()...)
		require.Len(t, receiptsOf(rs, tc.ID, receipt.KindRedaction), 1)
	}
	e, found, err := second.idx.Get(late.ID)
	require.NoError(t, err)
	require.True(t, found)
	require.True(t, e.NextDue.Equal(day(91).AddDate(0, 0, 90)))
	cp2, err := second.idx.Checkpoint()
	require.NoError(t, err)
	require.Greater(t, cp2, cp)

	// A rebuild from an empty file replays the log and gets the same index,
	// repeating no effect.
	rebuilt := w.newInstance(t, b, instanceOpts{archiveDir: archiveDir})
	rebuilt.start(t)
	rebuilt.caughtUp(t)
	for _, tc := range append(cases, late) {
		want, _, err := second.idx.Get(tc.ID)
		require.NoError(t, err)
		got, found, err := rebuilt.idx.Get(tc.ID)
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, want.Case.Redacted, got.Case.Redacted)
		require.True(t, want.NextDue.Equal(got.NextDue), "case %s: %s vs %s", tc.Number, want.NextDue, got.NextDue)
		require.Equal(t, want.Case.Revision, got.Case.Revision)
	}
	require.Len(t, b.receipts(t), len(cases), "the replay adds no receipt")
	tokens := func(s *index.Store) map[string][]string {
		out := map[string][]string{}
		require.NoError(t, s.Tokens(func(caseID, slot string, toks []string) error {
			out[caseID+"/"+slot] = toks
			return nil
		}))
		return out
	}
	require.Equal(t, tokens(second.idx), tokens(rebuilt.idx), "the rebuilt token file")
	ids, err := rebuilt.idx.FindByToken(w.emailToken("late@example.se"))
	require.NoError(t, err)
	require.Equal(t, []string{late.ID}, ids)
}

func TestUnknownEventsOnlyMoveTheRevision(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{})
	in.start(t)

	tc := b.register(t, caseSpec{email: "future@example.se"})
	recs, err := b.store.Read(t.Context(), tc.ID)
	require.NoError(t, err)
	// An event a newer writer added, which this build does not know.
	rev, err := b.store.Append(t.Context(), tc.ID, eventstore.Exact(recs[0].Revision), eventstore.Event{ID: uuid.NewString(), Type: "kontakt.case.v1.CaseEscalated", Data: []byte{0x0a, 0x01, 'x'}})
	require.NoError(t, err)
	in.caughtUp(t)
	e, found, err := in.idx.Get(tc.ID)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, uint64(rev), e.Case.Revision)

	w.clock.Set(day(91))
	require.Equal(t, 1, in.sweep(t), "the append expects the unknown event's revision")
	reds, revs := b.redactions(t, tc.ID)
	require.Len(t, reds, 1)
	require.Greater(t, revs[0], rev)
}

// TestAnswerAfterRedaction: a complaint still open after the plan culled
// its personal data is answered again. The new answer is sealed under the
// answer class's next key; the projector destroys that key when the plan,
// counting from when the answer was written, redacts it again, and each
// redaction has its receipt.
func TestAnswerAfterRedaction(t *testing.T) {
	month := func(n int) time.Time { return t0.AddDate(0, n, 0).Add(time.Hour) }
	tests := []struct {
		plan string
		// culled is when the plan culls the complaint's personal data,
		// answered when it is answered again, due when that answer is
		// redacted in turn.
		culled, answered, due time.Time
		rule                  string
	}{
		{"molndal", day(91), day(120), day(210), "personuppgifter"},
		{"vaxjo", month(6), month(7), month(13), "ovriga-personuppgifter"},
	}
	for _, tt := range tests {
		t.Run(tt.plan, func(t *testing.T) {
			w := newWorld(t)
			b := w.connect(t)
			in := w.newInstance(t, b, instanceOpts{plan: plan(t, tt.plan)})
			in.start(t)
			tc := b.register(t, caseSpec{typ: casev1.CaseType_CASE_TYPE_SYNPUNKT, channel: casev1.Channel_CHANNEL_PHONE, name: "Karin", phone: "0701234567", text: "KLAGOMÅL"})
			b.answer(t, tc, "FÖRSTA SVARET")
			in.caughtUp(t)

			w.clock.Set(tt.culled)
			require.Equal(t, 1, in.sweep(t))
			b.requireDestroyed(t, tc, seal.Classes()...)

			w.clock.Set(tt.answered)
			second := b.answerAt(t, tc, "ANDRA SVARET", tt.answered)
			require.Equal(t, tc.ID+".answer.1", second.GetKeyId())
			in.caughtUp(t)
			e, found, err := in.idx.Get(tc.ID)
			require.NoError(t, err)
			require.True(t, found)
			require.True(t, tt.due.Equal(e.NextDue), "the index wakes the sweeper at %s, not %s", tt.due, e.NextDue)
			items, err := in.svc.Preview(400)
			require.NoError(t, err)
			var answerDue []domain.Due
			for _, it := range items {
				if it.CaseID == tc.ID && it.Due.Action == domain.ActionRedact {
					answerDue = append(answerDue, it.Due)
				}
			}
			require.Equal(t, []domain.Due{{Action: domain.ActionRedact, Classes: []domain.Class{domain.ClassAnswer}, At: tt.due, From: tt.answered, Rewritten: true, Rule: tt.rule}}, answerDue)

			w.clock.Set(tt.due.Add(-time.Minute))
			require.Zero(t, in.sweep(t), "not before its own period is over")
			_, err = b.sealer.Open(t.Context(), tc.ID, second)
			require.NoError(t, err)
			w.clock.Set(tt.due)
			require.Equal(t, 1, in.sweep(t))
			_, err = b.sealer.Open(t.Context(), tc.ID, second)
			require.ErrorIs(t, err, seal.ErrKeyDestroyed, "the second generation is destroyed")

			red := receiptsOf(b.receipts(t), tc.ID, receipt.KindRedaction)
			require.Len(t, red, 2)
			require.Equal(t, []string{"answer"}, red[1].Classes)
			require.Equal(t, tt.rule, red[1].Rule)
			require.NotEqual(t, red[0].Key, red[1].Key)
			evs, _ := b.redactions(t, tc.ID)
			require.True(t, tt.due.Equal(evs[1].GetDueAt().AsTime()), "the event carries the new deadline, for statistics' on-time")

			// And again: a third generation.
			third := b.answerAt(t, tc, "TREDJE SVARET", tt.due.Add(time.Hour))
			require.Equal(t, tc.ID+".answer.2", third.GetKeyId())
		})
	}
}

// TestRebuiltIndexKeepsALaterMarksPackage: a withdrawn mark removes the
// packages written because of it. A rebuilt index (a new layout at an
// upgrade, a lost file) applies the withdrawal again; it must not remove
// the package written after the case was marked again, or the archive
// loses it and the plan, seeing the case archived, removes the rest.
func TestRebuiltIndexKeepsALaterMarksPackage(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	archiveDir := t.TempDir()
	vaxjo := plan(t, "vaxjo")
	in := w.newInstance(t, b, instanceOpts{plan: vaxjo, archiveDir: archiveDir})
	in.start(t)
	ctx := t.Context()
	packages := func() []string {
		t.Helper()
		m, err := filepath.Glob(filepath.Join(archiveDir, "*"))
		require.NoError(t, err)
		return m
	}
	tc := b.register(t, caseSpec{typ: casev1.CaseType_CASE_TYPE_FRAGA, email: "fraga@example.se", text: "FRÅGA", files: []string{"bilaga.pdf"}})
	in.caughtUp(t)
	markCase(ctx, t, in.svc, tc.ID, "av vikt")
	w.clock.Set(t0.AddDate(0, 6, 1))
	require.Equal(t, 2, in.sweep(t), "archived, then the question's personal data redacted")
	require.Len(t, packages(), 1)
	require.NoError(t, in.svc.WithdrawPreservationMark(ctx, supervisor, "supervisor", tc.ID, "inte av vikt"))
	in.caughtUp(t)
	require.Empty(t, packages(), "the withdrawn mark's package is removed")

	// Marked again (its attachments are left) and archived at their year.
	markCase(ctx, t, in.svc, tc.ID, "av vikt ändå")
	w.clock.Set(t0.AddDate(1, 0, 1))
	require.Equal(t, 2, in.sweep(t), "archived again, then the attachments redacted")
	later := packages()
	require.Len(t, later, 1)
	in.stop(t)

	again := w.newInstance(t, b, instanceOpts{plan: vaxjo, archiveDir: archiveDir})
	again.start(t)
	again.caughtUp(t)
	require.Equal(t, later, packages(), "the rebuilt index kept the later mark's package")
	_, err := archive.Verify(later[0])
	require.NoError(t, err)
}
