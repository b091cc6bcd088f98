package e2e

// What an operator reads (issue 17): every log line of a request names
// the request and its caller, on every protocol, and refusals are logged
// at one level without the input; the domain metrics a contact centre
// watches move as cases are registered, answered, refused and overdue.

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

// logLine is one JSON log line, decoded.
type logLine map[string]any

// jsonLogLines decodes the binary's JSON log.
func jsonLogLines(t *testing.T, k *Kontakt) []logLine {
	t.Helper()
	var out []logLine
	for line := range strings.SplitSeq(strings.TrimSpace(k.stderr.String()), "\n") {
		var l logLine
		require.NoError(t, json.Unmarshal([]byte(line), &l), line)
		out = append(out, l)
	}
	return out
}

// httpWithID sends one HTTP request with a request id and a bearer token,
// and any further headers as name, value pairs, and returns the status
// and the request id the server answered with.
func httpWithID(t *testing.T, method, target, contentType, body, token, id string, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("X-Request-Id", id)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Request-Id")
}

func TestEveryLogLineOfARequestNamesTheRequestAndItsCaller(t *testing.T) {
	k := Start(t, Options{ExtraConfig: "log: {format: json, level: debug}\n"})
	agent := k.Token(t, "agent-4711", "agent")
	form := k.Token(t, "eservice-42", "form-client")
	analyst := k.Token(t, "analyst-9", "analyst")
	// What the refused requests send; it must never reach the log.
	const marker = "Personnummer19121212-1212"

	type request struct {
		subject string
		// refused: the call's line is a refusal at the policy's level.
		refused bool
	}
	want := map[string]request{}

	// Native gRPC, accepted.
	conn := k.Dial(t)
	intake := intakev1.NewIntakeServiceClient(conn)
	const grpcID = "0f8b2c1e-5a4d-4c3b-9e2f-7a6b5c4d3e01"
	ctx, cancel := withToken(agent)
	defer cancel()
	var header metadata.MD
	_, err := intake.RegisterCase(metadata.AppendToOutgoingContext(ctx, "x-request-id", grpcID),
		&intakev1.RegisterCaseRequest{Case: crashCaseInput(1)}, grpc.Header(&header))
	require.NoError(t, err)
	require.Equal(t, []string{grpcID}, header.Get("x-request-id"), "the id comes back as header metadata")
	want[grpcID] = request{subject: "agent-4711"}

	// Native gRPC, refused: an analyst may not register cases.
	const deniedID = "0f8b2c1e-5a4d-4c3b-9e2f-7a6b5c4d3e02"
	actx, acancel := withToken(analyst)
	defer acancel()
	in := crashCaseInput(2)
	in.Description = marker
	_, err = intake.RegisterCase(metadata.AppendToOutgoingContext(actx, "x-request-id", deniedID), &intakev1.RegisterCaseRequest{Case: in})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	want[deniedID] = request{subject: "analyst-9", refused: true}

	// REST, accepted.
	const restID = "0f8b2c1e-5a4d-4c3b-9e2f-7a6b5c4d3e03"
	code, got := httpWithID(t, http.MethodGet, "http://"+k.Addr+"/v1/queues", "", "", agent, restID)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, restID, got)
	want[restID] = request{subject: "agent-4711"}

	// REST, refused: an e-mail address that is none.
	const badRESTID = "0f8b2c1e-5a4d-4c3b-9e2f-7a6b5c4d3e04"
	body := `{"case":{"type":"CASE_TYPE_FRAGA","channel":"CHANNEL_EMAIL","description":"x","contact":{"email":"` + marker + `"}}}`
	code, got = httpWithID(t, http.MethodPost, "http://"+k.Addr+"/v1/cases", "application/json", body, agent, badRESTID)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, badRESTID, got)
	want[badRESTID] = request{subject: "agent-4711", refused: true}

	// Connect, accepted.
	const connectID = "0f8b2c1e-5a4d-4c3b-9e2f-7a6b5c4d3e05"
	code, got = httpWithID(t, http.MethodPost, "http://"+k.Addr+"/kontakt.routing.v1.RoutingService/ListQueues", "application/json", "{}", agent, connectID, "Connect-Protocol-Version", "1")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, connectID, got)
	want[connectID] = request{subject: "agent-4711"}

	// gRPC-web (JSON messages in gRPC-web frames), accepted.
	const grpcWebID = "0f8b2c1e-5a4d-4c3b-9e2f-7a6b5c4d3e07"
	code, got = httpWithID(t, http.MethodPost, "http://"+k.Addr+"/kontakt.routing.v1.RoutingService/ListQueues",
		"application/grpc-web+json", "\x00\x00\x00\x00\x02{}", agent, grpcWebID, "X-Grpc-Web", "1")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, grpcWebID, got)
	want[grpcWebID] = request{subject: "agent-4711"}

	// An e-service form over REST, accepted.
	const formID = "0f8b2c1e-5a4d-4c3b-9e2f-7a6b5c4d3e08"
	formBody := `{"idempotencyKey":"logs-e2e-0001","case":{"type":"CASE_TYPE_FRAGA","channel":"CHANNEL_FORM","category":"avfall",` +
		`"description":"Invånaren undrar när sophämtningen kommer.","contact":{"email":"invanare@example.se"}}}`
	code, got = httpWithID(t, http.MethodPost, "http://"+k.Addr+"/v1/forms/cases", "application/json", formBody, form, formID)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, formID, got)
	want[formID] = request{subject: "eservice-42"}

	// Open311, refused: no service_code.
	const o311ID = "0f8b2c1e-5a4d-4c3b-9e2f-7a6b5c4d3e06"
	post := url.Values{"api_key": {form}, "description": {marker}, "lat": {"57.65"}, "long": {"12.01"}}
	code, got = httpWithID(t, http.MethodPost, "http://"+k.Addr+"/open311/v2/requests.json", "application/x-www-form-urlencoded", post.Encode(), "", o311ID)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, o311ID, got)
	want[o311ID] = request{subject: "eservice-42", refused: true}

	// An id that could carry personal data is replaced, and not logged.
	code, got = httpWithID(t, http.MethodGet, "http://"+k.Addr+"/v1/queues", "", "", agent, "19121212-1212")
	require.Equal(t, http.StatusOK, code)
	require.Regexp(t, `^[0-9a-f]{32}$`, got)
	want[got] = request{subject: "agent-4711"}

	require.NoError(t, k.Stop(t))
	lines := jsonLogLines(t, k)
	require.NotContains(t, k.stderr.String(), marker, "a refusal is logged without the input")
	require.NotContains(t, k.stderr.String(), "19121212-1212", "an unsafe request id is not logged")
	for id, w := range want {
		var mine []logLine
		for _, l := range lines {
			if l["request_id"] == id {
				mine = append(mine, l)
			}
		}
		// Before: no line carried a request id.
		require.NotEmpty(t, mine, "lines of request %s", id)
		levels := map[any]int{}
		for _, l := range mine {
			require.Equal(t, w.subject, l["subject"], "every line of request %s names its caller: %v", id, l)
			levels[l["level"]]++
		}
		last := mine[len(mine)-1]
		if w.refused {
			// The one level policy: a refusal is a warning, never an
			// error. Before: INFO for some codes and WARN for others.
			require.Equal(t, "WARN", last["level"], "request %s: %v", id, mine)
		} else {
			require.Equal(t, "INFO", last["level"], "request %s: %v", id, mine)
		}
		require.Zero(t, levels["ERROR"], "request %s: %v", id, mine)
	}
}

