package ledger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/jsbatch"
	"github.com/kontakt-se/kontakt/pkg/natsserver"
	"github.com/kontakt-se/kontakt/pkg/natstest"
	"github.com/kontakt-se/kontakt/pkg/receipt"
	"github.com/kontakt-se/kontakt/services/retention/adapters/ledger"
)

// testCtx returns a context bounded for one test.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newLedger opens a ledger with the default configuration on its own
// connection to srv.
func newLedger(t *testing.T, srv *natsserver.Server) *ledger.Ledger {
	t.Helper()
	l, err := ledger.New(testCtx(t), natstest.JetStream(t, srv), ledger.Config{})
	require.NoError(t, err)
	return l
}

// sample returns a plausible receipt with key.
func sample(key string) receipt.Receipt {
	caseID, _, _ := strings.Cut(key, ".")
	return receipt.Receipt{
		Kind:        receipt.KindRedaction,
		Key:         key,
		CaseID:      caseID,
		CaseNumber:  "KC-2026-000042",
		CaseType:    "felanmalan",
		Channel:     "phone",
		PlanName:    "dhp-kontaktcenter",
		PlanVersion: "2026.1",
		Rule:        "gallras-efter-2-ar",
		Reason:      "plan",
		Classes:     []string{"contact", "description"},
		At:          time.Date(2026, 3, 14, 9, 26, 53, 589793238, time.FixedZone("CET", 3600)),
	}
}

// scanAll returns every receipt in the ledger.
func scanAll(t *testing.T, l *ledger.Ledger) []receipt.Receipt {
	t.Helper()
	var out []receipt.Receipt
	require.NoError(t, l.Scan(testCtx(t), func(r receipt.Receipt) error {
		out = append(out, r)
		return nil
	}))
	return out
}

func TestChainOfReceiptsVerifies(t *testing.T) {
	srv := natstest.Embedded(t, 0)
	l := newLedger(t, srv)
	ctx := testCtx(t)

	count, head, err := ledger.Verify(ctx, l)
	require.NoError(t, err)
	require.Zero(t, count)
	require.Equal(t, receipt.GenesisPrev, head)

	const n = 25
	var recorded []receipt.Receipt
	for i := range n {
		r := sample(fmt.Sprintf("case-%03d.redaction.%d", i, i%3))
		if i%5 == 0 {
			r.Kind, r.Key, r.ArchiveSHA256 = receipt.KindArchive, fmt.Sprintf("case-%03d.archive", i), strings.Repeat("ab", 32)
		}
		got, existing, err := l.Record(ctx, r)
		require.NoError(t, err)
		require.False(t, existing)
		require.EqualValues(t, i+1, got.Seq)
		require.True(t, got.At.Equal(r.At))
		require.Equal(t, time.UTC, got.At.Location())
		if i == 0 {
			require.Equal(t, receipt.GenesisPrev, got.Prev)
		} else {
			require.Equal(t, recorded[i-1].Hash, got.Prev)
		}
		recorded = append(recorded, got)
	}

	require.Equal(t, recorded, scanAll(t, l), "Scan returns the receipts as Record returned them")
	count, head, err = ledger.Verify(ctx, l)
	require.NoError(t, err)
	require.Equal(t, n, count)
	require.Equal(t, recorded[n-1].Hash, head)

	total, err := l.Count(ctx)
	require.NoError(t, err)
	require.EqualValues(t, n, total)
}

func TestRecordIsIdempotentByKey(t *testing.T) {
	srv := natstest.Embedded(t, 0)
	l := newLedger(t, srv)
	ctx := testCtx(t)

	has, err := l.Has(ctx, "c1.deletion")
	require.NoError(t, err)
	require.False(t, has)

	first, existing, err := l.Record(ctx, sample("c1.deletion"))
	require.NoError(t, err)
	require.False(t, existing)

	again := sample("c1.deletion")
	again.Reason = "something else" // The first receipt for a key wins.
	again.At = again.At.Add(time.Hour)
	second, existing, err := l.Record(ctx, again)
	require.NoError(t, err)
	require.True(t, existing)
	require.Equal(t, first, second)

	has, err = l.Has(ctx, "c1.deletion")
	require.NoError(t, err)
	require.True(t, has)
	count, err := l.Count(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, count)
}

