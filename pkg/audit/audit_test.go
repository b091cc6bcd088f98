package audit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/audit"
	"github.com/kontakt-se/kontakt/pkg/natstest"
)

func start(t *testing.T) jetstream.JetStream {
	t.Helper()
	return natstest.JetStream(t, natstest.Embedded(t, 0))
}

func rec(id, caseID string) *routingv1.AuditRecord {
	return &routingv1.AuditRecord{
		AuditId: id, Actor: "anna", Role: "agent", CaseId: caseID,
		DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_CONTACT_DETAILS},
		Purpose:     "ringer tillbaka", ReadAt: timestamppb.New(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)),
		Rpc: "/kontakt.routing.v1.RoutingService/GetCase",
	}
}

func TestRecordAndListPerCase(t *testing.T) {
	js := start(t)
	l, err := audit.New(t.Context(), js, audit.Config{})
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, l.Record(t.Context(), rec(fmt.Sprintf("a%d", i), "case-1")))
	}
	require.NoError(t, l.Record(t.Context(), rec("b0", "case-2")))
	// A retried write with the same audit id is stored once.
	require.NoError(t, l.Record(t.Context(), rec("a2", "case-1")))

	got, err := l.ForCase(t.Context(), "case-1")
	require.NoError(t, err)
	require.Len(t, got, 3)
	for i, r := range got {
		require.True(t, proto.Equal(rec(fmt.Sprintf("a%d", i), "case-1"), r))
	}
	none, err := l.ForCase(t.Context(), "case-3")
	require.NoError(t, err)
	require.Empty(t, none)
}

func TestStreamKeepsFiveYearsAndRefusesDeletes(t *testing.T) {
	js := start(t)
	_, err := audit.New(t.Context(), js, audit.Config{})
	require.NoError(t, err)
	s, err := js.Stream(t.Context(), audit.DefaultStream)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, 5*365*24*time.Hour, info.Config.MaxAge)
	require.True(t, info.Config.DenyDelete)
}

func TestRecordFailsWhenTheStreamIsGone(t *testing.T) {
	js := start(t)
	reg := prometheus.NewRegistry()
	l, err := audit.New(t.Context(), js, audit.Config{Timeout: time.Second, Metrics: reg})
	require.NoError(t, err)
	// A second trail on the same registry (routing and retention in one
	// process) shares the counter.
	other, err := audit.New(t.Context(), js, audit.Config{Timeout: time.Second, Metrics: reg})
	require.NoError(t, err)
	require.NoError(t, l.Record(t.Context(), rec("ok", "case-1")))
	require.Zero(t, failures(t, reg))

	require.NoError(t, js.DeleteStream(t.Context(), audit.DefaultStream))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	err = l.Record(ctx, rec("x", "case-1"))
	require.ErrorIs(t, err, audit.ErrUnavailable)
	require.ErrorIs(t, other.Record(ctx, rec("y", "case-1")), audit.ErrUnavailable)
	require.Equal(t, 2.0, failures(t, reg), "each failed write is counted")

	// A caller that went away is not the trail's failure.
	gone, cancelGone := context.WithCancel(t.Context())
	cancelGone()
	require.Error(t, l.Record(gone, rec("z", "case-1")))
	require.Equal(t, 2.0, failures(t, reg))
}

// failures is the registry's kontakt_audit_write_failures_total.
func failures(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "kontakt_audit_write_failures_total" {
			require.Len(t, mf.GetMetric(), 1, "one counter, shared")
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("kontakt_audit_write_failures_total is not registered")
	return 0
}

func TestRecordRefusesIncompleteRecords(t *testing.T) {
	js := start(t)
	l, err := audit.New(t.Context(), js, audit.Config{})
	require.NoError(t, err)
	bad := rec("x", "case 1 with spaces")
	require.Error(t, l.Record(t.Context(), bad))
	require.Error(t, l.Record(t.Context(), rec("", "case-1")))
}

// Reading a trail must not leave a consumer behind: a thousand reads once
// left 981 on the stream, and the reads after them failed.
func TestReadsLeaveNoConsumer(t *testing.T) {
	js := start(t)
	l, err := audit.New(t.Context(), js, audit.Config{})
	require.NoError(t, err)
	for i := range 300 {
		require.NoError(t, l.Record(t.Context(), rec(fmt.Sprintf("a%d", i), "case-1")))
	}
	for range 200 {
		got, err := l.ForCase(t.Context(), "case-1")
		require.NoError(t, err)
		require.Len(t, got, 300)
		none, err := l.ForCase(t.Context(), "case-2")
		require.NoError(t, err)
		require.Empty(t, none)
	}
	s, err := js.Stream(t.Context(), audit.DefaultStream)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	require.Zero(t, info.State.Consumers)
}
