package e2e

// The e-mail channel's acknowledgements (issue 18, outbound): a real SMTP
// server, mailpit (pinned in the Makefile, `make mailpit`), receives what
// kontakt sends through it over STARTTLS with authentication, and the
// test reads each message back through mailpit's HTTP API.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

// mailpit is a running mailpit.
type mailpit struct {
	SMTP, HTTP string
	CAFile     string
	cmd        *exec.Cmd
	done       chan error
	out        *syncBuffer
}

func mailpitBinary(t *testing.T) string {
	t.Helper()
	p := os.Getenv("KONTAKT_MAILPIT_BIN")
	if p == "" {
		p = filepath.Join(repoRoot(t), "bin", "mailpit")
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("mailpit is not built (%s): `make mailpit` builds the pinned version", p)
	}
	return p
}

// startMailpit runs mailpit with STARTTLS required (a certificate made for
// the test, whose file kontakt is given as mail.outbound.ca_file) and any
// credentials accepted, on smtpAddr (empty: a free port).
func startMailpit(t *testing.T, smtpAddr string, extraArgs ...string) *mailpit {
	t.Helper()
	cert, key, _ := writeTestCert(t, t.TempDir())
	return startMailpitCert(t, smtpAddr, cert, key, extraArgs...)
}

// startMailpitCert is startMailpit with a given certificate, so a relay
// stopped and started again is one that kontakt trusts.
func startMailpitCert(t *testing.T, smtpAddr, cert, key string, extraArgs ...string) *mailpit {
	t.Helper()
	bin := mailpitBinary(t)
	dir := t.TempDir()
	if smtpAddr == "" {
		smtpAddr = freeAddr(t)
	}
	m := &mailpit{SMTP: smtpAddr, HTTP: freeAddr(t), CAFile: cert, done: make(chan error, 1), out: &syncBuffer{}}
	m.cmd = exec.Command(bin, "--smtp", m.SMTP, "--listen", m.HTTP, "--database", filepath.Join(dir, "mailpit.db"),
		"--smtp-tls-cert", cert, "--smtp-tls-key", key, "--smtp-require-starttls", "--smtp-auth-accept-any", "--smtp-disable-rdns")
	m.cmd.Args = append(m.cmd.Args, extraArgs...)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	require.NoError(t, m.cmd.Start())
	go func() { m.done <- m.cmd.Wait() }()
	t.Cleanup(func() {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
			_ = m.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("mailpit output:\n%s", m.out.String())
		}
	})
	require.True(t, eventually(30*time.Second, func() bool {
		resp, err := http.Get("http://" + m.HTTP + "/api/v1/messages")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		c, err := net.Dial("tcp", m.SMTP)
		if err != nil {
			return false
		}
		_ = c.Close()
		return resp.StatusCode == http.StatusOK
	}), "mailpit did not start:\n%s", m.out.String())
	return m
}

// stop ends mailpit (the relay goes away) and waits until it has.
func (m *mailpit) stop(t *testing.T) {
	t.Helper()
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		m.done <- err // for the cleanup, which waits for it too
	case <-time.After(10 * time.Second):
		t.Fatal("mailpit did not stop")
	}
}

// mailpitAddress is an address as mailpit's API gives it.
type mailpitAddress struct{ Name, Address string }

// mailpitMessage is a message as mailpit's API gives it.
type mailpitMessage struct {
	ID, MessageID, Subject, Text, Username string
	From                                   mailpitAddress
	To                                     []mailpitAddress
}

// to lists the messages mailpit holds for one recipient, newest first,
// each read in full.
func (m *mailpit) to(t *testing.T, recipient string) []mailpitMessage {
	t.Helper()
	list := m.summaries(t, recipient)
	for i := range list {
		list[i] = m.message(t, list[i].ID)
	}
	return list
}

// summaries lists the messages for one recipient as the search gives
// them (id, Message-ID, subject, addresses; no text): one request.
func (m *mailpit) summaries(t *testing.T, recipient string) []mailpitMessage {
	t.Helper()
	resp, err := http.Get("http://" + m.HTTP + "/api/v1/search?limit=1000&query=" + url.QueryEscape("to:"+recipient))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var list struct{ Messages []mailpitMessage }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	var out []mailpitMessage
	for _, s := range list.Messages {
		for _, a := range s.To {
			if strings.EqualFold(a.Address, recipient) {
				out = append(out, s)
			}
		}
	}
	return out
}

