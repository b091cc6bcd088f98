package domain

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

func TestMailAutomated(t *testing.T) {
	person := Mail{EnvelopeSender: "anna@example.se", From: "anna@example.se", Subject: "Fråga", Text: "Hej"}
	tests := []struct {
		name   string
		change func(*Mail)
		reason string
	}{
		{"a person's mail", func(*Mail) {}, ""},
		{"Auto-Submitted: no is a person's", func(m *Mail) { m.AutoSubmitted = "no" }, ""},
		{"Precedence first-class is a person's", func(m *Mail) { m.Precedence = "first-class" }, ""},
		{"null sender", func(m *Mail) { m.EnvelopeSender = "" }, AutomatedNullSender},
		{"delivery report", func(m *Mail) { m.Report = true }, AutomatedReport},
		{"auto-replied", func(m *Mail) { m.AutoSubmitted = "auto-replied" }, AutomatedAutoSubmitted},
		{"auto-generated", func(m *Mail) { m.AutoSubmitted = "auto-generated" }, AutomatedAutoSubmitted},
		{"X-Autoreply", func(m *Mail) { m.AutoReplyHeader = true }, AutomatedAutoReply},
		{"Precedence bulk", func(m *Mail) { m.Precedence = "bulk" }, AutomatedPrecedence},
		{"Precedence list", func(m *Mail) { m.Precedence = "list" }, AutomatedPrecedence},
		{"Precedence junk", func(m *Mail) { m.Precedence = "junk" }, AutomatedPrecedence},
		{"List-Id", func(m *Mail) { m.MailingList = true }, AutomatedMailingList},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := person
			tt.change(&m)
			reason, automated := m.Automated()
			require.Equal(t, tt.reason, reason)
			require.Equal(t, tt.reason != "", automated)
		})
	}
}

func TestValidateMail(t *testing.T) {
	m := Mail{EnvelopeSender: "a@example.se", From: "Anna@Example.SE", Mailbox: "Kontakt@Kommun.se", Subject: "  Fråga\r\n om  bygglov ", Text: "Hej!\n"}
	reg, err := ValidateMail(m, casev1.CaseType_CASE_TYPE_FRAGA, "bygglov", now, cats)
	require.NoError(t, err)
	require.Equal(t, casev1.Channel_CHANNEL_EMAIL, reg.Channel)
	require.Equal(t, "kontakt@kommun.se", reg.Mailbox)
	require.Equal(t, "Anna@example.se", reg.Contact.GetEmail())
	require.Equal(t, "Fråga om bygglov", reg.FreeText.GetSubject())
	require.Equal(t, "Hej!", reg.FreeText.GetDescription())

	t.Run("no subject", func(t *testing.T) {
		reg, err := ValidateMail(Mail{From: "a@example.se", Text: "Hej"}, casev1.CaseType_CASE_TYPE_FRAGA, "bygglov", now, cats)
		require.NoError(t, err)
		require.Equal(t, "(inget ämne)", reg.FreeText.GetSubject())
	})
	t.Run("long subject and text are cut on a rune boundary", func(t *testing.T) {
		long := strings.Repeat("å", MaxMailText)
		reg, err := ValidateMail(Mail{From: "a@example.se", Subject: long, Text: long}, casev1.CaseType_CASE_TYPE_FRAGA, "bygglov", now, cats)
		require.NoError(t, err)
		require.LessOrEqual(t, len(reg.FreeText.GetSubject()), MaxMailSubject)
		require.True(t, utf8.ValidString(reg.FreeText.GetSubject()))
		require.LessOrEqual(t, len(reg.FreeText.GetDescription()), MaxMailText)
		require.True(t, utf8.ValidString(reg.FreeText.GetDescription()))
		require.True(t, strings.HasSuffix(reg.FreeText.GetDescription(), "[Texten är avkortad.]"))
	})
	t.Run("an unreadable sender is refused naming the field", func(t *testing.T) {
		_, err := ValidateMail(Mail{From: "", Text: "Hej"}, casev1.CaseType_CASE_TYPE_FRAGA, "bygglov", now, cats)
		var ve *ValidationError
		require.True(t, errors.As(err, &ve))
		require.Equal(t, "case.contact.email", ve.Violations[0].Field)
	})
}

func TestMailBounced(t *testing.T) {
	ids := []string{"ans@kommun.se"}
	tests := []struct {
		name string
		m    Mail
		want []string
	}{
		{"a failed delivery report", Mail{EnvelopeSender: "", Report: true, ReportType: "delivery-status", DeliveryActions: []string{"failed"}, OriginalMessageIDs: ids}, ids},
		{"a delayed warning is no bounce", Mail{Report: true, ReportType: "delivery-status", DeliveryActions: []string{"delayed"}, OriginalMessageIDs: ids}, nil},
		{"a read receipt is no bounce", Mail{Report: true, ReportType: "disposition-notification", OriginalMessageIDs: ids}, nil},
		{"a null-sender bounce without a report", Mail{EnvelopeSender: "", OriginalMessageIDs: ids}, ids},
		{"a person's mail quoting a Message-ID", Mail{EnvelopeSender: "anna@example.se", OriginalMessageIDs: ids}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.m.Bounced())
		})
	}
}
