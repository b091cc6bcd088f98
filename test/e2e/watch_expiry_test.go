package e2e

// A live queue (WatchQueue) must not outlive the right to watch it (issue
// 13, hole 8): the stream ends with Unauthenticated when its token
// expires, and with PermissionDenied when a configuration reload (SIGHUP)
// takes the caller out of the queue. A configuration the binary would not
// start with is refused on reload, logged, and changes nothing.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/auth"
	"github.com/kontakt-se/kontakt/pkg/natstest"
)

// liveWatch is one open WatchQueue stream, over grpc-go or over gRPC-web
// (connect-go), read by a goroutine that records every message and how
// the stream ended.
type liveWatch struct {
	name string

	mu      sync.Mutex
	got     []time.Time // when each message arrived
	changes []string
	ended   bool
	endedAt time.Time
	code    codes.Code
	err     error
	wake    chan struct{}
}

func newLiveWatch(name string) *liveWatch {
	return &liveWatch{name: name, wake: make(chan struct{}, 1)}
}

func (w *liveWatch) message(change string) {
	w.mu.Lock()
	w.got = append(w.got, time.Now())
	w.changes = append(w.changes, change)
	w.mu.Unlock()
	w.poke()
}

func (w *liveWatch) end(code codes.Code, err error) {
	w.mu.Lock()
	w.ended, w.endedAt, w.code, w.err = true, time.Now(), code, err
	w.mu.Unlock()
	w.poke()
}

func (w *liveWatch) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// state returns how many messages arrived and whether the stream ended.
func (w *liveWatch) state() (messages int, ended bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.got), w.ended
}

// waitFor waits until cond holds for the watch, or timeout passes.
func (w *liveWatch) waitFor(timeout time.Duration, cond func(messages int, ended bool) bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if cond(w.state()) {
			return true
		}
		select {
		case <-w.wake:
		case <-deadline.C:
			return cond(w.state())
		}
	}
}

// openNativeWatch opens WatchQueue over grpc-go and waits for its first
// message ("watching"), so the stream is known to be live.
func openNativeWatch(t *testing.T, conn *grpc.ClientConn, token, queue string) *liveWatch {
	t.Helper()
	w := newLiveWatch("grpc")
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token))
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		s, err := routingv1.NewRoutingServiceClient(conn).WatchQueue(ctx, &routingv1.WatchQueueRequest{Queue: queue})
		for err == nil {
			var m *routingv1.WatchQueueResponse
			if m, err = s.Recv(); err == nil {
				w.message(m.GetChange())
			}
		}
		w.end(status.Code(err), err)
	}()
	requireLive(t, w)
	return w
}

// openWebWatch opens WatchQueue over gRPC-web with connect-go, as the
// agent UI does, and waits for its first message.
func openWebWatch(t *testing.T, addr, token, queue string) *liveWatch {
	t.Helper()
	w := newLiveWatch("grpc-web")
	client := connect.NewClient[routingv1.WatchQueueRequest, routingv1.WatchQueueResponse](
		http.DefaultClient, "http://"+addr+routingWatchMethod, connect.WithGRPCWeb())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	req := connect.NewRequest(&routingv1.WatchQueueRequest{Queue: queue})
	req.Header().Set("Authorization", "Bearer "+token)
	go func() {
		defer close(done)
		stream, err := client.CallServerStream(ctx, req)
		if err == nil {
			for stream.Receive() {
				w.message(stream.Msg().GetChange())
			}
			err = stream.Err()
			_ = stream.Close()
		}
		code := codes.OK
		if err != nil {
			// connect's codes are gRPC's, number for number.
			code = codes.Code(connect.CodeOf(err))
		}
		w.end(code, err)
	}()
	requireLive(t, w)
	return w
}

func requireLive(t *testing.T, w *liveWatch) {
	t.Helper()
	require.True(t, w.waitFor(15*time.Second, func(n int, ended bool) bool { return n > 0 || ended }), "%s: WatchQueue sent nothing within 15 s", w.name)
	n, ended := w.state()
	require.False(t, ended, "%s: WatchQueue ended at once: %v", w.name, w.err)
	require.Positive(t, n)
}

