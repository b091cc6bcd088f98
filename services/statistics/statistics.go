// Package statistics is the statistics service, assembled: a projector
// that builds one anonymous record per case from the case events, keeps
// them in a bbolt read model and publishes every record version on the
// JetStream stream KONTAKT_STATS (kept for ever), and the gRPC
// StatisticsService that answers aggregate queries and streams records to
// analysts. The composition root (services/kontakt) builds it with New,
// registers Server, runs Run beside the server and calls Close at the end.
package statistics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"
	// The Stockholm time zone must not depend on the host's zoneinfo:
	// buckets would silently shift on a host without it.
	_ "time/tzdata"

	"github.com/nats-io/nats.go/jetstream"

	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/server"
	"github.com/kontakt-se/kontakt/services/statistics/adapters/store"
	"github.com/kontakt-se/kontakt/services/statistics/adapters/stream"
	"github.com/kontakt-se/kontakt/services/statistics/app"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
	"github.com/kontakt-se/kontakt/services/statistics/ports"
)

// ErrConfig means the configuration is unusable.
var ErrConfig = errors.New("statistics: invalid configuration")

// FileName is the read model's file under Config.DataDir.
const FileName = "statistics.db"

// TimeZone is where query buckets (days, ISO weeks, months) begin.
const TimeZone = "Europe/Stockholm"

// Config configures the service. Zero values mean the defaults.
type Config struct {
	// DataDir is the service's own directory; the bbolt read model is
	// DataDir/statistics.db. Required. It is created with mode 0750.
	DataDir string
	// Replicas is the statistics stream's replica count: 0 means 1; a
	// cluster must use 3, because the stream is the only copy of the
	// records of deleted cases.
	Replicas int
	// SuppressBelow is k of small-cell suppression in publishable
	// queries: rows with fewer cases show no numbers. 0 means 5.
	SuppressBelow int
	// RedactAfter is the period from registration within which personal
	// data must be redacted (a day's grace is added) for a record to
	// count as redacted on time. 0 means 90 days.
	RedactAfter time.Duration
	// DeleteAfter is the same for deletion of the whole case. 0 means
	// 730 days.
	DeleteAfter time.Duration
	// IDKey is the secret statistics ids are derived under (see
	// domain.IDs), at least 16 bytes; required. Every instance writing
	// one statistics stream must use the same key, and the same
	// RedactAfter and DeleteAfter, or they make different records of
	// the same case. The composition root derives it from the master
	// key (IDKeyPurpose).
	IDKey []byte
	// Categories are the configured category codes; a record keeps a
	// case's category only if it is one of them (domain.Policy). Empty
	// keeps every category. Every instance must use the same list.
	Categories []string
}

// IDKeyPurpose is the master-key derivation purpose of Config.IDKey.
const IDKeyPurpose = "kontakt/statistics/record-id"

// Option adjusts what New builds; the defaults suit production.
type Option func(*options)

type options struct {
	stopping  <-chan struct{}
	hooks     app.Hooks
	batchSize int
	// duplicateWindow shrinks the stream's de-duplication window, so
	// tests can show that recovery does not depend on it.
	duplicateWindow time.Duration
	// idleFlush is how long the projector waits to fill a batch.
	idleFlush time.Duration
	// publishBatch bounds an atomic batch of record versions, so tests
	// can crash between two of them.
	publishBatch int
}

// WithShutdown gives the channel that closes when the gRPC server shuts
// down, so open StreamRecords calls end and do not hold up the drain.
func WithShutdown(stopping <-chan struct{}) Option {
	return func(o *options) { o.stopping = stopping }
}

// WithHooks installs the projector's crash-test hooks (tests only).
func WithHooks(h app.Hooks) Option {
	return func(o *options) { o.hooks = h }
}

// WithBatchSize sets how many events the projector applies per
// transaction while following the log; 0 keeps app.DefaultBatchSize.
func WithBatchSize(n int) Option {
	return func(o *options) { o.batchSize = n }
}

// Service is the running statistics service.
type Service struct {
	store     *store.Store
	stream    *stream.Stream
	projector *app.Projector
	queries   *app.Queries
	server    *ports.Server
}

