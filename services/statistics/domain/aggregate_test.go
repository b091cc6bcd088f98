package domain

import (
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
)

func stockholm(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Stockholm")
	require.NoError(t, err)
	return loc
}

func utc(y int, m time.Month, d, h int) time.Time { return time.Date(y, m, d, h, 0, 0, 0, time.UTC) }

func TestBucketStart(t *testing.T) {
	loc := stockholm(t)
	day, week, month := statisticsv1.Granularity_GRANULARITY_DAY, statisticsv1.Granularity_GRANULARITY_WEEK, statisticsv1.Granularity_GRANULARITY_MONTH
	tests := []struct {
		name string
		at   time.Time
		g    statisticsv1.Granularity
		want time.Time
	}{
		{"day in winter", utc(2026, 1, 14, 12), day, utc(2026, 1, 13, 23)},
		{"late UTC evening is the next local day", utc(2026, 1, 14, 23), day, utc(2026, 1, 14, 23)},
		{"day of the spring DST change", utc(2026, 3, 29, 12), day, utc(2026, 3, 28, 23)},
		{"day after the spring DST change", utc(2026, 3, 30, 0), day, utc(2026, 3, 29, 22)},
		{"day in summer", utc(2026, 7, 1, 21), day, utc(2026, 6, 30, 22)},
		{"ISO week starts on Monday", utc(2026, 1, 8, 10), week, utc(2026, 1, 4, 23)},
		{"Sunday belongs to the week before", utc(2026, 1, 11, 22), week, utc(2026, 1, 4, 23)},
		{"Sunday 23:00 UTC is Monday in Stockholm", utc(2026, 1, 11, 23), week, utc(2026, 1, 11, 23)},
		{"week across the DST change", utc(2026, 3, 31, 9), week, utc(2026, 3, 29, 22)},
		{"week across a year", utc(2026, 1, 1, 9), week, utc(2025, 12, 28, 23)},
		{"month", utc(2026, 2, 17, 9), month, utc(2026, 1, 31, 23)},
		{"month after autumn DST change", utc(2026, 10, 31, 23), month, utc(2026, 10, 31, 23)},
		{"month in summer", utc(2026, 8, 31, 21), month, utc(2026, 7, 31, 22)},
		{"unspecified keeps the time", utc(2026, 8, 31, 21), statisticsv1.Granularity_GRANULARITY_UNSPECIFIED, utc(2026, 8, 31, 21)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := BucketStart(tc.at, tc.g, loc)
			require.True(t, tc.want.Equal(got), "want %s, got %s", tc.want, got.UTC())
		})
	}
}

func TestQuantile(t *testing.T) {
	min := func(n int64) int64 { return n * int64(time.Minute) }
	tests := []struct {
		name      string
		xs        []int64
		num, den  uint64
		want      int64
		wantEmpty bool
	}{
		{"empty", nil, 1, 2, 0, true},
		{"one value", []int64{7}, 9, 10, 7, false},
		{"median of an odd count", []int64{min(5), min(1), min(3)}, 1, 2, min(3), false},
		{"median of an even count is the mean of the middle two", []int64{min(4), min(1), min(3), min(2)}, 1, 2, min(2) + min(1)/2, false},
		{"p90 interpolates", []int64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}, 9, 10, 91, false},
		{"p90 of five", []int64{min(60), min(10), min(50), min(20), min(40)}, 9, 10, min(56), false},
		{"rounds half up", []int64{1, 2}, 1, 2, 2, false},
		{"all equal", slices.Repeat([]int64{3}, 100), 9, 10, 3, false},
		{"max", []int64{3, 1, 2}, 1, 1, 3, false},
		{"min", []int64{3, 1, 2}, 0, 1, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Quantile(slices.Clone(tc.xs), tc.num, tc.den))
		})
	}
}

