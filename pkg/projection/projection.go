// Package projection is the one way kontakt keeps a read model up to date
// with the case log: the routing read model, the statistics records and
// the retention deadline index all run on it.
//
// A read model here is anything that remembers how far into the log it
// has applied (its checkpoint) and can apply a batch of events together
// with the new checkpoint in one transaction. The Runner does the rest,
// the same way for every model:
//
//   - it subscribes to the log after the model's checkpoint, decodes each
//     event once through pkg/caseevents, and hands the model batches in
//     log order (a full batch at once, a partial one when the log goes
//     quiet for a few milliseconds), so a model pays one durable commit
//     per batch rather than per event;
//   - when the subscription or a batch fails it logs why and tries again
//     from the checkpoint after a pause that grows (pkg/backoff), because
//     a read model must outlive a NATS leader election or a key service
//     that is briefly away; a batch that can never apply is retried too,
//     and logged each time, since skipping it would silently corrupt the
//     model;
//   - it reports per model the position applied, how far the log is
//     ahead of it (lag), the batches applied and the failures, as
//     Prometheus metrics;
//   - CatchUp applies the log up to its head at the time of the call and
//     returns, for a rebuild, a restore or a command-line tool, and
//     Rebuild empties the model first.
//
// Each model used to have its own loop with its own retry and back-off,
// and the three disagreed in small ways (how a failed batch was logged,
// when the pause was reset); one runner gives one behaviour.
package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/kontakt-se/kontakt/pkg/backoff"
	"github.com/kontakt-se/kontakt/pkg/caseevents"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// Defaults of Config.
const (
	// DefaultBatchSize bounds a batch while following the log: large
	// enough that catching up after a restart costs few disk syncs, small
	// enough that one batch commits in milliseconds.
	DefaultBatchSize = 256
	// DefaultCatchUpBatchSize is larger: a rebuild or restore only cares
	// about throughput, and the sync per transaction dominates.
	DefaultCatchUpBatchSize = 4096
	// DefaultIdle is how long the runner waits for more events before it
	// applies a partial batch, so a live change reaches the model within
	// a few milliseconds.
	DefaultIdle = 5 * time.Millisecond
	// DefaultMaxWait bounds how long an event waits in a partial batch
	// while more keep coming faster than Idle: a read model is then at
	// most this far behind a steady stream, whatever its batch size.
	DefaultMaxWait = 200 * time.Millisecond
)

// DefaultBackoff is the pause between attempts after a failure: from a
// tenth of a second, doubling, up to fifteen seconds.
var DefaultBackoff = backoff.Policy{Initial: 100 * time.Millisecond, Max: 15 * time.Second}

// ErrBusy is returned by CatchUp and Rebuild while another CatchUp or
// Rebuild of the same runner is running.
var ErrBusy = errors.New("projection: a catch-up of this model is already running")

// Event is one event of the log as a model receives it: the stored event
// and its decoded message. Message is nil for the synthetic event that
// says a stream was deleted (Recorded.Type is eventstore.TypeStreamDeleted)
// and for an event type this build does not know (a newer writer's), which
// a model skips; the runner still counts both towards the checkpoint.
type Event struct {
	Recorded eventstore.RecordedEvent
	Message  proto.Message
}

// Deleted reports whether the event says its stream was deleted.
func (e Event) Deleted() bool { return e.Recorded.Type == eventstore.TypeStreamDeleted }

// Model is a read model the runner keeps up to date.
type Model interface {
	// Checkpoint returns the position of the last event the model has
	// applied; zero when it has applied none.
	Checkpoint() (eventstore.Position, error)
	// Apply applies a batch of events in log order and commits what they
	// change together with the new checkpoint (the position of the
	// batch's last event) in one transaction, so that a crash leaves the
	// model either before or after the whole batch. Apply must be
	// idempotent for events at or before the checkpoint: after a crash
	// between the model's side effects and its commit, the runner hands
	// the batch again.
	Apply(ctx context.Context, batch []Event) error
}

// Resetter is a Model that can be emptied, for Rebuild.
type Resetter interface {
	Model
	// Reset empties the model and sets its checkpoint to zero, in one
	// transaction.
	Reset(ctx context.Context) error
}

// Config configures a Runner.
type Config struct {
	// Name names the model in logs and metrics, for example "routing".
	Name string
	// Store is the case log.
	Store eventstore.Store
	// Model is the read model.
	Model Model
	// Head returns the position of the log's last event. CatchUp and
	// Rebuild stop there, and the lag metric is measured against it.
	// Optional for Run; without it there is no lag metric.
	Head func(ctx context.Context) (eventstore.Position, error)
	// BatchSize bounds a batch while following the log; zero means
	// DefaultBatchSize.
	BatchSize int
	// CatchUpBatchSize bounds a batch of CatchUp and Rebuild; zero means
	// DefaultCatchUpBatchSize.
	CatchUpBatchSize int
	// Idle is how long to wait for more events before applying a partial
	// batch; zero means DefaultIdle.
	Idle time.Duration
	// MaxWait is the longest the first event of a partial batch waits
	// while more keep coming; zero means DefaultMaxWait.
	MaxWait time.Duration
	// Backoff is the pause after a failure; a Policy without an Initial
	// pause means DefaultBackoff.
	Backoff backoff.Policy
	// Logger receives the failures; nil discards them.
	Logger *slog.Logger
}