// New opens the read model, creates or updates the statistics stream and
// builds the projector and the gRPC handlers. Nothing runs until Run.
// The read model's file lock keeps a second process from using the same
// file. Any number of services, each with its own file, may follow one
// case log and write one statistics stream (see app.Projector): each
// record version is stored once, and each service answers queries from
// its own file.
func New(ctx context.Context, cfg Config, es eventstore.Store, js jetstream.JetStream, logger *slog.Logger, opts ...Option) (*Service, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	policy, err := cfg.policy()
	if err != nil {
		return nil, err
	}
	if cfg.SuppressBelow < 0 {
		return nil, fmt.Errorf("%w: suppress_below %d is negative", ErrConfig, cfg.SuppressBelow)
	}
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("%w: a data directory is required", ErrConfig)
	}
	ids, err := domain.NewIDs(cfg.IDKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	loc, err := time.LoadLocation(TimeZone)
	if err != nil {
		return nil, fmt.Errorf("statistics: time zone %s: %w", TimeZone, err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("statistics: data directory: %w", err)
	}
	out, err := stream.New(ctx, js, stream.Config{Replicas: cfg.Replicas, DuplicateWindow: o.duplicateWindow})
	if err != nil {
		return nil, err
	}
	st, err := store.Open(filepath.Join(cfg.DataDir, FileName), store.Options{})
	if err != nil {
		return nil, err
	}
	logger = logger.With("service", "statistics")
	var head func(context.Context) (eventstore.Position, error)
	if h, ok := es.(interface {
		Head(context.Context) (eventstore.Position, error)
	}); ok {
		head = h.Head
	}
	proj, err := app.NewProjector(app.ProjectorConfig{
		Events:       es,
		Head:         head,
		ReadModel:    st,
		Stream:       out,
		Policy:       policy,
		IDs:          ids,
		BatchSize:    o.batchSize,
		IdleFlush:    o.idleFlush,
		PublishBatch: o.publishBatch,
		Hooks:        o.hooks,
		Logger:       logger.With("component", "statistics-projector"),
	})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	queries := app.NewQueries(app.QueriesConfig{ReadModel: st, Stream: out, Location: loc, SuppressBelow: cfg.SuppressBelow})
	return &Service{
		store:     st,
		stream:    out,
		projector: proj,
		queries:   queries,
		server:    ports.NewServer(ports.Config{Queries: queries, Stopping: o.stopping}),
	}, nil
}

func (c Config) policy() (domain.Policy, error) {
	p := domain.DefaultPolicy()
	if c.RedactAfter < 0 || c.DeleteAfter < 0 {
		return p, fmt.Errorf("%w: negative retention period", ErrConfig)
	}
	if c.RedactAfter > 0 {
		p.RedactAfter = c.RedactAfter
	}
	if c.DeleteAfter > 0 {
		p.DeleteAfter = c.DeleteAfter
	}
	p.Categories = slices.Clone(c.Categories)
	return p, nil
}

// Register adds the handlers, with their error table, to a server.
func (s *Service) Register(reg server.Registrar) { ports.Register(reg, s.server) }

// Run runs the projector until ctx ends, then returns nil. Run it once,
// beside the server; queries are answered whether or not it runs.
func (s *Service) Run(ctx context.Context) error { return s.projector.Run(ctx) }

// Rebuild empties the read model and projects the case log into it from
// the start up to the log's head, for `kontakt rebuild statistics` with
// the server stopped. The statistics stream is kept (it is the only copy
// of the records of deleted cases): its records are read back first, so
// the rebuilt file answers as before and no version is published twice.
// progress, if not nil, gets the position reached and the head after
// each batch.
func (s *Service) Rebuild(ctx context.Context, progress func(done, total uint64)) error {
	return s.projector.Rebuild(ctx, progress)
}

// Projection is the projector's runner, whose metrics the process
// registers.
func (s *Service) Projection() *projection.Runner { return s.projector.Runner() }

// Close closes the read model. Call it after Run has returned.
func (s *Service) Close() error { return s.store.Close() }

// Checkpoint returns the position of the last case event the read model
// reflects, for readiness checks and tests.
func (s *Service) Checkpoint() (eventstore.Position, error) { return s.store.Checkpoint() }

// WriteTo writes a consistent copy of the read model's file (FileName) to
// w, for `kontakt backup` while the projector runs.
func (s *Service) WriteTo(w io.Writer) (int64, error) { return s.store.WriteTo(w) }

// Recount reads the whole statistics stream through js, keeps the newest
// version per statistics id and returns those records in statistics id
// order: what an analyst gets from the stream alone, and what Query must
// agree with.
func Recount(ctx context.Context, js jetstream.JetStream) ([]*statisticsv1.StatisticsRecord, error) {
	out, err := stream.Open(ctx, js)
	if err != nil {
		return nil, err
	}
	recs, err := out.Recount(ctx)
	if err != nil {
		return nil, err
	}
	res := make([]*statisticsv1.StatisticsRecord, len(recs))
	for i, r := range recs {
		res[i] = r.ToProto()
	}
	return res, nil
}