// metricValue returns the value of one series in a /metrics answer (the
// series as Prometheus writes it, labels in name order), and whether it
// is there.
func metricValue(body, series string) (float64, bool) {
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// requireMetric polls /metrics until the series has the value want says.
func requireMetric(t *testing.T, k *Kontakt, series string, want func(float64) bool, what string) float64 {
	t.Helper()
	var got float64
	var found bool
	require.Eventually(t, func() bool {
		_, body := getMetricsPath(t, k, "/metrics")
		got, found = metricValue(body, series)
		return found && want(got)
	}, 30*time.Second, 100*time.Millisecond, "%s: %s is %v (exported: %v)", what, series, got, found)
	return got
}

func equals(n float64) func(float64) bool { return func(v float64) bool { return v == n } }
func positive(v float64) bool             { return v > 0 }

// zeroDayPlan is Mölndal's plan with personal data redacted at
// registration: every case is past a retention deadline as soon as it is
// registered, until the sweeper's next pass.
const zeroDayPlan = `name: Test, personal data at once
version: "1"
rules:
  - name: personuppgifter
    classes: [contact, identity, freetext, attachments, answer]
    period: 0d
    from: registration
    action: redact
  - name: arendet
    classes: [case]
    period: 2y
    from: registration
    action: delete
`

// TestDomainMetricsMoveWithTheWork drives the binary as a contact centre
// does and reads /metrics: the cases past due per queue, the time to
// first response, the retention sweeper's backlog and lag, audit-write
// failures, and public submissions by outcome.
func TestDomainMetricsMoveWithTheWork(t *testing.T) {
	planFile := filepath.Join(t.TempDir(), "plan.yaml")
	require.NoError(t, os.WriteFile(planFile, []byte(zeroDayPlan), 0o600))
	// The sweeper looks once at start and then every hour: what the
	// test registers stays past its deadline meanwhile.
	retention := "retention:\n  plan_file: " + planFile + "\n  sweep_interval: 1h\n"
	started := float64(time.Now().Unix())
	k := Start(t, Options{ExtraConfig: retention})
	sup := k.Token(t, "sara", "supervisor")
	form := k.Token(t, "eservice-42", "form-client")
	conn := k.Dial(t)
	intake := intakev1.NewIntakeServiceClient(conn)
	routing := routingv1.NewRoutingServiceClient(conn)
	ctx, cancel := withToken(sup)
	defer cancel()

	// Every series is there from the start.
	requireMetric(t, k, `kontakt_audit_write_failures_total`, equals(0), "no audit write failed")
	requireMetric(t, k, `kontakt_retention_overdue_cases`, equals(0), "nothing registered")
	requireMetric(t, k, `kontakt_retention_sweep_lag_seconds`, equals(0), "nothing overdue")
	requireMetric(t, k, `kontakt_retention_last_sweep_timestamp_seconds`, func(v float64) bool { return v >= started }, "the first pass at start")

	// Two cases, routed to one queue.
	var ids []string
	for i := range 2 {
		res, err := intake.RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: crashCaseInput(i)})
		require.NoError(t, err)
		ids = append(ids, res.GetCaseId())
	}
	var queue string
	require.Eventually(t, func() bool {
		_, body := getMetricsPath(t, k, "/metrics")
		m := regexp.MustCompile(`kontakt_queue_open_cases\{queue="([^"]+)"\} 2`).FindStringSubmatch(body)
		if m != nil {
			queue = m[1]
		}
		return m != nil
	}, 30*time.Second, 100*time.Millisecond, "both cases routed to one queue")
	inQueue := `{queue="` + queue + `"}`
	requireMetric(t, k, `kontakt_queue_past_due_cases`+inQueue, equals(0), "nothing is due yet")
	requireMetric(t, k, `kontakt_first_response_seconds_count`+inQueue, equals(0), "nobody answered yet")

	// One answered, twice: the first answer is the first response.
	for _, text := range []string{"Sophämtningen kommer på tisdag.", "Ett tillägg."} {
		_, err := routing.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: ids[0], Answer: text})
		require.NoError(t, err)
	}
	requireMetric(t, k, `kontakt_first_response_seconds_count`+inQueue, equals(1), "one first response")
	requireMetric(t, k, `kontakt_first_response_seconds_bucket{queue="`+queue+`",le="300"}`, equals(1), "answered within minutes")

	// Retention: both cases are past their 0-day deadline until the
	// next pass, and the lag grows.
	requireMetric(t, k, `kontakt_retention_overdue_cases`, equals(2), "registered cases past the plan's deadline")
	lag := requireMetric(t, k, `kontakt_retention_sweep_lag_seconds`, positive, "the earliest deadline not carried out")
	requireMetric(t, k, `kontakt_retention_sweep_lag_seconds`, func(v float64) bool { return v > lag }, "the lag grows while nothing sweeps")

	// Open311: a post without service_code, one accepted, the same again.
	sub := func(channel, outcome string) string {
		return `kontakt_intake_submissions_total{channel="` + channel + `",outcome="` + outcome + `"}`
	}
	bad := fixaMinGata(form)
	bad.Del("service_code")
	require.Equal(t, http.StatusBadRequest, fmsPost(t, k, bad).Status)
	require.Equal(t, http.StatusCreated, fmsPost(t, k, fixaMinGata(form)).Status)
	require.Equal(t, http.StatusCreated, fmsPost(t, k, fixaMinGata(form)).Status)
	noKey := fixaMinGata("")
	require.Equal(t, http.StatusForbidden, fmsPost(t, k, noKey).Status)
	requireMetric(t, k, sub("open311", "invalid"), equals(1), "the bad post")
	requireMetric(t, k, sub("open311", "accepted"), equals(1), "the good post")
	requireMetric(t, k, sub("open311", "replayed"), equals(1), "its repetition")
	requireMetric(t, k, sub("open311", "denied"), equals(1), "the post without api_key")

	// An e-service form: accepted, retried, sent without a credential,
	// and with a field that is not valid.
	fctx, fcancel := withToken(form)
	defer fcancel()
	submission := clusterForm(1)
	_, err := intake.SubmitForm(fctx, submission)
	require.NoError(t, err)
	_, err = intake.SubmitForm(fctx, submission)
	require.NoError(t, err)
	_, err = intake.SubmitForm(t.Context(), clusterForm(2))
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	invalid := clusterForm(3)
	invalid.Case.Contact.Email = "inte en adress"
	_, err = intake.SubmitForm(fctx, invalid)
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	requireMetric(t, k, sub("form", "accepted"), equals(1), "the form")
	requireMetric(t, k, sub("form", "replayed"), equals(1), "its retry")
	requireMetric(t, k, sub("form", "denied"), equals(1), "no credential")
	requireMetric(t, k, sub("form", "invalid"), equals(1), "a bad e-mail address")
	_, body := getMetricsPath(t, k, "/metrics")
	require.NotContains(t, body, "inte en adress", "no input in a label")
	require.NotContains(t, body, "eservice-42", "no caller in a label")

	// Three days later (the development clock), the open cases are past
	// their due time (a question's is two days) and the sweeper's first
	// pass carried out the retention deadlines.
	require.NoError(t, k.Stop(t))
	restarted := float64(time.Now().Unix())
	k = Start(t, Options{DataDir: k.DataDir, ExtraConfig: retention + "  dev_clock_offset: 72h\n"})
	// The two registered, and the two accepted submissions.
	total := 0.0
	require.Eventually(t, func() bool {
		_, body := getMetricsPath(t, k, "/metrics")
		total = 0
		for _, m := range regexp.MustCompile(`(?m)^kontakt_queue_past_due_cases\{queue="[^"]+"\} (\d+)$`).FindAllStringSubmatch(body, -1) {
			n, _ := strconv.ParseFloat(m[1], 64)
			total += n
		}
		return total == 4
	}, 30*time.Second, 100*time.Millisecond, "every open case past due, got %v", total)
	requireMetric(t, k, `kontakt_queue_past_due_cases`+inQueue, func(v float64) bool { return v >= 2 }, "both registered cases")
	requireMetric(t, k, `kontakt_retention_overdue_cases`, equals(0), "the pass at start redacted them")
	requireMetric(t, k, `kontakt_retention_sweep_lag_seconds`, equals(0), "nothing overdue")
	requireMetric(t, k, `kontakt_retention_last_sweep_timestamp_seconds`, func(v float64) bool { return v >= restarted }, "a pass after the restart")
	requireMetric(t, k, `kontakt_audit_write_failures_total`, equals(0), "no audit write failed")
}
