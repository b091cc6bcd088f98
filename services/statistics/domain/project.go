package domain

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/caseevents"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// Default retention periods, from Mölndal's plan (seed 000): personal data
// is culled 90 days after registration, the whole case deleted after two
// years. The retention plan will configure them later.
const (
	DefaultRedactAfter = 90 * 24 * time.Hour
	DefaultDeleteAfter = 730 * 24 * time.Hour
	// Grace is added to each period before an action counts as late, so a
	// retention run that happens once a day is not reported as late.
	Grace = 24 * time.Hour
)

// Policy holds the periods the on-time flags are measured against.
type Policy struct {
	// RedactAfter is the time from registration by which personal data
	// must be redacted (plus Grace).
	RedactAfter time.Duration
	// DeleteAfter is the time from registration by which the case must be
	// deleted (plus Grace).
	DeleteAfter time.Duration
	// Categories, when not empty, are the configured category codes. A
	// record keeps its case's category only if it is one of them;
	// another (from an event written before categories were a closed
	// list, or by an intake that does not check them) is recorded as ""
	// (unknown), because records are kept for ever and a category that
	// was free text may hold what a citizen typed.
	Categories []string
}

// category is what a record keeps of a case's category (see
// Policy.Categories).
func (p Policy) category(c string) string {
	if len(p.Categories) > 0 && !slices.Contains(p.Categories, c) {
		return ""
	}
	return c
}

// DefaultPolicy returns the default periods.
func DefaultPolicy() Policy {
	return Policy{RedactAfter: DefaultRedactAfter, DeleteAfter: DefaultDeleteAfter}
}

// Case is what the projector keeps about a live case: the case's record
// and the exact registration time that durations are measured from. It is
// dropped when the case is deleted, and with it the only link between the
// case and its record.
type Case struct {
	RegisteredAt time.Time
	Record       Record
	// FirstResponseMailed says the record's time to first response is
	// the first answer the relay accepted by e-mail (MailSent), which a
	// later answer does not move.
	FirstResponseMailed bool
}

// Step is the outcome of one event for one case.
type Step struct {
	// Case is the case's state after the event: nil when the event was
	// for a case the projector does not know (and did not create it).
	Case *Case
	// Changed says the event made a new version of the record:
	// Case.Record, with Version set to the event's position.
	Changed bool
	// Forget says the case is gone: drop its state and its mapping to the
	// record (the record itself stays for ever).
	Forget bool
}

// Project applies one case event to the case's state c (nil when the
// projector knows no such case) and says what changed. newID is called
// only when the event registers a new case, with the event's
// statistics_seed ("" in events older than the field); it returns that
// case's statistics id (see IDs).
//
// Project is deterministic: the same state and event give the same step,
// which is what makes re-projection produce the same record versions. An
// event at or before the record's version was applied already and changes
// nothing. Events the statistics do not use (assignments, notes, holds,
// rectifications, unknown types) change nothing either.
func Project(c *Case, ev eventstore.RecordedEvent, p Policy, newID func(seed string) string) (Step, error) {
	var msg proto.Message
	if ev.Type != eventstore.TypeStreamDeleted {
		m, err := caseevents.Decode(ev.Type, ev.Data)
		switch {
		case errors.Is(err, caseevents.ErrUnknown):
		case err != nil:
			// The position names the event; the payload is never repeated.
			return Step{}, fmt.Errorf("%w: %s at position %d: %w", ErrMalformedEvent, ev.Type, ev.Position, err)
		default:
			msg = m
		}
	}
	return ProjectDecoded(c, ev, msg, p, newID)
}

