package domain

import (
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/caseaccess"
)

// Actor is who gives a command, as far as the case rules care: the
// token's subject, its roles, and the queues and department it belongs
// to. The app merges queue membership from configuration into Queues, so
// the domain has one list to look at.
type Actor struct {
	// Subject is the token's subject id. An actor without one may do
	// nothing: every event names who acted.
	Subject string
	// Agent, Officer and Supervisor are the roles that work cases. An
	// actor may hold several; their permissions add up.
	Agent, Officer, Supervisor bool
	// Queues are the queues the actor works in.
	Queues []string
	// Department is the officer's department (förvaltning); cases
	// forwarded to it are the officer's to work.
	Department string
}

// Caller is the actor as the shared rule of who may act on a case sees it.
func (a Actor) Caller() caseaccess.Caller {
	return caseaccess.Caller{
		Subject: a.Subject, Agent: a.Agent, Officer: a.Officer, Supervisor: a.Supervisor,
		Queues: a.Queues, Department: a.Department,
	}
}

// Claim assigns the case to the actor, who must be allowed to act on it.
// The case must be routed and open. A case held by somebody else is
// refused with an *AlreadyAssignedError (the other agent won the race);
// claiming one's own case again is refused with ErrPrecondition ("already
// assigned to you"), so a double click does not append a second event. A
// supervisor claims like everyone else and uses Assign to take a case from
// somebody.
func (c *Case) Claim(a Actor, now time.Time) (proto.Message, error) {
	if err := c.begin(a, "claimed"); err != nil {
		return nil, err
	}
	switch c.Assignee {
	case "":
	case a.Subject:
		return nil, refuse(ErrPrecondition, "already assigned to you")
	default:
		return nil, &AlreadyAssignedError{Assignee: c.Assignee}
	}
	return &casev1.CaseAssigned{
		CaseId:     c.ID,
		Assignee:   a.Subject,
		AssignedBy: a.Subject,
		AssignedAt: timestamppb.New(now),
	}, nil
}

// Release puts an assigned case back where it was: in its queue, or
// forwarded again if a forwarding put it there. Only the assignee or a
// supervisor may release it, and it must be assigned.
func (c *Case) Release(a Actor, now time.Time) (proto.Message, error) {
	if err := c.begin(a, "released"); err != nil {
		return nil, err
	}
	if c.Assignee == "" {
		return nil, refuse(ErrPrecondition, "case is not assigned")
	}
	if !c.holdsOrSupervises(a) {
		return nil, refuse(ErrNotPermitted, "only the assignee or a supervisor may release")
	}
	return &casev1.CaseReleased{
		CaseId:     c.ID,
		ReleasedBy: a.Subject,
		ReleasedAt: timestamppb.New(now),
	}, nil
}

// Assign gives the case to assignee (a subject id). Only a supervisor may
// assign, also a case somebody else holds (that is what reassignment is
// for). The case must be routed and open, and assigning it to whoever
// holds it already is refused with ErrPrecondition rather than appending
// an event that changes nothing.
func (c *Case) Assign(a Actor, assignee string, now time.Time) (proto.Message, error) {
	if err := c.beginSupervisor(a, "assign"); err != nil {
		return nil, err
	}
	if err := c.begin(a, "assigned"); err != nil {
		return nil, err
	}
	assignee = strings.TrimSpace(assignee)
	if assignee == "" {
		return nil, refuse(ErrInvalidArgument, "an assignee is required")
	}
	if assignee == c.Assignee {
		return nil, refuse(ErrPrecondition, "already assigned to %s", assignee)
	}
	return &casev1.CaseAssigned{
		CaseId:     c.ID,
		Assignee:   assignee,
		AssignedBy: a.Subject,
		AssignedAt: timestamppb.New(now),
	}, nil
}

