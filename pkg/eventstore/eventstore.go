// Package eventstore is the small event-store interface that every kontakt
// service writes through. It exists so that the services depend on four
// operations (append with an expected revision, read a stream, subscribe to
// all case events from a position, delete a stream) instead of on one
// product: NATS JetStream is the default backend and EventStoreDB the
// alternative, and both must pass the same conformance suite.
package eventstore

import (
	"context"
	"errors"
	"time"

	"github.com/kontakt-se/kontakt/pkg/backoff"
)

// Sentinel errors. Backends wrap them with %w so callers can use errors.Is,
// and the gRPC edge maps them to status codes in one table.
var (
	// ErrConflict means the stream's revision was not the expected one:
	// somebody else appended first. Callers reload the stream and retry.
	ErrConflict = errors.New("eventstore: wrong expected revision")
	// ErrStreamNotFound means the stream has no events.
	ErrStreamNotFound = errors.New("eventstore: stream not found")
	// ErrStreamDeleted means the stream was deleted. A deleted stream id is
	// never reused: reads report it as not found (errors.Is(err,
	// ErrStreamNotFound) holds as well) and appends are refused.
	ErrStreamDeleted = errors.New("eventstore: stream deleted")
	// ErrUnavailable means the backend could not be reached or did not
	// answer in time; the outcome of a write is unknown and the caller may
	// retry with the same event id.
	ErrUnavailable = errors.New("eventstore: unavailable")
	// ErrInvalid means the caller passed something the store cannot hold
	// (an empty stream id, an event without an id or type).
	ErrInvalid = errors.New("eventstore: invalid argument")
)

// Resubscribe paces a backend's Subscribe while its server is
// unreachable: soon at first, then every few seconds, and soon again once
// the subscription delivered anything before it dropped. Every backend
// uses it, so a projector waits alike whatever the store.
var Resubscribe = backoff.Policy{Initial: 50 * time.Millisecond, Max: 5 * time.Second}

// TypeStreamDeleted is the type of the synthetic event that subscriptions
// deliver when a stream was deleted, so that read models drop the stream
// even when they never saw its last events (they were removed with it).
// Such an event has revision 0 and no id: it offers nothing to append
// after.
const TypeStreamDeleted = "$stream-deleted"

// Revision identifies the last event of a stream. It is opaque: it only
// ever comes from Read or Append and is handed back as an expectation.
// (JetStream uses the stream sequence of the stream's last message,
// EventStoreDB the stream revision.)
type Revision uint64

// ExpectedRevision states what the caller believes the stream's revision
// is; the append succeeds only when that holds.
type ExpectedRevision struct {
	kind     expectKind
	revision Revision
}

type expectKind uint8

const (
	expectAny expectKind = iota
	expectNoStream
	expectExact
)

// Any accepts whatever revision the stream has (but never a deleted
// stream). Used for streams with a single writer, such as the audit log.
func Any() ExpectedRevision { return ExpectedRevision{kind: expectAny} }

// NoStream requires that the stream has no events yet.
func NoStream() ExpectedRevision { return ExpectedRevision{kind: expectNoStream} }

// Exact requires that the stream's last event has revision r.
func Exact(r Revision) ExpectedRevision { return ExpectedRevision{kind: expectExact, revision: r} }

// IsAny reports whether any revision is accepted.
func (e ExpectedRevision) IsAny() bool { return e.kind == expectAny }

// IsNoStream reports whether the stream must not exist yet.
func (e ExpectedRevision) IsNoStream() bool { return e.kind == expectNoStream }

// Exact returns the exact revision expected and whether one was given.
func (e ExpectedRevision) Exact() (Revision, bool) { return e.revision, e.kind == expectExact }

// Event is what is appended. Data is an encoded protobuf message whose
// personal-data fields are already sealed; the store never sees plain
// personal data.
type Event struct {
	// ID is unique per event and stable across retries of one append: the
	// store uses it to recognise a write that landed although its
	// acknowledgement was lost.
	ID string
	// Type names the payload, for example "kontakt.case.v1.CaseRegistered".
	Type string
	// Data is the encoded payload.
	Data []byte
	// Metadata carries small non-personal values (for example the
	// correlation id or the actor's subject id). Keys are ASCII.
	Metadata map[string]string
}

// RecordedEvent is an event as the store holds it.
type RecordedEvent struct {
	Event
	// Stream is the stream the event belongs to.
	Stream string
	// Revision is the event's revision within its stream.
	Revision Revision
	// Position is the event's place in the global log of case events, for
	// subscription checkpoints. Positions increase in log order.
	Position Position
	// Recorded is when the store accepted the event.
	Recorded time.Time
}

// Position is a place in the global log. The zero Position is "before the
// first event": subscribing from it delivers everything.
type Position uint64

// Handler receives events from a subscription in log order. Returning an
// error stops the subscription and Subscribe returns that error.
type Handler func(ctx context.Context, ev RecordedEvent) error

// BatchAppend is one append of an AppendBatch.
type BatchAppend struct {
	Stream   string
	Expected ExpectedRevision
	Event    Event
}

// BatchAppender is implemented by backends that can append to many streams
// in one atomic write. It exists for group commit: on a store that syncs
// to disk after every write, a batch of registrations costs one sync
// instead of one each. It is optional; callers check for it with a type
// assertion and otherwise append one by one.
type BatchAppender interface {
	// AppendBatch appends every event or none and returns their
	// revisions in order. Each append must expect NoStream or an Exact
	// revision (Any would need a read per stream, which defeats the
	// purpose), and a stream may appear only once.
	//
	// It fails with ErrConflict when any expectation does not hold or any
	// event id is already stored, without saying which: the caller then
	// appends one by one, which sorts out conflicts, and recognises events
	// of an earlier attempt that landed. ErrUnavailable means the outcome
	// is unknown, and the same applies. errors.ErrUnsupported means the
	// backend, as configured, cannot batch (for instance a server too old
	// for it).
	AppendBatch(ctx context.Context, appends []BatchAppend) ([]Revision, error)
}

// HandlerError marks an error that a subscription's Handler returned, so a
// backend's resubscribe loop stops on it and hands it back instead of
// retrying as it does after a dropped connection.
type HandlerError struct{ Err error }

func (e HandlerError) Error() string { return e.Err.Error() }
func (e HandlerError) Unwrap() error { return e.Err }

// Store is the event-store interface. Implementations are safe for
// concurrent use.
type Store interface {
	// Append writes one event to stream if the stream's revision matches
	// expected, and returns the event's revision. Retrying an append with
	// the same event id after an unknown outcome returns the revision of
	// the event already written instead of a conflict.
	Append(ctx context.Context, stream string, expected ExpectedRevision, ev Event) (Revision, error)
	// Read returns the events of stream in order. A stream without events
	// gives ErrStreamNotFound; a deleted one gives ErrStreamDeleted (which
	// also matches ErrStreamNotFound).
	Read(ctx context.Context, stream string) ([]RecordedEvent, error)
	// Subscribe delivers every case event after position from, in log
	// order, then keeps delivering new ones until ctx ends or h fails.
	// Deleted streams show up as one event of TypeStreamDeleted.
	Subscribe(ctx context.Context, from Position, h Handler) error
	// Delete removes a stream and its events for good. Its id can never be
	// appended to again.
	Delete(ctx context.Context, stream string) error
}
