package readmodel

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/services/routing/app"
)

// changeLog collects OnChange calls from the projector's goroutine.
type changeLog struct {
	mu      sync.Mutex
	changes []app.Change
}

func (c *changeLog) add(ch app.Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changes = append(c.changes, ch)
}

// settled waits until n changes arrived: OnChange runs after the commit,
// so a test that saw the checkpoint move may be a moment early.
func (c *changeLog) settled(t *testing.T, n int) []app.Change {
	t.Helper()
	require.Eventually(t, func() bool { return len(c.all()) >= n }, 5*time.Second, time.Millisecond)
	return c.all()
}

func (c *changeLog) all() []app.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.changes)
}

func TestProjectVariedHistory(t *testing.T) {
	h := startNATS(t, 0)
	tok := &fakeTokenizer{}
	var log changeLog
	rm, _ := openStore(t, Options{Tokenizer: tok, OnChange: log.add})
	runProjector(t, mustProjector(t, h.es, rm, nil))

	const (
		fraga      = casev1.CaseType_CASE_TYPE_FRAGA
		felanmalan = casev1.CaseType_CASE_TYPE_FELANMALAN
		synpunkt   = casev1.CaseType_CASE_TYPE_SYNPUNKT
		brev       = casev1.CaseType_CASE_TYPE_BREV
	)
	at := func(h int) time.Time { return t0().Add(time.Duration(h) * time.Hour) }
	visit := registered("visit", "KC-visit", fraga, casev1.Channel_CHANNEL_VISIT, at(5))
	visit.Contact, visit.Identity = nil, nil
	h.append(t,
		// answered and closed
		ev("closed", registered("closed", "KC-closed", fraga, casev1.Channel_CHANNEL_PHONE, at(0))),
		ev("closed", routed("closed", "kundtjanst", at(0))),
		ev("closed", &casev1.CaseAssigned{CaseId: "closed", Assignee: "anna", AssignedBy: "anna", AssignedAt: ts(at(1))}),
		ev("closed", &casev1.CaseAnswered{CaseId: "closed", AnsweredBy: "anna", Answer: sealedAs("k-closed-answer", "svar"), AnsweredAt: ts(at(2))}),
		ev("closed", &casev1.CaseClosed{CaseId: "closed", ClosedBy: "anna", Resolution: casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY, ClosedAt: ts(at(3))}),
		// moved, assigned, released, noted
		ev("moved", registered("moved", "KC-moved", felanmalan, casev1.Channel_CHANNEL_FORM, at(1))),
		ev("moved", routed("moved", "kundtjanst", at(1))),
		ev("moved", &casev1.CaseMoved{CaseId: "moved", FromQueue: "kundtjanst", ToQueue: "gata", MovedBy: "sup", MovedAt: ts(at(2))}),
		ev("moved", &casev1.CaseAssigned{CaseId: "moved", Assignee: "bertil", AssignedAt: ts(at(3))}),
		ev("moved", &casev1.CaseReleased{CaseId: "moved", ReleasedBy: "bertil", ReleasedAt: ts(at(4))}),
		ev("moved", &casev1.NoteAdded{CaseId: "moved", NoteId: "n1", Author: "bertil", Text: sealedAs("k-moved-answer", "not"), AddedAt: ts(at(4))}),
		// forwarded to a department's queue
		ev("tosoc", registered("tosoc", "KC-tosoc", synpunkt, casev1.Channel_CHANNEL_EMAIL, at(2))),
		ev("tosoc", routed("tosoc", "kundtjanst", at(2))),
		ev("tosoc", &casev1.CaseForwarded{CaseId: "tosoc", ToQueue: "socialtjanst", ToDepartment: "soc", Comment: sealedAs("k-tosoc-answer", "c"), ForwardedAt: ts(at(3))}),
		// forwarded to an officer, stays in its queue
		ev("toofficer", registered("toofficer", "KC-toofficer", brev, casev1.Channel_CHANNEL_LETTER, at(3))),
		ev("toofficer", routed("toofficer", "kundtjanst", at(3))),
		ev("toofficer", &casev1.CaseForwarded{CaseId: "toofficer", ToOfficer: "handl-7", ForwardedAt: ts(at(4))}),
		// closed, reopened, held
		ev("reopened", registered("reopened", "KC-reopened", fraga, casev1.Channel_CHANNEL_CHAT, at(4))),
		ev("reopened", routed("reopened", "kundtjanst", at(4))),
		ev("reopened", &casev1.CaseAssigned{CaseId: "reopened", Assignee: "anna", AssignedAt: ts(at(5))}),
		ev("reopened", &casev1.CaseClosed{CaseId: "reopened", Resolution: casev1.Resolution_RESOLUTION_NO_ACTION, ClosedAt: ts(at(6))}),
		ev("reopened", &casev1.CaseReopened{CaseId: "reopened", ReopenedAt: ts(at(7))}),
		ev("reopened", &casev1.HoldPlaced{CaseId: "reopened", HoldId: "h1", Reason: "överklagande"}),
		ev("reopened", &casev1.HoldPlaced{CaseId: "reopened", HoldId: "h2"}),
		ev("reopened", &casev1.HoldReleased{CaseId: "reopened", HoldId: "h1"}),
		ev("reopened", &casev1.CaseMarkedForPreservation{CaseId: "reopened"}),
		// registered at a visit, never routed
		ev("visit", visit),
	)
	waitCaughtUp(t, h, rm)

	lastRevision := func(id string) eventstore.Revision {
		evs, err := h.es.Read(context.Background(), id)
		require.NoError(t, err)
		return evs[len(evs)-1].Revision
	}
	day := 24 * time.Hour
	for _, tc := range []struct {
		id                string
		status            casev1.CaseStatus
		queue, assignee   string
		dept, officer     string
		due               time.Time
		closedAt          time.Time
		reopenings        int
		onHold, unassigne bool
		history           []string
	}{
		{id: "closed", status: casev1.CaseStatus_CASE_STATUS_CLOSED, queue: "kundtjanst", assignee: "" /* closing clears the assignee, as the domain does */, due: at(0).Add(2 * day), closedAt: at(3),
			history: []string{app.ChangeRegistered, app.ChangeRouted, app.ChangeAssigned, app.ChangeAnswered, app.ChangeClosed}},
		{id: "moved", status: casev1.CaseStatus_CASE_STATUS_QUEUED, queue: "gata", due: at(1).Add(day), unassigne: true,
			history: []string{app.ChangeRegistered, app.ChangeRouted, app.ChangeMoved, app.ChangeAssigned, app.ChangeReleased, app.ChangeNoted}},
		{id: "tosoc", status: casev1.CaseStatus_CASE_STATUS_FORWARDED, queue: "socialtjanst", dept: "soc", due: at(2).Add(10 * day), unassigne: true,
			history: []string{app.ChangeRegistered, app.ChangeRouted, app.ChangeForwarded}},
		{id: "toofficer", status: casev1.CaseStatus_CASE_STATUS_FORWARDED, queue: "kundtjanst", officer: "handl-7", due: at(3).Add(10 * day),
			history: []string{app.ChangeRegistered, app.ChangeRouted, app.ChangeForwarded}},
		{id: "reopened", status: casev1.CaseStatus_CASE_STATUS_QUEUED, queue: "kundtjanst", due: at(4).Add(2 * day), reopenings: 1, onHold: true, unassigne: true,
			history: []string{app.ChangeRegistered, app.ChangeRouted, app.ChangeAssigned, app.ChangeClosed, app.ChangeReopened, app.ChangeHeld, app.ChangeHeld, app.ChangeHeld}},
		{id: "visit", status: casev1.CaseStatus_CASE_STATUS_REGISTERED, due: at(5).Add(2 * day),
			history: []string{app.ChangeRegistered}},
	} {
		t.Run(tc.id, func(t *testing.T) {
			r, err := rm.Get(tc.id)
			require.NoError(t, err)
			require.Equal(t, tc.id, r.CaseID)
			require.Equal(t, "KC-"+tc.id, r.Number)
			require.Equal(t, tc.status, r.Status)
			require.Equal(t, tc.queue, r.Queue)
			require.Equal(t, tc.assignee, r.Assignee)
			require.Equal(t, tc.dept, r.ForwardedToDepartment)
			require.Equal(t, tc.officer, r.ForwardedToOfficer)
			require.Equal(t, tc.due, r.DueAt)
			require.Equal(t, tc.closedAt, r.ClosedAt)
			require.Equal(t, tc.reopenings, r.Reopenings)
			require.Equal(t, tc.onHold, r.OnHold)
			require.Equal(t, tc.unassigne, r.IsUnassigned())
			require.Equal(t, lastRevision(tc.id), r.Revision, "the revision of the stream's last event, known or not")
			require.Equal(t, "FREETEXT:"+tc.id, string(r.FreeText.GetCiphertext()))
			require.Equal(t, "k-"+tc.id+"-free", r.FreeText.GetKeyId())
			require.Len(t, r.Attachments, 1)

			byNumber, err := rm.FindByNumber("KC-" + tc.id)
			require.NoError(t, err)
			require.Equal(t, r, byNumber)

			hist, err := rm.History(tc.id)
			require.NoError(t, err)
			var kinds []string
			for _, e := range hist {
				kinds = append(kinds, e.Kind)
			}
			require.Equal(t, tc.history, kinds)

			rows, err := rm.FindByToken(tokenFor("contact", sealedAs("", "CONTACT:"+tc.id)))
			require.NoError(t, err)
			if tc.id == "visit" {
				require.Empty(t, rows)
			} else {
				require.Len(t, rows, 1)
				require.Equal(t, tc.id, rows[0].CaseID)
			}
		})
	}

	loads, err := rm.AllQueueLoads()
	require.NoError(t, err)
	require.Equal(t, []app.QueueLoad{
		{Queue: "gata", Open: 1, Unassigned: 1, OpenByStatus: map[casev1.CaseStatus]int64{casev1.CaseStatus_CASE_STATUS_QUEUED: 1}, OldestOpenAt: at(1)},
		{Queue: "kundtjanst", Open: 2, Unassigned: 1, OpenByStatus: map[casev1.CaseStatus]int64{casev1.CaseStatus_CASE_STATUS_QUEUED: 1, casev1.CaseStatus_CASE_STATUS_FORWARDED: 1}, OldestOpenAt: at(3)},
		{Queue: "socialtjanst", Open: 1, Unassigned: 1, OpenByStatus: map[casev1.CaseStatus]int64{casev1.CaseStatus_CASE_STATUS_FORWARDED: 1}, OldestOpenAt: at(2)},
	}, loads)
	rows, next, err := listQueue(rm, "kundtjanst", routingv1.QueueOrder_QUEUE_ORDER_AGE, nil, nil, 0, "")
	require.NoError(t, err)
	require.Empty(t, next)
	require.Len(t, rows, 2)
	require.Equal(t, "toofficer", rows[0].CaseID)
	require.Equal(t, "reopened", rows[1].CaseID)
	checkConsistent(t, rm)

	// Every event but the one the read model ignores produced a change,
	// in log order, and the case that moved was announced to its old
	// queue.
	changes := log.settled(t, 26)
	require.Len(t, changes, 26)
	for i := 1; i < len(changes); i++ {
		require.Greater(t, changes[i].Position, changes[i-1].Position)
	}
	i := slices.IndexFunc(changes, func(c app.Change) bool { return c.Kind == app.ChangeMoved })
	require.Equal(t, "kundtjanst", changes[i].PreviousQueue)
	require.Equal(t, "gata", changes[i].Queue)
}

