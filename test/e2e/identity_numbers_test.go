package e2e

// Identity numbers as Skatteverket writes them (issue 14, point 5),
// against the real binary with Skatteverket's published test numbers
// (pkg/identity/testdata/skatteverket): the '+' of the ten-digit form
// marks the calendar year of the hundredth birthday, a twelve-digit
// number may carry a '+' that agrees, samordningsnummer may have month 00
// or day field 60, birth number 000 and births more than 130 years back
// are refused, and blanks around a number are trimmed by every RPC that
// takes one, over gRPC and REST.

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

// skvNumbers reads one of Skatteverket's published lists of test numbers
// (twelve digits each) from the identity package's test data.
func skvNumbers(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "pkg", "identity", "testdata", "skatteverket", name))
	require.NoError(t, err)
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(name, ".gz") {
		gz, err := gzip.NewReader(f)
		require.NoError(t, err)
		defer gz.Close()
		r = gz
	}
	var out []string
	require.NoError(t, json.NewDecoder(r).Decode(&out))
	require.NotEmpty(t, out)
	return out
}

// skvPick returns the first n numbers of list that ok accepts.
func skvPick(list []string, n int, ok func(year, month, day int) bool) []string {
	var out []string
	for _, s := range list {
		y, _ := strconv.Atoi(s[0:4])
		m, _ := strconv.Atoi(s[4:6])
		d, _ := strconv.Atoi(s[6:8])
		if ok(y, m, d) {
			out = append(out, s)
			if len(out) == n {
				break
			}
		}
	}
	return out
}

// Notations of a twelve-digit number YYYYMMDDNNNC.
func longDash(n string) string { return n[:8] + "-" + n[8:] }
func longPlus(n string) string { return n[:8] + "+" + n[8:] }
func shortPlus(n string) string {
	return n[2:8] + "+" + n[8:]
}
func shortDash(n string) string { return n[2:8] + "-" + n[8:] }

// restPost posts req as JSON to path with token and decodes a 200 answer
// into resp; it returns the status and, for an error, the violated
// fields and the raw body.
func restPost(t *testing.T, k *Kontakt, token, path string, req, resp proto.Message) (int, []string, string) {
	t.Helper()
	body, err := protojson.Marshal(req)
	require.NoError(t, err)
	hreq, err := http.NewRequest(http.MethodPost, "http://"+k.Addr+path, bytes.NewReader(body))
	require.NoError(t, err)
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Timeout: 30 * time.Second}
	hresp, err := client.Do(hreq)
	require.NoError(t, err)
	defer hresp.Body.Close()
	b, err := io.ReadAll(hresp.Body)
	require.NoError(t, err)
	if hresp.StatusCode != http.StatusOK {
		var st struct {
			Details []struct {
				FieldViolations []violation `json:"fieldViolations"`
			} `json:"details"`
		}
		_ = json.Unmarshal(b, &st)
		var fields []string
		for _, d := range st.Details {
			for _, v := range d.FieldViolations {
				fields = append(fields, v.Field)
			}
		}
		return hresp.StatusCode, fields, string(b)
	}
	require.NoError(t, protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, resp), "REST body: %s", b)
	return hresp.StatusCode, nil, string(b)
}

