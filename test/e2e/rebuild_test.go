package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
)

// TestRebuildRoutingReplaysTheLog stops the server, deletes nothing but
// replays the log into a fresh routing read model with `kontakt rebuild
// routing`, and checks that the restarted server shows the same cases.
func TestRebuildRoutingReplaysTheLog(t *testing.T) {
	e := startRouting(t, "")
	var numbers []string
	for i := range 5 {
		_, n := e.register(t, fragaInput("Ombyggnad "+string(rune('A'+i)), nil))
		numbers = append(numbers, n)
	}
	before := map[string]string{}
	for _, n := range numbers {
		s := e.waitRouted(t, n)
		before[n] = s.GetQueue() + "/" + s.GetStatus().String()
	}
	require.NoError(t, e.k.Stop(t))

	// Throw the read model away entirely, so only the log can restore it.
	rm := filepath.Join(e.k.DataDir, "routing", "readmodel.db")
	require.NoError(t, os.Remove(rm))
	code, out := runKontakt(t, "rebuild", "routing", "--config", e.k.Config)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "rebuilt routing up to log position")

	again := startRouting(t, e.k.DataDir)
	for _, n := range numbers {
		s := again.summaryByNumber(t, n)
		require.NotNil(t, s, "case %s is missing after the rebuild", n)
		require.Equal(t, before[n], s.GetQueue()+"/"+s.GetStatus().String(), n)
	}
}

// TestRebuildRefusesWhileServing: the read model and the embedded store
// are the server's while it runs; the rebuild must say so, not wait.
func TestRebuildRefusesWhileServing(t *testing.T) {
	e := startRouting(t, "")
	code, out := runKontakt(t, "rebuild", "routing", "--config", e.k.Config)
	require.NotEqual(t, 0, code, out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.True(t, strings.HasPrefix(lines[len(lines)-1], "kontakt: "), out)
}

// rebuildAnswers is what the server answers about a set of cases, from
// each read model: routing's queue and status per case number, the
// statistics aggregate, and the retention preview of what is due.
type rebuildAnswers struct {
	routing   map[string]string
	stats     *statisticsv1.QueryResponse
	preview   []string
	statsMsgs int
	// byPhone are the cases FindCases finds by the phone number every
	// case of the test has: routing's blind-index tokens.
	byPhone []string
}

func (e *retEnv) rebuildAnswers(t *testing.T, numbers []string) rebuildAnswers {
	t.Helper()
	a := rebuildAnswers{routing: map[string]string{}}
	for _, n := range numbers {
		s := e.summaryByNumber(t, n)
		require.NotNil(t, s, "case %s is missing from routing", n)
		a.routing[n] = s.GetQueue() + "/" + s.GetStatus().String()
	}
	day := time.Now().UTC().Truncate(24 * time.Hour)
	a.stats = e.statsQuery(t, day.Add(-48*time.Hour), day.Add(48*time.Hour))
	ctx, cancel := e.as(t, sara)
	defer cancel()
	resp, err := e.rt.Preview(ctx, &retentionv1.PreviewRequest{Days: 3660})
	require.NoError(t, err)
	for _, it := range resp.GetItems() {
		a.preview = append(a.preview, fmt.Sprintf("%s %s %v %s %s", it.GetCaseNumber(), it.GetAction(), it.GetDataClasses(), it.GetDueAt().AsTime().Format(time.RFC3339), it.GetRule()))
	}
	slices.Sort(a.preview)
	a.statsMsgs = len(e.statsRecords(t))
	found, err := e.rc.FindCases(ctx, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_Phone{Phone: "0701234567"}})
	require.NoError(t, err)
	for _, c := range found.GetCases() {
		a.byPhone = append(a.byPhone, c.GetCaseId())
	}
	slices.Sort(a.byPhone)
	return a
}

func requireSameAnswers(t *testing.T, want, got rebuildAnswers, after string) {
	t.Helper()
	require.Equal(t, want.routing, got.routing, "routing after %s", after)
	require.True(t, proto.Equal(want.stats, got.stats), "statistics after %s:\nwant %v\ngot  %v", after, want.stats, got.stats)
	require.Equal(t, want.preview, got.preview, "retention preview after %s", after)
	require.Equal(t, want.statsMsgs, got.statsMsgs, "the statistics stream after %s: nothing published twice", after)
	require.Equal(t, want.byPhone, got.byPhone, "cases found by phone after %s", after)
}

// TestRebuildEachReadModelServesTheSameAnswers rebuilds routing's read
// model, the retention index and the statistics read model one by one
// with `kontakt rebuild`, then all three at once, with the server stopped,
// and checks that the restarted server answers as before: the same queue
// and status per case, the same statistics (and not one record version
// published again), the same retention deadlines.
func TestRebuildEachReadModelServesTheSameAnswers(t *testing.T) {
	e := retStart(t, "", 0)
	var numbers, ids []string
	for i := range 6 {
		id, n := e.register(t, fragaInput("Ombyggnad "+string(rune('A'+i)), nil))
		ids, numbers = append(ids, id), append(numbers, n)
	}
	ctx, cancel := e.as(t, sara)
	defer cancel()
	for i, n := range numbers {
		e.waitRouted(t, n)
		if i%2 == 0 {
			continue
		}
		_, err := e.rc.AssignCase(ctx, &routingv1.AssignCaseRequest{CaseId: ids[i], Assignee: "sara"})
		require.NoError(t, err)
		_, err = e.rc.CloseCase(ctx, &routingv1.CloseCaseRequest{CaseId: ids[i], Resolution: casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY, FirstContactResolution: true})
		require.NoError(t, err)
		e.waitSummary(t, n, "closed", func(s *routingv1.CaseSummary) bool { return s.GetStatus() == casev1.CaseStatus_CASE_STATUS_CLOSED })
	}
	// Every read model has seen every event: statistics counts the
	// closures, retention previews a deletion of every case.
	var want rebuildAnswers
	require.True(t, eventually(30*time.Second, func() bool {
		want = e.rebuildAnswers(t, numbers)
		count, fcr, _ := retStatsTotals(want.stats)
		deletions := 0
		for _, p := range want.preview {
			if strings.Contains(p, "ACTION_DELETE") {
				deletions++
			}
		}
		return count == int64(len(numbers)) && fcr == int64(len(numbers)/2) && deletions >= len(numbers)
	}), "the read models did not catch up: %+v", want)
	require.Len(t, want.byPhone, len(numbers), "every case is found by its phone number")
	head := e.casesLastSeq(t)
	require.NoError(t, e.k.Stop(t))
	dataDir, config := e.k.DataDir, e.k.Config

	for _, name := range []string{"routing", "retention", "statistics", "all"} {
		code, out := runKontakt(t, "rebuild", name, "--config", config)
		require.Equal(t, 0, code, out)
		for _, rm := range []string{"routing", "retention", "statistics"} {
			if name == rm || name == "all" {
				require.Contains(t, out, fmt.Sprintf("rebuilt %s up to log position %d", rm, head), out)
			}
		}
		again := retStart(t, dataDir, 0)
		requireSameAnswers(t, want, again.rebuildAnswers(t, numbers), "rebuilding "+name)
		require.NoError(t, again.k.Stop(t))
	}
}
