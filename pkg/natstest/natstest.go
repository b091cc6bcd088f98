// Package natstest runs nats-server as a separate process for tests that
// need what an embedded server cannot give: a real crash (kill -9) with the
// process's unsynced state lost, a restart on the same store directory, and
// later a cluster of several nodes.
//
// The binary is built from the nats-server module version that pkg/go.mod
// requires, so the tests exercise the same server as the embedded one, and
// it is cached in the repository's bin/ directory so that it is built once.
// Setting KONTAKT_NATS_SERVER_BIN to an existing binary skips the build.
package natstest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EnvBinary names the environment variable that points to a prebuilt
// nats-server binary to use instead of building one.
const EnvBinary = "KONTAKT_NATS_SERVER_BIN"

const (
	pkgModulePath  = "github.com/kontakt-se/kontakt/pkg"
	serverModule   = "github.com/nats-io/nats-server/v2"
	defaultStartup = 30 * time.Second
)

// Binary returns the path of a nats-server binary, building it on first
// use. The build runs in the pkg module with the workspace switched off, so
// that the version pkg/go.mod requires is the one built, and the result is
// cached as bin/nats-server-<version> at the repository root.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvBinary); p != "" {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
		t.Logf("natstest: %s=%q is not an existing file; building nats-server instead", EnvBinary, p)
	}
	modDir, err := pkgModuleDir()
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	version, err := requiredVersion(filepath.Join(modDir, "go.mod"), serverModule)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	binDir := filepath.Join(filepath.Dir(modDir), "bin")
	target := filepath.Join(binDir, "nats-server-"+version)
	if isFile(target) {
		return target
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatalf("natstest: create %s: %v", binDir, err)
	}
	lock, err := os.OpenFile(filepath.Join(binDir, ".nats-server.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("natstest: open build lock: %v", err)
	}
	defer lock.Close()
	if err := lockFile(lock); err != nil {
		t.Fatalf("natstest: take build lock: %v", err)
	}
	defer func() { _ = unlockFile(lock) }()
	if isFile(target) { // Built by another test binary while we waited.
		return target
	}

	tmp := fmt.Sprintf("%s.tmp-%d", target, os.Getpid())
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", tmp, serverModule)
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		t.Fatalf("natstest: go build %s@%s in %s: %v\n%s", serverModule, version, modDir, err, out)
	}
	if err := os.Rename(tmp, target); err != nil {
		_ = os.Remove(tmp)
		t.Fatalf("natstest: install %s: %v", target, err)
	}
	t.Logf("natstest: built %s in %s", target, time.Since(start).Round(time.Millisecond))
	return target
}

// pkgModuleDir finds the directory of the pkg module, from this source
// file's location or, when that is not available (a -trimpath build), by
// walking up from the working directory.
func pkgModuleDir() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok {
		dir := filepath.Dir(filepath.Dir(file))
		if isPkgModule(dir) {
			return dir, nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find the pkg module: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		for _, cand := range []string{dir, filepath.Join(dir, "pkg")} {
			if isPkgModule(cand) {
				return cand, nil
			}
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("find the pkg module: no go.mod of %s above %s", pkgModulePath, wd)
		}
	}
}

func isPkgModule(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(first) == "module "+pkgModulePath
}

// requiredVersion reads the version of module from a go.mod require line.
func requiredVersion(goMod, module string) (string, error) {
	b, err := os.ReadFile(goMod)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", goMod, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[0] == "require" {
			fields = fields[1:]
		}
		if len(fields) >= 2 && fields[0] == module {
			return fields[1], nil
		}
	}
	return "", fmt.Errorf("%s does not require %s", goMod, module)
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// Options configure a server process. The zero value gives a single node
// with JetStream on a free port and a temporary store directory.
type Options struct {
	// StoreDir is the JetStream store directory; empty means a new
	// temporary directory. Restart reuses it.
	StoreDir string
	// Host is the client listen host; empty means 127.0.0.1.
	Host string
	// Port is the client port; zero picks a free port once, which Restart
	// keeps so that clients can reconnect.
	Port int
	// ServerName is the server's name; clusters need distinct names.
	ServerName string
	// Cluster, when set, makes the server a cluster node.
	Cluster *Cluster
	// ConfigExtra is appended verbatim to the generated configuration file.
	ConfigExtra string
	// NoJetStreamWait makes StartProcess and Restart return once the
	// client port accepts connections, without waiting for JetStream. A
	// cluster node needs it, because JetStream answers only once a quorum
	// of nodes runs.
	NoJetStreamWait bool
	// StartTimeout bounds the wait for readiness; zero means 30 seconds.
	StartTimeout time.Duration
	// ReadyPoll is how often start-up asks whether the server is ready;
	// zero means 50 ms. Benchmarks that time a start (a restart on a large
	// store) set it lower, since the poll's period bounds the resolution.
	ReadyPoll time.Duration
}

// Cluster configures the cluster block of a node.
type Cluster struct {
	// Name is the cluster name, the same on every node.
	Name string
	// Host is the route listen host; empty means 127.0.0.1.
	Host string
	// Port is the route port; zero picks a free port once.
	Port int
	// Routes are the route URLs of the other nodes, such as
	// "nats-route://127.0.0.1:6222" (see Process.RouteURL).
	Routes []string
}

