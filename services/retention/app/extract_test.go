package app_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/subject"
	"github.com/kontakt-se/kontakt/services/retention/app"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

// sealText seals an answer-class text for the case, as routing does.
func (b *backends) sealText(t *testing.T, tc *testCase, text string) *casev1.SealedPersonalData {
	t.Helper()
	sp, err := b.sealer.SealMessage(t.Context(), tc.ID, seal.ClassAnswer, 0, &casev1.AnswerText{Text: text})
	require.NoError(t, err)
	return sp
}

// TestSubjectAccessHoldsEveryClass: a chat case carrying data of every
// class, worked on by staff, rectified, and partly redacted by the plan,
// comes out of the register extract with every value, where it went, the
// correction with the value it replaced, and the plan's dates per class,
// the redacted class with its date.
func TestSubjectAccessHoldsEveryClass(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{})
	in.start(t)
	ctx := t.Context()

	pnr := personnummer("19710304", "567")
	tc := b.register(t, caseSpec{
		channel: casev1.Channel_CHANNEL_CHAT, name: "Karin Kontakt", email: "karin@example.se", phone: "+46701234567", identity: pnr,
		subject: "RUBRIK", text: "FRITEXT", chat: "CHATT", files: []string{"ansökan Karin.pdf", "foto.jpg"}, fileIDs: []string{"karin-ansokan", "karin-foto"},
	})
	b.appendEvent(t, tc.ID, &casev1.NoteAdded{CaseId: tc.ID, NoteId: "n1", Author: "anna", Text: b.sealText(t, tc, "ANTECKNING"), AddedAt: timestamppb.New(t0.Add(time.Hour))})
	b.appendEvent(t, tc.ID, &casev1.CaseForwarded{CaseId: tc.ID, ToQueue: "gata", ToDepartment: "stadsbyggnad", Comment: b.sealText(t, tc, "KOMMENTAR"),
		ForwardedBy: "anna", ForwardedAt: timestamppb.New(t0.Add(2 * time.Hour))})
	b.appendEvent(t, tc.ID, &casev1.CaseMoved{CaseId: tc.ID, FromQueue: "gata", ToQueue: "miljo", MovedBy: "sara", MovedAt: timestamppb.New(t0.Add(3 * time.Hour))})
	b.appendEvent(t, tc.ID, &casev1.CaseAnswered{CaseId: tc.ID, AnsweredBy: "olle", Answer: b.sealText(t, tc, "SVAR"), AnsweredAt: timestamppb.New(t0.Add(4 * time.Hour))})
	in.caughtUp(t)

	w.clock.Set(day(5))
	require.NoError(t, in.svc.Rectify(ctx, "dina", tc.ID, app.Rectification{Contact: &casev1.ContactDetails{Name: "Karin Rättad", Email: "karin@example.se", Phone: "+46701234567"}}))
	// Day 31: Mölndal's plan redacts a chat's free text after 30 days.
	w.clock.Set(day(31))
	require.Equal(t, 1, in.sweep(t))

	ext, err := in.svc.SubjectAccess(ctx, "dina", "dpo", subject.Key{IdentityNumber: pnr}, "")
	require.NoError(t, err)
	require.Equal(t, "Mölndal stad, Kontaktcenter", ext.PlanName)
	require.Equal(t, "2021.1", ext.PlanVersion)
	require.True(t, ext.GeneratedAt.Equal(day(31)))
	require.Len(t, ext.Cases, 1)
	sc := ext.Cases[0]

	require.Equal(t, "Karin Rättad", sc.Contact.GetName(), "the current contact details")
	require.Equal(t, pnr, sc.Identity.GetNumber())
	require.Nil(t, sc.FreeText, "the chat's free text was redacted on day 31")
	require.Equal(t, "avfall", sc.Category)
	require.Equal(t, []app.SubjectAttachment{
		{Name: "ansökan Karin.pdf", ID: "karin-ansokan", ContentType: "application/pdf", SizeBytes: 1000},
		{Name: "foto.jpg", ID: "karin-foto", ContentType: "application/pdf", SizeBytes: 1001},
	}, sc.Attachments)
	require.Equal(t, []app.SubjectText{
		{Kind: app.TextNote, Author: "anna", At: t0.Add(time.Hour), Text: "ANTECKNING"},
		{Kind: app.TextForwardComment, Author: "anna", At: t0.Add(2 * time.Hour), Text: "KOMMENTAR"},
		{Kind: app.TextAnswer, Author: "olle", At: t0.Add(4 * time.Hour), Text: "SVAR"},
	}, sc.Texts)
	require.Equal(t, []string{"ANTECKNING", "KOMMENTAR", "SVAR"}, sc.Answers)
	require.Equal(t, []app.SubjectForwarding{
		{ToQueue: "gata", ToDepartment: "stadsbyggnad", By: "anna", At: t0.Add(2 * time.Hour)},
		{ToQueue: "miljo", By: "sara", At: t0.Add(3 * time.Hour), Moved: true},
	}, sc.Forwardings)

	require.Len(t, sc.Rectifications, 1)
	r := sc.Rectifications[0]
	require.Equal(t, casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, r.Class)
	require.Equal(t, "dina", r.By)
	require.True(t, r.At.Equal(day(5)))
	require.False(t, r.Redacted)
	require.Equal(t, "Karin Kontakt", r.Previous.(*casev1.ContactDetails).GetName(), "the replaced value, still in the log")
	require.Equal(t, "Karin Rättad", r.Value.(*casev1.ContactDetails).GetName())

	reg := t0
	byClass := map[domain.Class]app.ClassRetention{}
	for _, cr := range sc.Retention {
		byClass[cr.Class] = cr
	}
	require.Len(t, byClass, 7, "five personal classes, the case and its audit trail: %+v", sc.Retention)
	for _, cl := range []domain.Class{domain.ClassContact, domain.ClassIdentity, domain.ClassAttachments, domain.ClassAnswer} {
		cr := byClass[cl]
		require.Equal(t, "personuppgifter", cr.Rule.Name, cl)
		require.True(t, cr.DueAt.Equal(reg.AddDate(0, 0, 90)), "%s due %s", cl, cr.DueAt)
		require.True(t, cr.HoldsData, cl)
		require.True(t, cr.RedactedAt.IsZero(), cl)
	}
	ft := byClass[domain.ClassFreeText]
	require.Equal(t, "chatt-konversation", ft.Rule.Name)
	require.False(t, ft.HoldsData)
	require.True(t, ft.RedactedAt.Equal(day(31)), "redacted at %s", ft.RedactedAt)
	require.Equal(t, "retention", ft.RedactionReason)
	require.True(t, ft.DueAt.IsZero(), "nothing more is due for a redacted class")
	require.Equal(t, "arendet", byClass[domain.ClassCase].Rule.Name)
	require.True(t, byClass[domain.ClassCase].DueAt.Equal(reg.AddDate(2, 0, 0)))
	require.Equal(t, "aktivitetslogg", byClass[domain.ClassAudit].Rule.Name)
	require.True(t, sc.RedactionDueAt.Equal(reg.AddDate(0, 0, 90)))
	require.True(t, sc.DeletionDueAt.Equal(reg.AddDate(2, 0, 0)))

	// The extract's own audit record names the classes it opened: not the
	// redacted free text.
	recs, err := b.audit.ForCase(ctx, tc.ID)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.ElementsMatch(t, []casev1.DataClass{
		casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER,
		casev1.DataClass_DATA_CLASS_ATTACHMENTS, casev1.DataClass_DATA_CLASS_ANSWER,
	}, recs[0].GetDataClasses())

	// A second extract lists the first in the case's trail.
	ext, err = in.svc.SubjectAccess(ctx, "dina", "dpo", subject.Key{Email: "karin@example.se"}, "registerutdrag")
	require.NoError(t, err)
	require.Len(t, ext.Cases, 1)
	require.Len(t, ext.Cases[0].Reads, 1)
	require.Equal(t, "dina", ext.Cases[0].Reads[0].GetActor())
	require.Equal(t, "dpo", ext.Cases[0].Reads[0].GetRole())
}

