// Package ports holds the retention service's gRPC handlers.
package ports

import (
	"google.golang.org/grpc"

	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
)

// Server implements kontakt.retention.v1.RetentionService. The retention
// plan, holds and data-subject requests are delivered by the retention
// issue; until then its RPCs answer Unimplemented.
type Server struct {
	retentionv1.UnimplementedRetentionServiceServer
}

// Register adds the retention service to a gRPC server.
func Register(reg grpc.ServiceRegistrar, s *Server) {
	retentionv1.RegisterRetentionServiceServer(reg, s)
}
