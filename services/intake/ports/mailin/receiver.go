// Package mailin is intake's e-mail edge: an SMTP (or LMTP) receiver that
// the municipality's mail relay delivers to. It reads each message in
// memory (never spooled to disk: a mail is personal data as a whole),
// parses the MIME, and hands the mail to intake's RegisterMail, which
// drops mail a program sent and registers the rest as cases. Replies are
// chosen so that relays do the right thing: mail to an address that is
// not the contact centre's is refused at RCPT, an oversized message with
// 552, a sender over its rate with 450 (try later), our own failures with
// 451 (the relay keeps the mail and tries again).
package mailin

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"google.golang.org/grpc/codes"

	"github.com/kontakt-se/kontakt/pkg/blobstore"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/ratelimit"
	"github.com/kontakt-se/kontakt/pkg/server"
	"github.com/kontakt-se/kontakt/services/intake/app"
	"github.com/kontakt-se/kontakt/services/intake/domain"
	"github.com/kontakt-se/kontakt/services/intake/ports"
)

// Registrar is what the receiver needs from intake's application layer.
type Registrar interface {
	KnowsMailbox(address string) bool
	RegisterMail(ctx context.Context, m domain.Mail) (app.Registered, error)
}

// Config configures the receiver (mail.inbound).
type Config struct {
	// Listen is host:port.
	Listen string
	// LMTP speaks LMTP instead of SMTP.
	LMTP bool
	// Hostname is the name in the greeting.
	Hostname string
	// MaxMessageBytes bounds one message.
	MaxMessageBytes int64
	// PerSender limits the messages of one sender address.
	PerSender ratelimit.Limit
	// TLS, when set, is offered with STARTTLS.
	TLS *tls.Config
	// Observe, when set, counts each delivery's outcome (one of the
	// ports.Outcome* codes).
	Observe func(outcome string)
}

// registerTimeout bounds one registration: the relay waits for the
// answer to DATA, and one that waits too long sends the mail again.
const registerTimeout = 60 * time.Second

// Receiver is the SMTP/LMTP server.
type Receiver struct {
	cfg     Config
	app     Registrar
	limiter *ratelimit.Limiter
	logger  *slog.Logger
	addr    chan net.Addr
	// observe counts a delivery's outcome in intake's public-submission
	// metric (channel mail): a fixed code, never an address.
	observe func(outcome string)
}

// New builds a receiver; Run serves it.
func New(cfg Config, a Registrar, logger *slog.Logger) (*Receiver, error) {
	if cfg.Hostname == "" {
		cfg.Hostname = "kontakt"
	}
	lim, err := ratelimit.New(ratelimit.Config{PerCredential: cfg.PerSender})
	if err != nil {
		return nil, fmt.Errorf("mail receiver rate limit: %w", err)
	}
	observe := cfg.Observe
	if observe == nil {
		observe = func(string) {}
	}
	return &Receiver{cfg: cfg, app: a, limiter: lim, logger: logger, addr: make(chan net.Addr, 1), observe: observe}, nil
}

// Addr returns the address the receiver listens on, once it does.
func (r *Receiver) Addr(ctx context.Context) (net.Addr, error) {
	select {
	case a := <-r.addr:
		r.addr <- a
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Run listens and serves until ctx ends, then lets deliveries under way
// finish (a relay that is cut off mid-DATA sends the mail again).
func (r *Receiver) Run(ctx context.Context) error {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{r: r, ctx: ctx}, nil
	}))
	srv.Addr = r.cfg.Listen
	srv.LMTP = r.cfg.LMTP
	srv.Domain = r.cfg.Hostname
	srv.MaxMessageBytes = r.cfg.MaxMessageBytes
	srv.MaxRecipients = 50
	// Mail with UTF-8 in its headers (a subject typed with å, ä and ö and
	// not encoded by RFC 2047) is SMTPUTF8 mail, which a relay such as
	// Postfix refuses to pass on to a server that does not offer it:
	// the parser reads such headers as they are.
	srv.EnableSMTPUTF8 = true
	srv.ReadTimeout = 5 * time.Minute
	srv.WriteTimeout = time.Minute
	srv.TLSConfig = r.cfg.TLS
	// The library's own log names the peer and the error, never the mail.
	srv.ErrorLog = slogPrinter{r.logger}
	ln, err := net.Listen("tcp", r.cfg.Listen)
	if err != nil {
		return fmt.Errorf("mail receiver: %w", err)
	}
	r.addr <- ln.Addr()
	r.logger.Info("mail receiver listening", "addr", ln.Addr().String(), "lmtp", r.cfg.LMTP, "starttls", r.cfg.TLS != nil)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("mail receiver: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	return nil
}

// slogPrinter is go-smtp's logger on slog, at WARN.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) {
	p.l.Warn("mail receiver", "detail", fmt.Sprintf(format, v...))
}
func (p slogPrinter) Println(v ...any) { p.l.Warn("mail receiver", "detail", fmt.Sprint(v...)) }

// session is one SMTP transaction at a time on one connection.
type session struct {
	r       *Receiver
	ctx     context.Context
	sender  string
	mailbox string
}

// Log levels follow the one level policy (server.Level): a mail
// registered or dropped is INFO, a refusal WARN (the sender's mistake,
// worth seeing when it repeats), kontakt's own fault ERROR.

// Replies the receiver gives, besides the library's own.
var (
	replyRateLimited = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Too many messages from this sender, try again later"}
	replyNoMailbox   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such mailbox here"}
	replyUnreadable  = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message cannot be read"}
	replyTemporary   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
	replyNoRecipient = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
)

