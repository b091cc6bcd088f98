package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/services/intake/app"
)

func TestPublicRequests(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	pos := eventstore.Position(0)
	ev := func(stream string, m *casev1.CaseRegistered, at time.Time) projection.Event {
		pos++
		rec := eventstore.RecordedEvent{Stream: stream, Position: pos, Recorded: at}
		if m == nil {
			rec.Type = eventstore.TypeStreamDeleted
			return projection.Event{Recorded: rec}
		}
		return projection.Event{Recorded: rec, Message: m}
	}
	registered := func(number, category string, typ casev1.CaseType, at time.Time) *casev1.CaseRegistered {
		return &casev1.CaseRegistered{CaseNumber: number, Category: category, Type: typ, RegisteredAt: timestamppb.New(at),
			CoarseLocation: &casev1.CoarseLocation{Latitude: 57.66, Longitude: 12.01}}
	}
	p := app.NewPublicRequests()
	fault := casev1.CaseType_CASE_TYPE_FELANMALAN
	batch := []projection.Event{
		ev("c1", registered("KC-2026-000001", "gatubelysning", fault, t0), t0),
		ev("c2", registered("KC-2026-000002", "skola", casev1.CaseType_CASE_TYPE_FRAGA, t0.Add(time.Minute)), t0.Add(time.Minute)),
		// Committed after c4 but registered before it: put in its place.
		ev("c4", registered("KC-2026-000004", "klotter", fault, t0.Add(3*time.Minute)), t0.Add(3*time.Minute)),
		ev("c3", registered("KC-2026-000003", "gatubelysning", fault, t0.Add(2*time.Minute)), t0.Add(3*time.Minute)),
		{Recorded: eventstore.RecordedEvent{Stream: "c1", Position: 10, Recorded: t0.Add(time.Hour)}, Message: &casev1.CaseClosed{CaseId: "c1"}},
	}
	require.NoError(t, p.Apply(context.Background(), batch))
	cp, err := p.Checkpoint()
	require.NoError(t, err)
	require.Equal(t, eventstore.Position(10), cp)

	numbers := func(states []app.CaseState) []string {
		var out []string
		for _, s := range states {
			out = append(out, s.CaseNumber)
		}
		return out
	}
	all := app.PublicFilter{From: t0, To: t0.Add(time.Hour), Limit: 10}
	require.Equal(t, []string{"KC-2026-000004", "KC-2026-000003", "KC-2026-000001"}, numbers(p.List(all)), "fault reports only, newest first")

	closed, open := true, false
	f := all
	f.Closed = &closed
	require.Equal(t, []string{"KC-2026-000001"}, numbers(p.List(f)))
	f.Closed = &open
	f.Categories = []string{"gatubelysning"}
	require.Equal(t, []string{"KC-2026-000003"}, numbers(p.List(f)))
	f = all
	f.From, f.To = t0.Add(time.Minute), t0.Add(2*time.Minute)
	require.Equal(t, []string{"KC-2026-000003"}, numbers(p.List(f)), "both ends inclusive")
	f = all
	f.Limit = 1
	require.Equal(t, []string{"KC-2026-000004"}, numbers(p.List(f)))

	st, ok := p.Get("KC-2026-000001")
	require.True(t, ok)
	require.True(t, st.Closed)
	require.Equal(t, t0.Add(time.Hour), st.UpdatedAt)
	require.Equal(t, 57.66, st.Coarse.GetLatitude())
	_, ok = p.Get("KC-2026-000002")
	require.False(t, ok, "a question is no service request")

	// Applying the batch again changes nothing (idempotent at or before
	// the checkpoint); a deleted stream is forgotten.
	require.NoError(t, p.Apply(context.Background(), batch))
	require.Len(t, p.List(all), 3)
	pos = 10
	require.NoError(t, p.Apply(context.Background(), []projection.Event{ev("c3", nil, t0.Add(2*time.Hour))}))
	require.Equal(t, []string{"KC-2026-000004", "KC-2026-000001"}, numbers(p.List(all)))
	_, ok = p.Get("KC-2026-000003")
	require.False(t, ok)
}
