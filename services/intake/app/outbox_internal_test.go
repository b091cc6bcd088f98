package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/backoff"
	"github.com/kontakt-se/kontakt/pkg/caseevents"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// memLog is a case log in memory with the store's expected-revision rule.
type memLog struct {
	mu      sync.Mutex
	streams map[string][]eventstore.RecordedEvent
	pos     eventstore.Position
}

func (l *memLog) Read(_ context.Context, stream string) ([]eventstore.RecordedEvent, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	evs := l.streams[stream]
	if len(evs) == 0 {
		return nil, eventstore.ErrStreamNotFound
	}
	return append([]eventstore.RecordedEvent(nil), evs...), nil
}

func (l *memLog) Append(_ context.Context, stream string, expected eventstore.ExpectedRevision, ev eventstore.Event) (eventstore.Revision, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := eventstore.Revision(len(l.streams[stream]))
	if r, ok := expected.Exact(); ok && r != cur {
		return 0, eventstore.ErrConflict
	}
	l.pos++
	l.streams[stream] = append(l.streams[stream], eventstore.RecordedEvent{Event: ev, Stream: stream, Revision: cur + 1, Position: l.pos})
	return cur + 1, nil
}

func (l *memLog) add(t *testing.T, stream string, m proto.Message) projection.Event {
	t.Helper()
	data, err := proto.Marshal(m)
	require.NoError(t, err)
	_, err = l.Append(context.Background(), stream, eventstore.Any(), eventstore.Event{ID: fmt.Sprint(l.pos + 1), Type: caseevents.TypeOf(m), Data: data})
	require.NoError(t, err)
	evs, _ := l.Read(context.Background(), stream)
	return projection.Event{Recorded: evs[len(evs)-1], Message: m}
}

// outcomes returns the MailSent and MailFailed events of a case.
func (l *memLog) outcomes(t *testing.T, stream string) (sent []*casev1.MailSent, failed []*casev1.MailFailed) {
	t.Helper()
	evs, _ := l.Read(context.Background(), stream)
	for _, ev := range evs {
		m, err := caseevents.Decode(ev.Type, ev.Data)
		require.NoError(t, err)
		switch e := m.(type) {
		case *casev1.MailSent:
			sent = append(sent, e)
		case *casev1.MailFailed:
			failed = append(failed, e)
		}
	}
	return sent, failed
}

// plainOpener "opens" a sealed value that holds its plaintext; key id
// "destroyed" is a destroyed key.
type plainOpener struct{}

func (plainOpener) OpenMessage(_ context.Context, _ string, sealed *casev1.SealedPersonalData, m proto.Message) error {
	if sealed.GetKeyId() == "destroyed" {
		return seal.ErrKeyDestroyed
	}
	return proto.Unmarshal(sealed.GetCiphertext(), m)
}

func plainContact(t *testing.T, email string) *casev1.SealedPersonalData {
	t.Helper()
	b, err := proto.Marshal(&casev1.ContactDetails{Email: email})
	require.NoError(t, err)
	return &casev1.SealedPersonalData{KeyId: "k", Ciphertext: b}
}

// memItems is OutboxStore in memory.
type memItems struct {
	items map[string]OutboxItem
	sent  map[string]string
	cp    eventstore.Position
}

