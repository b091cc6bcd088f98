package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/groupcommit"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// Group commit.
//
// A registration is durable only when its data keys, its case number and
// its CaseRegistered event are on disk, and with NATS syncing every write
// that was five or so disk syncs per case, one after the other. Group
// commit lets the registrations that arrive while a commit is running
// share the next one: their keys are stored in one atomic batch, their
// numbers allocated as one block, and their events appended in one atomic
// batch, so a group of any size costs three writes. Every request still
// gets its own answer only after all three are durable.
//
// Anything that makes a write fail (a key id used before, a conflicting
// stream, a server without atomic batches, a lost acknowledgement) sends
// the group's members down the path a single registration takes, from the
// step that failed, where each gets its own outcome. Nothing is half-written: keys
// without an event open nothing, numbers without an event are gaps (as
// after any failed registration), and an event is appended only after its
// keys and number are stored.

// DraftSealer seals the personal data of new cases into drafts whose keys
// are stored together. *seal.Sealer implements it.
type DraftSealer interface {
	NewDraft(caseID string) (*seal.Draft, error)
	CommitDrafts(ctx context.Context, drafts []*seal.Draft) error
}

// GroupConfig tunes group commit.
type GroupConfig struct {
	// MaxSize bounds a group; zero means DefaultGroupSize. A group's key
	// batch holds one record per case and must stay below the server's
	// 1,000-message limit on atomic batches (seal.MaxBatchCases).
	MaxSize int
	// Timeout bounds one group's commit; zero means DefaultGroupTimeout.
	Timeout time.Duration
	// Linger is the longest a group waits to reach the size of the one
	// before; zero means DefaultGroupLinger.
	Linger time.Duration
}

// Defaults for GroupConfig.
const (
	DefaultGroupSize    = 128
	DefaultGroupTimeout = 15 * time.Second
	DefaultGroupLinger  = 5 * time.Millisecond
)

// pending is one registration waiting for its group.
type pending struct {
	ctx     context.Context
	reg     domain.Registration
	ev      *casev1.CaseRegistered
	draft   *seal.Draft
	eventID string
	now     time.Time
	done    chan result
}

type result struct {
	r   Registered
	err error
}

// groups is the queue of registrations and the state of its workers.
type groups struct {
	queue chan *pending
	// mu guards running: submit enqueues under the read lock, and the
	// pipeline stops taking work only under the write lock, so nothing is
	// enqueued after the last drain.
	mu      sync.RWMutex
	running bool
	// lastSize is the size of the last group collected.
	lastSize atomic.Int64
	cfg      GroupConfig
}

// RunGroupCommit commits registrations in groups until ctx ends. While it
// does not run (before, after, or in tests that never start it) every
// registration is committed on its own, so it only changes speed, never
// outcomes. It returns when ctx ends, after answering every registration
// it had taken.
//
// It is a two-stage pipeline: the first stage collects a group and stores
// its keys and numbers, the second appends its events; while one group's
// events go to disk, the next group's keys and numbers do. Each stage
// works on one group at a time, so groups stay as large as the load makes
// them and are committed in order.
func (s *Service) RunGroupCommit(ctx context.Context) error {
	if s.drafts == nil {
		return errors.New("intake: group commit needs a sealer that makes drafts")
	}
	s.groups.mu.Lock()
	if s.groups.running {
		s.groups.mu.Unlock()
		return errors.New("intake: group commit is already running")
	}
	s.groups.running = true
	s.groups.mu.Unlock()

	stop := make(chan struct{})
	prepared := make(chan []*pending, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(prepared)
		for {
			select {
			case <-stop:
				return
			case first := <-s.groups.queue:
				if group := s.prepareGroup(ctx, s.collect(first)); group != nil {
					prepared <- group
				}
			}
		}
	})
	wg.Go(func() {
		for group := range prepared {
			s.appendGroup(ctx, group)
		}
	})
	<-ctx.Done()
	// No new registrations from here on (they register alone); the
	// pipeline keeps taking queued ones until the lock is ours, so a
	// submitter waiting for queue space is never stranded.
	s.groups.mu.Lock()
	s.groups.running = false
	s.groups.mu.Unlock()
	close(stop)
	wg.Wait()
	// What is still queued: commit it alone.
	for {
		select {
		case p := <-s.groups.queue:
			if group := s.prepareGroup(ctx, []*pending{p}); group != nil {
				s.appendGroup(ctx, group)
			}
		default:
			return nil
		}
	}
}

