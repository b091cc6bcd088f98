package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	esjs "github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
	"github.com/kontakt-se/kontakt/pkg/natstest"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/intake/adapters/casenumber"
	"github.com/kontakt-se/kontakt/services/intake/adapters/idempotency"
	"github.com/kontakt-se/kontakt/services/intake/app"
	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// fixture is intake's application service on real adapters and an
// embedded sync-always NATS server.
type fixture struct {
	js      jetstream.JetStream
	store   *esjs.Store
	sealer  *seal.Sealer
	numbers *casenumber.Numbers
	svc     *app.Service
	log     *lockedBuffer
}

// lockedBuffer collects the service's log for assertions.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newFixture builds the service over store (nil: the JetStream store
// itself), so tests can put a wrapper in between.
func newFixture(t *testing.T, wrap func(*esjs.Store) app.EventStore) *fixture {
	t.Helper()
	return newFixtureWithIdempotency(t, wrap, nil)
}

// newFixtureWithIdempotency is newFixture with a wrapper around the
// idempotency store as well.
func newFixtureWithIdempotency(t *testing.T, wrap func(*esjs.Store) app.EventStore, wrapIdem func(app.Idempotency) app.Idempotency) *fixture {
	t.Helper()
	ctx := t.Context()
	js := natstest.JetStream(t, natstest.Embedded(t, 0))
	store, err := esjs.New(ctx, js, esjs.Config{})
	require.NoError(t, err)
	keys, err := seal.NewNATSKeyStore(ctx, js, seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	master, err := seal.NewMasterKey(bytes.Repeat([]byte{7}, seal.MasterKeySize))
	require.NoError(t, err)
	sealer, err := seal.NewSealer(keys, master)
	require.NoError(t, err)
	numbers, err := casenumber.New(ctx, js, casenumber.Config{})
	require.NoError(t, err)
	idem, err := idempotency.New(ctx, js, idempotency.Config{})
	require.NoError(t, err)
	var es app.EventStore = store
	if wrap != nil {
		es = wrap(store)
	}
	var id app.Idempotency = idem
	if wrapIdem != nil {
		id = wrapIdem(idem)
	}
	log := &lockedBuffer{}
	svc, err := app.NewService(es, sealer, numbers, id, time.Now, slog.New(slog.NewTextHandler(log, nil)),
		app.Config{PayloadKey: bytes.Repeat([]byte{9}, 32), Categories: domain.NewCategories([]domain.Category{{Code: "bygglov"}})})
	require.NoError(t, err)
	return &fixture{js: js, store: store, sealer: sealer, numbers: numbers, svc: svc, log: log}
}

// run starts group commit until the test ends (or stop is called).
func (f *fixture) run(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.svc.RunGroupCommit(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Error("RunGroupCommit did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	// Wait until it takes registrations, so the tests measure what they
	// mean to: a registration before that would simply go alone.
	require.Eventually(t, f.svc.GroupCommitRunning, 5*time.Second, time.Millisecond)
	return stop
}

func phoneCase(i int) *intakev1.CaseInput {
	return &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE, Category: "bygglov",
		Subject:     fmt.Sprintf("Fråga %d om bygglov", i),
		Description: "Invånaren undrar om det krävs bygglov för en altan.",
		Contact:     &intakev1.Contact{Name: fmt.Sprintf("Person %d", i), Phone: "070-123 45 67"},
	}
}

// checkStored reads each registered case back: exactly one
// CaseRegistered with the number it was answered with, the number looks
// up to the case, and the sealed contact opens to what was sent.
func (f *fixture) checkStored(t *testing.T, regs map[int]app.Registered) {
	t.Helper()
	ctx := t.Context()
	seen := map[string]int{}
	for i, r := range regs {
		evs, err := f.store.Read(ctx, r.CaseID)
		require.NoError(t, err, "case %d", i)
		require.Len(t, evs, 1, "case %d", i)
		var cr casev1.CaseRegistered
		require.NoError(t, proto.Unmarshal(evs[0].Data, &cr))
		require.Equal(t, r.CaseNumber, cr.GetCaseNumber())
		got, err := f.numbers.Lookup(ctx, r.CaseNumber)
		require.NoError(t, err)
		require.Equal(t, r.CaseID, got)
		var contact casev1.ContactDetails
		require.NoError(t, f.sealer.OpenMessage(ctx, r.CaseID, cr.GetContact(), &contact), "case %d", i)
		require.Equal(t, fmt.Sprintf("Person %d", i), contact.GetName())
		if j, dup := seen[r.CaseNumber]; dup {
			t.Fatalf("cases %d and %d share %s", i, j, r.CaseNumber)
		}
		seen[r.CaseNumber] = i
	}
}

// registerAll registers n cases from n goroutines at once.
func registerAll(t *testing.T, svc *app.Service, n int) (map[int]app.Registered, []error) {
	t.Helper()
	var mu sync.Mutex
	regs := map[int]app.Registered{}
	var errs []error
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := svc.Register(t.Context(), phoneCase(i), "agent-1")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			regs[i] = r
		})
	}
	wg.Wait()
	return regs, errs
}

