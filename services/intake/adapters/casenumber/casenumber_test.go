package casenumber_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kontakt-se/kontakt/pkg/natsserver"
	"github.com/kontakt-se/kontakt/pkg/natstest"
	"github.com/kontakt-se/kontakt/services/intake/adapters/casenumber"
	"github.com/kontakt-se/kontakt/services/intake/app"
)

// Numbers must satisfy the port the app layer uses.
var _ app.CaseNumbers = (*casenumber.Numbers)(nil)

// midsummer is an arbitrary instant well inside 2026 in every time zone.
func midsummer() time.Time { return time.Date(2026, time.June, 19, 12, 0, 0, 0, time.UTC) }

func startServer(t *testing.T) *natsserver.Server {
	t.Helper()
	return natstest.Embedded(t, 0)
}

// jetStream opens a new connection to srv, so that each caller gets its own
// client as separate intake instances would.
func jetStream(t *testing.T, srv *natsserver.Server) jetstream.JetStream {
	t.Helper()
	return natstest.JetStream(t, srv)
}

func newNumbers(t *testing.T, js jetstream.JetStream, cfg casenumber.Config) *casenumber.Numbers {
	t.Helper()
	n, err := casenumber.New(t.Context(), js, cfg)
	if err != nil {
		t.Fatalf("casenumber.New: %v", err)
	}
	return n
}

func next(t *testing.T, n *casenumber.Numbers, at time.Time, caseID string) string {
	t.Helper()
	number, err := n.Next(t.Context(), at, caseID)
	if err != nil {
		t.Fatalf("Next(%s, %s): %v", at.Format(time.RFC3339), caseID, err)
	}
	return number
}

func wantLookup(t *testing.T, n *casenumber.Numbers, number, wantCaseID string) {
	t.Helper()
	got, err := n.Lookup(t.Context(), number)
	if err != nil {
		t.Fatalf("Lookup(%s): %v", number, err)
	}
	if got != wantCaseID {
		t.Fatalf("Lookup(%s) = %q, want %q", number, got, wantCaseID)
	}
}

func TestNextAllocatesSequentialNumbers(t *testing.T) {
	n := newNumbers(t, jetStream(t, startServer(t)), casenumber.Config{})
	for i := 1; i <= 5; i++ {
		caseID := fmt.Sprintf("case-%d", i)
		got := next(t, n, midsummer(), caseID)
		if want := fmt.Sprintf("KC-2026-%06d", i); got != want {
			t.Fatalf("number %d = %s, want %s", i, got, want)
		}
		wantLookup(t, n, got, caseID)
	}
}

func TestNewYearStartsAtOneInSwedishTime(t *testing.T) {
	n := newNumbers(t, jetStream(t, startServer(t)), casenumber.Config{})
	// 23:59:59 on New Year's Eve in Stockholm (CET, UTC+1).
	lastSecond := time.Date(2026, time.December, 31, 22, 59, 59, 0, time.UTC)
	// 00:00 on New Year's Day in Stockholm, still 2026 in UTC.
	midnight := time.Date(2026, time.December, 31, 23, 0, 0, 0, time.UTC)

	steps := []struct {
		at   time.Time
		want string
	}{
		{lastSecond, "KC-2026-000001"},
		{lastSecond, "KC-2026-000002"},
		{midnight, "KC-2027-000001"},
		{midnight.Add(time.Hour), "KC-2027-000002"},
		// A late registration for the old year continues that year's series.
		{lastSecond, "KC-2026-000003"},
	}
	for i, s := range steps {
		if got := next(t, n, s.at, fmt.Sprintf("case-%d", i)); got != s.want {
			t.Fatalf("step %d at %s: got %s, want %s", i, s.at.Format(time.RFC3339), got, s.want)
		}
	}
}

