package ports

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/kontakt-se/kontakt/pkg/server"
)

// Every code a submission can end with has its class, and an Open311
// answer of the code's HTTP status the same class, except where HTTP
// says less (FailedPrecondition and OutOfRange are 400 there).
func TestSubmissionOutcomes(t *testing.T) {
	for code, want := range map[codes.Code]string{
		codes.OK:                 OutcomeAccepted,
		codes.InvalidArgument:    OutcomeInvalid,
		codes.NotFound:           OutcomeInvalid,
		codes.Unauthenticated:    OutcomeDenied,
		codes.PermissionDenied:   OutcomeDenied,
		codes.ResourceExhausted:  OutcomeRateLimited,
		codes.FailedPrecondition: OutcomeConflict,
		codes.Aborted:            OutcomeConflict,
		codes.AlreadyExists:      OutcomeConflict,
		codes.Unavailable:        OutcomeUnavailable,
		codes.DeadlineExceeded:   OutcomeUnavailable,
		codes.Canceled:           OutcomeCanceled,
		codes.Internal:           OutcomeError,
		codes.Unknown:            OutcomeError,
	} {
		require.Equal(t, want, outcomeOf(code, false), code.String())
		if code != codes.FailedPrecondition && code != codes.ResourceExhausted {
			require.Equal(t, want, outcomeOfHTTP(server.HTTPStatus(code), false), code.String())
		}
	}
	require.Equal(t, OutcomeReplayed, outcomeOf(codes.OK, true))
	require.Equal(t, OutcomeReplayed, outcomeOfHTTP(http.StatusCreated, true))
	require.Equal(t, OutcomeTooLarge, outcomeOfHTTP(http.StatusRequestEntityTooLarge, false))
	require.Equal(t, OutcomeRateLimited, outcomeOfHTTP(http.StatusTooManyRequests, false))
	require.Equal(t, OutcomeInvalid, outcomeOfHTTP(http.StatusUnsupportedMediaType, false))
}

func TestSubmissionMetricsStartAtZeroAndCountReplays(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewSubmissionMetrics(reg)
	require.NoError(t, err)
	n, err := testutil.GatherAndCount(reg, "kontakt_intake_submissions_total")
	require.NoError(t, err)
	require.Equal(t, 3*len(outcomes), n, "every channel (form, open311, mail) and outcome from the start")

	m.observeForm(codes.OK, metadata.Pairs(ReplayedHeader, "true"))
	m.observeForm(codes.OK, nil)
	m.observeForm(codes.InvalidArgument, nil)
	require.Equal(t, 1.0, testutil.ToFloat64(m.total.WithLabelValues(ChannelForm, OutcomeReplayed)))
	require.Equal(t, 1.0, testutil.ToFloat64(m.total.WithLabelValues(ChannelForm, OutcomeAccepted)))
	require.Equal(t, 1.0, testutil.ToFloat64(m.total.WithLabelValues(ChannelForm, OutcomeInvalid)))
	require.Zero(t, testutil.ToFloat64(m.total.WithLabelValues(ChannelOpen311, OutcomeAccepted)))
}
