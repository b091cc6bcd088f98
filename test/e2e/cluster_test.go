package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	"github.com/kontakt-se/kontakt/pkg/auth"
	"github.com/kontakt-se/kontakt/pkg/natstest"
)

// serviceProc is one service running as its own process.
type serviceProc struct {
	name, addr string
	config     string // the configuration file
	cmd        *exec.Cmd
	out        *syncBuffer
	done       chan error
}

// serviceBinary returns bin/kontakt-<name> next to the single binary,
// building it when it is missing.
func serviceBinary(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(filepath.Dir(binary(t, "kontakt")), "kontakt-"+name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	cmd := exec.Command("go", "build", "-o", p, "./cmd/kontakt-"+name)
	cmd.Dir = filepath.Join(repoRoot(t), "services", name)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "build kontakt-%s: %s", name, out)
	return p
}

// startService runs one service binary against the cluster and waits
// until its gRPC health says SERVING, on fresh ports when a port picked
// as free was taken meanwhile (see startAttempts).
func startService(t *testing.T, name, instance, natsURL, devKey string, env []string) *serviceProc {
	t.Helper()
	return onFreshPorts(t, name+"-"+instance, func() (*serviceProc, string, error) {
		s, err := startServiceOnce(t, name, instance, natsURL, devKey, env)
		return s, s.out.String(), err
	})
}

// startServiceOnce makes one attempt of startService. It returns an error
// when the binary exited before serving.
func startServiceOnce(t *testing.T, name, instance, natsURL, devKey string, env []string) (*serviceProc, error) {
	t.Helper()
	dir := t.TempDir()
	s := &serviceProc{name: name + "-" + instance, addr: freeAddr(t), out: &syncBuffer{}, done: make(chan error, 1)}
	cfg := fmt.Sprintf(`mode: development
data_dir: %s
listen: %s
metrics_listen: %s
shutdown_timeout: 5s
nats:
  url: %s
  replicas: 3
auth:
  dev_key_file: %s
retention:
  sweep_interval: 1s
%s`, filepath.Join(dir, "data"), s.addr, freeAddr(t), natsURL, devKey, routingQueues)
	path := filepath.Join(dir, "kontakt.yaml")
	s.config = path
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	s.cmd = exec.Command(serviceBinary(t, name), "--config", path)
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	require.NoError(t, s.cmd.Start())
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
		}
		if t.Failed() {
			var lines []string
			for _, l := range strings.Split(s.out.String(), "\n") {
				if !strings.Contains(l, "msg=\"gRPC call\"") {
					lines = append(lines, l)
				}
			}
			t.Logf("%s output without call lines (last 6 KiB):\n%s", s.name, tail(strings.Join(lines, "\n"), 6144))
		}
	})
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-s.done:
			s.done <- err // for the cleanup
			return s, fmt.Errorf("%s exited before serving: %w", s.name, err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return s, nil
		}
		require.True(t, time.Now().Before(deadline), "%s not serving after 90 s: %v", s.name, err)
		time.Sleep(200 * time.Millisecond)
	}
}

// logStreams logs every stream's cluster state, to tell which one a
// stuck fail-over waits for.
func logStreams(t *testing.T, js jetstream.JetStream) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Logf("stream %s: %v", name, err)
			continue
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil {
			t.Logf("stream %s: %v", name, err)
			continue
		}
		var peers []string
		for _, p := range info.Cluster.Replicas {
			peers = append(peers, fmt.Sprintf("%s(current=%v offline=%v lag=%d)", p.Name, p.Current, p.Offline, p.Lag))
		}
		t.Logf("stream %s: leader %q, replicas %v, msgs %d", name, info.Cluster.Leader, peers, info.State.Msgs)
	}
}

