package e2e

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

// TestEdgeClientMistakesAre4xx sends each kind of client mistake that was
// answered as a server fault: JSON cut short, nested too deep, not UTF-8,
// a number out of range, a false gzip header, malformed case ids, and
// Open311 forms that are not UTF-8. Each gets 400 (InvalidArgument), the
// log shows it without an ERROR line and without repeating the input, and
// a form in a declared charset is taken.
func TestEdgeClientMistakesAre4xx(t *testing.T) {
	k := Start(t, Options{})
	form := k.Token(t, "e-tjanst-mistakes", "form-client")
	sup := k.Token(t, "sara", "supervisor")
	marker := "MRK" + strings.ToUpper(randHex(t, 6))
	client := edgeClient()

	const formJSON = `{"idempotencyKey":"mistake-0001","case":{"type":"CASE_TYPE_FRAGA","category":"bygglov","subject":"%s"}}`
	bodies := map[string]string{
		"JSON cut short":     `{"case":`,
		"nested too deep":    `{"idempotencyKey":"mistake-0001","case":{"subject":` + strings.Repeat(`[`, 50_000) + strings.Repeat(`]`, 50_000) + `}}`,
		"not UTF-8":          strings.Replace(formJSON, "%s", marker+"\xe5\xff", 1),
		"int64 out of range": `{"idempotencyKey":"mistake-0001","case":{"type":"CASE_TYPE_FRAGA","attachments":[{"sizeBytes":"` + strings.Repeat("9", 30) + `"}]}}`,
		"wrong type":         `{"idempotencyKey":{"` + marker + `":1},"case":[]}`,
	}
	paths := map[string][]string{
		"REST":    {"/v1/forms/cases"},
		"Connect": {"/kontakt.intake.v1.IntakeService/SubmitForm", "Connect-Protocol-Version", "1"},
	}
	for name, body := range bodies {
		for proto, p := range paths {
			t.Run(name+" over "+proto, func(t *testing.T) {
				h := edgeHeader(append([]string{"Content-Type", "application/json", "Authorization", "Bearer " + form}, p[1:]...)...)
				a := k.edgeDo(t, client, edgeCall{method: http.MethodPost, path: p[0], header: h, body: []byte(body)})
				require.Equal(t, http.StatusBadRequest, a.status, "%s", a.body)
				require.NotContains(t, string(a.body), marker)
			})
		}
	}
	t.Run("false gzip header", func(t *testing.T) {
		for proto, p := range paths {
			h := edgeHeader(append([]string{"Content-Type", "application/json", "Content-Encoding", "gzip", "Authorization", "Bearer " + form}, p[1:]...)...)
			a := k.edgeDo(t, client, edgeCall{method: http.MethodPost, path: p[0], header: h, body: []byte(strings.Replace(formJSON, "%s", marker, 1))})
			require.Equal(t, http.StatusBadRequest, a.status, "%s: %s", proto, a.body)
		}
		h := edgeHeader("Content-Type", "application/x-www-form-urlencoded", "Content-Encoding", "gzip")
		a := k.edgeDo(t, client, edgeCall{method: http.MethodPost, path: "/open311/v2/requests.json", header: h, body: []byte("api_key=" + form)})
		require.Equal(t, http.StatusBadRequest, a.status, "Open311: %s", a.body)
	})

	t.Run("malformed case ids", func(t *testing.T) {
		ids := []string{marker + "'x", marker + ".x", marker + " x", strings.Repeat("a", 40) + marker, marker + "å"}
		for _, id := range ids {
			get := k.edgeDo(t, client, edgeCall{method: http.MethodGet, path: "/v1/cases/" + url.PathEscape(id) + "?purpose=test",
				header: edgeHeader("Authorization", "Bearer "+sup)})
			require.Equal(t, http.StatusBadRequest, get.status, "GET %q: %s", id, get.body)
			require.Contains(t, string(get.body), `"caseId"`, "the answer names the field, in JSON by its JSON name")
			claim := k.edgeDo(t, client, edgeCall{method: http.MethodPost, path: "/v1/cases/" + url.PathEscape(id) + ":claim",
				header: edgeHeader("Authorization", "Bearer "+sup, "Content-Type", "application/json"), body: []byte(`{}`)})
			require.Equal(t, http.StatusBadRequest, claim.status, "claim %q: %s", id, claim.body)
			connect := k.edgeDo(t, client, edgeCall{method: http.MethodPost, path: "/kontakt.routing.v1.RoutingService/ClaimCase",
				header: edgeHeader("Authorization", "Bearer "+sup, "Content-Type", "application/json", "Connect-Protocol-Version", "1"),
				body:   []byte(`{"caseId":"` + strings.ReplaceAll(id, `"`, ``) + `"}`)})
			require.Equal(t, http.StatusBadRequest, connect.status, "Connect %q: %s", id, connect.body)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+sup)
			_, err := routingv1.NewRoutingServiceClient(k.Dial(t)).ClaimCase(ctx, &routingv1.ClaimCaseRequest{CaseId: id})
			cancel()
			require.Equal(t, codes.InvalidArgument, status.Code(err), "gRPC %q: %v", id, err)
		}
		bad := k.edgeDo(t, client, edgeCall{method: http.MethodGet, path: "/v1/cases/%FF" + marker + "?purpose=test",
			header: edgeHeader("Authorization", "Bearer "+sup)})
		require.Equal(t, http.StatusBadRequest, bad.status, "%s", bad.body)
	})

	t.Run("Open311 forms that are not UTF-8", func(t *testing.T) {
		post := func(contentType, description string) edgeAnswer {
			body := "api_key=" + url.QueryEscape(form) + "&service_code=gatubelysning&lat=57.6554&long=12.0138&description=" + description
			return k.edgeDo(t, client, edgeCall{method: http.MethodPost, path: "/open311/v2/requests.json",
				header: edgeHeader("Content-Type", contentType), body: []byte(body)})
		}
		a := post("application/x-www-form-urlencoded", "L%E5mpan+"+marker)
		require.Equal(t, http.StatusBadRequest, a.status, "undeclared Latin-1: %s", a.body)
		require.Contains(t, string(a.body), "description")
		a = post("application/x-www-form-urlencoded; charset=x-no-such-charset", "L%E5mpan")
		require.Equal(t, http.StatusBadRequest, a.status, "an unknown charset is bad input: %s", a.body)
		for _, cs := range []string{"ISO-8859-1", "windows-1252"} {
			a = post("application/x-www-form-urlencoded; charset="+cs, "L%E5mpan+vid+"+cs+"+lyser+inte")
			require.Equal(t, http.StatusCreated, a.status, "declared %s is decoded: %s", cs, a.body)
		}
	})

	k.edgeRequireHealthy(t)
	log := k.stderr.String()
	require.Empty(t, edgeErrorLines(log), "client mistakes are not server faults")
	require.NotContains(t, log, marker, "the log never repeats the input")
	require.Contains(t, log, "request refused before reaching a handler", "refusals are logged")
}
