// Package host is what every kontakt process is built on: the one-port
// server with identity, the master key, the NATS connection (an embedded
// server or an external cluster), the event store, the key store and the
// sealer, the clock, and the background workers with an orderly shutdown.
// The single binary hosts all four services in one Host; each service's
// own binary (services/<name>/cmd) hosts one. Services mount themselves on
// a Host; they never import each other.
package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"buf.build/go/protovalidate"
	natsgo "github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/kontakt-se/kontakt/pkg/accesspolicy"
	"github.com/kontakt-se/kontakt/pkg/auth"
	"github.com/kontakt-se/kontakt/pkg/blindindex"
	"github.com/kontakt-se/kontakt/pkg/buildinfo"
	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/eventstore/esdb"
	"github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
	"github.com/kontakt-se/kontakt/pkg/natsserver"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/ratelimit"
	"github.com/kontakt-se/kontakt/pkg/reqlog"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/server"
	"github.com/kontakt-se/kontakt/pkg/shredjournal"
)

// The stream, and the subjects of it, that the embedded NATS server's
// analyst user may read: the statistics records, which hold no personal
// data (services/statistics/adapters/stream; a test in
// services/kontakt/internal/node keeps the two in step, since pkg cannot
// import a service).
const (
	AnalystStream   = "KONTAKT_STATS"
	AnalystSubjects = "kontakt.stats.>"
)

// EventStore is the event store as the services need it: the interface
// every backend implements, and the position of the last event (where a
// read-model rebuild stops).
type EventStore interface {
	eventstore.Store
	Head(ctx context.Context) (eventstore.Position, error)
}

// Options say what a process hosts.
type Options struct {
	// Name is the process's name in logs, traces and its NATS connection
	// ("kontakt", "kontakt-intake").
	Name string
	// Services are the gRPC services the process serves: they decide the
	// access policy (default deny) and the health entries.
	Services []protoreflect.ServiceDescriptor
	// HTTPPrefixes are plain HTTP routes (for example Open311) that a
	// service mounts later with Mount; they answer 503 until then.
	HTTPPrefixes []string
	// RequireExternalNATS refuses the embedded server: a service that
	// runs as its own process shares the event store with the others, so
	// it must connect to the cluster (nats.url).
	RequireExternalNATS bool
	// Reload loads the configuration again exactly as at start-up (file,
	// environment, flags, validation). With it, SIGHUP applies what can
	// change while running (see OnReload); without it SIGHUP keeps its
	// default effect.
	Reload func() (config.Config, error)
	// Offline builds the process without serving, for admin commands that
	// run the services' own code on a stopped data directory (`kontakt
	// backup` with no server, `kontakt restore`): no port is taken, no
	// token is accepted (the identity provider is not asked), the embedded
	// NATS server opens no port, and the master key must exist (a missing
	// one is never created). Run is refused; CatchUp runs the workers.
	Offline bool
	// AfterConnect, when set, runs once NATS is connected and before the
	// event store and the key store open their streams: `kontakt restore`
	// restores the streams from their snapshots there, which JetStream
	// allows only for streams that do not exist yet.
	AfterConnect func(ctx context.Context, conn *natsgo.Conn) error
}

// ReadModel is a read model a service keeps in files under the data
// directory, as `kontakt backup` and `kontakt restore` see it: the files
// to copy while the process runs, and how far the model has followed the
// log (a restore brings every read model up to the log's head before
// anything serves).
type ReadModel struct {
	// Name names the read model in progress output and the manifest.
	Name string
	// Checkpoint is the log position of the last event it applied.
	Checkpoint func() (eventstore.Position, error)
	// Files are its files, in the order they must be copied.
	Files []ReadModelFile
	// Projection is the runner that keeps it up to date with the log
	// (pkg/projection): its metrics go to the process's registry, and
	// `kontakt rebuild` rebuilds the model through it.
	Projection *projection.Runner
}

