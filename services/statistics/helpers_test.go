package statistics

import (
	"bytes"
	"context"
	crand "crypto/rand"

	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	esjs "github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
	"github.com/kontakt-se/kontakt/pkg/natsserver"
	"github.com/kontakt-se/kontakt/pkg/natstest"
	"github.com/kontakt-se/kontakt/pkg/server"
	"github.com/kontakt-se/kontakt/services/statistics/adapters/stream"
	"github.com/kontakt-se/kontakt/services/statistics/app"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

// marker starts every value a test puts into a field the statistics must
// never copy: sealed bytes, key ids, actor ids, case numbers, reasons.
const marker = "MRKR"

// testIDKey is the statistics id key of the tests' services.
var testIDKey = []byte("kontakt statistics test id key!!")

// harness is an embedded sync-always NATS server with the JetStream event
// store and a data directory for the service.
type harness struct {
	srv *natsserver.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	es  *esjs.Store
	dir string
	// revs are the case streams' revisions, for exact expectations.
	revs map[string]eventstore.Revision
	// deleted are the cases deleted so far.
	deleted map[string]bool
	// appended are the events appended so far, in order.
	appended []appendedEvent
	// seeded gives two of three registrations of randomHistory a
	// statistics seed, as intake writes them now; the others are as
	// written before the seed existed.
	seeded bool
}

// appendedEvent is an event the test appended, at its log position.
type appendedEvent struct {
	caseID string
	pos    eventstore.Position
	msg    proto.Message
}

func startHarness(t testing.TB) *harness { return startHarnessSync(t, 0) }

// startHarnessSync starts the server with a JetStream sync interval;
// zero keeps sync-always (benchmarks compare both).
func startHarnessSync(t testing.TB, syncInterval time.Duration) *harness {
	t.Helper()
	srv := natstest.Embedded(t, syncInterval)
	nc, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return newHarness(t, srv, nc)
}

func newHarness(t testing.TB, srv *natsserver.Server, nc *nats.Conn) *harness {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	es, err := esjs.New(context.Background(), js, esjs.Config{})
	require.NoError(t, err)
	return &harness{srv: srv, nc: nc, js: js, es: es, dir: t.TempDir(), revs: map[string]eventstore.Revision{}, deleted: map[string]bool{}}
}

// service builds a service on the harness's data directory.
func (h *harness) service(t testing.TB, cfg Config, opts ...Option) *Service {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = h.dir
	}
	if cfg.IDKey == nil {
		cfg.IDKey = testIDKey
	}
	svc, err := New(context.Background(), cfg, h.es, h.js, nil, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Close() })
	return svc
}

