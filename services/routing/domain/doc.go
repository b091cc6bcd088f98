// Package domain holds the routing service's rules: the case aggregate
// folded from a case's events, the agent workflow's commands and who may
// give them on which case, and the routing rules that put a new case in a
// queue. It is pure (no I/O, no clock, no NATS), so every rule is tested
// without a server.
//
// # Commands
//
// The commands (methods of Case) decide whether an actor may change a case
// and, if so, return the one event to append; they never change the case
// themselves. The app reads the stream, folds it with Fold, calls a
// command with the time from its clock, and appends the event with
// Case.Version as the expected revision. A conflict means somebody else
// acted first: the app reads the stream again and retries the command,
// which may now refuse (for example with ErrAlreadyAssigned).
//
// Every command checks in the same order, so the first failing rule is the
// one reported:
//
//  1. who the actor is: a subject and a role that works cases (agent,
//     officer, supervisor); Assign and Move need a supervisor
//     (ErrNotPermitted);
//  2. whether the actor may act on this case at all (ErrNotPermitted), so
//     a stranger learns nothing about the case's state;
//  3. the case's lifecycle: deleted, not yet routed, closed
//     (ErrPrecondition);
//  4. the actor's part in the case, for example only the assignee or a
//     supervisor may answer (ErrNotPermitted);
//  5. the arguments (ErrInvalidArgument);
//  6. the rest of the case's state, for example who holds it
//     (ErrPrecondition, ErrAlreadyAssigned).
//
// # Rules for every command
//
//   - Permission on a case: a supervisor may act on any case. An agent may
//     act on cases in one of the agent's queues. An officer may act on
//     cases forwarded to the officer by name, forwarded to the officer's
//     department, or in one of the officer's queues. Whoever holds the
//     case (its assignee) may act on it too, because a supervisor may
//     assign a case to somebody outside its queue. Roles add up.
//   - A deleted case accepts nothing. A case that is not routed yet accepts
//     nothing but Route: it is in no queue, and routing follows
//     registration at once.
//   - A closed case accepts only AddNote and Reopen.
//   - When a case is assigned, only its assignee or a supervisor may
//     release, forward, answer or close it, so nobody takes a case out of
//     a colleague's hands by accident.
//   - Redaction does not stop the work. A redacted case can be claimed,
//     answered, noted, forwarded, closed and reopened: the domain never
//     reads sealed data, and texts added after a redaction are sealed by
//     the app with a live key and fall under the retention plan again.
//   - Holds and preservation stop retention, not the agents.
//
// # Status
//
// Status is derived after every event: REGISTERED until routed; CLOSED
// from CaseClosed until CaseReopened; otherwise ASSIGNED while somebody
// holds the case, FORWARDED while the latest forwarding stands, and QUEUED
// else. So a case has an assignee exactly when it is ASSIGNED, and a
// release or reopening returns a forwarded case to FORWARDED.
//
// # Routing rules
//
// Rules (rules.go) are data: a versioned YAML file, checked strictly when
// it is loaded, that maps a case's type, channel and category to a queue.
package domain
