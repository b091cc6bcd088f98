package e2e

// A complete register extract (issue 14, point 4): a person's cases from
// several channels carry data of every class (contact details, identity
// number, free text, attachment names and ids, answers, notes, forwarding
// comments, a rectification), are read, searched for and marked by staff,
// and partly redacted by the plan; SubjectAccess over gRPC and REST and
// `kontakt subject-access` through the real CLI give every value back,
// with the cases, the retention dates and the audit trail, and the CLI's
// Swedish document shows it all as text.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"
	"google.golang.org/protobuf/encoding/protojson"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
)

// saRead is an audit entry as the test compares it: who, in which role,
// what (the RPC's method name) and why.
type saRead struct{ actor, role, method, purpose string }

func saReadOf(e *retentionv1.SubjectAuditEntry) saRead {
	rpc := e.GetRpc()
	return saRead{e.GetActor(), e.GetRole(), rpc[strings.LastIndexByte(rpc, '/')+1:], e.GetPurpose()}
}

func saReads(es []*retentionv1.SubjectAuditEntry) []saRead {
	out := make([]saRead, 0, len(es))
	for _, e := range es {
		out = append(out, saReadOf(e))
	}
	return out
}

// saStart starts kontakt as retStart does, with the routing queues and
// the retention configuration, but without opening the embedded NATS
// port: this test needs no look into the store, so it runs against any
// build of the binary (the base one included, whose NATS has no users).
func saStart(t *testing.T, dataDir string, offsetDays int) *retEnv {
	t.Helper()
	k := Start(t, Options{DataDir: dataDir, ExtraConfig: routingQueues + retConfig(offsetDays)})
	ie := &intakeEnv{k: k}
	for range 2 {
		ie.conns = append(ie.conns, k.Dial(t))
	}
	e := &routingEnv{intakeEnv: ie, tokens: map[string]string{},
		rc: routingv1.NewRoutingServiceClient(ie.conns[0]), ic: intakev1.NewIntakeServiceClient(ie.conns[0])}
	return &retEnv{routingEnv: e, rt: retentionv1.NewRetentionServiceClient(ie.conns[0]), stats: statisticsv1.NewStatisticsServiceClient(ie.conns[1])}
}

