package esdb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

func TestExpectedRevision(t *testing.T) {
	tests := []struct {
		name     string
		in       eventstore.ExpectedRevision
		want     esdbclient.ExpectedRevision
		wantNext uint64
	}{
		{"Any", eventstore.Any(), esdbclient.Any{}, 0},
		{"NoStream", eventstore.NoStream(), esdbclient.NoStream{}, 0},
		{"Exact(0) means no event yet", eventstore.Exact(0), esdbclient.NoStream{}, 0},
		{"Exact(1) is the first event", eventstore.Exact(1), esdbclient.StreamRevision{Value: 0}, 1},
		{"Exact(42)", eventstore.Exact(42), esdbclient.StreamRevision{Value: 41}, 42},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, next := expectedRevision(tc.in)
			require.Equal(t, tc.want, got)
			if !tc.in.IsAny() {
				require.Equal(t, tc.wantNext, next)
			}
		})
	}
	// The revision an append returns is the one an exact expectation takes.
	for _, n := range []uint64{0, 1, 41} {
		got, next := expectedRevision(eventstore.Exact(toRevision(n)))
		require.Equal(t, esdbclient.StreamRevision{Value: n}, got)
		require.Equal(t, n+1, next, "the next event's EventStoreDB revision")
	}
	require.Equal(t, eventstore.Revision(1), toRevision(0), "the first event has revision 1, never 0")
}

func TestEventUUID(t *testing.T) {
	require.Equal(t, uuid.NewSHA1(uuid.NameSpaceURL, []byte("urn:kontakt:eventstore:event-id")), eventIDNamespace,
		"the namespace must stay what the comment says it is")

	canonical := uuid.NewString()
	require.Equal(t, canonical, EventUUID(canonical).String(), "a canonical UUID is kept")

	ids := []string{
		"retention:case-1:redact:3",
		"retention:case-1:redact:4",
		strings.ToUpper(canonical), // not canonical: derived, not parsed
		"{" + canonical + "}",
		"urn:uuid:" + canonical,
		"x",
		"å",
		strings.Repeat("long ", 1000),
	}
	seen := map[uuid.UUID]string{uuid.MustParse(canonical): canonical}
	for _, id := range ids {
		u := EventUUID(id)
		require.Equal(t, u, EventUUID(id), "stable for %q", id)
		require.Equal(t, uuid.Version(5), u.Version(), "%q", id)
		require.Equal(t, uuid.RFC4122, u.Variant(), "%q", id)
		if prev, dup := seen[u]; dup {
			t.Fatalf("ids %q and %q map to the same UUID %s", prev, id, u)
		}
		seen[u] = id
	}
	// Pinned: a change would stop retries across a deployment from being
	// recognised.
	require.Equal(t, uuid.NewSHA1(eventIDNamespace, []byte("retention:case-1:redact:3")), EventUUID("retention:case-1:redact:3"))
}

