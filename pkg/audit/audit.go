// Package audit is the log of every read of personal data: who read which
// case's data, which data classes, when, why and through which call. It is
// a JetStream stream kept five years by default (seed 004: activity logs
// five years), written synchronously before the data is returned, so a
// read that cannot be logged does not happen.
package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/jsread"
)

// ErrUnavailable means the audit record could not be written or read; the
// caller must then refuse the read it was about to log.
var ErrUnavailable = errors.New("audit log unavailable")

// Defaults.
const (
	DefaultStream    = "KONTAKT_AUDIT"
	DefaultPrefix    = "kontakt.audit"
	DefaultRetention = 5 * 365 * 24 * time.Hour
)

// Config configures the audit stream.
type Config struct {
	Stream    string
	Prefix    string
	Retention time.Duration
	Replicas  int
	// Timeout bounds one write; zero means five seconds.
	Timeout time.Duration
	// Metrics, when set, gets kontakt_audit_write_failures_total. Every
	// Log given the same registry shares the one counter (routing and
	// retention each open the trail in the single binary).
	Metrics prometheus.Registerer
}

// Log writes and reads audit records.
type Log struct {
	js       jetstream.JetStream
	cfg      Config
	failures prometheus.Counter // nil without Config.Metrics
}

// writeFailures returns the failure counter on reg, registering it or
// taking the one registered before.
func writeFailures(reg prometheus.Registerer) (prometheus.Counter, error) {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kontakt_audit_write_failures_total",
		Help: "Audit records that could not be written; each failure refused the read of personal data it was to record.",
	})
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("audit: register metrics: %w", err)
	}
	return c, nil
}

// validCaseID accepts what the event store accepts as a stream id, which
// keeps the id one subject token.
func validCaseID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// New creates or updates the audit stream. Single messages cannot be
// deleted from it, so the trail cannot be edited quietly; it ages out by
// the retention period only.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Log, error) {
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Retention < 24*time.Hour {
		return nil, fmt.Errorf("audit: retention %s is shorter than a day", cfg.Retention)
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "kontakt audit trail of personal-data reads",
		Subjects:    []string{cfg.Prefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      cfg.Retention,
		Replicas:    cfg.Replicas,
		DenyDelete:  true,
		Duplicates:  2 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("audit: create stream %s: %w", cfg.Stream, err)
	}
	l := &Log{js: js, cfg: cfg}
	if cfg.Metrics != nil {
		if l.failures, err = writeFailures(cfg.Metrics); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Record writes one audit record and waits until the server has stored
// it. The record's audit id is its de-duplication id, so a retried write
// is stored once.
//
// Every failure is counted (kontakt_audit_write_failures_total), except
// one where the caller's context ended first: a client that went away is
// no fault of the trail's.
func (l *Log) Record(ctx context.Context, rec *routingv1.AuditRecord) error {
	err := l.record(ctx, rec)
	if err != nil && l.failures != nil && ctx.Err() == nil {
		l.failures.Inc()
	}
	return err
}

func (l *Log) record(ctx context.Context, rec *routingv1.AuditRecord) error {
	if rec.GetAuditId() == "" || !validCaseID(rec.GetCaseId()) || rec.GetActor() == "" {
		return fmt.Errorf("audit: record needs an audit id, a case id and an actor")
	}
	data, err := proto.Marshal(rec)
	if err != nil {
		return fmt.Errorf("audit: encode: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	msg := &nats.Msg{Subject: l.cfg.Prefix + "." + rec.GetCaseId(), Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, rec.GetAuditId())
	if _, err := l.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(l.cfg.Stream)); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// ForCase returns the audit trail of one case, oldest first. It reads
// through jsread, which removes its consumer when it is done: a trail is
// read at every register extract and audit listing, and each read used to
// leave a consumer on the stream.
func (l *Log) ForCase(ctx context.Context, caseID string) ([]*routingv1.AuditRecord, error) {
	if !validCaseID(caseID) {
		return nil, fmt.Errorf("audit: invalid case id")
	}
	var out []*routingv1.AuditRecord
	err := jsread.Each(ctx, l.js, jsread.Range{
		Stream: l.cfg.Stream, Subjects: []string{l.cfg.Prefix + "." + caseID}, Timeout: l.cfg.Timeout,
	}, func(m jsread.Msg) error {
		var rec routingv1.AuditRecord
		if err := proto.Unmarshal(m.Data, &rec); err != nil {
			return fmt.Errorf("audit: decode record: %w", err)
		}
		out = append(out, &rec)
		return nil
	})
	if errors.Is(err, jsread.ErrUnavailable) {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}
