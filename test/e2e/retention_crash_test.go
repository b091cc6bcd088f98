package e2e

// TestRetentionSurvivesKill9: the retention sweeper and its ledger survive
// SIGKILL in the middle of a mass redaction. Thousands of cases are
// registered on day 0; the binary is started again 91 days later (by the
// development clock offset), so every case is past the 90-day rule for
// personal data at once. It is killed with SIGKILL while the sweeper is
// appending PersonalDataRedacted events, started again and killed while the
// projector is writing receipts to the ledger, and started a last time.
// Then every case must have been redacted exactly once, with exactly one
// receipt, on a hash chain that verifies.
//
// KONTAKT_CRASH_CASES overrides the number of cases (default 10000), and
// KONTAKT_CRASH_DEADLINE the time each phase may take (default 5m).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/status"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
)

// Names of the retention ledger, as services/retention/adapters/ledger and
// pkg/receipt document them, and of the event the sweeper appends.
const (
	crashLedgerStream       = "KONTAKT_RETENTION_LEDGER"
	crashLedgerPrefix       = "kontakt.retention.ledger."
	crashRedactedType       = "kontakt.case.v1.PersonalDataRedacted"
	crashGenesisPrev        = "0000000000000000000000000000000000000000000000000000000000000000"
	crashDefaultCases       = 10000
	crashWorkers            = 64
	crashConns              = 4
	crashKillLowPercent     = 10
	crashKillHighPercent    = 60
	crashDefaultDeadline    = 5 * time.Minute
	crashLedgerSettleWindow = 3 * time.Second
	crashProgressEvery      = 15 * time.Second
)

// crashRetentionConfig is the configuration of every start after day 0:
// 91 days later, a sweep every 200 ms.
const crashRetentionConfig = "retention:\n  dev_clock_offset: 2184h\n  sweep_interval: 200ms\n"

// crashDeadline is how long each phase may take to reach its mark:
// KONTAKT_CRASH_DEADLINE (a Go duration) or crashDefaultDeadline. It is a
// deadline, not a speed assertion.
func crashDeadline(t *testing.T) time.Duration {
	t.Helper()
	s := os.Getenv("KONTAKT_CRASH_DEADLINE")
	if s == "" {
		return crashDefaultDeadline
	}
	d, err := time.ParseDuration(s)
	require.NoError(t, err, "KONTAKT_CRASH_DEADLINE")
	require.Positive(t, d, "KONTAKT_CRASH_DEADLINE")
	return d
}

// crashCaseCount is how many cases the test registers: KONTAKT_CRASH_CASES
// or crashDefaultCases.
func crashCaseCount(t *testing.T) int {
	t.Helper()
	s := os.Getenv("KONTAKT_CRASH_CASES")
	if s == "" {
		return crashDefaultCases
	}
	n, err := strconv.Atoi(s)
	require.NoError(t, err, "KONTAKT_CRASH_CASES")
	require.Positive(t, n, "KONTAKT_CRASH_CASES")
	return n
}

// crashStart starts kontakt on dataDir with the routing queues, extra and a
// reachable embedded NATS, and returns an intakeEnv on it with a fresh
// inspector connection (the old one died with the old process).
func crashStart(t *testing.T, dataDir, extra string) *intakeEnv {
	t.Helper()
	return startRouting(t, dataDir, extra).intakeEnv
}

// crashCaseInput is case i: e-mail and phone cases, each with a contact
// e-mail so that it holds personal data the 90-day rule redacts.
func crashCaseInput(i int) *intakev1.CaseInput {
	in := &intakev1.CaseInput{
		Type:        casev1.CaseType_CASE_TYPE_FRAGA,
		Channel:     casev1.Channel_CHANNEL_EMAIL,
		Category:    "avfall",
		Subject:     fmt.Sprintf("Sophämtning %d", i),
		Description: "Invånaren undrar när sophämtningen kommer efter helgen.",
		Contact:     &intakev1.Contact{Name: "Sven Svensson", Email: fmt.Sprintf("invanare%d@example.se", i)},
	}
	if i%2 == 1 {
		in.Channel = casev1.Channel_CHANNEL_PHONE
		in.Contact.Phone = fmt.Sprintf("070-%03d %02d %02d", i/10000%1000, i/100%100, i%100)
	}
	return in
}

