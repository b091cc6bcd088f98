package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/natstest"
)

// The sizes of the figures, from the environment.
const (
	// defaultFigureCases keeps `make bench-figures` to minutes; the
	// issue's sizes are KONTAKT_BENCH_CASES=300000 and 1000000.
	defaultFigureCases = 20_000
	// maxDueCases is the size for the redaction figure.
	maxDueCases = 100_000
	// defaultRegistrations is what `make bench` registers in
	// BenchmarkRegisterCaseVsRawJetStream (60 iterations of 64).
	defaultRegistrations = 60 * opsPerIteration
)

func envCount(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q is not a positive number", name, v)
	}
	return n
}

// figureCases is how many cases the history of the figures holds
// (KONTAKT_BENCH_CASES).
func figureCases(b *testing.B) int { return envCount(b, "KONTAKT_BENCH_CASES", defaultFigureCases) }

// dueCases is how many cases fall due in the redaction figure
// (KONTAKT_BENCH_DUE_CASES; default the history's size, at most 100,000).
func dueCases(b *testing.B) int {
	return envCount(b, "KONTAKT_BENCH_DUE_CASES", min(figureCases(b), maxDueCases))
}

// cacheRoot is where fixtures are kept between runs: $KONTAKT_BENCH_CACHE,
// default /tmp/kontakt-bench.
func cacheRoot() string {
	if d := os.Getenv("KONTAKT_BENCH_CACHE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "kontakt-bench")
}

// figureBin is the kontakt binary under measurement and its identity: the
// first 16 hex digits of its SHA-256, which keys its fixtures (a data
// directory written by one build is not assumed to suit another).
type figureBin struct {
	path, id string
}

func figureBinary(b *testing.B) figureBin {
	b.Helper()
	path, err := binary()
	if err != nil {
		b.Fatal(err)
	}
	if path, err = filepath.Abs(path); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		b.Fatal(err)
	}
	return figureBin{path: path, id: hex.EncodeToString(h.Sum(nil))[:16]}
}

// servingAt waits until k answers its health check with SERVING and
// returns when it did. The client retries its connection every 5 ms
// (grpc-go's default back-off would wait a second and more after the first
// refusal), so the time is exact to a few milliseconds.
func (k *kontakt) servingAt(timeout time.Duration) (time.Time, error) {
	conn, err := grpc.NewClient(k.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 5 * time.Millisecond, Multiplier: 1, MaxDelay: 5 * time.Millisecond},
			MinConnectTimeout: 5 * time.Second,
		}))
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-k.done:
			k.done <- err
			return time.Time{}, fmt.Errorf("kontakt exited before serving: %v\n%s", err, k.log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "kontakt.intake.v1.IntakeService"}, grpc.WaitForReady(true))
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("kontakt not serving after %s (last error %v)\n%s", timeout, err, k.log())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// figureClients call one kontakt over grpc-go as an agent (registrations)
// and as a supervisor (queue counts, statistics, the retention preview and
// ledger), on a few shared connections.
type figureClients struct {
	conns      []*grpc.ClientConn
	agent      string
	supervisor string
}