// ReadModelFile is one file of a read model.
type ReadModelFile struct {
	// Path is the file's path relative to the data directory.
	Path string
	// WriteTo writes a consistent copy of the file (bbolt's copy in a
	// read transaction): a running process's files cannot be copied from
	// outside it.
	WriteTo func(w io.Writer) (int64, error)
}

// ReloadFunc checks a reloaded configuration for one part of the process
// and returns how to apply it. It must change nothing itself: the process
// applies every part's commit only when every part accepted the
// configuration, so a bad file changes nothing anywhere.
type ReloadFunc func(config.Config) (commit func(), err error)

// Host is a built process, ready for services to mount and then to run.
type Host struct {
	// Config is the process's configuration.
	Config config.Config
	// Logger never receives request bodies or personal data.
	Logger *slog.Logger
	// Clock is every component's clock: real time, or in development mode
	// real time plus retention.dev_clock_offset.
	Clock func() time.Time
	// Server serves gRPC, gRPC-web, Connect and REST on one port; it is
	// the grpc.ServiceRegistrar services register on.
	Server *server.Server
	// Verifier checks bearer tokens (OIDC, or the development key).
	Verifier auth.Verifier
	// Validator runs the protovalidate rules of the API.
	Validator protovalidate.Validator
	// Master wraps every case's data keys and derives service keys.
	Master seal.MasterKey
	// JS is the JetStream context of the process's NATS connection.
	JS natsjs.JetStream
	// Store is the event store of case events: JetStream or EventStoreDB.
	Store EventStore
	// Sealer seals and opens personal data.
	Sealer *seal.Sealer
	// Submissions rate-limits public submissions (limits.public_submissions):
	// the server applies it to the RPCs the API marks public_submission;
	// plain HTTP routes that take submissions (Open311) ask it themselves.
	Submissions *ratelimit.Limiter
	// LookupEnv reads the process's environment, for secrets a service
	// takes from a variable rather than the file (the mail relay's
	// password).
	LookupEnv func(string) (string, bool)

	// keys is the key store behind Sealer.
	keys *seal.NATSKeyStore

	opts       Options
	readModels []ReadModel
	journal    *shredjournal.Journal
	reloads    []ReloadFunc
	reloadMu   sync.Mutex
	nats       *natsserver.Server
	// lock holds the data directory against a second process (lock.go).
	lock       *os.File
	conn       *natsgo.Conn
	http       map[string]*deferredHandler
	background []func(context.Context) error
	closers    []func() error
}

// NewLogger builds the structured logger from the configuration. Every
// line logged with a request's context carries the request's id and the
// caller's subject (pkg/reqlog), whoever logs it.
func NewLogger(cfg config.Log, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		return nil, fmt.Errorf("config key log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		// A log pipeline reads numbers, and slog writes a duration as
		// integer nanoseconds: every duration goes out in seconds instead,
		// the unit Prometheus and most log stores use.
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				return slog.Float64(a.Key, a.Value.Duration().Seconds())
			}
			return a
		}
		return slog.New(reqlog.Handler(slog.NewJSONHandler(w, opts))), nil
	}
	return slog.New(reqlog.Handler(slog.NewTextHandler(w, opts))), nil
}

