// Package esdb is the EventStoreDB (KurrentDB) backend of eventstore, for
// installations that run an EventStoreDB cluster instead of NATS. It talks
// gRPC through github.com/EventStore/EventStore-Client-Go/v4.
//
// # Layout
//
// Each case stream is one EventStoreDB stream named Config.StreamPrefix
// followed by the case stream id ("case-<id>" by default). Stream ids are
// validated like in the JetStream backend (1 to 128 characters of
// [A-Za-z0-9_-]); the prefix is added and stripped at the edge, so callers
// never see it. An event is one EventStoreDB event:
//
//   - its EventStoreDB id is the eventstore event id when that is a
//     canonical UUID, otherwise the UUID v5 (SHA-1) of the id in a fixed
//     namespace (see EventUUID): stable across retries, so EventStoreDB's
//     idempotence recognises a retried append;
//   - its type is the event type (types starting with '$' are refused:
//     they are EventStoreDB's system events);
//   - its data is the event data, content type application/octet-stream;
//   - its metadata is JSON, {"eventId": <original id>, "metadata": {...}},
//     so Read returns the event exactly as appended.
//
// # Revisions and positions
//
// EventStoreDB numbers a stream's events from 0; an eventstore.Revision is
// that number plus one, so that revision 0 names no event, as in the
// JetStream backend (Exact(0) means "no event yet", like NoStream, and a
// deletion event's revision 0 offers nothing to append after). Expectations
// map as NoStream and Exact(0) -> esdb.NoStream{}, Exact(r) ->
// esdb.StreamRevision{Value: r-1}, Any -> esdb.Any{}; but Append does not
// send esdb.Any{}, whose idempotence the server only keeps while a cache of
// recent event ids remembers the event: it reads the stream's last revision
// and appends with that as exact expectation (see Store.Append).
//
// An eventstore.Position is the commit position of the event in the $all
// log. EventStoreDB positions have a commit and a prepare part; they are
// equal for an event written by an append of a single event, which is the
// only kind of append this store makes, and a subscription resumes from
// esdb.Position{Commit: p, Prepare: p}. Streams under the prefix must
// therefore only be written through this package: a multi-event append by
// another tool would give several events the same commit position.
//
// # Retries after a lost acknowledgement
//
// EventStoreDB answers an append whose event was already written right
// after the expected revision as a success (idempotence on event ids for
// NoStream and exact expectations). The store does not rely on the details
// of that answer: a success that does not name the expected slot, or comes
// without a log position, is checked by reading the event back; and before
// it reports a conflict the store reads the event right after the expected
// revision, and if that is the event being appended (same id) the earlier
// attempt landed and the append succeeds with its revision, like the
// JetStream backend's check. Either way the retry returns the revision of
// the event already written, however much later it comes.
//
// # Deletion
//
// Delete tombstones the stream (a hard delete): EventStoreDB appends a
// $streamDeleted record, reads of the stream fail with ErrStreamDeleted at
// once, and every later append is refused, so a deleted case id can never
// be reused. Subscribers see the tombstone as one event of type
// eventstore.TypeStreamDeleted (revision 0, no id) and drop the case.
//
// The tombstone hides the events at once, but does not remove them from
// disk: they stay in the $all log, where a subscription that starts before
// the tombstone's position still receives them, followed by the deletion
// event, until a scavenge has run on every node of the cluster and freed
// the space (the active chunk is never scavenged, so that can take until
// it is full). What makes a deleted case's personal data unreadable at
// once is crypto-shredding: destroying the case's keys (pkg/seal), which the
// events' sealed fields cannot be opened without.
//
// # Connection handling
//
// The store keeps one client and replaces it when it fails at the
// transport level. Client v4.2.0 can panic ("send on closed channel") or
// leave calls hanging when its connection fails, and does not reconnect
// after read errors (upstream issue 187, pull requests 188 and 189), so
// every call into it runs under a recover and a deadline, only one call
// enters a new client until it has connected, and a client that fails is
// retired and closed once its calls have left it (see client.go). Errors
// map to the eventstore sentinels: unreachable servers, time-outs and
// client failures to ErrUnavailable (the outcome of a write is unknown),
// invalid arguments to ErrInvalid. Subscribe re-subscribes with back-off
// after a dropped subscription, from the last delivered position.
package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"strings"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/kontakt-se/kontakt/pkg/backoff"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// Defaults for Config fields left at their zero value.
const (
	// DefaultStreamPrefix prefixes every case stream's name.
	DefaultStreamPrefix = "case-"
	// DefaultTimeout bounds each request (append, single-event read,
	// tombstone, subscription start) when the caller's context has no
	// earlier deadline.
	DefaultTimeout = 5 * time.Second
	// DefaultReadTimeout bounds reading a whole stream (Read) and Head.
	DefaultReadTimeout = 30 * time.Second
)