// Runner keeps one Model up to date with the log.
type Runner struct {
	cfg     Config
	log     *slog.Logger
	busy    atomic.Bool
	metrics *metrics

	headMu  sync.Mutex
	headAt  time.Time
	headPos eventstore.Position
	// applied is the position the model has applied up to, -1 before
	// the runner has read the model's checkpoint.
	applied atomic.Int64
}

// New checks cfg and returns a Runner.
func New(cfg Config) (*Runner, error) {
	if cfg.Name == "" {
		return nil, errors.New("projection: Config.Name is required")
	}
	if cfg.Store == nil || cfg.Model == nil {
		return nil, fmt.Errorf("projection %s: Config.Store and Config.Model are required", cfg.Name)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.CatchUpBatchSize <= 0 {
		cfg.CatchUpBatchSize = DefaultCatchUpBatchSize
	}
	if cfg.Idle <= 0 {
		cfg.Idle = DefaultIdle
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.Backoff.Initial <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Runner{cfg: cfg, log: logger.With(slog.String("projection", cfg.Name))}
	r.applied.Store(-1)
	r.metrics = newMetrics(r)
	return r, nil
}

// Run follows the log from the model's checkpoint and applies it until
// ctx ends; then it returns nil. Failures are logged and retried from the
// checkpoint after a pause; the pause starts again from its shortest once
// a batch has applied.
func (r *Runner) Run(ctx context.Context) error {
	b := backoff.New(r.cfg.Backoff)
	for {
		from, err := r.cfg.Model.Checkpoint()
		if err == nil {
			r.noteApplied(from)
			var progressed bool
			progressed, err = r.follow(ctx, from, 0, r.cfg.BatchSize, nil)
			if progressed {
				b.Reset()
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		r.metrics.failures.Inc()
		wait := b.Next()
		// Errors name positions, event types and case ids, never
		// personal data.
		r.log.Warn("projection failed; retrying from the checkpoint",
			slog.Uint64("from", uint64(from)), slog.Duration("retry_in", wait), slog.String("error", err.Error()))
		if backoff.Sleep(ctx, wait) != nil {
			return nil
		}
	}
}

// CatchUp applies the log from the model's checkpoint up to the log's head
// as it is when CatchUp begins, then returns nil. progress, if not nil, is
// called after each batch with the position reached and the head. Failures
// are retried like in Run; CatchUp returns early only when ctx ends. It
// needs Config.Head.
func (r *Runner) CatchUp(ctx context.Context, progress func(done, total uint64)) error {
	if !r.busy.CompareAndSwap(false, true) {
		return ErrBusy
	}
	defer r.busy.Store(false)
	return r.catchUp(ctx, progress)
}

// Rebuild empties the model and applies the log from its start up to the
// head as it is when Rebuild begins. The model must be a Resetter. Queries
// see a partly built model until it returns.
func (r *Runner) Rebuild(ctx context.Context, progress func(done, total uint64)) error {
	m, ok := r.cfg.Model.(Resetter)
	if !ok {
		return fmt.Errorf("projection %s: the model cannot be reset", r.cfg.Name)
	}
	if !r.busy.CompareAndSwap(false, true) {
		return ErrBusy
	}
	defer r.busy.Store(false)
	if err := m.Reset(ctx); err != nil {
		return fmt.Errorf("projection %s: reset: %w", r.cfg.Name, err)
	}
	r.noteApplied(0)
	return r.catchUp(ctx, progress)
}

func (r *Runner) catchUp(ctx context.Context, progress func(done, total uint64)) error {
	if r.cfg.Head == nil {
		return fmt.Errorf("projection %s: catching up needs the log's head (Config.Head)", r.cfg.Name)
	}
	head, err := r.cfg.Head(ctx)
	if err != nil {
		return fmt.Errorf("projection %s: head of the log: %w", r.cfg.Name, err)
	}
	report := func(pos eventstore.Position) {
		if progress != nil {
			progress(uint64(min(pos, head)), uint64(head))
		}
	}
	b := backoff.New(r.cfg.Backoff)
	for {
		from, err := r.cfg.Model.Checkpoint()
		if err == nil {
			r.noteApplied(from)
			report(from)
			if from >= head {
				return nil
			}
			var progressed bool
			progressed, err = r.follow(ctx, from, head, r.cfg.CatchUpBatchSize, report)
			if progressed {
				b.Reset()
			}
			if err == nil {
				continue // The head was reached; the checkpoint says so.
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("projection %s: catch-up: %w", r.cfg.Name, ctx.Err())
		}
		r.metrics.failures.Inc()
		wait := b.Next()
		r.log.Warn("projection catch-up failed; retrying from the checkpoint",
			slog.Uint64("from", uint64(from)), slog.Uint64("head", uint64(head)),
			slog.Duration("retry_in", wait), slog.String("error", err.Error()))
		if backoff.Sleep(ctx, wait) != nil {
			return fmt.Errorf("projection %s: catch-up: %w", r.cfg.Name, ctx.Err())
		}
	}
}

// follow subscribes after from and applies batches of up to size events
// until an error, the end of ctx, or (with a positive until) the batch
// holding the event at until.
func (r *Runner) follow(ctx context.Context, from, until eventstore.Position, size int, applied func(eventstore.Position)) (bool, error) {
	return eventstore.SubscribeBatches(ctx, r.cfg.Store, from,
		eventstore.BatchOptions{Size: size, Idle: r.cfg.Idle, MaxWait: r.cfg.MaxWait, Until: until},
		func(ctx context.Context, recorded []eventstore.RecordedEvent) error {
			batch, err := Decode(recorded)
			if err != nil {
				return err
			}
			start := time.Now()
			if err := r.cfg.Model.Apply(ctx, batch); err != nil {
				return fmt.Errorf("apply events %d to %d: %w",
					recorded[0].Position, recorded[len(recorded)-1].Position, err)
			}
			last := recorded[len(recorded)-1].Position
			r.metrics.batches.Inc()
			r.metrics.events.Add(float64(len(recorded)))
			r.metrics.applySeconds.Observe(time.Since(start).Seconds())
			r.noteApplied(last)
			if applied != nil {
				applied(last)
			}
			return nil
		})
}

// Decode turns stored events into Events: each known case event decoded
// once, the deleted-stream event and unknown types with a nil Message. An
// event of a known type that does not decode fails the whole batch: it is
// a fault to retry and report, not something to skip.
func Decode(recorded []eventstore.RecordedEvent) ([]Event, error) {
	out := make([]Event, len(recorded))
	for i, ev := range recorded {
		out[i].Recorded = ev
		if ev.Type == eventstore.TypeStreamDeleted {
			continue
		}
		msg, err := caseevents.Decode(ev.Type, ev.Data)
		switch {
		case errors.Is(err, caseevents.ErrUnknown):
			continue
		case err != nil:
			return nil, fmt.Errorf("event %d of stream %s: %w", ev.Position, ev.Stream, err)
		}
		out[i].Message = msg
	}
	return out, nil
}

func (r *Runner) noteApplied(pos eventstore.Position) {
	r.applied.Store(int64(pos))
	r.metrics.position.Set(float64(pos))
}

// Lag is how many positions the log's head is ahead of the model, as the
// kontakt_projection_lag_events metric reports it; readiness compares it
// with a bound. It is 0 before the runner has applied anything and when
// the runner has no Head.
func (r *Runner) Lag() float64 { return r.lag() }

// lag is how many positions the log's head is ahead of the model, read
// for the metric. The head is asked for at most once a second, so a
// scrape costs the store little.
func (r *Runner) lag() float64 {
	applied := r.applied.Load()
	if r.cfg.Head == nil || applied < 0 {
		return 0
	}
	r.headMu.Lock()
	if time.Since(r.headAt) > time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if head, err := r.cfg.Head(ctx); err == nil {
			r.headPos, r.headAt = head, time.Now()
		}
		cancel()
	}
	head := r.headPos
	r.headMu.Unlock()
	if head <= eventstore.Position(applied) {
		return 0
	}
	return float64(head - eventstore.Position(applied))
}

// Collectors returns the runner's metrics, for the process's registry:
// kontakt_projection_position, kontakt_projection_lag_events,
// kontakt_projection_events_total, kontakt_projection_batches_total,
// kontakt_projection_failures_total and
// kontakt_projection_apply_seconds, each labelled with the model's name.
func (r *Runner) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.metrics.position, r.metrics.lagGauge, r.metrics.events,
		r.metrics.batches, r.metrics.failures, r.metrics.applySeconds}
}

type metrics struct {
	position     prometheus.Gauge
	lagGauge     prometheus.GaugeFunc
	events       prometheus.Counter
	batches      prometheus.Counter
	failures     prometheus.Counter
	applySeconds prometheus.Histogram
}

func newMetrics(r *Runner) *metrics {
	labels := prometheus.Labels{"projection": r.cfg.Name}
	return &metrics{
		position: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kontakt_projection_position", ConstLabels: labels,
			Help: "Position in the case log of the last event the read model has applied.",
		}),
		lagGauge: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kontakt_projection_lag_events", ConstLabels: labels,
			Help: "How many log positions the case log's head is ahead of the read model.",
		}, r.lag),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kontakt_projection_events_total", ConstLabels: labels,
			Help: "Events the read model has applied.",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kontakt_projection_batches_total", ConstLabels: labels,
			Help: "Batches the read model has applied, each in one transaction.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kontakt_projection_failures_total", ConstLabels: labels,
			Help: "Times the subscription or a batch failed and was retried from the checkpoint.",
		}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kontakt_projection_apply_seconds", ConstLabels: labels,
			Help:    "Time the read model took to apply and commit one batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
}
