// Package server is the bootstrap every kontakt service uses to serve its API.
//
// One Server serves, on one port, native gRPC (for other services and
// grpcurl), gRPC-web and Connect (for the browser UI) and REST/JSON from
// google.api.http annotations (for public e-service forms), plus any plain
// HTTP routes a service mounts. Every call passes the same interceptor chain:
// the request id (every log line of the call carries it, see requests.go),
// recovery, logging, the method's observers (ObserveCalls), metrics, edge
// error mapping (ToStatus with the called service's error table, see
// MapErrors), the caller's own interceptors (authentication), validation
// (protovalidate), and recovery again around the handler. Keeping this in one place means every service,
// and the single binary that runs them all, gets the same edge behaviour:
// the same limits, the same CORS policy, the same error hygiene.
//
// Typical use:
//
//	srv, err := server.New(cfg, logger, server.WithUnaryInterceptors(auth))
//	if err != nil { ... }
//	if err := srv.Listen(); err != nil { ... } // fail fast on a busy port
//	casev1.RegisterCaseServiceServer(srv, svc)
//	srv.MapErrors(casev1.CaseService_ServiceDesc.ServiceName, table...)
//	return srv.Run(ctx) // until ctx is cancelled, then graceful shutdown
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"buf.build/go/protovalidate"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// tracerFlushTimeout bounds how long shutdown waits for buffered spans to be
// exported, so that an unreachable collector cannot hold up a restart.
const tracerFlushTimeout = 5 * time.Second

type state int

const (
	stateNew state = iota
	stateRunning
	stateClosed
)

var _ grpc.ServiceRegistrar = (*Server)(nil)

// Server serves one kontakt process's gRPC services on a single port. Create
// it with New, register services on it (it is a grpc.ServiceRegistrar, so
// generated RegisterXxxServer functions accept it), then call Run.
type Server struct {
	cfg      Config
	logger   *slog.Logger
	grpc     *grpc.Server
	health   *health.Server
	registry *prometheus.Registry
	// connections counts accepted API connections by the transport that
	// serves them (see split.go).
	connections *prometheus.CounterVec
	grpcMetrics *grpcprom.ServerMetrics
	tracer      *sdktrace.TracerProvider // nil when tracing is off
	stopping    chan struct{}            // closed when shutdown begins
	tls         *tls.Config              // nil: the API port speaks cleartext
	handler     http.Handler             // everything served on the API port
	rpc         http.Handler             // the transcoder; set by Run before serving
	// services are the registered gRPC services; set by Run before
	// serving, so the edge can tell RPC paths from REST paths.
	services map[string]grpc.ServiceInfo
	// errorTables are the services' error tables by service name; set
	// before Run (MapErrors) and only read after.
	errorTables map[string][]ErrorMapping
	// observers are told how calls of a method ended (ObserveCalls); set
	// before Run and only read after.
	observers map[string][]CallObserver

	probes probes // /healthz and /readyz on the metrics port

	mu        sync.Mutex
	state     state
	ln        net.Listener
	metricsLn net.Listener
}

