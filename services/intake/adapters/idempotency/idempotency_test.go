package idempotency_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kontakt-se/kontakt/pkg/natstest"
	"github.com/kontakt-se/kontakt/services/intake/adapters/idempotency"
	"github.com/kontakt-se/kontakt/services/intake/app"
)

// Store must satisfy the port the app layer uses.
var _ app.Idempotency = (*idempotency.Store)(nil)

// key looks like what intake passes: a namespace and a hex hash.
const key = "form.3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea"

func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	return natstest.JetStream(t, natstest.Embedded(t, 0))
}

func newStore(t *testing.T, js jetstream.JetStream, cfg idempotency.Config) *idempotency.Store {
	t.Helper()
	s, err := idempotency.New(t.Context(), js, cfg)
	if err != nil {
		t.Fatalf("idempotency.New: %v", err)
	}
	return s
}

// claimedAt has no monotonic reading, so records compare equal after a
// round trip through JSON.
var claimedAt = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func pending(payloadHash string) app.IdempotencyRecord {
	return app.IdempotencyRecord{PayloadHash: payloadHash, CaseID: "case-1", ClaimedAt: claimedAt}
}

func TestClaimOnceThenSeeTheFirstClaim(t *testing.T) {
	s := newStore(t, startJetStream(t), idempotency.Config{})

	first, claimed, err := s.Claim(t.Context(), key, pending("hash-a"))
	if err != nil || !claimed {
		t.Fatalf("first Claim = %+v, %v, %v; want claimed", first, claimed, err)
	}
	if first.Revision == 0 || first.PayloadHash != "hash-a" || first.CaseID != "case-1" || first.Done {
		t.Fatalf("first Claim returned %+v", first)
	}

	second, claimed, err := s.Claim(t.Context(), key, pending("hash-b"))
	if err != nil || claimed {
		t.Fatalf("second Claim = %+v, %v, %v; want the existing record", second, claimed, err)
	}
	if second != first {
		t.Fatalf("second Claim returned %+v, want the first record %+v", second, first)
	}

	got, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if got != first {
		t.Fatalf("Get = %+v, want %+v", got, first)
	}
	if !got.ClaimedAt.Equal(claimedAt) {
		t.Fatalf("ClaimedAt = %v, want %v: a claim's age decides when a retry may take it over", got.ClaimedAt, claimedAt)
	}
}

func TestConcurrentClaimsHaveExactlyOneWinner(t *testing.T) {
	const claimers = 50
	s := newStore(t, startJetStream(t), idempotency.Config{})

	type result struct {
		rec     app.IdempotencyRecord
		claimed bool
		err     error
	}
	results := make([]result, claimers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range claimers {
		wg.Go(func() {
			<-start
			rec, claimed, err := s.Claim(t.Context(), key, pending(fmt.Sprintf("hash-%d", i)))
			results[i] = result{rec, claimed, err}
		})
	}
	close(start)
	wg.Wait()

	winners := 0
	var winner app.IdempotencyRecord
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("claimer %d: %v", i, r.err)
		}
		if r.claimed {
			winners++
			winner = r.rec
			if r.rec.PayloadHash != fmt.Sprintf("hash-%d", i) {
				t.Errorf("winner %d got back %+v", i, r.rec)
			}
		}
	}
	if winners != 1 {
		t.Fatalf("%d claims won, want exactly 1", winners)
	}
	for i, r := range results {
		if !r.claimed && r.rec != winner {
			t.Errorf("claimer %d saw %+v, want the winner's record %+v", i, r.rec, winner)
		}
	}
}

