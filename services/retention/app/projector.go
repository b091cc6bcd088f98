package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/casenames"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/receipt"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/shredjournal"
	"github.com/kontakt-se/kontakt/pkg/subject"
	"github.com/kontakt-se/kontakt/services/retention/domain"
	"google.golang.org/protobuf/proto"
)

// Receipt kinds, the middle part of a receipt's key.
const (
	receiptRedact  = "redaction"
	receiptDelete  = "deletion"
	receiptArchive = "archive"
)

// RunProjector recomputes the due times when the plan changed, then keeps
// the index up to date with the log until ctx ends, on the one projection
// runner (pkg/projection): batches from the checkpoint, each applied with
// its effects and committed with the checkpoint, a failing batch retried
// from the checkpoint after a back-off, the lag reported as a metric.
func (s *Service) RunProjector(ctx context.Context) error {
	if err := s.reschedule(); err != nil {
		return err
	}
	return s.runner.Run(ctx)
}

// Rebuild empties the index and applies the log from its start up to its
// head, for `kontakt rebuild retention` (the server stopped). The effects
// run again and find themselves done: keys destroyed, receipts recorded,
// streams gone. progress, if not nil, gets the position reached and the
// head after each batch.
func (s *Service) Rebuild(ctx context.Context, progress func(done, total uint64)) error {
	return s.runner.Rebuild(ctx, progress)
}

// Projection is the runner that keeps the index, for its metrics.
func (s *Service) Projection() *projection.Runner { return s.runner }

// Model is the index as the runner applies it, for tests that hand it
// batches themselves.
func (s *Service) Model() projection.Resetter { return s.model }

// planFingerprint names the plan in force, as the index records it.
func (s *Service) planFingerprint() string { return s.cfg.Plan.Name + "@" + s.cfg.Plan.Version }

// reschedule recomputes every due time when the plan differs from the one
// the index was built with.
func (s *Service) reschedule() error {
	fp := s.planFingerprint()
	got, err := s.idx.Plan()
	if err != nil || got == fp {
		return err
	}
	s.log.Info("retention plan changed; recomputing deadlines", "plan", fp, "was", got)
	return s.idx.Reschedule(fp, s.nextDue)
}

// nextDue is when the sweeper must next look at a case: its earliest
// deadline, or never while a hold is in force.
func (s *Service) nextDue(e *Entry) time.Time {
	if e.Case.OnHold() || e.Case.Deleted {
		return time.Time{}
	}
	at, ok := s.cfg.Plan.NextDue(&e.Case)
	if !ok {
		return time.Time{}
	}
	return at
}

// effect is what follows from an applied event outside the index. It runs
// before the batch's transaction commits, in three phases over the whole
// batch: keys of redacted classes are destroyed (all of the batch's with
// one Sealer.DestroyBatch, their tombstones in atomic batches), then every
// receipt is recorded in log order (one atomic batch to the ledger), then
// deleted cases lose their remaining keys (again one DestroyBatch) and
// their streams.
// So a redaction's keys are gone before its receipt says so, and a
// deletion's receipt exists before its stream is removed. Every step is
// idempotent: a batch that fails is applied again from the checkpoint.
//
// With a shred journal (Config.Journal) the events come first: the
// batch's destructive events are written to the journal, and synced,
// before the first key is destroyed, and the receipts are written to it
// once they are in the ledger. So the journal names every key that is
// gone, even after a crash between the two, and a restore that replays
// it can destroy those keys again in an older copy of the store.
type effect struct {
	caseID string
	// destroy lists the classes whose keys go in the first phase, every
	// generation up to gens (the case's before the redaction).
	destroy []seal.Class
	// gens are the generations of the case's keys that destroy and
	// remove reach up to.
	gens seal.Generations
	// receipt, when set, is recorded in the second phase.
	receipt *receipt.Receipt
	// remove destroys every key and deletes the stream in the third.
	remove bool
	// blobs deletes the case's stored attachment content: after its key
	// in the first phase (a redaction of the attachments class), or
	// before the stream in the third (a deletion).
	blobs bool
	// unarchive removes the case's archive packages in the first phase: a
	// withdrawn mark for preservation leaves no package behind that the
	// plan does not require.
	unarchive bool
	// unarchiveBefore is the withdrawal's revision: packages written
	// after it belong to a later mark.
	unarchiveBefore uint64
	// journal is the event's entry for the shred journal (nil: the
	// effect destroys nothing).
	journal *shredjournal.Event
}