// TestIdentityNumbersAsSkatteverketWritesThem registers, finds, extracts
// and erases cases by Skatteverket's test numbers in the notations
// Skatteverket and citizens use.
func TestIdentityNumbersAsSkatteverketWritesThem(t *testing.T) {
	pins := skvNumbers(t, "allPins.json.gz")
	coords := skvNumbers(t, "allCoords.json")
	loc, err := time.LoadLocation("Europe/Stockholm")
	require.NoError(t, err)
	year, month, day := time.Now().In(loc).Date()

	// People who turn 100 this year: Skatteverket writes their ten-digit
	// number with '+' from 1 January. Those whose birthday is still to
	// come are the ones a birthday-based reading puts a century too early,
	// so they come first.
	centenarians := skvPick(pins, 5, func(y, m, d int) bool {
		return y == year-100 && (m > int(month) || m == int(month) && d > day)
	})
	if len(centenarians) == 0 {
		t.Logf("no test number born in %d after %s: the '+' cases cannot show a birthday-based reading", year-100, time.Now().In(loc).Format("01-02"))
	}
	centenarians = append(centenarians, skvPick(pins, 5-len(centenarians), func(y, m, d int) bool {
		return y == year-100 && !(m > int(month) || m == int(month) && d > day)
	})...)
	require.Len(t, centenarians, 5, "Skatteverket's list has people born in %d", year-100)
	tooOld := skvPick(pins, 1, func(y, _, _ int) bool { return y < year-131 })
	require.Len(t, tooOld, 1, "Skatteverket's list has people born before %d", year-131)
	// Samordningsnummer whose month or day Skatteverket did not know,
	// young enough for the '-' form.
	monthUnknown := skvPick(coords, 1, func(y, m, _ int) bool { return m == 0 && y > year-100 && y < year })
	dayUnknown := skvPick(coords, 1, func(y, m, d int) bool { return m != 0 && d == 60 && y > year-100 && y < year })
	require.Len(t, monthUnknown, 1)
	require.Len(t, dayUnknown, 1)
	t.Logf("numbers from Skatteverket's test lists: %v, too old %v, samordningsnummer %v %v", centenarians, tooOld, monthUnknown, dayUnknown)

	// The test needs no view of the store, so it does not open the
	// embedded NATS port: the same test runs against older binaries.
	k := Start(t, Options{ExtraConfig: routingQueues + retConfig(0)})
	ie := &intakeEnv{k: k, conns: []*grpc.ClientConn{k.Dial(t)}}
	ic := intakev1.NewIntakeServiceClient(ie.conns[0])
	rc := routingv1.NewRoutingServiceClient(ie.conns[0])
	rt := retentionv1.NewRetentionServiceClient(ie.conns[0])
	agent := k.Token(t, anna.subject, anna.roles...)
	dpo := k.Token(t, dina.subject, dina.roles...)
	form := k.Token(t, "e-tjanst", "form-client")

	// extract is the register extract by one notation, waited for until
	// it holds want cases.
	extract := func(t *testing.T, number string, want int) []*retentionv1.SubjectCase {
		t.Helper()
		var got []*retentionv1.SubjectCase
		var lastErr error
		ok := eventually(10*time.Second, func() bool {
			ctx, cancel := withToken(dpo)
			defer cancel()
			resp, err := rt.SubjectAccess(ctx, &retentionv1.SubjectAccessRequest{
				Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: number}}, Purpose: "registerutdrag",
			})
			lastErr = err
			got = resp.GetCases()
			return err == nil && len(got) == want
		})
		require.True(t, ok, "the register extract by %q holds %d cases within 10 s, want %d (last error: %v)", number, len(got), want, lastErr)
		return got
	}
	// findByIdentity is FindCases by one notation as an agent, waited
	// for until the routing read model holds want cases.
	findByIdentity := func(t *testing.T, number string, want int) []*routingv1.CaseSummary {
		t.Helper()
		var got []*routingv1.CaseSummary
		var lastErr error
		ok := eventually(10*time.Second, func() bool {
			ctx, cancel := withToken(agent)
			defer cancel()
			resp, err := rc.FindCases(ctx, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_IdentityNumber{IdentityNumber: number}})
			lastErr = err
			got = resp.GetCases()
			return err == nil && len(got) == want
		})
		require.True(t, ok, "FindCases by %q finds %d cases within 10 s, want %d (last error: %v)", number, len(got), want, lastErr)
		return got
	}
	register := func(t *testing.T, number string) (string, string) {
		t.Helper()
		ctx, cancel := withToken(agent)
		defer cancel()
		resp, err := ic.RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: fragaInput("Identitet "+randDigits(t, 6), &intakev1.Contact{Name: "Test Testsson", Phone: "070" + randDigits(t, 7), IdentityNumber: number})})
		require.NoError(t, err, "RegisterCase with %q", number)
		return resp.GetCaseId(), resp.GetCaseNumber()
	}
	// requireRefused checks an InvalidArgument that names field alone,
	// with reason in its description.
	requireRefused := func(t *testing.T, err error, field, reason string) {
		t.Helper()
		requireStatus(t, err, codes.InvalidArgument)
		var got []violation
		for _, d := range status.Convert(err).Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				got = append(got, fromBadRequest(br)...)
			}
		}
		require.Len(t, got, 1, "%v", got)
		require.Equal(t, field, got[0].Field)
		require.Contains(t, got[0].Description, reason)
	}

	t.Run("plus from the year of the hundredth birthday", func(t *testing.T) {
		n := centenarians[0]
		id, number := register(t, shortPlus(n))
		cases := extract(t, longDash(n), 1)
		require.Equal(t, id, cases[0].GetCaseId())
		require.Equal(t, n, cases[0].GetIdentity().GetNumber(), "stored as twelve digits of the right century")
		require.Equal(t, id, extract(t, shortPlus(n), 1)[0].GetCaseId())

		found := findByIdentity(t, longDash(n), 1)
		require.Equal(t, number, found[0].GetCaseNumber())

		dctx, dcancel := withToken(dpo)
		defer dcancel()
		erased, err := rt.EraseSubject(dctx, &retentionv1.EraseSubjectRequest{
			Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: longDash(n)}}, Reason: "begäran om radering",
		})
		require.NoError(t, err)
		require.Len(t, erased.GetOutcomes(), 1)
		require.Equal(t, number, erased.GetOutcomes()[0].GetCaseNumber())
		require.True(t, erased.GetOutcomes()[0].GetErased(), "%v", erased.GetOutcomes()[0])
		extract(t, shortPlus(n), 0)
	})

	t.Run("twelve digits with a plus that agrees", func(t *testing.T) {
		n := centenarians[1]
		a := ie.register(t, overREST, agent, &intakev1.RegisterCaseRequest{Case: fragaInput("Tolv siffror", &intakev1.Contact{Phone: "0701234567", IdentityNumber: longPlus(n)})})
		require.Equal(t, codes.OK, a.Code, "%s: %s", a.Message, a.Body)
		cases := extract(t, shortPlus(n), 1)
		require.Equal(t, a.CaseID, cases[0].GetCaseId())
		require.Equal(t, n, cases[0].GetIdentity().GetNumber())

		// A plus on someone who turns 100 after this year contradicts the
		// century the number states.
		young := skvPick(pins, 1, func(y, _, _ int) bool { return y > year-99 && y < year-18 })
		require.Len(t, young, 1)
		ctx, cancel := withToken(agent)
		defer cancel()
		_, err := ic.RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: fragaInput("Fel plus", &intakev1.Contact{Phone: "0701234567", IdentityNumber: longPlus(young[0])})})
		requireRefused(t, err, "case.contact.identity_number", "plus sign")
	})

	t.Run("samordningsnummer with month 00 or day 60", func(t *testing.T) {
		for _, n := range []string{monthUnknown[0], dayUnknown[0]} {
			id, _ := register(t, longDash(n))
			cases := extract(t, shortDash(n), 1)
			require.Equal(t, id, cases[0].GetCaseId())
			require.Equal(t, n, cases[0].GetIdentity().GetNumber())
			require.True(t, cases[0].GetIdentity().GetCoordinationNumber())
		}
	})

	t.Run("birth number 000 is refused", func(t *testing.T) {
		// The personnummer project's list.json: 20150916-0006 has a
		// correct check digit and birth number 000, which Skatteverket
		// never issues.
		const zero = "20150916-0006"
		ctx, cancel := withToken(agent)
		defer cancel()
		_, err := ic.RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: fragaInput("Noll", &intakev1.Contact{Phone: "0701234567", IdentityNumber: zero})})
		requireRefused(t, err, "case.contact.identity_number", "birth number zero")
		require.NotContains(t, err.Error(), "0916", "the error repeats the number")

		a := ie.register(t, overREST, agent, &intakev1.RegisterCaseRequest{Case: fragaInput("Noll", &intakev1.Contact{Phone: "0701234567", IdentityNumber: zero})})
		require.Equal(t, http.StatusBadRequest, a.HTTPStatus, "%s", a.Body)
		require.Equal(t, []string{"case.contact.identityNumber"}, a.fields(), "REST names the field in JSON")
		require.NotContains(t, string(a.Body), "0916")

		dctx, dcancel := withToken(dpo)
		defer dcancel()
		_, err = rt.SubjectAccess(dctx, &retentionv1.SubjectAccessRequest{Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: zero}}})
		requireRefused(t, err, "subject.identity_number", "personnummer")
	})

	t.Run("born more than 130 years ago is refused", func(t *testing.T) {
		n := tooOld[0]
		ctx, cancel := withToken(agent)
		defer cancel()
		for _, in := range []string{longDash(n), shortPlus(n)} {
			_, err := ic.RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: fragaInput("Gammal", &intakev1.Contact{Phone: "0701234567", IdentityNumber: in})})
			requireRefused(t, err, "case.contact.identity_number", "hundred and thirty years")
			require.NotContains(t, err.Error(), n[2:8])
		}
		dctx, dcancel := withToken(dpo)
		defer dcancel()
		_, err := rt.SubjectAccess(dctx, &retentionv1.SubjectAccessRequest{Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: longDash(n)}}})
		requireRefused(t, err, "subject.identity_number", "personnummer")
	})

	t.Run("blanks around the number, every RPC, gRPC and REST", func(t *testing.T) {
		n := centenarians[2]
		padded := " " + longDash(n) + " "
		pastedPlus := "\u00a0" + shortPlus(n) + "\u200b "

		// RegisterCase over gRPC and REST, SubmitForm over REST.
		id1, _ := register(t, padded)
		a := ie.register(t, overREST, agent, &intakev1.RegisterCaseRequest{Case: fragaInput("Blanksteg REST", &intakev1.Contact{Phone: "0701234567", IdentityNumber: padded})})
		require.Equal(t, codes.OK, a.Code, "RegisterCase over REST: %s %s", a.Message, a.Body)
		f := ie.submit(t, overREST, 0, form, &intakev1.SubmitFormRequest{IdempotencyKey: "pnr-" + randHex(t, 8), Case: &intakev1.CaseInput{
			Type: casev1.CaseType_CASE_TYPE_FRAGA, Category: "avfall", Description: "Fråga från e-tjänst.",
			Contact: &intakev1.Contact{Email: "test@example.se", IdentityNumber: pastedPlus},
		}})
		require.Equal(t, codes.OK, f.Code, "SubmitForm over REST: %s %s", f.Message, f.Body)
		f2 := ie.submit(t, overGRPC, 0, form, &intakev1.SubmitFormRequest{IdempotencyKey: "pnr-" + randHex(t, 8), Case: &intakev1.CaseInput{
			Type: casev1.CaseType_CASE_TYPE_FRAGA, Category: "avfall", Description: "Fråga från e-tjänst.",
			Contact: &intakev1.Contact{Email: "test@example.se", IdentityNumber: padded},
		}})
		require.Equal(t, codes.OK, f2.Code, "SubmitForm over gRPC: %s", f2.Message)

		// SubjectAccess over gRPC and REST.
		cases := extract(t, padded, 4)
		ids := map[string]bool{}
		for _, c := range cases {
			require.Equal(t, n, c.GetIdentity().GetNumber())
			ids[c.GetCaseId()] = true
		}
		require.True(t, ids[id1] && ids[a.CaseID], "%v", ids)
		var sa retentionv1.SubjectAccessResponse
		code, fields, body := restPost(t, k, dpo, "/v1/subjects:access", &retentionv1.SubjectAccessRequest{
			Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: pastedPlus}}, Purpose: "registerutdrag",
		}, &sa)
		require.Equal(t, http.StatusOK, code, "SubjectAccess over REST: %v %s", fields, body)
		require.Len(t, sa.GetCases(), 4)

		// FindCases and ListAuditTrail over gRPC and REST.
		findByIdentity(t, padded, 4)
		var fr routingv1.FindCasesResponse
		code, fields, body = restPost(t, k, agent, "/v1/cases:find", &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_IdentityNumber{IdentityNumber: pastedPlus}}, &fr)
		require.Equal(t, http.StatusOK, code, "FindCases over REST: %v %s", fields, body)
		require.Len(t, fr.GetCases(), 4)

		dctx, dcancel := withToken(dpo)
		defer dcancel()
		trail, err := rc.ListAuditTrail(dctx, &routingv1.ListAuditTrailRequest{Subject: &routingv1.ListAuditTrailRequest_IdentityNumber{IdentityNumber: padded}})
		require.NoError(t, err, "ListAuditTrail over gRPC")
		require.NotEmpty(t, trail.GetRecords(), "the searches by the number are in the person's trail")
		var tr routingv1.ListAuditTrailResponse
		code, fields, body = restPost(t, k, dpo, "/v1/audit:list", &routingv1.ListAuditTrailRequest{Subject: &routingv1.ListAuditTrailRequest_IdentityNumber{IdentityNumber: pastedPlus}}, &tr)
		require.Equal(t, http.StatusOK, code, "ListAuditTrail over REST: %v %s", fields, body)
		require.GreaterOrEqual(t, len(tr.GetRecords()), len(trail.GetRecords()))

		// Rectify over gRPC and REST: two cases registered with another
		// number get this person's number, written with blanks.
		m := centenarians[3]
		r1, _ := register(t, longDash(centenarians[4]))
		r2, _ := register(t, longDash(centenarians[4]))
		extract(t, longDash(centenarians[4]), 2)
		_, err = rt.Rectify(dctx, &retentionv1.RectifyRequest{CaseId: r1, Value: &retentionv1.RectifyRequest_Identity{Identity: &casev1.IdentityNumber{Number: " " + shortPlus(m) + " "}}, Reason: "fel personnummer"})
		require.NoError(t, err, "Rectify over gRPC")
		code, fields, body = restPost(t, k, dpo, "/v1/cases/"+r2+":rectify", &retentionv1.RectifyRequest{Value: &retentionv1.RectifyRequest_Identity{Identity: &casev1.IdentityNumber{Number: "\u00a0" + longDash(m) + "\u00a0"}}, Reason: "fel personnummer"}, &retentionv1.RectifyResponse{})
		require.Equal(t, http.StatusOK, code, "Rectify over REST: %v %s", fields, body)
		rectified := extract(t, longDash(m), 2)
		for _, c := range rectified {
			require.Equal(t, m, c.GetIdentity().GetNumber(), "rectified to the right century")
		}
		extract(t, longDash(centenarians[4]), 0)

		// EraseSubject over REST and gRPC.
		var er retentionv1.EraseSubjectResponse
		code, fields, body = restPost(t, k, dpo, "/v1/subjects:erase", &retentionv1.EraseSubjectRequest{
			Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: pastedPlus}}, Reason: "begäran om radering",
		}, &er)
		require.Equal(t, http.StatusOK, code, "EraseSubject over REST: %v %s", fields, body)
		require.Len(t, er.GetOutcomes(), 4)
		for _, o := range er.GetOutcomes() {
			require.True(t, o.GetErased(), "%v", o)
		}
		erased, err := rt.EraseSubject(dctx, &retentionv1.EraseSubjectRequest{
			Subject: &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: " " + shortPlus(m) + "\t"}}, Reason: "begäran om radering",
		})
		require.NoError(t, err, "EraseSubject over gRPC")
		require.Len(t, erased.GetOutcomes(), 2)
		extract(t, padded, 0)
		extract(t, longDash(m), 0)
	})

	t.Run("a number that is not one stays refused with blanks", func(t *testing.T) {
		ctx, cancel := withToken(agent)
		defer cancel()
		bad := fmt.Sprintf("  %s-%s  ", centenarians[0][:8], "0000")
		_, err := ic.RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: fragaInput("Fel", &intakev1.Contact{Phone: "0701234567", IdentityNumber: bad})})
		requireRefused(t, err, "case.contact.identity_number", "personnummer")
		_, err = rc.FindCases(ctx, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_IdentityNumber{IdentityNumber: "   "}})
		requireStatus(t, err, codes.InvalidArgument, "identity number")
		_, err = rc.FindCases(ctx, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_IdentityNumber{IdentityNumber: bad}})
		requireStatus(t, err, codes.InvalidArgument, "identity number", "birth number zero is never issued")
		require.NotContains(t, err.Error(), centenarians[0][2:8])
	})
}
