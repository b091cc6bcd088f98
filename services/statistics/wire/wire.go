// Package wire mounts the statistics service on a process (pkg/host): the
// single binary and statistics' own binary build it the same way.
package wire

import (
	"context"
	"fmt"
	"path/filepath"

	"google.golang.org/protobuf/reflect/protoreflect"

	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/host"
	"github.com/kontakt-se/kontakt/pkg/readcheck"
	"github.com/kontakt-se/kontakt/services/statistics"
)

// Descriptor is the gRPC service statistics serves.
func Descriptor() protoreflect.ServiceDescriptor {
	return statisticsv1.File_kontakt_statistics_v1_statistics_proto.Services().Get(0)
}

// open builds the statistics service on h (its read model, the records
// stream, the projector and the handlers), to be closed with h.
func open(ctx context.Context, h *host.Host) (*statistics.Service, error) {
	dir, err := h.DataPath("statistics")
	if err != nil {
		return nil, err
	}
	cfg, err := config(h, dir)
	if err != nil {
		return nil, err
	}
	var opts []statistics.Option
	if h.Server != nil {
		opts = append(opts, statistics.WithShutdown(h.Server.ShuttingDown()))
	}
	stats, err := statistics.New(ctx, cfg, h.Store, h.JS, h.Logger.With("service", "statistics"), opts...)
	if err != nil {
		return nil, fmt.Errorf("statistics: %w", err)
	}
	h.OnClose(stats.Close)
	return stats, nil
}

// config is the service's configuration on h, with its files in dir: the
// one place the service and its check take it from.
func config(h *host.Host, dir string) (statistics.Config, error) {
	// Every instance derives the same key, so all of them derive the
	// same statistics ids.
	idKey, err := h.Master.DeriveKey(statistics.IDKeyPurpose)
	if err != nil {
		return statistics.Config{}, fmt.Errorf("statistics: %w", err)
	}
	return statistics.Config{DataDir: dir, Replicas: h.Config.NATS.Replicas, IDKey: idKey, Categories: h.Config.CategoryCodes()}, nil
}

// CheckOffline compares the statistics read model with the log and the
// statistics stream (statistics.Check), for `kontakt check` on a stopped
// data directory; it creates no directory and writes nothing.
func CheckOffline(ctx context.Context, h *host.Host) ([]readcheck.Result, error) {
	cfg, err := config(h, filepath.Join(h.Config.DataDir, "statistics"))
	if err != nil {
		return nil, err
	}
	head, err := h.Store.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("statistics: head of the log: %w", err)
	}
	return statistics.Check(ctx, cfg, h.Store, head, h.JS)
}

// declare describes the read model for pkg/host: its file for backup and
// restore, its runner for metrics and `kontakt rebuild`.
func declare(stats *statistics.Service) host.ReadModel {
	return host.ReadModel{
		Name:       "statistics",
		Checkpoint: stats.Checkpoint,
		Projection: stats.Projection(),
		Files:      []host.ReadModelFile{{Path: filepath.Join("statistics", statistics.FileName), WriteTo: stats.WriteTo}},
	}
}

// OpenOffline opens the statistics read model on a host without a
// server, for `kontakt rebuild`; closing h closes it.
func OpenOffline(ctx context.Context, h *host.Host) (host.ReadModel, error) {
	stats, err := open(ctx, h)
	if err != nil {
		return host.ReadModel{}, fmt.Errorf("open the statistics read model (stop kontakt serve first): %w", err)
	}
	return declare(stats), nil
}

// Mount builds statistics on h: its projector, the records stream and the
// query handlers.
func Mount(ctx context.Context, h *host.Host) error {
	stats, err := open(ctx, h)
	if err != nil {
		return err
	}
	if err := h.AddReadModel(declare(stats)); err != nil {
		return err
	}
	h.Go(stats.Run)
	stats.Register(h.Server)
	return nil
}
