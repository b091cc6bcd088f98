package ports

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/server"
	"github.com/kontakt-se/kontakt/services/intake/app"
	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// TestOneAnswerPerFailure: a failure gets the same code over gRPC and the
// same HTTP status and words over Open311 as over REST, because both go
// through ErrorMappings and server.HTTPStatus; and the wrapping, which may
// name a key or a person, never reaches the client.
func TestOneAnswerPerFailure(t *testing.T) {
	const secret = "19121212-1212"
	invalid := &domain.ValidationError{Violations: []domain.Violation{
		{Field: "case.contact.email", Description: "is not an e-mail address"},
		{Field: "case.location.latitude", Description: "must be between -90 and 90"},
	}}
	tests := []struct {
		name string
		err  error
		code codes.Code
		http int
		says string
	}{
		{"a case the domain refuses", fmt.Errorf("register for %s: %w", secret, invalid), codes.InvalidArgument, http.StatusBadRequest,
			"email: is not an e-mail address|lat: must be between -90 and 90"}, // one entry each
		{"an idempotency key reused for another payload", fmt.Errorf("key %s: %w", secret, app.ErrPayloadMismatch), codes.FailedPrecondition, http.StatusBadRequest,
			app.ErrPayloadMismatch.Error()},
		{"a submission still in progress", fmt.Errorf("key %s: %w", secret, app.ErrInProgress), codes.Aborted, http.StatusConflict,
			app.ErrInProgress.Error()},
		{"no such case", fmt.Errorf("case %s: %w", secret, app.ErrNotFound), codes.NotFound, http.StatusNotFound, "not found"},
		{"the event store away", fmt.Errorf("append %s: %w", secret, eventstore.ErrUnavailable), codes.Unavailable, http.StatusServiceUnavailable,
			eventstore.ErrUnavailable.Error()},
		{"NATS electing a leader", fmt.Errorf("claim %s: %w", secret, nats.ErrNoResponders), codes.Unavailable, http.StatusServiceUnavailable,
			"temporarily unavailable; retry"},
		{"our own fault", fmt.Errorf("disk full at /var/lib/kontakt/%s", secret), codes.Internal, http.StatusInternalServerError, "internal error"},
	}
	o311 := NewOpen311("/open311/v2", nil, nil, nil, nil, nil, time.Now, slog.New(slog.DiscardHandler), Open311Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(server.ToStatus(context.Background(), tt.err, ErrorMappings(), slog.New(slog.DiscardHandler)))
			require.Equal(t, tt.code, st.Code(), "gRPC")
			require.Equal(t, tt.http, server.HTTPStatus(st.Code()), "REST")

			rec := httptest.NewRecorder()
			o311.writeAppError(rec, httptest.NewRequest(http.MethodPost, "/open311/v2/requests.json", nil), formatJSON, tt.err)
			require.Equal(t, tt.http, rec.Code, "Open311: %s", rec.Body)
			var body []open311Error
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			want := []open311Error{}
			for _, says := range strings.Split(tt.says, "|") {
				want = append(want, open311Error{Code: tt.http, Description: says})
			}
			require.Equal(t, want, body, "one entry per problem")
			require.NotContains(t, rec.Body.String(), secret)
			require.NotContains(t, st.Message(), secret)
		})
	}
	// A client mistake is never a 5xx.
	for _, err := range []error{invalid, app.ErrPayloadMismatch, app.ErrInProgress, app.ErrNotFound} {
		require.Less(t, server.HTTPStatus(status.Code(server.ToStatus(context.Background(), err, ErrorMappings(), nil))), 500, "%v", err)
	}
}