func (s *session) Reset()        { s.sender, s.mailbox = "", "" }
func (s *session) Logout() error { return nil }

// Mail takes the envelope sender and applies the per-sender limit, keyed
// by a hash of the address so the limiter's memory holds no address.
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	sum := sha256.Sum256([]byte(strings.ToLower(from)))
	if wait := s.r.limiter.Allow("sender:"+hex.EncodeToString(sum[:]), netip.Addr{}); wait > 0 {
		s.r.logger.Log(s.ctx, server.Level(codes.ResourceExhausted), "mail refused: sender over its rate", "retry_after_s", ratelimit.RetryAfterSeconds(wait))
		s.r.observe(ports.OutcomeRateLimited)
		return replyRateLimited
	}
	s.sender = from
	return nil
}

// Rcpt accepts only the contact centre's addresses. A mail to several of
// them is one case, recorded under the first.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !s.r.app.KnowsMailbox(to) {
		s.r.logger.Log(s.ctx, server.Level(codes.NotFound), "mail refused: recipient is not one of the contact centre's addresses")
		s.r.observe(ports.OutcomeInvalid)
		return replyNoMailbox
	}
	if s.mailbox == "" {
		s.mailbox = strings.ToLower(to)
	}
	return nil
}

// Data reads the message into memory (the library stops it at the size
// limit with 552), parses it and registers it.
func (s *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	defer clear(raw)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code == smtp.ErrDataTooLarge.Code {
			s.r.logger.Log(s.ctx, server.Level(codes.ResourceExhausted), "mail refused: larger than mail.inbound.max_message_bytes", "limit", s.r.cfg.MaxMessageBytes)
			s.r.observe(ports.OutcomeTooLarge)
		}
		return err
	}
	if s.mailbox == "" {
		return replyNoRecipient
	}
	m, err := parse(raw)
	if err != nil {
		s.r.logger.Log(s.ctx, server.Level(codes.InvalidArgument), "mail refused: not readable MIME")
		s.r.observe(ports.OutcomeInvalid)
		return replyUnreadable
	}
	m.EnvelopeSender, m.Mailbox = s.sender, s.mailbox
	ctx, cancel := context.WithTimeout(s.ctx, registerTimeout)
	defer cancel()
	reg, err := s.r.app.RegisterMail(ctx, m)
	return s.r.reply(reg, err)
}

// reply maps RegisterMail's outcome to an SMTP reply, in one table. Mail
// a program sent is accepted and dropped: refusing it would make the
// relay send a bounce, to a robot, which is the loop RFC 3834 warns of.
func (r *Receiver) reply(reg app.Registered, err error) error {
	var ve *domain.ValidationError
	switch {
	case err == nil && reg.Joined && reg.Replayed:
		r.observe(ports.OutcomeReplayed)
		r.logger.Info("reply delivered again: it joined its case before", "case_id", reg.CaseID)
		return nil
	case err == nil && reg.Joined:
		r.observe(ports.OutcomeAccepted)
		r.logger.Info("reply joined its case", "case_id", reg.CaseID, "reopened", reg.Reopened)
		return nil
	case err == nil && reg.Replayed:
		r.observe(ports.OutcomeReplayed)
		r.logger.Info("mail delivered again: it is the case it made before", "case_id", reg.CaseID)
		return nil
	case err == nil:
		r.observe(ports.OutcomeAccepted)
		r.logger.Info("mail registered as a case", "case_id", reg.CaseID)
		return nil
	case errors.Is(err, app.ErrAutomatedMail):
		r.observe(ports.OutcomeDropped)
		r.logger.Info("mail dropped: sent by a program", "rule", strings.TrimPrefix(err.Error(), app.ErrAutomatedMail.Error()+": "))
		return nil
	case errors.Is(err, app.ErrUnknownMailbox):
		r.observe(ports.OutcomeInvalid)
		return replyNoMailbox
	case errors.As(err, &ve):
		fields := make([]string, len(ve.Violations))
		for i, v := range ve.Violations {
			fields[i] = v.Field
		}
		r.logger.Log(context.Background(), server.Level(codes.InvalidArgument), "mail refused: breaks the intake rules", "fields", strings.Join(fields, ","))
		r.observe(ports.OutcomeInvalid)
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message not accepted: " + refusal(fields)}
	default:
		// The one level policy (server.Level): NATS briefly away is a
		// passing condition (WARN), anything else kontakt's fault (ERROR).
		code, outcome := codes.Internal, ports.OutcomeError
		if errors.Is(err, eventstore.ErrUnavailable) || errors.Is(err, blobstore.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			code, outcome = codes.Unavailable, ports.OutcomeUnavailable
		}
		r.logger.Log(context.Background(), server.Level(code), "mail not registered; the relay will try again", "error", err)
		r.observe(outcome)
		return replyTemporary
	}
}

// refusal says in the reply which part of the mail was wrong, in words a
// citizen reading the bounce understands.
func refusal(fields []string) string {
	for _, f := range fields {
		switch {
		case strings.HasPrefix(f, "case.contact.email"):
			return "the sender address cannot be read"
		case strings.HasSuffix(f, ".content_type"):
			return "an attachment is of a type not accepted (PDF, JPEG, PNG, HEIC, TIFF, plain text, e-mail, Word or ODF text)"
		case strings.HasPrefix(f, "case.attachments"):
			return fmt.Sprintf("at most %d attachments of at most %d MiB each are accepted", domain.MaxAttachments, domain.MaxAttachmentBytes>>20)
		}
	}
	return "it holds no text"
}
