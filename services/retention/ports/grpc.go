// Package ports holds the retention service's gRPC handlers: the edge
// where requests become commands and queries, and errors become status
// codes in one table.
package ports

import (
	"context"
	"encoding/json"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	"github.com/kontakt-se/kontakt/pkg/audit"
	"github.com/kontakt-se/kontakt/pkg/auth"
	"github.com/kontakt-se/kontakt/pkg/caseaccess"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/receipt"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/server"
	"github.com/kontakt-se/kontakt/pkg/subject"
	"github.com/kontakt-se/kontakt/services/retention/app"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

// ErrorMappings is the one table from retention's errors to gRPC codes;
// the server applies it to each call of the service (see Register). A
// refused value is InvalidArgument naming its field.
func ErrorMappings() []server.ErrorMapping {
	return []server.ErrorMapping{
		server.MapAs(invalidField),
		{Target: app.ErrNotFound, Code: codes.NotFound},
		{Target: app.ErrHoldNotFound, Code: codes.NotFound, Explain: true},
		{Target: app.ErrConflict, Code: codes.Aborted},
		{Target: audit.ErrUnavailable, Code: codes.Unavailable},
		{Target: eventstore.ErrUnavailable, Code: codes.Unavailable},
		{Target: eventstore.ErrConflict, Code: codes.Aborted},
		{Target: seal.ErrKeyDestroyed, Code: codes.FailedPrecondition},
		{Target: domain.ErrNotPermitted, Code: codes.PermissionDenied, Explain: true},
		{Target: domain.ErrPrecondition, Code: codes.FailedPrecondition, Explain: true},
	}
}

// Server implements kontakt.retention.v1.RetentionService.
type Server struct {
	retentionv1.UnimplementedRetentionServiceServer
	svc *app.Service
}

// NewServer builds the handlers.
func NewServer(svc *app.Service) *Server {
	return &Server{svc: svc}
}

// Register adds the retention service, with its error table, to a server.
func Register(reg server.Registrar, s *Server) {
	retentionv1.RegisterRetentionServiceServer(reg, s)
	reg.MapErrors(retentionv1.RetentionService_ServiceDesc.ServiceName, ErrorMappings()...)
}

// invalidField is a refused value: InvalidArgument naming the field.
func invalidField(fe *app.FieldError) error {
	return server.InvalidArgument("invalid request: "+fe.Error(), server.FieldViolation{Field: fe.Field, Description: fe.Reason})
}

// caller returns the authenticated subject and the role it acts in.
func caller(ctx context.Context) (string, string, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return "", "", status.Error(codes.Unauthenticated, "no caller")
	}
	for _, r := range []auth.Role{auth.RoleDPO, auth.RoleSupervisor, auth.RoleOfficer} {
		if p.HasRole(r) {
			return p.Subject, string(r), nil
		}
	}
	return p.Subject, "", nil
}

// caseCaller returns the caller as the shared rule of who may act on a
// case sees them (pkg/caseaccess), and the role recorded in the audit
// trail.
func caseCaller(ctx context.Context) (caseaccess.Caller, string, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return caseaccess.Caller{}, "", status.Error(codes.Unauthenticated, "no caller")
	}
	_, role, _ := caller(ctx)
	return caseaccess.Caller{
		Subject: p.Subject, Agent: p.HasRole(auth.RoleAgent), Officer: p.HasRole(auth.RoleOfficer),
		Supervisor: p.HasRole(auth.RoleSupervisor), DPO: p.HasRole(auth.RoleDPO),
		Queues: p.Queues, Department: p.Department,
	}, role, nil
}

// GetPlan returns the plan in force.
func (s *Server) GetPlan(context.Context, *retentionv1.GetPlanRequest) (*retentionv1.GetPlanResponse, error) {
	return &retentionv1.GetPlanResponse{Plan: PlanToProto(s.svc.Plan())}, nil
}

