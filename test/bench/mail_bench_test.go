package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kontakt-se/kontakt/test/internal/postfix"
)

// BenchmarkMailVsRawJetStream measures, in one run against one kontakt
// binary with its mail receiver on: 64 SMTP clients (net/smtp, one
// connection each, one transaction after another) delivering a plain
// Swedish mail to the receiver, which answers 250 only once the case's
// keys, number and CaseRegistered are durable; against raw JetStream
// appends of the same size on the same server, before and after (the
// ratio uses the higher). It reports mails/s, raw_appends/s and their
// ratio, and the p50/p99 of one delivery. The relay in front is not in
// this figure; BenchmarkMailThroughPostfixVsRawJetStream measures the
// path with Postfix.
func BenchmarkMailVsRawJetStream(b *testing.B) {
	_, smtpAddr, js := startMailReceiver(b)
	ctx := context.Background()
	msg := []byte("From: Sven Svensson <sven@example.se>\r\nTo: kontakt@kommun.se\r\nSubject: =?UTF-8?Q?Fr=C3=A5ga_om_bygglov_f=C3=B6r_altan?=\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"Hej! Krävs det bygglov för en altan på 25 kvadratmeter som ligger närmare tomtgränsen än 4,5 meter, och hur lång är handläggningstiden just nu?\r\nMed vänlig hälsning\r\nSven Svensson, Storgatan 1, 431 82 Mölndal\r\n")
	payload := make([]byte, len(msg))
	_, _ = rand.Read(payload)
	ops := int64(b.N) * opsPerIteration

	b.ResetTimer()
	raw := func() time.Duration { return mustRawAppends(b, ctx, js, ops, payload) }
	rawBefore := raw()

	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	latencies := make([][]time.Duration, writers)
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			c, err := smtp.Dial(smtpAddr)
			if err != nil {
				errs <- err
				return
			}
			defer func() { _ = c.Quit() }()
			for next.Add(1) <= ops {
				t0 := time.Now()
				if err := deliver(c, msg); err != nil {
					errs <- err
					return
				}
				latencies[w] = append(latencies[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	rawAfter := raw()
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal("delivery: ", err)
	}

	pct := percentiles(latencies)
	rawRate := float64(ops) / min(rawBefore, rawAfter).Seconds()
	mailRate := float64(ops) / elapsed.Seconds()
	reportAgainstRaw(b, rawRate, mailRate, "mails/s", pct)
	b.Logf("N=%d mails, %d SMTP clients: raw JetStream %.0f appends/s (%.0f before, %.0f after); mail %.0f cases/s (ratio %.3f), p50 %.1f ms, p99 %.1f ms",
		ops, writers, rawRate, float64(ops)/rawBefore.Seconds(), float64(ops)/rawAfter.Seconds(), mailRate, mailRate/rawRate, pct(0.50), pct(0.99))
}

// BenchmarkMailThroughPostfixVsRawJetStream measures the whole inbound
// path as a municipality runs it: 64 SMTP clients submit plain Swedish
// mails (each its own Message-ID) to a real Postfix (Debian's, as
// TestMailThroughPostfix starts it: test/internal/postfix), which queues
// them and delivers them to kontakt's receiver over its own SMTP client
// connections (at most default_destination_concurrency_limit, 20, at
// once); a delivery is done when kontakt answered 250, that is when the
// case is durable, which Postfix logs as status=sent. mails/s is the
// number of mails over the time from the first submission to the last
// status=sent; p50/p99 are Postfix's own delay= of each delivery
// (arrival in its queue to kontakt's 250). Against raw JetStream appends
// of the same size on kontakt's server in the same run, before and after
// (the ratio uses the higher).
func BenchmarkMailThroughPostfixVsRawJetStream(b *testing.B) {
	if err := postfix.Available(); err != nil {
		b.Skip(err)
	}
	_, smtpAddr, js := startMailReceiver(b)
	mtaAddr, err := freeAddr()
	if err != nil {
		b.Fatal(err)
	}
	mta, err := postfix.Start(smtpAddr, mtaAddr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(mta.Stop)
	ctx := context.Background()
	body := "Subject: =?UTF-8?Q?Fr=C3=A5ga_om_bygglov_f=C3=B6r_altan?=\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"Hej! Krävs det bygglov för en altan på 25 kvadratmeter som ligger närmare tomtgränsen än 4,5 meter, och hur lång är handläggningstiden just nu?\r\nMed vänlig hälsning\r\nSven Svensson, Storgatan 1, 431 82 Mölndal\r\n"
	run := rand.Text()[:8]
	mail := func(i int64) []byte {
		return fmt.Appendf(nil, "From: Sven Svensson <sven@example.se>\r\nTo: kontakt@kommun.se\r\nMessage-ID: <bench-%s-%d@example.se>\r\n%s", run, i, body)
	}
	payload := make([]byte, len(mail(0)))
	_, _ = rand.Read(payload)
	ops := int64(b.N) * opsPerIteration

	b.ResetTimer()
	raw := func() time.Duration { return mustRawAppends(b, ctx, js, ops, payload) }
	rawBefore := raw()

	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	for range writers {
		wg.Go(func() {
			c, err := smtp.Dial(mta.SMTPD)
			if err != nil {
				errs <- err
				return
			}
			defer func() { _ = c.Quit() }()
			for i := next.Add(1); i <= ops; i = next.Add(1) {
				if err := deliver(c, mail(i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	submitted := time.Since(start)
	select {
	case err := <-errs:
		b.Fatal("submission to postfix: ", err)
	default:
	}
	delays, err := waitDelivered(mta, ops, 10*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	rawAfter := raw()
	b.StopTimer()

	pct := percentiles([][]time.Duration{delays})
	rawRate := float64(ops) / min(rawBefore, rawAfter).Seconds()
	mailRate := float64(ops) / elapsed.Seconds()
	reportAgainstRaw(b, rawRate, mailRate, "mails/s", pct)
	b.Logf("N=%d mails, %d SMTP clients into postfix (all queued after %s): raw JetStream %.0f appends/s (%.0f before, %.0f after); through postfix into cases %.0f mails/s (ratio %.3f), postfix delay p50 %.1f ms, p99 %.1f ms",
		ops, writers, submitted.Round(time.Millisecond), rawRate, float64(ops)/rawBefore.Seconds(), float64(ops)/rawAfter.Seconds(), mailRate, mailRate/rawRate, pct(0.50), pct(0.99))
}

// postfixDelivery is a maillog line of a delivery to kontakt: its delay=
// and status.
var postfixDelivery = regexp.MustCompile(`postfix/smtp\[\d+\]: [0-9A-F]+: to=<kontakt@kommun\.se>.* delay=([0-9.]+),.* status=(\w+)`)

// waitDelivered waits until Postfix's log shows n deliveries to kontakt
// accepted (status=sent) and returns their delays. A bounce fails; a
// deferral is retried by Postfix and waited for.
func waitDelivered(mta *postfix.Instance, n int64, timeout time.Duration) ([]time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for {
		var delays []time.Duration
		for _, m := range postfixDelivery.FindAllStringSubmatch(mta.Log(), -1) {
			switch m[2] {
			case "sent":
				sec, _ := strconv.ParseFloat(m[1], 64)
				delays = append(delays, time.Duration(sec*float64(time.Second)))
			case "bounced":
				return nil, fmt.Errorf("postfix bounced a mail kontakt refused")
			}
		}
		if int64(len(delays)) >= n {
			return delays, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d mails delivered to kontakt after %s", len(delays), n, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deliver sends one message on an open SMTP connection, as a relay does
// (one transaction after another on one connection).
func deliver(c *smtp.Client, msg []byte) error {
	if err := c.Mail("sven@example.se"); err != nil {
		return err
	}
	if err := c.Rcpt("kontakt@kommun.se"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	return w.Close()
}

// startMailReceiver starts a kontakt with its mail receiver on (no
// per-sender limit) and its embedded NATS port open, and returns it, the
// receiver's address and a JetStream client on the same server for the
// raw appends. It stops when the benchmark ends.
func startMailReceiver(b *testing.B) (*kontakt, string, jetstream.JetStream) {
	b.Helper()
	bin, err := binary()
	if err != nil {
		b.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kontakt-bench-mail-")
	if err != nil {
		b.Fatal(err)
	}
	natsAddr, err := freeAddr()
	if err != nil {
		b.Fatal(err)
	}
	smtpAddr, err := freeAddr()
	if err != nil {
		b.Fatal(err)
	}
	k, err := launch(bin, dir, fmt.Sprintf(`nats:
  embedded_listen: %s
mail:
  inbound:
    listen: %s
    per_sender: {per_minute: 0}
    addresses:
      - {address: kontakt@kommun.se, category: bygglov}
`, natsAddr, smtpAddr))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(k.stop)
	k.natsAddr = natsAddr
	if err := k.waitServing(); err != nil {
		b.Fatal(err, k.log())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", smtpAddr)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the mail receiver never listened: ", k.log())
		}
		time.Sleep(50 * time.Millisecond)
	}

	nc, err := nats.Connect("nats://"+natsAddr, append(k.natsOptions(b), nats.Name("kontakt-bench"))...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	return k, smtpAddr, js
}
