package app_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/caseevents"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/natstest"
	"github.com/kontakt-se/kontakt/pkg/receipt"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/retention/adapters/ledger"
)

// benchConcurrency is how many goroutines register cases and publish raw
// messages at once.
const benchConcurrency = 64

// benchCases is the number of cases: KONTAKT_BENCH_CASES, default 2000 so
// that `go test -bench` stays quick.
func benchCases(b *testing.B) int {
	b.Helper()
	v := os.Getenv("KONTAKT_BENCH_CASES")
	if v == "" {
		return 2000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("KONTAKT_BENCH_CASES=%q is not a positive number", v)
	}
	return n
}

// timedLedger notes when each case's first receipt was recorded.
type timedLedger struct {
	*ledger.Ledger
	mu sync.Mutex
	at map[string]time.Time
}

func (l *timedLedger) RecordBatch(ctx context.Context, rs []receipt.Receipt) error {
	err := l.Ledger.RecordBatch(ctx, rs)
	if err == nil {
		now := time.Now()
		l.mu.Lock()
		for _, r := range rs {
			if _, ok := l.at[r.CaseID]; !ok {
				l.at[r.CaseID] = now
			}
		}
		l.mu.Unlock()
	}
	return err
}

// runConcurrently calls fn(i) for i in [0, n) from benchConcurrency
// goroutines and returns the first error.
func runConcurrently(n int, fn func(i int) error) error {
	var next atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	for range benchConcurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || first.Load() != nil {
					return
				}
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return nil
}

// BenchmarkRedactionsVsRawAppends compares how fast the retention service
// carries out due redactions (read the case, append PersonalDataRedacted
// with its expected revision, destroy the class keys, write the chained
// ledger receipt, move the index) with how fast the same JetStream server
// takes plain acknowledged publishes, on an embedded server that fsyncs
// every write (sync always, as kontakt runs).
//
// Each iteration builds its own server and N cases (not timed), then
// measures once, so run it with -benchtime=1x:
//
//	KONTAKT_BENCH_CASES=100000 go test -run XXX -bench RedactionsVsRawAppends -benchtime 1x -timeout 2h ./app/
//
// Metrics: raw_appends/s (N publishes of 256 bytes by 64 concurrent
// publishers), redactions/s (N cases from "due" to the index showing
// none due and the ledger holding N receipts), ratio = redactions/s ÷
// raw_appends/s, and the 50th and 99th percentile of the time from the
// moment the cases fell due (the clock moved to day 91) to each case's
// receipt.
func BenchmarkRedactionsVsRawAppends(b *testing.B) {
	n := benchCases(b)
	var rawTotal, redTotal time.Duration
	var lat []time.Duration
	b.StopTimer()
	for range b.N {
		raw, red, l := redactionsVsRawAppends(b, n)
		rawTotal += raw
		redTotal += red
		lat = append(lat, l...)
	}
	rawRate := float64(n*b.N) / rawTotal.Seconds()
	redRate := float64(n*b.N) / redTotal.Seconds()
	b.ReportMetric(rawRate, "raw_appends/s")
	b.ReportMetric(redRate, "redactions/s")
	b.ReportMetric(redRate/rawRate, "ratio")
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)*50/100].Milliseconds()), "p50_due_to_receipt_ms")
		b.ReportMetric(float64(lat[min(len(lat)*99/100, len(lat)-1)].Milliseconds()), "p99_due_to_receipt_ms")
	}
	b.ReportMetric(float64(n), "cases")
}

func redactionsVsRawAppends(b *testing.B, n int) (raw, red time.Duration, lat []time.Duration) {
	ctx := b.Context()
	w := newWorld(b)
	bk := w.connect(b)
	tl := &timedLedger{Ledger: bk.ledger, at: make(map[string]time.Time, n)}
	in := w.newInstance(b, bk, instanceOpts{ledger: tl})
	in.start(b)

	// Setup: N cases with one sealed contact each, registered by 64
	// goroutines, and the projector caught up.
	setup := time.Now()
	if err := runConcurrently(n, func(i int) error {
		id := uuid.NewString()
		contact, err := bk.sealer.SealMessage(ctx, id, seal.ClassContact, 0, &casev1.ContactDetails{Email: fmt.Sprintf("bench%d@example.se", i)})
		if err != nil {
			return err
		}
		data, err := proto.Marshal(&casev1.CaseRegistered{
			CaseId: id, CaseNumber: fmt.Sprintf("KC-2026-%06d", i+1), Type: casev1.CaseType_CASE_TYPE_FRAGA,
			Channel: casev1.Channel_CHANNEL_EMAIL, RegisteredAt: timestamppb.New(t0), RegisteredBy: "bench", Contact: contact,
		})
		if err != nil {
			return err
		}
		_, err = bk.store.Append(ctx, id, eventstore.NoStream(), eventstore.Event{ID: uuid.NewString(), Type: caseevents.TypeOf(&casev1.CaseRegistered{}), Data: data})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	in.caughtUpWithin(b, time.Hour)
	if got, err := in.idx.Count(); err != nil || got != n {
		b.Fatalf("index holds %d cases (%v), want %d", got, err, n)
	}
	b.Logf("setup: %d cases registered and indexed in %s", n, time.Since(setup).Round(time.Millisecond))

	// Part 1: the substrate. N acknowledged publishes to a stream of their
	// own on the same server, 64 publishers at once.
	js := natstest.JetStream(b, w.srv)
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "BENCH_RAW", Subjects: []string{"bench.raw.>"}, Storage: natsjs.FileStorage}); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 256)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	b.StartTimer()
	start := time.Now()
	if err := runConcurrently(n, func(i int) error {
		_, err := js.Publish(ctx, fmt.Sprintf("bench.raw.%d", i%benchConcurrency), payload)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	raw = time.Since(start)
	b.StopTimer()

	// Part 2: every case falls due at once; sweep until the ledger holds N
	// receipts and nothing is due.
	w.clock.Set(day(91))
	b.StartTimer()
	start = time.Now()
	for pass := 1; ; pass++ {
		if _, err := in.svc.Sweep(ctx); err != nil {
			b.Fatalf("sweep pass %d: %v", pass, err)
		}
		in.caughtUpWithin(b, time.Hour)
		count, err := tl.Count(ctx)
		if err != nil {
			b.Fatal(err)
		}
		due, err := in.idx.Due(w.clock.Now(), 1)
		if err != nil {
			b.Fatal(err)
		}
		if int(count) == n && len(due) == 0 {
			break
		}
		if pass >= 10 {
			b.Fatalf("after %d passes: %d receipts, due %v", pass, count, due)
		}
	}
	red = time.Since(start)
	b.StopTimer()

	tl.mu.Lock()
	for _, at := range tl.at {
		lat = append(lat, at.Sub(start))
	}
	tl.mu.Unlock()
	if len(lat) != n {
		b.Fatalf("%d cases got a receipt, want %d", len(lat), n)
	}
	b.Logf("raw: %d publishes in %s; redactions: %d in %s", n, raw.Round(time.Millisecond), n, red.Round(time.Millisecond))
	return raw, red, lat
}