func (m *mailpit) message(t *testing.T, id string) mailpitMessage {
	t.Helper()
	resp, err := http.Get("http://" + m.HTTP + "/api/v1/message/" + id)
	require.NoError(t, err)
	defer resp.Body.Close()
	var msg mailpitMessage
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&msg))
	return msg
}

func (m *mailpit) headers(t *testing.T, id string) map[string][]string {
	t.Helper()
	resp, err := http.Get("http://" + m.HTTP + "/api/v1/message/" + id + "/headers")
	require.NoError(t, err)
	defer resp.Body.Close()
	h := map[string][]string{}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
	return h
}

// waitFor waits until mailpit holds at least n messages for recipient.
func (m *mailpit) waitFor(t *testing.T, recipient string, n int, timeout time.Duration) []mailpitMessage {
	t.Helper()
	var got []mailpitMessage
	ok := eventually(timeout, func() bool {
		got = m.to(t, recipient)
		return len(got) >= n
	})
	require.True(t, ok, "%d message(s) for a recipient after %s, want %d", len(got), timeout, n)
	return got
}

// outboundConfig is mail.outbound for a relay at addr over STARTTLS,
// with the relay's password in a file of the test's own, removed with it.
func outboundConfig(t *testing.T, addr, caFile string, retryInitial time.Duration) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	passwordFile := filepath.Join(t.TempDir(), "relay-password")
	require.NoError(t, os.WriteFile(passwordFile, []byte("hemligt\n"), 0o600))
	return fmt.Sprintf(`  outbound:
    host: %s
    port: %s
    security: starttls
    username: kontaktcenter
    password_file: %s
    ca_file: %s
    from: "Kontaktcenter <kontakt@kommun.se>"
    max_attempts: 100
    retry_initial: %s
    retry_max: 1s
    acknowledgements:
      synpunkt: {subject: "Tack för dina synpunkter, ärende {{.CaseNumber}}"}
`, host, port, passwordFile, caFile, retryInitial)
}

// mailEvents returns the MailSent and MailFailed events of a case.
func (e *mailEnv) mailEvents(t *testing.T, caseID string) (sent []*casev1.MailSent, failed []*casev1.MailFailed) {
	t.Helper()
	for _, ev := range e.events(t) {
		if ev.caseID() != caseID {
			continue
		}
		switch ev.Type {
		case "kontakt.case.v1.MailSent":
			var m casev1.MailSent
			require.NoError(t, proto.Unmarshal(ev.Data, &m))
			sent = append(sent, &m)
		case "kontakt.case.v1.MailFailed":
			var m casev1.MailFailed
			require.NoError(t, proto.Unmarshal(ev.Data, &m))
			failed = append(failed, &m)
		}
	}
	return sent, failed
}

