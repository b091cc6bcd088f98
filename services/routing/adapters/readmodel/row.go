package readmodel

import (
	"slices"
	"time"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// CaseRow is the read model's view of one case: what the queue views,
// FindCases and GetCase need without reading the case's stream.
//
// Personal data appears only sealed (ciphertext and key id), exactly as the
// events carry it: the read model is a file on disk, and a copy that holds
// plain personal data would survive the crypto-shredding that redaction
// relies on. The query side decrypts what it shows at read time. A nil
// sealed field means the case never had that data class or it was
// redacted (Redacted tells which).
//
// Rows returned by queries and passed to OnChange share nothing with the
// store, but the sealed values and attachments they point to must be
// treated as read-only by OnChange callbacks, which may run side by side.
type CaseRow struct {
	CaseID   string
	Number   string
	Type     casev1.CaseType
	Channel  casev1.Channel
	Category string
	// Queue is the queue the case is in; empty until it is routed.
	Queue    string
	Status   casev1.CaseStatus
	Assignee string

	RegisteredAt time.Time
	// DueAt is RegisteredAt plus the SLA of the case's type; zero when the
	// type has no SLA.
	DueAt time.Time
	// ClosedAt is when the case was last closed; zero while it is open.
	ClosedAt time.Time
	// UpdatedAt is the time carried by the last event that changed the case.
	UpdatedAt time.Time
	// Resolution is the resolution of the last closing.
	Resolution casev1.Resolution

	ForwardedDepartment string
	ForwardedOfficer    string

	// FreeText is CaseRegistered.free_text (or its rectification), sealed;
	// the query side decrypts the subject line from it.
	FreeText *casev1.SealedPersonalData
	// Contact and Identity are sealed, for audited GetCase reads.
	Contact  *casev1.SealedPersonalData
	Identity *casev1.SealedPersonalData
	// AttachmentNames is sealed; Attachments hold no names and stay after
	// redaction.
	AttachmentNames *casev1.SealedPersonalData
	Attachments     []*casev1.Attachment

	// Redacted lists the data classes whose sealed copies were dropped, in
	// ascending order.
	Redacted []casev1.DataClass

	// Revision is the revision of the last event of the case's stream that
	// the read model has seen, so commands can tell whether the row is
	// fresh enough to act on.
	Revision eventstore.Revision
	// Reopenings counts CaseReopened events.
	Reopenings int
	// OnHold is true while at least one hold is placed.
	OnHold bool
}

// IsOpen reports whether the case counts as open work in its queue: it is
// in a queue and not closed.
func (r *CaseRow) IsOpen() bool {
	return r.Queue != "" && r.Status != casev1.CaseStatus_CASE_STATUS_CLOSED
}

// IsUnassigned reports whether an open case waits for somebody to take
// it: nobody is assigned and it was not forwarded to a named officer.
func (r *CaseRow) IsUnassigned() bool {
	if !r.IsOpen() || r.Assignee != "" {
		return false
	}
	return r.Status != casev1.CaseStatus_CASE_STATUS_FORWARDED || r.ForwardedOfficer == ""
}

// IsRedacted reports whether the data class was redacted.
func (r *CaseRow) IsRedacted(c casev1.DataClass) bool {
	_, found := slices.BinarySearch(r.Redacted, c)
	return found
}

// clone copies the row's slices, so a snapshot handed to OnChange does not
// change when the store goes on applying events to the same case.
func (r CaseRow) clone() CaseRow {
	r.Attachments = slices.Clone(r.Attachments)
	r.Redacted = slices.Clone(r.Redacted)
	return r
}

// HistoryEntry is one step of a case's history, for GetCase. Texts
// (answers, notes, forwarding comments) stay sealed, like everything
// personal in the read model.
type HistoryEntry struct {
	// Kind is the change kind of the event (see Change.Kind).
	Kind string
	// Actor is the subject id of whoever acted (an employee or a form
	// client), never a citizen.
	Actor string
	At    time.Time
	// Text is the sealed AnswerText of an answer, note or forwarding
	// comment; nil once DATA_CLASS_ANSWER was redacted.
	Text       *casev1.SealedPersonalData
	Queue      string
	Assignee   string
	Department string
	Officer    string
	Resolution casev1.Resolution
	// Position is the event's position in the log; entries are ordered by
	// it.
	Position eventstore.Position
}

// Load is the load of one queue, kept as counters that every transaction
// updates, so that listing all queues costs one read per queue whatever
// the number of cases.
type Load struct {
	Queue string
	// Open counts cases in the queue that are not closed.
	Open int64
	// Unassigned counts open cases nobody has taken (see
	// CaseRow.IsUnassigned).
	Unassigned int64
	// OldestOpenAt is the registration time of the oldest open case; zero
	// when the queue has none.
	OldestOpenAt time.Time
}

// Change kinds, one per kind of case event the read model applies. They
// are strings because they go out as they are in
// WatchQueueResponse.change. HoldPlaced and HoldReleased are both "held":
// the row's OnHold tells which.
const (
	ChangeRegistered = "registered"
	ChangeRouted     = "routed"
	ChangeAssigned   = "assigned"
	ChangeReleased   = "released"
	ChangeMoved      = "moved"
	ChangeForwarded  = "forwarded"
	ChangeAnswered   = "answered"
	ChangeNoted      = "noted"
	ChangeClosed     = "closed"
	ChangeReopened   = "reopened"
	ChangeRedacted   = "redacted"
	ChangeRectified  = "rectified"
	ChangeHeld       = "held"
	ChangeDeleted    = "deleted"
)

// Change tells live queue watchers what one applied event did. It is
// delivered after the transaction that applied the event committed, so a
// watcher that reacts by querying the store sees the change.
type Change struct {
	// Kind is one of the Change* constants.
	Kind string
	// Queue is the case's queue after the event (for "deleted", the queue
	// it was in).
	Queue string
	// PreviousQueue is the queue the case left, when the event moved it
	// to another one; watchers of that queue must drop the case.
	PreviousQueue string
	// Row is the case after the event (for "deleted", before it).
	Row CaseRow
	// At is the time the event carries (when it happened), or when the
	// store recorded it if the event carries none.
	At time.Time
	// Position is the event's position in the log.
	Position eventstore.Position
}
