package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/eventstore/eventstoretest"
	"github.com/kontakt-se/kontakt/pkg/natsserver"
	"github.com/kontakt-se/kontakt/pkg/natstest"
)

// testDuplicateWindow is short so that the conformance suite can wait past
// it and exercise the lost-acknowledgement check without JetStream's help.
const testDuplicateWindow = time.Second

// startEmbedded starts an embedded, sync-always server in a temporary
// directory and returns a connection to it.
func startEmbedded(tb testing.TB) (*natsserver.Server, *nats.Conn) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsserver.Start(ctx, natsserver.Config{StoreDir: tb.TempDir(), InProcessOnly: true})
	require.NoError(tb, err)
	tb.Cleanup(srv.Shutdown)
	require.True(tb, srv.SyncAlways())
	nc, err := srv.Connect()
	require.NoError(tb, err)
	tb.Cleanup(nc.Close)
	return srv, nc
}

// harness returns a conformance harness whose stores each get their own
// JetStream stream and subject prefix on the server behind nc.
func harness(nc *nats.Conn) eventstoretest.Harness { return harnessReplicas(nc, 1) }

// harnessReplicas is harness with streams of the given replica count.
func harnessReplicas(nc *nats.Conn, replicas int) eventstoretest.Harness {
	var n atomic.Int64
	return eventstoretest.Harness{
		NewStore: func(t *testing.T) eventstore.Store {
			js, err := natsjs.New(nc)
			require.NoError(t, err)
			i := n.Add(1)
			cfg := Config{
				StreamName:      fmt.Sprintf("CONF_%d", i),
				SubjectPrefix:   fmt.Sprintf("conf%d.case", i),
				DuplicateWindow: testDuplicateWindow,
				Replicas:        replicas,
			}
			s, err := New(t.Context(), js, cfg)
			require.NoError(t, err)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = js.DeleteStream(ctx, cfg.StreamName)
			})
			return s
		},
		SimulateLostAck: simulateLostAck,
		DuplicateWindow: testDuplicateWindow,
	}
}

// simulateLostAck publishes the message Append would publish, with the
// same headers and expectation, straight to JetStream and ignores the
// acknowledgement.
func simulateLostAck(t *testing.T, es eventstore.Store, stream string, expected eventstore.ExpectedRevision, ev eventstore.Event) {
	t.Helper()
	s := es.(*Store)
	subject, err := s.subject(stream)
	require.NoError(t, err)
	var last uint64
	if r, ok := expected.Exact(); ok {
		last = uint64(r)
	} else if expected.IsAny() {
		m, err := s.getLast(t.Context(), subject)
		if err == nil {
			last = m.Sequence
		} else {
			require.ErrorIs(t, err, natsjs.ErrMsgNotFound)
		}
	}
	msg := s.message(subject, ev)
	msg.Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(last, 10))
	_, err = s.js.PublishMsg(t.Context(), msg)
	require.NoError(t, err)
}

func TestConformanceEmbedded(t *testing.T) {
	_, nc := startEmbedded(t)
	eventstoretest.Run(t, harness(nc))
}

