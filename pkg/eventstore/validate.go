package eventstore

import (
	"fmt"
	"strings"
)

// Validate checks what every backend requires of an event, so that events
// can move between the backends unchanged: an id, a type that does not
// start with '$' (reserved for the stores' own events, TypeStreamDeleted
// among them), and metadata keys of printable ASCII without blanks or ':'.
// value checks the id, the type and each metadata value against what the
// backend's own encoding can hold (NATS header values, EventStoreDB's
// UTF-8). Errors wrap ErrInvalid and never repeat a metadata value: errors
// end up in logs.
func Validate(ev Event, value func(string) error) error {
	switch {
	case ev.ID == "":
		return fmt.Errorf("%w: event without id", ErrInvalid)
	case ev.Type == "":
		return fmt.Errorf("%w: event %q without type", ErrInvalid, ev.ID)
	case strings.HasPrefix(ev.Type, "$"):
		return fmt.Errorf("%w: event type %q: types starting with '$' are reserved", ErrInvalid, ev.Type)
	}
	if err := value(ev.ID); err != nil {
		return fmt.Errorf("%w: event id: %w", ErrInvalid, err)
	}
	if err := value(ev.Type); err != nil {
		return fmt.Errorf("%w: event type: %w", ErrInvalid, err)
	}
	for k, v := range ev.Metadata {
		if k == "" {
			return fmt.Errorf("%w: empty metadata key", ErrInvalid)
		}
		for i := 0; i < len(k); i++ {
			if c := k[i]; c <= ' ' || c >= 0x7f || c == ':' {
				return fmt.Errorf("%w: metadata key %q must be printable ASCII without ':' or blanks", ErrInvalid, k)
			}
		}
		if err := value(v); err != nil {
			return fmt.Errorf("%w: metadata %q: %w", ErrInvalid, k, err)
		}
	}
	return nil
}
