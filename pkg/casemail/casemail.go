// Package casemail is the one fold of a case's e-mail facts: the case's
// number and type, its contact (sealed), its answers (sealed), the
// outcome of every mail kontakt sent about it, whether it is closed and
// since when, and the citizen's messages that joined it. Intake's mail
// outbox and reply handling and routing's domain all need these facts,
// and services may not import each other, so the fold lives here, as
// pkg/caseaccess does for who may act on a case: the services cannot
// disagree on what was mailed, bounced or joined. It is pure (no I/O, no
// clock).
package casemail

import (
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// ReasonBounced is MailFailed.reason for a mail the relay accepted and a
// delivery report (a bounce) later said did not arrive.
const ReasonBounced = "bounced"

// Facts are a case's e-mail facts. Personal data in them is sealed
// (contact, answer texts); the rest is codes, times and ids.
type Facts struct {
	Number  string
	Type    casev1.CaseType
	Channel casev1.Channel
	// Contact is the sealed ContactDetails in force: the registration's,
	// or the latest rectification's; nil when the case has none. A
	// redaction leaves it: opening it then fails with seal's
	// ErrKeyDestroyed, which tells "redacted" from "no address".
	Contact *casev1.SealedPersonalData
	// Answers are the case's answers, oldest first.
	Answers []Answer
	// Mails are the outcomes of the mails kontakt sent about the case,
	// in the order they were recorded.
	Mails []Outcome
	// Closed says the case is closed now; ClosedAt is when it was last
	// closed (zero while open).
	Closed   bool
	ClosedAt time.Time
	// Deleted says CaseDeleted was read.
	Deleted bool
	// FreeTextRedacted says the free-text key was destroyed: a citizen's
	// message cannot be sealed into the case any more.
	FreeTextRedacted bool
	// Deliveries are the delivery keys of the citizen's messages that
	// joined the case (CaseMessageReceived.delivery_key).
	Deliveries []string
}

// Answer is one CaseAnswered.
type Answer struct {
	// EventID is the store's id of the CaseAnswered event, which names
	// the answer's mail (MailSent.answer_event_id).
	EventID string
	Text    *casev1.SealedPersonalData
	At      time.Time
	// Delivery is how the official asked for it to reach the citizen.
	Delivery casev1.AnswerDelivery
}

// Outcome is one MailSent or MailFailed.
type Outcome struct {
	Kind          casev1.MailKind
	AnswerEventID string
	MessageID     string
	// Sent is a MailSent; otherwise a MailFailed with Reason.
	Sent   bool
	Reason string
	At     time.Time
}

// Apply folds one case event into the facts and reports whether it
// changed them. eventID is the store's id of the event (answers are
// named by it), recorded when the store accepted it (the time of an
// event that states none). Events it does not know leave the facts as
// they are.
func (f *Facts) Apply(msg proto.Message, eventID string, recorded time.Time) bool {
	switch m := msg.(type) {
	case *casev1.CaseRegistered:
		f.Number, f.Type, f.Channel, f.Contact = m.GetCaseNumber(), m.GetType(), m.GetChannel(), m.GetContact()
	case *casev1.PersonalDataRectified:
		if m.GetDataClass() != casev1.DataClass_DATA_CLASS_CONTACT_DETAILS {
			return false
		}
		f.Contact = m.GetValue()
	case *casev1.PersonalDataRedacted:
		if !slices.Contains(m.GetDataClasses(), casev1.DataClass_DATA_CLASS_FREE_TEXT) {
			return false
		}
		f.FreeTextRedacted = true
	case *casev1.CaseAnswered:
		f.Answers = append(f.Answers, Answer{EventID: eventID, Text: m.GetAnswer(), At: timeOf(m.GetAnsweredAt(), recorded), Delivery: m.GetDelivery()})
	case *casev1.MailSent:
		f.Mails = append(f.Mails, Outcome{Kind: m.GetKind(), AnswerEventID: m.GetAnswerEventId(), MessageID: m.GetMessageId(), Sent: true, At: timeOf(m.GetSentAt(), recorded)})
	case *casev1.MailFailed:
		f.Mails = append(f.Mails, Outcome{Kind: m.GetKind(), AnswerEventID: m.GetAnswerEventId(), MessageID: m.GetMessageId(), Reason: m.GetReason(), At: timeOf(m.GetFailedAt(), recorded)})
	case *casev1.CaseClosed:
		f.Closed, f.ClosedAt = true, timeOf(m.GetClosedAt(), recorded)
	case *casev1.CaseReopened:
		f.Closed, f.ClosedAt = false, time.Time{}
	case *casev1.CaseDeleted:
		f.Deleted = true
	case *casev1.CaseMessageReceived:
		if k := m.GetDeliveryKey(); k != "" {
			f.Deliveries = append(f.Deliveries, k)
		}
	default:
		return false
	}
	return true
}

// Recorded reports whether the outcome of a mail (its kind, and for an
// answer the answer's event id) is on the case: sent, or given up.
// A bounce after a send does not count again: the mail was recorded.
func (f *Facts) Recorded(kind casev1.MailKind, answerEventID string) bool {
	return slices.ContainsFunc(f.Mails, func(o Outcome) bool {
		return o.Kind == kind && o.AnswerEventID == answerEventID && o.Reason != ReasonBounced
	})
}

// Acknowledged reports whether the relay accepted an acknowledgement of
// the case, which an answer then follows in the citizen's mail client.
func (f *Facts) Acknowledged() bool {
	return slices.ContainsFunc(f.Mails, func(o Outcome) bool {
		return o.Sent && o.Kind == casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT
	})
}

// Answer returns the sealed text of the answer with the event id, or nil.
func (f *Facts) Answer(eventID string) *casev1.SealedPersonalData {
	a, _ := f.answer(eventID)
	return a.Text
}

// AnswerDelivery returns how the answer with the event id is to reach
// the citizen (unspecified when there is no such answer).
func (f *Facts) AnswerDelivery(eventID string) casev1.AnswerDelivery {
	a, _ := f.answer(eventID)
	return a.Delivery
}

func (f *Facts) answer(eventID string) (Answer, bool) {
	for _, a := range f.Answers {
		if a.EventID == eventID {
			return a, true
		}
	}
	return Answer{}, false
}

// SentMail returns the outcome of the mail kontakt sent with the
// Message-ID (MailSent), and whether there is one.
func (f *Facts) SentMail(messageID string) (Outcome, bool) {
	for _, o := range f.Mails {
		if o.Sent && o.MessageID == messageID {
			return o, true
		}
	}
	return Outcome{}, false
}

// Bounced reports whether a bounce of the mail with the Message-ID is
// recorded.
func (f *Facts) Bounced(messageID string) bool {
	return slices.ContainsFunc(f.Mails, func(o Outcome) bool {
		return o.Reason == ReasonBounced && o.MessageID == messageID
	})
}

// FirstAnswerSentAt is when the relay first accepted an answer's mail:
// the first response the citizen actually got by e-mail; zero when no
// answer was mailed.
func (f *Facts) FirstAnswerSentAt() time.Time {
	for _, o := range f.Mails {
		if o.Sent && o.Kind == casev1.MailKind_MAIL_KIND_ANSWER {
			return o.At
		}
	}
	return time.Time{}
}

// Joined reports whether the citizen's message with the delivery key is
// on the case already (a relay delivered the mail again).
func (f *Facts) Joined(deliveryKey string) bool {
	return deliveryKey != "" && slices.Contains(f.Deliveries, deliveryKey)
}

// Clone copies the facts so the copy can be changed alone.
func (f Facts) Clone() Facts {
	f.Answers = slices.Clone(f.Answers)
	f.Mails = slices.Clone(f.Mails)
	f.Deliveries = slices.Clone(f.Deliveries)
	return f
}

// timeOf is an event's own time, or when the store recorded it if the
// writer left it out, in UTC (as routing's domain.TimeOf).
func timeOf(ts *timestamppb.Timestamp, recorded time.Time) time.Time {
	if ts == nil || ts.CheckValid() != nil {
		return recorded.UTC()
	}
	return ts.AsTime()
}
