package esdb

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

const (
	// typeStreamDeleted is the event type of EventStoreDB's tombstone, the
	// record a hard delete appends to the stream.
	typeStreamDeleted = "$streamDeleted"
)

// eventIDNamespace is the UUID v5 namespace of event ids that are not
// UUIDs themselves. It is uuid.NewSHA1(uuid.NameSpaceURL,
// "urn:kontakt:eventstore:event-id") written out, so that it can never
// change: changing it would break the recognition of retried appends.
var eventIDNamespace = uuid.MustParse("c96952e6-ba14-59c7-ab88-551913008b9d")

// EventUUID returns the EventStoreDB event id for an eventstore event id: the
// id itself when it is a UUID in canonical form (lower-case, hyphenated),
// otherwise the name-based UUID v5 (SHA-1) of the id in a fixed namespace.
// The mapping is stable, so a retried append carries the same EventStoreDB
// id as the first attempt, which is what EventStoreDB's idempotence keys on.
func EventUUID(id string) uuid.UUID {
	if u, err := uuid.Parse(id); err == nil && u.String() == id {
		return u
	}
	return uuid.NewSHA1(eventIDNamespace, []byte(id))
}

// storedMeta is the JSON document kept in an event's EventStoreDB metadata:
// the original eventstore event id (which need not be a UUID) and the
// event's metadata map.
type storedMeta struct {
	ID       string            `json:"eventId"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// encodeMeta returns the EventStoreDB metadata of ev.
func encodeMeta(ev eventstore.Event) ([]byte, error) {
	b, err := json.Marshal(storedMeta{ID: ev.ID, Metadata: ev.Metadata})
	if err != nil {
		return nil, fmt.Errorf("%w: encode metadata: %w", eventstore.ErrInvalid, err)
	}
	return b, nil
}

// decodeMeta reads what encodeMeta wrote. Events written by other tools
// (no or foreign metadata) keep their EventStoreDB id as event id and get
// no metadata.
func decodeMeta(id uuid.UUID, raw []byte) (string, map[string]string) {
	var m storedMeta
	if len(raw) == 0 || json.Unmarshal(raw, &m) != nil || m.ID == "" {
		return id.String(), nil
	}
	if len(m.Metadata) == 0 {
		m.Metadata = nil
	}
	return m.ID, m.Metadata
}

// eventData converts ev to what the client appends.
func eventData(ev eventstore.Event) (esdbclient.EventData, error) {
	meta, err := encodeMeta(ev)
	if err != nil {
		return esdbclient.EventData{}, err
	}
	return esdbclient.EventData{
		EventID:     EventUUID(ev.ID),
		EventType:   ev.Type,
		ContentType: esdbclient.ContentTypeBinary,
		Data:        ev.Data,
		Metadata:    meta,
	}, nil
}

// toRevision converts an EventStoreDB stream revision (0 for a stream's
// first event) to an eventstore.Revision, which is one higher: revision 0
// never names an event here, as in the JetStream backend, so Exact(0)
// keeps meaning "no event yet" and a tombstone's revision 0 names nothing.
func toRevision(eventNumber uint64) eventstore.Revision {
	return eventstore.Revision(eventNumber + 1)
}

// expectedRevision maps an eventstore expectation to EventStoreDB's:
// Any -> esdb.Any{}, NoStream and Exact(0) -> esdb.NoStream{}, Exact(r) ->
// esdb.StreamRevision{Value: r-1}. The second result is the revision of the
// event the append would write when the expectation holds, the one the
// conflict check looks at (meaningless for Any).
func expectedRevision(e eventstore.ExpectedRevision) (esdbclient.ExpectedRevision, uint64) {
	if e.IsAny() {
		return esdbclient.Any{}, 0
	}
	if r, ok := e.Exact(); ok && r > 0 {
		return esdbclient.StreamRevision{Value: uint64(r) - 1}, uint64(r)
	}
	return esdbclient.NoStream{}, 0
}

// recorded turns a stored event into a RecordedEvent of stream (the case
// stream id, without prefix). A tombstone becomes the synthetic
// eventstore.TypeStreamDeleted event, with revision 0 and no id.
func recorded(stream string, e *esdbclient.RecordedEvent) eventstore.RecordedEvent {
	out := eventstore.RecordedEvent{
		Stream:   stream,
		Position: eventstore.Position(e.Position.Commit),
		Recorded: e.CreatedDate,
	}
	if e.EventType == typeStreamDeleted {
		out.Type = eventstore.TypeStreamDeleted
		return out
	}
	out.ID, out.Metadata = decodeMeta(e.EventID, e.UserMetadata)
	out.Type = e.EventType
	out.Revision = toRevision(e.EventNumber)
	if len(e.Data) > 0 {
		out.Data = e.Data
	}
	return out
}

// isOurs reports whether the stored event e is ev: same EventStoreDB id and
// same original id.
func isOurs(e *esdbclient.RecordedEvent, ev eventstore.Event) bool {
	if e == nil || e.EventType == typeStreamDeleted || e.EventID != EventUUID(ev.ID) {
		return false
	}
	id, _ := decodeMeta(e.EventID, e.UserMetadata)
	return id == ev.ID
}

// validateEvent checks what EventStoreDB and the JSON metadata can hold
// unchanged: UTF-8.
func validateEvent(ev eventstore.Event) error {
	return eventstore.Validate(ev, func(v string) error {
		if !utf8.ValidString(v) {
			return errors.New("not valid UTF-8")
		}
		return nil
	})
}

// validatePrefix checks Config.StreamPrefix.
func validatePrefix(p string) error {
	switch {
	case p == "":
		return errors.New("empty stream prefix")
	case strings.HasPrefix(p, "$"):
		return fmt.Errorf("stream prefix %q: names starting with '$' are EventStoreDB system streams", p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("stream prefix %q must be printable ASCII without blanks", p)
		}
	}
	return nil
}