// TestSubjectAccessAfterAttachmentRedaction: once the attachment class is
// redacted (here by Växjö's plan, a year after a question's registration,
// while the case itself lives on), an attachment keeps its type and size
// and says it was redacted; ids that events from before they were sealed
// carry in plain text stay, since they are still stored.
func TestSubjectAccessAfterAttachmentRedaction(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	in := w.newInstance(t, b, instanceOpts{plan: plan(t, "vaxjo")})
	in.start(t)

	sealedIDs := b.register(t, caseSpec{email: "a@example.se", identity: personnummer("19800101", "123"), files: []string{"brev.pdf"}, fileIDs: []string{"id-brev"}})
	plainIDs := b.register(t, caseSpec{email: "b@example.se", identity: personnummer("19800101", "123"), files: []string{"gammal.pdf"}})
	// The attachment class alone is redacted (as an erasure event of one
	// class); the identity number, the search key, stays.
	in.caughtUp(t)
	for _, tc := range []*testCase{sealedIDs, plainIDs} {
		b.appendEvent(t, tc.ID, &casev1.PersonalDataRedacted{CaseId: tc.ID, DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_ATTACHMENTS},
			Reason: "erasure", RedactedAt: timestamppb.New(day(3)), RequestedBy: "dina"})
	}
	in.caughtUp(t)
	w.clock.Set(day(4))
	ext, err := in.svc.SubjectAccess(t.Context(), "dina", "dpo", subject.Key{IdentityNumber: personnummer("19800101", "123")}, "")
	require.NoError(t, err)
	require.Len(t, ext.Cases, 2)
	byID := map[string]app.SubjectCase{}
	for _, c := range ext.Cases {
		byID[c.CaseID] = c
	}
	require.Equal(t, []app.SubjectAttachment{{ContentType: "application/pdf", SizeBytes: 1000, Redacted: true}}, byID[sealedIDs.ID].Attachments)
	require.Equal(t, []app.SubjectAttachment{{ID: "att-" + plainIDs.ID + "-0", ContentType: "application/pdf", SizeBytes: 1000, Redacted: true}}, byID[plainIDs.ID].Attachments)
	for _, c := range ext.Cases {
		byClass := map[domain.Class]app.ClassRetention{}
		for _, cr := range c.Retention {
			byClass[cr.Class] = cr
		}
		att := byClass[domain.ClassAttachments]
		require.Equal(t, "fragor-bilagor", att.Rule.Name)
		require.False(t, att.HoldsData)
		require.Equal(t, "erasure", att.RedactionReason)
		require.True(t, att.RedactedAt.Equal(day(3)))
		require.Equal(t, "fragor-arendet", byClass[domain.ClassCase].Rule.Name)
		require.True(t, byClass[domain.ClassCase].DueAt.IsZero(), "counted from a closure that has not happened")
		require.True(t, c.DeletionDueAt.IsZero(), "Växjö deletes a question a year after closure; this one is open")
	}
}
