// Package bench measures the real kontakt binary against raw JetStream on
// the same embedded server. Its benchmarks start the binary once, on first
// use, so plain `go test` compiles them and starts nothing.
package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kontakt-se/kontakt/pkg/auth"
	"github.com/kontakt-se/kontakt/pkg/natstest"
)

// kontakt is one running `kontakt serve`, shared by the benchmarks.
type kontakt struct {
	bin      string
	addr     string
	natsAddr string
	config   string
	dir      string
	cmd      *exec.Cmd
	done     chan error
	output   *os.File
	// execAt is when the process was started, for start-up timings.
	execAt time.Time
}

var shared struct {
	once sync.Once
	k    *kontakt
	err  error
}

// unlimitedSubmissions turns the public-submission rate limit off: the
// benchmarks measure how fast forms can be registered, from one address
// with one credential, which is exactly what the limit is there to stop.
const unlimitedSubmissions = "limits:\n  public_submissions:\n    per_credential: {per_minute: 0}\n    per_address: {per_minute: 0}\n"

func TestMain(m *testing.M) {
	code := m.Run()
	if k := shared.k; k != nil {
		k.stop()
	}
	os.Exit(code)
}

// server returns the shared binary, starting it on first use.
func server(b *testing.B) *kontakt {
	b.Helper()
	shared.once.Do(func() { shared.k, shared.err = start() })
	if shared.err != nil {
		b.Fatal(shared.err)
	}
	return shared.k
}

