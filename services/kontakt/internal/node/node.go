// Package node builds one kontakt process: the event store (embedded NATS
// or an external cluster), identity, the one-port server, and the four
// services. It is the composition root, the only place that imports the
// service modules; the services themselves never import each other.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"buf.build/go/protovalidate"

	natsgo "github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/kontakt-se/kontakt/pkg/accesspolicy"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/audit"
	"github.com/kontakt-se/kontakt/pkg/auth"
	"github.com/kontakt-se/kontakt/pkg/blindindex"
	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
	"github.com/kontakt-se/kontakt/pkg/natsserver"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/server"
	"github.com/kontakt-se/kontakt/services/intake/adapters/casenumber"
	"github.com/kontakt-se/kontakt/services/intake/adapters/idempotency"
	intakeapp "github.com/kontakt-se/kontakt/services/intake/app"
	intakeports "github.com/kontakt-se/kontakt/services/intake/ports"
	retentionports "github.com/kontakt-se/kontakt/services/retention/ports"
	"github.com/kontakt-se/kontakt/services/routing/adapters/readmodel"
	routingapp "github.com/kontakt-se/kontakt/services/routing/app"
	routingdomain "github.com/kontakt-se/kontakt/services/routing/domain"
	routingports "github.com/kontakt-se/kontakt/services/routing/ports"
	"github.com/kontakt-se/kontakt/services/statistics"
)

// Node is a built process, ready to run.
type Node struct {
	cfg    config.Config
	logger *slog.Logger
	srv    *server.Server
	nats   *natsserver.Server
	conn   *natsgo.Conn
	// background runs beside the server: projectors and the router.
	background []func(context.Context) error
	closers    []func() error
}

// services are the four kontakt services, for the access policy and for
// health reporting.
func services() []protoreflect.ServiceDescriptor {
	return []protoreflect.ServiceDescriptor{
		intakev1.File_kontakt_intake_v1_intake_proto.Services().Get(0),
		routingv1.File_kontakt_routing_v1_routing_proto.Services().Get(0),
		retentionv1.File_kontakt_retention_v1_retention_proto.Services().Get(0),
		statisticsv1.File_kontakt_statistics_v1_statistics_proto.Services().Get(0),
	}
}

