package projection_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/backoff"
	"github.com/kontakt-se/kontakt/pkg/caseevents"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
	"github.com/kontakt-se/kontakt/pkg/natstest"
	"github.com/kontakt-se/kontakt/pkg/projection"
)

// memModel is a read model in memory: the case ids of applied
// CaseRegistered events, the deleted streams, and the checkpoint, changed
// together under one lock as a real model commits them in one
// transaction. failNext makes the next Apply calls fail.
type memModel struct {
	mu         sync.Mutex
	checkpoint eventstore.Position
	registered []string
	deleted    []string
	unknown    int
	batches    []int
	failNext   int
	applyCalls int
}

func (m *memModel) Checkpoint() (eventstore.Position, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.checkpoint, nil
}

func (m *memModel) Apply(_ context.Context, batch []projection.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applyCalls++
	if m.failNext > 0 {
		m.failNext--
		return errors.New("the key service is away")
	}
	for _, ev := range batch {
		if ev.Recorded.Position <= m.checkpoint {
			return fmt.Errorf("event %d handed again after checkpoint %d", ev.Recorded.Position, m.checkpoint)
		}
		switch msg := ev.Message.(type) {
		case *casev1.CaseRegistered:
			m.registered = append(m.registered, msg.GetCaseId())
		case nil:
			if ev.Deleted() {
				m.deleted = append(m.deleted, ev.Recorded.Stream)
			} else {
				m.unknown++
			}
		}
	}
	m.checkpoint = batch[len(batch)-1].Recorded.Position
	m.batches = append(m.batches, len(batch))
	return nil
}

func (m *memModel) Reset(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checkpoint, m.registered, m.deleted, m.unknown, m.batches = 0, nil, nil, 0, nil
	return nil
}

func (m *memModel) snapshot() (eventstore.Position, []string, []string, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.checkpoint, slices.Clone(m.registered), slices.Clone(m.deleted), m.unknown
}

func newStore(t *testing.T) *jetstream.Store {
	t.Helper()
	srv := natstest.Embedded(t, 0)
	s, err := jetstream.New(t.Context(), natstest.JetStream(t, srv), jetstream.Config{})
	require.NoError(t, err)
	return s
}

func register(t *testing.T, s eventstore.Store) string {
	t.Helper()
	id := uuid.NewString()
	data, err := proto.Marshal(&casev1.CaseRegistered{CaseId: id})
	require.NoError(t, err)
	_, err = s.Append(t.Context(), id, eventstore.NoStream(), eventstore.Event{
		ID: uuid.NewString(), Type: caseevents.TypeOf(&casev1.CaseRegistered{}), Data: data,
	})
	require.NoError(t, err)
	return id
}

func newRunner(t *testing.T, s *jetstream.Store, m projection.Model, batch int) *projection.Runner {
	t.Helper()
	r, err := projection.New(projection.Config{
		Name: "test", Store: s, Model: m, Head: s.Head, BatchSize: batch, CatchUpBatchSize: batch,
		Backoff: backoff.Policy{Initial: time.Millisecond, Max: 10 * time.Millisecond},
	})
	require.NoError(t, err)
	return r
}

// runFor runs r until cond holds or ten seconds have passed.
func runFor(t *testing.T, r *projection.Runner, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.Eventually(t, cond, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done, "Run returns nil when its context ends")
}

func TestRunAppliesTheLogInOrderAndResumesFromTheCheckpoint(t *testing.T) {
	s := newStore(t)
	var want []string
	for range 10 {
		want = append(want, register(t, s))
	}
	m := &memModel{}
	runFor(t, newRunner(t, s, m, 4), func() bool { _, got, _, _ := m.snapshot(); return len(got) == 10 })
	cp, got, _, _ := m.snapshot()
	require.Equal(t, want, got, "every event once, in log order")
	require.Equal(t, eventstore.Position(10), cp)
	require.LessOrEqual(t, slices.Max(m.batches), 4, "no batch is larger than BatchSize")

	// A new runner (a restart) starts after the checkpoint: the model
	// refuses any event handed again, so a re-delivery would show as a
	// failure and never reach the new cases.
	for range 3 {
		want = append(want, register(t, s))
	}
	r := newRunner(t, s, m, 4)
	runFor(t, r, func() bool { _, got, _, _ := m.snapshot(); return len(got) == 13 })
	_, got, _, _ = m.snapshot()
	require.Equal(t, want, got)
	require.Zero(t, testutil.ToFloat64(r.Collectors()[4]), "no failure: nothing was handed twice")
}