func TestMailAcknowledgement(t *testing.T) {
	mp := startMailpit(t, "")
	e := startMailWith(t, "", 64<<10, outboundConfig(t, mp.SMTP, mp.CAFile, 200*time.Millisecond))
	marker := strings.ToLower(randHex(t, 6))

	type sent struct{ from, to, msg, subjectHas string }
	cases := []sent{
		{"fraga-" + marker + "@example.se", "kontakt@kommun.se",
			"From: fraga-" + marker + "@example.se\nTo: kontakt@kommun.se\nSubject: Fråga om bygglov\n\nBehöver jag bygglov för en altan?\n",
			"Vi har tagit emot din fråga – ärende "},
	}
	for _, c := range cases {
		require.NoError(t, e.send(c.from, []string{c.to}, c.msg))
		found := e.casesOf(t, c.from, 1)
		number, caseID := found[0].GetCaseNumber(), found[0].GetCaseId()

		got := mp.waitFor(t, c.from, 1, 60*time.Second)
		require.Len(t, got, 1)
		msg := got[0]
		require.Equal(t, c.from, msg.To[0].Address, "to the sender")
		require.Equal(t, "kontakt@kommun.se", msg.From.Address)
		require.Equal(t, "Kontaktcenter", msg.From.Name)
		require.Equal(t, c.subjectHas+number, msg.Subject, "the Swedish subject with the case number")
		require.Contains(t, msg.Text, "Tack för din fråga. Vi har registrerat det som ärende "+number+".")
		require.Contains(t, msg.Text, "Det här är en automatisk bekräftelse")
		require.Equal(t, "kontaktcenter", msg.Username, "kontakt authenticated")

		h := mp.headers(t, msg.ID)
		require.Equal(t, []string{"auto-replied"}, h["Auto-Submitted"], "robots must not answer it (RFC 3834)")

		// The Message-ID is recorded on the case, once.
		var sentEvs []*casev1.MailSent
		require.True(t, eventually(30*time.Second, func() bool {
			sentEvs, _ = e.mailEvents(t, caseID)
			return len(sentEvs) > 0
		}), "MailSent on the case")
		require.Len(t, sentEvs, 1)
		require.Equal(t, casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT, sentEvs[0].GetKind())
		require.Equal(t, "<"+msg.MessageID+">", sentEvs[0].GetMessageId())
		require.NotContains(t, sentEvs[0].GetMessageId(), marker)

		// GetCase shows the acknowledgement in the case's history.
		require.True(t, eventually(30*time.Second, func() bool {
			for _, h := range e.getCase(t, caseID).GetHistory() {
				if h.GetKind() == "mail_sent" && h.GetDetail() == "acknowledgement" && h.GetActor() == "mail" {
					return true
				}
			}
			return false
		}), "a mail_sent entry in GetCase's history")
	}

	t.Run("the configured template of another case type", func(t *testing.T) {
		from := "synpunkt-" + marker + "@example.se"
		require.NoError(t, e.send(from, []string{"synpunkter@kommun.se"}, "From: "+from+"\nSubject: Bemötandet\n\nJag blev väl bemött.\n"))
		number := e.casesOf(t, from, 1)[0].GetCaseNumber()
		got := mp.waitFor(t, from, 1, 60*time.Second)
		require.Equal(t, "Tack för dina synpunkter, ärende "+number, got[0].Subject, "mail.outbound.acknowledgements.synpunkt.subject")
		require.Contains(t, got[0].Text, "Tack för dina synpunkter. Vi har registrerat det som ärende "+number, "the built-in body of synpunkt")
	})

	t.Run("no acknowledgement of an auto-reply or a bounce", func(t *testing.T) {
		from := "ooo-" + marker + "@example.se"
		require.NoError(t, e.send(from, []string{"kontakt@kommun.se"}, "From: "+from+"\nSubject: Autosvar\nAuto-Submitted: auto-replied\n\nBorta.\n"))
		require.NoError(t, e.send("", []string{"kontakt@kommun.se"}, "From: "+from+"\nSubject: Undeliverable\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: text/plain\n\nx\n--b--\n"))
		require.NoError(t, e.send(from, []string{"kontakt@kommun.se"}, "From: "+from+"\nSubject: En människa\n\nHej\n"))
		found := e.casesOf(t, from, 1)
		require.Len(t, found, 1, "only the person's mail is a case")
		number := found[0].GetCaseNumber()
		mp.waitFor(t, from, 1, 60*time.Second)
		require.True(t, eventually(30*time.Second, func() bool {
			sent, _ := e.mailEvents(t, found[0].GetCaseId())
			return len(sent) == 1
		}), "the acknowledgement is recorded")
		got := mp.to(t, from)
		require.Len(t, got, 1, "one acknowledgement: the person's mail's")
		require.Contains(t, got[0].Subject, number)
	})
}