// running runs the projector until stop (or the test's end); stop
// returns Run's error.
func running(t testing.TB, svc *Service) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var err error
	stopped := false
	stop = func() error {
		if !stopped {
			cancel()
			err = <-done
			stopped = true
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// appendEvents appends messages to a case's stream, each with the exact
// expected revision, and returns their positions.
func (h *harness) appendEvents(t testing.TB, caseID string, msgs ...proto.Message) []eventstore.Position {
	t.Helper()
	var out []eventstore.Position
	for _, m := range msgs {
		data, err := proto.Marshal(m)
		require.NoError(t, err)
		exp := eventstore.NoStream()
		if r, ok := h.revs[caseID]; ok {
			exp = eventstore.Exact(r)
		}
		rev, err := h.es.Append(context.Background(), caseID, exp, eventstore.Event{
			ID: uuid.NewString(), Type: string(m.ProtoReflect().Descriptor().FullName()), Data: data,
			Metadata: map[string]string{"actor": marker + "-actor-meta"},
		})
		require.NoError(t, err)
		h.revs[caseID] = rev
		out = append(out, eventstore.Position(rev))
		h.appended = append(h.appended, appendedEvent{caseID: caseID, pos: eventstore.Position(rev), msg: m})
	}
	return out
}

// deleteCase appends CaseDeleted and removes the stream, as retention
// does. With svc it first waits until svc has projected the CaseDeleted:
// removing a stream purges its events, and a projector that had not read
// them yet would only ever see the tombstone.
func (h *harness) deleteCase(t testing.TB, svc *Service, caseID string, at time.Time) {
	t.Helper()
	pos := h.appendEvents(t, caseID, &casev1.CaseDeleted{CaseId: caseID, CaseNumber: number(caseID), PlanVersion: "p1", Rule: "case", DeletedAt: ts(at)})
	if svc != nil {
		require.Eventually(t, func() bool {
			cp, err := svc.Checkpoint()
			return err == nil && cp >= pos[0]
		}, 20*time.Second, time.Millisecond)
	}
	require.NoError(t, h.es.Delete(context.Background(), caseID))
	h.deleted[caseID] = true
}

func (h *harness) head(t testing.TB) eventstore.Position {
	t.Helper()
	p, err := h.es.Head(context.Background())
	require.NoError(t, err)
	return p
}

// settled waits until the service has applied the whole log and
// published everything it produced: its records equal a recount of the
// stream.
func (h *harness) settled(t testing.TB, svc *Service) {
	t.Helper()
	head := h.head(t)
	require.Eventually(t, func() bool {
		cp, err := svc.Checkpoint()
		if err != nil || cp < head {
			return false
		}
		st, err := svc.store.State()
		if err != nil {
			return false
		}
		last, err := svc.stream.LastSeq(context.Background())
		if err != nil {
			return false
		}
		present := map[int64]bool{}
		if err := svc.stream.Read(context.Background(), st.ScanFrom, last, func(m app.StoredMessage) error {
			if m.Record != nil {
				present[m.Record.Version] = true
			}
			return nil
		}); err != nil {
			return false
		}
		for _, m := range st.Outbox {
			if !present[m.Version] {
				return false
			}
		}
		return true
	}, 20*time.Second, 5*time.Millisecond, "statistics did not reach position %d", head)
}

// rawMessage is a stats stream message as stored.
type rawMessage struct {
	Seq     uint64
	Subject string
	Header  nats.Header
	Data    []byte
}

// rawMessages reads every message of the statistics stream.
func (h *harness) rawMessages(t testing.TB) []rawMessage {
	t.Helper()
	ctx := context.Background()
	st, err := h.js.Stream(ctx, stream.StreamName)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	var out []rawMessage
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		require.NoError(t, err)
		out = append(out, rawMessage{Seq: m.Sequence, Subject: m.Subject, Header: m.Header, Data: m.Data})
	}
	return out
}

// recount is Recount as domain records.
func (h *harness) recount(t testing.TB) []domain.Record {
	t.Helper()
	recs, err := Recount(context.Background(), h.js)
	require.NoError(t, err)
	out := make([]domain.Record, len(recs))
	for i, r := range recs {
		out[i] = domain.RecordFromProto(r)
	}
	return out
}

// storeRecords returns the read model's records in statistics id order.
func storeRecords(t testing.TB, svc *Service) []domain.Record {
	t.Helper()
	recs, err := svc.store.Records()
	require.NoError(t, err)
	slices.SortFunc(recs, func(a, b domain.Record) int { return strings.Compare(a.StatisticsID, b.StatisticsID) })
	return recs
}

// grpcClient serves svc on a loopback port, on the server every kontakt
// process uses (so the service's error table applies), and returns a
// client.
func grpcClient(t testing.TB, svc *Service) statisticsv1.StatisticsServiceClient {
	t.Helper()
	srv, err := server.New(server.Config{ListenAddr: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	svc.Register(srv)
	require.NoError(t, srv.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return statisticsv1.NewStatisticsServiceClient(conn)
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func number(caseID string) string { return "KC-2026-" + marker + caseID[len(caseID)-6:] }

// sealed is a stand-in for sealed personal data: statistics treat it as
// opaque, so the "ciphertext" may be a readable marker to search for.
func sealed(caseID, class string) *casev1.SealedPersonalData {
	return &casev1.SealedPersonalData{KeyId: marker + "-key-" + class, Ciphertext: []byte(marker + "-sealed-" + class + "-" + caseID)}
}

// registered builds a CaseRegistered with every personal field filled
// with markers.
func registered(caseID string, typ casev1.CaseType, ch casev1.Channel, category string, at time.Time) *casev1.CaseRegistered {
	return &casev1.CaseRegistered{
		CaseId: caseID, CaseNumber: number(caseID), Type: typ, Channel: ch, Category: category,
		RegisteredAt: ts(at), RegisteredBy: marker + "-agent",
		Contact: sealed(caseID, "contact"), Identity: sealed(caseID, "identity"),
		FreeText: sealed(caseID, "free"), AttachmentNames: sealed(caseID, "att"),
		Attachments: []*casev1.Attachment{{AttachmentId: marker + "-att-id", ContentType: "image/png", SizeBytes: 4711}},
	}
}

func newCaseID() string { return uuid.NewString() }

// requireNoPersonalData checks every message of the statistics stream
// (subject, headers, payload) for markers, case ids, case numbers and
// exact coordinates.
func requireNoPersonalData(t testing.TB, msgs []rawMessage, caseIDs []string, forbidden ...string) {
	t.Helper()
	require.NotEmpty(t, msgs)
	needles := append([]string{marker}, forbidden...)
	for _, id := range caseIDs {
		needles = append(needles, id, strings.ReplaceAll(id, "-", ""), number(id))
	}
	for _, m := range msgs {
		var all bytes.Buffer
		all.WriteString(m.Subject)
		for k, vs := range m.Header {
			fmt.Fprintf(&all, "\n%s: %s", k, strings.Join(vs, ","))
		}
		all.WriteByte('\n')
		all.Write(m.Data)
		for _, n := range needles {
			require.NotContains(t, all.String(), n, "stream message %d", m.Seq)
		}
	}
}

// childEnv names the environment of the kill -9 test's child process.
const (
	envChild    = "KONTAKT_STATS_TEST_CHILD"
	envNATSURL  = "KONTAKT_STATS_TEST_NATS"
	envDataDir  = "KONTAKT_STATS_TEST_DIR"
	envChildLog = "KONTAKT_STATS_TEST_LOG"
)

func isChild() bool { return os.Getenv(envChild) == "1" }

// fileCopy copies a file, for restoring an older read model.
func fileCopy(t testing.TB, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, data, 0o600))
}

func dbPath(h *harness) string { return filepath.Join(h.dir, FileName) }

// decodeRaw decodes a raw stream message's payload.
func decodeRaw(data []byte) (*statisticsv1.StatisticsRecord, error) { return stream.Decode(data) }

// randomHistory appends n cases with random attributes and random
// workflows over 2026: routing, forwarding, answers, closes, reopenings,
// redactions, and (when svc is given, so deletions can wait for it)
// deletions. It returns the case ids.
func (h *harness) randomHistory(t testing.TB, rng *rand.Rand, n int, svc *Service) []string {
	t.Helper()
	queues := []string{"kund", "kundtjanst", "gata"}
	cats := []string{"avfall", "gata", "bygglov", "skola"}
	depts := []string{"Miljö", "Teknik"}
	ids := make([]string, n)
	for i := range n {
		id := newCaseID()
		ids[i] = id
		at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.IntN(365*24*60)) * time.Minute)
		reg := registered(id, casev1.CaseType(rng.IntN(5)), casev1.Channel(rng.IntN(7)), cats[rng.IntN(len(cats))], at)
		if h.seeded && len(h.revs)%3 != 0 {
			reg.StatisticsSeed = crand.Text()
		}
		if rng.IntN(3) == 0 {
			reg.CoarseLocation = &casev1.CoarseLocation{Latitude: 57 + rng.Float64(), Longitude: 11 + rng.Float64()}
		}
		evs := []proto.Message{reg}
		later := func(max time.Duration) time.Time {
			at = at.Add(time.Duration(rng.Int64N(int64(max))))
			return at
		}
		if rng.IntN(5) > 0 {
			evs = append(evs, &casev1.CaseRouted{CaseId: id, Queue: queues[rng.IntN(len(queues))], RoutedAt: ts(later(time.Minute))})
		}
		if rng.IntN(4) == 0 {
			evs = append(evs, &casev1.CaseForwarded{CaseId: id, ToQueue: queues[rng.IntN(len(queues))], ToDepartment: depts[rng.IntN(len(depts))], ForwardedBy: marker, ForwardedAt: ts(later(day))})
		}
		for range rng.IntN(3) {
			evs = append(evs, &casev1.CaseAnswered{CaseId: id, AnsweredBy: marker, Answer: sealed(id, "a"), AnsweredAt: ts(later(3 * day))})
		}
		for c := rng.IntN(4); c > 0; c-- {
			evs = append(evs, &casev1.CaseClosed{CaseId: id, ClosedBy: marker, FirstContactResolution: rng.IntN(2) == 0, ClosedAt: ts(later(5 * day))})
			if c > 1 {
				evs = append(evs, &casev1.CaseReopened{CaseId: id, ReopenedBy: marker, ReopenedAt: ts(later(5 * day))})
			}
		}
		if rng.IntN(3) == 0 {
			evs = append(evs, &casev1.PersonalDataRedacted{CaseId: id, Reason: "retention", RedactedAt: ts(reg.GetRegisteredAt().AsTime().Add(85*day + time.Duration(rng.IntN(10))*day))})
		}
		h.appendEvents(t, id, evs...)
		if svc != nil && rng.IntN(6) == 0 {
			h.deleteCase(t, svc, id, reg.GetRegisteredAt().AsTime().Add(725*day+time.Duration(rng.IntN(10))*day))
		}
	}
	return ids
}

// newSelfCommand runs this test binary as a child process with extra
// environment (TestMain sees it and runs the child instead of tests), and
// kills it when the test ends.
func newSelfCommand(t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	if os.Getenv(envChildLog) != "" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	t.Cleanup(func() {
		if cmd.Process != nil && cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}