// cliToken mints a development token with the binary's CLI.
func cliToken(t *testing.T, k *Kontakt, subject, role, ttl string) string {
	t.Helper()
	cmd := exec.Command(binary(t, "kontakt"), "token", "--config", k.Config, "--subject", subject, "--role", role, "--ttl", ttl)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "kontakt token: %s", stderr.String())
	return strings.TrimSpace(string(out))
}

// tokenExpiry reads a JWT's "exp" (the test trusts its own token).
func tokenExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims struct {
		Exp int64 `json:"exp"`
	}
	require.NoError(t, json.Unmarshal(payload, &claims))
	require.NotZero(t, claims.Exp)
	return time.Unix(claims.Exp, 0)
}

// registerEvery registers a question by phone (routed to kontaktcenter)
// every interval until the test ends or stop is called, so a live watch
// of kontaktcenter always has something to deliver.
func registerEvery(t *testing.T, conn *grpc.ClientConn, token string, interval time.Duration) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token))
	done := make(chan struct{})
	var failures []error
	go func() {
		defer close(done)
		ic := intakev1.NewIntakeServiceClient(conn)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := ic.RegisterCase(cctx, &intakev1.RegisterCaseRequest{Case: fragaInput("Sophämtning", nil)})
			ccancel()
			if err != nil && ctx.Err() == nil {
				failures = append(failures, err)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			if len(failures) > 0 {
				t.Errorf("%d registrations failed while the watch ran; the first: %v", len(failures), failures[0])
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestWatchQueueEndsWhenItsTokenExpires(t *testing.T) {
	k := Start(t, Options{ExtraConfig: routingQueues})
	conn := k.Dial(t)
	anna8h := cliToken(t, k, "anna", "agent", "8h")
	stopRegistering := registerEvery(t, conn, anna8h, 300*time.Millisecond)

	short := cliToken(t, k, "anna", "agent", "5s")
	expires := tokenExpiry(t, short)
	watches := []*liveWatch{
		openNativeWatch(t, conn, short, "kontaktcenter"),
		openWebWatch(t, k.Addr, short, "kontaktcenter"),
	}
	require.True(t, time.Now().Before(expires), "the streams opened after the token expired; the machine is too slow for a 5 s token")

	const bound = 3 * time.Second
	for _, w := range watches {
		w.waitFor(time.Until(expires)+bound+5*time.Second, func(_ int, ended bool) bool { return ended })
	}
	stopRegistering()
	for _, w := range watches {
		w.mu.Lock()
		got, changes, ended, endedAt, code, err := append([]time.Time(nil), w.got...), append([]string(nil), w.changes...), w.ended, w.endedAt, w.code, w.err
		w.mu.Unlock()
		var before, after int
		for _, at := range got {
			if at.After(expires) {
				after++
			} else {
				before++
			}
		}
		if !ended {
			t.Fatalf("%s: the stream was still open %s after its token expired, and delivered %d messages after the expiry",
				w.name, time.Since(expires).Round(time.Millisecond), after)
		}
		t.Logf("%s: %d messages before the expiry (%v…), %d after; ended %s after the expiry with %s",
			w.name, before, changes[:min(3, len(changes))], after, endedAt.Sub(expires).Round(time.Millisecond), code)
		require.Equal(t, codes.Unauthenticated.String(), code.String(), "%s: ended with %v", w.name, err)
		require.Greater(t, before, 1, "%s: the watch delivered changes while its token was valid", w.name)
		require.False(t, endedAt.Before(expires.Add(-time.Second)), "%s: ended %s before the token expired", w.name, expires.Sub(endedAt))
		require.LessOrEqual(t, endedAt.Sub(expires), bound, "%s: ended too long after the expiry", w.name)
		for _, at := range got {
			// One message may be in flight when the server's clock
			// passes exp; none may be sent after it.
			require.LessOrEqual(t, at.Sub(expires), time.Second, "%s: a message arrived %s after the token expired", w.name, at.Sub(expires))
		}
	}

	// A new stream with the expired token ends at once, even inside the
	// verifier's leeway, where a unary call would still be let in.
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+short), 10*time.Second)
	defer cancel()
	s, err := routingv1.NewRoutingServiceClient(conn).WatchQueue(ctx, &routingv1.WatchQueueRequest{Queue: "kontaktcenter"})
	if err == nil {
		_, err = s.Recv()
	}
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
}

// routingQueuesWithoutBo is routingQueues with bo no longer a member of
// kontaktcenter by configuration.
const routingQueuesWithoutBo = `routing:
  queues:
    - {name: kontaktcenter, title: Kontaktcenter, members: [anna]}
    - {name: felanmalan, title: Felanmälan, members: [anna]}
    - {name: gata, title: Gata och trafik, department: stadsbyggnad}
    - {name: miljo, title: Miljö och hälsa, department: miljoforvaltningen}
`

func TestWatchQueueFollowsConfiguredMembership(t *testing.T) {
	k := Start(t, Options{ExtraConfig: routingQueues})
	conn := k.Dial(t)
	original, err := os.ReadFile(k.Config)
	require.NoError(t, err)
	require.Contains(t, string(original), routingQueues)
	// rewrite replaces the routing block, the file's last.
	rewrite := func(routing string) {
		t.Helper()
		b := strings.Replace(string(original), routingQueues, routing, 1)
		require.NoError(t, os.WriteFile(k.Config, []byte(b), 0o600))
	}
	hangup := func() {
		t.Helper()
		require.NoError(t, k.cmd.Process.Signal(syscall.SIGHUP))
	}
	logCount := func(s string) int { return strings.Count(k.stderr.String(), s) }
	// requireRunning fails the test when the binary has exited (a process
	// without a SIGHUP handler dies of the signal).
	requireRunning := func(what string) {
		t.Helper()
		select {
		case err := <-k.done:
			k.done <- err
			t.Fatalf("%s: kontakt exited: %v", what, err)
		default:
		}
	}

	anna8h := cliToken(t, k, "anna", "agent", "8h")
	registerEvery(t, conn, anna8h, 300*time.Millisecond)
	// bo is a member of kontaktcenter only by configuration: his token
	// names no queue. anna stays a member throughout.
	bo := cliToken(t, k, "bo", "agent", "8h")
	boWatches := []*liveWatch{openNativeWatch(t, conn, bo, "kontaktcenter"), openWebWatch(t, k.Addr, bo, "kontaktcenter")}
	annaWatch := openNativeWatch(t, conn, anna8h, "kontaktcenter")
	all := append([]*liveWatch{annaWatch}, boWatches...)

	// stillLive asserts that every watch delivers a further message.
	stillLive := func(what string, ws ...*liveWatch) {
		t.Helper()
		for _, w := range ws {
			n, _ := w.state()
			require.True(t, w.waitFor(10*time.Second, func(m int, ended bool) bool { return m > n || ended }), "%s: %s: nothing arrived", what, w.name)
			_, ended := w.state()
			require.False(t, ended, "%s: %s ended: %v", what, w.name, w.err)
		}
	}
	stillLive("before any reload", all...)

	bad := []struct {
		name, routing, logged string
	}{
		// Both files would also take bo out of the queue: had either been
		// applied, even in part, his watch would end.
		{name: "an invalid queue name", routing: strings.Replace(routingQueuesWithoutBo, "name: gata,", "name: Gata och trafik,", 1), logged: "routing.queues[2].name"},
		{name: "a rule file that does not exist", routing: routingQueuesWithoutBo + "  rules_file: /nonexistent/kontakt-rules.yaml\n", logged: "routing.rules_file"},
	}
	for _, tt := range bad {
		refused := logCount("configuration reload refused")
		rewrite(tt.routing)
		hangup()
		logged := eventually(10*time.Second, func() bool { return logCount("configuration reload refused") > refused })
		requireRunning("SIGHUP with " + tt.name)
		require.True(t, logged, "%s: no refusal logged after SIGHUP", tt.name)
		require.Contains(t, k.stderr.String(), tt.logged, "%s: the refusal names the key", tt.name)
		stillLive("after refusing "+tt.name, all...)
	}

	rewrite(routingQueuesWithoutBo)
	reloaded := time.Now()
	hangup()
	requireRunning("SIGHUP with bo removed")
	for _, w := range boWatches {
		require.True(t, w.waitFor(10*time.Second, func(_ int, ended bool) bool { return ended }), "%s: bo's watch still open 10 s after he left the queue", w.name)
		w.mu.Lock()
		code, err, endedAt := w.code, w.err, w.endedAt
		w.mu.Unlock()
		t.Logf("%s: bo's watch ended %s after the SIGHUP with %s", w.name, endedAt.Sub(reloaded).Round(time.Millisecond), code)
		require.Equal(t, codes.PermissionDenied.String(), code.String(), "%s: %v", w.name, err)
	}
	require.Contains(t, k.stderr.String(), "configuration reloaded")
	stillLive("after bo left", annaWatch)

	// And a new watch by bo is refused.
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+bo), 10*time.Second)
	defer cancel()
	s, err := routingv1.NewRoutingServiceClient(conn).WatchQueue(ctx, &routingv1.WatchQueueRequest{Queue: "kontaktcenter"})
	if err == nil {
		_, err = s.Recv()
	}
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	require.False(t, errors.Is(err, context.DeadlineExceeded))
}

