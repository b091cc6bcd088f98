package statistics

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/services/statistics/adapters/store"
	"github.com/kontakt-se/kontakt/services/statistics/adapters/stream"
	"github.com/kontakt-se/kontakt/services/statistics/app"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

// BenchmarkProjection projects a log of case events from the start into
// a fresh read model and a fresh statistics stream (bbolt fsync per
// batch, one atomic batch of record versions per projector batch), and reads the same
// log with a raw JetStream ordered consumer in the same run on the same
// embedded server. It reports both rates and their ratio.
func BenchmarkProjection(b *testing.B) {
	for _, mode := range []struct {
		name string
		sync time.Duration
	}{
		{"sync-always", 0},
		// Relaxed durability, for comparison only: shows what the
		// per-message fsync of the statistics stream costs.
		{"sync-interval-1s", time.Second},
	} {
		b.Run(mode.name, func(b *testing.B) { benchmarkProjection(b, mode.sync) })
	}
}

func benchmarkProjection(b *testing.B, syncInterval time.Duration) {
	const cases = 2000
	h := startHarnessSync(b, syncInterval)
	// Sixteen writers, each with its own cases (and revisions).
	var wg sync.WaitGroup
	for w := range 16 {
		hw := *h
		hw.revs, hw.deleted = map[string]eventstore.Revision{}, map[string]bool{}
		wg.Go(func() { hw.randomHistory(b, rand.New(rand.NewPCG(uint64(w), 1)), cases/16, nil) })
	}
	wg.Wait()
	head := h.head(b)
	ctx := context.Background()

	rawRead := func() {
		cons, err := h.js.OrderedConsumer(ctx, "KONTAKT_CASES", jetstream.OrderedConsumerConfig{})
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
	var rawTime, projTime time.Duration
	var versions int
	for b.Loop() {
		start := time.Now()
		rawRead()
		rawTime += time.Since(start)

		// A fresh stream and file, so every version is really published.
		if err := h.js.DeleteStream(ctx, stream.StreamName); err != nil {
			require.ErrorIs(b, err, jetstream.ErrStreamNotFound)
		}
		hh := *h
		hh.dir = b.TempDir()
		svc := hh.service(b, Config{})
		start = time.Now()
		stop := running(b, svc)
		hh.settled(b, svc)
		projTime += time.Since(start)
		require.NoError(b, stop())
		versions = len(h.rawMessages(b))
		require.NoError(b, svc.Close())
	}
	rawRate := float64(b.N) * float64(head) / rawTime.Seconds()
	projRate := float64(b.N) * float64(head) / projTime.Seconds()
	b.ReportMetric(rawRate, "raw-events/s")
	b.ReportMetric(projRate, "projected-events/s")
	b.ReportMetric(projRate/rawRate, "projected/raw")
	b.ReportMetric(float64(versions), "versions")
	b.ReportMetric(float64(head), "events")
}

// BenchmarkQuery measures Query over a read model of 1,000,000 records
// registered during 2026 (built directly in bbolt): month granularity,
// grouped by type and channel, over the whole year, so every record is
// read. It reports the median and 99th percentile latency.
func BenchmarkQuery(b *testing.B) {
	const n = 1_000_000
	st, err := store.Open(filepath.Join(b.TempDir(), FileName), store.Options{})
	require.NoError(b, err)
	b.Cleanup(func() { _ = st.Close() })
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hours := int64(365 * 24)
	cats := []string{"avfall", "gata", "bygglov", "skola", "vatten", "parkering", "bibliotek", "ovrigt"}
	queues := []string{"kund", "kundtjanst", "gata", "soc", "bygg"}
	depts := []string{"", "", "Miljö", "Teknik", "Stadsbyggnad"}
	batch := make([]domain.Record, 0, 50_000)
	for i := range n {
		r := domain.Record{
			StatisticsID: fmt.Sprintf("%026d", rng.Uint64()), Version: int64(i + 1),
			Type: casev1.CaseType(1 + rng.IntN(4)), Channel: casev1.Channel(1 + rng.IntN(6)),
			Category: cats[rng.IntN(len(cats))], Queue: queues[rng.IntN(len(queues))], Department: depts[rng.IntN(len(depts))],
			RegisteredHour: start.Add(time.Duration(int64(i)*hours/n) * time.Hour),
		}
		if rng.IntN(10) < 8 {
			r.TimeToFirstResponse, r.HasFirstResponse = time.Duration(rng.Int64N(int64(72*time.Hour))), true
		}
		if rng.IntN(10) < 7 {
			r.TimeToClose, r.HasClose, r.Closed = time.Duration(rng.Int64N(int64(240*time.Hour))), true, true
			r.FirstContactResolution = rng.IntN(3) == 0
		}
		batch = append(batch, r)
		if len(batch) == cap(batch) {
			_, err := st.UpsertRecords(batch)
			require.NoError(b, err)
			batch = batch[:0]
		}
	}
	loc, err := time.LoadLocation(TimeZone)
	require.NoError(b, err)
	q := app.NewQueries(app.QueriesConfig{ReadModel: st, Location: loc})
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, loc)
	req := &statisticsv1.QueryRequest{
		From: ts(from), To: ts(from.AddDate(1, 0, 0)),
		GroupBy:     []statisticsv1.Dimension{statisticsv1.Dimension_DIMENSION_TYPE, statisticsv1.Dimension_DIMENSION_CHANNEL},
		Granularity: statisticsv1.Granularity_GRANULARITY_MONTH,
	}
	var lat []time.Duration
	var rows int
	for b.Loop() {
		t0 := time.Now()
		resp, err := q.Query(context.Background(), req)
		lat = append(lat, time.Since(t0))
		require.NoError(b, err)
		rows = len(resp.GetRows())
	}
	require.Equal(b, 12*4*6, rows)
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
