package e2e

// Replies and bounces end to end (issue 18): a citizen's reply to an
// answer, delivered over SMTP to the binary's receiver, joins the case
// it names (by the Message-ID kontakt sent, read from mailpit, or by the
// case number in the subject), once however often it is delivered, and
// reopens the case if it was closed recently; a reply from another
// address, or to a case closed long ago, is a new case that refers to
// the old one. A delivery report for an answer kontakt sent marks that
// answer bounced on its case, and is never a case.

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
)

// answered is a case that came by mail, was acknowledged and answered
// by e-mail: the Message-IDs of both mails as mailpit received them.
type answered struct {
	caseID, number     string
	ackID, answerID    string
	from               string
	answerSubject      string
	acknowledgementMsg mailpitMessage
}

// mailAndAnswer sends a citizen's mail from from, waits for its
// acknowledgement, answers the case and waits for the answer's mail.
func (e *mailEnv) mailAndAnswer(t *testing.T, mp *mailpit, from string) answered {
	t.Helper()
	require.NoError(t, e.send(from, []string{"kontakt@kommun.se"}, "From: "+from+"\nMessage-ID: <first-"+randHex(t, 6)+"@example.se>\nSubject: Altan\n\nBehövs bygglov för en altan?\n"))
	c := e.casesOf(t, from, 1)[0]
	ack := mp.waitFor(t, from, 1, 60*time.Second)[0]
	ctx, cancel := e.as(t, sara)
	defer cancel()
	_, err := e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: c.GetCaseId(), Answer: "Nej, en låg altan kräver inget bygglov."})
	require.NoError(t, err)
	var answer mailpitMessage
	for _, m := range mp.waitFor(t, from, 2, 60*time.Second) {
		if m.ID != ack.ID {
			answer = m
		}
	}
	require.NotEmpty(t, answer.MessageID)
	e.historyHas(t, c.GetCaseId(), "mail_sent", "answer")
	return answered{caseID: c.GetCaseId(), number: c.GetCaseNumber(), ackID: ack.MessageID, answerID: answer.MessageID, from: from, answerSubject: answer.Subject, acknowledgementMsg: ack}
}

// messages returns the citizen's messages in a case's history.
func (e *mailEnv) messages(t *testing.T, caseID string) []*routingv1.CaseEntry {
	t.Helper()
	var out []*routingv1.CaseEntry
	for _, h := range e.getCase(t, caseID).GetHistory() {
		if h.GetKind() == "message_received" {
			out = append(out, h)
		}
	}
	return out
}

// waitMessage waits until a citizen's message holding marker is in the
// case's history and returns it.
func (e *mailEnv) waitMessage(t *testing.T, caseID, marker string) *routingv1.CaseEntry {
	t.Helper()
	var found *routingv1.CaseEntry
	require.True(t, eventually(30*time.Second, func() bool {
		for _, h := range e.messages(t, caseID) {
			if strings.Contains(h.GetText(), marker) {
				found = h
				return true
			}
		}
		return false
	}), "no message with %s in the case's history; history: %v", marker, e.getCase(t, caseID).GetHistory())
	return found
}

