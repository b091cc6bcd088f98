package domain

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/caseaccess"
)

// Mark is a case's mark for preservation: who placed it (a subject id),
// when, and why (an official's words, not the citizen's).
type Mark struct {
	By     string
	At     time.Time
	Reason string
}

// MaxMarkReason bounds the reason of a mark or its withdrawal, in
// characters: it is free text an official writes, kept with the case and
// in its archive package.
const MaxMarkReason = 500

// mayMark is who may mark a case for preservation. A mark blocks the
// citizen's erasure and keeps their personal data in the archive package,
// so privacy by default: a supervisor on any case, an officer only on a
// case that is theirs now (assigned to them, or forwarded to them or their
// department; caseaccess.Facts.Responsible), agents never, and the
// data-protection officer never (their role protects the person; they may
// withdraw a mark instead).
func (c *Case) mayMark(by caseaccess.Caller) error {
	switch {
	case by.Subject == "":
		return fmt.Errorf("%w: the caller has no subject", ErrNotPermitted)
	case by.Supervisor:
		return nil
	case by.Officer && c.Access.Responsible(by):
		return nil
	case by.Officer:
		return fmt.Errorf("%w: an officer may mark only a case assigned to them or forwarded to them or their department", ErrNotPermitted)
	case by.DPO:
		return fmt.Errorf("%w: the data-protection officer does not mark cases for preservation; a supervisor or the officer responsible for the case does", ErrNotPermitted)
	}
	return fmt.Errorf("%w: only a supervisor or the officer responsible for the case may mark it for preservation", ErrNotPermitted)
}

// LeftToPreserve lists the personal classes the case sealed data of and
// that are not redacted: what an archive package written now would hold
// of the case's content, in PersonalClasses order.
func (c *Case) LeftToPreserve() []Class {
	var out []Class
	for _, cl := range PersonalClasses() {
		if c.Sealed[cl] && !c.Redacted[cl] {
			out = append(out, cl)
		}
	}
	return out
}

// RedactedClasses lists the personal classes whose data is gone, in
// PersonalClasses order.
func (c *Case) RedactedClasses() []Class {
	var out []Class
	for _, cl := range PersonalClasses() {
		if c.Redacted[cl] {
			out = append(out, cl)
		}
	}
	return out
}

// MarkForPreservation decides a mark: the event to append, or nil when the
// case is marked already (nothing changes). The caller's permission is
// checked first, so a caller who may not mark learns nothing of the case.
// A case with nothing left to preserve (every class of personal data and
// free text it held is redacted) is refused with ErrPrecondition: its
// archive package would be empty.
func (c *Case) MarkForPreservation(by caseaccess.Caller, reason string, now time.Time) (*casev1.CaseMarkedForPreservation, error) {
	if err := c.mayMark(by); err != nil {
		return nil, err
	}
	if c.Marked {
		return nil, nil
	}
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	if len(c.LeftToPreserve()) == 0 {
		return nil, fmt.Errorf("%w: nothing is left to preserve: the personal data and free text of this case were already redacted, so its archive package would be empty", ErrPrecondition)
	}
	return &casev1.CaseMarkedForPreservation{CaseId: c.ID, MarkedBy: by.Subject, Reason: reason, MarkedAt: timestamppb.New(now)}, nil
}

// WithdrawPreservation decides the withdrawal of a mark. The
// data-protection officer and supervisors may always withdraw; an officer
// may withdraw a mark they placed while the case is still theirs
// (caseaccess.Facts.Responsible). An unmarked case is refused with
// ErrPrecondition.
func (c *Case) WithdrawPreservation(by caseaccess.Caller, reason string, now time.Time) (*casev1.CasePreservationWithdrawn, error) {
	switch {
	case by.Subject == "":
		return nil, fmt.Errorf("%w: the caller has no subject", ErrNotPermitted)
	case by.DPO, by.Supervisor:
	case by.Officer && c.Mark != nil && c.Mark.By == by.Subject && c.Access.Responsible(by):
	case by.Officer:
		return nil, fmt.Errorf("%w: an officer may withdraw only a mark they placed on a case that is still theirs; ask a supervisor or the data-protection officer", ErrNotPermitted)
	default:
		return nil, fmt.Errorf("%w: only the data-protection officer, a supervisor or the officer who placed the mark may withdraw it", ErrNotPermitted)
	}
	if !c.Marked {
		return nil, fmt.Errorf("%w: the case is not marked for preservation", ErrPrecondition)
	}
	if err := checkReason(reason); err != nil {
		return nil, err
	}
	m := &casev1.CasePreservationWithdrawn{CaseId: c.ID, WithdrawnBy: by.Subject, Reason: reason, WithdrawnAt: timestamppb.New(now)}
	if c.Mark != nil {
		m.MarkedBy = c.Mark.By
	}
	return m, nil
}

func checkReason(reason string) error {
	switch n := len([]rune(reason)); {
	case strings.TrimSpace(reason) == "":
		return fmt.Errorf("%w: a reason is required", ErrPrecondition)
	case n > MaxMarkReason:
		return fmt.Errorf("%w: the reason has %d characters, at most %d", ErrPrecondition, n, MaxMarkReason)
	}
	return nil
}
