package mailin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/ratelimit"
	"github.com/kontakt-se/kontakt/services/intake/app"
	"github.com/kontakt-se/kontakt/services/intake/domain"
	"github.com/kontakt-se/kontakt/services/intake/ports"
)

// fakeIntake records the mails it is given and answers with err.
type fakeIntake struct {
	mu    sync.Mutex
	mails []domain.Mail
	err   error
}

func (f *fakeIntake) KnowsMailbox(a string) bool { return strings.EqualFold(a, "kontakt@kommun.se") }

func (f *fakeIntake) RegisterMail(_ context.Context, m domain.Mail) (app.Registered, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mails = append(f.mails, m)
	if _, auto := m.Automated(); auto {
		return app.Registered{}, fmt.Errorf("%w: x", app.ErrAutomatedMail)
	}
	return app.Registered{CaseID: "c"}, f.err
}

func startReceiver(t *testing.T, f *fakeIntake, limit ratelimit.Limit) string {
	t.Helper()
	_, addr := startReceiverWith(t, f, limit)
	return addr
}

func startReceiverWith(t *testing.T, f *fakeIntake, limit ratelimit.Limit) (*Receiver, string) {
	t.Helper()
	return startReceiverConfig(t, f, Config{Listen: "127.0.0.1:0", MaxMessageBytes: 4096, PerSender: limit})
}

func startReceiverConfig(t *testing.T, f *fakeIntake, cfg Config) (*Receiver, string) {
	t.Helper()
	r, err := New(cfg, f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	defer acancel()
	addr, err := r.Addr(actx)
	require.NoError(t, err)
	return r, addr.String()
}

// code is the SMTP reply code of a client error (0 for none).
func code(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestReceiverReplies(t *testing.T) {
	f := &fakeIntake{}
	reg := prometheus.NewRegistry()
	sm, err := ports.NewSubmissionMetrics(reg)
	require.NoError(t, err)
	_, addr := startReceiverConfig(t, f, Config{Listen: "127.0.0.1:0", MaxMessageBytes: 4096, PerSender: ratelimit.Limit{PerMinute: 1, Burst: 3}, Observe: sm.ObserveMail})
	metrics := submissionsOf(t, reg)
	msg := crlf("From: anna@example.se\nSubject: Hej\n\nText\n")

	require.NoError(t, smtp.SendMail(addr, nil, "anna@example.se", []string{"Kontakt@Kommun.se"}, msg))
	require.Len(t, f.mails, 1)
	require.Equal(t, "kontakt@kommun.se", f.mails[0].Mailbox)
	require.Equal(t, "anna@example.se", f.mails[0].EnvelopeSender)

	err = smtp.SendMail(addr, nil, "anna@example.se", []string{"someone@elsewhere.se"}, msg)
	require.Equal(t, 550, code(err), "another recipient is refused: %v", err)

	big := crlf("From: anna@example.se\nSubject: Stor\n\n" + strings.Repeat(strings.Repeat("x", 70)+"\n", 80))
	err = smtp.SendMail(addr, nil, "anna@example.se", []string{"kontakt@kommun.se"}, big)
	require.Equal(t, 552, code(err), "an oversized message is refused: %v", err)

	// The null sender's bounce is accepted and dropped.
	require.NoError(t, smtp.SendMail(addr, nil, "", []string{"kontakt@kommun.se"}, msg))

	// anna has used three of her burst of three: the next is 450.
	err = smtp.SendMail(addr, nil, "ANNA@example.se", []string{"kontakt@kommun.se"}, msg)
	require.Equal(t, 450, code(err), "a sender over its rate is told to try later: %v", err)
	// Another sender is not affected.
	require.NoError(t, smtp.SendMail(addr, nil, "bo@example.se", []string{"kontakt@kommun.se"}, msg))

	for outcome, want := range map[string]float64{
		ports.OutcomeAccepted: 2, ports.OutcomeDropped: 1, ports.OutcomeInvalid: 1, ports.OutcomeTooLarge: 1, ports.OutcomeRateLimited: 1, ports.OutcomeUnavailable: 0,
	} {
		require.Equal(t, want, testutil.ToFloat64(metrics.WithLabelValues(ports.ChannelMail, outcome)), outcome)
	}
}

func TestReceiverFailuresAreTemporary(t *testing.T) {
	f := &fakeIntake{err: eventstore.ErrUnavailable}
	addr := startReceiver(t, f, ratelimit.Limit{})
	err := smtp.SendMail(addr, nil, "anna@example.se", []string{"kontakt@kommun.se"}, crlf("From: anna@example.se\nSubject: Hej\n\nText\n"))
	require.Equal(t, 451, code(err), "our failure makes the relay try again: %v", err)
}

func TestReceiverSpeaksLMTP(t *testing.T) {
	f := &fakeIntake{}
	_, addr := startReceiverConfig(t, f, Config{Listen: "127.0.0.1:0", LMTP: true, MaxMessageBytes: 4096})
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	c := gosmtp.NewClientLMTP(conn)
	defer func() { _ = c.Close() }()
	require.NoError(t, c.Hello("relay.kommun.se"))
	require.NoError(t, c.Mail("anna@example.se", nil))
	require.NoError(t, c.Rcpt("kontakt@kommun.se", nil))
	w, err := c.Data()
	require.NoError(t, err)
	_, err = w.Write(crlf("From: anna@example.se\nSubject: Via LMTP\n\nText\n"))
	require.NoError(t, err)
	statuses, err := w.CloseWithLMTPResponse()
	require.NoError(t, err)
	require.Len(t, statuses, 1, "one status per recipient")
	require.Len(t, f.mails, 1)
	require.Equal(t, "Via LMTP", f.mails[0].Subject)
}

// submissionsOf finds the public-submission counter in a registry, to
// read it by label.
func submissionsOf(t *testing.T, reg *prometheus.Registry) *prometheus.CounterVec {
	t.Helper()
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kontakt_intake_submissions_total", Help: "Public submissions (e-service forms, Open311 posts, mail) by channel and outcome."}, []string{"channel", "outcome"})
	err := reg.Register(v)
	var are prometheus.AlreadyRegisteredError
	require.ErrorAs(t, err, &are)
	return are.ExistingCollector.(*prometheus.CounterVec)
}
