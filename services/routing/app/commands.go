package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/routing/domain"
)

// ErrNotFound means there is no such case (or it was deleted).
var ErrNotFound = errors.New("case not found")

// Commands carries out the agent workflow: every command loads the case's
// stream, lets the domain decide, and appends with the expected revision;
// a conflict (somebody else acted first) reloads and decides again.
type Commands struct {
	store   EventStore
	sealer  Sealer
	clock   func() time.Time
	logger  *slog.Logger
	metrics Metrics
}

// CommandsConfig is what the command side is built from.
type CommandsConfig struct {
	Store  EventStore
	Sealer Sealer
	Clock  func() time.Time
	Logger *slog.Logger
	// Metrics receives what the commands observe; nil observes nothing.
	Metrics Metrics
}

// NewCommands builds the command side.
func NewCommands(cfg CommandsConfig) *Commands {
	return &Commands{store: cfg.Store, sealer: cfg.Sealer, clock: cfg.Clock, logger: cfg.Logger, metrics: cfg.Metrics}
}

// maxAttempts bounds the reload-and-retry loop on conflicts.
const maxAttempts = 5

// Load folds a case's events into the aggregate.
func (c *Commands) Load(ctx context.Context, caseID string) (*domain.Case, error) {
	recs, err := c.store.Read(ctx, caseID)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return nil, fmt.Errorf("case %s: %w", caseID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read case: %w", err)
	}
	evs := make([]domain.Event, 0, len(recs))
	for _, r := range recs {
		msg, err := domain.Decode(r.Type, r.Data)
		if errors.Is(err, domain.ErrUnknownEvent) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", r.Type, err)
		}
		evs = append(evs, domain.Event{Type: r.Type, Message: msg, Revision: uint64(r.Revision), Recorded: r.Recorded})
	}
	cs, err := domain.Fold(evs)
	if err != nil {
		return nil, fmt.Errorf("case %s: %w", caseID, err)
	}
	return cs, nil
}

// decide is one command: given the current case, the event to append.
type decide func(cs *domain.Case, now time.Time) (proto.Message, error)

// execute runs a command with optimistic concurrency and returns the case
// as it is after the command.
func (c *Commands) execute(ctx context.Context, caseID string, d decide) (*domain.Case, error) {
	for attempt := 1; ; attempt++ {
		cs, err := c.Load(ctx, caseID)
		if err != nil {
			return nil, err
		}
		now := c.clock()
		ev, err := d(cs, now)
		if errors.Is(err, seal.ErrKeyDestroyed) {
			// The command sealed under a key that a redaction appended
			// after the read has destroyed: read the case again, which
			// names the class's next generation.
			if attempt < maxAttempts {
				continue
			}
			return nil, fmt.Errorf("%w: the case's data was redacted while the command ran: %w", eventstore.ErrConflict, err)
		}
		if err != nil {
			return nil, err
		}
		data, err := proto.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("encode event: %w", err)
		}
		name := string(ev.ProtoReflect().Descriptor().FullName())
		rev, err := c.appendOnce(ctx, caseID, eventstore.Exact(eventstore.Revision(cs.Version)), eventstore.Event{ID: uuid.NewString(), Type: name, Data: data})
		if errors.Is(err, eventstore.ErrConflict) && attempt < maxAttempts {
			continue
		}
		if errors.Is(err, eventstore.ErrStreamDeleted) {
			return nil, fmt.Errorf("case %s: %w", caseID, ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		if err := cs.Apply(domain.Event{Type: name, Message: ev, Revision: uint64(rev), Recorded: now}); err != nil {
			return nil, err
		}
		return cs, nil
	}
}

// appendOnce appends, retrying an unknown outcome with the same event id
// (the store recognises a write that landed).
func (c *Commands) appendOnce(ctx context.Context, caseID string, exp eventstore.ExpectedRevision, ev eventstore.Event) (eventstore.Revision, error) {
	var rev eventstore.Revision
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		rev, err = c.store.Append(ctx, caseID, exp, ev)
		if !errors.Is(err, eventstore.ErrUnavailable) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("append %s: %w", ev.Type, err)
	}
	return rev, nil
}

// textCommand is a command that carries a text of the answer class (an
// answer, a note, a forwarding comment), given the sealed text.
type textCommand func(cs *domain.Case, text *casev1.SealedPersonalData, now time.Time) (proto.Message, error)