func newFigureClients(b *testing.B, k *kontakt, toks tokens) *figureClients {
	b.Helper()
	c := &figureClients{agent: toks.agent, supervisor: toks.supervisor}
	for range connections {
		conn, err := grpc.NewClient(k.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			// A retention preview of 100,000 due cases is a few MiB.
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		c.conns = append(c.conns, conn)
	}
	return c
}

func (c *figureClients) conn(i int) *grpc.ClientConn { return c.conns[i%len(c.conns)] }

// register registers n cases (benchCaseInput) from 64 goroutines and
// returns when the first call began and the last answer came.
func (c *figureClients) register(ctx context.Context, n int) (start, end time.Time, err error) {
	ctx = bearer(ctx, c.agent)
	in := benchCaseInput()
	var next atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	var done atomic.Int64
	progress := time.NewTicker(30 * time.Second)
	defer progress.Stop()
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-progress.C:
				fmt.Fprintf(os.Stderr, "bench: %d of %d cases registered\n", done.Load(), n)
			}
		}
	}()
	start = time.Now()
	for w := range writers {
		wg.Go(func() {
			client := intakev1.NewIntakeServiceClient(c.conn(w))
			for next.Add(1) <= int64(n) && first.Load() == nil {
				cctx, cancel := context.WithTimeout(ctx, time.Minute)
				_, err := client.RegisterCase(cctx, &intakev1.RegisterCaseRequest{Case: in})
				cancel()
				if err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	end = time.Now()
	close(stop)
	if p := first.Load(); p != nil {
		return start, end, fmt.Errorf("RegisterCase after %d cases: %w", done.Load(), *p)
	}
	return start, end, nil
}

// registerOne registers one case and returns when it was answered.
func (c *figureClients) registerOne(ctx context.Context) (time.Time, error) {
	ctx, cancel := context.WithTimeout(bearer(ctx, c.agent), time.Minute)
	defer cancel()
	_, err := intakev1.NewIntakeServiceClient(c.conn(0)).RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: benchCaseInput()})
	return time.Now(), err
}

// openCases is the open-case counter of the queue the built-in rules
// route the benchmark's questions to (ListQueues).
func (c *figureClients) openCases(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(bearer(ctx, c.supervisor), time.Minute)
	defer cancel()
	resp, err := routingv1.NewRoutingServiceClient(c.conn(0)).ListQueues(ctx, &routingv1.ListQueuesRequest{})
	if err != nil {
		return 0, err
	}
	for _, q := range resp.GetQueues() {
		if q.GetName() == benchQueue {
			return q.GetOpenCases(), nil
		}
	}
	return 0, nil
}

// statisticsCounts asks StatisticsService.Query for every record
// registered within 300 days either side of now, grouped by queue: total
// counts every record, routed those the read model already knows were
// routed to the benchmark's queue. A record is counted once its case's
// CaseRegistered is applied; it shows the queue once the CaseRouted is
// too, and the router appends that after the registration, so
// routed == total == n means every event of n registrations is projected.
func (c *figureClients) statisticsCounts(ctx context.Context) (total, routed int64, err error) {
	ctx, cancel := context.WithTimeout(bearer(ctx, c.supervisor), 5*time.Minute)
	defer cancel()
	now := time.Now()
	resp, err := statisticsv1.NewStatisticsServiceClient(c.conn(0)).Query(ctx, &statisticsv1.QueryRequest{
		From: timestamppb.New(now.AddDate(0, 0, -300)), To: timestamppb.New(now.AddDate(0, 0, 300)),
		GroupBy:     []statisticsv1.Dimension{statisticsv1.Dimension_DIMENSION_QUEUE},
		Granularity: statisticsv1.Granularity_GRANULARITY_MONTH,
	})
	if err != nil {
		return 0, 0, err
	}
	for _, r := range resp.GetRows() {
		total += r.GetCount()
		if len(r.GetKeys()) == 1 && r.GetKeys()[0] == benchQueue {
			routed += r.GetCount()
		}
	}
	return total, routed, nil
}

// due is how many actions the retention preview lists for the next days
// days (0: what is due now).
func (c *figureClients) due(ctx context.Context, days int32) (int, error) {
	ctx, cancel := context.WithTimeout(bearer(ctx, c.supervisor), 5*time.Minute)
	defer cancel()
	resp, err := retentionv1.NewRetentionServiceClient(c.conn(0)).Preview(ctx, &retentionv1.PreviewRequest{Days: days})
	if err != nil {
		return 0, err
	}
	return len(resp.GetItems()), nil
}

// receipts counts the retention ledger's receipts (ListReceipts).
func (c *figureClients) receipts(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(bearer(ctx, c.supervisor), 10*time.Minute)
	defer cancel()
	s, err := retentionv1.NewRetentionServiceClient(c.conn(0)).ListReceipts(ctx, &retentionv1.ListReceiptsRequest{})
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		if _, err := s.Recv(); errors.Is(err, io.EOF) {
			return n, nil
		} else if err != nil {
			return n, err
		}
		n++
	}
}

