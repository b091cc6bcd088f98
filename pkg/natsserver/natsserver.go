// Package natsserver runs an embedded NATS server with JetStream inside the
// kontakt single binary, so that a small municipality can run the whole
// system as one process without operating a separate NATS cluster.
//
// The server is configured for durability first: JetStream fsyncs every
// write unless the caller explicitly asks for a sync interval, because the
// event log is the system of record and an acknowledged event must survive
// a power cut. Start reports configuration problems (a store directory that
// cannot be written, a port that is in use) as errors instead of letting the
// server exit the process, so the binary can report them in its own way.
//
// With Config.Auth the server lets in only two users, with nkeys that
// LoadOrCreateCredentials keeps in a directory: the service user (the
// process itself, every right) and an analyst user who may read one
// stream, through a mirror of it in an account of its own (see Auth for
// why an account and not subject permissions).
package natsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// DefaultHost is the interface the client listener binds to when Config.Host
// is empty. It is the loopback interface so that an embedded server is never
// reachable from the network by accident; exposing it is a deliberate choice.
const DefaultHost = "127.0.0.1"

// RandomPort asks the server to pick a free client port; ClientURL then
// tells which one it chose. It is mostly useful in tests.
const RandomPort = server.RANDOM_PORT

// Config configures the embedded server. The zero value (plus a StoreDir)
// gives a durable server listening on 127.0.0.1:4222.
type Config struct {
	// StoreDir is the directory where JetStream keeps its data. It is
	// required because the event log must survive restarts; it is created
	// if missing.
	StoreDir string
	// ServerName names the server in logs and in JetStream metadata. It
	// should be stable across restarts; empty lets the server generate one.
	ServerName string
	// Host is the interface for client connections; empty means
	// DefaultHost.
	Host string
	// Port is the client port. Zero means the NATS default (4222) and
	// RandomPort (-1) lets the server choose a free one.
	Port int
	// InProcessOnly disables the client listener, so that only this process
	// can talk to the server (through Connect). Use it when no other
	// process needs the event log, to avoid opening a port at all.
	InProcessOnly bool
	// SyncInterval, when positive, makes JetStream fsync in the background
	// at this interval instead of after every write. The zero value keeps
	// sync-always, which durability requires: with an interval an
	// acknowledged event can be lost in a power cut. Only tests and
	// benchmarks should set it.
	SyncInterval time.Duration
	// Logger receives the server's notices, warnings and errors. Nil
	// discards them. Debug and trace logging are never enabled, because
	// trace output would copy message contents into the log.
	Logger *slog.Logger
	// ReadyTimeout bounds how long Start waits for the server to accept
	// connections after start-up (which includes recovering the JetStream
	// store). Zero means 60 seconds.
	ReadyTimeout time.Duration
	// Auth, when set, makes the server require credentials: only the
	// service user and the read-only analyst user connect, and Connect
	// authenticates as the service user. Nil lets any client in with every
	// right, which only tests should do; kontakt always sets it.
	Auth *Auth
}

// Server is a running embedded NATS server.
type Server struct {
	srv          *server.Server
	cfg          Config
	shutdownOnce sync.Once
}

// Start starts the server and waits until it accepts connections and
// JetStream is enabled. Every failure is returned as an error naming what
// failed and where (the store directory or the client address), and the
// partially started server is shut down again.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsserver: Config.StoreDir is required, because JetStream keeps the event log there")
	}
	storeDir, err := filepath.Abs(cfg.StoreDir)
	if err != nil {
		return nil, fmt.Errorf("natsserver: store directory %q: %w", cfg.StoreDir, err)
	}
	cfg.StoreDir = storeDir
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	if cfg.Port == 0 {
		cfg.Port = server.DEFAULT_PORT
	}
	if cfg.SyncInterval < 0 {
		return nil, fmt.Errorf("natsserver: SyncInterval %s is negative", cfg.SyncInterval)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if err := checkStoreDir(storeDir); err != nil {
		return nil, err
	}

	opts := &server.Options{}
	var setup nkeys.KeyPair
	if cfg.Auth != nil {
		if err := cfg.Auth.validate(); err != nil {
			return nil, err
		}
		// The user that maintains the analyst mirror lives as long as this
		// process: its seed is never written anywhere.
		if setup, err = nkeys.CreateUser(); err != nil {
			return nil, fmt.Errorf("natsserver: create the mirror user's key: %w", err)
		}
		defer setup.Wipe()
		setupPub, err := setup.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("natsserver: mirror user's key: %w", err)
		}
		accounts, err := cfg.Auth.serverConfig(setupPub)
		if err != nil {
			return nil, fmt.Errorf("natsserver: accounts: %w", err)
		}
		if err := opts.ProcessConfigString(accounts); err != nil {
			return nil, fmt.Errorf("natsserver: accounts: %w", err)
		}
	}
	opts.ServerName = cfg.ServerName
	opts.Host = cfg.Host
	opts.Port = cfg.Port
	opts.DontListen = cfg.InProcessOnly
	opts.JetStream = true
	opts.StoreDir = storeDir
	// The embedding process owns signal handling.
	opts.NoSigs = true
	if cfg.SyncInterval > 0 {
		opts.SyncInterval = cfg.SyncInterval
	} else {
		opts.SyncAlways = true
	}

	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsserver: invalid server options (%s): %w", cfg.where(), err)
	}
	logger := &logAdapter{log: cfg.Logger}
	if logger.log == nil {
		logger.log = slog.New(slog.DiscardHandler)
	}
	srv.SetLoggerV2(logger, false, false, false)

	s := &Server{srv: srv, cfg: cfg}

	started := make(chan struct{})
	go func() {
		defer close(started)
		srv.Start()
	}()
	select {
	case <-started:
	case <-ctx.Done():
		// Start cannot be interrupted; shut the server down once it returns
		// so that nothing keeps running behind the caller's back.
		go func() {
			<-started
			s.Shutdown()
		}()
		return nil, fmt.Errorf("natsserver: start (%s) abandoned: %w", cfg.where(), ctx.Err())
	}
	if msg := logger.fatal(); msg != "" {
		s.Shutdown()
		return nil, fmt.Errorf("natsserver: cannot start NATS server (%s): %s", cfg.where(), msg)
	}
	if !srv.ReadyForConnections(cfg.ReadyTimeout) {
		s.Shutdown()
		if msg := logger.fatal(); msg != "" {
			return nil, fmt.Errorf("natsserver: cannot start NATS server (%s): %s", cfg.where(), msg)
		}
		return nil, fmt.Errorf("natsserver: server (%s) not ready for connections after %s", cfg.where(), cfg.ReadyTimeout)
	}
	if !srv.JetStreamEnabled() {
		s.Shutdown()
		return nil, fmt.Errorf("natsserver: JetStream did not start (%s)", cfg.where())
	}
	if cfg.Auth != nil {
		if err := s.maintainMirror(ctx, setup); err != nil {
			s.Shutdown()
			return nil, err
		}
	}
	return s, nil
}