// applyBatch applies a batch of events to the index inside the batch's
// transaction (index.Model commits it with the checkpoint) and runs the
// batch's effects before that commit. Tokens are computed (which opens
// sealed contact details) and effects run with several workers at once,
// since each costs a round trip to the key store or the event store.
func (s *Service) applyBatch(ctx context.Context, tx IndexTx, evs []projection.Event) error {
	// Tokens first, concurrently: they need the key store. Contact and
	// identity tokens are kept apart so that each class's redaction or
	// rectification replaces only its own.
	toks := make([]tokenPair, len(evs))
	var jobs []func(context.Context) error
	for i, d := range evs {
		switch m := d.Message.(type) {
		case *casev1.CaseRegistered:
			jobs = append(jobs, func(ctx context.Context) error {
				var err error
				toks[i], err = s.tokenPair(ctx, m.GetCaseId(), m.GetContact(), m.GetIdentity())
				return err
			})
		case *casev1.PersonalDataRectified:
			var contact, id *casev1.SealedPersonalData
			switch m.GetDataClass() {
			case casev1.DataClass_DATA_CLASS_CONTACT_DETAILS:
				contact = m.GetValue()
			case casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER:
				id = m.GetValue()
			default:
				continue
			}
			jobs = append(jobs, func(ctx context.Context) error {
				var err error
				toks[i], err = s.tokenPair(ctx, m.GetCaseId(), contact, id)
				return err
			})
		}
	}
	if err := s.parallel(ctx, jobs); err != nil {
		return err
	}
	var effects []effect
	released := false
	for i, d := range evs {
		eff, err := s.apply(tx, d.Recorded, d.Message, toks[i])
		if err != nil {
			return err
		}
		if eff != nil {
			effects = append(effects, *eff)
		}
		switch d.Message.(type) {
		case *casev1.HoldReleased, *casev1.CasePreservationWithdrawn:
			// A released hold may leave a deadline that has passed, and so
			// may a withdrawn mark: wake the sweeper once the index lists
			// the case as due again, that is once the batch has committed.
			released = true
		}
	}
	if released {
		tx.OnCommit(s.Wake)
	}
	return s.runEffects(ctx, effects)
}

// tokenPair is a case's contact and identity tokens.
type tokenPair struct{ contact, identity []string }

func (s *Service) tokenPair(ctx context.Context, caseID string, contact, id *casev1.SealedPersonalData) (tokenPair, error) {
	var p tokenPair
	var err error
	if contact != nil {
		if p.contact, err = s.tokens(ctx, caseID, contact, nil); err != nil {
			return p, err
		}
	}
	if id != nil {
		if p.identity, err = s.tokens(ctx, caseID, nil, id); err != nil {
			return p, err
		}
	}
	return p, nil
}

func (s *Service) tokens(ctx context.Context, caseID string, contact, id *casev1.SealedPersonalData) ([]string, error) {
	t, err := subject.CaseTokens(ctx, s.sealer, s.blind, caseID, contact, id)
	if errors.Is(err, subject.ErrRedacted) {
		return nil, nil
	}
	return t, err
}

