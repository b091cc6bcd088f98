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
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
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
