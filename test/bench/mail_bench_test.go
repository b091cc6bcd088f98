package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkMailVsRawJetStream measures, in one run against one kontakt
// binary with its mail receiver on: 64 SMTP clients (net/smtp, one
// connection each, one transaction after another) delivering a plain
// Swedish mail to the receiver, which answers 250 only once the case's
// keys, number and CaseRegistered are durable; against raw JetStream
// appends of the same size on the same server, before and after (the
// ratio uses the higher). It reports mails/s, raw_appends/s and their
// ratio, and the p50/p99 of one delivery. The relay in front (Postfix in
// TestMailThroughPostfix) is not in the figure: its own queue and
// delivery agents are the MTA's cost, not kontakt's.
func BenchmarkMailVsRawJetStream(b *testing.B) {
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
	defer k.stop()
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

	ctx := context.Background()
	nc, err := nats.Connect("nats://"+natsAddr, append(k.natsOptions(b), nats.Name("kontakt-bench"))...)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("From: Sven Svensson <sven@example.se>\r\nTo: kontakt@kommun.se\r\nSubject: =?UTF-8?Q?Fr=C3=A5ga_om_bygglov_f=C3=B6r_altan?=\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"Hej! Krävs det bygglov för en altan på 25 kvadratmeter som ligger närmare tomtgränsen än 4,5 meter, och hur lång är handläggningstiden just nu?\r\nMed vänlig hälsning\r\nSven Svensson, Storgatan 1, 431 82 Mölndal\r\n")
	payload := make([]byte, len(msg))
	_, _ = rand.Read(payload)
	ops := int64(b.N) * opsPerIteration

	b.ResetTimer()
	raw := func() time.Duration {
		d, err := rawAppends(ctx, js, ops, payload)
		if err != nil {
			b.Fatal("raw publish: ", err)
		}
		return d
	}
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
