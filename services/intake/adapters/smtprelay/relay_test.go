package smtprelay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/services/intake/app"
	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// sink is an SMTP server that keeps what it receives, or refuses every
// recipient with refuse.
type sink struct {
	refuse *smtp.SMTPError
	got    chan []byte
}

type sinkSession struct{ s *sink }

func (s sinkSession) Reset()                               { _ = s }
func (s sinkSession) Logout() error                        { return nil }
func (s sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s sinkSession) Rcpt(string, *smtp.RcptOptions) error {
	if s.s.refuse != nil {
		return s.s.refuse
	}
	return nil
}
func (s sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.s.got <- b
	return err
}

func startSink(t *testing.T, refuse *smtp.SMTPError) (*sink, string, int) {
	t.Helper()
	s := &sink{refuse: refuse, got: make(chan []byte, 1)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return sinkSession{s}, nil }))
	srv.Domain = "sink"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	return s, host, p
}

func newRelay(t *testing.T, host string, port int) *Relay {
	t.Helper()
	r, err := New(Config{Host: host, Port: port, Security: "none", From: &gomail.Address{Name: "Kontaktcenter", Address: "kontakt@kommun.se"},
		Timeout: 10 * time.Second, Clock: func() time.Time { return time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC) }})
	require.NoError(t, err)
	return r
}

func TestSendWritesASwedishMail(t *testing.T) {
	s, host, port := startSink(t, nil)
	r := newRelay(t, host, port)
	err := r.Send(context.Background(), domain.OutgoingMail{
		To: "asa@example.se", Subject: "Svar på ditt ärende KC-2026-000042", Body: "Hålet är lagat.\nMed vänlig hälsning\n",
		MessageID: "<abc@kommun.se>", InReplyTo: "<ack@kommun.se>", Automatic: true,
	})
	require.NoError(t, err)
	raw := <-s.got
	ent, err := message.Read(bytes.NewReader(raw))
	require.NoError(t, err)
	h := gomail.Header{Header: ent.Header}
	subject, err := h.Subject()
	require.NoError(t, err)
	require.Equal(t, "Svar på ditt ärende KC-2026-000042", subject)
	require.NotContains(t, string(raw), "Svar på", "the subject is encoded (RFC 2047), not raw UTF-8")
	body, err := io.ReadAll(ent.Body)
	require.NoError(t, err)
	require.Equal(t, "Hålet är lagat.\r\nMed vänlig hälsning\r\n", string(body))
	require.Equal(t, "quoted-printable", ent.Header.Get("Content-Transfer-Encoding"))
	require.Equal(t, "<abc@kommun.se>", h.Get("Message-Id"))
	require.Equal(t, "<ack@kommun.se>", h.Get("In-Reply-To"))
	require.Equal(t, "<ack@kommun.se>", h.Get("References"))
	require.Equal(t, "auto-replied", h.Get("Auto-Submitted"))
	from, err := h.AddressList("From")
	require.NoError(t, err)
	require.Equal(t, "kontakt@kommun.se", from[0].Address)
}

func TestSendTellsARefusalFromATemporaryFailure(t *testing.T) {
	mail := domain.OutgoingMail{To: "x@example.se", Subject: "s", Body: "b", MessageID: "<m@kommun.se>"}
	tests := []struct {
		name    string
		refuse  *smtp.SMTPError
		refused bool
	}{
		{"5xx is a refusal", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user x@example.se"}, true},
		{"4xx is temporary", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, host, port := startSink(t, tt.refuse)
			err := newRelay(t, host, port).Send(context.Background(), mail)
			require.Error(t, err)
			require.Equal(t, tt.refused, errors.Is(err, app.ErrRelayRefused))
			require.NotContains(t, err.Error(), "x@example.se", "the relay's words, which may quote the address, are not kept")
		})
	}
	t.Run("no relay is temporary", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		host, port, _ := net.SplitHostPort(ln.Addr().String())
		require.NoError(t, ln.Close())
		p, _ := strconv.Atoi(port)
		err = newRelay(t, host, p).Send(context.Background(), mail)
		require.Error(t, err)
		require.False(t, errors.Is(err, app.ErrRelayRefused))
	})
}
