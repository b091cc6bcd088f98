package domain

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
)

// Mail is an inbound e-mail as the receiver read it: the envelope, the
// headers that tell a person's mail from a robot's, and the text. It is
// personal data as a whole (addresses, subject, text) and is never
// logged; only its Automated reason is.
type Mail struct {
	// EnvelopeSender is the SMTP MAIL FROM address; empty is the null
	// sender <> that bounces and other notifications use.
	EnvelopeSender string
	// From is the address of the From header: the person to answer.
	From string
	// MessageID is the Message-ID header without its angle brackets;
	// empty when the mail has none. A relay that sends a mail again
	// sends the same id.
	MessageID string
	// Mailbox is the contact centre's address the mail was sent to (one
	// of the configured ones, in lower case), which the case records.
	Mailbox string
	// Subject is the decoded subject (RFC 2047), Text the body as plain
	// text (HTML-only mail converted).
	Subject string
	Text    string
	// AutoSubmitted is the Auto-Submitted header (RFC 3834), Precedence
	// the Precedence header, in lower case.
	AutoSubmitted string
	Precedence    string
	// AutoReplyHeader is set when a header that vacation programs use
	// instead of Auto-Submitted is present (X-Autoreply, X-Autorespond).
	AutoReplyHeader bool
	// MailingList is set when a List-Id or List-Unsubscribe header is
	// present (RFC 2919, 2369).
	MailingList bool
	// Report is set for a multipart/report message (a delivery status
	// notification, RFC 3464, or a read receipt).
	Report bool
	// Attachments are the mail's files, in the order they appear: they
	// become the case's attachments, content and all.
	Attachments []MailAttachment
	// ReportType is a multipart/report's report-type parameter
	// ("delivery-status" for a DSN), in lower case.
	ReportType string
	// DeliveryActions are the Action fields of a DSN's delivery-status
	// part ("failed", "delayed", ...), in lower case.
	DeliveryActions []string
	// OriginalMessageIDs are the Message-IDs (without angle brackets) of
	// the mails a report returns (its message/rfc822 or header part),
	// or, in a bounce that is no report, quoted in its text.
	OriginalMessageIDs []string
	// References are the Message-IDs of In-Reply-To and References
	// (without angle brackets): the mails this one follows.
	References []string
}

// Bounced returns the Message-IDs of the mails a bounce says were not
// delivered: the returned mails of a delivery report whose action is
// "failed" (a "delayed" warning is no bounce), or those a mail from the
// null sender that is no report quotes. Any other mail bounces nothing.
func (m Mail) Bounced() []string {
	switch {
	case m.Report && m.ReportType == "delivery-status":
		if !slices.Contains(m.DeliveryActions, "failed") {
			return nil
		}
	case m.Report:
		return nil // a read receipt
	case strings.TrimSpace(m.EnvelopeSender) != "":
		return nil
	}
	return m.OriginalMessageIDs
}

// MailAttachment is one file of a mail: its name (from the
// Content-Disposition or Content-Type parameters; empty when it has
// none), its media type, and its decoded content.
type MailAttachment struct {
	Name        string
	ContentType string
	Content     []byte
}

// maxAttachmentName is the API's limit on an attachment's name.
const maxAttachmentName = 255

// Why a mail is not a citizen's: the reasons a receiver logs and counts.
// They name the rule, never the mail.
const (
	AutomatedNullSender    = "null-sender"
	AutomatedAutoSubmitted = "auto-submitted"
	AutomatedAutoReply     = "auto-reply-header"
	AutomatedPrecedence    = "precedence"
	AutomatedMailingList   = "mailing-list"
	AutomatedReport        = "delivery-report"
)

// Automated says whether a mail was sent by a program rather than a
// person (an out-of-office reply, a bounce, a newsletter), and by which
// rule. Such mail never becomes a case and never gets an
// acknowledgement: answering a robot is how mail loops start (RFC 3834
// section 2). The rules are the headers RFC 3834, 3464, 2919 and 2369
// define, and the ones that programs older than them still send.
func (m Mail) Automated() (reason string, automated bool) {
	switch {
	case strings.TrimSpace(m.EnvelopeSender) == "":
		return AutomatedNullSender, true
	case m.Report:
		return AutomatedReport, true
	case m.AutoSubmitted != "" && m.AutoSubmitted != "no":
		return AutomatedAutoSubmitted, true
	case m.AutoReplyHeader:
		return AutomatedAutoReply, true
	case m.Precedence == "bulk" || m.Precedence == "list" || m.Precedence == "junk" || m.Precedence == "auto_reply":
		return AutomatedPrecedence, true
	case m.MailingList:
		return AutomatedMailingList, true
	}
	return "", false
}

// Limits on what a mail puts into a case. A subject longer than the
// API's subject field is cut (the whole text is still in the
// description); a text longer than MaxMailText is cut and says so, since
// a case is read by a person and the receiver's size limit already
// bounds what arrives.
const (
	MaxMailSubject = 200
	MaxMailText    = 100_000
)

// MailCase is the case a person's mail becomes: the address's type and
// category, channel e-mail, the From address as contact, the subject
// and text as free text. It is validated by the same rules as every
// other case (Validate).
func MailCase(m Mail, t casev1.CaseType, category string) *intakev1.CaseInput {
	subject := strings.Join(strings.Fields(m.Subject), " ")
	if subject == "" {
		subject = "(inget ämne)"
	}
	return &intakev1.CaseInput{
		Type:        t,
		Channel:     casev1.Channel_CHANNEL_EMAIL,
		Category:    category,
		Subject:     truncate(subject, MaxMailSubject, "…"),
		Description: truncate(strings.TrimSpace(m.Text), MaxMailText, "\n\n[Texten är avkortad.]"),
		Contact:     &intakev1.Contact{Email: m.From},
		Attachments: mailAttachments(m.Attachments),
	}
}

// mailAttachments are a mail's files as the case's uploaded attachments.
// A file without a name is called "bilaga-N"; a mail has no ids for its
// files, so each gets "mail-N" (N counted from 1).
func mailAttachments(files []MailAttachment) []*intakev1.AttachmentInput {
	if len(files) == 0 {
		return nil
	}
	out := make([]*intakev1.AttachmentInput, len(files))
	for i, f := range files {
		name := strings.TrimSpace(f.Name)
		if name == "" {
			name = fmt.Sprintf("bilaga-%d", i+1)
		}
		out[i] = &intakev1.AttachmentInput{
			Name:         truncate(name, maxAttachmentName, ""),
			ContentType:  f.ContentType,
			SizeBytes:    int64(len(f.Content)),
			AttachmentId: fmt.Sprintf("mail-%d", i+1),
			Content:      f.Content,
		}
	}
	return out
}

// ValidateMail validates the case a mail becomes and records which of
// the contact centre's addresses it came to.
func ValidateMail(m Mail, t casev1.CaseType, category string, now time.Time, cats Categories) (Registration, error) {
	reg, err := Validate(MailCase(m, t, category), FromAgent, now, cats)
	if err != nil {
		return Registration{}, err
	}
	reg.Mailbox = strings.ToLower(m.Mailbox)
	return reg, nil
}

// truncate cuts s to at most limit bytes on a rune boundary, with mark
// appended when it cut.
func truncate(s string, limit int, mark string) string {
	if len(s) <= limit {
		return s
	}
	cut := limit - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