// crashRegister registers n cases over grpc-go from crashWorkers
// goroutines on the env's connections and returns their ids. Any failure
// fails the test: nothing is killed while registering.
func crashRegister(t *testing.T, e *intakeEnv, token string, n int) []string {
	t.Helper()
	clients := make([]intakev1.IntakeServiceClient, len(e.conns))
	for i, c := range e.conns {
		clients[i] = intakev1.NewIntakeServiceClient(c)
	}
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []error
	for w := range crashWorkers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				ctx, cancel := withToken(token)
				resp, err := clients[w%len(clients)].RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: crashCaseInput(i)})
				cancel()
				if err != nil {
					mu.Lock()
					failed = append(failed, fmt.Errorf("case %d: %w", i, err))
					mu.Unlock()
					return
				}
				ids[i] = resp.GetCaseId()
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		var codesSeen []string
		for _, err := range failed {
			codesSeen = append(codesSeen, status.Code(err).String())
		}
		t.Fatalf("%d RegisterCase calls failed (codes %v); first: %v", len(failed), codesSeen, failed[0])
	}
	seen := make(map[string]bool, n)
	for i, id := range ids {
		require.NotEmpty(t, id, "case %d has no id", i)
		require.False(t, seen[id], "case id %s returned twice", id)
		seen[id] = true
	}
	return ids
}

// crashLedgerCount is the number of receipts in the ledger, or -1 when the
// stream cannot be asked (it does not exist yet, or the server is busy).
func crashLedgerCount(e *intakeEnv) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, crashLedgerStream)
	if err != nil {
		return -1
	}
	return int(s.CachedInfo().State.Msgs)
}

// crashLastSeq is the last sequence of a stream, or 0 when it cannot be
// asked.
func crashLastSeq(e *intakeEnv, stream string) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	return s.CachedInfo().State.LastSeq
}

// crashMsg is one message of a stream read with an ordered consumer.
type crashMsg struct {
	seq     uint64
	subject string
	typ     string
	data    []byte
}

// crashReadStream reads every message of a stream, in order, up to its last
// sequence when the read starts, with one ordered consumer.
func crashReadStream(t *testing.T, e *intakeEnv, stream string) []crashMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := e.js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	if info.State.Msgs == 0 {
		return nil
	}
	end := info.State.LastSeq
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	require.NoError(t, err)
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	require.NoError(t, err)
	defer it.Stop()
	out := make([]crashMsg, 0, info.State.Msgs)
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		require.NoError(t, err, "reading %s after %d messages", stream, len(out))
		meta, err := m.Metadata()
		require.NoError(t, err)
		out = append(out, crashMsg{seq: meta.Sequence.Stream, subject: m.Subject(), typ: m.Headers().Get(eventTypeHeader), data: m.Data()})
		if meta.Sequence.Stream >= end {
			return out
		}
	}
}

// crashReceipt is a ledger receipt as stored (JSON), with the fields the
// canonical encoding covers.
type crashReceipt struct {
	Kind          string    `json:"kind"`
	Key           string    `json:"key"`
	CaseID        string    `json:"case_id"`
	CaseNumber    string    `json:"case_number"`
	CaseType      string    `json:"case_type"`
	Channel       string    `json:"channel"`
	PlanName      string    `json:"plan_name"`
	PlanVersion   string    `json:"plan_version"`
	Rule          string    `json:"rule"`
	Reason        string    `json:"reason"`
	Classes       []string  `json:"classes"`
	At            time.Time `json:"at"`
	ArchiveSHA256 string    `json:"archive_sha256"`
	Prev          *string   `json:"prev"`
	Hash          *string   `json:"hash"`
}

