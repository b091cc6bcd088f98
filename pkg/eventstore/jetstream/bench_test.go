package jetstream

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// benchStores starts an embedded sync-always server with an event store
// on stream name and a raw baseline stream (subjects bench.raw.>)
// configured exactly like the store's.
func benchStores(b *testing.B, name, prefix string) (natsjs.JetStream, *Store) {
	b.Helper()
	_, nc := startEmbedded(b)
	js, err := natsjs.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	store, err := New(ctx, js, Config{StreamName: name, SubjectPrefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, Config{StreamName: "BENCH_RAW", SubjectPrefix: "bench.raw"}.StreamConfig()); err != nil {
		b.Fatal(err)
	}
	return js, store
}

// BenchmarkAppend compares plain JetStream publishes with eventstore
// appends on the same embedded sync-always server, with the same 512-byte
// payload and headers (the raw publish lacks only the expectation header),
// sequentially and with 64 concurrent writers. It reports ops/s and logs the
// eventstore/raw ratio, which is the cost of optimistic concurrency.
func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	js, store := benchStores(b, "BENCH_ES", "bench.es")
	payload := bytes.Repeat([]byte{0xa5}, 512)
	meta := map[string]string{"correlation-id": uuid.NewString()}

	// raw appends one message to the writer's subject.
	raw := func(writer string) func() error {
		subject := "bench.raw." + writer
		return func() error {
			h := nats.Header{}
			h.Set(natsjs.MsgIDHeader, uuid.NewString())
			h.Set(HeaderEventType, "kontakt.bench.v1.Appended")
			for k, v := range meta {
				h.Set(HeaderMetaPrefix+k, v)
			}
			_, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: h, Data: payload})
			return err
		}
	}
	// es appends one event to the writer's case stream with an exact
	// expectation, as a command handler would.
	es := func(writer string) func() error {
		expected := eventstore.NoStream()
		return func() error {
			rev, err := store.Append(ctx, writer, expected, eventstore.Event{
				ID: uuid.NewString(), Type: "kontakt.bench.v1.Appended", Data: payload, Metadata: meta,
			})
			expected = eventstore.Exact(rev)
			return err
		}
	}

	opsPerSec := map[string]float64{}
	var round atomic.Int64 // Fresh streams per benchmark round.
	for _, mode := range []struct {
		name    string
		writers int
	}{{"sequential", 1}, {"concurrent-64", 64}} {
		for _, impl := range []struct {
			name string
			make func(writer string) func() error
		}{{"raw-jetstream", raw}, {"eventstore", es}} {
			name := impl.name + "/" + mode.name
			b.Run(name, func(b *testing.B) {
				r := round.Add(1)
				appendFns := make([]func() error, mode.writers)
				for w := range appendFns {
					appendFns[w] = impl.make(fmt.Sprintf("r%d-w%d", r, w))
				}
				var next atomic.Int64
				var wg sync.WaitGroup
				errs := make(chan error, mode.writers)
				b.ResetTimer()
				for w := range mode.writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							if err := appendFns[w](); err != nil {
								errs <- err
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				ops := float64(b.N) / b.Elapsed().Seconds()
				b.ReportMetric(ops, "ops/s")
				opsPerSec[name] = ops
				// The raw run of this mode ran just before; a sub-benchmark's
				// log is printed with its result line.
				if rawOps := opsPerSec["raw-jetstream/"+mode.name]; impl.name == "eventstore" && rawOps > 0 {
					b.ReportMetric(ops/rawOps, "eventstore/raw")
					if b.N > 1 { // Not for the one-iteration probe run.
						b.Logf("%s: eventstore %.0f ops/s, raw JetStream %.0f ops/s, ratio eventstore/raw = %.2f", mode.name, ops, rawOps, ops/rawOps)
					}
				}
			})
		}
	}
}

// BenchmarkAppendBatchVsRaw measures what group commit buys at the
// bottom: 64 concurrent raw publishes (each waits for its own fsync)
// against AppendBatch of 64 new streams at a time, on the same embedded
// sync-always server in the same run, with the same 512-byte events. Each
// iteration is 64 events of each kind; it reports both rates and
// batch/raw.
func BenchmarkAppendBatchVsRaw(b *testing.B) {
	ctx := context.Background()
	js, store := benchStores(b, "BENCH_BATCH", "bench.batch")
	payload := bytes.Repeat([]byte{0xa5}, 512)
	const group = 64
	events := int64(b.N) * group
	b.ResetTimer()

	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, group+1)
	start := time.Now()
	for w := range group {
		wg.Go(func() {
			for next.Add(1) <= events {
				if _, err := js.Publish(ctx, fmt.Sprintf("bench.raw.w%d", w), payload); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	rawRate := float64(events) / time.Since(start).Seconds()

	start = time.Now()
	for range b.N {
		batch := make([]eventstore.BatchAppend, group)
		for i := range batch {
			batch[i] = eventstore.BatchAppend{Stream: uuid.NewString(), Expected: eventstore.NoStream(),
				Event: eventstore.Event{ID: uuid.NewString(), Type: "kontakt.bench.v1.Appended", Data: payload}}
		}
		if _, err := store.AppendBatch(ctx, batch); err != nil {
			errs <- err
			break
		}
	}
	batchRate := float64(events) / time.Since(start).Seconds()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(rawRate, "raw_appends/s")
	b.ReportMetric(batchRate, "batched_events/s")
	b.ReportMetric(batchRate/rawRate, "batch/raw")
}