func TestRunRetriesAFailingBatchAndCountsIt(t *testing.T) {
	s := newStore(t)
	id := register(t, s)
	m := &memModel{failNext: 3}
	r := newRunner(t, s, m, 16)
	runFor(t, r, func() bool { _, got, _, _ := m.snapshot(); return len(got) == 1 })
	_, got, _, _ := m.snapshot()
	require.Equal(t, []string{id}, got, "the batch applies once it can")
	require.Equal(t, 4, m.applyCalls)
	require.Equal(t, 3.0, testutil.ToFloat64(r.Collectors()[4]), "kontakt_projection_failures_total")
	require.Equal(t, 1.0, testutil.ToFloat64(r.Collectors()[2]), "kontakt_projection_events_total")
}

func TestDecode(t *testing.T) {
	reg, err := proto.Marshal(&casev1.CaseRegistered{CaseId: "c1"})
	require.NoError(t, err)
	events, err := projection.Decode([]eventstore.RecordedEvent{
		{Event: eventstore.Event{Type: caseevents.TypeOf(&casev1.CaseRegistered{}), Data: reg}, Position: 1},
		{Event: eventstore.Event{Type: "kontakt.case.v1.SomethingNewer", Data: []byte{1}}, Position: 2},
		{Event: eventstore.Event{Type: eventstore.TypeStreamDeleted}, Stream: "c1", Position: 3},
	})
	require.NoError(t, err)
	require.Equal(t, "c1", events[0].Message.(*casev1.CaseRegistered).GetCaseId())
	require.Nil(t, events[1].Message, "an unknown type is handed on without a message")
	require.False(t, events[1].Deleted())
	require.Nil(t, events[2].Message)
	require.True(t, events[2].Deleted())

	_, err = projection.Decode([]eventstore.RecordedEvent{
		{Event: eventstore.Event{Type: caseevents.TypeOf(&casev1.CaseRegistered{}), Data: []byte{0xff, 0xff}}, Stream: "c2", Position: 7},
	})
	require.ErrorContains(t, err, "event 7 of stream c2", "a known event that does not decode fails the batch")
}

func TestCatchUpStopsAtTheHeadAndRebuildStartsOver(t *testing.T) {
	s := newStore(t)
	for range 9 {
		register(t, s)
	}
	require.NoError(t, s.Delete(t.Context(), register(t, s)))
	m := &memModel{}
	r := newRunner(t, s, m, 4)
	var reports [][2]uint64
	require.NoError(t, r.CatchUp(t.Context(), func(done, total uint64) { reports = append(reports, [2]uint64{done, total}) }))
	head, err := s.Head(t.Context())
	require.NoError(t, err)
	cp, got, deleted, _ := m.snapshot()
	require.Equal(t, head, cp, "CatchUp returns at the head")
	require.Len(t, got, 9, "the deleted case's events were purged with it")
	require.Len(t, deleted, 1, "a deleted stream reaches the model")
	require.Equal(t, [2]uint64{uint64(head), uint64(head)}, reports[len(reports)-1])
	require.Zero(t, testutil.ToFloat64(r.Collectors()[1]), "no lag at the head")

	register(t, s)
	require.Eventually(t, func() bool { return testutil.ToFloat64(r.Collectors()[1]) == 1 }, 5*time.Second, 50*time.Millisecond,
		"kontakt_projection_lag_events counts the event the model has not applied")

	require.NoError(t, r.Rebuild(t.Context(), nil))
	cp, got, _, _ = m.snapshot()
	require.Equal(t, head+1, cp)
	require.Len(t, got, 10, "the rebuilt model holds every registration left in the log once")
}

func TestOneCatchUpAtATime(t *testing.T) {
	s := newStore(t)
	register(t, s)
	block := make(chan struct{})
	m := &blockingModel{memModel: &memModel{}, block: block, entered: make(chan struct{})}
	r := newRunner(t, s, m, 4)
	done := make(chan error, 1)
	go func() { done <- r.CatchUp(t.Context(), nil) }()
	<-m.entered
	require.ErrorIs(t, r.CatchUp(t.Context(), nil), projection.ErrBusy)
	require.ErrorIs(t, r.Rebuild(t.Context(), nil), projection.ErrBusy)
	close(block)
	require.NoError(t, <-done)
}

type blockingModel struct {
	*memModel
	block   chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (b *blockingModel) Apply(ctx context.Context, batch []projection.Event) error {
	b.once.Do(func() { close(b.entered) })
	<-b.block
	return b.memModel.Apply(ctx, batch)
}

func TestMetricsRegisterTogether(t *testing.T) {
	s := newStore(t)
	reg := prometheus.NewRegistry()
	for _, name := range []string{"routing", "statistics"} {
		r, err := projection.New(projection.Config{Name: name, Store: s, Model: &memModel{}, Head: s.Head})
		require.NoError(t, err)
		for _, c := range r.Collectors() {
			require.NoError(t, reg.Register(c), "models are told apart by their label")
		}
	}
	_, err := projection.New(projection.Config{Store: s, Model: &memModel{}})
	require.Error(t, err, "a runner needs a name")
}