// caughtUp waits until routing and statistics both show want cases: the
// open-case counter of the benchmark's queue, and statistics records all
// routed there.
func (c *figureClients) caughtUp(ctx context.Context, want int64) (time.Time, pollStats, error) {
	var routingDone bool
	return pollUntil(ctx, "routing and statistics to show "+strconv.FormatInt(want, 10)+" cases", 5*time.Minute, func(ctx context.Context) (int64, bool, error) {
		if !routingDone {
			open, err := c.openCases(ctx)
			if err != nil {
				return 0, false, err
			}
			if open < want {
				return open, false, nil
			}
			routingDone = true
		}
		total, routed, err := c.statisticsCounts(ctx)
		if err != nil {
			return 0, false, err
		}
		return want + total + routed, total == want && routed == want, nil // progress: any change
	})
}

// pollStats say what waiting for a state cost and how exact its time is.
type pollStats struct {
	polls int
	// cost is the time spent inside the checks.
	cost time.Duration
	// resolution is how long before the reported time the state may
	// already have held: from the start of the last check that did not
	// see it to the end of the one that did.
	resolution time.Duration
}

// pollUntil calls check until it reports done and returns when that check
// returned (the state held by then; pollStats.resolution says how much
// earlier it may have). Checks such as a statistics query or a retention
// preview read every record on the server, so the wait between them grows
// with the time waited and with their own cost: at least 10 ms, 1/50 of
// the time since polling began (at most 10 s of that) and 10 times the
// last check's duration. That keeps the polls under a tenth of the time
// (they run on the server being measured) and the timing exact to about
// 2%, 10 s or ten checks' duration, whichever is more (a statistics query
// over 300,000 records takes about 0.1 s here, a retention preview of
// 20,000 cases during the sweep 0.5 s). It gives up when the progress
// check reports stays the same for stall.
func pollUntil(ctx context.Context, what string, stall time.Duration, check func(context.Context) (progress int64, done bool, err error)) (time.Time, pollStats, error) {
	var st pollStats
	begin := time.Now()
	lastProgress, lastMove := int64(-1), begin
	prevStart := begin
	for {
		t0 := time.Now()
		progress, done, err := check(ctx)
		t1 := time.Now()
		st.polls++
		st.cost += t1.Sub(t0)
		if err != nil {
			return t1, st, fmt.Errorf("waiting for %s: %w", what, err)
		}
		if done {
			st.resolution = t1.Sub(prevStart)
			return t1, st, nil
		}
		prevStart = t0
		if progress != lastProgress {
			lastProgress, lastMove = progress, t1
		} else if t1.Sub(lastMove) > stall {
			return t1, st, fmt.Errorf("waiting for %s: no progress for %s (at %d)", what, stall, progress)
		}
		gap := max(10*time.Millisecond, min(t1.Sub(begin)/50, 10*time.Second), 10*t1.Sub(t0))
		select {
		case <-ctx.Done():
			return t1, st, ctx.Err()
		case <-time.After(gap):
		}
	}
}

// fixture is a data directory holding a history of cases registered
// through one kontakt binary's API, kept under the cache to be copied by
// every figure that needs that history.
type fixture struct {
	dir  string // holds data/ and meta.json
	meta fixtureMeta
}

// fixtureMeta is what meta.json records about how a fixture was made.
type fixtureMeta struct {
	Binary    string    `json:"binary"`
	BinaryID  string    `json:"binary_id"`
	Cases     int       `json:"cases"`
	Created   time.Time `json:"created"`
	RegisterS float64   `json:"register_seconds"`
	CasesPerS float64   `json:"cases_per_second"`
	StatsLagS float64   `json:"statistics_lag_seconds"`
}

func fixtureDir(bin figureBin, n int) string {
	return filepath.Join(cacheRoot(), bin.id, strconv.Itoa(n))
}

