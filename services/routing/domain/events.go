package domain

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
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
func TypeOf(m proto.Message) string {
	return string(m.ProtoReflect().Descriptor().FullName())
}

// Decode turns a stored event's payload back into its message. It knows
// every message of kontakt/case/v1/events.proto by its full proto name,
// straight from the generated file descriptor, so an event added to that
// file is decoded without a change here. Any other name gives
// ErrUnknownEvent: a reader that meets an event from a newer writer skips
// it rather than failing the whole case.
func Decode(eventType string, data []byte) (proto.Message, error) {
	m, ok := newEvent(eventType)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownEvent, eventType)
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", eventType, err)
	}
	return m, nil
}

// newEvent returns an empty message of the named case event. Only the
// messages declared in events.proto count as events; the value types of
// case.proto (ContactDetails and so on) never travel as events.
func newEvent(name string) (proto.Message, bool) {
	full := protoreflect.FullName(name)
	if !full.IsValid() {
		return nil, false
	}
	desc := casev1.File_kontakt_case_v1_events_proto.Messages().ByName(full.Name())
	if desc == nil || desc.FullName() != full {
		return nil, false
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(full)
	if err != nil {
		return nil, false
	}
	return mt.New().Interface(), true
}