const (
	// conflictRetries is how often Any appends re-read the stream's last
	// revision after losing a race before giving up with ErrConflict.
	conflictRetries = 5
)

// Config configures a Store.
type Config struct {
	// URL is the EventStoreDB connection string, for example
	// "esdb://localhost:2113?tls=false" for an insecure single node or
	// "esdb://admin:changeit@node1:2113,node2:2113,node3:2113" for a secure
	// cluster (see the client's documentation for the options). Required.
	URL string
	// StreamPrefix prefixes the EventStoreDB stream name of every case
	// stream; empty means DefaultStreamPrefix. Subscribe delivers the events
	// of every stream whose name starts with it, so it must not be a prefix
	// of any other stream's name in the database. It must not start with
	// '$' (system streams).
	StreamPrefix string
	// Timeout bounds each request; zero means DefaultTimeout. When it
	// expires the outcome is unknown and ErrUnavailable is returned.
	Timeout time.Duration
	// ReadTimeout bounds reading a whole stream; zero means
	// DefaultReadTimeout.
	ReadTimeout time.Duration
	// Logger receives the client library's log lines; nil discards them
	// (the library would otherwise print every failed call to stderr).
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.StreamPrefix == "" {
		c.StreamPrefix = DefaultStreamPrefix
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
}

func (c *Config) validate() error {
	if c.URL == "" {
		return errors.New("empty connection string")
	}
	if err := validatePrefix(c.StreamPrefix); err != nil {
		return err
	}
	if c.Timeout < 0 || c.ReadTimeout < 0 {
		return errors.New("negative time-out")
	}
	return nil
}

// Store is the EventStoreDB implementation of eventstore.Store. It is safe
// for concurrent use. Close releases its connection.
type Store struct {
	cfg  Config
	pool *clientPool
}

var _ eventstore.Store = (*Store)(nil)

// New returns a Store for the database cfg.URL names. It does not contact
// the server: the connection is made by the first call, and a wrong
// address shows as ErrUnavailable there. It fails with ErrInvalid on a
// malformed connection string or configuration.
func New(cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("eventstore/esdb: %w: %w", eventstore.ErrInvalid, err)
	}
	conf, err := esdbclient.ParseConnectionString(cfg.URL)
	if err != nil {
		// The connection string may hold a password, and a *url.Error
		// quotes the whole string: keep only what went wrong.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("eventstore/esdb: %w: connection string: %w", eventstore.ErrInvalid, err)
	}
	conf.Logger = logFunc(cfg.Logger)
	if err := conf.Validate(); err != nil {
		return nil, fmt.Errorf("eventstore/esdb: %w: %w", eventstore.ErrInvalid, err)
	}
	return &Store{cfg: cfg, pool: &clientPool{cfg: *conf}}, nil
}

// logFunc adapts l to the client's logging function.
func logFunc(l *slog.Logger) esdbclient.LoggingFunc {
	if l == nil {
		return esdbclient.NoopLogging()
	}
	return func(level esdbclient.LogLevel, format string, args ...any) {
		lvl := slog.LevelDebug
		switch level {
		case esdbclient.LogInfo:
			lvl = slog.LevelInfo
		case esdbclient.LogWarn:
			lvl = slog.LevelWarn
		case esdbclient.LogError:
			lvl = slog.LevelError
		}
		l.Log(context.Background(), lvl, "eventstoredb client: "+fmt.Sprintf(format, args...))
	}
}

// Close closes the connection. Calls after Close, and a Subscribe that is
// running, fail with ErrUnavailable.
func (s *Store) Close() error {
	s.pool.close()
	return nil
}

