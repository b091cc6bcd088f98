package eventstore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

func TestValidate(t *testing.T) {
	errBad := errors.New("bad value")
	// The backend's own check refuses any value containing "bad".
	value := func(v string) error {
		if strings.Contains(v, "bad") {
			return errBad
		}
		return nil
	}
	tests := []struct {
		name    string
		ev      eventstore.Event
		backend bool // the refusal comes from the backend's value check
	}{
		{name: "no id", ev: eventstore.Event{Type: "T"}},
		{name: "no type", ev: eventstore.Event{ID: "x"}},
		{name: "deletion type", ev: eventstore.Event{ID: "x", Type: eventstore.TypeStreamDeleted}},
		{name: "other $ type", ev: eventstore.Event{ID: "x", Type: "$metadata"}},
		{name: "empty key", ev: eventstore.Event{ID: "x", Type: "T", Metadata: map[string]string{"": "v"}}},
		{name: "key with colon", ev: eventstore.Event{ID: "x", Type: "T", Metadata: map[string]string{"a:b": "v"}}},
		{name: "key with blank", ev: eventstore.Event{ID: "x", Type: "T", Metadata: map[string]string{"a b": "v"}}},
		{name: "non-ASCII key", ev: eventstore.Event{ID: "x", Type: "T", Metadata: map[string]string{"å": "v"}}},
		{name: "id the backend refuses", ev: eventstore.Event{ID: "bad", Type: "T"}, backend: true},
		{name: "type the backend refuses", ev: eventstore.Event{ID: "x", Type: "bad"}, backend: true},
		{name: "value the backend refuses", ev: eventstore.Event{ID: "x", Type: "T", Metadata: map[string]string{"k": "bad-secret"}}, backend: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := eventstore.Validate(tt.ev, value)
			require.ErrorIs(t, err, eventstore.ErrInvalid)
			require.Equal(t, tt.backend, errors.Is(err, errBad))
			require.NotContains(t, err.Error(), "bad-secret", "a metadata value is never repeated")
		})
	}
	require.NoError(t, eventstore.Validate(eventstore.Event{ID: "x", Type: "kontakt.case.v1.CaseRegistered",
		Metadata: map[string]string{"correlation-id": "c1", "actor": "s 1"}}, value))
}