func TestRecordRefusesInvalidReceipts(t *testing.T) {
	srv := natstest.Embedded(t, 0)
	l := newLedger(t, srv)

	tests := []struct {
		name   string
		mutate func(*receipt.Receipt)
	}{
		{"unknown kind", func(r *receipt.Receipt) { r.Kind = "shred" }},
		{"empty key", func(r *receipt.Receipt) { r.Key = "" }},
		{"wildcard key", func(r *receipt.Receipt) { r.Key = "c1.>" }},
		{"star key", func(r *receipt.Receipt) { r.Key = "c1.*" }},
		{"empty token", func(r *receipt.Receipt) { r.Key = "c1..deletion" }},
		{"trailing dot", func(r *receipt.Receipt) { r.Key = "c1.deletion." }},
		{"space in key", func(r *receipt.Receipt) { r.Key = "c1 deletion" }},
		{"long key", func(r *receipt.Receipt) { r.Key = strings.Repeat("k", 256) }},
		{"no case id", func(r *receipt.Receipt) { r.CaseID = "" }},
		{"no time", func(r *receipt.Receipt) { r.At = time.Time{} }},
		{"archive without hash", func(r *receipt.Receipt) { r.Kind = receipt.KindArchive }},
		{"bad archive hash", func(r *receipt.Receipt) { r.ArchiveSHA256 = strings.Repeat("AB", 32) }},
		{"invalid UTF-8", func(r *receipt.Receipt) { r.Rule = "\xff" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sample("c1.deletion")
			tc.mutate(&r)
			_, _, err := l.Record(testCtx(t), r)
			require.ErrorIs(t, err, ledger.ErrInvalid)
		})
	}
	count, err := l.Count(testCtx(t))
	require.NoError(t, err)
	require.Zero(t, count)

	_, err = l.Has(testCtx(t), "c1.>")
	require.ErrorIs(t, err, ledger.ErrInvalid)
}

func TestConcurrentWritersKeepOneLinearChain(t *testing.T) {
	srv := natstest.Embedded(t, 0)
	const (
		writers  = 8
		distinct = 50
		shared   = 20
	)
	ledgers := make([]*ledger.Ledger, writers)
	for i := range ledgers {
		ledgers[i] = newLedger(t, srv) // Each on a connection of its own.
	}
	ctx := testCtx(t)

	type result struct {
		r        receipt.Receipt
		existing bool
	}
	results := make([]map[string]result, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		results[w] = map[string]result{}
		keys := make([]string, 0, distinct+shared)
		for i := range distinct {
			keys = append(keys, fmt.Sprintf("w%d-case-%02d.deletion", w, i))
		}
		for s := range shared {
			keys = append(keys, fmt.Sprintf("shared-%02d.deletion", s))
		}
		// Each writer meets the shared keys at other times and in another order.
		rand.New(rand.NewPCG(uint64(w), 1)).Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		wg.Go(func() {
			for _, key := range keys {
				r, existing, err := ledgers[w].Record(ctx, sample(key))
				if err != nil {
					errs[w] = err
					return
				}
				results[w][key] = result{r, existing}
			}
		})
	}
	wg.Wait()
	for w, err := range errs {
		require.NoError(t, err, "writer %d", w)
	}

	l := ledgers[0]
	count, err := l.Count(ctx)
	require.NoError(t, err)
	require.EqualValues(t, writers*distinct+shared, count)

	n, head, err := ledger.Verify(ctx, l)
	require.NoError(t, err)
	require.Equal(t, writers*distinct+shared, n)

	all := scanAll(t, l)
	require.Equal(t, head, all[len(all)-1].Hash)
	bySeq := map[string]receipt.Receipt{}
	for _, r := range all {
		_, dup := bySeq[r.Key]
		require.False(t, dup, "key %s recorded twice", r.Key)
		bySeq[r.Key] = r
	}
	for s := range shared {
		key := fmt.Sprintf("shared-%02d.deletion", s)
		created := 0
		for w := range writers {
			res, ok := results[w][key]
			require.True(t, ok, "writer %d has no result for %s", w, key)
			require.Equal(t, bySeq[key], res.r, "writer %d got another receipt for %s", w, key)
			if !res.existing {
				created++
			}
		}
		require.Equal(t, 1, created, "exactly one writer created %s", key)
	}
}

