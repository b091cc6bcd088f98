package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
)

// browserProtocol is one way a non-gRPC-go client reaches the server.
type browserProtocol struct {
	name string
	h2c  bool
	opts []connect.ClientOption
}

func browserProtocols() []browserProtocol {
	return []browserProtocol{
		{name: "grpc-web over HTTP/1.1", opts: []connect.ClientOption{connect.WithGRPCWeb()}},
		{name: "connect over HTTP/1.1"},
		{name: "grpc-web over h2c", h2c: true, opts: []connect.ClientOption{connect.WithGRPCWeb()}},
		{name: "connect over h2c", h2c: true},
		{name: "grpc (connect-go) over h2c", h2c: true, opts: []connect.ClientOption{connect.WithGRPC()}},
	}
}

func testCallConnect(t *testing.T, ts *testServer, p browserProtocol, req *testpb.SimpleRequest) (*connect.Response[testpb.SimpleResponse], error) {
	t.Helper()
	c := connect.NewClient[testpb.SimpleRequest, testpb.SimpleResponse](
		httpClient(t, p.h2c), ts.baseURL+"/grpc.testing.TestService/UnaryCall", p.opts...)
	return c.CallUnary(context.Background(), connect.NewRequest(req))
}

func payload(body string) *testpb.SimpleRequest {
	return &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte(body)}}
}

func TestHealthOverGRPC(t *testing.T) {
	ts := startServer(t, Config{})
	client := healthpb.NewHealthClient(grpcConn(t, ts.addr))

	ts.srv.SetServing("kontakt.intake.v1.IntakeService", false)
	tests := []struct {
		service string
		want    healthpb.HealthCheckResponse_ServingStatus
	}{
		{service: "", want: healthpb.HealthCheckResponse_SERVING},
		{service: "kontakt.intake.v1.IntakeService", want: healthpb.HealthCheckResponse_NOT_SERVING},
	}
	for _, tt := range tests {
		t.Run("service="+tt.service, func(t *testing.T) {
			resp, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{Service: tt.service})
			require.NoError(t, err)
			require.Equal(t, tt.want, resp.GetStatus())
		})
	}
}

func TestReflectionListsServices(t *testing.T) {
	ts := startServer(t, Config{})
	conn := grpcConn(t, ts.addr)
	want := []string{
		"grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection",
		"grpc.reflection.v1alpha.ServerReflection",
		"grpc.testing.TestService",
		echoService,
	}

	tests := []struct {
		name string
		list func(ctx context.Context) ([]string, error)
	}{
		{name: "v1", list: func(ctx context.Context) ([]string, error) {
			stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
			if err != nil {
				return nil, err
			}
			if err := stream.Send(&reflectionv1.ServerReflectionRequest{
				MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{},
			}); err != nil {
				return nil, err
			}
			resp, err := stream.Recv()
			if err != nil {
				return nil, err
			}
			var names []string
			for _, s := range resp.GetListServicesResponse().GetService() {
				names = append(names, s.GetName())
			}
			return names, stream.CloseSend()
		}},
		{name: "v1alpha", list: func(ctx context.Context) ([]string, error) {
			stream, err := reflectionv1alpha.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
			if err != nil {
				return nil, err
			}
			//lint:ignore SA1019 v1alpha is deprecated, but grpcurl and other older clients still ask it, so the test must call it.
			if err := stream.Send(&reflectionv1alpha.ServerReflectionRequest{
				MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{},
			}); err != nil {
				return nil, err
			}
			resp, err := stream.Recv()
			if err != nil {
				return nil, err
			}
			var names []string
			//lint:ignore SA1019 the deprecated v1alpha on purpose, as above.
			for _, s := range resp.GetListServicesResponse().GetService() {
				//lint:ignore SA1019 the deprecated v1alpha on purpose, as above.
				names = append(names, s.GetName())
			}
			return names, stream.CloseSend()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			t.Cleanup(cancel)
			names, err := tt.list(ctx)
			require.NoError(t, err)
			require.ElementsMatch(t, want, names)
		})
	}
}

