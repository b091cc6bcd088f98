package app

import (
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

// SubjectCase is one case of a register extract: everything kontakt
// holds on the case about the person, as readable now, and what the plan
// does with it.
type SubjectCase struct {
	CaseID, CaseNumber string
	Type               casev1.CaseType
	Channel            casev1.Channel
	Category           string
	RegisteredAt       time.Time
	// ClosedAt is the latest closing; zero while the case is open.
	ClosedAt time.Time
	// Contact, Identity and FreeText are the current values (after any
	// rectification); nil when redacted or never given.
	Contact  *casev1.ContactDetails
	Identity *casev1.IdentityNumber
	FreeText *casev1.FreeText
	// Attachments are in the order registered.
	Attachments []SubjectAttachment
	// Answers are the readable texts of Texts, for the API's answers
	// field.
	Answers []string
	// Texts are everything staff wrote on the case, in the order written.
	Texts []SubjectText
	// Forwardings are where the case was sent (recipients).
	Forwardings []SubjectForwarding
	// Rectifications are the corrections, oldest first.
	Rectifications []SubjectRectification
	// Retention has one entry per personal class the case holds or held,
	// then the whole case and its audit trail.
	Retention      []ClassRetention
	OnHold, Marked bool
	// ArchiveDueAt is when the archive package of a marked case is
	// written; zero when none is due.
	ArchiveDueAt time.Time
	// RedactionDueAt is the earliest scheduled redaction, DeletionDueAt
	// when the whole case is deleted or archived and removed.
	RedactionDueAt time.Time
	DeletionDueAt  time.Time
	// Reads is the case's audit trail before this extract.
	Reads []*routingv1.AuditRecord
}

// SubjectAttachment is one attachment; Name and ID are empty when the
// attachment class was redacted.
type SubjectAttachment struct {
	Name, ID    string
	ContentType string
	SizeBytes   int64
	Redacted    bool
}

// TextKind says what staff wrote.
type TextKind int

// The kinds of text on a case: staff write answers, notes and comments
// (sealed in the answer class); the citizen's messages that joined the
// case by e-mail are sealed in the free-text class.
const (
	TextAnswer TextKind = iota + 1
	TextNote
	TextForwardComment
	TextCitizenMessage
)

// SubjectText is one answer, note or forwarding comment.
type SubjectText struct {
	Kind     TextKind
	Author   string
	At       time.Time
	Text     string
	Redacted bool
}

// SubjectForwarding is one place the case was sent to: a forwarding, or a
// supervisor's move to another queue.
type SubjectForwarding struct {
	ToQueue, ToDepartment, ToOfficer string
	By                               string
	At                               time.Time
	Moved                            bool
}

// SubjectRectification is one correction. Previous is the value it
// replaced, which stays in the event log (readable) until the class is
// redacted; nil when it cannot be read. Value is *casev1.ContactDetails,
// *casev1.IdentityNumber, *casev1.FreeText or *casev1.AttachmentNames.
type SubjectRectification struct {
	Class           casev1.DataClass
	By              string
	At              time.Time
	Previous, Value proto.Message
	Redacted        bool
}

// ClassRetention says what the plan does to one class of a case's data.
type ClassRetention struct {
	Class domain.Class
	// Rule is nil when no rule of the plan covers the class.
	Rule *domain.Rule
	// DueAt is when the rule's period ends; zero when it has not begun
	// or the rule keeps the data.
	DueAt time.Time
	// RedactedAt and RedactionReason tell the latest redaction.
	RedactedAt      time.Time
	RedactionReason string
	HoldsData       bool
}

// extractedFields lists, per event, the sealed fields the extract puts
// somewhere. A test checks that it covers every sealed field of every
// case event, so personal data added to a new event cannot be left out of
// register extracts unnoticed.
var extractedFields = map[string][]string{
	"CaseRegistered":        {"contact", "identity", "free_text", "attachment_names"},
	"NoteAdded":             {"text"},
	"CaseAnswered":          {"answer"},
	"CaseForwarded":         {"comment"},
	"PersonalDataRectified": {"value"},
	"CaseMessageReceived":   {"text"},
}

// buildSubjectCase compiles one case of a register extract from its
// folded state and its events with their sealed fields opened (through
// the Sealer, so values sealed under any key the case has open alike).
// Redacted values are those that did not open; the events still say that
// they existed, when and by whom, which the extract tells too.
func buildSubjectCase(plan *domain.Plan, c *domain.Case, opened []openedEvent) SubjectCase {
	sc := SubjectCase{
		CaseID: c.ID, CaseNumber: c.Number, Type: c.Type, Channel: c.Channel,
		RegisteredAt: c.RegisteredAt, ClosedAt: c.ClosedAt, OnHold: c.OnHold(), Marked: c.Marked,
	}
	// current holds each class's readable value as the events leave it,
	// so a rectification can show the value it replaced.
	current := map[casev1.DataClass]proto.Message{}
	type redaction struct {
		at     time.Time
		reason string
	}
	redacted := map[domain.Class]redaction{}
	// Attachment ids of events from before they were sealed are plain in
	// the event and stay readable whatever happens to the class.
	var plainIDs []string
	attachmentsSealed := false
	for _, oe := range opened {
		recorded := oe.rec.Recorded
		switch e := oe.msg.(type) {
		case *casev1.CaseRegistered:
			sc.Category = e.GetCategory()
			for dc, field := range map[casev1.DataClass]string{
				casev1.DataClass_DATA_CLASS_CONTACT_DETAILS: "contact",
				casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER: "identity",
				casev1.DataClass_DATA_CLASS_FREE_TEXT:       "free_text",
				casev1.DataClass_DATA_CLASS_ATTACHMENTS:     "attachment_names",
			} {
				if m, ok := oe.opened[field]; ok {
					current[dc] = m
				}
			}
			for _, a := range e.GetAttachments() {
				sc.Attachments = append(sc.Attachments, SubjectAttachment{ID: a.GetAttachmentId(), ContentType: a.GetContentType(), SizeBytes: a.GetSizeBytes()})
				plainIDs = append(plainIDs, a.GetAttachmentId())
			}
			attachmentsSealed = attachmentsSealed || e.GetAttachmentNames() != nil
			names, _ := oe.opened["attachment_names"].(*casev1.AttachmentNames)
			setAttachmentNames(&sc, names)
		case *casev1.NoteAdded:
			sc.addText(TextNote, e.GetAuthor(), at(e.GetAddedAt(), recorded), e.GetText(), oe.opened["text"])
		case *casev1.CaseMessageReceived:
			sc.addText(TextCitizenMessage, "", at(e.GetReceivedAt(), recorded), e.GetText(), oe.opened["text"])
		case *casev1.CaseAnswered:
			sc.addText(TextAnswer, e.GetAnsweredBy(), at(e.GetAnsweredAt(), recorded), e.GetAnswer(), oe.opened["answer"])
		case *casev1.CaseForwarded:
			when := at(e.GetForwardedAt(), recorded)
			sc.Forwardings = append(sc.Forwardings, SubjectForwarding{
				ToQueue: e.GetToQueue(), ToDepartment: e.GetToDepartment(), ToOfficer: e.GetToOfficer(), By: e.GetForwardedBy(), At: when,
			})
			sc.addText(TextForwardComment, e.GetForwardedBy(), when, e.GetComment(), oe.opened["comment"])
		case *casev1.CaseMoved:
			sc.Forwardings = append(sc.Forwardings, SubjectForwarding{
				ToQueue: e.GetToQueue(), By: e.GetMovedBy(), At: at(e.GetMovedAt(), recorded), Moved: true,
			})
		case *casev1.PersonalDataRectified:
			dc := e.GetDataClass()
			value := oe.opened["value"]
			sc.Rectifications = append(sc.Rectifications, SubjectRectification{
				Class: dc, By: e.GetRectifiedBy(), At: at(e.GetRectifiedAt(), recorded),
				Previous: current[dc], Value: value, Redacted: e.GetValue() != nil && value == nil,
			})
			if value != nil {
				current[dc] = value
			} else {
				delete(current, dc)
			}
			if dc == casev1.DataClass_DATA_CLASS_ATTACHMENTS {
				attachmentsSealed = attachmentsSealed || e.GetValue() != nil
			}
			if names, ok := value.(*casev1.AttachmentNames); ok {
				setAttachmentNames(&sc, names)
			}
		case *casev1.PersonalDataRedacted:
			for _, dc := range e.GetDataClasses() {
				if cl, ok := planClass(dc); ok {
					redacted[cl] = redaction{at: at(e.GetRedactedAt(), recorded), reason: e.GetReason()}
				}
				delete(current, dc)
			}
		}
	}
	sc.Contact, _ = current[casev1.DataClass_DATA_CLASS_CONTACT_DETAILS].(*casev1.ContactDetails)
	sc.Identity, _ = current[casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER].(*casev1.IdentityNumber)
	sc.FreeText, _ = current[casev1.DataClass_DATA_CLASS_FREE_TEXT].(*casev1.FreeText)
	if _, ok := current[casev1.DataClass_DATA_CLASS_ATTACHMENTS]; !ok && attachmentsSealed {
		// The sealed names and ids did not open (or were redacted after
		// they did): only the plain facts are left.
		for i := range sc.Attachments {
			sc.Attachments[i].Name, sc.Attachments[i].ID, sc.Attachments[i].Redacted = "", "", true
			if i < len(plainIDs) {
				sc.Attachments[i].ID = plainIDs[i]
			}
		}
	}

	// What the plan does, class by class: the same Schedule the sweeper
	// follows, and for the classes it leaves out (kept, redacted, or not
	// begun) the rule itself.
	dueOf := map[domain.Class]time.Time{}
	for _, d := range plan.Schedule(c) {
		for _, cl := range d.Classes {
			dueOf[cl] = d.At
		}
		switch d.Action {
		case domain.ActionRedact:
			if sc.RedactionDueAt.IsZero() || d.At.Before(sc.RedactionDueAt) {
				sc.RedactionDueAt = d.At
			}
		case domain.ActionDelete, domain.ActionPreserve:
			sc.DeletionDueAt = d.At
		}
	}
	if d, ok := plan.ArchiveDue(c); ok {
		sc.ArchiveDueAt = d.At
	}
	for _, cl := range domain.PersonalClasses() {
		r := redacted[cl]
		if !c.Sealed[cl] && r.at.IsZero() {
			continue // the case never held data of this class
		}
		cr := ClassRetention{Class: cl, RedactedAt: r.at, RedactionReason: r.reason, HoldsData: c.Sealed[cl] && !c.Redacted[cl]}
		if rule, ok := plan.Resolve(c.Type, c.Channel, c.Marked, cl); ok {
			cr.Rule = &rule
			if due, ok := dueOf[cl]; ok {
				cr.DueAt = due
			} else if rule.Action == domain.ActionRedact && cr.HoldsData {
				cr.DueAt, _ = c.Deadline(rule)
			}
		}
		sc.Retention = append(sc.Retention, cr)
	}
	whole := ClassRetention{Class: domain.ClassCase, HoldsData: true}
	if rule, ok := plan.Resolve(c.Type, c.Channel, c.Marked, domain.ClassCase); ok {
		whole.Rule = &rule
		whole.DueAt = dueOf[domain.ClassCase]
	}
	sc.Retention = append(sc.Retention, whole)
	if rule, ok := plan.Resolve(c.Type, c.Channel, c.Marked, domain.ClassAudit); ok {
		// The trail's entries age out one by one, each the rule's period
		// after it was written (the audit stream's age limit), so there
		// is no single date.
		sc.Retention = append(sc.Retention, ClassRetention{Class: domain.ClassAudit, Rule: &rule, HoldsData: true})
	}
	return sc
}

// addText records one text staff wrote: sealed is the event's sealed
// field (nil when the event carries none) and opened its plain value
// (nil when it did not open: redacted).
func (sc *SubjectCase) addText(kind TextKind, author string, when time.Time, sealed *casev1.SealedPersonalData, opened proto.Message) {
	if sealed == nil {
		return
	}
	t := SubjectText{Kind: kind, Author: author, At: when}
	switch o := opened.(type) {
	case *casev1.AnswerText:
		t.Text = o.GetText()
		sc.Answers = append(sc.Answers, t.Text)
	case *casev1.FreeText:
		t.Text = strings.TrimSpace(o.GetSubject() + "\n\n" + o.GetDescription())
	default:
		t.Redacted = true
	}
	sc.Texts = append(sc.Texts, t)
}

// setAttachmentNames puts the opened names and ids on the attachments,
// in order; names beyond the attachments the event lists are kept too,
// since they are personal data the case holds.
func setAttachmentNames(sc *SubjectCase, names *casev1.AttachmentNames) {
	if names == nil {
		return
	}
	for i, n := range names.GetNames() {
		if i >= len(sc.Attachments) {
			sc.Attachments = append(sc.Attachments, SubjectAttachment{})
		}
		sc.Attachments[i].Name = n
	}
	for i, id := range names.GetAttachmentIds() {
		if i >= len(sc.Attachments) {
			sc.Attachments = append(sc.Attachments, SubjectAttachment{})
		}
		if id != "" {
			sc.Attachments[i].ID = id
		}
	}
}

// holdsData reports whether anything of the person is readable in the
// case: a case with nothing left is not part of the extract.
func (sc *SubjectCase) holdsData() bool {
	if sc.Contact != nil || sc.Identity != nil || sc.FreeText != nil || len(sc.Answers) > 0 {
		return true
	}
	for _, a := range sc.Attachments {
		if a.Name != "" || a.ID != "" {
			return true
		}
	}
	return false
}

// at is an event's own time, or when it was recorded if it has none.
func at(ts *timestamppb.Timestamp, recorded time.Time) time.Time {
	if ts != nil && ts.IsValid() {
		return ts.AsTime().UTC()
	}
	return recorded.UTC()
}

// planClass maps the API's data class to the plan's.
func planClass(dc casev1.DataClass) (domain.Class, bool) {
	for _, cl := range domain.PersonalClasses() {
		if classToProto(cl) == dc {
			return cl, true
		}
	}
	return "", false
}