// crashReceiptHash recomputes a receipt's hash from the canonical encoding
// documented in pkg/receipt (package comment; ARCHITECTURE.md works an example): the
// SHA-256 of length-prefixed lines, so an auditor can check it without
// the service's code.
func crashReceiptHash(r crashReceipt) string {
	var b strings.Builder
	b.WriteString("kontakt-retention-ledger/1\n")
	field := func(name, value string) {
		fmt.Fprintf(&b, "%s %d:%s\n", name, len(value), value)
	}
	field("prev", *r.Prev)
	field("kind", r.Kind)
	field("key", r.Key)
	field("case_id", r.CaseID)
	field("case_number", r.CaseNumber)
	field("case_type", r.CaseType)
	field("channel", r.Channel)
	field("plan_name", r.PlanName)
	field("plan_version", r.PlanVersion)
	field("rule", r.Rule)
	field("reason", r.Reason)
	fmt.Fprintf(&b, "classes %d\n", len(r.Classes))
	for _, c := range r.Classes {
		field("class", c)
	}
	field("at", r.At.UTC().Format(time.RFC3339Nano))
	field("archive_sha256", r.ArchiveSHA256)
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

// crashKill polls count every few milliseconds and kills the process with
// SIGKILL as soon as it reaches crashKillLowPercent of total (and has moved
// past from, what it was when this process started), saying so when it
// jumped past crashKillHighPercent between two polls. It returns the last
// sequence of the case log just before the kill: every event at or before
// it was in the log before the kill.
func crashKill(t *testing.T, e *intakeEnv, phase, what string, total, from int, count func() int) uint64 {
	t.Helper()
	low, high := total*crashKillLowPercent/100, total*crashKillHighPercent/100
	wait := crashDeadline(t)
	deadline := time.Now().Add(wait)
	polls, n := 0, 0
	for {
		n = count()
		polls++
		if n >= low && n > from {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %s %s after the start, want at least %d", phase, n, what, wait, low)
		}
		time.Sleep(2 * time.Millisecond)
	}
	casesEnd := crashLastSeq(e, casesStream)
	e.k.kill9(t)
	pct := 100 * float64(n) / float64(total)
	switch {
	case n > total:
		t.Errorf("%s: %d %s at the kill, more than the %d cases", phase, n, what, total)
	case n > high:
		t.Logf("%s: MISSED the kill window: %s jumped to %d (%.0f%%) between two polls, above %d%%; killed anyway",
			phase, what, n, pct, crashKillHighPercent)
	default:
		t.Logf("%s: SIGKILL at %d of %d %s (%.1f%%), after %d polls", phase, n, total, what, pct, polls)
	}
	return casesEnd
}

func TestRetentionSurvivesKill9(t *testing.T) {
	total := crashCaseCount(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	testStart := time.Now()

	// Day 0: register the cases, let routing route them, stop cleanly.
	day0 := crashStart(t, dataDir, "")
	token := day0.k.Token(t, "anna", "agent")
	regStart := time.Now()
	ids := crashRegister(t, day0, token, total)
	regTook := time.Since(regStart)
	t.Logf("phase 1: registered %d cases with %d goroutines on %d connections in %s (%.0f cases/s)",
		total, crashWorkers, crashConns, regTook.Round(time.Millisecond), float64(total)/regTook.Seconds())
	// Each case gets CaseRegistered and CaseRouted on day 0; once the log
	// is quiet, every later event on it is the retention service's.
	var base uint64
	var baseChanged time.Time
	require.True(t, eventually(time.Minute, func() bool {
		n := crashLastSeq(day0, casesStream)
		if n != base {
			base, baseChanged = n, time.Now()
		}
		return n >= uint64(2*total) && time.Since(baseChanged) >= time.Second
	}), "the case log did not settle at %d or more events within a minute of registering (last sequence %d)", 2*total, base)
	require.NoError(t, day0.k.Stop(t), "SIGTERM after registering")
	require.Equal(t, -1, crashLedgerCount(day0), "the inspector still reaches the stopped server")

	// Day 91: every case is past the 90-day rule. First kill the process
	// while the sweeper is appending PersonalDataRedacted events.
	phaseStart := time.Now()
	sweeping := crashStart(t, dataDir, crashRetentionConfig)
	appended := func() int { return int(crashLastSeq(sweeping, casesStream)) - int(base) }
	endA := crashKill(t, sweeping, "phase 2a (sweeper)", "PersonalDataRedacted events appended", total, 0, appended)
	tookA := time.Since(phaseStart)

	// Day 91 again: kill the process while the projector is destroying
	// keys and writing receipts.
	phaseStart = time.Now()
	projecting := crashStart(t, dataDir, crashRetentionConfig)
	ledgerA := crashLedgerCount(projecting) // what the sweeper's run left
	endB := crashKill(t, projecting, "phase 2b (projector)", "receipts in the ledger", total, ledgerA,
		func() int { return crashLedgerCount(projecting) })
	tookB := time.Since(phaseStart)
	t.Logf("phase 2: the sweeper's run was killed after %s, the projector's after %s (each including about a second to start)",
		tookA.Round(time.Millisecond), tookB.Round(time.Millisecond))

	// Day 91 once more: wait until every case has its receipt and the
	// ledger stops growing.
	resumeStart := time.Now()
	again := crashStart(t, dataDir, crashRetentionConfig)
	afterRestart := crashLedgerCount(again)
	t.Logf("phase 3: third start at day 91 serving after %s with %d receipts in the ledger", time.Since(resumeStart).Round(time.Millisecond), afterRestart)
	var last int
	var lastChange time.Time
	lastReport, reported := time.Now(), max(afterRestart, 0)
	wait := crashDeadline(t)
	done := eventually(wait, func() bool {
		n := crashLedgerCount(again)
		if n != last {
			last, lastChange = n, time.Now()
		}
		if d := time.Since(lastReport); d >= crashProgressEvery {
			t.Logf("phase 3: %s in: %d receipts (%.0f/s over the last %s)",
				time.Since(resumeStart).Round(time.Second), n, float64(n-reported)/d.Seconds(), d.Round(time.Second))
			lastReport, reported = time.Now(), n
		}
		return n >= total && time.Since(lastChange) >= crashLedgerSettleWindow
	})
	require.True(t, done, "the ledger holds %d receipts %s after the last start, want %d and no more", last, wait, total)
	completeTook := lastChange.Sub(resumeStart)
	t.Logf("phase 3: the ledger reached %d receipts %s after the last start (%d written by it), and stayed there for %s",
		last, completeTook.Round(time.Millisecond), last-max(afterRestart, 0), crashLedgerSettleWindow)

	// Every case has exactly one PersonalDataRedacted event.
	checkStart := time.Now()
	caseMsgs := crashReadStream(t, again, casesStream)
	redactedRev := map[string][]uint64{}
	registered := map[string]int{}
	for _, m := range caseMsgs {
		id := strings.TrimPrefix(m.subject, caseSubjectPrefix)
		switch m.typ {
		case crashRedactedType:
			redactedRev[id] = append(redactedRev[id], m.seq)
		case caseRegisteredType:
			registered[id]++
		}
	}
	var skipped, twice []string
	for _, id := range ids {
		require.Equal(t, 1, registered[id], "case %s: CaseRegistered events", id)
		switch n := len(redactedRev[id]); {
		case n == 0:
			skipped = append(skipped, id)
		case n > 1:
			twice = append(twice, fmt.Sprintf("%s×%d", id, n))
		}
	}
	require.Len(t, registered, total, "cases in the store")
	require.Len(t, redactedRev, len(ids)-len(skipped), "PersonalDataRedacted on cases the test did not register")
	require.Empty(t, skipped, "%d cases were never redacted", len(skipped))
	require.Empty(t, twice, "%d cases were redacted more than once", len(twice))
	before := func(end uint64) int {
		n := 0
		for _, revs := range redactedRev {
			if revs[0] <= end {
				n++
			}
		}
		return n
	}
	t.Logf("done before the kills: %d PersonalDataRedacted events by the first (sweeper) kill, then %d receipts; %d events and %d receipts by the second (projector) kill",
		before(endA), ledgerA, before(endB), max(afterRestart, 0))

	// The ledger: exactly one redaction receipt per case, keyed by the
	// revision of that case's PersonalDataRedacted, each chained to the
	// one before it in stream order and hashing to what it says.
	ledgerMsgs := crashReadStream(t, again, crashLedgerStream)
	require.Len(t, ledgerMsgs, total, "receipts in the ledger")
	keyRE := regexp.MustCompile(`^([A-Za-z0-9_-]+)\.redaction\.([0-9]+)$`)
	receipts := map[string]int{}
	prev := crashGenesisPrev
	for i, m := range ledgerMsgs {
		var r crashReceipt
		require.NoError(t, json.Unmarshal(m.data, &r), "receipt seq %d: %s", m.seq, m.data)
		require.NotNil(t, r.Prev, "receipt seq %d has no prev: %s", m.seq, m.data)
		require.NotNil(t, r.Hash, "receipt seq %d has no hash: %s", m.seq, m.data)
		require.Equal(t, prev, *r.Prev, "receipt %d (seq %d, key %s): prev is not the hash of the receipt before it", i+1, m.seq, r.Key)
		require.Equal(t, crashReceiptHash(r), *r.Hash, "receipt %d (seq %d, key %s): hash does not match its contents", i+1, m.seq, r.Key)
		prev = *r.Hash

		require.Equal(t, "redaction", r.Kind, "receipt seq %d", m.seq)
		require.Equal(t, crashLedgerPrefix+r.Key, m.subject, "receipt seq %d is not on its key's subject", m.seq)
		km := keyRE.FindStringSubmatch(r.Key)
		require.NotNil(t, km, "receipt seq %d: key %q", m.seq, r.Key)
		require.Equal(t, km[1], r.CaseID, "receipt seq %d: key and case id", m.seq)
		rev, err := strconv.ParseUint(km[2], 10, 64)
		require.NoError(t, err)
		require.Equal(t, redactedRev[r.CaseID], []uint64{rev}, "receipt seq %d (case %s): revision in the key vs the PersonalDataRedacted event", m.seq, r.CaseID)
		require.Equal(t, "retention", r.Reason, "receipt seq %d", m.seq)
		require.Equal(t, "personuppgifter", r.Rule, "receipt seq %d", m.seq)
		require.NotEmpty(t, r.CaseNumber, "receipt seq %d", m.seq)
		require.Contains(t, r.Classes, "contact", "receipt seq %d", m.seq)
		receipts[r.CaseID]++
	}
	for _, id := range ids {
		require.Equal(t, 1, receipts[id], "case %s: redaction receipts", id)
	}
	require.Len(t, receipts, total)

	// The binary's own verifier agrees, and ends at the same head.
	code, out := runKontakt(t, "retention", "verify", "--addr", again.k.Addr, "--config", again.k.Config)
	require.Equal(t, 0, code, "kontakt retention verify: %s", out)
	require.Contains(t, out, fmt.Sprintf("ledger verified: %d receipts (%d redaction, 0 deletion, 0 archive), chain head %s", total, total, prev), out)
	t.Logf("checks: %d case events and %d receipts read and verified (and `kontakt retention verify` agrees) in %s",
		len(caseMsgs), len(ledgerMsgs), time.Since(checkStart).Round(time.Millisecond))
	t.Logf("summary: %d cases; registration %s; sweeper killed after %s, projector killed after %s; completion %s after the last start; whole test %s",
		total, regTook.Round(time.Millisecond), tookA.Round(time.Millisecond), tookB.Round(time.Millisecond),
		completeTook.Round(time.Millisecond), time.Since(testStart).Round(time.Millisecond))
}