// PlanToProto flattens the plan: one PlanRule per rule, case type and
// data class (channel unset when the rule covers every channel).
func PlanToProto(p *domain.Plan) *retentionv1.Plan {
	out := &retentionv1.Plan{Name: p.Name, Version: p.Version}
	for _, r := range p.Rules {
		types := r.Types
		if len(types) == 0 {
			types = []casev1.CaseType{casev1.CaseType_CASE_TYPE_UNSPECIFIED}
		}
		channels := r.Channels
		if len(channels) == 0 {
			channels = []casev1.Channel{casev1.Channel_CHANNEL_UNSPECIFIED}
		}
		for _, t := range types {
			for _, ch := range channels {
				for _, c := range r.Classes {
					out.Rules = append(out.Rules, &retentionv1.PlanRule{
						Name: r.Name, CaseType: t, Channel: ch, DataClass: protoClass(c),
						PeriodDays: int32(r.Period.NominalDays()), Period: r.Period.String(),
						Anchor: anchorToProto(r.From), Action: actionToProto(r.Action),
						MarkedOnly: r.Marked, Note: r.Note,
					})
				}
			}
		}
	}
	return out
}

// protoClass maps a plan class; the whole case, the audit trail and the
// statistics have no DataClass value and stay unspecified.
func protoClass(c domain.Class) casev1.DataClass {
	sc := seal.Class(c)
	if !sc.Valid() {
		return casev1.DataClass_DATA_CLASS_UNSPECIFIED
	}
	return sc.ToProto()
}

func anchorToProto(a domain.Anchor) retentionv1.Anchor {
	if a == domain.AnchorClosure {
		return retentionv1.Anchor_ANCHOR_CLOSURE
	}
	return retentionv1.Anchor_ANCHOR_REGISTRATION
}

func actionToProto(a domain.Action) retentionv1.Action {
	switch a {
	case domain.ActionRedact:
		return retentionv1.Action_ACTION_REDACT
	case domain.ActionDelete:
		return retentionv1.Action_ACTION_DELETE
	case domain.ActionPreserve:
		return retentionv1.Action_ACTION_PRESERVE
	case domain.ActionKeep:
		return retentionv1.Action_ACTION_KEEP
	case domain.ActionArchive:
		return retentionv1.Action_ACTION_ARCHIVE
	}
	return retentionv1.Action_ACTION_UNSPECIFIED
}

// Preview lists what is due in the coming days.
func (s *Server) Preview(_ context.Context, req *retentionv1.PreviewRequest) (*retentionv1.PreviewResponse, error) {
	items, err := s.svc.Preview(int(req.GetDays()))
	if err != nil {
		return nil, err
	}
	out := &retentionv1.PreviewResponse{Items: make([]*retentionv1.DueItem, 0, len(items))}
	for _, it := range items {
		di := &retentionv1.DueItem{
			CaseId: it.CaseID, CaseNumber: it.CaseNumber, CaseType: it.Type, Action: actionToProto(it.Due.Action),
			DueAt: timestamppb.New(it.Due.At), Rule: it.Due.Rule, OnHold: it.OnHold,
			WrittenAfterRedaction: it.Due.Rewritten,
		}
		if !it.Due.From.IsZero() {
			di.CountedFrom = timestamppb.New(it.Due.From)
		}
		for _, c := range it.Due.Classes {
			if dc := protoClass(c); dc != casev1.DataClass_DATA_CLASS_UNSPECIFIED {
				di.DataClasses = append(di.DataClasses, dc)
			}
		}
		out.Items = append(out.Items, di)
	}
	return out, nil
}

