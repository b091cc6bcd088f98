package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kontakt-se/kontakt/pkg/natsserver"
)

// Embedded starts an in-process NATS server with JetStream on a fresh store
// directory for one test and shuts it down when the test ends. A positive
// syncInterval trades durability for speed (benchmarks only); zero keeps
// sync-always, as kontakt runs.
func Embedded(t testing.TB, syncInterval time.Duration) *natsserver.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsserver.Start(ctx, natsserver.Config{StoreDir: t.TempDir(), InProcessOnly: true, SyncInterval: syncInterval})
	if err != nil {
		t.Fatalf("start embedded NATS: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// JetStream opens a connection of its own to srv, as a separate service
// instance would, and closes it when the test ends.
func JetStream(t testing.TB, srv *natsserver.Server) jetstream.JetStream {
	t.Helper()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatalf("connect to embedded NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}
