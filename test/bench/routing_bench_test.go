package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

// The shared binary runs with the default queues; the built-in rules send
// every question to the first, kontaktcenter.
const benchQueue = "kontaktcenter"

// routingClients are grpc-go clients of the shared binary with a
// supervisor's token (a supervisor sees every queue) and an agent's.
type routingClients struct {
	k          *kontakt
	conns      []*grpc.ClientConn
	supervisor string
	agent      string
}

func newRoutingClients(b *testing.B, n int) *routingClients {
	b.Helper()
	k := server(b)
	rc := &routingClients{k: k}
	var err error
	if rc.supervisor, err = k.token("bench-sara", "supervisor"); err != nil {
		b.Fatal(err)
	}
	if rc.agent, err = k.token("bench-agent", "agent"); err != nil {
		b.Fatal(err)
	}
	for range n {
		conn, err := grpc.NewClient(k.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		rc.conns = append(rc.conns, conn)
	}
	return rc
}

func (rc *routingClients) routing(i int) routingv1.RoutingServiceClient {
	return routingv1.NewRoutingServiceClient(rc.conns[i%len(rc.conns)])
}

func (rc *routingClients) intake(i int) intakev1.IntakeServiceClient {
	return intakev1.NewIntakeServiceClient(rc.conns[i%len(rc.conns)])
}

func bearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// benchQuestion is a valid question by phone, routed to kontaktcenter.
func benchQuestion(i int64) *intakev1.RegisterCaseRequest {
	return &intakev1.RegisterCaseRequest{Case: &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE, Category: "avfall",
		Subject:     fmt.Sprintf("Fråga %d om sophämtning", i),
		Description: "Invånaren undrar varför sophämtningen uteblev i veckan och när nästa hämtning sker.",
		Contact:     &intakev1.Contact{Name: "Sven Svensson", Phone: "070-123 45 67"},
	}}
}

func pctMS(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(p*float64(len(s))))].Microseconds()) / 1000
}

// routedEvent is a "routed" change and when the watcher received it.
type routedEvent struct {
	caseID string
	at     time.Time
}

