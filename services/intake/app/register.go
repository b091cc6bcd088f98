package app

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	"github.com/kontakt-se/kontakt/pkg/backoff"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// EventStore is the part of the event store intake uses.
type EventStore interface {
	Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, ev eventstore.Event) (eventstore.Revision, error)
	Read(ctx context.Context, stream string) ([]eventstore.RecordedEvent, error)
}

// Registered is what a registration returns; it holds no personal data.
type Registered struct {
	CaseID       string
	CaseNumber   string
	RegisteredAt time.Time
	// Replayed is true when a form submission repeated an earlier one
	// (or a relay delivered a mail again).
	Replayed bool
	// Joined is true when a citizen's reply joined the existing case
	// CaseID (CaseMessageReceived) instead of registering one; Reopened
	// when it reopened the case too.
	Joined, Reopened bool
}

// Config holds intake's tunables.
type Config struct {
	// PayloadKey keys the hash that tells two submissions with one
	// idempotency key apart, so the stored hash reveals nothing.
	PayloadKey []byte
	// StaleClaim is how long a form submission may stay unfinished before
	// a retry takes it over (its first request is presumed dead).
	StaleClaim time.Duration
	// WaitForClaim bounds how long a concurrent retry waits for the first
	// request to finish before answering "in progress".
	WaitForClaim time.Duration
	// Group tunes group commit (RunGroupCommit).
	Group GroupConfig
	// Categories is the closed list of categories a case may have; a
	// case with another is refused.
	Categories domain.Categories
	// Mailboxes are the contact centre's e-mail addresses, in lower case,
	// and what a mail to each becomes (RegisterMail).
	Mailboxes map[string]Mailbox
	// Attachments stores the content of uploaded attachments; nil refuses
	// cases that carry content (ErrNoAttachmentStore).
	Attachments AttachmentStore
	// SentMail finds the case of a Message-ID kontakt sent (the outbox's
	// index); nil when nothing is sent, and then a reply is matched by
	// the case number in its subject only, and a bounce by nothing.
	SentMail SentMailIndex
	// ReplyReopenWithin is how long after closing a reply still joins
	// and reopens a case (mail.inbound.reply_reopen_within).
	ReplyReopenWithin time.Duration
}

// Service registers cases.
type Service struct {
	store   EventStore
	sealer  Sealer
	drafts  DraftSealer // nil: no group commit
	opener  Opener      // nil: free text cannot be published
	groups  groups
	numbers CaseNumbers
	idem    Idempotency
	clock   func() time.Time
	logger  *slog.Logger
	cfg     Config
}

// NewService builds the intake commands from their dependencies.
func NewService(store EventStore, sealer Sealer, numbers CaseNumbers, idem Idempotency, clock func() time.Time, logger *slog.Logger, cfg Config) (*Service, error) {
	if len(cfg.PayloadKey) < 32 {
		return nil, errors.New("intake: payload key must be at least 32 bytes")
	}
	if cfg.StaleClaim <= 0 {
		cfg.StaleClaim = 30 * time.Second
	}
	if cfg.WaitForClaim <= 0 {
		cfg.WaitForClaim = 10 * time.Second
	}
	if err := cfg.Group.setDefaults(); err != nil {
		return nil, err
	}
	s := &Service{store: store, sealer: sealer, numbers: numbers, idem: idem, clock: clock, logger: logger, cfg: cfg}
	// A sealer that makes drafts allows group commit.
	s.drafts, _ = sealer.(DraftSealer)
	s.opener, _ = sealer.(Opener)
	s.groups = groups{queue: make(chan *pending, 2*cfg.Group.MaxSize), cfg: cfg.Group}
	return s, nil
}

// EventTypeCaseRegistered is the store's type name of CaseRegistered.
func EventTypeCaseRegistered() string { return typeName(&casev1.CaseRegistered{}) }

// Validate checks a case against intake's rules (domain.Validate) with
// the installation's categories, without registering it: the edge calls
// it to name every wrong field in one answer.
func (s *Service) Validate(in *intakev1.CaseInput, src domain.Source) error {
	_, err := domain.Validate(in, src, s.clock(), s.cfg.Categories)
	return err
}

// Register registers a case an agent took. actor is the agent's subject id.
func (s *Service) Register(ctx context.Context, in *intakev1.CaseInput, actor string) (Registered, error) {
	now := s.clock()
	reg, err := domain.Validate(in, domain.FromAgent, now, s.cfg.Categories)
	if err != nil {
		return Registered{}, err
	}
	caseID := uuid.NewString()
	return s.register(ctx, reg, caseID, uuid.NewString(), actor, now, true)
}