func TestMailReplies(t *testing.T) {
	mp := startMailpit(t, "")
	e := startMailWith(t, "", 64<<10, "    reply_reopen_within: 8s\n"+outboundConfig(t, mp.SMTP, mp.CAFile, 200*time.Millisecond))
	marker := strings.ToLower(randHex(t, 6))
	from := "svar-" + marker + "@example.se"
	c := e.mailAndAnswer(t, mp, from)

	// A watcher of the case's queue sees the reply arrive.
	w := e.watch(t, sara, "kontaktcenter", func() {
		probe := "probe-" + strings.ToLower(randHex(t, 4)) + "@example.se"
		require.NoError(t, e.send(probe, []string{"kontakt@kommun.se"}, "From: "+probe+"\nSubject: Probe\n\nHej\n"))
	})

	reply := func(msgID, subject, text string, extra ...string) string {
		return "From: Anna <" + from + ">\nTo: kontakt@kommun.se\nMessage-ID: <" + msgID + ">\n" + strings.Join(extra, "") +
			"Subject: " + subject + "\nContent-Type: text/plain; charset=utf-8\n\n" + text + "\n\n> " + c.answerSubject + "\n"
	}

	t.Run("a reply to the answer joins its case, once", func(t *testing.T) {
		body := "Tack! Men får altanen ha tak? REPLY1" + marker
		msg := reply("r1-"+marker+"@example.se", "Re: Altanen", body, "In-Reply-To: <"+c.answerID+">\nReferences: <"+c.ackID+"> <"+c.answerID+">\n")
		require.NoError(t, e.send(from, []string{"kontakt@kommun.se"}, msg))
		h := e.waitMessage(t, c.caseID, "REPLY1"+marker)
		require.Equal(t, "mail", h.GetActor())
		require.Equal(t, "message-id", h.GetDetail(), "matched by the answer's Message-ID")
		require.Contains(t, h.GetText(), "Re: Altanen")
		require.Contains(t, h.GetText(), "får altanen ha tak?", "the text as written, å and all")

		// The relay delivers the same mail again: it joins once.
		require.NoError(t, e.send(from, []string{"kontakt@kommun.se"}, msg))
		// A later reply shows after the second delivery was handled (one
		// session at a time, the log in order).
		require.NoError(t, e.send(from, []string{"kontakt@kommun.se"},
			reply("r2-"+marker+"@example.se", "Re: Altanen", "En sak till. REPLY2"+marker, "In-Reply-To: <"+c.ackID+">\n")))
		e.waitMessage(t, c.caseID, "REPLY2"+marker)
		n := 0
		for _, m := range e.messages(t, c.caseID) {
			if strings.Contains(m.GetText(), "REPLY1"+marker) {
				n++
			}
		}
		require.Equal(t, 1, n, "a second delivery of one reply joins once")

		require.Len(t, e.casesOf(t, from, 1), 1, "the replies made no case")
		evs := e.events(t)
		require.Equal(t, 2, countType(evs, "kontakt.case.v1.CaseMessageReceived")[c.caseID], "two replies joined, as events on the case")
		require.Len(t, mp.to(t, from), 2, "a reply gets no acknowledgement")

		// The agent's live queue shows the message.
		require.True(t, eventually(30*time.Second, func() bool {
			for _, ev := range w.forCase(c.caseID) {
				if ev.Change == "message_received" {
					return true
				}
			}
			return false
		}), "WatchQueue shows message_received for the case; got %v", w.forCase(c.caseID))
	})

	t.Run("the case number in the subject joins a case closed just now and reopens it", func(t *testing.T) {
		ctx, cancel := e.as(t, sara)
		defer cancel()
		_, err := e.rc.CloseCase(ctx, &routingv1.CloseCaseRequest{CaseId: c.caseID, Resolution: casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY})
		require.NoError(t, err)
		require.NoError(t, e.send(from, []string{"kontakt@kommun.se"},
			reply("r3-"+marker+"@example.se", "Ang. ärende "+c.number, "Altanen är byggd nu. REPLY3"+marker)))
		h := e.waitMessage(t, c.caseID, "REPLY3"+marker)
		require.Equal(t, "case-number", h.GetDetail())
		view := e.getCase(t, c.caseID)
		require.NotEqual(t, casev1.CaseStatus_CASE_STATUS_CLOSED, view.GetSummary().GetStatus(), "reopened")
		reopened := false
		for _, h := range view.GetHistory() {
			if h.GetKind() == "reopened" && h.GetActor() == "mail" {
				reopened = true
			}
		}
		require.True(t, reopened, "a reopened entry by mail in the history")
		require.Len(t, e.casesOf(t, from, 1), 1)
	})

	t.Run("from another address: a new case that refers to the old one", func(t *testing.T) {
		stranger := "annan-" + marker + "@example.se"
		require.NoError(t, e.send(stranger, []string{"kontakt@kommun.se"},
			"From: "+stranger+"\nMessage-ID: <s1-"+marker+"@example.se>\nIn-Reply-To: <"+c.answerID+">\nSubject: Re: "+c.answerSubject+"\n\nInjicerad text STRANGER"+marker+"\n"))
		found := e.casesOf(t, stranger, 1)
		require.Len(t, found, 1)
		require.NotEqual(t, c.caseID, found[0].GetCaseId())
		refers := false
		for _, h := range e.getCase(t, found[0].GetCaseId()).GetHistory() {
			if h.GetKind() == "registered" && h.GetDetail() == "refers to "+c.number {
				refers = true
			}
		}
		require.True(t, refers, "the new case refers to %s", c.number)
		for _, m := range e.messages(t, c.caseID) {
			require.NotContains(t, m.GetText(), "STRANGER"+marker, "nothing of the stranger's mail in the citizen's case")
		}
	})

	t.Run("to a case closed longer ago than reply_reopen_within: a new case that refers to it", func(t *testing.T) {
		ctx, cancel := e.as(t, sara)
		defer cancel()
		_, err := e.rc.CloseCase(ctx, &routingv1.CloseCaseRequest{CaseId: c.caseID, Resolution: casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY})
		require.NoError(t, err)
		closed := time.Now()
		// mail.inbound.reply_reopen_within is 8 s here: the period must
		// pass, which no poll can hurry.
		time.Sleep(time.Until(closed.Add(9 * time.Second)))
		require.NoError(t, e.send(from, []string{"kontakt@kommun.se"},
			reply("r4-"+marker+"@example.se", "Re: "+c.answerSubject, "Nu igen. LATE"+marker, "In-Reply-To: <"+c.answerID+">\n")))
		found := e.casesOf(t, from, 2)
		require.Len(t, found, 2)
		var newID string
		for _, f := range found {
			if f.GetCaseId() != c.caseID {
				newID = f.GetCaseId()
			}
		}
		view := e.getCase(t, newID)
		require.Contains(t, view.GetPersonalData().GetFreeText().GetDescription(), "LATE"+marker)
		require.Equal(t, "refers to "+c.number, view.GetHistory()[0].GetDetail())
		require.Equal(t, casev1.CaseStatus_CASE_STATUS_CLOSED, e.getCase(t, c.caseID).GetSummary().GetStatus(), "the old case stays closed")
	})

	t.Run("nothing of the replies in clear on disk or in the log", func(t *testing.T) {
		for n, files := range scanDir(t, e.k.DataDir, []string{"REPLY1" + marker, "REPLY3" + marker, "STRANGER" + marker}) {
			t.Errorf("%q in clear in %v", n, files)
		}
		require.NotContains(t, e.k.stderr.String(), marker)
	})
}

