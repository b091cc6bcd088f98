package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// redactionWorkPlan is one municipality's plan as TestWorkAfterRedaction
// drives it: the day its personal data is culled, the day the complaint
// is worked again, the rule that redacts the new answer and its period.
type redactionWorkPlan struct {
	name      string
	config    func(offsetDays int) string
	culledDay int
	workDay   int
	rule      string
	period    func(time.Time) time.Time
	// wantDueDay, when set, is the registration-relative day the issue
	// names for the new answer's redaction.
	wantDueDay int
}

// TestWorkAfterRedaction is issue 14 point 2: once a complaint's answer
// class was culled (day 91 in Mölndal, six months in Växjö), AnswerCase,
// AddNote and ForwardCase with a comment answered 500 Internal ("data key
// destroyed"). A complaint still open at day 120 must be answerable. The
// test registers and answers a complaint, lets the plan cull it, works it
// again over gRPC and REST (answer, note, forwarding comment, close,
// reopen), and checks that the new texts are shown and the old one is
// not, that `kontakt retention preview` dates the new data's redaction
// from when it was written (day 210 in Mölndal), and that the plan then
// redacts it too: a second key generation destroyed, a second receipt,
// and no marker readable anywhere.
func TestWorkAfterRedaction(t *testing.T) {
	plans := []redactionWorkPlan{
		{
			name: "molndal", config: retConfig, culledDay: 91, workDay: 120, rule: "personuppgifter",
			period: func(at time.Time) time.Time { return at.AddDate(0, 0, 90) }, wantDueDay: 210,
		},
		{
			name: "vaxjo", config: vaxjoConfig, culledDay: 200, workDay: 215, rule: "ovriga-personuppgifter",
			period: func(at time.Time) time.Time { return at.AddDate(0, 6, 0) },
		},
	}
	for _, p := range plans {
		t.Run(p.name, func(t *testing.T) { workAfterRedaction(t, p) })
	}
}