func TestHealthOverBrowserProtocols(t *testing.T) {
	ts := startServer(t, Config{})
	for _, p := range browserProtocols() {
		t.Run(p.name, func(t *testing.T) {
			c := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](
				httpClient(t, p.h2c), ts.baseURL+"/grpc.health.v1.Health/Check", p.opts...)
			resp, err := c.CallUnary(context.Background(), connect.NewRequest(&healthpb.HealthCheckRequest{}))
			require.NoError(t, err)
			require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.Msg.GetStatus())
		})
	}
}

func TestCORS(t *testing.T) {
	const allowed = "https://kontakt.example.se"
	withList := startServer(t, Config{AllowedOrigins: []string{allowed}})
	noList := startServer(t, Config{})

	tests := []struct {
		name      string
		ts        *testServer
		origin    string
		wantAllow bool
	}{
		{name: "allowed origin", ts: withList, origin: allowed, wantAllow: true},
		{name: "refused origin", ts: withList, origin: "https://evil.example.com"},
		{name: "no allow-list configured", ts: noList, origin: allowed},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/preflight", func(t *testing.T) {
			req, err := http.NewRequest(http.MethodOptions, tt.ts.baseURL+"/grpc.health.v1.Health/Check", nil)
			require.NoError(t, err)
			req.Header.Set("Origin", tt.origin)
			req.Header.Set("Access-Control-Request-Method", "POST")
			// Browsers send the names lower-cased and sorted (Fetch standard);
			// rs/cors refuses any other form.
			req.Header.Set("Access-Control-Request-Headers", "authorization,connect-protocol-version,connect-timeout-ms,content-type,grpc-timeout,idempotency-key,x-grpc-web,x-user-agent")
			resp, err := httpClient(t, false).Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()

			if !tt.wantAllow {
				for name := range resp.Header {
					require.False(t, strings.HasPrefix(strings.ToLower(name), "access-control-allow"),
						"refused origin got CORS header %s: %v", name, resp.Header[name])
				}
				return
			}
			require.Equal(t, tt.origin, resp.Header.Get("Access-Control-Allow-Origin"))
			require.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "POST")
			allowHeaders := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
			for _, h := range []string{"content-type", "x-grpc-web", "authorization", "idempotency-key", "connect-protocol-version", "connect-timeout-ms", "grpc-timeout", "x-user-agent"} {
				require.Contains(t, allowHeaders, h)
			}
			require.Equal(t, "7200", resp.Header.Get("Access-Control-Max-Age"))
		})
		t.Run(tt.name+"/grpc-web call", func(t *testing.T) {
			c := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](
				httpClient(t, false), tt.ts.baseURL+"/grpc.health.v1.Health/Check", connect.WithGRPCWeb())
			req := connect.NewRequest(&healthpb.HealthCheckRequest{})
			req.Header().Set("Origin", tt.origin)
			resp, err := c.CallUnary(context.Background(), req)
			require.NoError(t, err)
			if !tt.wantAllow {
				require.Empty(t, resp.Header().Get("Access-Control-Allow-Origin"))
				return
			}
			require.Equal(t, tt.origin, resp.Header().Get("Access-Control-Allow-Origin"))
			exposed := resp.Header().Get("Access-Control-Expose-Headers")
			for _, h := range []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin", "Idempotent-Replayed", "Retry-After", "Connect-Content-Encoding"} {
				require.Contains(t, exposed, h)
			}
		})
	}
}

func TestPanicBecomesInternal(t *testing.T) {
	ts := startServer(t, Config{})
	tests := []struct {
		name string
		call func(t *testing.T) (codes.Code, string)
	}{
		{name: "grpc-go", call: func(t *testing.T) (codes.Code, string) {
			_, err := testpb.NewTestServiceClient(grpcConn(t, ts.addr)).UnaryCall(context.Background(), payload(modePanic))
			st := status.Convert(err)
			return st.Code(), st.Message()
		}},
	}
	for _, p := range browserProtocols()[:2] {
		tests = append(tests, struct {
			name string
			call func(t *testing.T) (codes.Code, string)
		}{name: p.name, call: func(t *testing.T) (codes.Code, string) {
			_, err := testCallConnect(t, ts, p, payload(modePanic))
			var ce *connect.Error
			require.ErrorAs(t, err, &ce)
			return codes.Code(ce.Code()), ce.Message()
		}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg := tt.call(t)
			require.Equal(t, codes.Internal, code)
			require.Equal(t, "internal error", msg)
			require.NotContains(t, msg, "secret")
		})
	}

	logs := ts.logs.String()
	panics := logLines(logs, `"msg":"panic in gRPC handler"`, panicValue, `"grpc.method":"/grpc.testing.TestService/UnaryCall"`)
	require.Len(t, panics, len(tests), "every panic is logged with its value")
	require.Contains(t, panics[0], "(*testService).UnaryCall", "the log carries the stack")
	// The inner recovery turns the panic into an error before logging
	// sees it, so the call is logged like any other failed call.
	require.Len(t, logLines(logs, `"msg":"gRPC call"`, `"grpc.code":"Internal"`), len(tests))
}

