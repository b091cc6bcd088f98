// Package smtprelay sends intake's mail through the municipality's mail
// relay (mail.outbound) with the SMTP client of github.com/emersion/go-smtp
// and messages written by github.com/emersion/go-message: UTF-8 text,
// quoted-printable, RFC 2047 subjects, so å, ä and ö arrive intact.
package smtprelay

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/kontakt-se/kontakt/services/intake/app"
	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// Config names the relay.
type Config struct {
	Host string
	Port int
	// Security is "starttls", "tls" or "none".
	Security string
	// TLS verifies the relay (RootCAs; ServerName defaults to Host).
	TLS *tls.Config
	// Username and Password authenticate with AUTH PLAIN; empty: none.
	Username, Password string
	// From is the sender.
	From *mail.Address
	// Timeout bounds one delivery, connection included.
	Timeout time.Duration
	// Clock dates the mails.
	Clock func() time.Time
}

// Relay is app.Relay over SMTP.
type Relay struct{ cfg Config }

// New checks the configuration and returns the relay.
func New(cfg Config) (*Relay, error) {
	switch cfg.Security {
	case "starttls", "tls", "none":
	default:
		return nil, fmt.Errorf("smtprelay: unknown security %q", cfg.Security)
	}
	if cfg.From == nil || cfg.Host == "" {
		return nil, errors.New("smtprelay: host and sender are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLS != nil {
		tc = cfg.TLS.Clone()
	}
	if tc.ServerName == "" {
		tc.ServerName = cfg.Host
	}
	cfg.TLS = tc
	return &Relay{cfg: cfg}, nil
}

// Send delivers one mail. A 5xx reply wraps app.ErrRelayRefused; every
// other failure is temporary.
func (r *Relay) Send(ctx context.Context, m domain.OutgoingMail) error {
	var msg bytes.Buffer
	if err := r.write(&msg, m); err != nil {
		return fmt.Errorf("%w: compose: %w", app.ErrRelayRefused, err)
	}
	defer clear(msg.Bytes())
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	addr := net.JoinHostPort(r.cfg.Host, strconv.Itoa(r.cfg.Port))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("relay: connect: %w", err)
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	var c *smtp.Client
	switch r.cfg.Security {
	case "tls":
		c = smtp.NewClient(tls.Client(conn, r.cfg.TLS))
	case "starttls":
		if c, err = smtp.NewClientStartTLS(conn, r.cfg.TLS); err != nil {
			_ = conn.Close()
			return classify("starttls", err)
		}
	default:
		c = smtp.NewClient(conn)
	}
	defer func() { _ = c.Close() }()
	if r.cfg.Username != "" {
		if err := c.Auth(sasl.NewPlainClient("", r.cfg.Username, r.cfg.Password)); err != nil {
			return classify("auth", err)
		}
	}
	if err := c.SendMail(r.cfg.From.Address, []string{m.To}, &msg); err != nil {
		return classify("send", err)
	}
	_ = c.Quit()
	return nil
}

// classify wraps a permanent SMTP refusal with app.ErrRelayRefused. The
// relay's own words are not kept: they may quote the address.
func classify(step string, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		if se.Code >= 500 {
			return fmt.Errorf("%w: %s: %d %d.%d.%d", app.ErrRelayRefused, step, se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		return fmt.Errorf("relay: %s: %d", step, se.Code)
	}
	return fmt.Errorf("relay: %s: %w", step, err)
}

// write composes the message: plain UTF-8 text, quoted-printable.
func (r *Relay) write(w io.Writer, m domain.OutgoingMail) error {
	var h mail.Header
	h.SetDate(r.cfg.Clock())
	h.SetAddressList("From", []*mail.Address{r.cfg.From})
	h.SetAddressList("To", []*mail.Address{{Address: m.To}})
	h.SetSubject(m.Subject)
	h.Set("Message-Id", m.MessageID)
	h.Set("MIME-Version", "1.0")
	if m.InReplyTo != "" {
		h.Set("In-Reply-To", m.InReplyTo)
		h.Set("References", m.InReplyTo)
	}
	if m.Automatic {
		// RFC 3834: an automatic reply that other robots must not answer.
		h.Set("Auto-Submitted", "auto-replied")
		h.Set("X-Auto-Response-Suppress", "All")
	}
	h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	mw, err := message.CreateWriter(w, h.Header)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(mw, m.Body); err != nil {
		return err
	}
	return mw.Close()
}
