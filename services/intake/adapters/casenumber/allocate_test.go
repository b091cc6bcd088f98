package casenumber_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/services/intake/adapters/casenumber"
	"github.com/kontakt-se/kontakt/services/intake/app"
)

func seqOf(t *testing.T, number string) uint64 {
	t.Helper()
	s, ok := strings.CutPrefix(number, "KC-2026-")
	require.True(t, ok, number)
	seq, err := strconv.ParseUint(s, 10, 64)
	require.NoError(t, err)
	return seq
}

func allocations(prefix string, n int, at time.Time) []app.Allocation {
	out := make([]app.Allocation, n)
	for i := range out {
		out[i] = app.Allocation{At: at, CaseID: fmt.Sprintf("%s-%d", prefix, i)}
	}
	return out
}

// Groups from three instances, mixed with single allocations, get every
// number exactly once, each group a consecutive run in request order.
func TestConcurrentGroupsAllocateEveryNumberOnce(t *testing.T) {
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	nums := make([]*casenumber.Numbers, 3)
	for i := range nums {
		nums[i] = newNumbers(t, jetStream(t, srv), casenumber.Config{})
	}
	const goroutines, rounds = 30, 5
	var mu sync.Mutex
	owner := map[uint64]string{}
	var total int
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		n := nums[g%3]
		size := g%7 + 1
		mu.Lock()
		total += rounds * size
		mu.Unlock()
		wg.Go(func() {
			for r := range rounds {
				reqs := allocations(fmt.Sprintf("case-%d-%d", g, r), size, midsummer())
				var got []string
				var err error
				if size == 1 {
					var one string
					one, err = n.Next(ctx, reqs[0].At, reqs[0].CaseID)
					got = []string{one}
				} else {
					got, err = n.Allocate(ctx, reqs)
				}
				if err != nil {
					errs[g] = err
					return
				}
				mu.Lock()
				for i, number := range got {
					seq := seqOf(t, number)
					if i > 0 && seq != seqOf(t, got[i-1])+1 {
						errs[g] = fmt.Errorf("group %v is not consecutive", got)
					}
					if prev, dup := owner[seq]; dup {
						errs[g] = fmt.Errorf("%s allocated twice: %s and %s", number, prev, reqs[i].CaseID)
					}
					owner[seq] = reqs[i].CaseID
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	require.Len(t, owner, total)
	for seq := uint64(1); seq <= uint64(total); seq++ {
		caseID, ok := owner[seq]
		require.True(t, ok, "gap at %d", seq)
		wantLookup(t, nums[int(seq)%3], fmt.Sprintf("KC-2026-%06d", seq), caseID)
	}
}

// A group that spans New Year in Swedish time gets numbers of both years,
// each year's in order.
func TestAllocateSplitsByYear(t *testing.T) {
	n := newNumbers(t, jetStream(t, startServer(t)), casenumber.Config{})
	old := time.Date(2026, time.December, 31, 22, 59, 0, 0, time.UTC) // 23:59 in Stockholm
	newYear := time.Date(2026, time.December, 31, 23, 1, 0, 0, time.UTC)
	got, err := n.Allocate(t.Context(), []app.Allocation{
		{At: old, CaseID: "a"}, {At: newYear, CaseID: "b"}, {At: old, CaseID: "c"}, {At: newYear, CaseID: "d"},
	})
	require.NoError(t, err)
	require.Equal(t, []string{"KC-2026-000001", "KC-2027-000001", "KC-2026-000002", "KC-2027-000002"}, got)
	for i, caseID := range []string{"a", "b", "c", "d"} {
		wantLookup(t, n, got[i], caseID)
	}
	_, err = n.Allocate(t.Context(), []app.Allocation{{At: old, CaseID: "e"}, {At: time.Time{}, CaseID: "f"}})
	require.Error(t, err, "the zero time is refused")
	require.Equal(t, "KC-2026-000003", next(t, n, old, "g"), "a refused group uses no number")
}
