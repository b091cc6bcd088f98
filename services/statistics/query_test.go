package statistics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/google/go-cmp/cmp"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/services/statistics/app"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

func utcHour(y int, m time.Month, d, h int) time.Time {
	return time.Date(y, m, d, h, 0, 0, 0, time.UTC)
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// TestQueryHandComputed writes cases through the event store and checks
// Query's rows, over gRPC, against values computed by hand.
func TestQueryHandComputed(t *testing.T) {
	h := startHarness(t)
	svc := h.service(t, Config{})
	running(t, svc)
	client := grpcClient(t, svc)

	fraga, brev := casev1.CaseType_CASE_TYPE_FRAGA, casev1.CaseType_CASE_TYPE_BREV
	phone, email := casev1.Channel_CHANNEL_PHONE, casev1.Channel_CHANNEL_EMAIL
	m := time.Minute
	type c struct {
		at        time.Time
		typ       casev1.CaseType
		ch        casev1.Channel
		ttfr, ttc time.Duration
		fcr       bool
	}
	for i, cs := range []c{
		{utcHour(2026, 1, 5, 10).Add(17 * m), fraga, phone, 10 * m, time.Hour, true},
		{utcHour(2026, 1, 20, 10), fraga, phone, 20 * m, 2 * time.Hour, false},
		{utcHour(2026, 1, 31, 23).Add(59 * m), fraga, phone, 30 * m, 0, false}, // 1 February in Stockholm
		{utcHour(2026, 1, 10, 10), fraga, email, 40 * m, 0, false},
		{utcHour(2026, 1, 3, 10), brev, email, 0, 0, false},
		{utcHour(2026, 1, 12, 10), fraga, email, 50 * m, 4 * time.Hour, false},
		{utcHour(2025, 12, 31, 22).Add(59 * m), fraga, phone, 5 * m, 0, false}, // 31 December in Stockholm
		{utcHour(2025, 12, 31, 23), fraga, phone, 60 * m, 0, false},            // 1 January in Stockholm
	} {
		id := newCaseID()
		evs := []proto.Message{registered(id, cs.typ, cs.ch, fmt.Sprintf("cat-%d", i%2), cs.at)}
		if cs.ttfr > 0 {
			evs = append(evs, &casev1.CaseAnswered{CaseId: id, AnsweredAt: ts(cs.at.Add(cs.ttfr))})
		}
		if cs.ttc > 0 {
			evs = append(evs, &casev1.CaseClosed{CaseId: id, FirstContactResolution: cs.fcr, ClosedAt: ts(cs.at.Add(cs.ttc))})
		}
		h.appendEvents(t, id, evs...)
	}
	h.settled(t, svc)

	jan, feb, mar := utcHour(2025, 12, 31, 23), utcHour(2026, 1, 31, 23), utcHour(2026, 2, 28, 23)
	byType := []statisticsv1.Dimension{statisticsv1.Dimension_DIMENSION_TYPE}
	janFraga := &statisticsv1.Row{
		BucketStart: ts(jan), Keys: []string{"CASE_TYPE_FRAGA"}, Count: 5, FirstContactResolved: 1, Closed: 3,
		MedianTimeToFirstResponse: dur(40 * m), P90TimeToFirstResponse: dur(56 * m),
		MedianTimeToClose: dur(2 * time.Hour), P90TimeToClose: dur(3*time.Hour + 36*m),
	}
	tests := []struct {
		name string
		req  *statisticsv1.QueryRequest
		want []*statisticsv1.Row
	}{
		{
			name: "month by type",
			req:  &statisticsv1.QueryRequest{From: ts(jan), To: ts(mar), GroupBy: byType, Granularity: statisticsv1.Granularity_GRANULARITY_MONTH},
			want: []*statisticsv1.Row{
				{BucketStart: ts(jan), Keys: []string{"CASE_TYPE_BREV"}, Count: 1},
				janFraga,
				{BucketStart: ts(feb), Keys: []string{"CASE_TYPE_FRAGA"}, Count: 1, MedianTimeToFirstResponse: dur(30 * m), P90TimeToFirstResponse: dur(30 * m)},
			},
		},
		{
			name: "publishable",
			req:  &statisticsv1.QueryRequest{From: ts(jan), To: ts(mar), GroupBy: byType, Granularity: statisticsv1.Granularity_GRANULARITY_MONTH, Publishable: true},
			want: []*statisticsv1.Row{
				{BucketStart: ts(jan), Keys: []string{"CASE_TYPE_BREV"}, Suppressed: true},
				janFraga,
				{BucketStart: ts(feb), Keys: []string{"CASE_TYPE_FRAGA"}, Suppressed: true},
			},
		},
		{
			name: "one bucket by type and channel",
			req: &statisticsv1.QueryRequest{From: ts(jan), To: ts(feb), GroupBy: []statisticsv1.Dimension{
				statisticsv1.Dimension_DIMENSION_TYPE, statisticsv1.Dimension_DIMENSION_CHANNEL,
			}},
			want: []*statisticsv1.Row{
				{BucketStart: ts(jan), Keys: []string{"CASE_TYPE_BREV", "CHANNEL_EMAIL"}, Count: 1},
				{
					BucketStart: ts(jan), Keys: []string{"CASE_TYPE_FRAGA", "CHANNEL_EMAIL"}, Count: 2, Closed: 1,
					MedianTimeToFirstResponse: dur(45 * m), P90TimeToFirstResponse: dur(49 * m),
					MedianTimeToClose: dur(4 * time.Hour), P90TimeToClose: dur(4 * time.Hour),
				},
				{
					BucketStart: ts(jan), Keys: []string{"CASE_TYPE_FRAGA", "CHANNEL_PHONE"}, Count: 3, FirstContactResolved: 1, Closed: 2,
					MedianTimeToFirstResponse: dur(20 * m), P90TimeToFirstResponse: dur(52 * m),
					MedianTimeToClose: dur(90 * m), P90TimeToClose: dur(114 * m),
				},
			},
		},
		{
			name: "week by category",
			req: &statisticsv1.QueryRequest{
				From: ts(utcHour(2026, 1, 11, 23)), To: ts(utcHour(2026, 1, 25, 23)),
				GroupBy: []statisticsv1.Dimension{statisticsv1.Dimension_DIMENSION_CATEGORY}, Granularity: statisticsv1.Granularity_GRANULARITY_WEEK,
			},
			want: []*statisticsv1.Row{
				{BucketStart: ts(utcHour(2026, 1, 11, 23)), Keys: []string{"cat-1"}, Count: 1, Closed: 1, MedianTimeToFirstResponse: dur(50 * m), P90TimeToFirstResponse: dur(50 * m), MedianTimeToClose: dur(4 * time.Hour), P90TimeToClose: dur(4 * time.Hour)},
				{BucketStart: ts(utcHour(2026, 1, 18, 23)), Keys: []string{"cat-1"}, Count: 1, Closed: 1, MedianTimeToFirstResponse: dur(20 * m), P90TimeToFirstResponse: dur(20 * m), MedianTimeToClose: dur(2 * time.Hour), P90TimeToClose: dur(2 * time.Hour)},
			},
		},
		{
			name: "nothing in range",
			req:  &statisticsv1.QueryRequest{From: ts(utcHour(2030, 1, 1, 0)), To: ts(utcHour(2031, 1, 1, 0)), Granularity: statisticsv1.Granularity_GRANULARITY_DAY},
			want: nil,
		},
	}
	recount := h.recount(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Query(context.Background(), tc.req)
			require.NoError(t, err)
			if diff := cmp.Diff(&statisticsv1.QueryResponse{Rows: tc.want}, resp, protocmp.Transform()); diff != "" {
				t.Fatalf("rows differ (-want +got):\n%s", diff)
			}
			requireAgreesWithRecount(t, svc, tc.req, recount)
		})
	}
}

