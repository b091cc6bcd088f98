package index_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/tokenindex"
	"github.com/kontakt-se/kontakt/services/retention/adapters/index"
	"github.com/kontakt-se/kontakt/services/retention/app"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

var base = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

func open(t *testing.T, path string) *index.Store {
	t.Helper()
	s, err := index.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newStore(t *testing.T) (*index.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "index.db")
	return open(t, path), path
}

// item is an entry with the tokens the projector would set with it.
type item struct {
	*app.Entry
	contact, identity []string
}

func entry(id string, due time.Time, contact, identity []string) item {
	return item{Entry: &app.Entry{
		Case: domain.Case{
			ID: id, Number: "KC-" + id, Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_EMAIL,
			RegisteredAt: base, Holds: map[string]string{}, Redacted: map[domain.Class]bool{},
		},
		NextDue: due,
	}, contact: contact, identity: identity}
}

// putIn stores the entry and replaces its tokens in both slots.
func (it item) putIn(tx app.IndexTx) error {
	tx.SetTokens(it.Case.ID, app.SlotContact, it.contact)
	tx.SetTokens(it.Case.ID, app.SlotIdentity, it.identity)
	return tx.Put(it.Entry)
}

func put(t *testing.T, s *index.Store, pos eventstore.Position, items ...item) {
	t.Helper()
	require.NoError(t, s.Update(pos, func(tx *index.Tx) error {
		for _, it := range items {
			if err := it.putIn(tx); err != nil {
				return err
			}
		}
		return nil
	}))
}

func del(t *testing.T, s *index.Store, ids ...string) {
	t.Helper()
	require.NoError(t, s.Update(0, func(tx *index.Tx) error {
		for _, id := range ids {
			if err := tx.Delete(id); err != nil {
				return err
			}
		}
		return nil
	}))
}

func due(t *testing.T, s *index.Store, now time.Time, limit int) []string {
	t.Helper()
	ids, err := s.Due(now, limit)
	require.NoError(t, err)
	return ids
}

func find(t *testing.T, s *index.Store, tok string) []string {
	t.Helper()
	ids, err := s.FindByToken(tok)
	require.NoError(t, err)
	slices.Sort(ids)
	return ids
}

func TestDueListsOnlyDueCasesInTimeOrder(t *testing.T) {
	s, _ := newStore(t)
	put(t, s, 1,
		entry("c", base.Add(3*time.Hour), nil, nil),
		entry("a", base.Add(2*time.Hour), nil, nil),
		entry("b", base.Add(2*time.Hour), nil, nil), // same time as a: by id
		entry("d", base.Add(-time.Hour), nil, nil),
		entry("never", time.Time{}, nil, nil), // nothing scheduled, or held
		entry("late", base.Add(100*24*time.Hour), nil, nil),
	)
	tests := []struct {
		name  string
		now   time.Time
		limit int
		want  []string
	}{
		{"before everything", base.Add(-2 * time.Hour), 10, nil},
		{"one due", base, 10, []string{"d"}},
		{"exactly at the due time", base.Add(2 * time.Hour), 10, []string{"d", "a", "b"}},
		{"all but the late one", base.Add(5 * time.Hour), 10, []string{"d", "a", "b", "c"}},
		{"limit", base.Add(5 * time.Hour), 2, []string{"d", "a"}},
		{"everything", base.AddDate(1, 0, 0), 100, []string{"d", "a", "b", "c", "late"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, due(t, s, tt.now, tt.limit))
			if tt.limit < 10 {
				return
			}
			// Overdue counts what Due lists without a limit, and
			// names the earliest deadline among them.
			n, earliest, err := s.Overdue(tt.now)
			require.NoError(t, err)
			require.Equal(t, len(tt.want), n)
			if n == 0 {
				require.True(t, earliest.IsZero())
			} else {
				require.True(t, base.Add(-time.Hour).Equal(earliest), "earliest %s", earliest)
			}
		})
	}
}

