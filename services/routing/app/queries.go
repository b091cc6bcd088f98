package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/blindindex"
	"github.com/kontakt-se/kontakt/pkg/caseaccess"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/subject"
	"github.com/kontakt-se/kontakt/services/routing/domain"
)

// Sentinel errors of the query side.
var (
	// ErrAuditUnavailable means the read could not be logged, so it is
	// refused.
	ErrAuditUnavailable = errors.New("the audit log is unavailable, so personal data cannot be read now")
	// ErrNotPermitted means the caller may not see this case or queue.
	ErrNotPermitted = errors.New("not permitted")
	// ErrInvalidKey means a search key is not a valid e-mail, phone or
	// identity number.
	ErrInvalidKey = subject.ErrInvalidKey
	// ErrInvalidPageToken means a page token was not issued for the same
	// queue and order.
	ErrInvalidPageToken = errors.New("invalid page token")
)

// Queries serves the agent UI's reads.
type Queries struct {
	rm     ReadModel
	sealer Sealer
	audit  AuditLog
	blind  *blindindex.Index
	queues *Queues
	clock  func() time.Time
	// content is nil where no blob store is configured: downloads fail
	// with ErrNoAttachmentContent.
	content AttachmentContent
}

// QueriesConfig is what the query side is built from.
type QueriesConfig struct {
	ReadModel ReadModel
	Sealer    Sealer
	Audit     AuditLog
	// Blind computes the blind-index tokens of search keys.
	Blind  *blindindex.Index
	Queues *Queues
	Clock  func() time.Time
	// Attachments reads stored attachment content (GetAttachment).
	Attachments AttachmentContent
}

// NewQueries builds the query side.
func NewQueries(cfg QueriesConfig) *Queries {
	return &Queries{rm: cfg.ReadModel, sealer: cfg.Sealer, audit: cfg.Audit, blind: cfg.Blind, queues: cfg.Queues, clock: cfg.Clock, content: cfg.Attachments}
}

// Reader is who asks, with every role that matters to reads.
type Reader struct {
	domain.Actor
	DPO bool
}

// mayRead says whether a reader may see a case: the one rule of
// pkg/caseaccess (a supervisor or the DPO always, others when the case is
// in one of their queues, assigned to them, or forwarded to them or, as
// an officer, to their department).
func mayRead(r Reader, row CaseRow) bool {
	return row.MayRead(r.caller())
}

// caller is the reader as the shared rule sees them.
func (r Reader) caller() caseaccess.Caller {
	c := r.Caller()
	c.DPO = r.DPO
	return c
}

// Summary turns a row into what a queue list shows: the subject line is
// decrypted (empty once redacted), nothing else personal.
func (q *Queries) Summary(ctx context.Context, row CaseRow, withSubject bool) *routingv1.CaseSummary {
	s := &routingv1.CaseSummary{
		CaseId: row.CaseID, CaseNumber: row.Number, Type: row.Type, Channel: row.Channel,
		Category: row.Category, Queue: row.Queue, Status: row.Status, Assignee: row.Assignee,
		RegisteredAt: timestamppb.New(row.RegisteredAt), Redacted: len(row.Redacted) > 0,
	}
	if !row.DueAt.IsZero() {
		s.DueAt = timestamppb.New(row.DueAt)
	}
	if withSubject && row.FreeText != nil {
		var ft casev1.FreeText
		if err := q.openMessage(ctx, row.CaseID, row.FreeText, &ft); err == nil {
			s.Subject = ft.GetSubject()
		}
	}
	return s
}

func (q *Queries) openMessage(ctx context.Context, caseID string, sealed *casev1.SealedPersonalData, m proto.Message) error {
	b, err := q.sealer.Open(ctx, caseID, sealed)
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, m)
}

// ListQueues lists the caller's queues with their load.
func (q *Queries) ListQueues(r Reader) ([]*routingv1.Queue, error) {
	var out []*routingv1.Queue
	for _, queue := range q.queues.Visible(callerOf(r)) {
		load, err := q.rm.QueueLoad(queue.Name)
		if err != nil {
			return nil, err
		}
		pq := &routingv1.Queue{Name: queue.Name, Title: queue.Title, Department: queue.Department, OpenCases: load.Open, UnassignedCases: load.Unassigned}
		if !load.OldestOpenAt.IsZero() {
			pq.OldestOpenAt = timestamppb.New(load.OldestOpenAt)
		}
		out = append(out, pq)
	}
	return out, nil
}