// TestMailAcknowledgementSurvivesKill9: the relay is down when the mail
// arrives, kontakt is killed with SIGKILL while the acknowledgement
// waits for its next attempt, the relay comes up, and the restarted
// binary sends it: once.
func TestMailAcknowledgementSurvivesKill9(t *testing.T) {
	mailpitBinary(t)
	relayAddr := freeAddr(t)
	cert, _, _ := writeTestCert(t, t.TempDir())
	dataDir := filepath.Join(t.TempDir(), "data")
	// The certificate mailpit will serve is made by startMailpit, so
	// the first binary trusts a placeholder; nothing listens anyway.
	e := startMailWith(t, dataDir, 64<<10, outboundConfig(t, relayAddr, cert, 200*time.Millisecond))
	from := "kill-" + strings.ToLower(randHex(t, 6)) + "@example.se"
	require.NoError(t, e.send(from, []string{"kontakt@kommun.se"}, "From: "+from+"\nSubject: Före kraschen\n\nHej\n"))
	caseID := e.casesOf(t, from, 1)[0].GetCaseId()
	require.True(t, eventually(30*time.Second, func() bool {
		return strings.Count(e.k.stderr.String(), "mail not sent; trying again") >= 2
	}), "the acknowledgement is being retried")
	e.k.kill9(t)

	mp := startMailpit(t, relayAddr)
	e2 := startMailWith(t, dataDir, 64<<10, outboundConfig(t, relayAddr, mp.CAFile, 200*time.Millisecond))
	got := mp.waitFor(t, from, 1, 60*time.Second)
	var sentEvs []*casev1.MailSent
	require.True(t, eventually(30*time.Second, func() bool {
		sentEvs, _ = e2.mailEvents(t, caseID)
		return len(sentEvs) > 0
	}), "MailSent on the case")
	require.Len(t, sentEvs, 1)
	require.Len(t, mp.to(t, from), 1, "sent once")
	require.Greater(t, sentEvs[0].GetAttempts(), uint32(1), "it took more than one attempt")
	require.Equal(t, "<"+got[0].MessageID+">", sentEvs[0].GetMessageId())
}

// historyHas waits until GetCase's history holds an entry of kind with
// detail.
func (e *mailEnv) historyHas(t *testing.T, caseID, kind, detail string) {
	t.Helper()
	require.True(t, eventually(30*time.Second, func() bool {
		for _, h := range e.getCase(t, caseID).GetHistory() {
			if h.GetKind() == kind && h.GetDetail() == detail && h.GetActor() == "mail" {
				return true
			}
		}
		return false
	}), "no %s entry %q in GetCase's history", kind, detail)
}

