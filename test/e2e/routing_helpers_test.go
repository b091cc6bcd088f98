package e2e

// Helpers for the routing tests: a binary started with the routing test's
// queues and a reachable embedded NATS, tokens with a department, one
// grpc-go call per RoutingService method, live queue watchers over
// gRPC-web (connect-go), and kill -9 of the process.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

// routingQueues are the queues of every routing test: kontaktcenter is
// first, so the built-in rules send everything but fault reports there;
// felanmalan takes fault reports; gata and miljo belong to departments.
const routingQueues = `routing:
  queues:
    - {name: kontaktcenter, title: Kontaktcenter, members: [anna, bo]}
    - {name: felanmalan, title: Felanmälan, members: [anna]}
    - {name: gata, title: Gata och trafik, department: stadsbyggnad}
    - {name: miljo, title: Miljö och hälsa, department: miljoforvaltningen}
`

// Names the routing tests look for in the store and on the wire.
const (
	caseRoutedType     = "kontakt.case.v1.CaseRouted"
	caseAssignedType   = "kontakt.case.v1.CaseAssigned"
	auditStream        = "KONTAKT_AUDIT"
	routingWatchMethod = "/kontakt.routing.v1.RoutingService/WatchQueue"
	getCaseRPC         = "/kontakt.routing.v1.RoutingService/GetCase"
)

// routingEnv is a started binary with the routing queues, a reachable
// embedded NATS (through intakeEnv) and clients.
type routingEnv struct {
	*intakeEnv
	rc     routingv1.RoutingServiceClient
	ic     intakev1.IntakeServiceClient
	tokens map[string]string
}

// startRouting starts kontakt with routingQueues, embedded_listen and any
// extra configuration. dataDir may be empty (a fresh one).
func startRouting(t *testing.T, dataDir string, extraConfig ...string) *routingEnv {
	t.Helper()
	e := &routingEnv{
		intakeEnv: startInspected(t, Options{DataDir: dataDir, ExtraConfig: routingQueues + strings.Join(extraConfig, "")}),
		tokens:    map[string]string{},
	}
	e.rc = routingv1.NewRoutingServiceClient(e.conns[0])
	e.ic = intakev1.NewIntakeServiceClient(e.conns[0])
	return e
}

// principal is one person the routing tests act as.
type principal struct {
	subject, department string
	roles               []string
}

var (
	anna   = principal{subject: "anna", roles: []string{"agent"}}  // kontaktcenter, felanmalan
	bo     = principal{subject: "bo", roles: []string{"agent"}}    // kontaktcenter
	cilla  = principal{subject: "cilla", roles: []string{"agent"}} // no queue at all
	sara   = principal{subject: "sara", roles: []string{"supervisor"}}
	olle   = principal{subject: "olle", roles: []string{"officer"}, department: "stadsbyggnad"}
	olof   = principal{subject: "olof", roles: []string{"officer"}, department: "miljoforvaltningen"}
	alva   = principal{subject: "alva", roles: []string{"analyst"}}
	dina   = principal{subject: "dina", roles: []string{"dpo"}}
	agents = []principal{anna, bo}
)

// token mints (once per env) a development token for p with the binary's
// CLI, with --department where p has one.
func (e *routingEnv) token(t *testing.T, p principal) string {
	t.Helper()
	if tok, ok := e.tokens[p.subject]; ok {
		return tok
	}
	args := []string{"token", "--config", e.k.Config, "--subject", p.subject}
	for _, r := range p.roles {
		args = append(args, "--role", r)
	}
	if p.department != "" {
		args = append(args, "--department", p.department)
	}
	cmd := exec.Command(binary(t, "kontakt"), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "kontakt token: %s", stderr.String())
	tok := strings.TrimSpace(string(out))
	e.tokens[p.subject] = tok
	return tok
}

// as returns a context carrying p's token, bounded to 30 s.
func (e *routingEnv) as(t *testing.T, p principal) (context.Context, context.CancelFunc) {
	t.Helper()
	return withToken(e.token(t, p))
}

func withToken(token string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), cancel
}

// requireStatus checks a call's status code and that its message contains
// every fragment.
func requireStatus(t *testing.T, err error, code codes.Code, fragments ...string) {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, code.String(), st.Code().String(), "message: %q", st.Message())
	for _, f := range fragments {
		require.Contains(t, st.Message(), f)
	}
}

// fragaInput is a question by phone with contact details.
func fragaInput(subject string, contact *intakev1.Contact) *intakev1.CaseInput {
	if contact == nil {
		contact = &intakev1.Contact{Name: "Sven Svensson", Phone: "070-123 45 67"}
	}
	return &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE,
		Category: "avfall", Subject: subject,
		Description: "Invånaren undrar när sophämtningen kommer efter helgen.",
		Contact:     contact,
	}
}

// register registers a case as anna over grpc-go and returns its id and
// number.
func (e *routingEnv) register(t *testing.T, in *intakev1.CaseInput) (string, string) {
	t.Helper()
	ctx, cancel := e.as(t, anna)
	defer cancel()
	resp, err := e.ic.RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: in})
	require.NoError(t, err)
	require.NotEmpty(t, resp.GetCaseId())
	require.NotEmpty(t, resp.GetCaseNumber())
	return resp.GetCaseId(), resp.GetCaseNumber()
}