// BenchmarkRoutingWatchQueueLatency measures the time from a RegisterCase
// answer to a WatchQueue watcher of kontaktcenter receiving "routed" for
// that case: the projector sees CaseRegistered, the router appends
// CaseRouted, the projector applies it and the broker tells the watcher.
// Cases are registered one at a time (200 per iteration), so each figure
// is the path of one case on an otherwise idle server, over native gRPC
// and over gRPC-web (connect-go, as the agent UI).
func BenchmarkRoutingWatchQueueLatency(b *testing.B) {
	const perIteration = 200
	rc := newRoutingClients(b, 1)
	ic := rc.intake(0)

	watchers := map[string]func(ctx context.Context, out chan<- routedEvent) error{
		"grpc": func(ctx context.Context, out chan<- routedEvent) error {
			s, err := rc.routing(0).WatchQueue(bearer(ctx, rc.supervisor), &routingv1.WatchQueueRequest{Queue: benchQueue})
			if err != nil {
				return err
			}
			for {
				m, err := s.Recv()
				if err != nil {
					return err
				}
				if m.GetChange() == "routed" {
					out <- routedEvent{m.GetCase().GetCaseId(), time.Now()}
				}
			}
		},
		"grpc-web": func(ctx context.Context, out chan<- routedEvent) error {
			client := connect.NewClient[routingv1.WatchQueueRequest, routingv1.WatchQueueResponse](
				http.DefaultClient, "http://"+rc.k.addr+"/kontakt.routing.v1.RoutingService/WatchQueue", connect.WithGRPCWeb())
			req := connect.NewRequest(&routingv1.WatchQueueRequest{Queue: benchQueue})
			req.Header().Set("Authorization", "Bearer "+rc.supervisor)
			s, err := client.CallServerStream(ctx, req)
			if err != nil {
				return err
			}
			defer s.Close()
			for s.Receive() {
				if m := s.Msg(); m.GetChange() == "routed" {
					out <- routedEvent{m.GetCase().GetCaseId(), time.Now()}
				}
			}
			return s.Err()
		},
	}
	for _, name := range []string{"grpc", "grpc-web"} {
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			events := make(chan routedEvent, 4096)
			ended := make(chan error, 1)
			go func() { ended <- watchers[name](ctx, events) }()

			var n atomic.Int64
			register := func() (string, time.Time) {
				rctx, rcancel := context.WithTimeout(bearer(ctx, rc.agent), 10*time.Second)
				defer rcancel()
				resp, err := ic.RegisterCase(rctx, benchQuestion(n.Add(1)))
				if err != nil {
					b.Fatal(err)
				}
				return resp.GetCaseId(), time.Now()
			}
			wait := func(id string, timeout time.Duration) (time.Time, bool) {
				deadline := time.After(timeout)
				for {
					select {
					case ev := <-events:
						if ev.caseID == id {
							return ev.at, true
						}
					case err := <-ended:
						b.Fatalf("WatchQueue ended: %v", err)
					case <-deadline:
						return time.Time{}, false
					}
				}
			}
			// The stream is live once a change arrives (over gRPC-web no
			// response header comes before the first message).
			for attempt := 1; ; attempt++ {
				id, _ := register()
				if _, ok := wait(id, 3*time.Second); ok {
					break
				}
				if attempt == 5 {
					b.Fatal("WatchQueue: no change after 5 probe cases")
				}
			}
			for len(events) > 0 {
				<-events
			}

			var lat []time.Duration
			b.ResetTimer()
			for range b.N {
				for range perIteration {
					id, answered := register()
					got, ok := wait(id, 30*time.Second)
					if !ok {
						b.Fatalf("case %s: no \"routed\" within 30 s", id)
					}
					lat = append(lat, got.Sub(answered))
				}
			}
			b.StopTimer()
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(pctMS(lat, 0.50), "p50_ms")
			b.ReportMetric(pctMS(lat, 0.99), "p99_ms")
			b.ReportMetric(float64(slices.Max(lat).Microseconds())/1000, "max_ms")
			b.Logf("%s: %d cases, RegisterCase answer -> \"routed\" at the watcher: p50 %.2f ms, p99 %.2f ms, min %.2f ms, max %.2f ms",
				name, len(lat), pctMS(lat, 0.50), pctMS(lat, 0.99), float64(slices.Min(lat).Microseconds())/1000, float64(slices.Max(lat).Microseconds())/1000)
		})
	}
}

// fill registers as many questions as it can in a fixed time (60 s, or
// $KONTAKT_BENCH_FILL), once per process, and waits until the read model
// has routed them.
var fill struct {
	once       sync.Once
	registered int64
	open       int64
	elapsed    time.Duration
	routedIn   time.Duration
	unrouted   int64
	err        error
}

func fillQueue(b *testing.B, rc *routingClients) {
	fill.once.Do(func() {
		d := 60 * time.Second
		if s := os.Getenv("KONTAKT_BENCH_FILL"); s != "" {
			if v, err := time.ParseDuration(s); err == nil {
				d = v
			}
		}
		before, err := queueLoad(rc)
		if err != nil {
			fill.err = err
			return
		}
		const writers = 32
		stop := time.Now().Add(d)
		var count atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		start := time.Now()
		for w := range writers {
			wg.Go(func() {
				ic := rc.intake(w)
				for time.Now().Before(stop) {
					ctx, cancel := context.WithTimeout(bearer(context.Background(), rc.agent), 30*time.Second)
					_, err := ic.RegisterCase(ctx, benchQuestion(count.Load()))
					cancel()
					if err != nil {
						errs <- err
						return
					}
					count.Add(1)
				}
			})
		}
		wg.Wait()
		fill.elapsed = time.Since(start)
		close(errs)
		for err := range errs {
			fill.err = errors.Join(fill.err, err)
		}
		fill.registered = count.Load()
		// Wait until the router and the projector have put every case in
		// the queue, or until the count stops moving for 15 s (at most 3
		// minutes): routing that stalls is reported, not waited out.
		want := before + fill.registered
		deadline := time.Now().Add(3 * time.Minute)
		lastOpen, lastMove := int64(-1), time.Now()
		for {
			fill.open, err = queueLoad(rc)
			if err != nil {
				fill.err = errors.Join(fill.err, err)
				return
			}
			if fill.open != lastOpen {
				lastOpen, lastMove = fill.open, time.Now()
			}
			if fill.open >= want || time.Now().After(deadline) || time.Since(lastMove) > 15*time.Second {
				break
			}
			time.Sleep(time.Second)
		}
		fill.routedIn = lastMove.Sub(start)
		fill.unrouted = want - fill.open
	})
}