func TestConformanceProcess(t *testing.T) {
	p := natstest.StartProcess(t, natstest.Options{ServerName: "conformance"})
	nc, err := nats.Connect(p.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	eventstoretest.Run(t, harness(nc))
}

// TestConformanceCluster runs the suite against a three-node cluster of
// nats-server processes with every stream at three replicas.
func TestConformanceCluster(t *testing.T) {
	c := natstest.StartCluster(t, "conformance", 3)
	nc, err := nats.Connect(c.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	eventstoretest.Run(t, harnessReplicas(nc, 3))
}

func newStore(t *testing.T, nc *nats.Conn, cfg Config) *Store {
	t.Helper()
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	s, err := New(t.Context(), js, cfg)
	require.NoError(t, err)
	return s
}

func TestStreamConfiguration(t *testing.T) {
	_, nc := startEmbedded(t)
	newStore(t, nc, Config{})
	// A second New on the existing stream (a restart) must succeed.
	s := newStore(t, nc, Config{})

	info, err := s.stream.Info(t.Context())
	require.NoError(t, err)
	c := info.Config
	require.Equal(t, DefaultStreamName, c.Name)
	require.Equal(t, []string{DefaultSubjectPrefix + ".>"}, c.Subjects)
	require.Equal(t, natsjs.FileStorage, c.Storage)
	require.Equal(t, natsjs.LimitsPolicy, c.Retention)
	require.Equal(t, natsjs.DiscardNew, c.Discard)
	require.EqualValues(t, -1, c.MaxMsgs)
	require.EqualValues(t, -1, c.MaxBytes)
	require.EqualValues(t, -1, c.MaxMsgsPerSubject)
	require.Zero(t, c.MaxAge)
	require.Equal(t, DefaultDuplicateWindow, c.Duplicates)
	require.True(t, c.DenyDelete)
	require.False(t, c.DenyPurge)
	require.False(t, c.AllowDirect)
	require.True(t, c.AllowAtomicPublish, "AppendBatch needs atomic publish")
	require.Equal(t, 1, c.Replicas)
}

func TestInvalidConfig(t *testing.T) {
	_, nc := startEmbedded(t)
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	for _, cfg := range []Config{
		{StreamName: "a.b"},
		{SubjectPrefix: "kontakt.*"},
		{SubjectPrefix: "kontakt..case"},
		{SubjectPrefix: "kontakt.case."},
		{Replicas: 7},
		{DuplicateWindow: time.Millisecond},
	} {
		_, err := New(t.Context(), js, cfg)
		require.ErrorIs(t, err, eventstore.ErrInvalid, "%+v", cfg)
	}
}

// TestLongStreamRead covers the switch from single gets to an ordered
// consumer in Read.
func TestLongStreamRead(t *testing.T) {
	_, nc := startEmbedded(t)
	s := newStore(t, nc, Config{})
	ctx := t.Context()
	const n = 3*directReadLimit + 5
	var want []string
	exp := eventstore.NoStream()
	for i := range n {
		ev := eventstore.Event{ID: uuid.NewString(), Type: "T", Data: []byte(strconv.Itoa(i))}
		rev, err := s.Append(ctx, "long", exp, ev)
		require.NoError(t, err)
		// Interleave another stream so that sequences have gaps.
		_, err = s.Append(ctx, "noise", eventstore.Any(), eventstore.Event{ID: uuid.NewString(), Type: "N"})
		require.NoError(t, err)
		exp = eventstore.Exact(rev)
		want = append(want, ev.ID)
	}
	evs, err := s.Read(ctx, "long")
	require.NoError(t, err)
	require.Len(t, evs, n)
	for i, ev := range evs {
		require.Equal(t, want[i], ev.ID)
		require.Equal(t, strconv.Itoa(i), string(ev.Data))
	}
	// The read consumer is removed again.
	info, err := s.stream.Info(ctx)
	require.NoError(t, err)
	require.Zero(t, info.State.Consumers)
}

func TestEventIDReusedInAnotherStream(t *testing.T) {
	_, nc := startEmbedded(t)
	s := newStore(t, nc, Config{})
	ctx := t.Context()
	ev := eventstore.Event{ID: uuid.NewString(), Type: "T"}
	_, err := s.Append(ctx, "a", eventstore.NoStream(), ev)
	require.NoError(t, err)
	_, err = s.Append(ctx, "b", eventstore.NoStream(), ev)
	require.ErrorIs(t, err, eventstore.ErrInvalid)
	_, err = s.Read(ctx, "b")
	require.ErrorIs(t, err, eventstore.ErrStreamNotFound)
}

func TestInvalidMetadata(t *testing.T) {
	_, nc := startEmbedded(t)
	s := newStore(t, nc, Config{})
	for name, ev := range map[string]eventstore.Event{
		"reserved type":      {ID: "x", Type: eventstore.TypeStreamDeleted},
		"newline in id":      {ID: "x\r\nNats-Msg-Id: y", Type: "T"},
		"colon in key":       {ID: "x", Type: "T", Metadata: map[string]string{"a:b": "v"}},
		"blank in key":       {ID: "x", Type: "T", Metadata: map[string]string{"a b": "v"}},
		"newline in value":   {ID: "x", Type: "T", Metadata: map[string]string{"k": "v\nw"}},
		"leading blank":      {ID: "x", Type: "T", Metadata: map[string]string{"k": " v"}},
		"trailing blank":     {ID: "x", Type: "T", Metadata: map[string]string{"k": "v "}},
		"trailing tab in id": {ID: "x\t", Type: "T"},
		"non-ASCII key":      {ID: "x", Type: "T", Metadata: map[string]string{"nyckel-å": "v"}},
		"empty metadata key": {ID: "x", Type: "T", Metadata: map[string]string{"": "v"}},
	} {
		_, err := s.Append(t.Context(), "s", eventstore.Any(), ev)
		require.ErrorIs(t, err, eventstore.ErrInvalid, name)
	}
}

// TestDurabilityKill9 appends from 8 writers to a nats-server process,
// kills it with SIGKILL while appends are in flight, restarts it on the same
// store directory and checks that every acknowledged event is there with
// the acknowledged revision.
func TestDurabilityKill9(t *testing.T) {
	p := natstest.StartProcess(t, natstest.Options{ServerName: "durability"})
	nc, err := nats.Connect(p.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	s := newStore(t, nc, Config{AckTimeout: time.Second})

	type ack struct {
		stream string
		id     string
		rev    eventstore.Revision
	}
	const (
		writers          = 8
		streamsPerWriter = 4
		runFor           = 2 * time.Second
	)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		acked   []ack
		failed  []error
		stop    = make(chan struct{})
		started = time.Now()
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := map[string]eventstore.Revision{}
			gen := 0 // A failed append's outcome is unknown: move to a new stream.
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				stream := fmt.Sprintf("w%d-g%d-s%d", w, gen, i%streamsPerWriter)
				exp := eventstore.NoStream()
				if r, ok := last[stream]; ok {
					exp = eventstore.Exact(r)
				}
				ev := eventstore.Event{ID: uuid.NewString(), Type: "Durable", Data: []byte(stream)}
				rev, err := s.Append(context.Background(), stream, exp, ev)
				mu.Lock()
				if err == nil {
					acked = append(acked, ack{stream, ev.ID, rev})
					last[stream] = rev
				} else {
					failed = append(failed, err)
					gen++
				}
				mu.Unlock()
			}
		}()
	}

	time.Sleep(runFor)
	require.NoError(t, p.Kill9()) // Writers are mid-append: they never pause.
	killedAfter := time.Since(started)
	close(stop)
	wg.Wait()

	p.Restart(t)
	require.Eventually(t, nc.IsConnected, 10*time.Second, 20*time.Millisecond)

	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, acked)
	for _, err := range failed {
		require.ErrorIs(t, err, eventstore.ErrUnavailable, "appends to a dead server must report an unknown outcome")
	}
	byStream := map[string]map[string]eventstore.Revision{}
	for _, a := range acked {
		got, ok := byStream[a.stream]
		if !ok {
			evs, err := s.Read(t.Context(), a.stream)
			require.NoError(t, err, "read %s after restart", a.stream)
			got = map[string]eventstore.Revision{}
			for _, ev := range evs {
				got[ev.ID] = ev.Revision
			}
			byStream[a.stream] = got
		}
		rev, ok := got[a.id]
		require.True(t, ok, "acknowledged event %s of %s lost", a.id, a.stream)
		require.Equal(t, a.rev, rev, "acknowledged event %s of %s has another revision", a.id, a.stream)
	}
	t.Logf("durability: %d appends acknowledged by %d writers in %s before kill -9, %d failed (unknown outcome); all acknowledged events survived with their revisions",
		len(acked), writers, killedAfter.Round(time.Millisecond), len(failed))
}