func TestCompleteIsCompareAndSet(t *testing.T) {
	s := newStore(t, startJetStream(t), idempotency.Config{})
	claimed, _, err := s.Claim(t.Context(), key, pending("hash-a"))
	if err != nil {
		t.Fatal(err)
	}

	registeredAt := time.Date(2026, time.March, 2, 9, 15, 30, 123456789, time.FixedZone("CET", 3600))
	done := claimed
	done.CaseNumber = "KC-2026-000042"
	done.RegisteredAt = registeredAt
	if err := s.Complete(t.Context(), key, done); err != nil {
		t.Fatalf("Complete: %v", err)
	}

	got, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Done || got.CaseNumber != "KC-2026-000042" || !got.RegisteredAt.Equal(registeredAt) ||
		got.PayloadHash != "hash-a" || got.CaseID != "case-1" {
		t.Fatalf("after Complete Get = %+v", got)
	}
	if got.Revision <= claimed.Revision {
		t.Fatalf("revision after Complete = %d, want more than %d", got.Revision, claimed.Revision)
	}

	// The claim's revision is stale now.
	stale := done
	stale.CaseNumber = "KC-2026-000043"
	if err := s.Complete(t.Context(), key, stale); !errors.Is(err, app.ErrRevisionMismatch) {
		t.Fatalf("Complete with a stale revision: err = %v, want app.ErrRevisionMismatch", err)
	}
	if again, _ := s.Get(t.Context(), key); again != got {
		t.Fatalf("stale Complete changed the record to %+v", again)
	}

	// A claim after completion returns the answer to repeat.
	repeat, claimedAgain, err := s.Claim(t.Context(), key, pending("hash-a"))
	if err != nil || claimedAgain || repeat != got {
		t.Fatalf("Claim after Complete = %+v, %v, %v; want %+v, false", repeat, claimedAgain, err, got)
	}

	// Completing a record that does not exist fails instead of creating it.
	missing := done
	missing.Revision = got.Revision
	if err := s.Complete(t.Context(), "form.missing", missing); !errors.Is(err, app.ErrRevisionMismatch) {
		t.Fatalf("Complete of a missing record: err = %v, want app.ErrRevisionMismatch", err)
	}
	missing.Revision = 0
	if err := s.Complete(t.Context(), "form.missing", missing); err == nil {
		t.Fatal("Complete without a revision succeeded")
	}
	if _, err := s.Get(t.Context(), "form.missing"); !errors.Is(err, app.ErrNotFound) {
		t.Fatalf("failed Complete created a record: Get err = %v", err)
	}
}

func TestGetUnknownKeyIsNotFound(t *testing.T) {
	s := newStore(t, startJetStream(t), idempotency.Config{})
	if _, err := s.Get(t.Context(), key); !errors.Is(err, app.ErrNotFound) {
		t.Fatalf("Get of an unknown key: err = %v, want app.ErrNotFound", err)
	}
}

func TestInvalidKeysAreRefused(t *testing.T) {
	s := newStore(t, startJetStream(t), idempotency.Config{})
	rec := pending("hash-a")
	rec.Revision = 1
	for _, bad := range []string{
		"",
		"has space",
		"form.*",
		"form.>",
		".leading",
		"trailing.",
		"double..dot",
		"ünicode",
		"19121212-1212@example.se",
		strings.Repeat("a", 257),
	} {
		if _, _, err := s.Claim(t.Context(), bad, rec); !errors.Is(err, jetstream.ErrInvalidKey) {
			t.Errorf("Claim(%q): err = %v, want jetstream.ErrInvalidKey", bad, err)
		}
		if err := s.Complete(t.Context(), bad, rec); !errors.Is(err, jetstream.ErrInvalidKey) {
			t.Errorf("Complete(%q): err = %v, want jetstream.ErrInvalidKey", bad, err)
		}
		if _, err := s.Get(t.Context(), bad); !errors.Is(err, jetstream.ErrInvalidKey) || errors.Is(err, app.ErrNotFound) {
			t.Errorf("Get(%q): err = %v, want jetstream.ErrInvalidKey", bad, err)
		}
	}
	for _, good := range []string{"a", "form/x=y_z-1.2", strings.Repeat("a", 256)} {
		if _, claimed, err := s.Claim(t.Context(), good, rec); err != nil || !claimed {
			t.Errorf("Claim(%q) = %v, %v; want claimed", good, claimed, err)
		}
	}
}

func TestBucketKeepsRecordsAtLeastSevenDays(t *testing.T) {
	js := startJetStream(t)
	// A bucket someone created by hand with a short TTL is raised again.
	if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: idempotency.DefaultBucket, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	newStore(t, js, idempotency.Config{})
	assertTTL(t, js, idempotency.DefaultBucket, idempotency.DefaultTTL)

	newStore(t, js, idempotency.Config{Bucket: "LONGER", TTL: 30 * 24 * time.Hour})
	assertTTL(t, js, "LONGER", 30*24*time.Hour)

	newStore(t, js, idempotency.Config{Bucket: "EXACTLY_SEVEN", TTL: idempotency.MinTTL})
	assertTTL(t, js, "EXACTLY_SEVEN", 7*24*time.Hour)
}