func TestSubjectAccessExtract(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	e := saStart(t, dataDir, 0)
	local := randDigits(t, 7)
	pnr := personnummer(1971, 3, 4, 100+int(local[0]-'0')*10+int(local[1]-'0'), false)
	email := "asa." + local + "@example.se"
	phone := "070" + local
	e164 := "+4670" + local
	oldName, newName := "Åsa Öberg-Ädel", "Åsa Öberg"
	script := `<script>alert("` + local + `")</script> & "citat"`
	note := "Ringde tillbaka <b>två</b> gånger " + local
	answer := "Du behöver inget bygglov för ett attefallshus om " + local
	comment := "Gatukontoret – se över lekplatsen " + local
	chat := "Hej! Jag heter Åsa och undrar över " + local
	type attachment struct{ name, id string }
	atts := map[string]attachment{
		"phone": {"ritning Åsa <1>.pdf", "asa-ritning-" + local},
		"email": {"foto från lekplatsen.jpg", "asa-foto-" + local},
		"form":  {"lampan " + local + ".png", "asa-lampa-" + local},
	}
	// An emoji: outside what a PDF font holds, as citizens write.
	description := "Behöver jag bygglov för ett attefallshus 🏠? " + local
	address := &casev1.PostalAddress{Street: "Storgatan " + local[:2], PostalCode: "431 30", City: "Mölndal"}

	// Four cases over four channels, every class filled in.
	phoneID, phoneNumber := e.register(t, &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE, Category: "bygglov",
		Subject: script, Description: description,
		Contact:     &intakev1.Contact{Name: oldName, Phone: phone, Email: email, IdentityNumber: pnr},
		Attachments: []*intakev1.AttachmentInput{{Name: atts["phone"].name, AttachmentId: atts["phone"].id, ContentType: "application/pdf", SizeBytes: 2048}},
	})
	emailID, emailNumber := e.register(t, &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Channel: casev1.Channel_CHANNEL_EMAIL, Category: "park-och-lek",
		Subject: "Lekplatsen", Description: "Gungan är trasig sedan en vecka. " + local,
		Contact:     &intakev1.Contact{Name: oldName, Email: email, PostalAddress: address, IdentityNumber: pnr},
		Attachments: []*intakev1.AttachmentInput{{Name: atts["email"].name, AttachmentId: atts["email"].id, ContentType: "image/jpeg", SizeBytes: 150000}},
	})
	fctx, fcancel := e.as(t, principal{subject: "e-tjanst-felanmalan", roles: []string{"form-client"}})
	form, err := e.ic.SubmitForm(fctx, &intakev1.SubmitFormRequest{IdempotencyKey: "sa-" + local, Case: &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FELANMALAN, Channel: casev1.Channel_CHANNEL_FORM, Category: "gatubelysning",
		Description: "Lampan vid Gröna gången lyser inte " + local,
		Location:    &intakev1.LocationInput{Latitude: 57.6554, Longitude: 12.0138, Address: "Gröna gången " + local[:2]},
		Contact:     &intakev1.Contact{Email: email, IdentityNumber: pnr},
		Attachments: []*intakev1.AttachmentInput{{Name: atts["form"].name, AttachmentId: atts["form"].id, ContentType: "image/png", SizeBytes: 4096}},
	}})
	fcancel()
	require.NoError(t, err)
	formNumber := form.GetCaseNumber()
	chatID, chatNumber := e.register(t, &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_CHAT, Category: "ovrigt",
		ChatTranscript: chat, Contact: &intakev1.Contact{Email: email},
	})
	for _, n := range []string{phoneNumber, emailNumber, formNumber, chatNumber} {
		e.waitRouted(t, n)
	}
	formID := e.summaryByNumber(t, formNumber).GetCaseId()
	require.NotEmpty(t, formID)

	// Staff at work: a search by the identity number finds three cases
	// (audited per case), notes, an answer, a forwarding with a comment,
	// reads with purposes, a mark for preservation.
	actx, acancel := e.as(t, anna)
	defer acancel()
	found, err := e.rc.FindCases(actx, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_IdentityNumber{IdentityNumber: pnr}, Purpose: "vidarekoppling"})
	require.NoError(t, err)
	require.Len(t, found.GetCases(), 3, "the search by identity number")
	_, err = e.rc.ClaimCase(actx, &routingv1.ClaimCaseRequest{CaseId: phoneID})
	require.NoError(t, err)
	_, err = e.rc.AddNote(actx, &routingv1.AddNoteRequest{CaseId: phoneID, Text: note})
	require.NoError(t, err)
	_, err = e.rc.AnswerCase(actx, &routingv1.AnswerCaseRequest{CaseId: phoneID, Answer: answer})
	require.NoError(t, err)
	_, err = e.rc.GetCase(actx, &routingv1.GetCaseRequest{CaseId: phoneID, Purpose: "återkoppling"})
	require.NoError(t, err)
	_, err = e.rc.ForwardCase(actx, &routingv1.ForwardCaseRequest{CaseId: emailID, ToQueue: "gata", Comment: comment})
	require.NoError(t, err)
	bctx, bcancel := e.as(t, bo)
	_, err = e.rc.GetCase(bctx, &routingv1.GetCaseRequest{CaseId: chatID, Purpose: "uppföljning"})
	bcancel()
	require.NoError(t, err)
	sctx, scancel := e.as(t, sara)
	_, err = e.rt.MarkForPreservation(sctx, &retentionv1.MarkForPreservationRequest{CaseId: emailID, Reason: "klagomål av vikt"})
	scancel()
	require.NoError(t, err)
	// The DPO corrects the name on the phone case.
	dctx, dcancel := e.as(t, dina)
	_, err = e.rt.Rectify(dctx, &retentionv1.RectifyRequest{CaseId: phoneID, Reason: "fel namn",
		Value: &retentionv1.RectifyRequest_Contact{Contact: &casev1.ContactDetails{Name: newName, Phone: phone, Email: email}}})
	dcancel()
	require.NoError(t, err)
	registered := map[string]time.Time{}
	for _, n := range []string{phoneNumber, emailNumber, formNumber, chatNumber} {
		registered[n] = e.summaryByNumber(t, n).GetRegisteredAt().AsTime()
	}

	// Day 31: Mölndal's plan has redacted the chat's transcript (30 days)
	// and nothing else yet.
	require.NoError(t, e.k.Stop(t))
	e = saStart(t, dataDir, 31)
	e.waitLedger(t, 60*time.Second, "the chat transcript's redaction", func(m map[string]retLedger) bool {
		return slices.Equal(m[chatID].redactedClasses(), []string{"freetext"})
	})

	want := map[string][]saRead{
		phoneID: {{"anna", "agent", "FindCases", "vidarekoppling"}, {"anna", "agent", "GetCase", "återkoppling"}},
		emailID: {{"anna", "agent", "FindCases", "vidarekoppling"}, {"sara", "supervisor", "MarkForPreservation", "markerad för bevarande: klagomål av vikt"}},
		formID:  {{"anna", "agent", "FindCases", "vidarekoppling"}},
		chatID:  {{"bo", "agent", "GetCase", "uppföljning"}},
	}
	extractRead := func(purpose string) saRead { return saRead{"dina", "dpo", "SubjectAccess", purpose} }
	key := &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: email}}

	// 1. SubjectAccess over gRPC.
	dctx, dcancel = e.as(t, dina)
	ext, err := e.rt.SubjectAccess(dctx, &retentionv1.SubjectAccessRequest{Subject: key, Purpose: "registerutdrag"})
	dcancel()
	require.NoError(t, err)
	byID := map[string]*retentionv1.SubjectCase{}
	for _, c := range ext.GetCases() {
		byID[c.GetCaseId()] = c
	}
	require.Len(t, byID, 4, "the person's four cases: %v", ext.GetCases())
	for kind, id := range map[string]string{"phone": phoneID, "email": emailID, "form": formID} {
		var got []attachment
		for _, a := range byID[id].GetAttachments() {
			got = append(got, attachment{a.GetName(), a.GetAttachmentId()})
		}
		require.Equal(t, []attachment{atts[kind]}, got, "the %s case's attachment names and ids are missing from the extract", kind)
	}
	checkExtract(t, ext, byID, extractCase{
		phoneID: phoneID, emailID: emailID, formID: formID, chatID: chatID, registered: registered,
		numbers: map[string]string{phoneID: phoneNumber, emailID: emailNumber, formID: formNumber, chatID: chatNumber},
		pnr:     pnr, email: email, e164: e164, oldName: oldName, newName: newName, script: script, note: note, answer: answer,
		comment: comment, address: address,
	})
	totalReads := 0
	for id, c := range byID {
		require.ElementsMatch(t, want[id], saReads(c.GetReads()), "the audit trail of %s", c.GetCaseNumber())
		totalReads += len(c.GetReads())
	}
	require.Equal(t, 6, totalReads, "audit entries before the first extract")
	t.Logf("gRPC extract: %d cases, %d audit entries", len(byID), totalReads)

	// 2. Over REST: the same extract, and the gRPC extract in each case's
	// trail.
	code, body := e.restPost(t, dina, "/v1/subjects:access", `{"subject":{"email":"`+email+`"},"purpose":"registerutdrag via REST"}`)
	require.Equal(t, 200, code, body)
	rest := &retentionv1.SubjectAccessResponse{}
	require.NoError(t, protojson.Unmarshal([]byte(body), rest))
	restByID := map[string]*retentionv1.SubjectCase{}
	for _, c := range rest.GetCases() {
		restByID[c.GetCaseId()] = c
	}
	require.Len(t, restByID, 4)
	checkExtract(t, rest, restByID, extractCase{
		phoneID: phoneID, emailID: emailID, formID: formID, chatID: chatID, registered: registered,
		numbers: map[string]string{phoneID: phoneNumber, emailID: emailNumber, formID: formNumber, chatID: chatNumber},
		pnr:     pnr, email: email, e164: e164, oldName: oldName, newName: newName, script: script, note: note, answer: answer,
		comment: comment, address: address,
	})
	for id, c := range restByID {
		require.ElementsMatch(t, append(slices.Clone(want[id]), extractRead("registerutdrag")), saReads(c.GetReads()), "REST: the trail of %s", c.GetCaseNumber())
	}

	// 3. The data-protection officer's command: files for the citizen.
	out := filepath.Join(t.TempDir(), "utdrag")
	code, output := runKontakt(t, "subject-access", "--config", e.k.Config, "--email", email, "--out", out, "--purpose", "registerutdrag via CLI")
	require.Equal(t, 0, code, output)
	wantReads := 6 + 4 + 4 // before, the gRPC extract, the REST extract
	require.Equal(t, fmt.Sprintf("wrote %s, %s, %s: 4 cases, %d audit entries\n",
		filepath.Join(out, "extract.json"), filepath.Join(out, "extract.html"), filepath.Join(out, "extract.pdf"), wantReads), output)
	for _, secret := range []string{email, pnr, local, oldName, newName} {
		require.NotContains(t, output, secret, "the CLI printed personal data")
	}
	st, err := os.Stat(out)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	for _, name := range []string{"extract.json", "extract.html", "extract.pdf"} {
		st, err := os.Stat(filepath.Join(out, name))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), name)
	}

	// extract.json is the API's answer.
	raw, err := os.ReadFile(filepath.Join(out, "extract.json"))
	require.NoError(t, err)
	require.True(t, json.Valid(raw))
	cli := &retentionv1.SubjectAccessResponse{}
	require.NoError(t, protojson.Unmarshal(raw, cli))
	cliByID := map[string]*retentionv1.SubjectCase{}
	for _, c := range cli.GetCases() {
		cliByID[c.GetCaseId()] = c
	}
	require.Len(t, cliByID, 4)
	checkExtract(t, cli, cliByID, extractCase{
		phoneID: phoneID, emailID: emailID, formID: formID, chatID: chatID, registered: registered,
		numbers: map[string]string{phoneID: phoneNumber, emailID: emailNumber, formID: formNumber, chatID: chatNumber},
		pnr:     pnr, email: email, e164: e164, oldName: oldName, newName: newName, script: script, note: note, answer: answer,
		comment: comment, address: address,
	})
	for id, c := range cliByID {
		require.ElementsMatch(t, append(slices.Clone(want[id]), extractRead("registerutdrag"), extractRead("registerutdrag via REST")),
			saReads(c.GetReads()), "CLI: the trail of %s", c.GetCaseNumber())
	}

	// extract.html: Swedish, self-contained, every value as text.
	page, err := os.ReadFile(filepath.Join(out, "extract.html"))
	require.NoError(t, err)
	doc, err := html.Parse(bytes.NewReader(page))
	require.NoError(t, err)
	require.Equal(t, "sv", saAttr(saElements(doc, "html")[0], "lang"))
	require.Empty(t, saElements(doc, "script"), "a value became a script element")
	require.Empty(t, saElements(doc, "b"), "a value became markup")
	for _, tag := range []string{"link", "img", "iframe", "object", "embed"} {
		require.Empty(t, saElements(doc, tag), "the page loads a %s", tag)
	}
	require.NotContains(t, string(page), "<script", "the script value is not escaped")
	require.Contains(t, string(page), "&lt;script&gt;alert(")
	text := saText(doc)
	for _, v := range []string{
		newName, oldName, email, e164, pnr[:8] + "-" + pnr[8:], script, note, answer, comment, description,
		atts["phone"].name, atts["phone"].id, atts["email"].name, atts["email"].id, atts["form"].name, atts["form"].id,
		"Storgatan " + local[:2] + ", 431 30 Mölndal", "Gröna gången " + local[:2],
		phoneNumber, emailNumber, formNumber, chatNumber,
		"Bygglov och byggande", "Park och lekplats", "Gatubelysning", "telefon", "e-post", "e-tjänst på webben", "chatt",
		"kön Gata och trafik, förvaltningen stadsbyggnad",
		"Uppgifterna gallrades", "tas bort 90 dagar efter registreringen", "tas bort 30 dagar efter registreringen",
		"gallras 2 år efter registreringen", "Ärendet ska bevaras enligt arkivlagen",
		registered[phoneNumber].AddDate(0, 0, 90).In(stockholmLoc(t)).Format("2006-01-02"),
		registered[phoneNumber].AddDate(2, 0, 0).In(stockholmLoc(t)).Format("2006-01-02"),
		"vidarekoppling", "återkoppling", "uppföljning", "klagomål av vikt", "registerutdrag via REST",
		"Integritetsskyddsmyndigheten", "Dina rättigheter",
	} {
		require.Contains(t, text, v)
	}
	require.NotContains(t, text, chat, "the redacted chat transcript is in the document")
	// Every audit entry is a row: two reads, three searches, one mark and
	// two extracts per case.
	for phrase, n := range map[string]int{"läste ärendet": 2, "sökte fram ärendet med dina uppgifter": 3,
		"markerade ärendet för bevarande": 1, "tog fram ett registerutdrag": 8} {
		require.Equal(t, n, strings.Count(text, phrase), phrase)
	}

	// extract.pdf: a PDF whose text (read by poppler, when installed) has
	// the values with å, ä and ö intact.
	pdf, err := os.ReadFile(filepath.Join(out, "extract.pdf"))
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(pdf, []byte("%PDF-")))
	if bin, err := exec.LookPath("pdftotext"); err == nil {
		txt, err := exec.Command(bin, "-enc", "UTF-8", filepath.Join(out, "extract.pdf"), "-").Output()
		require.NoError(t, err)
		flat := strings.Join(strings.Fields(string(txt)), " ")
		for _, v := range []string{newName, oldName, atts["phone"].name, "Gröna gången " + local[:2], "Integritetsskyddsmyndigheten",
			strings.ReplaceAll(description, "🏠", "□")} {
			require.Contains(t, flat, v)
		}
	} else {
		t.Log("pdftotext (poppler-utils) not installed: the PDF's text is not checked")
	}

	// By identity number: the three cases that carry it.
	code, output = runKontakt(t, "subject-access", "--config", e.k.Config, "--identity-number", pnr, "--out", filepath.Join(t.TempDir(), "pnr"), "--format", "json")
	require.Equal(t, 0, code, output)
	require.Contains(t, output, ": 3 cases,")
	require.NotContains(t, output, pnr)

	// Nothing of the person in the server's log.
	for _, secret := range []string{email, pnr, local, oldName, newName} {
		require.NotContains(t, e.k.stderr.String(), secret, "the server logged personal data")
	}
}

