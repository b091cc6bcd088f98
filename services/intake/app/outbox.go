package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/backoff"
	"github.com/kontakt-se/kontakt/pkg/caseevents"
	"github.com/kontakt-se/kontakt/pkg/casemail"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// The mail outbox.
//
// The decision to send is an event already in the log: a CaseRegistered
// that came by mail (its mailbox is set) is to be acknowledged, and a
// CaseAnswered is to be mailed to the case's contact when the contact has
// an e-mail address (a case without one is skipped, recording nothing).
// The outbox
// is a read model on the one projection runner: each batch of events adds
// the mails it decides and removes those its MailSent or MailFailed
// events record, together with the checkpoint, in one transaction of its
// store. The store holds references only (case id, kind, attempts), never
// an address or a text: those are opened from the case's sealed events
// at the moment of sending and live in memory only. A sender loop takes
// the mails that are due, sends each through the relay, and records the
// outcome on the case (MailSent with the Message-ID, or MailFailed after
// the last attempt), which the next batch then removes from the store.
//
// A kill -9 loses nothing: an item is on disk from the batch that decided
// it until the event that records it is in the log. It can send a mail
// twice: the relay accepted it, and the process died before MailSent was
// appended; the mail is then sent again, with the same Message-ID.

// ErrRelayRefused marks a permanent refusal by the relay (a 5xx reply):
// sending again cannot succeed. Any other error from Relay.Send is taken
// as temporary.
var ErrRelayRefused = errors.New("the mail relay refused the mail")

// MailMaxAge is how old a registration or an answer may be when the
// outbox first sees it and still mails it: an outbox switched on later,
// or rebuilt from an empty file, meets old cases, and a receipt or an
// answer days late is noise (the answer was given some other way).
const MailMaxAge = 24 * time.Hour

// Relay sends one mail through the municipality's relay.
type Relay interface {
	Send(ctx context.Context, m domain.OutgoingMail) error
}

// OutboxItem is one mail to send, by reference.
type OutboxItem struct {
	CaseID        string
	Kind          casev1.MailKind
	AnswerEventID string
	// Attempts made so far, and when the next is due.
	Attempts int
	NextAt   time.Time
}

// Key names the item in the store: one per mail.
func (i OutboxItem) Key() string {
	return i.CaseID + "/" + i.Kind.String() + "/" + i.AnswerEventID
}

// SentMail names a mail kontakt sent: its Message-ID (with angle
// brackets, as MailSent records it) and its case. The outbox keeps an
// index of them, so a reply or a bounce that names a Message-ID finds
// its case without reading every case.
type SentMail struct {
	MessageID string
	CaseID    string
}

// OutboxStore keeps the items, the index of sent mails and the outbox's
// checkpoint durably.
type OutboxStore interface {
	Checkpoint() (eventstore.Position, error)
	// Apply adds items (an existing one is kept as it is), removes the
	// keys in done, indexes the sent mails, drops the index entries of
	// the deleted cases and sets the checkpoint, in one transaction.
	Apply(add []OutboxItem, done []string, sent []SentMail, deleted []string, checkpoint eventstore.Position) error
	// CaseOfMessage returns the case a mail with the Message-ID (with
	// angle brackets) was sent about.
	CaseOfMessage(messageID string) (caseID string, found bool, err error)
	// Due returns up to limit items whose NextAt is not after now.
	Due(now time.Time, limit int) ([]OutboxItem, error)
	// Put replaces an item (its attempts and next time).
	Put(item OutboxItem) error
	// Remove drops an item.
	Remove(key string) error
	// Len counts the items.
	Len() (int, error)
}

// OutboxConfig tunes the outbox.
type OutboxConfig struct {
	// Host is the domain of the Message-IDs (the sender's domain).
	Host string
	// MaxAttempts bounds the attempts of one mail.
	MaxAttempts int
	// Retry paces the attempts of one mail (Initial, Max).
	Retry backoff.Policy
	// Acknowledgements render the acknowledgement per case type.
	Acknowledgements *domain.Acknowledgements
	// Poll is how often the sender looks for due mails besides being
	// woken by a batch; zero means a second.
	Poll time.Duration
}

// CaseReader is what the outbox needs of the event store.
type CaseReader interface {
	Read(ctx context.Context, stream string) ([]eventstore.RecordedEvent, error)
	Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, ev eventstore.Event) (eventstore.Revision, error)
}

// Outbox sends the mails the log decides.
type Outbox struct {
	store  CaseReader
	opener Opener
	items  OutboxStore
	relay  Relay
	clock  func() time.Time
	logger *slog.Logger
	cfg    OutboxConfig
	wake   chan struct{}
	// attempts counts attempts by kind and outcome (sent, retry,
	// failed): codes only.
	attempts *prometheus.CounterVec
}

