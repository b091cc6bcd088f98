// Package ports holds the statistics service's gRPC handlers: the edge
// where requests become queries, and errors become status codes in one
// table.
package ports

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/server"
	"github.com/kontakt-se/kontakt/services/statistics/app"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

// ErrorMappings is the one table from the statistics service's errors to
// gRPC codes; the server applies it to each call of the service (see
// Register). A query's refusal explains itself (it names no personal
// data, only the range and the dimensions); the rest show only the
// sentinel's text.
func ErrorMappings() []server.ErrorMapping {
	return []server.ErrorMapping{
		{Target: domain.ErrInvalidQuery, Code: codes.InvalidArgument, Explain: true},
		{Target: app.ErrUnavailable, Code: codes.Unavailable},
	}
}

// Server implements kontakt.statistics.v1.StatisticsService. The zero
// Server answers Unimplemented, so a binary that does not run the
// statistics service still serves its descriptor.
type Server struct {
	statisticsv1.UnimplementedStatisticsServiceServer
	queries  *app.Queries
	stopping <-chan struct{}
}

// Config configures a Server.
type Config struct {
	// Queries answers the calls.
	Queries *app.Queries
	// Stopping, if not nil, closes when the server shuts down, so record
	// streams end and do not hold up the drain.
	Stopping <-chan struct{}
}

// NewServer builds the handlers.
func NewServer(cfg Config) *Server {
	return &Server{queries: cfg.Queries, stopping: cfg.Stopping}
}

// Register adds the statistics service, with its error table, to a
// server.
func Register(reg server.Registrar, s *Server) {
	statisticsv1.RegisterStatisticsServiceServer(reg, s)
	reg.MapErrors(statisticsv1.StatisticsService_ServiceDesc.ServiceName, ErrorMappings()...)
}

// Query returns counts and durations grouped by the requested dimensions.
func (s *Server) Query(ctx context.Context, req *statisticsv1.QueryRequest) (*statisticsv1.QueryResponse, error) {
	if s.queries == nil {
		return s.UnimplementedStatisticsServiceServer.Query(ctx, req)
	}
	resp, err := s.queries.Query(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// StreamRecords streams record versions after the requested stream
// sequence, then follows new ones until the client goes away or the
// server shuts down (or, with stop_at_end, ends once it has sent what
// the stream held when the call began).
func (s *Server) StreamRecords(req *statisticsv1.StreamRecordsRequest, st grpc.ServerStreamingServer[statisticsv1.StreamRecordsResponse]) error {
	if s.queries == nil {
		return s.UnimplementedStatisticsServiceServer.StreamRecords(req, st)
	}
	ctx, cancel := context.WithCancel(st.Context())
	defer cancel()
	if s.stopping != nil {
		go func() {
			select {
			case <-s.stopping:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	err := s.queries.StreamRecords(ctx, req.GetAfterSequence(), req.GetStopAtEnd(), st.Send)
	switch {
	case err == nil:
		return nil
	case st.Context().Err() != nil:
		// The client went away: nobody is left to tell.
		return status.FromContextError(st.Context().Err()).Err()
	case ctx.Err() != nil:
		return status.Error(codes.Unavailable, "server shutting down")
	}
	return err
}