// dsn is a delivery status notification (RFC 3464) as Postfix writes
// one, from the null sender, returning the header of the mail with
// messageID; action is "failed" or "delayed".
func dsn(to, messageID, action string) string {
	status := "5.1.1"
	if action == "delayed" {
		status = "4.4.1"
	}
	return fmt.Sprintf(`From: MAILER-DAEMON@relay.kommun.se (Mail Delivery System)
To: %s
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.kommun.se.
I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.kommun.se

Final-Recipient: rfc822; nobody@example.se
Original-Recipient: rfc822;nobody@example.se
Action: %s
Status: %s
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.se>: Recipient address rejected

--B1
Content-Type: text/rfc822-headers

From: Kontaktcenter <kontakt@kommun.se>
To: nobody@example.se
Subject: Svar
Message-ID: <%s>

--B1--
`, to, action, status, messageID)
}

func TestMailBounces(t *testing.T) {
	mp := startMailpit(t, "")
	e := startMailWith(t, "", 64<<10, outboundConfig(t, mp.SMTP, mp.CAFile, 200*time.Millisecond))
	marker := strings.ToLower(randHex(t, 6))
	c := e.mailAndAnswer(t, mp, "studs-"+marker+"@example.se")

	failures := func() []*casev1.MailFailed {
		_, failed := e.mailEvents(t, c.caseID)
		return failed
	}

	// A "delayed" warning about the acknowledgement is no bounce; a
	// report naming a Message-ID kontakt never sent changes nothing.
	require.NoError(t, e.send("", []string{"kontakt@kommun.se"}, dsn("kontakt@kommun.se", c.ackID, "delayed")))
	require.NoError(t, e.send("", []string{"kontakt@kommun.se"}, dsn("kontakt@kommun.se", "okand-"+marker+"@kommun.se", "failed")))
	// The answer bounced: delivered twice, as relays do.
	require.NoError(t, e.send("", []string{"kontakt@kommun.se"}, dsn("kontakt@kommun.se", c.answerID, "failed")))
	require.NoError(t, e.send("", []string{"kontakt@kommun.se"}, dsn("kontakt@kommun.se", c.answerID, "failed")))

	e.historyHas(t, c.caseID, "mail_failed", "answer: bounced")
	// A plain bounce (no report) from the null sender quoting the
	// acknowledgement's Message-ID marks the acknowledgement; it comes
	// last, so once it shows, every report above was handled.
	require.NoError(t, e.send("", []string{"kontakt@kommun.se"}, "From: postmaster@example.se\nSubject: failure notice\n\n"+
		"Hi. This is the qmail-send program. I'm afraid I wasn't able to deliver your message.\n\n--- Below this line is a copy of the message.\n\n"+
		"Message-ID: <"+c.ackID+">\nSubject: x\n"))
	e.historyHas(t, c.caseID, "mail_failed", "acknowledgement: bounced")

	failed := failures()
	require.Len(t, failed, 2, "one bounce of the answer (delivered twice), one of the acknowledgement, none for the delayed warning: %v", failed)
	require.Equal(t, casev1.MailKind_MAIL_KIND_ANSWER, failed[0].GetKind())
	require.Equal(t, "bounced", failed[0].GetReason())
	require.Equal(t, "<"+c.answerID+">", failed[0].GetMessageId())
	require.NotEmpty(t, failed[0].GetAnswerEventId(), "names the answer")
	require.Equal(t, casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT, failed[1].GetKind())

	// The bounces made no case and got no acknowledgement.
	ctx, cancel := e.as(t, sara)
	defer cancel()
	for _, addr := range []string{"MAILER-DAEMON@relay.kommun.se", "postmaster@example.se"} {
		resp, err := e.rc.FindCases(ctx, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_Email{Email: addr}})
		require.NoError(t, err)
		require.Empty(t, resp.GetCases(), "a bounce is never a case")
		require.Empty(t, mp.to(t, addr), "a bounce is never acknowledged")
	}
	require.Equal(t, 1, len(countType(e.events(t), "kontakt.case.v1.CaseRegistered")), "one case in all: the citizen's")
}

