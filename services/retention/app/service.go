// Package app is the retention service's application layer: the
// projector that keeps the deadline index, the sweeper that applies the
// plan when deadlines pass, holds and preservation, and the data-subject
// requests (register extract, erasure, rectification).
//
// The sweeper only appends events (PersonalDataRedacted, CaseArchived,
// CaseDeleted), each with the case's expected revision, so two instances
// or a restart give exactly one event per deadline. What follows from an
// event (destroying keys, the ledger receipt, removing the stream) is done
// by the projector when it applies the event, before its checkpoint moves:
// a crash in between repeats those steps, and each of them is idempotent.
package app

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kontakt-se/kontakt/pkg/blindindex"
	"github.com/kontakt-se/kontakt/pkg/caseevents"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

// Sentinel errors, mapped to gRPC codes in ports.
var (
	// ErrNotFound means there is no such case (never registered, or
	// deleted).
	ErrNotFound = errors.New("no such case")
	// ErrHoldNotFound means the case has no hold with that id in force.
	ErrHoldNotFound = errors.New("no such hold on the case")
	// ErrInvalid means a request's values are wrong; the message names
	// the field.
	ErrInvalid = errors.New("invalid value")
	// ErrConflict means the case kept changing under the command; the
	// caller may retry.
	ErrConflict = errors.New("the case changed concurrently")
)

// Config shapes the service.
type Config struct {
	// Plan is the retention plan in force.
	Plan *domain.Plan
	// SweepInterval is how often the sweeper looks for due cases; it
	// also runs at once after a hold is released. Zero: one minute.
	SweepInterval time.Duration
	// Workers is how many cases the sweeper and the projector's effects
	// handle at once. Zero: 64.
	Workers int
	// Journal, when set, receives every event whose effect destroys keys,
	// deletes a stream or removes archive packages, before the effect
	// runs, and every receipt once it is in the ledger (see effect). The
	// Ledger must then be a StoredRecorder.
	Journal Journal
}

// Options are what New builds the service from: the adapters it uses
// (the interfaces of ports.go) and its configuration.
type Options struct {
	Store   EventStore
	Sealer  Sealer
	Ledger  Ledger
	Index   Index
	Archive Archive
	Audit   Audit
	// Blind computes the blind-index tokens that find a person's cases.
	Blind *blindindex.Index
	// Attachments deletes stored attachment content at the redaction of
	// the attachments class and at the deletion of the case; nil when no
	// content is stored anywhere.
	Attachments Attachments
	// Clock is the time the plan is applied at; nil means time.Now.
	Clock func() time.Time
	// Logger nil discards.
	Logger *slog.Logger
	Config
}

// Service is the retention service.
type Service struct {
	store   EventStore
	sealer  Sealer
	ledger  Ledger
	idx     Index
	archive Archive
	audit   Audit
	blobs   Attachments
	blind   *blindindex.Index
	clock   func() time.Time
	log     *slog.Logger
	cfg     Config
	wake    chan struct{}
	// model is the index as the runner applies it, and runner keeps it
	// up to date with the log.
	model  projection.Resetter
	runner *projection.Runner

	ledgerMu sync.Mutex
	// swept maps a case to the revision the sweeper last appended.
	sweptMu sync.Mutex
	swept   map[string]uint64
	// lastSweep is when the last pass ran (Sweep is called from one
	// goroutine at a time).
	lastSweep time.Time
	// sweptOK is when the last pass that ended without an error began,
	// in Unix nanoseconds of real time (0: none yet), for the metrics.
	sweptOK atomic.Int64
}

// New builds the service.
func New(o Options) (*Service, error) {
	cfg := o.Config
	switch {
	case o.Store == nil || o.Sealer == nil || o.Ledger == nil || o.Index == nil || o.Archive == nil || o.Audit == nil || o.Blind == nil:
		return nil, errors.New("retention: an adapter is missing (store, sealer, ledger, index, archive, audit, blind index)")
	case cfg.Plan == nil:
		return nil, errors.New("retention: no plan")
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Minute
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if _, ok := o.Ledger.(StoredRecorder); cfg.Journal != nil && !ok {
		return nil, errors.New("retention: a shred journal needs a ledger that returns the receipts it stored")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		store: o.Store, sealer: o.Sealer, ledger: o.Ledger, idx: o.Index, archive: o.Archive, audit: o.Audit, blobs: o.Attachments, blind: o.Blind,
		clock: o.Clock, log: o.Logger, cfg: cfg, wake: make(chan struct{}, 1), swept: map[string]uint64{},
	}
	s.model = o.Index.Model(s.planFingerprint(), s.applyBatch)
	rc := projection.Config{Name: "retention", Store: o.Store, Model: s.model, Logger: o.Logger}
	if h, ok := o.Store.(interface {
		Head(context.Context) (eventstore.Position, error)
	}); ok {
		rc.Head = h.Head
	}
	var err error
	if s.runner, err = projection.New(rc); err != nil {
		return nil, err
	}
	return s, nil
}

// Plan returns the plan in force.
func (s *Service) Plan() *domain.Plan { return s.cfg.Plan }

// Wake makes the sweeper look for due cases now.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// readCase reads a case's stream and folds it. A stream that is gone
// gives ErrNotFound.
func (s *Service) readCase(ctx context.Context, caseID string) (*domain.Case, []eventstore.RecordedEvent, error) {
	if err := seal.ValidateCaseID(caseID); err != nil {
		return nil, nil, ErrNotFound
	}
	recs, err := s.store.Read(ctx, caseID)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	c, err := fold(recs)
	if err != nil {
		return nil, nil, err
	}
	if c.Deleted || c.ID == "" {
		return nil, nil, ErrNotFound
	}
	return c, recs, nil
}

// fold builds a case's retention state from its events. Events of types
// this build does not know only move the revision.
func fold(recs []eventstore.RecordedEvent) (*domain.Case, error) {
	c := &domain.Case{}
	for _, r := range recs {
		msg, err := caseevents.Decode(r.Type, r.Data)
		if errors.Is(err, caseevents.ErrUnknown) {
			c.Revision = uint64(r.Revision)
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := c.Apply(msg, uint64(r.Revision), r.Recorded); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// appendEvent appends one event to a case's stream at the expected
// revision. The event id is derived from what the event is for, so a
// retry after a lost acknowledgement is recognised by the store.
func (s *Service) appendEvent(ctx context.Context, caseID string, expected uint64, id string, m proto.Message) (uint64, error) {
	data, err := proto.Marshal(m)
	if err != nil {
		return 0, err
	}
	rev, err := s.store.Append(ctx, caseID, eventstore.Exact(eventstore.Revision(expected)), eventstore.Event{
		ID: id, Type: caseevents.TypeOf(m), Data: data,
	})
	return uint64(rev), err
}
