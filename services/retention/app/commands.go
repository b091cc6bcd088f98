package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/caseaccess"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/identity"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/subject"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

// commandAttempts bounds the retries of a command whose case changed
// between read and append.
const commandAttempts = 5

// change reads a case, lets decide return the event to append (nil: no
// change) and appends it at the revision it read, retrying when the case
// moved in between.
func (s *Service) change(ctx context.Context, caseID string, decide func(c *domain.Case) (proto.Message, error)) (*domain.Case, error) {
	for range commandAttempts {
		c, _, err := s.readCase(ctx, caseID)
		if err != nil {
			return nil, err
		}
		ev, err := decide(c)
		if errors.Is(err, seal.ErrKeyDestroyed) {
			// decide sealed under a key that a redaction appended after
			// the read has destroyed: read the case again, which names
			// the class's next generation.
			continue
		}
		if err != nil || ev == nil {
			return c, err
		}
		_, err = s.appendEvent(ctx, caseID, c.Revision, uuid.NewString(), ev)
		if errors.Is(err, eventstore.ErrConflict) {
			continue
		}
		if errors.Is(err, eventstore.ErrStreamDeleted) {
			return nil, ErrNotFound
		}
		return c, err
	}
	return nil, ErrConflict
}

// PlaceHold stops redaction and deletion of a case until the hold is
// released, and returns the hold's id.
func (s *Service) PlaceHold(ctx context.Context, actor, caseID, reason string) (string, error) {
	holdID := uuid.NewString()
	_, err := s.change(ctx, caseID, func(*domain.Case) (proto.Message, error) {
		return &casev1.HoldPlaced{CaseId: caseID, HoldId: holdID, Reason: reason, PlacedBy: actor, PlacedAt: timestamppb.New(s.clock())}, nil
	})
	return holdID, err
}

// ReleaseHold lifts a hold. A deadline that passed while the case was
// held is applied at once: the sweeper is woken.
func (s *Service) ReleaseHold(ctx context.Context, actor, caseID, holdID string) error {
	_, err := s.change(ctx, caseID, func(c *domain.Case) (proto.Message, error) {
		if _, ok := c.Holds[holdID]; !ok {
			return nil, fmt.Errorf("%w: %s", ErrHoldNotFound, holdID)
		}
		return &casev1.HoldReleased{CaseId: caseID, HoldId: holdID, ReleasedBy: actor, ReleasedAt: timestamppb.New(s.clock())}, nil
	})
	// The projector wakes the sweeper once its index has applied the
	// release, so a deadline that passed during the hold applies at once.
	return err
}

// MarkResult says what a mark means for the case.
type MarkResult struct {
	// ArchiveDueAt is when the archive package is written; zero when
	// nothing is scheduled yet.
	ArchiveDueAt time.Time
	// AlreadyRedacted lists the classes the package will not hold.
	AlreadyRedacted []domain.Class
	// AlreadyMarked says the case was marked before; nothing changed.
	AlreadyMarked bool
}

// MarkForPreservation marks a case to be preserved (bevaras): it is
// exported to the archive before anything of it is removed, and erasure
// requests no longer reach it. Who may mark is the domain's rule
// (Case.MarkForPreservation): a supervisor, or the officer responsible for
// the case. The mark is written to the case's audit trail before it is
// appended, so it shows in the person's trail and register extract; if
// the record cannot be written, the case is not marked. Marking a marked
// case again changes nothing.
func (s *Service) MarkForPreservation(ctx context.Context, by caseaccess.Caller, role, caseID, reason string) (MarkResult, error) {
	var res MarkResult
	c, err := s.change(ctx, caseID, func(c *domain.Case) (proto.Message, error) {
		ev, err := c.MarkForPreservation(by, reason, s.clock())
		if err != nil || ev == nil {
			res.AlreadyMarked = err == nil
			return nil, err
		}
		if err := s.auditCommand(ctx, c, by.Subject, role, retentionv1.RetentionService_MarkForPreservation_FullMethodName,
			"markerad för bevarande: "+reason); err != nil {
			return nil, err
		}
		return ev, nil
	})
	if err != nil {
		return res, err
	}
	if !res.AlreadyMarked {
		// The case as it is after the mark.
		c.Marked = true
	}
	if d, ok := s.cfg.Plan.ArchiveDue(c); ok {
		res.ArchiveDueAt = d.At
	}
	res.AlreadyRedacted = c.RedactedClasses()
	return res, nil
}

