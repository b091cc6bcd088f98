package report

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"image/color"
	"io"
	"math"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/casenames"
)

// Month is the data of a monthly report: the rows of publishable queries
// over [Start, End) in Loc. The CLI fills it from the server.
type Month struct {
	Start, End time.Time
	Loc        *time.Location
	// ChannelDaily and TypeDaily are grouped by channel or type, by day.
	ChannelDaily, TypeDaily []*statisticsv1.Row
	// Daily and Weekly are ungrouped, by day and by week.
	Daily, Weekly []*statisticsv1.Row
	// ChannelTotal and TypeTotal are grouped by channel or type over the
	// whole month; Total is ungrouped over the whole month.
	ChannelTotal, TypeTotal, Total []*statisticsv1.Row
}

// Queries are the requests that fill a Month, with a setter for each.
func (m *Month) Queries() []Query {
	from, to := m.Start, m.End
	q := func(g statisticsv1.Granularity, dst *[]*statisticsv1.Row, by ...statisticsv1.Dimension) Query {
		return Query{Request: &statisticsv1.QueryRequest{
			From: ts(from), To: ts(to), GroupBy: by, Granularity: g, Publishable: true,
		}, Into: dst}
	}
	const (
		day   = statisticsv1.Granularity_GRANULARITY_DAY
		week  = statisticsv1.Granularity_GRANULARITY_WEEK
		whole = statisticsv1.Granularity_GRANULARITY_UNSPECIFIED
	)
	ch, ty := statisticsv1.Dimension_DIMENSION_CHANNEL, statisticsv1.Dimension_DIMENSION_TYPE
	return []Query{
		q(day, &m.ChannelDaily, ch),
		q(day, &m.TypeDaily, ty),
		q(day, &m.Daily),
		q(week, &m.Weekly),
		q(whole, &m.ChannelTotal, ch),
		q(whole, &m.TypeTotal, ty),
		q(whole, &m.Total),
	}
}

// Query is one request of a report and where its rows go.
type Query struct {
	Request *statisticsv1.QueryRequest
	Into    *[]*statisticsv1.Row
}

// Chart is one PNG chart of a report.
type Chart struct {
	// Name is short and safe in a file name: report-<Name>.png.
	Name, Title, Caption string
	PNG                  []byte
}

const chartW, chartH = 22 * vg.Centimeter, 10 * vg.Centimeter

// Charts draws the report's charts.
func (m *Month) Charts() ([]Chart, error) {
	type drawer struct {
		name, title, caption string
		draw                 func() (*plot.Plot, error)
	}
	gap := fmt.Sprintf(" Days where a group had fewer than %d cases are suppressed and left as gaps.", SuppressBelow)
	ds := []drawer{
		{"channels", "Cases per channel and day", "New cases registered per day, by contact channel." + gap,
			func() (*plot.Plot, error) { return m.dailyCounts("Cases per channel and day", m.ChannelDaily) }},
		{"types", "Cases per type and day", "New cases registered per day, by case type." + gap,
			func() (*plot.Plot, error) { return m.dailyCounts("Cases per type and day", m.TypeDaily) }},
		{"first-response", "Time to first response", "Median and 90th percentile of the time to first response of the cases registered each day." + gap,
			m.firstResponse},
		{"first-contact-resolution", "First-contact resolution per week", "Share of the week's cases resolved at first contact. Weeks start on Monday; the first and last week may reach outside the month." + gap,
			m.fcrWeekly},
	}
	out := make([]Chart, 0, len(ds))
	for _, d := range ds {
		p, err := d.draw()
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", d.name, err)
		}
		wt, err := p.WriterTo(chartW, chartH, "png")
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", d.name, err)
		}
		var buf bytes.Buffer
		if _, err := wt.WriteTo(&buf); err != nil {
			return nil, fmt.Errorf("chart %s: %w", d.name, err)
		}
		out = append(out, Chart{Name: d.name, Title: d.title, Caption: d.caption, PNG: buf.Bytes()})
	}
	return out, nil
}

// days lists the start of every day of the month in Loc.
func (m *Month) days() []time.Time {
	var out []time.Time
	for d := m.Start; d.Before(m.End); d = d.AddDate(0, 0, 1) {
		out = append(out, d)
	}
	return out
}

