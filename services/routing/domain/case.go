package domain

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/caseaccess"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// Case is one case as the routing service needs it to decide a command:
// where it is, who holds it and what happened to it. It is folded from the
// case's events and holds no personal data, so it may be cached and
// logged; the sealed texts stay in the events.
type Case struct {
	ID       string
	Number   string
	Type     casev1.CaseType
	Channel  casev1.Channel
	Category string
	// Mailbox is the contact centre's address a mail case came to
	// (CaseRegistered.mailbox), which routing rules may match.
	Mailbox string
	// RegisteredAt is when intake registered the case.
	RegisteredAt time.Time

	// Status is where the case is in its lifecycle: REGISTERED until it
	// is routed, then QUEUED, ASSIGNED, FORWARDED or CLOSED.
	Status casev1.CaseStatus
	// Routed is set by the one CaseRouted of the case.
	Routed bool
	// Rule and RulesVersion say which routing rule put the case in its
	// first queue, for statistics and for explaining a routing.
	Rule         string
	RulesVersion string
	// Facts are where the case is and who holds it, folded by the one
	// rule of who may act on a case (pkg/caseaccess): Queue is the queue
	// the case is in now (routing, a move or a forwarding put it there);
	// Assignee is the subject id of whoever holds the case, set only while
	// Status is ASSIGNED; ForwardedToDepartment and ForwardedToOfficer are
	// the targets of the latest forwarding, whose officers may work the
	// case.
	caseaccess.Facts

	// Forwarded says the case's current place comes from a forwarding, so
	// a release or reopening returns it to FORWARDED rather than QUEUED.
	// A supervisor's move clears it, together with the targets.
	Forwarded bool
	// Forwardings counts CaseForwarded events; a case that was ever
	// forwarded was not resolved at first contact.
	Forwardings int

	// FirstResponseAt is when the case was first answered (the first
	// CaseAnswered); zero until then.
	FirstResponseAt time.Time
	// ClosedAt, ClosedBy, Resolution and FirstContactResolution describe
	// the latest closing. They are zero while the case is open, also after
	// a reopening.
	ClosedAt               time.Time
	ClosedBy               string
	Resolution             casev1.Resolution
	FirstContactResolution bool
	// Reopenings counts CaseReopened events.
	Reopenings int

	// Redacted holds the data classes whose keys were destroyed. A
	// redacted case can still be worked; only its sealed data is gone.
	Redacted map[casev1.DataClass]bool
	// Generations are the generations of the classes' current keys: an
	// answer, note or comment written after the answer class was
	// redacted is sealed under the next generation's key, a fresh one
	// (pkg/seal), and falls under the retention plan again.
	Generations seal.Generations
	// Holds are the ids of the holds in force (HoldPlaced without a
	// HoldReleased). Holds stop retention, not the agents' work.
	Holds map[string]bool
	// Preserved says the case is to be exported to the archive.
	Preserved bool
	// Deleted says CaseDeleted was read: the stream is about to be
	// removed, and no command is accepted any more.
	Deleted bool

	// Version is the revision of the last event of the stream, including
	// events that Fold skipped: it is the expected revision of the next
	// append, so it must match the stream, not what this reader knows.
	Version uint64
}

// OnHold reports whether at least one hold is in force.
func (c *Case) OnHold() bool { return len(c.Holds) > 0 }

// IsRedacted reports whether any data class of the case was redacted.
func (c *Case) IsRedacted() bool { return len(c.Redacted) > 0 }

// Fold builds a case from its events, oldest first. The first event must be
// CaseRegistered (ErrNotRegistered otherwise). Events that this version of
// kontakt does not know (a nil Message, or a message that is not a case
// event) are skipped, so that a newer writer's events do not break an
// older reader, but their revision still becomes Version.
//
// Fold trusts the events: the commands decided them, so Fold applies what
// they say without deciding again. It refuses only streams that cannot be
// one case (ErrInvalidStream): a second CaseRegistered, or an event for
// another case id.
func Fold(events []Event) (*Case, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: the stream has no events", ErrNotRegistered)
	}
	c := &Case{}
	for i, ev := range events {
		if err := c.Apply(ev); err != nil {
			return nil, fmt.Errorf("event %d (revision %d): %w", i, ev.Revision, err)
		}
	}
	return c, nil
}

// caseEvent is what every case event has: the id of its case.
type caseEvent interface {
	proto.Message
	GetCaseId() string
}

// Apply folds one more event into the case, as Fold does for each. The app
// uses it after an append, to answer with the case as it is now without
// reading the stream again. On an error the case is left unchanged.
func (c *Case) Apply(ev Event) error {
	if c.ID == "" {
		reg, ok := ev.Message.(*casev1.CaseRegistered)
		if !ok {
			return fmt.Errorf("%w: the first event is %s, not CaseRegistered", ErrNotRegistered, describe(ev))
		}
		if reg.GetCaseId() == "" {
			return fmt.Errorf("%w: CaseRegistered has no case id", ErrInvalidStream)
		}
	} else if ce, ok := ev.Message.(caseEvent); ok {
		if _, again := ce.(*casev1.CaseRegistered); again {
			return fmt.Errorf("%w: a second CaseRegistered", ErrInvalidStream)
		}
		if id := ce.GetCaseId(); id != "" && id != c.ID {
			return fmt.Errorf("%w: %s belongs to case %q, not %q", ErrInvalidStream, describe(ev), id, c.ID)
		}
	}
	c.apply(ev)
	c.Version = ev.Revision
	return nil
}