// streamName validates a case stream id and returns its EventStoreDB name.
func (s *Store) streamName(stream string) (string, error) {
	if err := eventstore.ValidateStreamID(stream); err != nil {
		return "", fmt.Errorf("eventstore/esdb: %w", err)
	}
	return s.cfg.StreamPrefix + stream, nil
}

// Append implements eventstore.Store.
//
// NoStream and Exact are checked by the server. Any reads the stream's last
// event first and appends with its revision as exact expectation, retrying
// a few times when another writer slips in between; if that last event is
// the event being appended, an earlier attempt landed and Append returns
// its revision. (esdb.Any{} itself only recognises retries while the
// server's cache of recent event ids remembers them.) Any therefore
// recognises a landed retry only while nobody appended after it, as in the
// JetStream backend.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, ev eventstore.Event) (eventstore.Revision, error) {
	name, err := s.streamName(stream)
	if err != nil {
		return 0, err
	}
	if err := validateEvent(ev); err != nil {
		return 0, fmt.Errorf("eventstore/esdb: append to stream %q: %w", stream, err)
	}
	data, err := eventData(ev)
	if err != nil {
		return 0, fmt.Errorf("eventstore/esdb: append to stream %q: %w", stream, err)
	}
	if expected.IsAny() {
		return s.appendAny(ctx, stream, name, data, ev)
	}
	exp, next := expectedRevision(expected)
	return s.appendExpect(ctx, stream, name, exp, next, data, ev)
}

func (s *Store) appendAny(ctx context.Context, stream, name string, data esdbclient.EventData, ev eventstore.Event) (eventstore.Revision, error) {
	for attempt := 1; ; attempt++ {
		last, err := s.readOne(ctx, name, esdbclient.Backwards, esdbclient.End{})
		var (
			exp  esdbclient.ExpectedRevision = esdbclient.NoStream{}
			next uint64
		)
		switch {
		case errors.Is(err, eventstore.ErrStreamDeleted):
			return 0, deletedErr("append to", stream)
		case errors.Is(err, eventstore.ErrStreamNotFound):
		case err != nil:
			return 0, opErr("append to", stream, err)
		case last == nil:
		case last.EventType == typeStreamDeleted:
			return 0, deletedErr("append to", stream)
		case isOurs(last, ev):
			return toRevision(last.EventNumber), nil
		default:
			exp = esdbclient.StreamRevision{Value: last.EventNumber}
			next = last.EventNumber + 1
		}
		rev, err := s.appendExpect(ctx, stream, name, exp, next, data, ev)
		if err == nil || !errors.Is(err, eventstore.ErrConflict) || attempt >= conflictRetries {
			return rev, err
		}
	}
}

// appendExpect appends data under exp, where next is the EventStoreDB
// revision the event gets when exp holds, and sorts a refusal into success
// (our own earlier attempt landed), deleted stream, or conflict.
func (s *Store) appendExpect(ctx context.Context, stream, name string, exp esdbclient.ExpectedRevision, next uint64, data esdbclient.EventData, ev eventstore.Event) (eventstore.Revision, error) {
	var res *esdbclient.WriteResult
	err := s.pool.call(ctx, s.cfg.Timeout, func(ctx context.Context, c *esdbclient.Client) error {
		var err error
		res, err = c.AppendToStream(ctx, name, esdbclient.AppendToStreamOptions{ExpectedRevision: exp}, data)
		return err
	})
	if err == nil {
		if res.NextExpectedVersion != next || (res.CommitPosition == 0 && res.PreparePosition == 0) {
			// A fresh write lands at next and has a position, so this is
			// the server finding the event already written (an idempotent
			// retry). Check that the stream holds this event where the
			// expectation put it, or where the server says.
			return s.confirm(ctx, stream, name, ev, next, res.NextExpectedVersion)
		}
		return toRevision(res.NextExpectedVersion), nil
	}
	werr := wrapErr(err)
	if !errors.Is(werr, eventstore.ErrConflict) {
		if errors.Is(werr, eventstore.ErrStreamDeleted) {
			return 0, deletedErr("append to", stream)
		}
		return 0, fmt.Errorf("eventstore/esdb: append to stream %q: %w", stream, werr)
	}
	// Refused. Did an earlier attempt of this very append land? It would
	// be the event right after the expected one.
	at, rerr := s.readOne(ctx, name, esdbclient.Forwards, esdbclient.StreamRevision{Value: next})
	switch {
	case errors.Is(rerr, eventstore.ErrStreamDeleted) || (rerr == nil && at != nil && at.EventType == typeStreamDeleted):
		return 0, deletedErr("append to", stream)
	case rerr == nil && at != nil && at.EventNumber == next && isOurs(at, ev):
		return toRevision(at.EventNumber), nil
	case rerr != nil && !errors.Is(rerr, eventstore.ErrStreamNotFound):
		return 0, opErr("check conflict on", stream, rerr)
	}
	want := "no stream"
	if r, ok := exp.(esdbclient.StreamRevision); ok {
		want = fmt.Sprintf("revision %d", toRevision(r.Value))
	}
	return 0, fmt.Errorf("eventstore/esdb: append to stream %q expecting %s: %w", stream, want, werr)
}

