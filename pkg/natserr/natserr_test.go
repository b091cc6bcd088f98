package natserr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/natserr"
)

func api(status int, code natserr.Code) error {
	return fmt.Errorf("publish: %w", &jetstream.APIError{Code: status, ErrorCode: code, Description: "from the server"})
}

func TestPredicates(t *testing.T) {
	type want struct{ wrongLast, notFound, subjectFull, transient, refusal bool }
	tests := []struct {
		name string
		err  error
		want want
	}{
		{"wrong last sequence, single server", api(400, natserr.WrongLastSequence), want{wrongLast: true, refusal: true}},
		{"wrong last sequence, replicated stream", api(400, natserr.WrongLastSequenceConstant), want{wrongLast: true, refusal: true}},
		{"the client's key-exists sentinel carries 10071", fmt.Errorf("kv create: %w", jetstream.ErrKeyExists), want{wrongLast: true, refusal: true}},
		{"no message, as the server's code", api(404, natserr.MessageNotFound), want{notFound: true, refusal: true}},
		{"no message, as the client's sentinel", fmt.Errorf("get: %w", jetstream.ErrMsgNotFound), want{notFound: true, refusal: true}},
		{"a subject at its per-subject limit", &jetstream.APIError{Code: 503, ErrorCode: natserr.StoreFailed, Description: "maximum messages per subject exceeded"}, want{subjectFull: true, transient: true}},
		{"another store failure", &jetstream.APIError{Code: 503, ErrorCode: natserr.StoreFailed, Description: "disk full"}, want{transient: true}},
		{"stream not found", fmt.Errorf("info: %w", jetstream.ErrStreamNotFound), want{refusal: true}},
		{"JetStream 503", api(503, 10008), want{transient: true}},
		{"JetStream not enabled (a 503)", jetstream.ErrJetStreamNotEnabled, want{transient: true}},
		{"a server-side time-out (408)", api(408, 0), want{transient: true}},
		{"a server-side time-out (504)", api(504, 0), want{transient: true}},
		{"a duplicate being stored right now", api(409, natserr.DuplicateInProcess), want{transient: true}},
		{"request timed out", fmt.Errorf("publish: %w", nats.ErrTimeout), want{transient: true}},
		{"no responders during a leader election", nats.ErrNoResponders, want{transient: true}},
		{"no stream response", jetstream.ErrNoStreamResponse, want{transient: true}},
		{"reconnecting", nats.ErrConnectionReconnecting, want{transient: true}},
		{"disconnected", nats.ErrDisconnected, want{transient: true}},
		{"closed connection", nats.ErrConnectionClosed, want{transient: true}},
		{"a NATS request's own deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), want{transient: true}},
		{"the caller cancelled", context.Canceled, want{}},
		{"a cancelled deadline is the caller's", errors.Join(context.Canceled, context.DeadlineExceeded), want{}},
		{"something else", errors.New("disk on fire"), want{}},
		{"nil", nil, want{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := want{
				wrongLast:   natserr.IsWrongLastSequence(tt.err),
				notFound:    natserr.IsMessageNotFound(tt.err),
				subjectFull: natserr.IsSubjectFull(tt.err),
				transient:   natserr.IsTransient(tt.err),
				refusal:     natserr.IsRefusal(tt.err),
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestIs(t *testing.T) {
	err := api(400, natserr.AtomicPublishDisabled)
	require.True(t, natserr.Is(err, natserr.AtomicPublishIncomplete, natserr.AtomicPublishDisabled))
	require.False(t, natserr.Is(err, natserr.AtomicPublishIncomplete))
	require.False(t, natserr.Is(errors.New("not an API error"), natserr.AtomicPublishDisabled))
	a, ok := natserr.APIError(err)
	require.True(t, ok)
	require.Equal(t, natserr.AtomicPublishDisabled, a.ErrorCode)
}

// The constants are the server's codes: the ones the client also names
// must agree with it.
func TestCodesAgreeWithTheClient(t *testing.T) {
	require.Equal(t, jetstream.JSErrCodeMessageNotFound, natserr.MessageNotFound)
	require.Equal(t, jetstream.JSErrCodeStreamMessageExceedsMaximum, natserr.MessageExceedsMaximum)
	require.Equal(t, jetstream.JSErrCodeStreamNotFound, natserr.StreamNotFound)
	require.Equal(t, jetstream.JSErrCodeStreamWrongLastSequence, natserr.WrongLastSequence)
	require.Equal(t, jetstream.JSErrCodeStreamWrongLastSequenceConstant, natserr.WrongLastSequenceConstant)
}