func TestMetadataRoundTrip(t *testing.T) {
	tests := []eventstore.Event{
		{ID: uuid.NewString(), Type: "T"},
		{ID: "not-a-uuid:1", Type: "T", Metadata: map[string]string{}},
		{ID: "id", Type: "T", Metadata: map[string]string{
			"correlation-id": "c-1", "Actor": "subject-42", "empty": "",
			"note": "two words, and UTF-8: åäö", "json": `{"a":[1,"\u0000"]}`, "ctl": "a\tb\nc",
		}},
	}
	for i, ev := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			require.NoError(t, validateEvent(ev))
			data, err := eventData(ev)
			require.NoError(t, err)
			require.Equal(t, EventUUID(ev.ID), data.EventID)
			require.Equal(t, ev.Type, data.EventType)
			require.Equal(t, esdbclient.ContentTypeBinary, data.ContentType)

			id, meta := decodeMeta(data.EventID, data.Metadata)
			require.Equal(t, ev.ID, id)
			if len(ev.Metadata) == 0 {
				require.Nil(t, meta)
			} else {
				require.Equal(t, ev.Metadata, meta)
			}

			rec := &esdbclient.RecordedEvent{EventID: data.EventID, EventType: data.EventType, EventNumber: 6,
				Position: esdbclient.Position{Commit: 99, Prepare: 99}, UserMetadata: data.Metadata, Data: []byte{}}
			require.True(t, isOurs(rec, ev))
			other := ev
			other.ID += "-other"
			require.False(t, isOurs(rec, other))
			got := recorded("s", rec)
			require.Equal(t, ev.ID, got.ID)
			require.Equal(t, eventstore.Revision(7), got.Revision)
			require.Equal(t, eventstore.Position(99), got.Position)
			require.Nil(t, got.Data, "empty data reads as nil")
		})
	}
	t.Run("foreign metadata", func(t *testing.T) {
		u := uuid.New()
		for _, raw := range [][]byte{nil, []byte("not json"), []byte(`{"$correlationId":"x"}`), []byte(`[1]`)} {
			id, meta := decodeMeta(u, raw)
			require.Equal(t, u.String(), id)
			require.Nil(t, meta)
		}
	})
	t.Run("tombstone", func(t *testing.T) {
		got := recorded("victim", &esdbclient.RecordedEvent{EventID: uuid.New(), EventType: typeStreamDeleted,
			EventNumber: 1<<63 - 1, Position: esdbclient.Position{Commit: 500, Prepare: 500}})
		require.Equal(t, eventstore.RecordedEvent{Stream: "victim", Event: eventstore.Event{Type: eventstore.TypeStreamDeleted}, Position: 500}, got)
		require.False(t, isOurs(&esdbclient.RecordedEvent{EventType: typeStreamDeleted}, eventstore.Event{ID: "x"}))
	})
}

func TestValidateEvent(t *testing.T) {
	for name, ev := range map[string]eventstore.Event{
		"no id":               {Type: "T"},
		"no type":             {ID: "x"},
		"reserved type":       {ID: "x", Type: eventstore.TypeStreamDeleted},
		"system type":         {ID: "x", Type: "$streamDeleted"},
		"invalid UTF-8 id":    {ID: "\xff", Type: "T"},
		"invalid UTF-8 type":  {ID: "x", Type: "\xff"},
		"invalid UTF-8 value": {ID: "x", Type: "T", Metadata: map[string]string{"k": "\xff"}},
		"empty key":           {ID: "x", Type: "T", Metadata: map[string]string{"": "v"}},
		"key with blank":      {ID: "x", Type: "T", Metadata: map[string]string{"a b": "v"}},
		"key with colon":      {ID: "x", Type: "T", Metadata: map[string]string{"a:b": "v"}},
		"non-ASCII key":       {ID: "x", Type: "T", Metadata: map[string]string{"å": "v"}},
	} {
		require.ErrorIs(t, validateEvent(ev), eventstore.ErrInvalid, name)
	}
}

func TestNewConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no URL":          {},
		"bad scheme":      {URL: "http://localhost:2113"},
		"bad port":        {URL: "esdb://localhost:x"},
		"system prefix":   {URL: "esdb://localhost:2113", StreamPrefix: "$ce-"},
		"blank in prefix": {URL: "esdb://localhost:2113", StreamPrefix: "a b"},
		"negative":        {URL: "esdb://localhost:2113", Timeout: -1},
		"cert w/o key":    {URL: "esdb://localhost:2113?userCertFile=/x"},
	} {
		_, err := New(cfg)
		require.ErrorIs(t, err, eventstore.ErrInvalid, name)
	}
	_, err := New(Config{URL: "esdb://admin:s3cret@localhost:x"})
	require.ErrorIs(t, err, eventstore.ErrInvalid)
	require.NotContains(t, err.Error(), "s3cret", "the password is not echoed")

	// New does not connect.
	s, err := New(Config{URL: "esdb://127.0.0.1:1?tls=false"})
	require.NoError(t, err)
	require.Equal(t, DefaultStreamPrefix, s.cfg.StreamPrefix)
	require.Equal(t, DefaultTimeout, s.cfg.Timeout)
	require.NoError(t, s.Close())
	_, err = s.Read(t.Context(), "x")
	require.ErrorIs(t, err, eventstore.ErrUnavailable, "after Close")
	require.ErrorIs(t, s.Subscribe(t.Context(), 0, func(context.Context, eventstore.RecordedEvent) error { return nil }), eventstore.ErrUnavailable)
}

