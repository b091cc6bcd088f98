// Package jetstream is the NATS JetStream backend of eventstore, the
// default one: the single binary runs it on an embedded server and larger
// installations on a NATS cluster with three replicas.
//
// # Layout
//
// All case streams live in one JetStream stream (Config.StreamName) with
// one subject per case stream, "<prefix>.<streamID>". An event is one
// message: the payload is the event data, the event id travels in the
// Nats-Msg-Id header (so JetStream's de-duplication recognises retries), the
// type in Kontakt-Event-Type and every metadata entry in a
// Kontakt-Meta-<key> header. A stream's revision is the JetStream sequence
// of its last message, and an event's position in the global log is its
// JetStream sequence, so revisions and positions share one number space.
//
// # Concurrency and retries
//
// Appends carry Nats-Expected-Last-Subject-Sequence, so the server refuses
// an append when the subject moved on (error codes 10071, or 10164 on
// replicated streams). A refusal is not always a conflict: when an earlier
// attempt of the same append landed but its acknowledgement was lost, the
// retry is refused too. So before reporting a conflict the store reads the
// first message of the subject after the expected revision; if it carries
// the same event id, the earlier attempt won and the append succeeds with
// that message's revision. This works after JetStream's duplicate window
// has passed as well, which matters because a caller may retry much later.
//
// # Deletion
//
// Deleting a stream appends a tombstone message (type
// eventstore.TypeStreamDeleted, no data) and then purges every other
// message of the subject. The tombstone stays forever: a purged subject
// would otherwise start again at "no messages", and a deleted case id could
// then be reused, which the design forbids. Subscribers see the tombstone
// as the stream's deletion event.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/kontakt-se/kontakt/pkg/backoff"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/jsbatch"
	"github.com/kontakt-se/kontakt/pkg/jsread"
	"github.com/kontakt-se/kontakt/pkg/natserr"
)

// Defaults for Config fields left at their zero value.
const (
	// DefaultStreamName is the JetStream stream that holds the case events.
	DefaultStreamName = "KONTAKT_CASES"
	// DefaultSubjectPrefix is the subject prefix of the case streams.
	DefaultSubjectPrefix = "kontakt.case"
	// DefaultDuplicateWindow is how long JetStream remembers event ids. It
	// only makes retries cheaper: the store recognises a landed retry after
	// the window too.
	DefaultDuplicateWindow = 2 * time.Minute
	// DefaultAckTimeout bounds each request to the server when the caller's
	// context has no earlier deadline.
	DefaultAckTimeout = 5 * time.Second
)

// Header names used on event messages. They are exported so that tools
// (and tests) that publish or inspect raw messages agree with the store.
const (
	// HeaderEventType carries eventstore.Event.Type.
	HeaderEventType = "Kontakt-Event-Type"
	// HeaderMetaPrefix prefixes each eventstore.Event.Metadata key.
	HeaderMetaPrefix = "Kontakt-Meta-"
)

const (
	// conflictRetries is how often Any appends and deletes re-read the
	// stream's revision after losing a race before giving up with
	// ErrConflict.
	conflictRetries = 5
	// directReadLimit is how many messages Read fetches one by one before
	// it switches to an ordered consumer, which costs more to set up but
	// streams the rest of a long stream in batches.
	directReadLimit = 32
	// tombstoneIDPrefix starts the event id of a tombstone.
	tombstoneIDPrefix = "$deleted-"
)

