package app

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/caseevents"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// plainSealer "seals" by keeping the plaintext (plainOpener opens it).
type plainSealer struct{ plainOpener }

func (plainSealer) Seal(_ context.Context, _ string, class seal.Class, _ uint32, b []byte) (*casev1.SealedPersonalData, error) {
	return &casev1.SealedPersonalData{KeyId: string(class), Ciphertext: bytes.Clone(b)}, nil
}

// noNumbers knows no case number.
type noNumbers struct{ CaseNumbers }

func (noNumbers) Lookup(context.Context, string) (string, error) { return "", ErrNotFound }

// racingLog appends another event to the case before the first append
// it is asked for, as an agent acting at the same moment would.
type racingLog struct {
	*memLog
	raced bool
}

func (l *racingLog) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, ev eventstore.Event) (eventstore.Revision, error) {
	if !l.raced {
		l.raced = true
		data, _ := proto.Marshal(&casev1.NoteAdded{CaseId: stream})
		if _, err := l.memLog.Append(ctx, stream, eventstore.Any(), eventstore.Event{ID: "race", Type: caseevents.TypeOf(&casev1.NoteAdded{}), Data: data}); err != nil {
			return 0, err
		}
	}
	return l.memLog.Append(ctx, stream, expected, ev)
}

func TestJoinReply(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	reply := domain.Mail{From: "Anna@Example.se", MessageID: "r1@example.se", Subject: "Re: Svar", Text: "Tack!"}
	tests := []struct {
		name       string
		after      []proto.Message // events after the registration
		mail       domain.Mail
		race       bool
		twice      bool
		wantRefers bool
		wantTypes  []string // the events the reply appends
		wantReopen bool
	}{
		{name: "an open case, from its contact", wantTypes: []string{"CaseMessageReceived"}},
		{name: "delivered twice joins once", twice: true, wantTypes: []string{"CaseMessageReceived"}},
		{name: "another sender refers to the case", mail: domain.Mail{From: "stranger@example.se", MessageID: "s@x", Text: "x"}, wantRefers: true},
		{name: "closed just now: reopened and joined", after: []proto.Message{&casev1.CaseClosed{ClosedAt: timestamppb.New(now.Add(-time.Hour))}},
			wantTypes: []string{"CaseReopened", "CaseMessageReceived"}, wantReopen: true},
		{name: "closed long ago refers to the case", after: []proto.Message{&casev1.CaseClosed{ClosedAt: timestamppb.New(now.Add(-31 * 24 * time.Hour))}}, wantRefers: true},
		{name: "free text redacted refers to the case", after: []proto.Message{&casev1.PersonalDataRedacted{DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_FREE_TEXT}}}, wantRefers: true},
		{name: "contact redacted refers to the case", after: []proto.Message{&casev1.PersonalDataRectified{DataClass: casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, Value: &casev1.SealedPersonalData{KeyId: "destroyed"}}}, wantRefers: true},
		{name: "deleted refers to the case", after: []proto.Message{&casev1.CaseDeleted{}}, wantRefers: true},
		{name: "a concurrent append is read again", race: true, wantTypes: []string{"CaseMessageReceived"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := &memLog{streams: map[string][]eventstore.RecordedEvent{}}
			mem.add(t, testCase, &casev1.CaseRegistered{CaseId: testCase, CaseNumber: "KC-2026-000042", Channel: casev1.Channel_CHANNEL_EMAIL, Contact: plainContact(t, "anna@example.se")})
			for _, m := range tt.after {
				mem.add(t, testCase, m)
			}
			var store EventStore = mem
			if tt.race {
				store = &racingLog{memLog: mem}
			}
			svc, err := NewService(store, plainSealer{}, noNumbers{}, nil, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)),
				Config{PayloadKey: bytes.Repeat([]byte{9}, 32), ReplyReopenWithin: 30 * 24 * time.Hour})
			require.NoError(t, err)
			m := reply
			if tt.mail.From != "" {
				m = tt.mail
			}
			before, _ := mem.Read(context.Background(), testCase)
			r, refers, err := svc.joinReply(context.Background(), m, testCase, "", MatchedByMessageID, now)
			require.NoError(t, err)
			if tt.twice {
				again, _, err := svc.joinReply(context.Background(), m, testCase, "", MatchedByMessageID, now)
				require.NoError(t, err)
				require.True(t, again.Replayed, "the second delivery is recognised")
			}
			after, _ := mem.Read(context.Background(), testCase)
			var got []string
			for _, ev := range after[len(before):] {
				if ev.ID == "race" {
					continue
				}
				got = append(got, ev.Type[len("kontakt.case.v1."):])
			}
			if tt.wantRefers {
				require.Equal(t, "KC-2026-000042", refers)
				require.False(t, r.Joined)
				require.Empty(t, got, "nothing is written into the named case")
				return
			}
			require.Empty(t, refers)
			require.True(t, r.Joined)
			require.Equal(t, tt.wantReopen, r.Reopened)
			require.Equal(t, tt.wantTypes, got)
			msg, err := caseevents.Decode(after[len(after)-1].Type, after[len(after)-1].Data)
			require.NoError(t, err)
			joined := msg.(*casev1.CaseMessageReceived)
			require.Equal(t, MatchedByMessageID, joined.GetMatchedBy())
			require.NotContains(t, joined.GetDeliveryKey(), "example", "the key reveals nothing")
			var text casev1.FreeText
			require.NoError(t, proto.Unmarshal(joined.GetText().GetCiphertext(), &text))
			require.Equal(t, "Re: Svar", text.GetSubject())
			require.Equal(t, "Tack!", text.GetDescription())
			require.Equal(t, string(seal.ClassFreeText), joined.GetText().GetKeyId(), "sealed as free text")
		})
	}
}

func TestRecordBounces(t *testing.T) {
	mem := &memLog{streams: map[string][]eventstore.RecordedEvent{}}
	mem.add(t, testCase, &casev1.CaseRegistered{CaseId: testCase, CaseNumber: "KC-2026-000042"})
	answered := mem.add(t, testCase, &casev1.CaseAnswered{CaseId: testCase})
	answerID := domain.MessageID(testCase, casev1.MailKind_MAIL_KIND_ANSWER, answered.Recorded.ID, "kommun.se")
	mem.add(t, testCase, &casev1.MailSent{CaseId: testCase, Kind: casev1.MailKind_MAIL_KIND_ANSWER, AnswerEventId: answered.Recorded.ID, MessageId: answerID})
	items := &memItems{items: map[string]OutboxItem{}, sent: map[string]string{answerID: testCase, "<failed@kommun.se>": testCase}}
	svc, err := NewService(mem, plainSealer{}, noNumbers{}, nil, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)),
		Config{PayloadKey: bytes.Repeat([]byte{9}, 32), SentMail: items})
	require.NoError(t, err)

	// Twice, as relays deliver; with brackets or without; a Message-ID
	// kontakt never recorded as sent, and one nobody knows, change nothing.
	for _, ids := range [][]string{{answerID}, {answerID[1 : len(answerID)-1]}, {"failed@kommun.se", "unknown@kommun.se"}} {
		require.NoError(t, svc.recordBounces(context.Background(), ids))
	}
	_, failed := mem.outcomes(t, testCase)
	require.Len(t, failed, 1)
	require.Equal(t, "bounced", failed[0].GetReason())
	require.Equal(t, answered.Recorded.ID, failed[0].GetAnswerEventId())
	require.Equal(t, answerID, failed[0].GetMessageId())
}