// describe names an event for an error message without its content.
func describe(ev Event) string {
	if ev.Message != nil {
		return TypeOf(ev.Message)
	}
	if ev.Type != "" {
		return ev.Type
	}
	return "an event without a type"
}

// apply changes the case as the event says and reports whether it knew
// the event.
func (c *Case) apply(ev Event) bool {
	switch m := ev.Message.(type) {
	case *casev1.CaseRegistered:
		c.ID = m.GetCaseId()
		c.Number = m.GetCaseNumber()
		c.Type = m.GetType()
		c.Channel = m.GetChannel()
		c.Category = m.GetCategory()
		c.Mailbox = m.GetMailbox()
		c.RegisteredAt = TimeOf(m.GetRegisteredAt(), ev.Recorded)
		c.Status = casev1.CaseStatus_CASE_STATUS_REGISTERED
	case *casev1.CaseRouted:
		c.Routed = true
		c.Facts.Apply(m)
		c.Rule = m.GetRule()
		c.RulesVersion = m.GetRulesVersion()
		c.settle()
	case *casev1.CaseMoved:
		c.Facts.Apply(m)
		c.Forwarded = false
		c.settle()
	case *casev1.CaseAssigned, *casev1.CaseReleased:
		c.Facts.Apply(m)
		c.settle()
	case *casev1.NoteAdded:
		// Notes change nothing that a command decides on.
	case *casev1.CaseForwarded:
		c.Facts.Apply(m)
		c.Forwarded = true
		c.Forwardings++
		c.settle()
	case *casev1.CaseAnswered:
		if c.FirstResponseAt.IsZero() {
			c.FirstResponseAt = TimeOf(m.GetAnsweredAt(), ev.Recorded)
		}
	case *casev1.CaseClosed:
		c.Status = casev1.CaseStatus_CASE_STATUS_CLOSED
		c.Facts.Apply(m)
		c.ClosedAt = TimeOf(m.GetClosedAt(), ev.Recorded)
		c.ClosedBy = m.GetClosedBy()
		c.Resolution = m.GetResolution()
		c.FirstContactResolution = m.GetFirstContactResolution()
	case *casev1.CaseReopened:
		c.Reopenings++
		c.ClosedAt = time.Time{}
		c.ClosedBy = ""
		c.Resolution = casev1.Resolution_RESOLUTION_UNSPECIFIED
		c.FirstContactResolution = false
		c.Status = casev1.CaseStatus_CASE_STATUS_UNSPECIFIED
		c.settle()
	case *casev1.PersonalDataRedacted:
		c.Generations.Apply(m)
		for _, dc := range m.GetDataClasses() {
			if dc == casev1.DataClass_DATA_CLASS_UNSPECIFIED {
				continue
			}
			if c.Redacted == nil {
				c.Redacted = make(map[casev1.DataClass]bool)
			}
			c.Redacted[dc] = true
		}
	case *casev1.PersonalDataRectified:
		// A rectification replaces sealed data only.
	case *casev1.HoldPlaced:
		if c.Holds == nil {
			c.Holds = make(map[string]bool)
		}
		c.Holds[m.GetHoldId()] = true
	case *casev1.HoldReleased:
		delete(c.Holds, m.GetHoldId())
		if len(c.Holds) == 0 {
			c.Holds = nil
		}
	case *casev1.CaseMarkedForPreservation:
		c.Preserved = true
	case *casev1.CasePreservationWithdrawn:
		c.Preserved = false
	case *casev1.CaseArchived:
		// Retention's business: the archive copy changes nothing here.
	case *casev1.CaseDeleted:
		c.Deleted = true
	case *casev1.MailSent, *casev1.MailFailed, *casev1.CaseMessageReceived:
		// The e-mail channel's record of a mail, and a citizen's message
		// that joined the case: they show in the history and decide
		// nothing here (intake's outbox and reply handling fold them, in
		// pkg/casemail).
	default:
		return false
	}
	return true
}

// settle derives an open case's status from where it is and who holds it;
// a closed case stays closed until CaseReopened. Deriving it in one place
// keeps "an assignee exactly when ASSIGNED" true for every event.
func (c *Case) settle() {
	if c.Status == casev1.CaseStatus_CASE_STATUS_CLOSED {
		return
	}
	switch {
	case !c.Routed:
		c.Status = casev1.CaseStatus_CASE_STATUS_REGISTERED
	case c.Assignee != "":
		c.Status = casev1.CaseStatus_CASE_STATUS_ASSIGNED
	case c.Forwarded:
		c.Status = casev1.CaseStatus_CASE_STATUS_FORWARDED
	default:
		c.Status = casev1.CaseStatus_CASE_STATUS_QUEUED
	}
}

// TimeOf is an event's own time, ts, or when the store recorded the event
// if the writer left it out, in UTC. The fold and everything that shows
// an event's time (the read model's history and change feed) use it, so
// they agree on when an event happened.
func TimeOf(ts *timestamppb.Timestamp, recorded time.Time) time.Time {
	if ts == nil || ts.CheckValid() != nil {
		return recorded.UTC()
	}
	return ts.AsTime()
}