func (m *memItems) Checkpoint() (eventstore.Position, error) { return m.cp, nil }
func (m *memItems) CaseOfMessage(id string) (string, bool, error) {
	c, ok := m.sent[id]
	return c, ok, nil
}
func (m *memItems) Apply(add []OutboxItem, done []string, sent []SentMail, deleted []string, cp eventstore.Position) error {
	if m.sent == nil {
		m.sent = map[string]string{}
	}
	for _, s := range sent {
		m.sent[s.MessageID] = s.CaseID
	}
	for id, c := range m.sent {
		if slices.Contains(deleted, c) {
			delete(m.sent, id)
		}
	}
	for _, it := range add {
		if _, ok := m.items[it.Key()]; !ok {
			m.items[it.Key()] = it
		}
	}
	for _, k := range done {
		delete(m.items, k)
	}
	m.cp = cp
	return nil
}
func (m *memItems) Due(now time.Time, limit int) ([]OutboxItem, error) {
	var out []OutboxItem
	for _, it := range m.items {
		if !it.NextAt.After(now) && len(out) < limit {
			out = append(out, it)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out, nil
}
func (m *memItems) Put(it OutboxItem) error {
	if _, ok := m.items[it.Key()]; ok {
		m.items[it.Key()] = it
	}
	return nil
}
func (m *memItems) Remove(k string) error { delete(m.items, k); return nil }
func (m *memItems) Len() (int, error)     { return len(m.items), nil }

// scriptedRelay answers each Send with the next error of its script
// (nil once the script is done) and keeps what it was asked to send.
type scriptedRelay struct {
	script []error
	sent   []domain.OutgoingMail
}

func (r *scriptedRelay) Send(_ context.Context, m domain.OutgoingMail) error {
	var err error
	if len(r.script) > 0 {
		err, r.script = r.script[0], r.script[1:]
	}
	if err == nil {
		r.sent = append(r.sent, m)
	}
	return err
}

const testCase = "3f2c1a9e-0b7d-4c55-9a1e-6d2b8f4c7e10"

func TestOutbox(t *testing.T) {
	errTemp := errors.New("connection refused")
	tests := []struct {
		name        string
		contact     *casev1.SealedPersonalData
		mailbox     string
		by          string // registered_by; empty: the mail receiver
		channel     casev1.Channel
		script      []error
		sends       int // passes of the sender
		wantSent    int
		wantFailed  string
		wantAttempt uint32
		wantMails   int
	}{
		{name: "sent at once", mailbox: "kontakt@kommun.se", sends: 1, wantSent: 1, wantAttempt: 1, wantMails: 1},
		{name: "a case not from mail is not acknowledged", mailbox: "", sends: 1},
		{name: "temporary failures are retried", mailbox: "kontakt@kommun.se", script: []error{errTemp, errTemp}, sends: 3, wantSent: 1, wantAttempt: 3, wantMails: 1},
		{name: "a refusal is final", mailbox: "kontakt@kommun.se", script: []error{fmt.Errorf("%w: 550", ErrRelayRefused)}, sends: 2, wantFailed: "refused", wantAttempt: 1},
		{name: "the last attempt gives up", mailbox: "kontakt@kommun.se", script: []error{errTemp, errTemp, errTemp, errTemp}, sends: 4, wantFailed: "unavailable", wantAttempt: 3},
		{name: "no e-mail address", mailbox: "kontakt@kommun.se", contact: &casev1.SealedPersonalData{}, sends: 1, wantFailed: "no-address"},
		{name: "redacted before it was sent", mailbox: "kontakt@kommun.se", contact: &casev1.SealedPersonalData{KeyId: "destroyed"}, sends: 1, wantFailed: "redacted"},
		{name: "a form with an e-mail address is acknowledged", by: "form:eservice", channel: casev1.Channel_CHANNEL_FORM, sends: 1, wantSent: 1, wantAttempt: 1, wantMails: 1},
		{name: "a form without one: nothing recorded", by: "form:eservice", channel: casev1.Channel_CHANNEL_FORM, contact: &casev1.SealedPersonalData{}, sends: 1},
		{name: "a phone call an agent registered is not acknowledged", by: "anna", channel: casev1.Channel_CHANNEL_PHONE, sends: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &memLog{streams: map[string][]eventstore.RecordedEvent{}}
			now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			clock := func() time.Time { return now }
			acks, err := domain.NewAcknowledgements(nil)
			require.NoError(t, err)
			relay := &scriptedRelay{script: tt.script}
			items := &memItems{items: map[string]OutboxItem{}}
			o, err := NewOutbox(log, plainOpener{}, items, relay, clock, slog.New(slog.NewTextHandler(io.Discard, nil)), OutboxConfig{
				Host: "kommun.se", MaxAttempts: 3, Retry: backoff.Policy{Initial: time.Minute, Max: time.Hour}, Acknowledgements: acks,
			})
			require.NoError(t, err)
			contact := tt.contact
			if contact == nil {
				contact = plainContact(t, "anna@example.se")
			} else if contact.GetKeyId() == "" && contact.GetCiphertext() == nil {
				contact = plainContact(t, "")
			}
			channel, by := tt.channel, tt.by
			if channel == casev1.Channel_CHANNEL_UNSPECIFIED {
				channel, by = casev1.Channel_CHANNEL_EMAIL, MailActor
			}
			reg := log.add(t, testCase, &casev1.CaseRegistered{CaseId: testCase, CaseNumber: "KC-2026-000042", Type: casev1.CaseType_CASE_TYPE_FRAGA,
				Channel: channel, RegisteredBy: by, Contact: contact, Mailbox: tt.mailbox, RegisteredAt: timestamppb.New(now)})
			require.NoError(t, o.Apply(context.Background(), []projection.Event{reg}))
			for range tt.sends {
				o.sendDue(context.Background())
				now = now.Add(time.Hour) // past any retry pause
			}
			sent, failed := log.outcomes(t, testCase)
			require.Len(t, sent, tt.wantSent)
			require.Len(t, relay.sent, tt.wantMails)
			require.Equal(t, float64(tt.wantMails), testutil.ToFloat64(o.attempts.WithLabelValues("acknowledgement", "sent")))
			if tt.wantSent > 0 {
				require.Equal(t, tt.wantAttempt, sent[0].GetAttempts())
				require.Equal(t, domain.MessageID(testCase, casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT, "", "kommun.se"), sent[0].GetMessageId())
				m := relay.sent[0]
				require.Equal(t, "anna@example.se", m.To)
				require.Equal(t, "Vi har tagit emot din fråga – ärende KC-2026-000042", m.Subject)
				require.Equal(t, sent[0].GetMessageId(), m.MessageID)
				require.True(t, m.Automatic)
			}
			if tt.wantFailed != "" {
				require.Len(t, failed, 1)
				require.Equal(t, tt.wantFailed, failed[0].GetReason())
				require.Equal(t, tt.wantAttempt, failed[0].GetAttempts())
			} else {
				require.Empty(t, failed)
			}
			if tt.wantSent+len(failed) > 0 || tt.mailbox == "" || tt.by != "" {
				require.Empty(t, items.items, "nothing left to send")
			}
		})
	}
}

func TestOutboxSendsNothingTheCaseRecordsAlready(t *testing.T) {
	log := &memLog{streams: map[string][]eventstore.RecordedEvent{}}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	acks, err := domain.NewAcknowledgements(nil)
	require.NoError(t, err)
	relay := &scriptedRelay{}
	items := &memItems{items: map[string]OutboxItem{}}
	o, err := NewOutbox(log, plainOpener{}, items, relay, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)), OutboxConfig{
		Host: "kommun.se", MaxAttempts: 3, Retry: backoff.Policy{Initial: time.Minute}, Acknowledgements: acks,
	})
	require.NoError(t, err)
	reg := log.add(t, testCase, &casev1.CaseRegistered{CaseId: testCase, CaseNumber: "KC-2026-000042", Contact: plainContact(t, "anna@example.se"), Mailbox: "kontakt@kommun.se", RegisteredAt: timestamppb.New(now)})
	// A replay after a crash: the mail was sent and recorded, and the
	// batch that decided it is applied again without the record.
	log.add(t, testCase, &casev1.MailSent{CaseId: testCase, Kind: casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT})
	require.NoError(t, o.Apply(context.Background(), []projection.Event{reg}))
	o.sendDue(context.Background())
	require.Empty(t, relay.sent)
	require.Empty(t, items.items)

	// An old case met by an outbox switched on later is not acknowledged.
	old := log.add(t, "old", &casev1.CaseRegistered{CaseId: "old", Mailbox: "kontakt@kommun.se", RegisteredAt: timestamppb.New(now.Add(-MailMaxAge - time.Minute))})
	require.NoError(t, o.Apply(context.Background(), []projection.Event{old}))
	require.Empty(t, items.items)
}