// point is a y value of a day; ok is false for a suppressed cell.
type point struct {
	x, y float64
	ok   bool
}

func newTimePlot(m *Month, title, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	p.X.Tick.Marker = dayTicks{m.days()}
	p.X.Min = float64(m.Start.Unix())
	p.X.Max = float64(m.End.AddDate(0, 0, -1).Unix())
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	return p
}

// dayTicks labels every Monday ("Mon 5 Oct") and marks every day.
type dayTicks struct{ days []time.Time }

func (d dayTicks) Ticks(_, _ float64) []plot.Tick {
	out := make([]plot.Tick, 0, len(d.days))
	for _, t := range d.days {
		tk := plot.Tick{Value: float64(t.Unix())}
		if t.Weekday() == time.Monday {
			tk.Label = t.Format("Mon 2 Jan")
		}
		out = append(out, tk)
	}
	return out
}

// headroom leaves space above the data for the legend.
func headroom(p *plot.Plot, max float64) {
	if max > 0 {
		p.Y.Max = max * 1.3
	} else {
		p.Y.Max = 1
	}
}

// addSeries draws pts as a line with markers, broken where a point is
// not ok, and adds one legend entry.
func addSeries(p *plot.Plot, name string, i int, pts []point) error {
	c := plotutil.Color(i)
	var legendLine *plotter.Line
	var legendDots *plotter.Scatter
	flush := func(seg plotter.XYs) error {
		if len(seg) == 0 {
			return nil
		}
		l, s, err := plotter.NewLinePoints(seg)
		if err != nil {
			return err
		}
		l.Color, s.Color = c, c
		s.Shape = plotutil.Shape(i)
		s.Radius = vg.Points(2)
		p.Add(l, s)
		if legendLine == nil {
			legendLine, legendDots = l, s
		}
		return nil
	}
	var seg plotter.XYs
	for _, pt := range pts {
		if !pt.ok {
			if err := flush(seg); err != nil {
				return err
			}
			seg = nil
			continue
		}
		seg = append(seg, plotter.XY{X: pt.x, Y: pt.y})
	}
	if err := flush(seg); err != nil {
		return err
	}
	if legendLine == nil {
		// Every day suppressed: still say the series exists.
		l, s, err := plotter.NewLinePoints(plotter.XYs{{}})
		if err != nil {
			return err
		}
		l.Color, s.Color, s.Shape = c, c, plotutil.Shape(i)
		legendLine, legendDots = l, s
	}
	p.Legend.Add(name, legendLine, legendDots)
	return nil
}

