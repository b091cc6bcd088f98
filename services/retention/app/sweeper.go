package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/caseevents"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

// sweepPage is how many due cases the sweeper takes from the index at a
// time.
const sweepPage = 1024

// appendBatch bounds the deadline events the sweeper appends in one
// atomic batch: one disk sync for them all on a sync-always server, and a
// batch the projector applies in one go (projection.DefaultBatchSize).
const appendBatch = 256

// RunSweeper applies the plan to due cases: at start, every
// SweepInterval, and when woken (a hold released). It returns when ctx
// ends.
func (s *Service) RunSweeper(ctx context.Context) error {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		if n, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("retention sweep failed; it runs again at the next interval", "acted_on", n, "error", err)
		} else if n > 0 {
			s.log.Info("retention sweep", "acted_on", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.wake:
		}
	}
}

// Sweep makes one pass over the cases the index says are due and applies
// what the plan says to each. It returns how many events it appended.
// Each case is read from the event store first, so an index that lags
// behind never causes a second action: the expected revision refuses an
// append that raced with another sweeper, and that case is looked at
// again in the next pass.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	if !s.indexCaughtUp(ctx) && time.Since(s.lastSweep) < max(10*s.cfg.SweepInterval, time.Minute) {
		// The index still lacks events that were in the log when the pass
		// began (after a restart, say, thousands of this sweeper's own
		// redactions): the cases it lists as due would be read only to
		// find them done. The next pass tries again; a log whose end the
		// index never reaches (a backend whose head counts other events)
		// still gets a pass now and then.
		return 0, nil
	}
	s.lastSweep = time.Now()
	began := s.lastSweep
	now := s.clock()
	ids, err := s.idx.Due(now, sweepPage)
	if err != nil {
		return 0, err
	}
	seen := map[string]bool{}
	total := 0
	for len(ids) > 0 {
		var (
			jobs []func(context.Context) error
			mu   sync.Mutex
			due  []*pending
		)
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			if s.indexBehind(id) {
				// Our own event is not in the index yet; the case is
				// looked at once the projector has applied it.
				continue
			}
			jobs = append(jobs, func(ctx context.Context) error {
				p, n, err := s.prepare(ctx, id, now)
				mu.Lock()
				defer mu.Unlock()
				total += n
				if p != nil {
					due = append(due, p)
				}
				return err
			})
		}
		if len(jobs) == 0 {
			break
		}
		err := s.parallel(ctx, jobs)
		n, aerr := s.appendDeadlines(ctx, due, now)
		total += n
		if err = errors.Join(err, aerr); err != nil {
			return total, err
		}
		// The index moves as the projector applies what was appended; ask
		// again for what is still due, skipping what this pass handled.
		ids, err = s.idx.Due(now, sweepPage+len(seen))
		if err != nil {
			return total, err
		}
	}
	s.sweptOK.Store(began.UnixNano())
	return total, nil
}

// Backlog is what the operator watches of the sweeper: how many cases
// are past a deadline the plan has not yet carried out (held cases have
// none), the earliest such deadline (zero when none), by the service's
// clock, and when the last pass that ended without an error began (zero
// before the first).
func (s *Service) Backlog() (overdue int, earliest, lastSweep time.Time, err error) {
	overdue, earliest, err = s.idx.Overdue(s.clock())
	if ok := s.sweptOK.Load(); ok != 0 {
		lastSweep = time.Unix(0, ok)
	}
	return overdue, earliest, lastSweep, err
}

// Now is the service's clock (development mode may run it ahead), by
// which deadlines fall due.
func (s *Service) Now() time.Time { return s.clock() }