// TestMailAnswers: AnswerCase on a case with an e-mail contact sends the
// answer through the relay, in the acknowledgement's thread, and the
// outcome (sent, or refused by the relay) is on the case in GetCase.
func TestMailAnswers(t *testing.T) {
	// The relay accepts mail to example.se only: example.org is refused
	// with a 5xx, as a relay refuses an address it will not deliver to.
	mp := startMailpit(t, "", "--smtp-allowed-recipients", `@example\.se$`)
	e := startMailWith(t, "", 64<<10, outboundConfig(t, mp.SMTP, mp.CAFile, 200*time.Millisecond))
	marker := strings.ToLower(randHex(t, 6))
	answer := "Hej!\nEn altan lägre än 1,8 meter kräver inget bygglov. SVAR" + marker

	t.Run("sent, in the thread of the acknowledgement", func(t *testing.T) {
		from := "svar-" + marker + "@example.se"
		require.NoError(t, e.send(from, []string{"kontakt@kommun.se"}, "From: "+from+"\nSubject: Altan\n\nBehövs bygglov?\n"))
		c := e.casesOf(t, from, 1)[0]
		ack := mp.waitFor(t, from, 1, 60*time.Second)[0]

		ctx, cancel := e.as(t, sara)
		defer cancel()
		_, err := e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: c.GetCaseId(), Answer: answer})
		require.NoError(t, err)

		got := mp.waitFor(t, from, 2, 60*time.Second)
		var msg mailpitMessage
		for _, m := range got {
			if m.ID != ack.ID {
				msg = m
			}
		}
		require.Equal(t, "Svar på ditt ärende "+c.GetCaseNumber(), msg.Subject)
		require.Contains(t, msg.Text, "En altan lägre än 1,8 meter kräver inget bygglov. SVAR"+marker)
		require.Contains(t, msg.Text, "Ärendenummer "+c.GetCaseNumber())
		h := mp.headers(t, msg.ID)
		require.Equal(t, []string{"<" + ack.MessageID + ">"}, h["In-Reply-To"], "threaded under the acknowledgement")
		require.Equal(t, []string{"<" + ack.MessageID + ">"}, h["References"])
		require.Empty(t, h["Auto-Submitted"], "an official wrote it")

		e.historyHas(t, c.GetCaseId(), "mail_sent", "answer")
		sent, failed := e.mailEvents(t, c.GetCaseId())
		require.Len(t, sent, 2)
		require.Empty(t, failed)
		require.Equal(t, "<"+msg.MessageID+">", sent[1].GetMessageId())
	})

	t.Run("refused by the relay: failed on the case", func(t *testing.T) {
		from := "nej-" + marker + "@example.org"
		require.NoError(t, e.send(from, []string{"kontakt@kommun.se"}, "From: "+from+"\nSubject: Altan\n\nBehövs bygglov?\n"))
		c := e.casesOf(t, from, 1)[0]
		e.historyHas(t, c.GetCaseId(), "mail_failed", "acknowledgement: refused")

		ctx, cancel := e.as(t, sara)
		defer cancel()
		_, err := e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: c.GetCaseId(), Answer: answer})
		require.NoError(t, err)
		e.historyHas(t, c.GetCaseId(), "mail_failed", "answer: refused")
		sent, failed := e.mailEvents(t, c.GetCaseId())
		require.Empty(t, sent)
		require.Len(t, failed, 2)
		require.Equal(t, uint32(1), failed[1].GetAttempts(), "a refusal is not retried")
		require.Empty(t, mp.to(t, from))
	})

	t.Run("answered another way: recorded, never mailed", func(t *testing.T) {
		from := "annat-" + marker + "@example.se"
		require.NoError(t, e.send(from, []string{"kontakt@kommun.se"}, "From: "+from+"\nSubject: Altan\n\nBehövs bygglov?\n"))
		c := e.casesOf(t, from, 1)[0]
		mp.waitFor(t, from, 1, 60*time.Second)

		ctx, cancel := e.as(t, sara)
		defer cancel()
		_, err := e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: c.GetCaseId(), Answer: "Besvarat per telefon. ANNAT" + marker,
			Delivery: casev1.AnswerDelivery_ANSWER_DELIVERY_OTHER})
		require.NoError(t, err)
		_, err = e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: c.GetCaseId(), Answer: answer})
		require.NoError(t, err)

		// The second answer is mailed; once it is recorded and the
		// outbox holds nothing, the first had its chance to be mailed.
		mp.waitFor(t, from, 2, 60*time.Second)
		require.True(t, eventually(30*time.Second, func() bool {
			sent, _ := e.mailEvents(t, c.GetCaseId())
			return len(sent) >= 2
		}), "the second answer recorded as sent")
		requireMetric(t, e.k, "kontakt_mail_outbox_pending", equals(0), "an empty outbox")
		sent, failed := e.mailEvents(t, c.GetCaseId())
		require.Len(t, sent, 2, "the acknowledgement and the second answer, not the one given by phone")
		require.Empty(t, failed)
		got := mp.to(t, from)
		require.Len(t, got, 2)
		for _, m := range got {
			require.NotContains(t, m.Text, "ANNAT"+marker)
		}
	})

	t.Run("asked to mail it without an address: failed on the case", func(t *testing.T) {
		id, number := e.register(t, fragaInput("Telefon", nil))
		e.waitRouted(t, number)
		ctx, cancel := e.as(t, sara)
		defer cancel()
		_, err := e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: id, Answer: answer, Delivery: casev1.AnswerDelivery_ANSWER_DELIVERY_EMAIL})
		require.NoError(t, err)
		e.historyHas(t, id, "mail_failed", "answer: no-address")
		sent, failed := e.mailEvents(t, id)
		require.Empty(t, sent)
		require.Len(t, failed, 1)
	})

	t.Run("a delivery the API does not know is refused", func(t *testing.T) {
		from := "okand-" + marker + "@example.se"
		require.NoError(t, e.send(from, []string{"kontakt@kommun.se"}, "From: "+from+"\nSubject: Altan\n\nBehövs bygglov?\n"))
		c := e.casesOf(t, from, 1)[0]
		ctx, cancel := e.as(t, sara)
		defer cancel()
		_, err := e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: c.GetCaseId(), Answer: answer, Delivery: casev1.AnswerDelivery(7)})
		requireStatus(t, err, codes.InvalidArgument)
		var fields []string
		for _, d := range status.Convert(err).Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range fromBadRequest(br) {
					fields = append(fields, v.Field)
				}
			}
		}
		require.Equal(t, []string{"delivery"}, fields, "the refusal names the field")
		require.Zero(t, countType(e.events(t), "kontakt.case.v1.CaseAnswered")[c.GetCaseId()], "nothing answered")
	})

	t.Run("nothing of the answer in clear on disk or in the log", func(t *testing.T) {
		for n, files := range scanDir(t, e.k.DataDir, []string{"SVAR" + marker, "svar-" + marker, "nej-" + marker, "ANNAT" + marker}) {
			t.Errorf("%q in clear in %v", n, files)
		}
		require.NotContains(t, e.k.stderr.String(), marker)
	})
}

