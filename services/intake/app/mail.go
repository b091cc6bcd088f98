package app

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// Errors of the e-mail channel; the receiver maps them to SMTP replies.
var (
	// ErrAutomatedMail means a program sent the mail (an auto-reply, a
	// bounce, a mailing list): it is accepted and dropped, never a case.
	ErrAutomatedMail = errors.New("mail sent by a program")
	// ErrUnknownMailbox means the mail was not sent to one of the
	// contact centre's addresses.
	ErrUnknownMailbox = errors.New("not one of the contact centre's addresses")
)

// Mailbox is what a mail to one of the contact centre's addresses
// becomes: the case type and category (mail.inbound.addresses).
type Mailbox struct {
	Type     casev1.CaseType
	Category string
}

// KnowsMailbox says whether address (in any case) is one of the contact
// centre's addresses, so a receiver refuses other recipients at once.
func (s *Service) KnowsMailbox(address string) bool {
	_, ok := s.cfg.Mailboxes[strings.ToLower(address)]
	return ok
}

// RegisterMail registers the case a person's mail becomes, or joins a
// reply to the case it names (see reply.go). Mail a program sent fails
// with ErrAutomatedMail (wrapping the rule that caught it) and is never
// a case; a bounce of a mail kontakt sent is first recorded on that
// mail's case. A mail that breaks intake's rules fails with the
// ValidationError every channel gets.
func (s *Service) RegisterMail(ctx context.Context, m domain.Mail) (Registered, error) {
	if reason, automated := m.Automated(); automated {
		if err := s.recordBounces(ctx, m.Bounced()); err != nil {
			return Registered{}, err
		}
		return Registered{}, fmt.Errorf("%w: %s", ErrAutomatedMail, reason)
	}
	box, ok := s.cfg.Mailboxes[strings.ToLower(m.Mailbox)]
	if !ok {
		return Registered{}, ErrUnknownMailbox
	}
	now := s.clock()
	caseID, number, matchedBy, err := s.replyTarget(ctx, m)
	if err != nil {
		return Registered{}, err
	}
	refersTo := ""
	if caseID != "" {
		r, refer, err := s.joinReply(ctx, m, caseID, number, matchedBy, now)
		if err != nil || refer == "" {
			return r, err
		}
		refersTo = refer
	}
	reg, err := domain.ValidateMail(m, box.Type, box.Category, now, s.cfg.Categories)
	if err != nil {
		return Registered{}, err
	}
	reg.RefersTo = refersTo
	if m.MessageID == "" {
		return s.register(ctx, reg, uuid.NewString(), uuid.NewString(), MailActor, now, true)
	}
	// A relay that lost kontakt's reply to DATA (a restart, a dropped
	// connection) sends the mail again, with the same Message-ID: the
	// second delivery answers with the first case instead of a second
	// case and a second acknowledgement. The key holds the mailbox and the
	// sender too, so another sender reusing a Message-ID only gets a case
	// of its own.
	key := idempotencyKey("mail:"+m.Mailbox, m.MessageID+"\x00"+strings.ToLower(m.From))
	r, err := s.registerOnce(ctx, reg, domain.MailCase(m, box.Type, box.Category), key, MailActor, now)
	if errors.Is(err, ErrPayloadMismatch) {
		// The same Message-ID with another text: a new mail, whatever
		// its id says.
		return s.register(ctx, reg, uuid.NewString(), uuid.NewString(), MailActor, now, true)
	}
	return r, err
}

// MailActor is who registered a case that came by mail: the receiver,
// not a person.
const MailActor = "mail"