func snapshot(mu *sync.Mutex, m map[int]string) map[int]string {
	mu.Lock()
	defer mu.Unlock()
	out := make(map[int]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// clusterForm is one e-service submission the load generator makes.
func clusterForm(i int) *intakev1.SubmitFormRequest {
	return &intakev1.SubmitFormRequest{
		IdempotencyKey: fmt.Sprintf("cluster-%06d", i),
		Case: &intakev1.CaseInput{
			Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_FORM,
			Category: "avfall", Subject: fmt.Sprintf("Fråga %d", i),
			Description: "Invånaren undrar när sophämtningen kommer efter helgen.",
			Contact:     &intakev1.Contact{Email: fmt.Sprintf("invanare%d@example.se", i)},
		},
	}
}

// TestClusterFailover runs the services as separate processes (two
// instances of intake and of routing, one of retention and statistics)
// against a three-node NATS cluster with every stream at three replicas,
// submits e-service forms under load, and kills -9 first the case
// stream's leader and then a follower, restarting each. A client retries
// a failed submission with the same idempotency key, as a form does. In
// the end: every acknowledged case is stored, none twice, and every case
// was routed exactly once.
func TestClusterFailover(t *testing.T) {
	cluster := natstest.StartCluster(t, "kontakt", 3)
	devKey := filepath.Join(t.TempDir(), "dev-signing-key.pem")
	master := make([]byte, 32)
	_, err := rand.Read(master)
	require.NoError(t, err)
	env := []string{
		"KONTAKT_MASTER_KEY=" + base64.StdEncoding.EncodeToString(master),
		// The load is one credential from one address, as fast as the
		// cluster takes it: the public-submission limit is not under test.
		"KONTAKT_LIMITS_PUBLIC_SUBMISSIONS_PER_CREDENTIAL_PER_MINUTE=0",
		"KONTAKT_LIMITS_PUBLIC_SUBMISSIONS_PER_ADDRESS_PER_MINUTE=0",
	}

	intakes := []*serviceProc{startService(t, "intake", "a", cluster.URL(), devKey, env)}
	intakes = append(intakes, startService(t, "intake", "b", cluster.URL(), devKey, env))
	startService(t, "routing", "a", cluster.URL(), devKey, env)
	startService(t, "routing", "b", cluster.URL(), devKey, env)
	startService(t, "retention", "a", cluster.URL(), devKey, env)
	startService(t, "statistics", "a", cluster.URL(), devKey, env)

	key, err := auth.LoadOrCreateDevKey(devKey)
	require.NoError(t, err)
	token, err := key.Mint("e-tjanst-avfall", []auth.Role{auth.RoleFormClient}, nil, "", 2*time.Hour, time.Now())
	require.NoError(t, err)
	clients := make([]intakev1.IntakeServiceClient, 0, len(intakes))
	for _, s := range intakes {
		conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		clients = append(clients, intakev1.NewIntakeServiceClient(conn))
	}

	// The load: workers take the next form number and submit it until it
	// is acknowledged, retrying with the same idempotency key.
	var (
		next, attempts, failures atomic.Int64
		mu                       sync.Mutex
		acked                    = map[int]string{}    // form -> case number
		stop                     = make(chan struct{}) // no new forms
		abort                    = make(chan struct{}) // the test ended early: give up retrying
		wg                       sync.WaitGroup
	)
	const workers = 16
	for w := range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := int(next.Add(1))
				deadline := time.Now().Add(2 * time.Minute)
				for try := 0; ; try++ {
					ctx, cancel := withToken(token)
					ctx, cancel2 := context.WithTimeout(ctx, 5*time.Second)
					resp, err := clients[(w+try)%len(clients)].SubmitForm(ctx, clusterForm(i))
					cancel2()
					cancel()
					attempts.Add(1)
					if err == nil {
						mu.Lock()
						acked[i] = resp.GetCaseNumber()
						mu.Unlock()
						break
					}
					if failures.Add(1)%25 == 1 {
						t.Logf("form %d attempt %d: %v", i, try+1, err)
					}
					if time.Now().After(deadline) {
						t.Errorf("form %d never acknowledged: %v", i, err)
						break
					}
					select {
					case <-abort:
						return
					case <-time.After(200 * time.Millisecond):
					}
				}
			}
		})
	}

	// The workers stop before the test ends, also when an assertion below
	// ends it early: a worker reporting after that would panic. Stopping
	// normally lets each finish the form it is on (a failed attempt may
	// have stored the case, and only the retry acknowledges it); an early
	// end gives up the retries.
	stopWorkers := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(func() {
		close(abort)
		stopWorkers()
	})

	nc, err := nats.Connect(cluster.URL(), nats.MaxReconnects(-1))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	leaderOf := func() string {
		var name string
		require.Eventually(t, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			s, err := js.Stream(ctx, casesStream)
			if err != nil {
				return false
			}
			info, err := s.Info(ctx)
			if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
				return false
			}
			name = info.Cluster.Leader
			return true
		}, 60*time.Second, 100*time.Millisecond, "the case stream has no leader")
		return name
	}
	phase := func(name string, d time.Duration) (int64, int64) {
		a0, f0 := attempts.Load(), failures.Load()
		time.Sleep(d)
		a, f := attempts.Load()-a0, failures.Load()-f0
		t.Logf("%-28s %5d requests, %4d failed (%.1f%%)", name, a, f, 100*float64(f)/float64(max(a, 1)))
		return a, f
	}

	phase("steady", 4*time.Second)
	leader := cluster.Node(leaderOf())
	require.NotNil(t, leader)
	require.NoError(t, leader.Kill9())
	phase("leader killed", 6*time.Second)
	leader.Restart(t)
	phase("leader restarted", 4*time.Second)
	newLeader := leaderOf()
	var follower *natstest.Process
	for _, n := range cluster.Nodes {
		if n != cluster.Node(newLeader) {
			follower = n
			break
		}
	}
	require.NoError(t, follower.Kill9())
	phase("follower killed", 6*time.Second)
	follower.Restart(t)
	phase("follower restarted", 4*time.Second)
	// The services keep answering: once the cluster is whole again, forms
	// are acknowledged (the share that fails is reported, not asserted:
	// it depends on election timing and on the machine). A slow machine
	// may still be electing leaders here, so recovery is given 20 s more
	// than the phase; a service stuck for good fails.
	acked0 := len(snapshot(&mu, acked))
	phase("after", 4*time.Second)
	recovered := func() bool { return len(snapshot(&mu, acked)) > acked0 }
	if !recovered() {
		t.Logf("no form acknowledged in the phase after the fail-overs; waiting up to 20 s more")
		if !assert.Eventually(t, recovered, 20*time.Second, 100*time.Millisecond, "no form acknowledged after the fail-overs") {
			logStreams(t, js)
			t.FailNow()
		}
	}
	stopWorkers()
	total, failed := attempts.Load(), failures.Load()
	t.Logf("all: %d requests, %d failed (%.2f%%), %d forms acknowledged", total, failed, 100*float64(failed)/float64(max(total, 1)), len(acked))
	require.NotEmpty(t, acked)

	// Every acknowledged case is stored once, with a distinct number, and
	// every case is routed exactly once (the routers may lag behind a
	// fail-over, so wait for them).
	ie := &intakeEnv{nc: nc, js: js}
	var evs []storedEvent
	require.Eventually(t, func() bool {
		evs = ie.events(t)
		routed, registered := routedPerCase(evs)
		if len(registered) < len(acked) {
			return false
		}
		for id := range registered {
			if routed[id] == 0 {
				return false
			}
		}
		return true
	}, 2*time.Minute, time.Second, "not every case was routed")
	routed, registered := routedPerCase(evs)
	numbers := map[string]bool{}
	for _, n := range acked {
		require.False(t, numbers[n], "case number %s acknowledged for two forms", n)
		numbers[n] = true
	}
	require.Len(t, registered, len(acked), "one stored case per acknowledged form, no more")
	for id, n := range registered {
		require.Equal(t, 1, n, "case %s registered %d times", id, n)
		require.Equal(t, 1, routed[id], "case %s routed %d times", id, routed[id])
	}
}
