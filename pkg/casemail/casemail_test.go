package casemail_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/casemail"
)

type ev struct {
	id  string
	msg proto.Message
}

func fold(evs ...ev) casemail.Facts {
	var f casemail.Facts
	for _, e := range evs {
		f.Apply(e.msg, e.id, time.Unix(0, 0))
	}
	return f
}

func TestFacts(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	contact := &casev1.SealedPersonalData{KeyId: "k", Ciphertext: []byte{1}}
	corrected := &casev1.SealedPersonalData{KeyId: "k", Ciphertext: []byte{2}}
	answer := &casev1.SealedPersonalData{KeyId: "a", Ciphertext: []byte{3}}
	reg := ev{"r", &casev1.CaseRegistered{CaseNumber: "KC-2026-000001", Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_EMAIL, Contact: contact}}
	ack := ev{"m1", &casev1.MailSent{Kind: casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT, MessageId: "<ack@k>", SentAt: timestamppb.New(t0)}}
	answered := ev{"a1", &casev1.CaseAnswered{Answer: answer, AnsweredAt: timestamppb.New(t0.Add(time.Hour))}}
	answerSent := ev{"m2", &casev1.MailSent{Kind: casev1.MailKind_MAIL_KIND_ANSWER, AnswerEventId: "a1", MessageId: "<ans@k>", SentAt: timestamppb.New(t0.Add(2 * time.Hour))}}
	bounced := ev{"m3", &casev1.MailFailed{Kind: casev1.MailKind_MAIL_KIND_ANSWER, AnswerEventId: "a1", MessageId: "<ans@k>", Reason: casemail.ReasonBounced}}

	t.Run("registration", func(t *testing.T) {
		f := fold(reg)
		require.Equal(t, "KC-2026-000001", f.Number)
		require.Equal(t, casev1.CaseType_CASE_TYPE_FRAGA, f.Type)
		require.Same(t, contact, f.Contact)
		require.False(t, f.Acknowledged())
	})
	t.Run("a rectified contact is the one in force", func(t *testing.T) {
		f := fold(reg, ev{"x", &casev1.PersonalDataRectified{DataClass: casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, Value: corrected}},
			ev{"y", &casev1.PersonalDataRectified{DataClass: casev1.DataClass_DATA_CLASS_FREE_TEXT, Value: answer}})
		require.Same(t, corrected, f.Contact)
	})
	t.Run("answers and their mails", func(t *testing.T) {
		f := fold(reg, ack, answered, answerSent)
		require.True(t, f.Acknowledged())
		require.Same(t, answer, f.Answer("a1"))
		require.Nil(t, f.Answer("a2"))
		require.True(t, f.Recorded(casev1.MailKind_MAIL_KIND_ANSWER, "a1"))
		require.False(t, f.Recorded(casev1.MailKind_MAIL_KIND_ANSWER, "a2"))
		o, ok := f.SentMail("<ans@k>")
		require.True(t, ok)
		require.Equal(t, "a1", o.AnswerEventID)
		require.Equal(t, t0.Add(2*time.Hour), f.FirstAnswerSentAt(), "the answer as sent, not as given")
		require.False(t, f.Bounced("<ans@k>"))
	})
	t.Run("a bounce does not make an unsent mail recorded", func(t *testing.T) {
		f := fold(reg, answered, bounced)
		require.False(t, f.Recorded(casev1.MailKind_MAIL_KIND_ANSWER, "a1"))
		require.True(t, f.Bounced("<ans@k>"))
		require.True(t, f.FirstAnswerSentAt().IsZero())
	})
	t.Run("closed, reopened, deleted", func(t *testing.T) {
		f := fold(reg, ev{"c", &casev1.CaseClosed{ClosedAt: timestamppb.New(t0)}})
		require.True(t, f.Closed)
		require.Equal(t, t0, f.ClosedAt)
		f.Apply(&casev1.CaseReopened{}, "o", t0)
		require.False(t, f.Closed)
		require.True(t, f.ClosedAt.IsZero())
		f.Apply(&casev1.CaseDeleted{}, "d", t0)
		require.True(t, f.Deleted)
	})
	t.Run("joined messages and the free text's redaction", func(t *testing.T) {
		f := fold(reg, ev{"j", &casev1.CaseMessageReceived{DeliveryKey: "k1"}})
		require.True(t, f.Joined("k1"))
		require.False(t, f.Joined("k2"))
		require.False(t, f.Joined(""))
		require.False(t, f.FreeTextRedacted)
		require.False(t, f.Apply(&casev1.PersonalDataRedacted{DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_ANSWER}}, "p", t0))
		require.True(t, f.Apply(&casev1.PersonalDataRedacted{DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_FREE_TEXT}}, "p", t0))
		require.True(t, f.FreeTextRedacted)
	})
	t.Run("events it does not know change nothing", func(t *testing.T) {
		f := fold(reg)
		require.False(t, f.Apply(&casev1.CaseRouted{Queue: "kc"}, "q", t0))
		require.Equal(t, fold(reg), f)
	})
}
