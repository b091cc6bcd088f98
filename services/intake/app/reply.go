package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/backoff"
	"github.com/kontakt-se/kontakt/pkg/caseevents"
	"github.com/kontakt-se/kontakt/pkg/casemail"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// Replies and bounces: mail that names a case kontakt wrote about.
//
// A citizen's reply names its case by the Message-ID of a mail kontakt
// sent about it (In-Reply-To or References) or by the case number in its
// subject. Message-IDs are derived (domain.MessageID) and cannot be read
// back, so the outbox keeps an index of every Message-ID it recorded as
// sent (SentMailIndex, a read model on the projection runner): a lookup
// is one read, never a scan of the cases. Case numbers are looked up in
// the number allocator's own record.
//
// Who may write into a case: a case number is easy to guess, and a
// Message-ID travels with every forwarded copy of a mail, so naming a
// case proves nothing. A reply joins its case only when it comes from the
// case's own contact address (the From address, compared with the sealed
// contact opened in memory); from any other address it becomes a new case
// that refers to the named case's number, which an agent sees, and
// nothing is written into the named case. The From address is only as
// trustworthy as the municipality's relay makes it (SPF, DKIM and DMARC
// are checked there, not here).

// SentMailIndex finds the case a mail kontakt sent was about.
type SentMailIndex interface {
	// CaseOfMessage returns the case of a Message-ID (with angle
	// brackets, as MailSent records it).
	CaseOfMessage(messageID string) (caseID string, found bool, err error)
}

// How a reply named its case (CaseMessageReceived.matched_by).
const (
	MatchedByMessageID  = "message-id"
	MatchedByCaseNumber = "case-number"
)

// caseNumberInSubject finds case numbers in a subject: the allocator's
// canonical form (prefix, four-digit year, six or more digits), which
// Lookup checks strictly.
var caseNumberInSubject = regexp.MustCompile(`\b[A-Z]{1,10}-[0-9]{4}-[0-9]{6,}\b`)

// Bounds on what one mail may make kontakt look up: a reply's thread
// and a bounce's returned mails are short; a mail that names more is
// read for the first ones only.
const (
	maxReferences      = 20
	maxSubjectNumbers  = 3
	maxBouncedMessages = 5
)

// replyTarget finds the case a person's mail names: by a Message-ID
// kontakt sent (In-Reply-To first, then References), else by a case
// number in the subject that was allocated. caseID is empty when it
// names none.
func (s *Service) replyTarget(ctx context.Context, m domain.Mail) (caseID, number, matchedBy string, err error) {
	if s.cfg.SentMail != nil {
		for i, ref := range m.References {
			if i == maxReferences {
				break
			}
			id, found, err := s.cfg.SentMail.CaseOfMessage("<" + strings.Trim(ref, "<>") + ">")
			if err != nil {
				return "", "", "", fmt.Errorf("sent mail index: %w", err)
			}
			if found {
				return id, "", MatchedByMessageID, nil
			}
		}
	}
	for _, n := range caseNumberInSubject.FindAllString(m.Subject, maxSubjectNumbers) {
		id, err := s.numbers.Lookup(ctx, n)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return "", "", "", fmt.Errorf("case number: %w", err)
		}
		return id, n, MatchedByCaseNumber, nil
	}
	return "", "", "", nil
}

// joinReply joins a reply to the case it names, reopening the case when
// it was closed no longer than ReplyReopenWithin ago. When the reply may
// not join (another sender, the case closed longer ago, deleted, or its
// free text redacted) it returns the number the new case is to refer to.
// A second delivery of a joined reply (same Message-ID and sender) joins
// nothing and answers Replayed.
func (s *Service) joinReply(ctx context.Context, m domain.Mail, caseID, number, matchedBy string, now time.Time) (r Registered, refersTo string, err error) {
	key := s.deliveryKey(caseID, m)
	for attempt := 1; ; attempt++ {
		evs, err := s.store.Read(ctx, caseID)
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return Registered{}, number, nil
		}
		if err != nil {
			return Registered{}, "", fmt.Errorf("read case: %w", err)
		}
		c := foldMailCase(evs)
		if number == "" {
			number = c.Number
		}
		if c.Deleted || c.FreeTextRedacted {
			return Registered{}, number, nil
		}
		same, err := s.sameSender(ctx, caseID, c.Contact, m.From)
		if err != nil {
			return Registered{}, "", err
		}
		if !same {
			return Registered{}, number, nil
		}
		joined := Registered{CaseID: caseID, CaseNumber: c.Number, Joined: true}
		if c.Joined(key) {
			joined.Replayed = true
			return joined, "", nil
		}
		var events []proto.Message
		if c.Closed {
			if s.cfg.ReplyReopenWithin <= 0 || now.Sub(c.ClosedAt) > s.cfg.ReplyReopenWithin {
				return Registered{}, number, nil
			}
			events = append(events, &casev1.CaseReopened{CaseId: caseID, ReopenedBy: MailActor, ReopenedAt: timestamppb.New(now)})
		}
		text, err := s.sealReply(ctx, caseID, m)
		if err != nil {
			return Registered{}, "", err
		}
		events = append(events, &casev1.CaseMessageReceived{
			CaseId: caseID, Text: text, ReceivedAt: timestamppb.New(now), Channel: casev1.Channel_CHANNEL_EMAIL,
			MatchedBy: matchedBy, DeliveryKey: key,
		})
		err = s.appendAfter(ctx, caseID, c.revision, key, events)
		if errors.Is(err, eventstore.ErrConflict) && attempt < 5 {
			// The case changed meanwhile (an agent closed or answered
			// it, or the reopening landed and the message did not):
			// decide again on the case as it is.
			continue
		}
		if err != nil {
			return Registered{}, "", err
		}
		joined.Reopened = c.Closed
		return joined, "", nil
	}
}