// Open checks the environment and builds the process: it fails fast, with
// one clear message, on the usual start-up mistakes (a data directory
// that cannot be written, a port in use, an unreachable NATS, a missing
// master key in production). On error nothing is left running.
func Open(ctx context.Context, cfg config.Config, logger *slog.Logger, lookupEnv func(string) (string, bool), opts Options) (_ *Host, err error) {
	if opts.Name == "" {
		opts.Name = "kontakt"
	}
	h := &Host{Config: cfg, Logger: logger, LookupEnv: lookupEnv, opts: opts, http: map[string]*deferredHandler{}}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	if opts.RequireExternalNATS && cfg.NATS.URL == "" {
		return nil, fmt.Errorf("config key nats.url: %s runs as its own process and shares the event store with the other services, so it needs the NATS cluster's URL", opts.Name)
	}
	if err := checkWritableDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if h.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	h.Clock = time.Now
	if off := cfg.Retention.DevClockOffset; off != 0 {
		// Validation refused this outside development mode.
		h.Clock = func() time.Time { return time.Now().Add(off) }
		logger.Warn("development clock offset: every component runs ahead of real time", "offset", off.String())
	}
	var verifier auth.Verifier = refuseAll{}
	if !opts.Offline {
		if verifier, err = newVerifier(ctx, cfg, logger); err != nil {
			return nil, err
		}
	}
	if c, ok := verifier.(io.Closer); ok {
		// Stops the OIDC key set's schedule.
		h.closers = append(h.closers, c.Close)
	}
	// Clients send the same token with every call; check each one's
	// signature once a minute rather than on every call.
	h.Verifier = auth.NewCachingVerifier(verifier, time.Minute, 10000, time.Now)
	policy, err := accesspolicy.FromServices(opts.Services...)
	if err != nil {
		return nil, err
	}
	authn := auth.NewInterceptor(h.Verifier, auth.PublicMethods(policy), logger)
	if h.Submissions, err = newSubmissionLimiter(cfg.Limits.PublicSubmissions); err != nil {
		return nil, err
	}
	// The limit runs after authentication (it needs the credential) and
	// before validation (an invalid submission costs a token too).
	limited := accesspolicy.PublicSubmissions(opts.Services...)
	serverOpts := []server.Option{
		server.WithUnaryInterceptors(authn.Unary(), h.Submissions.UnaryServerInterceptor(limited)),
		server.WithStreamInterceptors(authn.Stream(), h.Submissions.StreamServerInterceptor(limited)),
	}
	for _, prefix := range opts.HTTPPrefixes {
		d := &deferredHandler{}
		h.http[prefix] = d
		serverOpts = append(serverOpts, server.WithHTTPHandler(prefix+"/", d))
	}
	h.Server, err = server.New(server.Config{
		ListenAddr:      cfg.Listen,
		MetricsAddr:     cfg.MetricsListen,
		AllowedOrigins:  cfg.CORS.AllowedOrigins,
		TLS:             server.TLSConfig{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile},
		MaxRequestBytes: cfg.Limits.MaxRequestBytes,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Tracing: server.TracingConfig{
			OTLPEndpoint: cfg.Tracing.OTLPEndpoint,
			Insecure:     cfg.Tracing.Insecure,
			ServiceName:  opts.Name,
		},
	}, logger, serverOpts...)
	if err != nil {
		return nil, err
	}
	if err := h.Server.Metrics().Register(buildinfo.Read().Collector()); err != nil {
		return nil, fmt.Errorf("build info metric: %w", err)
	}
	if m, ok := verifier.(interface{ Collectors() []prometheus.Collector }); ok {
		for _, c := range m.Collectors() {
			if err := h.Server.Metrics().Register(c); err != nil {
				return nil, fmt.Errorf("auth metrics: %w", err)
			}
		}
	}
	// Take the port before starting NATS, so a port in use is reported at
	// once and nothing is left half-started.
	if !opts.Offline {
		if err := h.Server.Listen(); err != nil {
			return nil, err
		}
	}
	// The master key is read (or, in development, created) only once the
	// port is ours, so a failed start leaves nothing behind.
	h.Master, err = seal.LoadMasterKey(cfg.MasterKeyPath(), lookupEnv, cfg.Mode == config.Development && !opts.Offline)
	if err != nil {
		return nil, err
	}
	if h.Master.Created() {
		logger.Warn("created a development master key; losing it makes all sealed personal data unreadable", "origin", h.Master.Origin())
	}
	if err := h.openBackends(ctx); err != nil {
		return nil, err
	}
	h.Server.AddReadinessCheck("nats", h.natsReady)
	if js, err := natsjs.New(h.conn); err == nil {
		if err := h.Server.Metrics().Register(newStreamCollector(js)); err != nil {
			return nil, fmt.Errorf("NATS storage metrics: %w", err)
		}
	}
	if h.Validator, err = protovalidate.New(); err != nil {
		return nil, fmt.Errorf("protovalidate: %w", err)
	}
	return h, nil
}

