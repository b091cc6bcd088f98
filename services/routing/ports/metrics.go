package ports

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/casenames"
	"github.com/kontakt-se/kontakt/services/routing/app"
)

// openStatuses are the statuses of a case in a queue, each exported for
// every queue (a status without cases as 0, so that a panel's series do
// not come and go).
var openStatuses = []casev1.CaseStatus{
	casev1.CaseStatus_CASE_STATUS_QUEUED,
	casev1.CaseStatus_CASE_STATUS_ASSIGNED,
	casev1.CaseStatus_CASE_STATUS_FORWARDED,
}

// QueueMetrics exports the load of every configured queue, read from the
// read model's per-queue counters and its due-order index at scrape time
// (no scan of the cases):
// what a supervisor's wallboard shows, for the operator's alerts. Labels
// are queue names, which are configuration and never personal.
type QueueMetrics struct {
	queries                                     *app.Queries
	open, byStatus, unassigned, oldest, pastDue *prometheus.Desc
	errs                                        prometheus.Counter
}

// NewQueueMetrics returns the collector; register it on the metrics
// registry.
func NewQueueMetrics(q *app.Queries) *QueueMetrics {
	return &QueueMetrics{
		queries: q,
		open: prometheus.NewDesc("kontakt_queue_open_cases",
			"Cases in the queue that are not closed.", []string{"queue"}, nil),
		byStatus: prometheus.NewDesc("kontakt_queue_open_cases_by_status",
			"Open cases in the queue by status (queued, assigned, forwarded); they add up to kontakt_queue_open_cases.", []string{"queue", "status"}, nil),
		unassigned: prometheus.NewDesc("kontakt_queue_unassigned_cases",
			"Open cases in the queue that nobody has taken.", []string{"queue"}, nil),
		oldest: prometheus.NewDesc("kontakt_queue_oldest_open_age_seconds",
			"Age of the queue's oldest open case (0 when it has none).", []string{"queue"}, nil),
		pastDue: prometheus.NewDesc("kontakt_queue_past_due_cases",
			"Open cases in the queue whose due time (registration plus the case type's SLA) has passed.", []string{"queue"}, nil),
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kontakt_queue_metrics_errors_total",
			Help: "Scrapes that could not read the queues' load from the read model.",
		}),
	}
}

// Describe implements prometheus.Collector.
func (m *QueueMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.open
	ch <- m.byStatus
	ch <- m.unassigned
	ch <- m.oldest
	ch <- m.pastDue
	m.errs.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *QueueMetrics) Collect(ch chan<- prometheus.Metric) {
	defer m.errs.Collect(ch)
	loads, err := m.queries.Loads()
	if err != nil {
		m.errs.Inc()
		return
	}
	now := m.queries.Now()
	for _, l := range loads {
		ch <- prometheus.MustNewConstMetric(m.open, prometheus.GaugeValue, float64(l.Open), l.Queue)
		for _, st := range openStatuses {
			ch <- prometheus.MustNewConstMetric(m.byStatus, prometheus.GaugeValue, float64(l.OpenByStatus[st]), l.Queue, casenames.Status(st))
		}
		ch <- prometheus.MustNewConstMetric(m.unassigned, prometheus.GaugeValue, float64(l.Unassigned), l.Queue)
		age := 0.0
		if !l.OldestOpenAt.IsZero() {
			age = max(now.Sub(l.OldestOpenAt).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(m.oldest, prometheus.GaugeValue, age, l.Queue)
		ch <- prometheus.MustNewConstMetric(m.pastDue, prometheus.GaugeValue, float64(l.PastDue), l.Queue)
	}
}

// FirstResponseMetrics is the histogram of the time from a case's
// registration to its first answer, by queue (app.Metrics). Its buckets
// span what a contact centre promises: minutes on the phone, a day for a
// fault report, ten days for a letter.
type FirstResponseMetrics struct {
	seconds *prometheus.HistogramVec
}

// NewFirstResponseMetrics registers the histogram on reg, with a series
// for each of queues, so that a dashboard shows every queue from the start.
func NewFirstResponseMetrics(reg prometheus.Registerer, queues []string) (*FirstResponseMetrics, error) {
	const minute, hour, day = 60, 3600, 86400
	m := &FirstResponseMetrics{seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "kontakt_first_response_seconds",
		Help: "Time from a case's registration to its first answer, observed when the answer is given, by the queue the case is in.",
		Buckets: []float64{5 * minute, 15 * minute, 30 * minute, hour, 2 * hour, 4 * hour, 8 * hour,
			day, 2 * day, 3 * day, 5 * day, 10 * day, 20 * day, 30 * day},
	}, []string{"queue"})}
	if err := reg.Register(m.seconds); err != nil {
		return nil, err
	}
	for _, q := range queues {
		m.seconds.WithLabelValues(q)
	}
	return m, nil
}

// FirstResponse implements app.Metrics.
func (m *FirstResponseMetrics) FirstResponse(queue string, d time.Duration) {
	m.seconds.WithLabelValues(queue).Observe(d.Seconds())
}
