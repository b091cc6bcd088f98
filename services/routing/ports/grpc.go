// Package ports holds the routing service's gRPC handlers: the edge where
// requests become queries and commands, and errors become status codes.
package ports

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/auth"
	"github.com/kontakt-se/kontakt/services/routing/app"
)

// QueueLister is what the handlers need to list queues.
type QueueLister interface {
	Visible(c app.Caller) []app.Queue
}

// Server implements kontakt.routing.v1.RoutingService. ListQueues works
// from the configured queues; the agent workflow (claim, forward, answer,
// close, live queues, audited reads) is delivered by the routing issue and
// answers Unimplemented until then.
type Server struct {
	routingv1.UnimplementedRoutingServiceServer
	queues QueueLister
}

// NewServer builds the handlers.
func NewServer(queues QueueLister) *Server {
	return &Server{queues: queues}
}

// Register adds the routing service to a gRPC server.
func Register(reg grpc.ServiceRegistrar, s *Server) {
	routingv1.RegisterRoutingServiceServer(reg, s)
}

// ListQueues lists the queues the caller belongs to. Case counts are not
// filled in yet: they come from the routing read model.
func (s *Server) ListQueues(ctx context.Context, _ *routingv1.ListQueuesRequest) (*routingv1.ListQueuesResponse, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no caller")
	}
	caller := app.Caller{
		Subject:    p.Subject,
		Supervisor: p.HasRole(auth.RoleSupervisor),
		Queues:     p.Queues,
		Department: p.Department,
	}
	resp := &routingv1.ListQueuesResponse{}
	for _, q := range s.queues.Visible(caller) {
		resp.Queues = append(resp.Queues, &routingv1.Queue{Name: q.Name, Title: q.Title, Department: q.Department})
	}
	return resp, nil
}