// apply applies one event to the index and returns what must follow from
// it outside the index, as one sequential effect.
func (s *Service) apply(tx IndexTx, rec eventstore.RecordedEvent, msg proto.Message, toks tokenPair) (*effect, error) {
	caseID := rec.Stream
	if rec.Type == eventstore.TypeStreamDeleted {
		return nil, tx.Delete(caseID)
	}
	e, found, err := tx.Get(caseID)
	if err != nil {
		return nil, err
	}
	if !found {
		if d, ok := msg.(*casev1.CaseDeleted); ok {
			// Deleted before this index saw it registered (a rebuild after
			// the stream went): still finish the deletion.
			tx.DropTokens(caseID)
			eff := s.deletionEffect(nil, d)
			return eff, journalEffect(eff, rec, msg)
		}
		if _, ok := msg.(*casev1.CaseRegistered); !ok {
			return nil, nil
		}
		e = &Entry{}
	}
	if msg == nil {
		e.Case.Revision = uint64(rec.Revision)
		return nil, s.put(tx, e)
	}
	// The generations the case's keys have before this event: a
	// redaction destroys them, and moves the classes past them.
	gens := e.Case.Generations.Clone()
	if err := e.Case.Apply(msg, uint64(rec.Revision), rec.Recorded); err != nil {
		// A stream that contradicts itself is logged and skipped rather
		// than retried for ever.
		s.log.Error("retention index: event does not fit the case", "case_id", caseID, "type", rec.Type, "revision", rec.Revision, "error", err)
		return nil, nil
	}
	var eff *effect
	switch m := msg.(type) {
	case *casev1.CaseRegistered:
		tx.SetTokens(caseID, SlotContact, toks.contact)
		tx.SetTokens(caseID, SlotIdentity, toks.identity)
	case *casev1.PersonalDataRectified:
		switch m.GetDataClass() {
		case casev1.DataClass_DATA_CLASS_CONTACT_DETAILS:
			tx.SetTokens(caseID, SlotContact, toks.contact)
		case casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER:
			tx.SetTokens(caseID, SlotIdentity, toks.identity)
		}
	case *casev1.PersonalDataRedacted:
		for _, dc := range m.GetDataClasses() {
			switch dc {
			case casev1.DataClass_DATA_CLASS_CONTACT_DETAILS:
				tx.SetTokens(caseID, SlotContact, nil)
			case casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER:
				tx.SetTokens(caseID, SlotIdentity, nil)
			}
		}
		eff = s.redactionEffect(e, gens, m, rec)
	case *casev1.CaseArchived:
		eff = s.archiveEffect(e, m, rec)
	case *casev1.CasePreservationWithdrawn:
		if !s.cfg.Plan.MustArchive(&e.Case) {
			eff = &effect{caseID: m.GetCaseId(), unarchive: true, unarchiveBefore: receiptRevision(rec)}
		}
	case *casev1.CaseDeleted:
		eff = s.deletionEffect(e, m)
		tx.DropTokens(caseID)
	}
	if err := journalEffect(eff, rec, msg); err != nil {
		return nil, err
	}
	return eff, s.put(tx, e)
}

// journalEffect sets the shred-journal entry of an effect that destroys
// something: the event as appended, except for the free text an official
// wrote into it (an erasure's note, a withdrawn mark's reason), which
// would otherwise outlive the case in the journal.
//
// Every redaction is journaled, also one whose classes were never sealed
// (it destroys no key): a restore appends it again, so the restored case
// counts those classes as redacted, as the lost one did.
func journalEffect(eff *effect, rec eventstore.RecordedEvent, msg proto.Message) error {
	if eff == nil {
		return nil
	}
	_, redaction := msg.(*casev1.PersonalDataRedacted)
	if !redaction && len(eff.destroy) == 0 && !eff.remove && !eff.unarchive {
		return nil
	}
	data := rec.Data
	var stripped []string
	switch m := msg.(type) {
	case *casev1.PersonalDataRedacted:
		if m.GetNote() != "" {
			c := proto.CloneOf(m)
			c.Note = ""
			stripped = append(stripped, "note")
			msg = c
		}
	case *casev1.CasePreservationWithdrawn:
		if m.GetReason() != "" {
			c := proto.CloneOf(m)
			c.Reason = ""
			stripped = append(stripped, "reason")
			msg = c
		}
	}
	if len(stripped) > 0 {
		var err error
		data, err = proto.MarshalOptions{Deterministic: true}.Marshal(msg)
		if err != nil {
			return fmt.Errorf("retention: journal %s at %d: %w", rec.Type, rec.Position, err)
		}
	}
	ev := &shredjournal.Event{
		Stream: rec.Stream, ID: rec.ID, Type: rec.Type, Data: data, Metadata: rec.Metadata,
		Revision: uint64(rec.Revision), Position: uint64(rec.Position), Recorded: rec.Recorded,
		DestroyAll: eff.remove, Unarchive: eff.unarchive, Stripped: stripped,
	}
	for _, c := range eff.destroy {
		ev.Destroy = append(ev.Destroy, string(c))
	}
	for c, g := range eff.gens {
		if ev.Generations == nil {
			ev.Generations = map[string]uint32{}
		}
		ev.Generations[string(c)] = g
	}
	eff.journal = ev
	return nil
}

// receiptRevision is the revision a redaction's receipt is keyed by (and
// a withdrawal's packages are dated against): the event's own, or, for an
// event `kontakt restore` appended again from the shred journal, the
// revision it had when first appended, so that the receipt restored with
// it is recognised and no second one is written.
func receiptRevision(rec eventstore.RecordedEvent) uint64 {
	if v, ok := rec.Metadata[shredjournal.MetaOriginalRevision]; ok {
		if r, err := strconv.ParseUint(v, 10, 64); err == nil && r > 0 {
			return r
		}
	}
	return uint64(rec.Revision)
}

