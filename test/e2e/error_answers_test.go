package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
)

// TestOpen311AnswersAsRESTDoes: Open311 answers a failure through
// intake's one error table and the one code-to-HTTP mapping, so an
// Open311 report that reuses its Idempotency-Key for another report gets
// what a form that reuses its idempotencyKey gets over REST: HTTP 400
// (FailedPrecondition: the key is taken, sending it again cannot succeed)
// with the same words, and the key still stands for the first report.
// Open311 used to keep a table of its own and answered 409. A case that
// is no public service request and a number never given out get one and
// the same answer.
func TestOpen311AnswersAsRESTDoes(t *testing.T) {
	k := Start(t, Options{})
	e := &intakeEnv{k: k, conns: []*grpc.ClientConn{k.Dial(t)}}
	form := e.k.Token(t, "e-tjanst-o311-idem", "form-client")
	other := e.k.Token(t, "e-tjanst-o311-other", "form-client")
	report := func(description string) url.Values {
		return url.Values{"api_key": {form}, "service_code": {"gatubelysning"}, "address_string": {"Stora torget 1"}, "description": {description}}
	}
	key := http.Header{"Idempotency-Key": {"o311-" + randHex(t, 6)}}

	number := func(body []byte) string {
		t.Helper()
		var created []struct {
			ServiceRequestID string `json:"service_request_id"`
		}
		require.NoError(t, json.Unmarshal(body, &created), string(body))
		require.Len(t, created, 1, string(body))
		return created[0].ServiceRequestID
	}
	code, body := e.open311PostWith(t, key, report("Lampan vid torget är släckt."))
	require.Equal(t, http.StatusCreated, code, string(body))
	first := number(body)
	code, body = e.open311PostWith(t, key, report("Lampan vid torget är släckt."))
	require.Equal(t, http.StatusCreated, code, "a retry: %s", body)
	require.Equal(t, first, number(body), "a retry is the same report")

	// The same mistake over REST, for comparison.
	restKey := "rest-" + randHex(t, 6)
	payload := func(description string) *intakev1.SubmitFormRequest {
		return &intakev1.SubmitFormRequest{IdempotencyKey: restKey, Case: &intakev1.CaseInput{
			Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Category: "park-och-lek", Description: description,
		}}
	}
	feedback := e.submit(t, overREST, 0, form, payload("Gungan är trasig."))
	require.Equal(t, codes.OK, feedback.Code)
	rest := e.submit(t, overREST, 0, form, payload("Rutschkanan är också trasig."))
	require.Equal(t, codes.FailedPrecondition, rest.Code, rest.Message)
	require.Equal(t, http.StatusBadRequest, rest.HTTPStatus, string(rest.Body))

	code, body = e.open311PostWith(t, key, report("Och lampan vid skolan också."))
	var refused []struct {
		Code        int    `json:"code"`
		Description string `json:"description"`
	}
	require.NoError(t, json.Unmarshal(body, &refused), string(body))
	require.Len(t, refused, 1, string(body))
	require.Equal(t, rest.HTTPStatus, code, "Open311 and REST answer a reused key alike: %s", body)
	require.Equal(t, code, refused[0].Code, "GeoReport's code is the HTTP status")
	require.Equal(t, rest.Message, refused[0].Description, "the same words as REST")
	code, body = e.open311PostWith(t, key, report("Lampan vid torget är släckt."))
	require.Equal(t, http.StatusCreated, code, "the first report again: %s", body)
	require.Equal(t, first, number(body), "the refusal left the key with the first report")

	// Reading needs no api_key (GeoReport's rule): any fault report of a
	// service may be read. A case that is no fault report (this feedback)
	// and a number never given out get one answer, so nobody can tell
	// which other numbers exist.
	code, body = e.open311Get(t, other, first)
	require.Equal(t, http.StatusOK, code, string(body))
	notPublic, notPublicBody := e.open311Get(t, other, feedback.CaseNumber)
	never, neverBody := e.open311Get(t, other, first[:len(first)-6]+"999999")
	require.Equal(t, http.StatusNotFound, notPublic, string(notPublicBody))
	require.Equal(t, notPublic, never)
	require.Equal(t, string(notPublicBody), string(neverBody))
}