// confirm checks, after the server acknowledged an append as already
// done, that the stream holds ev at one of the EventStoreDB revisions revs
// (tried in order), and returns that revision.
func (s *Store) confirm(ctx context.Context, stream, name string, ev eventstore.Event, revs ...uint64) (eventstore.Revision, error) {
	for i, rev := range revs {
		if i > 0 && rev == revs[0] {
			continue
		}
		at, err := s.readOne(ctx, name, esdbclient.Forwards, esdbclient.StreamRevision{Value: rev})
		switch {
		case errors.Is(err, eventstore.ErrStreamDeleted) || (err == nil && at != nil && at.EventType == typeStreamDeleted):
			return 0, deletedErr("append to", stream)
		case err != nil:
			return 0, opErr("confirm append to", stream, err)
		case at != nil && at.EventNumber == rev && isOurs(at, ev):
			return toRevision(rev), nil
		}
	}
	return 0, fmt.Errorf("eventstore/esdb: append to stream %q: %w: event id %q is already used by another event", stream, eventstore.ErrInvalid, ev.ID)
}

// readOne reads one event of the stream name: the first one from `from` in
// direction dir. It returns (nil, nil) when there is none, and errors
// wrapped with the eventstore sentinels (ErrStreamNotFound for a missing
// stream, ErrStreamDeleted for a deleted one).
func (s *Store) readOne(ctx context.Context, name string, dir esdbclient.Direction, from esdbclient.StreamPosition) (*esdbclient.RecordedEvent, error) {
	var out *esdbclient.RecordedEvent
	err := s.pool.call(ctx, s.cfg.Timeout, func(ctx context.Context, c *esdbclient.Client) error {
		rs, err := c.ReadStream(ctx, name, esdbclient.ReadStreamOptions{Direction: dir, From: from}, 1)
		if err != nil {
			return err
		}
		defer rs.Close()
		e, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		out = e.Event
		return nil
	})
	if err != nil {
		return nil, wrapErr(err)
	}
	return out, nil
}

// Read implements eventstore.Store: it reads the stream forwards in one
// request, bounded by Config.ReadTimeout.
func (s *Store) Read(ctx context.Context, stream string) ([]eventstore.RecordedEvent, error) {
	name, err := s.streamName(stream)
	if err != nil {
		return nil, err
	}
	var out []eventstore.RecordedEvent
	deleted := false
	err = s.pool.call(ctx, s.cfg.ReadTimeout, func(ctx context.Context, c *esdbclient.Client) error {
		out = out[:0]
		rs, err := c.ReadStream(ctx, name, esdbclient.ReadStreamOptions{Direction: esdbclient.Forwards, From: esdbclient.Start{}}, math.MaxInt64)
		if err != nil {
			return err
		}
		return each(rs, func(e *esdbclient.RecordedEvent) bool {
			if e.EventType == typeStreamDeleted {
				deleted = true
				return true
			}
			out = append(out, recorded(stream, e))
			return false
		})
	})
	// out and deleted are only read when the call returned: after a
	// time-out its goroutine may still be running.
	switch werr := wrapErr(err); {
	case errors.Is(werr, eventstore.ErrStreamDeleted):
		return nil, deletedErr("read", stream)
	case werr != nil:
		return nil, fmt.Errorf("eventstore/esdb: read stream %q: %w", stream, werr)
	case deleted:
		return nil, deletedErr("read", stream)
	case len(out) == 0:
		return nil, fmt.Errorf("eventstore/esdb: read stream %q: %w", stream, eventstore.ErrStreamNotFound)
	}
	return out, nil
}

