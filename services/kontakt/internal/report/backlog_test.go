package report

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
)

// answerTimes are routing's default answer times (readmodel.DefaultSLA),
// written out here so the test's figures follow from what it says.
var answerTimes = map[casev1.CaseType]time.Duration{
	casev1.CaseType_CASE_TYPE_FRAGA:      48 * time.Hour,
	casev1.CaseType_CASE_TYPE_FELANMALAN: 24 * time.Hour,
	casev1.CaseType_CASE_TYPE_SYNPUNKT:   240 * time.Hour,
	casev1.CaseType_CASE_TYPE_BREV:       240 * time.Hour,
}

// backlogRecords builds n records of a case type and queue, registered at
// registered and closed after closeAfter (0: open).
func backlogRecords(n int, ct casev1.CaseType, queue string, registered time.Time, closeAfter time.Duration) []*statisticsv1.StatisticsRecord {
	out := make([]*statisticsv1.StatisticsRecord, n)
	for i := range out {
		r := &statisticsv1.StatisticsRecord{
			StatisticsId: fmt.Sprintf("%s-%s-%d", queue, registered.Format(time.RFC3339), i), Version: 1,
			Type: ct, Queue: queue, RegisteredHour: timestamppb.New(registered.Truncate(time.Hour)),
		}
		if closeAfter > 0 {
			r.Closed, r.TimeToClose = true, durationpb.New(closeAfter)
		}
		out[i] = r
	}
	return out
}

// backlogMonth is October 2026, reported on 10 October at 14:00, with:
//   - A: 5 questions in kundtjanst, registered 28 September 10:00 and
//     still open (one of them closed after an hour and reopened), due
//     30 September: open and past due every day;
//   - B: 1 fault report in gata, registered 2 October 08:00 and closed
//     the same day: open at no day's end;
//   - C: 5 fault reports in gata, registered 3 October 09:00 and closed
//     three days later, due 4 October 09:00: open at the end of 3-5
//     October, past due at the end of 4-5 October;
//   - D: 5 feedbacks in kundtjanst, registered 5 October 12:00, open, due
//     15 October;
//   - G: 2 questions in bygg, registered 9 October 10:00, open, due 11
//     October.
func backlogMonth(t *testing.T) *Month {
	loc := stockholm(t)
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, loc)
	at := func(month time.Month, day, hour int) time.Time {
		return time.Date(2026, month, day, hour, 0, 0, 0, loc)
	}
	var recs []*statisticsv1.StatisticsRecord
	a := backlogRecords(5, casev1.CaseType_CASE_TYPE_FRAGA, "kundtjanst", at(time.September, 28, 10), 0)
	a[0].TimeToClose = durationpb.New(time.Hour) // closed, then reopened: open now
	recs = append(recs, a...)
	recs = append(recs, backlogRecords(1, casev1.CaseType_CASE_TYPE_FELANMALAN, "gata", at(time.October, 2, 8), 5*time.Hour)...)
	recs = append(recs, backlogRecords(5, casev1.CaseType_CASE_TYPE_FELANMALAN, "gata", at(time.October, 3, 9), 72*time.Hour)...)
	recs = append(recs, backlogRecords(5, casev1.CaseType_CASE_TYPE_SYNPUNKT, "kundtjanst", at(time.October, 5, 12), 0)...)
	recs = append(recs, backlogRecords(2, casev1.CaseType_CASE_TYPE_FRAGA, "bygg", at(time.October, 9, 10), 0)...)
	return &Month{Start: start, End: start.AddDate(0, 1, 0), Loc: loc, Now: at(time.October, 10, 14), Records: recs, AnswerTime: answerTimes}
}

