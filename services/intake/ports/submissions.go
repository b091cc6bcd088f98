package ports

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
)

// Channels of public submissions, as the metric names them.
const (
	ChannelForm    = "form"    // SubmitForm, over any protocol
	ChannelOpen311 = "open311" // a GeoReport v2 POST requests
	ChannelMail    = "mail"    // a mail delivered to the receiver (ports/mailin)
)

// Outcomes of a public submission. A refusal is named by its class,
// never by what was refused: the labels hold nothing a citizen wrote.
const (
	OutcomeAccepted    = "accepted"     // a new case
	OutcomeReplayed    = "replayed"     // a retry answered with the first answer
	OutcomeInvalid     = "invalid"      // bad input: a field, the format, an unknown service
	OutcomeDenied      = "denied"       // no, or no valid, form-client credential
	OutcomeRateLimited = "rate_limited" // over limits.public_submissions
	OutcomeTooLarge    = "too_large"    // over limits.max_request_bytes
	OutcomeConflict    = "conflict"     // an idempotency key reused for another form, or one still in progress
	OutcomeUnavailable = "unavailable"  // NATS briefly away or too slow; the client retries
	OutcomeCanceled    = "canceled"     // the client went away
	OutcomeError       = "error"        // kontakt's fault
	OutcomeDropped     = "dropped"      // mail a program sent (an auto-reply, a bounce): accepted, no case
)

var outcomes = []string{OutcomeAccepted, OutcomeReplayed, OutcomeInvalid, OutcomeDenied, OutcomeRateLimited,
	OutcomeTooLarge, OutcomeConflict, OutcomeUnavailable, OutcomeCanceled, OutcomeError, OutcomeDropped}

// SubmissionMetrics counts public submissions (e-service forms and
// Open311 posts) by channel and outcome, for the operator: a rise of
// "invalid" after a form was changed, "denied" when a credential expired,
// "replayed" when forms time out and retry.
type SubmissionMetrics struct {
	total *prometheus.CounterVec
}

// NewSubmissionMetrics registers the counter on reg, with every channel
// and outcome at zero, so a dashboard's rates exist from the start.
func NewSubmissionMetrics(reg prometheus.Registerer) (*SubmissionMetrics, error) {
	m := &SubmissionMetrics{total: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kontakt_intake_submissions_total",
		Help: "Public submissions (e-service forms, Open311 posts, mail) by channel and outcome.",
	}, []string{"channel", "outcome"})}
	if err := reg.Register(m.total); err != nil {
		return nil, err
	}
	for _, ch := range []string{ChannelForm, ChannelOpen311, ChannelMail} {
		for _, o := range outcomes {
			m.total.WithLabelValues(ch, o)
		}
	}
	return m, nil
}

func (m *SubmissionMetrics) observe(channel, outcome string) {
	if m != nil {
		m.total.WithLabelValues(channel, outcome).Inc()
	}
}

// ObserveMail counts one mail delivery's outcome (ports/mailin).
func (m *SubmissionMetrics) ObserveMail(outcome string) { m.observe(ChannelMail, outcome) }

// observeForm is the server's CallObserver for SubmitForm: the code the
// client got, and the replay header the handler set.
func (m *SubmissionMetrics) observeForm(code codes.Code, header metadata.MD) {
	m.observe(ChannelForm, outcomeOf(code, len(header.Get(ReplayedHeader)) > 0))
}

// outcomeOf classes a call's status code.
func outcomeOf(code codes.Code, replayed bool) string {
	switch code {
	case codes.OK:
		if replayed {
			return OutcomeReplayed
		}
		return OutcomeAccepted
	case codes.InvalidArgument, codes.OutOfRange, codes.NotFound:
		return OutcomeInvalid
	case codes.Unauthenticated, codes.PermissionDenied:
		return OutcomeDenied
	case codes.ResourceExhausted:
		// Over gRPC a message over the size limit is refused by grpc-go
		// before any interceptor: what reaches here is the rate limit.
		return OutcomeRateLimited
	case codes.FailedPrecondition, codes.Aborted, codes.AlreadyExists:
		return OutcomeConflict
	case codes.Unavailable, codes.DeadlineExceeded:
		return OutcomeUnavailable
	case codes.Canceled:
		return OutcomeCanceled
	default:
		return OutcomeError
	}
}

// outcomeOfHTTP classes an Open311 answer's status.
func outcomeOfHTTP(status int, replayed bool) string {
	switch {
	case status < 300:
		if replayed {
			return OutcomeReplayed
		}
		return OutcomeAccepted
	case status == http.StatusRequestEntityTooLarge:
		return OutcomeTooLarge
	case status == http.StatusTooManyRequests:
		return OutcomeRateLimited
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return OutcomeDenied
	case status == http.StatusConflict, status == http.StatusPreconditionFailed:
		return OutcomeConflict
	case status == http.StatusServiceUnavailable, status == http.StatusGatewayTimeout:
		return OutcomeUnavailable
	case status == 499:
		return OutcomeCanceled
	case status < 500:
		return OutcomeInvalid
	default:
		return OutcomeError
	}
}

// submitFormMethod is the method the form channel counts.
var submitFormMethod = intakev1.IntakeService_SubmitForm_FullMethodName