// checkStoreDir creates the store directory and proves that it is writable,
// because the server itself would only report that later and less clearly.
func checkStoreDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("natsserver: cannot create store directory %q: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("natsserver: store directory %q is not writable: %w", dir, err)
	}
	name := f.Name()
	if err := f.Close(); err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("natsserver: store directory %q is not writable: %w", dir, err)
	}
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("natsserver: store directory %q: cannot remove write check file: %w", dir, err)
	}
	return nil
}

// where describes the server's resources for error messages.
func (c Config) where() string {
	if c.InProcessOnly {
		return fmt.Sprintf("store directory %q, in-process only", c.StoreDir)
	}
	return fmt.Sprintf("store directory %q, client address %s", c.StoreDir,
		net.JoinHostPort(c.Host, strconv.Itoa(c.Port)))
}

// ClientURL returns the URL other processes use to connect, with the port
// the server actually bound (useful with RandomPort). It is empty for an
// in-process-only server, which has no listener.
func (s *Server) ClientURL() string {
	if s.cfg.InProcessOnly {
		return ""
	}
	return s.srv.ClientURL()
}

// Connect opens a client connection to the server through an in-process
// pipe, which avoids the network stack and works even without a listener.
// With Config.Auth it authenticates as the service user. Options are
// applied after these.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	all := make([]nats.Option, 0, len(opts)+2)
	all = append(all, nats.InProcessServer(s.srv))
	if a := s.cfg.Auth; a != nil {
		pub, err := a.Service.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("natsserver: service user's key: %w", err)
		}
		all = append(all, nats.Nkey(pub, a.Service.Sign))
	}
	all = append(all, opts...)
	nc, err := nats.Connect(s.srv.ClientURL(), all...)
	if err != nil {
		return nil, fmt.Errorf("natsserver: connect in process: %w", err)
	}
	return nc, nil
}

// SyncAlways reports whether JetStream fsyncs every write, so that the
// binary can warn at start-up when durability was relaxed.
func (s *Server) SyncAlways() bool {
	jc := s.srv.JetStreamConfig()
	return jc != nil && jc.SyncAlways
}

// StoreDir returns the absolute store directory the server uses.
func (s *Server) StoreDir() string { return s.cfg.StoreDir }

// Shutdown stops the server and waits until it has shut down, so that the
// store directory is released (and, for instance, can be reopened by a new
// server) when Shutdown returns. It is safe to call more than once.
func (s *Server) Shutdown() {
	s.shutdownOnce.Do(func() {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	})
}

// logAdapter forwards the server's log lines to slog and remembers the first
// fatal one, because the embedded server reports start-up failures (such as
// a port in use) only through its logger and would otherwise carry on
// half-started.
type logAdapter struct {
	log *slog.Logger

	mu       sync.Mutex
	fatalMsg string
}

func (l *logAdapter) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatalMsg
}

// Noticef implements server.Logger.
func (l *logAdapter) Noticef(format string, v ...any) {
	l.log.Info(fmt.Sprintf(format, v...))
}

// Warnf implements server.Logger.
func (l *logAdapter) Warnf(format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...))
}

// Fatalf implements server.Logger. It records the message for Start instead
// of exiting the process.
func (l *logAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	if l.fatalMsg == "" {
		l.fatalMsg = msg
	}
	l.mu.Unlock()
	l.log.Error(msg, "fatal", true)
}

// clientConnection starts the server's log lines about one client
// connection ("127.0.0.1:43710 - cid:39 - authentication error").
var clientConnection = regexp.MustCompile(`^\S+ - cid:\d+ - `)

// Errorf implements server.Logger. The server logs what a client did
// wrong (a failed login, a permission violation, a protocol error) at
// error level too; those are logged as warnings here, because an error
// in kontakt's log means kontakt's own fault, and a stranger knocking on
// the port is not.
func (l *logAdapter) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if clientConnection.MatchString(msg) {
		l.log.Warn(msg, "client", true)
		return
	}
	l.log.Error(msg)
}

// Debugf implements server.Logger; debug output is dropped.
func (l *logAdapter) Debugf(string, ...any) {}

// Tracef implements server.Logger; trace output is dropped because it
// contains message contents.
func (l *logAdapter) Tracef(string, ...any) {}
