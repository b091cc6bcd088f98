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

// Case is one case as the retention service needs it: what the plan's
// rules look at (type, channel, times, marking) and what stands in their
// way (holds, earlier redactions, deletion). It is folded from the case's
// events and never decodes personal data: a sealed field only tells that
// its class holds data again. So it may be cached and logged.
type Case struct {
	// ID is the case id, the stream's name.
	ID string
	// Number is the human case number, recorded in CaseDeleted so the
	// registry can tell which case went.
	Number string
	// Type and Channel choose the plan's rules.
	Type    casev1.CaseType
	Channel casev1.Channel
	// RegisteredAt is what registration-anchored periods count from.
	RegisteredAt time.Time
	// ClosedAt is the latest closing, what closure-anchored periods count
	// from; zero while the case is open, also after a reopening, because
	// a reopened case is current again (not "inaktuellt").
	ClosedAt time.Time
	// Holds maps the id of every hold in force to its reason. A hold
	// defers redaction and deletion until it is released.
	Holds map[string]string
	// Marked says an officer marked the case for preservation, so it is
	// archived before anything is removed and the plan's marked rules
	// apply.
	Marked bool
	// Mark says who marked the case, when and why; nil while unmarked
	// (and for marks folded by a version that did not keep it).
	Mark *Mark
	// Access are where the case is and who holds it, which decide who may
	// act on it (pkg/caseaccess, the rule routing applies too).
	Access caseaccess.Facts
	// Archived says the case was exported to an archive package.
	Archived bool
	// ChangedSinceArchive says the case received content after its last
	// archive package (a note, an answer, a rectification), so the
	// package must be made again before anything more is removed.
	ChangedSinceArchive bool
	// Redacted holds the personal classes whose keys were destroyed and
	// that have not received new data since.
	Redacted map[Class]bool
	// Sealed holds the personal classes the case ever sealed data of, in
	// any generation: the classes that have keys to destroy.
	Sealed map[Class]bool
	// Generations are the generations of the classes' current keys, one
	// more for every redaction of a class (pkg/seal): data written after
	// a redaction is sealed under a fresh key of the next generation,
	// and a redaction destroys every generation up to the current one.
	Generations seal.Generations
	// Rewritten holds, for a class that received data after its latest
	// redaction, when that data was first written. The plan counts the
	// class's period again from then (Schedule), not from the anchor that
	// has long passed; a redaction of the class clears it.
	Rewritten map[Class]time.Time
	// Deleted says CaseDeleted was read: the stream is being removed and
	// nothing more is due.
	Deleted bool
	// Revision is the revision of the last applied event, the expected
	// revision for the next append.
	Revision uint64
}

// Event is one stored event with what the store knows about it, for Fold.
type Event struct {
	// Message is the decoded event, for example *casev1.CaseClosed.
	Message proto.Message
	// Revision is the event's revision in the case's stream.
	Revision uint64
	// Recorded is when the store recorded the event, used when the event
	// carries no time of its own.
	Recorded time.Time
}

// Fold applies a case's events in order and returns the case, so callers
// that read a whole stream need no loop of their own. It stops at the
// first error.
func Fold(events []Event) (*Case, error) {
	c := &Case{}
	for _, e := range events {
		if err := c.Apply(e.Message, e.Revision, e.Recorded); err != nil {
			return nil, err
		}
	}
	if c.ID == "" {
		return nil, fmt.Errorf("%w: no events", ErrNotRegistered)
	}
	return c, nil
}

// caseEvent is what every case event has: the id of its case, which Apply
// checks so that a stream mixed up with another case's is noticed.
type caseEvent interface {
	GetCaseId() string
}

