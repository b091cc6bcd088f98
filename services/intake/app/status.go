package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// CaseState is what a public client may learn about a case it reported:
// whether it is open, and when it changed. It holds no personal data.
type CaseState struct {
	CaseNumber string
	// CaseID is the case's stream, for opening its sealed free text.
	CaseID   string
	Type     casev1.CaseType
	Category string
	Closed   bool
	// RegisteredBy is who registered the case (an agent's subject, or
	// "form:<client>" for forms), so a public client sees only its own.
	RegisteredBy string
	RequestedAt  time.Time
	UpdatedAt    time.Time
	// Coarse is the location rounded for statistics (plain by design:
	// where a fault is, in a cell that holds many homes); nil when the
	// case has no coordinates.
	Coarse *casev1.CoarseLocation
	// FreeText is the case's sealed free text (description, exact
	// location, media link); only OpenFreeText makes it readable.
	FreeText *casev1.SealedPersonalData
}

// Status looks a case up by its number and folds its events into the
// public state.
func (s *Service) Status(ctx context.Context, caseNumber string) (CaseState, error) {
	caseID, err := s.numbers.Lookup(ctx, caseNumber)
	if err != nil {
		return CaseState{}, err
	}
	evs, err := s.store.Read(ctx, caseID)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return CaseState{}, fmt.Errorf("case %s: %w", caseNumber, ErrNotFound)
	}
	if err != nil {
		return CaseState{}, fmt.Errorf("read case: %w", err)
	}
	st := CaseState{CaseNumber: caseNumber, CaseID: caseID}
	for _, ev := range evs {
		switch ev.Type {
		case EventTypeCaseRegistered():
			var cr casev1.CaseRegistered
			if err := proto.Unmarshal(ev.Data, &cr); err != nil {
				return CaseState{}, fmt.Errorf("decode CaseRegistered: %w", err)
			}
			if cr.GetCaseNumber() != caseNumber {
				// The number record points at a case that carries another
				// number (a record of an allocation whose registration
				// failed): this number has no case.
				return CaseState{}, fmt.Errorf("case %s: %w", caseNumber, ErrNotFound)
			}
			st.Type, st.Category = cr.GetType(), cr.GetCategory()
			st.RequestedAt = cr.GetRegisteredAt().AsTime()
			st.RegisteredBy = cr.GetRegisteredBy()
			st.Coarse, st.FreeText = cr.GetCoarseLocation(), cr.GetFreeText()
		case typeName(&casev1.CaseClosed{}):
			st.Closed = true
		case typeName(&casev1.CaseReopened{}):
			st.Closed = false
		}
		st.UpdatedAt = ev.Recorded
	}
	if st.RequestedAt.IsZero() {
		return CaseState{}, fmt.Errorf("case %s: %w", caseNumber, ErrNotFound)
	}
	return st, nil
}

func typeName(m proto.Message) string {
	return string(m.ProtoReflect().Descriptor().FullName())
}
