package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/kontakt-se/kontakt/pkg/reqlog"
)

// Test services.
//
// grpc.testing.TestService (from grpc-go's interop package) is a real,
// generated service whose descriptor is in protoregistry.GlobalFiles, so the
// transcoder serves it over every protocol. The request payload body selects
// what the handler does.
//
// kontakt.servertest.v1.EchoService is built at test start from a descriptor
// with a protovalidate rule and a google.api.http rule, to exercise
// validation and REST; no generated code in the module has either.

const (
	modePanic    = "panic"
	modeSlow     = "slow"
	modeFail     = "fail"
	modeNotFound = "notfound"
	modeHeader   = "header" // the echo sets header x-echo

	panicValue   = "secret-panic-value 19121212-1212"
	internalText = "dial tcp db:5432: password=hunter2"
	slowDuration = 300 * time.Millisecond
)

var errCaseNotFound = errors.New("case not found")

type testService struct {
	testpb.UnimplementedTestServiceServer
	// started receives a value when a slow call has begun.
	started chan struct{}
}

func (s *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	switch string(req.GetPayload().GetBody()) {
	case modePanic:
		panic(panicValue)
	case modeFail:
		return nil, fmt.Errorf("load case: %s", internalText)
	case modeNotFound:
		return nil, fmt.Errorf("case 4711 owned by 19121212-1212: %w", errCaseNotFound)
	case modeSlow:
		select {
		case s.started <- struct{}{}:
		default:
		}
		select {
		case <-time.After(slowDuration):
			return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: []byte("done")}}, nil
		case <-ctx.Done():
			return nil, status.Error(codes.Canceled, "slow call was cut off")
		}
	}
	return &testpb.SimpleResponse{Payload: req.GetPayload()}, nil
}

const echoService = "kontakt.servertest.v1.EchoService"

// TestMain registers the echo service's descriptor where generated code
// would: in protoregistry.GlobalFiles, which is where vanguard looks.
func TestMain(m *testing.M) {
	fd, err := echoFile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "build echo descriptor:", err)
		os.Exit(1)
	}
	if err := protoregistry.GlobalFiles.RegisterFile(fd); err != nil {
		fmt.Fprintln(os.Stderr, "register echo descriptor:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func echoFile() (protoreflect.FileDescriptor, error) {
	stringRules := &validate.StringRules{}
	stringRules.SetMinLen(1)
	rules := &validate.FieldRules{}
	rules.SetString(stringRules)
	fieldOpts := &descriptorpb.FieldOptions{}
	proto.SetExtension(fieldOpts, validate.E_Field, rules)

	methodOpts := &descriptorpb.MethodOptions{}
	proto.SetExtension(methodOpts, annotations.E_Http, &annotations.HttpRule{
		Pattern: &annotations.HttpRule_Post{Post: "/v1/echo"},
		Body:    "*",
	})

	textField := func(opts *descriptorpb.FieldOptions) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{
			Name:     proto.String("text"),
			JsonName: proto.String("text"),
			Number:   proto.Int32(1),
			Label:    descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			Type:     descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(),
			Options:  opts,
		}
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("kontakt/servertest/v1/echo.proto"),
		Package:    proto.String("kontakt.servertest.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"buf/validate/validate.proto", "google/api/annotations.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("EchoRequest"), Field: []*descriptorpb.FieldDescriptorProto{textField(fieldOpts)}},
			{Name: proto.String("EchoResponse"), Field: []*descriptorpb.FieldDescriptorProto{textField(nil)}},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("EchoService"),
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name:       proto.String("Echo"),
				InputType:  proto.String(".kontakt.servertest.v1.EchoRequest"),
				OutputType: proto.String(".kontakt.servertest.v1.EchoResponse"),
				Options:    methodOpts,
			}},
		}},
	}
	return protodesc.NewFile(fdp, protoregistry.GlobalFiles)
}

// echoServiceDesc is what protoc-gen-go-grpc would generate for EchoService,
// written against dynamic messages.
func echoServiceDesc(t *testing.T) *grpc.ServiceDesc {
	t.Helper()
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(echoService)
	require.NoError(t, err)
	method := d.(protoreflect.ServiceDescriptor).Methods().ByName("Echo")
	in, out := method.Input(), method.Output()
	return &grpc.ServiceDesc{
		ServiceName: echoService,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Echo",
			Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
				req := dynamicpb.NewMessage(in)
				if err := dec(req); err != nil {
					return nil, err
				}
				handler := func(ctx context.Context, r any) (any, error) {
					resp := dynamicpb.NewMessage(out)
					text := r.(*dynamicpb.Message).Get(in.Fields().ByName("text"))
					if text.String() == modeHeader {
						_ = grpc.SetHeader(ctx, metadata.Pairs("x-echo", "set"))
					}
					if err := echoFailure(text.String()); err != nil {
						return nil, err
					}
					resp.Set(out.Fields().ByName("text"), text)
					return resp, nil
				}
				if interceptor == nil {
					return handler(ctx, req)
				}
				info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + echoService + "/Echo"}
				return interceptor(ctx, req, info, handler)
			},
		}},
		Metadata: "kontakt/servertest/v1/echo.proto",
	}
}