func TestWrapErr(t *testing.T) {
	wrapped := func(c codes.Code) error { e, _ := esdbclient.FromError(status.Error(c, "x")); return e }
	tests := []struct {
		name string
		err  error
		want error // nil: no sentinel
	}{
		{"unavailable", status.Error(codes.Unavailable, "x"), eventstore.ErrUnavailable},
		{"unavailable in a client error", wrapped(codes.Unavailable), eventstore.ErrUnavailable},
		{"deadline", status.Error(codes.DeadlineExceeded, "x"), eventstore.ErrUnavailable},
		{"internal", wrapped(codes.Internal), eventstore.ErrUnavailable},
		{"unknown", errors.New("something"), eventstore.ErrUnavailable},
		{"context", fmt.Errorf("x: %w", context.DeadlineExceeded), eventstore.ErrUnavailable},
		{"panic", &clientPanic{value: "send on closed channel"}, eventstore.ErrUnavailable},
		{"closed", errClosed, eventstore.ErrUnavailable},
		{"invalid argument", wrapped(codes.InvalidArgument), eventstore.ErrInvalid},
		{"permission denied", wrapped(codes.PermissionDenied), nil},
		{"unauthenticated", status.Error(codes.Unauthenticated, "x"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := wrapErr(tc.err)
			require.ErrorIs(t, got, tc.err, "the original error stays reachable")
			for _, s := range []error{eventstore.ErrUnavailable, eventstore.ErrInvalid, eventstore.ErrConflict, eventstore.ErrStreamNotFound} {
				if s == tc.want {
					require.ErrorIs(t, got, s)
				} else {
					require.NotErrorIs(t, got, s)
				}
			}
		})
	}
	require.NoError(t, wrapErr(nil))
}

// TestErrorsFromServer checks the mapping of the client's coded errors,
// which only the client can make, against the fake server.
func TestErrorsFromServer(t *testing.T) {
	f := startFake(t)
	s, err := New(Config{URL: f.url()})
	require.NoError(t, err)
	defer s.Close()
	ctx := t.Context()
	_, err = s.Append(ctx, "a", eventstore.NoStream(), eventstore.Event{ID: "1", Type: "T"})
	require.NoError(t, err)

	raw := func(fn func(c *esdbclient.Client) error) error {
		return s.pool.call(ctx, time.Second, func(_ context.Context, c *esdbclient.Client) error { return fn(c) })
	}
	ev := esdbclient.EventData{EventID: uuid.New(), EventType: "T"}
	err = raw(func(c *esdbclient.Client) error {
		_, err := c.AppendToStream(ctx, "case-a", esdbclient.AppendToStreamOptions{ExpectedRevision: esdbclient.NoStream{}}, ev)
		return err
	})
	require.ErrorIs(t, wrapErr(err), eventstore.ErrConflict, "wrong expected version: %v", err)

	err = raw(func(c *esdbclient.Client) error {
		rs, err := c.ReadStream(ctx, "case-missing", esdbclient.ReadStreamOptions{}, 1)
		if err != nil {
			return err
		}
		defer rs.Close()
		_, err = rs.Recv()
		return err
	})
	require.ErrorIs(t, wrapErr(err), eventstore.ErrStreamNotFound, "%v", err)
	require.NotErrorIs(t, wrapErr(err), eventstore.ErrStreamDeleted)

	require.NoError(t, s.Delete(ctx, "a"))
	err = raw(func(c *esdbclient.Client) error {
		_, err := c.AppendToStream(ctx, "case-a", esdbclient.AppendToStreamOptions{}, ev)
		return err
	})
	require.ErrorIs(t, wrapErr(err), eventstore.ErrStreamDeleted, "%v", err)
	require.ErrorIs(t, wrapErr(err), eventstore.ErrStreamNotFound)

	f.db.mu.Lock()
	f.db.failAppends = 1
	f.db.mu.Unlock()
	_, err = s.Append(ctx, "b", eventstore.NoStream(), eventstore.Event{ID: "2", Type: "T"})
	require.ErrorIs(t, err, eventstore.ErrUnavailable)
	// The failed client was replaced; the retry works.
	rev, err := s.Append(ctx, "b", eventstore.NoStream(), eventstore.Event{ID: "2", Type: "T"})
	require.NoError(t, err)
	require.Equal(t, eventstore.Revision(1), rev)
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	return addr
}