// Config configures a Store. The zero value is valid for a single server.
type Config struct {
	// StreamName is the JetStream stream; empty means DefaultStreamName.
	StreamName string
	// SubjectPrefix is the subject prefix of case streams, without a
	// trailing dot; empty means DefaultSubjectPrefix. It must not overlap
	// with another stream's subjects.
	SubjectPrefix string
	// Replicas is the JetStream replica count: zero means 1 (a single
	// server); clusters must use 3, because durability against the loss of
	// a node requires it.
	Replicas int
	// DuplicateWindow is JetStream's de-duplication window; zero means
	// DefaultDuplicateWindow. Tests shrink it to exercise the path after it.
	DuplicateWindow time.Duration
	// AckTimeout bounds each request to the server (publish
	// acknowledgement, message get, purge); zero means DefaultAckTimeout.
	// When it expires the outcome is unknown and ErrUnavailable is returned.
	AckTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.StreamName == "" {
		c.StreamName = DefaultStreamName
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
}

func (c *Config) validate() error {
	if strings.ContainsAny(c.StreamName, " \t\r\n.*>/\\") {
		return fmt.Errorf("%w: JetStream stream name %q contains a character JetStream does not allow", eventstore.ErrInvalid, c.StreamName)
	}
	for tok := range strings.SplitSeq(c.SubjectPrefix, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n*>") {
			return fmt.Errorf("%w: subject prefix %q must be literal dot-separated tokens", eventstore.ErrInvalid, c.SubjectPrefix)
		}
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("%w: replicas %d out of range 1..5", eventstore.ErrInvalid, c.Replicas)
	}
	if c.DuplicateWindow < 100*time.Millisecond {
		return fmt.Errorf("%w: duplicate window %s is below JetStream's minimum of 100ms", eventstore.ErrInvalid, c.DuplicateWindow)
	}
	if c.AckTimeout < 0 {
		return fmt.Errorf("%w: negative ack timeout %s", eventstore.ErrInvalid, c.AckTimeout)
	}
	return nil
}

// Store is the JetStream implementation of eventstore.Store. It is safe
// for concurrent use; it does not own the connection, which the caller
// closes after the last use.
type Store struct {
	js     natsjs.JetStream
	stream natsjs.Stream
	cfg    Config
}

var (
	_ eventstore.Store         = (*Store)(nil)
	_ eventstore.BatchAppender = (*Store)(nil)
)

// StreamConfig returns the JetStream stream configuration New applies. It
// is exported so that operators can compare it with a deployed stream.
//
//   - File storage, limits retention without any limit, and DiscardNew:
//     events are the system of record and must never be discarded; if an
//     account limit is ever reached, appends fail instead.
//   - DenyDelete: single messages must not be removed, as that would punch
//     holes into cases and could remove a tombstone (and so allow a deleted
//     case id to be reused). Purging stays allowed because Delete needs it.
//   - AllowAtomicPublish is on, for AppendBatch (nats-server 2.12 or
//     later).
//   - AllowDirect is off: direct gets may be answered by a follower that
//     lags behind, and the conflict check after a lost acknowledgement must
//     see the leader's state, or it would report a conflict for an append
//     that landed.
func (c Config) StreamConfig() natsjs.StreamConfig {
	c.setDefaults()
	return natsjs.StreamConfig{
		Name:              c.StreamName,
		Description:       "kontakt case events (eventstore); one subject per case stream",
		Subjects:          []string{c.SubjectPrefix + ".>"},
		Retention:         natsjs.LimitsPolicy,
		MaxConsumers:      -1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxAge:            0,
		MaxMsgsPerSubject: -1,
		Discard:           natsjs.DiscardNew,
		Storage:           natsjs.FileStorage,
		Replicas:          c.Replicas,
		Duplicates:        c.DuplicateWindow,
		DenyDelete:        true,
		DenyPurge:         false,
		AllowRollup:       false,
		AllowDirect:       false,
		// AppendBatch stores a group of events with one disk sync.
		AllowAtomicPublish: true,
		PersistMode:        natsjs.DefaultPersistMode,
	}
}

// New creates the JetStream stream, or updates it to the configuration
// StreamConfig describes, and returns a Store that uses it. It fails on a
// stream whose configuration cannot be changed that way (for instance one
// using memory storage).
func New(ctx context.Context, js natsjs.JetStream, cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("eventstore/jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.AckTimeout)
	defer cancel()
	st, err := js.CreateOrUpdateStream(ctx, cfg.StreamConfig())
	if err != nil {
		return nil, fmt.Errorf("eventstore/jetstream: create or update JetStream stream %q: %w", cfg.StreamName, wrapErr(err))
	}
	return &Store{js: js, stream: st, cfg: cfg}, nil
}

// Append implements eventstore.Store.
//
// NoStream and Exact are checked by the server. Any reads the stream's last
// message first and appends with its revision as exact expectation,
// retrying a few times when another writer slips in between. If that last
// message is the event being appended (same id), an earlier attempt landed
// and Append returns its revision. Any therefore recognises a landed retry
// only while nobody appended after it, which holds for the single-writer
// streams Any is meant for.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, ev eventstore.Event) (eventstore.Revision, error) {
	subject, err := s.subject(stream)
	if err != nil {
		return 0, err
	}
	if err := validateEvent(ev); err != nil {
		return 0, fmt.Errorf("eventstore/jetstream: append to stream %q: %w", stream, err)
	}
	if expected.IsAny() {
		return s.appendAny(ctx, stream, subject, ev)
	}
	var last uint64 // NoStream: no message on the subject.
	if r, ok := expected.Exact(); ok {
		last = uint64(r)
	}
	return s.appendExpect(ctx, stream, subject, last, ev)
}

