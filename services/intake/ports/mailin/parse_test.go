package mailin

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// crlf turns a message written with \n into the wire's CRLF lines.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func TestParse(t *testing.T) {
	tests := []struct {
		name        string
		raw         string
		from        string
		subject     string
		textHas     []string
		textHasNot  []string
		report      bool
		list        bool
		autoSubmit  string
		precedence  string
		autoReplyHd bool
		files       []domain.MailAttachment
	}{
		{
			name:    "plain",
			raw:     "From: Anna Svensson <anna@example.se>\nTo: kontakt@kommun.se\nSubject: Fråga om bygglov\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nHej!\nNär får jag svar?\n",
			from:    "anna@example.se",
			subject: "Fråga om bygglov",
			textHas: []string{"Hej!\nNär får jag svar?"},
		},
		{
			name:    "ISO-8859-1 body and RFC 2047 subject",
			raw:     "From: =?ISO-8859-1?Q?=C5sa_=D6berg?= <asa@example.se>\nSubject: =?ISO-8859-1?Q?V=E4gen_=E4r_full_av_h=E5l_=F6verallt?=\nContent-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nH=E5let p=E5 g=E5ngv=E4gen =E4r st=F6rre nu.\n",
			from:    "asa@example.se",
			subject: "Vägen är full av hål överallt",
			textHas: []string{"Hålet på gångvägen är större nu."},
		},
		{
			name:       "HTML only",
			raw:        "From: bo@example.se\nSubject: HTML\nContent-Type: text/html; charset=utf-8\n\n<html><head><title>x</title><style>p{color:red}</style></head><body><p>Första&nbsp;stycket &amp; mer</p><p>Andra<br>raden</p><script>alert(1)</script></body></html>\n",
			from:       "bo@example.se",
			subject:    "HTML",
			textHas:    []string{"Första stycket & mer\nAndra\nraden"},
			textHasNot: []string{"alert", "color", "<p>"},
		},
		{
			name: "multipart alternative prefers the plain text; attachments are files",
			raw: `From: c@example.se
Subject: Multi
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=utf-8

Texten i klartext.
--inner
Content-Type: text/html; charset=utf-8

<p>Texten i HTML.</p>
--inner--
--outer
Content-Type: text/plain; name=bilaga.txt
Content-Disposition: attachment; filename=bilaga.txt

Bilagans innehåll
--outer--
`,
			from:       "c@example.se",
			subject:    "Multi",
			textHas:    []string{"Texten i klartext."},
			textHasNot: []string{"Texten i HTML", "Bilagans"},
			files:      []domain.MailAttachment{{Name: "bilaga.txt", ContentType: "text/plain", Content: []byte("Bilagans innehåll")}},
		},
		{
			name: "a forwarded mail outside a report is a file",
			raw: `From: f@example.se
Subject: Fwd: Kallelse
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain; charset=utf-8

Se det vidarebefordrade.
--b
Content-Type: message/rfc822

From: skola@example.se
Message-ID: <kallelse.1@example.se>
Subject: Kallelse

Välkommen.
--b--
`,
			from:    "f@example.se",
			subject: "Fwd: Kallelse",
			textHas: []string{"Se det vidarebefordrade."},
			files:   []domain.MailAttachment{{ContentType: "message/rfc822", Content: []byte("From: skola@example.se\r\nMessage-ID: <kallelse.1@example.se>\r\nSubject: Kallelse\r\n\r\nVälkommen.")}},
		},
		{
			name: "a PDF in base64 with an RFC 2231 name and an inline image without one",
			raw: `From: e@example.se
Subject: Filer
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain; charset=utf-8

Se bifogat.
--b
Content-Type: application/pdf
Content-Disposition: attachment; filename*=utf-8''ritning%20%C3%A5.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--b
Content-Type: image/png
Content-Disposition: inline
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--b--
`,
			from:    "e@example.se",
			subject: "Filer",
			textHas: []string{"Se bifogat."},
			files: []domain.MailAttachment{
				{Name: "ritning å.pdf", ContentType: "application/pdf", Content: []byte("%PDF-1.4\n")},
				{Name: "", ContentType: "image/png", Content: []byte("\x89PNG\r\n\x1a\n")},
			},
		},
		{
			name: "delivery status notification",
			raw: `From: MAILER-DAEMON@relay.example.se
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status; boundary=b

--b
Content-Type: text/plain

Your message could not be delivered.
--b
Content-Type: message/delivery-status

Final-Recipient: rfc822; nobody@example.se
Action: failed
Status: 5.1.1
--b--
`,
			from:    "MAILER-DAEMON@relay.example.se",
			subject: "Undelivered Mail Returned to Sender",
			report:  true,
		},
		{
			name:        "out of office",
			raw:         "From: d@example.se\nSubject: Autosvar: Fråga\nAuto-Submitted: auto-replied; owner-email=\"d@example.se\"\nX-Autoreply: yes\nPrecedence: Bulk\n\nJag är på semester.\n",
			from:        "d@example.se",
			subject:     "Autosvar: Fråga",
			autoSubmit:  "auto-replied",
			precedence:  "bulk",
			autoReplyHd: true,
		},
		{
			name:    "mailing list",
			raw:     "From: nyhetsbrev@example.se\nSubject: Veckans nyheter\nList-Id: <nyheter.example.se>\n\nNyheter.\n",
			from:    "nyhetsbrev@example.se",
			subject: "Veckans nyheter",
			list:    true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parse(crlf(tt.raw))
			require.NoError(t, err)
			require.Equal(t, tt.from, m.From)
			require.Equal(t, tt.subject, m.Subject)
			for _, s := range tt.textHas {
				require.Contains(t, m.Text, s)
			}
			for _, s := range tt.textHasNot {
				require.NotContains(t, m.Text, s)
			}
			require.Equal(t, tt.report, m.Report)
			require.Equal(t, tt.list, m.MailingList)
			require.Equal(t, tt.autoSubmit, m.AutoSubmitted)
			require.Equal(t, tt.precedence, m.Precedence)
			require.Equal(t, tt.autoReplyHd, m.AutoReplyHeader)
			require.Equal(t, tt.files, m.Attachments)
		})
	}
}

