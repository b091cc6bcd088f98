package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/auth"
)

// fakeStats is a StatisticsService with canned rows. verify checks the
// bearer token; answer picks the rows for a request.
type fakeStats struct {
	statisticsv1.UnimplementedStatisticsServiceServer
	verify func(ctx context.Context, token string) error
	answer func(*statisticsv1.QueryRequest) []*statisticsv1.Row

	// records are the record versions StreamRecords sends, in order.
	records []*statisticsv1.StatisticsRecord

	mu   sync.Mutex
	reqs []*statisticsv1.QueryRequest
}

// StreamRecords sends the canned record versions. The report must ask to
// stop at the end of the stream; a following call would never end.
func (f *fakeStats) StreamRecords(req *statisticsv1.StreamRecordsRequest, st grpc.ServerStreamingServer[statisticsv1.StreamRecordsResponse]) error {
	if !req.GetStopAtEnd() {
		return status.Error(codes.InvalidArgument, "the fake only stops at the end")
	}
	for i, r := range f.records {
		if err := st.Send(&statisticsv1.StreamRecordsResponse{Sequence: uint64(i + 1), Record: r}); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeStats) Query(ctx context.Context, req *statisticsv1.QueryRequest) (*statisticsv1.QueryResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 || !strings.HasPrefix(vals[0], "Bearer ") {
		return nil, status.Error(codes.Unauthenticated, "missing bearer token")
	}
	if err := f.verify(ctx, strings.TrimPrefix(vals[0], "Bearer ")); err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, proto.Clone(req).(*statisticsv1.QueryRequest))
	f.mu.Unlock()
	return &statisticsv1.QueryResponse{Rows: f.answer(req)}, nil
}

func (f *fakeStats) requests() []*statisticsv1.QueryRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*statisticsv1.QueryRequest(nil), f.reqs...)
}

// startStats serves f on 127.0.0.1:0 and returns the address.
func startStats(t *testing.T, f *fakeStats) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	statisticsv1.RegisterStatisticsServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func staticToken(tok string) func(context.Context, string) error {
	return func(_ context.Context, got string) error {
		if got != tok {
			return errors.New("bad token")
		}
		return nil
	}
}

func noEnv(string) (string, bool) { return "", false }

func stockholm(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Stockholm")
	require.NoError(t, err)
	return loc
}

func run(t *testing.T, lookupEnv env, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb, lookupEnv)
	return code, out.String(), errb.String()
}

func TestStatsExportCSV(t *testing.T) {
	loc := stockholm(t)
	oct1 := time.Date(2026, 10, 1, 0, 0, 0, 0, loc)
	oct2 := oct1.AddDate(0, 0, 1)
	f := &fakeStats{
		verify: staticToken("tok-1"),
		answer: func(*statisticsv1.QueryRequest) []*statisticsv1.Row {
			return []*statisticsv1.Row{
				{
					BucketStart: timestamppb.New(oct1), Keys: []string{"CASE_TYPE_FRAGA", "CHANNEL_PHONE"}, Count: 12,
					MedianTimeToFirstResponse: durationpb.New(90 * time.Second), P90TimeToFirstResponse: durationpb.New(1500 * time.Millisecond),
					MedianTimeToClose: durationpb.New(2 * time.Hour), P90TimeToClose: durationpb.New(26 * time.Hour),
					FirstContactResolved: 7,
				},
				{BucketStart: timestamppb.New(oct1), Keys: []string{"CASE_TYPE_SYNPUNKT", "CHANNEL_FORM"}, Suppressed: true},
				{BucketStart: timestamppb.New(oct2), Keys: []string{"CASE_TYPE_FRAGA", "CHANNEL_EMAIL, \"web\""}, Count: 5},
			}
		},
	}
	addr := startStats(t, f)
	out := filepath.Join(t.TempDir(), "out.csv")
	code, stdout, stderr := run(t, noEnv, "stats", "export", "--data-dir", t.TempDir(),
		"--from", "2026-10-01", "--to", "2026-11-01", "--group-by", "type,channel",
		"--granularity", "day", "--publishable", "--format", "csv", "--out", out,
		"--addr", addr, "--token", "tok-1")
	require.Equal(t, exitOK, code, stderr)
	require.Empty(t, stdout)

	got, err := os.ReadFile(out)
	require.NoError(t, err)
	// Type and channel by their Swedish names, durations in whole seconds
	// (1.5 s rounds to 2), and the closed cases that first-contact
	// resolution is a share of.
	want := "bucket_start,type,channel,count,suppressed,median_time_to_first_response_s,p90_time_to_first_response_s,median_time_to_close_s,p90_time_to_close_s,first_contact_resolved,closed\n" +
		"2026-10-01T00:00:00+02:00,Fråga,Telefon,12,false,90,2,7200,93600,7,0\n" +
		"2026-10-01T00:00:00+02:00,Synpunkt eller klagomål,E-tjänst på webben,,true,,,,,,\n" +
		"2026-10-02T00:00:00+02:00,Fråga,\"CHANNEL_EMAIL, \"\"web\"\"\",5,false,,,,,0,0\n"
	require.Equal(t, want, string(got))

	reqs := f.requests()
	require.Len(t, reqs, 1)
	require.True(t, proto.Equal(&statisticsv1.QueryRequest{
		From:        timestamppb.New(oct1),
		To:          timestamppb.New(time.Date(2026, 11, 1, 0, 0, 0, 0, loc)),
		GroupBy:     []statisticsv1.Dimension{statisticsv1.Dimension_DIMENSION_TYPE, statisticsv1.Dimension_DIMENSION_CHANNEL},
		Granularity: statisticsv1.Granularity_GRANULARITY_DAY,
		Publishable: true,
	}, reqs[0]), "request: %v", reqs[0])
	// 1 October in Stockholm is 30 September 22:00 UTC.
	require.Equal(t, time.Date(2026, 9, 30, 22, 0, 0, 0, time.UTC), reqs[0].GetFrom().AsTime())
}

