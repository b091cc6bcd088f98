// Package ports holds the intake service's edges: the gRPC handlers (also
// served as gRPC-web, Connect and REST/JSON) and the Open311 GeoReport v2
// endpoints for fault-reporting apps. Here requests become commands and
// errors become status codes, in one table.
package ports

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	"github.com/kontakt-se/kontakt/pkg/auth"
	"github.com/kontakt-se/kontakt/pkg/blobstore"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/fieldrules"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/server"
	"github.com/kontakt-se/kontakt/services/intake/app"
	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// Registrar is what the handlers need from the application layer.
type Registrar interface {
	Register(ctx context.Context, in *intakev1.CaseInput, actor string) (app.Registered, error)
	SubmitForm(ctx context.Context, client, key string, in *intakev1.CaseInput) (app.Registered, error)
	Status(ctx context.Context, caseNumber string) (app.CaseState, error)
	// OpenFreeText opens a case's sealed free text, for public answers
	// that may show it; redacted text is (nil, nil).
	OpenFreeText(ctx context.Context, caseID string, sealed *casev1.SealedPersonalData) (*casev1.FreeText, error)
	// Validate runs the domain rules alone, so an answer to a request
	// that breaks field rules names the domain's wrong fields too.
	Validate(in *intakev1.CaseInput, src domain.Source) error
}

// ErrorMappings is the one table from intake's errors to gRPC codes, for
// every protocol: the server applies it to each call of the service (see
// Register), and Open311 answers through it too. A case that breaks the
// domain's rules is InvalidArgument naming every wrong field. Reusing an
// idempotency key for another payload is FailedPrecondition (HTTP 400):
// the key is taken, and sending the same request again cannot succeed.
// Anything not listed becomes Internal without its text.
func ErrorMappings() []server.ErrorMapping {
	return []server.ErrorMapping{
		server.MapAs(invalidCase),
		{Target: app.ErrPayloadMismatch, Code: codes.FailedPrecondition},
		{Target: app.ErrInProgress, Code: codes.Aborted},
		{Target: app.ErrNotFound, Code: codes.NotFound},
		{Target: eventstore.ErrUnavailable, Code: codes.Unavailable},
		{Target: blobstore.ErrUnavailable, Code: codes.Unavailable},
		{Target: app.ErrNoAttachmentStore, Code: codes.FailedPrecondition},
		{Target: seal.ErrKeyDestroyed, Code: codes.FailedPrecondition},
	}
}

// ReplayedHeader is set on a form answer that repeats an earlier
// submission, so the body stays byte-for-byte the first answer.
const ReplayedHeader = "idempotent-replayed"

// Server implements kontakt.intake.v1.IntakeService.
type Server struct {
	intakev1.UnimplementedIntakeServiceServer
	app       Registrar
	validator protovalidate.Validator
	clock     func() time.Time
	logger    *slog.Logger
}

// NewServer builds the handlers.
func NewServer(a Registrar, v protovalidate.Validator, clock func() time.Time, logger *slog.Logger) *Server {
	return &Server{app: a, validator: v, clock: clock, logger: logger}
}

// Register adds the intake service, with its error table, to a server,
// and has the server tell m how every SubmitForm call ended (m may be
// nil).
func Register(reg server.Registrar, s *Server, m *SubmissionMetrics) {
	intakev1.RegisterIntakeServiceServer(reg, s)
	reg.MapErrors(intakev1.IntakeService_ServiceDesc.ServiceName, ErrorMappings()...)
	if m != nil {
		reg.ObserveCalls(submitFormMethod, m.observeForm)
	}
}

// ValidatesOwnRequests tells the server's validation interceptor that
// intake checks the field rules itself, together with its domain rules,
// so one answer names every wrong field.
func (s *Server) ValidatesOwnRequests() {}

// RegisterCase registers a case an agent took.
func (s *Server) RegisterCase(ctx context.Context, req *intakev1.RegisterCaseRequest) (*intakev1.RegisterCaseResponse, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no caller")
	}
	if err := s.precheck(req, req.GetCase(), domain.FromAgent); err != nil {
		return nil, err
	}
	r, err := s.app.Register(ctx, req.GetCase(), p.Subject)
	if err != nil {
		return nil, err
	}
	return &intakev1.RegisterCaseResponse{CaseId: r.CaseID, CaseNumber: r.CaseNumber, RegisteredAt: timestamppb.New(r.RegisteredAt)}, nil
}

// SubmitForm registers a case from an e-service form, idempotently.
func (s *Server) SubmitForm(ctx context.Context, req *intakev1.SubmitFormRequest) (*intakev1.SubmitFormResponse, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.Client == "" {
		return nil, status.Error(codes.PermissionDenied, "requires a form-client credential")
	}
	if err := s.precheck(req, req.GetCase(), domain.FromForm); err != nil {
		return nil, err
	}
	r, err := s.app.SubmitForm(ctx, p.Client, req.GetIdempotencyKey(), req.GetCase())
	if err != nil {
		return nil, err
	}
	if r.Replayed {
		_ = grpc.SetHeader(ctx, metadata.Pairs(ReplayedHeader, "true"))
	}
	return &intakev1.SubmitFormResponse{CaseNumber: r.CaseNumber, RegisteredAt: timestamppb.New(r.RegisteredAt)}, nil
}

// precheck runs the field rules. When they fail it runs the domain rules
// too, so that one answer names every wrong field; when they pass, the
// command runs the domain rules itself.
func (s *Server) precheck(req proto.Message, in *intakev1.CaseInput, src domain.Source) error {
	viols, err := fieldrules.Check(s.validator, req)
	if err != nil {
		return err
	}
	if len(viols) == 0 {
		return nil
	}
	if in != nil {
		var ve *domain.ValidationError
		if derr := s.app.Validate(in, src); errors.As(derr, &ve) {
			viols = mergeViolations(viols, ve.Violations)
		}
	}
	return server.InvalidArgument("invalid case", viols...)
}

// invalidCase is a case the domain refused: InvalidArgument naming every
// wrong field, so a form can show each message next to its field.
func invalidCase(ve *domain.ValidationError) error {
	viols := make([]server.FieldViolation, len(ve.Violations))
	for i, v := range ve.Violations {
		viols[i] = server.FieldViolation{Field: v.Field, Description: v.Description}
	}
	return server.InvalidArgument("invalid case", viols...)
}

// mergeViolations adds the domain's violations for fields the field rules
// did not already name, themselves or through a part of them (a broken
// case.location.latitude already explains case.location).
func mergeViolations(fieldRules []server.FieldViolation, dom []domain.Violation) []server.FieldViolation {
	named := func(field string) bool {
		for _, v := range fieldRules {
			if v.Field == field || strings.HasPrefix(v.Field, field+".") {
				return true
			}
		}
		return false
	}
	for _, v := range dom {
		if named(v.Field) {
			continue
		}
		fieldRules = append(fieldRules, server.FieldViolation{Field: v.Field, Description: v.Description})
	}
	return fieldRules
}