func TestOutboxMailsAnswers(t *testing.T) {
	tests := []struct {
		name       string
		email      string
		mailbox    string
		delivery   casev1.AnswerDelivery
		wantMails  int
		threaded   bool
		wantFailed string
	}{
		{"a mail case: acknowledgement, then the answer in its thread", "anna@example.se", "kontakt@kommun.se", 0, 2, true, ""},
		{"a phone case with an e-mail address: the answer alone", "anna@example.se", "", 0, 1, false, ""},
		{"a case without an e-mail address: nothing, and nothing recorded", "", "", 0, 0, false, ""},
		{"asked to mail it: the answer", "anna@example.se", "", casev1.AnswerDelivery_ANSWER_DELIVERY_EMAIL, 1, false, ""},
		{"asked to mail it without an address: failed on the case", "", "", casev1.AnswerDelivery_ANSWER_DELIVERY_EMAIL, 0, false, "no-address"},
		{"answered another way: the acknowledgement only", "anna@example.se", "kontakt@kommun.se", casev1.AnswerDelivery_ANSWER_DELIVERY_OTHER, 1, false, ""},
		{"answered another way on a phone case: nothing", "anna@example.se", "", casev1.AnswerDelivery_ANSWER_DELIVERY_OTHER, 0, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &memLog{streams: map[string][]eventstore.RecordedEvent{}}
			now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			acks, err := domain.NewAcknowledgements(nil)
			require.NoError(t, err)
			relay := &scriptedRelay{}
			items := &memItems{items: map[string]OutboxItem{}}
			o, err := NewOutbox(log, plainOpener{}, items, relay, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)), OutboxConfig{
				Host: "kommun.se", MaxAttempts: 3, Retry: backoff.Policy{Initial: time.Minute}, Acknowledgements: acks,
			})
			require.NoError(t, err)
			reg := log.add(t, testCase, &casev1.CaseRegistered{CaseId: testCase, CaseNumber: "KC-2026-000042", Contact: plainContact(t, tt.email), Mailbox: tt.mailbox, RegisteredAt: timestamppb.New(now)})
			require.NoError(t, o.Apply(context.Background(), []projection.Event{reg}))
			o.sendDue(context.Background())
			text, err := proto.Marshal(&casev1.AnswerText{Text: "Ett attefallshus kräver en anmälan, inte bygglov."})
			require.NoError(t, err)
			ans := log.add(t, testCase, &casev1.CaseAnswered{CaseId: testCase, AnsweredBy: "anna", Answer: &casev1.SealedPersonalData{KeyId: "k", Ciphertext: text}, AnsweredAt: timestamppb.New(now), Delivery: tt.delivery})
			require.NoError(t, o.Apply(context.Background(), []projection.Event{ans}))
			o.sendDue(context.Background())

			require.Len(t, relay.sent, tt.wantMails)
			require.Empty(t, items.items)
			sent, failed := log.outcomes(t, testCase)
			require.Len(t, sent, tt.wantMails)
			if tt.wantFailed != "" {
				require.Len(t, failed, 1)
				require.Equal(t, tt.wantFailed, failed[0].GetReason())
				require.Equal(t, ans.Recorded.ID, failed[0].GetAnswerEventId())
				return
			}
			require.Empty(t, failed)
			if tt.delivery == casev1.AnswerDelivery_ANSWER_DELIVERY_OTHER {
				for _, m := range sent {
					require.Equal(t, casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT, m.GetKind(), "an answer given another way is never mailed")
				}
				return
			}
			if tt.wantMails == 0 {
				return
			}
			m := relay.sent[len(relay.sent)-1]
			require.Equal(t, "Svar på ditt ärende KC-2026-000042", m.Subject)
			require.Contains(t, m.Body, "Ett attefallshus kräver en anmälan, inte bygglov.")
			require.False(t, m.Automatic, "an official wrote it")
			last := sent[len(sent)-1]
			require.Equal(t, casev1.MailKind_MAIL_KIND_ANSWER, last.GetKind())
			require.Equal(t, ans.Recorded.ID, last.GetAnswerEventId())
			require.Equal(t, last.GetMessageId(), m.MessageID)
			if tt.threaded {
				require.Equal(t, sent[0].GetMessageId(), m.InReplyTo, "the answer follows the acknowledgement")
			} else {
				require.Empty(t, m.InReplyTo)
			}
		})
	}
}
