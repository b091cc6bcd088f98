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
	"github.com/kontakt-se/kontakt/services/statistics"
)

// Descriptor is the gRPC service statistics serves.
func Descriptor() protoreflect.ServiceDescriptor {
	return statisticsv1.File_kontakt_statistics_v1_statistics_proto.Services().Get(0)
}

// Mount builds statistics on h: its projector, the records stream and the
// query handlers.
func Mount(ctx context.Context, h *host.Host) error {
	dir, err := h.DataPath("statistics")
	if err != nil {
		return err
	}
	// Every instance derives the same key, so all of them derive the
	// same statistics ids.
	idKey, err := h.Master.DeriveKey(statistics.IDKeyPurpose)
	if err != nil {
		return fmt.Errorf("statistics: %w", err)
	}
	stats, err := statistics.New(ctx, statistics.Config{DataDir: dir, Replicas: h.Config.NATS.Replicas, IDKey: idKey, Categories: h.Config.CategoryCodes()},
		h.Store, h.JS, h.Logger.With("service", "statistics"), statistics.WithShutdown(h.Server.ShuttingDown()))
	if err != nil {
		return fmt.Errorf("statistics: %w", err)
	}
	h.OnClose(stats.Close)
	if err := h.AddReadModel(host.ReadModel{
		Name:       "statistics",
		Checkpoint: stats.Checkpoint,
		Files:      []host.ReadModelFile{{Path: filepath.Join("statistics", statistics.FileName), WriteTo: stats.WriteTo}},
	}); err != nil {
		return err
	}
	h.Go(stats.Run)
	stats.Register(h.Server)
	return nil
}
