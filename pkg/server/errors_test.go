package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestToStatus(t *testing.T) {
	errConflict := errors.New("case was changed by someone else")
	errPrecondition := errors.New("precondition failed")
	mappings := []ErrorMapping{
		{Target: errPrecondition, Code: codes.FailedPrecondition, Explain: true},
		{Target: errCaseNotFound, Code: codes.NotFound},
		{Target: errConflict, Code: codes.Aborted},
		{Target: nil, Code: codes.NotFound},       // ignored
		{Target: errors.New("x"), Code: codes.OK}, // ignored
	}

	tests := []struct {
		name     string
		err      error
		wantNil  bool
		wantCode codes.Code
		wantMsg  string
		wantLog  bool
	}{
		{name: "nil", err: nil, wantNil: true},
		{name: "sentinel", err: errCaseNotFound, wantCode: codes.NotFound, wantMsg: "case not found"},
		{name: "wrapped sentinel keeps only the sentinel's message",
			err:      fmt.Errorf("case 4711 for 19121212-1212: %w", errCaseNotFound),
			wantCode: codes.NotFound, wantMsg: "case not found"},
		{name: "explained mapping shows the reason",
			err:      fmt.Errorf("%w: a closed case cannot be forwarded until reopened", errPrecondition),
			wantCode: codes.FailedPrecondition, wantMsg: "precondition failed: a closed case cannot be forwarded until reopened"},
		{name: "second mapping", err: fmt.Errorf("save: %w", errConflict), wantCode: codes.Aborted, wantMsg: "case was changed by someone else"},
		{name: "joined errors match", err: errors.Join(errors.New("a"), errConflict), wantCode: codes.Aborted, wantMsg: "case was changed by someone else"},
		{name: "status passes through", err: status.Error(codes.PermissionDenied, "not your case"), wantCode: codes.PermissionDenied, wantMsg: "not your case"},
		{name: "wrapped status passes through without wrapping text",
			err:      fmt.Errorf("call routing for 19121212-1212: %w", status.Error(codes.Unavailable, "routing unavailable")),
			wantCode: codes.Unavailable, wantMsg: "routing unavailable"},
		{name: "context canceled", err: fmt.Errorf("read stream: %w", context.Canceled), wantCode: codes.Canceled, wantMsg: "context canceled"},
		{name: "deadline", err: fmt.Errorf("read stream: %w", context.DeadlineExceeded), wantCode: codes.DeadlineExceeded, wantMsg: "context deadline exceeded"},
		{name: "unknown error is hidden and logged", err: errors.New(internalText), wantCode: codes.Internal, wantMsg: "internal error", wantLog: true},
		{name: "unmatched sentinel of an ignored mapping", err: errors.New("x"), wantCode: codes.Internal, wantMsg: "internal error", wantLog: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &syncBuffer{}
			logger := slog.New(slog.NewJSONHandler(logs, nil))

			got := ToStatus(context.Background(), tt.err, mappings, logger)
			if tt.wantNil {
				require.NoError(t, got)
				return
			}
			st, ok := status.FromError(got)
			require.True(t, ok, "result must be a gRPC status, got %T", got)
			require.Equal(t, tt.wantCode, st.Code())
			require.Equal(t, tt.wantMsg, st.Message())
			require.NotContains(t, st.Message(), "19121212")
			if tt.wantLog {
				require.Contains(t, logs.String(), tt.err.Error())
			} else {
				require.Empty(t, logs.String())
			}
		})
	}
}

func TestInvalidArgument(t *testing.T) {
	tests := []struct {
		name       string
		violations []FieldViolation
	}{
		{name: "no violations"},
		{name: "violations", violations: []FieldViolation{
			{Field: "contact.email", Description: "must be an e-mail address"},
			{Field: "description", Description: "must not be empty"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(InvalidArgument("invalid request", tt.violations...))
			require.Equal(t, codes.InvalidArgument, st.Code())
			require.Equal(t, "invalid request", st.Message())

			var got []*errdetails.BadRequest_FieldViolation
			for _, d := range st.Details() {
				br, ok := d.(*errdetails.BadRequest)
				require.True(t, ok, "unexpected detail %T", d)
				got = append(got, br.GetFieldViolations()...)
			}
			require.Len(t, got, len(tt.violations))
			for i, v := range tt.violations {
				require.True(t, proto.Equal(&errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description}, got[i]))
			}
		})
	}
}

// TestToStatusTransientNATS checks that NATS being briefly away (a leader
// election, a reconnect) reaches the client as Unavailable, which it may
// retry, and that other unmapped errors stay Internal.
func TestToStatusTransientNATS(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"timeout", fmt.Errorf("casenumber: next: %w", nats.ErrTimeout), codes.Unavailable},
		{"no responders", fmt.Errorf("kv get: %w", nats.ErrNoResponders), codes.Unavailable},
		{"no stream response", fmt.Errorf("publish: %w", jetstream.ErrNoStreamResponse), codes.Unavailable},
		{"JetStream 503", fmt.Errorf("kv: %w", &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}), codes.Unavailable},
		{"JetStream 400", fmt.Errorf("kv: %w", &jetstream.APIError{Code: 400, Description: "bad request"}), codes.Internal},
		{"other", errors.New("boom"), codes.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ToStatus(context.Background(), tc.err, nil, slog.New(slog.DiscardHandler))
			require.Equal(t, tc.want, status.Code(err))
			require.NotContains(t, status.Convert(err).Message(), "casenumber")
		})
	}
}

// fieldError is a typed error of the kind MapAs is for: it names a field.
type fieldError struct{ field, reason string }

func (e *fieldError) Error() string { return e.field + ": " + e.reason }

func TestMapAs(t *testing.T) {
	table := []ErrorMapping{
		MapAs(func(e *fieldError) error {
			return InvalidArgument("invalid request", FieldViolation{Field: e.field, Description: e.reason})
		}),
		MapAs(func(*lyingError) error { return errors.New("not a status: " + internalText) }),
		{Target: errCaseNotFound, Code: codes.NotFound},
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))

	err := ToStatus(context.Background(), fmt.Errorf("rectify case for 19121212-1212: %w", &fieldError{field: "contact.email", reason: "is not an e-mail address"}), table, logger)
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code())
	require.Equal(t, "invalid request", st.Message(), "the wrapping stays on the server")
	require.Len(t, st.Details(), 1)
	br := st.Details()[0].(*errdetails.BadRequest)
	require.Equal(t, "contact.email", br.GetFieldViolations()[0].GetField())

	require.Equal(t, codes.NotFound, status.Code(ToStatus(context.Background(), errCaseNotFound, table, logger)), "the other mappings still apply")

	err = ToStatus(context.Background(), &lyingError{}, table, logger)
	require.Equal(t, codes.Internal, status.Code(err), "a mapping that builds no status is our fault")
	require.NotContains(t, status.Convert(err).Message(), "hunter2")
	require.Len(t, logLines(logs.String(), "unmapped error"), 1)
}

type lyingError struct{}

func (*lyingError) Error() string { return "lying" }
