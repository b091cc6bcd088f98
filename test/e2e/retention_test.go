package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// retCase is one case of the retention test: what is registered, what
// happens to it on day 0, and every personal value it carries.
type retCase struct {
	label           string
	in              *intakev1.CaseInput
	form            bool // SubmitForm instead of RegisterCase
	answer, closeIt bool
	fcr             bool
	hold, preserve  bool
	chat            bool
	answerText      string
	// The person's keys as the test gives them ("" when none).
	email, phone, pnr string
	// markers are the personal values as the sealed data holds them;
	// variants are other spellings of them (the phone and identity
	// number as typed), which must not be on disk either.
	markers, variants []string

	id, number   string
	registeredAt time.Time
}

// retCases builds the day-0 cases: every case type, every channel that
// carries personal data (phone, e-mail, form, letter, visit, chat), and a
// unique marker in every personal field.
func retCases(t *testing.T, run string) []*retCase {
	t.Helper()
	var cases []*retCase
	newCase := func(label string) (*retCase, func(string) string) {
		i := len(cases)
		c := &retCase{label: label}
		cases = append(cases, c)
		return c, func(field string) string {
			m := fmt.Sprintf("rt%sc%d%s", run, i, field)
			c.markers = append(c.markers, m)
			return m
		}
	}
	phone := func(c *retCase) string {
		d := randDigits(t, 7)
		typed := "070-" + d[:3] + " " + d[3:5] + " " + d[5:]
		c.phone = typed
		c.markers = append(c.markers, "70"+d) // in E.164, +4670…
		c.variants = append(c.variants, typed)
		return typed
	}
	pnr := func(c *retCase, year, month, day int) string {
		serial, err := strconv.Atoi(randDigits(t, 3))
		require.NoError(t, err)
		// Birth number 000 is never issued (and refused): 1–999.
		n := personnummer(year, month, day, 1+serial%999, false)
		c.pnr = n
		c.markers = append(c.markers, tenDigit(n)) // inside the twelve-digit form
		c.variants = append(c.variants, dashed(n))
		return n
	}
	email := func(c *retCase, m func(string) string) string {
		c.email = m("mail") + "@example.se"
		return c.email
	}
	attachment := func(c *retCase, m func(string) string, ct string, i int) *intakev1.AttachmentInput {
		return &intakev1.AttachmentInput{Name: m(fmt.Sprintf("attachment%d", i)) + ".pdf", ContentType: ct, SizeBytes: 2048, AttachmentId: fmt.Sprintf("att-%s-%d-%d", run, len(cases), i)}
	}
	address := func(m func(string) string) *casev1.PostalAddress {
		return &casev1.PostalAddress{Street: m("street") + " 12", PostalCode: "431 82", City: "Mölndal"}
	}

	// 0: a question by phone, answered and closed at first contact.
	c, m := newCase("fraga/phone")
	c.answer, c.closeIt, c.fcr = true, true, true
	c.in = &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE, Category: "avfall",
		Subject: m("subject"), Description: m("description"),
		Contact: &intakev1.Contact{Name: m("name"), Phone: phone(c), IdentityNumber: dashed(pnr(c, 1951, 3, 14)), PostalAddress: address(m)},
	}
	c.in.Attachments = []*intakev1.AttachmentInput{attachment(c, m, "application/pdf", 0)}
	c.answerText = m("answer")

	// 1: a question by e-mail, answered, left open.
	c, m = newCase("fraga/email")
	c.answer = true
	c.in = &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_EMAIL, Category: "bygglov",
		Subject: m("subject"), Description: m("description"),
		Contact: &intakev1.Contact{Name: m("name"), Email: email(c, m), IdentityNumber: pnr(c, 1962, 7, 2)},
	}
	c.in.Attachments = []*intakev1.AttachmentInput{attachment(c, m, "image/jpeg", 0), attachment(c, m, "application/pdf", 1)}
	c.answerText = m("answer")

	// 2: a fault report through the e-service form, closed.
	c, m = newCase("felanmalan/form")
	c.form, c.closeIt = true, true
	c.in = &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FELANMALAN, Category: "gatubelysning",
		Subject: m("subject"), Description: m("description"),
		Contact:  &intakev1.Contact{Name: m("name"), Email: email(c, m), Phone: phone(c), PostalAddress: address(m)},
		Location: &intakev1.LocationInput{Latitude: 57.655312, Longitude: 12.013987, Address: m("place")},
	}
	c.in.Attachments = []*intakev1.AttachmentInput{attachment(c, m, "image/png", 0)}

	// 3: a fault report at the desk (a visit registers no name), open.
	c, m = newCase("felanmalan/visit")
	c.in = &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FELANMALAN, Channel: casev1.Channel_CHANNEL_VISIT, Category: "vag-och-gata",
		Description: m("description"),
		Contact:     &intakev1.Contact{Email: email(c, m), Phone: phone(c)},
		Location:    &intakev1.LocationInput{Address: m("place")},
	}

	// 4: a view in the chat, answered and closed; its transcript goes
	// after 30 days, the rest after 90.
	c, m = newCase("synpunkt/chat")
	c.chat, c.answer, c.closeIt, c.fcr = true, true, true, true
	c.in = &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Channel: casev1.Channel_CHANNEL_CHAT, Category: "bemotande",
		Subject: m("subject"), ChatTranscript: "Invånare: " + m("chat") + "\nKim: Tack, vi tar med oss det.",
		Contact: &intakev1.Contact{Name: m("name"), Email: email(c, m)},
	}
	c.answerText = m("answer")

	// 5: a view by letter, answered, marked for preservation (bevaras).
	c, m = newCase("synpunkt/letter")
	c.answer, c.preserve = true, true
	c.in = &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Channel: casev1.Channel_CHANNEL_LETTER, Category: "bemotande",
		Subject: m("subject"), Description: m("description"),
		Contact: &intakev1.Contact{Name: m("name"), IdentityNumber: pnr(c, 1944, 11, 23), PostalAddress: address(m)},
	}
	c.in.Attachments = []*intakev1.AttachmentInput{attachment(c, m, "application/pdf", 0)}
	c.answerText = m("answer")

	// 6: a letter with nothing but a scanned attachment, closed.
	c, m = newCase("brev/letter")
	c.closeIt, c.fcr = true, true
	c.in = &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_BREV, Channel: casev1.Channel_CHANNEL_LETTER, Category: "ovrigt",
		Contact: &intakev1.Contact{Name: m("name"), IdentityNumber: pnr(c, 1978, 5, 30), PostalAddress: address(m)},
	}
	c.in.Attachments = []*intakev1.AttachmentInput{attachment(c, m, "image/tiff", 0)}

	// 7: a question by phone under a hold, answered.
	c, m = newCase("fraga/phone held")
	c.answer, c.hold = true, true
	c.in = &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE, Category: "omsorg",
		Subject: m("subject"), Description: m("description"),
		Contact: &intakev1.Contact{Name: m("name"), Phone: phone(c), Email: email(c, m), IdentityNumber: pnr(c, 1985, 9, 8), PostalAddress: address(m)},
	}
	c.answerText = m("answer")
	return cases
}