// PlaceHold places a hold.
func (s *Server) PlaceHold(ctx context.Context, req *retentionv1.PlaceHoldRequest) (*retentionv1.PlaceHoldResponse, error) {
	actor, _, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := s.svc.PlaceHold(ctx, actor, req.GetCaseId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &retentionv1.PlaceHoldResponse{HoldId: id}, nil
}

// ReleaseHold releases a hold.
func (s *Server) ReleaseHold(ctx context.Context, req *retentionv1.ReleaseHoldRequest) (*retentionv1.ReleaseHoldResponse, error) {
	actor, _, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.svc.ReleaseHold(ctx, actor, req.GetCaseId(), req.GetHoldId()); err != nil {
		return nil, err
	}
	return &retentionv1.ReleaseHoldResponse{}, nil
}

// MarkForPreservation marks a case to be preserved, and says when its
// archive package is written and what it will lack.
func (s *Server) MarkForPreservation(ctx context.Context, req *retentionv1.MarkForPreservationRequest) (*retentionv1.MarkForPreservationResponse, error) {
	by, role, err := caseCaller(ctx)
	if err != nil {
		return nil, err
	}
	res, err := s.svc.MarkForPreservation(ctx, by, role, req.GetCaseId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	out := &retentionv1.MarkForPreservationResponse{ArchiveDueAt: ts(res.ArchiveDueAt), AlreadyMarked: res.AlreadyMarked}
	for _, c := range res.AlreadyRedacted {
		out.AlreadyRedacted = append(out.AlreadyRedacted, protoClass(c))
	}
	return out, nil
}

// WithdrawPreservationMark withdraws a case's mark for preservation.
func (s *Server) WithdrawPreservationMark(ctx context.Context, req *retentionv1.WithdrawPreservationMarkRequest) (*retentionv1.WithdrawPreservationMarkResponse, error) {
	by, role, err := caseCaller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.svc.WithdrawPreservationMark(ctx, by, role, req.GetCaseId(), req.GetReason()); err != nil {
		return nil, err
	}
	return &retentionv1.WithdrawPreservationMarkResponse{}, nil
}

// ListPreservationMarks lists every case marked for preservation.
func (s *Server) ListPreservationMarks(context.Context, *retentionv1.ListPreservationMarksRequest) (*retentionv1.ListPreservationMarksResponse, error) {
	marks, err := s.svc.PreservationMarks()
	if err != nil {
		return nil, err
	}
	out := &retentionv1.ListPreservationMarksResponse{Marks: make([]*retentionv1.PreservationMark, 0, len(marks))}
	for _, m := range marks {
		pm := &retentionv1.PreservationMark{
			CaseId: m.CaseID, CaseNumber: m.CaseNumber, CaseType: m.Type, Archived: m.Archived, ArchiveDueAt: ts(m.ArchiveDueAt),
		}
		if m.Mark != nil {
			pm.MarkedBy, pm.MarkedAt, pm.Reason = m.Mark.By, ts(m.Mark.At), m.Mark.Reason
		}
		out.Marks = append(out.Marks, pm)
	}
	return out, nil
}

func subjectKey(k *retentionv1.SubjectKey) subject.Key {
	return subject.Key{Email: k.GetEmail(), Phone: k.GetPhone(), IdentityNumber: k.GetIdentityNumber()}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// SubjectAccess returns a register extract.
func (s *Server) SubjectAccess(ctx context.Context, req *retentionv1.SubjectAccessRequest) (*retentionv1.SubjectAccessResponse, error) {
	actor, role, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	ext, err := s.svc.SubjectAccess(ctx, actor, role, subjectKey(req.GetSubject()), req.GetPurpose())
	if err != nil {
		return nil, err
	}
	return ExtractToProto(ext), nil
}

// ExtractToProto converts a register extract for the API.
func ExtractToProto(ext app.Extract) *retentionv1.SubjectAccessResponse {
	out := &retentionv1.SubjectAccessResponse{GeneratedAt: ts(ext.GeneratedAt), PlanName: ext.PlanName, PlanVersion: ext.PlanVersion}
	for _, c := range ext.Cases {
		sc := &retentionv1.SubjectCase{
			CaseId: c.CaseID, CaseNumber: c.CaseNumber, Type: c.Type, Channel: c.Channel, Category: c.Category,
			RegisteredAt: ts(c.RegisteredAt), ClosedAt: ts(c.ClosedAt), Contact: c.Contact, Identity: c.Identity, FreeText: c.FreeText,
			Answers: c.Answers, RedactionDueAt: ts(c.RedactionDueAt), DeletionDueAt: ts(c.DeletionDueAt),
			OnHold: c.OnHold, MarkedForPreservation: c.Marked, ArchiveDueAt: ts(c.ArchiveDueAt),
		}
		for _, a := range c.Attachments {
			sc.Attachments = append(sc.Attachments, &retentionv1.SubjectAttachment{
				Name: a.Name, AttachmentId: a.ID, ContentType: a.ContentType, SizeBytes: a.SizeBytes, Redacted: a.Redacted,
			})
		}
		for _, t := range c.Texts {
			sc.Texts = append(sc.Texts, &retentionv1.SubjectText{
				Kind: textKindToProto(t.Kind), Author: t.Author, WrittenAt: ts(t.At), Text: t.Text, Redacted: t.Redacted,
			})
		}
		for _, f := range c.Forwardings {
			sc.Forwardings = append(sc.Forwardings, &retentionv1.SubjectForwarding{
				ToQueue: f.ToQueue, ToDepartment: f.ToDepartment, ToOfficer: f.ToOfficer, By: f.By, At: ts(f.At), Moved: f.Moved,
			})
		}
		for _, r := range c.Rectifications {
			sc.Rectifications = append(sc.Rectifications, &retentionv1.SubjectRectification{
				DataClass: r.Class, RectifiedBy: r.By, RectifiedAt: ts(r.At),
				Previous: subjectValue(r.Previous), Value: subjectValue(r.Value), Redacted: r.Redacted,
			})
		}
		for _, r := range c.Retention {
			sr := &retentionv1.SubjectRetention{
				DataClass: protoClass(r.Class), PlanClass: string(r.Class), DueAt: ts(r.DueAt),
				RedactedAt: ts(r.RedactedAt), RedactionReason: r.RedactionReason, HoldsData: r.HoldsData,
			}
			if r.Rule != nil {
				sr.Rule, sr.Action, sr.Anchor = r.Rule.Name, actionToProto(r.Rule.Action), anchorToProto(r.Rule.From)
				if r.Rule.Action != domain.ActionKeep {
					sr.Period = r.Rule.Period.String()
				} else {
					sr.Anchor = retentionv1.Anchor_ANCHOR_UNSPECIFIED
				}
			}
			sc.Retention = append(sc.Retention, sr)
		}
		for _, r := range c.Reads {
			sc.Reads = append(sc.Reads, &retentionv1.SubjectAuditEntry{
				Actor: r.GetActor(), Purpose: r.GetPurpose(), ReadAt: r.GetReadAt(),
				Role: r.GetRole(), Rpc: r.GetRpc(), DataClasses: r.GetDataClasses(),
			})
		}
		out.Cases = append(out.Cases, sc)
	}
	return out
}

func textKindToProto(k app.TextKind) retentionv1.SubjectTextKind {
	switch k {
	case app.TextAnswer:
		return retentionv1.SubjectTextKind_SUBJECT_TEXT_KIND_ANSWER
	case app.TextNote:
		return retentionv1.SubjectTextKind_SUBJECT_TEXT_KIND_NOTE
	case app.TextForwardComment:
		return retentionv1.SubjectTextKind_SUBJECT_TEXT_KIND_FORWARD_COMMENT
	case app.TextCitizenMessage:
		return retentionv1.SubjectTextKind_SUBJECT_TEXT_KIND_CITIZEN_MESSAGE
	}
	return retentionv1.SubjectTextKind_SUBJECT_TEXT_KIND_UNSPECIFIED
}

// subjectValue wraps one class's value; nil for a value that could not be
// read.
func subjectValue(m proto.Message) *retentionv1.SubjectValue {
	switch v := m.(type) {
	case *casev1.ContactDetails:
		return &retentionv1.SubjectValue{Value: &retentionv1.SubjectValue_Contact{Contact: v}}
	case *casev1.IdentityNumber:
		return &retentionv1.SubjectValue{Value: &retentionv1.SubjectValue_Identity{Identity: v}}
	case *casev1.FreeText:
		return &retentionv1.SubjectValue{Value: &retentionv1.SubjectValue_FreeText{FreeText: v}}
	case *casev1.AttachmentNames:
		return &retentionv1.SubjectValue{Value: &retentionv1.SubjectValue_Attachments{Attachments: v}}
	}
	return nil
}

// EraseSubject redacts a person's data in every case now.
func (s *Server) EraseSubject(ctx context.Context, req *retentionv1.EraseSubjectRequest) (*retentionv1.EraseSubjectResponse, error) {
	actor, _, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	outcomes, err := s.svc.EraseSubject(ctx, actor, subjectKey(req.GetSubject()), req.GetReason())
	if err != nil {
		return nil, err
	}
	out := &retentionv1.EraseSubjectResponse{}
	for _, o := range outcomes {
		out.Outcomes = append(out.Outcomes, &retentionv1.EraseOutcome{CaseNumber: o.CaseNumber, Erased: o.Erased, Explanation: o.Explanation})
	}
	return out, nil
}

// Rectify replaces one data class of a case with corrected values.
func (s *Server) Rectify(ctx context.Context, req *retentionv1.RectifyRequest) (*retentionv1.RectifyResponse, error) {
	actor, _, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	r := app.Rectification{Contact: req.GetContact(), FreeText: req.GetFreeText(), Identity: req.GetIdentity()}
	if err := s.svc.Rectify(ctx, actor, req.GetCaseId(), r); err != nil {
		return nil, err
	}
	return &retentionv1.RectifyResponse{}, nil
}

// ListReceipts streams the ledger.
func (s *Server) ListReceipts(_ *retentionv1.ListReceiptsRequest, stream grpc.ServerStreamingServer[retentionv1.ListReceiptsResponse]) error {
	err := s.svc.Receipts(stream.Context(), func(r receipt.Receipt) error {
		return stream.Send(&retentionv1.ListReceiptsResponse{Receipt: ReceiptToProto(r)})
	})
	if err != nil {
		return err
	}
	return nil
}

// ReceiptToProto converts a receipt for the API.
func ReceiptToProto(r receipt.Receipt) *retentionv1.Receipt {
	raw, _ := json.Marshal(r) // a struct of strings and a time: cannot fail
	return &retentionv1.Receipt{
		Raw: raw,
		Seq: r.Seq, Kind: r.Kind, Key: r.Key, CaseId: r.CaseID, CaseNumber: r.CaseNumber, CaseType: r.CaseType,
		Channel: r.Channel, PlanName: r.PlanName, PlanVersion: r.PlanVersion, Rule: r.Rule, Reason: r.Reason,
		Classes: r.Classes, At: ts(r.At), ArchiveSha256: r.ArchiveSHA256, Prev: r.Prev, Hash: r.Hash,
	}
}

// ReceiptFromProto converts back, for a verifier on the client side.
func ReceiptFromProto(p *retentionv1.Receipt) receipt.Receipt {
	r := receipt.Receipt{
		Seq: p.GetSeq(), Kind: p.GetKind(), Key: p.GetKey(), CaseID: p.GetCaseId(), CaseNumber: p.GetCaseNumber(),
		CaseType: p.GetCaseType(), Channel: p.GetChannel(), PlanName: p.GetPlanName(), PlanVersion: p.GetPlanVersion(),
		Rule: p.GetRule(), Reason: p.GetReason(), Classes: p.GetClasses(), ArchiveSHA256: p.GetArchiveSha256(),
		Prev: p.GetPrev(), Hash: p.GetHash(),
	}
	if p.GetAt() != nil {
		r.At = p.GetAt().AsTime()
	}
	return r
}