// OpenBackends starts (or connects to) NATS and opens the stores, without
// a server: for admin commands that run while the server is stopped (the
// embedded NATS store and the read models are locked by a running one).
func OpenBackends(ctx context.Context, cfg config.Config, logger *slog.Logger, lookupEnv func(string) (string, bool)) (_ *Host, err error) {
	h := &Host{Config: cfg, Logger: logger, Clock: time.Now, opts: Options{Name: "kontakt-admin"}}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	if err := checkWritableDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if h.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if h.Master, err = seal.LoadMasterKey(cfg.MasterKeyPath(), lookupEnv, false); err != nil {
		return nil, err
	}
	return h, h.openBackends(ctx)
}

// openBackends connects to NATS (starting the embedded server when no URL
// is configured) and opens the event store and the key store.
func (h *Host) openBackends(ctx context.Context) error {
	if err := h.connectNATS(ctx); err != nil {
		return err
	}
	if h.opts.AfterConnect != nil {
		if err := h.opts.AfterConnect(ctx, h.conn); err != nil {
			return err
		}
	}
	js, err := natsjs.New(h.conn)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	h.JS = js
	switch h.Config.EventStore.Backend {
	case "esdb":
		s, err := esdb.New(esdb.Config{URL: h.Config.EventStore.ESDBURL, Logger: h.Logger.With("component", "esdb")})
		if err != nil {
			return fmt.Errorf("config key event_store.esdb_url: %w", err)
		}
		h.Store = s
		h.closers = append(h.closers, s.Close)
	default:
		s, err := jetstream.New(ctx, js, jetstream.Config{Replicas: h.Config.NATS.Replicas})
		if err != nil {
			return fmt.Errorf("event store: %w", err)
		}
		h.Store = s
	}
	keys, err := seal.NewNATSKeyStore(ctx, js, seal.NATSKeyStoreConfig{Replicas: h.Config.NATS.Replicas})
	if err != nil {
		return fmt.Errorf("key store: %w", err)
	}
	h.keys = keys
	h.Sealer, err = seal.NewSealer(keys, h.Master)
	return err
}

// SnapshotSealer returns a Sealer that opens personal data with the keys
// as the key store holds them now, read in one pass (seal.NATSKeyStore's
// Snapshot), and that can neither make nor destroy a key. It is for a
// replay of the whole log on a stopped data directory (`kontakt rebuild`
// of a read model whose projection only opens data); the live Sealer asks
// the store once per case.
func (h *Host) SnapshotSealer(ctx context.Context) (*seal.Sealer, error) {
	if h.keys == nil {
		return nil, errors.New("host: no key store open")
	}
	snap, err := h.keys.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return seal.NewSealer(snap, h.Master)
}

// BlindIndex returns the blind index keyed from the master key: every
// service that finds a person's cases must compute the same tokens.
func (h *Host) BlindIndex() (*blindindex.Index, error) {
	key, err := h.Master.DeriveKey(blindindex.KeyPurpose)
	if err != nil {
		return nil, err
	}
	return blindindex.New(key)
}

// Mount binds the handler of a plain HTTP route declared in
// Options.HTTPPrefixes.
func (h *Host) Mount(prefix string, handler http.Handler) error {
	d, ok := h.http[prefix]
	if !ok {
		return fmt.Errorf("host: HTTP prefix %s was not declared in Options.HTTPPrefixes", prefix)
	}
	d.set(handler)
	return nil
}

