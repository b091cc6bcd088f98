package e2e

// A real MTA in front of kontakt (issue 18's acceptance): Debian's
// Postfix (scripts/install-postfix.sh, `make postfix`) runs as its own
// instance from a temporary directory (config_directory, queue and data
// directory, an smtpd on a loopback port, a transport that sends the
// contact centre's domain to kontakt's receiver) and delivers a set of
// real-world messages, which land as expected: new cases, dropped robots'
// mail, and an oversized message refused with 552 and bounced by Postfix.

import (
	"bufio"
	"encoding/base64"
	"net/smtp"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	mta "github.com/kontakt-se/kontakt/test/internal/postfix"
)

// postfix is one running Postfix instance (test/internal/postfix).
type postfix struct{ *mta.Instance }

// startPostfix starts a Postfix instance that relays mail for kommun.se
// to relayTo, stopped when the test ends. It skips the test, with one
// line, where Postfix is not installed or the test does not run as root.
func startPostfix(t *testing.T, relayTo string) *postfix {
	t.Helper()
	if err := mta.Available(); err != nil {
		t.Skip(err.Error())
	}
	inst, err := mta.Start(relayTo, freeAddr(t))
	require.NoError(t, err)
	p := &postfix{inst}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix log:\n%s", p.log())
		}
		p.Stop()
	})
	return p
}

func (p *postfix) log() string { return p.Log() }

var (
	postfixQueueID = regexp.MustCompile(`postfix/cleanup\[\d+\]: ([0-9A-F]+): message-id=<([^>]+)>`)
	postfixStatus  = regexp.MustCompile(`postfix/(?:smtp|error)\[\d+\]: ([0-9A-F]+): .*status=(\w+) (.*)$`)
)

// outcome waits until Postfix has delivered or bounced the message with
// Message-ID id, and returns the status (sent, bounced) and its reason.
func (p *postfix) outcome(t *testing.T, id string) (status, reason string) {
	t.Helper()
	ok := eventually(60*time.Second, func() bool {
		qid := ""
		sc := bufio.NewScanner(strings.NewReader(p.log()))
		for sc.Scan() {
			line := sc.Text()
			if m := postfixQueueID.FindStringSubmatch(line); m != nil && m[2] == id {
				qid = m[1]
			}
			if m := postfixStatus.FindStringSubmatch(line); m != nil && qid != "" && m[1] == qid && m[2] != "deferred" {
				status, reason = m[2], m[3]
				return true
			}
		}
		return false
	})
	require.True(t, ok, "postfix reported no outcome for message %s after 60 s", id)
	return status, reason
}