func TestHandlerErrorsAreMappedAtTheEdge(t *testing.T) {
	ts := startServerWithTables(t, Config{}, map[string][]ErrorMapping{
		testpb.TestService_ServiceDesc.ServiceName: {{Target: errCaseNotFound, Code: codes.NotFound}},
	})
	client := testpb.NewTestServiceClient(grpcConn(t, ts.addr))

	tests := []struct {
		mode     string
		wantCode codes.Code
		wantMsg  string
	}{
		{mode: modeFail, wantCode: codes.Internal, wantMsg: "internal error"},
		{mode: modeNotFound, wantCode: codes.NotFound, wantMsg: "case not found"},
		{mode: "ok", wantCode: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			_, err := client.UnaryCall(context.Background(), payload(tt.mode))
			st := status.Convert(err)
			require.Equal(t, tt.wantCode, st.Code())
			require.Equal(t, tt.wantMsg, st.Message())
		})
	}
	require.Len(t, logLines(ts.logs.String(), "unmapped error", "hunter2"), 1, "the internal error is logged server-side")
}

// TestErrorTableIsChosenByService: one process serves several services,
// each with its own table; the same error gets the code of the table of
// the service that was called, and a service without a table gets
// Internal.
func TestErrorTableIsChosenByService(t *testing.T) {
	errRefused := errors.New("refused")
	ts := startServerWithTables(t, Config{}, map[string][]ErrorMapping{
		testpb.TestService_ServiceDesc.ServiceName: {{Target: errCaseNotFound, Code: codes.NotFound}},
		echoService: {
			{Target: errRefused, Code: codes.PermissionDenied},
			{Target: errCaseNotFound, Code: codes.FailedPrecondition, Explain: true},
		},
	})
	conn := grpcConn(t, ts.addr)

	_, err := testpb.NewTestServiceClient(conn).UnaryCall(context.Background(), payload(modeNotFound))
	require.Equal(t, codes.NotFound, status.Code(err), "TestService's table")
	require.Equal(t, "case not found", status.Convert(err).Message(), "the sentinel's text only")

	resp := newEchoResponse(t)
	err = conn.Invoke(context.Background(), "/"+echoService+"/Echo", newEchoRequest(t, modeNotFound), resp)
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "EchoService's table")
	require.Equal(t, "echo for 19121212-1212: case not found", status.Convert(err).Message(), "Explain shows the wrapping")

	// A status the handler returns passes every table unchanged.
	err = conn.Invoke(context.Background(), "/"+echoService+"/Echo", newEchoRequest(t, "code:5"), resp)
	require.Equal(t, codes.NotFound, status.Code(err))
	require.Equal(t, "refused as asked", status.Convert(err).Message())

	t.Run("a service without a table", func(t *testing.T) {
		ts := startServerWithTables(t, Config{}, map[string][]ErrorMapping{
			testpb.TestService_ServiceDesc.ServiceName: {{Target: errCaseNotFound, Code: codes.NotFound}},
		})
		err := grpcConn(t, ts.addr).Invoke(context.Background(), "/"+echoService+"/Echo", newEchoRequest(t, modeNotFound), newEchoResponse(t))
		require.Equal(t, codes.Internal, status.Code(err), "another service's table does not apply")
		require.Equal(t, "internal error", status.Convert(err).Message())
	})
}