// retNeedles is every marker and variant of the cases.
func retNeedles(cases []*retCase) []string {
	var out []string
	for _, c := range cases {
		out = append(append(out, c.markers...), c.variants...)
	}
	return out
}

// TestRetentionPlanActsOnTime is the retention issue's acceptance test. It
// registers cases of every type through every channel with a marker in
// every personal field, works them, places a hold on one and marks one
// for preservation, and then restarts the binary on the same data
// directory with the clock 91 and then 731 days ahead. Mölndal's plan
// (personal data 90 days, chat transcripts 30, the case two years) must
// then have acted: nothing personal is left readable anywhere (API, blind
// index, store, key store, files), the held case only after its hold is
// released, the preserved case survives in a verifiable archive package,
// every action has a receipt in a hash chain that `kontakt retention
// verify` accepts, and the statistics do not change.
func TestRetentionPlanActsOnTime(t *testing.T) {
	start := time.Now()
	phase := func(name string) { t.Logf("%-44s at %s", name, time.Since(start).Round(time.Millisecond)) }
	dataDir := filepath.Join(t.TempDir(), "data")
	archiveDir := filepath.Join(dataDir, "archive")
	run := randHex(t, 4)
	cases := retCases(t, run)
	var held, preserved, chat *retCase
	for _, c := range cases {
		switch {
		case c.hold:
			held = c
		case c.preserve:
			preserved = c
		case c.chat:
			chat = c
		}
	}
	needles := retNeedles(cases)

	// ---- Day 0 ----
	e := retStart(t, dataDir, 0)
	phase("day 0: started")
	form := e.k.Token(t, "e-tjanst-retention", "form-client")
	for i, c := range cases {
		if c.form {
			a := e.submit(t, overGRPC, 0, form, &intakev1.SubmitFormRequest{IdempotencyKey: fmt.Sprintf("ret-%s-%d", run, i), Case: c.in})
			require.Equal(t, codes.OK, a.Code, "%s: %s %v", c.label, a.Message, a.Violations)
			c.number, c.registeredAt = a.CaseNumber, a.RegisteredAt
			c.id = e.caseIDOfNumber(t, c.number)
			continue
		}
		ctx, cancel := e.as(t, anna)
		resp, err := e.ic.RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: c.in})
		cancel()
		require.NoError(t, err, c.label)
		c.id, c.number, c.registeredAt = resp.GetCaseId(), resp.GetCaseNumber(), resp.GetRegisteredAt().AsTime()
	}
	ctx, cancel := e.as(t, sara)
	defer cancel()
	for _, c := range cases {
		e.waitRouted(t, c.number)
		if !c.answer && !c.closeIt {
			continue
		}
		_, err := e.rc.AssignCase(ctx, &routingv1.AssignCaseRequest{CaseId: c.id, Assignee: "sara"})
		require.NoError(t, err, c.label)
		if c.answer {
			_, err = e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: c.id, Answer: c.answerText})
			require.NoError(t, err, c.label)
		}
		if c.closeIt {
			_, err = e.rc.CloseCase(ctx, &routingv1.CloseCaseRequest{CaseId: c.id, Resolution: casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY, FirstContactResolution: c.fcr})
			require.NoError(t, err, c.label)
		}
	}
	hold, err := e.rt.PlaceHold(ctx, &retentionv1.PlaceHoldRequest{CaseId: held.id, Reason: "överklagande till förvaltningsrätten"})
	require.NoError(t, err)
	require.NotEmpty(t, hold.GetHoldId())
	// A supervisor may mark any case (who else may: TestPreservationMarks).
	_, err = e.rt.MarkForPreservation(ctx, &retentionv1.MarkForPreservationRequest{CaseId: preserved.id, Reason: "principiellt viktig synpunkt"})
	require.NoError(t, err)
	phase("day 0: registered and worked")

	// The sealed values in the store open with the data directory's
	// master key and hold every marker: the markers stand for the data,
	// and a sealer of the test's own can read it (for now).
	day0Sealed := map[string][]retSealed{}
	s := e.sealer(t)
	for _, c := range cases {
		vals := e.sealedValues(t, c.id)
		require.NotEmpty(t, vals, c.label)
		var plain []byte
		for _, v := range vals {
			pt, err := retOpen(s, v)
			require.NoError(t, err, "%s: %s opens on day 0", c.label, v.what)
			plain = append(plain, pt...)
		}
		for _, mk := range c.markers {
			require.True(t, bytes.Contains(plain, []byte(mk)), "%s: marker %s is not in the case's sealed data", c.label, mk)
		}
		day0Sealed[c.id] = vals
	}

	// A register extract (DPO) shows the person's data, decrypted, with
	// the dates the plan will redact and delete it.
	dctx, dcancel := e.as(t, dina)
	defer dcancel()
	access := func(key *retentionv1.SubjectKey) []*retentionv1.SubjectCase {
		t.Helper()
		resp, err := e.rt.SubjectAccess(dctx, &retentionv1.SubjectAccessRequest{Subject: key, Purpose: "registerutdrag"})
		require.NoError(t, err)
		return resp.GetCases()
	}
	var extract []*retentionv1.SubjectCase
	require.True(t, eventually(10*time.Second, func() bool {
		extract = access(&retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: cases[1].email}})
		return len(extract) == 1
	}), "the register extract by e-mail did not find the case: %v", extract)
	sc := extract[0]
	c1 := cases[1]
	require.Equal(t, c1.id, sc.GetCaseId())
	require.Equal(t, c1.number, sc.GetCaseNumber())
	require.Equal(t, c1.email, sc.GetContact().GetEmail())
	require.Equal(t, c1.in.GetContact().GetName(), sc.GetContact().GetName())
	require.Equal(t, c1.pnr, sc.GetIdentity().GetNumber())
	require.Equal(t, c1.in.GetDescription(), sc.GetFreeText().GetDescription())
	require.Contains(t, sc.GetAnswers(), c1.answerText)
	require.True(t, c1.registeredAt.Equal(sc.GetRegisteredAt().AsTime()), "registered %s, extract says %s", c1.registeredAt, sc.GetRegisteredAt().AsTime())
	reg := sc.GetRegisteredAt().AsTime().UTC()
	require.Equal(t, reg.AddDate(0, 0, 90), sc.GetRedactionDueAt().AsTime().UTC(), "personal data is redacted 90 days after registration")
	require.Equal(t, reg.AddDate(2, 0, 0), sc.GetDeletionDueAt().AsTime().UTC(), "the case is deleted two years after registration")
	extract = access(&retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: chat.email}})
	require.Len(t, extract, 1)
	require.Contains(t, extract[0].GetFreeText().GetChatTranscript(), chat.markers[1])
	reg = extract[0].GetRegisteredAt().AsTime().UTC()
	require.Equal(t, reg.AddDate(0, 0, 30), extract[0].GetRedactionDueAt().AsTime().UTC(), "a chat transcript is redacted after 30 days")
	extract = access(&retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Phone{Phone: held.phone}})
	require.Len(t, extract, 1)
	require.Equal(t, held.id, extract[0].GetCaseId())
	require.Equal(t, held.in.GetContact().GetName(), extract[0].GetContact().GetName())
	extract = access(&retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: dashed(preserved.pnr)}})
	require.Len(t, extract, 1)
	require.Equal(t, preserved.id, extract[0].GetCaseId())

	// Preview: within 100 days one redaction per case (two for the chat),
	// the held one flagged; within 800 days every case's deletion, or its
	// preservation when marked.
	var preview []*retentionv1.DueItem
	require.True(t, eventually(10*time.Second, func() bool {
		resp, err := e.rt.Preview(ctx, &retentionv1.PreviewRequest{Days: 100})
		require.NoError(t, err)
		preview = resp.GetItems()
		n := 0
		for _, it := range preview {
			if it.GetOnHold() {
				n++
			}
		}
		// One more for the chat's second redaction, one for the marked
		// case's archive package.
		return len(preview) == len(cases)+2 && n == 1
	}), "preview within 100 days: %v", preview)
	perCase := map[string][]*retentionv1.DueItem{}
	for _, it := range preview {
		perCase[it.GetCaseId()] = append(perCase[it.GetCaseId()], it)
		if it.GetCaseId() == preserved.id && it.GetAction() == retentionv1.Action_ACTION_ARCHIVE {
			continue
		}
		require.Equal(t, retentionv1.Action_ACTION_REDACT, it.GetAction(), "%v", it)
	}
	for _, c := range cases {
		items := perCase[c.id]
		reg := c.registeredAt.UTC()
		if c.preserve {
			// The package is written just before the first redaction.
			require.Equal(t, retentionv1.Action_ACTION_ARCHIVE, items[0].GetAction(), c.label)
			require.Equal(t, reg.AddDate(0, 0, 90), items[0].GetDueAt().AsTime().UTC(), c.label)
			items = items[1:]
		}
		if c.chat {
			require.Len(t, items, 2, c.label)
			require.Equal(t, "chatt-konversation", items[0].GetRule())
			require.Equal(t, []casev1.DataClass{casev1.DataClass_DATA_CLASS_FREE_TEXT}, items[0].GetDataClasses())
			require.Equal(t, reg.AddDate(0, 0, 30), items[0].GetDueAt().AsTime().UTC())
			items = items[1:]
		}
		require.Len(t, items, 1, c.label)
		require.Equal(t, "personuppgifter", items[0].GetRule(), c.label)
		require.Equal(t, reg.AddDate(0, 0, 90), items[0].GetDueAt().AsTime().UTC(), c.label)
		require.Equal(t, c.hold, items[0].GetOnHold(), c.label)
	}
	resp800, err := e.rt.Preview(ctx, &retentionv1.PreviewRequest{Days: 800})
	require.NoError(t, err)
	ends := map[string]*retentionv1.DueItem{}
	for _, it := range resp800.GetItems() {
		if it.GetAction() != retentionv1.Action_ACTION_REDACT && it.GetAction() != retentionv1.Action_ACTION_ARCHIVE {
			require.Nil(t, ends[it.GetCaseId()], "two ends for one case: %v", it)
			ends[it.GetCaseId()] = it
		}
	}
	require.Len(t, ends, len(cases))
	for _, c := range cases {
		it := ends[c.id]
		require.NotNil(t, it, c.label)
		want, rule := retentionv1.Action_ACTION_DELETE, "arendet"
		if c.preserve {
			want, rule = retentionv1.Action_ACTION_PRESERVE, "arendet-bevaras"
		}
		require.Equal(t, want, it.GetAction(), c.label)
		require.Equal(t, rule, it.GetRule(), c.label)
		require.Equal(t, c.registeredAt.UTC().AddDate(2, 0, 0), it.GetDueAt().AsTime().UTC(), c.label)
	}
	// The same through the CLI, as an operator runs it.
	code, out := runKontakt(t, "retention", "preview", "--days", "100", "--config", e.k.Config, "--addr", e.k.Addr)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, fmt.Sprintf("Due within 100 days: %d actions (1 held back by holds)", len(cases)+2), out)
	for _, c := range cases {
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, c.number) {
				lines = append(lines, l)
			}
		}
		want := 1
		if c.chat {
			want = 2
		}
		if c.preserve {
			want = 2 // archive, then redact
			require.Contains(t, lines[0], "archive", "%s: %q", c.label, lines[0])
		}
		require.Len(t, lines, want, "%s (%s) in the preview:\n%s", c.label, c.number, out)
		for _, l := range lines {
			require.Equal(t, c.hold, strings.Contains(l, "on hold"), "%s: %q", c.label, l)
		}
	}
	for _, n := range needles {
		require.NotContains(t, out, n, "the preview shows personal data")
	}

	// Statistics before: every case counted, settled.
	day := time.Now().UTC().Truncate(retDay)
	statsFrom, statsTo := day.Add(-2*retDay), day.Add(2*retDay)
	var wantFCR, wantClosed int64
	for _, c := range cases {
		if c.fcr {
			wantFCR++
		}
		if c.closeIt {
			wantClosed++
		}
	}
	var baseline *statisticsv1.QueryResponse
	require.True(t, eventually(20*time.Second, func() bool {
		q := e.statsQuery(t, statsFrom, statsTo)
		n, fcr, closed := retStatsTotals(q)
		if n != int64(len(cases)) || fcr != wantFCR || closed != wantClosed {
			return false
		}
		if baseline != nil && proto.Equal(baseline, q) {
			return true
		}
		baseline = q
		time.Sleep(300 * time.Millisecond)
		return false
	}), "statistics did not settle on every case: %v", baseline)
	phase("day 0: checked")
	require.NoError(t, e.k.Stop(t))
	retNoMarkersIn(t, "the day-0 log", e.k.stderr.String(), needles)

	// ---- Day 91 ----
	e = retStart(t, dataDir, 91)
	phase("day 91: started")
	ctx, cancel = e.as(t, sara)
	defer cancel()
	led := e.waitLedger(t, 30*time.Second, "a redaction of every case not held, and the archive package", func(m map[string]retLedger) bool {
		for _, c := range cases {
			if !c.hold && !m[c.id].fullyRedacted() {
				return false
			}
		}
		return len(m[preserved.id][retKindArchive]) == 1
	})
	phase("day 91: redacted")
	require.Zero(t, len(led[held.id]), "the held case has receipts:%s", retDescribe(map[string]retLedger{held.id: led[held.id]}))
	receiptsRaw := ""
	for _, c := range cases {
		l := led[c.id]
		require.Empty(t, l[retKindDeletion], c.label)
		if c.hold {
			continue
		}
		require.Equal(t, retPersonalClasses, l.redactedClasses(), "%s: each class redacted exactly once", c.label)
		rules := map[string][]string{}
		for _, r := range l[retKindRedaction] {
			require.Equal(t, "retention", r.GetReason(), c.label)
			require.Equal(t, c.number, r.GetCaseNumber(), c.label)
			require.Equal(t, "Mölndal stad, Kontaktcenter", r.GetPlanName())
			require.Equal(t, "2021.1", r.GetPlanVersion())
			rules[r.GetRule()] = r.GetClasses()
			receiptsRaw += string(r.GetRaw())
		}
		if c.chat {
			require.Equal(t, map[string][]string{"chatt-konversation": {"freetext"}, "personuppgifter": {"contact", "identity", "attachments", "answer"}}, rules, c.label)
		} else {
			require.Equal(t, map[string][]string{"personuppgifter": {"contact", "identity", "freetext", "attachments", "answer"}}, rules, c.label)
		}
		if c.preserve {
			archived := l[retKindArchive][0]
			for _, r := range l[retKindRedaction] {
				require.Less(t, archived.GetSeq(), r.GetSeq(), "the preserved case was archived before its data was redacted")
			}
			require.Equal(t, "bevaras", archived.GetReason())
		} else {
			require.Empty(t, l[retKindArchive], c.label)
		}
	}
	retNoMarkersIn(t, "the ledger's receipts", receiptsRaw, needles)

	// The agent UI's view: no personal data left in redacted cases; the
	// held case still shows it.
	getCase := func(c *retCase) *routingv1.CaseView {
		t.Helper()
		resp, err := e.rc.GetCase(ctx, &routingv1.GetCaseRequest{CaseId: c.id, Purpose: "retention test"})
		require.NoError(t, err, c.label)
		return resp.GetCase()
	}
	for _, c := range cases {
		if c.hold {
			continue
		}
		var v *routingv1.CaseView
		require.True(t, eventually(10*time.Second, func() bool {
			v = getCase(c)
			return len(v.GetPersonalData().GetRedacted()) == 5
		}), "%s: GetCase does not show the redaction: %v", c.label, v)
		pd := v.GetPersonalData()
		require.Nil(t, pd.GetContact(), c.label)
		require.Nil(t, pd.GetIdentity(), c.label)
		require.Nil(t, pd.GetFreeText(), c.label)
		require.Empty(t, pd.GetAttachmentNames(), c.label)
		require.ElementsMatch(t, []casev1.DataClass{
			casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER, casev1.DataClass_DATA_CLASS_FREE_TEXT,
			casev1.DataClass_DATA_CLASS_ATTACHMENTS, casev1.DataClass_DATA_CLASS_ANSWER,
		}, pd.GetRedacted(), c.label)
		require.True(t, v.GetSummary().GetRedacted(), c.label)
		require.Empty(t, v.GetSummary().GetSubject(), c.label)
		for _, h := range v.GetHistory() {
			require.Empty(t, h.GetText(), "%s: history entry %s", c.label, h.GetKind())
		}
		retNoMarkersIn(t, c.label+": GetCase", protojson.Format(v), needles)
	}
	hv := getCase(held)
	require.True(t, hv.GetOnHold())
	require.False(t, hv.GetSummary().GetRedacted())
	require.Empty(t, hv.GetPersonalData().GetRedacted())
	require.Equal(t, held.in.GetContact().GetName(), hv.GetPersonalData().GetContact().GetName())
	require.Equal(t, held.email, hv.GetPersonalData().GetContact().GetEmail())
	require.Equal(t, held.pnr, hv.GetPersonalData().GetIdentity().GetNumber())
	require.Equal(t, held.in.GetDescription(), hv.GetPersonalData().GetFreeText().GetDescription())
	require.Equal(t, held.in.GetSubject(), hv.GetSummary().GetSubject())
	require.True(t, slices.ContainsFunc(hv.GetHistory(), func(h *routingv1.CaseEntry) bool { return h.GetText() == held.answerText }), "the held case's answer: %v", hv.GetHistory())

	// Searching by a person's details finds nothing once their data is
	// redacted (the blind-index tokens went with it); the held person is
	// still found.
	find := func(c *retCase) map[string][]*routingv1.CaseSummary {
		t.Helper()
		out := map[string][]*routingv1.CaseSummary{}
		keys := map[string]*routingv1.FindCasesRequest{}
		if c.email != "" {
			keys["email"] = &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_Email{Email: c.email}}
		}
		if c.phone != "" {
			keys["phone"] = &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_Phone{Phone: c.phone}}
		}
		if c.pnr != "" {
			keys["identity number"] = &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_IdentityNumber{IdentityNumber: c.pnr}}
		}
		for k, req := range keys {
			resp, err := e.rc.FindCases(ctx, req)
			require.NoError(t, err, "%s by %s", c.label, k)
			out[k] = resp.GetCases()
		}
		return out
	}
	for _, c := range cases {
		found := find(c)
		require.NotEmpty(t, found, c.label)
		for k, got := range found {
			if c.hold {
				require.Len(t, got, 1, "the held case by %s", k)
				require.Equal(t, held.id, got[0].GetCaseId())
			} else {
				require.Empty(t, got, "%s is still found by %s after redaction", c.label, k)
			}
		}
	}
	dctx, dcancel = e.as(t, dina)
	defer dcancel()
	for _, c := range []*retCase{cases[1], chat, preserved} {
		key := &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: c.email}}
		if c.email == "" {
			key = &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: c.pnr}}
		}
		resp, err := e.rt.SubjectAccess(dctx, &retentionv1.SubjectAccessRequest{Subject: key})
		require.NoError(t, err)
		require.Empty(t, resp.GetCases(), "%s: a register extract still finds personal data", c.label)
	}
	hresp, err := e.rt.SubjectAccess(dctx, &retentionv1.SubjectAccessRequest{Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Phone{Phone: held.phone}}})
	require.NoError(t, err)
	require.Len(t, hresp.GetCases(), 1)
	require.Equal(t, held.in.GetContact().GetName(), hresp.GetCases()[0].GetContact().GetName())

	// The store still holds the same ciphertexts, but their keys are
	// destroyed: a sealer built from the data directory's master key and
	// the key bucket cannot open them any more. The held case's open.
	s = e.sealer(t)
	for _, c := range cases {
		vals := e.sealedValues(t, c.id)
		require.Len(t, vals, len(day0Sealed[c.id]), c.label)
		for i, v := range vals {
			require.True(t, proto.Equal(day0Sealed[c.id][i].value, v.value), "%s: %s changed in the store", c.label, v.what)
			_, err := retOpen(s, v)
			if c.hold {
				require.NoError(t, err, "%s: %s", c.label, v.what)
			} else {
				require.ErrorIs(t, err, seal.ErrKeyDestroyed, "%s: %s", c.label, v.what)
			}
		}
	}

	// The preserved case's archive package: complete, matching its
	// manifest, its receipt and its CaseArchived event, and holding the
	// personal data the plan's preservation must keep.
	zips, err := filepath.Glob(filepath.Join(archiveDir, "*"))
	require.NoError(t, err)
	require.Len(t, zips, 1, "the archive holds exactly the preserved case's package: %v", zips)
	pkgPath := zips[0]
	require.Regexp(t, "^"+regexp.QuoteMeta(preserved.number+"_"+preserved.id)+`_r\d+\.zip$`, filepath.Base(pkgPath),
		"a package is named by the case and the revision it was taken at")
	manifest, contents, sum := retReadArchive(t, pkgPath)
	require.Equal(t, "kontakt-archive/1", manifest.Format)
	require.Equal(t, preserved.id, manifest.CaseID)
	require.Equal(t, preserved.number, manifest.CaseNumber)
	require.Equal(t, led[preserved.id][retKindArchive][0].GetArchiveSha256(), sum, "the archive receipt names the package's SHA-256")
	var archivedEvent *casev1.CaseArchived
	for _, ev := range e.caseEvents(t, preserved.id) {
		if ev.Type == retCaseArchivedType {
			archivedEvent = &casev1.CaseArchived{}
			require.NoError(t, proto.Unmarshal(ev.Data, archivedEvent))
		}
	}
	require.NotNil(t, archivedEvent, "no CaseArchived in the preserved case's stream")
	require.Equal(t, sum, archivedEvent.GetSha256())
	require.Equal(t, filepath.Base(pkgPath), archivedEvent.GetPackage())
	var all []byte
	for name, b := range contents {
		if name != "manifest.json" {
			all = append(all, b...)
		}
	}
	for _, mk := range preserved.markers {
		require.True(t, bytes.Contains(all, []byte(mk)), "the archive package lacks the preserved case's %s", mk)
	}
	for _, c := range cases {
		if c != preserved {
			for _, mk := range c.markers {
				require.False(t, bytes.Contains(all, []byte(mk)), "the archive package holds another case's data (%s)", c.label)
			}
		}
	}

	// Statistics: unchanged by the redactions. A probe case registered
	// now, after the redactions in the log, shows when the statistics
	// have read that far.
	probeMarker := fmt.Sprintf("rt%sprobe", run)
	actx, acancel := e.as(t, anna)
	defer acancel()
	probeResp, err := e.ic.RegisterCase(actx, &intakev1.RegisterCaseRequest{Case: &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE, Category: "ovrigt",
		Description: probeMarker, Contact: &intakev1.Contact{CallerNumberWithheld: true},
	}})
	require.NoError(t, err)
	probeID := probeResp.GetCaseId()
	probeDay := probeResp.GetRegisteredAt().AsTime().UTC().Truncate(retDay)
	require.True(t, eventually(20*time.Second, func() bool {
		n, _, _ := retStatsTotals(e.statsQuery(t, probeDay.Add(-2*retDay), probeDay.Add(2*retDay)))
		return n == 1
	}), "the statistics did not count the probe case registered on day 91")
	after := e.statsQuery(t, statsFrom, statsTo)
	require.True(t, proto.Equal(baseline, after), "statistics changed by redaction:\nbefore %v\nafter  %v", baseline, after)
	needles = append(needles, probeMarker)

	// No marker in plain text anywhere under the data directory (the
	// archive holds the preserved case by design), the routing read model
	// included; the case numbers, stored in plain text, show that the scan
	// reads the files the cases were written to.
	var numbers []string
	for _, c := range cases {
		numbers = append(numbers, c.number)
	}
	retScanClean(t, dataDir, archiveDir, needles, numbers)
	phase("day 91: checked")

	// Releasing the hold applies the passed deadline at once.
	_, err = e.rt.ReleaseHold(ctx, &retentionv1.ReleaseHoldRequest{CaseId: held.id, HoldId: hold.GetHoldId()})
	require.NoError(t, err)
	led = e.waitLedger(t, 15*time.Second, "the released case's redaction", func(m map[string]retLedger) bool {
		return m[held.id].fullyRedacted()
	})
	phase("day 91: released hold redacted")
	require.Len(t, led[held.id][retKindRedaction], 1)
	require.Equal(t, "personuppgifter", led[held.id][retKindRedaction][0].GetRule())
	var hv2 *routingv1.CaseView
	require.True(t, eventually(10*time.Second, func() bool {
		hv2 = getCase(held)
		return len(hv2.GetPersonalData().GetRedacted()) == 5
	}), "GetCase does not show the released case redacted: %v", hv2)
	require.False(t, hv2.GetOnHold())
	require.Nil(t, hv2.GetPersonalData().GetContact())
	require.Nil(t, hv2.GetPersonalData().GetIdentity())
	require.Nil(t, hv2.GetPersonalData().GetFreeText())
	retNoMarkersIn(t, "the released case's GetCase", protojson.Format(hv2), needles)
	for k, got := range find(held) {
		require.Empty(t, got, "the released case is still found by %s", k)
	}
	s = e.sealer(t)
	for _, v := range e.sealedValues(t, held.id) {
		_, err := retOpen(s, v)
		require.ErrorIs(t, err, seal.ErrKeyDestroyed, v.what)
	}
	lastSeq91 := e.casesLastSeq(t)
	require.NoError(t, e.k.Stop(t))
	retNoMarkersIn(t, "the day-91 log", e.k.stderr.String(), needles)

	// ---- Day 731 ----
	e = retStart(t, dataDir, 731)
	phase("day 731: started")
	ctx, cancel = e.as(t, sara)
	defer cancel()
	e.waitLedger(t, 30*time.Second, "a deletion of every case", func(m map[string]retLedger) bool {
		for _, c := range cases {
			if len(m[c.id][retKindDeletion]) == 0 {
				return false
			}
		}
		return m[probeID].fullyRedacted()
	})
	phase("day 731: deleted")
	rs := e.receipts(t)
	led = retByCase(rs)
	redactions, deletions, archives := 0, 0, 0
	for _, c := range cases {
		l := led[c.id]
		require.Len(t, l[retKindDeletion], 1, c.label)
		del := l[retKindDeletion][0]
		rule := "arendet"
		if c.preserve {
			rule = "arendet-bevaras"
		}
		require.Equal(t, rule, del.GetRule(), c.label)
		require.Equal(t, []string{"case"}, del.GetClasses(), c.label)
		require.Equal(t, c.number, del.GetCaseNumber(), c.label)
		wantRedactions := 1
		if c.chat {
			wantRedactions = 2
		}
		require.Len(t, l[retKindRedaction], wantRedactions, c.label)
		require.Equal(t, retPersonalClasses, l.redactedClasses(), "%s: each class redacted exactly once", c.label)
		wantArchives := 0
		if c.preserve {
			wantArchives = 1
		}
		require.Len(t, l[retKindArchive], wantArchives, c.label)
		for _, r := range append(l[retKindRedaction], l[retKindArchive]...) {
			require.Less(t, r.GetSeq(), del.GetSeq(), "%s: the deletion is the case's last receipt", c.label)
		}
		redactions += len(l[retKindRedaction])
		deletions++
		archives += wantArchives
	}
	// The probe, registered on day 91, is due for redaction but not yet
	// for deletion.
	require.Len(t, led[probeID][retKindRedaction], 1)
	require.Empty(t, led[probeID][retKindDeletion], "a case was deleted before its two years")
	redactions++
	require.Len(t, led, len(cases)+1, "receipts for cases the test does not know: %s", retDescribe(led))
	require.Len(t, rs, redactions+deletions+archives)
	for i := 1; i < len(rs); i++ {
		require.Greater(t, rs[i].GetSeq(), rs[i-1].GetSeq())
		require.Equal(t, rs[i-1].GetHash(), rs[i].GetPrev(), "receipt %d does not chain to the one before", rs[i].GetSeq())
	}
	raw := ""
	for _, r := range rs {
		raw += string(r.GetRaw())
	}
	retNoMarkersIn(t, "the ledger's receipts", raw, needles)

	// The cases are gone: from the read model, and from the store, where
	// each case subject keeps only its tombstone (so the id can never be
	// used again) and no event; every key is destroyed.
	for _, c := range cases {
		require.True(t, eventually(10*time.Second, func() bool {
			_, err := e.rc.GetCase(ctx, &routingv1.GetCaseRequest{CaseId: c.id})
			return err != nil && status.Code(err) == codes.NotFound
		}), "%s: GetCase does not answer NotFound", c.label)
		_, err := e.rc.GetCase(ctx, &routingv1.GetCaseRequest{CaseId: c.id})
		requireStatus(t, err, codes.NotFound)
		evs := e.caseEvents(t, c.id)
		require.Len(t, evs, 1, "%s: the case subject still holds events", c.label)
		require.Equal(t, retTombstoneType, evs[0].Type, c.label)
		require.Empty(t, evs[0].Data, c.label)
	}
	pv, err := e.rc.GetCase(ctx, &routingv1.GetCaseRequest{CaseId: probeID})
	require.NoError(t, err, "the probe case is not due for deletion")
	require.True(t, pv.GetCase().GetSummary().GetRedacted())
	s = e.sealer(t)
	for _, c := range cases {
		for _, v := range day0Sealed[c.id] {
			_, err := retOpen(s, v)
			require.ErrorIs(t, err, seal.ErrKeyDestroyed, "%s: %s", c.label, v.what)
		}
	}

	// The ledger verifies with the CLI, which checks the chain itself.
	code, out = runKontakt(t, "retention", "verify", "--config", e.k.Config, "--addr", e.k.Addr)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, fmt.Sprintf("ledger verified: %d receipts (%d redaction, %d deletion, %d archive)", len(rs), redactions, deletions, archives), out)

	// Statistics: each day-0 record got its deletion version (a version
	// after the last event of day 91), and the aggregates are unchanged.
	require.True(t, eventually(20*time.Second, func() bool {
		newest := map[string]int64{}
		for _, r := range e.statsRecords(t) {
			h := r.rec.GetRegisteredHour().AsTime()
			if h.Before(statsFrom) || !h.Before(statsTo) {
				continue
			}
			newest[r.rec.GetStatisticsId()] = max(newest[r.rec.GetStatisticsId()], r.rec.GetVersion())
		}
		if len(newest) != len(cases) {
			return false
		}
		for _, v := range newest {
			if v <= int64(lastSeq91) {
				return false
			}
		}
		return true
	}), "the statistics did not record every deletion")
	after = e.statsQuery(t, statsFrom, statsTo)
	require.True(t, proto.Equal(baseline, after), "statistics changed by deletion:\nbefore %v\nafter  %v", baseline, after)

	// The preserved record survives the case, unchanged.
	_, _, sum2 := retReadArchive(t, pkgPath)
	require.Equal(t, sum, sum2)
	phase("day 731: checked")
	require.NoError(t, e.k.Stop(t))
	retNoMarkersIn(t, "the day-731 log", e.k.stderr.String(), needles)
	retScanClean(t, dataDir, archiveDir, needles, numbers)
	phase("done")
}

