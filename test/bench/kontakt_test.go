// Package bench measures the real kontakt binary against raw JetStream on
// the same embedded server. Its benchmarks start the binary once, on first
// use, so plain `go test` compiles them and starts nothing.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
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
	k := &kontakt{bin: bin, dir: dir, done: make(chan error, 1)}
	defer func() {
		if err != nil {
			k.stop()
		}
	}()
	var metrics string
	for _, p := range []*string{&k.addr, &metrics, &k.natsAddr} {
		if *p, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	k.config = filepath.Join(dir, "kontakt.yaml")
	cfg := fmt.Sprintf("data_dir: %s\nlisten: %s\nmetrics_listen: %s\nshutdown_timeout: 5s\nnats:\n  embedded_listen: %s\n%s",
		filepath.Join(dir, "data"), k.addr, metrics, k.natsAddr, unlimitedSubmissions)
	if err := os.WriteFile(k.config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if k.output, err = os.Create(filepath.Join(dir, "kontakt.log")); err != nil {
		return nil, err
	}
	k.cmd = exec.Command(bin, "serve", "--config", k.config)
	k.cmd.Stdout, k.cmd.Stderr = k.output, k.output
	if err := k.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { k.done <- k.cmd.Wait() }()
	return k, k.waitServing()
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
	args := []string{"token", "--config", k.config, "--subject", subject}
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
	if k.cmd != nil && k.cmd.Process != nil {
		_ = k.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-k.done:
		case <-time.After(20 * time.Second):
			_ = k.cmd.Process.Kill()
		}
	}
	if k.output != nil {
		_ = k.output.Close()
	}
	_ = os.RemoveAll(k.dir)
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
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", intakeBin, "./cmd/kontakt-intake")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..", "services", "intake")
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