// TestErrorTableForUnknownServiceIsRefused: a table under a name no
// service is registered as (a typo) would silently map nothing, so Run
// refuses it.
func TestErrorTableForUnknownServiceIsRefused(t *testing.T) {
	srv, err := New(Config{ListenAddr: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv.MapErrors("kontakt.nosuch.v1.Service", ErrorMapping{Target: errCaseNotFound, Code: codes.NotFound})
	require.ErrorContains(t, srv.Run(context.Background()), "kontakt.nosuch.v1.Service")
	require.NoError(t, srv.Close())
}

// TestHTTPStatusAgreesWithTheTranscoder: a failure answered over REST or
// Connect by the transcoder and one kontakt answers itself over HTTP
// (Open311, the edge's refusals) get the same HTTP status, for every code.
func TestHTTPStatusAgreesWithTheTranscoder(t *testing.T) {
	ts := startServer(t, Config{})
	client := httpClient(t, false)
	post := func(t *testing.T, path string, header http.Header, body string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, ts.baseURL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header = header
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.NoError(t, resp.Body.Close())
		return resp.StatusCode
	}
	for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
		t.Run(c.String(), func(t *testing.T) {
			body := fmt.Sprintf(`{"text":"code:%d"}`, c)
			rest := http.Header{"Content-Type": {"application/json"}}
			connect := http.Header{"Content-Type": {"application/json"}, "Connect-Protocol-Version": {"1"}}
			require.Equal(t, HTTPStatus(c), post(t, "/v1/echo", rest, body), "REST")
			require.Equal(t, HTTPStatus(c), post(t, "/"+echoService+"/Echo", connect, body), "Connect")
		})
	}
	require.Equal(t, http.StatusOK, HTTPStatus(codes.OK))
	require.Equal(t, http.StatusInternalServerError, HTTPStatus(codes.Code(99)), "a code gRPC does not define is a fault")
}

func TestOversizeRequestsAreRefused(t *testing.T) {
	const limit = 1024
	big := strings.Repeat("x", 2*limit)
	small := "hej"
	open311 := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(body)
	})
	ts := startServer(t, Config{MaxRequestBytes: limit}, WithHTTPHandler("POST /open311/v2/requests.json", open311))

	type result struct {
		ok       bool
		code     codes.Code // for RPC protocols
		httpCode int        // for plain HTTP
	}
	grpcCall := func(t *testing.T, body string) result {
		_, err := testpb.NewTestServiceClient(grpcConn(t, ts.addr)).UnaryCall(context.Background(), payload(body))
		return result{ok: err == nil, code: status.Code(err)}
	}
	connectCall := func(p browserProtocol) func(t *testing.T, body string) result {
		return func(t *testing.T, body string) result {
			_, err := testCallConnect(t, ts, p, payload(body))
			return result{ok: err == nil, code: codes.Code(connect.CodeOf(err))}
		}
	}
	restCall := func(t *testing.T, body string) result {
		b, err := json.Marshal(map[string]string{"text": body})
		require.NoError(t, err)
		resp, err := httpClient(t, false).Post(ts.baseURL+"/v1/echo", "application/json", bytes.NewReader(b))
		require.NoError(t, err)
		_ = resp.Body.Close()
		return result{ok: resp.StatusCode == http.StatusOK, httpCode: resp.StatusCode}
	}
	httpCall := func(chunked bool) func(t *testing.T, body string) result {
		return func(t *testing.T, body string) result {
			var r io.Reader = strings.NewReader(body)
			if chunked {
				r = io.MultiReader(r) // hides the length, so no Content-Length
			}
			resp, err := httpClient(t, false).Post(ts.baseURL+"/open311/v2/requests.json", "application/json", r)
			require.NoError(t, err)
			_ = resp.Body.Close()
			return result{ok: resp.StatusCode == http.StatusCreated, httpCode: resp.StatusCode}
		}
	}

	tests := []struct {
		name string
		call func(t *testing.T, body string) result
		want result // for the oversize body
	}{
		{name: "grpc-go", call: grpcCall, want: result{code: codes.ResourceExhausted}},
		{name: "grpc-web", call: connectCall(browserProtocols()[0]), want: result{code: codes.ResourceExhausted}},
		{name: "connect", call: connectCall(browserProtocols()[1]), want: result{code: codes.ResourceExhausted}},
		{name: "connect JSON", call: connectCall(browserProtocol{opts: []connect.ClientOption{connect.WithProtoJSON()}}), want: result{code: codes.ResourceExhausted}},
		{name: "grpc-web over h2c", call: connectCall(browserProtocols()[2]), want: result{code: codes.ResourceExhausted}},
		// REST answers 413 (the edge guard); 429 means "too many requests"
		// there, which is what rate limits answer.
		{name: "REST/JSON", call: restCall, want: result{httpCode: http.StatusRequestEntityTooLarge}},
		{name: "HTTP route with Content-Length", call: httpCall(false), want: result{httpCode: http.StatusRequestEntityTooLarge}},
		{name: "HTTP route chunked", call: httpCall(true), want: result{httpCode: http.StatusRequestEntityTooLarge}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.True(t, tt.call(t, small).ok, "a small request must succeed")
			require.Equal(t, tt.want, tt.call(t, big))
		})
	}
}