func TestPutMovesDueAndTokenEntries(t *testing.T) {
	s, _ := newStore(t)
	put(t, s, 1,
		entry("a", base, []string{"mail-anna", "phone-anna"}, []string{"pnr-anna"}),
		entry("b", base.Add(time.Hour), []string{"mail-anna"}, nil),
	)
	require.Equal(t, []string{"a", "b"}, find(t, s, "mail-anna"))
	require.Equal(t, []string{"a"}, find(t, s, "pnr-anna"))
	require.Equal(t, []string{"a", "b"}, due(t, s, base.Add(time.Hour), 10))

	// a is rectified (new e-mail) and rescheduled; b is put on hold.
	put(t, s, 2,
		entry("a", base.Add(48*time.Hour), []string{"mail-anna-ny"}, []string{"pnr-anna"}),
		entry("b", time.Time{}, []string{"mail-anna"}, nil),
	)
	require.Equal(t, []string{"b"}, find(t, s, "mail-anna"), "a's old token is gone")
	require.Empty(t, find(t, s, "phone-anna"))
	require.Equal(t, []string{"a"}, find(t, s, "mail-anna-ny"))
	require.Equal(t, []string{"a"}, find(t, s, "pnr-anna"))
	require.Empty(t, due(t, s, base.Add(24*time.Hour), 10), "a moved later, b has no due time")
	require.Equal(t, []string{"a"}, due(t, s, base.Add(48*time.Hour), 10))

	// Redaction drops the tokens; the entry stays.
	put(t, s, 3, entry("a", base.Add(48*time.Hour), nil, nil))
	require.Empty(t, find(t, s, "mail-anna-ny"))
	require.Empty(t, find(t, s, "pnr-anna"))
	e, found, err := s.Get("a")
	require.NoError(t, err)
	require.True(t, found)
	require.True(t, e.NextDue.Equal(base.Add(48*time.Hour)))

	// A token that is a prefix of another finds only its own cases.
	put(t, s, 4, entry("c", time.Time{}, []string{"mail"}, nil))
	require.Equal(t, []string{"c"}, find(t, s, "mail"))

	// Delete drops the entry and everything that points to it.
	del(t, s, "a", "b", "missing")
	for _, id := range []string{"a", "b"} {
		_, found, err := s.Get(id)
		require.NoError(t, err)
		require.False(t, found)
	}
	require.Empty(t, find(t, s, "mail-anna"))
	require.Empty(t, due(t, s, base.AddDate(10, 0, 0), 10))
	n, err := s.Count()
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

func TestTxSeesItsOwnWrites(t *testing.T) {
	s, _ := newStore(t)
	require.NoError(t, s.Update(5, func(tx *index.Tx) error {
		if err := entry("a", base, []string{"t"}, nil).putIn(tx); err != nil {
			return err
		}
		e, found, err := tx.Get("a")
		require.NoError(t, err)
		require.True(t, found)
		e.NextDue = base.Add(time.Hour)
		return tx.Put(e)
	}))
	require.Empty(t, due(t, s, base, 10), "the first due time was replaced in the same transaction")
	require.Equal(t, []string{"a"}, due(t, s, base.Add(time.Hour), 10))
}

func TestCheckpointPersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	s, err := index.Open(path)
	require.NoError(t, err)
	cp, err := s.Checkpoint()
	require.NoError(t, err)
	require.Zero(t, cp, "a new file starts before the first event")
	plan, err := s.Plan()
	require.NoError(t, err)
	require.Empty(t, plan)

	put(t, s, 41, entry("a", base, []string{"tok"}, nil))
	require.NoError(t, s.Reschedule("Plan@1", func(e *app.Entry) time.Time { return e.NextDue }))
	// Update with position 0 keeps the checkpoint.
	put(t, s, 0, entry("b", base, nil, nil))
	// A failing batch leaves neither its entries nor its checkpoint.
	boom := errors.New("boom")
	err = s.Update(99, func(tx *index.Tx) error {
		if err := entry("c", base, []string{"tok"}, nil).putIn(tx); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.NoError(t, s.Close())

	s = open(t, path)
	cp, err = s.Checkpoint()
	require.NoError(t, err)
	require.Equal(t, eventstore.Position(41), cp)
	plan, err = s.Plan()
	require.NoError(t, err)
	require.Equal(t, "Plan@1", plan)
	require.Equal(t, []string{"a", "b"}, due(t, s, base, 10))
	require.Equal(t, []string{"a"}, find(t, s, "tok"))
	_, found, err := s.Get("c")
	require.NoError(t, err)
	require.False(t, found)
}

func TestRescheduleRecomputesDueTimes(t *testing.T) {
	s, _ := newStore(t)
	put(t, s, 7,
		entry("a", base, []string{"tok-a"}, nil),
		entry("b", base.Add(time.Hour), nil, nil),
		entry("c", time.Time{}, nil, nil),
	)
	next := map[string]time.Time{"a": base.AddDate(0, 6, 0), "b": time.Time{}, "c": base.Add(time.Minute)}
	require.NoError(t, s.Reschedule("Växjö@2020.1", func(e *app.Entry) time.Time { return next[e.Case.ID] }))
	require.Equal(t, []string{"c"}, due(t, s, base.AddDate(0, 1, 0), 10))
	require.Equal(t, []string{"c", "a"}, due(t, s, base.AddDate(1, 0, 0), 10))
	require.Equal(t, []string{"a"}, find(t, s, "tok-a"), "tokens survive a reschedule")
	plan, err := s.Plan()
	require.NoError(t, err)
	require.Equal(t, "Växjö@2020.1", plan)
	cp, err := s.Checkpoint()
	require.NoError(t, err)
	require.Equal(t, eventstore.Position(7), cp, "a reschedule does not move the checkpoint")
}

func TestEachVisitsEveryCase(t *testing.T) {
	s, _ := newStore(t)
	put(t, s, 1, entry("b", base, nil, nil), entry("a", time.Time{}, nil, nil), entry("c", base, nil, nil))
	var ids []string
	require.NoError(t, s.Each(func(e *app.Entry) error {
		ids = append(ids, e.Case.ID)
		require.Equal(t, "KC-"+e.Case.ID, e.Case.Number)
		return nil
	}))
	require.Equal(t, []string{"a", "b", "c"}, ids)
	stop := errors.New("stop")
	n := 0
	err := s.Each(func(*app.Entry) error { n++; return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, n)
}

func TestOtherSchemaIsWiped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	s, err := index.Open(path)
	require.NoError(t, err)
	put(t, s, 12, entry("a", base, []string{"tok"}, nil))
	require.NoError(t, s.Reschedule("Plan@1", func(e *app.Entry) time.Time { return e.NextDue }))
	require.NoError(t, s.Close())

	// The same file, but written by another layout.
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte("retention-index/0")); err != nil {
			return err
		}
		b, err := tx.CreateBucketIfNotExists([]byte("legacy"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}))
	require.NoError(t, db.Close())

	s = open(t, path)
	cp, err := s.Checkpoint()
	require.NoError(t, err)
	require.Zero(t, cp, "replayed from the start")
	plan, err := s.Plan()
	require.NoError(t, err)
	require.Empty(t, plan)
	n, err := s.Count()
	require.NoError(t, err)
	require.Zero(t, n)
	require.Empty(t, due(t, s, base.AddDate(1, 0, 0), 10))
	require.Empty(t, find(t, s, "tok"))

	// And it works as a fresh index, and keeps working after a reopen.
	put(t, s, 3, entry("b", base, []string{"tok"}, nil))
	require.NoError(t, s.Close())
	s = open(t, path)
	require.Equal(t, []string{"b"}, find(t, s, "tok"))
	cp, err = s.Checkpoint()
	require.NoError(t, err)
	require.Equal(t, eventstore.Position(3), cp)
}

func TestCorruptRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	s, err := index.Open(path)
	require.NoError(t, err)
	put(t, s, 1, entry("a", base, nil, nil))
	require.NoError(t, s.Close())
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("cases")).Put([]byte("a"), []byte("{not json"))
	}))
	require.NoError(t, db.Close())

	s = open(t, path)
	_, _, err = s.Get("a")
	require.ErrorIs(t, err, index.ErrCorrupt)
	require.ErrorIs(t, s.Each(func(*app.Entry) error { return nil }), index.ErrCorrupt)
}

// onDisk returns the needles found in any file under dir.
func onDisk(t *testing.T, dir string, needles []string) []string {
	t.Helper()
	var found []string
	var files int
	require.NoError(t, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found = append(found, n+" in "+filepath.Base(path))
			}
		}
		return nil
	}))
	require.NotZero(t, files)
	return found
}

// TestRemovedTokensLeaveNoBytes: redaction (a slot set empty),
// rectification (a slot replaced) and deletion leave none of the removed
// tokens in any file of the index; the live ones are in the token file
// only, never in the index file.
func TestRemovedTokensLeaveNoBytes(t *testing.T) {
	s, path := newStore(t)
	tok := func(kind string, i int) string {
		return fmt.Sprintf("%s-token-%04d-%s", kind, i, strings.Repeat("x", 40))
	}
	var items []item
	for i := range 400 {
		items = append(items, entry(fmt.Sprintf("case-%04d", i), base, []string{tok("mail", i), tok("phone", i)}, []string{tok("pnr", i)}))
	}
	put(t, s, 1, items...)
	var gone, kept []string
	require.NoError(t, s.Update(2, func(tx *index.Tx) error {
		for i, it := range items {
			id := it.Case.ID
			switch i % 4 {
			case 0: // contact redacted
				tx.SetTokens(id, app.SlotContact, nil)
				gone = append(gone, tok("mail", i), tok("phone", i))
				kept = append(kept, tok("pnr", i))
			case 1: // identity rectified
				tx.SetTokens(id, app.SlotIdentity, []string{tok("pnr2", i)})
				gone = append(gone, tok("pnr", i))
				kept = append(kept, tok("mail", i), tok("phone", i), tok("pnr2", i))
			case 2: // deleted
				if err := tx.Delete(id); err != nil {
					return err
				}
				gone = append(gone, tok("mail", i), tok("phone", i), tok("pnr", i))
			default:
				kept = append(kept, tok("mail", i), tok("phone", i), tok("pnr", i))
			}
		}
		return nil
	}))
	require.Empty(t, find(t, s, tok("pnr", 1)))
	require.Equal(t, []string{"case-0001"}, find(t, s, tok("pnr2", 1)))
	dir := filepath.Dir(path)
	require.Empty(t, onDisk(t, dir, gone), "removed tokens are on disk")
	found := onDisk(t, dir, kept)
	require.Len(t, found, len(kept), "the live tokens are on disk (the scan reads the files)")
	for _, f := range found {
		require.True(t, strings.HasSuffix(f, " in index.tokens.db"), "a token outside the token file: %s", f)
	}
}

