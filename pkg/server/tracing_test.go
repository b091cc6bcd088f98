package server

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// fakeCollector is an OTLP/gRPC trace receiver that remembers span names by
// the service.name of the resource that sent them.
type fakeCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans map[string][]string
}

func (c *fakeCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		var service string
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, span := range ss.GetSpans() {
				c.spans[service] = append(c.spans[service], span.GetName())
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (c *fakeCollector) spanNames(service string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.spans[service]...)
}

func startCollector(t *testing.T) (*fakeCollector, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c := &fakeCollector{spans: map[string][]string{}}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, c)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return c, ln.Addr().String()
}

func TestTracingExportsSpansAndFlushesOnShutdown(t *testing.T) {
	collector, addr := startCollector(t)
	tests := []struct {
		name     string
		endpoint string
	}{
		{name: "host:port", endpoint: addr},
		{name: "URL", endpoint: "http://" + addr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			service := "kontakt-test-" + tt.name
			ts := startServer(t, Config{Tracing: TracingConfig{OTLPEndpoint: tt.endpoint, ServiceName: service, Insecure: true}})
			_, err := testpb.NewTestServiceClient(grpcConn(t, ts.addr)).UnaryCall(context.Background(), payload("ok"))
			require.NoError(t, err)
			_, err = testCallConnect(t, ts, browserProtocols()[0], payload("ok"))
			require.NoError(t, err)

			// Spans are batched; only shutdown guarantees they were sent.
			require.NoError(t, ts.stop())
			names := collector.spanNames(service)
			require.Equal(t, []string{"grpc.testing.TestService/UnaryCall", "grpc.testing.TestService/UnaryCall"}, names,
				"one span per call, over native gRPC and gRPC-web, and none for health checks")
		})
	}
}

func TestTracingOffByDefault(t *testing.T) {
	ts := startServer(t, Config{})
	require.Nil(t, ts.srv.tracer)
}