func TestStatsExportStdoutEnvToken(t *testing.T) {
	f := &fakeStats{verify: staticToken("from-env"), answer: func(*statisticsv1.QueryRequest) []*statisticsv1.Row { return nil }}
	addr := startStats(t, f)
	lookup := func(k string) (string, bool) {
		if k == "KONTAKT_TOKEN" {
			return "from-env", true
		}
		return "", false
	}
	code, stdout, stderr := run(t, lookup, "stats", "export", "--data-dir", t.TempDir(),
		"--from", "2026-10-01", "--to", "2026-10-02", "--addr", addr)
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "bucket_start,count,suppressed,median_time_to_first_response_s,p90_time_to_first_response_s,median_time_to_close_s,p90_time_to_close_s,first_contact_resolved,closed\n", stdout)
	require.Equal(t, statisticsv1.Granularity_GRANULARITY_UNSPECIFIED, f.requests()[0].GetGranularity())
}

func TestStatsExportDevToken(t *testing.T) {
	dataDir := t.TempDir()
	key, err := auth.LoadOrCreateDevKey(filepath.Join(dataDir, "dev-signing-key.pem"))
	require.NoError(t, err)
	verifier := key.Verifier(nil)
	f := &fakeStats{
		verify: func(ctx context.Context, tok string) error {
			p, err := verifier.Verify(ctx, tok)
			if err != nil {
				return err
			}
			if !p.HasRole(auth.RoleAnalyst) {
				return errors.New("not an analyst")
			}
			return nil
		},
		answer: func(*statisticsv1.QueryRequest) []*statisticsv1.Row { return nil },
	}
	addr := startStats(t, f)
	code, _, stderr := run(t, noEnv, "stats", "export", "--data-dir", dataDir,
		"--from", "2026-10-01", "--to", "2026-10-02", "--addr", addr)
	require.Equal(t, exitOK, code, stderr)
	require.Len(t, f.requests(), 1)
}

func TestStatsServerErrorIsOneLine(t *testing.T) {
	f := &fakeStats{verify: staticToken("right"), answer: func(*statisticsv1.QueryRequest) []*statisticsv1.Row { return nil }}
	addr := startStats(t, f)
	code, _, stderr := run(t, noEnv, "stats", "export", "--data-dir", t.TempDir(),
		"--from", "2026-10-01", "--to", "2026-10-02", "--addr", addr, "--token", "wrong")
	require.Equal(t, exitFailure, code)
	require.Equal(t, "kontakt: stats export: query "+addr+": Unauthenticated: bad token\n", stderr)
}

