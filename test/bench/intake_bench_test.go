package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	"github.com/kontakt-se/kontakt/pkg/auth"
	esjs "github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
)

const (
	// writers is how many goroutines append, or call, at once.
	writers = 64
	// opsPerIteration: each b.N iteration is this many raw appends and
	// this many registered cases.
	opsPerIteration = 64
	// payloadBytes is about the size of a sealed CaseRegistered of a
	// phone case with contact details and a description.
	payloadBytes = 1536
	// connections the API clients share.
	connections = 4
)

var round atomic.Int64 // fresh raw subjects per benchmark run

// BenchmarkRegisterCaseVsRawJetStream measures, in one run against one
// kontakt binary (`kontakt serve`: intake, routing, retention and
// statistics) with its embedded sync-always NATS server:
//
//   - raw: 64 goroutines doing synchronous JetStream publishes (each waits
//     for the ack, so for the fsync) of a 1.5 KiB payload to a separate
//     file-storage stream, each goroutine to its own subject, once before
//     and once after the API's run; the ratio is against the higher rate;
//   - api: 64 goroutines calling IntakeService/RegisterCase over grpc-go
//     (sharing a few connections) with a valid phone case; kontakt answers
//     only after the case's keys, number and CaseRegistered are durable.
//
// The other services work on the same disk while it runs (routing appends
// a CaseRouted per case, the read models commit), so this is the system's
// figure. Each iteration is 64 operations of each kind. It reports
// raw_appends/s, cases/s, their ratio and the p50/p99 latency of
// RegisterCase.
func BenchmarkRegisterCaseVsRawJetStream(b *testing.B) {
	k := server(b)
	token, err := k.token("bench-agent", "agent")
	if err != nil {
		b.Fatal(err)
	}
	measureRegistrations(b, "nats://"+k.natsAddr, k.natsOptions(b), k.addr, token, registerCase, int64(b.N)*opsPerIteration)
}

// BenchmarkRegisterCaseIntakeOnlyVsRawJetStream is the same measurement
// against the intake service alone (bin/kontakt-intake) on a nats-server
// process with sync_interval: always, with raw JetStream measured on that
// server: the intake API's own figure, without other services' writes.
func BenchmarkRegisterCaseIntakeOnlyVsRawJetStream(b *testing.B) {
	natsURL, addr, mint := intakeOnly(b)
	measureRegistrations(b, natsURL, nil, addr, mint("bench-agent", auth.RoleAgent), registerCase, int64(b.N)*opsPerIteration)
}

// BenchmarkSubmitFormIntakeOnlyVsRawJetStream is the intake-only
// measurement for e-service forms: each call has its own idempotency key,
// so besides the case's keys, number and event a submission stores its
// idempotency claim and then the answer: two more synced key-value writes,
// one after the other, which concurrent forms share in atomic batches but
// which are not part of the registrations' group commit.
func BenchmarkSubmitFormIntakeOnlyVsRawJetStream(b *testing.B) {
	natsURL, addr, mint := intakeOnly(b)
	prefix := rand.Text()
	measureRegistrations(b, natsURL, nil, addr, mint("e-tjanst-bench", auth.RoleFormClient), apiCall{
		name: "SubmitForm",
		do: func(ctx context.Context, c intakev1.IntakeServiceClient, in *intakev1.CaseInput, n int64) (string, error) {
			in = proto.CloneOf(in)
			in.Channel = casev1.Channel_CHANNEL_FORM
			_, err := c.SubmitForm(ctx, &intakev1.SubmitFormRequest{IdempotencyKey: fmt.Sprintf("%s-%d", prefix, n), Case: in})
			return "", err // a form's answer carries no case id
		},
	}, int64(b.N)*opsPerIteration)
}

// apiCall is the call a registration benchmark measures: do makes the
// n-th call with the benchmark's case and returns the case's id.
type apiCall struct {
	name string
	do   func(ctx context.Context, c intakev1.IntakeServiceClient, in *intakev1.CaseInput, n int64) (string, error)
}

// registerCase registers one case as an agent.
var registerCase = apiCall{
	name: "RegisterCase",
	do: func(ctx context.Context, c intakev1.IntakeServiceClient, in *intakev1.CaseInput, _ int64) (string, error) {
		resp, err := c.RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: in})
		return resp.GetCaseId(), err
	},
}

// registrationRates are what measureRegistrations measured: raw appends
// per second (the higher of its two runs) and API calls per second.
type registrationRates struct {
	raw, api float64
}

