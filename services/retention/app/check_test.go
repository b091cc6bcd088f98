package app_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/readcheck"
	"github.com/kontakt-se/kontakt/services/retention/app"
)

// checkHistory is two cases registered on day 0, one of them held from
// day 1 (a hold stops its deadlines), as the projector sees them.
func checkHistory() []projection.Event {
	var evs []projection.Event
	add := func(stream string, m proto.Message) {
		n := eventstore.Position(len(evs) + 1)
		rec := eventstore.RecordedEvent{Stream: stream, Revision: eventstore.Revision(n), Position: n, Recorded: day(0)}
		rec.Type = string(m.ProtoReflect().Descriptor().Name())
		evs = append(evs, projection.Event{Recorded: rec, Message: m})
	}
	for i, id := range []string{"case-a", "case-b"} {
		add(id, &casev1.CaseRegistered{CaseId: id, CaseNumber: []string{"KC-2026-000001", "KC-2026-000002"}[i],
			Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE, RegisteredAt: timestamppb.New(day(0))})
	}
	add("case-b", &casev1.HoldPlaced{CaseId: "case-b", HoldId: "h1", Reason: "tvist", PlacedAt: timestamppb.New(day(1))})
	return evs
}

func replayed(t *testing.T) app.IndexView {
	t.Helper()
	p := plan(t, "molndal")
	mem := app.NewReplayIndex()
	require.NoError(t, app.Replay(p, mem, checkHistory()))
	v, err := mem.View(p)
	require.NoError(t, err)
	return v
}

func TestReplayFoldsAsTheProjector(t *testing.T) {
	v := replayed(t)
	require.Len(t, v.Entries, 2)
	require.Equal(t, "KC-2026-000001", v.Entries["case-a"].Case.Number)
	require.False(t, v.Entries["case-a"].NextDue.IsZero(), "a case without a hold has a deadline")
	require.True(t, v.Entries["case-b"].NextDue.IsZero(), "a hold stops the deadlines")
	require.Equal(t, map[string]time.Time{"case-a": v.Entries["case-a"].NextDue}, v.Due)
}

func TestCompareIndexNamesWhatDiffers(t *testing.T) {
	want := replayed(t)
	due := want.Entries["case-a"].NextDue
	for _, tc := range []struct {
		name            string
		damage          func(got *app.IndexView)
		now             time.Time
		cases, deadline []string
	}{
		{name: "the same", damage: func(*app.IndexView) {}, now: due.Add(-time.Hour)},
		{name: "a case missing", damage: func(g *app.IndexView) { delete(g.Entries, "case-b") },
			cases: []string{"1 of 2 cases differ from the log (KC-2026-000002)"}},
		{name: "a deadline moved", damage: func(g *app.IndexView) {
			e := *g.Entries["case-a"]
			e.NextDue = e.NextDue.Add(time.Hour)
			g.Entries["case-a"] = &e
		}, deadline: []string{"1 of 2 cases have another deadline than the log gives (KC-2026-000001)"}},
		{name: "the sweeper's index lost a case", damage: func(g *app.IndexView) { delete(g.Due, "case-a") }, now: due.Add(time.Hour),
			deadline: []string{"1 of 2 cases are listed wrongly for the sweeper (KC-2026-000001)", "due now: 0 in the read model, 1 by the log"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := replayed(t)
			tc.damage(&got)
			cases, deadlines := readcheck.New("retention", "cases", 3, 3), readcheck.New("retention", "deadlines", 3, 3)
			require.NoError(t, app.CompareIndex(got, want, tc.now, &cases, &deadlines))
			require.Equal(t, tc.cases, cases.Differences)
			require.Equal(t, tc.deadline, deadlines.Differences)
			require.Equal(t, len(tc.cases) == 0, cases.OK)
			require.Equal(t, len(tc.deadline) == 0, deadlines.OK)
			require.Equal(t, 1, deadlines.Counts["scheduled"])
		})
	}
}
