// Package ports holds the intake service's gRPC handlers: the edge where
// requests are turned into commands and domain errors into status codes.
package ports

import (
	"google.golang.org/grpc"

	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
)

// Server implements kontakt.intake.v1.IntakeService. Case registration is
// delivered by the intake issue; until then its RPCs answer Unimplemented
// so a client learns that honestly instead of getting a fake case number.
type Server struct {
	intakev1.UnimplementedIntakeServiceServer
}

// Register adds the intake service to a gRPC server.
func Register(reg grpc.ServiceRegistrar, s *Server) {
	intakev1.RegisterIntakeServiceServer(reg, s)
}