// Loads returns the load of every configured queue, with the cases past
// due by the queries' clock, for the operator's metrics: no caller, so no
// filtering by membership, and nothing personal (queue names are
// configuration).
func (q *Queries) Loads() ([]QueueLoad, error) {
	names := q.queues.Names()
	out := make([]QueueLoad, 0, len(names))
	now := q.clock()
	for _, name := range names {
		load, err := q.rm.QueueLoad(name)
		if err != nil {
			return nil, err
		}
		pastDue, err := q.rm.PastDue(name, now)
		if err != nil {
			return nil, err
		}
		load.Queue, load.PastDue = name, int64(pastDue)
		out = append(out, load)
	}
	return out, nil
}

// Now is the queries' clock (the host's, which development mode may run
// ahead), so ages in the metrics agree with the answers.
func (q *Queries) Now() time.Time { return q.clock() }

func callerOf(r Reader) Caller {
	return Caller{Subject: r.Subject, Supervisor: r.Supervisor, Queues: r.Queues, Department: r.Department}
}

// MayWatch says whether the reader may see a queue.
func (q *Queries) MayWatch(r Reader, queue string) bool {
	for _, v := range q.queues.Visible(callerOf(r)) {
		if v.Name == queue {
			return true
		}
	}
	return false
}

// ListQueueCases pages through a queue's open cases.
func (q *Queries) ListQueueCases(ctx context.Context, r Reader, req *routingv1.ListQueueCasesRequest) (*routingv1.ListQueueCasesResponse, error) {
	if !q.MayWatch(r, req.GetQueue()) {
		return nil, fmt.Errorf("%w: you are not a member of queue %q", ErrNotPermitted, req.GetQueue())
	}
	rows, next, err := q.rm.ListQueue(QueueQuery{
		Queue: req.GetQueue(), Order: req.GetOrder(), Types: req.GetTypes(), Channels: req.GetChannels(),
		PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken(),
	})
	if err != nil {
		return nil, err
	}
	resp := &routingv1.ListQueueCasesResponse{NextPageToken: next}
	for _, row := range rows {
		resp.Cases = append(resp.Cases, q.Summary(ctx, row, true))
	}
	return resp, nil
}