// Move puts the case in another queue. Only a supervisor may move a case,
// and it must be routed and open. A move starts the case afresh in the
// new queue: it clears the assignee and any forwarding, so the new queue's
// members see it as unassigned (status QUEUED) and the previous
// department no longer works it. Moving to the queue the case is in is
// refused with ErrPrecondition. The domain does not know the configured
// queues; the app checks that toQueue exists.
func (c *Case) Move(a Actor, toQueue string, now time.Time) (proto.Message, error) {
	if err := c.beginSupervisor(a, "move"); err != nil {
		return nil, err
	}
	if err := c.begin(a, "moved"); err != nil {
		return nil, err
	}
	toQueue = strings.TrimSpace(toQueue)
	if toQueue == "" {
		return nil, refuse(ErrInvalidArgument, "a queue to move to is required")
	}
	if toQueue == c.Queue {
		return nil, refuse(ErrPrecondition, "case is already in queue %q", toQueue)
	}
	return &casev1.CaseMoved{
		CaseId:    c.ID,
		FromQueue: c.Queue,
		ToQueue:   toQueue,
		MovedBy:   a.Subject,
		MovedAt:   timestamppb.New(now),
	}, nil
}

// AddNote adds an internal note. Anyone who may act on the case may add
// one, assigned or not, and also to a closed case: a note after closing
// (for example "the citizen called back, no action needed") is part of
// the record and is no reason to reopen. noteID is chosen by the app and
// text must be sealed.
func (c *Case) AddNote(a Actor, noteID string, text *casev1.SealedPersonalData, now time.Time) (proto.Message, error) {
	if err := c.beginAllowClosed(a); err != nil {
		return nil, err
	}
	if strings.TrimSpace(noteID) == "" {
		return nil, refuse(ErrInvalidArgument, "a note id is required")
	}
	if err := sealed("note text", text, true); err != nil {
		return nil, err
	}
	return &casev1.NoteAdded{
		CaseId:  c.ID,
		NoteId:  noteID,
		Author:  a.Subject,
		Text:    text,
		AddedAt: timestamppb.New(now),
	}, nil
}

// Forward sends the case to a department's queue (toQueue, with the
// department that owns it in toDepartment) or to a named case officer
// (toOfficer), with an optional sealed comment. At least toQueue or
// toOfficer is required. The case must be open ("a closed case cannot be
// forwarded until reopened"). An unassigned case may be forwarded by
// anyone who may act on it, which is how first-line agents triage a
// queue; an assigned case only by its assignee or a supervisor.
// Forwarding clears the assignee and makes the case FORWARDED; it moves to
// toQueue when one is given and stays in its queue otherwise. A new
// forwarding replaces the previous targets.
func (c *Case) Forward(a Actor, toQueue, toDepartment, toOfficer string, comment *casev1.SealedPersonalData, now time.Time) (proto.Message, error) {
	if err := c.begin(a, "forwarded"); err != nil {
		return nil, err
	}
	if c.Assignee != "" && !c.holdsOrSupervises(a) {
		return nil, refuse(ErrNotPermitted, "only the assignee or a supervisor may forward an assigned case")
	}
	toQueue = strings.TrimSpace(toQueue)
	toDepartment = strings.TrimSpace(toDepartment)
	toOfficer = strings.TrimSpace(toOfficer)
	if toQueue == "" && toOfficer == "" {
		return nil, refuse(ErrInvalidArgument, "forwarding needs a queue or an officer")
	}
	if err := sealed("forwarding comment", comment, false); err != nil {
		return nil, err
	}
	return &casev1.CaseForwarded{
		CaseId:       c.ID,
		ToQueue:      toQueue,
		ToDepartment: toDepartment,
		ToOfficer:    toOfficer,
		Comment:      comment,
		ForwardedBy:  a.Subject,
		ForwardedAt:  timestamppb.New(now),
	}, nil
}

// Answer records the answer given to the citizen. Only the assignee or a
// supervisor may answer, so that two agents do not answer one citizen
// twice; an agent claims the case first. The case must be open. A case
// may be answered more than once (a follow-up); the first answer is the
// case's first response time. delivery says whether the mail outbox
// mails it (the request's choice, recorded as given).
func (c *Case) Answer(a Actor, answer *casev1.SealedPersonalData, delivery casev1.AnswerDelivery, now time.Time) (proto.Message, error) {
	if err := c.begin(a, "answered"); err != nil {
		return nil, err
	}
	if !c.holdsOrSupervises(a) {
		return nil, refuse(ErrNotPermitted, "only the assignee or a supervisor may answer")
	}
	if err := sealed("answer", answer, true); err != nil {
		return nil, err
	}
	return &casev1.CaseAnswered{
		CaseId:     c.ID,
		AnsweredBy: a.Subject,
		Answer:     answer,
		AnsweredAt: timestamppb.New(now),
		Delivery:   delivery,
	}, nil
}