// fixtureFor returns the fixture of n cases for bin, building it first
// (registerHistory, then saveFixture) if the cache has none.
func fixtureFor(b *testing.B, bin figureBin, n int) *fixture {
	b.Helper()
	if f, err := loadFixture(fixtureDir(bin, n)); err == nil {
		return f
	} else if !errors.Is(err, fs.ErrNotExist) {
		b.Fatal(err)
	}
	b.Logf("no fixture of %d cases for %s (%s) under %s: registering them", n, bin.path, bin.id, cacheRoot())
	run := b.TempDir()
	h := registerHistory(b, bin, run, n)
	return saveFixture(b, bin, n, filepath.Join(run, "data"), h)
}

func loadFixture(dir string) (*fixture, error) {
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err
	}
	f := &fixture{dir: dir}
	if err := json.Unmarshal(b, &f.meta); err != nil {
		return nil, fmt.Errorf("fixture %s: %w", dir, err)
	}
	return f, nil
}

// saveFixture copies the data directory data (its kontakt stopped) into
// the cache as the fixture of n cases for bin, unless another run saved
// one meanwhile. meta.json is written last and the directory renamed into
// place, so a fixture that exists is complete.
func saveFixture(b *testing.B, bin figureBin, n int, data string, h history) *fixture {
	b.Helper()
	final := fixtureDir(bin, n)
	if f, err := loadFixture(final); err == nil {
		return f
	}
	parent := filepath.Dir(final)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		b.Fatal(err)
	}
	tmp, err := os.MkdirTemp(parent, ".building-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	copyTree(b, data, filepath.Join(tmp, "data"))
	meta := fixtureMeta{
		Binary: bin.path, BinaryID: bin.id, Cases: n, Created: time.Now().UTC(),
		RegisterS: h.end.Sub(h.start).Seconds(), CasesPerS: float64(n) / h.end.Sub(h.start).Seconds(),
		StatsLagS: h.statistics.Sub(h.end).Seconds(),
	}
	js, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), js, 0o644); err != nil {
		b.Fatal(err)
	}
	_ = os.RemoveAll(final) // a directory without meta.json: an aborted earlier save
	if err := os.Rename(tmp, final); err != nil {
		b.Fatal(err)
	}
	b.Logf("saved the fixture of %d cases in %s", n, final)
	return &fixture{dir: final, meta: meta}
}

// copyTo copies the fixture's data directory to dst (a kontakt run
// directory's data/), so that a run can change it freely.
func (f *fixture) copyTo(b *testing.B, dst string) {
	b.Helper()
	start := time.Now()
	copyTree(b, filepath.Join(f.dir, "data"), dst)
	b.Logf("copied the fixture of %d cases (%.0f MiB) in %s", f.meta.Cases, mib(dirSize(b, dst)), time.Since(start).Round(time.Millisecond))
}

// copyTree copies a directory with cp -a: modes matter (kontakt refuses
// NATS credentials that others may read), and cp reflinks where the file
// system can.
func copyTree(b *testing.B, src, dst string) {
	b.Helper()
	if out, err := exec.Command("cp", "-a", "--reflink=auto", src, dst).CombinedOutput(); err != nil {
		b.Fatalf("cp %s %s: %v\n%s", src, dst, err, out)
	}
}

