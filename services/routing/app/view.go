package app

import (
	"slices"
	"time"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/caseaccess"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// CaseRow is the read side's view of one case: what the queue views,
// FindCases and GetCase need without reading the case's stream. The read
// model derives it from the domain's fold of the case's events
// (domain.Case) and its own copies of the sealed personal data.
//
// Personal data appears only sealed (ciphertext and key id), exactly as
// the events carry it: the read model is a file on disk, and a copy that
// holds plain personal data would survive the crypto-shredding that
// redaction relies on. The queries decrypt what they show at read time. A
// nil sealed field means the case never had that data class or it was
// redacted (Redacted tells which).
//
// Rows share nothing with the read model, but the sealed values and
// attachments they point to are shared between rows and must be treated
// as read-only.
type CaseRow struct {
	CaseID   string
	Number   string
	Type     casev1.CaseType
	Channel  casev1.Channel
	Category string
	Status   casev1.CaseStatus
	// Facts are the queue the case is in (empty until it is routed), its
	// assignee and the targets of its latest forwarding: what decides who
	// may read it (pkg/caseaccess).
	caseaccess.Facts

	RegisteredAt time.Time
	// DueAt is RegisteredAt plus the SLA of the case's type; zero when the
	// type has no SLA.
	DueAt time.Time
	// ClosedAt and Resolution describe the latest closing; zero while the
	// case is open, also after a reopening.
	ClosedAt   time.Time
	Resolution casev1.Resolution
	// Reopenings counts CaseReopened events.
	Reopenings int
	// OnHold is true while at least one hold is placed.
	OnHold bool
	// Revision is the revision of the last event of the case's stream
	// that the read model has seen.
	Revision eventstore.Revision

	// FreeText is CaseRegistered.free_text (or its rectification), sealed;
	// the queries decrypt the subject line from it.
	FreeText *casev1.SealedPersonalData
	// Contact and Identity are sealed, for audited GetCase reads.
	Contact  *casev1.SealedPersonalData
	Identity *casev1.SealedPersonalData
	// AttachmentNames is sealed; Attachments hold no names and stay after
	// redaction.
	AttachmentNames *casev1.SealedPersonalData
	Attachments     []*casev1.Attachment
	// Redacted lists, in ascending order, the data classes whose sealed
	// copies a redaction dropped and no rectification has given back.
	Redacted []casev1.DataClass
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
	return r.Status != casev1.CaseStatus_CASE_STATUS_FORWARDED || r.ForwardedToOfficer == ""
}

// IsRedacted reports whether the data class was redacted.
func (r *CaseRow) IsRedacted(c casev1.DataClass) bool {
	_, found := slices.BinarySearch(r.Redacted, c)
	return found
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
	// comment, or the sealed FreeText of a citizen's message; nil once
	// its class (TextClass) was redacted.
	Text *casev1.SealedPersonalData
	// Queue is where a routing, move or forwarding put the case.
	Queue string
	// Resolution is a closing's.
	Resolution casev1.Resolution
	// Detail says which mail a mail entry is about, and for a failure
	// why: codes, never an address or the relay's words.
	Detail string
}

// QueueLoad is the load of one queue, kept as counters that every
// transaction of the read model updates, so that listing all queues
// costs one read per queue whatever the number of cases.
type QueueLoad struct {
	Queue string
	// Open counts cases in the queue that are not closed.
	Open int64
	// Unassigned counts open cases nobody has taken (see
	// CaseRow.IsUnassigned).
	Unassigned int64
	// OpenByStatus counts the open cases by status (queued, assigned,
	// forwarded); the counts add up to Open.
	OpenByStatus map[casev1.CaseStatus]int64
	// OldestOpenAt is the registration time of the oldest open case; zero
	// when the queue has none.
	OldestOpenAt time.Time
	// PastDue counts open cases whose due time has passed; only Loads
	// fills it.
	PastDue int64
}

// Change kinds, one per kind of case event the read model shows. They are
// strings because they go out as they are in WatchQueueResponse.change
// and CaseEntry.kind. HoldPlaced and HoldReleased are both "held": the
// row's OnHold tells which.
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
	// ChangeMailSent and ChangeMailFailed are the outcomes of the mail
	// the e-mail channel sends about the case (MailSent, MailFailed).
	ChangeMailSent   = "mail_sent"
	ChangeMailFailed = "mail_failed"
	// ChangeMessageReceived is a citizen's reply that joined the case
	// (CaseMessageReceived).
	ChangeMessageReceived = "message_received"
)

// TextClass is the data class a history entry's sealed text belongs to:
// a citizen's message is free text (FreeText), every other text an
// official wrote (AnswerText). A redaction of the class takes the text.
func TextClass(kind string) casev1.DataClass {
	if kind == ChangeMessageReceived {
		return casev1.DataClass_DATA_CLASS_FREE_TEXT
	}
	return casev1.DataClass_DATA_CLASS_ANSWER
}

// Change tells live queue watchers (Broker) and the router what one event
// did to the read model. It is delivered after the read model committed
// the event, so a watcher that reacts by querying sees the change.
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
