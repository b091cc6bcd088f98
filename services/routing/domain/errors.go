package domain

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every refusal wraps exactly one of them with %w and a
// reason, so the gRPC edge can choose a status code with errors.Is in one
// table while the message still tells the agent why:
//
//	ErrNotPermitted    -> PermissionDenied
//	ErrPrecondition    -> FailedPrecondition
//	ErrAlreadyAssigned -> Aborted (another agent won the race for the case)
//	ErrAlreadyRouted   -> FailedPrecondition (the routing projector treats it as done)
//	ErrInvalidArgument -> InvalidArgument
//	ErrNotRegistered   -> NotFound
//	ErrInvalidStream   -> Internal (the stored events contradict each other)
//	ErrUnknownEvent    -> skipped by readers (a newer writer's event)
//	ErrInvalidRules    -> refused at start-up (the rule file is wrong)
var (
	// ErrPrecondition means the case is not in a state that allows the
	// command, for example answering a closed case.
	ErrPrecondition = errors.New("failed precondition")
	// ErrNotPermitted means the actor may not do this to this case.
	ErrNotPermitted = errors.New("not permitted")
	// ErrAlreadyAssigned means somebody else holds the case. The error is
	// an *AlreadyAssignedError, which names the assignee.
	ErrAlreadyAssigned = errors.New("already assigned")
	// ErrAlreadyRouted means the case was routed before: routing happens
	// once, and a redelivered registration must not route it again.
	ErrAlreadyRouted = errors.New("case is already routed")
	// ErrNotRegistered means the events do not begin with CaseRegistered,
	// so there is no case to fold.
	ErrNotRegistered = errors.New("case is not registered")
	// ErrInvalidArgument means a command's argument is missing or wrong
	// whatever the case's state, for example a close without a resolution.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrInvalidStream means the events of one stream cannot belong to one
	// case, for example a second CaseRegistered or another case's id.
	ErrInvalidStream = errors.New("invalid case stream")
	// ErrUnknownEvent means Decode does not know the event type. Readers
	// skip such events, so an older reader keeps working when a newer
	// writer adds an event.
	ErrUnknownEvent = errors.New("unknown event type")
	// ErrInvalidRules is what every error of ParseRules wraps.
	ErrInvalidRules = errors.New("invalid routing rules")
)

// AlreadyAssignedError says who holds a case that the actor tried to
// claim, so the agent UI can show "already assigned to <subject>" and move
// on to the next case. errors.Is(err, ErrAlreadyAssigned) holds for it.
type AlreadyAssignedError struct {
	// Assignee is the subject id of whoever holds the case.
	Assignee string
}

// Error names the assignee by subject id, which is not personal data in
// kontakt (see auth.Principal).
func (e *AlreadyAssignedError) Error() string {
	return "already assigned to " + e.Assignee
}

// Unwrap lets errors.Is(err, ErrAlreadyAssigned) hold.
func (e *AlreadyAssignedError) Unwrap() error { return ErrAlreadyAssigned }

// refuse wraps a sentinel with the reason the command was refused.
func refuse(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", kind, fmt.Sprintf(format, args...))
}
