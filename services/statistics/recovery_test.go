package statistics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	esjs "github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
	"github.com/kontakt-se/kontakt/pkg/natsserver"
	"github.com/kontakt-se/kontakt/services/statistics/app"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

// someQueries are queries whose answers must survive every recovery.
func someQueries() []*statisticsv1.QueryRequest {
	from, to := ts(utcHour(2025, 12, 31, 23)), ts(utcHour(2026, 12, 31, 23))
	return []*statisticsv1.QueryRequest{
		{From: from, To: to, GroupBy: []statisticsv1.Dimension{1, 2}, Granularity: statisticsv1.Granularity_GRANULARITY_MONTH},
		{From: from, To: to, GroupBy: []statisticsv1.Dimension{3, 4, 5}, Granularity: statisticsv1.Granularity_GRANULARITY_WEEK},
		{From: from, To: to, Publishable: true},
	}
}

func queryAll(t testing.TB, svc *Service) []*statisticsv1.QueryResponse {
	t.Helper()
	var out []*statisticsv1.QueryResponse
	for _, q := range someQueries() {
		resp, err := svc.queries.Query(context.Background(), q)
		require.NoError(t, err)
		out = append(out, resp)
	}
	return out
}

// mappings returns the statistics id of every live case.
func mappings(t testing.TB, h *harness, svc *Service, ids []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, id := range ids {
		c, err := svc.store.Case(id)
		require.NoError(t, err)
		if h.deleted[id] {
			require.Nil(t, c)
			continue
		}
		require.NotNil(t, c, "live case lost its mapping")
		out[id] = c.Record.StatisticsID
	}
	return out
}

// requireUniqueMsgIDs checks that the stream holds every record version
// once.
func requireUniqueMsgIDs(t testing.TB, msgs []rawMessage) {
	t.Helper()
	seen := map[string]uint64{}
	for _, m := range msgs {
		id := m.Header.Get(jetstream.MsgIDHeader)
		require.NotEmpty(t, id)
		if first, dup := seen[id]; dup {
			t.Fatalf("message id %s stored twice, at %d and %d", id, first, m.Seq)
		}
		seen[id] = m.Seq
	}
}

// TestReprojectionFromOlderFile replaces the read model with an older copy
// of itself, or deletes it, and checks that projecting again leaves the
// stream as it was (nothing published twice, no new statistics ids) and
// Query answers as before.
func TestReprojectionFromOlderFile(t *testing.T) {
	tests := []struct {
		name    string
		restore func(t *testing.T, h *harness, old string)
	}{
		{"restored from an older copy", func(t *testing.T, h *harness, old string) { fileCopy(t, old, dbPath(h)) }},
		{"deleted and rebuilt", func(t *testing.T, h *harness, _ string) { require.NoError(t, os.Remove(dbPath(h))) }},
		{"rebuilt in place by Rebuild", func(t *testing.T, h *harness, _ string) {
			svc := h.service(t, Config{}, withDuplicateWindow(100*time.Millisecond))
			var calls int
			var last [2]uint64
			require.NoError(t, svc.Rebuild(t.Context(), func(done, total uint64) { calls++; last = [2]uint64{done, total} }))
			require.Positive(t, calls, "progress is reported")
			require.Equal(t, uint64(h.head(t)), last[1], "the rebuild goes to the log's head")
			require.Equal(t, last[1], last[0])
			require.NoError(t, svc.Close())
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t)
			rng := rand.New(rand.NewPCG(11, 12))
			// A de-duplication window too short to hide a version
			// published twice.
			dedup := withDuplicateWindow(100 * time.Millisecond)
			svc := h.service(t, Config{}, dedup)
			stop := running(t, svc)
			first := h.randomHistory(t, rng, 30, svc)
			h.settled(t, svc)
			require.NoError(t, stop())
			require.NoError(t, svc.Close())
			old := dbPath(h) + ".old"
			fileCopy(t, dbPath(h), old)

			// More history after the copy: new cases, and changes to and
			// deletions of cases the copy knows.
			svc = h.service(t, Config{}, dedup)
			stop = running(t, svc)
			second := h.randomHistory(t, rng, 30, svc)
			for i, id := range first {
				if h.deleted[id] {
					continue
				}
				switch i % 3 {
				case 0:
					h.appendEvents(t, id, &casev1.CaseReopened{CaseId: id, ReopenedAt: ts(t0().Add(400 * day))})
				case 1:
					h.deleteCase(t, svc, id, t0().Add(731*day))
				}
			}
			h.settled(t, svc)
			ids := append(slices.Clone(first), second...)
			wantMsgs := h.rawMessages(t)
			wantRecords := h.recount(t)
			wantQueries := queryAll(t, svc)
			wantMappings := mappings(t, h, svc, ids)
			require.Equal(t, wantRecords, storeRecords(t, svc))
			require.NoError(t, stop())
			require.NoError(t, svc.Close())

			tc.restore(t, h, old)
			time.Sleep(150 * time.Millisecond) // Outlive the window.
			svc = h.service(t, Config{}, dedup)
			running(t, svc)
			h.settled(t, svc)
			gotMsgs := h.rawMessages(t)
			require.Equal(t, len(wantMsgs), len(gotMsgs), "nothing was published again")
			require.Equal(t, wantMsgs, gotMsgs)
			require.Equal(t, wantRecords, h.recount(t))
			require.Equal(t, wantRecords, storeRecords(t, svc))
			require.Equal(t, wantMappings, mappings(t, h, svc, ids), "live cases keep their statistics ids")
			got := queryAll(t, svc)
			for i := range wantQueries {
				require.True(t, proto.Equal(wantQueries[i], got[i]), "query %d", i)
			}

			// Projection goes on normally afterwards.
			id := newCaseID()
			h.appendEvents(t, id, registered(id, casev1.CaseType_CASE_TYPE_BREV, casev1.Channel_CHANNEL_LETTER, "after", t0()))
			for live := range wantMappings {
				h.appendEvents(t, live, &casev1.CaseClosed{CaseId: live, ClosedAt: ts(t0().Add(500 * day))})
				break
			}
			h.settled(t, svc)
			recs := h.recount(t)
			require.Len(t, recs, len(wantRecords)+1)
			require.Equal(t, recs, storeRecords(t, svc))
			requireUniqueMsgIDs(t, h.rawMessages(t))
		})
	}
}