// Delete implements eventstore.Store: it tombstones the stream. Deleting a
// missing stream gives ErrStreamNotFound, a deleted one ErrStreamDeleted,
// which a caller retrying after ErrUnavailable should treat as success.
func (s *Store) Delete(ctx context.Context, stream string) error {
	name, err := s.streamName(stream)
	if err != nil {
		return err
	}
	// A tombstone on a missing stream would succeed (and close the id for
	// good), so look first. A stream never stops existing except by
	// deletion, so there is no race to guard against after this.
	last, err := s.readOne(ctx, name, esdbclient.Backwards, esdbclient.End{})
	switch {
	case errors.Is(err, eventstore.ErrStreamDeleted) || (err == nil && last != nil && last.EventType == typeStreamDeleted):
		return deletedErr("delete", stream)
	case errors.Is(err, eventstore.ErrStreamNotFound) || (err == nil && last == nil):
		return fmt.Errorf("eventstore/esdb: delete stream %q: %w", stream, eventstore.ErrStreamNotFound)
	case err != nil:
		return opErr("delete", stream, err)
	}
	err = s.pool.call(ctx, s.cfg.Timeout, func(ctx context.Context, c *esdbclient.Client) error {
		_, err := c.TombstoneStream(ctx, name, esdbclient.TombstoneStreamOptions{ExpectedRevision: esdbclient.Any{}})
		return err
	})
	if werr := wrapErr(err); werr != nil {
		if errors.Is(werr, eventstore.ErrStreamDeleted) {
			return deletedErr("delete", stream)
		}
		return fmt.Errorf("eventstore/esdb: delete stream %q: %w", stream, werr)
	}
	return nil
}

// Subscribe implements eventstore.Store with a catch-up subscription to
// $all, filtered on the server to the streams under Config.StreamPrefix,
// starting after position from. A tombstone arrives as an event of type
// eventstore.TypeStreamDeleted. When the subscription drops because the
// server is unreachable, Subscribe subscribes again with back-off from the
// last delivered position, on a new client if the old one failed, so a
// projector survives a server restart or a leader change. It returns
// ctx.Err() when ctx ends, the handler's error unchanged when the handler
// fails, an error wrapping ErrUnavailable after Close, and the server's
// error when it refuses the subscription (for instance access denied).
func (s *Store) Subscribe(ctx context.Context, from eventstore.Position, h eventstore.Handler) error {
	last := uint64(from)
	pause := backoff.New(eventstore.Resubscribe)
	for {
		before := last
		err := s.subscribeOnce(ctx, &last, h)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var he eventstore.HandlerError
		if errors.As(err, &he) {
			return he.Err
		}
		werr := wrapErr(err)
		if !errors.Is(werr, eventstore.ErrUnavailable) || errors.Is(err, errClosed) {
			return fmt.Errorf("eventstore/esdb: subscribe from position %d: %w", last, werr)
		}
		if last != before {
			pause.Reset()
		}
		if err := pause.Wait(ctx); err != nil {
			return err
		}
	}
}