// Process is a nats-server process started by StartProcess.
type Process struct {
	bin  string
	conf string
	log  string
	opts Options

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// StartProcess writes a configuration file (JetStream with sync_interval
// always, so every acknowledged write is on disk), starts nats-server with
// it and waits until it accepts connections and JetStream answers. The
// process is killed when the test ends.
func StartProcess(t testing.TB, opts Options) *Process {
	t.Helper()
	bin := Binary(t)
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = freePort(t, opts.Host)
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = defaultStartup
	}
	if c := opts.Cluster; c != nil {
		cc := *c
		if cc.Host == "" {
			cc.Host = "127.0.0.1"
		}
		if cc.Port == 0 {
			cc.Port = freePort(t, cc.Host)
		}
		opts.Cluster = &cc
	}
	dir := t.TempDir()
	p := &Process{
		bin:  bin,
		conf: filepath.Join(dir, "nats-server.conf"),
		log:  filepath.Join(dir, "nats-server.log"),
		opts: opts,
	}
	if err := os.WriteFile(p.conf, []byte(p.config()), 0o600); err != nil {
		t.Fatalf("natstest: write config: %v", err)
	}
	t.Cleanup(func() { _ = p.Kill9() })
	p.start(t)
	return p
}

// config renders the configuration file.
func (p *Process) config() string {
	var b strings.Builder
	o := p.opts
	if o.ServerName != "" {
		fmt.Fprintf(&b, "server_name: %q\n", o.ServerName)
	}
	fmt.Fprintf(&b, "listen: %q\n", net.JoinHostPort(o.Host, strconv.Itoa(o.Port)))
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", o.StoreDir)
	if c := o.Cluster; c != nil {
		fmt.Fprintf(&b, "cluster {\n  name: %q\n  listen: %q\n", c.Name, net.JoinHostPort(c.Host, strconv.Itoa(c.Port)))
		if len(c.Routes) > 0 {
			b.WriteString("  routes: [\n")
			for _, r := range c.Routes {
				fmt.Fprintf(&b, "    %q\n", r)
			}
			b.WriteString("  ]\n")
		}
		b.WriteString("}\n")
	}
	if o.ConfigExtra != "" {
		b.WriteString(o.ConfigExtra)
		b.WriteString("\n")
	}
	return b.String()
}

func (p *Process) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("natstest: open log: %v", err)
	}
	cmd := exec.Command(p.bin, "-c", p.conf)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		t.Fatalf("natstest: start %s: %v", p.bin, err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited, p.waitErr = cmd, exited, nil
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		_ = logf.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(exited)
	}()
	if err := p.waitReady(exited); err != nil {
		_ = p.Kill9()
		t.Fatalf("natstest: %v\n--- server log ---\n%s", err, p.Log())
	}
}

// waitReady polls until the server accepts a client and, unless disabled,
// JetStream answers an account info request.
func (p *Process) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(p.opts.StartTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			p.mu.Lock()
			err := p.waitErr
			p.mu.Unlock()
			return fmt.Errorf("nats-server exited during start-up: %v", err)
		default:
		}
		if last = p.ping(); last == nil {
			return nil
		}
		poll := p.opts.ReadyPoll
		if poll <= 0 {
			poll = 50 * time.Millisecond
		}
		time.Sleep(poll)
	}
	return fmt.Errorf("nats-server at %s not ready after %s: %v", p.URL(), p.opts.StartTimeout, last)
}

func (p *Process) ping() error {
	nc, err := nats.Connect(p.URL(), nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	if p.opts.NoJetStreamWait {
		return nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// URL returns the client URL. It stays the same across restarts.
func (p *Process) URL() string {
	return "nats://" + net.JoinHostPort(p.opts.Host, strconv.Itoa(p.opts.Port))
}

// RouteURL returns the URL other cluster nodes list in Cluster.Routes, or
// "" when the server is not a cluster node.
func (p *Process) RouteURL() string {
	c := p.opts.Cluster
	if c == nil {
		return ""
	}
	return "nats-route://" + net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
}

// Pid is the process id of the running server (0 before it started), so
// a benchmark can read the process's memory from /proc.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// StoreDir returns the JetStream store directory.
func (p *Process) StoreDir() string { return p.opts.StoreDir }

// Log returns what the server wrote to stdout and stderr, across restarts,
// for failure messages.
func (p *Process) Log() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.log, err)
	}
	return string(b)
}

// Kill9 kills the process with SIGKILL, as a crash or power cut would (as
// far as the process is concerned: what was written but not fsynced stays
// in the page cache), and waits until it is gone. It is safe to call from
// any goroutine and on a process that already exited.
func (p *Process) Kill9() error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("natstest: kill nats-server: %w", err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("natstest: nats-server did not exit within 10s of SIGKILL")
	}
}

// Restart starts the server again with the same configuration, store
// directory and ports, killing it first if it still runs, and waits until
// it is ready.
func (p *Process) Restart(t testing.TB) {
	t.Helper()
	if err := p.Kill9(); err != nil {
		t.Fatal(err)
	}
	p.start(t)
}

// freePort asks the kernel for a free TCP port. Another process could take
// it before the server binds it, which is unlikely enough for tests.
func freePort(t testing.TB, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("natstest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