// AppendBatch implements eventstore.BatchAppender with a JetStream atomic
// batch: every message carries its stream's expected last subject sequence
// and its event id, and the server checks them all before it stores any.
// The events get consecutive positions in the order given.
func (s *Store) AppendBatch(ctx context.Context, appends []eventstore.BatchAppend) ([]eventstore.Revision, error) {
	if len(appends) == 0 {
		return nil, fmt.Errorf("eventstore/jetstream: append batch: %w: no events", eventstore.ErrInvalid)
	}
	if len(appends) > jsbatch.MaxMessages {
		return nil, fmt.Errorf("eventstore/jetstream: append batch: %w: %d events, at most %d", eventstore.ErrInvalid, len(appends), jsbatch.MaxMessages)
	}
	msgs := make([]*nats.Msg, len(appends))
	seen := make(map[string]bool, len(appends))
	for i, a := range appends {
		subject, err := s.subject(a.Stream)
		if err != nil {
			return nil, err
		}
		if seen[a.Stream] {
			return nil, fmt.Errorf("eventstore/jetstream: append batch: %w: stream %q appears twice", eventstore.ErrInvalid, a.Stream)
		}
		seen[a.Stream] = true
		if err := validateEvent(a.Event); err != nil {
			return nil, fmt.Errorf("eventstore/jetstream: append batch to stream %q: %w", a.Stream, err)
		}
		var last uint64
		switch r, exact := a.Expected.Exact(); {
		case exact:
			last = uint64(r)
		case !a.Expected.IsNoStream():
			return nil, fmt.Errorf("eventstore/jetstream: append batch to stream %q: %w: a batch needs NoStream or Exact expectations", a.Stream, eventstore.ErrInvalid)
		}
		msgs[i] = s.message(subject, a.Event)
		msgs[i].Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(last, 10))
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.AckTimeout)
	ack, err := jsbatch.Publish(pctx, s.js.Conn(), msgs)
	cancel()
	switch {
	case err == nil:
	case natserr.Is(err, natserr.AtomicPublishDuplicate):
		return nil, fmt.Errorf("eventstore/jetstream: append batch of %d: %w: an event id is already stored (%w)", len(appends), eventstore.ErrConflict, err)
	case natserr.Is(err, natserr.AtomicPublishDisabled):
		return nil, fmt.Errorf("eventstore/jetstream: append batch of %d: %w (%w)", len(appends), errors.ErrUnsupported, err)
	case natserr.Is(err, natserr.AtomicPublishIncomplete, natserr.AtomicPublishTooManyInflight):
		// Nothing was stored; trying again is safe.
		return nil, fmt.Errorf("eventstore/jetstream: append batch of %d: %w: %w", len(appends), eventstore.ErrUnavailable, err)
	default:
		return nil, fmt.Errorf("eventstore/jetstream: append batch of %d: %w", len(appends), wrapErr(err))
	}
	revs := make([]eventstore.Revision, len(appends))
	for i := range revs {
		revs[i] = eventstore.Revision(ack.Seq(i))
	}
	return revs, nil
}

