package app

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/kontakt-se/kontakt/services/routing/adapters/readmodel"
	"github.com/kontakt-se/kontakt/services/routing/domain"
)

// Unrouted lists the cases registered but not yet in a queue.
type Unrouted interface {
	Unrouted() ([]string, error)
}

// Router puts every new case in a queue by the rules. It learns of new
// cases from the read model's change feed and, at start and after every
// failure, from the read model's list of unrouted cases, so a case
// registered while no router ran is routed when one starts. Exactly once
// holds because Commands.Route appends with the expected revision: of two
// routers deciding on one case, one append wins and the other finds the
// case routed.
type Router struct {
	cmds    *Commands
	rules   *domain.Rules
	pending Unrouted
	wake    chan string
	logger  *slog.Logger
}

// NewRouter builds a router.
func NewRouter(cmds *Commands, rules *domain.Rules, pending Unrouted, logger *slog.Logger) *Router {
	return &Router{cmds: cmds, rules: rules, pending: pending, wake: make(chan string, 4096), logger: logger}
}

// Observe is the read model's change hook: a registered case is routed.
func (r *Router) Observe(c readmodel.Change) {
	if c.Kind != readmodel.ChangeRegistered {
		return
	}
	select {
	case r.wake <- c.Row.CaseID:
	default:
		// The periodic sweep picks it up.
	}
}

// retry remembers a case whose routing failed and when to try again.
type retry struct {
	at      time.Time
	backoff time.Duration
}

// Run routes until ctx ends. A case whose routing failed (the store was
// away, say) is retried with a growing back-off, from one second up to
// half a minute; a sweep every few minutes catches anything the change
// feed dropped.
func (r *Router) Run(ctx context.Context) error {
	sweep := time.NewTicker(5 * time.Minute)
	defer sweep.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	failed := map[string]retry{}
	attempt := func(id string) {
		err := r.route(ctx, id)
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
	for _, id := range r.unrouted() {
		attempt(id)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case id := <-r.wake:
			attempt(id)
		case now := <-tick.C:
			for id, f := range failed {
				if !now.Before(f.at) {
					attempt(id)
				}
			}
		case <-sweep.C:
			for _, id := range r.unrouted() {
				attempt(id)
			}
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

func (r *Router) route(ctx context.Context, caseID string) error {
	err := r.cmds.Route(ctx, caseID, r.rules)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}
