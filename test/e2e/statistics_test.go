package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
)

var natscliOnce sync.Once
var natscliPath string
var natscliErr error

// natscli returns the nats CLI (github.com/nats-io/natscli), the client an
// analyst would use: $KONTAKT_NATSCLI_BIN when set (make test builds it),
// otherwise built once into the repository's bin/.
func natscli(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KONTAKT_NATSCLI_BIN"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	natscliOnce.Do(func() {
		testDir := filepath.Join(repoRoot(t), "test")
		natscliPath = filepath.Join(testDir, "..", "bin", "nats")
		cmd := exec.Command("go", "build", "-o", natscliPath, "github.com/nats-io/natscli/nats")
		cmd.Dir = testDir
		if out, err := cmd.CombinedOutput(); err != nil {
			natscliErr = fmt.Errorf("build natscli: %v\n%s", err, out)
		}
	})
	require.NoError(t, natscliErr)
	return natscliPath
}

// statsCase is one case the statistics test makes, and what it does to it.
type statsCase struct {
	typ     casev1.CaseType
	channel casev1.Channel
	answer  bool
	closeIt bool
	fcr     bool
}

func statsInput(i int, c statsCase, marker string) *intakev1.CaseInput {
	in := &intakev1.CaseInput{
		Type: c.typ, Channel: c.channel, Category: "bygglov",
		Subject:     marker + "-subject",
		Description: marker + "-description",
		Contact: &intakev1.Contact{
			Name:  marker + "-name",
			Email: strings.ToLower(marker) + "@example.se",
			PostalAddress: &casev1.PostalAddress{
				Street: marker + "-street", PostalCode: "43182", City: "Mölndal",
			},
		},
	}
	switch c.channel {
	case casev1.Channel_CHANNEL_PHONE:
		in.Contact.Phone = fmt.Sprintf("070-55%02d%03d", i, i)
	case casev1.Channel_CHANNEL_CHAT:
		in.ChatTranscript = marker + "-chat"
	case casev1.Channel_CHANNEL_VISIT:
		in.Contact.Name = ""
	}
	if c.typ == casev1.CaseType_CASE_TYPE_FELANMALAN {
		in.Location = &intakev1.LocationInput{Latitude: 57.655312, Longitude: 12.013987, Address: marker + "-address"}
	}
	return in
}

