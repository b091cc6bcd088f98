package readmodel

import (
	"maps"
	"slices"
	"time"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/services/routing/app"
	"github.com/kontakt-se/kontakt/services/routing/domain"
)

// record is what the read model keeps of one case: the domain's fold of
// the case's events, which says where the case is, who holds it and what
// happened to it (the one state machine of a case: services/routing/domain),
// and the sealed copies of its personal data, which the domain does not
// keep. Rows (app.CaseRow) are derived from it, so the read model shows
// exactly what the commands decide on.
//
// Of the fold, the file keeps what rows show and what the fold needs to
// go on (see codec.go); what neither needs (the routing rule, who closed
// the case, key generations, ...) is left out of the file and is zero in
// a record read back. TestRowsFollowTheDomainFold checks that rows are
// the same either way.
type record struct {
	c domain.Case
	copies
}

// copies are the sealed copies of a case's personal data: what the
// registration carried, less what a redaction dropped, with what a
// rectification put in. They are the read model's own, because the
// domain keeps no personal data, and they decide nothing.
type copies struct {
	freeText, contact, identity, attachmentNames *casev1.SealedPersonalData
	attachments                                  []*casev1.Attachment
	// redacted lists, in ascending order, the classes whose copies a
	// redaction dropped and no rectification has given back.
	redacted []casev1.DataClass
}

// clone copies the record, so the batch can change it while the record
// as stored is kept to compare with. Sealed values are never changed in
// place, only replaced, so they are shared.
func (r *record) clone() *record {
	c := &record{c: r.c, copies: r.copies}
	c.c.Holds = maps.Clone(r.c.Holds)
	c.c.Redacted = maps.Clone(r.c.Redacted)
	c.c.Generations = r.c.Generations.Clone()
	c.attachments = slices.Clone(r.attachments)
	c.redacted = slices.Clone(r.redacted)
	return c
}

// row derives the case's row. sla gives the due time.
func (r *record) row(sla map[casev1.CaseType]time.Duration) app.CaseRow {
	c := &r.c
	row := app.CaseRow{
		CaseID: c.ID, Number: c.Number, Type: c.Type, Channel: c.Channel, Category: c.Category,
		Status: c.Status, Facts: c.Facts,
		RegisteredAt: c.RegisteredAt, ClosedAt: c.ClosedAt, Resolution: c.Resolution,
		Reopenings: c.Reopenings, OnHold: c.OnHold(), Revision: eventstore.Revision(c.Version),
		FreeText: r.freeText, Contact: r.contact, Identity: r.identity, AttachmentNames: r.attachmentNames,
		Attachments: slices.Clone(r.attachments), Redacted: slices.Clone(r.redacted),
	}
	if d, ok := sla[c.Type]; ok && !c.RegisteredAt.IsZero() {
		row.DueAt = c.RegisteredAt.Add(d)
	}
	return row
}

// apply folds one event into the copies and reports whether the tokens,
// which stand for the contact details and identity number, must be
// computed again, and which classes of texts the stored history loses (a
// redaction of the answer class takes answers, notes and comments; of
// the free-text class the citizen's messages; see app.TextClass).
func (cp *copies) apply(m any) (tokensStale bool, scrub []casev1.DataClass) {
	switch m := m.(type) {
	case *casev1.CaseRegistered:
		*cp = copies{
			freeText: sealed(m.GetFreeText()), contact: sealed(m.GetContact()),
			identity: sealed(m.GetIdentity()), attachmentNames: sealed(m.GetAttachmentNames()),
		}
		for _, a := range m.GetAttachments() {
			cp.attachments = append(cp.attachments, &casev1.Attachment{
				AttachmentId: a.GetAttachmentId(), ContentType: a.GetContentType(), SizeBytes: a.GetSizeBytes(), Stored: a.GetStored(),
			})
		}
		return true, nil
	case *casev1.PersonalDataRedacted:
		for _, class := range m.GetDataClasses() {
			if !cp.set(class, nil) && class != casev1.DataClass_DATA_CLASS_ANSWER {
				continue // not a class of the case
			}
			if i, found := slices.BinarySearch(cp.redacted, class); !found {
				cp.redacted = slices.Insert(cp.redacted, i, class)
			}
			tokensStale = tokensStale || tokenClass(class)
			if class == casev1.DataClass_DATA_CLASS_ANSWER || class == casev1.DataClass_DATA_CLASS_FREE_TEXT {
				scrub = append(scrub, class)
			}
		}
		return tokensStale, scrub
	case *casev1.PersonalDataRectified:
		// Answer texts are not rectified as a class (the event does not
		// say which text), so that class is left as it is.
		class, v := m.GetDataClass(), sealed(m.GetValue())
		if !cp.set(class, v) {
			return false, nil
		}
		if i, found := slices.BinarySearch(cp.redacted, class); found && v != nil {
			cp.redacted = slices.Delete(cp.redacted, i, i+1)
		}
		return tokenClass(class), nil
	}
	return false, nil
}

// set replaces the copy of a class that holds one value, and reports
// whether the class is one.
func (cp *copies) set(class casev1.DataClass, v *casev1.SealedPersonalData) bool {
	switch class {
	case casev1.DataClass_DATA_CLASS_CONTACT_DETAILS:
		cp.contact = v
	case casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER:
		cp.identity = v
	case casev1.DataClass_DATA_CLASS_FREE_TEXT:
		cp.freeText = v
	case casev1.DataClass_DATA_CLASS_ATTACHMENTS:
		cp.attachmentNames = v
	default:
		return false
	}
	return true
}

// tokenClass reports whether blind-index tokens stand for the class.
func tokenClass(c casev1.DataClass) bool {
	return c == casev1.DataClass_DATA_CLASS_CONTACT_DETAILS || c == casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER
}

// sealed returns s, or nil when it carries nothing: a case without such
// data (a visit has no contact details) stores no empty copy.
func sealed(s *casev1.SealedPersonalData) *casev1.SealedPersonalData {
	if s == nil || (s.GetKeyId() == "" && len(s.GetCiphertext()) == 0) {
		return nil
	}
	return &casev1.SealedPersonalData{KeyId: s.GetKeyId(), Ciphertext: s.GetCiphertext()}
}
