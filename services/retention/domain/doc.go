// Package domain holds the retention service's rules: the retention plan
// as data (which rule decides what happens to which data class of which
// case, and when), the retention view of one case folded from its events,
// and the schedule that the plan gives that case. It is pure: no I/O
// besides the plans embedded in the binary, and no clock, since every time
// comes from an event or from the caller. So every rule of the plan is
// tested without a server, and a schedule can be recomputed at any time
// from the events alone.
//
// # The plan
//
// A plan (plan.go, parse.go) is a YAML file that a municipality's
// archivist can read: every rule names the case types, channels and data
// classes it covers, a period, what the period counts from (registration
// or closure) and what happens when it ends (redact, delete, preserve or
// keep), with a note citing the municipality's own document. The file is
// checked strictly when it is loaded, so a plan that would delete a case
// before redacting its personal data, leave a case without any decision,
// or let two rules decide the same thing never runs.
//
// # The schedule
//
// Schedule (schedule.go) says what the plan will do to a case and when.
// It does not look at holds: a hold defers the work but not the deadline,
// so the caller checks Case.OnHold before acting, and a preview can still
// show what a hold is holding back.
package domain