// NewLogger builds the structured logger. Handlers never log request
// bodies, so personal data cannot reach it through the server.
func NewLogger(cfg config.Log, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		return nil, fmt.Errorf("config key log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// Build checks the environment and constructs everything. It fails fast
// and with one clear message on the usual start-up mistakes: a data
// directory that cannot be written, a port in use, an unreachable NATS.
func Build(ctx context.Context, cfg config.Config, logger *slog.Logger, lookupEnv func(string) (string, bool)) (_ *Node, err error) {
	n := &Node{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	if err := checkWritableDir(cfg.DataDir); err != nil {
		return nil, err
	}

	verifier, err := newVerifier(ctx, cfg)
	if err != nil {
		return nil, err
	}
	policy, err := accesspolicy.FromServices(services()...)
	if err != nil {
		return nil, err
	}
	authn := auth.NewInterceptor(verifier, auth.PublicMethods(policy), logger)
	// Plain HTTP routes (Open311) are mounted now and bound once the
	// services exist, so the port can be taken before NATS starts.
	open311 := &deferredHandler{}

	n.srv, err = server.New(server.Config{
		ListenAddr:      cfg.Listen,
		MetricsAddr:     cfg.MetricsListen,
		AllowedOrigins:  cfg.CORS.AllowedOrigins,
		MaxRequestBytes: cfg.Limits.MaxRequestBytes,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Tracing: server.TracingConfig{
			OTLPEndpoint: cfg.Tracing.OTLPEndpoint,
			Insecure:     cfg.Tracing.Insecure,
			ServiceName:  "kontakt",
		},
	}, logger,
		server.WithUnaryInterceptors(authn.Unary()),
		server.WithStreamInterceptors(authn.Stream()),
		server.WithHTTPHandler(open311Prefix+"/", open311),
	)
	if err != nil {
		return nil, err
	}
	// Take the port before starting NATS, so a port in use is reported at
	// once and nothing is left half-started.
	if err := n.srv.Listen(); err != nil {
		return nil, err
	}
	// The master key is read (or, in development, created) only once the
	// port is ours, so a failed start leaves nothing behind.
	master, err := seal.LoadMasterKey(cfg.MasterKeyPath(), lookupEnv, cfg.Mode == config.Development)
	if err != nil {
		return nil, err
	}
	if master.Created() {
		logger.Warn("created a development master key; losing it makes all sealed personal data unreadable", "origin", master.Origin())
	}

	b, err := n.openBackends(ctx, master)
	if err != nil {
		return nil, err
	}
	store, sealer, js := b.Store, b.Sealer, b.JS
	validator, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("protovalidate: %w", err)
	}
	clock := time.Now
	if off := cfg.Retention.DevClockOffset; off != 0 {
		// Validation refused this outside development mode.
		clock = func() time.Time { return time.Now().Add(off) }
		logger.Warn("development clock offset: every component runs ahead of real time", "offset", off.String())
	}
	plan, err := loadPlan(cfg)
	if err != nil {
		return nil, err
	}
	auditLog, err := audit.New(ctx, js, audit.Config{Replicas: cfg.NATS.Replicas, Retention: auditRetention(plan)})
	if err != nil {
		return nil, err
	}
	intake, err := n.buildIntake(ctx, js, store, sealer, master, clock)
	if err != nil {
		return nil, err
	}

	routing, err := n.buildRouting(ctx, store, sealer, master, auditLog, clock)
	if err != nil {
		return nil, err
	}
	reg := n.srv // the server is a grpc.ServiceRegistrar
	intakeports.Register(reg, intakeports.NewServer(intake, validator, clock, logger))
	open311Services := make([]intakeports.Open311Service, 0, len(cfg.Intake.Open311Services))
	for _, s := range cfg.Intake.Open311Services {
		open311Services = append(open311Services, intakeports.Open311Service{Code: s.Code, Name: s.Name, Description: s.Description, Group: s.Group})
	}
	open311.set(intakeports.NewOpen311(open311Prefix, intake, validator, verifier, open311Services, clock, logger))
	routingports.Register(reg, routing)
	retention, err := n.buildRetention(ctx, store, sealer, master, js, auditLog, plan, clock)
	if err != nil {
		return nil, err
	}
	retentionports.Register(reg, retentionports.NewServer(retention, logger.With("service", "retention")))
	stats, err := statistics.New(ctx, statistics.Config{
		DataDir:  filepath.Join(cfg.DataDir, "statistics"),
		Replicas: cfg.NATS.Replicas,
	}, store, js, logger.With("service", "statistics"), statistics.WithShutdown(n.srv.ShuttingDown()))
	if err != nil {
		return nil, fmt.Errorf("statistics: %w", err)
	}
	n.closers = append(n.closers, stats.Close)
	n.background = append(n.background, stats.Run)
	stats.Register(reg)
	for _, svc := range services() {
		n.srv.SetServing(string(svc.FullName()), true)
	}
	return n, nil
}

// open311Prefix is where the GeoReport v2 endpoints live.
const open311Prefix = "/open311/v2"

func (n *Node) buildIntake(ctx context.Context, js natsjs.JetStream, store intakeapp.EventStore, sealer *seal.Sealer, master seal.MasterKey, clock func() time.Time) (*intakeapp.Service, error) {
	numbers, err := casenumber.New(ctx, js, casenumber.Config{Replicas: n.cfg.NATS.Replicas})
	if err != nil {
		return nil, fmt.Errorf("case numbers: %w", err)
	}
	idem, err := idempotency.New(ctx, js, idempotency.Config{Replicas: n.cfg.NATS.Replicas})
	if err != nil {
		return nil, fmt.Errorf("idempotency records: %w", err)
	}
	payloadKey, err := master.DeriveKey("kontakt/intake/idempotency-payload")
	if err != nil {
		return nil, err
	}
	return intakeapp.NewService(store, sealer, numbers, idem, clock, n.logger.With("service", "intake"), intakeapp.Config{PayloadKey: payloadKey})
}

// deferredHandler lets an HTTP route be mounted before the handler behind
// it can be built; until then it answers 503.
type deferredHandler struct {
	h atomic.Pointer[http.Handler]
}

func (d *deferredHandler) set(h http.Handler) { d.h.Store(&h) }

func (d *deferredHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := d.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	http.Error(w, "starting", http.StatusServiceUnavailable)
}

// Run serves until ctx is cancelled, then drains in-flight calls, stops
// the projectors, and stops NATS last, so no call loses its store
// half-way.
func (n *Node) Run(ctx context.Context) error {
	defer n.close()
	bg, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range n.background {
		wg.Go(func() {
			if err := run(bg); err != nil {
				n.logger.Error("background worker stopped", "error", err)
			}
		})
	}
	n.logger.Info("kontakt serving", "listen", n.srv.Addr().String(), "mode", string(n.cfg.Mode), "data_dir", n.cfg.DataDir)
	err := n.srv.Run(ctx)
	stop()
	wg.Wait()
	return err
}

// Routing is the routing service's read side and workers, built apart
// from the server so `kontakt rebuild routing` can use them offline.
type Routing struct {
	ReadModel *readmodel.Store
	Projector *readmodel.Projector
}

// OpenRouting opens routing's read model and its projector. onChange
// receives every applied change (nil: none).
func OpenRouting(cfg config.Config, store *jetstream.Store, sealer *seal.Sealer, master seal.MasterKey, clock func() time.Time, logger *slog.Logger, onChange func(readmodel.Change)) (*Routing, *blindindex.Index, error) {
	blindKey, err := master.DeriveKey(blindindex.KeyPurpose)
	if err != nil {
		return nil, nil, err
	}
	blind, err := blindindex.New(blindKey)
	if err != nil {
		return nil, nil, err
	}
	dir := filepath.Join(cfg.DataDir, "routing")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("routing read model directory %s: %w", dir, unwrapPath(err))
	}
	rm, err := readmodel.Open(filepath.Join(dir, "readmodel.db"), readmodel.Options{
		Tokenizer: routingapp.NewTokenizer(sealer, blind, clock),
		OnChange:  onChange,
	})
	if err != nil {
		return nil, nil, err
	}
	proj := readmodel.NewProjector(store, rm, logger.With("component", "routing-projector"), readmodel.WithHead(store.Head))
	return &Routing{ReadModel: rm, Projector: proj}, blind, nil
}

func (n *Node) buildRouting(ctx context.Context, store *jetstream.Store, sealer *seal.Sealer, master seal.MasterKey, auditLog *audit.Log, clock func() time.Time) (*routingports.Server, error) {
	queueCfg := make([]routingapp.Queue, 0, len(n.cfg.Routing.Queues))
	for _, q := range n.cfg.Routing.Queues {
		queueCfg = append(queueCfg, routingapp.Queue{Name: q.Name, Title: q.Title, Department: q.Department, Members: q.Members})
	}
	queues := routingapp.NewQueues(queueCfg)
	rules, err := loadRules(n.cfg, queues.Names())
	if err != nil {
		return nil, err
	}
	logger := n.logger.With("service", "routing")
	cmds := routingapp.NewCommands(store, sealer, clock, logger)
	broker := routingapp.NewBroker()
	var router *routingapp.Router
	r, blind, err := OpenRouting(n.cfg, store, sealer, master, clock, logger, func(c readmodel.Change) {
		broker.Publish(c)
		router.Observe(c)
	})
	if err != nil {
		return nil, err
	}
	n.closers = append(n.closers, r.ReadModel.Close)
	if r.ReadModel.NeedsRebuild() {
		// The file was written with another layout or SLA; its due times
		// and indexes cannot be trusted, so replay the log before serving.
		logger.Warn("routing read model was built with other settings; rebuilding it from the event log")
		if err := r.Projector.Rebuild(ctx, nil); err != nil {
			return nil, fmt.Errorf("rebuild routing read model: %w", err)
		}
	}
	router = routingapp.NewRouter(cmds, rules, r.ReadModel, logger)
	n.background = append(n.background, r.Projector.Run, router.Run)
	queries := routingapp.NewQueries(r.ReadModel, sealer, auditLog, blind, queues, clock)
	return routingports.NewServer(queues, cmds, queries, broker, n.srv.ShuttingDown(), logger), nil
}

// loadRules reads the routing rule file, or uses the built-in rules.
func loadRules(cfg config.Config, queues []string) (*routingdomain.Rules, error) {
	if cfg.Routing.RulesFile == "" {
		return routingdomain.DefaultRules(queues[0], queues...), nil
	}
	data, err := os.ReadFile(cfg.Routing.RulesFile)
	if err != nil {
		return nil, fmt.Errorf("config key routing.rules_file: %w", err)
	}
	rules, err := routingdomain.ParseRulesFile(cfg.Routing.RulesFile, data, queues)
	if err != nil {
		// One line: the rule file's problems, joined.
		return nil, errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return rules, nil
}

// Addr is the address the server listens on.
func (n *Node) Addr() net.Addr { return n.srv.Addr() }

func (n *Node) close() {
	for _, c := range n.closers {
		if err := c(); err != nil {
			n.logger.Warn("close", "error", err)
		}
	}
	n.closers = nil
	if n.conn != nil {
		// Drain is asynchronous: wait until it has flushed and closed, so
		// the server is not shut down under a live connection.
		if err := n.conn.Drain(); err == nil {
			deadline := time.Now().Add(5 * time.Second)
			for !n.conn.IsClosed() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
		n.conn.Close()
		n.conn = nil
	}
	if n.nats != nil {
		n.nats.Shutdown()
		n.nats = nil
	}
}

func (n *Node) connectNATS(ctx context.Context) error {
	if n.cfg.NATS.URL != "" {
		opts := []natsgo.Option{natsgo.Name("kontakt"), natsgo.MaxReconnects(-1)}
		if n.cfg.NATS.CredentialsFile != "" {
			opts = append(opts, natsgo.UserCredentials(n.cfg.NATS.CredentialsFile))
		}
		conn, err := natsgo.Connect(n.cfg.NATS.URL, opts...)
		if err != nil {
			return fmt.Errorf("connect to NATS at %s: %w", redactURL(n.cfg.NATS.URL), err)
		}
		n.conn = conn
		return nil
	}
	ncfg := natsserver.Config{
		StoreDir:   filepath.Join(n.cfg.DataDir, "nats"),
		ServerName: "kontakt",
		Logger:     n.logger.With("component", "nats"),
	}
	if n.cfg.NATS.EmbeddedListen == "" {
		ncfg.InProcessOnly = true
	} else {
		host, port, err := net.SplitHostPort(n.cfg.NATS.EmbeddedListen)
		if err != nil {
			return fmt.Errorf("config key nats.embedded_listen: %w", err)
		}
		ncfg.Host = host
		if _, err := fmt.Sscanf(port, "%d", &ncfg.Port); err != nil {
			return fmt.Errorf("config key nats.embedded_listen: port %q is not a number", port)
		}
	}
	ns, err := natsserver.Start(ctx, ncfg)
	if err != nil {
		return err
	}
	n.nats = ns
	conn, err := ns.Connect(natsgo.Name("kontakt"))
	if err != nil {
		return fmt.Errorf("connect to embedded NATS: %w", err)
	}
	n.conn = conn
	return nil
}

func newVerifier(ctx context.Context, cfg config.Config) (auth.Verifier, error) {
	if cfg.Mode == config.Production || cfg.Auth.OIDC.Issuer != "" {
		return auth.NewOIDCVerifier(ctx, auth.OIDCConfig{
			Issuer:     cfg.Auth.OIDC.Issuer,
			Audience:   cfg.Auth.OIDC.Audience,
			JWKSURL:    cfg.Auth.OIDC.JWKSURL,
			RolesClaim: cfg.Auth.OIDC.RolesClaim,
		})
	}
	key, err := auth.LoadOrCreateDevKey(cfg.DevKeyPath())
	if err != nil {
		return nil, err
	}
	return key.Verifier(time.Now), nil
}

// checkWritableDir creates the data directory if needed and proves that it
// can be written, so a permission problem is one clear line at start-up
// rather than a failure deep inside JetStream.
func checkWritableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("data directory %s: %w", dir, unwrapPath(err))
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("data directory %s is not writable: %w", dir, unwrapPath(err))
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// redactURL drops credentials from a NATS URL before it is printed.
func redactURL(u string) string {
	if at := strings.LastIndex(u, "@"); at >= 0 {
		if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
			return u[:scheme+3] + "***" + u[at:]
		}
	}
	return u
}