// TestUnreachable checks that calls to a server that is not there fail with
// ErrUnavailable within their time-out, also many at once while the store
// is closed under them: client v4.2.0 can hang or panic with "send on
// closed channel" there (upstream issue 187).
func TestUnreachable(t *testing.T) {
	url := "esdb://" + closedPort(t) + "?tls=false&maxDiscoverAttempts=2&discoveryInterval=20"
	s, err := New(Config{URL: url, Timeout: time.Second, ReadTimeout: time.Second})
	require.NoError(t, err)
	ctx := t.Context()

	start := time.Now()
	_, err = s.Append(ctx, "a", eventstore.NoStream(), eventstore.Event{ID: "1", Type: "T"})
	require.ErrorIs(t, err, eventstore.ErrUnavailable)
	_, err = s.Read(ctx, "a")
	require.ErrorIs(t, err, eventstore.ErrUnavailable)
	require.ErrorIs(t, s.Delete(ctx, "a"), eventstore.ErrUnavailable)
	_, err = s.Head(ctx)
	require.ErrorIs(t, err, eventstore.ErrUnavailable)
	require.Less(t, time.Since(start), 8*time.Second)

	sctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	err = s.Subscribe(sctx, 0, func(context.Context, eventstore.RecordedEvent) error { return nil })
	require.ErrorIs(t, err, context.DeadlineExceeded, "Subscribe keeps retrying until its context ends")

	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			var err error
			switch i % 4 {
			case 0:
				_, err = s.Append(ctx, "a", eventstore.Any(), eventstore.Event{ID: fmt.Sprint(i), Type: "T"})
			case 1:
				_, err = s.Read(ctx, "a")
			case 2:
				err = s.Delete(ctx, "a")
			case 3:
				sctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				err = s.Subscribe(sctx, 0, func(context.Context, eventstore.RecordedEvent) error { return nil })
				if errors.Is(err, context.DeadlineExceeded) {
					err = nil
				}
			}
			if err != nil && !errors.Is(err, eventstore.ErrUnavailable) {
				t.Errorf("call %d: %v", i, err)
			}
		})
		if i == 20 {
			require.NoError(t, s.Close())
		}
	}
	wg.Wait()
}