// Apply folds one event into the case. CaseRegistered must come first:
// any event before it fails with ErrNotRegistered, and a second one, a nil
// event or an event naming another case fails with ErrInvalidStream,
// leaving the case unchanged. Events the retention view does not need
// (routing, assignment, …) and event types it does not know only move
// Revision, so an older reader keeps working when a newer writer adds an
// event. Times come from the events' own timestamps, because the store's
// time may be a replay's; recorded is used when the event has none. All
// times are kept in UTC, so periods are computed the same way everywhere.
func (c *Case) Apply(msg proto.Message, revision uint64, recorded time.Time) error {
	if msg == nil {
		return fmt.Errorf("%w: nil event at revision %d", ErrInvalidStream, revision)
	}
	reg, isReg := msg.(*casev1.CaseRegistered)
	if c.ID == "" && !isReg {
		return fmt.Errorf("%w: %s at revision %d before CaseRegistered", ErrNotRegistered, msg.ProtoReflect().Descriptor().Name(), revision)
	}
	if isReg {
		if c.ID != "" {
			return fmt.Errorf("%w: second CaseRegistered at revision %d", ErrInvalidStream, revision)
		}
		if reg.GetCaseId() == "" {
			return fmt.Errorf("%w: CaseRegistered without a case id at revision %d", ErrInvalidStream, revision)
		}
	} else if e, ok := msg.(caseEvent); ok && e.GetCaseId() != "" && e.GetCaseId() != c.ID {
		return fmt.Errorf("%w: event for case %s in the stream of case %s at revision %d", ErrInvalidStream, e.GetCaseId(), c.ID, revision)
	}

	switch msg.(type) {
	case *casev1.CaseArchived:
		c.ChangedSinceArchive = false
	case *casev1.PersonalDataRedacted, *casev1.HoldPlaced, *casev1.HoldReleased, *casev1.CaseDeleted, *casev1.CasePreservationWithdrawn:
		// Retention's own bookkeeping adds nothing to archive.
	default:
		if c.Archived {
			c.ChangedSinceArchive = true
		}
	}
	c.Access.Apply(msg)
	switch e := msg.(type) {
	case *casev1.CaseRegistered:
		c.ID = e.GetCaseId()
		c.Number = e.GetCaseNumber()
		c.Type = e.GetType()
		c.Channel = e.GetChannel()
		c.RegisteredAt = eventTime(e.GetRegisteredAt(), recorded)
		c.Holds = make(map[string]string)
		c.Redacted = make(map[Class]bool)
		for cl, v := range map[Class]*casev1.SealedPersonalData{
			ClassContact: e.GetContact(), ClassIdentity: e.GetIdentity(),
			ClassFreeText: e.GetFreeText(), ClassAttachments: e.GetAttachmentNames(),
		} {
			if v != nil {
				c.sealed(cl)
			}
		}
	case *casev1.CaseClosed:
		c.ClosedAt = eventTime(e.GetClosedAt(), recorded)
	case *casev1.CaseReopened:
		c.ClosedAt = time.Time{}
	case *casev1.HoldPlaced:
		if c.Holds == nil {
			c.Holds = make(map[string]string)
		}
		c.Holds[e.GetHoldId()] = e.GetReason()
	case *casev1.HoldReleased:
		delete(c.Holds, e.GetHoldId())
	case *casev1.CaseMarkedForPreservation:
		c.Marked = true
		c.Mark = &Mark{By: e.GetMarkedBy(), At: eventTime(e.GetMarkedAt(), recorded), Reason: e.GetReason()}
	case *casev1.CasePreservationWithdrawn:
		// The packages written because of the mark are removed with it
		// (the projector's effect), so none is current any more.
		c.Marked = false
		c.Mark = nil
		c.Archived = false
		c.ChangedSinceArchive = false
	case *casev1.CaseArchived:
		c.Archived = true
	case *casev1.PersonalDataRedacted:
		if c.Redacted == nil {
			c.Redacted = make(map[Class]bool)
		}
		c.Generations.Apply(e)
		for _, dc := range e.GetDataClasses() {
			if cl, ok := classFromProto(dc); ok {
				c.Redacted[cl] = true
				delete(c.Rewritten, cl)
			}
		}
	case *casev1.PersonalDataRectified:
		if e.GetValue() != nil {
			c.refilled(e.GetDataClass(), eventTime(e.GetRectifiedAt(), recorded))
		}
	case *casev1.NoteAdded:
		if e.GetText() != nil {
			c.refilled(casev1.DataClass_DATA_CLASS_ANSWER, eventTime(e.GetAddedAt(), recorded))
		}
	case *casev1.CaseForwarded:
		if e.GetComment() != nil {
			c.refilled(casev1.DataClass_DATA_CLASS_ANSWER, eventTime(e.GetForwardedAt(), recorded))
		}
	case *casev1.CaseAnswered:
		if e.GetAnswer() != nil {
			c.refilled(casev1.DataClass_DATA_CLASS_ANSWER, eventTime(e.GetAnsweredAt(), recorded))
		}
	case *casev1.CaseDeleted:
		c.Deleted = true
	}
	c.Revision = revision
	return nil
}

// refilled notes that a class received new sealed data at the given
// time. Data written into a redacted class was sealed under the next
// generation's key, so the class is redacted no longer, and its period
// counts from the first such write (Rewritten). Data written before the
// class's first redaction belongs to the case's first generation, which
// the plan counts from its anchor as written.
func (c *Case) refilled(dc casev1.DataClass, at time.Time) {
	cl, ok := classFromProto(dc)
	if !ok {
		return
	}
	if c.Redacted[cl] {
		delete(c.Redacted, cl)
		if c.Rewritten == nil {
			c.Rewritten = make(map[Class]time.Time)
		}
		c.Rewritten[cl] = at
	}
	c.sealed(cl)
}

// sealed notes that the case holds sealed data of a class, so its key
// exists and redaction must destroy it.
func (c *Case) sealed(cl Class) {
	if c.Sealed == nil {
		c.Sealed = make(map[Class]bool)
	}
	c.Sealed[cl] = true
}

// OnHold reports whether any hold is in force, in which case nothing may
// be redacted or deleted, however overdue.
func (c *Case) OnHold() bool {
	return len(c.Holds) > 0
}

// Closed reports whether the case is closed now, so closure-anchored
// periods are running.
func (c *Case) Closed() bool {
	return !c.ClosedAt.IsZero()
}

// eventTime is the event's own time, or recorded when it has none, in UTC.
func eventTime(ts *timestamppb.Timestamp, recorded time.Time) time.Time {
	if ts != nil && ts.IsValid() {
		return ts.AsTime().UTC()
	}
	return recorded.UTC()
}

// classFromProto maps the API's data classes to the personal classes; it
// reports false for DATA_CLASS_UNSPECIFIED and values it does not know,
// which a fold skips rather than fails on.
func classFromProto(dc casev1.DataClass) (Class, bool) {
	switch dc {
	case casev1.DataClass_DATA_CLASS_CONTACT_DETAILS:
		return ClassContact, true
	case casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER:
		return ClassIdentity, true
	case casev1.DataClass_DATA_CLASS_FREE_TEXT:
		return ClassFreeText, true
	case casev1.DataClass_DATA_CLASS_ATTACHMENTS:
		return ClassAttachments, true
	case casev1.DataClass_DATA_CLASS_ANSWER:
		return ClassAnswer, true
	}
	return "", false
}
