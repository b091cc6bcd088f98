// Package e2e drives the real kontakt binary with real clients: grpc-go,
// connect-go in gRPC-web mode, grpcurl and plain HTTP. Nothing here reaches
// into the process; what the tests see is what a user would see.
package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
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
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// repoRoot finds the repository from the working directory, which `go
// test` sets to this package's directory (test/e2e). The source file's
// own path would not do: `make test` builds with -trimpath, which turns
// it into an import path.
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	require.NoError(t, err)
	root := filepath.Clean(filepath.Join(wd, "..", ".."))
	_, err = os.Stat(filepath.Join(root, "go.work"))
	require.NoError(t, err, "the e2e tests run from test/e2e in the repository")
	return root
}

var buildOnce = map[string]*sync.Once{"kontakt": {}, "grpcurl": {}, "jq": {}}
var builtPath = map[string]string{}
var buildErr = map[string]error{}

// binary returns the path of a tool the tests run: $KONTAKT_BIN (or
// $KONTAKT_GRPCURL_BIN, $KONTAKT_JQ_BIN) when set, as `make test` does,
// otherwise it is built once into the repository's bin/ directory.
func binary(t testing.TB, name string) string {
	t.Helper()
	envName := map[string]string{"kontakt": "KONTAKT_BIN", "grpcurl": "KONTAKT_GRPCURL_BIN", "jq": "KONTAKT_JQ_BIN"}[name]
	if p := os.Getenv(envName); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	root := repoRoot(t)
	buildOnce[name].Do(func() {
		out := filepath.Join(root, "bin", name)
		var cmd *exec.Cmd
		switch name {
		case "kontakt":
			cmd = exec.Command("go", "build", "-o", out, ".")
			cmd.Dir = filepath.Join(root, "services", "kontakt")
		case "grpcurl":
			cmd = exec.Command("go", "build", "-o", out, "github.com/fullstorydev/grpcurl/cmd/grpcurl")
			cmd.Dir = filepath.Join(root, "test")
		case "jq":
			// gojq, the pure-Go jq the documented examples are run with.
			cmd = exec.Command("go", "build", "-o", out, "github.com/itchyny/gojq/cmd/gojq")
			cmd.Dir = filepath.Join(root, "test")
		}
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr[name] = fmt.Errorf("build %s: %v\n%s", name, err, b)
		}
		builtPath[name] = out
	})
	require.NoError(t, buildErr[name])
	return builtPath[name]
}

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// Kontakt is a running `kontakt serve` process.
type Kontakt struct {
	Addr    string
	Metrics string
	// NATSAddr is the embedded NATS server's client address when
	// Options.EmbeddedNATS asked for one.
	NATSAddr string
	DataDir  string
	Config   string
	// Roots trust the API port's certificate when Options.TLS is set.
	Roots  *x509.CertPool
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Options configure a started binary.
type Options struct {
	// ExtraConfig is appended to the generated YAML configuration; it
	// must not set nats when EmbeddedNATS is set.
	ExtraConfig string
	// DataDir reuses a data directory (for restarts); empty makes one.
	DataDir string
	// EmbeddedNATS makes the embedded NATS server listen for clients on
	// a free port (Kontakt.NATSAddr), for tests that inspect the store.
	EmbeddedNATS bool
	// TLS serves the API port over TLS with a certificate made for the
	// test (Kontakt.Roots trusts it; Dial uses it).
	TLS bool
}

// startAttempts is how often a binary is started on fresh ports. A port
// freeAddr found free can be taken before the binary binds it, most often
// as the local port of some outgoing loopback connection, since both come
// from the same ephemeral range.
const startAttempts = 3

// onFreshPorts calls start until the binary it starts serves, again with
// fresh ports (start picks them) while it failed to bind one, at most
// startAttempts times. start returns what it started, the binary's
// output, and an error when the binary exited before serving.
func onFreshPorts[T any](t *testing.T, name string, start func() (T, string, error)) T {
	t.Helper()
	for attempt := 1; ; attempt++ {
		v, output, err := start()
		if err == nil {
			return v
		}
		if attempt < startAttempts && strings.Contains(output, "address already in use") {
			t.Logf("%s could not bind a port picked as free; trying fresh ports (%d of %d)", name, attempt+1, startAttempts)
			continue
		}
		t.Fatalf("%v\n%s", err, output)
	}
}

// Start runs `kontakt serve` with a fresh data directory and free ports,
// waits until every service reports SERVING, and stops it at cleanup.
func Start(t *testing.T, opts Options) *Kontakt {
	t.Helper()
	dataDir := opts.DataDir
	if dataDir == "" {
		dataDir = filepath.Join(t.TempDir(), "data")
	}
	return onFreshPorts(t, "kontakt", func() (*Kontakt, string, error) {
		k, err := start(t, dataDir, opts)
		return k, k.stderr.String(), err
	})
}

// start makes one attempt of Start. It returns an error when the binary
// exited before serving.
func start(t *testing.T, dataDir string, opts Options) (*Kontakt, error) {
	t.Helper()
	k := &Kontakt{Addr: freeAddr(t), Metrics: freeAddr(t), DataDir: dataDir, stderr: &syncBuffer{}, done: make(chan error, 1)}
	extra := opts.ExtraConfig
	if opts.EmbeddedNATS {
		k.NATSAddr = freeAddr(t)
		extra += "nats:\n  embedded_listen: " + k.NATSAddr + "\n"
	}
	if opts.TLS {
		certFile, keyFile, roots := writeTestCert(t, t.TempDir())
		k.Roots = roots
		extra += fmt.Sprintf("tls:\n  cert_file: %s\n  key_file: %s\n", certFile, keyFile)
	}
	k.Config = filepath.Join(t.TempDir(), "kontakt.yaml")
	cfg := fmt.Sprintf("data_dir: %s\nlisten: %s\nmetrics_listen: %s\nshutdown_timeout: 5s\n%s", dataDir, k.Addr, k.Metrics, extra)
	require.NoError(t, os.WriteFile(k.Config, []byte(cfg), 0o600))

	k.cmd = exec.Command(binary(t, "kontakt"), "serve", "--config", k.Config)
	k.cmd.Stderr = k.stderr
	k.cmd.Stdout = k.stderr
	require.NoError(t, k.cmd.Start())
	go func() { k.done <- k.cmd.Wait() }()
	t.Cleanup(func() {
		_ = k.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-k.done:
		case <-time.After(20 * time.Second):
			_ = k.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("kontakt output:\n%s", k.stderr.String())
		}
	})
	return k, k.waitServing(t)
}