func TestProjectorResumesFromCheckpoint(t *testing.T) {
	h := startNATS(t, 0)
	tok := &fakeTokenizer{}
	rm, path := openStore(t, Options{Tokenizer: tok})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mustProjector(t, h.es, rm, nil).Run(ctx) }()
	h.append(t, slices.Concat(basicCase("a", "q", t0()), basicCase("b", "q", t0().Add(time.Hour)))...)
	waitCaughtUp(t, h, rm)
	cancel()
	require.NoError(t, <-done)
	require.NoError(t, rm.Close())

	// While the service is down the log moves on.
	h.append(t, ev("a", &casev1.CaseClosed{CaseId: "a"}), ev("a", &casev1.CaseReopened{CaseId: "a"}))
	h.append(t, basicCase("c", "q", t0().Add(2*time.Hour))...)

	var log changeLog
	rm, err := Open(path, Options{Tokenizer: tok, OnChange: log.add})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rm.Close() })
	before, err := rm.Checkpoint()
	require.NoError(t, err)
	require.EqualValues(t, 8, before)
	runProjector(t, mustProjector(t, h.es, rm, nil))
	waitCaughtUp(t, h, rm)

	require.Len(t, log.settled(t, 6), 6, "only the events after the checkpoint are applied")
	require.Greater(t, log.all()[0].Position, before)
	a, err := rm.Get("a")
	require.NoError(t, err)
	require.Equal(t, 1, a.Reopenings)
	load, err := rm.QueueLoad("q")
	require.NoError(t, err)
	require.EqualValues(t, 3, load.Open)
	checkConsistent(t, rm)
}