func TestStreamRefusesDeleteAndPurge(t *testing.T) {
	srv := natstest.Embedded(t, 0)
	js := natstest.JetStream(t, srv)
	ctx := testCtx(t)
	l, err := ledger.New(ctx, js, ledger.Config{})
	require.NoError(t, err)
	for i := range 3 {
		_, _, err := l.Record(ctx, sample(fmt.Sprintf("c%d.deletion", i)))
		require.NoError(t, err)
	}
	st, err := js.Stream(ctx, ledger.DefaultStream)
	require.NoError(t, err)

	require.Error(t, st.DeleteMsg(ctx, 2), "delete")
	require.Error(t, st.SecureDeleteMsg(ctx, 2), "secure delete")
	require.Error(t, st.Purge(ctx), "purge")
	require.Error(t, st.Purge(ctx, jetstream.WithPurgeSubject(ledger.DefaultPrefix+".c1.deletion")), "purge subject")
	require.Error(t, st.Purge(ctx, jetstream.WithPurgeKeep(1)), "purge keep")

	_, err = js.UpdateStream(ctx, jetstream.StreamConfig{
		Name:     ledger.DefaultStream,
		Subjects: []string{ledger.DefaultPrefix + ".>"},
		Storage:  jetstream.FileStorage,
	})
	require.Error(t, err, "deny delete and deny purge cannot be switched off")

	rollup := nats.NewMsg(ledger.DefaultPrefix + ".c9.deletion")
	rollup.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupAll)
	_, err = js.PublishMsg(ctx, rollup)
	require.Error(t, err, "rollup")

	_, err = js.Publish(ctx, ledger.DefaultPrefix+".c1.deletion", []byte(`{"kind":"deletion"}`))
	require.Error(t, err, "a second message for a key")

	n, _, err := ledger.Verify(ctx, l)
	require.NoError(t, err)
	require.Equal(t, 3, n)
}

func TestNewRefusesIncompatibleStream(t *testing.T) {
	tests := []struct {
		name string
		cfg  jetstream.StreamConfig
	}{
		{"max age", jetstream.StreamConfig{Subjects: []string{ledger.DefaultPrefix + ".>"}, MaxAge: 24 * time.Hour}},
		{"other subjects", jetstream.StreamConfig{Subjects: []string{ledger.DefaultPrefix + ".>", "other.>"}}},
		{"narrower subjects", jetstream.StreamConfig{Subjects: []string{ledger.DefaultPrefix + ".x.>"}}},
		{"memory", jetstream.StreamConfig{Subjects: []string{ledger.DefaultPrefix + ".>"}, Storage: jetstream.MemoryStorage}},
		{"discard old at limit", jetstream.StreamConfig{Subjects: []string{ledger.DefaultPrefix + ".>"}, MaxMsgs: 1000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := natstest.Embedded(t, 0)
			js := natstest.JetStream(t, srv)
			ctx := testCtx(t)
			tc.cfg.Name = ledger.DefaultStream
			_, err := js.CreateStream(ctx, tc.cfg)
			require.NoError(t, err)
			_, err = ledger.New(ctx, js, ledger.Config{})
			require.ErrorIs(t, err, ledger.ErrIncompatibleStream)
			require.ErrorContains(t, err, ledger.DefaultStream)
		})
	}
}

func TestNewRefusesInvalidConfig(t *testing.T) {
	srv := natstest.Embedded(t, 0)
	js := natstest.JetStream(t, srv)
	tests := []struct {
		name string
		cfg  ledger.Config
	}{
		{"wildcard prefix", ledger.Config{Prefix: "a.*"}},
		{"empty token", ledger.Config{Prefix: "a..b"}},
		{"dotted stream", ledger.Config{Stream: "A.B"}},
		{"negative replicas", ledger.Config{Replicas: -1}},
		{"negative attempts", ledger.Config{MaxAttempts: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ledger.New(testCtx(t), js, tc.cfg)
			require.ErrorIs(t, err, ledger.ErrInvalid)
		})
	}
	_, err := ledger.New(testCtx(t), nil, ledger.Config{})
	require.ErrorIs(t, err, ledger.ErrInvalid)
}

func TestScanStopsAtCallbackError(t *testing.T) {
	srv := natstest.Embedded(t, 0)
	l := newLedger(t, srv)
	ctx := testCtx(t)
	for i := range 5 {
		_, _, err := l.Record(ctx, sample(fmt.Sprintf("c%d.deletion", i)))
		require.NoError(t, err)
	}
	errStop := fmt.Errorf("stop")
	seen := 0
	err := l.Scan(ctx, func(r receipt.Receipt) error {
		seen++
		if r.Seq == 3 {
			return errStop
		}
		return nil
	})
	require.ErrorIs(t, err, errStop)
	require.Equal(t, 3, seen)
}

