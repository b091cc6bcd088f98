package e2e

import (
	binenc "encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

// checkReport is `kontakt check --json`.
type checkReport struct {
	Consistent bool `json:"consistent"`
	Results    []struct {
		Model       string         `json:"read_model"`
		Check       string         `json:"check"`
		OK          bool           `json:"ok"`
		Checkpoint  uint64         `json:"checkpoint"`
		Counts      map[string]int `json:"counts"`
		Differences []string       `json:"differences"`
	} `json:"results"`
}

// checkLines runs `kontakt check` and returns its exit code and the
// lines it printed per check ("OK routing cases: ...").
func checkLines(t *testing.T, config string, args ...string) (int, map[string]string, string) {
	t.Helper()
	code, out := runKontakt(t, append([]string{"check", "--config", config}, args...)...)
	t.Logf("kontakt check %s (exit %d):\n%s", strings.Join(args, " "), code, out)
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && (f[0] == "OK" || f[0] == "MISMATCH") {
			lines[f[1]+" "+strings.TrimSuffix(f[2], ":")] = l
		}
	}
	return code, lines, out
}

// corrupt runs fn in a write transaction on a read model's bbolt file,
// as a fault would leave it: a lost or stale entry, the checkpoint and
// everything else as they were.
func corrupt(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	require.NoError(t, err)
	require.NoError(t, db.Update(fn))
	require.NoError(t, db.Close())
}

