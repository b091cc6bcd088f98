package readmodel

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
)

// Projector keeps a Store up to date with the event log on the one
// projection runner (pkg/projection): Run follows the log from the
// store's checkpoint, each batch applied and committed with its
// checkpoint in one transaction, a failure retried from the checkpoint
// with the runner's back-off, the lag reported as a metric; Rebuild
// replays the log from the start. A Run on the same Store may go on
// during a rebuild: its batches are refused (ErrRebuilding) and it
// resumes from the rebuilt checkpoint.
type Projector struct {
	rm     *Store
	runner *projection.Runner
}

// projectorOptions are what ProjectorOptions set.
type projectorOptions struct {
	head           func(context.Context) (eventstore.Position, error)
	batch, rebuild int
	idle           time.Duration
}

// ProjectorOption configures a Projector.
type ProjectorOption func(*projectorOptions)

// WithHead gives Rebuild the position of the last event in the log, which
// is where a rebuild stops, and the lag metric its reference. The event
// store interface has no such call, so the application provides it (for
// JetStream, the stream's last sequence).
func WithHead(head func(ctx context.Context) (eventstore.Position, error)) ProjectorOption {
	return func(p *projectorOptions) { p.head = head }
}

// WithBatchSize sets how many events Run and Rebuild apply per
// transaction; zero keeps the runner's defaults.
func WithBatchSize(run, rebuild int) ProjectorOption {
	return func(p *projectorOptions) { p.batch, p.rebuild = run, rebuild }
}

// WithIdleFlush sets how long Run waits for more events before applying a
// partial batch; zero keeps the runner's default.
func WithIdleFlush(d time.Duration) ProjectorOption {
	return func(p *projectorOptions) { p.idle = d }
}

// NewProjector returns a projector from store into rm. A nil logger
// discards log output.
func NewProjector(store eventstore.Store, rm *Store, logger *slog.Logger, opts ...ProjectorOption) (*Projector, error) {
	var o projectorOptions
	for _, opt := range opts {
		opt(&o)
	}
	r, err := projection.New(projection.Config{
		Name: "routing", Store: store, Model: rm.Model(), Head: o.head,
		BatchSize: o.batch, CatchUpBatchSize: o.rebuild, Idle: o.idle, Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("readmodel: %w", err)
	}
	return &Projector{rm: rm, runner: r}, nil
}

// Runner is the projection runner, whose metrics the process registers.
func (p *Projector) Runner() *projection.Runner { return p.runner }

// Run follows the log after the store's checkpoint and applies it until
// ctx ends; then it returns nil. A failing subscription or batch is
// logged and retried from the checkpoint after a back-off, because the
// read model must not stop for good when the event store or the key
// service is briefly away; a batch that can never apply (a malformed
// event) is retried too, since skipping it would silently corrupt the
// queues.
func (p *Projector) Run(ctx context.Context) error { return p.runner.Run(ctx) }

// Rebuild empties the read model (in one transaction) and replays the log
// from the start until it has applied the event that was last when the
// rebuild began, then returns. progress, if not nil, is called after each
// batch with the position reached and the target position. Live watchers
// get no changes during a rebuild, and queries see a partly built model
// until it returns. Errors are retried like in Run; Rebuild returns early
// only when ctx ends, or at once with ErrRebuilding when another rebuild
// of the store is running.
func (p *Projector) Rebuild(ctx context.Context, progress func(done, total uint64)) error {
	if !p.rm.rebuilding.CompareAndSwap(false, true) {
		return fmt.Errorf("readmodel: rebuild: %w", ErrRebuilding)
	}
	defer p.rm.rebuilding.Store(false)
	if err := p.runner.Rebuild(context.WithValue(ctx, rebuildKey{}, true), progress); err != nil {
		return fmt.Errorf("readmodel: rebuild: %w", err)
	}
	return nil
}