// measureRegistrations runs the raw and the API measurement of the
// benchmarks above, one after the other on the same server: ops raw
// appends, ops calls, ops raw appends.
func measureRegistrations(b *testing.B, natsURL string, natsOpts []nats.Option, addr, token string, call apiCall, ops int64) registrationRates {
	ctx := context.Background()
	nc, err := nats.Connect(natsURL, append(natsOpts, nats.Name("kontakt-bench"))...)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, payloadBytes)
	_, _ = rand.Read(payload)

	clients := make([]intakev1.IntakeServiceClient, connections)
	for i := range clients {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		clients[i] = intakev1.NewIntakeServiceClient(conn)
	}
	authCtx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	in := benchCaseInput()

	b.ResetTimer()

	// (a) Raw JetStream, before and after the API: the disk's rate drifts
	// within minutes on a shared machine, so one raw figure says little.
	// The ratio is taken against the higher of the two, which cannot
	// flatter the API: in the single binary the other services still
	// work off the registrations while the second raw run goes.
	raw := func() time.Duration { return mustRawAppends(b, ctx, js, ops, payload) }
	rawBefore := raw()

	// (b) The API.
	var next atomic.Int64
	var wg sync.WaitGroup
	apiErr := make(chan error, writers)
	latencies := make([][]time.Duration, writers)
	var lastCase atomic.Value // a registered case's id, for the size line
	apiStart := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := clients[w%len(clients)]
			for n := next.Add(1); n <= ops; n = next.Add(1) {
				t0 := time.Now()
				id, err := call.do(authCtx, client, in, n)
				if err != nil {
					apiErr <- err
					return
				}
				lastCase.Store(id)
				latencies[w] = append(latencies[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	apiElapsed := time.Since(apiStart)
	rawAfter := raw()
	b.StopTimer()
	close(apiErr)
	failed := 0
	var firstErr error
	for err := range apiErr {
		if firstErr == nil {
			firstErr = err
		}
		failed++
	}
	if firstErr != nil {
		b.Fatalf("%s: %d of %d writers stopped; first error: %v", call.name, failed, writers, firstErr)
	}

	pct := percentiles(latencies)
	rawRate := float64(ops) / min(rawBefore, rawAfter).Seconds()
	apiRate := float64(ops) / apiElapsed.Seconds()
	reportAgainstRaw(b, rawRate, apiRate, "cases/s", pct)

	id, _ := lastCase.Load().(string)
	stored := registeredSize(ctx, js, id)
	size := ""
	if stored > 0 { // only where raw and API share the server
		size = fmt.Sprintf("; stored CaseRegistered %d bytes vs raw payload %d bytes", stored, payloadBytes)
	}
	b.Logf("N=%d ops each, %d writers: raw JetStream %.0f appends/s (%.0f before, %.0f after); %s %.0f cases/s (ratio %.3f), p50 %.1f ms, p99 %.1f ms, max %.1f ms%s",
		ops, writers, rawRate, float64(ops)/rawBefore.Seconds(), float64(ops)/rawAfter.Seconds(), call.name, apiRate, apiRate/rawRate, pct(0.50), pct(0.99), pct(1), size)
	return registrationRates{raw: rawRate, api: apiRate}
}

// percentiles pools the writers' latencies and returns the p-th
// percentile of them in milliseconds (p=1: the slowest).
func percentiles(latencies [][]time.Duration) func(p float64) float64 {
	all := slices.Concat(latencies...)
	slices.Sort(all)
	return func(p float64) float64 {
		i := min(len(all)-1, int(p*float64(len(all))))
		return float64(all[i].Microseconds()) / 1000
	}
}

// reportAgainstRaw reports what a benchmark of many writers measured
// against the raw appends of the same run: both rates, their ratio, and
// the median and 99th percentile latency. An iteration is two different
// things, so ns/op says nothing and is zeroed.
func reportAgainstRaw(b *testing.B, rawRate, rate float64, unit string, pct func(float64) float64) {
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(rawRate, "raw_appends/s")
	b.ReportMetric(rate, unit)
	b.ReportMetric(rate/rawRate, "ratio")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
}

// benchCaseInput is the case every registration benchmark registers: a
// question by phone with contact details and a description, under a
// category code that every kontakt since the baseline accepts.
func benchCaseInput() *intakev1.CaseInput {
	return &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE, Category: "bygglov",
		Subject:     "Fråga om bygglov för altan",
		Description: "Invånaren undrar om det krävs bygglov för en altan på 25 kvadratmeter som ligger närmare tomtgränsen än 4,5 meter, och hur lång handläggningstiden är just nu.",
		Contact: &intakev1.Contact{
			Name: "Sven Svensson", Phone: "070-123 45 67",
			PostalAddress: &casev1.PostalAddress{Street: "Storgatan 1", PostalCode: "431 82", City: "Mölndal"},
		},
	}
}

// mustRawAppends is rawAppends for a benchmark, which fails on an error:
// every figure that is measured against raw appends takes them this way.
func mustRawAppends(b *testing.B, ctx context.Context, js jetstream.JetStream, n int64, payload []byte) time.Duration {
	b.Helper()
	d, err := rawAppends(ctx, js, n, payload)
	if err != nil {
		b.Fatal("raw publish: ", err)
	}
	return d
}

// rawAppends is the substrate's figure for appends: n synchronous
// JetStream publishes (each waits for the acknowledgement, so for the
// fsync on a sync-always server) of payload to a file-storage stream of
// its own, from writers goroutines, each to its own subject. It returns
// how long the n publishes took.
func rawAppends(ctx context.Context, js jetstream.JetStream, n int64, payload []byte) (time.Duration, error) {
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "BENCHRAW", Subjects: []string{"benchraw.>"}, Storage: jetstream.FileStorage, Replicas: 1,
	}); err != nil {
		return 0, err
	}
	r := round.Add(1)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			subject := fmt.Sprintf("benchraw.r%d.w%d", r, w)
			for next.Add(1) <= n {
				if _, err := js.Publish(ctx, subject, payload); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	return elapsed, <-errs
}

// registeredSize is the size of a stored CaseRegistered, to compare with
// the raw payload: the first message on the subject of caseID, a case the
// API registered, whatever other services appended after it; without an
// id (a form's answer has none) the newest case event, which is a
// CaseRegistered where intake runs alone.
func registeredSize(ctx context.Context, js jetstream.JetStream, caseID string) int {
	s, err := js.Stream(ctx, esjs.DefaultStreamName)
	if err != nil {
		return -1
	}
	var m *jetstream.RawStreamMsg
	if caseID != "" {
		m, err = s.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(esjs.DefaultSubjectPrefix+"."+caseID))
	} else {
		m, err = s.GetLastMsgForSubject(ctx, esjs.DefaultSubjectPrefix+".>")
	}
	if err != nil || m.Header.Get(esjs.HeaderEventType) != "kontakt.case.v1.CaseRegistered" {
		return -1
	}
	return len(m.Data)
}