// TestStatisticsAreAnonymousAndComplete works a varied set of cases with
// markers in every personal field, then checks the aggregates against the
// cases made, reads the statistics stream with the nats CLI as an analyst
// would, and finds no marker, case id or case number in any record. The
// retention issue extends it: aggregates must not change when the cases
// are later redacted or deleted (statsSnapshot is the thing to compare).
func TestStatisticsAreAnonymousAndComplete(t *testing.T) {
	e := startRouting(t, "")
	cases := []statsCase{
		{casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_PHONE, true, true, true},
		{casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_PHONE, true, true, false},
		{casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_EMAIL, true, false, false},
		{casev1.CaseType_CASE_TYPE_FELANMALAN, casev1.Channel_CHANNEL_PHONE, false, false, false},
		{casev1.CaseType_CASE_TYPE_FELANMALAN, casev1.Channel_CHANNEL_VISIT, true, true, true},
		{casev1.CaseType_CASE_TYPE_SYNPUNKT, casev1.Channel_CHANNEL_CHAT, true, true, false},
		{casev1.CaseType_CASE_TYPE_SYNPUNKT, casev1.Channel_CHANNEL_LETTER, false, false, false},
		{casev1.CaseType_CASE_TYPE_BREV, casev1.Channel_CHANNEL_LETTER, true, true, true},
	}
	var ids, numbers, markers []string
	for i, c := range cases {
		marker := fmt.Sprintf("STATSMARK%02dX", i)
		markers = append(markers, marker)
		id, number := e.register(t, statsInput(i, c, marker))
		ids, numbers = append(ids, id), append(numbers, number)
	}
	ctx, cancel := e.as(t, sara)
	defer cancel()
	for i, c := range cases {
		e.waitRouted(t, numbers[i])
		if !c.answer && !c.closeIt {
			continue
		}
		_, err := e.rc.AssignCase(ctx, &routingv1.AssignCaseRequest{CaseId: ids[i], Assignee: "sara"})
		require.NoError(t, err)
		if c.answer {
			_, err = e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: ids[i], Answer: markers[i] + "-answer"})
			require.NoError(t, err)
		}
		if c.closeIt {
			_, err = e.rc.CloseCase(ctx, &routingv1.CloseCaseRequest{CaseId: ids[i], Resolution: casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY, FirstContactResolution: c.fcr})
			require.NoError(t, err)
		}
	}

	// Aggregates agree with the cases made (the projector is
	// asynchronous: wait until every case is counted and closed).
	wantByType := map[string]int64{}
	wantClosed, wantFCR := 0, int64(0)
	for _, c := range cases {
		wantByType[c.typ.String()]++
		if c.closeIt {
			wantClosed++
		}
		if c.fcr {
			wantFCR++
		}
	}
	actx, acancel := e.as(t, alva)
	defer acancel()
	stats := statisticsv1.NewStatisticsServiceClient(e.conns[0])
	day := time.Now().UTC().Truncate(24 * time.Hour)
	query := func(groupBy []statisticsv1.Dimension, publishable bool) *statisticsv1.QueryResponse {
		resp, err := stats.Query(actx, &statisticsv1.QueryRequest{
			From: timestamppb.New(day.Add(-48 * time.Hour)), To: timestamppb.New(day.Add(48 * time.Hour)),
			GroupBy: groupBy, Publishable: publishable,
		})
		require.NoError(t, err)
		return resp
	}
	var byType *statisticsv1.QueryResponse
	require.True(t, eventually(20*time.Second, func() bool {
		byType = query([]statisticsv1.Dimension{statisticsv1.Dimension_DIMENSION_TYPE}, false)
		var total, fcr int64
		for _, r := range byType.GetRows() {
			total += r.GetCount()
			fcr += r.GetFirstContactResolved()
		}
		return total == int64(len(cases)) && fcr == wantFCR
	}), "statistics did not count every case: %v", byType)
	got := map[string]int64{}
	for _, r := range byType.GetRows() {
		require.Len(t, r.GetKeys(), 1)
		got[r.GetKeys()[0]] += r.GetCount()
	}
	for typ, n := range wantByType {
		require.Equal(t, n, got[typ]+got[strings.TrimPrefix(typ, "CASE_TYPE_")]+got[strings.ToLower(strings.TrimPrefix(typ, "CASE_TYPE_"))], "count of %s (rows %v)", typ, got)
	}
	// Publishable figures suppress cells below five.
	for _, r := range query([]statisticsv1.Dimension{statisticsv1.Dimension_DIMENSION_TYPE}, true).GetRows() {
		require.True(t, r.GetSuppressed(), "a cell of fewer than 5 cases is published: %v", r)
		require.Zero(t, r.GetCount())
	}

	// The analyst's view: every message of the statistics stream, read
	// with the nats CLI through the embedded server's client port, with
	// the analyst's context from the data directory as the README says.
	sctx, scancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer scancel()
	info, err := e.js.Stream(sctx, "KONTAKT_STATS")
	require.NoError(t, err)
	st, err := info.Info(sctx)
	require.NoError(t, err)
	count := st.State.Msgs
	require.GreaterOrEqual(t, count, uint64(len(cases)), "at least one record version per case")
	out, err := exec.CommandContext(sctx, natscli(t), "--context", e.k.AnalystNATSContext(), "sub", "kontakt.stats.>",
		"--stream", "KONTAKT_STATS", "--all", "--raw", "--count", fmt.Sprint(count)).Output()
	require.NoError(t, err)
	newest := map[string]*statisticsv1.StatisticsRecord{}
	lines := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		lines++
		var rec statisticsv1.StatisticsRecord
		require.NoError(t, protojson.Unmarshal(line, &rec), "the documented JSON form: %s", line)
		require.NotEmpty(t, rec.GetStatisticsId())
		if prev := newest[rec.GetStatisticsId()]; prev == nil || prev.GetVersion() < rec.GetVersion() {
			newest[rec.GetStatisticsId()] = &rec
		}
		for _, forbidden := range append(append(append([]string{}, ids...), numbers...), markers...) {
			require.NotContains(t, string(line), forbidden, "a statistics record holds personal data or a case key")
		}
		require.NotContains(t, strings.ToLower(string(line)), "statsmark")
		require.NotContains(t, string(line), "57.655312", "exact coordinates in a statistics record")
	}
	require.Equal(t, int(count), lines, "the nats CLI delivered every message")
	require.Len(t, newest, len(cases), "one statistics record per case")
	closed := 0
	for _, r := range newest {
		if r.GetClosed() {
			closed++
			require.NotNil(t, r.GetTimeToClose())
		}
		require.Equal(t, r.GetRegisteredHour().AsTime(), r.GetRegisteredHour().AsTime().Truncate(time.Hour))
	}
	require.Equal(t, wantClosed, closed)

	// The exports an analyst or a manager takes away: the CSV and the HTML
	// report (with its charts) hold no marker, case id or number either.
	dir := t.TempDir()
	from, to := day.Add(-48*time.Hour).Format("2006-01-02"), day.Add(48*time.Hour).Format("2006-01-02")
	csvPath := filepath.Join(dir, "export.csv")
	code, out2 := runKontakt(t, "stats", "export", "--config", e.k.Config, "--addr", e.k.Addr,
		"--from", from, "--to", to, "--group-by", "type,channel,category,queue,department", "--granularity", "day",
		"--format", "csv", "--out", csvPath)
	require.Equal(t, 0, code, out2)
	report := filepath.Join(dir, "report", "report.html")
	code, out2 = runKontakt(t, "stats", "report", "--config", e.k.Config, "--addr", e.k.Addr,
		"--month", day.Format("2006-01"), "--out", report)
	require.Equal(t, 0, code, out2)
	csvData, err := os.ReadFile(csvPath)
	require.NoError(t, err)
	var csvTotal int
	for _, line := range strings.Split(strings.TrimSpace(string(csvData)), "\n")[1:] {
		var n int
		_, _ = fmt.Sscan(strings.Split(line, ",")[6], &n)
		csvTotal += n
	}
	require.Equal(t, len(cases), csvTotal, "the CSV counts every case:\n%s", csvData)
	page, err := os.ReadFile(report)
	require.NoError(t, err)
	// A manager's report reads in Swedish, with the type names as they
	// are spelt, and rates first-contact resolution on the closed cases.
	require.Contains(t, string(page), `<html lang="sv">`)
	require.Contains(t, string(page), "Felanmälan")
	require.Contains(t, string(page), "Lösta vid första kontakt räknas på avslutade ärenden")
	// The backlog per day, from the records read to the end of the
	// stream: today 3 cases are open (fewer than 5: an empty cell) and
	// none is past its answer time.
	backlog, err := os.ReadFile(filepath.Join(dir, "report", "report-backlog.csv"))
	require.NoError(t, err)
	stockholm, err := time.LoadLocation("Europe/Stockholm")
	require.NoError(t, err)
	require.Contains(t, string(backlog), "\n"+time.Now().In(stockholm).Format(time.DateOnly)+",,0\n")
	files, err := filepath.Glob(filepath.Join(dir, "report", "*"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 5, "the report and its charts")
	for _, f := range append(files, csvPath) {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, forbidden := range append(append(append([]string{}, ids...), numbers...), markers...) {
			require.NotContains(t, string(data), forbidden, "%s holds personal data or a case key", f)
		}
	}
}