// collect takes what is queued behind first, up to the group size. When
// that is fewer than the last group had, it waits a moment (Linger) for
// the rest: under steady load the clients of the last group send their
// next requests just after their answers, and without the wait one early
// request would take a whole commit for itself while the others queue
// behind it. Under light load the last group was small, so nobody waits.
func (s *Service) collect(first *pending) []*pending {
	group := []*pending{first}
	want := min(int(s.groups.lastSize.Load()), s.groups.cfg.MaxSize)
	var timeout <-chan time.Time
	for len(group) < s.groups.cfg.MaxSize {
		select {
		case p := <-s.groups.queue:
			group = append(group, p)
			continue
		default:
		}
		if len(group) >= want {
			break
		}
		if timeout == nil {
			t := time.NewTimer(s.groups.cfg.Linger)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case p := <-s.groups.queue:
			group = append(group, p)
			continue
		case <-timeout:
		}
		break
	}
	s.groups.lastSize.Store(int64(len(group)))
	return group
}

// submit hands a registration sealed into a draft to group commit and
// waits for its outcome. ok is false when group commit is not running;
// then nothing was done and the caller registers alone.
func (s *Service) submit(ctx context.Context, p *pending) (r Registered, ok bool, err error) {
	p.ctx, p.done = ctx, make(chan result, 1)
	s.groups.mu.RLock()
	if !s.groups.running {
		s.groups.mu.RUnlock()
		return Registered{}, false, nil
	}
	select {
	case s.groups.queue <- p:
		s.groups.mu.RUnlock()
	case <-ctx.Done():
		s.groups.mu.RUnlock()
		return Registered{}, true, ctx.Err()
	}
	select {
	case res := <-p.done:
		return res.r, true, res.err
	case <-ctx.Done():
		// The group may still commit it, as after a lost acknowledgement.
		return Registered{}, true, ctx.Err()
	}
}

