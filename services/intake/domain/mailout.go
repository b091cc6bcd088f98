package domain

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"

	"github.com/google/uuid"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// OutgoingMail is one mail kontakt sends about a case: to the case's
// contact, from the configured sender. It is personal data (address and
// text) and lives in memory only, while it is sent.
type OutgoingMail struct {
	To        string
	Subject   string
	Body      string
	MessageID string
	// Automatic marks a mail no person wrote (an acknowledgement):
	// it is sent with Auto-Submitted: auto-replied, so the citizen's own
	// auto-responder does not answer it (RFC 3834).
	Automatic bool
	// InReplyTo is the Message-ID this mail follows (an answer follows
	// the case's acknowledgement), for In-Reply-To and References, so
	// the citizen's mail client shows one conversation.
	InReplyTo string
}

// AnswerMail is the mail that carries an official's answer: the subject
// names the case number (a reply quoting it finds the case), the body is
// the answer as written, and a closing line says how to write back.
func AnswerMail(caseNumber, answer string) OutgoingMail {
	return OutgoingMail{
		Subject: "Svar på ditt ärende " + caseNumber,
		Body: strings.TrimRight(answer, "\n") + "\n\n-- \n" +
			"Ärendenummer " + caseNumber + ". Svara på det här meddelandet om du vill skriva till oss i samma ärende.\n",
	}
}

// mailNamespace makes Message-IDs differ from every other name-based
// UUID.
var mailNamespace = uuid.MustParse("2f7d0a4c-6c1e-4b8e-9a53-0d6c8f3b5e21")

// MessageID is the Message-ID of one mail about a case: derived from the
// case, the kind and the answer, so every attempt of the same mail, and
// a mail sent again after a crash, carries the same id (many mail
// systems then show it once), and it names nothing personal.
func MessageID(caseID string, kind casev1.MailKind, answerEventID, host string) string {
	id := uuid.NewSHA1(mailNamespace, []byte(caseID+"\x00"+kind.String()+"\x00"+answerEventID))
	return "<" + id.String() + "@" + host + ">"
}

// MailTemplate is a mail's subject and body as text/template sources;
// {{.CaseNumber}} is the case number.
type MailTemplate struct {
	Subject string
	Body    string
}

// DefaultAcknowledgements are the built-in Swedish acknowledgements per
// case type: they say the mail arrived, give the case number to quote,
// and that no person wrote this one.
func DefaultAcknowledgements() map[casev1.CaseType]MailTemplate {
	body := func(what string) string {
		return "Hej!\n\nTack för " + what + ". Vi har registrerat det som ärende {{.CaseNumber}}.\n" +
			"Ange ärendenumret om du skriver till oss igen i samma sak, eller svara på det här meddelandet.\n\n" +
			"Det här är en automatisk bekräftelse; du får svar från en handläggare så snart vi kan.\n\n" +
			"Med vänliga hälsningar\nKontaktcenter\n"
	}
	return map[casev1.CaseType]MailTemplate{
		casev1.CaseType_CASE_TYPE_FRAGA:      {Subject: "Vi har tagit emot din fråga – ärende {{.CaseNumber}}", Body: body("din fråga")},
		casev1.CaseType_CASE_TYPE_FELANMALAN: {Subject: "Vi har tagit emot din felanmälan – ärende {{.CaseNumber}}", Body: body("din felanmälan")},
		casev1.CaseType_CASE_TYPE_SYNPUNKT:   {Subject: "Vi har tagit emot dina synpunkter – ärende {{.CaseNumber}}", Body: body("dina synpunkter")},
		casev1.CaseType_CASE_TYPE_BREV:       {Subject: "Vi har tagit emot ditt brev – ärende {{.CaseNumber}}", Body: body("ditt brev")},
	}
}

// Acknowledgements renders the acknowledgement of each case type.
type Acknowledgements struct {
	subject, body map[casev1.CaseType]*template.Template
}

// NewAcknowledgements parses the templates; a type without one (or with
// an empty subject or body) gets the built-in text.
func NewAcknowledgements(custom map[casev1.CaseType]MailTemplate) (*Acknowledgements, error) {
	a := &Acknowledgements{subject: map[casev1.CaseType]*template.Template{}, body: map[casev1.CaseType]*template.Template{}}
	for t, def := range DefaultAcknowledgements() {
		c := custom[t]
		if c.Subject == "" {
			c.Subject = def.Subject
		}
		if c.Body == "" {
			c.Body = def.Body
		}
		var err error
		if a.subject[t], err = template.New("subject").Option("missingkey=error").Parse(c.Subject); err != nil {
			return nil, fmt.Errorf("acknowledgement of %s: subject: %w", t, err)
		}
		if a.body[t], err = template.New("body").Option("missingkey=error").Parse(c.Body); err != nil {
			return nil, fmt.Errorf("acknowledgement of %s: body: %w", t, err)
		}
	}
	return a, nil
}

// Render returns the acknowledgement's subject and body for a case.
func (a *Acknowledgements) Render(t casev1.CaseType, caseNumber string) (subject, body string, err error) {
	st, ok := a.subject[t]
	if !ok {
		st, t = a.subject[casev1.CaseType_CASE_TYPE_FRAGA], casev1.CaseType_CASE_TYPE_FRAGA
	}
	data := struct{ CaseNumber string }{caseNumber}
	var sb, bb bytes.Buffer
	if err := st.Execute(&sb, data); err != nil {
		return "", "", err
	}
	if err := a.body[t].Execute(&bb, data); err != nil {
		return "", "", err
	}
	return strings.Join(strings.Fields(sb.String()), " "), bb.String(), nil
}