func TestParseRefusesWhatIsNotAMessage(t *testing.T) {
	_, err := parse([]byte("this is not a header\x00\r\n"))
	require.ErrorIs(t, err, errUnreadable)
}

func TestParseMessageID(t *testing.T) {
	m, err := parse(crlf("From: a@example.se\nMessage-ID: <abc.123@mx.example.se>\nSubject: x\n\ny\n"))
	require.NoError(t, err)
	require.Equal(t, "abc.123@mx.example.se", m.MessageID)
	m, err = parse(crlf("From: a@example.se\nSubject: x\n\ny\n"))
	require.NoError(t, err)
	require.Empty(t, m.MessageID)
}

func TestParseRepliesAndBounces(t *testing.T) {
	tests := []struct {
		name               string
		raw                string
		references         []string
		reportType         string
		actions            []string
		originalMessageIDs []string
	}{
		{
			name:       "a reply names the mails it follows",
			raw:        "From: anna@example.se\nMessage-ID: <r1@example.se>\nIn-Reply-To: <ans@kommun.se>\nReferences: <ack@kommun.se>\n <ans@kommun.se>\nSubject: Re: Svar\n\nTack\n",
			references: []string{"ans@kommun.se", "ack@kommun.se", "ans@kommun.se"},
		},
		{
			name: "a delivery report returns the header of the mail it is about",
			raw: "From: MAILER-DAEMON@relay.kommun.se\nSubject: Undelivered\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n" +
				"--b\nContent-Type: text/plain\n\nSorry.\n" +
				"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; relay\n\nFinal-Recipient: rfc822; x@example.se\nAction: failed\nStatus: 5.1.1\n" +
				"--b\nContent-Type: message/rfc822\n\nFrom: kontakt@kommun.se\nMessage-ID: <ans@kommun.se>\nSubject: Svar\n\nText\n--b--\n",
			reportType:         "delivery-status",
			actions:            []string{"failed"},
			originalMessageIDs: []string{"ans@kommun.se"},
		},
		{
			name:               "a bounce without a report quotes the Message-ID in its text",
			raw:                "From: postmaster@example.se\nSubject: failure notice\n\nI wasn't able to deliver your message.\n\n--- copy:\n\nMessage-ID: <ack@kommun.se>\nSubject: x\n",
			originalMessageIDs: []string{"ack@kommun.se"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parse(crlf(tt.raw))
			require.NoError(t, err)
			require.Equal(t, tt.references, m.References)
			require.Equal(t, tt.reportType, m.ReportType)
			require.Equal(t, tt.actions, m.DeliveryActions)
			require.Equal(t, tt.originalMessageIDs, m.OriginalMessageIDs)
		})
	}
}