func (s *Service) put(tx IndexTx, e *Entry) error {
	e.NextDue = s.nextDue(e)
	return tx.Put(e)
}

// receipt fills what every receipt says about its case.
func (s *Service) receipt(e *Entry, kind, key string) receipt.Receipt {
	r := receipt.Receipt{Kind: kind, Key: key, PlanName: s.cfg.Plan.Name, PlanVersion: s.cfg.Plan.Version}
	if e != nil {
		r.CaseID, r.CaseNumber = e.Case.ID, e.Case.Number
		r.CaseType, r.Channel = casenames.Type(e.Case.Type), casenames.Channel(e.Case.Channel)
	}
	return r
}

// redactionEffect destroys the keys of the redacted classes, of every
// generation up to gens (the generations before the redaction), then
// records the receipt. A case has several redactions of one class when
// data was written into it after the first; each receipt names the
// classes it covered, and its key (the event's revision, the first one
// for an event a restore appended again) tells them apart.
func (s *Service) redactionEffect(e *Entry, gens seal.Generations, m *casev1.PersonalDataRedacted, rec eventstore.RecordedEvent) *effect {
	r := s.receipt(e, receiptRedact, fmt.Sprintf("%s.%s.%d", m.GetCaseId(), receiptRedact, receiptRevision(rec)))
	// The reason is the event's code ("retention" or "erasure"); an
	// erasure's free-text note stays in the case's own stream, which is
	// deleted in time, never in the ledger, which is kept for ever.
	r.CaseID = m.GetCaseId()
	r.PlanVersion, r.Rule, r.Reason = m.GetPlanVersion(), m.GetRule(), m.GetReason()
	r.At = m.GetRedactedAt().AsTime()
	eff := &effect{caseID: m.GetCaseId(), receipt: &r, gens: gens}
	for _, dc := range m.GetDataClasses() {
		c, err := seal.ClassFromProto(dc)
		if err != nil {
			continue
		}
		r.Classes = append(r.Classes, string(c))
		// Only a class the case sealed has a key; writing a tombstone
		// for each of the others would cost a disk write apiece.
		if e == nil || e.Case.Sealed[domain.Class(c)] {
			eff.destroy = append(eff.destroy, c)
			eff.blobs = eff.blobs || c == seal.ClassAttachments
		}
	}
	return eff
}

func (s *Service) archiveEffect(e *Entry, m *casev1.CaseArchived, rec eventstore.RecordedEvent) *effect {
	r := s.receipt(e, receiptArchive, fmt.Sprintf("%s.%s.%d", m.GetCaseId(), receiptArchive, rec.Revision))
	r.CaseID = m.GetCaseId()
	r.At = m.GetArchivedAt().AsTime()
	r.ArchiveSHA256 = m.GetSha256()
	r.Reason = "bevaras"
	return &effect{caseID: m.GetCaseId(), receipt: &r}
}

// deletionEffect records the deletion receipt, then destroys every
// remaining key (every class, every generation the case's events name)
// and only then removes the stream: once the stream is gone this event is
// never delivered again, so a failed Destroy must still be retried from
// it. A case the index never saw (e nil: rebuilt after its stream went)
// had its keys destroyed when it was deleted; generation 0 is destroyed
// again all the same.
func (s *Service) deletionEffect(e *Entry, m *casev1.CaseDeleted) *effect {
	r := s.receipt(e, receiptDelete, m.GetCaseId()+"."+receiptDelete)
	r.CaseID, r.CaseNumber = m.GetCaseId(), m.GetCaseNumber()
	r.PlanVersion, r.Rule = m.GetPlanVersion(), m.GetRule()
	r.At = m.GetDeletedAt().AsTime()
	r.Classes = []string{string(domain.ClassCase)}
	eff := &effect{caseID: m.GetCaseId(), receipt: &r, remove: true, blobs: e == nil || e.Case.Sealed[domain.ClassAttachments]}
	if e != nil {
		eff.gens = e.Case.Generations.Clone()
	}
	return eff
}