func assertTTL(t *testing.T, js jetstream.JetStream, bucket string, want time.Duration) {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != want {
		t.Errorf("bucket %s: KV TTL = %s, want %s", bucket, st.TTL(), want)
	}
	stream, err := js.Stream(t.Context(), "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if maxAge := info.Config.MaxAge; maxAge < 7*24*time.Hour || maxAge != want {
		t.Errorf("bucket %s: stream MaxAge = %s, want %s (at least seven days)", bucket, maxAge, want)
	}
	if info.Config.Storage != jetstream.FileStorage {
		t.Errorf("bucket %s: storage = %s, want file", bucket, info.Config.Storage)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	js := startJetStream(t)
	for name, cfg := range map[string]idempotency.Config{
		"TTL below seven days": {TTL: 7*24*time.Hour - time.Second},
		"negative TTL":         {TTL: -time.Hour},
		"bucket with dot":      {Bucket: "A.B"},
		"negative replicas":    {Replicas: -1},
		"too many replicas":    {Replicas: 6},
	} {
		if _, err := idempotency.New(t.Context(), js, cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	if _, err := idempotency.New(t.Context(), nil, idempotency.Config{}); err == nil {
		t.Error("New accepted a nil JetStream")
	}
}

// TestReleaseLetsARetryClaimAtOnce releases a failed submission's claim:
// the next claim wins at once. A release of a record that moved on
// (completed, or claimed again since) changes nothing.
func TestReleaseLetsARetryClaimAtOnce(t *testing.T) {
	s := newStore(t, startJetStream(t), idempotency.Config{})
	ctx := t.Context()
	first, claimed, err := s.Claim(ctx, key, pending("hash-a"))
	if err != nil || !claimed {
		t.Fatalf("Claim = %v, %v", claimed, err)
	}
	if err := s.Release(ctx, key, first); err != nil {
		t.Fatalf("Release: %v", err)
	}
	second, claimed, err := s.Claim(ctx, key, pending("hash-a"))
	if err != nil || !claimed {
		t.Fatalf("Claim after Release = %+v, %v, %v; want a fresh claim", second, claimed, err)
	}
	// The old owner releasing again must not delete the new claim.
	if err := s.Release(ctx, key, first); err != nil {
		t.Fatalf("stale Release: %v", err)
	}
	got, err := s.Get(ctx, key)
	if err != nil || got.Revision != second.Revision {
		t.Fatalf("after a stale Release Get = %+v, %v; want the second claim %+v", got, err, second)
	}
	if err := s.Complete(ctx, key, second); err != nil {
		t.Fatal(err)
	}
	done, err := s.Get(ctx, key)
	if err != nil || !done.Done {
		t.Fatalf("Get = %+v, %v", done, err)
	}
	if err := s.Release(ctx, key, done); err != nil {
		t.Fatalf("Release of a done record: %v", err)
	}
	if again, err := s.Get(ctx, key); err != nil || !again.Done {
		t.Fatalf("a done record must survive Release: %+v, %v", again, err)
	}
}

// TestConcurrentSubmissionsShareBatches claims and completes many keys at
// once, as concurrent form submissions do: every claim wins its own key,
// every completion lands, and writes queued behind one in flight were
// stored together in atomic batches rather than one disk sync each.
func TestConcurrentSubmissionsShareBatches(t *testing.T) {
	const forms = 64
	js := startJetStream(t)
	s := newStore(t, js, idempotency.Config{})
	ctx := t.Context()
	start := make(chan struct{})
	errs := make([]error, forms)
	var wg sync.WaitGroup
	for i := range forms {
		wg.Go(func() {
			<-start
			k := fmt.Sprintf("form.k%02d", i)
			rec, claimed, err := s.Claim(ctx, k, pending(k))
			switch {
			case err != nil:
				errs[i] = err
				return
			case !claimed:
				errs[i] = fmt.Errorf("claim of fresh key %s lost to %+v", k, rec)
				return
			}
			rec.CaseNumber = fmt.Sprintf("KC-2026-%06d", i)
			errs[i] = s.Complete(ctx, k, rec)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("form %d: %v", i, err)
		}
	}

	st, err := js.Stream(ctx, "KV_"+idempotency.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	batches := map[string]bool{}
	for i := range forms {
		k := fmt.Sprintf("form.k%02d", i)
		got, err := s.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Done || got.CaseNumber != fmt.Sprintf("KC-2026-%06d", i) || got.PayloadHash != k {
			t.Fatalf("record %s = %+v", k, got)
		}
		m, err := st.GetMsg(ctx, got.Revision)
		if err != nil {
			t.Fatal(err)
		}
		if id := m.Header.Get("Nats-Batch-Id"); id != "" {
			batches[id] = true
		}
	}
	if len(batches) == 0 {
		t.Fatalf("none of %d concurrent completions was stored in a batch", forms)
	}
	t.Logf("%d completions stored in %d batches (and alone)", forms, len(batches))
}