// indexCaughtUp waits, at most one sweep interval, until the index has
// applied every event that was in the log when it was called. A store
// that cannot say where the log ends counts as caught up.
func (s *Service) indexCaughtUp(ctx context.Context) bool {
	h, ok := s.store.(interface {
		Head(context.Context) (eventstore.Position, error)
	})
	if !ok {
		return true
	}
	head, err := h.Head(ctx)
	if err != nil {
		return true
	}
	deadline := time.Now().Add(s.cfg.SweepInterval)
	for {
		cp, err := s.idx.Checkpoint()
		if err != nil || cp >= head {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// appended notes the revision the sweeper appended to a case, so that
// passes until the projector has applied it skip the case instead of
// reading its stream again only to find nothing to do.
func (s *Service) appended(caseID string, rev uint64) {
	s.sweptMu.Lock()
	defer s.sweptMu.Unlock()
	s.swept[caseID] = rev
}

// indexBehind reports whether the index has not yet applied the last
// event the sweeper appended to a case.
func (s *Service) indexBehind(caseID string) bool {
	s.sweptMu.Lock()
	defer s.sweptMu.Unlock()
	rev, ok := s.swept[caseID]
	if !ok {
		return false
	}
	e, found, err := s.idx.Get(caseID)
	if err == nil && found && e.Case.Revision < rev {
		return true
	}
	delete(s.swept, caseID)
	return false
}

// pending is a case with deadlines that have passed: its state as read
// from its stream (and moved on by what the sweeper appended since), and
// its deadline events still to append, in order.
type pending struct {
	c    *domain.Case
	dues []domain.Due
}

// prepare reads a case and returns what the sweeper must append to it at
// now, or nil. A case that must be preserved is exported to the archive
// first, and its CaseArchived appended here (n counts it), so that its
// deadline events follow the package.
func (s *Service) prepare(ctx context.Context, caseID string, now time.Time) (p *pending, n int, err error) {
	c, recs, err := s.readCase(ctx, caseID)
	if errors.Is(err, ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("case %s: %w", caseID, err)
	}
	if c.OnHold() {
		return nil, 0, nil
	}
	plan := s.cfg.Plan
	dues := plan.DueBy(c, now)
	if len(dues) == 0 {
		return nil, 0, nil
	}
	// Preserved cases are exported before anything is removed, and again
	// when they received content since the last package.
	if plan.MustArchive(c) && (!c.Archived || c.ChangedSinceArchive) {
		ev, err := s.exportArchive(ctx, c, recs, now)
		if err != nil {
			return nil, 0, fmt.Errorf("case %s: archive: %w", caseID, err)
		}
		rev, err := s.appendEvent(ctx, caseID, c.Revision, fmt.Sprintf("retention-archive-%s-%d", caseID, c.Revision), ev)
		if errors.Is(err, eventstore.ErrConflict) {
			return nil, 0, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("case %s: %w", caseID, err)
		}
		s.appended(caseID, rev)
		if err := c.Apply(ev, rev, now); err != nil {
			return nil, 1, err
		}
		n = 1
	}
	return &pending{c: c, dues: dues}, n, nil
}

// appendDeadlines appends the deadline events of the cases, each with its
// case's expected revision: every case's first event in atomic batches of
// up to appendBatch, then every second one, and so on (a stream may
// appear only once in a batch). A refused batch does not say which event
// failed, so its events are then appended one by one, which sorts out
// the cases another sweeper acted on first (their append is refused and
// they are looked at again in the next pass) and recognises an event of
// an earlier attempt that landed (its id is derived from the case and
// revision). It returns how many events it appended.
func (s *Service) appendDeadlines(ctx context.Context, cases []*pending, now time.Time) (int, error) {
	batcher, _ := s.store.(eventstore.BatchAppender)
	appended := 0
	var errs []error
	// done notes a case's event as appended at rev and moves the case on
	// to its next deadline, if it has one left.
	done := func(p *pending, ev proto.Message, rev uint64) error {
		appended++
		s.appended(p.c.ID, rev)
		p.dues = p.dues[1:]
		if err := p.c.Apply(ev, rev, now); err != nil {
			p.dues = nil
			return fmt.Errorf("case %s: %w", p.c.ID, err)
		}
		if p.c.Deleted {
			p.dues = nil
		}
		return nil
	}
	for len(cases) > 0 {
		for chunk := range slices.Chunk(cases, appendBatch) {
			type next struct {
				p  *pending
				ev proto.Message
				id string
			}
			nexts := make([]next, len(chunk))
			appends := make([]eventstore.BatchAppend, len(chunk))
			for i, p := range chunk {
				ev, id := s.deadlineEvent(p.c, p.dues[0], now)
				data, err := proto.Marshal(ev)
				if err != nil {
					return appended, err
				}
				nexts[i] = next{p: p, ev: ev, id: id}
				appends[i] = eventstore.BatchAppend{
					Stream: p.c.ID, Expected: eventstore.Exact(eventstore.Revision(p.c.Revision)),
					Event: eventstore.Event{ID: id, Type: caseevents.TypeOf(ev), Data: data},
				}
			}
			if batcher != nil && len(chunk) > 1 {
				if revs, err := batcher.AppendBatch(ctx, appends); err == nil {
					for i, n := range nexts {
						errs = append(errs, done(n.p, n.ev, uint64(revs[i])))
					}
					continue
				}
			}
			for _, n := range nexts {
				rev, err := s.appendEvent(ctx, n.p.c.ID, n.p.c.Revision, n.id, n.ev)
				switch {
				case errors.Is(err, eventstore.ErrConflict):
					n.p.dues = nil
				case err != nil:
					n.p.dues = nil
					errs = append(errs, fmt.Errorf("case %s: %w", n.p.c.ID, err))
				default:
					errs = append(errs, done(n.p, n.ev, rev))
				}
			}
		}
		cases = slices.DeleteFunc(cases, func(p *pending) bool { return len(p.dues) == 0 })
	}
	return appended, errors.Join(errs...)
}

// deadlineEvent is the event that carries out one deadline, and its event
// id: derived from the case, the rule and the revision it follows, so
// that a retried append is recognised instead of written twice.
func (s *Service) deadlineEvent(c *domain.Case, d domain.Due, now time.Time) (proto.Message, string) {
	plan := s.cfg.Plan
	if d.Action == domain.ActionRedact {
		m := &casev1.PersonalDataRedacted{
			CaseId: c.ID, Reason: "retention", PlanVersion: plan.Version, Rule: d.Rule, RedactedAt: timestamppb.New(now),
			DueAt: timestamppb.New(d.At),
		}
		for _, cl := range d.Classes {
			m.DataClasses = append(m.DataClasses, classToProto(cl))
		}
		return m, fmt.Sprintf("retention-redact-%s-%d", c.ID, c.Revision)
	}
	return &casev1.CaseDeleted{
		CaseId: c.ID, CaseNumber: c.Number, PlanVersion: plan.Version, Rule: d.Rule, DeletedAt: timestamppb.New(now),
		DueAt: timestamppb.New(d.At),
	}, fmt.Sprintf("retention-delete-%s-%d", c.ID, c.Revision)
}
