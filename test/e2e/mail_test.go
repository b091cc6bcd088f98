package e2e

// The e-mail channel end to end (issue 18, inbound): a real SMTP client
// (net/smtp) delivers mail to the binary's receiver; GetCase shows the
// case with channel, contact and text; auto-replies, bounces and
// mailing-list mail make no case; oversized mail is refused; routing
// rules match the address a mail was sent to; nothing of the mails is on
// disk or in the log in clear.

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

// mailEnv is a binary with its mail receiver on and the routing queues.
type mailEnv struct {
	*routingEnv
	smtpAddr string
}

// startMail starts kontakt with a mail receiver for two addresses (mail to
// bygglov@ is routed to the queue gata by its recipient) and a message
// limit of maxBytes.
func startMail(t *testing.T, maxBytes int) *mailEnv {
	t.Helper()
	return startMailWith(t, "", maxBytes, "")
}

// startMailWith is startMail on a data directory (empty: a fresh one),
// with more mail configuration (mail.outbound's keys, indented under
// mail:).
func startMailWith(t *testing.T, dataDir string, maxBytes int, outbound string) *mailEnv {
	t.Helper()
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	require.NoError(t, os.WriteFile(rules, []byte(`version: "mail-1"
default_queue: kontaktcenter
rules:
  - name: bygglov-mail
    queue: gata
    recipients: [Bygglov@Kommun.se]
`), 0o600))
	// The receiver's port is chosen here; a clash with a port taken in
	// between fails the start, which onFreshPorts retries only for the
	// API port, so the rare clash is retried here too.
	for attempt := 1; ; attempt++ {
		addr := freeAddr(t)
		cfg := fmt.Sprintf(`mail:
  inbound:
    listen: %s
    max_message_bytes: %d
    per_sender: {per_minute: 600, burst: 100}
    addresses:
      - {address: kontakt@kommun.se, category: ovrigt}
      - {address: Bygglov@kommun.se, type: fraga, category: bygglov}
      - {address: synpunkter@kommun.se, type: synpunkt, category: bemotande}
%s`, addr, maxBytes, outbound)
		e := startRouting(t, dataDir, "  rules_file: "+rules+"\n", cfg)
		if waitListening(addr, 30*time.Second) {
			return &mailEnv{routingEnv: e, smtpAddr: addr}
		}
		require.Less(t, attempt, 3, "the mail receiver never listened on %s:\n%s", addr, e.k.stderr.String())
	}
}

// waitListening polls until addr accepts an SMTP session.
func waitListening(addr string, timeout time.Duration) bool {
	return eventually(timeout, func() bool {
		c, err := smtp.Dial(addr)
		if err != nil {
			return false
		}
		_ = c.Quit()
		return true
	})
}

// send delivers msg (lines joined with CRLF) from the envelope sender to
// the recipients.
func (e *mailEnv) send(from string, to []string, msg string) error {
	return smtp.SendMail(e.smtpAddr, nil, from, to, []byte(strings.ReplaceAll(msg, "\n", "\r\n")))
}

// casesOf finds the cases of an e-mail address (FindCases, as the
// supervisor), waiting until at least want are visible.
func (e *mailEnv) casesOf(t *testing.T, email string, want int) []*routingv1.CaseSummary {
	t.Helper()
	var cases []*routingv1.CaseSummary
	ok := eventually(30*time.Second, func() bool {
		ctx, cancel := e.as(t, sara)
		defer cancel()
		resp, err := e.rc.FindCases(ctx, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_Email{Email: email}})
		if err != nil {
			return false
		}
		cases = resp.GetCases()
		return len(cases) >= want
	})
	require.True(t, ok, "%d case(s) of a sender after 30 s, want %d", len(cases), want)
	return cases
}

func (e *mailEnv) getCase(t *testing.T, id string) *routingv1.CaseView {
	t.Helper()
	ctx, cancel := e.as(t, sara)
	defer cancel()
	resp, err := e.rc.GetCase(ctx, &routingv1.GetCaseRequest{CaseId: id})
	require.NoError(t, err)
	return resp.GetCase()
}

func smtpCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func TestMailBecomesCases(t *testing.T) {
	e := startMail(t, 64<<10)
	marker := strings.ToUpper(randHex(t, 6))
	tests := []struct {
		name, from, to, msg string
		subject             string
		textHas             []string
		textHasNot          []string
		queue               string
	}{
		{
			name: "plain", from: "plain-" + marker + "@example.se", to: "kontakt@kommun.se",
			msg:     "From: Anna Svensson <plain-" + marker + "@example.se>\nTo: kontakt@kommun.se\nSubject: Fråga om sophämtning\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nHej!\nNär töms kärlen på Storgatan? PLAINBODY" + marker + "\n",
			subject: "Fråga om sophämtning", textHas: []string{"När töms kärlen på Storgatan? PLAINBODY" + marker},
			queue: "kontaktcenter",
		},
		{
			name: "HTML only", from: "html-" + marker + "@example.se", to: "kontakt@kommun.se",
			msg:     "From: html-" + marker + "@example.se\nTo: kontakt@kommun.se\nSubject: HTML-brev\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n<html><head><style>p{color:red}</style></head><body><p>Första&nbsp;stycket &amp; mer</p><p>Andra<br>raden HTMLBODY" + marker + "</p><script>alert(1)</script></body></html>\n",
			subject: "HTML-brev", textHas: []string{"Första stycket & mer\nAndra\nraden HTMLBODY" + marker},
			textHasNot: []string{"<p>", "alert", "color"}, queue: "kontaktcenter",
		},
		{
			name: "multipart with an attachment", from: "multi-" + marker + "@example.se", to: "kontakt@kommun.se",
			msg:     "From: multi-" + marker + "@example.se\nTo: kontakt@kommun.se\nSubject: Med bilaga\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=outer\n\n--outer\nContent-Type: multipart/alternative; boundary=inner\n\n--inner\nContent-Type: text/plain; charset=utf-8\n\nSe bifogad fil. MULTIBODY" + marker + "\n--inner\nContent-Type: text/html; charset=utf-8\n\n<p>Se bifogad fil (HTML).</p>\n--inner--\n--outer\nContent-Type: application/pdf; name=karta.pdf\nContent-Disposition: attachment; filename=karta.pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--outer--\n",
			subject: "Med bilaga", textHas: []string{"Se bifogad fil. MULTIBODY" + marker},
			textHasNot: []string{"(HTML)", "JVBER"}, queue: "kontaktcenter",
		},
		{
			name: "ISO-8859-1 subject and body, to the bygglov address", from: "latin-" + marker + "@example.se", to: "BYGGLOV@kommun.se",
			msg:     "From: =?ISO-8859-1?Q?=C5sa_=D6berg?= <latin-" + marker + "@example.se>\nTo: bygglov@kommun.se\nSubject: =?ISO-8859-1?Q?Bygglov_f=F6r_altan_p=E5_g=E5rden_=E4r_klart??=\nMIME-Version: 1.0\nContent-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nM=E5ste jag s=F6ka bygglov f=F6r en altan? =C5=C4=D6 LATINBODY" + marker + "\n",
			subject: "Bygglov för altan på gården är klart?", textHas: []string{"Måste jag söka bygglov för en altan? ÅÄÖ LATINBODY" + marker},
			queue: "gata",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, e.send(tt.from, []string{tt.to}, tt.msg))
			cases := e.casesOf(t, tt.from, 1)
			require.Len(t, cases, 1)
			var view *routingv1.CaseView
			require.True(t, eventually(30*time.Second, func() bool {
				view = e.getCase(t, cases[0].GetCaseId())
				return view.GetSummary().GetQueue() != ""
			}), "the case is routed")
			s := view.GetSummary()
			require.Equal(t, casev1.Channel_CHANNEL_EMAIL, s.GetChannel())
			require.Equal(t, casev1.CaseType_CASE_TYPE_FRAGA, s.GetType())
			require.Equal(t, tt.queue, s.GetQueue(), "routed by the address the mail was sent to")
			require.Regexp(t, `^KC-\d{4}-\d{6}$`, s.GetCaseNumber())
			pd := view.GetPersonalData()
			require.Equal(t, tt.from, pd.GetContact().GetEmail())
			require.Equal(t, tt.subject, pd.GetFreeText().GetSubject())
			for _, s := range tt.textHas {
				require.Contains(t, pd.GetFreeText().GetDescription(), s)
			}
			for _, s := range tt.textHasNot {
				require.NotContains(t, pd.GetFreeText().GetDescription(), s)
			}
		})
	}

	// Mail from programs is accepted (refusing it would bounce to a
	// robot) and makes no case. Each is followed by a person's mail from
	// the same address: once that case is visible, an earlier one would
	// be too (the read model applies the log in order).
	ignored := []struct{ name, envelope, from, msg string }{
		{"out-of-office reply", "ooo-" + marker + "@example.se", "ooo-" + marker + "@example.se",
			"From: ooo-" + marker + "@example.se\nTo: kontakt@kommun.se\nSubject: Autosvar: Fråga om sophämtning\nAuto-Submitted: auto-replied\n\nJag är på semester till måndag.\n"},
		{"old-style vacation reply", "vac-" + marker + "@example.se", "vac-" + marker + "@example.se",
			"From: vac-" + marker + "@example.se\nTo: kontakt@kommun.se\nSubject: Frånvaro\nX-Autoreply: yes\nPrecedence: bulk\n\nBorta.\n"},
		{"bounce", "", "bounce-" + marker + "@example.se",
			"From: bounce-" + marker + "@example.se\nTo: kontakt@kommun.se\nSubject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: text/plain\n\nThe mail could not be delivered.\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; relay.example.se\n\nFinal-Recipient: rfc822; nobody@example.se\nAction: failed\nStatus: 5.1.1\n--b--\n"},
		{"mailing list", "list-" + marker + "@example.se", "list-" + marker + "@example.se",
			"From: list-" + marker + "@example.se\nTo: kontakt@kommun.se\nSubject: Nyhetsbrev vecka 49\nList-Id: <nyheter.example.se>\n\nNyheter.\n"},
	}
	for _, tt := range ignored {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, e.send(tt.envelope, []string{"kontakt@kommun.se"}, tt.msg), "accepted, so the relay sends no bounce")
			require.NoError(t, e.send(tt.from, []string{"kontakt@kommun.se"},
				"From: "+tt.from+"\nTo: kontakt@kommun.se\nSubject: Uppföljning\n\nEn människa skriver.\n"))
			cases := e.casesOf(t, tt.from, 1)
			require.Len(t, cases, 1, "only the person's mail is a case")
			require.Equal(t, "Uppföljning", cases[0].GetSubject())
		})
	}

	t.Run("a mail delivered twice is one case", func(t *testing.T) {
		// A relay that lost the reply to DATA sends the mail again,
		// with the same Message-ID.
		from := "twice-" + marker + "@example.se"
		msg := "From: " + from + "\nTo: kontakt@kommun.se\nMessage-ID: <twice-" + marker + "@mx.example.se>\nSubject: Två gånger\n\nSamma brev.\n"
		require.NoError(t, e.send(from, []string{"kontakt@kommun.se"}, msg))
		require.NoError(t, e.send(from, []string{"kontakt@kommun.se"}, msg))
		// Another mail from the same sender, without an id, after both.
		require.NoError(t, e.send(from, []string{"kontakt@kommun.se"}, "From: "+from+"\nTo: kontakt@kommun.se\nSubject: Ett till\n\nAnnat brev.\n"))
		cases := e.casesOf(t, from, 2)
		require.Len(t, cases, 2, "the mail delivered twice and the other one")
		require.Contains(t, e.k.stderr.String(), "mail delivered again")
	})

	t.Run("oversized", func(t *testing.T) {
		from := "big-" + marker + "@example.se"
		big := "From: " + from + "\nTo: kontakt@kommun.se\nSubject: Stor\n\n" + strings.Repeat(strings.Repeat("x", 76)+"\n", 1000)
		err := e.send(from, []string{"kontakt@kommun.se"}, big)
		require.Equal(t, 552, smtpCode(err), "an oversized message is refused with 552: %v", err)
	})
	t.Run("another recipient", func(t *testing.T) {
		err := e.send("x-"+marker+"@example.se", []string{"someone@elsewhere.se"}, "Subject: x\n\ny\n")
		require.Equal(t, 550, smtpCode(err), "kontakt relays nothing: %v", err)
	})

	t.Run("metrics count the outcomes", func(t *testing.T) {
		resp, err := http.Get("http://" + e.k.Metrics + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		for _, line := range []string{
			`kontakt_intake_submissions_total{channel="mail",outcome="dropped"} 4`,
			`kontakt_intake_submissions_total{channel="mail",outcome="invalid"} 1`,
			`kontakt_intake_submissions_total{channel="mail",outcome="too_large"} 1`,
			`kontakt_intake_submissions_total{channel="mail",outcome="replayed"} 1`,
		} {
			require.Contains(t, string(b), line)
		}
	})

	t.Run("nothing in clear on disk or in the log", func(t *testing.T) {
		needles := []string{"PLAINBODY" + marker, "HTMLBODY" + marker, "MULTIBODY" + marker, "LATINBODY" + marker, "plain-" + marker, "latin-" + marker, "sophämtning"}
		for n, files := range scanDir(t, e.k.DataDir, needles) {
			t.Errorf("%q in clear in %v", n, files)
		}
		log := e.k.stderr.String()
		require.Contains(t, log, "mail registered as a case", "the log says what happened")
		for _, n := range needles {
			require.NotContains(t, log, n)
		}
	})
}