// GetCase returns a case with its decrypted personal data. The read is
// written to the audit log first; if that fails the read is refused.
func (q *Queries) GetCase(ctx context.Context, r Reader, role, rpc, caseID, purpose string) (*routingv1.CaseView, error) {
	row, err := q.rm.Get(caseID)
	if err != nil {
		return nil, err
	}
	if !mayRead(r, row) {
		return nil, fmt.Errorf("%w: the case is not in your queues and not forwarded to you", ErrNotPermitted)
	}
	var classes []casev1.DataClass
	for class, sealed := range map[casev1.DataClass]*casev1.SealedPersonalData{
		casev1.DataClass_DATA_CLASS_CONTACT_DETAILS: row.Contact,
		casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER: row.Identity,
		casev1.DataClass_DATA_CLASS_FREE_TEXT:       row.FreeText,
		casev1.DataClass_DATA_CLASS_ATTACHMENTS:     row.AttachmentNames,
	} {
		if sealed != nil {
			classes = append(classes, class)
		}
	}
	history, err := q.rm.History(caseID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	for _, h := range history {
		if h.Text != nil && !slices.Contains(classes, TextClass(h.Kind)) {
			classes = append(classes, TextClass(h.Kind))
		}
	}
	slices.Sort(classes)
	if len(classes) > 0 {
		rec := &routingv1.AuditRecord{
			AuditId: uuid.NewString(), Actor: r.Subject, Role: role, CaseId: caseID,
			DataClasses: classes, Purpose: purpose, ReadAt: timestamppb.New(q.clock()), Rpc: rpc,
		}
		if err := q.audit.Record(ctx, rec); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrAuditUnavailable, err)
		}
	}
	view := &routingv1.CaseView{
		Summary: q.Summary(ctx, row, true), PersonalData: &routingv1.PersonalDataView{Redacted: row.Redacted},
		Attachments: row.Attachments, OnHold: row.OnHold,
		ForwardedToDepartment: row.ForwardedToDepartment, ForwardedToOfficer: row.ForwardedToOfficer,
	}
	pd := view.PersonalData
	redact := func(c casev1.DataClass) {
		if !slices.Contains(pd.Redacted, c) {
			pd.Redacted = append(pd.Redacted, c)
		}
	}
	open := func(c casev1.DataClass, sealed *casev1.SealedPersonalData, m proto.Message) bool {
		if sealed == nil {
			return false
		}
		if err := q.openMessage(ctx, caseID, sealed, m); err != nil {
			if errors.Is(err, seal.ErrKeyDestroyed) {
				redact(c)
				return false
			}
			return false
		}
		return true
	}
	var contact casev1.ContactDetails
	if open(casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, row.Contact, &contact) {
		pd.Contact = &contact
	}
	var id casev1.IdentityNumber
	if open(casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER, row.Identity, &id) {
		pd.Identity = &id
	}
	var ft casev1.FreeText
	if open(casev1.DataClass_DATA_CLASS_FREE_TEXT, row.FreeText, &ft) {
		pd.FreeText = &ft
	}
	var names casev1.AttachmentNames
	if open(casev1.DataClass_DATA_CLASS_ATTACHMENTS, row.AttachmentNames, &names) {
		pd.AttachmentNames = names.GetNames()
		pd.AttachmentIds = names.GetAttachmentIds()
	}
	for _, h := range history {
		e := &routingv1.CaseEntry{Kind: h.Kind, Actor: h.Actor, At: timestamppb.New(h.At), Queue: h.Queue, Resolution: h.Resolution, Detail: h.Detail}
		if TextClass(h.Kind) == casev1.DataClass_DATA_CLASS_FREE_TEXT {
			var t casev1.FreeText
			if open(casev1.DataClass_DATA_CLASS_FREE_TEXT, h.Text, &t) {
				e.Text = strings.TrimSpace(t.GetSubject() + "\n\n" + t.GetDescription())
			}
		} else {
			var t casev1.AnswerText
			if open(casev1.DataClass_DATA_CLASS_ANSWER, h.Text, &t) {
				e.Text = t.GetText()
			}
		}
		view.History = append(view.History, e)
	}
	return view, nil
}

// FindCases finds cases by number or, through the blind index, by a
// person's e-mail, phone or identity number.
//
// A search by a personal identifier processes that person's data, so it
// writes one audit record per case found (rpc FindCases, the data class of
// the key, the purpose) before anything is returned, and the search fails
// if a record cannot be written. A search that finds nothing has no case
// to attach a record to and leaves none. A search by case number touches
// no personal identifier and is not recorded.
//
// Privacy by default: of a case the caller may not read, the answer holds
// only what is needed to send the citizen on (case number, queue with its
// title and department, status, registration time), marked limited.
func (q *Queries) FindCases(ctx context.Context, r Reader, role, rpc string, req *routingv1.FindCasesRequest) ([]*routingv1.CaseSummary, error) {
	var (
		rows  []CaseRow
		class casev1.DataClass
	)
	switch key := req.GetKey().(type) {
	case *routingv1.FindCasesRequest_CaseNumber:
		row, err := q.rm.FindByNumber(key.CaseNumber)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		rows = []CaseRow{row}
	default:
		token, err := q.SearchToken(req.GetEmail(), req.GetPhone(), req.GetIdentityNumber())
		if err != nil {
			return nil, err
		}
		if rows, err = q.rm.FindByToken(token); err != nil {
			return nil, err
		}
		class = casev1.DataClass_DATA_CLASS_CONTACT_DETAILS
		if req.GetIdentityNumber() != "" {
			class = casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER
		}
		purpose := req.GetPurpose()
		if purpose == "" {
			purpose = "sökning efter ärenden"
		}
		if err := q.recordSearch(ctx, r, role, rpc, purpose, class, rows); err != nil {
			return nil, err
		}
	}
	out := make([]*routingv1.CaseSummary, 0, len(rows))
	for _, row := range rows {
		title, dept := q.queueInfo(row.Queue)
		if !mayRead(r, row) {
			out = append(out, &routingv1.CaseSummary{
				CaseNumber: row.Number, Queue: row.Queue, QueueTitle: title, QueueDepartment: dept,
				Status: row.Status, RegisteredAt: timestamppb.New(row.RegisteredAt), Limited: true,
			})
			continue
		}
		s := q.Summary(ctx, row, true)
		s.QueueTitle, s.QueueDepartment = title, dept
		out = append(out, s)
	}
	return out, nil
}