// TestCheckComparesReadModelsWithTheLog registers cases through the API,
// works some of them, stops the server and runs `kontakt check`: every
// read model agrees with the log (exit 0, an OK line per check, the
// counts right). Then it damages each read model as a fault would (a
// queue list that lost a case, a case row lost, a deadline the sweeper
// no longer sees, a statistics record lost) and the check names the
// mismatch with exit 1, by queue, status and case number, never by case
// id or personal data. While a server runs, the check refuses at once.
func TestCheckComparesReadModelsWithTheLog(t *testing.T) {
	e := retStart(t, "", 0)
	var numbers, ids []string
	for i := range 6 {
		id, n := e.register(t, fragaInput("Bygglov "+string(rune('A'+i)), nil))
		ids, numbers = append(ids, id), append(numbers, n)
	}
	ctx, cancel := e.as(t, sara)
	defer cancel()
	queue := ""
	for i, n := range numbers {
		queue = e.waitRouted(t, n).GetQueue()
		switch i % 3 {
		case 1: // assigned
			_, err := e.rc.AssignCase(ctx, &routingv1.AssignCaseRequest{CaseId: ids[i], Assignee: "sara"})
			require.NoError(t, err)
			e.waitSummary(t, n, "assigned", func(s *routingv1.CaseSummary) bool { return s.GetStatus() == casev1.CaseStatus_CASE_STATUS_ASSIGNED })
		case 2: // closed
			_, err := e.rc.AssignCase(ctx, &routingv1.AssignCaseRequest{CaseId: ids[i], Assignee: "sara"})
			require.NoError(t, err)
			_, err = e.rc.CloseCase(ctx, &routingv1.CloseCaseRequest{CaseId: ids[i], Resolution: casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY, FirstContactResolution: true})
			require.NoError(t, err)
			e.waitSummary(t, n, "closed", func(s *routingv1.CaseSummary) bool { return s.GetStatus() == casev1.CaseStatus_CASE_STATUS_CLOSED })
		}
	}
	// While the server runs, the check refuses at once with one line.
	code, out := runKontakt(t, "check", "--config", e.k.Config)
	require.Equal(t, 1, code, out)
	t.Logf("kontakt check while serving (exit %d): %s", code, out)
	require.Contains(t, out, "kontakt: check: data directory in use: "+e.k.DataDir+" is used by another kontakt process (pid ")
	require.NotContains(t, out, "against the running server", "the check cannot run against a running server")
	require.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, "one line: %s", out)

	// Every read model has seen every event before the server stops.
	require.True(t, eventually(30*time.Second, func() bool {
		a := e.rebuildAnswers(t, numbers)
		count, fcr, _ := retStatsTotals(a.stats)
		return count == int64(len(numbers)) && fcr == 2 && len(a.preview) >= len(numbers)
	}), "the read models did not catch up")
	head := e.casesLastSeq(t)
	require.NoError(t, e.k.Stop(t))
	config, dataDir := e.k.Config, e.k.DataDir

	code, lines, out := checkLines(t, config)
	require.Equal(t, 0, code, out)
	for _, c := range []string{"routing cases", "routing queues", "retention cases", "retention deadlines", "statistics cases", "statistics records"} {
		require.Contains(t, lines, c, out)
		require.True(t, strings.HasPrefix(lines[c], "OK "), lines[c])
		require.Contains(t, lines[c], fmt.Sprintf("(log position %d)", head), lines[c])
	}
	require.Contains(t, lines["routing cases"], "6 cases, 4 open")
	require.Contains(t, lines["routing queues"], "4 open cases in 1 queue, 0 waiting for the router ["+queue+": 2 assigned, 2 queued]")
	require.Contains(t, lines["statistics records"], "6 records")
	for _, id := range ids {
		require.NotContains(t, out, id, "a case id in the output")
	}

	var report checkReport
	code, out = runKontakt(t, "check", "all", "--json", "--config", config)
	require.Equal(t, 0, code, out)
	require.NoError(t, json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &report), out)
	require.True(t, report.Consistent)
	require.Len(t, report.Results, 6)
	require.Equal(t, 6, report.Results[0].Counts["cases"])
	require.Equal(t, 4, report.Results[0].Counts["open"])

	// A usage error is exit 2.
	code, out = runKontakt(t, "check", "everything", "--config", config)
	require.Equal(t, 2, code, out)

	// Routing: the queue's list by age loses the first (queued) case, as
	// a lost write would leave it.
	routingFile := filepath.Join(dataDir, "routing", "readmodel.db")
	corrupt(t, routingFile, func(tx *bolt.Tx) error {
		k, _ := tx.Bucket([]byte("open_by_age")).Cursor().First()
		require.NotNil(t, k)
		return tx.Bucket([]byte("open_by_age")).Delete(k)
	})
	code, lines, out = checkLines(t, config, "routing")
	require.Equal(t, 1, code, out)
	require.True(t, strings.HasPrefix(lines["routing queues"], "MISMATCH "), out)
	require.Contains(t, lines["routing queues"], "queue "+queue+": cases in the list by age 3 in the read model, 4 by the log", out)
	require.True(t, strings.HasPrefix(lines["routing cases"], "OK "), out)
	require.Contains(t, out, "kontakt: check: read models differ from the event log")

	// Routing: an assigned case's row is gone, named by its case number.
	corrupt(t, routingFile, func(tx *bolt.Tx) error {
		id := tx.Bucket([]byte("numbers")).Get([]byte(numbers[1]))
		require.NotNil(t, id)
		return tx.Bucket([]byte("cases")).Delete(id)
	})
	code, lines, out = checkLines(t, config, "routing")
	require.Equal(t, 1, code, out)
	require.Contains(t, lines["routing cases"], "1 of 6 cases differ from the log ("+numbers[1]+")", out)
	require.Contains(t, lines["routing queues"], "queue "+queue+", status assigned: open cases 1 in the read model, 2 by the log", out)

	// Retention: the sweeper's due-time index loses a case.
	corrupt(t, filepath.Join(dataDir, "retention", "index.db"), func(tx *bolt.Tx) error {
		k, _ := tx.Bucket([]byte("due")).Cursor().First()
		require.NotNil(t, k)
		return tx.Bucket([]byte("due")).Delete(k)
	})
	code, lines, out = checkLines(t, config, "retention")
	require.Equal(t, 1, code, out)
	require.True(t, strings.HasPrefix(lines["retention cases"], "OK "), out)
	requireNamesOneOf(t, lines["retention deadlines"], "1 of 6 cases are listed wrongly for the sweeper (", numbers)

	// Statistics: a record is lost from the records the queries read.
	corrupt(t, filepath.Join(dataDir, "statistics", "statistics.db"), func(tx *bolt.Tx) error {
		k, _ := tx.Bucket([]byte("records")).Cursor().First()
		require.NotNil(t, k)
		return tx.Bucket([]byte("records")).Delete(k)
	})
	code, lines, out = checkLines(t, config, "statistics")
	require.Equal(t, 1, code, out)
	require.True(t, strings.HasPrefix(lines["statistics cases"], "MISMATCH "), out)
	requireNamesOneOf(t, lines["statistics cases"], "1 of 6 cases have another record in the records the queries read (", numbers)
	require.Contains(t, lines["statistics records"], "1 record of the stream missing from the read model", out)
	for _, id := range ids {
		require.NotContains(t, out, id, "a case id in the output")
	}

	// A rebuild repairs all of it, and the check says so.
	code, out = runKontakt(t, "rebuild", "all", "--config", config)
	require.Equal(t, 0, code, out)
	code, _, out = checkLines(t, config)
	require.Equal(t, 0, code, out)

	// A checkpoint rewound by one event (a file copied back with its
	// meta older than its rows): the model says it is a step behind, but
	// holds the last case's closing, which the log up to there lacks.
	corrupt(t, routingFile, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("checkpoint"), binenc.BigEndian.AppendUint64(nil, head-1))
	})
	code, lines, out = checkLines(t, config, "routing")
	require.Equal(t, 1, code, out)
	require.Contains(t, lines["routing cases"], fmt.Sprintf("(log position %d, 1 behind the log's head; serve catches up at start)", head-1), out)
	require.Contains(t, lines["routing cases"], "1 of 6 cases differ from the log ("+numbers[5]+")", out)
}

// requireNamesOneOf requires line to hold prefix followed by one of the
// case numbers and a closing parenthesis.
func requireNamesOneOf(t *testing.T, line, prefix string, numbers []string) {
	t.Helper()
	_, rest, ok := strings.Cut(line, prefix)
	require.True(t, ok, "%q lacks %q", line, prefix)
	named, _, ok := strings.Cut(rest, ")")
	require.True(t, ok, line)
	require.Contains(t, numbers, named, line)
}