func TestProjectorRetriesFailedBatches(t *testing.T) {
	h := startNATS(t, 0)
	tok := &fakeTokenizer{}
	errDown := errors.New("key service down")
	tok.setFail("b", errDown)
	tok.setFail("gone", errNoTokens)
	rm, _ := openStore(t, Options{Tokenizer: tok})
	runProjector(t, mustProjector(t, h.es, rm, nil, WithBatchSize(1, 0)))

	h.append(t, basicCase("gone", "q", t0())...)
	h.append(t, basicCase("a", "q", t0())...)
	waitCaughtUp(t, h, rm)
	_, err := rm.Get("gone")
	require.NoError(t, err, "a case whose tokens cannot be computed is still projected")

	cp, err := rm.Checkpoint()
	require.NoError(t, err)
	h.append(t, basicCase("b", "q", t0())...)
	h.append(t, basicCase("c", "q", t0())...)
	// The projector retries b's registration and gets no further.
	calls := tok.calls.Load()
	require.Eventually(t, func() bool { return tok.calls.Load() >= calls+3 }, 10*time.Second, 10*time.Millisecond)
	stuck, err := rm.Checkpoint()
	require.NoError(t, err)
	require.Equal(t, cp, stuck)
	_, err = rm.Get("c")
	require.ErrorIs(t, err, app.ErrNotFound)

	tok.setFail("b", nil)
	waitCaughtUp(t, h, rm)
	for _, id := range []string{"b", "c"} {
		_, err := rm.Get(id)
		require.NoError(t, err)
	}
	checkConsistent(t, rm)
}