// TestSubscribeSurvivesRestart checks that a subscription keeps going when
// the server behind it restarts.
func TestSubscribeSurvivesRestart(t *testing.T) {
	p := natstest.StartProcess(t, natstest.Options{ServerName: "resubscribe"})
	nc, err := nats.Connect(p.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	s := newStore(t, nc, Config{AckTimeout: time.Second})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	got := make(chan eventstore.RecordedEvent, 16)
	done := make(chan error, 1)
	go func() {
		done <- s.Subscribe(ctx, 0, func(_ context.Context, ev eventstore.RecordedEvent) error {
			got <- ev
			return nil
		})
	}()
	r1, err := s.Append(ctx, "a", eventstore.NoStream(), eventstore.Event{ID: uuid.NewString(), Type: "Before"})
	require.NoError(t, err)
	require.Equal(t, "Before", (<-got).Type)

	p.Restart(t)
	require.Eventually(t, nc.IsConnected, 10*time.Second, 20*time.Millisecond)
	_, err = s.Append(ctx, "a", eventstore.Exact(r1), eventstore.Event{ID: uuid.NewString(), Type: "After"})
	require.NoError(t, err)
	select {
	case ev := <-got:
		require.Equal(t, "After", ev.Type)
	case <-time.After(30 * time.Second):
		t.Fatal("subscription did not deliver after the restart")
	}
	cancel()
	require.True(t, errors.Is(<-done, context.Canceled))
}

// TestHead reports the newest position, so a rebuild knows where the log
// ends.
func TestHead(t *testing.T) {
	_, nc := startEmbedded(t)
	s := newStore(t, nc, Config{})
	head, err := s.Head(t.Context())
	require.NoError(t, err)
	require.Zero(t, head)
	var last eventstore.Revision
	for range 3 {
		last, err = s.Append(t.Context(), "h", eventstore.Any(), eventstore.Event{ID: uuid.NewString(), Type: "T"})
		require.NoError(t, err)
	}
	head, err = s.Head(t.Context())
	require.NoError(t, err)
	require.Equal(t, eventstore.Position(last), head)
}

// TestSubscribeBatches checks the batching read models rely on: full
// batches, a partial batch after the idle time, log order without gaps, and
// stopping once Until is applied.
func TestSubscribeBatches(t *testing.T) {
	_, nc := startEmbedded(t)
	s := newStore(t, nc, Config{})
	var last eventstore.Revision
	for i := range 10 {
		var err error
		last, err = s.Append(t.Context(), "b"+strconv.Itoa(i%3), eventstore.Any(), eventstore.Event{ID: uuid.NewString(), Type: "T"})
		require.NoError(t, err)
	}
	var sizes []int
	var seen []eventstore.Position
	// Idle is far longer than the test: with Until the last partial batch
	// is applied when Until is reached, so the batch sizes cannot depend on
	// how fast a loaded machine delivers the stored events.
	progressed, err := eventstore.SubscribeBatches(t.Context(), s, 0,
		eventstore.BatchOptions{Size: 4, Idle: time.Hour, Until: eventstore.Position(last)},
		func(_ context.Context, batch []eventstore.RecordedEvent) error {
			sizes = append(sizes, len(batch))
			for _, ev := range batch {
				seen = append(seen, ev.Position)
			}
			return nil
		})
	require.NoError(t, err)
	require.True(t, progressed)
	require.Len(t, seen, 10)
	require.True(t, slices.IsSorted(seen))
	require.Equal(t, eventstore.Position(last), seen[len(seen)-1])
	require.Equal(t, []int{4, 4, 2}, sizes, "full batches, then the rest when Until is reached")

	// Without Until it runs until the context ends, applying a partial
	// batch after the idle time.
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan int, 4)
	done := make(chan error, 1)
	go func() {
		_, err := eventstore.SubscribeBatches(ctx, s, eventstore.Position(last), eventstore.BatchOptions{Size: 100, Idle: 20 * time.Millisecond},
			func(_ context.Context, batch []eventstore.RecordedEvent) error { got <- len(batch); return nil })
		done <- err
	}()
	_, err = s.Append(t.Context(), "b0", eventstore.Any(), eventstore.Event{ID: uuid.NewString(), Type: "T"})
	require.NoError(t, err)
	select {
	case n := <-got:
		require.Equal(t, 1, n)
	case <-time.After(10 * time.Second):
		t.Fatal("a partial batch was not applied after the idle time")
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

// TestSubscribeBatchesBoundsTheWaitUnderATrickle: events that keep coming
// faster than the idle time must not be held until the batch is full;
// MaxWait applies a partial batch anyway.
func TestSubscribeBatchesBoundsTheWaitUnderATrickle(t *testing.T) {
	_, nc := startEmbedded(t)
	s := newStore(t, nc, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		// A steady trickle until the test ends: never a pause as long as
		// Idle (an hour), never the batch's size.
		for ctx.Err() == nil {
			_, _ = s.Append(ctx, "trickle", eventstore.Any(), eventstore.Event{ID: uuid.NewString(), Type: "T"})
			time.Sleep(5 * time.Millisecond)
		}
	}()
	got := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		_, err := eventstore.SubscribeBatches(ctx, s, 0, eventstore.BatchOptions{Size: 1_000_000, Idle: time.Hour, MaxWait: 100 * time.Millisecond},
			func(_ context.Context, batch []eventstore.RecordedEvent) error {
				select {
				case got <- len(batch):
				default:
				}
				return nil
			})
		done <- err
	}()
	select {
	case n := <-got:
		require.Positive(t, n)
	case <-time.After(20 * time.Second):
		t.Fatal("no batch was applied while events kept coming")
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}