// subscribeOnce runs one subscription after position *last, advancing *last
// after each handled event, until it drops, the handler fails or ctx ends.
//
// The client's subscription runs in a reader goroutine under guard; the
// handler runs here. The reader hands over events one at a time, so
// nothing is read ahead of the handler.
func (s *Store) subscribeOnce(ctx context.Context, last *uint64, h eventstore.Handler) error {
	g, err := s.pool.acquire(ctx)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var start esdbclient.AllPosition = esdbclient.Start{}
	if *last > 0 {
		start = esdbclient.Position{Commit: *last, Prepare: *last}
	}
	opts := esdbclient.SubscribeToAllOptions{
		From:   start,
		Filter: &esdbclient.SubscriptionFilter{Type: esdbclient.StreamFilterType, Prefixes: []string{s.cfg.StreamPrefix}},
	}
	events := make(chan *esdbclient.RecordedEvent)
	confirmed := make(chan struct{})
	ended := make(chan error, 1)
	go func() {
		err := guard(func() error {
			sub, err := g.client.SubscribeToAll(sctx, opts)
			if err != nil {
				return err
			}
			defer func() { _ = sub.Close() }()
			s.pool.settle(g, nil) // The client works: let other calls in.
			close(confirmed)
			for {
				se := sub.Recv()
				switch {
				case se.SubscriptionDropped != nil:
					if err := se.SubscriptionDropped.Error; err != nil {
						return err
					}
					return errors.New("subscription dropped")
				case se.EventAppeared != nil && se.EventAppeared.Event != nil:
					select {
					case events <- se.EventAppeared.Event:
					case <-sctx.Done():
						return sctx.Err()
					}
				}
				// Checkpoints, caught-up and fell-behind notices carry no
				// event.
			}
		})
		s.pool.settle(g, err) // Before the next attempt acquires a client.
		s.pool.release(g)
		ended <- err
	}()
	// On the way out, the reader must end: it does once sctx is cancelled,
	// unless it is stuck inside the client, which closing the client cures.
	readerDone := false
	defer func() {
		cancel()
		if !readerDone {
			s.pool.watch(g, ended)
		}
	}()

	startTimer := time.NewTimer(s.cfg.Timeout)
	defer startTimer.Stop()
	for {
		select {
		case <-confirmed:
			confirmed = nil // Started: no time limit from here on.
			startTimer.Stop()
		case <-startTimer.C:
			return fmt.Errorf("subscription not confirmed within %s: %w", s.cfg.Timeout, context.DeadlineExceeded)
		case err := <-ended:
			readerDone = true
			if err == nil {
				err = errors.New("subscription ended")
			}
			return err
		case e := <-events:
			pos := e.Position.Commit
			if *last > 0 && pos <= *last {
				continue // Never deliver twice, whatever the server sends.
			}
			ev, ok := s.subscribed(e)
			if ok {
				if err := h(ctx, ev); err != nil {
					return eventstore.HandlerError{Err: err}
				}
			}
			*last = pos
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// subscribed converts an event from the $all subscription. It skips what is
// not a case event: streams outside the prefix or with names the store
// never writes, and system events other than the tombstone.
func (s *Store) subscribed(e *esdbclient.RecordedEvent) (eventstore.RecordedEvent, bool) {
	stream, ok := strings.CutPrefix(e.StreamID, s.cfg.StreamPrefix)
	if !ok || eventstore.ValidateStreamID(stream) != nil {
		return eventstore.RecordedEvent{}, false
	}
	if strings.HasPrefix(e.EventType, "$") && e.EventType != typeStreamDeleted {
		return eventstore.RecordedEvent{}, false
	}
	return recorded(stream, e), true
}

// Head returns the position of the newest case event in the log (zero when
// there is none), so a rebuild knows when it has caught up. It reads $all
// backwards until it meets a case event, which needs permission to read
// $all (admins by default on a secure server).
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	var head eventstore.Position
	err := s.pool.call(ctx, s.cfg.ReadTimeout, func(ctx context.Context, c *esdbclient.Client) error {
		rs, err := c.ReadAll(ctx, esdbclient.ReadAllOptions{Direction: esdbclient.Backwards, From: esdbclient.End{}}, math.MaxInt64)
		if err != nil {
			return err
		}
		return each(rs, func(e *esdbclient.RecordedEvent) bool {
			if _, ok := s.subscribed(e); ok {
				head = eventstore.Position(e.Position.Commit)
				return true
			}
			return false
		})
	})
	if err != nil {
		return 0, fmt.Errorf("eventstore/esdb: head: %w", wrapErr(err))
	}
	return head, nil
}

// each hands fn the events of a read in order, skipping entries without
// an event (a link whose event is gone), until the read ends or fn returns
// true; then it closes the read.
func each(rs *esdbclient.ReadStream, fn func(e *esdbclient.RecordedEvent) (stop bool)) error {
	defer rs.Close()
	for {
		re, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if re.Event != nil && fn(re.Event) {
			return nil
		}
	}
}

// opErr wraps an error that readOne already mapped.
func opErr(op, stream string, err error) error {
	return fmt.Errorf("eventstore/esdb: %s stream %q: %w", op, stream, err)
}

// deletedErr reports a deleted stream. It matches ErrStreamNotFound as
// well, as the eventstore contract requires for reads.
func deletedErr(op, stream string) error {
	return fmt.Errorf("eventstore/esdb: %s stream %q: %w (%w)", op, stream, eventstore.ErrStreamDeleted, eventstore.ErrStreamNotFound)
}
