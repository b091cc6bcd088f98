// Package ports holds the routing service's gRPC handlers: the edge where
// requests become queries and commands, and errors become status codes in
// one table.
package ports

import (
	"context"
	"log/slog"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/audit"
	"github.com/kontakt-se/kontakt/pkg/auth"
	"github.com/kontakt-se/kontakt/pkg/blobstore"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/server"
	"github.com/kontakt-se/kontakt/services/routing/app"
	"github.com/kontakt-se/kontakt/services/routing/domain"
)

// ErrorMappings is the one table from routing's errors to gRPC codes;
// the server applies it to each call of the service (see Register).
// Domain refusals explain themselves (they name no personal data); the
// rest show only the sentinel's text.
func ErrorMappings() []server.ErrorMapping {
	return []server.ErrorMapping{
		{Target: domain.ErrAlreadyAssigned, Code: codes.Aborted, Explain: true},
		{Target: domain.ErrPrecondition, Code: codes.FailedPrecondition, Explain: true},
		{Target: domain.ErrAlreadyRouted, Code: codes.FailedPrecondition, Explain: true},
		{Target: domain.ErrNotPermitted, Code: codes.PermissionDenied, Explain: true},
		{Target: domain.ErrInvalidArgument, Code: codes.InvalidArgument, Explain: true},
		{Target: app.ErrNotPermitted, Code: codes.PermissionDenied, Explain: true},
		{Target: app.ErrInvalidKey, Code: codes.InvalidArgument, Explain: true},
		{Target: app.ErrInvalidPageToken, Code: codes.InvalidArgument},
		{Target: app.ErrNotFound, Code: codes.NotFound},
		{Target: app.ErrAttachmentDestroyed, Code: codes.FailedPrecondition},
		{Target: app.ErrNoAttachmentContent, Code: codes.NotFound},
		{Target: app.ErrInvalidOffset, Code: codes.InvalidArgument, Explain: true},
		{Target: blobstore.ErrUnavailable, Code: codes.Unavailable},
		{Target: app.ErrAuditUnavailable, Code: codes.Unavailable},
		{Target: audit.ErrUnavailable, Code: codes.Unavailable},
		{Target: eventstore.ErrUnavailable, Code: codes.Unavailable},
		{Target: eventstore.ErrConflict, Code: codes.Aborted},
		// Reads show redacted data as redacted and commands seal under
		// the class's next key, so a destroyed key reaching here is a
		// redacted class, never our fault: say so rather than Internal.
		{Target: seal.ErrKeyDestroyed, Code: codes.FailedPrecondition},
	}
}

// Server implements kontakt.routing.v1.RoutingService.
type Server struct {
	routingv1.UnimplementedRoutingServiceServer
	queues   *app.Queues
	cmds     *app.Commands
	queries  *app.Queries
	broker   *app.Broker
	stopping <-chan struct{}
	logger   *slog.Logger
}

// Config is what the handlers are built from.
type Config struct {
	Queues   *app.Queues
	Commands *app.Commands
	Queries  *app.Queries
	Broker   *app.Broker
	// Stopping closes when the server shuts down, so live queue streams
	// end and do not hold up the drain.
	Stopping <-chan struct{}
	Logger   *slog.Logger
}

// NewServer builds the handlers.
func NewServer(cfg Config) *Server {
	return &Server{queues: cfg.Queues, cmds: cfg.Commands, queries: cfg.Queries, broker: cfg.Broker, stopping: cfg.Stopping, logger: cfg.Logger}
}

// Register adds the routing service, with its error table, to a server.
func Register(reg server.Registrar, s *Server) {
	routingv1.RegisterRoutingServiceServer(reg, s)
	reg.MapErrors(routingv1.RoutingService_ServiceDesc.ServiceName, ErrorMappings()...)
}

// reader builds the caller as the domain and queries see it: queue
// membership from the token and from configuration together.
func (s *Server) reader(ctx context.Context) (app.Reader, string, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return app.Reader{}, "", status.Error(codes.Unauthenticated, "no caller")
	}
	r := app.Reader{Actor: domain.Actor{
		Subject:    p.Subject,
		Agent:      p.HasRole(auth.RoleAgent),
		Officer:    p.HasRole(auth.RoleOfficer),
		Supervisor: p.HasRole(auth.RoleSupervisor),
		Department: p.Department,
	}, DPO: p.HasRole(auth.RoleDPO)}
	for _, q := range s.queues.Visible(app.Caller{Subject: p.Subject, Supervisor: r.Supervisor, Queues: p.Queues, Department: p.Department}) {
		r.Queues = append(r.Queues, q.Name)
	}
	for _, q := range p.Queues {
		if !slices.Contains(r.Queues, q) {
			r.Queues = append(r.Queues, q)
		}
	}
	role := ""
	for _, candidate := range []auth.Role{auth.RoleDPO, auth.RoleSupervisor, auth.RoleOfficer, auth.RoleAgent} {
		if p.HasRole(candidate) {
			role = string(candidate)
			break
		}
	}
	return r, role, nil
}