// pendingText stands in for the sealed text while the domain decides
// whether it accepts the command at all; it is never appended.
var pendingText = &casev1.SealedPersonalData{KeyId: "pending", Ciphertext: []byte{0}}

// executeText runs a command whose text is sealed into the answer class.
// The text is sealed inside the command's loop, under the generation that
// the case's events, as read for that attempt, give the class: after the
// plan or an erasure redacted the class, a new text goes under the next
// generation's key, a fresh one, and the plan counts its period from when
// it was written (see ARCHITECTURE.md, Retention). Sealing before reading
// the case, as this did before, used the destroyed key, and every answer
// to a case older than its redaction failed. A redaction appended after
// the read makes the append fail on the expected revision, or the seal
// fail with ErrKeyDestroyed (the key went first); either way the command
// reads the case again. The domain decides once with a stand-in for the
// text first, so a command it refuses (not permitted, closed, deleted)
// makes no key and is refused for its own reason.
func (c *Commands) executeText(ctx context.Context, caseID, text string, d textCommand) (*domain.Case, error) {
	return c.execute(ctx, caseID, func(cs *domain.Case, now time.Time) (proto.Message, error) {
		if text == "" {
			return d(cs, nil, now)
		}
		if _, err := d(cs, pendingText, now); err != nil {
			return nil, err
		}
		b, err := proto.Marshal(&casev1.AnswerText{Text: text})
		if err != nil {
			return nil, err
		}
		sealed, err := c.sealer.Seal(ctx, cs.ID, seal.ClassAnswer, cs.Generations.Of(seal.ClassAnswer), b)
		clear(b)
		if err != nil {
			return nil, fmt.Errorf("seal text: %w", err)
		}
		return d(cs, sealed, now)
	})
}

// Claim assigns the case to the caller.
func (c *Commands) Claim(ctx context.Context, a domain.Actor, caseID string) (*domain.Case, error) {
	return c.execute(ctx, caseID, func(cs *domain.Case, now time.Time) (proto.Message, error) { return cs.Claim(a, now) })
}

// Release puts the case back in its queue.
func (c *Commands) Release(ctx context.Context, a domain.Actor, caseID string) (*domain.Case, error) {
	return c.execute(ctx, caseID, func(cs *domain.Case, now time.Time) (proto.Message, error) { return cs.Release(a, now) })
}

// Assign gives the case to someone (a supervisor's reassignment).
func (c *Commands) Assign(ctx context.Context, a domain.Actor, caseID, assignee string) (*domain.Case, error) {
	return c.execute(ctx, caseID, func(cs *domain.Case, now time.Time) (proto.Message, error) { return cs.Assign(a, assignee, now) })
}

// Move moves the case to another queue.
func (c *Commands) Move(ctx context.Context, a domain.Actor, caseID, toQueue string) (*domain.Case, error) {
	return c.execute(ctx, caseID, func(cs *domain.Case, now time.Time) (proto.Message, error) { return cs.Move(a, toQueue, now) })
}

// AddNote adds an internal note (sealed like the citizen's text).
func (c *Commands) AddNote(ctx context.Context, a domain.Actor, caseID, text string) (string, error) {
	noteID := uuid.NewString()
	_, err := c.executeText(ctx, caseID, text, func(cs *domain.Case, sealed *casev1.SealedPersonalData, now time.Time) (proto.Message, error) {
		return cs.AddNote(a, noteID, sealed, now)
	})
	return noteID, err
}

// Forward forwards the case to a department's queue or a named officer.
func (c *Commands) Forward(ctx context.Context, a domain.Actor, caseID, toQueue, toDepartment, toOfficer, comment string) (*domain.Case, error) {
	return c.executeText(ctx, caseID, comment, func(cs *domain.Case, sealed *casev1.SealedPersonalData, now time.Time) (proto.Message, error) {
		return cs.Forward(a, toQueue, toDepartment, toOfficer, sealed, now)
	})
}

