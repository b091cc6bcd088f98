package app_test

// Regression tests for defects this suite found in the retention service.
// Each comment says what went wrong before the fix; the test asserts what
// must happen instead.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/caseevents"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/subject"
	"github.com/kontakt-se/kontakt/services/retention/adapters/archive"
	"github.com/kontakt-se/kontakt/services/retention/app"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

// flakySealer fails the first destruction of all of a case's keys (the
// one the deletion effect makes), as a key store that is briefly away
// would.
type flakySealer struct {
	app.Sealer
	failures atomic.Int32
}

func (f *flakySealer) DestroyBatch(ctx context.Context, ds []seal.Destruction) error {
	for _, d := range ds {
		if len(d.Classes) == 0 && f.failures.Add(-1) >= 0 {
			return errors.New("key store briefly unavailable")
		}
	}
	return f.Sealer.DestroyBatch(ctx, ds)
}

// Before the fix, the deletion effect wrote the receipt, deleted the
// stream and then destroyed the keys. If the last step fails (the key store briefly away,
// or a crash), the batch is retried from the checkpoint, but the CaseDeleted
// event has been purged with the stream: the retry only sees the
// $stream-deleted tombstone, which drops the index entry and destroys
// nothing. A personal class that no rule redacts before the deletion keeps
// its key for good, so its data stays readable in every backup of the log.
func TestDeletionDestroysKeysWhenDestroyFailsOnce(t *testing.T) {
	p, err := domain.ParsePlan("test.yaml", []byte(`
name: Testkommun
version: "1"
source: test
rules:
  - name: kontaktuppgifter
    classes: [contact]
    period: 90d
    from: registration
    action: redact
  - name: arendet
    classes: [case]
    period: 1y
    from: registration
    action: delete
`))
	require.NoError(t, err)
	w := newWorld(t)
	b := w.connect(t)
	fs := &flakySealer{Sealer: b.sealer}
	fs.failures.Store(1)
	in := w.newInstance(t, b, instanceOpts{plan: p, sealer: fs})
	in.start(t)

	tc := b.register(t, caseSpec{email: "kept@example.se", text: "FRITEXT-behålls-till-gallring"})
	in.caughtUp(t)
	w.clock.Set(t0.AddDate(1, 0, 0))
	require.Equal(t, 2, in.sweep(t), "the contact redaction and the deletion")
	_, err = b.store.Read(t.Context(), tc.ID)
	require.True(t, isNotFound(err))
	b.requireDestroyed(t, tc, seal.ClassContact)
	// The free text had no rule of its own: only the deletion destroys
	// its key.
	b.requireDestroyed(t, tc, seal.ClassFreeText)
	require.Equal(t, int32(-1), fs.failures.Load(), "the deletion's Destroy failed once and was retried")
}

// MustArchive says a marked case "has to be exported to the archive
// before anything of it is removed", because the preserved record must
// hold the personal data. EraseSubject ignored the mark: it redacted the
// marked case at once, and the package written later holds no personal
// data. Either the erasure must be refused for a case that is to be
// preserved (GDPR art. 17(3)(b) and (d); arkivlagen), with an
// explanation as for a hold, or the case must be archived first.
func TestErasureRefusesACaseMarkedForPreservation(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{})
	in.start(t)
	ctx := t.Context()

	tc := b.register(t, caseSpec{typ: casev1.CaseType_CASE_TYPE_SYNPUNKT, email: "bevaras@example.se", text: "FRITEXT-av-vikt"})
	in.caughtUp(t)
	markCase(ctx, t, in.svc, tc.ID, "av vikt")
	in.caughtUp(t)

	out, err := in.svc.EraseSubject(ctx, "dso-1", subject.Key{Email: "bevaras@example.se"}, "begäran")
	require.NoError(t, err)
	require.Len(t, out, 1)
	in.caughtUp(t)
	if !out[0].Erased {
		require.NotEmpty(t, out[0].Explanation)
		b.requireOpens(t, tc, seal.ClassContact, seal.ClassFreeText)
		return
	}
	paths, err := filepath.Glob(filepath.Join(in.archiveDir, "*.zip"))
	require.NoError(t, err)
	require.Len(t, paths, 1, "an erased marked case must have been archived first")
	path := paths[0]
	_, err = archive.Verify(path)
	require.NoError(t, err, "an erased marked case must have been archived first")
	require.Contains(t, readZipFile(t, path, "case.json"), "FRITEXT-av-vikt")
}

