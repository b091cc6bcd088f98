// Package node builds the single binary's process: all four services on
// one host (pkg/host) with an embedded NATS server or an external cluster.
// It is the composition root, the only place that imports every service
// module; the services themselves never import each other.
package node

import (
	"context"
	"log/slog"

	natsgo "github.com/nats-io/nats.go"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/host"
	intakewire "github.com/kontakt-se/kontakt/services/intake/wire"
	retentionwire "github.com/kontakt-se/kontakt/services/retention/wire"
	routingwire "github.com/kontakt-se/kontakt/services/routing/wire"
	statisticswire "github.com/kontakt-se/kontakt/services/statistics/wire"
)

// Services are the four kontakt services, for the access policy and for
// health reporting.
func Services() []protoreflect.ServiceDescriptor {
	return []protoreflect.ServiceDescriptor{
		intakewire.Descriptor(), routingwire.Descriptor(), retentionwire.Descriptor(), statisticswire.Descriptor(),
	}
}

// Build opens the host and mounts intake, routing, retention and
// statistics on it. reload loads the configuration again as cfg was
// loaded (SIGHUP); nil leaves SIGHUP alone. On error nothing is left
// running.
func Build(ctx context.Context, cfg config.Config, logger *slog.Logger, lookupEnv func(string) (string, bool), reload func() (config.Config, error)) (*host.Host, error) {
	return Open(ctx, cfg, logger, lookupEnv, Setup{Reload: reload})
}

// Setup says how Open builds the process beyond the configuration.
type Setup struct {
	// Reload: see Build.
	Reload func() (config.Config, error)
	// Offline builds it without serving (host.Options.Offline), for
	// `kontakt backup` with no server and `kontakt restore`.
	Offline bool
	// AfterConnect runs once NATS is up, before the stores open their
	// streams (host.Options.AfterConnect).
	AfterConnect func(context.Context, *natsgo.Conn) error
	// BeforeMount runs once the stores are open, before any service is
	// mounted (and so before any service opens its read model).
	BeforeMount func(context.Context, *host.Host) error
}

// Open is Build with a Setup: the same services, mounted the same way,
// for every command that runs them.
func Open(ctx context.Context, cfg config.Config, logger *slog.Logger, lookupEnv func(string) (string, bool), s Setup) (*host.Host, error) {
	if err := Check(cfg); err != nil {
		return nil, err
	}
	h, err := host.Open(ctx, cfg, logger, lookupEnv, host.Options{
		Name: "kontakt", Services: Services(), HTTPPrefixes: []string{intakewire.Open311Prefix},
		Reload: s.Reload, Offline: s.Offline, AfterConnect: s.AfterConnect,
	})
	if err != nil {
		return nil, err
	}
	if s.BeforeMount != nil {
		if err := s.BeforeMount(ctx, h); err != nil {
			h.Close()
			return nil, err
		}
	}
	for _, mount := range []func(context.Context, *host.Host) error{
		intakewire.Mount, routingwire.Mount, retentionwire.Mount, statisticswire.Mount,
	} {
		if err := mount(ctx, h); err != nil {
			h.Close()
			return nil, err
		}
	}
	return h, nil
}

// Check reads every file the services need beyond the configuration (the
// routing rules, the retention plan) and creates nothing. Open runs it
// first, so a bad file stops start-up before a master key, a signing key,
// the NATS store or a port exists.
func Check(cfg config.Config) error {
	for _, check := range []func(config.Config) error{routingwire.Check, retentionwire.Check} {
		if err := check(cfg); err != nil {
			return err
		}
	}
	return nil
}