// refQuantile computes the same definition by sorting, in exact rational
// arithmetic.
func refQuantile(xs []int64, num, den uint64) int64 {
	s := slices.Sorted(slices.Values(xs))
	h := new(big.Rat).SetFrac(new(big.Int).SetUint64(uint64(len(s)-1)*num), new(big.Int).SetUint64(den))
	k := new(big.Int).Quo(h.Num(), h.Denom()).Int64()
	frac := new(big.Rat).Sub(h, new(big.Rat).SetInt64(k))
	if frac.Sign() == 0 {
		return s[k]
	}
	v := new(big.Rat).Mul(frac, new(big.Rat).SetInt64(s[k+1]-s[k]))
	v.Add(v, big.NewRat(1, 2)) // round half up
	return s[k] + new(big.Int).Quo(v.Num(), v.Denom()).Int64()
}

func TestQuantileMatchesSorting(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		// Few distinct values make many ties, which a selection must handle.
		xs := rapid.SliceOfN(rapid.Int64Range(0, rapid.Int64Range(1, 1<<45).Draw(t, "spread")), 1, 400).Draw(t, "xs")
		den := rapid.Uint64Range(1, 100).Draw(t, "den")
		num := rapid.Uint64Range(0, den).Draw(t, "num")
		want := refQuantile(xs, num, den)
		got := Quantile(slices.Clone(xs), num, den)
		if got != want {
			t.Fatalf("quantile %d/%d of %v: got %d, want %d", num, den, xs, got, want)
		}
	})
}

// fact builds the facts of one record registered at hour h.
func fact(h time.Time, typ casev1.CaseType, ttfr, ttc time.Duration, fcr bool) Record {
	r := Record{StatisticsID: h.String(), Version: 1, Type: typ, Channel: casev1.Channel_CHANNEL_PHONE, RegisteredHour: h, FirstContactResolution: fcr}
	if ttfr > 0 {
		r.TimeToFirstResponse, r.HasFirstResponse = ttfr, true
	}
	if ttc > 0 {
		r.TimeToClose, r.HasClose = ttc, true
	}
	return r
}