func TestGracefulShutdownFinishesInFlightCalls(t *testing.T) {
	tests := []struct {
		name            string
		shutdownTimeout time.Duration
		call            func(t *testing.T, ts *testServer) error
		wantCallOK      bool
		wantRunErr      bool
	}{
		{name: "grpc-go", wantCallOK: true, call: func(t *testing.T, ts *testServer) error {
			_, err := testpb.NewTestServiceClient(grpcConn(t, ts.addr)).UnaryCall(context.Background(), payload(modeSlow))
			return err
		}},
		{name: "connect over HTTP/1.1", wantCallOK: true, call: func(t *testing.T, ts *testServer) error {
			_, err := testCallConnect(t, ts, browserProtocols()[1], payload(modeSlow))
			return err
		}},
		{name: "grpc-web over h2c", wantCallOK: true, call: func(t *testing.T, ts *testServer) error {
			_, err := testCallConnect(t, ts, browserProtocols()[2], payload(modeSlow))
			return err
		}},
		{name: "timeout cuts the call off", shutdownTimeout: 50 * time.Millisecond, wantRunErr: true, call: func(t *testing.T, ts *testServer) error {
			_, err := testpb.NewTestServiceClient(grpcConn(t, ts.addr)).UnaryCall(context.Background(), payload(modeSlow))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, Config{ShutdownTimeout: tt.shutdownTimeout})
			callErr := make(chan error, 1)
			go func() { callErr <- tt.call(t, ts) }()

			select {
			case <-ts.svc.started:
			case <-time.After(5 * time.Second):
				t.Fatal("slow call never reached the handler")
			}
			runErr := ts.stop()

			select {
			case err := <-callErr:
				if tt.wantCallOK {
					require.NoError(t, err, "in-flight call must complete during shutdown")
				} else {
					require.Error(t, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("in-flight call never returned")
			}
			if tt.wantRunErr {
				require.ErrorContains(t, runErr, "cut off")
				ts.stopErr = nil // expected; keep the cleanup check quiet
			} else {
				require.NoError(t, runErr)
			}

			_, err := net.DialTimeout("tcp", ts.addr, time.Second)
			require.Error(t, err, "the port is closed after shutdown")
		})
	}
}

func TestShutdownEndsLongLivedStreams(t *testing.T) {
	ts := startServer(t, Config{ShutdownTimeout: 10 * time.Second})
	stream, err := healthpb.NewHealthClient(grpcConn(t, ts.addr)).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	first, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, first.GetStatus())

	start := time.Now()
	require.NoError(t, ts.stop(), "an open Watch must not make shutdown time out")
	require.Less(t, time.Since(start), 2*time.Second)
	require.Eventually(t, func() bool {
		_, err := stream.Recv()
		return err != nil
	}, 5*time.Second, time.Millisecond, "the Watch stream ends")

	select {
	case <-ts.srv.ShuttingDown():
	default:
		t.Fatal("ShuttingDown is closed after shutdown")
	}
}

func TestListenReportsPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = busy.Close() })
	busyAddr := busy.Addr().String()

	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "API port", cfg: Config{ListenAddr: busyAddr}, want: "listen " + busyAddr + ": address already in use"},
		{name: "metrics port", cfg: Config{ListenAddr: "127.0.0.1:0", MetricsAddr: busyAddr}, want: "listen " + busyAddr + " (metrics): address already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := New(tt.cfg, discardLogger())
			require.NoError(t, err)
			t.Cleanup(func() { _ = srv.Close() })
			err = srv.Listen()
			require.EqualError(t, err, tt.want)
			require.Nil(t, srv.Addr(), "a failed Listen leaves nothing open")
			require.EqualError(t, srv.Run(context.Background()), tt.want, "Run reports the same error")
		})
	}
}