func TestStatsFlagErrors(t *testing.T) {
	base := []string{"stats", "export", "--addr", "127.0.0.1:1", "--token", "t"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown dimension", []string{"--from", "2026-10-01", "--to", "2026-11-01", "--group-by", "type,colour"}, `--group-by: unknown dimension "colour"`},
		{"repeated dimension", []string{"--from", "2026-10-01", "--to", "2026-11-01", "--group-by", "type,TYPE"}, `--group-by: dimension "type" given twice`},
		{"from equals to", []string{"--from", "2026-10-01", "--to", "2026-10-01"}, "--from 2026-10-01 must be before --to 2026-10-01"},
		{"from after to", []string{"--from", "2026-11-01", "--to", "2026-10-01"}, "--from 2026-11-01 must be before --to"},
		{"bad from", []string{"--from", "2026-13-01", "--to", "2026-11-01"}, `--from: want YYYY-MM-DD, not "2026-13-01"`},
		{"bad to", []string{"--from", "2026-10-01", "--to", "1/11/2026"}, `--to: want YYYY-MM-DD, not "1/11/2026"`},
		{"missing from", []string{"--to", "2026-11-01"}, "--from is required"},
		{"bad granularity", []string{"--from", "2026-10-01", "--to", "2026-11-01", "--granularity", "hour"}, `--granularity: want day, week or month, not "hour"`},
		{"bad format", []string{"--from", "2026-10-01", "--to", "2026-11-01", "--format", "xlsx"}, `--format: unsupported format "xlsx"`},
		{"unknown flag", []string{"--form", "2026-10-01"}, "unknown flag: --form"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, noEnv, append(base, tc.args...)...)
			require.Equal(t, exitUsage, code, stderr)
			require.Contains(t, stderr, tc.want)
			require.True(t, strings.HasPrefix(stderr, "kontakt: "), stderr)
			require.Equal(t, 1, strings.Count(stderr, "\n"), stderr)
		})
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing month", []string{"--out", "x.html"}, "--month is required"},
		{"bad month", []string{"--month", "2026-13", "--out", "x.html"}, `--month: want YYYY-MM, not "2026-13"`},
		{"missing out", []string{"--month", "2026-10"}, "--out is required"},
	} {
		t.Run("report "+tc.name, func(t *testing.T) {
			code, _, stderr := run(t, noEnv, append([]string{"stats", "report", "--addr", "127.0.0.1:1", "--token", "t"}, tc.args...)...)
			require.Equal(t, exitUsage, code, stderr)
			require.Contains(t, stderr, tc.want)
		})
	}
}

// monthRows answers the report's queries with a plausible month: three
// channels and two types per day, one suppressed cell a day.
func monthRows(loc *time.Location) func(*statisticsv1.QueryRequest) []*statisticsv1.Row {
	return func(req *statisticsv1.QueryRequest) []*statisticsv1.Row {
		from, to := req.GetFrom().AsTime().In(loc), req.GetTo().AsTime().In(loc)
		var keys [][]string
		switch {
		case len(req.GetGroupBy()) == 0:
			keys = [][]string{nil}
		case req.GetGroupBy()[0] == statisticsv1.Dimension_DIMENSION_CHANNEL:
			keys = [][]string{{"CHANNEL_PHONE"}, {"CHANNEL_EMAIL"}, {"CHANNEL_VISIT"}}
		default:
			keys = [][]string{{"CASE_TYPE_FRAGA"}, {"CASE_TYPE_FELANMALAN"}}
		}
		var buckets []time.Time
		switch req.GetGranularity() {
		case statisticsv1.Granularity_GRANULARITY_DAY:
			for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
				buckets = append(buckets, d)
			}
		case statisticsv1.Granularity_GRANULARITY_WEEK:
			d := from.AddDate(0, 0, -((int(from.Weekday()) + 6) % 7))
			for ; d.Before(to); d = d.AddDate(0, 0, 7) {
				buckets = append(buckets, d)
			}
		default:
			buckets = []time.Time{from}
		}
		var rows []*statisticsv1.Row
		for bi, b := range buckets {
			for ki, k := range keys {
				if len(keys) > 1 && ki == len(keys)-1 && bi%3 == 0 {
					rows = append(rows, &statisticsv1.Row{BucketStart: timestamppb.New(b), Keys: k, Suppressed: true})
					continue
				}
				n := int64(10 + (bi*7+ki*5)%20)
				rows = append(rows, &statisticsv1.Row{
					BucketStart: timestamppb.New(b), Keys: k, Count: n,
					MedianTimeToFirstResponse: durationpb.New(time.Duration(30+bi%10) * time.Minute),
					P90TimeToFirstResponse:    durationpb.New(time.Duration(90+bi%10*5) * time.Minute),
					MedianTimeToClose:         durationpb.New(time.Duration(20+bi%5) * time.Hour),
					P90TimeToClose:            durationpb.New(time.Duration(50+bi%5) * time.Hour),
					FirstContactResolved:      n / 2,
				})
			}
		}
		return rows
	}
}