func (s *Store) appendAny(ctx context.Context, stream, subject string, ev eventstore.Event) (eventstore.Revision, error) {
	for attempt := 1; ; attempt++ {
		lastMsg, err := s.getLast(ctx, subject)
		var last uint64
		switch {
		case natserr.IsMessageNotFound(err):
		case err != nil:
			return 0, s.opErr("append to", stream, err)
		case isTombstone(lastMsg.Header):
			return 0, deletedErr("append to", stream)
		case lastMsg.Header.Get(natsjs.MsgIDHeader) == ev.ID:
			return eventstore.Revision(lastMsg.Sequence), nil
		default:
			last = lastMsg.Sequence
		}
		rev, err := s.appendExpect(ctx, stream, subject, last, ev)
		if err == nil || !errors.Is(err, eventstore.ErrConflict) || attempt >= conflictRetries {
			return rev, err
		}
	}
}

// appendExpect publishes ev on subject, expecting last as the subject's
// last sequence (0 for none), and sorts a refusal into success (our own
// earlier attempt landed), deleted stream, or conflict.
func (s *Store) appendExpect(ctx context.Context, stream, subject string, last uint64, ev eventstore.Event) (eventstore.Revision, error) {
	msg := s.message(subject, ev)
	msg.Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(last, 10))

	pctx, cancel := context.WithTimeout(ctx, s.cfg.AckTimeout)
	ack, err := s.js.PublishMsg(pctx, msg)
	cancel()
	if err == nil {
		if ack.Duplicate {
			return s.confirmDuplicate(ctx, stream, subject, ack.Sequence, ev)
		}
		return eventstore.Revision(ack.Sequence), nil
	}
	if !natserr.IsWrongLastSequence(err) {
		return 0, s.opErr("append to", stream, err)
	}

	// Refused. Did an earlier attempt of this very append land? It would
	// be the first message after the expected one.
	next, gerr := s.getNext(ctx, subject, last+1)
	switch {
	case gerr == nil && next.Header.Get(natsjs.MsgIDHeader) == ev.ID:
		return eventstore.Revision(next.Sequence), nil
	case gerr == nil && isTombstone(next.Header):
		return 0, deletedErr("append to", stream)
	case gerr != nil && !natserr.IsMessageNotFound(gerr):
		return 0, s.opErr("check conflict on", stream, gerr)
	}
	lastMsg, lerr := s.getLast(ctx, subject)
	switch {
	case lerr == nil && isTombstone(lastMsg.Header):
		return 0, deletedErr("append to", stream)
	case lerr != nil && !natserr.IsMessageNotFound(lerr):
		return 0, s.opErr("check conflict on", stream, lerr)
	}
	want := "no stream"
	if last > 0 {
		want = "revision " + strconv.FormatUint(last, 10)
	}
	return 0, fmt.Errorf("eventstore/jetstream: append to stream %q expecting %s: %w (%w)", stream, want, eventstore.ErrConflict, err)
}

// confirmDuplicate checks a publish acknowledgement that JetStream marked
// as duplicate: the sequence it names must hold this event on this
// subject. JetStream de-duplicates across the whole JetStream stream, so an
// event id reused in another case stream would otherwise be acknowledged
// with a revision of the wrong stream.
func (s *Store) confirmDuplicate(ctx context.Context, stream, subject string, seq uint64, ev eventstore.Event) (eventstore.Revision, error) {
	m, err := s.getSeq(ctx, seq)
	if natserr.IsMessageNotFound(err) {
		// Removed since: only Delete removes messages.
		if last, lerr := s.getLast(ctx, subject); lerr == nil && isTombstone(last.Header) {
			return 0, deletedErr("append to", stream)
		}
	}
	if err != nil {
		return 0, s.opErr("confirm duplicate on", stream, err)
	}
	if m.Subject != subject || m.Header.Get(natsjs.MsgIDHeader) != ev.ID {
		return 0, fmt.Errorf("eventstore/jetstream: append to stream %q: %w: event id %q is already used by another event", stream, eventstore.ErrInvalid, ev.ID)
	}
	return eventstore.Revision(seq), nil
}