// AddReadModel declares a read model the process keeps under the data
// directory, for `kontakt backup`, `kontakt restore` and `kontakt
// rebuild`, and registers its projection's metrics
// (kontakt_projection_lag_events and the others, labelled with its name).
func (h *Host) AddReadModel(rm ReadModel) error {
	if rm.Projection != nil && h.Server != nil {
		for _, c := range rm.Projection.Collectors() {
			if err := h.Server.Metrics().Register(c); err != nil {
				return fmt.Errorf("host: metrics of the %s read model: %w", rm.Name, err)
			}
		}
		// Ready only while the read model keeps up: a replica whose
		// queues or statistics are far behind the log must get no traffic.
		bound := h.Config.Health.MaxProjectionLag
		runner := rm.Projection
		h.Server.AddReadinessCheck("projection "+rm.Name, func(context.Context) error {
			if lag := runner.Lag(); lag > float64(bound) {
				return fmt.Errorf("%.0f events behind the log (health.max_projection_lag %d)", lag, bound)
			}
			return nil
		})
	}
	h.readModels = append(h.readModels, rm)
	return nil
}

// ReadModels returns the read models the services declared, in the order
// they were mounted.
func (h *Host) ReadModels() []ReadModel { return slices.Clone(h.readModels) }

// SetJournal declares the shred journal the process writes (retention
// does): one process holds a journal, so a backup taken in it marks the
// journal through this one.
func (h *Host) SetJournal(j *shredjournal.Journal) { h.journal = j }

// Journal is the shred journal the process writes, or nil.
func (h *Host) Journal() *shredjournal.Journal { return h.journal }

// Offline says the process was built without serving (backup, restore):
// a service then starts no listener of its own (the mail receiver), as
// CatchUp runs every background worker.
func (h *Host) Offline() bool { return h.opts.Offline }

// Go adds a background worker (a projector, a router, a sweeper). It runs
// beside the server from Run until shutdown.
func (h *Host) Go(run func(context.Context) error) { h.background = append(h.background, run) }

// OnReload adds a part that a reloaded configuration may change (SIGHUP,
// or Reload).
func (h *Host) OnReload(f ReloadFunc) { h.reloads = append(h.reloads, f) }

// ErrReloadUnsupported is returned by Reload for a process built without
// Options.Reload.
var ErrReloadUnsupported = errors.New("this process cannot reload its configuration")

// Reload loads the configuration again and applies it: every part checks
// it first, and only if all accept is any of it applied. On error the
// running configuration stays as it was, entirely. Keys that no part
// takes (listen, nats, …) take effect at the next start.
func (h *Host) Reload() error {
	if h.opts.Reload == nil {
		return ErrReloadUnsupported
	}
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	cfg, err := h.opts.Reload()
	if err != nil {
		return err
	}
	commits := make([]func(), 0, len(h.reloads))
	for _, prepare := range h.reloads {
		commit, err := prepare(cfg)
		if err != nil {
			return err
		}
		commits = append(commits, commit)
	}
	for _, commit := range commits {
		commit()
	}
	return nil
}

// reloadOnHangup reloads the configuration at every SIGHUP until ctx
// ends, logging the outcome: a refused file is one ERROR line naming the
// key or the rule file's line, and changes nothing.
func (h *Host) reloadOnHangup(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := h.Reload(); err != nil {
					h.Logger.Error("configuration reload refused; the running configuration is kept", "error", err)
					continue
				}
				if len(h.reloads) == 0 {
					h.Logger.Info("configuration checked (SIGHUP); nothing this process serves changes without a restart")
					continue
				}
				h.Logger.Info("configuration reloaded (SIGHUP)")
			}
		}
	}()
}

// OnClose adds a closer, called after the workers stopped, in order.
func (h *Host) OnClose(fn func() error) { h.closers = append(h.closers, fn) }

// DataPath is a directory under the data directory, created if needed.
func (h *Host) DataPath(name string) (string, error) {
	dir := filepath.Join(h.Config.DataDir, name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("%s directory %s: %w", name, dir, unwrapPath(err))
	}
	return dir, nil
}

