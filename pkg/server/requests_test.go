package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/kontakt-se/kontakt/pkg/reqlog"
)

// Every refusal is WARN, only kontakt's own faults are ERROR.
func TestLevelPolicy(t *testing.T) {
	for code, want := range map[codes.Code]slog.Level{
		codes.OK: slog.LevelInfo, codes.Canceled: slog.LevelInfo,
		codes.InvalidArgument: slog.LevelWarn, codes.NotFound: slog.LevelWarn, codes.AlreadyExists: slog.LevelWarn,
		codes.PermissionDenied: slog.LevelWarn, codes.Unauthenticated: slog.LevelWarn, codes.ResourceExhausted: slog.LevelWarn,
		codes.FailedPrecondition: slog.LevelWarn, codes.Aborted: slog.LevelWarn, codes.OutOfRange: slog.LevelWarn,
		codes.Unimplemented: slog.LevelWarn, codes.Unavailable: slog.LevelWarn, codes.DeadlineExceeded: slog.LevelWarn,
		codes.Internal: slog.LevelError, codes.Unknown: slog.LevelError, codes.DataLoss: slog.LevelError,
	} {
		require.Equal(t, want, Level(code), code.String())
		// An HTTP route answering with the code's status is logged at
		// the same level.
		require.Equal(t, want, httpLevel(HTTPStatus(code)), "%s as HTTP %d", code, HTTPStatus(code))
	}
	require.Equal(t, slog.LevelWarn, httpLevel(http.StatusRequestEntityTooLarge))
	require.Equal(t, slog.LevelWarn, httpLevel(http.StatusUnsupportedMediaType))
	require.Equal(t, slog.LevelError, httpLevel(http.StatusBadGateway))
}

// logsOf returns the decoded JSON log lines holding the request id.
func logsOf(t *testing.T, logs, id string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range logLines(logs, id) {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		out = append(out, m)
	}
	return out
}

func TestRequestIDOnEveryProtocol(t *testing.T) {
	ts := startServer(t, Config{})
	const clientID = "0f8b2c1e-5a4d-4c3b-9e2f-7a6b5c4d3e2f"
	t.Run("native gRPC", func(t *testing.T) {
		client := testpb.NewTestServiceClient(ts.grpcConn(t))
		var header metadata.MD
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", clientID)
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}}, grpc.Header(&header))
		require.NoError(t, err)
		require.Equal(t, []string{clientID}, header.Get("x-request-id"))
		lines := logsOf(t, ts.logs.String(), clientID)
		require.NotEmpty(t, lines)
		require.Equal(t, clientID, lines[0][reqlog.KeyRequestID])
		require.Equal(t, "gRPC call", lines[0]["msg"])

		for _, bad := range []string{
			"19121212-1212",                        // an identity number
			"anna.andersson@example.se",            // an e-mail address
			"0f8b2c1e5a4d4c3b9e2f7a6b5c4d3e2f x=1", // more than the id
			strings.Repeat("a", 65),                // too long
		} {
			header = nil
			ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", bad)
			_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hi")}}, grpc.Header(&header))
			require.NoError(t, err)
			got := header.Get("x-request-id")
			require.Len(t, got, 1)
			require.NotEqual(t, bad, got[0])
			require.True(t, reqlog.ValidID(got[0]), got[0])
			require.NotContains(t, ts.logs.String(), bad, "an unsafe id is never logged")
			require.NotEmpty(t, logsOf(t, ts.logs.String(), got[0]), "the call is logged under the id it was given")
		}
	})
	t.Run("REST", func(t *testing.T) {
		const id = "00112233445566778899aabbccddeeff"
		req, err := http.NewRequest(http.MethodPost, ts.baseURL+"/v1/echo", strings.NewReader(`{"text":"code:5"}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Request-Id", id)
		resp, err := httpClient(t, false).Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
		require.Equal(t, id, resp.Header.Get("X-Request-Id"))
		lines := logsOf(t, ts.logs.String(), id)
		require.NotEmpty(t, lines)
		for _, l := range lines {
			require.Equal(t, id, l[reqlog.KeyRequestID])
		}
		// The refusal is logged at WARN, without what the client sent.
		require.Equal(t, "WARN", lines[len(lines)-1]["level"], lines)
		require.NotContains(t, ts.logs.String(), "refused as asked", "a refusal's message may quote the input")
	})
	t.Run("no id sent", func(t *testing.T) {
		resp, err := httpClient(t, false).Post(ts.baseURL+"/v1/echo", "application/json", strings.NewReader(`{"text":"hello"}`))
		require.NoError(t, err)
		_ = resp.Body.Close()
		id := resp.Header.Get("X-Request-Id")
		require.True(t, reqlog.ValidID(id), id)
		require.NotEmpty(t, logsOf(t, ts.logs.String(), id))
	})
}

// An observer sees every call of its method as the client saw it: the
// code after the error table, refusals included, and the headers the
// handler set; calls of other methods pass it by.
func TestObserveCallsSeesCodesAndHeaders(t *testing.T) {
	type seen struct {
		code   codes.Code
		header string
	}
	var mu sync.Mutex
	var got []seen
	method := "/" + echoService + "/Echo"
	ts := startServerWith(t, Config{}, func(srv *Server) {
		srv.MapErrors(echoService, ErrorMapping{Target: errCaseNotFound, Code: codes.NotFound})
		srv.ObserveCalls(method, func(code codes.Code, header metadata.MD) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, seen{code, strings.Join(header.Get("x-echo"), ",")})
		})
	})
	conn := ts.grpcConn(t)
	for _, text := range []string{"hello", modeHeader, modeNotFound, "code:8", ""} {
		_ = conn.Invoke(t.Context(), method, newEchoRequest(t, text), newEchoResponse(t))
	}
	_, err := testpb.NewTestServiceClient(conn).UnaryCall(t.Context(), &testpb.SimpleRequest{})
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []seen{
		{codes.OK, ""},
		{codes.OK, "set"},
		{codes.NotFound, ""},          // a plain error, through the table
		{codes.ResourceExhausted, ""}, // a status
		{codes.InvalidArgument, ""},   // refused by validation, before the handler
	}, got)
}