// Read implements eventstore.Store. It first reads the stream's last
// message, which tells whether the stream exists or was deleted and where
// reading stops, so the result is a consistent prefix even while others
// append. Then it fetches messages one by one by subject; for long streams
// it reads the rest in batches (jsread) after directReadLimit messages.
func (s *Store) Read(ctx context.Context, stream string) ([]eventstore.RecordedEvent, error) {
	subject, err := s.subject(stream)
	if err != nil {
		return nil, err
	}
	lastMsg, err := s.getLast(ctx, subject)
	switch {
	case natserr.IsMessageNotFound(err):
		return nil, fmt.Errorf("eventstore/jetstream: read stream %q: %w", stream, eventstore.ErrStreamNotFound)
	case err != nil:
		return nil, s.opErr("read", stream, err)
	case isTombstone(lastMsg.Header):
		return nil, deletedErr("read", stream)
	}
	last := lastMsg.Sequence

	var out []eventstore.RecordedEvent
	for seq := uint64(1); ; {
		if len(out) == directReadLimit {
			rest, err := s.readWithConsumer(ctx, stream, subject, seq, last)
			if err != nil {
				return nil, err
			}
			return append(out, rest...), nil
		}
		m, err := s.getNext(ctx, subject, seq)
		if natserr.IsMessageNotFound(err) || (err == nil && (m.Sequence > last || isTombstone(m.Header))) {
			// The stream lost messages while being read: deleted.
			return nil, deletedErr("read", stream)
		}
		if err != nil {
			return nil, s.opErr("read", stream, err)
		}
		out = append(out, s.recorded(m.Subject, m.Sequence, m.Time, m.Header, m.Data))
		if m.Sequence == last {
			return out, nil
		}
		seq = m.Sequence + 1
	}
}

// readWithConsumer reads the messages of subject from sequence from up to
// and including last in batches, through jsread, which removes its
// consumer when done.
func (s *Store) readWithConsumer(ctx context.Context, stream, subject string, from, last uint64) ([]eventstore.RecordedEvent, error) {
	var out []eventstore.RecordedEvent
	deleted := false
	err := jsread.Each(ctx, s.js, jsread.Range{
		Stream: s.cfg.StreamName, Subjects: []string{subject}, After: from - 1, UpTo: last, Timeout: s.cfg.AckTimeout,
	}, func(m jsread.Msg) error {
		if isTombstone(m.Header) {
			deleted = true
			return jsread.Stop()
		}
		out = append(out, s.recorded(m.Subject, m.Sequence, m.Time, m.Header, m.Data))
		return nil
	})
	if err != nil {
		return nil, s.opErr("read", stream, err)
	}
	if deleted || len(out) == 0 || uint64(out[len(out)-1].Revision) != last {
		// The stream lost messages while being read: deleted.
		return nil, deletedErr("read", stream)
	}
	return out, nil
}

// Delete implements eventstore.Store: it appends a tombstone after the
// stream's last message and then purges the subject down to that
// tombstone. If the purge fails, the stream already counts as deleted
// (reads and appends are refused) and deleting it again completes the
// purge. Deleting a missing stream gives ErrStreamNotFound, a deleted one
// ErrStreamDeleted, which a caller retrying after ErrUnavailable should
// treat as success. If appends keep winning the race for the stream's last
// revision, Delete gives up with ErrConflict after a few attempts.
func (s *Store) Delete(ctx context.Context, stream string) error {
	subject, err := s.subject(stream)
	if err != nil {
		return err
	}
	tomb := eventstore.Event{ID: tombstoneIDPrefix + uuid.NewString(), Type: eventstore.TypeStreamDeleted}
	for attempt := 1; ; attempt++ {
		lastMsg, err := s.getLast(ctx, subject)
		switch {
		case natserr.IsMessageNotFound(err):
			return fmt.Errorf("eventstore/jetstream: delete stream %q: %w", stream, eventstore.ErrStreamNotFound)
		case err != nil:
			return s.opErr("delete", stream, err)
		case isTombstone(lastMsg.Header):
			if err := s.purge(ctx, stream, subject); err != nil {
				return err
			}
			return deletedErr("delete", stream)
		}
		_, err = s.appendExpect(ctx, stream, subject, lastMsg.Sequence, tomb)
		if errors.Is(err, eventstore.ErrConflict) && attempt < conflictRetries {
			continue
		}
		if err != nil {
			return err
		}
		return s.purge(ctx, stream, subject)
	}
}

