package domain

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParsePeriod(t *testing.T) {
	tests := []struct {
		in      string
		want    Period
		canon   string
		nominal int
	}{
		{"90d", Period{Days: 90}, "90d", 90},
		{"30d", Period{Days: 30}, "30d", 30},
		{"6m", Period{Months: 6}, "6m", 180},
		{"2y", Period{Years: 2}, "2y", 730},
		{"1y6m", Period{Years: 1, Months: 6}, "1y6m", 545},
		{"1y2m3d", Period{Years: 1, Months: 2, Days: 3}, "1y2m3d", 428},
		{"0d", Period{}, "0d", 0},
		{"0y3m", Period{Months: 3}, "3m", 90},
		{"007d", Period{Days: 7}, "7d", 7},
		{"10000y", Period{Years: 10000}, "10000y", 3650000},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParsePeriod(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.want, p)
			require.Equal(t, tt.canon, p.String())
			require.Equal(t, tt.nominal, p.NominalDays())
			back, err := ParsePeriod(p.String())
			require.NoError(t, err)
			require.Equal(t, p, back)
		})
	}
}

func TestParsePeriodRefuses(t *testing.T) {
	tests := []struct {
		in     string
		reason string
	}{
		{"", "empty"},
		{"-1d", "negative"},
		{"-0d", "negative"},
		{"90", "has no unit"},
		{"d", "expected a number"},
		{"1y-2m", "expected a number"},
		{"3 months", "unknown unit"},
		{"3w", "unknown unit"},
		{"90D", "unknown unit"},
		{"6m1y", "in that order"},
		{"1d1d", "in that order"},
		{"1y1y", "in that order"},
		{"10001y", "too large"},
		{"99999999999999999999d", "too large"},
		{" 90d", "expected a number"},
		{"1.5y", "unknown unit"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParsePeriod(tt.in)
			require.ErrorIs(t, err, ErrInvalidPeriod)
			require.ErrorContains(t, err, tt.reason)
		})
	}
}

func TestPeriodAfterUsesTheCalendar(t *testing.T) {
	tests := []struct {
		name   string
		period string
		from   time.Time
		want   time.Time
	}{
		{"90 days", "90d", date(2026, 1, 15), date(2026, 4, 15)},
		{"two years from a leap day", "2y", date(2024, 2, 29), date(2026, 3, 1)},
		{"six months", "6m", date(2026, 8, 15), date(2027, 2, 15)},
		{"one and a half years", "1y6m", date(2026, 1, 1), date(2027, 7, 1)},
		{"nothing", "0d", date(2026, 1, 1), date(2026, 1, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePeriod(tt.period)
			require.NoError(t, err)
			require.Equal(t, tt.want, p.After(tt.from))
		})
	}
}

// date is midnight UTC of a day, for tests.
func date(y int, m time.Month, d int) time.Time {
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