func TestAggregateHandComputed(t *testing.T) {
	loc := stockholm(t)
	fraga, brev := casev1.CaseType_CASE_TYPE_FRAGA, casev1.CaseType_CASE_TYPE_BREV
	m := time.Minute
	records := []Record{
		fact(utc(2026, 1, 5, 10), fraga, 10*m, time.Hour, true),
		fact(utc(2026, 1, 20, 10), fraga, 20*m, 2*time.Hour, false),
		fact(utc(2026, 1, 31, 23), fraga, 30*m, 0, false), // 1 February in Stockholm
		fact(utc(2026, 1, 10, 10), fraga, 40*m, 0, false),
		fact(utc(2026, 1, 3, 10), brev, 0, 0, false),
		fact(utc(2026, 1, 12, 10), fraga, 50*m, 4*time.Hour, false),
		fact(utc(2025, 12, 31, 22), fraga, 5*m, 0, false),  // 31 December in Stockholm: outside
		fact(utc(2025, 12, 31, 23), fraga, 60*m, 0, false), // 1 January in Stockholm
		fact(utc(2026, 2, 28, 23), fraga, 60*m, 0, false),  // 1 March in Stockholm: outside
	}
	jan, feb := utc(2025, 12, 31, 23), utc(2026, 1, 31, 23)
	q := Query{
		From: jan, To: utc(2026, 2, 28, 23),
		GroupBy:     []statisticsv1.Dimension{statisticsv1.Dimension_DIMENSION_TYPE},
		Granularity: statisticsv1.Granularity_GRANULARITY_MONTH, Location: loc,
	}
	janFraga := Row{
		Keys: []string{"CASE_TYPE_FRAGA"}, Count: 5, FirstContactResolved: 1, Closed: 3,
		// First responses 10, 20, 40, 50, 60 min; closes 1, 2, 4 h.
		MedianTTFR: 40 * m, P90TTFR: 56 * m, HasTTFR: true,
		MedianTTC: 2 * time.Hour, P90TTC: 3*time.Hour + 36*m, HasTTC: true,
	}
	tests := []struct {
		name  string
		query func(q *Query)
		want  []Row
	}{
		{
			name: "by month and type",
			want: []Row{
				{BucketStart: jan, Keys: []string{"CASE_TYPE_BREV"}, Count: 1},
				withBucket(janFraga, jan),
				{BucketStart: feb, Keys: []string{"CASE_TYPE_FRAGA"}, Count: 1, MedianTTFR: 30 * m, P90TTFR: 30 * m, HasTTFR: true},
			},
		},
		{
			name:  "publishable suppresses cells below five",
			query: func(q *Query) { q.Publishable, q.SuppressBelow = true, 5 },
			want: []Row{
				{BucketStart: jan, Keys: []string{"CASE_TYPE_BREV"}, Suppressed: true},
				withBucket(janFraga, jan),
				{BucketStart: feb, Keys: []string{"CASE_TYPE_FRAGA"}, Suppressed: true},
			},
		},
		{
			name:  "a higher k suppresses the five too",
			query: func(q *Query) { q.Publishable, q.SuppressBelow = true, 6 },
			want: []Row{
				{BucketStart: jan, Keys: []string{"CASE_TYPE_BREV"}, Suppressed: true},
				{BucketStart: jan, Keys: []string{"CASE_TYPE_FRAGA"}, Suppressed: true},
				{BucketStart: feb, Keys: []string{"CASE_TYPE_FRAGA"}, Suppressed: true},
			},
		},
		{
			name:  "one bucket for the whole range, starting at from",
			query: func(q *Query) { q.Granularity, q.GroupBy = statisticsv1.Granularity_GRANULARITY_UNSPECIFIED, nil },
			want: []Row{{
				BucketStart: jan, Keys: []string{}, Count: 7, FirstContactResolved: 1, Closed: 3,
				// 10, 20, 30, 40, 50, 60 min: median 35, p90 at rank 4.5 = 55.
				MedianTTFR: 35 * m, P90TTFR: 55 * m, HasTTFR: true,
				MedianTTC: 2 * time.Hour, P90TTC: 3*time.Hour + 36*m, HasTTC: true,
			}},
		},
		{
			name:  "a narrower range",
			query: func(q *Query) { q.From, q.To = utc(2026, 1, 10, 10), utc(2026, 1, 20, 10) },
			want: []Row{{
				BucketStart: jan, Keys: []string{"CASE_TYPE_FRAGA"}, Count: 2, Closed: 1,
				MedianTTFR: 45 * m, P90TTFR: 49 * m, HasTTFR: true,
				MedianTTC: 4 * time.Hour, P90TTC: 4 * time.Hour, HasTTC: true,
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := q
			if tc.query != nil {
				tc.query(&q)
			}
			rows, err := Aggregate(q, records)
			require.NoError(t, err)
			requireRows(t, tc.want, rows)
		})
	}
}

func withBucket(r Row, b time.Time) Row {
	r.BucketStart = b
	return r
}

// requireRows compares rows, with bucket starts compared as instants.
func requireRows(t *testing.T, want, got []Row) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		require.True(t, want[i].BucketStart.Equal(got[i].BucketStart), "row %d: bucket %s, want %s", i, got[i].BucketStart.UTC(), want[i].BucketStart)
		w, g := want[i], got[i]
		w.BucketStart, g.BucketStart = time.Time{}, time.Time{}
		if len(w.Keys) == 0 {
			w.Keys = nil
		}
		if len(g.Keys) == 0 {
			g.Keys = nil
		}
		require.Equal(t, w, g, "row %d", i)
	}
}