// runEffects runs a batch's effects in their three phases (see effect).
func (s *Service) runEffects(ctx context.Context, effects []effect) error {
	if s.cfg.Journal != nil {
		var entries []shredjournal.Entry
		for _, e := range effects {
			if e.journal != nil {
				entries = append(entries, shredjournal.Entry{Kind: shredjournal.KindEvent, Event: e.journal})
			}
		}
		if err := s.cfg.Journal.Append(entries...); err != nil {
			return fmt.Errorf("retention: shred journal: %w", err)
		}
	}
	// Phase 1: the keys of every redaction of the batch at once (their
	// tombstones in one write), beside the removal of archive packages.
	var destroy []seal.Destruction
	var jobs []func(context.Context) error
	for _, e := range effects {
		if len(e.destroy) > 0 {
			destroy = append(destroy, seal.Destruction{CaseID: e.caseID, Gens: e.gens, Classes: e.destroy})
		}
		if e.unarchive {
			jobs = append(jobs, func(context.Context) error {
				removed, err := s.archive.RemoveCase(e.caseID, e.unarchiveBefore)
				if len(removed) > 0 {
					s.log.Info("retention: mark for preservation withdrawn; archive packages removed", "case_id", e.caseID, "packages", len(removed))
				}
				return err
			})
		}
	}
	if len(destroy) > 0 {
		jobs = append(jobs, func(ctx context.Context) error { return s.sealer.DestroyBatch(ctx, destroy) })
	}
	if err := s.parallel(ctx, jobs); err != nil {
		return err
	}
	// The content of redacted attachments, once its key is gone.
	if err := s.deleteBlobs(ctx, effects, false); err != nil {
		return err
	}
	var receipts []receipt.Receipt
	for _, e := range effects {
		if e.receipt != nil {
			receipts = append(receipts, *e.receipt)
		}
	}
	if err := s.recordAll(ctx, receipts); err != nil {
		return err
	}
	// Phase 3: every key of the deleted cases, then their streams.
	var gone []seal.Destruction
	jobs = jobs[:0]
	for _, e := range effects {
		if e.remove {
			gone = append(gone, seal.Destruction{CaseID: e.caseID, Gens: e.gens})
			jobs = append(jobs, func(ctx context.Context) error {
				if err := s.store.Delete(ctx, e.caseID); err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
					return err
				}
				return nil
			})
		}
	}
	if len(gone) > 0 {
		if err := s.sealer.DestroyBatch(ctx, gone); err != nil {
			return err
		}
		// Before the stream goes: once it is gone this event is never
		// delivered again, and a failed deletion must be retried from it.
		if err := s.deleteBlobs(ctx, effects, true); err != nil {
			return err
		}
	}
	return s.parallel(ctx, jobs)
}

// deleteBlobs deletes the stored attachment content of the effects that
// have some, of the deletions (removed) or of the redactions.
func (s *Service) deleteBlobs(ctx context.Context, effects []effect, removed bool) error {
	if s.blobs == nil {
		return nil
	}
	var jobs []func(context.Context) error
	for _, e := range effects {
		if e.blobs && e.remove == removed {
			jobs = append(jobs, func(ctx context.Context) error { return s.blobs.DeleteCase(ctx, e.caseID) })
		}
	}
	return s.parallel(ctx, jobs)
}

// parallel runs jobs with the configured number of workers and returns
// the first error after all have finished.
func (s *Service) parallel(ctx context.Context, jobs []func(context.Context) error) error {
	if len(jobs) == 0 {
		return nil
	}
	sem := make(chan struct{}, s.cfg.Workers)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, j := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := j(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// recordAll writes receipts in order. Receipts are chained, so one
// process writes them one batch at a time instead of letting its own
// workers race for the chain's head. With a shred journal, the receipts
// as stored go to the journal once the ledger holds them.
func (s *Service) recordAll(ctx context.Context, rs []receipt.Receipt) error {
	if len(rs) == 0 {
		return nil
	}
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	if s.cfg.Journal == nil {
		return s.ledger.RecordBatch(ctx, rs)
	}
	stored, err := s.ledger.(StoredRecorder).RecordBatchStored(ctx, rs)
	if err != nil {
		return err
	}
	entries := make([]shredjournal.Entry, 0, len(stored))
	for _, r := range stored {
		data, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("retention: journal receipt %s: %w", r.Key, err)
		}
		entries = append(entries, shredjournal.Entry{Kind: shredjournal.KindReceipt, Receipt: &shredjournal.Receipt{
			Key: r.Key, Hash: r.Hash, Prev: r.Prev, Data: data,
		}})
	}
	if err := s.cfg.Journal.Append(entries...); err != nil {
		return fmt.Errorf("retention: shred journal: %w", err)
	}
	return nil
}