// WithdrawPreservationMark withdraws a case's mark for preservation (the
// domain's rule says who may: Case.WithdrawPreservation). The plan's
// rules for unmarked cases apply again: the projector wakes the sweeper
// once its index has the withdrawal, so a deadline that passed while the
// case was marked applies at once, and it removes kontakt's archive
// packages of the case unless the plan preserves such cases anyway. The
// withdrawal is written to the case's audit trail before it is appended.
func (s *Service) WithdrawPreservationMark(ctx context.Context, by caseaccess.Caller, role, caseID, reason string) error {
	_, err := s.change(ctx, caseID, func(c *domain.Case) (proto.Message, error) {
		ev, err := c.WithdrawPreservation(by, reason, s.clock())
		if err != nil {
			return nil, err
		}
		if err := s.auditCommand(ctx, c, by.Subject, role, retentionv1.RetentionService_WithdrawPreservationMark_FullMethodName,
			"markering för bevarande återkallad: "+reason); err != nil {
			return nil, err
		}
		return ev, nil
	})
	return err
}

// auditCommand writes the audit record of a command that decides what
// becomes of a case's personal data (a mark keeps it, a withdrawal lets
// the plan remove it): it names the classes concerned, so it shows in the
// person's trail. Its id follows from the case's revision, so the same
// decision retried is stored once.
func (s *Service) auditCommand(ctx context.Context, c *domain.Case, actor, role, rpc, purpose string) error {
	rec := &routingv1.AuditRecord{
		AuditId: fmt.Sprintf("%s-%s-%d", rpc[strings.LastIndexByte(rpc, '/')+1:], c.ID, c.Revision),
		Actor:   actor, Role: role, CaseId: c.ID, Purpose: purpose, ReadAt: timestamppb.New(s.clock()), Rpc: rpc,
	}
	for _, cl := range c.LeftToPreserve() {
		rec.DataClasses = append(rec.DataClasses, classToProto(cl))
	}
	return s.audit.Record(ctx, rec)
}

// Mark is one case marked for preservation, for ListPreservationMarks.
type Mark struct {
	CaseID, CaseNumber string
	Type               casev1.CaseType
	// Mark is nil for a mark the index folded before it kept marks.
	Mark         *domain.Mark
	Archived     bool
	ArchiveDueAt time.Time
}

// PreservationMarks lists every case marked for preservation, oldest mark
// first, from the deadline index: what the data-protection officer needs
// to find every mark without knowing case ids.
func (s *Service) PreservationMarks() ([]Mark, error) {
	var out []Mark
	err := s.idx.Each(func(e *Entry) error {
		if !e.Case.Marked || e.Case.Deleted {
			return nil
		}
		m := Mark{CaseID: e.Case.ID, CaseNumber: e.Case.Number, Type: e.Case.Type, Mark: e.Case.Mark,
			Archived: e.Case.Archived && !e.Case.ChangedSinceArchive}
		if d, ok := s.cfg.Plan.ArchiveDue(&e.Case); ok {
			m.ArchiveDueAt = d.At
		}
		out = append(out, m)
		return nil
	})
	slices.SortStableFunc(out, func(a, b Mark) int {
		var at, bt time.Time
		if a.Mark != nil {
			at = a.Mark.At
		}
		if b.Mark != nil {
			bt = b.Mark.At
		}
		if c := at.Compare(bt); c != 0 {
			return c
		}
		return strings.Compare(a.CaseNumber, b.CaseNumber)
	})
	return out, err
}

// EraseOutcome says what an erasure did to one case.
type EraseOutcome struct {
	CaseID, CaseNumber string
	Erased             bool
	Explanation        string
}

// EraseSubject redacts every personal data class of every case that
// holds the person's data, now (GDPR article 17). Cases under a hold, and
// cases marked to be preserved (exempt under article 17.3), are refused
// with an explanation; the others get PersonalDataRedacted with
// reason "erasure", and the projector destroys their keys.
func (s *Service) EraseSubject(ctx context.Context, actor string, key subject.Key, note string) ([]EraseOutcome, error) {
	ids, err := s.subjectCases(key)
	if err != nil {
		return nil, err
	}
	var out []EraseOutcome
	for _, id := range ids {
		o := EraseOutcome{CaseID: id}
		c, err := s.change(ctx, id, func(c *domain.Case) (proto.Message, error) {
			o.CaseNumber = c.Number
			if c.OnHold() || c.Marked {
				return nil, nil
			}
			m := &casev1.PersonalDataRedacted{
				CaseId: id, Reason: "erasure", PlanVersion: s.cfg.Plan.Version, Rule: "erasure",
				RedactedAt: timestamppb.New(s.clock()), RequestedBy: actor, Note: note,
			}
			for _, cl := range domain.PersonalClasses() {
				if !c.Redacted[cl] {
					m.DataClasses = append(m.DataClasses, classToProto(cl))
				}
			}
			if len(m.DataClasses) == 0 {
				return nil, nil
			}
			return m, nil
		})
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case err != nil:
			return out, err
		case c.OnHold():
			o.Explanation = fmt.Sprintf("the case is on hold (%s); its data is kept until the hold is released", holdReasons(c))
		case c.Marked:
			// Public records to be preserved are exempt from erasure
			// (GDPR art. 17.3 b and d; arkivlagen): the plan archives the
			// case and then redacts it on its own schedule.
			o.Explanation = "the case is marked to be preserved (bevaras) under the archive rules; its personal data is exempt from erasure and is redacted by the plan after archiving"
		default:
			o.Erased = true
		}
		out = append(out, o)
	}
	return out, nil
}