func workAfterRedaction(t *testing.T, p redactionWorkPlan) {
	dataDir := filepath.Join(t.TempDir(), "data")
	run := randHex(t, 4)
	marker := func(what string) string { return "rw" + run + what }
	local := randDigits(t, 7)
	pnr := personnummer(1971, 4, 4, 440, false)
	first := marker("firstanswer")
	texts := map[string]string{} // what -> marker written after the redaction
	for _, what := range []string{"grpc-answer", "grpc-note", "grpc-comment", "rest-answer", "rest-note", "rest-comment"} {
		texts[what] = marker(strings.ReplaceAll(what, "-", ""))
	}
	newEmail := marker("newmail") + "@example.se"
	needles := []string{first, marker("complaint"), local, tenDigit(pnr), marker("newmail")}
	for _, m := range texts {
		needles = append(needles, m)
	}
	start := func(offsetDays int) *retEnv {
		e := &retEnv{routingEnv: startRouting(t, dataDir, p.config(offsetDays))}
		e.rt = retentionv1.NewRetentionServiceClient(e.conns[0])
		return e
	}

	// Day 0: a complaint, answered at once and left open.
	e := start(0)
	id, number := e.register(t, complaint(marker("complaint")+local, pnr, ""))
	e.waitRouted(t, number)
	ctx, cancel := e.as(t, sara)
	_, err := e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: id, Answer: first})
	cancel()
	require.NoError(t, err)
	reg := e.summaryByNumber(t, number).GetRegisteredAt().AsTime().UTC()
	require.NoError(t, e.k.Stop(t))
	retNoMarkersIn(t, "the day-0 log", e.k.stderr.String(), needles)

	// The plan culls the complaint's personal data.
	e = start(p.culledDay)
	e.waitLedger(t, 60*time.Second, "the complaint's redaction", func(m map[string]retLedger) bool {
		return m[id].fullyRedacted()
	})
	require.NoError(t, e.k.Stop(t))

	// Day 120 (Växjö: seven months): the complaint is worked again, over
	// gRPC and over REST.
	e = start(p.workDay)
	ctx, cancel = e.as(t, sara)
	defer cancel()
	e.waitGetCase(t, ctx, id, "the redaction", func(v *routingv1.CaseView) bool {
		return len(v.GetPersonalData().GetRedacted()) == 5
	})
	// On the base binary this is where it failed: 500 Internal.
	_, err = e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: id, Answer: texts["grpc-answer"]})
	require.NoError(t, err, "AnswerCase after the redaction: %s", status.Code(err))
	_, err = e.rc.AddNote(ctx, &routingv1.AddNoteRequest{CaseId: id, Text: texts["grpc-note"]})
	require.NoError(t, err, "AddNote after the redaction: %s", status.Code(err))
	_, err = e.rc.ForwardCase(ctx, &routingv1.ForwardCaseRequest{CaseId: id, ToOfficer: "olle", Comment: texts["grpc-comment"]})
	require.NoError(t, err, "ForwardCase with a comment after the redaction: %s", status.Code(err))
	_, err = e.rc.CloseCase(ctx, &routingv1.CloseCaseRequest{CaseId: id, Resolution: casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY})
	require.NoError(t, err)
	_, err = e.rc.ReopenCase(ctx, &routingv1.ReopenCaseRequest{CaseId: id})
	require.NoError(t, err)
	for _, call := range []struct{ what, path, body string }{
		{"answer", "/v1/cases/" + id + ":answer", fmt.Sprintf(`{"answer":%q}`, texts["rest-answer"])},
		{"note", "/v1/cases/" + id + "/notes", fmt.Sprintf(`{"text":%q}`, texts["rest-note"])},
		{"forward", "/v1/cases/" + id + ":forward", fmt.Sprintf(`{"to_officer":"olle","comment":%q}`, texts["rest-comment"])},
		{"close", "/v1/cases/" + id + ":close", `{"resolution":"RESOLUTION_ANSWERED_DIRECTLY"}`},
		{"reopen", "/v1/cases/" + id + ":reopen", `{}`},
	} {
		code, body := e.restPost(t, sara, call.path, call.body)
		require.Equal(t, http.StatusOK, code, "REST %s after the redaction: %s", call.what, body)
	}

	// The data-protection officer completes the redacted contact details
	// with the citizen's new address: sealed under a fresh key, and the
	// blind index finds the case by it (routing's search and retention's
	// register extract).
	dctx, dcancel := e.as(t, dina)
	defer dcancel()
	_, err = e.rt.Rectify(dctx, &retentionv1.RectifyRequest{CaseId: id, Value: &retentionv1.RectifyRequest_Contact{Contact: &casev1.ContactDetails{Email: newEmail}}, Reason: "ny e-postadress"})
	require.NoError(t, err, "Rectify after the redaction: %s", status.Code(err))
	byEmail := &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_Email{Email: newEmail}, Purpose: "svar till medborgaren"}
	require.True(t, eventually(30*time.Second, func() bool {
		resp, err := e.rc.FindCases(ctx, byEmail)
		require.NoError(t, err)
		return len(resp.GetCases()) == 1 && resp.GetCases()[0].GetCaseId() == id
	}), "FindCases by the rectified address")
	subjectByEmail := &retentionv1.SubjectAccessRequest{Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: newEmail}}}
	require.True(t, eventually(30*time.Second, func() bool {
		resp, err := e.rt.SubjectAccess(dctx, subjectByEmail)
		require.NoError(t, err)
		return len(resp.GetCases()) == 1 && resp.GetCases()[0].GetContact().GetEmail() == newEmail
	}), "SubjectAccess by the rectified address")

	// GetCase shows every new text and not the old answer, over gRPC and
	// REST; the answer class is listed as redacted for the old entry.
	v := e.waitGetCase(t, ctx, id, "the new texts", func(v *routingv1.CaseView) bool {
		return len(historyTexts(v)) == len(texts)
	})
	got := historyTexts(v)
	for what, m := range texts {
		require.Contains(t, got, m, "GetCase shows the %s", what)
	}
	require.NotContains(t, protojson.Format(v), first, "GetCase shows the redacted answer")
	require.Contains(t, v.GetPersonalData().GetRedacted(), casev1.DataClass_DATA_CLASS_ANSWER)
	require.Equal(t, newEmail, v.GetPersonalData().GetContact().GetEmail(), "GetCase shows the rectified contact details")
	require.NotContains(t, v.GetPersonalData().GetRedacted(), casev1.DataClass_DATA_CLASS_CONTACT_DETAILS)
	require.Nil(t, v.GetPersonalData().GetIdentity(), "the identity number stays redacted")
	require.Nil(t, v.GetPersonalData().GetFreeText(), "the complaint's text stays redacted")
	var firstWrite time.Time
	for _, h := range v.GetHistory() {
		if h.GetText() == texts["grpc-answer"] {
			firstWrite = h.GetAt().AsTime().UTC()
		}
	}
	require.False(t, firstWrite.IsZero())
	code, body := e.restGet(t, sara, "/v1/cases/"+id)
	require.Equal(t, http.StatusOK, code, body)
	for what, m := range texts {
		require.Contains(t, body, m, "REST GetCase shows the %s", what)
	}
	require.NotContains(t, body, first)

	// The new data is redacted when its own period is over, counted from
	// its first write; the preview says so.
	due := p.period(firstWrite)
	if p.wantDueDay > 0 {
		// Counted from day 120 plus the minutes this test has run.
		late := due.Sub(reg.AddDate(0, 0, p.wantDueDay))
		require.True(t, late >= 0 && late < time.Hour, "due %s, registered %s: want day %d", due, reg, p.wantDueDay)
	}
	previewDays := int(due.Sub(firstWrite).Hours()/24) + 10
	var items []*retentionv1.DueItem
	require.True(t, eventually(30*time.Second, func() bool {
		resp, err := e.rt.Preview(ctx, &retentionv1.PreviewRequest{Days: int32(previewDays)})
		require.NoError(t, err)
		items = items[:0]
		for _, it := range resp.GetItems() {
			if it.GetCaseId() == id && it.GetAction() == retentionv1.Action_ACTION_REDACT {
				items = append(items, it)
			}
		}
		return len(items) == 2
	}), "the preview lists the redactions of the new answer and the new contact details: %v", items)
	// Answers first; the rectification came after them.
	require.Equal(t, []casev1.DataClass{casev1.DataClass_DATA_CLASS_CONTACT_DETAILS}, items[1].GetDataClasses())
	require.True(t, items[1].GetWrittenAfterRedaction())
	require.True(t, p.period(items[1].GetCountedFrom().AsTime()).Equal(items[1].GetDueAt().AsTime()), "the contact details' period counts from the rectification: %v", items[1])
	require.True(t, items[1].GetCountedFrom().AsTime().After(firstWrite))
	require.Equal(t, []casev1.DataClass{casev1.DataClass_DATA_CLASS_ANSWER}, items[0].GetDataClasses())
	require.Equal(t, p.rule, items[0].GetRule())
	require.True(t, due.Equal(items[0].GetDueAt().AsTime()), "due %s, preview says %s", due, items[0].GetDueAt().AsTime())
	require.True(t, firstWrite.Equal(items[0].GetCountedFrom().AsTime()), "counted from %s, preview says %s", firstWrite, items[0].GetCountedFrom().AsTime())
	require.True(t, items[0].GetWrittenAfterRedaction())
	code, out := runKontakt(t, "retention", "preview", "--days", fmt.Sprint(previewDays), "--config", e.k.Config, "--addr", e.k.Addr)
	require.Equal(t, 0, code, out)
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, number) && strings.Contains(l, "redact") && strings.Contains(l, "answer") {
			line = l
		}
	}
	require.NotEmpty(t, line, "the preview lists the new answer's redaction:\n%s", out)
	t.Logf("preview: %s", strings.Join(strings.Fields(line), " "))
	require.Contains(t, line, due.Format(time.DateOnly))
	require.Contains(t, line, "answer")
	require.Contains(t, line, firstWrite.Format(time.DateOnly)+" (written after redaction)")
	require.Contains(t, out, "2 of them for data written after an earlier redaction")
	retNoMarkersIn(t, "the preview", out, needles)
	require.NoError(t, e.k.Stop(t))
	retNoMarkersIn(t, "the log of the day the case was worked", e.k.stderr.String(), needles)

	// The day after the new data's period: redacted too.
	after := int(due.Sub(reg).Hours()/24) + 1
	e = start(after)
	led := e.waitLedger(t, 60*time.Second, "the redactions of the new answer and contact details", func(m map[string]retLedger) bool {
		return len(m[id][retKindRedaction]) == 3
	})
	for i, class := range []string{"answer", "contact"} {
		r := led[id][retKindRedaction][i+1]
		require.Equal(t, []string{class}, r.GetClasses(), "receipt %d", i+1)
		require.Equal(t, p.rule, r.GetRule())
	}
	ctx, cancel = e.as(t, sara)
	defer cancel()
	v = e.waitGetCase(t, ctx, id, "the second redaction", func(v *routingv1.CaseView) bool {
		return len(historyTexts(v)) == 0
	})
	retNoMarkersIn(t, "GetCase after the second redaction", protojson.Format(v), needles)
	resp, err := e.rc.FindCases(ctx, byEmail)
	require.NoError(t, err)
	require.Empty(t, resp.GetCases(), "the rectified address's tokens went with it")
	dctx, dcancel = e.as(t, dina)
	defer dcancel()
	sresp, err := e.rt.SubjectAccess(dctx, subjectByEmail)
	require.NoError(t, err)
	require.Empty(t, sresp.GetCases())

	// Every sealed text in the store, both generations, no longer opens.
	s := e.sealer(t)
	var keyIDs []string
	for _, ev := range e.caseEvents(t, id) {
		sp := sealedText(t, ev)
		if sp == nil {
			continue
		}
		keyIDs = append(keyIDs, sp.GetKeyId())
		_, err := retOpen(s, retSealed{what: ev.Type, caseID: id, value: sp})
		require.ErrorIs(t, err, seal.ErrKeyDestroyed, "%s under %s", ev.Type, sp.GetKeyId())
	}
	want := []string{id + ".answer"}
	for range texts {
		want = append(want, id+".answer.1")
	}
	require.Equal(t, want, keyIDs, "the old answer under generation 0, every new text under generation 1")
	var rectified *casev1.SealedPersonalData
	for _, ev := range e.caseEvents(t, id) {
		if ev.Type == "kontakt.case.v1.PersonalDataRectified" {
			var m casev1.PersonalDataRectified
			require.NoError(t, proto.Unmarshal(ev.Data, &m))
			rectified = m.GetValue()
		}
	}
	require.Equal(t, id+".contact.1", rectified.GetKeyId())
	_, err = retOpen(s, retSealed{caseID: id, value: rectified})
	require.ErrorIs(t, err, seal.ErrKeyDestroyed)
	require.NoError(t, e.k.Stop(t))
	retNoMarkersIn(t, "the last log", e.k.stderr.String(), needles)
	retScanClean(t, dataDir, filepath.Join(dataDir, "archive"), needles, []string{number})
}