// retNoMarkersIn fails when text holds any needle.
func retNoMarkersIn(t *testing.T, where, text string, needles []string) {
	t.Helper()
	for _, n := range needles {
		require.NotContains(t, text, n, "%s holds personal data", where)
	}
}

// retScanClean scans the data directory (without the archive) for the
// needles: none may be there. The controls must be (they are stored in
// plain text), and the read models must be among the files read.
func retScanClean(t *testing.T, dataDir, archiveDir string, needles, controls []string) {
	t.Helper()
	found, files := retScanDir(t, dataDir, archiveDir, append(append([]string{}, needles...), controls...))
	for _, want := range []string{
		filepath.Join(dataDir, "routing", "readmodel.db"),
		filepath.Join(dataDir, "retention", "index.db"),
		filepath.Join(dataDir, "statistics", "statistics.db"),
	} {
		require.Contains(t, files, want, "the scan did not read %s", want)
	}
	for _, c := range controls {
		require.NotEmpty(t, found[c], "control %s is on no file: the scan does not read the store", c)
	}
	for _, n := range needles {
		require.Empty(t, found[n], "marker %s is on disk in plain text", n)
	}
}

// TestRetentionRefusals: wrong requests are refused with the right code
// and the field named, holds stop an erasure with an explanation, and a
// production configuration refuses the development clock offset.
func TestRetentionRefusals(t *testing.T) {
	e := retStart(t, "", 0)
	run := randHex(t, 4)
	email := "rt" + run + "refusal@example.se"
	register := func(typ casev1.CaseType, desc string) (string, string) {
		t.Helper()
		ctx, cancel := e.as(t, anna)
		defer cancel()
		resp, err := e.ic.RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: &intakev1.CaseInput{
			Type: typ, Channel: casev1.Channel_CHANNEL_EMAIL, Category: "ovrigt", Description: desc,
			Contact: &intakev1.Contact{Name: "rt" + run + "name", Email: email},
		}})
		require.NoError(t, err)
		return resp.GetCaseId(), resp.GetCaseNumber()
	}
	heldID, heldNumber := register(casev1.CaseType_CASE_TYPE_FRAGA, "Fråga om bygglov.")
	freeID, freeNumber := register(casev1.CaseType_CASE_TYPE_SYNPUNKT, "Synpunkt på parken.")
	ctx, cancel := e.as(t, sara)
	defer cancel()

	_, err := e.rt.PlaceHold(ctx, &retentionv1.PlaceHoldRequest{CaseId: heldID})
	requireStatus(t, err, codes.InvalidArgument)
	require.Equal(t, []string{"reason"}, retFields(err))
	_, err = e.rt.PlaceHold(ctx, &retentionv1.PlaceHoldRequest{Reason: "överklagande"})
	requireStatus(t, err, codes.InvalidArgument)
	require.Equal(t, []string{"case_id"}, retFields(err))
	_, err = e.rt.PlaceHold(ctx, &retentionv1.PlaceHoldRequest{CaseId: retUUID(t), Reason: "överklagande"})
	requireStatus(t, err, codes.NotFound)
	hold, err := e.rt.PlaceHold(ctx, &retentionv1.PlaceHoldRequest{CaseId: heldID, Reason: "överklagande"})
	require.NoError(t, err)
	_, err = e.rt.ReleaseHold(ctx, &retentionv1.ReleaseHoldRequest{CaseId: heldID, HoldId: retUUID(t)})
	requireStatus(t, err, codes.NotFound, "hold")
	_, err = e.rt.ReleaseHold(ctx, &retentionv1.ReleaseHoldRequest{CaseId: retUUID(t), HoldId: hold.GetHoldId()})
	requireStatus(t, err, codes.NotFound)
	_, err = e.rt.ReleaseHold(ctx, &retentionv1.ReleaseHoldRequest{CaseId: heldID})
	requireStatus(t, err, codes.InvalidArgument)
	require.Equal(t, []string{"hold_id"}, retFields(err))

	dctx, dcancel := e.as(t, dina)
	defer dcancel()
	_, err = e.rt.SubjectAccess(dctx, &retentionv1.SubjectAccessRequest{Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: "inte-en-adress"}}})
	requireStatus(t, err, codes.InvalidArgument, "subject.email")
	require.Equal(t, []string{"subject.email"}, retFields(err))
	require.NotContains(t, err.Error(), "inte-en-adress", "the error repeats the value")
	_, err = e.rt.SubjectAccess(dctx, &retentionv1.SubjectAccessRequest{Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: "19991399-0000"}}})
	requireStatus(t, err, codes.InvalidArgument, "subject.identity_number")
	require.Equal(t, []string{"subject.identity_number"}, retFields(err))
	_, err = e.rt.SubjectAccess(dctx, &retentionv1.SubjectAccessRequest{})
	requireStatus(t, err, codes.InvalidArgument)
	require.Equal(t, []string{"subject"}, retFields(err))
	_, err = e.rt.EraseSubject(dctx, &retentionv1.EraseSubjectRequest{Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: email}}})
	requireStatus(t, err, codes.InvalidArgument)
	require.Equal(t, []string{"reason"}, retFields(err))

	// Roles: register extracts and erasure are the DPO's; agents cannot
	// hold or preserve cases.
	agentCtx, agentCancel := e.as(t, anna)
	defer agentCancel()
	_, err = e.rt.SubjectAccess(agentCtx, &retentionv1.SubjectAccessRequest{Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: email}}})
	requireStatus(t, err, codes.PermissionDenied)
	_, err = e.rt.SubjectAccess(ctx, &retentionv1.SubjectAccessRequest{Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: email}}})
	requireStatus(t, err, codes.PermissionDenied)
	_, err = e.rt.EraseSubject(agentCtx, &retentionv1.EraseSubjectRequest{Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: email}}, Reason: "begäran"})
	requireStatus(t, err, codes.PermissionDenied)
	_, err = e.rt.PlaceHold(agentCtx, &retentionv1.PlaceHoldRequest{CaseId: freeID, Reason: "överklagande"})
	requireStatus(t, err, codes.PermissionDenied)
	_, err = e.rt.MarkForPreservation(agentCtx, &retentionv1.MarkForPreservationRequest{CaseId: freeID, Reason: "bevaras"})
	requireStatus(t, err, codes.PermissionDenied)

	// An erasure request: the held case is kept, with the reason, the
	// other is erased.
	require.True(t, eventually(10*time.Second, func() bool {
		resp, err := e.rt.SubjectAccess(dctx, &retentionv1.SubjectAccessRequest{Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: email}}})
		require.NoError(t, err)
		return len(resp.GetCases()) == 2
	}), "the register extract does not find both cases")
	erased, err := e.rt.EraseSubject(dctx, &retentionv1.EraseSubjectRequest{Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: email}}, Reason: "begäran om radering, art. 17"})
	require.NoError(t, err)
	outcomes := map[string]*retentionv1.EraseOutcome{}
	for _, o := range erased.GetOutcomes() {
		outcomes[o.GetCaseNumber()] = o
	}
	require.Len(t, outcomes, 2, "%v", erased.GetOutcomes())
	require.False(t, outcomes[heldNumber].GetErased(), "a held case was erased")
	require.Contains(t, outcomes[heldNumber].GetExplanation(), "hold")
	require.Contains(t, outcomes[heldNumber].GetExplanation(), "överklagande")
	require.True(t, outcomes[freeNumber].GetErased(), "%v", outcomes[freeNumber])
	require.Empty(t, outcomes[freeNumber].GetExplanation())
	led := e.waitLedger(t, 10*time.Second, "the erasure's redaction", func(m map[string]retLedger) bool { return m[freeID].fullyRedacted() })
	require.Zero(t, len(led[heldID]), "the held case has receipts:%s", retDescribe(map[string]retLedger{heldID: led[heldID]}))
	for _, r := range led[freeID][retKindRedaction] {
		require.Equal(t, "erasure", r.GetReason())
		require.NotContains(t, string(r.GetRaw()), "art. 17", "the erasure's note is in the ledger")
	}
	view, err := e.rc.GetCase(ctx, &routingv1.GetCaseRequest{CaseId: heldID})
	require.NoError(t, err)
	require.Equal(t, email, view.GetCase().GetPersonalData().GetContact().GetEmail(), "the held case lost its data")
	resp, err := e.rt.SubjectAccess(dctx, &retentionv1.SubjectAccessRequest{Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: email}}})
	require.NoError(t, err)
	require.Len(t, resp.GetCases(), 1)
	require.Equal(t, heldID, resp.GetCases()[0].GetCaseId())

	// Production refuses the development clock offset, as a flag and in
	// the file, before anything starts; without it the same configuration
	// is valid.
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	prod := fmt.Sprintf("mode: production\ndata_dir: %s\nlisten: %s\nauth:\n  oidc:\n    issuer: https://idp.example.invalid\n    audience: kontakt\n%s",
		dataDir, freeAddr(t), routingQueues)
	prodPath := filepath.Join(dir, "production.yaml")
	require.NoError(t, os.WriteFile(prodPath, []byte(prod), 0o600))
	code, out := runKontakt(t, "retention", "plan", "--config", prodPath)
	require.Equal(t, 0, code, "the production configuration itself is valid: %s", out)
	code, out = runKontakt(t, "serve", "--config", prodPath, "--dev-clock-offset", "91d")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "retention.dev_clock_offset", out)
	require.Contains(t, out, "production", out)
	offsetPath := filepath.Join(dir, "production-offset.yaml")
	require.NoError(t, os.WriteFile(offsetPath, []byte(prod+"retention:\n  dev_clock_offset: 2184h\n"), 0o600))
	code, out = runKontakt(t, "serve", "--config", offsetPath)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "retention.dev_clock_offset", out)
	_, err = os.Stat(dataDir)
	require.ErrorIs(t, err, os.ErrNotExist, "a refused start created the data directory")
}