// binary is $KONTAKT_BIN, or bin/kontakt built from this tree as the e2e
// harness does.
func binary() (string, error) {
	if p := os.Getenv("KONTAKT_BIN"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(root, "bin", "kontakt")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = filepath.Join(root, "services", "kontakt")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build kontakt: %v\n%s", err, b)
	}
	return out, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func start() (_ *kontakt, err error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kontakt-bench-")
	if err != nil {
		return nil, err
	}
	natsAddr, err := freeAddr()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	k, err := launch(bin, dir, fmt.Sprintf("nats:\n  embedded_listen: %s\n%s", natsAddr, unlimitedSubmissions))
	if err != nil {
		return nil, err
	}
	k.natsAddr = natsAddr
	return k, k.waitServing()
}

// launch starts `kontakt serve` from bin with its configuration, log and
// data directory (dir/data) in dir, on free ports, and returns without
// waiting for it to serve. extraYAML is appended to the configuration and
// args to the command line. The configuration names only keys that every
// kontakt since the issue-15 baseline (2b2db22) knows, since an unknown
// key stops start-up: anything newer goes in extraYAML. k.stop removes
// dir; k.terminate keeps it.
func launch(bin, dir, extraYAML string, args ...string) (_ *kontakt, err error) {
	k := &kontakt{bin: bin, dir: dir, done: make(chan error, 1)}
	defer func() {
		if err != nil {
			k.stop()
		}
	}()
	var metrics string
	for _, p := range []*string{&k.addr, &metrics} {
		if *p, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	k.config = filepath.Join(dir, "kontakt.yaml")
	cfg := fmt.Sprintf("data_dir: %s\nlisten: %s\nmetrics_listen: %s\nshutdown_timeout: 5s\n%s",
		filepath.Join(dir, "data"), k.addr, metrics, extraYAML)
	if err := os.WriteFile(k.config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if k.output, err = os.OpenFile(filepath.Join(dir, "kontakt.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return nil, err
	}
	k.cmd = exec.Command(bin, append([]string{"serve", "--config", k.config}, args...)...)
	k.cmd.Stdout, k.cmd.Stderr = k.output, k.output
	k.execAt = time.Now()
	if err := k.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { k.done <- k.cmd.Wait() }()
	return k, nil
}

func (k *kontakt) waitServing() error {
	conn, err := grpc.NewClient(k.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-k.done:
			k.done <- err
			return fmt.Errorf("kontakt exited before serving: %v\n%s", err, k.log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "kontakt.intake.v1.IntakeService"})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kontakt not serving after 60s (last error %v)\n%s", err, k.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// token mints a development token with the binary's CLI.
// natsOptions authenticate to the binary's embedded NATS server as its
// service user, with the key it keeps in the data directory.
func (k *kontakt) natsOptions(b *testing.B) []nats.Option {
	b.Helper()
	service, err := nats.NkeyOptionFromSeed(filepath.Join(k.dir, "data", "nats-credentials", "service.nk"))
	if err != nil {
		b.Fatal(err)
	}
	return []nats.Option{service}
}

func (k *kontakt) token(subject string, roles ...string) (string, error) {
	args := []string{"token", "--config", k.config, "--subject", subject, "--ttl", "24h"}
	for _, r := range roles {
		args = append(args, "--role", r)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(k.bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("kontakt token: %v: %s", err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

func (k *kontakt) log() string {
	b, _ := os.ReadFile(filepath.Join(k.dir, "kontakt.log"))
	return string(b)
}

func (k *kontakt) stop() {
	_ = k.terminate()
	_ = os.RemoveAll(k.dir)
}

// terminate stops the process as an operator would (SIGTERM, which drains
// calls and closes the stores cleanly; SIGKILL only after 60 s) and keeps
// its directory. It returns the process's exit error, if any.
func (k *kontakt) terminate() error {
	var err error
	if k.cmd != nil && k.cmd.Process != nil {
		_ = k.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-k.done:
			k.done <- err
		case <-time.After(60 * time.Second):
			_ = k.cmd.Process.Kill()
			err = errors.New("kontakt did not stop within 60 s of SIGTERM; killed")
		}
	}
	if k.output != nil {
		_ = k.output.Close()
		k.output = nil
	}
	return err
}

// intakeOnly starts a nats-server process (sync_interval: always) and the
// intake service's own binary against it, both stopped when b ends, and
// returns the NATS URL, intake's gRPC address and a function that mints
// tokens.
func intakeOnly(b *testing.B) (natsURL, addr string, mint func(subject string, role auth.Role) string) {
	b.Helper()
	nats := natstest.StartProcess(b, natstest.Options{})
	bin, err := binary()
	if err != nil {
		b.Fatal(err)
	}
	intakeBin := filepath.Join(filepath.Dir(bin), "kontakt-intake")
	if _, err := os.Stat(intakeBin); err != nil {
		root, err := repoRoot()
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command("go", "build", "-o", intakeBin, "./cmd/kontakt-intake")
		cmd.Dir = filepath.Join(root, "services", "intake")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("build kontakt-intake: %v\n%s", err, out)
		}
	}
	dir := b.TempDir()
	devKey := filepath.Join(dir, "dev-signing-key.pem")
	metrics, err := freeAddr()
	if err != nil {
		b.Fatal(err)
	}
	if addr, err = freeAddr(); err != nil {
		b.Fatal(err)
	}
	cfg := fmt.Sprintf("mode: development\ndata_dir: %s\nlisten: %s\nmetrics_listen: %s\nshutdown_timeout: 5s\nnats:\n  url: %s\nauth:\n  dev_key_file: %s\n%s",
		filepath.Join(dir, "data"), addr, metrics, nats.URL(), devKey, unlimitedSubmissions)
	path := filepath.Join(dir, "kontakt.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "intake.log"))
	if err != nil {
		b.Fatal(err)
	}
	k := &kontakt{bin: intakeBin, addr: addr, dir: dir, done: make(chan error, 1), output: out}
	k.cmd = exec.Command(intakeBin, "--config", path)
	k.cmd.Stdout, k.cmd.Stderr = out, out
	if err := k.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { k.done <- k.cmd.Wait() }()
	b.Cleanup(k.stop)
	if err := k.waitServing(); err != nil {
		b.Fatal(err)
	}
	key, err := auth.LoadOrCreateDevKey(devKey)
	if err != nil {
		b.Fatal(err)
	}
	mint = func(subject string, role auth.Role) string {
		token, err := key.Mint(subject, []auth.Role{role}, nil, "", 2*time.Hour, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		return token
	}
	return nats.URL(), addr, mint
}

// repoRoot is the repository, from the working directory `go test` sets
// to this package's (test/bench); the source file's own path is an
// import path in the -trimpath builds of `make`.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root := filepath.Clean(filepath.Join(wd, "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		return "", fmt.Errorf("the benchmarks run from test/bench in the repository: %w", err)
	}
	return root, nil
}