// TestMailAnswersSurviveKill9: a burst of answers, the binary killed
// with SIGKILL while the outbox sends them, restarted: every answer
// reaches the citizen, and the duplicates (sent, not yet recorded at the
// kill) are counted. The outbox sends one mail at a time, so at most one
// is in that window.
func TestMailAnswersSurviveKill9(t *testing.T) {
	const n = 100
	mp := startMailpit(t, "")
	dataDir := filepath.Join(t.TempDir(), "data")
	e := startMailWith(t, dataDir, 64<<10, outboundConfig(t, mp.SMTP, mp.CAFile, 200*time.Millisecond))
	from := "burst-" + strings.ToLower(randHex(t, 6)) + "@example.se"
	for i := range n {
		require.NoError(t, e.send(from, []string{"kontakt@kommun.se"}, fmt.Sprintf("From: %s\nSubject: Fråga %d\n\nText %d\n", from, i, i)))
	}
	cases := e.casesOf(t, from, n)
	require.Len(t, cases, n)
	mp.waitFor(t, from, n, 120*time.Second) // the acknowledgements

	isAnswer := func(m mailpitMessage) bool { return strings.HasPrefix(m.Subject, "Svar på ditt ärende ") }
	answers := func() []mailpitMessage {
		var out []mailpitMessage
		for _, m := range mp.summaries(t, from) {
			if isAnswer(m) {
				out = append(out, m)
			}
		}
		return out
	}
	ctx, cancel := e.as(t, sara)
	defer cancel()
	for _, c := range cases {
		_, err := e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: c.GetCaseId(), Answer: "Svar till " + c.GetCaseNumber()})
		require.NoError(t, err)
	}
	require.True(t, eventually(60*time.Second, func() bool { return len(answers()) >= 1 }), "the outbox sends answers")
	e.k.kill9(t)
	before := len(answers())
	require.Less(t, before, n, "killed while answers were still waiting (raise n if the outbox outran the test)")

	e2 := startMailWith(t, dataDir, 64<<10, outboundConfig(t, mp.SMTP, mp.CAFile, 200*time.Millisecond))
	// Every answer recorded as sent on its case...
	require.True(t, eventually(120*time.Second, func() bool {
		done := 0
		for _, c := range cases {
			sent, _ := e2.mailEvents(t, c.GetCaseId())
			for _, s := range sent {
				if s.GetKind() == casev1.MailKind_MAIL_KIND_ANSWER {
					done++
				}
			}
		}
		return done == n
	}), "every answer is recorded as sent after the restart")
	// ... and in the citizen's mailbox: none lost.
	perCase := map[string]int{}
	ids := map[string]string{}
	for _, m := range answers() {
		number := strings.TrimPrefix(m.Subject, "Svar på ditt ärende ")
		perCase[number]++
		if prev, ok := ids[number]; ok {
			require.Equal(t, prev, m.MessageID, "a duplicate carries the same Message-ID")
		}
		ids[number] = m.MessageID
	}
	duplicates := 0
	for _, c := range cases {
		require.GreaterOrEqual(t, perCase[c.GetCaseNumber()], 1, "the answer of %s was lost", c.GetCaseNumber())
		duplicates += perCase[c.GetCaseNumber()] - 1
	}
	t.Logf("kill -9 during %d answers: %d sent before the kill, 0 lost, %d duplicate(s)", n, before, duplicates)
	require.LessOrEqual(t, duplicates, 1, "at most the one mail between the relay's 250 and its MailSent")
}