// batchIDs counts the distinct atomic batches the stream's messages came
// in (the server keeps the batch id header on stored messages).
func batchIDs(t *testing.T, js jetstream.JetStream, stream string) (batches, messages int) {
	t.Helper()
	st, err := js.Stream(t.Context(), stream)
	require.NoError(t, err)
	info, err := st.Info(t.Context())
	require.NoError(t, err)
	ids := map[string]bool{}
	if info.State.Msgs == 0 {
		return 0, 0
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(t, err)
		messages++
		if id := m.Header.Get("Nats-Batch-Id"); id != "" {
			ids[id] = true
		}
	}
	return len(ids), messages
}

func TestGroupCommitRegistersEveryCaseOnce(t *testing.T) {
	f := newFixture(t, nil)
	f.run(t)
	const n = 150
	regs, errs := registerAll(t, f.svc, n)
	require.Empty(t, errs)
	require.Len(t, regs, n)
	f.checkStored(t, regs)
	for i := 1; i <= n; i++ {
		_, err := f.numbers.Lookup(t.Context(), fmt.Sprintf("KC-%d-%06d", time.Now().Year(), i))
		require.NoError(t, err, "number %d: the numbers have no gaps", i)
	}
	// The cases really went in groups: fewer batches than cases, and
	// every event came in one.
	batches, msgs := batchIDs(t, f.js, esjs.DefaultStreamName)
	require.Equal(t, n, msgs)
	require.Less(t, batches, n, "no two registrations shared a commit")
	keyBatches, records := batchIDs(t, f.js, "KV_"+seal.DefaultBucket)
	require.Equal(t, n, records, "one key record per case (holding its contact and free-text keys)")
	require.Less(t, keyBatches, n)
	t.Logf("%d cases in %d event batches and %d key batches", n, batches, keyBatches)
}

// Without group commit running, registrations go alone and end the same.
func TestRegistrationWithoutGroupCommit(t *testing.T) {
	f := newFixture(t, nil)
	regs, errs := registerAll(t, f.svc, 10)
	require.Empty(t, errs)
	f.checkStored(t, regs)
	batches, _ := batchIDs(t, f.js, esjs.DefaultStreamName)
	require.Zero(t, batches)
}

// plainStore hides AppendBatch, as the EventStoreDB backend does not have
// it; its Append can fail once per case and a batch can lose its answer.
type plainStore struct {
	store           *esjs.Store // not embedded: its AppendBatch must stay hidden
	failFirstAppend bool
	failed          sync.Map
}

func (p *plainStore) Append(ctx context.Context, stream string, exp eventstore.ExpectedRevision, ev eventstore.Event) (eventstore.Revision, error) {
	if _, done := p.failed.LoadOrStore(stream, true); p.failFirstAppend && !done {
		return 0, fmt.Errorf("refused for the test: %w", eventstore.ErrConflict)
	}
	return p.store.Append(ctx, stream, exp, ev)
}

func (p *plainStore) Read(ctx context.Context, stream string) ([]eventstore.RecordedEvent, error) {
	return p.store.Read(ctx, stream)
}

// lostAckStore appends batches but reports every one as unknown, as when
// the acknowledgement is lost.
type lostAckStore struct {
	*esjs.Store
	batches atomic.Int64
}

func (l *lostAckStore) AppendBatch(ctx context.Context, a []eventstore.BatchAppend) ([]eventstore.Revision, error) {
	if _, err := l.Store.AppendBatch(ctx, a); err != nil {
		return nil, err
	}
	l.batches.Add(1)
	return nil, fmt.Errorf("acknowledgement lost for the test: %w", eventstore.ErrUnavailable)
}

