// Package caseaccess is kontakt's one rule of who may act on a case and
// who may read it. Routing (its commands and its reads) and retention (its
// case commands, such as marking a case for preservation) both need it,
// and services may not import each other, so the rule lives here: the
// facts that decide it, folded from the case's events, and the predicates
// over them. It is pure (no I/O, no clock), so every service applies the
// same rule to the same events.
package caseaccess

import (
	"slices"

	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// Facts are what decides who may act on a case: where it is and who holds
// it. They hold no personal data (queue names and subject ids).
type Facts struct {
	// Queue is the queue the case is in now; empty until it is routed.
	Queue string
	// Assignee is the subject id of whoever holds the case; empty when
	// nobody does.
	Assignee string
	// ForwardedToDepartment and ForwardedToOfficer are the targets of the
	// latest forwarding; a move to another queue clears them.
	ForwardedToDepartment string
	ForwardedToOfficer    string
}

// Apply folds one case event into the facts and reports whether the event
// is one that changes them. Events it does not know leave the facts as
// they are, so a newer writer's events never break the rule.
func (f *Facts) Apply(msg proto.Message) bool {
	switch m := msg.(type) {
	case *casev1.CaseRouted:
		f.Queue = m.GetQueue()
	case *casev1.CaseMoved:
		f.Queue = m.GetToQueue()
		f.Assignee = ""
		f.ForwardedToDepartment, f.ForwardedToOfficer = "", ""
	case *casev1.CaseAssigned:
		f.Assignee = m.GetAssignee()
	case *casev1.CaseReleased:
		f.Assignee = ""
	case *casev1.CaseForwarded:
		if q := m.GetToQueue(); q != "" {
			f.Queue = q
		}
		f.Assignee = ""
		f.ForwardedToDepartment, f.ForwardedToOfficer = m.GetToDepartment(), m.GetToOfficer()
	case *casev1.CaseClosed:
		f.Assignee = ""
	default:
		return false
	}
	return true
}

// Caller is who asks, as far as the rule cares: the token's subject, its
// roles, and the queues and department it belongs to. The caller's
// service merges queue membership from its configuration into Queues.
type Caller struct {
	Subject string
	// Agent, Officer and Supervisor work cases; DPO is the
	// data-protection officer, who reads but does not work them. A caller
	// may hold several roles; their permissions add up.
	Agent, Officer, Supervisor, DPO bool
	Queues                          []string
	Department                      string
}

// works reports whether the caller holds a role that works cases.
func (c Caller) works() bool {
	return c.Subject != "" && (c.Agent || c.Officer || c.Supervisor)
}

// MayWork reports whether the caller may act on the case (the case
// commands): a supervisor always; an agent or officer who holds it or in
// whose queue it is; an officer it was forwarded to, by name or by
// department.
func (f Facts) MayWork(c Caller) bool {
	if !c.works() {
		return false
	}
	switch {
	case c.Supervisor:
		return true
	case f.HeldBy(c):
		return true
	case f.Queue != "" && slices.Contains(c.Queues, f.Queue):
		return true
	}
	return f.ForwardedTo(c)
}

// MayRead reports whether the caller may read the case's personal data:
// whoever may work it, and the data-protection officer always.
func (f Facts) MayRead(c Caller) bool {
	return (c.DPO && c.Subject != "") || f.MayWork(c)
}

// Responsible reports whether the case is the caller's own now: assigned
// to them, or forwarded to them or to their department as an officer.
// Queue membership alone does not make a case one's own. Decisions about a
// case's future beyond the workflow (marking it for preservation) are for
// the official responsible for it, or a supervisor.
func (f Facts) Responsible(c Caller) bool {
	return c.works() && (f.HeldBy(c) || f.ForwardedTo(c))
}

// HeldBy reports whether the case is assigned to the caller.
func (f Facts) HeldBy(c Caller) bool {
	return f.Assignee != "" && f.Assignee == c.Subject
}

// ForwardedTo reports whether the caller is an officer the case was
// forwarded to, by name or by department. An empty department never
// matches, or every officer without one would match every case forwarded
// without one.
func (f Facts) ForwardedTo(c Caller) bool {
	if !c.Officer || c.Subject == "" {
		return false
	}
	return (f.ForwardedToOfficer != "" && f.ForwardedToOfficer == c.Subject) ||
		(f.ForwardedToDepartment != "" && f.ForwardedToDepartment == c.Department)
}