// waitGetCase reads a case until ok accepts it.
func (e *retEnv) waitGetCase(t *testing.T, ctx context.Context, id, what string, ok func(*routingv1.CaseView) bool) *routingv1.CaseView {
	t.Helper()
	var last *routingv1.CaseView
	if !eventually(30*time.Second, func() bool {
		resp, err := e.rc.GetCase(ctx, &routingv1.GetCaseRequest{CaseId: id, Purpose: "arbete efter gallring"})
		require.NoError(t, err)
		last = resp.GetCase()
		return ok(last)
	}) {
		t.Fatalf("GetCase did not show %s within 30 s: %v", what, last)
	}
	return last
}

// historyTexts are the texts GetCase shows in a case's history.
func historyTexts(v *routingv1.CaseView) []string {
	var out []string
	for _, h := range v.GetHistory() {
		if h.GetText() != "" {
			out = append(out, h.GetText())
		}
	}
	slices.Sort(out)
	return out
}

// sealedText is the sealed answer, note or forwarding comment of a stored
// event, or nil.
func sealedText(t *testing.T, ev storedEvent) *casev1.SealedPersonalData {
	t.Helper()
	switch ev.Type {
	case retCaseAnsweredType:
		var m casev1.CaseAnswered
		require.NoError(t, proto.Unmarshal(ev.Data, &m))
		return m.GetAnswer()
	case "kontakt.case.v1.NoteAdded":
		var m casev1.NoteAdded
		require.NoError(t, proto.Unmarshal(ev.Data, &m))
		return m.GetText()
	case "kontakt.case.v1.CaseForwarded":
		var m casev1.CaseForwarded
		require.NoError(t, proto.Unmarshal(ev.Data, &m))
		return m.GetComment()
	}
	return nil
}

// restGet gets a path with p's token and returns the HTTP status and
// body.
func (e *routingEnv) restGet(t *testing.T, p principal, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+e.k.Addr+path, nil)
	require.NoError(t, err)
	req.Header.Set("authorization", "Bearer "+e.token(t, p))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusOK {
		require.True(t, json.Valid(b), "not JSON: %s", b)
	}
	return resp.StatusCode, string(b)
}