// TestRoutingServiceReloadsOnHangup checks the same reload in routing's own
// binary (kontakt-routing against a NATS cluster): a bad file is refused
// and logged, a good one applies, and a watcher who left the queue is
// ended with PermissionDenied.
func TestRoutingServiceReloadsOnHangup(t *testing.T) {
	cluster := natstest.StartCluster(t, "kontakt", 3)
	devKey := filepath.Join(t.TempDir(), "dev-signing-key.pem")
	master := make([]byte, 32)
	_, err := rand.Read(master)
	require.NoError(t, err)
	svc := startService(t, "routing", "a", cluster.URL(), devKey,
		[]string{"KONTAKT_MASTER_KEY=" + base64.StdEncoding.EncodeToString(master)})
	original, err := os.ReadFile(svc.config)
	require.NoError(t, err)
	require.Contains(t, string(original), routingQueues)
	rewrite := func(routing string) {
		t.Helper()
		require.NoError(t, os.WriteFile(svc.config, []byte(strings.Replace(string(original), routingQueues, routing, 1)), 0o600))
	}
	hangup := func(wantLog string) {
		t.Helper()
		before := strings.Count(svc.out.String(), wantLog)
		require.NoError(t, svc.cmd.Process.Signal(syscall.SIGHUP))
		logged := eventually(10*time.Second, func() bool { return strings.Count(svc.out.String(), wantLog) > before })
		select {
		case err := <-svc.done:
			svc.done <- err
			t.Fatalf("kontakt-routing exited on SIGHUP: %v", err)
		default:
		}
		require.True(t, logged, "no %q logged after SIGHUP", wantLog)
	}

	key, err := auth.LoadOrCreateDevKey(devKey)
	require.NoError(t, err)
	bo, err := key.Mint("bo", []auth.Role{auth.RoleAgent}, nil, "", time.Hour, time.Now())
	require.NoError(t, err)
	conn, err := grpc.NewClient(svc.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	rc := routingv1.NewRoutingServiceClient(conn)
	queuesOf := func(token string) []string {
		t.Helper()
		ctx, cancel := withToken(token)
		defer cancel()
		resp, err := rc.ListQueues(ctx, &routingv1.ListQueuesRequest{})
		require.NoError(t, err)
		var names []string
		for _, q := range resp.GetQueues() {
			names = append(names, q.GetName())
		}
		return names
	}
	require.Equal(t, []string{"kontaktcenter"}, queuesOf(bo), "bo is a member of kontaktcenter by configuration")
	w := openNativeWatch(t, conn, bo, "kontaktcenter")

	rewrite(strings.Replace(routingQueuesWithoutBo, "name: gata,", "name: Gata och trafik,", 1))
	hangup("configuration reload refused")
	require.Equal(t, []string{"kontaktcenter"}, queuesOf(bo), "a refused file changes nothing")
	_, ended := w.state()
	require.False(t, ended, "the watch ended after a refused reload: %v", w.err)

	rewrite(routingQueuesWithoutBo)
	hangup("configuration reloaded")
	require.Empty(t, queuesOf(bo), "bo left kontaktcenter")
	require.True(t, w.waitFor(10*time.Second, func(_ int, ended bool) bool { return ended }), "bo's watch still open after he left the queue")
	w.mu.Lock()
	defer w.mu.Unlock()
	require.Equal(t, codes.PermissionDenied.String(), w.code.String(), "%v", w.err)
}
