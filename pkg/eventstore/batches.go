package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// BatchOptions shape SubscribeBatches.
type BatchOptions struct {
	// Size is the largest batch.
	Size int
	// Idle is how long to wait for more events before applying a partial
	// batch, so a quiet log is still applied promptly.
	Idle time.Duration
	// MaxWait, when positive, is the longest the first event of a partial
	// batch waits: under a steady trickle of events that come faster than
	// Idle, the idle wait alone would hold a batch until it is full (with
	// a batch of 4096 and 300 events a second, 14 seconds).
	MaxWait time.Duration
	// Until, when positive, stops once an event at or after it has been
	// applied (a rebuild catching up with the head it started from).
	Until Position
}

// SubscribeBatches subscribes after from and hands the events to apply in
// batches, in log order: a full batch at once, a partial one after Idle
// without more events. Read models apply a batch in one transaction with
// their checkpoint, which is why they want batches rather than single
// events. It returns whether any batch was applied, and why it stopped: nil
// when Until was reached, ctx.Err() when ctx ended, apply's error, or the
// subscription's end (after applying what it delivered before it ended).
func SubscribeBatches(ctx context.Context, s Store, from Position, opts BatchOptions, apply func(ctx context.Context, batch []RecordedEvent) error) (progressed bool, err error) {
	size := max(opts.Size, 1)
	sctx, cancel := context.WithCancel(ctx)
	events := make(chan RecordedEvent, size)
	subErr := make(chan error, 1)
	go func() {
		subErr <- s.Subscribe(sctx, from, func(ctx context.Context, ev RecordedEvent) error {
			select {
			case events <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	subDone := false
	defer func() {
		cancel()
		if !subDone {
			<-subErr
		}
	}()

	batch := make([]RecordedEvent, 0, size)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := apply(ctx, batch); err != nil {
			return err
		}
		progressed = true
		batch = batch[:0]
		return nil
	}
	idle := time.NewTimer(opts.Idle)
	idle.Stop()
	defer idle.Stop()
	// waited fires MaxWait after the first event of a batch; a stopped
	// timer with no MaxWait never does.
	waited := time.NewTimer(time.Hour)
	waited.Stop()
	defer waited.Stop()
	for {
		select {
		case ev := <-events:
			if len(batch) == 0 && opts.MaxWait > 0 {
				waited.Reset(opts.MaxWait)
			}
			batch = append(batch, ev)
			reached := opts.Until > 0 && ev.Position >= opts.Until
			if len(batch) >= size || reached {
				waited.Stop()
				if err := flush(); err != nil {
					return progressed, err
				}
				if reached {
					return progressed, nil
				}
				continue
			}
			idle.Reset(opts.Idle)
		case <-idle.C:
			waited.Stop()
			if err := flush(); err != nil {
				return progressed, err
			}
		case <-waited.C:
			idle.Stop()
			if err := flush(); err != nil {
				return progressed, err
			}
		case err := <-subErr:
			subDone = true
			// Whatever the subscription delivered before it ended is
			// valid: apply it, then report why it ended.
			for drained := false; !drained; {
				select {
				case ev := <-events:
					batch = append(batch, ev)
				default:
					drained = true
				}
			}
			if ferr := flush(); ferr != nil {
				return progressed, ferr
			}
			if err == nil {
				err = errors.New("subscription ended")
			}
			return progressed, fmt.Errorf("subscription: %w", err)
		case <-ctx.Done():
			return progressed, ctx.Err()
		}
	}
}