// Collectors are the outbox's metrics: attempts by outcome, and the
// mails waiting (a number that grows while the relay is away).
func (o *Outbox) Collectors() []prometheus.Collector {
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kontakt_mail_outbox_pending",
		Help: "Mails the outbox holds: decided by the log, not yet recorded as sent or failed on their case.",
	}, func() float64 {
		n, err := o.items.Len()
		if err != nil {
			return -1
		}
		return float64(n)
	})
	return []prometheus.Collector{o.attempts, pending}
}

// NewOutbox builds the outbox; run it as a projection Model (Checkpoint,
// Apply) and its sender with Run.
func NewOutbox(store CaseReader, opener Opener, items OutboxStore, relay Relay, clock func() time.Time, logger *slog.Logger, cfg OutboxConfig) (*Outbox, error) {
	if cfg.MaxAttempts < 1 || cfg.Acknowledgements == nil || cfg.Host == "" {
		return nil, errors.New("outbox: attempts, acknowledgements and host are required")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	attempts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kontakt_mail_outbox_attempts_total",
		Help: "Attempts to send a mail through the relay, by kind (acknowledgement, answer) and outcome (sent, retry, failed).",
	}, []string{"kind", "outcome"})
	return &Outbox{store: store, opener: opener, items: items, relay: relay, clock: clock, logger: logger, cfg: cfg, wake: make(chan struct{}, 1), attempts: attempts}, nil
}

// Checkpoint is the position of the last event the outbox has applied.
func (o *Outbox) Checkpoint() (eventstore.Position, error) { return o.items.Checkpoint() }

