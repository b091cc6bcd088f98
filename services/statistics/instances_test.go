package statistics

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/services/statistics/adapters/stream"
	"github.com/kontakt-se/kontakt/services/statistics/app"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

// instance is one statistics service with its own NATS connection and
// data directory, as a separate process would have.
type instance struct {
	h   *harness
	svc *Service
	// stop ends Run without closing anything; done has Run's result.
	stop context.CancelFunc
	done chan error
	// appended and found count the versions this instance appended and
	// the ones it found in the stream, put there by another.
	appended, found atomic.Int64
}

func newInstance(t *testing.T, h *harness) *instance {
	t.Helper()
	nc, err := h.srv.Connect()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return &instance{h: newHarness(t, h.srv, nc)}
}

// start builds the service on the instance's directory and runs it.
func (in *instance) start(t *testing.T, hooks app.Hooks, opts ...Option) {
	t.Helper()
	hooks.Published = func(_ int64, appended bool) {
		if appended {
			in.appended.Add(1)
		} else {
			in.found.Add(1)
		}
	}
	in.svc = in.h.service(t, Config{}, append(opts, WithHooks(hooks))...)
	ctx, cancel := context.WithCancel(context.Background())
	in.stop, in.done = cancel, make(chan error, 1)
	svc, done := in.svc, in.done
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// drop ends the instance the way a killed process ends: Run stops
// wherever it is, and only the file is left (closed so that the same
// process can open it again).
func (in *instance) drop(t *testing.T) error {
	t.Helper()
	in.stop()
	err := <-in.done
	in.done <- err // For the cleanup.
	require.NoError(t, in.svc.Close())
	return err
}

// waitPublished waits until the statistics stream holds version.
func (h *harness) waitPublished(t *testing.T, version int64) {
	t.Helper()
	require.NoError(t, h.published(version, 20*time.Second))
}

// published waits until the statistics stream holds version, for at most
// timeout; it may run outside the test's goroutine.
func (h *harness) published(version int64, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := stream.Open(ctx, h.js)
	if err != nil {
		return err
	}
	var after uint64
	for {
		last, err := out.LastSeq(ctx)
		found := false
		if err == nil {
			err = out.Read(ctx, after, last, func(m app.StoredMessage) error {
				found = found || m.Record != nil && m.Record.Version == version
				after = m.Seq
				return nil
			})
		}
		if err == nil && found {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("version %d was never published: %w", version, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestSeveralInstances runs two statistics services, each with its own
// connection and read model, on one case log and one statistics stream
// while cases keep coming, kills one after a commit and before it
// published, and the other in mid-flight, restarting each; one of them
// lags behind now and then by more than the duplicate window. In the end
// the stream holds every version of every case's record exactly once,
// both read models hold exactly the records a pure projection of the
// appended events gives, and both answer queries alike and in agreement
// with a recount of the stream.
func TestSeveralInstances(t *testing.T) {
	h := startHarness(t)
	h.seeded = true
	rng := rand.New(rand.NewPCG(41, 42))
	// A de-duplication window too short to hide a version published
	// twice by instances more than a moment apart.
	dedup := withDuplicateWindow(100 * time.Millisecond)

	// a crashes right after its 25th commit, before publishing that
	// batch: only b can then publish it (or a, after its restart).
	var commits atomic.Int32
	crashA := app.Hooks{AfterCommit: func(eventstore.Position) error {
		if commits.Add(1) == 25 {
			return errCrash
		}
		return nil
	}}
	// b sometimes stalls before publishing, beyond the window.
	lagB := app.Hooks{BeforePublish: func(int) error {
		if rand.IntN(12) == 0 {
			time.Sleep(120 * time.Millisecond)
		}
		return nil
	}}
	a, b := newInstance(t, h), newInstance(t, h)
	a.start(t, crashA, dedup, WithBatchSize(3))
	b.start(t, lagB, dedup, WithBatchSize(7))

	const n = 120
	var ids []string
	aCrashed := false
	bDown, bUp := 2*n/3, 2*n/3+10
	for i := range n {
		select {
		case err := <-a.done:
			require.ErrorIs(t, err, errCrash)
			a.done <- err
			require.NoError(t, a.svc.Close())
			time.Sleep(150 * time.Millisecond) // Outlive the window.
			a.start(t, app.Hooks{}, dedup, WithBatchSize(3))
			aCrashed = true
		default:
		}
		switch i {
		case bDown:
			// b goes down mid-flight; cases come and go meanwhile.
			require.True(t, aCrashed, "a crashed and came back before b goes down")
			require.NoError(t, b.drop(t))
		case bUp:
			b.start(t, lagB, dedup, WithBatchSize(5))
		}
		id := h.randomHistory(t, rng, 1, nil)[0]
		ids = append(ids, id)
		if rng.IntN(5) == 0 || i == bDown {
			// Deleting purges the case's events: wait until some
			// instance published the CaseDeleted's version. One that
			// had not read the CaseDeleted (b while it is down) meets
			// only the tombstone.
			reg := h.appended[slices.IndexFunc(h.appended, func(e appendedEvent) bool { return e.caseID == id })].msg.(*casev1.CaseRegistered)
			pos := h.appendEvents(t, id, &casev1.CaseDeleted{CaseId: id, DeletedAt: ts(reg.GetRegisteredAt().AsTime().Add(720 * day))})
			h.waitPublished(t, int64(pos[0]))
			require.NoError(t, h.es.Delete(context.Background(), id))
			h.deleted[id] = true
		}
	}
	h.settled(t, a.svc)
	h.settled(t, b.svc)

	// What the appended events must give: each case's record versions
	// and final record, with the id derived from its seed (or position).
	ids2, err := domain.NewIDs(testIDKey)
	require.NoError(t, err)
	model := map[string]*domain.Case{}
	wantVersions := map[string][]int64{}
	wantID := map[string]string{}
	for _, e := range h.appended {
		data, err := proto.Marshal(e.msg)
		require.NoError(t, err)
		ev := eventstore.RecordedEvent{Event: eventstore.Event{Type: string(e.msg.ProtoReflect().Descriptor().FullName()), Data: data}, Stream: e.caseID, Position: e.pos, Recorded: time.Now()}
		step, err := domain.Project(model[e.caseID], ev, domain.DefaultPolicy(), func(seed string) string { return ids2.For(seed, int64(e.pos)) })
		require.NoError(t, err)
		if step.Case != nil {
			model[e.caseID] = step.Case
		}
		if step.Changed {
			wantVersions[e.caseID] = append(wantVersions[e.caseID], step.Case.Record.Version)
			wantID[step.Case.Record.StatisticsID] = e.caseID
		}
	}
	require.Len(t, model, n)
	var want []domain.Record
	for _, c := range model {
		want = append(want, c.Record)
	}
	slices.SortFunc(want, func(x, y domain.Record) int { return strings.Compare(x.StatisticsID, y.StatisticsID) })

	// The stream: every version once, each record's versions in order
	// and exactly the versions its case made.
	msgs := h.rawMessages(t)
	seen := map[int64]bool{}
	got := map[string][]int64{}
	for _, m := range msgs {
		r, err := decodeRaw(m.Data)
		require.NoError(t, err)
		require.False(t, seen[r.GetVersion()], "version %d published twice", r.GetVersion())
		seen[r.GetVersion()] = true
		got[r.GetStatisticsId()] = append(got[r.GetStatisticsId()], r.GetVersion())
	}
	require.Len(t, got, n, "one record per case")
	for sid, versions := range got {
		caseID, ok := wantID[sid]
		require.True(t, ok, "record %s is no case's", sid)
		require.Equal(t, wantVersions[caseID], versions, "the versions of case %s's record", caseID)
	}
	requireUniqueMsgIDs(t, msgs)
	var seeds []string
	for _, e := range h.appended {
		if reg, ok := e.msg.(*casev1.CaseRegistered); ok && reg.GetStatisticsSeed() != "" {
			seeds = append(seeds, reg.GetStatisticsSeed())
		}
	}
	require.NotEmpty(t, seeds)
	requireNoPersonalData(t, msgs, ids, seeds...)

	// Both read models: the same records as the model and the stream,
	// the same live mappings, the same answers.
	recs := h.recount(t)
	require.Equal(t, want, recs)
	require.Equal(t, want, storeRecords(t, a.svc))
	require.Equal(t, want, storeRecords(t, b.svc))
	for _, id := range ids {
		ca, err := a.svc.store.Case(id)
		require.NoError(t, err)
		cb, err := b.svc.store.Case(id)
		require.NoError(t, err)
		if h.deleted[id] {
			require.Nil(t, ca, "a forgot deleted case %s", id)
			require.Nil(t, cb, "b forgot deleted case %s", id)
			continue
		}
		require.NotNil(t, ca)
		require.NotNil(t, cb)
		require.Equal(t, model[id].Record, ca.Record)
		require.Equal(t, model[id].Record, cb.Record)
	}
	qs := append(someQueries(), &statisticsv1.QueryRequest{From: ts(utcHour(2025, 12, 31, 0)), To: ts(utcHour(2027, 1, 2, 0))})
	for i, q := range qs {
		ra, err := a.svc.queries.Query(context.Background(), q)
		require.NoError(t, err)
		rb, err := b.svc.queries.Query(context.Background(), q)
		require.NoError(t, err)
		require.True(t, proto.Equal(ra, rb), "query %d: the instances disagree", i)
		requireAgreesWithRecount(t, a.svc, q, recs)
		if i == len(qs)-1 {
			require.Len(t, ra.GetRows(), 1)
			require.EqualValues(t, n, ra.GetRows()[0].GetCount(), "every case counted once")
		}
	}
	t.Logf("%d cases (%d deleted), %d versions; a appended %d and found %d, b appended %d and found %d",
		n, len(h.deleted), len(msgs), a.appended.Load(), a.found.Load(), b.appended.Load(), b.found.Load())
	require.Positive(t, a.appended.Load())
	require.Positive(t, b.appended.Load())
	require.Positive(t, b.found.Load(), "b found versions a had published")
}

// TestTombstoneAfterAnotherInstancePublished has an instance meet the
// tombstone of a case whose deletion it never read (it was down while the
// case was deleted, and the events were purged), while the other
// instance, which did read the CaseDeleted, publishes its version only
// after the first one started: the first must take the stream's version
// (the deletion, late) and not derive a version of its own from its
// stale state and the tombstone's time (which is not late).
func TestTombstoneAfterAnotherInstancePublished(t *testing.T) {
	h := startHarness(t)
	var holdFrom atomic.Int64
	holdFrom.Store(math.MaxInt64)
	gate := make(chan struct{})
	holdA := app.Hooks{AfterCommit: func(cp eventstore.Position) error {
		if int64(cp) >= holdFrom.Load() {
			select {
			case <-gate:
			case <-time.After(30 * time.Second):
			}
		}
		return nil
	}}
	a, b := newInstance(t, h), newInstance(t, h)
	a.start(t, holdA)
	b.start(t, app.Hooks{})
	// Registered an hour ago, so the tombstone (stamped now) is on time.
	gone, live := newCaseID(), newCaseID()
	regAt := time.Now().Add(-time.Hour)
	h.appendEvents(t, gone, registered(gone, casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_EMAIL, "gone", regAt))
	h.appendEvents(t, live, registered(live, casev1.CaseType_CASE_TYPE_BREV, casev1.Channel_CHANNEL_LETTER, "live", regAt))
	h.settled(t, a.svc)
	h.settled(t, b.svc)
	require.NoError(t, b.drop(t))

	// While b is down, gone is deleted, late; a commits the version and
	// holds it back.
	holdFrom.Store(int64(h.head(t)) + 1)
	pos := h.appendEvents(t, gone, &casev1.CaseDeleted{CaseId: gone, DeletedAt: ts(regAt.Add(800 * day))})
	deletedAt := int64(pos[0])
	require.Eventually(t, func() bool {
		cp, err := a.svc.Checkpoint()
		return err == nil && cp >= pos[0]
	}, 20*time.Second, time.Millisecond)
	require.NoError(t, h.es.Delete(context.Background(), gone))

	// b starts (and reads the stream, which lacks the version); a
	// publishes it before b applies the tombstone.
	var tombstones atomic.Int32
	b.start(t, app.Hooks{BeforeApply: func(batch []eventstore.RecordedEvent) error {
		if !slices.ContainsFunc(batch, func(ev eventstore.RecordedEvent) bool { return ev.Type == eventstore.TypeStreamDeleted }) {
			return nil
		}
		if tombstones.Add(1) == 1 {
			close(gate)
			return h.published(deletedAt, 20*time.Second)
		}
		return nil
	}})
	h.settled(t, a.svc)
	h.settled(t, b.svc)
	require.EqualValues(t, 1, tombstones.Load())

	msgs := h.rawMessages(t)
	requireUniqueMsgIDs(t, msgs)
	var versions []int64
	for _, m := range msgs {
		r, err := decodeRaw(m.Data)
		require.NoError(t, err)
		versions = append(versions, r.GetVersion())
	}
	require.Len(t, versions, 3, "two registrations and the deletion; nothing from the tombstone")
	require.Equal(t, deletedAt, slices.Max(versions))
	recs := h.recount(t)
	require.Len(t, recs, 2)
	require.Equal(t, recs, storeRecords(t, a.svc))
	require.Equal(t, recs, storeRecords(t, b.svc))
	c, err := b.svc.store.Case(gone)
	require.NoError(t, err)
	require.Nil(t, c, "b forgot the deleted case")
	for _, r := range recs {
		if r.Category == "gone" {
			require.False(t, r.DeletedOnTime, "the CaseDeleted's version, deleted late")
		}
	}
}

// TestRecordsKeepTheIDsTheStreamHas upgrades from a stream whose records
// got ids the current derivation does not give (random ids of older
// versions, here a different key), with a registration from before the
// seed and one with it: a new instance and the upgraded old one both keep
// the ids the stream has, and publish nothing twice.
func TestRecordsKeepTheIDsTheStreamHas(t *testing.T) {
	h := startHarness(t)
	old := h.service(t, Config{IDKey: []byte("the key of an older installation")})
	stop := running(t, old)
	legacy, seeded := newCaseID(), newCaseID()
	h.appendEvents(t, legacy, registered(legacy, casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_EMAIL, "legacy", t0()))
	withSeed := registered(seeded, casev1.CaseType_CASE_TYPE_BREV, casev1.Channel_CHANNEL_LETTER, "seeded", t0())
	withSeed.StatisticsSeed = "SEEDOFTHESEEDEDCASE"
	h.appendEvents(t, seeded, withSeed)
	h.settled(t, old)
	oldIDs := mappings(t, h, old, []string{legacy, seeded})
	require.NoError(t, stop())
	require.NoError(t, old.Close())

	// A new instance, and the old one upgraded to the current key.
	b := newInstance(t, h)
	b.start(t, app.Hooks{})
	upgraded := h.service(t, Config{})
	running(t, upgraded)
	fresh := newCaseID()
	h.appendEvents(t, fresh, registered(fresh, casev1.CaseType_CASE_TYPE_SYNPUNKT, casev1.Channel_CHANNEL_FORM, "fresh", t0()))
	for _, id := range []string{legacy, seeded} {
		h.appendEvents(t, id, &casev1.CaseRouted{CaseId: id, Queue: "kund", RoutedAt: ts(t0().Add(time.Minute))})
	}
	h.settled(t, b.svc)
	h.settled(t, upgraded)

	ids := []string{legacy, seeded, fresh}
	requireUniqueMsgIDs(t, h.rawMessages(t))
	require.Len(t, h.rawMessages(t), 5)
	recs := h.recount(t)
	require.Len(t, recs, 3)
	require.Equal(t, recs, storeRecords(t, b.svc))
	require.Equal(t, recs, storeRecords(t, upgraded))
	got := mappings(t, h, b.svc, ids)
	require.Equal(t, got, mappings(t, h, upgraded, ids))
	require.Equal(t, oldIDs[legacy], got[legacy])
	require.Equal(t, oldIDs[seeded], got[seeded])
	derive, err := domain.NewIDs(testIDKey)
	require.NoError(t, err)
	require.NotEqual(t, derive.For("SEEDOFTHESEEDEDCASE", 0), got[seeded], "the stream's id, not the derived one")
}