// SubmitForm registers a case from an e-service form. client identifies
// the e-service; key is the form's idempotency key. The same key with the
// same payload returns the first answer for at least seven days; with a
// different payload it fails with ErrPayloadMismatch; concurrent
// submissions with one key create one case.
func (s *Service) SubmitForm(ctx context.Context, client, key string, in *intakev1.CaseInput) (Registered, error) {
	now := s.clock()
	reg, err := domain.Validate(in, domain.FromForm, now, s.cfg.Categories)
	if err != nil {
		return Registered{}, err
	}
	return s.registerOnce(ctx, reg, in, idempotencyKey(client, key), FormActorPrefix+client, now)
}

// FormActorPrefix starts the actor of a case a form client submitted
// (CaseRegistered.registered_by "form:<client>").
const FormActorPrefix = "form:"

// registerOnce registers a case at most once per idempotency record key:
// the same key with the same payload returns the first answer, with a
// different payload ErrPayloadMismatch, and concurrent attempts create
// one case. Forms and mail (a relay that sends a mail again after a lost
// reply) share it.
func (s *Service) registerOnce(ctx context.Context, reg domain.Registration, in *intakev1.CaseInput, recKey, actor string, now time.Time) (Registered, error) {
	payload := s.payloadHash(in)
	// The case id and the event id come from the key, a second guard: even
	// a submission that slipped past the idempotency record would append to
	// the same case stream, where "no stream yet" lets only one win.
	caseID := uuid.NewSHA1(uuid.MustParse(formNamespace), []byte(recKey)).String()
	eventID := "form-" + recKey[:40]

	rec, claimed, err := s.idem.Claim(ctx, recKey, IdempotencyRecord{PayloadHash: payload, CaseID: caseID, ClaimedAt: now})
	if err != nil {
		return Registered{}, fmt.Errorf("claim idempotency key: %w", err)
	}
	if !claimed {
		if !hmac.Equal([]byte(rec.PayloadHash), []byte(payload)) {
			return Registered{}, ErrPayloadMismatch
		}
		rec, err = s.awaitClaim(ctx, recKey, rec)
		if err != nil {
			return Registered{}, err
		}
		if rec.Done {
			return Registered{CaseID: rec.CaseID, CaseNumber: rec.CaseNumber, RegisteredAt: rec.RegisteredAt, Replayed: true}, nil
		}
		// The first request died before finishing: take it over. The case
		// may already be in the store.
		if r, ok, err := s.registeredCase(ctx, caseID); err != nil {
			return Registered{}, err
		} else if ok {
			s.complete(ctx, recKey, rec, r)
			r.Replayed = true
			return r, nil
		}
	}
	// A fresh claim means no earlier attempt of this submission is alive;
	// one that released its claim after a failure may still have stored
	// keys, which only costs its group a detour.
	r, err := s.register(ctx, reg, caseID, eventID, actor, now, claimed)
	if errors.Is(err, eventstore.ErrConflict) {
		// Another request registered this very case first.
		if got, ok, rerr := s.registeredCase(ctx, caseID); rerr == nil && ok {
			got.Replayed = true
			r, err = got, nil
		}
	}
	if err != nil {
		s.release(ctx, recKey, rec)
		return Registered{}, err
	}
	s.complete(ctx, recKey, rec, r)
	return r, nil
}

// release gives up the claim of a failed form submission. The client gets
// an error and will retry with the same key: let it claim the key at once
// rather than wait for the claim to go stale. The request's context may be
// what failed, so the release has its own. A registration fails most often
// while the cluster elects a new leader, and then the first delete fails
// too, so it is tried again for a few seconds; a release is safe to repeat,
// as it deletes only the revision this request claimed.
func (s *Service) release(ctx context.Context, key string, rec IdempotencyRecord) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	err := backoff.Retry(rctx, releaseBackoff, func() error { return s.idem.Release(rctx, key, rec) })
	if err != nil {
		s.logger.WarnContext(ctx, "could not release the claim of a failed form submission; a retry waits until it is stale", "error", err)
	}
}

// releaseBackoff paces the attempts to release a claim.
var releaseBackoff = backoff.Policy{Initial: 100 * time.Millisecond, Max: time.Second}

// releaseTimeout bounds how long a failed form submission tries to give up
// its claim: longer than a leader election usually takes, far shorter than
// a claim takes to go stale.
const releaseTimeout = 8 * time.Second

// awaitClaim waits for a concurrent first request to finish; it returns
// the record once done, or once stale enough to take over.
func (s *Service) awaitClaim(ctx context.Context, key string, rec IdempotencyRecord) (IdempotencyRecord, error) {
	deadline := time.Now().Add(s.cfg.WaitForClaim)
	pause := backoff.New(claimPoll)
	for {
		if rec.Done || s.clock().Sub(rec.ClaimedAt) > s.cfg.StaleClaim {
			return rec, nil
		}
		if time.Now().After(deadline) {
			return IdempotencyRecord{}, ErrInProgress
		}
		if err := pause.Wait(ctx); err != nil {
			return IdempotencyRecord{}, err
		}
		var err error
		if rec, err = s.idem.Get(ctx, key); err != nil {
			return IdempotencyRecord{}, fmt.Errorf("read idempotency record: %w", err)
		}
	}
}

