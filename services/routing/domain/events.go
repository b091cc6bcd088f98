package domain

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kontakt-se/kontakt/pkg/caseevents"
)

// Event is one stored case event as the domain sees it: the decoded
// message and where it sits in the stream. The store's own envelope
// (event id, metadata, position) stays in the adapters.
type Event struct {
	// Type is the event's full proto name, for example
	// "kontakt.case.v1.CaseRegistered".
	Type string
	// Message is the decoded event. It is nil when the reader did not
	// know the type (Decode returned ErrUnknownEvent); Fold skips it.
	Message proto.Message
	// Revision is the event's revision in the case's stream. It is opaque:
	// Fold only hands the last one back as Case.Version.
	Revision uint64
	// Recorded is when the store accepted the event. Fold uses it only
	// when the event carries no time of its own.
	Recorded time.Time
}

// TypeOf returns the store's type name of an event message: its full proto
// name. Writers use it so that Decode can find the type again.
func TypeOf(m proto.Message) string { return caseevents.TypeOf(m) }

// Decode turns a stored event's payload back into its message (see
// pkg/caseevents). An unknown type gives ErrUnknownEvent: a reader that
// meets an event from a newer writer skips it rather than failing the
// whole case.
func Decode(eventType string, data []byte) (proto.Message, error) {
	m, err := caseevents.Decode(eventType, data)
	if errors.Is(err, caseevents.ErrUnknown) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownEvent, eventType)
	}
	return m, err
}