func TestStatsReport(t *testing.T) {
	loc := stockholm(t)
	// Five questions registered on 1 October at 10:00 and open, due two
	// days later; one more closed after an hour, whose open first version
	// comes first in the stream: only its newest version counts.
	registered := timestamppb.New(time.Date(2026, 10, 1, 10, 0, 0, 0, loc))
	var records []*statisticsv1.StatisticsRecord
	for i := range 5 {
		records = append(records, &statisticsv1.StatisticsRecord{StatisticsId: fmt.Sprint("open-", i), Version: 1, Type: casev1.CaseType_CASE_TYPE_FRAGA, Queue: "kontaktcenter", RegisteredHour: registered})
	}
	records = append(records,
		&statisticsv1.StatisticsRecord{StatisticsId: "closed", Version: 1, Type: casev1.CaseType_CASE_TYPE_FRAGA, Queue: "kontaktcenter", RegisteredHour: registered},
		&statisticsv1.StatisticsRecord{StatisticsId: "closed", Version: 2, Type: casev1.CaseType_CASE_TYPE_FRAGA, Queue: "kontaktcenter", RegisteredHour: registered, Closed: true, TimeToClose: durationpb.New(time.Hour)})
	f := &fakeStats{verify: staticToken("tok"), answer: monthRows(loc), records: records}
	addr := startStats(t, f)
	dir := t.TempDir()
	out := filepath.Join(dir, "report.html")
	code, stdout, stderr := run(t, noEnv, "stats", "report", "--data-dir", t.TempDir(),
		"--month", "2026-10", "--out", out, "--addr", addr, "--token", "tok")
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "wrote "+out)

	for _, req := range f.requests() {
		require.True(t, req.GetPublishable(), "every report query is publishable")
		require.Equal(t, time.Date(2026, 10, 1, 0, 0, 0, 0, loc), req.GetFrom().AsTime().In(loc))
		require.Equal(t, time.Date(2026, 11, 1, 0, 0, 0, 0, loc), req.GetTo().AsTime().In(loc))
	}

	html, err := os.ReadFile(out)
	require.NoError(t, err)
	page := string(html)
	require.Equal(t, 7, strings.Count(page, `<img src="data:image/png;base64,`), "one embedded image per chart")
	// The backlog from the records: routing's answer time for a
	// question is two days.
	require.Contains(t, page, "<tr><td>kontaktcenter</td><td>5</td><td>5</td></tr>")
	backlog, err := os.ReadFile(filepath.Join(dir, "report-backlog.csv"))
	require.NoError(t, err)
	require.Contains(t, string(backlog), "2026-10-01,5,0\n2026-10-02,5,0\n2026-10-03,5,5\n")
	require.Contains(t, string(backlog), "2026-10-31,5,5\n")
	require.Contains(t, page, "&lt;5", "suppressed cells are shown as <5")
	require.Contains(t, page, `<html lang="sv">`)
	require.Contains(t, page, "oktober 2026")
	require.Contains(t, page, "<td>Telefon</td>")

	for _, name := range []string{"channels", "types", "first-response", "time-to-close", "first-contact-resolution", "backlog", "past-due"} {
		raw, err := os.ReadFile(filepath.Join(dir, "report-"+name+".png"))
		require.NoError(t, err, name)
		img, err := png.Decode(bytes.NewReader(raw))
		require.NoError(t, err, name)
		require.Greater(t, img.Bounds().Dx(), 100, name)
		require.Greater(t, img.Bounds().Dy(), 100, name)
	}
	left, err := filepath.Glob(filepath.Join(dir, ".*"))
	require.NoError(t, err)
	require.Empty(t, left, "no temporary files left behind")
}

func TestStatsReportEmptyMonth(t *testing.T) {
	f := &fakeStats{verify: staticToken("tok"), answer: func(*statisticsv1.QueryRequest) []*statisticsv1.Row { return nil }}
	addr := startStats(t, f)
	out := filepath.Join(t.TempDir(), "empty.html")
	code, _, stderr := run(t, noEnv, "stats", "report", "--data-dir", t.TempDir(),
		"--month", "2026-02", "--out", out, "--addr", addr, "--token", "tok")
	require.Equal(t, exitOK, code, stderr)
	html, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Contains(t, string(html), "Inga ärenden.")
}