// TestSubscribeResumes restarts the server under a subscription: it must
// subscribe again and deliver every event once, in order (upstream pull
// request 188: the client itself does not recover from read errors).
func TestSubscribeResumes(t *testing.T) {
	f := startFake(t)
	s, err := New(Config{URL: f.url(), Timeout: time.Second})
	require.NoError(t, err)
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	got := make(chan eventstore.RecordedEvent, 100)
	ended := make(chan error, 1)
	go func() {
		ended <- s.Subscribe(ctx, 0, func(_ context.Context, ev eventstore.RecordedEvent) error {
			got <- ev
			return nil
		})
	}()
	appendRetrying := func(id string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := s.Append(ctx, "a", eventstore.Any(), eventstore.Event{ID: id, Type: "T"})
			if err == nil {
				return
			}
			require.ErrorIs(t, err, eventstore.ErrUnavailable)
			require.True(t, time.Now().Before(deadline), "append %s: %v", id, err)
			time.Sleep(50 * time.Millisecond)
		}
	}
	receive := func(ids ...string) {
		t.Helper()
		for _, id := range ids {
			select {
			case ev := <-got:
				require.Equal(t, id, ev.ID)
			case err := <-ended:
				t.Fatalf("Subscribe returned: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatalf("event %s not delivered", id)
			}
		}
	}
	appendRetrying("1")
	appendRetrying("2")
	receive("1", "2")

	f.restart(t)
	appendRetrying("3")
	receive("3")

	f.stop()
	time.Sleep(300 * time.Millisecond) // Let the subscription fail over and back off.
	f.restart(t)
	appendRetrying("4")
	appendRetrying("5")
	receive("4", "5")

	select {
	case ev := <-got:
		t.Fatalf("delivered twice or unexpected: %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	require.ErrorIs(t, <-ended, context.Canceled)
}

// TestCallGuard checks the wrapper every client call goes through.
func TestCallGuard(t *testing.T) {
	p := &clientPool{cfg: esdbclient.Configuration{Address: closedPort(t), DisableTLS: true, Logger: esdbclient.NoopLogging()}}
	defer p.close()
	current := func() *generation {
		g, err := p.acquire(t.Context())
		require.NoError(t, err)
		p.settle(g, nil)
		p.release(g)
		return g
	}
	g := current()

	t.Run("a panic is an error and retires the client", func(t *testing.T) {
		err := p.call(t.Context(), time.Second, func(context.Context, *esdbclient.Client) error {
			var ch chan int
			close(ch)
			return nil
		})
		var cp *clientPanic
		require.ErrorAs(t, err, &cp)
		require.ErrorIs(t, wrapErr(err), eventstore.ErrUnavailable)
		require.True(t, g.isClosed)
		g2 := current()
		require.NotSame(t, g, g2)
		g = g2
	})
	t.Run("a retired client is closed when its last call leaves", func(t *testing.T) {
		release := make(chan struct{})
		returned := make(chan error, 1)
		go func() {
			returned <- p.call(t.Context(), 5*time.Second, func(context.Context, *esdbclient.Client) error {
				<-release
				return nil
			})
		}()
		require.Eventually(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return g.inflight == 1 }, time.Second, time.Millisecond)
		p.retire(g)
		require.False(t, g.isClosed, "not under a running call")
		close(release)
		require.NoError(t, <-returned)
		p.mu.Lock()
		require.True(t, g.isClosed)
		p.mu.Unlock()
		g = current()
	})
	t.Run("a stuck call times out and its client is closed under it", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		start := time.Now()
		err := p.call(t.Context(), 100*time.Millisecond, func(context.Context, *esdbclient.Client) error {
			<-release // ignores its context, like a send nobody receives
			return nil
		})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Less(t, time.Since(start), time.Second)
		require.Eventually(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return g.isClosed }, 2*stuckGrace, 50*time.Millisecond)
		require.NotSame(t, g, current())
	})
	t.Run("other errors keep the client", func(t *testing.T) {
		g1 := current()
		boom := errors.New("boom")
		require.ErrorIs(t, p.call(t.Context(), time.Second, func(context.Context, *esdbclient.Client) error { return boom }), boom)
		require.Same(t, g1, current())
	})
}

func TestHead(t *testing.T) {
	f := startFake(t)
	a, err := New(Config{URL: f.url(), StreamPrefix: "a-"})
	require.NoError(t, err)
	defer a.Close()
	b, err := New(Config{URL: f.url(), StreamPrefix: "b-"})
	require.NoError(t, err)
	defer b.Close()
	ctx := t.Context()

	head, err := a.Head(ctx)
	require.NoError(t, err)
	require.Zero(t, head, "no case events yet")

	_, err = a.Append(ctx, "x", eventstore.NoStream(), eventstore.Event{ID: "1", Type: "T"})
	require.NoError(t, err)
	_, err = b.Append(ctx, "y", eventstore.NoStream(), eventstore.Event{ID: "2", Type: "T"})
	require.NoError(t, err)
	evs, err := a.Read(ctx, "x")
	require.NoError(t, err)
	head, err = a.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, evs[0].Position, head, "the newest event under the store's own prefix")

	require.NoError(t, a.Delete(ctx, "x"))
	head2, err := a.Head(ctx)
	require.NoError(t, err)
	require.Greater(t, head2, head, "the tombstone is a case event too")
}