// Run marks the hosted services as serving, serves until ctx is
// cancelled, then drains in-flight calls, stops the workers, and stops
// NATS last, so no call loses its store half-way.
func (h *Host) Run(ctx context.Context) error {
	defer h.Close()
	if h.opts.Offline {
		return errors.New("host: an offline process does not serve")
	}
	for _, svc := range h.opts.Services {
		h.Server.SetServing(string(svc.FullName()), true)
	}
	bg, stop := context.WithCancel(context.Background())
	if h.opts.Reload != nil {
		h.reloadOnHangup(bg)
	}
	var wg sync.WaitGroup
	for _, run := range h.background {
		wg.Go(func() {
			if err := run(bg); err != nil {
				h.Logger.Error("background worker stopped", "error", err)
			}
		})
	}
	h.Logger.Info(h.opts.Name+" serving", "listen", h.Server.Addr().String(), "mode", string(h.Config.Mode), "data_dir", h.Config.DataDir)
	err := h.Server.Run(ctx)
	stop()
	wg.Wait()
	return err
}

// CatchUp runs the background workers (the projectors, and with them the
// router and the sweeper, exactly as serving would run them) without
// serving, until every read model declared with AddReadModel has applied
// the log up to its head, then stops them. The head is read again until
// it stays put, because the workers append too (a deletion writes its
// tombstone, a router routes). progress, when set, gets the lowest
// checkpoint and the head as they move. `kontakt restore` uses it so that
// nothing of a restored store is served from a read model that has not
// yet seen the journal's redactions.
func (h *Host) CatchUp(ctx context.Context, progress func(done, head uint64)) error {
	if len(h.readModels) == 0 {
		return errors.New("host: no read model to bring up to date")
	}
	bg, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, len(h.background))
	for _, run := range h.background {
		wg.Go(func() {
			if err := run(bg); err != nil {
				errs <- err
			}
		})
	}
	defer func() {
		stop()
		wg.Wait()
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var settled eventstore.Position
	for {
		head, err := h.Store.Head(ctx)
		if err != nil {
			return fmt.Errorf("host: read the log's head: %w", err)
		}
		lowest := head
		for _, rm := range h.readModels {
			cp, err := rm.Checkpoint()
			if err != nil {
				return fmt.Errorf("host: %s read model: %w", rm.Name, err)
			}
			lowest = min(lowest, cp)
		}
		if progress != nil {
			progress(uint64(lowest), uint64(head))
		}
		if lowest >= head {
			// Caught up twice with the same head: the workers have
			// appended nothing since.
			if head == settled {
				return nil
			}
			settled = head
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			return fmt.Errorf("host: a worker stopped while catching up: %w", err)
		case <-tick.C:
		}
	}
}

// refuseAll is the verifier of an offline process: it serves nobody.
type refuseAll struct{}

func (refuseAll) Verify(context.Context, string) (auth.Principal, error) {
	return auth.Principal{}, errors.New("an offline process accepts no token")
}

// Addr is the address the server listens on.
func (h *Host) Addr() net.Addr { return h.Server.Addr() }

// Close closes what Open opened, NATS last.
func (h *Host) Close() {
	for _, c := range h.closers {
		if err := c(); err != nil {
			h.Logger.Warn("close", "error", err)
		}
	}
	h.closers = nil
	if h.conn != nil {
		// Drain is asynchronous: wait until it has flushed and closed, so
		// the server is not shut down under a live connection.
		if err := h.conn.Drain(); err == nil {
			deadline := time.Now().Add(5 * time.Second)
			for !h.conn.IsClosed() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
		h.conn.Close()
		h.conn = nil
	}
	if h.nats != nil {
		h.nats.Shutdown()
		h.nats = nil
	}
	if h.Server != nil {
		// Releases the ports of a server that never ran (a failed start
		// that is retried); after Run it has nothing left to do.
		_ = h.Server.Close()
	}
	// Last: the directory is free only once everything in it is closed.
	if h.lock != nil {
		_ = h.lock.Close()
		h.lock = nil
	}
}

// natsReady is the readiness check of the NATS connection: connected, and
// JetStream answering, since every service writes or reads through it.
func (h *Host) natsReady(ctx context.Context) error {
	if st := h.conn.Status(); st != natsgo.CONNECTED {
		return fmt.Errorf("the NATS connection is %s", strings.ToLower(st.String()))
	}
	js, err := natsjs.New(h.conn)
	if err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("JetStream does not answer: %w", err)
	}
	return nil
}