// purge removes every message of subject except the last, the tombstone.
func (s *Store) purge(ctx context.Context, stream, subject string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AckTimeout)
	defer cancel()
	if err := s.stream.Purge(ctx, natsjs.WithPurgeSubject(subject), natsjs.WithPurgeKeep(1)); err != nil {
		return s.opErr("purge deleted", stream, err)
	}
	return nil
}

// Subscribe implements eventstore.Store with an ordered consumer over all
// case subjects, starting after position from. Positions and revisions are
// JetStream sequences; a deleted stream appears as its tombstone, an event
// of type eventstore.TypeStreamDeleted. When the server is unreachable,
// Subscribe keeps retrying from the last delivered position, so a projector
// survives a server restart. It returns ctx.Err() when ctx ends, the
// handler's error unchanged when the handler fails, an error wrapping
// ErrUnavailable when the connection is closed for good, and the server's
// error when it refuses the consumer (for instance because the JetStream
// stream was removed).
func (s *Store) Subscribe(ctx context.Context, from eventstore.Position, h eventstore.Handler) error {
	next := uint64(from) + 1
	pause := backoff.New(eventstore.Resubscribe)
	for {
		before := next
		err := s.consume(ctx, &next, h)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var he eventstore.HandlerError
		if errors.As(err, &he) {
			return he.Err
		}
		// Only an unreachable server is worth waiting for; a refusal (such
		// as a missing JetStream stream) or a closed connection will not
		// heal by itself.
		if werr := wrapErr(err); !errors.Is(werr, eventstore.ErrUnavailable) || errors.Is(err, nats.ErrConnectionClosed) {
			return fmt.Errorf("eventstore/jetstream: subscribe from position %d: %w", next-1, werr)
		}
		if next != before {
			pause.Reset()
		}
		if err := pause.Wait(ctx); err != nil {
			return err
		}
	}
}

// consume delivers messages from sequence *next on, advancing *next after
// each handled message, until an error occurs or ctx ends.
func (s *Store) consume(ctx context.Context, next *uint64, h eventstore.Handler) error {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.AckTimeout)
	cons, err := s.js.OrderedConsumer(cctx, s.cfg.StreamName, natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{s.cfg.SubjectPrefix + ".>"},
		DeliverPolicy:  natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:    *next,
	})
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.AckTimeout)
		defer dcancel()
		if info := cons.CachedInfo(); info != nil {
			_ = s.js.DeleteConsumer(dctx, s.cfg.StreamName, info.Name)
		}
	}()
	it, err := cons.Messages(natsjs.PullHeartbeat(jsread.FollowHeartbeat))
	if err != nil {
		return err
	}
	defer it.Stop()
	// The ordered consumer retries resets on its own (unlimited, with
	// back-off) and only stops when the iterator does.
	defer context.AfterFunc(ctx, it.Stop)()
	for {
		msg, err := it.Next(natsjs.NextContext(ctx))
		if err != nil {
			return err
		}
		meta, err := msg.Metadata()
		if err != nil {
			return err
		}
		seq := meta.Sequence.Stream
		if seq < *next {
			continue // Never deliver twice, whatever the consumer does.
		}
		ev := s.recorded(msg.Subject(), seq, meta.Timestamp, msg.Headers(), msg.Data())
		if err := h(ctx, ev); err != nil {
			return eventstore.HandlerError{Err: err}
		}
		*next = seq + 1
	}
}

// subject validates a stream id and returns its subject.
func (s *Store) subject(stream string) (string, error) {
	if err := eventstore.ValidateStreamID(stream); err != nil {
		return "", fmt.Errorf("eventstore/jetstream: %w", err)
	}
	return s.cfg.SubjectPrefix + "." + stream, nil
}

// message builds the message for ev, without an expectation header.
func (s *Store) message(subject string, ev eventstore.Event) *nats.Msg {
	h := make(nats.Header, 2+len(ev.Metadata))
	h.Set(natsjs.MsgIDHeader, ev.ID)
	h.Set(HeaderEventType, ev.Type)
	for k, v := range ev.Metadata {
		h.Set(HeaderMetaPrefix+k, v)
	}
	return &nats.Msg{Subject: subject, Header: h, Data: ev.Data}
}