// noteDuringExport appends a note to a case the first time the sweeper
// appends CaseArchived to it, just before that append, as an agent adding
// a note while the sweeper writes the package would.
type noteDuringExport struct {
	app.EventStore
	done atomic.Bool
}

func (s *noteDuringExport) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, ev eventstore.Event) (eventstore.Revision, error) {
	if ev.Type == caseevents.TypeOf(&casev1.CaseArchived{}) && s.done.CompareAndSwap(false, true) {
		note := &casev1.NoteAdded{CaseId: stream, NoteId: uuid.NewString(), Author: "agent-1", AddedAt: timestamppb.New(t0)}
		data, err := proto.Marshal(note)
		if err != nil {
			return 0, err
		}
		if _, err := s.EventStore.Append(ctx, stream, eventstore.Any(), eventstore.Event{ID: uuid.NewString(), Type: caseevents.TypeOf(note), Data: data}); err != nil {
			return 0, err
		}
	}
	return s.EventStore.Append(ctx, stream, expected, ev)
}

// When the CaseArchived append of a marked case loses to a concurrent
// append (a note, a hold), the package is already on disk. The next pass
// exports the case again with the new event in case.json, archive.Write
// finds the earlier, now different package under the same name and
// refuses with archive.ErrExists, and so does every later pass: the case
// is never archived, redacted or deleted, and the sweep fails for ever.
func TestArchiveExportRecoversFromAConflict(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{store: &noteDuringExport{EventStore: b.store}})
	in.start(t)
	ctx := t.Context()

	tc := b.register(t, caseSpec{email: "arkiv@example.se", text: "FRITEXT-arkiv"})
	in.caughtUp(t)
	markCase(ctx, t, in.svc, tc.ID, "av vikt")
	in.caughtUp(t)

	w.clock.Set(day(91))
	n, err := in.svc.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "the first attempt lost the race to the note")
	in.caughtUp(t)
	entries, err := os.ReadDir(in.archiveDir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "the package of the lost attempt is on disk")

	for range 3 {
		in.caughtUp(t)
		_, err = in.svc.Sweep(ctx)
		if err == nil {
			break
		}
	}
	require.NoError(t, err, "a later pass must be able to archive the case")
	require.Equal(t, []string{"CaseRegistered", "CaseMarkedForPreservation", "NoteAdded", "CaseArchived", "PersonalDataRedacted"}, b.typesOf(t, tc.ID))
}

// A marked case used to be exported once, before its first removal, and
// never again. When its classes fall due at different times (Mölndal: a chat
// transcript after 30 days, the rest after 90), personal data added after
// the export (here an answer on day 50) is redacted on day 91 without
// ever reaching the archive, although MustArchive says a marked case is
// exported "before anything of it is removed". Exporting again (a new
// package, or a new version of it) before a removal when events were
// appended since the last export would keep the preserved record whole.
func TestDataAddedAfterTheExportIsArchivedAgain(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{})
	in.start(t)
	ctx := t.Context()

	tc := b.register(t, caseSpec{channel: casev1.Channel_CHANNEL_CHAT, email: "chatt@example.se", chat: "CHATT-bevaras"})
	in.caughtUp(t)
	markCase(ctx, t, in.svc, tc.ID, "av vikt")
	w.clock.Set(day(31))
	require.Equal(t, 2, in.sweep(t), "archived, then the transcript redacted")

	w.clock.Set(day(50))
	b.answer(t, tc, "SVAR-efter-exporten")
	in.caughtUp(t)
	w.clock.Set(day(91))
	require.Equal(t, 2, in.sweep(t), "archived again, then redacted")
	b.requireDestroyed(t, tc, seal.ClassAnswer)

	paths, err := filepath.Glob(filepath.Join(in.archiveDir, "*.zip"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	var archived bool
	for _, p := range paths {
		_, err := archive.Verify(p)
		require.NoError(t, err)
		if strings.Contains(readZipFile(t, p, "case.json"), "SVAR-efter-exporten") {
			archived = true
		}
	}
	require.True(t, archived, "the answer given after the first export must be archived before it is redacted")
}