// claimPoll paces looking again at a claim another request holds: often
// at first, since most first requests finish within moments.
var claimPoll = backoff.Policy{Initial: 20 * time.Millisecond, Max: 500 * time.Millisecond}

// complete records the answer for later retries. Failing to record it is
// logged, not returned: the case is registered, and a retry finds it in
// the store through the derived case id.
func (s *Service) complete(ctx context.Context, key string, rec IdempotencyRecord, r Registered) {
	rec.Done, rec.CaseNumber, rec.RegisteredAt = true, r.CaseNumber, r.RegisteredAt
	if err := s.idem.Complete(ctx, key, rec); err != nil {
		s.logger.WarnContext(ctx, "could not record the answer to a form submission", "case_id", r.CaseID, "error", err)
	}
}

// registeredCase reads a case's CaseRegistered event, if it has one.
func (s *Service) registeredCase(ctx context.Context, caseID string) (Registered, bool, error) {
	evs, err := s.store.Read(ctx, caseID)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return Registered{}, false, nil
	}
	if err != nil {
		return Registered{}, false, fmt.Errorf("read case: %w", err)
	}
	for _, ev := range evs {
		if ev.Type != EventTypeCaseRegistered() {
			continue
		}
		var cr casev1.CaseRegistered
		if err := proto.Unmarshal(ev.Data, &cr); err != nil {
			return Registered{}, false, fmt.Errorf("decode CaseRegistered: %w", err)
		}
		return Registered{CaseID: caseID, CaseNumber: cr.GetCaseNumber(), RegisteredAt: cr.GetRegisteredAt().AsTime()}, true, nil
	}
	return Registered{}, false, nil
}

// register seals the personal data, allocates the case number and appends
// CaseRegistered: in a group (see group.go) when group commit runs and the
// case is new, otherwise alone. fresh says that nothing of the case can
// exist yet (a random case id, or a form key claimed just now); a form
// submission that takes over from a crashed one may find its keys stored
// already, which would fail its whole group.
func (s *Service) register(ctx context.Context, reg domain.Registration, caseID, eventID, actor string, now time.Time, fresh bool) (Registered, error) {
	ev := &casev1.CaseRegistered{
		CaseId:               caseID,
		Type:                 reg.Type,
		Channel:              reg.Channel,
		Category:             reg.Category,
		RegisteredAt:         timestamppb.New(now),
		RegisteredBy:         actor,
		Attachments:          reg.Attachments,
		CoarseLocation:       reg.Coarse,
		CallerNumberWithheld: reg.CallerNumberWithheld,
		Mailbox:              reg.Mailbox,
		RefersToCaseNumber:   reg.RefersTo,
		// Drawn here, once, so every statistics instance derives the same
		// anonymous statistics id from the log; never derived from the
		// case.
		StatisticsSeed: rand.Text(),
	}
	if reg.Content != nil {
		if err := s.storeAttachments(ctx, caseID, reg.Content); err != nil {
			return Registered{}, err
		}
		// The content is sealed with the attachments key in the key
		// store now, so the case's other values are sealed with stored
		// keys too: a draft's key for the class would be another key.
		fresh = false
	}
	if !fresh || s.drafts == nil || !s.groups.isRunning() {
		return s.registerAlone(ctx, reg, ev, eventID)
	}
	draft, err := s.drafts.NewDraft(caseID)
	if err != nil {
		return Registered{}, fmt.Errorf("seal: %w", err)
	}
	if err := sealInto(ev, reg, func(class seal.Class, b []byte) (*casev1.SealedPersonalData, error) {
		return draft.Seal(class, b)
	}); err != nil {
		return Registered{}, err
	}
	r, ok, err := s.submit(ctx, &pending{reg: reg, ev: ev, draft: draft, eventID: eventID, now: now})
	if !ok {
		// Group commit is not running: the draft's keys were never
		// stored, so seal again with stored keys.
		return s.registerAlone(ctx, reg, ev, eventID)
	}
	return r, err
}

// registerAlone seals with the stored keys, then numbers and appends.
func (s *Service) registerAlone(ctx context.Context, reg domain.Registration, ev *casev1.CaseRegistered, eventID string) (Registered, error) {
	if err := s.sealAlone(ctx, reg, ev); err != nil {
		return Registered{}, err
	}
	return s.numberAndAppend(ctx, ev, eventID)
}