// New builds a Server from cfg. It validates the configuration, builds the
// interceptor chain and registers the health and reflection services, but
// opens no port; see Listen and Run. A nil logger means slog.Default().
func New(cfg Config, logger *slog.Logger, opts ...Option) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}

	validator, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("server: protovalidate: %w", err)
	}

	s := &Server{
		cfg:         cfg,
		logger:      logger,
		errorTables: map[string][]ErrorMapping{},
		observers:   map[string][]CallObserver{},
		health:      health.NewServer(),
		stopping:    make(chan struct{}),
		registry:    prometheus.NewRegistry(),
		grpcMetrics: grpcprom.NewServerMetrics(
			grpcprom.WithServerHandlingTimeHistogram(),
		),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kontakt_server_connections_total",
			Help: "API connections accepted, by the transport serving them: grpc (native gRPC) or http (HTTP/1.1 and HTTP/2 through the HTTP server).",
		}, []string{"transport"}),
	}
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		s.grpcMetrics,
		s.connections,
	} {
		if err := s.registry.Register(c); err != nil {
			return nil, fmt.Errorf("server: register metrics: %w", err)
		}
	}

	if cfg.TLS.CertFile != "" {
		if s.tls, err = newTLSConfig(cfg.TLS, logger); err != nil {
			return nil, err
		}
	}

	recoverOpt := recovery.WithRecoveryHandlerContext(recoveryHandler(logger))
	// The request id comes first, so that every line the call logs
	// carries it (requests.go). Recovery is next, so that a panic anywhere
	// in the chain, including in the caller's interceptors, becomes
	// codes.Internal. It is repeated innermost so that a panic in a
	// handler is turned into an error that logging, observers and metrics
	// see, rather than unwinding past them.
	unary := []grpc.UnaryServerInterceptor{
		unaryRequestID(),
		recovery.UnaryServerInterceptor(recoverOpt),
		unaryLogging(logger),
		unaryObserve(s.observersOf),
		s.grpcMetrics.UnaryServerInterceptor(),
		unaryErrorMapping(s.errorTable, logger),
	}
	unary = append(unary, o.unary...)
	unary = append(unary,
		unaryValidation(validator),
		recovery.UnaryServerInterceptor(recoverOpt),
	)
	stream := []grpc.StreamServerInterceptor{
		streamRequestID(),
		recovery.StreamServerInterceptor(recoverOpt),
		endWatchesOnShutdown(s.stopping),
		streamLogging(logger),
		s.grpcMetrics.StreamServerInterceptor(),
		streamErrorMapping(s.errorTable, logger),
		missingRequestIsClientMistake(),
	}
	stream = append(stream, o.stream...)
	stream = append(stream,
		streamValidation(validator),
		recovery.StreamServerInterceptor(recoverOpt),
	)

	grpcOpts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxRequestBytes),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}
	if cfg.Tracing.OTLPEndpoint != "" {
		tp, statsOpt, err := newTracing(cfg.Tracing)
		if err != nil {
			return nil, err
		}
		s.tracer = tp
		grpcOpts = append(grpcOpts, statsOpt)
	}
	s.grpc = grpc.NewServer(grpcOpts...)

	// Not serving until Run has a listener; probes must not pass before.
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	s.handler, err = s.newHTTPHandler(o.httpRoutes)
	if err != nil {
		s.shutdownTracing()
		return nil, err
	}
	return s, nil
}

// RegisterService registers a gRPC service implementation. It makes Server a
// grpc.ServiceRegistrar so that generated RegisterXxxServer functions take
// it directly. Services must be registered before Run: the transcoder for
// gRPC-web, Connect and REST is built from the services registered then, so
// a later registration panics rather than being silently unreachable from
// browsers.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		panic(fmt.Sprintf("server: RegisterService(%s) called after Run or Close", desc.ServiceName))
	}
	s.grpc.RegisterService(desc, impl)
}

// Registrar is what a service registers itself on: its gRPC
// implementation, the error table for its calls, and what wants to know
// how its calls ended. *Server is one.
type Registrar interface {
	grpc.ServiceRegistrar
	MapErrors(service string, table ...ErrorMapping)
	ObserveCalls(method string, fn CallObserver)
}

var _ Registrar = (*Server)(nil)

// MapErrors sets the error table for every call of service (its fully
// qualified name, the ServiceDesc's ServiceName): the server turns a
// handler's error into a status with it (ToStatus), once, so handlers
// return plain errors. One process serves several services, each with its
// own table, chosen by the called method's service; a service without one
// gets only what ToStatus does for every error (statuses pass, context
// errors, NATS briefly away, everything else Internal). It must be called
// before Run, like RegisterService, and Run refuses a table for a service
// that was never registered.
func (s *Server) MapErrors(service string, table ...ErrorMapping) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		panic(fmt.Sprintf("server: MapErrors(%s) called after Run or Close", service))
	}
	s.errorTables[service] = append(s.errorTables[service], table...)
}

// ObserveCalls has fn told how every unary call of method
// ("/package.Service/Method") ended, for a service's own metrics: the
// status code the client got (after the service's error table) and the
// header metadata the handler set. It sees the calls the interceptors
// refuse (authentication, rate limits, validation) as well as the
// handler's answers; a request refused before it became a call (a body
// over the size limit, a REST body that is not JSON) is not one. It must
// be called before Run, like MapErrors.
func (s *Server) ObserveCalls(method string, fn CallObserver) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		panic(fmt.Sprintf("server: ObserveCalls(%s) called after Run or Close", method))
	}
	s.observers[method] = append(s.observers[method], fn)
}

func (s *Server) observersOf(method string) []CallObserver { return s.observers[method] }

