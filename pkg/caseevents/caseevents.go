// Package caseevents names and decodes the case events of
// kontakt/case/v1/events.proto. Every service that follows the case log
// decodes stored events the same way: by the full proto name the writer
// stored as the event type.
package caseevents

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// ErrUnknown says an event type is not a case event this build knows: a
// reader meeting an event from a newer writer skips it rather than failing
// the whole case.
var ErrUnknown = errors.New("unknown case event type")

// TypeOf returns the store's type name of an event message: its full proto
// name.
func TypeOf(m proto.Message) string {
	return string(m.ProtoReflect().Descriptor().FullName())
}

// Decode turns a stored event's payload back into its message. It knows
// every message of events.proto straight from the generated file
// descriptor, so an event added to that file is decoded without a change
// here; the value types of case.proto never count as events.
func Decode(eventType string, data []byte) (proto.Message, error) {
	m, ok := newEvent(eventType)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknown, eventType)
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", eventType, err)
	}
	return m, nil
}

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