// TestTokenFileOfAnotherEpochStartsOver: a token file that does not
// belong to the index (a lost one, or one copied in) is reset, and the
// index starts over from the log, since neither file alone knows which
// cases need tokens.
func TestTokenFileOfAnotherEpochStartsOver(t *testing.T) {
	s, path := newStore(t)
	put(t, s, 5, entry("a", base, []string{"tok-a"}, nil))
	require.NoError(t, s.Close())
	require.NoError(t, tokenindex.ShredFile(tokenindex.PathFor(path)))

	s = open(t, path)
	cp, err := s.Checkpoint()
	require.NoError(t, err)
	require.Zero(t, cp, "replayed from the start")
	n, err := s.Count()
	require.NoError(t, err)
	require.Zero(t, n)
}

// TestModelCommitsABatchWithItsCheckpoint checks the index as a read model
// of pkg/projection: a batch's entries, tokens and checkpoint commit
// together, what waits for the commit runs only after a commit, a failed
// batch leaves nothing, and Reset empties the index under the plan given.
func TestModelCommitsABatchWithItsCheckpoint(t *testing.T) {
	s, _ := newStore(t)
	it := entry("c1", base, []string{"tok-c1"}, nil)
	var committed int
	fail := errors.New("the key service is away")
	var failNext bool
	m := s.Model("molndal@2.11", func(_ context.Context, tx app.IndexTx, batch []projection.Event) error {
		tx.OnCommit(func() { committed++ })
		if failNext {
			return fail
		}
		require.Len(t, batch, 2)
		return it.putIn(tx)
	})
	batch := []projection.Event{
		{Recorded: eventstore.RecordedEvent{Position: 6}},
		{Recorded: eventstore.RecordedEvent{Position: 7}},
	}

	failNext = true
	require.ErrorIs(t, m.Apply(t.Context(), batch), fail)
	cp, err := m.Checkpoint()
	require.NoError(t, err)
	require.Zero(t, cp, "a failed batch moves nothing")
	require.Zero(t, committed, "nothing waiting for the commit ran")

	failNext = false
	require.NoError(t, m.Apply(t.Context(), batch))
	cp, err = m.Checkpoint()
	require.NoError(t, err)
	require.Equal(t, eventstore.Position(7), cp, "the checkpoint is the batch's last position")
	require.Equal(t, 1, committed)
	_, found, err := s.Get("c1")
	require.NoError(t, err)
	require.True(t, found)
	ids, err := s.FindByToken("tok-c1")
	require.NoError(t, err)
	require.Equal(t, []string{"c1"}, ids)

	require.NoError(t, m.Reset(t.Context()))
	cp, err = m.Checkpoint()
	require.NoError(t, err)
	require.Zero(t, cp)
	n, err := s.Count()
	require.NoError(t, err)
	require.Zero(t, n)
	ids, err = s.FindByToken("tok-c1")
	require.NoError(t, err)
	require.Empty(t, ids, "Reset empties the token file too")
	plan, err := s.Plan()
	require.NoError(t, err)
	require.Equal(t, "molndal@2.11", plan, "a rebuilt index is computed with the plan in force")
}