func TestMailThroughPostfix(t *testing.T) {
	e := startMail(t, 64<<10)
	pf := startPostfix(t, e.smtpAddr)
	marker := strings.ToLower(randHex(t, 6))

	send := func(t *testing.T, envelope, id, msg string) {
		t.Helper()
		msg = "Message-ID: <" + id + ">\nDate: Mon, 07 Dec 2026 10:00:00 +0100\n" + msg
		require.NoError(t, smtp.SendMail(pf.SMTPD, nil, envelope, []string{"kontakt@kommun.se"}, []byte(strings.ReplaceAll(msg, "\n", "\r\n"))))
	}
	pdf := "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKdHJhaWxlcgo8PC9Sb290IDEgMCBSPj4KJSVFT0YK"
	png := "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
	people := []struct {
		name, from, msg, subject, textHas, textHasNot string
	}{
		{"plain", "plain-" + marker + "@example.se",
			"Subject: Fråga om sophämtning\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nNär töms kärlen?\n",
			"Fråga om sophämtning", "När töms kärlen?", ""},
		{"HTML only", "html-" + marker + "@example.se",
			"Subject: HTML\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n<html><body><p>Trasig&nbsp;lampa</p><p>vid <b>skolan</b></p></body></html>\n",
			"HTML", "Trasig lampa\nvid skolan", "<p>"},
		{"multipart with a PDF and an image", "multi-" + marker + "@example.se",
			"Subject: Med bilagor\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: text/plain; charset=utf-8\n\nSe ritningen och bilden.\n--b1\nContent-Type: application/pdf; name=ritning.pdf\nContent-Disposition: attachment; filename=ritning.pdf\nContent-Transfer-Encoding: base64\n\n" + pdf + "\n--b1\nContent-Type: image/png; name=bild.png\nContent-Disposition: attachment; filename=bild.png\nContent-Transfer-Encoding: base64\n\n" + png + "\n--b1--\n",
			"Med bilagor", "Se ritningen och bilden.", "JVBER"},
		{"ISO-8859-1", "latin-" + marker + "@example.se",
			"Subject: =?ISO-8859-1?Q?H=E5l_i_v=E4gen_vid_=D6vre_torget?=\nMIME-Version: 1.0\nContent-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nH=E5let =E4r stort, =F6ver en meter.\n",
			"Hål i vägen vid Övre torget", "Hålet är stort, över en meter.", ""},
		{"UTF-8 subject and body", "utf8-" + marker + "@example.se",
			"Subject: =?UTF-8?B?w4RyZW5kZSBvbSBmw7Zyc2tvbGE=?=\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: base64\n\nw4VzYSB2aWxsIGJ5dGEgZsO2cnNrb2xhLg==\n",
			"Ärende om förskola", "Åsa vill byta förskola.", ""},
	}
	for _, p := range people {
		t.Run(p.name, func(t *testing.T) {
			id := p.name[:4] + "-" + marker + "@example.se"
			id = strings.ReplaceAll(id, " ", "")
			send(t, p.from, id, "From: "+p.from+"\nTo: kontakt@kommun.se\n"+p.msg)
			status, reason := pf.outcome(t, id)
			require.Equal(t, "sent", status, "postfix delivered it to kontakt: %s", reason)
			c := e.casesOf(t, p.from, 1)
			require.Len(t, c, 1)
			view := e.getCase(t, c[0].GetCaseId())
			require.Equal(t, casev1.Channel_CHANNEL_EMAIL, view.GetSummary().GetChannel())
			pd := view.GetPersonalData()
			require.Equal(t, p.from, pd.GetContact().GetEmail())
			require.Equal(t, p.subject, pd.GetFreeText().GetSubject())
			require.Contains(t, pd.GetFreeText().GetDescription(), p.textHas)
			if p.textHasNot != "" {
				require.NotContains(t, pd.GetFreeText().GetDescription(), p.textHasNot)
			}
			if strings.HasPrefix(p.from, "multi-") {
				// Through a real MTA the files arrive as sent.
				require.Equal(t, []string{"ritning.pdf", "bild.png"}, pd.GetAttachmentNames())
				for i, b64 := range []string{pdf, png} {
					want, err := base64.StdEncoding.DecodeString(b64)
					require.NoError(t, err)
					parts, err := e.download(t, sara, c[0].GetCaseId(), int32(i))
					require.NoError(t, err)
					require.Equal(t, want, joined(parts))
				}
			}
		})
	}

	robots := []struct{ name, envelope, headers string }{
		{"out-of-office", "ooo-" + marker + "@example.se", "Subject: Frånvaro: Fråga\nAuto-Submitted: auto-replied\n"},
		{"bounce", "", "Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\n"},
	}
	for _, r := range robots {
		t.Run(r.name, func(t *testing.T) {
			from := "robot-" + r.name[:3] + "-" + marker + "@example.se"
			id := "robot-" + r.name[:3] + "-" + marker + "@mx.example.se"
			body := "\nJag är borta.\n"
			if r.envelope == "" {
				body = "\n--r\nContent-Type: text/plain\n\nCould not deliver.\n--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.se\n\nFinal-Recipient: rfc822; x@example.se\nAction: failed\nStatus: 5.1.1\n--r--\n"
			}
			send(t, r.envelope, id, "From: "+from+"\nTo: kontakt@kommun.se\n"+r.headers+body)
			status, reason := pf.outcome(t, id)
			require.Equal(t, "sent", status, "kontakt accepted it (a refusal would bounce to a robot): %s", reason)
			// A person's mail from the same address, delivered after
			// the robot's: once it is a case, a case of the robot's mail
			// would be visible too.
			pid := "person-" + r.name[:3] + "-" + marker + "@example.se"
			send(t, from, pid, "From: "+from+"\nTo: kontakt@kommun.se\nSubject: Människa\n\nHej.\n")
			status, _ = pf.outcome(t, pid)
			require.Equal(t, "sent", status)
			c := e.casesOf(t, from, 1)
			require.Len(t, c, 1, "only the person's mail is a case")
			require.Equal(t, "Människa", c[0].GetSubject())
		})
	}

	t.Run("oversized", func(t *testing.T) {
		from := "big-" + marker + "@example.se"
		id := "big-" + marker + "@example.se"
		send(t, from, id, "From: "+from+"\nTo: kontakt@kommun.se\nSubject: Stor\n\n"+strings.Repeat(strings.Repeat("x", 76)+"\n", 1000))
		status, reason := pf.outcome(t, id)
		// kontakt announces its limit (ESMTP SIZE), so Postfix does not
		// even try and returns the mail to its sender; a client that
		// ignores SIZE gets 552 at the end of DATA (TestMailBecomesCases).
		require.Equal(t, "bounced", status, "kontakt refused it, so postfix returns it to the sender")
		require.Contains(t, reason, "exceeds size limit 65536 of server 127.0.0.1", "kontakt's mail.inbound.max_message_bytes: %s", reason)
	})

	t.Run("nothing in clear in kontakt's data or log", func(t *testing.T) {
		needles := []string{"plain-" + marker, "latin-" + marker, "Se ritningen och bilden", "förskola"}
		for n, files := range scanDir(t, e.k.DataDir, needles) {
			t.Errorf("%q in clear in %v", n, files)
		}
		for _, n := range needles {
			require.NotContains(t, e.k.stderr.String(), n)
		}
	})
}