// eventually polls f every 50 ms until it returns true or timeout passes;
// it returns whether f returned true.
func eventually(timeout time.Duration, f func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// summaryByNumber finds a case by its number as the supervisor (no
// audit record); nil when the read model does not have it yet.
func (e *routingEnv) summaryByNumber(t *testing.T, number string) *routingv1.CaseSummary {
	t.Helper()
	ctx, cancel := e.as(t, sara)
	defer cancel()
	resp, err := e.rc.FindCases(ctx, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_CaseNumber{CaseNumber: number}})
	require.NoError(t, err)
	if len(resp.GetCases()) == 0 {
		return nil
	}
	require.Len(t, resp.GetCases(), 1)
	return resp.GetCases()[0]
}

// waitSummary waits until the read model shows the case in a state ok
// accepts, and returns it.
func (e *routingEnv) waitSummary(t *testing.T, number string, what string, ok func(*routingv1.CaseSummary) bool) *routingv1.CaseSummary {
	t.Helper()
	var last *routingv1.CaseSummary
	if !eventually(10*time.Second, func() bool {
		last = e.summaryByNumber(t, number)
		return last != nil && ok(last)
	}) {
		t.Fatalf("case %s: the read model did not show %s within 10 s; last seen %v", number, what, last)
	}
	return last
}

// waitRouted waits until the read model shows the case in a queue.
func (e *routingEnv) waitRouted(t *testing.T, number string) *routingv1.CaseSummary {
	t.Helper()
	return e.waitSummary(t, number, "it routed", func(s *routingv1.CaseSummary) bool {
		return s.GetQueue() != "" && s.GetStatus() != casev1.CaseStatus_CASE_STATUS_REGISTERED
	})
}

// auditTrail lists the audit records of a case as the DPO.
func (e *routingEnv) auditTrail(t *testing.T, req *routingv1.ListAuditTrailRequest) []*routingv1.AuditRecord {
	t.Helper()
	ctx, cancel := e.as(t, dina)
	defer cancel()
	resp, err := e.rc.ListAuditTrail(ctx, req)
	require.NoError(t, err)
	return resp.GetRecords()
}

// routedPerCase counts the CaseRouted and CaseRegistered events of every
// case subject in the store.
func routedPerCase(evs []storedEvent) (routed, registered map[string]int) {
	routed, registered = map[string]int{}, map[string]int{}
	for _, ev := range evs {
		switch ev.Type {
		case caseRoutedType:
			routed[ev.caseID()]++
		case caseRegisteredType:
			registered[ev.caseID()]++
		}
	}
	return routed, registered
}

// countType counts events of one type per case.
func countType(evs []storedEvent, typ string) map[string]int {
	out := map[string]int{}
	for _, ev := range evs {
		if ev.Type == typ {
			out[ev.caseID()]++
		}
	}
	return out
}

// watchEvent is one WatchQueue message and when the test received it.
type watchEvent struct {
	Change string
	Case   *routingv1.CaseSummary
	At     time.Time // the change's time, from the server
	Got    time.Time // when the client received it
}

func (w watchEvent) String() string {
	return fmt.Sprintf("%s(queue=%s status=%s assignee=%q)", w.Change, w.Case.GetQueue(), w.Case.GetStatus(), w.Case.GetAssignee())
}

// queueWatcher is an open WatchQueue stream read by a goroutine.
type queueWatcher struct {
	queue  string
	mu     sync.Mutex
	events []watchEvent
	ended  bool
	err    error
	wake   chan struct{}
	read   map[string]int // per case: how many events next has returned
	closed chan struct{}
}

// watch opens WatchQueue over gRPC-web with connect-go, as the agent UI
// does, and returns once the stream is known to be live.
//
// Over gRPC-web the response headers do not reach the client before the
// first message (the transcoder holds them), so CallServerStream blocks
// until a message arrives, and only a message shows that the server has
// subscribed. probe makes a change in the queue and is repeated until the
// watcher has received something (a change, or a first message the server
// sends of its own accord).
func (e *routingEnv) watch(t *testing.T, p principal, queue string, probe func()) *queueWatcher {
	t.Helper()
	client := connect.NewClient[routingv1.WatchQueueRequest, routingv1.WatchQueueResponse](
		http.DefaultClient, "http://"+e.k.Addr+routingWatchMethod, connect.WithGRPCWeb())
	ctx, cancel := context.WithCancel(context.Background())
	req := connect.NewRequest(&routingv1.WatchQueueRequest{Queue: queue})
	req.Header().Set("Authorization", "Bearer "+e.token(t, p))
	w := &queueWatcher{queue: queue, wake: make(chan struct{}, 1), read: map[string]int{}, closed: make(chan struct{})}
	go func() {
		defer close(w.closed)
		stream, err := client.CallServerStream(ctx, req)
		if err == nil {
			for stream.Receive() {
				m := stream.Msg()
				ev := watchEvent{Change: m.GetChange(), Case: m.GetCase(), At: m.GetAt().AsTime(), Got: time.Now()}
				w.mu.Lock()
				w.events = append(w.events, ev)
				w.mu.Unlock()
				w.poke()
			}
			err = stream.Err()
			_ = stream.Close()
		}
		w.mu.Lock()
		w.ended, w.err = true, err
		w.mu.Unlock()
		w.poke()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.closed:
		case <-time.After(10 * time.Second):
			t.Errorf("WatchQueue %s: reader did not stop", queue)
		}
	})
	start := time.Now()
	for attempt := 1; ; attempt++ {
		probe()
		if w.waitAny(time.Second) {
			t.Logf("WatchQueue %s (gRPC-web) live after %d probe(s), %s", queue, attempt, time.Since(start).Round(time.Millisecond))
			return w
		}
		if open, err := w.open(); !open {
			t.Fatalf("WatchQueue %s ended: %v", queue, err)
		}
		if attempt == 10 {
			t.Fatalf("WatchQueue %s: no change arrived after %d probes", queue, attempt)
		}
	}
}

