package readmodel

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// TestUnroutedIndex: Unrouted lists exactly the cases that wait for the
// router, as batches register, route, close, reopen and delete them.
func TestUnroutedIndex(t *testing.T) {
	reg := func(id string) draft {
		return ev(id, registered(id, "KC-"+id, casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_PHONE, t0()))
	}
	s, _ := openStore(t, Options{Tokenizer: &fakeTokenizer{}})
	var pos eventstore.Position
	apply := func(drafts ...draft) {
		evs := history(pos, drafts...)
		require.NoError(t, s.Apply(t.Context(), evs...))
		pos = evs[len(evs)-1].Position
	}
	unrouted := func() []string {
		ids, err := s.Unrouted()
		require.NoError(t, err)
		slices.Sort(ids)
		return ids
	}
	for _, step := range []struct {
		name   string
		drafts []draft
		want   []string
	}{
		{"registered", []draft{reg("a"), reg("b"), reg("c"), reg("d")}, []string{"a", "b", "c", "d"}},
		{"routed in the batch that registered it", []draft{reg("e"), ev("e", routed("e", "q", t0()))}, []string{"a", "b", "c", "d"}},
		{"routed later", []draft{ev("a", routed("a", "q", t0()))}, []string{"b", "c", "d"}},
		{"closed before routing", []draft{ev("b", &casev1.CaseClosed{CaseId: "b"})}, []string{"c", "d"}},
		{"reopened before routing", []draft{ev("b", &casev1.CaseReopened{CaseId: "b"})}, []string{"b", "c", "d"}},
		{"deleted", []draft{ev("c", &casev1.CaseDeleted{CaseId: "c"}), ev("d", nil)}, []string{"b"}},
		{"routed and closed", []draft{ev("b", routed("b", "q", t0())), ev("b", &casev1.CaseClosed{CaseId: "b"})}, nil},
	} {
		apply(step.drafts...)
		require.Equal(t, step.want, unrouted(), step.name)
		checkConsistent(t, s)
	}
}

// TestUnroutedCostsWhatWaits: the router lists the unrouted cases at
// every start and every five minutes. With none waiting, the listing
// costs the same whether the file holds a hundred cases or thirty times
// as many: it reads the unrouted index, not every stored case (which it
// did before, decoding each: its allocations grew with the history).
func TestUnroutedCostsWhatWaits(t *testing.T) {
	allocs := map[int]float64{}
	for _, n := range []int{100, 3000} {
		s, _ := openStore(t, Options{})
		s.db.NoSync = true
		var drafts []draft
		for i := range n {
			id := fmt.Sprintf("case-%05d", i)
			drafts = append(drafts,
				ev(id, registered(id, "KC-"+id, casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_PHONE, t0().Add(time.Duration(i)*time.Second))),
				ev(id, routed(id, "q", t0())))
		}
		require.NoError(t, s.Apply(t.Context(), history(0, drafts...)...))
		load, err := s.QueueLoad("q")
		require.NoError(t, err)
		require.EqualValues(t, n, load.Open)
		allocs[n] = testing.AllocsPerRun(20, func() {
			ids, err := s.Unrouted()
			if err != nil || len(ids) != 0 {
				t.Fatalf("unrouted: %v, %v", ids, err)
			}
		})
	}
	require.Equal(t, allocs[100], allocs[3000], "listing no unrouted cases costs more with more cases stored")
	require.LessOrEqual(t, allocs[3000], 20.0, "listing no unrouted cases allocates per stored case")
}