// prepareGroup stores the group's keys (one atomic batch) and numbers (one
// block) side by side, as they do not depend on each other. It returns the group ready for
// its events, or nil when it finished the members itself: those whose
// callers gave up (nothing is written for them) and, after a failed batch,
// all of them, each on its own from the step that failed.
//
// The batches run on a context of their own (a group serves many
// requests, see groupContext), so stopping the service does not cut a
// commit that started.
func (s *Service) prepareGroup(ctx context.Context, group []*pending) []*pending {
	live := group[:0]
	for _, p := range group {
		if err := p.ctx.Err(); err != nil {
			p.done <- result{err: err}
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return nil
	}
	group = live
	cctx, cancel := s.groupContext(ctx, group)
	defer cancel()

	drafts := make([]*seal.Draft, len(group))
	reqs := make([]Allocation, len(group))
	for i, p := range group {
		drafts[i] = p.draft
		reqs[i] = Allocation{At: p.now, CaseID: p.ev.GetCaseId()}
	}
	var numbers []string
	var keysErr, numbersErr error
	var wg sync.WaitGroup
	wg.Go(func() { keysErr = s.drafts.CommitDrafts(cctx, drafts) })
	wg.Go(func() { numbers, numbersErr = s.numbers.Allocate(cctx, reqs) })
	wg.Wait()
	switch {
	case keysErr != nil && numbersErr != nil:
		s.logger.Info("group commit: keys and numbers not stored together, registering alone", "cases", len(group), "error", errors.Join(keysErr, numbersErr))
		s.each(group, func(p *pending) (Registered, error) { return s.registerAlone(p.ctx, p.reg, p.ev, p.eventID) })
		return nil
	case keysErr != nil:
		// Sealed with keys that were not stored: seal again, alone, with
		// the stored keys, and keep the numbers the group got, so they
		// leave no gaps and their records point at the right cases.
		s.logger.Info("group commit: keys not stored together, sealing alone", "cases", len(group), "error", keysErr)
		for i, p := range group {
			p.ev.CaseNumber = numbers[i]
		}
		s.each(group, func(p *pending) (Registered, error) {
			if err := s.sealAlone(p.ctx, p.reg, p.ev); err != nil {
				return Registered{}, err
			}
			return s.appendRegistered(p.ctx, p.ev, p.eventID)
		})
		return nil
	case numbersErr != nil:
		s.logger.Info("group commit: numbers not allocated together, allocating alone", "cases", len(group), "error", numbersErr)
		s.each(group, func(p *pending) (Registered, error) { return s.numberAndAppend(p.ctx, p.ev, p.eventID) })
		return nil
	}
	for i, p := range group {
		p.ev.CaseNumber = numbers[i]
	}
	return group
}

// appendGroup appends the group's events in one batch where the store
// can, and answers every member. A refused batch is appended one by one:
// each event then meets its own conflict, or is recognised as landed if
// the batch did after all.
func (s *Service) appendGroup(ctx context.Context, group []*pending) {
	b, ok := s.store.(eventstore.BatchAppender)
	if !ok {
		s.each(group, func(p *pending) (Registered, error) { return s.appendRegistered(p.ctx, p.ev, p.eventID) })
		return
	}
	appends := make([]eventstore.BatchAppend, len(group))
	for i, p := range group {
		ev, err := registeredEvent(p.ev, p.eventID)
		if err != nil {
			s.each(group, func(p *pending) (Registered, error) { return s.appendRegistered(p.ctx, p.ev, p.eventID) })
			return
		}
		appends[i] = eventstore.BatchAppend{Stream: p.ev.GetCaseId(), Expected: eventstore.NoStream(), Event: ev}
	}
	cctx, cancel := s.groupContext(ctx, group)
	defer cancel()
	if _, err := b.AppendBatch(cctx, appends); err != nil {
		if !errors.Is(err, eventstore.ErrConflict) {
			s.logger.Info("group commit: events not appended together, appending alone", "cases", len(group), "error", err)
		}
		s.each(group, func(p *pending) (Registered, error) { return s.appendRegistered(p.ctx, p.ev, p.eventID) })
		return
	}
	for _, p := range group {
		p.done <- result{r: registered(p.ev)}
	}
}

// groupContext bounds a group's write by the group timeout and by the
// members' own requests (groupcommit.Context): a stream leader killed
// mid-request drops it without a reply, and a write nobody waits for must
// not hold its stage while the registrations queued behind it time out.
// Stopping the service (ctx) does not cut the write.
func (s *Service) groupContext(ctx context.Context, group []*pending) (context.Context, context.CancelFunc) {
	members := make([]context.Context, len(group))
	for i, p := range group {
		members[i] = p.ctx
	}
	return groupcommit.Context(ctx, s.groups.cfg.Timeout, members)
}

// each finishes every member of a group on its own, side by side.
func (s *Service) each(group []*pending, finish func(*pending) (Registered, error)) {
	var wg sync.WaitGroup
	for _, p := range group {
		wg.Go(func() {
			r, err := finish(p)
			p.done <- result{r: r, err: err}
		})
	}
	wg.Wait()
}

// GroupCommitRunning reports whether registrations are grouped now, for
// operators' checks and for tests that must know before they measure.
func (s *Service) GroupCommitRunning() bool { return s.groups.isRunning() }

// isRunning reports whether group commit runs now; submit checks again.
func (g *groups) isRunning() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.running
}

func (c *GroupConfig) setDefaults() error {
	if c.MaxSize == 0 {
		c.MaxSize = DefaultGroupSize
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultGroupTimeout
	}
	if c.Linger == 0 {
		c.Linger = DefaultGroupLinger
	}
	switch {
	case c.MaxSize < 1 || c.MaxSize > seal.MaxBatchCases:
		return fmt.Errorf("intake: group size %d out of range 1..%d", c.MaxSize, seal.MaxBatchCases)
	case c.Timeout < 0:
		return fmt.Errorf("intake: negative group commit timeout %s", c.Timeout)
	case c.Linger < 0 || c.Linger > time.Second:
		return fmt.Errorf("intake: group linger %s out of range 0..1s", c.Linger)
	}
	return nil
}
