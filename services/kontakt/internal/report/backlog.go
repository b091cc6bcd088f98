package report

import (
	"cmp"
	"encoding/csv"
	"io"
	"math"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/plot"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/services/kontakt/internal/sv"
)

// The backlog views (open cases at the end of each day, cases past their
// due date, per queue at the end of the month) are computed from the
// statistics records, not from Query's rows: a row counts the cases
// registered in a bucket, while a backlog is the cases open at an
// instant, whenever they were registered. A record carries when its case
// was registered (to the hour), whether it is closed now and how long the
// last close took, so a case counts as open at instant T when it was
// registered by T and not closed by T (registered hour plus time to
// close). Two approximations follow from what a record keeps: a case
// closed, reopened and closed again counts as open from registration to
// its last close; and a case deleted while open (the plan deletes cases
// after two years) still counts as open, since a record does not say when
// its case was deleted.
//
// A record carries no due date. The source documents (seeds: the
// document-management plans and the record of processing) give retention
// periods but no answer deadline for any case type, so a case's due date
// is its registration plus the answer time routing gives its type
// (services/routing/adapters/readmodel.DefaultSLA: fråga 2 days,
// felanmälan 1 day, synpunkt and brev 10 days), the due time the agents'
// queues sort by (QUEUE_ORDER_DUE). The CLI passes that table as
// Month.AnswerTime. A type without an answer time is never past due.
//
// The figures are published like the others: a count below the
// small-cell limit is a gap in a chart and "<5" in a table.

// DayBacklog is the backlog at the end of one day of the month (at the
// time the report was made, for the day it was made).
type DayBacklog struct {
	Day time.Time
	// Open counts the cases open at the end of the day, PastDue those of
	// them past their due date.
	Open, PastDue int
	// Passed is false for a day that had not begun when the report was
	// made: it has no figures.
	Passed bool
}

// QueueBacklog is the backlog of one queue at the end of the month (or
// when the report was made, if earlier).
type QueueBacklog struct {
	Queue         string
	Open, PastDue int
}

// recordOpen reports whether the record's case was open at t, and past
// its due date then.
func (m *Month) recordOpen(r *statisticsv1.StatisticsRecord, t time.Time) (open, pastDue bool) {
	registered := r.GetRegisteredHour().AsTime()
	if registered.After(t) {
		return false, false
	}
	if r.GetClosed() && r.GetTimeToClose() != nil && !registered.Add(r.GetTimeToClose().AsDuration()).After(t) {
		return false, false
	}
	d, ok := m.AnswerTime[r.GetType()]
	return true, ok && registered.Add(d).Before(t)
}

// until is the instant a day's (or the month's) figures are taken at: its
// end, or the time the report was made if that is earlier.
func (m *Month) until(end time.Time) time.Time {
	if !m.Now.IsZero() && m.Now.Before(end) {
		return m.Now
	}
	return end
}

// Backlog counts the open and the past-due cases at the end of each day
// of the month.
func (m *Month) Backlog() []DayBacklog {
	days := m.days()
	out := make([]DayBacklog, len(days))
	for i, d := range days {
		out[i] = DayBacklog{Day: d, Passed: m.passed(d)}
		if !out[i].Passed {
			continue
		}
		at := m.until(d.AddDate(0, 0, 1))
		for _, r := range m.Records {
			open, late := m.recordOpen(r, at)
			if open {
				out[i].Open++
			}
			if late {
				out[i].PastDue++
			}
		}
	}
	return out
}

// QueueBacklogs counts the open and the past-due cases of each queue at
// the end of the month (or now), queues with open cases only, by name;
// cases not yet routed are under "".
func (m *Month) QueueBacklogs() []QueueBacklog {
	at := m.until(m.End)
	byQueue := map[string]*QueueBacklog{}
	for _, r := range m.Records {
		open, late := m.recordOpen(r, at)
		if !open {
			continue
		}
		q := byQueue[r.GetQueue()]
		if q == nil {
			q = &QueueBacklog{Queue: r.GetQueue()}
			byQueue[r.GetQueue()] = q
		}
		q.Open++
		if late {
			q.PastDue++
		}
	}
	out := make([]QueueBacklog, 0, len(byQueue))
	for _, q := range byQueue {
		out = append(out, *q)
	}
	slices.SortFunc(out, func(a, b QueueBacklog) int { return cmp.Compare(a.Queue, b.Queue) })
	return out
}