func TestBacklogPerDayFromTheRecords(t *testing.T) {
	m := backlogMonth(t)
	want := [][2]int{{5, 5}, {5, 5}, {10, 5}, {10, 10}, {15, 10}, {10, 5}, {10, 5}, {10, 5}, {12, 5}, {12, 5}}
	got := m.Backlog()
	require.Len(t, got, 31)
	for i, w := range want {
		require.True(t, got[i].Passed, "%d October", i+1)
		require.Equal(t, w, [2]int{got[i].Open, got[i].PastDue}, "open and past due at the end of %d October", i+1)
	}
	for i := len(want); i < 31; i++ {
		require.False(t, got[i].Passed, "%d October has not come", i+1)
		require.Zero(t, got[i].Open)
	}

	// The charts: days not yet come are gaps, not zeros.
	open, late := m.backlogPoints(false), m.backlogPoints(true)
	require.Equal(t, point{x: float64(m.Start.AddDate(0, 0, 4).Unix()), y: 15, ok: true}, open[4])
	require.Equal(t, point{x: float64(m.Start.AddDate(0, 0, 3).Unix()), y: 10, ok: true}, late[3])
	require.False(t, open[10].ok)
	require.False(t, late[30].ok)

	// The CSV: one line per day, empty cells for days not yet come.
	var buf bytes.Buffer
	require.NoError(t, m.WriteBacklogCSV(&buf))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 32)
	require.Equal(t, "day,open_at_end_of_day,past_due_at_end_of_day", lines[0])
	require.Equal(t, "2026-10-01,5,5", lines[1])
	require.Equal(t, "2026-10-05,15,10", lines[5])
	require.Equal(t, "2026-10-10,12,5", lines[10])
	require.Equal(t, "2026-10-11,,", lines[11])
}

func TestBacklogBelowTheSmallCellLimitIsNotShown(t *testing.T) {
	loc := stockholm(t)
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, loc)
	m := &Month{Start: start, End: start.AddDate(0, 1, 0), Loc: loc, AnswerTime: answerTimes,
		Records: backlogRecords(3, casev1.CaseType_CASE_TYPE_BREV, "kundtjanst", start.AddDate(0, 0, 20).Add(10*time.Hour), 0)}
	b := m.Backlog()
	require.Equal(t, 0, b[19].Open)
	require.Equal(t, 3, b[20].Open)
	pts := m.backlogPoints(false)
	require.True(t, pts[19].ok, "no open case is publishable")
	require.False(t, pts[20].ok, "3 open cases are fewer than 5: a gap")
	var buf bytes.Buffer
	require.NoError(t, m.WriteBacklogCSV(&buf))
	require.Contains(t, buf.String(), "2026-10-20,0,0\n2026-10-21,,0\n")
	// Due ten days after 21 October: past due at the end of the month.
	require.Contains(t, buf.String(), "2026-10-31,,\n")
}

func TestOpenAndPastDuePerQueue(t *testing.T) {
	m := backlogMonth(t)
	// When the report is made (10 October, 14:00): gata's cases are
	// closed; bygg's two are not yet due.
	require.Equal(t, []QueueBacklog{{"bygg", 2, 0}, {"kundtjanst", 10, 5}}, m.QueueBacklogs())
	var buf bytes.Buffer
	require.NoError(t, WriteHTML(&buf, m, nil, m.Now))
	page := buf.String()
	require.Contains(t, page, "<tr><td>bygg</td><td>&lt;5</td><td>0</td></tr>")
	require.Contains(t, page, "<tr><td>kundtjanst</td><td>10</td><td>5</td></tr>")
	require.Contains(t, page, "Vid 2026-10-10 14:00.")
	require.Contains(t, page, "Felanmälan 1 dag,")

	// Once the month has passed, at its end: every open case is past
	// its due date.
	m.Now = time.Time{}
	require.Equal(t, []QueueBacklog{{"bygg", 2, 2}, {"kundtjanst", 10, 10}}, m.QueueBacklogs())
	buf.Reset()
	require.NoError(t, WriteHTML(&buf, m, nil, m.Start.AddDate(0, 2, 0)))
	require.Contains(t, buf.String(), "Vid månadens slut, 31 oktober 2026.")
}
