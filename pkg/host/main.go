package host

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/kontakt-se/kontakt/pkg/backoff"
	"github.com/kontakt-se/kontakt/pkg/buildinfo"
	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/natserr"
)

// Service is one service as its own process: its name, its gRPC service,
// the plain HTTP routes it mounts, and how it mounts itself on a Host.
type Service struct {
	Name         string
	Descriptor   protoreflect.ServiceDescriptor
	HTTPPrefixes []string
	Mount        func(context.Context, *Host) error
	// Check reads and checks what the service needs beyond the
	// configuration (the routing rules, the retention plan) without
	// creating or opening anything; it runs before the host is opened, so
	// a bad file leaves no key, store or port behind. Nil: nothing to check.
	Check func(config.Config) error
}

// Main runs one service as its own process and returns the exit code:
// 0 after a clean shutdown, 1 on a failure (one line on stderr), 2 on a
// usage error. The configuration is the single binary's (--config or
// KONTAKT_CONFIG, and KONTAKT_* variables); nats.url is required, since
// the services share the event store through the cluster.
func Main(args []string, stderr io.Writer, lookupEnv func(string) (string, bool), svc Service) int {
	fs := flag.NewFlagSet(svc.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "configuration file (YAML); also KONTAKT_CONFIG")
	version := fs.Bool("version", false, "print the version, commit, Go and NATS server versions and data format, and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", svc.Name, fs.Args())
		return 2
	}
	if *version {
		fmt.Fprintln(os.Stdout, buildinfo.Read())
		return 0
	}
	if *configPath == "" {
		*configPath, _ = lookupEnv("KONTAKT_CONFIG")
	}
	if err := run(*configPath, stderr, lookupEnv, svc); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", svc.Name, err)
		return 1
	}
	return 0
}

func run(configPath string, stderr io.Writer, lookupEnv func(string) (string, bool), svc Service) error {
	if err := config.CheckEnviron(os.Environ()); err != nil {
		return err
	}
	cfg, err := config.Load(configPath, lookupEnv)
	if err != nil {
		return err
	}
	logger, err := NewLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	if svc.Check != nil {
		if err := svc.Check(cfg); err != nil {
			return err
		}
	}
	logger = logger.With("process", svc.Name)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Services started together on a fresh cluster all create their
	// streams at once, and a cluster that is still electing leaders times
	// out; such a start is retried for a while instead of failing.
	deadline := time.Now().Add(startupRetry)
	policy := startupBackoff
	policy.OnRetry = func(err error, wait time.Duration) {
		logger.Warn("start-up failed while NATS was busy; retrying", "retry_in", wait, "error", err)
	}
	var h *Host
	err = backoff.Retry(ctx, policy, func() error {
		var err error
		h, err = open(ctx, cfg, logger, lookupEnv, svc, func() (config.Config, error) {
			return config.Load(configPath, lookupEnv)
		})
		if err != nil && (!natserr.IsTransient(err) || time.Now().After(deadline)) {
			return backoff.Permanent(err)
		}
		return err
	})
	if err != nil {
		return err
	}
	return h.Run(ctx)
}

// startupRetry bounds how long a service binary retries a start-up that
// failed because NATS was briefly unavailable, and startupBackoff paces
// the attempts.
const startupRetry = time.Minute

var startupBackoff = backoff.Policy{Initial: 500 * time.Millisecond, Max: 5 * time.Second}

func open(ctx context.Context, cfg config.Config, logger *slog.Logger, lookupEnv func(string) (string, bool), svc Service, reload func() (config.Config, error)) (*Host, error) {
	h, err := Open(ctx, cfg, logger, lookupEnv, Options{
		Name: svc.Name, Services: []protoreflect.ServiceDescriptor{svc.Descriptor},
		HTTPPrefixes: svc.HTTPPrefixes, RequireExternalNATS: true, Reload: reload,
	})
	if err != nil {
		return nil, err
	}
	if err := svc.Mount(ctx, h); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}
