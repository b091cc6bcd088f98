package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
)

func stockholm(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(TimeZone)
	require.NoError(t, err)
	return loc
}

// TestFirstContactResolutionIsAShareOfClosedCases is the figure a manager
// misread: 7 resolved at first contact of 36 registered, of which 11 had
// been closed. The rate is 7 of 11, 64 %, not 7 of 36 (19 %).
func TestFirstContactResolutionIsAShareOfClosedCases(t *testing.T) {
	loc := stockholm(t)
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, loc)
	row := &statisticsv1.Row{Count: 36, Closed: 11, FirstContactResolved: 7}
	require.InDelta(t, 63.64, FirstContactShare(row), 0.01)
	require.Zero(t, FirstContactShare(&statisticsv1.Row{Count: 4}), "no closed cases: no rate")

	m := &Month{Start: start, End: start.AddDate(0, 1, 0), Loc: loc, Total: []*statisticsv1.Row{row},
		TypeTotal: []*statisticsv1.Row{
			{Keys: []string{"CASE_TYPE_FELANMALAN"}, Count: 20, Closed: 8, FirstContactResolved: 2, MedianTimeToClose: durationpb.New(30 * time.Hour)},
			{Keys: []string{"CASE_TYPE_SYNPUNKT"}, Suppressed: true},
		}}
	var buf bytes.Buffer
	require.NoError(t, WriteHTML(&buf, m, nil, start.AddDate(0, 1, 2)))
	page := buf.String()
	require.Contains(t, page, "<tr><td>Alla ärenden</td><td>36</td><td>11</td><td>–</td><td>–</td><td>–</td><td>64 %</td></tr>")
	require.Contains(t, page, "<tr><td>Felanmälan</td><td>20</td><td>8</td><td>–</td><td>–</td><td>30,0 tim</td><td>25 %</td></tr>")
	require.Contains(t, page, "<tr><td>Synpunkt eller klagomål</td><td>&lt;5</td><td>–</td>")
	require.Contains(t, page, "1 oktober 2026 – 31 oktober 2026")
	require.NotContains(t, page, "19 %")
}

// TestDaysNotYetComeAreGapsNotZeros: a report made on 10 October shows
// the days after it as not yet come, not as days without cases; a day
// that has passed without a row had no cases.
func TestDaysNotYetComeAreGapsNotZeros(t *testing.T) {
	loc := stockholm(t)
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, loc)
	m := &Month{Start: start, End: start.AddDate(0, 1, 0), Loc: loc, Now: time.Date(2026, 10, 10, 14, 0, 0, 0, loc)}
	rows := []*statisticsv1.Row{
		{BucketStart: timestamppb.New(start), Keys: []string{"CHANNEL_PHONE"}, Count: 12},
		{BucketStart: timestamppb.New(start.AddDate(0, 0, 2)), Keys: []string{"CHANNEL_PHONE"}, Suppressed: true},
		{BucketStart: timestamppb.New(start), Keys: []string{"CHANNEL_EMAIL"}, Count: 12},
	}
	all := m.dailySeries(rows)
	require.Len(t, all, 2)
	require.Equal(t, "E-post", all[0].name, "channels by their Swedish names")
	phone := all[1]
	require.Equal(t, "Telefon", phone.name)
	require.Len(t, phone.pts, 31)
	require.Equal(t, point{x: float64(start.Unix()), y: 12, ok: true}, phone.pts[0])
	require.True(t, phone.pts[1].ok, "2 October passed without a row: 0 cases")
	require.Zero(t, phone.pts[1].y)
	require.False(t, phone.pts[2].ok, "suppressed: a gap")
	require.True(t, phone.pts[9].ok, "10 October has begun")
	for d := 10; d < 31; d++ {
		require.False(t, phone.pts[d].ok, "%d October has not come: a gap, not a zero", d+1)
	}

	// A month that has passed draws every day.
	m.Now = start.AddDate(0, 2, 0)
	for _, p := range m.dailySeries(rows)[1].pts[3:] {
		require.True(t, p.ok)
	}
}

func TestChartsAreInSwedish(t *testing.T) {
	loc := stockholm(t)
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, loc)
	m := &Month{Start: start, End: start.AddDate(0, 1, 0), Loc: loc}
	charts, err := m.Charts()
	require.NoError(t, err)
	var titles []string
	for _, c := range charts {
		titles = append(titles, c.Title)
		require.NotEmpty(t, c.PNG)
	}
	require.Equal(t, []string{"Ärenden per kanal och dag", "Ärenden per ärendetyp och dag", "Tid till första svar", "Tid till avslut", "Lösta vid första kontakt per vecka", "Öppna ärenden vid dagens slut", "Försenade ärenden vid dagens slut"}, titles)
	require.Equal(t, "mån 5 okt", strings.TrimSpace(dayTicks{m.days()}.Ticks(0, 0)[4].Label))
}