func TestValidationAndREST(t *testing.T) {
	ts := startServer(t, Config{})
	conn := grpcConn(t, ts.addr)

	t.Run("grpc", func(t *testing.T) {
		tests := []struct {
			text     string
			wantCode codes.Code
		}{
			{text: "hej", wantCode: codes.OK},
			{text: "", wantCode: codes.InvalidArgument},
		}
		for _, tt := range tests {
			t.Run("text="+tt.text, func(t *testing.T) {
				resp := newEchoResponse(t)
				err := conn.Invoke(context.Background(), "/"+echoService+"/Echo", newEchoRequest(t, tt.text), resp)
				require.Equal(t, tt.wantCode, status.Code(err), "err: %v", err)
				if tt.wantCode == codes.OK {
					require.Equal(t, tt.text, resp.Get(resp.Descriptor().Fields().ByName("text")).String())
				}
			})
		}
	})

	t.Run("REST", func(t *testing.T) {
		tests := []struct {
			body       string
			wantStatus int
			wantBody   string
		}{
			{body: `{"text":"hej"}`, wantStatus: http.StatusOK, wantBody: `"text":"hej"`},
			{body: `{"text":""}`, wantStatus: http.StatusBadRequest, wantBody: "text"},
		}
		for _, tt := range tests {
			t.Run(tt.body, func(t *testing.T) {
				resp, err := httpClient(t, false).Post(ts.baseURL+"/v1/echo", "application/json", strings.NewReader(tt.body))
				require.NoError(t, err)
				b, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				_ = resp.Body.Close()
				require.Equal(t, tt.wantStatus, resp.StatusCode, "body: %s", b)
				require.Contains(t, strings.ReplaceAll(string(b), " ", ""), tt.wantBody)
			})
		}
	})
}

// TestCallerInterceptorsAndLogging checks that the caller's interceptors run
// inside logging and before validation, and that logs never contain bodies
// or metadata.
func TestCallerInterceptorsAndLogging(t *testing.T) {
	const token = "Bearer top-secret-token"
	const personalData = "personnummer 19121212-1212"
	auth := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if strings.HasPrefix(info.FullMethod, "/grpc.health.v1.Health/") {
			return handler(ctx, req) // probes carry no token
		}
		md, _ := metadata.FromIncomingContext(ctx)
		if got := md.Get("authorization"); len(got) != 1 || got[0] != token {
			return nil, status.Error(codes.Unauthenticated, "missing or bad token")
		}
		return handler(ctx, req)
	}
	ts := startServer(t, Config{}, WithUnaryInterceptors(auth))
	conn := grpcConn(t, ts.addr)

	tests := []struct {
		name     string
		md       metadata.MD
		text     string
		wantCode codes.Code
	}{
		{name: "no token", text: personalData, wantCode: codes.Unauthenticated},
		{name: "no token, invalid request: auth runs first", text: "", wantCode: codes.Unauthenticated},
		{name: "token", md: metadata.Pairs("authorization", token), text: personalData, wantCode: codes.OK},
		{name: "token, invalid request", md: metadata.Pairs("authorization", token), text: "", wantCode: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := metadata.NewOutgoingContext(context.Background(), tt.md)
			err := conn.Invoke(ctx, "/"+echoService+"/Echo", newEchoRequest(t, tt.text), newEchoResponse(t))
			require.Equal(t, tt.wantCode, status.Code(err))
		})
	}

	logs := ts.logs.String()
	for _, tt := range tests {
		lines := logLines(logs, `"msg":"gRPC call"`, `"grpc.method":"/`+echoService+`/Echo"`, `"grpc.code":"`+tt.wantCode.String()+`"`, `"peer":"127.0.0.1:`, `"duration":`)
		require.NotEmpty(t, lines, "call %q is logged with method, code, peer and duration", tt.name)
	}
	require.NotContains(t, logs, "top-secret-token", "metadata must not be logged")
	require.NotContains(t, logs, "19121212", "request bodies must not be logged")
}