func TestDeletionThroughTheEventStore(t *testing.T) {
	for _, tc := range []struct {
		name   string
		delete []draft
	}{
		{"CaseDeleted", []draft{ev("a", &casev1.CaseDeleted{CaseId: "a"})}},
		{"stream deleted", []draft{ev("a", nil)}},
		{"CaseDeleted, then stream deleted", []draft{ev("a", &casev1.CaseDeleted{CaseId: "a"}), ev("a", nil)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startNATS(t, 0)
			var log changeLog
			rm, _ := openStore(t, Options{Tokenizer: &fakeTokenizer{}, OnChange: log.add})
			p := mustProjector(t, h.es, rm, nil, WithHead(h.head))
			runProjector(t, p)
			h.append(t, basicCase("a", "q", t0())...)
			h.append(t, basicCase("b", "q", t0().Add(time.Hour))...)
			waitCaughtUp(t, h, rm)
			_, err := rm.Get("a")
			require.NoError(t, err)

			h.append(t, tc.delete...)
			waitCaughtUp(t, h, rm)
			_, err = rm.Get("a")
			require.ErrorIs(t, err, app.ErrNotFound)
			_, err = rm.History("a")
			require.ErrorIs(t, err, app.ErrNotFound)
			rows, err := rm.FindByToken(tokenFor("contact", sealedAs("", "CONTACT:a")))
			require.NoError(t, err)
			require.Empty(t, rows)
			load, err := rm.QueueLoad("q")
			require.NoError(t, err)
			require.Equal(t, app.QueueLoad{Queue: "q", Open: 1, Unassigned: 1, OpenByStatus: map[casev1.CaseStatus]int64{casev1.CaseStatus_CASE_STATUS_QUEUED: 1}, OldestOpenAt: t0().Add(time.Hour)}, load)
			require.Eventually(t, func() bool {
				return slices.ContainsFunc(log.all(), func(c app.Change) bool { return c.Kind == app.ChangeDeleted })
			}, 5*time.Second, time.Millisecond)
			deleted := slices.DeleteFunc(log.all(), func(c app.Change) bool { return c.Kind != app.ChangeDeleted })
			require.Len(t, deleted, 1)
			require.Equal(t, "q", deleted[0].Queue)
			checkConsistent(t, rm)

			// A rebuild, which never sees the purged events, ends in the
			// same state.
			want := dump(t, rm)
			rebuilt, _ := openStore(t, Options{Tokenizer: &fakeTokenizer{}})
			require.NoError(t, mustProjector(t, h.es, rebuilt, nil, WithHead(h.head)).Rebuild(t.Context(), nil))
			require.Equal(t, want, dump(t, rebuilt))
		})
	}
}