// errorTable is the error table of the service that method
// ("/package.Service/Method") belongs to.
func (s *Server) errorTable(method string) []ErrorMapping {
	if i := strings.LastIndexByte(method, '/'); i > 0 {
		return s.errorTables[method[1:i]]
	}
	return nil
}

// SetServing reports whether service (a fully qualified gRPC service name,
// or "" for the whole process) can take traffic, as seen by grpc.health.v1
// Check and Watch. Services call it when a dependency such as the event
// store is lost or regained. After shutdown has begun, every service reports
// NOT_SERVING and further calls have no effect.
func (s *Server) SetServing(service string, serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus(service, st)
}

// Metrics returns the registry that /metrics exposes, so that services can
// add their own collectors next to the gRPC ones. It is per Server, not the
// global Prometheus registry, so that several Servers (tests, the single
// binary) never collide.
func (s *Server) Metrics() prometheus.Registerer {
	return s.registry
}

// ShuttingDown returns a channel that is closed when graceful shutdown
// begins. Handlers of long-lived streams (subscriptions, watches) should
// return when it closes: shutdown waits for every in-flight call, so an
// endless stream would hold it for the full Config.ShutdownTimeout and then
// be cut off.
func (s *Server) ShuttingDown() <-chan struct{} {
	return s.stopping
}

// Listen opens the API port and, if configured, the metrics port, without
// serving yet. The binary calls it before slow start-up work so that a port
// already in use is reported at once. Run calls it if it has not been
// called. Calling it again after success does nothing.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listenLocked()
}

func (s *Server) listenLocked() error {
	if s.state == stateClosed {
		return errors.New("server: Listen after Close")
	}
	if s.ln != nil {
		return nil
	}
	ln, err := listen(s.cfg.ListenAddr, "")
	if err != nil {
		return err
	}
	if s.cfg.MetricsAddr != "" {
		mln, err := listen(s.cfg.MetricsAddr, " (metrics)")
		if err != nil {
			_ = ln.Close()
			return err
		}
		s.metricsLn = mln
	}
	s.ln = ln
	return nil
}

// listen opens a TCP listener and words the error as "listen ADDR: REASON",
// e.g. "listen 127.0.0.1:8080: address already in use", which is what an
// operator needs to see, rather than net's longer nested message.
func listen(addr, what string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		var se *os.SyscallError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("listen %s%s: %w", addr, what, se.Err)
		}
		return nil, fmt.Errorf("listen %s%s: %w", addr, what, err)
	}
	return ln, nil
}

// Addr returns the address the API port listens on, or nil before Listen.
// Tests use it after listening on port 0.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// MetricsAddr returns the address /metrics listens on, or nil before Listen
// or when the metrics endpoint is off.
func (s *Server) MetricsAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

// Run serves until ctx is cancelled, then shuts down gracefully: health
// turns NOT_SERVING, the ports stop accepting, and in-flight calls get up to
// Config.ShutdownTimeout to finish before they are cut off. It returns nil
// after a clean shutdown, and an error if the server could not start, failed
// while serving, or had to cut calls off. A Server runs at most once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	switch s.state {
	case stateRunning:
		s.mu.Unlock()
		return errors.New("server: Run called twice")
	case stateClosed:
		s.mu.Unlock()
		return errors.New("server: Run after Close")
	}
	registered := s.grpc.GetServiceInfo()
	for name := range s.errorTables {
		if _, ok := registered[name]; !ok {
			s.mu.Unlock()
			return fmt.Errorf("server: an error table for %s, which is not registered", name)
		}
	}
	if err := s.listenLocked(); err != nil {
		s.mu.Unlock()
		return err
	}
	s.state = stateRunning
	ln, metricsLn := s.ln, s.metricsLn
	s.mu.Unlock()

	s.services = s.grpc.GetServiceInfo()
	rpc, err := s.newTranscoder()
	if err != nil {
		_ = ln.Close()
		if metricsLn != nil {
			_ = metricsLn.Close()
		}
		s.grpc.Stop()
		s.shutdownTracing()
		s.mu.Lock()
		s.state = stateClosed
		s.mu.Unlock()
		return err
	}
	s.rpc = rpc
	s.grpcMetrics.InitializeMetrics(s.grpc)

	// The port is split by connection (see split.go): native gRPC goes to
	// grpc-go's own transport, everything else to the HTTP server.
	errc := make(chan error, 4)
	apiLn := ln
	if s.tls != nil {
		// Decrypted here, the connections look to the splitter and
		// both servers as they do on a cleartext port (tls.go).
		apiLn = tls.NewListener(ln, s.tls)
	}
	split := newSplitter(apiLn, headerTimeout, s.logger)
	split.counted = func(native bool) {
		transport := "http"
		if native {
			transport = "grpc"
		}
		s.connections.WithLabelValues(transport).Inc()
	}
	api := newHTTPServer(s.handler, s.logger)
	go func() { errc <- fmt.Errorf("server: serve %s: %w", ln.Addr(), api.Serve(split.http)) }()
	go func() { errc <- fmt.Errorf("server: serve native gRPC on %s: %w", ln.Addr(), s.grpc.Serve(split.grpc)) }()
	go func() { errc <- fmt.Errorf("server: accept on %s: %w", ln.Addr(), split.run()) }()
	var metrics *http.Server
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
		mux.HandleFunc("GET /healthz", s.handleHealthz)
		mux.HandleFunc("GET /readyz", s.handleReadyz)
		metrics = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
		}
		go func() { errc <- fmt.Errorf("server: serve metrics %s: %w", metricsLn.Addr(), metrics.Serve(metricsLn)) }()
	}

	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	attrs := []any{slog.String("addr", ln.Addr().String()), slog.Bool("tls", s.tls != nil)}
	if metricsLn != nil {
		attrs = append(attrs, slog.String("metrics_addr", metricsLn.Addr().String()))
	}
	s.logger.Info("serving gRPC, gRPC-web, Connect and REST", attrs...)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		// Serve returns only on failure until Shutdown is called.
		s.logger.Error("serving failed; shutting down", slog.String("error", serveErr.Error()))
	}
	return errors.Join(serveErr, s.shutdown(ln, api, metrics))
}