// waitServing waits until the binary reports SERVING; it fails the test
// after 60 s and returns an error if the binary exits first.
func (k *Kontakt) waitServing(t *testing.T) error {
	t.Helper()
	conn := k.Dial(t)
	client := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-k.done:
			k.done <- err // for the cleanup
			return fmt.Errorf("kontakt exited before serving: %w", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "kontakt.intake.v1.IntakeService"})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if time.Now().After(deadline) {
			t.Fatalf("kontakt not serving after 60s (last error %v)\n%s", err, k.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Dial opens a grpc-go client connection to the server.
func (k *Kontakt) Dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if k.Roots != nil {
		creds = credentials.NewTLS(&tls.Config{RootCAs: k.Roots})
	}
	conn, err := grpc.NewClient(k.Addr, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its
// key into dir, and returns a pool that trusts it.
func writeTestCert(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "kontakt e2e"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	require.NoError(t, os.WriteFile(certFile, certPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	roots = x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(certPEM))
	return certFile, keyFile, roots
}

// NATSCredentialsDir is where the binary keeps the keys of its embedded
// NATS server's users (config.Config.NATSCredentialsDir).
func (k *Kontakt) NATSCredentialsDir() string { return filepath.Join(k.DataDir, "nats-credentials") }

// AnalystNATSContext is the nats CLI context the binary writes for
// analysts when its embedded NATS server listens: what the README tells
// an analyst to pass to `nats --context`.
func (k *Kontakt) AnalystNATSContext() string {
	return filepath.Join(k.NATSCredentialsDir(), "analyst.json")
}

// ConnectNATS connects to the embedded NATS server (Options.EmbeddedNATS)
// as kontakt's own service user, with the key the binary keeps in the
// data directory: the one way the tests look into the store.
//
// With KONTAKT_E2E_BASE_NO_NATS_AUTH=1 it connects without a key when the
// data directory has none: only for running a test against a binary from
// before issue 13 (main at 2b2db22), whose embedded NATS had no users, to
// show that the test fails there for the bug it is about.
func (k *Kontakt) ConnectNATS(t *testing.T, opts ...nats.Option) *nats.Conn {
	t.Helper()
	require.NotEmpty(t, k.NATSAddr, "kontakt was started without Options.EmbeddedNATS")
	seed := filepath.Join(k.NATSCredentialsDir(), "service.nk")
	if _, err := os.Stat(seed); err != nil && os.Getenv("KONTAKT_E2E_BASE_NO_NATS_AUTH") == "1" {
		t.Logf("no service key in the data directory (%v): connecting to the embedded NATS without one", err)
		nc, err := nats.Connect("nats://"+k.NATSAddr, opts...)
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		return nc
	}
	service, err := nats.NkeyOptionFromSeed(seed)
	require.NoError(t, err, "the service user's key in the data directory")
	nc, err := nats.Connect("nats://"+k.NATSAddr, append([]nats.Option{service}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// Token mints a development token with the binary's own CLI, as a person
// would: `kontakt token --role ROLE --subject ID`.
func (k *Kontakt) Token(t *testing.T, subject string, roles ...string) string {
	t.Helper()
	args := []string{"token", "--config", k.Config, "--subject", subject}
	for _, r := range roles {
		args = append(args, "--role", r)
	}
	out, err := exec.Command(binary(t, "kontakt"), args...).Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

// Stop sends SIGTERM and returns the exit error (nil for exit code 0).
func (k *Kontakt) Stop(t *testing.T) error {
	t.Helper()
	require.NoError(t, k.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-k.done:
		k.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("kontakt did not stop within 30s of SIGTERM")
		return nil
	}
}

// runKontakt runs the binary to completion and returns its exit code and
// combined output.
func runKontakt(t *testing.T, args ...string) (int, string) {
	t.Helper()
	return runKontaktIn(t, "", nil, args...)
}

// runKontaktIn is runKontakt in folder dir ("" is the test's own) with
// extra environment variables.
func runKontaktIn(t *testing.T, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t, "kontakt"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err == nil {
		return 0, string(out)
	}
	ee, ok := err.(*exec.ExitError)
	require.True(t, ok, "run kontakt: %v", err)
	return ee.ExitCode(), string(out)
}