// TestMailAcknowledgesFormsAndOpen311: an e-service form and an Open311
// report that carry an e-mail address get the acknowledgement with the
// case number by mail, as a mail case does; a form without an address
// records nothing; a phone call an agent registers (with an address)
// gets none.
func TestMailAcknowledgesFormsAndOpen311(t *testing.T) {
	mp := startMailpit(t, "")
	e := startMailWith(t, "", 64<<10, outboundConfig(t, mp.SMTP, mp.CAFile, 200*time.Millisecond))
	marker := strings.ToLower(randHex(t, 6))
	form := e.k.Token(t, "e-tjanst-kvitto", "form-client")
	agent := e.k.Token(t, "anna", "agent")

	// The phone call first: its registration is in the log before the
	// others, so once theirs are acknowledged its outcome is decided.
	phone := "telefon-" + marker + "@example.se"
	called := e.intakeEnv.register(t, overGRPC, agent, &intakev1.RegisterCaseRequest{Case: &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE, Category: "ovrigt",
		Subject: "Fråga i telefon", Description: "Ringde om sophämtningen.", Contact: &intakev1.Contact{Email: phone, Phone: "070-123 45 67"},
	}})
	require.Equal(t, codes.OK.String(), called.Code.String(), called.Message)

	noAddress := e.submit(t, overGRPC, 0, form, &intakev1.SubmitFormRequest{IdempotencyKey: "kvitto-utan-" + marker, Case: &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Category: "bemotande", Subject: "Utan adress", Description: "Inget svar önskas.",
	}})
	require.Equal(t, codes.OK.String(), noAddress.Code.String(), noAddress.Message)

	formFrom := "formular-" + marker + "@example.se"
	submitted := e.submit(t, overGRPC, 0, form, &intakev1.SubmitFormRequest{IdempotencyKey: "kvitto-" + marker, Case: &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Category: "bemotande", Subject: "Bemötande", Description: "Jag blev väl bemött i receptionen.",
		Contact: &intakev1.Contact{Email: formFrom},
	}})
	require.Equal(t, codes.OK.String(), submitted.Code.String(), submitted.Message)

	reporter := "fixa-" + marker + "@example.se"
	number311 := e.open311Submit(t, url.Values{
		"api_key": {form}, "service_code": {"gatubelysning"}, "description": {"Lampan vid busshållplatsen är släckt."},
		"address_string": {"Storgatan 1"}, "email": {reporter}, "lat": {"57.655312"}, "long": {"12.013623"},
	})

	for _, c := range []struct{ to, number, subject string }{
		{formFrom, submitted.CaseNumber, "Tack för dina synpunkter, ärende " + submitted.CaseNumber},
		{reporter, number311, "Vi har tagit emot din felanmälan – ärende " + number311},
	} {
		got := mp.waitFor(t, c.to, 1, 60*time.Second)
		require.Len(t, got, 1, "one acknowledgement")
		require.Equal(t, c.subject, got[0].Subject, "the Swedish template with the case number")
		require.Contains(t, got[0].Text, "Vi har registrerat det som ärende "+c.number)
		require.Equal(t, []string{"auto-replied"}, mp.headers(t, got[0].ID)["Auto-Submitted"])
	}
	// Both are recorded as sent on their cases.
	require.True(t, eventually(30*time.Second, func() bool {
		return len(countType(e.events(t), "kontakt.case.v1.MailSent")) == 2
	}), "MailSent on the form's case and the report's case")

	// The outbox holds nothing more: the phone call and the form without
	// an address were never mail to send.
	requireMetric(t, e.k, "kontakt_mail_outbox_pending", func(v float64) bool { return v == 0 }, "an empty outbox")
	evs := e.events(t)
	for _, typ := range []string{"kontakt.case.v1.MailSent", "kontakt.case.v1.MailFailed"} {
		n := countType(evs, typ)
		require.Zero(t, n[called.CaseID], "%s on the phone call", typ)
		require.Zero(t, n[noAddress.CaseID], "%s on the form without an address", typ)
	}
	require.Empty(t, mp.to(t, phone), "a phone call gets no acknowledgement")
}

