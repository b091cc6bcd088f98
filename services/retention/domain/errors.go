package domain

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error of the package wraps exactly one of them,
// so callers choose a reaction (or a gRPC status) with errors.Is while
// the message still says what is wrong:
//
//	ErrInvalidPlan    -> refused at start-up (the plan file is wrong)
//	ErrUnknownPlan    -> refused at start-up (configuration names no builtin plan)
//	ErrInvalidPeriod  -> a period such as "90d" is malformed
//	ErrNotRegistered  -> NotFound (the events do not begin with CaseRegistered)
//	ErrInvalidStream  -> Internal (the stored events contradict each other)
//	ErrNotPermitted   -> PermissionDenied (the message says who may)
//	ErrPrecondition   -> FailedPrecondition (the message says why)
var (
	// ErrInvalidPlan is what every error of ParsePlan wraps. The error is
	// a join of *PlanError, one per problem.
	ErrInvalidPlan = errors.New("invalid retention plan")
	// ErrUnknownPlan means Builtin was asked for a plan it does not have.
	ErrUnknownPlan = errors.New("unknown retention plan")
	// ErrInvalidPeriod means a period is not of the form "1y6m", "90d".
	ErrInvalidPeriod = errors.New("invalid period")
	// ErrNotRegistered means an event arrived for a case before its
	// CaseRegistered, so there is no case to apply it to.
	ErrNotRegistered = errors.New("case is not registered")
	// ErrInvalidStream means the events cannot belong to one case, for
	// example a second CaseRegistered or another case's id.
	ErrInvalidStream = errors.New("invalid case stream")
	// ErrNotPermitted means the caller may not give this command on this
	// case; the message says who may.
	ErrNotPermitted = errors.New("not permitted")
	// ErrPrecondition means the case is not in a state the command fits;
	// the message says why.
	ErrPrecondition = errors.New("refused")
)

// PlanError is one problem of a plan file, at the line where it is, so
// whoever edits the file finds it. ParsePlan joins one PlanError per
// problem; errors.Is(err, ErrInvalidPlan) holds for each of them.
type PlanError struct {
	// File names the plan file as the caller named it.
	File string
	// Line is 1-based; 0 when the problem has no line (an empty file).
	Line int
	// Reason says what is wrong, without the file and line.
	Reason string
}

// Error reads "plans/molndal.yaml:7: rule "x": unknown class "kontakt"",
// the form editors and CI logs link to the line.
func (e *PlanError) Error() string {
	if e.Line <= 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
}

// Unwrap lets errors.Is(err, ErrInvalidPlan) hold.
func (e *PlanError) Unwrap() error { return ErrInvalidPlan }
