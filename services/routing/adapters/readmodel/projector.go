package readmodel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// Projector defaults.
const (
	// DefaultBatchSize bounds a batch while following the log: large
	// enough that catching up after a restart costs few fsyncs, small
	// enough that a batch commits in milliseconds.
	DefaultBatchSize = 256
	// DefaultRebuildBatchSize is larger, as a rebuild only cares about
	// throughput and the fsync per transaction dominates.
	DefaultRebuildBatchSize = 4096
	// DefaultIdleFlush is how long the projector waits for more events
	// before it applies a partial batch: live changes reach the queue
	// views within a few milliseconds.
	DefaultIdleFlush = 5 * time.Millisecond
)

// Back-off after a failed subscription or batch.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 15 * time.Second
)

// Projector keeps a Store up to date with the event log. Run follows the
// log from the store's checkpoint; Rebuild replays it from the start. A
// Run on the same Store may go on during a rebuild: its batches are
// refused (ErrRebuilding) and it resumes from the rebuilt checkpoint.
type Projector struct {
	es          eventstore.Store
	rm          *Store
	log         *slog.Logger
	head        func(context.Context) (eventstore.Position, error)
	batch       int
	rebuildSize int
	idle        time.Duration
}

// ProjectorOption configures a Projector.
type ProjectorOption func(*Projector)

// WithHead gives Rebuild the position of the last event in the log, which
// is where a rebuild stops. The event store interface has no such call,
// so the application provides it (for JetStream, the stream's last
// sequence).
func WithHead(head func(ctx context.Context) (eventstore.Position, error)) ProjectorOption {
	return func(p *Projector) { p.head = head }
}

// WithBatchSize sets how many events Run and Rebuild apply per
// transaction; zero keeps the defaults.
func WithBatchSize(run, rebuild int) ProjectorOption {
	return func(p *Projector) {
		if run > 0 {
			p.batch = run
		}
		if rebuild > 0 {
			p.rebuildSize = rebuild
		}
	}
}

// WithIdleFlush sets how long Run waits for more events before applying a
// partial batch.
func WithIdleFlush(d time.Duration) ProjectorOption {
	return func(p *Projector) {
		if d > 0 {
			p.idle = d
		}
	}
}

// NewProjector returns a projector from store into rm. A nil logger
// discards log output.
func NewProjector(store eventstore.Store, rm *Store, logger *slog.Logger, opts ...ProjectorOption) *Projector {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Projector{
		es: store, rm: rm, log: logger,
		batch: DefaultBatchSize, rebuildSize: DefaultRebuildBatchSize, idle: DefaultIdleFlush,
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Run subscribes to the log after the store's checkpoint and applies
// events in batches until ctx ends; then it returns nil. A failing
// subscription or batch is logged and retried from the checkpoint after a
// back-off, because the read model must not stop for good when the event
// store or the key service is briefly away; a batch that can never apply
// (a malformed event) is retried too, and its error logged each time,
// since skipping it would silently corrupt the queues.
func (p *Projector) Run(ctx context.Context) error {
	backoff := minBackoff
	for {
		from, err := p.rm.Checkpoint()
		if err == nil {
			var progressed bool
			progressed, err = p.follow(ctx, from, 0, p.batch, false, nil)
			if progressed {
				backoff = minBackoff
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		// Errors name positions, event types and case ids, never personal
		// data.
		if errors.Is(err, ErrRebuilding) {
			p.log.Info("routing read model: waiting for a rebuild", "retry_in", backoff)
		} else {
			p.log.Warn("routing read model: projection failed, retrying", "from", from, "retry_in", backoff, "error", err)
		}
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// Rebuild empties the read model (in one transaction) and replays the log
// from the start until it has applied the event that was last when the
// rebuild began, then returns. progress, if not nil, is called after each
// batch with the position reached and the target position. Live watchers
// get no changes during a rebuild, and queries see a partly built model
// until it returns. Errors are retried like in Run; Rebuild returns early
// only when ctx ends, or at once with ErrRebuilding when another rebuild
// of the store is running.
func (p *Projector) Rebuild(ctx context.Context, progress func(done, total uint64)) error {
	if p.head == nil {
		return errors.New("readmodel: rebuild needs the log's head position (WithHead)")
	}
	if !p.rm.rebuilding.CompareAndSwap(false, true) {
		return fmt.Errorf("readmodel: rebuild: %w", ErrRebuilding)
	}
	defer p.rm.rebuilding.Store(false)
	head, err := p.head(ctx)
	if err != nil {
		return fmt.Errorf("readmodel: rebuild: head of the log: %w", err)
	}
	if err := p.rm.wipe(); err != nil {
		return fmt.Errorf("readmodel: rebuild: %w", err)
	}
	report := func(pos eventstore.Position) {
		if progress != nil {
			progress(uint64(min(pos, head)), uint64(head))
		}
	}
	report(0)
	backoff := minBackoff
	for {
		from, err := p.rm.Checkpoint()
		if err == nil && from >= head {
			report(from)
			return nil
		}
		if err == nil {
			var progressed bool
			progressed, err = p.follow(ctx, from, head, p.rebuildSize, true, report)
			if progressed {
				backoff = minBackoff
			}
			if err == nil {
				continue // Reached the head; the checkpoint says so.
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("readmodel: rebuild: %w", ctx.Err())
		}
		p.log.Warn("routing read model: rebuild failed, retrying", "from", from, "head", head, "retry_in", backoff, "error", err)
		if !sleep(ctx, backoff) {
			return fmt.Errorf("readmodel: rebuild: %w", ctx.Err())
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// follow subscribes after from and applies the events in batches of up to
// size, applying a partial batch when the subscription is idle. With a
// positive until it returns nil once an event at or after until is
// applied. It reports whether any batch was applied.
func (p *Projector) follow(ctx context.Context, from, until eventstore.Position, size int, rebuild bool, applied func(eventstore.Position)) (progressed bool, err error) {
	return eventstore.SubscribeBatches(ctx, p.es, from, eventstore.BatchOptions{Size: size, Idle: p.idle, Until: until},
		func(ctx context.Context, batch []eventstore.RecordedEvent) error {
			if err := p.rm.apply(ctx, rebuild, batch); err != nil {
				return err
			}
			if applied != nil {
				applied(batch[len(batch)-1].Position)
			}
			return nil
		})
}

// sleep waits for d and reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