// queueLoad is kontaktcenter's open-case counter.
func queueLoad(rc *routingClients) (int64, error) {
	ctx, cancel := context.WithTimeout(bearer(context.Background(), rc.supervisor), 10*time.Second)
	defer cancel()
	resp, err := rc.routing(0).ListQueues(ctx, &routingv1.ListQueuesRequest{})
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

// BenchmarkRoutingListQueueCases measures ListQueueCases over grpc-go on
// kontaktcenter after filling it with as many questions as the binary
// takes in about 60 s. Each iteration is 200 sequential calls per kind:
// the first page (50, oldest first), a page of 500, the first page in due
// order, a page deep in the queue (by page token), and a type filter that
// matches nothing, which scans the queue's whole index.
func BenchmarkRoutingListQueueCases(b *testing.B) {
	const perIteration = 200
	rc := newRoutingClients(b, 8)
	fillQueue(b, rc)
	fillLine := fmt.Sprintf("fill: %d questions registered in %s (%.0f/s) by 32 writers; %d open cases in %s, the last one queued %s after the registration began",
		fill.registered, fill.elapsed.Round(time.Millisecond), float64(fill.registered)/fill.elapsed.Seconds(), fill.open, benchQueue, fill.routedIn.Round(time.Millisecond))
	if fill.unrouted > 0 {
		// The router dropped wake-ups it had no room for and routes those
		// cases only at its next five-minute sweep (app/router.go).
		fillLine += fmt.Sprintf("; %d registered cases were still unrouted when routing stopped making progress", fill.unrouted)
	}
	if fill.err != nil {
		b.Fatalf("%s: %v", fillLine, fill.err)
	}
	client := rc.routing(0)
	ctx := bearer(context.Background(), rc.supervisor)

	// A token for a page about half-way through the queue.
	var deep string
	{
		req := &routingv1.ListQueueCasesRequest{Queue: benchQueue, PageSize: 500}
		for range int(fill.open/2/500) + 1 {
			resp, err := client.ListQueueCases(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		deep = req.GetPageToken()
	}

	kinds := []struct {
		name string
		req  *routingv1.ListQueueCasesRequest
		want int
	}{
		{"first_page_50", &routingv1.ListQueueCasesRequest{Queue: benchQueue}, 50},
		{"page_500", &routingv1.ListQueueCasesRequest{Queue: benchQueue, PageSize: 500}, 500},
		{"due_order_50", &routingv1.ListQueueCasesRequest{Queue: benchQueue, Order: routingv1.QueueOrder_QUEUE_ORDER_DUE}, 50},
		{"deep_page_50", &routingv1.ListQueueCasesRequest{Queue: benchQueue, PageToken: deep}, 50},
		{"filter_no_match", &routingv1.ListQueueCasesRequest{Queue: benchQueue, Types: []casev1.CaseType{casev1.CaseType_CASE_TYPE_BREV}}, 0},
	}
	for _, kind := range kinds {
		b.Run(kind.name, func(b *testing.B) {
			var lat []time.Duration
			b.ResetTimer()
			for range b.N {
				for range perIteration {
					t0 := time.Now()
					resp, err := client.ListQueueCases(ctx, kind.req)
					lat = append(lat, time.Since(t0))
					if err != nil {
						b.Fatal(err)
					}
					if len(resp.GetCases()) != kind.want {
						b.Fatalf("%d cases on the page, want %d", len(resp.GetCases()), kind.want)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(fill.open), "open_cases")
			b.ReportMetric(float64(fill.registered)/fill.elapsed.Seconds(), "fill_cases/s")
			b.ReportMetric(float64(fill.unrouted), "unrouted")
			b.ReportMetric(pctMS(lat, 0.50), "p50_ms")
			b.ReportMetric(pctMS(lat, 0.99), "p99_ms")
			b.Logf("%s over %d open cases: p50 %.2f ms, p99 %.2f ms (%d calls); %s", kind.name, fill.open, pctMS(lat, 0.50), pctMS(lat, 0.99), len(lat), fillLine)
		})
	}
}