func TestConcurrentInstancesAllocateEveryNumberOnce(t *testing.T) {
	const (
		instances    = 3
		goroutines   = 100
		perGoroutine = 3
		total        = goroutines * perGoroutine
	)
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// Three intake instances on three connections, started at the same time
	// so that they also race to create the bucket.
	nums := make([]*casenumber.Numbers, instances)
	newErrs := make([]error, instances)
	var wg sync.WaitGroup
	for i := range instances {
		js := jetStream(t, srv)
		wg.Go(func() { nums[i], newErrs[i] = casenumber.New(ctx, js, casenumber.Config{}) })
	}
	wg.Wait()
	if err := errors.Join(newErrs...); err != nil {
		t.Fatalf("casenumber.New: %v", err)
	}

	got := make([][]string, goroutines)
	errs := make([]error, goroutines)
	start := make(chan struct{})
	for g := range goroutines {
		n := nums[g%instances]
		wg.Go(func() {
			<-start
			for k := range perGoroutine {
				number, err := n.Next(ctx, midsummer(), fmt.Sprintf("case-%d-%d", g, k))
				if err != nil {
					errs[g] = fmt.Errorf("goroutine %d, number %d: %w", g, k, err)
					return
				}
				got[g] = append(got[g], number)
			}
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	owner := make(map[uint64]string, total) // sequence -> case id
	for g, numbers := range got {
		var prev uint64
		for k, number := range numbers {
			seqText, ok := strings.CutPrefix(number, "KC-2026-")
			if !ok {
				t.Fatalf("unexpected number %q", number)
			}
			seq, err := strconv.ParseUint(seqText, 10, 64)
			if err != nil {
				t.Fatalf("unexpected number %q: %v", number, err)
			}
			if seq <= prev {
				t.Errorf("goroutine %d got %s after sequence %d: numbers must increase", g, number, prev)
			}
			prev = seq
			caseID := fmt.Sprintf("case-%d-%d", g, k)
			if other, dup := owner[seq]; dup {
				t.Fatalf("%s allocated twice: to %s and %s", number, other, caseID)
			}
			owner[seq] = caseID
		}
	}
	if len(owner) != total {
		t.Fatalf("allocated %d distinct numbers, want %d", len(owner), total)
	}
	for seq := uint64(1); seq <= total; seq++ {
		caseID, ok := owner[seq]
		if !ok {
			t.Fatalf("gap: KC-2026-%06d was never allocated", seq)
		}
		// Any instance can look up any number.
		wantLookup(t, nums[int(seq)%instances], fmt.Sprintf("KC-2026-%06d", seq), caseID)
	}
	// The next allocation continues after the last one.
	if number := next(t, nums[0], midsummer(), "case-after"); number != "KC-2026-000301" {
		t.Fatalf("after %d numbers got %s, want KC-2026-000301", total, number)
	}
}

// Lookup finds every number of many blocks of different sizes, from both
// ends and the middle of the binary search.
func TestLookupAcrossManyBlocks(t *testing.T) {
	js := jetStream(t, startServer(t))
	n := newNumbers(t, js, casenumber.Config{})
	var want []string
	for size := 1; size <= 40; size++ {
		reqs := make([]app.Allocation, size%7+1)
		for i := range reqs {
			reqs[i] = app.Allocation{At: midsummer(), CaseID: fmt.Sprintf("case-%d", len(want)+i+1)}
		}
		got, err := n.Allocate(t.Context(), reqs)
		if err != nil {
			t.Fatal(err)
		}
		// Another year between the blocks, so the year's blocks are not
		// contiguous in the stream.
		if _, err := n.Next(t.Context(), midsummer().AddDate(1, 0, 0), fmt.Sprintf("next-year-%d", size)); err != nil {
			t.Fatal(err)
		}
		for i := range got {
			want = append(want, reqs[i].CaseID)
		}
	}
	for i, caseID := range want {
		wantLookup(t, n, fmt.Sprintf("KC-2026-%06d", i+1), caseID)
	}
	if _, err := n.Lookup(t.Context(), fmt.Sprintf("KC-2026-%06d", len(want)+1)); !errors.Is(err, app.ErrNotFound) {
		t.Fatalf("Lookup past the last block: err = %v, want app.ErrNotFound", err)
	}
}

func TestLookupRejectsMalformedAndUnknownNumbers(t *testing.T) {
	n := newNumbers(t, jetStream(t, startServer(t)), casenumber.Config{})
	known := next(t, n, midsummer(), "case-1")
	wantLookup(t, n, known, "case-1")

	for _, number := range []string{
		"KC-2026-000002",                     // well-formed, never allocated
		"KC-2025-000001",                     // another year
		"",                                   // empty
		"KC-2026-00001",                      // too few digits
		"KC-2026-0000001",                    // superfluous leading zero
		"KC-2026-000000",                     // zero is never allocated
		"kc-2026-000001",                     // wrong case
		"XX-2026-000001",                     // wrong prefix
		"KCX-2026-000001",                    // prefix extended
		"KC-26-000001",                       // two-digit year
		"KC-02026-000001",                    // five-digit year
		"KC-0999-000001",                     // year with leading zero
		"KC-2026-000001 ",                    // trailing space
		" KC-2026-000001",                    // leading space
		"KC-2026-000001\n",                   // trailing newline
		"KC-2026-+00001",                     // sign
		"KC-2026--00001",                     // extra dash
		"KC-2026-000001-1",                   // extra part
		"KC-2026-00000a",                     // letter
		"KC-2026-000001.x",                   // KV token separator
		"KC-2026-000001.>",                   // wildcard
		"KC-2026-*",                          // wildcard
		"KC-2026",                            // no sequence
		"KC--000001",                         // no year
		"KC-2026-٠٠٠٠٠١",                     // Arabic-Indic digits
		"KC-2026-000001\x00",                 // NUL
		"KC-2026-" + strings.Repeat("9", 21), // overflow
		"KC-2026-" + strings.Repeat("1", 10000),
		"../counter.2026",
		"counter.2026",
	} {
		caseID, err := n.Lookup(t.Context(), number)
		if !errors.Is(err, app.ErrNotFound) {
			t.Errorf("Lookup(%q) = %q, %v; want app.ErrNotFound", number, caseID, err)
		}
	}
}

func TestCustomPrefixAndLocation(t *testing.T) {
	js := jetStream(t, startServer(t))
	n := newNumbers(t, js, casenumber.Config{Stream: "CUSTOM_NUMBERS", Prefix: "SBK", Location: time.UTC})
	// 00:30 on New Year's Day in Stockholm is still the old year in UTC.
	got := next(t, n, time.Date(2026, time.December, 31, 23, 30, 0, 0, time.UTC), "case-1")
	if got != "SBK-2026-000001" {
		t.Fatalf("got %s, want SBK-2026-000001", got)
	}
	wantLookup(t, n, got, "case-1")
	if _, err := n.Lookup(t.Context(), "KC-2026-000001"); !errors.Is(err, app.ErrNotFound) {
		t.Fatalf("Lookup with the default prefix: err = %v, want app.ErrNotFound", err)
	}
	if _, err := js.Stream(t.Context(), "CUSTOM_NUMBERS"); err != nil {
		t.Fatalf("configured stream: %v", err)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	js := jetStream(t, startServer(t))
	for name, cfg := range map[string]casenumber.Config{
		"lower-case prefix": {Prefix: "kc"},
		"prefix with dash":  {Prefix: "K-C"},
		"prefix with dot":   {Prefix: "K.C"},
		"non-ASCII prefix":  {Prefix: "KÖ"},
		"long prefix":       {Prefix: "ABCDEFGHIJK"},
		"stream with dot":   {Stream: "A.B"},
		"negative replicas": {Replicas: -1},
		"too many replicas": {Replicas: 7},
	} {
		if _, err := casenumber.New(t.Context(), js, cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	if _, err := casenumber.New(t.Context(), nil, casenumber.Config{}); err == nil {
		t.Error("New accepted a nil JetStream")
	}
}

func TestNextRejectsBadInput(t *testing.T) {
	n := newNumbers(t, jetStream(t, startServer(t)), casenumber.Config{})
	if _, err := n.Next(t.Context(), midsummer(), ""); err == nil {
		t.Error("Next accepted an empty case id")
	}
	if _, err := n.Next(t.Context(), time.Time{}, "case-1"); err == nil {
		t.Error("Next accepted the zero time")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := n.Next(ctx, midsummer(), "case-1"); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with a cancelled context: err = %v, want context.Canceled", err)
	}
	// None of the refused calls used up a number.
	if got := next(t, n, midsummer(), "case-1"); got != "KC-2026-000001" {
		t.Fatalf("got %s, want KC-2026-000001", got)
	}
}

// Blocks can be neither deleted nor purged: a lost block would hand its
// numbers out again.
func TestBlocksCannotBeRemoved(t *testing.T) {
	js := jetStream(t, startServer(t))
	n := newNumbers(t, js, casenumber.Config{})
	first := next(t, n, midsummer(), "case-1")
	st, err := js.Stream(t.Context(), casenumber.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(t.Context()); err == nil {
		t.Fatal("the stream allowed a purge")
	}
	if err := st.DeleteMsg(t.Context(), 1); err == nil {
		t.Fatal("the stream allowed deleting a block")
	}
	wantLookup(t, n, first, "case-1")
	if got := next(t, n, midsummer(), "case-2"); got != "KC-2026-000002" {
		t.Fatalf("got %s, want KC-2026-000002", got)
	}
}

// An instance whose cached head is stale (another instance allocated
// since) loses one compare-and-set and continues after the other's block.
func TestStaleHeadIsRefreshed(t *testing.T) {
	srv := startServer(t)
	a := newNumbers(t, jetStream(t, srv), casenumber.Config{})
	b := newNumbers(t, jetStream(t, srv), casenumber.Config{})
	if got := next(t, a, midsummer(), "a-1"); got != "KC-2026-000001" {
		t.Fatal(got)
	}
	if got := next(t, b, midsummer(), "b-1"); got != "KC-2026-000002" {
		t.Fatal(got)
	}
	if got := next(t, a, midsummer(), "a-2"); got != "KC-2026-000003" {
		t.Fatalf("a continued from its stale head: %s", got)
	}
	wantLookup(t, b, "KC-2026-000003", "a-2")
}