// snapshot is everything the queries answer about a read model.
type snapshot struct {
	rows    map[string]app.CaseRow
	history map[string][]app.HistoryEntry
	lists   map[string][]string
	loads   []app.QueueLoad
	tokens  map[string][]string
}

func takeSnapshot(t *testing.T, rm *Store, ids []string) snapshot {
	t.Helper()
	s := snapshot{rows: map[string]app.CaseRow{}, history: map[string][]app.HistoryEntry{}, lists: map[string][]string{}, tokens: map[string][]string{}}
	for _, id := range ids {
		r, err := rm.Get(id)
		if errors.Is(err, app.ErrNotFound) {
			continue
		}
		require.NoError(t, err)
		s.rows[id] = r
		s.history[id], err = rm.History(id)
		require.NoError(t, err)
		for _, ct := range []string{"CONTACT:" + id, "IDENTITY:" + id} {
			for _, kind := range []string{"contact", "identity"} {
				found, err := rm.FindByToken(tokenFor(kind, sealedAs("", ct)))
				require.NoError(t, err)
				for _, f := range found {
					s.tokens[kind+ct] = append(s.tokens[kind+ct], f.CaseID)
				}
			}
		}
	}
	var err error
	s.loads, err = rm.AllQueueLoads()
	require.NoError(t, err)
	for _, q := range queues() {
		for _, order := range []routingv1.QueueOrder{routingv1.QueueOrder_QUEUE_ORDER_AGE, routingv1.QueueOrder_QUEUE_ORDER_DUE} {
			key := q + order.String()
			for token := ""; ; {
				rows, next, err := listQueue(rm, q, order, nil, nil, 7, token)
				require.NoError(t, err)
				for _, r := range rows {
					s.lists[key] = append(s.lists[key], r.CaseID)
				}
				if next == "" {
					break
				}
				token = next
			}
		}
	}
	return s
}

func TestRebuildEqualsIncrementalProjection(t *testing.T) {
	h := startNATS(t, 0)
	tok := &fakeTokenizer{}
	var changes changeLog
	rm, _ := openStore(t, Options{Tokenizer: tok, OnChange: changes.add})
	// Small batches and appends while the projector runs give many batch
	// boundaries in odd places.
	p := mustProjector(t, h.es, rm, nil, WithHead(h.head), WithBatchSize(5, 64))
	runProjector(t, p)
	drafts := genHistory(rand.New(rand.NewPCG(42, 42)), 500)
	h.append(t, drafts...)
	waitCaughtUp(t, h, rm)
	head, err := h.head(t.Context())
	require.NoError(t, err)
	require.GreaterOrEqual(t, head, eventstore.Position(500))

	var ids []string
	for _, d := range drafts {
		if !slices.Contains(ids, d.stream) {
			ids = append(ids, d.stream)
		}
	}
	before := takeSnapshot(t, rm, ids)
	require.NotEmpty(t, before.loads)
	require.Greater(t, len(before.rows), 30)
	require.Less(t, len(before.rows), len(ids), "some cases were deleted")
	wantDump := dump(t, rm)
	checkConsistent(t, rm)

	// Rebuild the same store, with the live projector stopped as the
	// application would; then a fresh one.
	rebuildStore, _ := openStore(t, Options{Tokenizer: tok, OnChange: changes.add})
	for _, target := range []*Store{rebuildStore} {
		nChanges := len(changes.all())
		var calls [][2]uint64
		require.NoError(t, mustProjector(t, h.es, target, nil, WithHead(h.head), WithBatchSize(0, 64)).Rebuild(t.Context(), func(done, total uint64) {
			calls = append(calls, [2]uint64{done, total})
		}))
		require.Equal(t, wantDump, dump(t, target))
		require.Equal(t, before, takeSnapshot(t, target, ids))
		require.Len(t, changes.all(), nChanges, "a rebuild tells no watcher")
		require.Greater(t, len(calls), 3, "progress is reported per batch")
		require.Equal(t, [2]uint64{uint64(head), uint64(head)}, calls[len(calls)-1])
		for i := 1; i < len(calls); i++ {
			require.GreaterOrEqual(t, calls[i][0], calls[i-1][0])
			require.Equal(t, uint64(head), calls[i][1])
		}
	}
}