// ListQueues lists the caller's queues with their load.
func (s *Server) ListQueues(ctx context.Context, _ *routingv1.ListQueuesRequest) (*routingv1.ListQueuesResponse, error) {
	r, _, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	qs, err := s.queries.ListQueues(r)
	if err != nil {
		return nil, err
	}
	return &routingv1.ListQueuesResponse{Queues: qs}, nil
}

// ListQueueCases pages through a queue.
func (s *Server) ListQueueCases(ctx context.Context, req *routingv1.ListQueueCasesRequest) (*routingv1.ListQueueCasesResponse, error) {
	r, _, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := s.queries.ListQueueCases(ctx, r, req)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// WatchQueue streams the queue's changes until the client goes away or
// the server shuts down. A client that falls behind is ended with
// ResourceExhausted so the UI reloads the list. A caller who loses the
// queue by a configuration reload is ended with PermissionDenied (and one
// whose token expires, with Unauthenticated, by the auth interceptor).
func (s *Server) WatchQueue(req *routingv1.WatchQueueRequest, stream grpc.ServerStreamingServer[routingv1.WatchQueueResponse]) error {
	ctx := stream.Context()
	// Taken before the check, so a reload between the two is not missed.
	reloaded := s.queues.Changed()
	if err := s.mayWatch(ctx, req.GetQueue()); err != nil {
		return err
	}
	changes, stop := s.broker.Subscribe(req.GetQueue())
	defer stop()
	// Tell the client the stream is open, so it knows that every change
	// from now on will arrive. A message, not only headers: gRPC-web
	// proxies and transcoders may hold headers back until the first one.
	if err := stream.Send(&routingv1.WatchQueueResponse{Change: changeWatching, Kind: routingv1.QueueChange_QUEUE_CHANGE_WATCHING, At: timestamppb.Now()}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return status.Error(codes.Unavailable, "server shutting down; reconnect")
		case <-reloaded:
			reloaded = s.queues.Changed()
			if err := s.mayWatch(ctx, req.GetQueue()); err != nil {
				if p, ok := auth.FromContext(ctx); ok {
					s.logger.InfoContext(ctx, "queue watch ended: the caller no longer belongs to the queue", "subject", p.Subject)
				}
				return err
			}
		case c, ok := <-changes:
			if !ok {
				return status.Error(codes.ResourceExhausted, "fell behind the queue's changes; reload the list")
			}
			kind := c.Kind
			if c.PreviousQueue == req.GetQueue() && c.Queue != req.GetQueue() {
				kind = changeLeft
			}
			msg := &routingv1.WatchQueueResponse{
				Change: kind,
				Kind:   queueChanges[kind],
				Case:   s.queries.Summary(ctx, c.Row, true),
				At:     timestamppb.New(c.At),
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
	}
}

// The two change texts WatchQueue sends that are no event's.
const (
	changeWatching = "watching"
	changeLeft     = "left"
)

// queueChanges gives each change text its WatchQueueResponse.kind; a
// text missing here goes out as QUEUE_CHANGE_UNSPECIFIED, which clients
// take as "the case changed" (TestQueueChangesAreAllNamed keeps it whole).
var queueChanges = map[string]routingv1.QueueChange{
	changeWatching:            routingv1.QueueChange_QUEUE_CHANGE_WATCHING,
	app.ChangeRegistered:      routingv1.QueueChange_QUEUE_CHANGE_REGISTERED,
	app.ChangeRouted:          routingv1.QueueChange_QUEUE_CHANGE_ROUTED,
	app.ChangeAssigned:        routingv1.QueueChange_QUEUE_CHANGE_ASSIGNED,
	app.ChangeReleased:        routingv1.QueueChange_QUEUE_CHANGE_RELEASED,
	app.ChangeMoved:           routingv1.QueueChange_QUEUE_CHANGE_MOVED,
	app.ChangeForwarded:       routingv1.QueueChange_QUEUE_CHANGE_FORWARDED,
	app.ChangeAnswered:        routingv1.QueueChange_QUEUE_CHANGE_ANSWERED,
	app.ChangeNoted:           routingv1.QueueChange_QUEUE_CHANGE_NOTED,
	app.ChangeClosed:          routingv1.QueueChange_QUEUE_CHANGE_CLOSED,
	app.ChangeReopened:        routingv1.QueueChange_QUEUE_CHANGE_REOPENED,
	app.ChangeRedacted:        routingv1.QueueChange_QUEUE_CHANGE_REDACTED,
	app.ChangeRectified:       routingv1.QueueChange_QUEUE_CHANGE_RECTIFIED,
	app.ChangeHeld:            routingv1.QueueChange_QUEUE_CHANGE_HELD,
	app.ChangeDeleted:         routingv1.QueueChange_QUEUE_CHANGE_DELETED,
	app.ChangeMailSent:        routingv1.QueueChange_QUEUE_CHANGE_MAIL_SENT,
	app.ChangeMailFailed:      routingv1.QueueChange_QUEUE_CHANGE_MAIL_FAILED,
	app.ChangeMessageReceived: routingv1.QueueChange_QUEUE_CHANGE_MESSAGE_RECEIVED,
	changeLeft:                routingv1.QueueChange_QUEUE_CHANGE_LEFT,
}

// mayWatch refuses a caller who may not see queue, by the queues as they
// are configured now.
func (s *Server) mayWatch(ctx context.Context, queue string) error {
	r, _, err := s.reader(ctx)
	if err != nil {
		return err
	}
	if !s.queries.MayWatch(r, queue) {
		return status.Errorf(codes.PermissionDenied, "not permitted: you are not a member of queue %q", queue)
	}
	return nil
}

// GetCase returns a case with its personal data, after logging the read.
func (s *Server) GetCase(ctx context.Context, req *routingv1.GetCaseRequest) (*routingv1.GetCaseResponse, error) {
	r, role, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	view, err := s.queries.GetCase(ctx, r, role, routingv1.RoutingService_GetCase_FullMethodName, req.GetCaseId(), req.GetPurpose())
	if err != nil {
		return nil, err
	}
	return &routingv1.GetCaseResponse{Case: view}, nil
}

// GetAttachment returns an attachment's content, after logging the read.
func (s *Server) GetAttachment(ctx context.Context, req *routingv1.GetAttachmentRequest) (*routingv1.GetAttachmentResponse, error) {
	r, role, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	return s.queries.GetAttachment(ctx, r, role, routingv1.RoutingService_GetAttachment_FullMethodName,
		req.GetCaseId(), int(req.GetIndex()), req.GetPurpose(), req.GetOffset())
}

// FindCases finds cases by number or by a person's identifiers.
func (s *Server) FindCases(ctx context.Context, req *routingv1.FindCasesRequest) (*routingv1.FindCasesResponse, error) {
	r, role, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	cases, err := s.queries.FindCases(ctx, r, role, routingv1.RoutingService_FindCases_FullMethodName, req)
	if err != nil {
		return nil, err
	}
	return &routingv1.FindCasesResponse{Cases: cases}, nil
}

// ListAuditTrail lists the reads of a case's or a person's data.
func (s *Server) ListAuditTrail(ctx context.Context, req *routingv1.ListAuditTrailRequest) (*routingv1.ListAuditTrailResponse, error) {
	r, role, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	recs, err := s.queries.AuditTrail(ctx, r, role, routingv1.RoutingService_ListAuditTrail_FullMethodName, req)
	if err != nil {
		return nil, err
	}
	return &routingv1.ListAuditTrailResponse{Records: recs}, nil
}

// summaryOf answers a command with the case as it is after it.
func summaryOf(c *domain.Case) *routingv1.CaseSummary {
	s := &routingv1.CaseSummary{
		CaseId: c.ID, CaseNumber: c.Number, Type: c.Type, Channel: c.Channel, Category: c.Category,
		Queue: c.Queue, Status: c.Status, Assignee: c.Assignee, RegisteredAt: timestamppb.New(c.RegisteredAt),
		Redacted: c.IsRedacted(),
	}
	return s
}

type command func(ctx context.Context, a domain.Actor) (*domain.Case, error)

func (s *Server) run(ctx context.Context, f command) (*routingv1.CaseSummary, error) {
	r, _, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	c, err := f(ctx, r.Actor)
	if err != nil {
		return nil, err
	}
	return summaryOf(c), nil
}

// ClaimCase assigns the case to the caller.
func (s *Server) ClaimCase(ctx context.Context, req *routingv1.ClaimCaseRequest) (*routingv1.ClaimCaseResponse, error) {
	c, err := s.run(ctx, func(ctx context.Context, a domain.Actor) (*domain.Case, error) {
		return s.cmds.Claim(ctx, a, req.GetCaseId())
	})
	if err != nil {
		return nil, err
	}
	return &routingv1.ClaimCaseResponse{Case: c}, nil
}

// ReleaseCase puts the case back in its queue.
func (s *Server) ReleaseCase(ctx context.Context, req *routingv1.ReleaseCaseRequest) (*routingv1.ReleaseCaseResponse, error) {
	c, err := s.run(ctx, func(ctx context.Context, a domain.Actor) (*domain.Case, error) {
		return s.cmds.Release(ctx, a, req.GetCaseId())
	})
	if err != nil {
		return nil, err
	}
	return &routingv1.ReleaseCaseResponse{Case: c}, nil
}

// AssignCase reassigns a case (supervisor).
func (s *Server) AssignCase(ctx context.Context, req *routingv1.AssignCaseRequest) (*routingv1.AssignCaseResponse, error) {
	c, err := s.run(ctx, func(ctx context.Context, a domain.Actor) (*domain.Case, error) {
		return s.cmds.Assign(ctx, a, req.GetCaseId(), req.GetAssignee())
	})
	if err != nil {
		return nil, err
	}
	return &routingv1.AssignCaseResponse{Case: c}, nil
}

// MoveCase moves a case to another queue (supervisor).
func (s *Server) MoveCase(ctx context.Context, req *routingv1.MoveCaseRequest) (*routingv1.MoveCaseResponse, error) {
	if !s.queues.Known(req.GetToQueue()) {
		return nil, server.InvalidArgument("unknown queue", server.FieldViolation{Field: "to_queue", Description: "is not a configured queue"})
	}
	c, err := s.run(ctx, func(ctx context.Context, a domain.Actor) (*domain.Case, error) {
		return s.cmds.Move(ctx, a, req.GetCaseId(), req.GetToQueue())
	})
	if err != nil {
		return nil, err
	}
	return &routingv1.MoveCaseResponse{Case: c}, nil
}

// AddNote adds an internal note.
func (s *Server) AddNote(ctx context.Context, req *routingv1.AddNoteRequest) (*routingv1.AddNoteResponse, error) {
	r, _, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	id, err := s.cmds.AddNote(ctx, r.Actor, req.GetCaseId(), req.GetText())
	if err != nil {
		return nil, err
	}
	return &routingv1.AddNoteResponse{NoteId: id}, nil
}

// ForwardCase forwards a case to a department's queue or an officer.
func (s *Server) ForwardCase(ctx context.Context, req *routingv1.ForwardCaseRequest) (*routingv1.ForwardCaseResponse, error) {
	dept := ""
	if q := req.GetToQueue(); q != "" {
		if !s.queues.Known(q) {
			return nil, server.InvalidArgument("unknown queue", server.FieldViolation{Field: "to_queue", Description: "is not a configured queue"})
		}
		dept = s.queues.Department(q)
	}
	c, err := s.run(ctx, func(ctx context.Context, a domain.Actor) (*domain.Case, error) {
		return s.cmds.Forward(ctx, a, req.GetCaseId(), req.GetToQueue(), dept, req.GetToOfficer(), req.GetComment())
	})
	if err != nil {
		return nil, err
	}
	return &routingv1.ForwardCaseResponse{Case: c}, nil
}

// AnswerCase records the answer to the citizen.
func (s *Server) AnswerCase(ctx context.Context, req *routingv1.AnswerCaseRequest) (*routingv1.AnswerCaseResponse, error) {
	c, err := s.run(ctx, func(ctx context.Context, a domain.Actor) (*domain.Case, error) {
		return s.cmds.Answer(ctx, a, req.GetCaseId(), req.GetAnswer(), req.GetDelivery())
	})
	if err != nil {
		return nil, err
	}
	return &routingv1.AnswerCaseResponse{Case: c}, nil
}

// CloseCase closes a case.
func (s *Server) CloseCase(ctx context.Context, req *routingv1.CloseCaseRequest) (*routingv1.CloseCaseResponse, error) {
	c, err := s.run(ctx, func(ctx context.Context, a domain.Actor) (*domain.Case, error) {
		return s.cmds.Close(ctx, a, req.GetCaseId(), req.GetResolution(), req.GetFirstContactResolution())
	})
	if err != nil {
		return nil, err
	}
	return &routingv1.CloseCaseResponse{Case: c}, nil
}

// ReopenCase reopens a closed case.
func (s *Server) ReopenCase(ctx context.Context, req *routingv1.ReopenCaseRequest) (*routingv1.ReopenCaseResponse, error) {
	c, err := s.run(ctx, func(ctx context.Context, a domain.Actor) (*domain.Case, error) {
		return s.cmds.Reopen(ctx, a, req.GetCaseId())
	})
	if err != nil {
		return nil, err
	}
	return &routingv1.ReopenCaseResponse{Case: c}, nil
}