// extractCase is what checkExtract expects of the four cases.
type extractCase struct {
	phoneID, emailID, formID, chatID                                  string
	registered                                                        map[string]time.Time
	numbers                                                           map[string]string
	pnr, email, e164, oldName, newName, script, note, answer, comment string
	address                                                           *casev1.PostalAddress
}

// checkExtract checks every class of every case, the retention dates and
// the plan, as an extract (gRPC, REST or the CLI's JSON) gives them.
func checkExtract(t *testing.T, ext *retentionv1.SubjectAccessResponse, byID map[string]*retentionv1.SubjectCase, x extractCase) {
	t.Helper()
	require.Equal(t, "Mölndal stad, Kontaktcenter", ext.GetPlanName())
	require.NotNil(t, ext.GetGeneratedAt())
	phone, mail, form, chat := byID[x.phoneID], byID[x.emailID], byID[x.formID], byID[x.chatID]
	for id, c := range byID {
		require.Equal(t, x.numbers[id], c.GetCaseNumber())
		require.True(t, x.registered[c.GetCaseNumber()].Equal(c.GetRegisteredAt().AsTime()), c.GetCaseNumber())
		require.Equal(t, x.email, c.GetContact().GetEmail(), "contact details of %s", c.GetCaseNumber())
	}
	require.Equal(t, casev1.Channel_CHANNEL_PHONE, phone.GetChannel())
	require.Equal(t, casev1.Channel_CHANNEL_EMAIL, mail.GetChannel())
	require.Equal(t, casev1.Channel_CHANNEL_FORM, form.GetChannel())
	require.Equal(t, casev1.Channel_CHANNEL_CHAT, chat.GetChannel())
	require.Equal(t, "bygglov", phone.GetCategory())

	// Contact, identity, free text.
	require.Equal(t, x.newName, phone.GetContact().GetName(), "the rectified name")
	require.Equal(t, x.e164, phone.GetContact().GetPhone())
	require.Equal(t, x.oldName, mail.GetContact().GetName())
	require.Equal(t, x.address.GetStreet(), mail.GetContact().GetPostalAddress().GetStreet())
	for _, c := range []*retentionv1.SubjectCase{phone, mail, form} {
		require.Equal(t, x.pnr, c.GetIdentity().GetNumber())
	}
	require.Nil(t, chat.GetIdentity())
	require.Equal(t, x.script, phone.GetFreeText().GetSubject())
	require.Contains(t, form.GetFreeText().GetLocation().GetAddress(), "Gröna gången")
	require.InDelta(t, 57.6554, form.GetFreeText().GetLocation().GetLatitude(), 1e-9)
	require.Nil(t, chat.GetFreeText(), "the chat transcript was redacted on day 30")

	// What staff wrote, and where the case went.
	type text struct {
		kind   retentionv1.SubjectTextKind
		author string
		text   string
	}
	texts := func(c *retentionv1.SubjectCase) []text {
		var out []text
		for _, tx := range c.GetTexts() {
			out = append(out, text{tx.GetKind(), tx.GetAuthor(), tx.GetText()})
		}
		return out
	}
	require.Equal(t, []text{{retentionv1.SubjectTextKind_SUBJECT_TEXT_KIND_NOTE, "anna", x.note}, {retentionv1.SubjectTextKind_SUBJECT_TEXT_KIND_ANSWER, "anna", x.answer}}, texts(phone))
	require.Equal(t, []text{{retentionv1.SubjectTextKind_SUBJECT_TEXT_KIND_FORWARD_COMMENT, "anna", x.comment}}, texts(mail))
	require.Equal(t, []string{x.note, x.answer}, phone.GetAnswers())
	require.Len(t, mail.GetForwardings(), 1)
	require.Equal(t, "gata", mail.GetForwardings()[0].GetToQueue())
	require.Equal(t, "stadsbyggnad", mail.GetForwardings()[0].GetToDepartment())
	require.Equal(t, "anna", mail.GetForwardings()[0].GetBy())
	require.True(t, mail.GetMarkedForPreservation())
	require.True(t, x.registered[mail.GetCaseNumber()].AddDate(0, 0, 90).Equal(mail.GetArchiveDueAt().AsTime()), "the archive package is written at the first deadline")

	// The rectification, with the value it replaced.
	require.Len(t, phone.GetRectifications(), 1)
	r := phone.GetRectifications()[0]
	require.Equal(t, casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, r.GetDataClass())
	require.Equal(t, "dina", r.GetRectifiedBy())
	require.Equal(t, x.oldName, r.GetPrevious().GetContact().GetName())
	require.Equal(t, x.newName, r.GetValue().GetContact().GetName())
	require.False(t, r.GetRedacted())

	// Retention dates per class: Mölndal redacts personal data 90 days
	// after registration (a chat's transcript after 30) and deletes the
	// case after 2 years; the redacted transcript says when it went.
	for _, c := range byID {
		reg := x.registered[c.GetCaseNumber()]
		require.True(t, reg.AddDate(0, 0, 90).Equal(c.GetRedactionDueAt().AsTime()), "%s redaction due", c.GetCaseNumber())
		require.True(t, reg.AddDate(2, 0, 0).Equal(c.GetDeletionDueAt().AsTime()), "%s deletion due", c.GetCaseNumber())
		classes := map[string]*retentionv1.SubjectRetention{}
		for _, rt := range c.GetRetention() {
			classes[rt.GetPlanClass()] = rt
		}
		require.Contains(t, classes, "case")
		require.Contains(t, classes, "audit")
		require.Equal(t, "aktivitetslogg", classes["audit"].GetRule())
		for name, rt := range classes {
			if name == "case" || name == "audit" || (c == chat && name == "freetext") {
				continue
			}
			require.Equal(t, "personuppgifter", rt.GetRule(), "%s %s", c.GetCaseNumber(), name)
			require.Equal(t, "90d", rt.GetPeriod())
			require.True(t, reg.AddDate(0, 0, 90).Equal(rt.GetDueAt().AsTime()), "%s %s due", c.GetCaseNumber(), name)
			require.True(t, rt.GetHoldsData())
			require.Nil(t, rt.GetRedactedAt())
		}
		if c == mail {
			require.Equal(t, "arendet-bevaras", classes["case"].GetRule())
			require.Equal(t, retentionv1.Action_ACTION_PRESERVE, classes["case"].GetAction())
		} else {
			require.Equal(t, "arendet", classes["case"].GetRule())
			require.Equal(t, retentionv1.Action_ACTION_DELETE, classes["case"].GetAction())
		}
	}
	// One entry per class the case holds or held, then the case and its
	// trail.
	for c, want := range map[*retentionv1.SubjectCase][]string{
		phone: {"contact", "identity", "freetext", "attachments", "answer", "case", "audit"},
		mail:  {"contact", "identity", "freetext", "attachments", "answer", "case", "audit"},
		form:  {"contact", "identity", "freetext", "attachments", "case", "audit"},
		chat:  {"contact", "freetext", "case", "audit"},
	} {
		var classes []string
		for _, rt := range c.GetRetention() {
			classes = append(classes, rt.GetPlanClass())
		}
		require.Equal(t, want, classes, "retention entries of %s", c.GetCaseNumber())
	}
	ft := map[string]*retentionv1.SubjectRetention{}
	for _, rt := range chat.GetRetention() {
		ft[rt.GetPlanClass()] = rt
	}
	require.Equal(t, "chatt-konversation", ft["freetext"].GetRule())
	require.False(t, ft["freetext"].GetHoldsData())
	require.Equal(t, "retention", ft["freetext"].GetRedactionReason())
	redacted := ft["freetext"].GetRedactedAt().AsTime()
	reg := x.registered[chat.GetCaseNumber()]
	require.False(t, redacted.Before(reg.AddDate(0, 0, 30)), "redacted %s, before its deadline", redacted)
	require.True(t, redacted.Before(reg.AddDate(0, 0, 32)), "redacted %s: the clock runs 31 days ahead", redacted)
}

func stockholmLoc(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Stockholm")
	require.NoError(t, err)
	return loc
}

func saElements(n *html.Node, tag string) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == tag {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func saAttr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// saText is the text of the document's body as a reader sees it.
func saText(doc *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "style" {
			return
		}
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return b.String()
}