// TestMailReplyAndBounceThroughPostfix: the reply to an answer and the
// bounce of an answer, as Postfix delivers them to kontakt, land on the
// case: the reply joins it as the citizen's message, the bounce marks
// the answer undelivered; neither is a case.
func TestMailReplyAndBounceThroughPostfix(t *testing.T) {
	mp := startMailpit(t, "")
	e := startMailWith(t, "", 64<<10, outboundConfig(t, mp.SMTP, mp.CAFile, 200*time.Millisecond))
	pf := startPostfix(t, e.smtpAddr)
	marker := strings.ToLower(randHex(t, 6))
	send := func(t *testing.T, envelope, id, msg string) {
		t.Helper()
		msg = "Message-ID: <" + id + ">\nDate: Mon, 07 Dec 2026 10:00:00 +0100\n" + msg
		require.NoError(t, smtp.SendMail(pf.SMTPD, nil, envelope, []string{"kontakt@kommun.se"}, []byte(strings.ReplaceAll(msg, "\n", "\r\n"))))
		status, reason := pf.outcome(t, id)
		require.Equal(t, "sent", status, "postfix delivered it to kontakt: %s", reason)
	}

	from := "pfsvar-" + marker + "@example.se"
	c := e.mailAndAnswer(t, mp, from)

	send(t, from, "reply-"+marker+"@example.se", "From: "+from+"\nTo: kontakt@kommun.se\nIn-Reply-To: <"+c.answerID+">\nReferences: <"+c.answerID+">\n"+
		"Subject: =?UTF-8?Q?Re:_Svar_p=C3=A5_ditt_=C3=A4rende?=\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nTack för svaret! POSTFIX"+marker+"\n")
	h := e.waitMessage(t, c.caseID, "POSTFIX"+marker)
	require.Equal(t, "message-id", h.GetDetail())
	require.Contains(t, h.GetText(), "Tack för svaret!")

	// Postfix's own bounce format: a DSN from the null sender.
	send(t, "", "dsn-"+marker+"@mx.kommun.test", dsn("kontakt@kommun.se", c.answerID, "failed"))
	e.historyHas(t, c.caseID, "mail_failed", "answer: bounced")
	require.Len(t, e.casesOf(t, from, 1), 1, "the reply and the bounce made no case")
	require.Equal(t, 1, len(countType(e.events(t), "kontakt.case.v1.CaseRegistered")), "one case in all")
}