func TestLedgerSurvivesServerRestart(t *testing.T) {
	dir := t.TempDir()
	start := func() *natsserver.Server {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		srv, err := natsserver.Start(ctx, natsserver.Config{StoreDir: dir, InProcessOnly: true})
		require.NoError(t, err)
		t.Cleanup(srv.Shutdown)
		return srv
	}

	srv := start()
	l := newLedger(t, srv)
	ctx := testCtx(t)
	for i := range 10 {
		_, _, err := l.Record(ctx, sample(fmt.Sprintf("c%d.deletion", i)))
		require.NoError(t, err)
	}
	_, headBefore, err := ledger.Verify(ctx, l)
	require.NoError(t, err)
	srv.Shutdown()

	srv = start()
	l = newLedger(t, srv)
	n, head, err := ledger.Verify(ctx, l)
	require.NoError(t, err)
	require.Equal(t, 10, n)
	require.Equal(t, headBefore, head)

	again, existing, err := l.Record(ctx, sample("c3.deletion"))
	require.NoError(t, err)
	require.True(t, existing, "keys are still known after the restart")
	require.EqualValues(t, 4, again.Seq)

	next, existing, err := l.Record(ctx, sample("c10.deletion"))
	require.NoError(t, err)
	require.False(t, existing)
	require.Equal(t, headBefore, next.Prev, "the chain continues where it stopped")
	require.EqualValues(t, 11, next.Seq)

	n, _, err = ledger.Verify(ctx, l)
	require.NoError(t, err)
	require.Equal(t, 11, n)
}