// dirSize is the size of the regular files under dir.
func dirSize(b testing.TB, dir string) uint64 {
	b.Helper()
	var n uint64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += uint64(info.Size())
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// history is how registerHistory went.
type history struct {
	start, end time.Time // the first call and the last answer
	// statistics is when statistics Query first counted every case with
	// its queue (every event projected); routing when the queue's counter
	// showed them all; retention when the retention preview listed every
	// case's redaction.
	statistics, routing, retention time.Time
	statsPolls                     pollStats
}

// registerHistory starts bin on an empty data directory in run, registers
// n cases through its API from 64 goroutines, waits until statistics,
// routing and the retention index hold every case, and stops it cleanly.
// run/data is then the history of n cases as the binary itself wrote it.
func registerHistory(b *testing.B, bin figureBin, run string, n int) history {
	b.Helper()
	ctx := context.Background()
	k, err := launch(bin.path, run, "")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = k.terminate() }()
	if _, err := k.servingAt(2 * time.Minute); err != nil {
		b.Fatal(err)
	}
	c := newFigureClients(b, k, mintTokens(b, bin.path, filepath.Join(run, "data")))
	var h history
	if h.start, h.end, err = c.register(ctx, n); err != nil {
		b.Fatal(err)
	}
	b.Logf("registered %d cases in %s (%.0f/s) with %d clients", n, h.end.Sub(h.start).Round(time.Millisecond), float64(n)/h.end.Sub(h.start).Seconds(), writers)
	want := int64(n)
	if h.statistics, h.statsPolls, err = pollUntil(ctx, "statistics to count every case", 10*time.Minute, func(ctx context.Context) (int64, bool, error) {
		total, routed, err := c.statisticsCounts(ctx)
		return total + routed, total == want && routed == want, err
	}); err != nil {
		b.Fatal(err)
	}
	if h.routing, _, err = pollUntil(ctx, "routing to queue every case", 10*time.Minute, func(ctx context.Context) (int64, bool, error) {
		open, err := c.openCases(ctx)
		return open, open == want, err
	}); err != nil {
		b.Fatal(err)
	}
	// Registered now, every case's personal data falls due in 90 days.
	if h.retention, _, err = pollUntil(ctx, "the retention index to hold every case", 10*time.Minute, func(ctx context.Context) (int64, bool, error) {
		due, err := c.due(ctx, 92)
		return int64(due), due == n, err
	}); err != nil {
		b.Fatal(err)
	}
	if err := k.terminate(); err != nil {
		b.Fatalf("stop kontakt: %v\n%s", err, k.log())
	}
	return h
}

// rawServerOn starts a nats-server process (the version bin/nats-server
// was built at, from pkg/go.mod like kontakt's embedded one, with
// sync_interval always as kontakt runs it) on the JetStream store of a
// kontakt data directory whose kontakt is stopped: the substrate holding
// exactly the history kontakt holds. kontakt keeps its streams in the
// account KONTAKT (or, before issue 13, in the global account), which the
// configuration enables JetStream for. The process is killed when b ends,
// so use it on a copy. It returns the process and how long it took from
// exec to answering JetStream requests (to within 5 ms).
func rawServerOn(b *testing.B, storeDir string) (*natstest.Process, time.Duration) {
	b.Helper()
	extra := ""
	if _, err := os.Stat(filepath.Join(storeDir, "jetstream", "KONTAKT")); err == nil {
		extra = "accounts {\n  KONTAKT: {jetstream: enabled, users: [{user: bench, password: bench}]}\n}\nno_auth_user: bench\n"
	}
	start := time.Now()
	p := natstest.StartProcess(b, natstest.Options{StoreDir: storeDir, ConfigExtra: extra, ReadyPoll: 5 * time.Millisecond, StartTimeout: 10 * time.Minute})
	return p, time.Since(start)
}

// rawJetStream connects to a raw server; the connection closes when b ends.
func rawJetStream(b *testing.B, url string) jetstream.JetStream {
	b.Helper()
	nc, err := nats.Connect(url, nats.Name("kontakt-bench-raw"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	return js
}

// rawOrderedRead is the substrate's figure for reading a history: a
// JetStream ordered consumer (what kontakt's projectors follow the log
// with) receiving every message of stream, from creating the consumer to
// the last message. It returns how many messages it received and the time.
func rawOrderedRead(ctx context.Context, js jetstream.JetStream, stream string) (uint64, time.Duration, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, 0, err
	}
	last := s.CachedInfo().State.LastSeq
	if last == 0 {
		return 0, 0, fmt.Errorf("stream %s is empty", stream)
	}
	start := time.Now()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return 0, 0, err
	}
	it, err := cons.Messages()
	if err != nil {
		return 0, 0, err
	}
	defer it.Stop()
	var n uint64
	for {
		msg, err := it.Next()
		if err != nil {
			return n, 0, err
		}
		meta, err := msg.Metadata()
		if err != nil {
			return n, 0, err
		}
		n++
		if meta.Sequence.Stream >= last {
			return n, time.Since(start), nil
		}
	}
}