// requireAgreesWithRecount checks that Query gives the rows that the
// domain's aggregation gives over the recounted stream.
func requireAgreesWithRecount(t testing.TB, svc *Service, req *statisticsv1.QueryRequest, recount []domain.Record) {
	t.Helper()
	got, err := svc.queries.Query(context.Background(), req)
	require.NoError(t, err)
	rows, err := domain.Aggregate(domain.Query{
		From: req.GetFrom().AsTime(), To: req.GetTo().AsTime(), GroupBy: req.GetGroupBy(), Granularity: req.GetGranularity(),
		Publishable: req.GetPublishable(), SuppressBelow: domain.DefaultSuppressBelow, Location: mustStockholm(t),
	}, recount)
	require.NoError(t, err)
	if diff := cmp.Diff(&statisticsv1.QueryResponse{Rows: app.RowsToProto(rows)}, got, protocmp.Transform()); diff != "" {
		t.Fatalf("Query disagrees with a recount of the stream (-recount +query):\n%s", diff)
	}
}

func mustStockholm(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(TimeZone)
	require.NoError(t, err)
	return loc
}

func TestQueryRefusesBadRanges(t *testing.T) {
	h := startHarness(t)
	svc := h.service(t, Config{})
	client := grpcClient(t, svc)
	from := utcHour(2026, 1, 1, 0)
	tests := []struct {
		name string
		req  *statisticsv1.QueryRequest
		msg  string
	}{
		{"from equals to", &statisticsv1.QueryRequest{From: ts(from), To: ts(from)}, "from must be before to"},
		{"from after to", &statisticsv1.QueryRequest{From: ts(from), To: ts(from.Add(-time.Hour))}, "from must be before to"},
		{"over ten years", &statisticsv1.QueryRequest{From: ts(from), To: ts(from.AddDate(10, 0, 1))}, "at most 10 years"},
		{"missing to", &statisticsv1.QueryRequest{From: ts(from)}, "required"},
		{"dimension twice", &statisticsv1.QueryRequest{From: ts(from), To: ts(from.Add(time.Hour)), GroupBy: []statisticsv1.Dimension{1, 1}}, "twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Query(context.Background(), tc.req)
			st, ok := status.FromError(err)
			require.True(t, ok)
			require.Equal(t, codes.InvalidArgument, st.Code(), st.Message())
			// A field rule (protovalidate) names the field in a
			// BadRequest detail; the domain's own checks say why in
			// the message.
			said := st.Message()
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range br.GetFieldViolations() {
						said += "; " + v.GetField() + ": " + v.GetDescription()
					}
				}
			}
			require.Contains(t, said, tc.msg)
		})
	}
	resp, err := client.Query(context.Background(), &statisticsv1.QueryRequest{From: ts(from), To: ts(from.AddDate(10, 0, 0))})
	require.NoError(t, err, "exactly ten years is allowed")
	require.Empty(t, resp.GetRows())
}

