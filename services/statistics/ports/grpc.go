// Package ports holds the statistics service's gRPC handlers.
package ports

import (
	"google.golang.org/grpc"

	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
)

// Server implements kontakt.statistics.v1.StatisticsService. Aggregates and
// the record stream are delivered by the statistics issue; until then its
// RPCs answer Unimplemented.
type Server struct {
	statisticsv1.UnimplementedStatisticsServiceServer
}

// Register adds the statistics service to a gRPC server.
func Register(reg grpc.ServiceRegistrar, s *Server) {
	statisticsv1.RegisterStatisticsServiceServer(reg, s)
}
