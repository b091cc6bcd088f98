package domain

import (
	"testing"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

func TestAcknowledgements(t *testing.T) {
	a, err := NewAcknowledgements(map[casev1.CaseType]MailTemplate{
		casev1.CaseType_CASE_TYPE_SYNPUNKT: {Subject: "Tack för dina synpunkter ({{.CaseNumber}})"},
	})
	require.NoError(t, err)
	tests := []struct {
		t       casev1.CaseType
		subject string
		bodyHas string
	}{
		{casev1.CaseType_CASE_TYPE_FRAGA, "Vi har tagit emot din fråga – ärende KC-2026-000042", "registrerat det som ärende KC-2026-000042"},
		{casev1.CaseType_CASE_TYPE_SYNPUNKT, "Tack för dina synpunkter (KC-2026-000042)", "Tack för dina synpunkter. Vi har registrerat det som ärende KC-2026-000042"},
		{casev1.CaseType_CASE_TYPE_BREV, "Vi har tagit emot ditt brev – ärende KC-2026-000042", "Tack för ditt brev"},
	}
	for _, tt := range tests {
		t.Run(tt.t.String(), func(t *testing.T) {
			subject, body, err := a.Render(tt.t, "KC-2026-000042")
			require.NoError(t, err)
			require.Equal(t, tt.subject, subject)
			require.Contains(t, body, tt.bodyHas)
		})
	}
	_, err = NewAcknowledgements(map[casev1.CaseType]MailTemplate{casev1.CaseType_CASE_TYPE_BREV: {Body: "{{.CaseNumber"}})
	require.Error(t, err)
}

func TestMessageIDIsStablePerMail(t *testing.T) {
	const c = "3f2c1a9e-0b7d-4c55-9a1e-6d2b8f4c7e10"
	a := MessageID(c, casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT, "", "kommun.se")
	require.Equal(t, a, MessageID(c, casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT, "", "kommun.se"))
	require.NotEqual(t, a, MessageID(c, casev1.MailKind_MAIL_KIND_ANSWER, "e1", "kommun.se"))
	require.NotEqual(t, MessageID(c, casev1.MailKind_MAIL_KIND_ANSWER, "e2", "kommun.se"), MessageID(c, casev1.MailKind_MAIL_KIND_ANSWER, "e1", "kommun.se"))
	require.Regexp(t, `^<[0-9a-f-]{36}@kommun\.se>$`, a)
	require.NotContains(t, a, c)
}