// TestRecordBatchKeepsOneReceiptPerKeyAndOneChain records batches from
// four writers at once, with keys that overlap between writers and a
// batch repeated after it was written (a projector applying a batch again
// after a crash): every key has one receipt and the chain verifies.
func TestRecordBatchKeepsOneReceiptPerKeyAndOneChain(t *testing.T) {
	srv := natstest.Embedded(t, 0)
	ctx := testCtx(t)
	batch := func(from, n int) []receipt.Receipt {
		rs := make([]receipt.Receipt, n)
		for i := range rs {
			rs[i] = sample(fmt.Sprintf("case%04d.redaction.%d", from+i, from+i))
		}
		return rs
	}
	first := newLedger(t, srv)
	require.NoError(t, first.RecordBatch(ctx, batch(0, 40)))
	got := scanAll(t, first)
	require.Len(t, got, 40)
	for i, r := range got {
		require.Equal(t, fmt.Sprintf("case%04d.redaction.%d", i, i), r.Key, "log order is batch order")
	}

	// Again, as after a crash: nothing new.
	require.NoError(t, first.RecordBatch(ctx, batch(0, 40)))
	require.Len(t, scanAll(t, first), 40)

	// Four writers on their own connections, overlapping by half.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for w := range 4 {
		l := newLedger(t, srv)
		wg.Go(func() {
			for b := range 5 {
				if err := l.RecordBatch(ctx, batch(40+w*50+b*10-w*25, 20)); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	all := scanAll(t, first)
	keys := map[string]int{}
	for _, r := range all {
		keys[r.Key]++
	}
	for k, n := range keys {
		require.Equal(t, 1, n, "key %s", k)
	}
	want := map[string]bool{}
	for w := range 4 {
		for b := range 5 {
			for _, r := range batch(40+w*50+b*10-w*25, 20) {
				want[r.Key] = true
			}
		}
	}
	require.Len(t, keys, 40+len(want))
	count, _, err := ledger.Verify(ctx, first)
	require.NoError(t, err)
	require.Equal(t, len(all), count)
}

// TestRecordBatchLargerThanOneAtomicBatch records more receipts than one
// JetStream atomic batch may hold, half of them already there: the batch
// is split, the chain runs on from one part to the next, and every key
// has one receipt, returned as stored.
func TestRecordBatchLargerThanOneAtomicBatch(t *testing.T) {
	srv := natstest.Embedded(t, 0)
	ctx := testCtx(t)
	l := newLedger(t, srv)
	n := jsbatch.MaxMessages + 200
	rs := make([]receipt.Receipt, n)
	for i := range rs {
		rs[i] = sample(fmt.Sprintf("case%05d.redaction.%d", i, i))
	}
	stored, err := l.RecordBatchStored(ctx, rs)
	require.NoError(t, err)
	require.Len(t, stored, n)
	for i, r := range stored {
		require.Equal(t, rs[i].Key, r.Key)
		require.EqualValues(t, i+1, r.Seq, "consecutive, in the order given")
		if i > 0 {
			require.Equal(t, stored[i-1].Hash, r.Prev)
		}
	}
	// The second half again, with new keys after it: the first part is
	// refused (its keys have receipts) and recorded one by one.
	again := append(slices.Clone(rs[n/2:]), sample("late.redaction.1"))
	stored2, err := l.RecordBatchStored(ctx, again)
	require.NoError(t, err)
	require.Equal(t, stored[n/2:], stored2[:len(stored2)-1], "existing receipts come back as stored")
	count, _, err := ledger.Verify(ctx, l)
	require.NoError(t, err)
	require.Equal(t, n+1, count)
}

// TestRestoreCarriesReceiptsVerbatim: receipts recorded in one ledger,
// kept as RecordBatchStored returned them (what the shred journal
// keeps), are put back into another ledger that holds only the first few
// (an older backup), and that ledger then verifies to the same head with
// the same messages, byte for byte.
func TestRestoreCarriesReceiptsVerbatim(t *testing.T) {
	ctx := testCtx(t)
	live := newLedger(t, natstest.Embedded(t, 0))
	var stored []receipt.Receipt
	for i := range 3 {
		var batch []receipt.Receipt
		for j := range 4 {
			batch = append(batch, sample(fmt.Sprintf("c%d.redaction.%d", i, j)))
		}
		got, err := live.RecordBatchStored(ctx, batch)
		require.NoError(t, err)
		require.Len(t, got, len(batch))
		stored = append(stored, got...)
	}
	// A key that already has its receipt returns that one.
	again, err := live.RecordBatchStored(ctx, []receipt.Receipt{sample("c0.redaction.0")})
	require.NoError(t, err)
	require.Equal(t, stored[0], again[0])
	inLedger := scanAll(t, live)
	require.Equal(t, inLedger, stored, "RecordBatchStored returns the receipts as stored")
	wantN, wantHead, err := ledger.Verify(ctx, live)
	require.NoError(t, err)

	srv := natstest.Embedded(t, 0)
	restored := newLedger(t, srv)
	js := natstest.JetStream(t, srv)
	data := func(r receipt.Receipt) []byte {
		b, err := json.Marshal(r)
		require.NoError(t, err)
		return b
	}
	// The older copy holds the first five.
	for _, r := range stored[:5] {
		_, added, err := restored.Restore(ctx, data(r))
		require.NoError(t, err)
		require.True(t, added)
	}
	// Out of chain order is refused and changes nothing.
	_, _, err = restored.Restore(ctx, data(stored[7]))
	require.ErrorIs(t, err, ledger.ErrNotNext)
	// An altered receipt is refused.
	bad := stored[5]
	bad.Rule = "annan-regel"
	_, _, err = restored.Restore(ctx, data(bad))
	require.ErrorIs(t, err, ledger.ErrChainBroken)
	// One already there is recognised, not added.
	_, added, err := restored.Restore(ctx, data(stored[2]))
	require.NoError(t, err)
	require.False(t, added)
	for _, r := range stored[5:] {
		_, added, err := restored.Restore(ctx, data(r))
		require.NoError(t, err)
		require.True(t, added, r.Key)
	}
	n, head, err := ledger.Verify(ctx, restored)
	require.NoError(t, err)
	require.Equal(t, wantN, n)
	require.Equal(t, wantHead, head)
	got, err := restored.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, wantHead, got)
	// Byte for byte: every stored message is what the live ledger holds.
	st, err := js.Stream(ctx, ledger.DefaultStream)
	require.NoError(t, err)
	for i, r := range inLedger {
		m, err := st.GetMsg(ctx, uint64(i+1))
		require.NoError(t, err)
		require.Equal(t, string(data(r)), string(m.Data), "receipt %d", i)
	}
	// A receipt for a key that holds another one is refused.
	other := newLedger(t, natstest.Embedded(t, 0))
	foreign, err := other.RecordBatchStored(ctx, []receipt.Receipt{sample("x.redaction.1"), sample("c0.redaction.0")})
	require.NoError(t, err)
	_, _, err = restored.Restore(ctx, data(foreign[1]))
	require.ErrorIs(t, err, ledger.ErrChainBroken)
}