// sealAlone seals the registration's personal data into ev with the
// case's stored keys, creating those that do not exist yet.
func (s *Service) sealAlone(ctx context.Context, reg domain.Registration, ev *casev1.CaseRegistered) error {
	return sealInto(ev, reg, func(class seal.Class, b []byte) (*casev1.SealedPersonalData, error) {
		return s.sealer.Seal(ctx, ev.GetCaseId(), class, 0, b)
	})
}

// numberAndAppend allocates the case number last, after everything that
// can fail on bad luck, so that numbers are rarely skipped, then appends.
func (s *Service) numberAndAppend(ctx context.Context, ev *casev1.CaseRegistered, eventID string) (Registered, error) {
	number, err := s.numbers.Next(ctx, ev.GetRegisteredAt().AsTime(), ev.GetCaseId())
	if err != nil {
		return Registered{}, fmt.Errorf("allocate case number: %w", err)
	}
	ev.CaseNumber = number
	return s.appendRegistered(ctx, ev, eventID)
}

// appendRegistered appends the numbered CaseRegistered to the new case
// stream. An unknown outcome is retried with the same event id: the store
// recognises a write that landed, so this never registers twice.
func (s *Service) appendRegistered(ctx context.Context, ev *casev1.CaseRegistered, eventID string) (Registered, error) {
	event, err := registeredEvent(ev, eventID)
	if err != nil {
		return Registered{}, err
	}
	err = backoff.Retry(ctx, backoff.UnknownOutcome, func() error {
		_, err := s.store.Append(ctx, ev.GetCaseId(), eventstore.NoStream(), event)
		if err != nil && !errors.Is(err, eventstore.ErrUnavailable) {
			return backoff.Permanent(err)
		}
		return err
	})
	if err != nil {
		return Registered{}, fmt.Errorf("append CaseRegistered: %w", err)
	}
	return registered(ev), nil
}

// registeredEvent encodes CaseRegistered for the store.
func registeredEvent(ev *casev1.CaseRegistered, eventID string) (eventstore.Event, error) {
	data, err := proto.Marshal(ev)
	if err != nil {
		return eventstore.Event{}, fmt.Errorf("encode CaseRegistered: %w", err)
	}
	return eventstore.Event{ID: eventID, Type: EventTypeCaseRegistered(), Data: data}, nil
}

// registered is the answer for a stored CaseRegistered.
func registered(ev *casev1.CaseRegistered) Registered {
	return Registered{CaseID: ev.GetCaseId(), CaseNumber: ev.GetCaseNumber(), RegisteredAt: ev.GetRegisteredAt().AsTime()}
}

// sealInto seals each class of personal data the registration has into
// ev with sealFn.
func sealInto(ev *casev1.CaseRegistered, reg domain.Registration, sealFn func(seal.Class, []byte) (*casev1.SealedPersonalData, error)) error {
	var err error
	if reg.Contact != nil {
		if ev.Contact, err = sealMessage(sealFn, seal.ClassContact, reg.Contact); err != nil {
			return err
		}
	}
	if reg.Identity != nil {
		if ev.Identity, err = sealMessage(sealFn, seal.ClassIdentity, reg.Identity); err != nil {
			return err
		}
	}
	if reg.FreeText != nil {
		if ev.FreeText, err = sealMessage(sealFn, seal.ClassFreeText, reg.FreeText); err != nil {
			return err
		}
	}
	if len(reg.AttachmentNames) > 0 {
		if ev.AttachmentNames, err = sealMessage(sealFn, seal.ClassAttachments, &casev1.AttachmentNames{Names: reg.AttachmentNames, AttachmentIds: reg.AttachmentIDs}); err != nil {
			return err
		}
	}
	return nil
}

func sealMessage(sealFn func(seal.Class, []byte) (*casev1.SealedPersonalData, error), class seal.Class, m proto.Message) (*casev1.SealedPersonalData, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", class, err)
	}
	defer clear(b)
	sealed, err := sealFn(class, b)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", class, err)
	}
	return sealed, nil
}

// formNamespace makes case ids derived from idempotency keys differ from
// any other name-based UUID.
const formNamespace = "6f9c7a52-3f0e-4c55-9a57-2b8f0f6a0d11"

// idempotencyKey names a form submission in the idempotency store: the
// e-service and its key, hashed so the stored name is KV-safe and bounded.
func idempotencyKey(client, key string) string {
	sum := sha256.Sum256([]byte(client + "\x00" + key))
	return hex.EncodeToString(sum[:])
}

// payloadHash is a keyed hash of the submitted case, so that a retry with
// the same payload is recognised while the record reveals nothing.
func (s *Service) payloadHash(in *intakev1.CaseInput) string {
	c := proto.Clone(in).(*intakev1.CaseInput)
	c.Channel = casev1.Channel_CHANNEL_FORM
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	m := hmac.New(sha256.New, s.cfg.PayloadKey)
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil))
}