// recorded turns a stored message into a RecordedEvent.
func (s *Store) recorded(subject string, seq uint64, ts time.Time, h nats.Header, data []byte) eventstore.RecordedEvent {
	ev := eventstore.RecordedEvent{
		Event: eventstore.Event{
			ID:   h.Get(natsjs.MsgIDHeader),
			Type: h.Get(HeaderEventType),
		},
		Stream:   strings.TrimPrefix(subject, s.cfg.SubjectPrefix+"."),
		Revision: eventstore.Revision(seq),
		Position: eventstore.Position(seq),
		Recorded: ts,
	}
	if ev.Type == eventstore.TypeStreamDeleted {
		// The tombstone's sequence is the subject's last sequence, so an
		// append expecting it would pass the server's check. Never handing
		// it out keeps a deleted stream id closed for good.
		ev.Revision = 0
		ev.ID = ""
	}
	if len(data) > 0 {
		ev.Data = data
	}
	for k, vs := range h {
		if key, ok := strings.CutPrefix(k, HeaderMetaPrefix); ok && len(vs) > 0 {
			if ev.Metadata == nil {
				ev.Metadata = make(map[string]string)
			}
			ev.Metadata[key] = vs[0]
		}
	}
	return ev
}

func (s *Store) getLast(ctx context.Context, subject string) (*natsjs.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AckTimeout)
	defer cancel()
	return s.stream.GetLastMsgForSubject(ctx, subject)
}

// getNext returns the first message of subject at or after sequence seq.
func (s *Store) getNext(ctx context.Context, subject string, seq uint64) (*natsjs.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AckTimeout)
	defer cancel()
	return s.stream.GetMsg(ctx, seq, natsjs.WithGetMsgSubject(subject))
}

func (s *Store) getSeq(ctx context.Context, seq uint64) (*natsjs.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AckTimeout)
	defer cancel()
	return s.stream.GetMsg(ctx, seq)
}

// opErr wraps a server or transport error with the operation and stream,
// and with the eventstore sentinel it corresponds to.
func (s *Store) opErr(op, stream string, err error) error {
	return fmt.Errorf("eventstore/jetstream: %s stream %q: %w", op, stream, wrapErr(err))
}

// wrapErr adds the matching eventstore sentinel to err, so that callers can
// use errors.Is while the original error stays available.
func wrapErr(err error) error {
	switch {
	case natserr.IsWrongLastSequence(err):
		return fmt.Errorf("%w: %w", eventstore.ErrConflict, err)
	case natserr.Is(err, natserr.MessageExceedsMaximum):
		return fmt.Errorf("%w: %w", eventstore.ErrInvalid, err)
	case natserr.IsRefusal(err):
		return err
	}
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) || errors.Is(err, nats.ErrBadHeaderMsg) {
		return fmt.Errorf("%w: %w", eventstore.ErrInvalid, err)
	}
	// The server saying "not now", time-outs, no responders, closed or
	// reconnecting connections and cancelled contexts: the outcome of a
	// write is unknown.
	return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
}

func isTombstone(h nats.Header) bool {
	return h.Get(HeaderEventType) == eventstore.TypeStreamDeleted
}

// deletedErr reports a deleted stream. It matches ErrStreamNotFound as
// well, as the eventstore contract requires for reads.
func deletedErr(op, stream string) error {
	return fmt.Errorf("eventstore/jetstream: %s stream %q: %w (%w)", op, stream, eventstore.ErrStreamDeleted, eventstore.ErrStreamNotFound)
}

// validateEvent checks that ev fits into message headers unchanged: header
// values cannot hold control characters, and the NATS client trims blanks
// at both ends of a value.
func validateEvent(ev eventstore.Event) error { return eventstore.Validate(ev, checkHeaderValue) }

func checkHeaderValue(v string) error {
	if v != "" && (isBlank(v[0]) || isBlank(v[len(v)-1])) {
		return errors.New("value starts or ends with a blank")
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' || c == 0x7f {
			return errors.New("value contains a control character")
		}
	}
	return nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// Head returns the position of the newest event in the log (zero when it
// is empty), so a rebuild knows when it has caught up.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("eventstore/jetstream: stream info: %w", wrapErr(err))
	}
	return eventstore.Position(info.State.LastSeq), nil
}