func holdReasons(c *domain.Case) string {
	var rs []string
	for _, r := range c.Holds {
		rs = append(rs, r)
	}
	slices.Sort(rs)
	return strings.Join(rs, ", ")
}

// Rectification is corrected data for one class of a case: exactly one
// field is set.
type Rectification struct {
	Contact  *casev1.ContactDetails
	FreeText *casev1.FreeText
	Identity *casev1.IdentityNumber
}

// Rectify seals corrected values for one data class and appends
// PersonalDataRectified (GDPR article 16). Reads show the corrected
// data from then on, and the blind-index tokens follow it.
//
// The value is sealed under the class's current generation. Rectifying a
// class that was redacted (by the plan, or by an erasure) completes it
// (article 16 includes completing data): the value is new data, sealed
// under the class's next generation, a fresh key, and the plan's period
// for the class counts from now (domain.Plan.Schedule). Refusing it, as
// kontakt did before, left no way to record a citizen's new address on a
// case still being worked after its redaction.
func (s *Service) Rectify(ctx context.Context, actor, caseID string, r Rectification) error {
	class, value, err := s.checkRectification(r)
	if err != nil {
		return err
	}
	_, err = s.change(ctx, caseID, func(c *domain.Case) (proto.Message, error) {
		if c.Channel == casev1.Channel_CHANNEL_VISIT {
			if r.Identity != nil {
				return nil, invalid("identity", "visits register no identity number")
			}
			if r.Contact.GetName() != "" {
				return nil, invalid("contact.name", "visits register no name")
			}
		}
		sealed, err := s.sealer.SealMessage(ctx, caseID, class, c.Generations.Of(class), value)
		if err != nil {
			return nil, err
		}
		return &casev1.PersonalDataRectified{CaseId: caseID, DataClass: class.ToProto(), Value: sealed, RectifiedBy: actor, RectifiedAt: timestamppb.New(s.clock())}, nil
	})
	return err
}

// checkRectification validates corrected values as intake validates new
// ones, and normalises them.
func (s *Service) checkRectification(r Rectification) (seal.Class, proto.Message, error) {
	switch {
	case r.Contact != nil:
		c := proto.Clone(r.Contact).(*casev1.ContactDetails)
		if c.GetEmail() != "" {
			// Stored as intake stores it: the address as identity.Email
			// shows it, found by the blind index by any spelling.
			e, err := identity.ParseEmail(c.GetEmail())
			if err != nil {
				return "", nil, invalid("contact.email", "not an e-mail address")
			}
			c.Email = e.Address()
		}
		if c.GetPhone() != "" {
			p, err := identity.NormalisePhone(c.GetPhone())
			if err != nil {
				return "", nil, invalid("contact.phone", "not a phone number")
			}
			c.Phone = p
		}
		return seal.ClassContact, c, nil
	case r.Identity != nil:
		n, err := identity.ParsePersonalNumber(r.Identity.GetNumber(), s.clock())
		if err != nil {
			return "", nil, invalid("identity.number", "not a valid personnummer or samordningsnummer")
		}
		return seal.ClassIdentity, &casev1.IdentityNumber{Number: n.Normalised(), CoordinationNumber: n.Coordination}, nil
	case r.FreeText != nil:
		if n := len([]rune(r.FreeText.GetDescription())); n > 4000 {
			return "", nil, invalid("free_text.description", fmt.Sprintf("%d characters, at most 4000", n))
		}
		return seal.ClassFreeText, r.FreeText, nil
	}
	return "", nil, invalid("value", "give contact, free_text or identity")
}

// FieldError is a refused value: it names the request field and why, and
// matches ErrInvalid.
type FieldError struct {
	Field, Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func invalid(field, reason string) error { return &FieldError{Field: field, Reason: reason} }
