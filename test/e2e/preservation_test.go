package e2e

// Marking a case for preservation (issue 13, hole 2; issue 14, point 3):
// only a supervisor or the officer responsible for the case may mark it,
// the data-protection officer lists and withdraws marks, every mark and
// withdrawal shows in the person's audit trail, and a mark with nothing
// left to preserve is refused.

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

const (
	markRPC     = "/kontakt.retention.v1.RetentionService/MarkForPreservation"
	withdrawRPC = "/kontakt.retention.v1.RetentionService/WithdrawPreservationMark"
)

// restPost posts a JSON body with p's token and returns the HTTP status
// and body.
func (e *routingEnv) restPost(t *testing.T, p principal, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+e.k.Addr+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("content-type", "application/json")
	req.Header.Set("authorization", "Bearer "+e.token(t, p))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// complaint is a synpunkt by phone from a person with an identity number.
func complaint(text, pnr, email string) *intakev1.CaseInput {
	return &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Channel: casev1.Channel_CHANNEL_PHONE, Category: "park-och-lek",
		Subject: "Klagomål " + text, Description: "Invånaren klagar: " + text,
		Contact: &intakev1.Contact{Name: "Karin Klagande", Phone: "070" + text[len(text)-7:], Email: email, IdentityNumber: pnr},
	}
}