// TestStreamRecordsFromPosition reads the stream over gRPC from the start
// and from a position, then follows new versions.
func TestStreamRecordsFromPosition(t *testing.T) {
	h := startHarness(t)
	svc := h.service(t, Config{})
	running(t, svc)
	client := grpcClient(t, svc)
	rng := rand.New(rand.NewPCG(3, 4))
	h.randomHistory(t, rng, 12, svc)
	h.settled(t, svc)
	msgs := h.rawMessages(t)
	require.Greater(t, len(msgs), 12)

	receive := func(t *testing.T, stream interface {
		Recv() (*statisticsv1.StreamRecordsResponse, error)
	}, n int) []*statisticsv1.StreamRecordsResponse {
		t.Helper()
		var out []*statisticsv1.StreamRecordsResponse
		for range n {
			r, err := stream.Recv()
			require.NoError(t, err)
			out = append(out, r)
		}
		return out
	}
	tests := []struct {
		name  string
		after uint64
	}{
		{"from the beginning", 0},
		{"from a position", uint64(len(msgs) / 2)},
		{"from the end", uint64(len(msgs))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st, err := client.StreamRecords(ctx, &statisticsv1.StreamRecordsRequest{AfterSequence: tc.after})
			require.NoError(t, err)
			got := receive(t, st, len(msgs)-int(tc.after))
			for i, r := range got {
				want := msgs[int(tc.after)+i]
				require.Equal(t, want.Seq, r.GetSequence())
				wantRec, err := decodeRaw(want.Data)
				require.NoError(t, err)
				require.True(t, proto.Equal(wantRec, r.GetRecord()), "sequence %d", want.Seq)
			}
			// New versions follow.
			id := newCaseID()
			h.appendEvents(t, id, registered(id, casev1.CaseType_CASE_TYPE_BREV, casev1.Channel_CHANNEL_LETTER, "cat-new", t0()))
			next := receive(t, st, 1)[0]
			require.Equal(t, "cat-new", next.GetRecord().GetCategory())
			msgs = h.rawMessages(t)
			require.Equal(t, msgs[len(msgs)-1].Seq, next.GetSequence())
			// The client goes away: the stream ends.
			cancel()
			_, err = st.Recv()
			require.Error(t, err)
			require.NotErrorIs(t, err, io.EOF)
		})
	}
	// With stop_at_end the call ends once it has sent what the stream
	// held when it began, so a report knows it has every record.
	for _, after := range []uint64{0, 2, uint64(len(h.rawMessages(t)))} {
		t.Run(fmt.Sprintf("up to the end after %d", after), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			msgs := h.rawMessages(t)
			st, err := client.StreamRecords(ctx, &statisticsv1.StreamRecordsRequest{AfterSequence: after, StopAtEnd: true})
			require.NoError(t, err)
			var got []*statisticsv1.StreamRecordsResponse
			for {
				r, err := st.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				require.NoError(t, err)
				got = append(got, r)
			}
			require.Len(t, got, len(msgs)-int(after))
			for i, r := range got {
				want := msgs[int(after)+i]
				require.Equal(t, want.Seq, r.GetSequence())
				wantRec, err := decodeRaw(want.Data)
				require.NoError(t, err)
				require.True(t, proto.Equal(wantRec, r.GetRecord()), "sequence %d", want.Seq)
			}
		})
	}
}