func (h *Host) connectNATS(ctx context.Context) error {
	if h.Config.NATS.URL != "" {
		opts := []natsgo.Option{natsgo.Name(h.opts.Name), natsgo.MaxReconnects(-1)}
		if h.Config.NATS.CredentialsFile != "" {
			opts = append(opts, natsgo.UserCredentials(h.Config.NATS.CredentialsFile))
		}
		conn, err := natsgo.Connect(h.Config.NATS.URL, opts...)
		if err != nil {
			return fmt.Errorf("connect to NATS at %s: %w", redactURL(h.Config.NATS.URL), err)
		}
		h.conn = conn
		return nil
	}
	creds, err := natsserver.LoadOrCreateCredentials(h.Config.NATSCredentialsDir())
	if err != nil {
		return err
	}
	ncfg := natsserver.Config{
		StoreDir:   filepath.Join(h.Config.DataDir, "nats"),
		ServerName: "kontakt",
		Logger:     h.Logger.With("component", "nats-server"),
		// Every client authenticates, this process included: the same
		// users whether or not the port is open, so the streams stay in
		// the same account either way.
		Auth: &natsserver.Auth{
			Service:          creds.Service,
			AnalystPublicKey: creds.AnalystPublicKey,
			AnalystStream:    AnalystStream,
			AnalystSubjects:  AnalystSubjects,
		},
	}
	if h.Config.NATS.EmbeddedListen == "" || h.opts.Offline {
		ncfg.InProcessOnly = true
	} else {
		host, port, err := net.SplitHostPort(h.Config.NATS.EmbeddedListen)
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
	h.nats = ns
	if !ncfg.InProcessOnly {
		if err := creds.WriteAnalystContext(ns.ClientURL()); err != nil {
			return err
		}
		h.Logger.Info("embedded NATS listens for clients with credentials only", "url", ns.ClientURL(),
			"analyst_context", creds.AnalystContextPath(), "service_nkey", creds.ServiceSeedPath())
	}
	conn, err := ns.Connect(natsgo.Name(h.opts.Name))
	if err != nil {
		return fmt.Errorf("connect to embedded NATS: %w", err)
	}
	h.conn = conn
	return nil
}

func newVerifier(ctx context.Context, cfg config.Config, logger *slog.Logger) (auth.Verifier, error) {
	if cfg.Mode == config.Production || cfg.Auth.OIDC.Issuer != "" {
		return auth.NewOIDCVerifier(ctx, auth.OIDCConfig{
			Issuer:                 cfg.Auth.OIDC.Issuer,
			Audience:               cfg.Auth.OIDC.Audience,
			JWKSURL:                cfg.Auth.OIDC.JWKSURL,
			RolesClaim:             cfg.Auth.OIDC.RolesClaim,
			JWKSRefreshInterval:    cfg.Auth.OIDC.JWKSRefreshInterval,
			JWKSMinRefreshInterval: cfg.Auth.OIDC.JWKSMinRefreshInterval,
			Logger:                 logger.With("component", "oidc"),
		})
	}
	key, err := auth.LoadOrCreateDevKey(cfg.DevKeyPath())
	if err != nil {
		return nil, err
	}
	return key.Verifier(time.Now), nil
}

// newSubmissionLimiter builds the public-submission limiter from the
// configuration (validated already; the error is for a mistake there).
func newSubmissionLimiter(cfg config.PublicSubmissions) (*ratelimit.Limiter, error) {
	proxies, err := ratelimit.ParseProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("config key limits.public_submissions.trusted_proxies: %w", err)
	}
	return ratelimit.New(ratelimit.Config{
		PerCredential:  ratelimit.Limit{PerMinute: cfg.PerCredential.PerMinute, Burst: cfg.PerCredential.Burst},
		PerAddress:     ratelimit.Limit{PerMinute: cfg.PerAddress.PerMinute, Burst: cfg.PerAddress.Burst},
		TrustedProxies: proxies,
	})
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