func TestGroupCommitFallbacks(t *testing.T) {
	t.Run("store without batches", func(t *testing.T) {
		f := newFixture(t, func(s *esjs.Store) app.EventStore { return &plainStore{store: s} })
		f.run(t)
		_, isBatch := any(&plainStore{}).(eventstore.BatchAppender)
		require.False(t, isBatch)
		regs, errs := registerAll(t, f.svc, 40)
		require.Empty(t, errs)
		f.checkStored(t, regs)
		batches, _ := batchIDs(t, f.js, esjs.DefaultStreamName)
		require.Zero(t, batches, "events appended one by one")
		keyBatches, _ := batchIDs(t, f.js, "KV_"+seal.DefaultBucket)
		require.Positive(t, keyBatches, "keys still go in groups")
	})
	t.Run("batch landed but its acknowledgement was lost", func(t *testing.T) {
		var las *lostAckStore
		f := newFixture(t, func(s *esjs.Store) app.EventStore { las = &lostAckStore{Store: s}; return las })
		f.run(t)
		regs, errs := registerAll(t, f.svc, 40)
		require.Empty(t, errs)
		require.Positive(t, las.batches.Load(), "the batch path ran")
		// Appended again one by one, each event is recognised as landed:
		// still one CaseRegistered per case.
		f.checkStored(t, regs)
	})
	t.Run("form retried after a failure finds its keys stored", func(t *testing.T) {
		f := newFixture(t, func(s *esjs.Store) app.EventStore { return &plainStore{store: s, failFirstAppend: true} })
		f.run(t)
		in := phoneCase(1)
		in.Channel = casev1.Channel_CHANNEL_FORM
		_, err := f.svc.SubmitForm(t.Context(), "e-tjanst", "key-1", in)
		require.ErrorIs(t, err, eventstore.ErrConflict, "the first attempt fails after its keys were stored")
		// The retry claims the key afresh and goes to a group, whose key
		// batch is refused (the keys exist); it registers alone with them.
		r, err := f.svc.SubmitForm(t.Context(), "e-tjanst", "key-1", in)
		require.NoError(t, err)
		require.Contains(t, f.log.String(), "keys not stored together", "the retry's key batch was refused")
		f.checkStored(t, map[int]app.Registered{1: r})
	})
}

// hangingStore never answers its first batch, as when a stream leader is
// killed while it holds the request: the reply never comes.
type hangingStore struct {
	*esjs.Store
	calls  atomic.Int64
	gaveUp chan error // why the hung batch returned
}

func (h *hangingStore) AppendBatch(ctx context.Context, a []eventstore.BatchAppend) ([]eventstore.Revision, error) {
	if h.calls.Add(1) == 1 {
		<-ctx.Done()
		h.gaveUp <- context.Cause(ctx)
		return nil, fmt.Errorf("no reply for the test: %w", ctx.Err())
	}
	return h.Store.AppendBatch(ctx, a)
}

// A group's write that never gets a reply is given up when every member's
// caller has, not only at the group timeout: until then it holds its
// stage and every registration queued behind it would time out too.
func TestGroupCommitGivesUpAWriteNobodyWaitsFor(t *testing.T) {
	var hs *hangingStore
	f := newFixture(t, func(s *esjs.Store) app.EventStore {
		hs = &hangingStore{Store: s, gaveUp: make(chan error, 1)}
		return hs
	})
	f.run(t)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	_, err := f.svc.Register(ctx, phoneCase(1), "agent-1")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	// Cancelled because its caller left, not run out at the group timeout.
	require.ErrorIs(t, <-hs.gaveUp, context.Canceled)

	regs, errs := registerAll(t, f.svc, 20)
	require.Empty(t, errs, "the stage is free again")
	f.checkStored(t, regs)
}

// A registration whose caller gave up before its group formed writes
// nothing.
func TestGroupCommitSkipsCancelledRegistrations(t *testing.T) {
	f := newFixture(t, nil)
	f.run(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for i := range 20 {
		_, err := f.svc.Register(ctx, phoneCase(i), "agent-1")
		require.ErrorIs(t, err, context.Canceled)
	}
	_, msgs := batchIDs(t, f.js, esjs.DefaultStreamName)
	require.Zero(t, msgs)
}

// Stopping group commit under load strands nobody: every registration is
// answered, and every one answered with success is stored.
func TestGroupCommitStopsCleanly(t *testing.T) {
	f := newFixture(t, nil)
	stop := f.run(t)
	var mu sync.Mutex
	regs := map[int]app.Registered{}
	var wg sync.WaitGroup
	for i := range 120 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			r, err := f.svc.Register(ctx, phoneCase(i), "agent-1")
			require.NotErrorIs(t, err, context.DeadlineExceeded, "registration %d stranded", i)
			if err == nil {
				mu.Lock()
				regs[i] = r
				mu.Unlock()
			}
		})
		if i == 60 {
			stop()
		}
	}
	wg.Wait()
	require.Len(t, regs, 120, "registrations after the stop go alone and succeed")
	f.checkStored(t, regs)
}