// ProjectDecoded is Project for an event decoded already (by the
// projection runner, which decodes each event once for every read
// model): msg is the event's message, nil for the deleted-stream event
// and for a type this build does not know.
func ProjectDecoded(c *Case, ev eventstore.RecordedEvent, msg proto.Message, p Policy, newID func(seed string) string) (Step, error) {
	pos := int64(ev.Position)
	if ev.Type == eventstore.TypeStreamDeleted {
		if c == nil {
			return Step{}, nil
		}
		// The stream was deleted without the projector seeing a
		// CaseDeleted (it was purged before the projector got to it, or
		// the stream was removed without one): the tombstone's time is
		// when the case was deleted.
		next := *c
		next.Record.DeletedOnTime = !ev.Recorded.After(c.RegisteredAt.Add(p.DeleteAfter + Grace))
		return finish(c, &next, pos, true), nil
	}
	if m, ok := msg.(*casev1.CaseRegistered); ok {
		if c != nil {
			return Step{Case: c}, nil // Registered twice: the first one counts.
		}
		at := eventTime(m.GetRegisteredAt(), ev.Recorded)
		r := Record{
			StatisticsID:   newID(m.GetStatisticsSeed()),
			Version:        pos,
			Type:           m.GetType(),
			Channel:        m.GetChannel(),
			Category:       p.category(m.GetCategory()),
			RegisteredHour: at.Truncate(time.Hour),
		}
		if loc := m.GetCoarseLocation(); loc != nil {
			r.Area = Area{Latitude: roundCoordinate(loc.GetLatitude()), Longitude: roundCoordinate(loc.GetLongitude())}
			r.HasArea = true
		}
		return Step{Case: &Case{RegisteredAt: at, Record: r}, Changed: true}, nil
	}
	if c == nil {
		return Step{}, nil
	}
	if pos <= c.Record.Version {
		return Step{Case: c}, nil // Applied already.
	}
	next := *c
	r := &next.Record
	switch m := msg.(type) {
	case *casev1.CaseRouted:
		if m.GetQueue() != "" {
			r.Queue = m.GetQueue()
		}
	case *casev1.CaseMoved:
		if m.GetToQueue() != "" {
			r.Queue = m.GetToQueue()
		}
	case *casev1.CaseForwarded:
		if m.GetToQueue() != "" {
			r.Queue = m.GetToQueue()
		}
		// A forward to a named officer alone keeps the department.
		if m.GetToDepartment() != "" {
			r.Department = m.GetToDepartment()
		}
	case *casev1.CaseAnswered:
		if !r.HasFirstResponse {
			r.TimeToFirstResponse = since(c.RegisteredAt, eventTime(m.GetAnsweredAt(), ev.Recorded))
			r.HasFirstResponse = true
		}
	case *casev1.MailSent:
		// For a case answered by e-mail the first response is the
		// answer the citizen got: the first answer the relay accepted,
		// not the AnswerCase call (a relay away for an hour delays the
		// response by that hour). A case answered otherwise keeps its
		// CaseAnswered time.
		if m.GetKind() != casev1.MailKind_MAIL_KIND_ANSWER || c.FirstResponseMailed {
			return Step{Case: c}, nil
		}
		next.FirstResponseMailed = true
		r.TimeToFirstResponse = since(c.RegisteredAt, eventTime(m.GetSentAt(), ev.Recorded))
		r.HasFirstResponse = true
		if next.Record == c.Record {
			// Sent in the same instant as answered: the record is as it
			// was, but the mark must be kept, so a later answer's mail
			// does not move the time.
			next.Record.Version = pos
			return Step{Case: &next, Changed: true}, nil
		}
	case *casev1.CaseClosed:
		r.Closed = true
		r.TimeToClose = since(c.RegisteredAt, eventTime(m.GetClosedAt(), ev.Recorded))
		r.HasClose = true
		r.FirstContactResolution = m.GetFirstContactResolution() && r.Reopenings == 0
	case *casev1.CaseReopened:
		r.Closed = false
		r.Reopenings++
		r.FirstContactResolution = false
	case *casev1.PersonalDataRedacted:
		// The latest redaction decides: personal data that stayed past
		// the deadline was not redacted on time, however much of it went
		// earlier (an erasure request, say).
		at := eventTime(m.GetRedactedAt(), ev.Recorded)
		r.PersonalDataRedactedOnTime = !at.After(deadline(m.GetDueAt(), c.RegisteredAt.Add(p.RedactAfter)).Add(Grace))
	case *casev1.CaseDeleted:
		at := eventTime(m.GetDeletedAt(), ev.Recorded)
		r.DeletedOnTime = !at.After(deadline(m.GetDueAt(), c.RegisteredAt.Add(p.DeleteAfter)).Add(Grace))
		// The deletion always makes a version, even when no field
		// changes (a late deletion): the record's last version then says
		// the deletion was projected, which a read model restored from an
		// older copy needs to know when it meets the case's tombstone
		// without the purged CaseDeleted (see the projector).
		next.Record.Version = pos
		return Step{Case: &next, Changed: true, Forget: true}, nil
	default:
		return Step{Case: c}, nil
	}
	return finish(c, &next, pos, false), nil
}

// finish sets the version when the record changed.
func finish(before, after *Case, pos int64, forget bool) Step {
	if after.Record == before.Record {
		return Step{Case: before, Forget: forget}
	}
	after.Record.Version = pos
	return Step{Case: after, Changed: true, Forget: forget}
}

// eventTime is the time the event states, or when the store accepted it
// if the event states none.
func eventTime(ts *timestamppb.Timestamp, recorded time.Time) time.Time {
	if ts != nil {
		return ts.AsTime().UTC()
	}
	return recorded.UTC()
}

// since is the time from registration to t, never negative: a clock that
// was slightly wrong must not make a response arrive before the question.
func since(registered, t time.Time) time.Duration {
	return max(t.Sub(registered), 0)
}

// deadline is the deadline an event carries (the plan's rule, which may
// differ by type and channel and count from closure), or the policy's
// fixed period for events that carry none (erasures, older events).
func deadline(due *timestamppb.Timestamp, fallback time.Time) time.Time {
	if due.IsValid() && due.AsTime().Unix() > 0 {
		return due.AsTime()
	}
	return fallback
}