// TestQueryAgreesWithRecount runs a random history (with deletions) and
// compares many queries with a recount of the stream.
func TestQueryAgreesWithRecount(t *testing.T) {
	h := startHarness(t)
	svc := h.service(t, Config{})
	running(t, svc)
	rng := rand.New(rand.NewPCG(7, 7))
	h.randomHistory(t, rng, 150, svc)
	h.settled(t, svc)
	recount := h.recount(t)
	require.Len(t, recount, 150)
	require.Equal(t, recount, storeRecords(t, svc))
	dims := []statisticsv1.Dimension{1, 2, 3, 4, 5}
	for i := range 40 {
		rng.Shuffle(len(dims), func(a, b int) { dims[a], dims[b] = dims[b], dims[a] })
		from := utcHour(2026, time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24))
		req := &statisticsv1.QueryRequest{
			From: ts(from), To: ts(from.Add(time.Duration(1+rng.IntN(400*24)) * time.Hour)),
			GroupBy:     append([]statisticsv1.Dimension(nil), dims[:rng.IntN(len(dims)+1)]...),
			Granularity: statisticsv1.Granularity(rng.IntN(4)),
			Publishable: rng.IntN(2) == 0,
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) { requireAgreesWithRecount(t, svc, req, recount) })
	}
}
