package app

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/receipt"
	"github.com/kontakt-se/kontakt/pkg/subject"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

// DueItem is one thing the plan will do to a case.
type DueItem struct {
	CaseID, CaseNumber string
	Type               casev1.CaseType
	Due                domain.Due
	OnHold             bool
}

// Preview lists what the plan will do within the given number of days
// from now, earliest first, without changing anything, including when the
// archive package of a case marked for preservation is written. Held cases are
// listed with OnHold set: the hold defers the action, not the deadline.
func (s *Service) Preview(days int) ([]DueItem, error) {
	until := s.clock().AddDate(0, 0, days)
	var out []DueItem
	err := s.idx.Each(func(e *Entry) error {
		dues := s.cfg.Plan.Schedule(&e.Case)
		if d, ok := s.cfg.Plan.ArchiveDue(&e.Case); ok {
			// The package of a marked case is written just before its
			// first deadline removes anything.
			dues = append([]domain.Due{d}, dues...)
		}
		for _, d := range dues {
			if d.At.After(until) {
				continue
			}
			out = append(out, DueItem{CaseID: e.Case.ID, CaseNumber: e.Case.Number, Type: e.Case.Type, Due: d, OnHold: e.Case.OnHold()})
		}
		return nil
	})
	slices.SortStableFunc(out, func(a, b DueItem) int {
		if c := a.Due.At.Compare(b.Due.At); c != 0 {
			return c
		}
		return compareStrings(a.CaseNumber, b.CaseNumber)
	})
	return out, err
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// subjectCases returns the ids of the cases whose contact details or
// identity number match the key (through the blind index).
func (s *Service) subjectCases(key subject.Key) ([]string, error) {
	tok, err := subject.Token(s.blind, key, s.clock())
	if err != nil {
		switch {
		case key.Email != "":
			return nil, invalid("subject.email", "not an e-mail address")
		case key.Phone != "":
			return nil, invalid("subject.phone", "not a phone number")
		case key.IdentityNumber != "":
			return nil, invalid("subject.identity_number", "not a valid personnummer or samordningsnummer")
		}
		return nil, invalid("subject", "give an e-mail, phone or identity number")
	}
	ids, err := s.idx.FindByToken(tok)
	if err != nil {
		return nil, err
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// Extract is a register extract: the person's cases, and the plan whose
// rules their retention entries name.
type Extract struct {
	Cases       []SubjectCase
	GeneratedAt time.Time
	PlanName    string
	PlanVersion string
}

// SubjectAccess compiles a register extract (GDPR article 15): every case
// that still holds the person's data, with every class of personal data
// opened (contact details, identity number, free text, attachment names
// and ids, answers, notes and forwarding comments, and the values
// rectifications replaced), where the case was sent, what the plan does
// to each class and when, and the case's audit trail. The extract is
// itself a processing of personal data, so it is recorded in each case's
// audit trail, naming the classes it opens, before anything is opened.
func (s *Service) SubjectAccess(ctx context.Context, actor, role string, key subject.Key, purpose string) (Extract, error) {
	ext := Extract{GeneratedAt: s.clock(), PlanName: s.cfg.Plan.Name, PlanVersion: s.cfg.Plan.Version}
	ids, err := s.subjectCases(key)
	if err != nil {
		return ext, err
	}
	if purpose == "" {
		purpose = "registerutdrag (GDPR art. 15)"
	}
	for _, id := range ids {
		c, recs, err := s.readCase(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return ext, err
		}
		reads, err := s.audit.ForCase(ctx, id)
		if err != nil {
			return ext, err
		}
		rec := &routingv1.AuditRecord{
			AuditId: uuid.NewString(), Actor: actor, Role: role, CaseId: id, Purpose: purpose,
			ReadAt: timestamppb.New(s.clock()), Rpc: "kontakt.retention.v1.RetentionService/SubjectAccess",
		}
		for _, cl := range domain.PersonalClasses() {
			if c.Sealed[cl] && !c.Redacted[cl] {
				rec.DataClasses = append(rec.DataClasses, classToProto(cl))
			}
		}
		if err := s.audit.Record(ctx, rec); err != nil {
			return ext, err
		}
		opened, err := s.openEvents(ctx, id, recs)
		if err != nil {
			return ext, err
		}
		sc := buildSubjectCase(s.cfg.Plan, c, opened)
		if !sc.holdsData() {
			// Nothing of the person is left in this case.
			continue
		}
		sc.Reads = reads
		ext.Cases = append(ext.Cases, sc)
	}
	return ext, nil
}

// Receipts streams the ledger's receipts in order.
func (s *Service) Receipts(ctx context.Context, fn func(receipt.Receipt) error) error {
	return s.ledger.Scan(ctx, fn)
}
