package host

import (
	"context"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// streamCollector exports what each JetStream stream of the account holds
// (bytes and messages) and the account's storage use against its limit,
// read from JetStream at scrape time. An operator watches these to see
// the disk fill before NATS refuses writes; the retention plan's deletions
// show up here too.
type streamCollector struct {
	js                  natsjs.JetStream
	bytes, msgs         *prometheus.Desc
	accountBytes, limit *prometheus.Desc
	scrapeErrs          prometheus.Counter
}

func newStreamCollector(js natsjs.JetStream) *streamCollector {
	return &streamCollector{
		js: js,
		bytes: prometheus.NewDesc("kontakt_nats_stream_bytes",
			"Bytes a JetStream stream holds on disk, by stream.", []string{"stream"}, nil),
		msgs: prometheus.NewDesc("kontakt_nats_stream_messages",
			"Messages a JetStream stream holds, by stream.", []string{"stream"}, nil),
		accountBytes: prometheus.NewDesc("kontakt_nats_storage_bytes",
			"File storage the account's JetStream streams use.", nil, nil),
		limit: prometheus.NewDesc("kontakt_nats_storage_limit_bytes",
			"The account's JetStream file storage limit (-1: none set).", nil, nil),
		scrapeErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kontakt_nats_storage_scrape_errors_total",
			Help: "Scrapes that could not read JetStream's storage figures.",
		}),
	}
}

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.msgs
	ch <- c.accountBytes
	ch <- c.limit
	c.scrapeErrs.Describe(ch)
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	defer c.scrapeErrs.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := c.js.AccountInfo(ctx)
	if err != nil {
		c.scrapeErrs.Inc()
		return
	}
	ch <- prometheus.MustNewConstMetric(c.accountBytes, prometheus.GaugeValue, float64(info.Store))
	ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(info.Limits.MaxStore))
	streams := c.js.ListStreams(ctx)
	for s := range streams.Info() {
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(s.State.Bytes), s.Config.Name)
		ch <- prometheus.MustNewConstMetric(c.msgs, prometheus.GaugeValue, float64(s.State.Msgs), s.Config.Name)
	}
	if streams.Err() != nil {
		c.scrapeErrs.Inc()
	}
}