// sameSender reports whether from is the e-mail address of the case's
// contact. The contact is opened in memory only; a redacted contact is
// no match.
func (s *Service) sameSender(ctx context.Context, caseID string, contact *casev1.SealedPersonalData, from string) (bool, error) {
	if contact == nil || s.opener == nil || strings.TrimSpace(from) == "" {
		return false, nil
	}
	var cd casev1.ContactDetails
	err := s.opener.OpenMessage(ctx, caseID, contact, &cd)
	if errors.Is(err, seal.ErrKeyDestroyed) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open contact: %w", err)
	}
	return cd.GetEmail() != "" && strings.EqualFold(strings.TrimSpace(cd.GetEmail()), strings.TrimSpace(from)), nil
}

// sealReply seals the reply's subject and text as FreeText with the
// case's free-text key, cut as a new case's are (domain.MailCase).
func (s *Service) sealReply(ctx context.Context, caseID string, m domain.Mail) (*casev1.SealedPersonalData, error) {
	in := domain.MailCase(m, casev1.CaseType_CASE_TYPE_UNSPECIFIED, "")
	return sealMessage(func(class seal.Class, b []byte) (*casev1.SealedPersonalData, error) {
		return s.sealer.Seal(ctx, caseID, class, 0, b)
	}, seal.ClassFreeText, &casev1.FreeText{Subject: in.GetSubject(), Description: in.GetDescription()})
}

// deliveryKey names one delivery of a reply to a case: a keyed hash of
// the case, the mail's Message-ID and its sender, so a relay that
// delivers the mail again is recognised and the key reveals nothing. A
// mail without a Message-ID cannot be recognised and gets a random key.
func (s *Service) deliveryKey(caseID string, m domain.Mail) string {
	if m.MessageID == "" {
		return uuid.NewString()
	}
	h := hmac.New(sha256.New, s.cfg.PayloadKey)
	h.Write([]byte("reply\x00" + caseID + "\x00" + m.MessageID + "\x00" + strings.ToLower(m.From)))
	return hex.EncodeToString(h.Sum(nil)[:20])
}

// appendAfter appends events to a case one after the other, the first
// at the revision after rev. Each event's id is derived from key and its
// type, so an append whose outcome was lost is retried with the same id
// and recognised by the store. A conflict is returned for the caller to
// decide again.
func (s *Service) appendAfter(ctx context.Context, caseID string, rev eventstore.Revision, key string, events []proto.Message) error {
	for _, msg := range events {
		data, err := proto.Marshal(msg)
		if err != nil {
			return fmt.Errorf("encode %s: %w", caseevents.TypeOf(msg), err)
		}
		sum := sha256.Sum256([]byte(key + "\x00" + caseevents.TypeOf(msg)))
		ev := eventstore.Event{ID: "mail-" + hex.EncodeToString(sum[:20]), Type: caseevents.TypeOf(msg), Data: data}
		err = backoff.Retry(ctx, backoff.UnknownOutcome, func() error {
			var err error
			rev, err = s.store.Append(ctx, caseID, eventstore.Exact(rev), ev)
			if err != nil && !errors.Is(err, eventstore.ErrUnavailable) {
				return backoff.Permanent(err)
			}
			return err
		})
		if errors.Is(err, eventstore.ErrStreamDeleted) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("append %s: %w", caseevents.TypeOf(msg), err)
		}
	}
	return nil
}

// recordBounces marks the mails a bounce names as not delivered on their
// cases (MailFailed with reason "bounced"): only mails kontakt recorded
// as sent, once each however often the bounce arrives. A Message-ID
// kontakt never sent is ignored. It fails only when the store or the
// index cannot be read, so the relay delivers the bounce again.
func (s *Service) recordBounces(ctx context.Context, ids []string) error {
	if s.cfg.SentMail == nil {
		return nil
	}
	for i, id := range ids {
		if i == maxBouncedMessages {
			break
		}
		id = "<" + strings.Trim(id, "<>") + ">"
		caseID, found, err := s.cfg.SentMail.CaseOfMessage(id)
		if err != nil {
			return fmt.Errorf("sent mail index: %w", err)
		}
		if !found {
			continue
		}
		if err := s.recordBounce(ctx, caseID, id); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) recordBounce(ctx context.Context, caseID, messageID string) error {
	for attempt := 1; ; attempt++ {
		evs, err := s.store.Read(ctx, caseID)
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read case: %w", err)
		}
		c := foldMailCase(evs)
		sent, ok := c.SentMail(messageID)
		if c.Deleted || !ok || c.Bounced(messageID) {
			return nil
		}
		ev := &casev1.MailFailed{
			CaseId: caseID, Kind: sent.Kind, AnswerEventId: sent.AnswerEventID, MessageId: messageID,
			FailedAt: timestamppb.New(s.clock()), Reason: casemail.ReasonBounced,
		}
		err = s.appendAfter(ctx, caseID, c.revision, "bounce\x00"+messageID, []proto.Message{ev})
		if errors.Is(err, eventstore.ErrConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return err
		}
		s.logger.InfoContext(ctx, "bounce recorded: a mail kontakt sent was not delivered", "case_id", caseID, "kind", sent.Kind.String())
		return nil
	}
}