// Apply records the mails a batch of events decides and forgets those it
// records as sent or failed.
func (o *Outbox) Apply(_ context.Context, batch []projection.Event) error {
	if len(batch) == 0 {
		return nil
	}
	var add []OutboxItem
	var done, deleted []string
	var sent []SentMail
	now := o.clock()
	for _, ev := range batch {
		if ev.Deleted() {
			deleted = append(deleted, ev.Recorded.Stream)
			continue
		}
		switch m := ev.Message.(type) {
		case *casev1.CaseRegistered:
			// A case that came in by mail, or from an e-service form or
			// an Open311 client, is acknowledged by mail (when its
			// contact has an address: decided at sending, where the
			// contact is opened). A case an agent registered (a phone
			// call, a letter) is not: the agent told the citizen.
			// Mail a program sent never became a case.
			if Acknowledged(m) && now.Sub(m.GetRegisteredAt().AsTime()) < MailMaxAge {
				add = append(add, OutboxItem{CaseID: ev.Recorded.Stream, Kind: casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT, NextAt: now})
			}
		case *casev1.CaseAnswered:
			// An answer given another way (by phone, at the desk) is
			// on the case already and is no mail.
			if m.GetDelivery() != casev1.AnswerDelivery_ANSWER_DELIVERY_OTHER && now.Sub(m.GetAnsweredAt().AsTime()) < MailMaxAge {
				add = append(add, OutboxItem{CaseID: ev.Recorded.Stream, Kind: casev1.MailKind_MAIL_KIND_ANSWER, AnswerEventID: ev.Recorded.ID, NextAt: now})
			}
		case *casev1.MailSent:
			done = append(done, OutboxItem{CaseID: ev.Recorded.Stream, Kind: m.GetKind(), AnswerEventID: m.GetAnswerEventId()}.Key())
			if id := m.GetMessageId(); id != "" {
				sent = append(sent, SentMail{MessageID: id, CaseID: ev.Recorded.Stream})
			}
		case *casev1.CaseDeleted:
			deleted = append(deleted, ev.Recorded.Stream)
		case *casev1.MailFailed:
			done = append(done, OutboxItem{CaseID: ev.Recorded.Stream, Kind: m.GetKind(), AnswerEventID: m.GetAnswerEventId()}.Key())
		}
	}
	if err := o.items.Apply(add, done, sent, deleted, batch[len(batch)-1].Recorded.Position); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if len(add) > 0 {
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// Acknowledged says whether a registration is acknowledged by mail: it
// came by mail (its mailbox is set), or a form client submitted it (an
// e-service form or an Open311 report: registered by "form:<client>").
func Acknowledged(reg *casev1.CaseRegistered) bool {
	return reg.GetMailbox() != "" || strings.HasPrefix(reg.GetRegisteredBy(), FormActorPrefix)
}

// Run sends due mails until ctx ends.
func (o *Outbox) Run(ctx context.Context) error {
	tick := time.NewTicker(o.cfg.Poll)
	defer tick.Stop()
	for {
		o.sendDue(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-o.wake:
		case <-tick.C:
		}
	}
}

func (o *Outbox) sendDue(ctx context.Context) {
	for ctx.Err() == nil {
		items, err := o.items.Due(o.clock(), 32)
		if err != nil {
			o.logger.Error("outbox: cannot read the due mails", "error", err)
			return
		}
		if len(items) == 0 {
			return
		}
		progressed := false
		for _, it := range items {
			if o.process(ctx, it) {
				progressed = true
			}
		}
		if !progressed {
			return
		}
	}
}

// mailCase is what the outbox reads of a case's events: the one fold of
// a case's mail facts (pkg/casemail), which routing's domain folds too,
// and the revision to append after.
type mailCase struct {
	casemail.Facts
	revision eventstore.Revision
}

// foldMailCase folds a case's stored events into its mail facts.
func foldMailCase(evs []eventstore.RecordedEvent) mailCase {
	var c mailCase
	for _, rec := range evs {
		c.revision = rec.Revision
		m, err := caseevents.Decode(rec.Type, rec.Data)
		if err != nil {
			continue
		}
		c.Apply(m, rec.ID, rec.Recorded)
	}
	return c
}

// process makes one attempt at one mail and reports whether the item
// left the due list (sent, failed for good, rescheduled).
func (o *Outbox) process(ctx context.Context, it OutboxItem) bool {
	evs, err := o.store.Read(ctx, it.CaseID)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		// The case was deleted: nobody to write to, nowhere to record.
		o.remove(it)
		return true
	}
	if err != nil {
		o.logger.Warn("outbox: cannot read a case; trying again", "case_id", it.CaseID, "error", err)
		return false
	}
	c := foldMailCase(evs)
	if c.Recorded(it.Kind, it.AnswerEventID) {
		o.remove(it)
		return true
	}
	messageID := domain.MessageID(it.CaseID, it.Kind, it.AnswerEventID, o.cfg.Host)
	mail, reason, err := o.compose(ctx, it, c)
	if err != nil {
		o.logger.Warn("outbox: cannot compose a mail; trying again", "case_id", it.CaseID, "error", err)
		return false
	}
	answer := it.Kind == casev1.MailKind_MAIL_KIND_ANSWER
	if reason == reasonNoAddress && (answer && c.AnswerDelivery(it.AnswerEventID) != casev1.AnswerDelivery_ANSWER_DELIVERY_EMAIL ||
		!answer && c.Channel != casev1.Channel_CHANNEL_EMAIL) {
		// An answer to a case without an e-mail address (a phone call
		// answered by phone), or a form submitted without one, is no
		// mail: nothing to record. An answer the official asked to
		// have mailed is recorded as failed (no-address), so they see
		// that it did not go.
		o.remove(it)
		return true
	}
	if reason != "" {
		o.record(ctx, it, c, &casev1.MailFailed{CaseId: it.CaseID, Kind: it.Kind, AnswerEventId: it.AnswerEventID, FailedAt: timestamppb.New(o.clock()), Attempts: uint32(it.Attempts), Reason: reason, MessageId: messageID})
		return true
	}
	mail.MessageID = messageID
	err = o.relay.Send(ctx, mail)
	it.Attempts++
	kind := kindLabel(it.Kind)
	switch {
	case err == nil:
		o.attempts.WithLabelValues(kind, "sent").Inc()
		o.logger.Info("mail sent", "case_id", it.CaseID, "kind", it.Kind.String(), "attempts", it.Attempts)
		o.record(ctx, it, c, &casev1.MailSent{CaseId: it.CaseID, Kind: it.Kind, MessageId: messageID, AnswerEventId: it.AnswerEventID, SentAt: timestamppb.New(o.clock()), Attempts: uint32(it.Attempts)})
	case errors.Is(err, ErrRelayRefused) || it.Attempts >= o.cfg.MaxAttempts:
		reason := "unavailable"
		if errors.Is(err, ErrRelayRefused) {
			reason = "refused"
		}
		o.attempts.WithLabelValues(kind, "failed").Inc()
		o.logger.Warn("mail given up", "case_id", it.CaseID, "kind", it.Kind.String(), "attempts", it.Attempts, "reason", reason)
		o.record(ctx, it, c, &casev1.MailFailed{CaseId: it.CaseID, Kind: it.Kind, AnswerEventId: it.AnswerEventID, FailedAt: timestamppb.New(o.clock()), Attempts: uint32(it.Attempts), Reason: reason, MessageId: messageID})
	default:
		o.attempts.WithLabelValues(kind, "retry").Inc()
		it.NextAt = o.clock().Add(o.cfg.Retry.Delay(it.Attempts))
		o.logger.Warn("mail not sent; trying again", "case_id", it.CaseID, "kind", it.Kind.String(), "attempts", it.Attempts, "next_in", it.NextAt.Sub(o.clock()).String())
		if err := o.items.Put(it); err != nil {
			o.logger.Error("outbox: cannot reschedule a mail", "case_id", it.CaseID, "error", err)
		}
	}
	return true
}

// compose builds the mail, or says why there is none to send.
func (o *Outbox) compose(ctx context.Context, it OutboxItem, c mailCase) (domain.OutgoingMail, string, error) {
	if c.Contact == nil {
		return domain.OutgoingMail{}, reasonNoAddress, nil
	}
	var contact casev1.ContactDetails
	if err := o.opener.OpenMessage(ctx, it.CaseID, c.Contact, &contact); errors.Is(err, seal.ErrKeyDestroyed) {
		return domain.OutgoingMail{}, reasonRedacted, nil
	} else if err != nil {
		return domain.OutgoingMail{}, "", err
	}
	if contact.GetEmail() == "" {
		return domain.OutgoingMail{}, reasonNoAddress, nil
	}
	switch it.Kind {
	case casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT:
		subject, body, err := o.cfg.Acknowledgements.Render(c.Type, c.Number)
		if err != nil {
			return domain.OutgoingMail{}, "", err
		}
		return domain.OutgoingMail{To: contact.GetEmail(), Subject: subject, Body: body, Automatic: true}, "", nil
	case casev1.MailKind_MAIL_KIND_ANSWER:
		text := c.Answer(it.AnswerEventID)
		if text == nil {
			// The answer event is gone from the stream (never, short
			// of a store rewritten by hand): nothing to send.
			return domain.OutgoingMail{}, reasonRedacted, nil
		}
		var answer casev1.AnswerText
		if err := o.opener.OpenMessage(ctx, it.CaseID, text, &answer); errors.Is(err, seal.ErrKeyDestroyed) {
			return domain.OutgoingMail{}, reasonRedacted, nil
		} else if err != nil {
			return domain.OutgoingMail{}, "", err
		}
		m := domain.AnswerMail(c.Number, answer.GetText())
		m.To = contact.GetEmail()
		if c.Acknowledged() {
			m.InReplyTo = domain.MessageID(it.CaseID, casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT, "", o.cfg.Host)
		}
		return m, "", nil
	default:
		return domain.OutgoingMail{}, "", fmt.Errorf("outbox: unknown mail kind %s", it.Kind)
	}
}

// kindLabel is a mail kind as a metric label.
func kindLabel(k casev1.MailKind) string {
	if k == casev1.MailKind_MAIL_KIND_ANSWER {
		return "answer"
	}
	return "acknowledgement"
}

// Reasons of MailFailed, as codes.
const (
	reasonNoAddress = "no-address"
	reasonRedacted  = "redacted"
)

// record appends the outcome to the case, with the revision it read; a
// conflict reads the case again. A case deleted meanwhile needs no
// record. The event id comes from the mail and the outcome, so an append
// whose acknowledgement was lost is recognised when retried.
func (o *Outbox) record(ctx context.Context, it OutboxItem, c mailCase, outcome proto.Message) {
	data, err := proto.Marshal(outcome)
	if err != nil {
		o.logger.Error("outbox: cannot encode an outcome", "error", err)
		return
	}
	sum := sha256.Sum256([]byte(it.Key() + "\x00" + caseevents.TypeOf(outcome)))
	ev := eventstore.Event{ID: "mail-" + hex.EncodeToString(sum[:20]), Type: caseevents.TypeOf(outcome), Data: data}
	revision := c.revision
	err = backoff.Retry(ctx, recordBackoff, func() error {
		_, err := o.store.Append(ctx, it.CaseID, eventstore.Exact(revision), ev)
		switch {
		case err == nil, errors.Is(err, eventstore.ErrStreamDeleted):
			return nil
		case errors.Is(err, eventstore.ErrConflict):
			evs, rerr := o.store.Read(ctx, it.CaseID)
			if rerr != nil {
				return rerr
			}
			again := foldMailCase(evs)
			if again.Recorded(it.Kind, it.AnswerEventID) {
				return nil
			}
			revision = again.revision
			return err
		default:
			return err
		}
	})
	if err != nil {
		// The item stays: the next attempt sends again (the same
		// Message-ID) and records then.
		o.logger.Error("outbox: cannot record a mail's outcome on its case", "case_id", it.CaseID, "error", err)
		return
	}
	o.remove(it)
}

var recordBackoff = backoff.Policy{Initial: 50 * time.Millisecond, Max: 2 * time.Second, Jitter: true, Attempts: 10}

func (o *Outbox) remove(it OutboxItem) {
	if err := o.items.Remove(it.Key()); err != nil {
		o.logger.Error("outbox: cannot remove a mail", "case_id", it.CaseID, "error", err)
	}
}