// recordSearch writes the audit record of a search by a personal
// identifier for every case it found.
func (q *Queries) recordSearch(ctx context.Context, r Reader, role, rpc, purpose string, class casev1.DataClass, rows []CaseRow) error {
	for _, row := range rows {
		rec := &routingv1.AuditRecord{
			AuditId: uuid.NewString(), Actor: r.Subject, Role: role, CaseId: row.CaseID,
			DataClasses: []casev1.DataClass{class}, Purpose: purpose, ReadAt: timestamppb.New(q.clock()), Rpc: rpc,
		}
		if err := q.audit.Record(ctx, rec); err != nil {
			return fmt.Errorf("%w: %w", ErrAuditUnavailable, err)
		}
	}
	return nil
}

// queueInfo returns a configured queue's title and department.
func (q *Queries) queueInfo(name string) (title, department string) {
	for _, queue := range q.queues.Visible(Caller{Supervisor: true}) {
		if queue.Name == name {
			return queue.Title, queue.Department
		}
	}
	return "", ""
}

// SearchToken normalises one search key and returns its blind-index token.
func (q *Queries) SearchToken(email, phone, pnr string) (string, error) {
	if email == "" && phone == "" && pnr == "" {
		return "", fmt.Errorf("%w: give a case number, e-mail, phone or identity number", ErrInvalidKey)
	}
	return subject.Token(q.blind, subject.Key{Email: email, Phone: phone, IdentityNumber: pnr}, q.clock())
}

// AuditTrail lists the reads of one case, or of every case of a person.
//
// A listing by e-mail, phone or identity number is itself a search by a
// personal identifier (it tells which cases the person has), so, as for
// FindCases, one audit record per case found is written after the trail
// was read and before it is returned: the person's trail shows that the
// data-protection officer looked, the next listing included. A listing by
// case id searches for nobody and is not recorded.
func (q *Queries) AuditTrail(ctx context.Context, r Reader, role, rpc string, req *routingv1.ListAuditTrailRequest) ([]*routingv1.AuditRecord, error) {
	if id := req.GetCaseId(); id != "" {
		return q.audit.ForCase(ctx, id)
	}
	token, err := q.SearchToken(req.GetEmail(), req.GetPhone(), req.GetIdentityNumber())
	if err != nil {
		return nil, err
	}
	rows, err := q.rm.FindByToken(token)
	if err != nil {
		return nil, err
	}
	var out []*routingv1.AuditRecord
	for _, row := range rows {
		recs, err := q.audit.ForCase(ctx, row.CaseID)
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	class := casev1.DataClass_DATA_CLASS_CONTACT_DETAILS
	if req.GetIdentityNumber() != "" {
		class = casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER
	}
	if err := q.recordSearch(ctx, r, role, rpc, "granskning av loggen över läsningar", class, rows); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *routingv1.AuditRecord) int { return a.GetReadAt().AsTime().Compare(b.GetReadAt().AsTime()) })
	return out, nil
}

// Tokenizer computes a case's blind-index tokens from its sealed contact
// details and identity number, for the read model. A destroyed key means
// the data was redacted: the case has no tokens, and that is no error,
// since asking again would never give any.
type Tokenizer struct {
	sealer Sealer
	blind  *blindindex.Index
	clock  func() time.Time
}

// NewTokenizer builds the tokenizer.
func NewTokenizer(sealer Sealer, blind *blindindex.Index, clock func() time.Time) *Tokenizer {
	return &Tokenizer{sealer: sealer, blind: blind, clock: clock}
}

// Tokens returns the tokens of a case's contact details and identity
// number (either may be nil).
func (t *Tokenizer) Tokens(ctx context.Context, caseID string, contact, id *casev1.SealedPersonalData) ([]string, error) {
	out, err := subject.CaseTokens(ctx, t.sealer, t.blind, caseID, contact, id)
	if errors.Is(err, subject.ErrRedacted) {
		return nil, nil
	}
	return out, err
}