func TestMetricsEndpoint(t *testing.T) {
	ts := startServer(t, Config{MetricsAddr: "127.0.0.1:0"})
	client := testpb.NewTestServiceClient(grpcConn(t, ts.addr))
	_, err := client.UnaryCall(context.Background(), payload("ok"))
	require.NoError(t, err)
	_, err = client.UnaryCall(context.Background(), payload(modePanic))
	require.Equal(t, codes.Internal, status.Code(err))

	resp, err := httpClient(t, false).Get("http://" + ts.srv.MetricsAddr().String() + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="OK",grpc_method="UnaryCall",grpc_service="grpc.testing.TestService",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="Internal",grpc_method="UnaryCall",grpc_service="grpc.testing.TestService",grpc_type="unary"} 1`,
		`grpc_server_handling_seconds_bucket{`,
		"go_goroutines ",
		"process_open_fds ",
		// grpc-go's connections (the health check's and this test's) are
		// served by grpc-go's own transport, the scrape's by HTTP.
		`kontakt_server_connections_total{transport="grpc"} 2`,
	} {
		require.Contains(t, string(body), want)
	}

	// The API port does not serve metrics.
	resp, err = httpClient(t, false).Get(ts.baseURL + "/metrics")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.NotEqual(t, http.StatusOK, resp.StatusCode)
	// Connect over h2c takes the HTTP side of the split port.
	_, err = testCallConnect(t, ts, browserProtocols()[3], payload("ok"))
	require.NoError(t, err)
	resp, err = httpClient(t, false).Get("http://" + ts.srv.MetricsAddr().String() + "/metrics")
	require.NoError(t, err)
	body, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Contains(t, string(body), `kontakt_server_connections_total{transport="http"} 2`, "the HTTP/1.1 request and the h2c Connect call")
}

func TestMetricsOff(t *testing.T) {
	ts := startServer(t, Config{})
	require.Nil(t, ts.srv.MetricsAddr())
}

func TestNewRejectsBadConfig(t *testing.T) {
	h := http.NotFoundHandler()
	tests := []struct {
		name string
		cfg  Config
		opts []Option
		want string
	}{
		{name: "wildcard origin", cfg: Config{AllowedOrigins: []string{"*"}}, want: `"*" would let every web page`},
		{name: "origin with a trailing slash", cfg: Config{AllowedOrigins: []string{"http://localhost:5173/"}}, want: `a browser sends its origin as "http://localhost:5173"`},
		{name: "bad listen address", cfg: Config{ListenAddr: "8080"}, want: `listen address "8080"`},
		{name: "negative size", cfg: Config{MaxRequestBytes: -1}, want: "max request bytes -1"},
		{name: "route on /", opts: []Option{WithHTTPHandler("/", h)}, want: "HTTP route"},
		{name: "conflicting routes", opts: []Option{WithHTTPHandler("/open311/", h), WithHTTPHandler("/open311/", h)}, want: "HTTP route"},
		{name: "nil handler", opts: []Option{WithHTTPHandler("/open311/", nil)}, want: "nil handler"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, discardLogger(), tt.opts...)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestDefaults(t *testing.T) {
	srv, err := New(Config{}, discardLogger())
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	require.Equal(t, Config{
		ListenAddr:      "127.0.0.1:8080",
		MaxRequestBytes: 4 << 20,
		ShutdownTimeout: 15 * time.Second,
		Tracing:         TracingConfig{ServiceName: "kontakt"},
	}, srv.cfg)
	require.Equal(t, "127.0.0.1:8081", DefaultConfig().MetricsAddr)
}

func TestRunFailsForServiceWithoutDescriptor(t *testing.T) {
	srv, err := New(Config{ListenAddr: "127.0.0.1:0"}, discardLogger())
	require.NoError(t, err)
	desc := &grpc.ServiceDesc{ServiceName: "kontakt.servertest.v1.Undescribed", HandlerType: (*any)(nil)}
	srv.RegisterService(desc, struct{}{})

	err = srv.Run(context.Background())
	require.ErrorContains(t, err, "kontakt.servertest.v1.Undescribed")
	require.ErrorContains(t, err, "GlobalFiles")
	require.Panics(t, func() { srv.RegisterService(desc, struct{}{}) }, "registering after Run is refused")
	require.NoError(t, srv.Close(), "a Server whose Run failed is closed")
	_, err = net.DialTimeout("tcp", srv.Addr().String(), time.Second)
	require.Error(t, err, "a Server whose Run failed has released its port")
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