// TestMailFirstResponseIsTheAnswerSent: the relay is away when an
// official answers a mail case; the answer goes out when it is back. The
// statistics record's time to first response is measured to the answer
// the relay accepted (MailSent), not to the AnswerCase call, and holds
// channel e-mail and nothing personal.
func TestMailFirstResponseIsTheAnswerSent(t *testing.T) {
	cert, key, _ := writeTestCert(t, t.TempDir())
	relayAddr := freeAddr(t)
	first := startMailpitCert(t, relayAddr, cert, key)
	e := startMailWith(t, "", 64<<10, outboundConfig(t, relayAddr, cert, 200*time.Millisecond))
	marker := strings.ToLower(randHex(t, 6))
	from := "ttfr-" + marker + "@example.se"
	require.NoError(t, e.send(from, []string{"kontakt@kommun.se"}, "From: "+from+"\nSubject: Soptunnan\n\nNär töms soptunnan? TTFR"+marker+"\n"))
	c := e.casesOf(t, from, 1)[0]
	registered := c.GetRegisteredAt().AsTime()
	first.waitFor(t, from, 1, 60*time.Second) // the acknowledgement
	first.stop(t)

	ctx, cancel := e.as(t, sara)
	defer cancel()
	_, err := e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: c.GetCaseId(), Answer: "På tisdag."})
	require.NoError(t, err)
	answered := time.Now()
	require.True(t, eventually(30*time.Second, func() bool {
		return strings.Count(e.k.stderr.String(), "mail not sent; trying again") >= 2
	}), "the answer waits for the relay")
	// The relay stays away a measurable while: the difference between
	// answering and sending is what the statistics must show.
	time.Sleep(time.Until(answered.Add(3 * time.Second)))
	back := time.Now()
	second := startMailpitCert(t, relayAddr, cert, key)
	second.waitFor(t, from, 1, 60*time.Second)
	e.historyHas(t, c.GetCaseId(), "mail_sent", "answer")

	actx, acancel := e.as(t, alva)
	defer acancel()
	stats := statisticsv1.NewStatisticsServiceClient(e.conns[0])
	var rec *statisticsv1.StatisticsRecord
	require.True(t, eventually(30*time.Second, func() bool {
		s, err := stats.StreamRecords(actx, &statisticsv1.StreamRecordsRequest{StopAtEnd: true})
		if err != nil {
			return false
		}
		rec = nil
		for {
			resp, err := s.Recv()
			if err != nil {
				break
			}
			if r := resp.GetRecord(); rec == nil || r.GetVersion() > rec.GetVersion() {
				rec = r
			}
		}
		return rec != nil && rec.GetTimeToFirstResponse() != nil && rec.GetTimeToFirstResponse().AsDuration() >= back.Sub(registered)
	}), "the newest statistics record's time to first response %v is not measured to the answer sent (relay back %v after registration, answered %v after)",
		rec.GetTimeToFirstResponse().AsDuration(), back.Sub(registered), answered.Sub(registered))
	require.Equal(t, casev1.Channel_CHANNEL_EMAIL, rec.GetChannel())
	raw, err := protojson.Marshal(rec)
	require.NoError(t, err)
	for _, personal := range []string{marker, c.GetCaseId(), c.GetCaseNumber()} {
		require.NotContains(t, string(raw), personal, "nothing personal in the statistics record")
	}
}
