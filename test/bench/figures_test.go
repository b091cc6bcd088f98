package bench

// The figures of issue 15 ("What it must do to the figures"), each
// measured through the whole kontakt binary ($KONTAKT_BIN, default
// bin/kontakt built from this tree) and reported against the raw
// substrate measured in the same run: a nats-server process of the
// version kontakt embeds, with sync_interval always as kontakt runs it,
// on the same disk. kontakt runs as `make run` does (development mode,
// embedded NATS, no NATS port: with the port open a newer kontakt keeps a
// mirror of the statistics stream for analysts, which the baseline binary
// did not have); it is called through its gRPC API only.
//
// Where a figure needs a history, the benchmark copies a fixture: a data
// directory of KONTAKT_BENCH_CASES cases (default 20,000) registered
// through the binary's own API by 64 clients, kept under
// $KONTAKT_BENCH_CACHE (default /tmp/kontakt-bench) per binary (by its
// SHA-256) and size, and built on first use (BenchmarkFigureStatisticsLag
// saves its burst as one). Nothing writes events behind the binary's
// back, so the history is exactly what that binary writes.
//
// Run them with -benchtime 1x: each measures once, however large b.N.
// `make bench-figures` runs them all and prints one table:
//
//	make bench-figures                                    # bin/kontakt, 20,000 cases
//	make bench-figures KONTAKT_BIN=path/to/kontakt BENCH_CASES=300000

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	esjs "github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
	"github.com/kontakt-se/kontakt/pkg/natstest"
)

// figure is one row of the table `make bench-figures` prints. The ratio
// is always value ÷ raw: for rates higher is better, for times and memory
// lower.
type figure struct {
	name      string
	value     float64
	unit      string
	raw       float64 // 0: the figure has no raw baseline
	rawUnit   string
	aim       string
	metric    string // b.ReportMetric unit of value
	rawMetric string // and of raw
	decimals  int    // decimals to print value and raw with
}

// report prints the figure as a line `make bench-figures` collects (it
// starts with FIGURE and is tab-separated) and reports it as metrics. The
// line goes to stdout rather than b.Log, which keeps only the first ten
// lines a benchmark logs.
func report(b *testing.B, f figure) {
	b.Helper()
	num := func(v float64) string { return fmt.Sprintf("%.*f", f.decimals, v) }
	raw, ratio := "-", "-"
	b.ReportMetric(f.value, f.metric)
	if f.raw > 0 {
		raw = num(f.raw) + " " + f.rawUnit
		ratio = fmt.Sprintf("%.3f", f.value/f.raw)
		b.ReportMetric(f.raw, f.rawMetric)
		b.ReportMetric(f.value/f.raw, f.metric+"_per_raw")
	}
	fmt.Printf("FIGURE\t%s\t%s %s\t%s\t%s\t%s\n", f.name, num(f.value), f.unit, raw, ratio, f.aim)
}

// tokens are bearer tokens for a data directory's development key.
type tokens struct {
	agent, supervisor string
}

