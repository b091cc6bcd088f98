package ports_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/server"
	"github.com/kontakt-se/kontakt/services/routing/ports"
)

// TestErrorTable: a destroyed data key is a redacted class, never an
// internal error, and what the client reads names no key id.
func TestErrorTable(t *testing.T) {
	const keyID = "3f1c2a9e-5b7d-4c1e-9a2b-8d6f4e3c2b1a.answer"
	tests := []struct {
		name string
		err  error
		code codes.Code
	}{
		{"a destroyed key", fmt.Errorf("seal text: seal: data key %s: %w", keyID, seal.ErrKeyDestroyed), codes.FailedPrecondition},
		{"a redaction racing the command every time", fmt.Errorf("%w: the case's data was redacted while the command ran: %w", eventstore.ErrConflict, seal.ErrKeyDestroyed), codes.Aborted},
		{"anything else", errors.New("disk on fire"), codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(server.ToStatus(context.Background(), tt.err, ports.ErrorMappings(), nil))
			require.Equal(t, tt.code, st.Code(), st.Message())
			require.NotContains(t, st.Message(), keyID)
		})
	}
}