// TestMailStartTLS: with mail.inbound.starttls the receiver offers
// STARTTLS with the API port's certificate, and a mail sent over it
// becomes a case.
func TestMailStartTLS(t *testing.T) {
	addr := freeAddr(t)
	e := startInspected(t, Options{TLS: true, ExtraConfig: fmt.Sprintf(`mail:
  inbound:
    listen: %s
    starttls: true
    addresses:
      - {address: kontakt@kommun.se, category: ovrigt}
`, addr)})
	require.True(t, waitListening(addr, 30*time.Second), "the mail receiver listens")

	c, err := smtp.Dial(addr)
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	ok, _ := c.Extension("STARTTLS")
	require.True(t, ok, "STARTTLS is offered")
	require.NoError(t, c.StartTLS(&tls.Config{RootCAs: e.k.Roots, ServerName: "127.0.0.1"}), "with the API port's certificate")
	state, ok := c.TLSConnectionState()
	require.True(t, ok)
	require.GreaterOrEqual(t, state.Version, uint16(tls.VersionTLS12))
	require.NoError(t, c.Mail("tls@example.se"))
	require.NoError(t, c.Rcpt("kontakt@kommun.se"))
	w, err := c.Data()
	require.NoError(t, err)
	_, err = w.Write([]byte("From: tls@example.se\r\nSubject: Krypterat\r\n\r\nHej.\r\n"))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, c.Quit())

	var mailCases int
	for _, ev := range e.events(t) {
		if ev.Type == caseRegisteredType {
			if cr := decodeRegistered(t, ev); cr.GetChannel() == casev1.Channel_CHANNEL_EMAIL && cr.GetMailbox() == "kontakt@kommun.se" {
				mailCases++
			}
		}
	}
	require.Equal(t, 1, mailCases, "the mail is a case of channel e-mail, from the mailbox it was sent to")
}
