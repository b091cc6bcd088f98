package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// Opener opens a sealed message of a case. The public Open311 answers use
// it only when the municipality lets them show the free text.
type Opener interface {
	OpenMessage(ctx context.Context, caseID string, sealed *casev1.SealedPersonalData, m proto.Message) error
}

// OpenFreeText opens a case's sealed free text. Text that was redacted
// (its key destroyed) or never sealed is no text: (nil, nil). Any other
// failure is returned, so a key service that is away is not mistaken for
// a redaction.
func (s *Service) OpenFreeText(ctx context.Context, caseID string, sealed *casev1.SealedPersonalData) (*casev1.FreeText, error) {
	if sealed == nil {
		return nil, nil
	}
	if s.opener == nil {
		return nil, errors.New("intake: the sealer cannot open")
	}
	var ft casev1.FreeText
	err := s.opener.OpenMessage(ctx, caseID, sealed, &ft)
	switch {
	case errors.Is(err, seal.ErrKeyDestroyed), errors.Is(err, seal.ErrKeyNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("open free text: %w", err)
	}
	return &ft, nil
}

// PublicRequests is the read model behind Open311's list of service
// requests (GET requests.json|xml): every fault report with what a public
// answer may show of it and nothing personal (its number, category,
// times, whether it is open, the rounded location) plus the sealed free
// text, which stays sealed unless the municipality publishes it. It lives
// in memory and is rebuilt from the log at each start: it holds only
// fault reports, a few hundred bytes each, and a list call then reads no
// stream at all, so the unauthenticated list costs the same whatever it
// asks for.
type PublicRequests struct {
	mu         sync.RWMutex
	checkpoint eventstore.Position
	byID       map[string]*CaseState
	byNumber   map[string]*CaseState
	// ordered holds the fault reports in order of requested_datetime,
	// so a date range is a slice of it.
	ordered []*CaseState
}

// NewPublicRequests returns an empty model.
func NewPublicRequests() *PublicRequests {
	return &PublicRequests{byID: map[string]*CaseState{}, byNumber: map[string]*CaseState{}}
}

// Checkpoint implements projection.Model.
func (p *PublicRequests) Checkpoint() (eventstore.Position, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.checkpoint, nil
}

// Apply implements projection.Model: it follows fault reports' lifecycles
// and forgets a case whose stream was deleted.
func (p *PublicRequests) Apply(_ context.Context, batch []projection.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	removed := false
	for _, ev := range batch {
		pos := ev.Recorded.Position
		if pos <= p.checkpoint {
			continue
		}
		stream := ev.Recorded.Stream
		if ev.Deleted() {
			if st, ok := p.byID[stream]; ok {
				delete(p.byID, stream)
				delete(p.byNumber, st.CaseNumber)
				removed = true
			}
			continue
		}
		switch m := ev.Message.(type) {
		case *casev1.CaseRegistered:
			if m.GetType() != casev1.CaseType_CASE_TYPE_FELANMALAN {
				continue
			}
			st := &CaseState{
				CaseNumber: m.GetCaseNumber(), CaseID: stream, Type: m.GetType(), Category: m.GetCategory(),
				RegisteredBy: m.GetRegisteredBy(), RequestedAt: m.GetRegisteredAt().AsTime(), UpdatedAt: ev.Recorded.Recorded,
				Coarse: m.GetCoarseLocation(), FreeText: m.GetFreeText(),
			}
			if _, ok := p.byID[stream]; ok {
				continue
			}
			// Almost always the newest: an append. Registrations that
			// commit out of clock order are put in their place.
			at := sort.Search(len(p.ordered), func(i int) bool { return p.ordered[i].RequestedAt.After(st.RequestedAt) })
			p.ordered = slices.Insert(p.ordered, at, st)
			p.byID[stream] = st
			p.byNumber[st.CaseNumber] = st
		default:
			st, ok := p.byID[stream]
			if !ok {
				continue
			}
			switch ev.Message.(type) {
			case *casev1.CaseClosed:
				st.Closed = true
			case *casev1.CaseReopened:
				st.Closed = false
			}
			st.UpdatedAt = ev.Recorded.Recorded
		}
	}
	if removed {
		p.ordered = slices.DeleteFunc(p.ordered, func(st *CaseState) bool { return p.byID[st.CaseID] != st })
	}
	if n := len(batch); n > 0 && batch[n-1].Recorded.Position > p.checkpoint {
		p.checkpoint = batch[n-1].Recorded.Position
	}
	return nil
}

// PublicFilter selects service requests: those requested in [From, To],
// of one of Categories (all when empty), open or closed as Closed says
// (either when nil), the newest first, at most Limit.
type PublicFilter struct {
	From, To   time.Time
	Categories []string
	Closed     *bool
	Limit      int
}

// Get returns a copy of the fault report with the number.
func (p *PublicRequests) Get(number string) (CaseState, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	st, ok := p.byNumber[number]
	if !ok {
		return CaseState{}, false
	}
	return *st, true
}

// List returns copies of the fault reports the filter selects.
func (p *PublicRequests) List(f PublicFilter) []CaseState {
	p.mu.RLock()
	defer p.mu.RUnlock()
	// The range is found by binary search and walked newest first.
	end := sort.Search(len(p.ordered), func(i int) bool { return p.ordered[i].RequestedAt.After(f.To) })
	out := make([]CaseState, 0, min(f.Limit, 64))
	for i := end - 1; i >= 0 && len(out) < f.Limit; i-- {
		st := p.ordered[i]
		if st.RequestedAt.Before(f.From) {
			break
		}
		if len(f.Categories) > 0 && !slices.Contains(f.Categories, st.Category) {
			continue
		}
		if f.Closed != nil && st.Closed != *f.Closed {
			continue
		}
		out = append(out, *st)
	}
	return out
}