var errCrash = errors.New("simulated crash")

// TestCrashBetweenCommitAndPublish stops the projector, through its test
// hooks, right after a batch was committed and between two atomic batches
// of its record versions (also while re-publishing after a first crash),
// with a de-duplication window too short to help, and checks that the
// restarted projector publishes exactly what is missing.
func TestCrashBetweenCommitAndPublish(t *testing.T) {
	crashAfterCommit := app.Hooks{AfterCommit: func(eventstore.Position) error { return errCrash }}
	crashBefore := func(n int) app.Hooks {
		return app.Hooks{BeforePublish: func(i int) error {
			if i == n {
				return errCrash
			}
			return nil
		}}
	}
	tests := []struct {
		name    string
		crashes []app.Hooks
		// wantAfterCrash is how many of the batch's versions are in the
		// stream after the first crash: whole atomic batches of four.
		wantAfterCrash int
	}{
		{"after commit, before publishing", []app.Hooks{crashAfterCommit}, 0},
		{"after the first atomic batch", []app.Hooks{crashBefore(4)}, 4},
		{"before the last", []app.Hooks{crashBefore(16)}, 16},
		{"again while re-publishing", []app.Hooks{crashBefore(8), crashBefore(4)}, 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t)
			opts := []Option{WithBatchSize(1000), withIdleFlush(300 * time.Millisecond), withDuplicateWindow(100 * time.Millisecond), withPublishBatch(4)}
			// Twenty registrations make one batch of twenty versions.
			var ids []string
			for i := range 20 {
				id := newCaseID()
				ids = append(ids, id)
				h.appendEvents(t, id, registered(id, casev1.CaseType(1+i%4), casev1.Channel_CHANNEL_PHONE, "cat", t0()))
			}
			head := h.head(t)
			for n, hooks := range tc.crashes {
				svc := h.service(t, Config{}, append(slices.Clone(opts), WithHooks(hooks))...)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := svc.Run(ctx)
				cancel()
				require.ErrorIs(t, err, errCrash)
				cp, err := svc.Checkpoint()
				require.NoError(t, err)
				require.Equal(t, head, cp, "the batch is committed")
				if n == 0 {
					require.Len(t, h.rawMessagesOrNone(t), tc.wantAfterCrash)
				}
				require.NoError(t, svc.Close())
				// Outlive the duplicate window: only the scan can prevent
				// duplicates now.
				time.Sleep(150 * time.Millisecond)
			}
			svc := h.service(t, Config{}, opts...)
			running(t, svc)
			h.settled(t, svc)
			msgs := h.rawMessages(t)
			require.Len(t, msgs, 20)
			requireUniqueMsgIDs(t, msgs)
			recs := h.recount(t)
			require.Len(t, recs, 20)
			require.Equal(t, recs, storeRecords(t, svc))
			got := mappings(t, h, svc, ids)
			for _, r := range recs {
				require.Contains(t, slices.Collect(mapValues(got)), r.StatisticsID)
			}
			requireAgreesWithRecount(t, svc, someQueries()[0], recs)
		})
	}
}