// shutdown stops serving in the order that lets in-flight calls finish.
//
// The port stops accepting connections first. grpc.Server.GracefulStop
// alone is not enough then: some calls arrive through the HTTP server and
// ServeHTTP, and grpc-go "drains" such a call by closing it, which cancels
// its context. So the HTTP server is shut down next; it waits for every
// active request, gRPC through ServeHTTP included, to complete. Only then
// is the gRPC server stopped gracefully: calls on its own connections
// finish, and those connections are told to go away.
func (s *Server) shutdown(ln net.Listener, api, metrics *http.Server) error {
	s.health.Shutdown()
	close(s.stopping)
	s.logger.Info("shutting down", slog.Duration("timeout", s.cfg.ShutdownTimeout))

	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()

	_ = ln.Close()
	var errs []error
	if err := api.Shutdown(ctx); err != nil {
		_ = api.Close()
		s.grpc.Stop()
		errs = append(errs, fmt.Errorf("server: in-flight calls did not finish within %s and were cut off: %w", s.cfg.ShutdownTimeout, err))
	} else {
		stopped := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-ctx.Done():
			// A call on a native gRPC connection is still running, or a
			// handler whose HTTP request has ended; do not wait for it.
			s.grpc.Stop()
			errs = append(errs, fmt.Errorf("server: in-flight calls did not finish within %s and were cut off: %w", s.cfg.ShutdownTimeout, ctx.Err()))
		}
	}
	if metrics != nil {
		if err := metrics.Shutdown(ctx); err != nil {
			_ = metrics.Close()
		}
	}
	s.shutdownTracing()

	s.mu.Lock()
	s.state = stateClosed
	s.mu.Unlock()

	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	s.logger.Info("shut down cleanly")
	return nil
}

// Close releases the ports and the tracer of a Server that will not Run, for
// example when start-up fails after Listen. It is a no-op on a closed Server
// and an error on a running one, which is stopped by cancelling Run's
// context instead.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateRunning:
		return errors.New("server: Close on a running server; cancel Run's context instead")
	case stateClosed:
		return nil
	}
	s.state = stateClosed
	var errs []error
	if s.ln != nil {
		errs = append(errs, s.ln.Close())
	}
	if s.metricsLn != nil {
		errs = append(errs, s.metricsLn.Close())
	}
	s.grpc.Stop()
	s.shutdownTracing()
	return errors.Join(errs...)
}

// shutdownTracing flushes buffered spans so that the last calls before a
// restart are not lost.
func (s *Server) shutdownTracing() {
	if s.tracer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), tracerFlushTimeout)
	defer cancel()
	if err := s.tracer.Shutdown(ctx); err != nil {
		s.logger.Warn("flushing traces failed", slog.String("error", err.Error()))
	}
}