// dailyCounts plots the count of each key per day: a missing row is 0
// cases, a suppressed row is a gap.
func (m *Month) dailyCounts(title string, rows []*statisticsv1.Row) (*plot.Plot, error) {
	p := newTimePlot(m, title, "cases")
	type cell struct {
		n          float64
		suppressed bool
	}
	byKey := map[string]map[int64]cell{}
	for _, r := range rows {
		k := label(firstKey(r))
		if byKey[k] == nil {
			byKey[k] = map[int64]cell{}
		}
		byKey[k][r.GetBucketStart().AsTime().Unix()] = cell{float64(r.GetCount()), r.GetSuppressed()}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	days := m.days()
	var max float64
	for _, r := range rows {
		max = math.Max(max, float64(r.GetCount()))
	}
	headroom(p, max)
	for i, k := range keys {
		pts := make([]point, len(days))
		for j, d := range days {
			c := byKey[k][d.Unix()]
			pts[j] = point{x: float64(d.Unix()), y: c.n, ok: !c.suppressed}
		}
		if err := addSeries(p, k, i, pts); err != nil {
			return nil, err
		}
	}
	if len(keys) == 0 {
		p.Title.Text += " (no cases)"
	}
	return p, nil
}

// firstResponse plots the daily median and p90 time to first response.
func (m *Month) firstResponse() (*plot.Plot, error) {
	var max time.Duration
	for _, r := range m.Daily {
		max = maxDur(max, r.GetP90TimeToFirstResponse().AsDuration())
	}
	unit, uname := durationUnit(max)
	p := newTimePlot(m, "Time to first response per day", uname)
	headroom(p, float64(max)/float64(unit))
	byDay := map[int64]*statisticsv1.Row{}
	for _, r := range m.Daily {
		byDay[r.GetBucketStart().AsTime().Unix()] = r
	}
	days := m.days()
	for i, s := range []struct {
		name string
		get  func(*statisticsv1.Row) time.Duration
	}{
		{"median", func(r *statisticsv1.Row) time.Duration { return r.GetMedianTimeToFirstResponse().AsDuration() }},
		{"90th percentile", func(r *statisticsv1.Row) time.Duration { return r.GetP90TimeToFirstResponse().AsDuration() }},
	} {
		pts := make([]point, len(days))
		for j, d := range days {
			r := byDay[d.Unix()]
			ok := r != nil && !r.GetSuppressed() && r.GetMedianTimeToFirstResponse() != nil
			pts[j] = point{x: float64(d.Unix()), ok: ok}
			if ok {
				pts[j].y = float64(s.get(r)) / float64(unit)
			}
		}
		if err := addSeries(p, s.name, i, pts); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// fcrWeekly plots the first-contact resolution rate per week as bars;
// a suppressed or empty week is a zero-height bar labelled as such.
func (m *Month) fcrWeekly() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "First-contact resolution per week"
	p.Y.Label.Text = "% of cases"
	p.Y.Min, p.Y.Max = 0, 100
	p.Add(plotter.NewGrid())
	vals := make(plotter.Values, 0, len(m.Weekly))
	names := make([]string, 0, len(m.Weekly))
	for _, r := range m.Weekly {
		start := r.GetBucketStart().AsTime().In(m.Loc)
		_, wk := start.ISOWeek()
		name := fmt.Sprintf("week %d", wk)
		v := 0.0
		switch {
		case r.GetSuppressed():
			name += fmt.Sprintf(" (<%d)", SuppressBelow)
		case r.GetCount() > 0:
			v = 100 * float64(r.GetFirstContactResolved()) / float64(r.GetCount())
		}
		vals = append(vals, v)
		names = append(names, name)
	}
	if len(vals) == 0 {
		p.Title.Text += " (no cases)"
		p.HideX()
		return p, nil
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(40))
	if err != nil {
		return nil, err
	}
	bars.Color = plotutil.Color(0)
	bars.LineStyle.Color = color.Black
	p.Add(bars)
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(vals))-0.4
	return p, nil
}

// durationUnit picks minutes, hours or days so the largest value reads well.
func durationUnit(max time.Duration) (time.Duration, string) {
	switch {
	case max <= 2*time.Hour:
		return time.Minute, "minutes"
	case max <= 72*time.Hour:
		return time.Hour, "hours"
	default:
		return 24 * time.Hour, "days"
	}
}

func maxDur(a, b time.Duration) time.Duration {
	if b > a {
		return b
	}
	return a
}

func firstKey(r *statisticsv1.Row) string {
	if len(r.GetKeys()) == 0 {
		return ""
	}
	return r.GetKeys()[0]
}

// label makes an API enum name readable with the names the files use:
// CHANNEL_PHONE → phone, CASE_TYPE_FELANMALAN → felanmalan; "" → (none).
// Any other key (a queue, a category) is shown as it is.
func label(key string) string {
	if key == "" {
		return "(none)"
	}
	if v, ok := casev1.Channel_value[key]; ok {
		return casenames.Channel(casev1.Channel(v))
	}
	if v, ok := casev1.CaseType_value[key]; ok {
		return casenames.Type(casev1.CaseType(v))
	}
	return key
}

// totalRow is one line of the totals table, already formatted.
type totalRow struct {
	Group, Cases, MedianTTFR, P90TTFR, MedianTTC, FCR string
}

func totalsOf(rows []*statisticsv1.Row) []totalRow {
	out := make([]totalRow, 0, len(rows))
	for _, r := range rows {
		t := totalRow{Group: label(firstKey(r))}
		if len(r.GetKeys()) == 0 {
			t.Group = "All cases"
		}
		if r.GetSuppressed() {
			t.Cases = "<" + strconv.Itoa(SuppressBelow)
			t.MedianTTFR, t.P90TTFR, t.MedianTTC, t.FCR = "–", "–", "–", "–"
			out = append(out, t)
			continue
		}
		t.Cases = strconv.FormatInt(r.GetCount(), 10)
		t.MedianTTFR = human(r.GetMedianTimeToFirstResponse().AsDuration(), r.GetMedianTimeToFirstResponse() != nil)
		t.P90TTFR = human(r.GetP90TimeToFirstResponse().AsDuration(), r.GetP90TimeToFirstResponse() != nil)
		t.MedianTTC = human(r.GetMedianTimeToClose().AsDuration(), r.GetMedianTimeToClose() != nil)
		t.FCR = "–"
		if r.GetCount() > 0 {
			t.FCR = strconv.FormatFloat(math.Round(1000*float64(r.GetFirstContactResolved())/float64(r.GetCount()))/10, 'f', 1, 64) + " %"
		}
		out = append(out, t)
	}
	return out
}

// human formats a duration for a manager: "42 min", "5.5 h", "3.2 days".
func human(d time.Duration, ok bool) string {
	if !ok {
		return "–"
	}
	switch {
	case d < time.Minute:
		return strconv.FormatFloat(math.Round(d.Seconds()), 'f', 0, 64) + " s"
	case d < 2*time.Hour:
		return strconv.FormatFloat(math.Round(d.Minutes()), 'f', 0, 64) + " min"
	case d < 72*time.Hour:
		return strconv.FormatFloat(d.Hours(), 'f', 1, 64) + " h"
	default:
		return strconv.FormatFloat(d.Hours()/24, 'f', 1, 64) + " days"
	}
}

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0 2rem; }
th, td { border: 1px solid #ccc; padding: .3rem .7rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f2f2f2; }
figure { margin: 2rem 0; }
img { max-width: 100%; height: auto; }
figcaption, .note { color: #555; font-size: .9rem; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p class="note">{{.Period}} (Europe/Stockholm). Publishable figures: groups with fewer than {{.K}} cases are shown as "&lt;{{.K}}". Generated {{.Generated}}.</p>
<h2>Totals</h2>
{{range .Tables}}<table>
<thead><tr><th>{{.Heading}}</th><th>Cases</th><th>Median first response</th><th>90th pct first response</th><th>Median time to close</th><th>First-contact resolution</th></tr></thead>
<tbody>{{range .Rows}}
<tr><td>{{.Group}}</td><td>{{.Cases}}</td><td>{{.MedianTTFR}}</td><td>{{.P90TTFR}}</td><td>{{.MedianTTC}}</td><td>{{.FCR}}</td></tr>{{else}}
<tr><td colspan="6">No cases.</td></tr>{{end}}
</tbody>
</table>
{{end}}{{range .Charts}}<figure>
<h2>{{.Title}}</h2>
<img src="{{.Src}}" alt="{{.Title}}" width="{{$.W}}">
<figcaption>{{.Caption}}</figcaption>
</figure>
{{end}}</body>
</html>
`))

// WriteHTML writes the report as one self-contained HTML page: the
// charts are embedded as data URLs.
func WriteHTML(w io.Writer, m *Month, charts []Chart, generated time.Time) error {
	type chartView struct {
		Title, Caption string
		Src            template.URL
	}
	type table struct {
		Heading string
		Rows    []totalRow
	}
	v := struct {
		Title, Period, Generated string
		K                        int
		W                        int
		Tables                   []table
		Charts                   []chartView
	}{
		Title:     "Contact centre statistics, " + m.Start.Format("January 2006"),
		Period:    m.Start.Format("2 January 2006") + " – " + m.End.AddDate(0, 0, -1).Format("2 January 2006"),
		Generated: generated.In(m.Loc).Format("2006-01-02 15:04"),
		K:         SuppressBelow,
		W:         int(math.Round(chartW.Points())),
		Tables: []table{
			{"Whole month", totalsOf(m.Total)},
			{"Channel", totalsOf(m.ChannelTotal)},
			{"Case type", totalsOf(m.TypeTotal)},
		},
	}
	for _, c := range charts {
		v.Charts = append(v.Charts, chartView{
			Title: c.Title, Caption: c.Caption,
			// The bytes are our own PNG encoding, so the data URL is safe.
			Src: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(c.PNG)),
		})
	}
	return page.Execute(w, v)
}