func TestPreservationMarks(t *testing.T) {
	e := retStart(t, "", 0)
	local := randDigits(t, 7)
	pnr := personnummer(1968, 5, 20, 100+int(local[3]-'0')*10, false)
	email := "karin." + local + "@example.se"
	xID, xNumber := e.register(t, complaint("X"+local, pnr, email))
	yID, yNumber := e.register(t, complaint("Y"+randDigits(t, 7), personnummer(1990, 1, 2, 350, false), ""))
	e.waitRouted(t, xNumber)
	e.waitRouted(t, yNumber)

	mark := func(p principal, id string) (*retentionv1.MarkForPreservationResponse, error) {
		ctx, cancel := e.as(t, p)
		defer cancel()
		return e.rt.MarkForPreservation(ctx, &retentionv1.MarkForPreservationRequest{CaseId: id, Reason: "klagomål av vikt"})
	}
	withdraw := func(p principal, id string) error {
		ctx, cancel := e.as(t, p)
		defer cancel()
		_, err := e.rt.WithdrawPreservationMark(ctx, &retentionv1.WithdrawPreservationMarkRequest{CaseId: id, Reason: "inte av vikt efter omprövning"})
		return err
	}

	// Attacks: nobody but a supervisor or the officer responsible for the
	// case may mark it, over gRPC or REST.
	tried, letIn := 0, 0
	attackers := []struct {
		who   principal
		why   string
		words string
	}{
		{olof, "officer of another department", "an officer may mark only a case assigned to them"},
		{olle, "officer the case was not forwarded to (yet)", "an officer may mark only a case assigned to them"},
		{anna, "agent, member of the case's queue", ""},
		{cilla, "agent without a queue", ""},
		{dina, "data-protection officer", "does not mark cases"},
		{alva, "analyst", ""},
	}
	for _, a := range attackers {
		_, err := mark(a.who, xID)
		code, body := e.restPost(t, a.who, "/v1/cases/"+xID+":preserve", `{"reason":"klagomål av vikt"}`)
		tried += 2
		if status.Code(err) != codes.PermissionDenied {
			letIn++
		}
		if code != http.StatusForbidden {
			letIn++
		}
		t.Logf("%s (%s) marks: gRPC %s %q, REST %d %s", a.who.subject, a.why, status.Code(err), status.Convert(err).Message(), code, strings.TrimSpace(body))
		requireStatus(t, err, codes.PermissionDenied, a.words)
		require.Equal(t, http.StatusForbidden, code, "%s over REST: %s", a.why, body)
	}
	t.Logf("marks tried by callers not allowed: %d, let in: %d", tried, letIn)
	require.Empty(t, e.listMarks(t, dina), "no attack left a mark")

	// The rightful officer: the case is forwarded to olle, who marks it.
	actx, acancel := e.as(t, anna)
	_, err := e.rc.ForwardCase(actx, &routingv1.ForwardCaseRequest{CaseId: xID, ToOfficer: "olle"})
	acancel()
	require.NoError(t, err)
	var res *retentionv1.MarkForPreservationResponse
	require.True(t, eventually(10*time.Second, func() bool {
		res, err = mark(olle, xID)
		return err == nil
	}), "olle may mark the case forwarded to him: %v", err)
	require.False(t, res.GetAlreadyMarked())
	require.Empty(t, res.GetAlreadyRedacted())
	require.NotNil(t, res.GetArchiveDueAt(), "the answer says when the archive package is written")
	// A supervisor on any case.
	_, err = mark(sara, yID)
	require.NoError(t, err)
	// Another officer still may not, and may not withdraw olle's mark.
	_, err = mark(olof, xID)
	requireStatus(t, err, codes.PermissionDenied)
	requireStatus(t, withdraw(olof, xID), codes.PermissionDenied)
	requireStatus(t, withdraw(anna, xID), codes.PermissionDenied)

	// The DPO finds every mark with who, when and why.
	var marks []*retentionv1.PreservationMark
	require.True(t, eventually(10*time.Second, func() bool {
		marks = e.listMarks(t, dina)
		return len(marks) == 2
	}), "ListPreservationMarks: %v", marks)
	byCase := map[string]*retentionv1.PreservationMark{}
	for _, m := range marks {
		byCase[m.GetCaseId()] = m
	}
	require.Equal(t, "olle", byCase[xID].GetMarkedBy())
	require.Equal(t, "klagomål av vikt", byCase[xID].GetReason())
	require.Equal(t, xNumber, byCase[xID].GetCaseNumber())
	require.NotNil(t, byCase[xID].GetMarkedAt())
	require.Equal(t, "sara", byCase[yID].GetMarkedBy())
	// The supervisor sees them too; an officer does not.
	require.Len(t, e.listMarks(t, sara), 2)
	octx, ocancel := e.as(t, olle)
	_, err = e.rt.ListPreservationMarks(octx, &retentionv1.ListPreservationMarksRequest{})
	ocancel()
	requireStatus(t, err, codes.PermissionDenied)

	// While marked, the person's erasure does not reach the case.
	erase := func() *retentionv1.EraseOutcome {
		ctx, cancel := e.as(t, dina)
		defer cancel()
		resp, err := e.rt.EraseSubject(ctx, &retentionv1.EraseSubjectRequest{
			Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: pnr}}, Reason: "begäran om radering, art. 17",
		})
		require.NoError(t, err)
		require.Len(t, resp.GetOutcomes(), 1)
		return resp.GetOutcomes()[0]
	}
	o := erase()
	require.False(t, o.GetErased())
	require.Contains(t, o.GetExplanation(), "preserved")

	// The DPO withdraws olle's mark.
	require.NoError(t, withdraw(dina, xID))
	requireStatus(t, withdraw(dina, xID), codes.FailedPrecondition, "not marked")
	require.True(t, eventually(10*time.Second, func() bool {
		marks = e.listMarks(t, dina)
		return len(marks) == 1 && marks[0].GetCaseId() == yID
	}), "after the withdrawal only Y is marked: %v", marks)

	// Mark and withdrawal are in the person's trail and register extract.
	trail := e.auditTrail(t, &routingv1.ListAuditTrailRequest{Subject: &routingv1.ListAuditTrailRequest_IdentityNumber{IdentityNumber: pnr}})
	require.True(t, slices.ContainsFunc(trail, func(r *routingv1.AuditRecord) bool {
		return r.GetRpc() == markRPC && r.GetActor() == "olle" && r.GetCaseId() == xID && strings.Contains(r.GetPurpose(), "klagomål av vikt")
	}), "the mark in the trail: %v", trail)
	require.True(t, slices.ContainsFunc(trail, func(r *routingv1.AuditRecord) bool {
		return r.GetRpc() == withdrawRPC && r.GetActor() == "dina" && r.GetRole() == "dpo" && strings.Contains(r.GetPurpose(), "omprövning")
	}), "the withdrawal in the trail: %v", trail)
	dctx, dcancel := e.as(t, dina)
	ext, err := e.rt.SubjectAccess(dctx, &retentionv1.SubjectAccessRequest{
		Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: email}}, Purpose: "registerutdrag",
	})
	dcancel()
	require.NoError(t, err)
	require.Len(t, ext.GetCases(), 1)
	reads := map[string]bool{}
	for _, r := range ext.GetCases()[0].GetReads() {
		reads[r.GetActor()] = reads[r.GetActor()] || strings.Contains(r.GetPurpose(), "bevara")
	}
	require.True(t, reads["olle"] && reads["dina"], "the extract's earlier reads show the mark and the withdrawal: %v", ext.GetCases()[0].GetReads())

	// After the withdrawal the erasure reaches the case.
	require.True(t, eventually(10*time.Second, func() bool { return erase().GetErased() }), "EraseSubject erases the case after the withdrawal")

	// Every service took the new event in its stride: the routing read
	// model still answers for the case, and nothing logged an error.
	require.True(t, eventually(10*time.Second, func() bool {
		s := e.summaryByNumber(t, xNumber)
		return s != nil && s.GetRedacted()
	}), "the routing read model shows the erased case")
	require.NotContains(t, e.k.stderr.String(), "level=ERROR")
}