func (w *queueWatcher) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// waitAny waits until the watcher has received any change.
func (w *queueWatcher) waitAny(timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		n, ended := len(w.events), w.ended
		w.mu.Unlock()
		if n > 0 {
			return true
		}
		if ended {
			return false
		}
		select {
		case <-w.wake:
		case <-deadline.C:
			return false
		}
	}
}

// forCase returns the events received so far for one case.
func (w *queueWatcher) forCase(caseID string) []watchEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []watchEvent
	for _, ev := range w.events {
		if ev.Case.GetCaseId() == caseID {
			out = append(out, ev)
		}
	}
	return out
}

// next returns the next event for a case that next has not returned yet,
// waiting up to timeout.
func (w *queueWatcher) next(t *testing.T, caseID string, timeout time.Duration) watchEvent {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		evs := w.forCase(caseID)
		w.mu.Lock()
		i, ended, err := w.read[caseID], w.ended, w.err
		if i < len(evs) {
			w.read[caseID] = i + 1
			w.mu.Unlock()
			return evs[i]
		}
		w.mu.Unlock()
		if ended {
			t.Fatalf("WatchQueue %s ended before event %d of case %s: %v", w.queue, i+1, caseID, err)
		}
		select {
		case <-w.wake:
		case <-deadline.C:
			t.Fatalf("WatchQueue %s: no event %d for case %s within %s; so far %v", w.queue, i+1, caseID, timeout, evs)
		}
	}
}

// open reports whether the stream is still open, and its error if not.
func (w *queueWatcher) open() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.ended, w.err
}

// watchCodes opens WatchQueue over gRPC-web and grpc-go and returns the
// codes both end with within 1.5 s: OK when the stream is still
// open then, as it is for a permitted watcher while nothing changes.
func (e *routingEnv) watchCodes(t *testing.T, p principal, queue string) (web, native codes.Code, msg string) {
	t.Helper()
	client := connect.NewClient[routingv1.WatchQueueRequest, routingv1.WatchQueueResponse](
		http.DefaultClient, "http://"+e.k.Addr+routingWatchMethod, connect.WithGRPCWeb())
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	req := connect.NewRequest(&routingv1.WatchQueueRequest{Queue: queue})
	req.Header().Set("Authorization", "Bearer "+e.token(t, p))
	stream, err := client.CallServerStream(ctx, req)
	if err == nil {
		if stream.Receive() {
			err = nil
		} else {
			err = stream.Err()
		}
		_ = stream.Close()
	}
	web = codes.OK
	var ce *connect.Error
	if errors.As(err, &ce) && ce.Code() != connect.CodeDeadlineExceeded && ce.Code() != connect.CodeCanceled {
		web, msg = codes.Code(ce.Code()), ce.Message()
	} else if err != nil && !errors.As(err, &ce) && ctx.Err() == nil {
		t.Fatalf("gRPC-web WatchQueue: %v", err)
	}

	gctx, gcancel := withToken(e.token(t, p))
	defer gcancel()
	gctx, gcancel2 := context.WithTimeout(gctx, 1500*time.Millisecond)
	defer gcancel2()
	gs, err := e.rc.WatchQueue(gctx, &routingv1.WatchQueueRequest{Queue: queue})
	require.NoError(t, err)
	native = codes.OK
	if _, err := gs.Recv(); err != nil && status.Code(err) != codes.DeadlineExceeded {
		native = status.Code(err)
	}
	return web, native, msg
}

// kill9 kills the process with SIGKILL and waits for it, leaving the exit
// for Start's cleanup.
func (k *Kontakt) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, k.cmd.Process.Kill())
	select {
	case err := <-k.done:
		k.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("kontakt did not die within 10 s of SIGKILL")
	}
}

// routing returns a RoutingService client on one of the env's connections.
func (e *routingEnv) routing(i int) routingv1.RoutingServiceClient {
	return routingv1.NewRoutingServiceClient(e.conn(i))
}
