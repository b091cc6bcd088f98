package ports

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kontakt-se/kontakt/services/retention/app"
)

// SweepMetrics exports whether the retention plan keeps up: the cases
// past a deadline it has not yet carried out, how late the earliest of
// them is, and when the sweeper last finished a pass. They are read from
// the deadline index at scrape time, walking only the overdue cases. A
// growing lag with recent passes means the sweeper cannot keep up (or a
// case keeps failing); a stale last pass means it has stopped.
type SweepMetrics struct {
	svc                   *app.Service
	overdue, lag, lastRun *prometheus.Desc
	errs                  prometheus.Counter
}

// NewSweepMetrics returns the collector; register it on the metrics
// registry.
func NewSweepMetrics(svc *app.Service) *SweepMetrics {
	return &SweepMetrics{
		svc: svc,
		overdue: prometheus.NewDesc("kontakt_retention_overdue_cases",
			"Cases past a retention deadline (redaction, deletion) that the sweeper has not yet carried out; held cases have none.", nil, nil),
		lag: prometheus.NewDesc("kontakt_retention_sweep_lag_seconds",
			"Seconds since the earliest retention deadline not yet carried out (0 when none is overdue).", nil, nil),
		lastRun: prometheus.NewDesc("kontakt_retention_last_sweep_timestamp_seconds",
			"Unix time at which the last sweep pass that ended without an error began (0 before the first).", nil, nil),
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kontakt_retention_metrics_errors_total",
			Help: "Scrapes that could not read the deadline index.",
		}),
	}
}

// Describe implements prometheus.Collector.
func (m *SweepMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.overdue
	ch <- m.lag
	ch <- m.lastRun
	m.errs.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *SweepMetrics) Collect(ch chan<- prometheus.Metric) {
	defer m.errs.Collect(ch)
	n, earliest, last, err := m.svc.Backlog()
	if err != nil {
		m.errs.Inc()
		return
	}
	lag := 0.0
	if !earliest.IsZero() {
		lag = max(m.svc.Now().Sub(earliest).Seconds(), 0)
	}
	lastRun := 0.0
	if !last.IsZero() {
		lastRun = float64(last.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(m.overdue, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(m.lag, prometheus.GaugeValue, lag)
	ch <- prometheus.MustNewConstMetric(m.lastRun, prometheus.GaugeValue, lastRun)
}