// listMarks lists the marks as p.
func (e *retEnv) listMarks(t *testing.T, p principal) []*retentionv1.PreservationMark {
	t.Helper()
	ctx, cancel := e.as(t, p)
	defer cancel()
	resp, err := e.rt.ListPreservationMarks(ctx, &retentionv1.ListPreservationMarksRequest{})
	require.NoError(t, err)
	return resp.GetMarks()
}

// vaxjoConfig runs Växjö's plan with a fast sweeper and the clock
// offsetDays ahead.
func vaxjoConfig(offsetDays int) string {
	return fmt.Sprintf("retention:\n  plan: vaxjo\n  sweep_interval: 200ms\n  dev_clock_offset: %dh\n", offsetDays*24)
}

// TestPreservationVaxjo: in Växjö an important complaint is preserved,
// and its archive package is written before the 6-month redaction; a
// complaint whose personal data is already redacted cannot be marked (its
// package would be empty), and withdrawing a mark removes the packages.
func TestPreservationVaxjo(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	archiveDir := filepath.Join(dataDir, "archive")
	local := randDigits(t, 7)
	early := "TIDIG" + local
	late := "SEN" + local

	// Day 0: two complaints; one is marked at once.
	e := &retEnv{routingEnv: startRouting(t, dataDir, vaxjoConfig(0))}
	e.rt = retentionv1.NewRetentionServiceClient(e.conns[0])
	earlyID, earlyNumber := e.register(t, complaint(early, personnummer(1975, 7, 7, 410, false), ""))
	lateID, lateNumber := e.register(t, complaint(late, personnummer(1976, 8, 8, 420, false), ""))
	e.waitRouted(t, earlyNumber)
	e.waitRouted(t, lateNumber)
	ctx, cancel := e.as(t, sara)
	res, err := e.rt.MarkForPreservation(ctx, &retentionv1.MarkForPreservationRequest{CaseId: earlyID, Reason: "klagomål av vikt"})
	cancel()
	require.NoError(t, err)
	reg := e.summaryByNumber(t, earlyNumber).GetRegisteredAt().AsTime().UTC()
	require.Equal(t, reg.AddDate(0, 6, 0), res.GetArchiveDueAt().AsTime().UTC(), "the package is written at the 6-month redaction")

	// The operator's preview says when the package is written.
	var out string
	require.True(t, eventually(10*time.Second, func() bool {
		var code int
		code, out = runKontakt(t, "retention", "preview", "--days", "200", "--config", e.k.Config, "--addr", e.k.Addr)
		return code == 0 && strings.Contains(out, earlyNumber)
	}), "preview: %s", out)
	var archiveLine string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, earlyNumber) && strings.Contains(l, "archive") {
			archiveLine = l
		}
	}
	require.NotEmpty(t, archiveLine, "the preview lists the marked case's archive package:\n%s", out)
	require.Contains(t, archiveLine, reg.AddDate(0, 6, 0).Format(time.DateOnly))
	code, planOut := runKontakt(t, "retention", "plan", "--config", e.k.Config)
	require.Equal(t, 0, code, planOut)
	require.Contains(t, planOut, "Archive packages:", "the plan table says when packages are written")
	require.NoError(t, e.k.Stop(t))

	// Seven months later: the marked complaint was archived, then redacted;
	// the other was redacted.
	e = &retEnv{routingEnv: startRouting(t, dataDir, vaxjoConfig(213))}
	e.rt = retentionv1.NewRetentionServiceClient(e.conns[0])
	var pkgs []string
	require.True(t, eventually(30*time.Second, func() bool {
		pkgs, _ = filepath.Glob(filepath.Join(archiveDir, "*_"+earlyID+"*.zip"))
		return len(pkgs) == 1
	}), "the marked complaint's archive package")
	_, files, _ := retReadArchive(t, pkgs[0])
	require.Contains(t, string(files["case.json"]), early, "the package holds the complaint")
	require.True(t, eventually(30*time.Second, func() bool {
		redacted := 0
		for _, id := range []string{earlyID, lateID} {
			for _, ev := range e.caseEvents(t, id) {
				if ev.Type == "kontakt.case.v1.PersonalDataRedacted" {
					redacted++
					break
				}
			}
		}
		return redacted == 2
	}), "both complaints redacted at six months")

	// Marking the redacted complaint now would give an empty package.
	ctx, cancel = e.as(t, sara)
	defer cancel()
	_, err = e.rt.MarkForPreservation(ctx, &retentionv1.MarkForPreservationRequest{CaseId: lateID, Reason: "klagomål av vikt"})
	requireStatus(t, err, codes.FailedPrecondition, "nothing is left to preserve")
	t.Logf("mark after redaction: %s: %s", status.Code(err), status.Convert(err).Message())
	after, _ := filepath.Glob(filepath.Join(archiveDir, "*_"+lateID+"*.zip"))
	require.Empty(t, after, "no package for the refused mark")

	// Withdrawing the early mark removes kontakt's package of it.
	dctx, dcancel := e.as(t, dina)
	defer dcancel()
	_, err = e.rt.WithdrawPreservationMark(dctx, &retentionv1.WithdrawPreservationMarkRequest{CaseId: earlyID, Reason: "inte av vikt"})
	require.NoError(t, err)
	require.True(t, eventually(30*time.Second, func() bool {
		left, _ := filepath.Glob(filepath.Join(archiveDir, "*_"+earlyID+"*"))
		return len(left) == 0
	}), "the package of the withdrawn mark is removed")
}