func TestAggregateGroupsAndSorts(t *testing.T) {
	loc := stockholm(t)
	mk := func(day int, typ casev1.CaseType, ch casev1.Channel, cat, queue, dept string) Record {
		return Record{StatisticsID: string(rune('a' + day)), Type: typ, Channel: ch, Category: cat, Queue: queue, Department: dept, RegisteredHour: utc(2026, 5, day, 8)}
	}
	records := []Record{
		mk(4, casev1.CaseType_CASE_TYPE_SYNPUNKT, casev1.Channel_CHANNEL_EMAIL, "avfall", "kund", ""),
		mk(5, casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_EMAIL, "avfall", "kund", "Miljö"),
		mk(5, casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_PHONE, "avfall", "kund", "Miljö"),
		mk(11, casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_PHONE, "gata", "kundtjanst", ""),
		mk(12, casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_PHONE, "gata", "kund", ""),
	}
	week1, week2 := utc(2026, 5, 3, 22), utc(2026, 5, 10, 22) // Mondays 4 and 11 May, CEST
	tests := []struct {
		name  string
		group []statisticsv1.Dimension
		want  []Row
	}{
		{
			name:  "type and channel",
			group: []statisticsv1.Dimension{statisticsv1.Dimension_DIMENSION_TYPE, statisticsv1.Dimension_DIMENSION_CHANNEL},
			want: []Row{
				{BucketStart: week1, Keys: []string{"CASE_TYPE_FRAGA", "CHANNEL_EMAIL"}, Count: 1},
				{BucketStart: week1, Keys: []string{"CASE_TYPE_FRAGA", "CHANNEL_PHONE"}, Count: 1},
				{BucketStart: week1, Keys: []string{"CASE_TYPE_SYNPUNKT", "CHANNEL_EMAIL"}, Count: 1},
				{BucketStart: week2, Keys: []string{"CASE_TYPE_FRAGA", "CHANNEL_PHONE"}, Count: 2},
			},
		},
		{
			name: "department, queue and category; empty department is its own key",
			group: []statisticsv1.Dimension{
				statisticsv1.Dimension_DIMENSION_DEPARTMENT, statisticsv1.Dimension_DIMENSION_QUEUE, statisticsv1.Dimension_DIMENSION_CATEGORY,
			},
			want: []Row{
				{BucketStart: week1, Keys: []string{"", "kund", "avfall"}, Count: 1},
				{BucketStart: week1, Keys: []string{"Miljö", "kund", "avfall"}, Count: 2},
				{BucketStart: week2, Keys: []string{"", "kund", "gata"}, Count: 1},
				{BucketStart: week2, Keys: []string{"", "kundtjanst", "gata"}, Count: 1},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := Aggregate(Query{
				From: utc(2026, 5, 1, 0), To: utc(2026, 6, 1, 0), GroupBy: tc.group,
				Granularity: statisticsv1.Granularity_GRANULARITY_WEEK, Location: loc,
			}, records)
			require.NoError(t, err)
			requireRows(t, tc.want, rows)
		})
	}
}

func TestQueryValidate(t *testing.T) {
	loc := stockholm(t)
	from := utc(2026, 1, 1, 0)
	ok := Query{From: from, To: from.AddDate(1, 0, 0), Location: loc}
	tests := []struct {
		name    string
		change  func(q *Query)
		wantErr string
	}{
		{"valid", func(*Query) {}, ""},
		{"exactly ten years", func(q *Query) { q.To = from.AddDate(10, 0, 0) }, ""},
		{"over ten years", func(q *Query) { q.To = from.AddDate(10, 0, 0).Add(time.Hour) }, "at most 10 years"},
		{"from equals to", func(q *Query) { q.To = from }, "from must be before to"},
		{"from after to", func(q *Query) { q.To = from.Add(-time.Hour) }, "from must be before to"},
		{"missing from", func(q *Query) { q.From = time.Time{} }, "required"},
		{"unspecified dimension", func(q *Query) { q.GroupBy = []statisticsv1.Dimension{0} }, "not a dimension"},
		{"unknown dimension", func(q *Query) { q.GroupBy = []statisticsv1.Dimension{42} }, "not a dimension"},
		{"dimension twice", func(q *Query) {
			q.GroupBy = []statisticsv1.Dimension{statisticsv1.Dimension_DIMENSION_TYPE, statisticsv1.Dimension_DIMENSION_TYPE}
		}, "twice"},
		{"unknown granularity", func(q *Query) { q.Granularity = 9 }, "granularity"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := ok
			tc.change(&q)
			err := q.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidQuery)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}
