package node

import (
	"context"
	"fmt"
	"log/slog"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// Backends are the stores an admin command needs without the server: the
// event store, the key store and the master key. Commands such as
// `kontakt rebuild routing` run while `kontakt serve` is stopped, because
// the embedded NATS store and the read models are locked by a running
// server.
type Backends struct {
	Store  *jetstream.Store
	Sealer *seal.Sealer
	Master seal.MasterKey
	JS     natsjs.JetStream
	node   *Node
}

// OpenBackends starts (or connects to) NATS and opens the stores.
func OpenBackends(ctx context.Context, cfg config.Config, logger *slog.Logger, lookupEnv func(string) (string, bool)) (_ *Backends, err error) {
	n := &Node{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	if err := checkWritableDir(cfg.DataDir); err != nil {
		return nil, err
	}
	master, err := seal.LoadMasterKey(cfg.MasterKeyPath(), lookupEnv, false)
	if err != nil {
		return nil, err
	}
	return n.openBackends(ctx, master)
}

// openBackends connects to NATS (starting the embedded server when no URL
// is configured) and opens the event store and the key store.
func (n *Node) openBackends(ctx context.Context, master seal.MasterKey) (*Backends, error) {
	if err := n.connectNATS(ctx); err != nil {
		return nil, err
	}
	js, err := natsjs.New(n.conn)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	store, err := jetstream.New(ctx, js, jetstream.Config{Replicas: n.cfg.NATS.Replicas})
	if err != nil {
		return nil, fmt.Errorf("event store: %w", err)
	}
	keys, err := seal.NewNATSKeyStore(ctx, js, seal.NATSKeyStoreConfig{Replicas: n.cfg.NATS.Replicas})
	if err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	sealer, err := seal.NewSealer(keys, master)
	if err != nil {
		return nil, err
	}
	return &Backends{Store: store, Sealer: sealer, Master: master, JS: js, node: n}, nil
}

// Close stops NATS (when embedded) and closes the connection.
func (b *Backends) Close() { b.node.close() }