// Close closes the case with a resolution. The case must be open and a
// resolution is required. The assignee or a supervisor may close; an
// unassigned forwarded case may also be closed by the officer it was
// forwarded to, by name or by department, because a case officer often
// settles a forwarded case without claiming it first. A redacted case can
// be closed. firstContactResolution is refused (ErrPrecondition) for a
// case that was ever forwarded or reopened, and with the resolution
// FORWARDED, because such a case was by definition not resolved at the
// first contact and statistics count on the flag.
func (c *Case) Close(a Actor, resolution casev1.Resolution, firstContactResolution bool, now time.Time) (proto.Message, error) {
	if err := c.beginAllowClosed(a); err != nil {
		return nil, err
	}
	if c.Status == casev1.CaseStatus_CASE_STATUS_CLOSED {
		return nil, refuse(ErrPrecondition, "case is already closed")
	}
	if !c.holdsOrSupervises(a) && !(c.Assignee == "" && c.forwardedTo(a)) {
		return nil, refuse(ErrNotPermitted, "only the assignee, a supervisor or the officer the case was forwarded to may close")
	}
	if _, known := casev1.Resolution_name[int32(resolution)]; !known || resolution == casev1.Resolution_RESOLUTION_UNSPECIFIED {
		return nil, refuse(ErrInvalidArgument, "a resolution is required")
	}
	if firstContactResolution {
		switch {
		case resolution == casev1.Resolution_RESOLUTION_FORWARDED:
			return nil, refuse(ErrInvalidArgument, "a case closed as forwarded was not resolved at first contact")
		case c.Forwardings > 0:
			return nil, refuse(ErrPrecondition, "a forwarded case was not resolved at first contact")
		case c.Reopenings > 0:
			return nil, refuse(ErrPrecondition, "a reopened case was not resolved at first contact")
		}
	}
	return &casev1.CaseClosed{
		CaseId:                 c.ID,
		ClosedBy:               a.Subject,
		Resolution:             resolution,
		FirstContactResolution: firstContactResolution,
		ClosedAt:               timestamppb.New(now),
	}, nil
}

// Reopen opens a closed case again, for example when the citizen writes
// back. Anyone who may act on the case may reopen it; only a closed case
// can be reopened. The case comes back unassigned: QUEUED in its queue,
// or FORWARDED if it was forwarded before it was closed, so the same
// department picks it up again.
func (c *Case) Reopen(a Actor, now time.Time) (proto.Message, error) {
	if err := c.beginAllowClosed(a); err != nil {
		return nil, err
	}
	if c.Status != casev1.CaseStatus_CASE_STATUS_CLOSED {
		return nil, refuse(ErrPrecondition, "only a closed case can be reopened")
	}
	return &casev1.CaseReopened{
		CaseId:     c.ID,
		ReopenedBy: a.Subject,
		ReopenedAt: timestamppb.New(now),
	}, nil
}

// Route puts a newly registered case in the queue the routing rules chose.
// It is the routing projector's command, not a person's, so it takes no
// actor. A case is routed once: a second Route is refused with
// ErrAlreadyRouted, which the projector takes as "done" when a
// registration is delivered again. Later changes of queue are Move and
// Forward. Queue and rule are required; rulesVersion records which rule
// file decided.
func (c *Case) Route(queue, rule, rulesVersion string, now time.Time) (proto.Message, error) {
	if c.Deleted {
		return nil, refuse(ErrPrecondition, "case was deleted")
	}
	if c.Routed {
		return nil, refuse(ErrAlreadyRouted, "routed to queue %q by rule %q", c.Queue, c.Rule)
	}
	if strings.TrimSpace(queue) == "" {
		return nil, refuse(ErrInvalidArgument, "a queue is required")
	}
	if strings.TrimSpace(rule) == "" {
		return nil, refuse(ErrInvalidArgument, "the rule that chose the queue is required")
	}
	return &casev1.CaseRouted{
		CaseId:       c.ID,
		Queue:        queue,
		Rule:         rule,
		RulesVersion: rulesVersion,
		RoutedAt:     timestamppb.New(now),
	}, nil
}

