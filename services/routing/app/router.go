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
		// The sweep below picks it up.
	}
}

// Run routes until ctx ends.
func (r *Router) Run(ctx context.Context) error {
	sweep := time.NewTicker(5 * time.Minute)
	defer sweep.Stop()
	r.sweep(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case id := <-r.wake:
			if err := r.route(ctx, id); err != nil {
				r.logger.Warn("routing failed; the next sweep retries", "case_id", id, "error", err)
			}
		case <-sweep.C:
			r.sweep(ctx)
		}
	}
}

func (r *Router) sweep(ctx context.Context) {
	ids, err := r.pending.Unrouted()
	if err != nil {
		r.logger.Warn("listing unrouted cases failed", "error", err)
		return
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		if err := r.route(ctx, id); err != nil {
			r.logger.Warn("routing failed; the next sweep retries", "case_id", id, "error", err)
		}
	}
}

func (r *Router) route(ctx context.Context, caseID string) error {
	err := r.cmds.Route(ctx, caseID, r.rules)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}