func TestRebuildOfTheLiveStore(t *testing.T) {
	h := startNATS(t, 0)
	tok := &fakeTokenizer{}
	rm, _ := openStore(t, Options{Tokenizer: tok})
	h.append(t, genHistory(rand.New(rand.NewPCG(3, 4)), 200)...)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- mustProjector(t, h.es, rm, nil).Run(ctx) }()
	waitCaughtUp(t, h, rm)
	cancel()
	require.NoError(t, <-done)
	want := dump(t, rm)

	// Damage the read model: a rebuild must repair it from the log.
	require.NoError(t, rm.Apply(t.Context(), history(1<<40, ev("case-0001", &casev1.CaseReopened{}))...))
	require.NotEqual(t, want, dump(t, rm))
	require.NoError(t, mustProjector(t, h.es, rm, nil, WithHead(h.head)).Rebuild(t.Context(), nil))
	require.Equal(t, want, dump(t, rm))

	t.Run("needs the head", func(t *testing.T) {
		require.Error(t, mustProjector(t, h.es, rm, nil).Rebuild(t.Context(), nil))
	})
	t.Run("an empty log", func(t *testing.T) {
		empty := newHarness(t, h.nc)
		fresh, _ := openStore(t, Options{})
		var last [2]uint64
		require.NoError(t, mustProjector(t, empty.es, fresh, nil, WithHead(empty.head)).Rebuild(t.Context(), func(d, total uint64) { last = [2]uint64{d, total} }))
		require.Equal(t, [2]uint64{0, 0}, last)
		cp, err := fresh.Checkpoint()
		require.NoError(t, err)
		require.Zero(t, cp)
	})
}

func TestRebuildWhileRunning(t *testing.T) {
	h := startNATS(t, 0)
	tok := &fakeTokenizer{}
	rm, _ := openStore(t, Options{Tokenizer: tok})
	runProjector(t, mustProjector(t, h.es, rm, nil, WithBatchSize(3, 0)))
	drafts := genHistory(rand.New(rand.NewPCG(8, 8)), 400)
	h.append(t, drafts[:200]...)
	waitCaughtUp(t, h, rm)

	// The log moves on during the rebuild, and the live projector keeps
	// trying to apply it.
	appended := make(chan struct{})
	go func() {
		defer close(appended)
		h.append(t, drafts[200:]...)
	}()
	p := mustProjector(t, h.es, rm, nil, WithHead(h.head), WithBatchSize(0, 16))
	rebuildErr := make(chan error, 1)
	require.NoError(t, p.Rebuild(t.Context(), func(uint64, uint64) {
		// A second rebuild of the same store is refused meanwhile.
		select {
		case rebuildErr <- p.Rebuild(t.Context(), nil):
		default:
		}
	}))
	require.ErrorIs(t, <-rebuildErr, ErrRebuilding)
	<-appended
	waitCaughtUp(t, h, rm)
	checkConsistent(t, rm)

	fresh, _ := openStore(t, Options{Tokenizer: tok})
	require.NoError(t, mustProjector(t, h.es, fresh, nil, WithHead(h.head)).Rebuild(t.Context(), nil))
	require.Equal(t, dump(t, fresh), dump(t, rm))
}