// RouteBy routes the case by the rules: the first matching rule's queue,
// else the default queue. It is Route with the rules' decision filled in.
func (c *Case) RouteBy(r *Rules, now time.Time) (proto.Message, error) {
	queue, rule := r.Route(c.Type, c.Channel, c.Category, c.Mailbox)
	return c.Route(queue, rule, r.Version(), now)
}

// begin runs the checks every workflow command shares and refuses a
// closed case; done is the participle for the message ("a closed case
// cannot be claimed until reopened").
func (c *Case) begin(a Actor, done string) error {
	if err := c.beginAllowClosed(a); err != nil {
		return err
	}
	if c.Status == casev1.CaseStatus_CASE_STATUS_CLOSED {
		return refuse(ErrPrecondition, "a closed case cannot be %s until reopened", done)
	}
	return nil
}

// beginAllowClosed runs the checks every workflow command shares: the
// actor may act on the case, which exists and is routed.
func (c *Case) beginAllowClosed(a Actor) error {
	if err := c.mayAct(a); err != nil {
		return err
	}
	if c.Deleted {
		return refuse(ErrPrecondition, "case was deleted")
	}
	if !c.Routed {
		return refuse(ErrPrecondition, "case is not routed yet")
	}
	return nil
}

// beginSupervisor refuses commands that only a supervisor may give before
// looking at the case.
func (c *Case) beginSupervisor(a Actor, verb string) error {
	if err := checkActor(a); err != nil {
		return err
	}
	if !a.Supervisor {
		return refuse(ErrNotPermitted, "only a supervisor may %s a case", verb)
	}
	return nil
}

// checkActor refuses an actor who cannot work any case: without a subject
// no event could say who acted, and analysts, DPOs and form clients do not
// work cases.
func checkActor(a Actor) error {
	if a.Subject == "" {
		return refuse(ErrNotPermitted, "the actor has no subject")
	}
	if !a.Agent && !a.Officer && !a.Supervisor {
		return refuse(ErrNotPermitted, "only agents, officers and supervisors work cases")
	}
	return nil
}

// mayAct is the per-case authorisation that every command starts with:
// the one rule of pkg/caseaccess (MayWork), which retention's case
// commands apply too.
func (c *Case) mayAct(a Actor) error {
	if err := checkActor(a); err != nil {
		return err
	}
	if c.Facts.MayWork(a.Caller()) {
		return nil
	}
	if a.Officer {
		return refuse(ErrNotPermitted, "the case is neither in one of your queues nor forwarded to you or your department")
	}
	return refuse(ErrNotPermitted, "the case is not in one of your queues")
}

// holdsOrSupervises reports whether a holds the case or is a supervisor.
func (c *Case) holdsOrSupervises(a Actor) bool {
	return a.Supervisor || (c.Assignee != "" && c.Assignee == a.Subject)
}

// forwardedTo reports whether a is an officer the case is forwarded to,
// by name or by department (caseaccess.Facts.ForwardedTo).
func (c *Case) forwardedTo(a Actor) bool {
	return c.Facts.ForwardedTo(a.Caller())
}

// sealed checks that a text arrives sealed: the domain never sees plain
// personal data, and an empty ciphertext or key id means the app forgot to
// seal it.
func sealed(what string, s *casev1.SealedPersonalData, required bool) error {
	if s == nil {
		if required {
			return refuse(ErrInvalidArgument, "the %s is required", what)
		}
		return nil
	}
	if s.GetKeyId() == "" || len(s.GetCiphertext()) == 0 {
		return refuse(ErrInvalidArgument, "the %s is not sealed", what)
	}
	return nil
}