// mintTokens mints an agent's and a supervisor's token with bin's CLI for
// the data directory data (whose signing key must exist: a fixture's, or
// that of a kontakt already serving on it). Minting before a start keeps
// the CLI's own start-up out of the start's timing.
func mintTokens(b *testing.B, bin, data string) tokens {
	b.Helper()
	mint := func(subject, role string) string {
		out, err := exec.Command(bin, "token", "--data-dir", data, "--subject", subject, "--role", role, "--ttl", "24h").Output()
		if err != nil {
			b.Fatalf("kontakt token: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	return tokens{agent: mint("bench-agent", "agent"), supervisor: mint("bench-sara", "supervisor")}
}

// startFigure launches bin on run/data and waits until it serves; it is
// stopped (and run kept) when b ends.
func startFigure(b *testing.B, bin figureBin, run string, args ...string) (*kontakt, time.Time) {
	b.Helper()
	k, err := launch(bin.path, run, "", args...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = k.terminate() })
	serving, err := k.servingAt(10 * time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	return k, serving
}

func stopFigure(b *testing.B, k *kontakt) {
	b.Helper()
	if err := k.terminate(); err != nil {
		b.Fatalf("stop kontakt: %v\n%s", err, k.log())
	}
}

// BenchmarkFigureRegistrations: registrations through the whole binary
// (64 clients) / raw appends (64 writers). BenchmarkRegisterCaseVsRawJetStream's
// measurement (raw appends of 1.5 KiB before and after, the ratio against
// the higher rate) with KONTAKT_BENCH_REGISTRATIONS calls (default 3,840,
// what `make bench` makes) on a fresh data directory, the raw appends to a
// nats-server of their own beside it.
func BenchmarkFigureRegistrations(b *testing.B) {
	bin := figureBinary(b)
	ops := envCount(b, "KONTAKT_BENCH_REGISTRATIONS", defaultRegistrations)
	k, _ := startFigure(b, bin, b.TempDir())
	raw := natstest.StartProcess(b, natstest.Options{})
	toks := mintTokens(b, bin.path, filepath.Join(k.dir, "data"))
	r := measureRegistrations(b, raw.URL(), nil, k.addr, toks.agent, registerCase, int64(ops))
	report(b, figure{
		name:  fmt.Sprintf("registrations through the whole binary (64 clients, %d cases) / raw appends (64 writers)", ops),
		value: r.api, unit: "cases/s", metric: "cases/s", raw: r.raw, rawUnit: "appends/s", rawMetric: "raw_appends/s", aim: "≥ 0.7",
	})
}

// BenchmarkFigureStatisticsLag: statistics lag after a burst of
// KONTAKT_BENCH_CASES registrations. The binary starts on an empty data
// directory, 64 clients register the cases, and the lag is the time from
// the burst's last answer until StatisticsService.Query counts every case
// with its queue (every event projected). The raw baseline is an ordered
// consumer reading the same events (the burst's whole case stream) from a
// nats-server on the same store once kontakt is stopped. When the cache has
// no fixture of this size for this binary, the burst's data directory
// becomes it.
func BenchmarkFigureStatisticsLag(b *testing.B) {
	bin := figureBinary(b)
	n := figureCases(b)
	run := b.TempDir()
	h := registerHistory(b, bin, run, n)
	data := filepath.Join(run, "data")
	if _, err := loadFixture(fixtureDir(bin, n)); err != nil {
		saveFixture(b, bin, n, data, h)
	}
	proc, _ := rawServerOn(b, filepath.Join(data, "nats"))
	events, rawRead, err := rawOrderedRead(context.Background(), rawJetStream(b, proc.URL()), esjs.DefaultStreamName)
	if err != nil {
		b.Fatal(err)
	}
	lag := h.statistics.Sub(h.end)
	b.Logf("%s (%s): %d cases registered in %s (%.0f/s); statistics counted them all %s after the last answer (polled %d times, %s in the polls, exact to %s); checked after that, routing held them all %s after, the retention index %s after; the raw ordered consumer read the %d case events in %s",
		bin.path, bin.id, n, h.end.Sub(h.start).Round(time.Millisecond), float64(n)/h.end.Sub(h.start).Seconds(),
		lag.Round(time.Millisecond), h.statsPolls.polls, h.statsPolls.cost.Round(time.Millisecond), h.statsPolls.resolution.Round(time.Millisecond),
		h.routing.Sub(h.end).Round(time.Millisecond), h.retention.Sub(h.end).Round(time.Millisecond), events, rawRead.Round(time.Millisecond))
	report(b, figure{
		name:  fmt.Sprintf("statistics lag after a burst of %d registrations", n),
		value: lag.Seconds(), unit: "s", metric: "lag_s", raw: rawRead.Seconds(), rawUnit: "s (raw read of the burst)", rawMetric: "raw_read_s",
		aim: "≤ 10 s", decimals: 2,
	})
}

// BenchmarkFigureStatisticsProjection: statistics projection / raw
// ordered consumer. On a copy of the fixture without the statistics read
// model and without the statistics stream (as if statistics had never
// run), the binary projects the whole history from the start: the time
// from serving until Query counts every case with its queue. The raw
// baseline reads the same case stream with an ordered consumer from a
// nats-server on the same store after kontakt stopped. Both rates are case
// events per second.
func BenchmarkFigureStatisticsProjection(b *testing.B) {
	bin := figureBinary(b)
	n := figureCases(b)
	fx := fixtureFor(b, bin, n)
	run := b.TempDir()
	data := filepath.Join(run, "data")
	fx.copyTo(b, data)
	remove := []string{filepath.Join(data, "statistics")}
	for _, account := range []string{"KONTAKT", "ANALYST", "$G"} {
		remove = append(remove, filepath.Join(data, "nats", "jetstream", account, "streams", "KONTAKT_STATS"))
	}
	for _, p := range remove {
		if err := os.RemoveAll(p); err != nil {
			b.Fatal(err)
		}
	}
	toks := mintTokens(b, bin.path, data)
	k, serving := startFigure(b, bin, run)
	c := newFigureClients(b, k, toks)
	want := int64(n)
	done, polls, err := pollUntil(context.Background(), "statistics to project every case", 10*time.Minute, func(ctx context.Context) (int64, bool, error) {
		total, routed, err := c.statisticsCounts(ctx)
		return total + routed, total == want && routed == want, err
	})
	if err != nil {
		b.Fatal(err)
	}
	stopFigure(b, k)
	proc, _ := rawServerOn(b, filepath.Join(data, "nats"))
	events, rawRead, err := rawOrderedRead(context.Background(), rawJetStream(b, proc.URL()), esjs.DefaultStreamName)
	if err != nil {
		b.Fatal(err)
	}
	projection := done.Sub(serving)
	b.Logf("%s (%s): %d cases, %d case events: statistics projected them in %s from serving (%s from exec; polled %d times, %s in the polls, exact to %s); the raw ordered consumer read them in %s",
		bin.path, bin.id, n, events, projection.Round(time.Millisecond), done.Sub(k.execAt).Round(time.Millisecond),
		polls.polls, polls.cost.Round(time.Millisecond), polls.resolution.Round(time.Millisecond), rawRead.Round(time.Millisecond))
	report(b, figure{
		name:  fmt.Sprintf("statistics projection of %d case events / raw ordered consumer", events),
		value: float64(events) / projection.Seconds(), unit: "events/s", metric: "projected_events/s",
		raw: float64(events) / rawRead.Seconds(), rawUnit: "events/s", rawMetric: "raw_events/s", aim: "≥ 0.25",
	})
}

// rebuiltLine is what `kontakt rebuild routing` prints when it is done;
// the time is that of the replay alone, without opening the store.
var rebuiltLine = regexp.MustCompile(`rebuilt routing up to log position (\d+) in (\S+)`)

// BenchmarkFigureRoutingRebuild: routing rebuild / raw ordered consumer.
// `kontakt rebuild routing` on a copy of the fixture replays the whole case
// stream into an empty routing read model; the figure is the replay's time
// as the command reports it (without opening the store; the command's
// wall time is logged too). The raw baseline reads the same stream with an
// ordered consumer from a nats-server on the same store.
func BenchmarkFigureRoutingRebuild(b *testing.B) {
	bin := figureBinary(b)
	n := figureCases(b)
	fx := fixtureFor(b, bin, n)
	data := filepath.Join(b.TempDir(), "data")
	fx.copyTo(b, data)
	start := time.Now()
	out, err := exec.Command(bin.path, "rebuild", "routing", "--data-dir", data).CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		b.Fatalf("kontakt rebuild routing: %v\n%s", err, out)
	}
	rebuild, timedBy := wall, "the command's wall time (no \"rebuilt routing ... in\" line)"
	if m := rebuiltLine.FindSubmatch(out); m != nil {
		if d, err := time.ParseDuration(string(m[2])); err == nil {
			rebuild, timedBy = d, "the command's own report"
		}
	}
	proc, _ := rawServerOn(b, filepath.Join(data, "nats"))
	events, rawRead, err := rawOrderedRead(context.Background(), rawJetStream(b, proc.URL()), esjs.DefaultStreamName)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%s (%s): %d cases, %d case events: rebuilt in %s (timed by %s; the command ran %s from exec to exit); the raw ordered consumer read them in %s",
		bin.path, bin.id, n, events, rebuild.Round(time.Millisecond), timedBy, wall.Round(time.Millisecond), rawRead.Round(time.Millisecond))
	report(b, figure{
		name:  fmt.Sprintf("routing rebuild of %d case events / raw ordered consumer", events),
		value: float64(events) / rebuild.Seconds(), unit: "events/s", metric: "rebuilt_events/s",
		raw: float64(events) / rawRead.Seconds(), rawUnit: "events/s", rawMetric: "raw_events/s", aim: "≥ 0.6",
	})
}

// BenchmarkFigureMemoryAndRestart: private memory right after start, its
// growth per stored case, memory after the router's scan for unrouted
// cases, and restart to serving, on a copy of the fixture.
//
//   - Start: exec, health SERVING, then one new case registered and
//     visible in routing (the queue's counter) and statistics (Query): the
//     projectors have caught up. Memory is read from /proc then (see
//     memSnapshot: private = Private_Clean + Private_Dirty).
//   - The router reads every stored case at start and every five minutes
//     (services/routing/app/router.go). The start's scan runs beside the
//     rest of the start, so the memory "right after start" may hold part
//     of it; it is waited out by waiting until the process is idle
//     (waitQuiet); memory then, and the peak RSS (VmHWM) so far. No
//     configuration key moves the periodic scan; with
//     KONTAKT_BENCH_PERIODIC_SCAN=1 the
//     benchmark also waits for the first periodic scan (five minutes
//     after start) and reads memory again.
//   - Growth per case: the same start on an empty data directory, and
//     (private at N - private at 0) / N.
//   - Restart: kontakt stopped with SIGTERM and started again on the same
//     directory: exec to SERVING, and exec to a new case caught up.
//
// Raw baselines: a nats-server started on the same store (once kontakt
// stopped): exec to answering JetStream, and its memory then; and a
// nats-server on an empty store for the growth per case.
func BenchmarkFigureMemoryAndRestart(b *testing.B) {
	ctx := context.Background()
	bin := figureBinary(b)
	n := figureCases(b)
	fx := fixtureFor(b, bin, n)
	run := b.TempDir()
	data := filepath.Join(run, "data")
	fx.copyTo(b, data)
	toks := mintTokens(b, bin.path, data)
	mem := func(pid int) memSnapshot {
		m, err := readMem(pid)
		if err != nil {
			b.Fatal(err)
		}
		return m
	}

	// Start on the history.
	k, serving := startFigure(b, bin, run)
	c := newFigureClients(b, k, toks)
	if _, err := c.registerOne(ctx); err != nil {
		b.Fatal(err)
	}
	caught, polls, err := c.caughtUp(ctx, int64(n)+1)
	if err != nil {
		b.Fatal(err)
	}
	atStart := mem(k.cmd.Process.Pid)
	quiet, err := waitQuiet(k.cmd.Process.Pid, 10*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	afterScan := mem(k.cmd.Process.Pid)
	b.Logf("%s (%s), %d cases (%.0f MiB on disk, %.2f KiB per case): first start on the copy: serving %s after exec, a new case caught up %s after exec (polled %d times, exact to %s); then %s; idle %s after exec, then %s",
		bin.path, bin.id, n, mib(dirSize(b, data)), float64(dirSize(b, data))/1024/float64(n),
		serving.Sub(k.execAt).Round(time.Millisecond), caught.Sub(k.execAt).Round(time.Millisecond), polls.polls, polls.resolution.Round(time.Millisecond),
		atStart, quiet.Sub(k.execAt).Round(time.Millisecond), afterScan)
	var afterPeriodic memSnapshot
	periodic := os.Getenv("KONTAKT_BENCH_PERIODIC_SCAN") == "1"
	if periodic {
		time.Sleep(time.Until(k.execAt.Add(5*time.Minute + 5*time.Second)))
		if _, err := waitQuiet(k.cmd.Process.Pid, 10*time.Minute); err != nil {
			b.Fatal(err)
		}
		afterPeriodic = mem(k.cmd.Process.Pid)
		b.Logf("after the router's first periodic scan (5 min after start): %s", afterPeriodic)
	}
	stopFigure(b, k)

	// Restart on the same directory.
	k, restartServing := startFigure(b, bin, run)
	c = newFigureClients(b, k, toks)
	if _, err := c.registerOne(ctx); err != nil {
		b.Fatal(err)
	}
	restartCaught, restartPolls, err := c.caughtUp(ctx, int64(n)+2)
	if err != nil {
		b.Fatal(err)
	}
	restartExec := k.execAt
	atRestart := mem(k.cmd.Process.Pid)
	b.Logf("restart: serving %s after exec, a new case caught up %s after exec (polled %d times, exact to %s); then %s",
		restartServing.Sub(k.execAt).Round(time.Millisecond), restartCaught.Sub(k.execAt).Round(time.Millisecond),
		restartPolls.polls, restartPolls.resolution.Round(time.Millisecond), atRestart)
	stopFigure(b, k)

	// The same start without a history.
	empty := b.TempDir()
	k, _ = startFigure(b, bin, empty)
	c = newFigureClients(b, k, mintTokens(b, bin.path, filepath.Join(empty, "data")))
	if _, err := c.registerOne(ctx); err != nil {
		b.Fatal(err)
	}
	if _, _, err := c.caughtUp(ctx, 1); err != nil {
		b.Fatal(err)
	}
	atStartEmpty := mem(k.cmd.Process.Pid)
	b.Logf("start on an empty data directory, one case caught up: %s", atStartEmpty)
	stopFigure(b, k)

	// The substrate: nats-server on the same store, and on an empty one.
	proc, rawStart := rawServerOn(b, filepath.Join(data, "nats"))
	raw := mem(proc.Pid())
	subjects, perStream := streamSubjects(ctx, b, rawJetStream(b, proc.URL()))
	_ = proc.Kill9()
	b.Logf("JetStream subjects in the store: %d (%.2f per case): %s", subjects, float64(subjects)/float64(n), perStream)
	proc0 := natstest.StartProcess(b, natstest.Options{})
	raw0 := mem(proc0.Pid())
	_ = proc0.Kill9()
	b.Logf("nats-server on the same store: answering JetStream %s after exec, %s; on an empty store: %s",
		rawStart.Round(time.Millisecond), raw, raw0)

	perCase := func(at, at0 memSnapshot) float64 {
		return (float64(at.private()) - float64(at0.private())) / 1024 / float64(n)
	}
	report(b, figure{
		name:  fmt.Sprintf("private memory right after start, %d cases stored", n),
		value: mib(atStart.private()), unit: "MiB", metric: "private_MiB", raw: mib(raw.private()), rawUnit: "MiB (nats-server)", rawMetric: "raw_private_MiB",
		aim: "≤ 128 MiB", decimals: 1,
	})
	report(b, figure{
		name:  "private memory per stored case (start on the history - start on an empty store)",
		value: perCase(atStart, atStartEmpty), unit: "KiB/case", metric: "private_KiB/case",
		raw: perCase(raw, raw0), rawUnit: "KiB/case (nats-server)", rawMetric: "raw_private_KiB/case",
		aim: "far slower than history", decimals: 3,
	})
	report(b, figure{
		name:  fmt.Sprintf("RSS after the router's start-up scan, %d cases (idle after start)", n),
		value: mib(afterScan.rss), unit: "MiB", metric: "rss_after_scan_MiB", raw: mib(raw.rss), rawUnit: "MiB (nats-server)", rawMetric: "raw_rss_MiB",
		aim: "no work that reads every stored case", decimals: 1,
	})
	report(b, figure{
		name:  fmt.Sprintf("peak RSS during start-up, %d cases", n),
		value: mib(afterScan.peak), unit: "MiB", metric: "peak_rss_MiB", raw: mib(raw.peak), rawUnit: "MiB (nats-server)", rawMetric: "raw_peak_rss_MiB",
		aim: "no work that reads every stored case", decimals: 1,
	})
	if periodic {
		report(b, figure{
			name:  fmt.Sprintf("RSS after the router's periodic scan, %d cases", n),
			value: mib(afterPeriodic.rss), unit: "MiB", metric: "rss_after_periodic_scan_MiB", raw: mib(raw.rss), rawUnit: "MiB (nats-server)", rawMetric: "raw_rss_MiB",
			aim: "no work that reads every stored case", decimals: 1,
		})
	}
	report(b, figure{
		name:  fmt.Sprintf("JetStream subjects per stored case, %d cases", n),
		value: float64(subjects) / float64(n), unit: "subjects/case", metric: "subjects/case",
		aim: "fewer (restart and memory grow with them)", decimals: 2,
	})
	report(b, figure{
		name:  fmt.Sprintf("restart to serving, %d cases", n),
		value: restartServing.Sub(restartExec).Seconds(), unit: "s", metric: "restart_serving_s",
		raw: rawStart.Seconds(), rawUnit: "s (nats-server ready)", rawMetric: "raw_start_s", aim: "≤ 1 s at 1M", decimals: 3,
	})
	report(b, figure{
		name:  fmt.Sprintf("restart to a new case in routing and statistics, %d cases", n),
		value: restartCaught.Sub(restartExec).Seconds(), unit: "s", metric: "restart_caught_up_s",
		raw: rawStart.Seconds(), rawUnit: "s (nats-server ready)", rawMetric: "raw_start_s", aim: "-", decimals: 3,
	})
}

// BenchmarkFigureRedactions: redactions / raw appends, with
// KONTAKT_BENCH_DUE_CASES due cases (default the history's size, at most
// 100,000, the figure). On a copy of the fixture of that many
// cases, kontakt starts with its development clock 91 days ahead
// (--dev-clock-offset 91d), so every case's personal data is due under
// Mölndal's plan (90 days from registration). The time runs from exec
// until the retention preview lists nothing due: every case's
// PersonalDataRedacted appended and applied by the retention projector,
// which records the receipt and destroys the keys before it commits; the
// ledger must then hold a receipt for every case. The raw baseline is as
// many acknowledged 256-byte appends by 64 writers to a nats-server on
// the same disk, before and after (the ratio against the higher rate).
func BenchmarkFigureRedactions(b *testing.B) {
	ctx := context.Background()
	bin := figureBinary(b)
	n := dueCases(b)
	fx := fixtureFor(b, bin, n)
	run := b.TempDir()
	data := filepath.Join(run, "data")
	fx.copyTo(b, data)
	toks := mintTokens(b, bin.path, data)

	raw := natstest.StartProcess(b, natstest.Options{})
	js := rawJetStream(b, raw.URL())
	payload := []byte(strings.Repeat("kontakt-", 32))
	rawRun := func() time.Duration {
		d, err := rawAppends(ctx, js, int64(n), payload)
		if err != nil {
			b.Fatal("raw publish: ", err)
		}
		return d
	}
	rawBefore := rawRun()

	k, serving := startFigure(b, bin, run, "--dev-clock-offset", "91d")
	c := newFigureClients(b, k, toks)
	var maxDue int64
	done, polls, err := pollUntil(ctx, "every due case to be redacted", 10*time.Minute, func(ctx context.Context) (int64, bool, error) {
		due, err := c.due(ctx, 0)
		maxDue = max(maxDue, int64(due))
		return int64(due), due == 0, err
	})
	if err != nil {
		b.Fatal(err)
	}
	receipts, err := c.receipts(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if receipts < n {
		b.Fatalf("the ledger holds %d receipts after %d cases fell due", receipts, n)
	}
	stopFigure(b, k)
	rawAfter := rawRun()

	redactions := done.Sub(k.execAt)
	rawRate := float64(n) / min(rawBefore, rawAfter).Seconds()
	b.Logf("%s (%s): %d cases due: serving %s after exec, the first preview listed %d due, none due %s after exec (polled %d times, %s in the polls, exact to %s), %d receipts in the ledger; raw: %d appends in %s before, %s after",
		bin.path, bin.id, n, serving.Sub(k.execAt).Round(time.Millisecond), maxDue, redactions.Round(time.Millisecond),
		polls.polls, polls.cost.Round(time.Millisecond), polls.resolution.Round(time.Millisecond), receipts,
		n, rawBefore.Round(time.Millisecond), rawAfter.Round(time.Millisecond))
	report(b, figure{
		name:  fmt.Sprintf("redactions / raw appends (%d due cases)", n),
		value: float64(n) / redactions.Seconds(), unit: "redactions/s", metric: "redactions/s",
		raw: rawRate, rawUnit: "appends/s", rawMetric: "raw_appends/s", aim: "≥ 0.25",
	})
}

// streamSubjects returns how many subjects the streams on js hold in all
// (JetStream keeps an in-memory index entry per subject and rebuilds it at
// every start), and a line with each stream's count.
func streamSubjects(ctx context.Context, b *testing.B, js jetstream.JetStream) (uint64, string) {
	b.Helper()
	var total uint64
	var parts []string
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			b.Fatal(err)
		}
		n := s.CachedInfo().State.NumSubjects
		total += n
		parts = append(parts, fmt.Sprintf("%s %d", name, n))
	}
	if err := names.Err(); err != nil {
		b.Fatal(err)
	}
	return total, strings.Join(parts, ", ")
}
