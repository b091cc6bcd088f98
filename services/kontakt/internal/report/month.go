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
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"google.golang.org/protobuf/types/known/durationpb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/services/kontakt/internal/sv"
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
	// ChannelTotal, TypeTotal and QueueTotal are grouped by channel, type
	// or queue over the whole month; Total is ungrouped over the whole
	// month.
	ChannelTotal, TypeTotal, QueueTotal, Total []*statisticsv1.Row
	// Now is when the report is made: days after it have not come yet
	// and are left out of the charts instead of drawn as days without
	// cases. The zero time means the whole month has passed.
	Now time.Time
	// Records are the statistics records as they are now (the newest
	// version of each), for the backlog views (backlog.go).
	Records []*statisticsv1.StatisticsRecord
	// AnswerTime is the time from registration to a case's due date per
	// case type, for the past-due figures (see backlog.go).
	AnswerTime map[casev1.CaseType]time.Duration
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
	ch, ty, qu := statisticsv1.Dimension_DIMENSION_CHANNEL, statisticsv1.Dimension_DIMENSION_TYPE, statisticsv1.Dimension_DIMENSION_QUEUE
	return []Query{
		q(day, &m.ChannelDaily, ch),
		q(day, &m.TypeDaily, ty),
		q(day, &m.Daily),
		q(week, &m.Weekly),
		q(whole, &m.ChannelTotal, ch),
		q(whole, &m.TypeTotal, ty),
		q(whole, &m.QueueTotal, qu),
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
	backlogGap := fmt.Sprintf(" Dagar med färre än %d ärenden visas inte och lämnas som luckor; dagar som inte har kommit än ritas inte.", SuppressBelow)
	gap := fmt.Sprintf(" Dagar då en grupp hade färre än %d ärenden visas inte och lämnas som luckor; dagar som inte har kommit än ritas inte.", SuppressBelow)
	ds := []drawer{
		{"channels", "Ärenden per kanal och dag", "Nya ärenden per dag, efter kontaktväg." + gap,
			func() (*plot.Plot, error) { return m.dailyCounts("Ärenden per kanal och dag", m.ChannelDaily) }},
		{"types", "Ärenden per ärendetyp och dag", "Nya ärenden per dag, efter ärendetyp." + gap,
			func() (*plot.Plot, error) { return m.dailyCounts("Ärenden per ärendetyp och dag", m.TypeDaily) }},
		{"first-response", "Tid till första svar", "Median och 90:e percentil av tiden till första svar för ärenden registrerade varje dag." + gap,
			func() (*plot.Plot, error) {
				return m.durations("Tid till första svar per dag", (*statisticsv1.Row).GetMedianTimeToFirstResponse, (*statisticsv1.Row).GetP90TimeToFirstResponse)
			}},
		{"time-to-close", "Tid till avslut", "Median och 90:e percentil av tiden från registrering till avslut för ärenden registrerade varje dag och avslutade när rapporten gjordes." + gap,
			func() (*plot.Plot, error) {
				return m.durations("Tid till avslut per dag", (*statisticsv1.Row).GetMedianTimeToClose, (*statisticsv1.Row).GetP90TimeToClose)
			}},
		{"first-contact-resolution", "Lösta vid första kontakt per vecka", "Andel av veckans avslutade ärenden som löstes vid första kontakten. Veckan börjar på måndag; första och sista veckan kan nå utanför månaden." + gap,
			m.fcrWeekly},
		{"backlog", "Öppna ärenden vid dagens slut", "Ärenden som var registrerade men inte avslutade vid dagens slut, oavsett när de kom in." + backlogGap,
			func() (*plot.Plot, error) { return m.backlogChart("Öppna ärenden vid dagens slut", false) }},
		{"past-due", "Försenade ärenden vid dagens slut", "Öppna ärenden vars svarstid hade gått ut vid dagens slut (svarstid: " + m.answerTimeNote() + ", räknat från registreringen)." + backlogGap,
			func() (*plot.Plot, error) { return m.backlogChart("Försenade ärenden vid dagens slut", true) }},
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

// passed reports whether day d has begun by the time the report is made.
func (m *Month) passed(d time.Time) bool { return m.Now.IsZero() || !d.After(m.Now) }

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

// dayTicks labels every Monday ("mån 5 okt") and marks every day.
type dayTicks struct{ days []time.Time }

func (d dayTicks) Ticks(_, _ float64) []plot.Tick {
	out := make([]plot.Tick, 0, len(d.days))
	for _, t := range d.days {
		tk := plot.Tick{Value: float64(t.Unix())}
		if t.Weekday() == time.Monday {
			tk.Label = sv.ShortDay(t)
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
		// Colour, dashes and marker all differ per series, so two series
		// with the same values stay apart instead of one hiding the other.
		l.Color, s.Color = c, c
		l.Dashes = plotutil.Dashes(i)
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

// series is one named line of a chart.
type series struct {
	name string
	pts  []point
}

// dailySeries is the count of each key per day: a missing row is 0
// cases, a suppressed row and a day that has not come yet are gaps.
func (m *Month) dailySeries(rows []*statisticsv1.Row) []series {
	type cell struct {
		n          float64
		suppressed bool
	}
	byKey := map[string]map[int64]cell{}
	for _, r := range rows {
		k := sv.APIKey(firstKey(r))
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
	out := make([]series, 0, len(keys))
	for _, k := range keys {
		pts := make([]point, len(days))
		for j, d := range days {
			c := byKey[k][d.Unix()]
			pts[j] = point{x: float64(d.Unix()), y: c.n, ok: !c.suppressed && m.passed(d)}
		}
		out = append(out, series{k, pts})
	}
	return out
}

// dailyCounts plots dailySeries.
func (m *Month) dailyCounts(title string, rows []*statisticsv1.Row) (*plot.Plot, error) {
	p := newTimePlot(m, title, "ärenden")
	var max float64
	for _, r := range rows {
		max = math.Max(max, float64(r.GetCount()))
	}
	headroom(p, max)
	all := m.dailySeries(rows)
	for i, s := range all {
		if err := addSeries(p, s.name, i, s.pts); err != nil {
			return nil, err
		}
	}
	if len(all) == 0 {
		p.Title.Text += " (inga ärenden)"
	}
	return p, nil
}

// durations plots a daily median and 90th percentile (time to first
// response, time to close); a day without the duration, suppressed or not
// yet come is a gap.
func (m *Month) durations(title string, median, p90 func(*statisticsv1.Row) *durationpb.Duration) (*plot.Plot, error) {
	var max time.Duration
	for _, r := range m.Daily {
		max = maxDur(max, p90(r).AsDuration())
	}
	unit, uname := durationUnit(max)
	p := newTimePlot(m, title, uname)
	headroom(p, float64(max)/float64(unit))
	byDay := map[int64]*statisticsv1.Row{}
	for _, r := range m.Daily {
		byDay[r.GetBucketStart().AsTime().Unix()] = r
	}
	days := m.days()
	for i, s := range []struct {
		name string
		get  func(*statisticsv1.Row) *durationpb.Duration
	}{{"median", median}, {"90:e percentil", p90}} {
		pts := make([]point, len(days))
		for j, d := range days {
			r := byDay[d.Unix()]
			ok := r != nil && !r.GetSuppressed() && s.get(r) != nil && m.passed(d)
			pts[j] = point{x: float64(d.Unix()), ok: ok}
			if ok {
				pts[j].y = float64(s.get(r).AsDuration()) / float64(unit)
			}
		}
		if err := addSeries(p, s.name, i, pts); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// fcrWeekly plots the first-contact resolution rate per week as bars: the
// share of the week's closed cases that were resolved at first contact
// (cases still open have not been resolved either way, so they are not
// counted against it); a suppressed week or one without closed cases is a
// zero-height bar labelled as such.
func (m *Month) fcrWeekly() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Lösta vid första kontakt per vecka"
	p.Y.Label.Text = "% av avslutade ärenden"
	p.Y.Min, p.Y.Max = 0, 100
	p.Add(plotter.NewGrid())
	vals := make(plotter.Values, 0, len(m.Weekly))
	names := make([]string, 0, len(m.Weekly))
	for _, r := range m.Weekly {
		start := r.GetBucketStart().AsTime().In(m.Loc)
		_, wk := start.ISOWeek()
		name := fmt.Sprintf("vecka %d", wk)
		v := 0.0
		switch {
		case r.GetSuppressed():
			name += fmt.Sprintf(" (<%d)", SuppressBelow)
		case r.GetClosed() > 0:
			v = FirstContactShare(r)
		default:
			name += " (inga avslutade)"
		}
		vals = append(vals, v)
		names = append(names, name)
	}
	if len(vals) == 0 {
		p.Title.Text += " (inga ärenden)"
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
		return time.Minute, "minuter"
	case max <= 72*time.Hour:
		return time.Hour, "timmar"
	default:
		return 24 * time.Hour, "dagar"
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

// FirstContactShare is the percentage of a row's closed cases that were
// resolved at first contact. Dividing by every registered case instead
// read 7 resolved of 36 registered as 19 % where 7 of the 11 that had
// ended is 64 %: the open ones have not been resolved at all yet.
func FirstContactShare(r *statisticsv1.Row) float64 {
	if r.GetClosed() == 0 {
		return 0
	}
	return 100 * float64(r.GetFirstContactResolved()) / float64(r.GetClosed())
}

// totalRow is one line of the totals table, already formatted.
type totalRow struct {
	Group, Cases, Closed, MedianTTFR, P90TTFR, MedianTTC, FCR string
}

func totalsOf(rows []*statisticsv1.Row) []totalRow {
	out := make([]totalRow, 0, len(rows))
	for _, r := range rows {
		t := totalRow{Group: sv.APIKey(firstKey(r))}
		if len(r.GetKeys()) == 0 {
			t.Group = "Alla ärenden"
		}
		if r.GetSuppressed() {
			t.Cases = "<" + strconv.Itoa(SuppressBelow)
			t.Closed, t.MedianTTFR, t.P90TTFR, t.MedianTTC, t.FCR = "–", "–", "–", "–", "–"
			out = append(out, t)
			continue
		}
		t.Cases = strconv.FormatInt(r.GetCount(), 10)
		t.Closed = strconv.FormatInt(r.GetClosed(), 10)
		t.MedianTTFR = human(r.GetMedianTimeToFirstResponse().AsDuration(), r.GetMedianTimeToFirstResponse() != nil)
		t.P90TTFR = human(r.GetP90TimeToFirstResponse().AsDuration(), r.GetP90TimeToFirstResponse() != nil)
		t.MedianTTC = human(r.GetMedianTimeToClose().AsDuration(), r.GetMedianTimeToClose() != nil)
		t.FCR = "–"
		if r.GetClosed() > 0 {
			t.FCR = strconv.FormatFloat(math.Round(FirstContactShare(r)), 'f', 0, 64) + " %"
		}
		out = append(out, t)
	}
	return out
}

// human formats a duration for a manager, with a decimal comma: "42 min",
// "5,5 tim", "3,2 dagar".
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
		return decimalComma(d.Hours()) + " tim"
	default:
		return decimalComma(d.Hours()/24) + " dagar"
	}
}

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="sv">
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
<p class="note">{{.Period}} (svensk tid). Publicerbara siffror: grupper med färre än {{.K}} ärenden visas som "&lt;{{.K}}". Lösta vid första kontakt räknas på avslutade ärenden. Gjord {{.Generated}}.</p>
<h2>Summering</h2>
{{range .Tables}}<table>
<thead><tr><th>{{.Heading}}</th><th>Ärenden</th><th>Avslutade</th><th>Första svar, median</th><th>Första svar, 90:e percentil</th><th>Tid till avslut, median</th><th>Lösta vid första kontakt</th></tr></thead>
<tbody>{{range .Rows}}
<tr><td>{{.Group}}</td><td>{{.Cases}}</td><td>{{.Closed}}</td><td>{{.MedianTTFR}}</td><td>{{.P90TTFR}}</td><td>{{.MedianTTC}}</td><td>{{.FCR}}</td></tr>{{else}}
<tr><td colspan="7">Inga ärenden.</td></tr>{{end}}
</tbody>
</table>
{{end}}<h2>Öppna och försenade ärenden per kö</h2>
<table>
<thead><tr><th>Kö</th><th>Öppna</th><th>Försenade</th></tr></thead>
<tbody>{{range .Queues}}
<tr><td>{{.Queue}}</td><td>{{.Open}}</td><td>{{.PastDue}}</td></tr>{{else}}
<tr><td colspan="3">Inga öppna ärenden.</td></tr>{{end}}
</tbody>
</table>
<p class="note">Vid {{.QueuesAt}}. Försenade: öppna ärenden vars svarstid har gått ut ({{.AnswerTimes}}, räknat från registreringen).</p>
{{range .Charts}}<figure>
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
		Queues                   []queueBacklogRow
		QueuesAt, AnswerTimes    string
		Charts                   []chartView
	}{
		Queues:      m.queueBacklogRows(),
		QueuesAt:    m.queuesAt(),
		AnswerTimes: m.answerTimeNote(),
		Title:       "Kontaktcentrets statistik, " + sv.Month(m.Start) + " " + strconv.Itoa(m.Start.Year()),
		Period:      sv.Date(m.Start) + " – " + sv.Date(m.End.AddDate(0, 0, -1)),
		Generated:   generated.In(m.Loc).Format("2006-01-02 15:04"),
		K:           SuppressBelow,
		W:           int(math.Round(chartW.Points())),
		Tables: []table{
			{"Hela månaden", totalsOf(m.Total)},
			{"Kanal", totalsOf(m.ChannelTotal)},
			{"Ärendetyp", totalsOf(m.TypeTotal)},
			{"Kö", totalsOf(m.QueueTotal)},
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

// decimalComma writes a number with one decimal the Swedish way ("5,5").
func decimalComma(f float64) string {
	return strings.Replace(strconv.FormatFloat(f, 'f', 1, 64), ".", ",", 1)
}