// Answer records the answer given to the citizen (sealed). The case's
// first answer is its first response: its time since registration is
// observed here, where it is appended, once, by the process that
// appended it (a projector would observe it again at every rebuild, and
// in every instance).
func (c *Commands) Answer(ctx context.Context, a domain.Actor, caseID, answer string, delivery casev1.AnswerDelivery) (*domain.Case, error) {
	first := false
	cs, err := c.executeText(ctx, caseID, answer, func(cs *domain.Case, sealed *casev1.SealedPersonalData, now time.Time) (proto.Message, error) {
		first = cs.FirstResponseAt.IsZero()
		return cs.Answer(a, sealed, delivery, now)
	})
	if err == nil && first && c.metrics != nil {
		c.metrics.FirstResponse(cs.Queue, max(cs.FirstResponseAt.Sub(cs.RegisteredAt), 0))
	}
	return cs, err
}

// Close closes the case with a resolution.
func (c *Commands) Close(ctx context.Context, a domain.Actor, caseID string, r casev1.Resolution, fcr bool) (*domain.Case, error) {
	return c.execute(ctx, caseID, func(cs *domain.Case, now time.Time) (proto.Message, error) { return cs.Close(a, r, fcr, now) })
}

// Reopen opens a closed case again.
func (c *Commands) Reopen(ctx context.Context, a domain.Actor, caseID string) (*domain.Case, error) {
	return c.execute(ctx, caseID, func(cs *domain.Case, now time.Time) (proto.Message, error) { return cs.Reopen(a, now) })
}

// Route puts a new case in a queue by the rules, exactly once: the append
// expects the revision the decision was made on, so of two routers only
// one succeeds, and the other finds the case routed.
// RouteMany routes the cases like Route, with the CaseRouted events of
// all of them in one atomic batch where the store has batches: with a
// sync on every write, routing a burst of new cases one append at a time
// would cost the disk one sync per case beside intake's. A refused batch
// (a case changed since it was read, or the batch's outcome is unknown)
// falls back to Route per case, which rereads and finds a case routed by
// the batch already routed. It returns the error of each case that could
// not be routed; a case that does not exist (any more) is not an error.
func (c *Commands) RouteMany(ctx context.Context, caseIDs []string, rules *domain.Rules) map[string]error {
	errs := map[string]error{}
	routeOne := func(id string) {
		if err := c.Route(ctx, id, rules); err != nil && !errors.Is(err, ErrNotFound) {
			errs[id] = err
		}
	}
	b, ok := c.store.(eventstore.BatchAppender)
	if !ok || len(caseIDs) < 2 {
		for _, id := range caseIDs {
			routeOne(id)
		}
		return errs
	}
	type decided struct {
		id  string
		app eventstore.BatchAppend
	}
	var (
		mu      sync.Mutex
		batch   []decided
		wg      sync.WaitGroup
		limiter = make(chan struct{}, 8)
	)
	for _, id := range caseIDs {
		wg.Go(func() {
			limiter <- struct{}{}
			defer func() { <-limiter }()
			cs, err := c.Load(ctx, id)
			if errors.Is(err, ErrNotFound) {
				return
			}
			var ev proto.Message
			if err == nil {
				queue, rule := rules.Route(cs.Type, cs.Channel, cs.Category, cs.Mailbox)
				ev, err = cs.Route(queue, rule, rules.Version(), c.clock())
			}
			if errors.Is(err, domain.ErrAlreadyRouted) {
				return
			}
			var data []byte
			if err == nil {
				data, err = proto.Marshal(ev)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[id] = err
				return
			}
			batch = append(batch, decided{id: id, app: eventstore.BatchAppend{
				Stream: id, Expected: eventstore.Exact(eventstore.Revision(cs.Version)),
				Event: eventstore.Event{ID: uuid.NewString(), Type: string(ev.ProtoReflect().Descriptor().FullName()), Data: data},
			}})
		})
	}
	wg.Wait()
	if len(batch) == 0 {
		return errs
	}
	appends := make([]eventstore.BatchAppend, len(batch))
	for i, d := range batch {
		appends[i] = d.app
	}
	if _, err := b.AppendBatch(ctx, appends); err != nil {
		for _, d := range batch {
			routeOne(d.id)
		}
	}
	return errs
}

func (c *Commands) Route(ctx context.Context, caseID string, rules *domain.Rules) error {
	_, err := c.execute(ctx, caseID, func(cs *domain.Case, now time.Time) (proto.Message, error) {
		queue, rule := rules.Route(cs.Type, cs.Channel, cs.Category, cs.Mailbox)
		return cs.Route(queue, rule, rules.Version(), now)
	})
	if errors.Is(err, domain.ErrAlreadyRouted) {
		return nil
	}
	return err
}
