package readmodel

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

// appendConcurrently appends drafts with 16 writers; each stream's events
// go through one writer, in order.
func (h *natsHarness) appendConcurrently(b *testing.B, drafts []draft) {
	const writers = 16
	parts := make([][]draft, writers)
	for _, d := range drafts {
		f := fnv.New32a()
		_, _ = f.Write([]byte(d.stream))
		w := f.Sum32() % writers
		parts[w] = append(parts[w], d)
	}
	var wg sync.WaitGroup
	for _, part := range parts {
		wg.Go(func() { h.append(b, part...) })
	}
	wg.Wait()
}

// BenchmarkRebuild compares a full rebuild of the read model (through
// eventstore.Subscribe, decoding, bbolt writes, fsync per batch) with a
// raw JetStream ordered consumer that only receives the same messages, in
// the same run on the same embedded server.
func BenchmarkRebuild(b *testing.B) {
	const n = 20_000
	h := startNATS(b, time.Second)
	var drafts []draft
	for _, d := range genHistory(rand.New(rand.NewPCG(9, 9)), n+n/5) {
		// No deletions: they purge events, and the stream is to hold n.
		if _, isDel := d.msg.(*casev1.CaseDeleted); !isDel && d.msg != nil {
			drafts = append(drafts, d)
		}
	}
	require.GreaterOrEqual(b, len(drafts), n)
	h.appendConcurrently(b, drafts[:n])
	ctx := context.Background()
	head, err := h.head(ctx)
	require.NoError(b, err)
	require.EqualValues(b, n, head)

	rm, _ := openStore(b, Options{Tokenizer: &fakeTokenizer{}})
	p := mustProjector(b, h.es, rm, nil, WithHead(h.head))

	rawRead := func() {
		cons, err := h.js.OrderedConsumer(ctx, h.stream, natsjs.OrderedConsumerConfig{})
		require.NoError(b, err)
		it, err := cons.Messages()
		require.NoError(b, err)
		defer it.Stop()
		for {
			msg, err := it.Next()
			require.NoError(b, err)
			meta, err := msg.Metadata()
			require.NoError(b, err)
			if meta.Sequence.Stream >= uint64(head) {
				return
			}
		}
	}

	var rawTime, rebuildTime time.Duration
	for b.Loop() {
		start := time.Now()
		rawRead()
		rawTime += time.Since(start)
		start = time.Now()
		require.NoError(b, p.Rebuild(ctx, nil))
		rebuildTime += time.Since(start)
	}
	cp, err := rm.Checkpoint()
	require.NoError(b, err)
	require.Equal(b, head, cp)
	checkConsistent(b, rm)

	rawRate := float64(b.N*n) / rawTime.Seconds()
	rebuildRate := float64(b.N*n) / rebuildTime.Seconds()
	b.ReportMetric(rawRate, "raw-events/s")
	b.ReportMetric(rebuildRate, "rebuild-events/s")
	b.ReportMetric(rebuildRate/rawRate, "rebuild/raw")
}

// BenchmarkListQueue measures ListQueue pages of 50 over one queue with
// 100,000 open cases, at random places in the queue, and reports the
// median and 99th percentile latency.
func BenchmarkListQueue(b *testing.B) {
	const cases = 100_000
	rm, _ := openStore(b, Options{})
	rng := rand.New(rand.NewPCG(5, 5))
	fill := &batcher{s: rm, size: 10_000}
	for i := range cases {
		id := uuid.NewString()
		at := t0().Add(time.Duration(rng.IntN(90*24*3600)) * time.Second)
		fill.add(b,
			ev(id, registered(id, fmt.Sprintf("KC-2026-%06d", i), casev1.CaseType(1+rng.IntN(4)), casev1.Channel(1+rng.IntN(6)), at)),
			ev(id, routed(id, "kundtjanst", at)))
	}
	fill.flush(b)
	load, err := rm.QueueLoad("kundtjanst")
	require.NoError(b, err)
	require.EqualValues(b, cases, load.Open)

	for _, tc := range []struct {
		name  string
		order routingv1.QueueOrder
		types []casev1.CaseType
	}{
		{"age", routingv1.QueueOrder_QUEUE_ORDER_AGE, nil},
		{"due", routingv1.QueueOrder_QUEUE_ORDER_DUE, nil},
		{"age-one-type", routingv1.QueueOrder_QUEUE_ORDER_AGE, []casev1.CaseType{casev1.CaseType_CASE_TYPE_BREV}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			// Page tokens all over the queue, from one walk through it.
			tokens := []string{""}
			for token := ""; ; {
				_, next, err := listQueue(rm, "kundtjanst", tc.order, tc.types, nil, 50, token)
				require.NoError(b, err)
				if next == "" {
					break
				}
				tokens = append(tokens, next)
				token = next
			}
			var lat []time.Duration
			for b.Loop() {
				token := tokens[rng.IntN(len(tokens))]
				start := time.Now()
				rows, _, err := listQueue(rm, "kundtjanst", tc.order, tc.types, nil, 50, token)
				lat = append(lat, time.Since(start))
				if err != nil || len(rows) == 0 {
					b.Fatalf("page: %d rows, %v", len(rows), err)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(len(tokens)), "pages")
		})
	}
}