// TestCrashWhileTheNextBatchCommits stops the projector while a batch's
// versions are being published beside the next batch (see Projector):
// the first atomic batch of the first projector batch is in the stream,
// the second projector batch has committed, and the rest of the first
// was never sent. The restarted projector must publish exactly the
// missing versions of both batches, with a de-duplication window too
// short to help: the second batch's outbox has to carry the first
// batch's messages, and its scan position has to lie before the part of
// the first batch that reached the stream.
func TestCrashWhileTheNextBatchCommits(t *testing.T) {
	h := startHarness(t)
	opts := []Option{WithBatchSize(10), withIdleFlush(300 * time.Millisecond), withDuplicateWindow(100 * time.Millisecond), withPublishBatch(4)}
	// Twenty registrations make two batches of ten versions each.
	for i := range 20 {
		id := newCaseID()
		h.appendEvents(t, id, registered(id, casev1.CaseType(1+i%4), casev1.Channel_CHANNEL_PHONE, "cat", t0()))
	}
	head := h.head(t)

	firstSent := make(chan struct{})     // the first atomic batch is in the stream
	nextCommitted := make(chan struct{}) // the second projector batch committed
	var applies atomic.Int32
	hooks := app.Hooks{
		BeforeApply: func([]eventstore.RecordedEvent) error {
			if applies.Add(1) == 2 {
				<-firstSent
			}
			return nil
		},
		AfterCommit: func(cp eventstore.Position) error {
			if cp == head {
				close(nextCommitted)
			}
			return nil
		},
		BeforePublish: func(i int) error {
			if i == 4 {
				close(firstSent)
				<-nextCommitted
				return errCrash
			}
			return nil
		},
	}
	svc := h.service(t, Config{}, append(slices.Clone(opts), WithHooks(hooks))...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	err := svc.Run(ctx)
	cancel()
	require.ErrorIs(t, err, errCrash)
	cp, err := svc.Checkpoint()
	require.NoError(t, err)
	require.Equal(t, head, cp, "both batches are committed")
	require.Len(t, h.rawMessagesOrNone(t), 4, "only the first atomic batch reached the stream")
	require.NoError(t, svc.Close())
	time.Sleep(150 * time.Millisecond) // Outlive the duplicate window.

	svc = h.service(t, Config{}, opts...)
	running(t, svc)
	h.settled(t, svc)
	msgs := h.rawMessages(t)
	require.Len(t, msgs, 20)
	requireUniqueMsgIDs(t, msgs)
	recs := h.recount(t)
	require.Len(t, recs, 20)
	require.Equal(t, recs, storeRecords(t, svc))
}

func mapValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// rawMessagesOrNone is rawMessages, but empty when the stream is.
func (h *harness) rawMessagesOrNone(t testing.TB) []rawMessage {
	t.Helper()
	st, err := h.js.Stream(context.Background(), "KONTAKT_STATS")
	require.NoError(t, err)
	info, err := st.Info(context.Background())
	require.NoError(t, err)
	if info.State.Msgs == 0 {
		return nil
	}
	return h.rawMessages(t)
}

// TestMain runs this test binary as the child process of TestKill9 when
// the parent asks for it: the service then runs until it is killed, and no
// test runs in that process.
func TestMain(m *testing.M) {
	if isChild() {
		if err := runKill9Child(); err != nil {
			fmt.Fprintln(os.Stderr, "kill -9 child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runKill9Child runs the statistics projector against the parent's NATS
// server until the parent kills the process.
func runKill9Child() error {
	nc, err := nats.Connect(os.Getenv(envNATSURL), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	es, err := esjs.New(context.Background(), js, esjs.Config{})
	if err != nil {
		return err
	}
	// Small batches make many commit/publish boundaries to be killed at.
	// The parent counts the recoveries in this log.
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	svc, err := New(context.Background(), Config{DataDir: os.Getenv(envDataDir), IDKey: testIDKey}, es, js, logger,
		WithBatchSize(1+rand.IntN(8)), withDuplicateWindow(100*time.Millisecond))
	if err != nil {
		return err
	}
	return svc.Run(context.Background()) // Until killed.
}

// TestKill9 kills the projector's process with SIGKILL at random moments
// while cases keep coming, restarts it each time, and checks that in the
// end every case has exactly one record, equal to what the pure domain
// makes of the whole log, and that Query agrees with a recount.
func TestKill9(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsserver.Start(ctx, natsserver.Config{StoreDir: t.TempDir(), Port: natsserver.RandomPort})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	h := newHarness(t, srv, nc)

	// Cases keep coming during the whole test, from another goroutine.
	var (
		mu        sync.Mutex
		appending atomic.Bool
		wg        sync.WaitGroup
	)
	appending.Store(true)
	rng := rand.New(rand.NewPCG(21, 22))
	var ids []string
	wg.Go(func() {
		for appending.Load() {
			mu.Lock()
			ids = append(ids, h.randomHistory(t, rng, 1, nil)...)
			mu.Unlock()
		}
	})

	kills := 0
	var childLog bytes.Buffer
	for range 6 {
		cmd := newSelfCommand(t, envChild+"=1", envNATSURL+"="+srv.ClientURL(), envDataDir+"="+h.dir)
		if os.Getenv(envChildLog) == "" {
			cmd.Stdout, cmd.Stderr = io.Discard, &childLog
		}
		require.NoError(t, cmd.Start())
		time.Sleep(time.Duration(150+rand.IntN(400)) * time.Millisecond)
		require.NoError(t, cmd.Process.Kill()) // SIGKILL
		_ = cmd.Wait()
		kills++
	}
	appending.Store(false)
	wg.Wait()

	svc := h.service(t, Config{})
	running(t, svc)
	h.settled(t, svc)
	recs := h.recount(t)
	// How often a kill fell between a commit and the end of its
	// publishing (the restart then published what the stream lacked).
	between := strings.Count(childLog.String(), "record versions that the stream lacks")
	t.Logf("%d kills, %d of them between commit and publish; %d cases, %d stream messages", kills, between, len(ids), len(h.rawMessages(t)))
	require.Len(t, recs, len(ids), "every case has exactly one record")
	require.Equal(t, recs, storeRecords(t, svc))
	requireUniqueMsgIDs(t, h.rawMessages(t))

	want := expectedFromLog(t, h)
	strip := func(rs []domain.Record) []domain.Record {
		out := slices.Clone(rs)
		for i := range out {
			out[i].StatisticsID = ""
		}
		slices.SortFunc(out, func(a, b domain.Record) int { return int(a.Version - b.Version) })
		return out
	}
	require.Equal(t, strip(want), strip(recs), "records equal the domain's projection of the whole log")
	for _, q := range someQueries() {
		requireAgreesWithRecount(t, svc, q, recs)
	}
	mapped := mappings(t, h, svc, ids)
	var sids []string
	for _, r := range recs {
		sids = append(sids, r.StatisticsID)
	}
	for _, sid := range mapped {
		require.Contains(t, sids, sid)
	}
}

// expectedFromLog projects the whole log with the pure domain.
func expectedFromLog(t testing.TB, h *harness) []domain.Record {
	t.Helper()
	head := h.head(t)
	cases := map[string]*domain.Case{}
	n := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := h.es.Subscribe(ctx, 0, func(_ context.Context, ev eventstore.RecordedEvent) error {
		step, err := domain.Project(cases[ev.Stream], ev, domain.DefaultPolicy(), func(string) string { n++; return strings.Repeat("x", n) })
		if err != nil {
			return err
		}
		if step.Case != nil {
			cases[ev.Stream] = step.Case
		}
		if ev.Position >= head {
			cancel()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	var out []domain.Record
	for _, c := range cases {
		out = append(out, c.Record)
	}
	return out
}