// echoFailure is the error the echo service answers text with: "code:N"
// ends the call with status code N, modeNotFound with a plain error
// wrapping errCaseNotFound, anything else is echoed.
func echoFailure(text string) error {
	if n, ok := strings.CutPrefix(text, "code:"); ok {
		c, err := strconv.Atoi(n)
		if err != nil {
			return err
		}
		return status.Error(codes.Code(c), "refused as asked")
	}
	if text == modeNotFound {
		return fmt.Errorf("echo for 19121212-1212: %w", errCaseNotFound)
	}
	return nil
}

func newEchoRequest(t *testing.T, text string) *dynamicpb.Message {
	t.Helper()
	d, err := protoregistry.GlobalFiles.FindDescriptorByName("kontakt.servertest.v1.EchoRequest")
	require.NoError(t, err)
	md := d.(protoreflect.MessageDescriptor)
	m := dynamicpb.NewMessage(md)
	m.Set(md.Fields().ByName("text"), protoreflect.ValueOfString(text))
	return m
}

func newEchoResponse(t *testing.T) *dynamicpb.Message {
	t.Helper()
	d, err := protoregistry.GlobalFiles.FindDescriptorByName("kontakt.servertest.v1.EchoResponse")
	require.NoError(t, err)
	return dynamicpb.NewMessage(d.(protoreflect.MessageDescriptor))
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is a real Server on 127.0.0.1:0 with the test services.
type testServer struct {
	srv     *Server
	addr    string
	baseURL string
	logs    *syncBuffer
	svc     *testService
	// roots trust the server's certificate when it serves TLS; nil for
	// cleartext.
	roots *x509.CertPool

	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	stopErr  error
}

func startServer(t *testing.T, cfg Config, opts ...Option) *testServer {
	t.Helper()
	return startServerWithTables(t, cfg, nil, opts...)
}

// startServerWithTables is startServer with error tables by service name.
func startServerWithTables(t *testing.T, cfg Config, tables map[string][]ErrorMapping, opts ...Option) *testServer {
	t.Helper()
	return startServerWith(t, cfg, func(srv *Server) {
		for service, table := range tables {
			srv.MapErrors(service, table...)
		}
	}, opts...)
}

// startServerWith is startServer with setup run on the server after the
// test services are registered and before it runs.
func startServerWith(t *testing.T, cfg Config, setup func(*Server), opts ...Option) *testServer {
	t.Helper()
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	logs := &syncBuffer{}
	// As the binary builds it (host.NewLogger): lines carry the request.
	logger := slog.New(reqlog.Handler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	srv, err := New(cfg, logger, opts...)
	require.NoError(t, err)

	svc := &testService{started: make(chan struct{}, 1)}
	testpb.RegisterTestServiceServer(srv, svc)
	srv.RegisterService(echoServiceDesc(t), struct{}{})
	if setup != nil {
		setup(srv)
	}
	require.NoError(t, srv.Listen())

	ctx, cancel := context.WithCancel(context.Background())
	scheme := "http://"
	var roots *x509.CertPool
	if cfg.TLS.CertFile != "" {
		scheme = "https://"
		pem, err := os.ReadFile(cfg.TLS.CertFile)
		require.NoError(t, err)
		roots = x509.NewCertPool()
		require.True(t, roots.AppendCertsFromPEM(pem))
	}
	ts := &testServer{
		srv:     srv,
		addr:    srv.Addr().String(),
		baseURL: scheme + srv.Addr().String(),
		roots:   roots,
		logs:    logs,
		svc:     svc,
		cancel:  cancel,
		done:    make(chan error, 1),
	}
	go func() { ts.done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		require.NoError(t, ts.stop(), "Run must shut down cleanly")
	})

	// Run marks the server SERVING once it is serving.
	health := healthpb.NewHealthClient(ts.grpcConn(t))
	require.Eventually(t, func() bool {
		resp, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	}, 5*time.Second, 10*time.Millisecond, "server never became SERVING")
	return ts
}

// stop cancels Run's context and returns Run's result; it may be called
// more than once.
func (ts *testServer) stop() error {
	ts.stopOnce.Do(func() {
		ts.cancel()
		select {
		case ts.stopErr = <-ts.done:
		case <-time.After(20 * time.Second):
			ts.stopErr = errors.New("Run did not return within 20s of cancellation")
		}
	})
	return ts.stopErr
}

func grpcConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// grpcConn is a native gRPC connection to ts, over TLS when it serves it.
func (ts *testServer) grpcConn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	if ts.roots == nil {
		return grpcConn(t, ts.addr)
	}
	conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ts.roots})))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// httpClient returns a client speaking HTTP/1.1, or cleartext HTTP/2 with
// prior knowledge when h2c is set.
func httpClient(t *testing.T, h2c bool) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	if h2c {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// logLines returns the JSON log lines containing every one of the needles.
func logLines(logs string, needles ...string) []string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		ok := line != ""
		for _, n := range needles {
			ok = ok && strings.Contains(line, n)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}
