package app

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Router puts every new case in a queue by the rules. It learns of new
// cases from the read model's change feed and, at start and every few
// minutes, from the read model's list of unrouted cases, so a case
// registered while no router ran is routed when one starts. Exactly once
// holds because Commands.Route appends with the expected revision: of two
// routers deciding on one case, one append wins and the other finds the
// case routed.
type Router struct {
	cmds    *Commands
	queues  *Queues
	pending Unrouted
	logger  *slog.Logger

	mu     sync.Mutex
	queued map[string]bool
	wake   chan struct{}
}

// RouterConfig is what a router is built from.
type RouterConfig struct {
	Commands *Commands
	// Queues hold the rules: the router routes by the current ones, so a
	// reloaded rule file applies to the next case.
	Queues *Queues
	// Unrouted lists the cases waiting for a queue.
	Unrouted Unrouted
	Logger   *slog.Logger
}

// NewRouter builds a router.
func NewRouter(cfg RouterConfig) *Router {
	return &Router{cmds: cfg.Commands, queues: cfg.Queues, pending: cfg.Unrouted, logger: cfg.Logger,
		queued: map[string]bool{}, wake: make(chan struct{}, 1)}
}

// Observe is the read model's change hook: a registered case is routed.
// It never blocks and never drops: the id goes into a set that the
// workers drain, however large a burst is.
func (r *Router) Observe(c Change) {
	if c.Kind != ChangeRegistered {
		return
	}
	r.enqueue(c.Row.CaseID)
}

func (r *Router) enqueue(ids ...string) {
	r.mu.Lock()
	for _, id := range ids {
		r.queued[id] = true
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// take removes up to n queued ids.
func (r *Router) take(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, n)
	for id := range r.queued {
		if len(out) == n {
			break
		}
		out = append(out, id)
		delete(r.queued, id)
	}
	return out
}

// retry remembers a case whose routing failed and when to try again.
type retry struct {
	at      time.Time
	backoff time.Duration
}

// Run routes until ctx ends, up to 64 cases at a time with their events
// in one batch (Commands.RouteMany). A case whose
// routing failed (the store was away, say) is retried with a growing
// back-off, from one second up to half a minute; a sweep every few minutes
// catches anything else.
func (r *Router) Run(ctx context.Context) error {
	sweep := time.NewTicker(5 * time.Minute)
	defer sweep.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var fmu sync.Mutex
	failed := map[string]retry{}
	attempt := func(id string, err error) {
		fmu.Lock()
		defer fmu.Unlock()
		if err == nil || ctx.Err() != nil {
			delete(failed, id)
			return
		}
		next := retry{backoff: time.Second}
		if prev, ok := failed[id]; ok {
			next.backoff = min(2*prev.backoff, 30*time.Second)
		}
		next.at = time.Now().Add(next.backoff)
		failed[id] = next
		r.logger.Warn("routing failed; retrying", "case_id", id, "retry_in", next.backoff, "error", err)
	}
	drain := func() {
		for ctx.Err() == nil {
			ids := r.take(64)
			if len(ids) == 0 {
				return
			}
			errs := r.cmds.RouteMany(ctx, ids, r.queues.Rules())
			for _, id := range ids {
				attempt(id, errs[id])
			}
		}
	}
	r.enqueue(r.unrouted()...)
	for {
		drain()
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case now := <-tick.C:
			fmu.Lock()
			var due []string
			for id, f := range failed {
				if !now.Before(f.at) {
					due = append(due, id)
				}
			}
			fmu.Unlock()
			r.enqueue(due...)
		case <-sweep.C:
			r.enqueue(r.unrouted()...)
		}
	}
}

// unrouted lists the cases still waiting for a queue.
func (r *Router) unrouted() []string {
	ids, err := r.pending.Unrouted()
	if err != nil {
		r.logger.Warn("listing unrouted cases failed", "error", err)
	}
	return ids
}