// TestPreservationNothingLeftIsRefused: in Växjö a complaint marked after
// its 6-month redaction got an archive package with no content, and the
// API answered 200. Now the mark is refused with FailedPrecondition.
func TestPreservationNothingLeftIsRefused(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	local := randDigits(t, 7)
	e := startRouting(t, dataDir, vaxjoConfig(0))
	id, number := e.register(t, complaint("SEN"+local, personnummer(1977, 9, 9, 430, false), ""))
	e.waitRouted(t, number)
	require.NoError(t, e.k.Stop(t))

	e = startRouting(t, dataDir, vaxjoConfig(200))
	rt := retentionv1.NewRetentionServiceClient(e.conns[0])
	require.True(t, eventually(30*time.Second, func() bool {
		for _, ev := range e.events(t) {
			if ev.caseID() == id && ev.Type == "kontakt.case.v1.PersonalDataRedacted" {
				return true
			}
		}
		return false
	}), "the complaint is redacted at six months")
	ctx, cancel := e.as(t, sara)
	defer cancel()
	_, err := rt.MarkForPreservation(ctx, &retentionv1.MarkForPreservationRequest{CaseId: id, Reason: "klagomål av vikt"})
	t.Logf("mark after the 6-month redaction: %s: %s", status.Code(err), status.Convert(err).Message())
	requireStatus(t, err, codes.FailedPrecondition, "nothing is left to preserve")
}
