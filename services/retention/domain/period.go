package domain

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// maxPeriodComponent bounds each number of a period, so NominalDays cannot
// overflow and a typo such as "20000y" is caught rather than obeyed.
const maxPeriodComponent = 10000

// Period is a retention period in calendar units, as the municipalities'
// plans write them ("3 månader", "2 år"). It is kept in years, months and
// days rather than as a duration, because "2 år" after 29 February or "6
// månader" after 31 August mean calendar arithmetic, not a count of hours.
type Period struct {
	Years, Months, Days int
}

// ParsePeriod reads a period such as "90d", "6m", "2y" or "1y6m": one or
// more components, each a non-negative number followed by y (years), m
// (months) or d (days), in that order and each at most once. "0d" is the
// empty period. Anything else is refused with ErrInvalidPeriod, because a
// period that is guessed at decides when citizens' data disappears.
func ParsePeriod(s string) (Period, error) {
	if s == "" {
		return Period{}, fmt.Errorf("%w: empty (write for example 90d, 6m, 2y or 1y6m)", ErrInvalidPeriod)
	}
	if strings.HasPrefix(s, "-") {
		return Period{}, fmt.Errorf("%w: %q is negative", ErrInvalidPeriod, s)
	}
	var p Period
	rest := s
	last := -1 // index in "ymd" of the last unit read
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return Period{}, fmt.Errorf("%w: %q: expected a number at %q", ErrInvalidPeriod, s, rest)
		}
		if i == len(rest) {
			return Period{}, fmt.Errorf("%w: %q: the number %s has no unit (y, m or d)", ErrInvalidPeriod, s, rest)
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n > maxPeriodComponent {
			return Period{}, fmt.Errorf("%w: %q: %s is too large (at most %d)", ErrInvalidPeriod, s, rest[:i], maxPeriodComponent)
		}
		unit := strings.IndexByte("ymd", rest[i])
		if unit < 0 {
			return Period{}, fmt.Errorf("%w: %q: unknown unit %q (use y, m or d)", ErrInvalidPeriod, s, rest[i:i+1])
		}
		if unit <= last {
			return Period{}, fmt.Errorf("%w: %q: write y, m and d in that order, each at most once", ErrInvalidPeriod, s)
		}
		last = unit
		switch unit {
		case 0:
			p.Years = n
		case 1:
			p.Months = n
		case 2:
			p.Days = n
		}
		rest = rest[i+1:]
	}
	return p, nil
}

// After returns the time the period ends when it starts at t. It uses
// calendar arithmetic (time.AddDate), so the result follows t's location;
// the times folded from events are in UTC.
func (p Period) After(t time.Time) time.Time {
	return t.AddDate(p.Years, p.Months, p.Days)
}

// String gives the canonical form that ParsePeriod reads back: the
// non-zero components in the order y, m, d, or "0d" for the empty period.
func (p Period) String() string {
	var b strings.Builder
	if p.Years != 0 {
		b.WriteString(strconv.Itoa(p.Years) + "y")
	}
	if p.Months != 0 {
		b.WriteString(strconv.Itoa(p.Months) + "m")
	}
	if p.Days != 0 || b.Len() == 0 {
		b.WriteString(strconv.Itoa(p.Days) + "d")
	}
	return b.String()
}

// NominalDays is the period's length counting a year as 365 days and a
// month as 30. It is for display (PlanRule.period_days) and for comparing
// two periods when a plan is checked, never for computing a deadline,
// which After does with the calendar.
func (p Period) NominalDays() int {
	return 365*p.Years + 30*p.Months + p.Days
}
