package domain

import (
	"cmp"
	"slices"
	"time"
)

// Due is one thing the plan will do to a case: redact some personal
// classes, or delete or preserve the whole case, at a time. The app acts
// on it when it is due and the case is not on hold, and records Rule in
// the event it appends.
type Due struct {
	// Action is ActionRedact, ActionDelete or ActionPreserve, never
	// ActionKeep (keeping is the absence of a Due).
	Action Action
	// Classes are, for a redaction, the personal classes not yet redacted
	// that the rule covers, in PersonalClasses order; for a deletion or
	// preservation, [ClassCase].
	Classes []Class
	// At is when the rule's period ends.
	At time.Time
	// From is what the period counts from: the registration or the
	// closure the rule names, or, for data written after its class was
	// redacted (Rewritten), the later of that and when the data was
	// first written.
	From time.Time
	// Rewritten says the classes received data after an earlier
	// redaction of theirs, which the plan counts from its first write.
	Rewritten bool
	// Rule names the plan's rule.
	Rule string
}

// Schedule lists what the plan will do to the case, earliest first (ties
// by rule name). Each personal class not yet redacted is resolved by its
// own rule, and classes resolved by the same rule with the same deadline
// form one Due, so one PersonalDataRedacted covers them. The whole case
// gets one Due when its rule deletes or preserves it. Classes that are
// kept or that no rule covers get none, and neither does a
// closure-anchored rule while the case is open: its period has not
// started. A deleted case has nothing left to schedule.
//
// Data written into a class after the class was redacted (an answer to a
// complaint still open after the plan culled its personal data, a
// rectification after an erasure) falls under the class's rule again,
// counted from when it was first written: a period that counts from
// registration counts from that write instead, one that counts from
// closure from the later of the closure and that write. Counting from the
// old anchor would redact it at the next sweep, minutes after an agent
// wrote it. No source plan refuses such data, so kontakt always accepts it.
//
// Schedule ignores holds on purpose: a hold defers the work, not the
// deadline, so a preview still shows what it holds back. The caller checks
// Case.OnHold before acting, and archives first when MustArchive says so.
func (p *Plan) Schedule(c *Case) []Due {
	if c.Deleted || c.RegisteredAt.IsZero() {
		return nil
	}
	var dues []Due
	byRule := make(map[string]int) // rule name and deadline -> index in dues
	for _, class := range PersonalClasses() {
		if c.Redacted[class] {
			continue
		}
		r, ok := p.Resolve(c.Type, c.Channel, c.Marked, class)
		if !ok || r.Action != ActionRedact {
			continue
		}
		from, ok := c.anchor(r)
		if !ok {
			continue
		}
		w, rewritten := c.Rewritten[class]
		if rewritten && w.After(from) {
			from = w
		}
		at := r.Period.After(from)
		key := r.Name + "\x00" + at.Format(time.RFC3339Nano)
		if i, seen := byRule[key]; seen {
			dues[i].Classes = append(dues[i].Classes, class)
			continue
		}
		byRule[key] = len(dues)
		dues = append(dues, Due{Action: ActionRedact, Classes: []Class{class}, At: at, From: from, Rewritten: rewritten, Rule: r.Name})
	}
	if r, ok := p.Resolve(c.Type, c.Channel, c.Marked, ClassCase); ok &&
		(r.Action == ActionDelete || r.Action == ActionPreserve) {
		if from, ok := c.anchor(r); ok {
			dues = append(dues, Due{Action: r.Action, Classes: []Class{ClassCase}, At: r.Period.After(from), From: from, Rule: r.Name})
		}
	}
	slices.SortStableFunc(dues, func(a, b Due) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return cmp.Compare(a.Rule, b.Rule)
	})
	return dues
}

// Deadline is when rule r's period ends for the case, counted from the
// rule's anchor; false while the period has not begun (a closure-anchored
// rule and an open case). A register extract tells the person this date
// for classes Schedule leaves out.
func (c *Case) Deadline(r Rule) (time.Time, bool) {
	from, ok := c.anchor(r)
	if !ok {
		return time.Time{}, false
	}
	return r.Period.After(from), true
}

// anchor is what rule r's period counts from for the case; false while
// the period has not begun (a closure-anchored rule and an open case).
func (c *Case) anchor(r Rule) (time.Time, bool) {
	switch r.From {
	case AnchorRegistration:
		return c.RegisteredAt, true
	case AnchorClosure:
		if c.ClosedAt.IsZero() {
			return time.Time{}, false
		}
		return c.ClosedAt, true
	}
	return time.Time{}, false
}

// MustArchive reports whether the case has to be exported to the archive
// before anything of it is removed: an officer marked it, or the plan
// preserves (bevaras) cases like it. Redacting first would leave the
// archive without the personal data the preserved record must hold.
func (p *Plan) MustArchive(c *Case) bool {
	if c.Marked {
		return true
	}
	r, ok := p.Resolve(c.Type, c.Channel, c.Marked, ClassCase)
	return ok && r.Action == ActionPreserve
}

// ArchiveDue says when the archive package of the case is written: for
// a case that must be archived (MustArchive) and has no current package,
// at its first deadline under the plan, because the sweeper writes the
// package before that deadline removes anything. The Due's action is
// ActionArchive and its rule the first deadline's. It reports false when
// the case needs no package, has a current one, or has no deadline yet (a
// period counted from a closure that has not happened).
func (p *Plan) ArchiveDue(c *Case) (Due, bool) {
	if !p.MustArchive(c) || (c.Archived && !c.ChangedSinceArchive) {
		return Due{}, false
	}
	dues := p.Schedule(c)
	if len(dues) == 0 {
		return Due{}, false
	}
	return Due{Action: ActionArchive, Classes: []Class{ClassCase}, At: dues[0].At, From: dues[0].From, Rule: dues[0].Rule}, true
}

// NextDue returns when the plan next acts on the case, for a scheduler
// that sleeps until then; false when nothing is scheduled (a kept or
// deleted case, or an open case whose rules count from closure).
func (p *Plan) NextDue(c *Case) (time.Time, bool) {
	dues := p.Schedule(c)
	if len(dues) == 0 {
		return time.Time{}, false
	}
	return dues[0].At, true
}

// DueBy returns the Dues whose time has come by now (At <= now), in
// Schedule order. It does not look at holds; see Schedule.
func (p *Plan) DueBy(c *Case, now time.Time) []Due {
	var out []Due
	for _, d := range p.Schedule(c) {
		if !d.At.After(now) {
			out = append(out, d)
		}
	}
	return out
}