// publishable is whether a count may be shown: not below the small-cell
// limit (zero is no case at all, and may be).
func publishable(n int) bool { return n == 0 || n >= SuppressBelow }

// backlogChart plots the open cases, or the past-due ones, at the end of
// each day; a day not yet come or with a count below the limit is a gap.
func (m *Month) backlogChart(title string, pastDue bool) (*plot.Plot, error) {
	p := newTimePlot(m, title, "ärenden")
	var max float64
	pts := m.backlogPoints(pastDue)
	for _, pt := range pts {
		if pt.ok {
			max = math.Max(max, pt.y)
		}
	}
	headroom(p, max)
	name := "öppna ärenden"
	if pastDue {
		name = "försenade ärenden"
	}
	if err := addSeries(p, name, 0, pts); err != nil {
		return nil, err
	}
	return p, nil
}

// backlogPoints are the chart's points: the open (or past-due) cases at
// the end of each day, a gap for a day not yet come or a count below the
// small-cell limit.
func (m *Month) backlogPoints(pastDue bool) []point {
	var pts []point
	for _, b := range m.Backlog() {
		n := b.Open
		if pastDue {
			n = b.PastDue
		}
		pts = append(pts, point{x: float64(b.Day.Unix()), y: float64(n), ok: b.Passed && publishable(n)})
	}
	return pts
}

// queueBacklogRow is one line of the per-queue table, formatted.
type queueBacklogRow struct{ Queue, Open, PastDue string }

func (m *Month) queueBacklogRows() []queueBacklogRow {
	var out []queueBacklogRow
	for _, q := range m.QueueBacklogs() {
		out = append(out, queueBacklogRow{Queue: sv.APIKey(q.Queue), Open: cell(q.Open), PastDue: cell(q.PastDue)})
	}
	return out
}

// cell formats a count for a table: "<5" below the small-cell limit.
func cell(n int) string {
	if !publishable(n) {
		return "<" + strconv.Itoa(SuppressBelow)
	}
	return strconv.Itoa(n)
}

// BacklogCSVHeader is the header of the backlog CSV.
var BacklogCSVHeader = []string{"day", "open_at_end_of_day", "past_due_at_end_of_day"}

// WriteBacklogCSV writes the backlog per day as CSV, next to the report's
// charts: the export's CSV (`kontakt stats export`) holds Query's rows,
// which count the cases registered in a bucket, so a day's backlog has no
// column there that would mean the same thing. A day not yet come has
// empty cells, and so has a count below the small-cell limit, so a sum
// over a column never takes "fewer than k" for none.
func (m *Month) WriteBacklogCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(BacklogCSVHeader); err != nil {
		return err
	}
	for _, b := range m.Backlog() {
		open, late := "", ""
		if b.Passed && publishable(b.Open) {
			open = strconv.Itoa(b.Open)
		}
		if b.Passed && publishable(b.PastDue) {
			late = strconv.Itoa(b.PastDue)
		}
		if err := cw.Write([]string{b.Day.Format(time.DateOnly), open, late}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// queuesAt says when the per-queue figures were taken, in the report's
// words: at the end of the month, or when the report was made.
func (m *Month) queuesAt() string {
	at := m.until(m.End)
	if at.Equal(m.End) {
		return "månadens slut, " + sv.Date(m.End.AddDate(0, 0, -1))
	}
	return at.In(m.Loc).Format("2006-01-02 15:04")
}

// answerTimeNote says the answer times the past-due figures use, for the
// report's text ("fråga 2 dagar, felanmälan 1 dag, …").
func (m *Month) answerTimeNote() string {
	types := make([]casev1.CaseType, 0, len(m.AnswerTime))
	for t := range m.AnswerTime {
		types = append(types, t)
	}
	slices.Sort(types)
	if len(types) == 0 {
		return "ingen svarstid satt"
	}
	s := ""
	for i, t := range types {
		if i > 0 {
			s += ", "
		}
		days := m.AnswerTime[t].Hours() / 24
		unit := "dagar"
		if days == 1 {
			unit = "dag"
		}
		s += sv.Type(t) + " " + strconv.FormatFloat(days, 'f', -1, 64) + " " + unit
	}
	return s
}
