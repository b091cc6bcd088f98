package identity

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The tests in this file run the parser over Skatteverket's published test
// numbers (testdata/skatteverket, see its README): every personnummer and
// samordningsnummer in every notation Skatteverket and registers use, and
// the personnummer project's own table of valid and invalid notations.
// What each number must give is worked out here from its twelve digits
// with the rules as Skatteverket states them, independently of the
// parser: the separator from the calendar year of the hundredth birthday
// (18 § folkbokföringslagen), month 00 and day field 60 as unknown, and
// the 130-year bound computed with time.AddDate.

// readTestList reads one of the JSON files in testdata/skatteverket,
// gunzipping it when its name ends in .gz.
func readTestList(t testing.TB, name string, v any) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "skatteverket", name))
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	var r io.Reader = f
	if strings.HasSuffix(name, ".gz") {
		gz, err := gzip.NewReader(f)
		require.NoError(t, err)
		t.Cleanup(func() { _ = gz.Close() })
		r = gz
	}
	require.NoError(t, json.NewDecoder(r).Decode(v))
}

// publishedNumber is what a twelve-digit test number says, read field by
// field.
type publishedNumber struct {
	twelve       string
	year         int
	month        int // 0: unknown
	day          int // real day; 0: unknown
	coordination bool
}

func readPublished(t testing.TB, twelve string) publishedNumber {
	t.Helper()
	require.Len(t, twelve, 12)
	n := publishedNumber{twelve: twelve}
	var err error
	n.year, err = strconv.Atoi(twelve[0:4])
	require.NoError(t, err)
	n.month, err = strconv.Atoi(twelve[4:6])
	require.NoError(t, err)
	n.day, err = strconv.Atoi(twelve[6:8])
	require.NoError(t, err)
	if n.day >= 60 {
		n.coordination = true
		n.day -= 60
	}
	return n
}

// exists says whether the date, where the number gives it whole, is in
// the calendar. Skatteverket's test samordningsnummer hold 24 that are not
// (30 February, 31 April, ...); Skatteverket confirmed to the maintainers
// of ActiveLogin.Identity that such numbers are not valid and that the
// test data is wrong there, while month 00 and day field 60 are
// (https://github.com/ActiveLogin/ActiveLogin.Identity/issues/126; the
// same 24 numbers are listed in its pull request #132).
func (n publishedNumber) exists() bool {
	if n.month == 0 || n.day == 0 {
		return true
	}
	d := time.Date(n.year, time.Month(n.month), n.day, 0, 0, 0, 0, time.UTC)
	return d.Month() == time.Month(n.month) && d.Day() == n.day
}

// latestBirth is the last day the person can have been born on.
func (n publishedNumber) latestBirth() time.Time {
	switch {
	case n.month == 0:
		if n.day == 0 {
			return time.Date(n.year, time.December, 31, 0, 0, 0, 0, time.UTC)
		}
		return time.Date(n.year, time.December, n.day, 0, 0, 0, 0, time.UTC)
	case n.day == 0:
		return time.Date(n.year, time.Month(n.month)+1, 0, 0, 0, 0, 0, time.UTC)
	}
	return time.Date(n.year, time.Month(n.month), n.day, 0, 0, 0, 0, time.UTC)
}

// today is the Swedish calendar date of now, as a UTC midnight.
func today(t testing.TB, now time.Time) time.Time {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Stockholm")
	require.NoError(t, err)
	y, m, d := now.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// plausible says whether the person is at most 130 years old today: their
// latest possible 130th birthday is today or later.
func (n publishedNumber) plausible(today time.Time) bool {
	return !n.latestBirth().AddDate(130, 0, 0).Before(today)
}

// separator is the one Skatteverket prints in the ten-digit form in
// today's year.
func (n publishedNumber) separator(today time.Time) string {
	if today.Year()-n.year >= 100 {
		return "+"
	}
	return "-"
}

// listTally counts what a run over a list saw, for the log.
type listTally struct {
	numbers, accepted, refusedAsTooOld, refusedAsNoDate int
	notations                                           int
}

// checkPublished parses every notation of one published number at now
// and checks the outcome against the independent expectation.
func checkPublished(t *testing.T, n publishedNumber, now, day time.Time, tally *listTally) {
	t.Helper()
	ten := n.twelve[2:]
	sep := n.separator(day)
	tally.numbers++

	// The checks below run about a million times; plain comparisons with
	// t.Fatalf keep the run to a few seconds, where require's reflection
	// took ten.
	want := func(in string) {
		t.Helper()
		tally.notations++
		p, err := ParsePersonalNumber(in, now)
		switch {
		case !n.exists():
			if !errors.Is(err, ErrInvalidPersonalNumber) || !strings.HasSuffix(err.Error(), ": not a date") {
				t.Fatalf("%q at %s: got %v, want not a date", in, day.Format(time.DateOnly), err)
			}
			return
		case !n.plausible(day):
			if !errors.Is(err, ErrInvalidPersonalNumber) || !strings.HasSuffix(err.Error(), ": born more than a hundred and thirty years ago") {
				t.Fatalf("%q at %s: got %v, want born more than 130 years ago", in, day.Format(time.DateOnly), err)
			}
			return
		case err != nil:
			t.Fatalf("%q at %s: %v", in, day.Format(time.DateOnly), err)
		}
		birth, known := p.BirthDate()
		wantKnown := n.month != 0 && n.day != 0
		if p.Normalised() != n.twelve || p.Coordination != n.coordination || p.BirthYear() != n.year || known != wantKnown ||
			(known && !birth.Equal(time.Date(n.year, time.Month(n.month), n.day, 0, 0, 0, 0, time.UTC))) {
			t.Fatalf("%q at %s: normalised %s, coordination %t, born %d (%s, known %t); want %s, %t, %d",
				in, day.Format(time.DateOnly), p.Normalised(), p.Coordination, p.BirthYear(), birth.Format(time.DateOnly), known,
				n.twelve, n.coordination, n.year)
		}
	}

	// The forms that carry the century, and the ten-digit form as
	// Skatteverket writes it this year; blanks from a copy and paste
	// change nothing.
	want(n.twelve)
	want(n.twelve[:8] + "-" + n.twelve[8:])
	want(ten[:6] + sep + ten[6:])
	want(" \u00a0" + ten[:6] + sep + ten[6:] + "\t\n")
	if sep == "+" {
		want(n.twelve[:8] + "+" + n.twelve[8:])
	} else {
		want(ten)
		// A twelve-digit '+' for someone who turns 100 after this year
		// contradicts the century it states.
		tally.notations++
		in := n.twelve[:8] + "+" + n.twelve[8:]
		if _, err := ParsePersonalNumber(in, now); err == nil || !strings.HasSuffix(err.Error(), ": plus sign but the person turns a hundred after this year") {
			t.Fatalf("%q at %s: got %v, want the plus refused", in, day.Format(time.DateOnly), err)
		}
	}

	// The ten-digit form with the other separator, or none where '+' is
	// due, names a person a century apart: never this one.
	wrong := "+"
	if sep == "+" {
		wrong = "-"
	}
	for _, in := range []string{ten[:6] + wrong + ten[6:], map[string]string{"+": ten, "-": ""}[sep]} {
		if in == "" {
			continue
		}
		tally.notations++
		p, err := ParsePersonalNumber(in, now)
		if err == nil && p.Normalised() == n.twelve {
			t.Fatalf("%q at %s names the same person under both separators", in, day.Format(time.DateOnly))
		}
	}

	switch {
	case !n.exists():
		tally.refusedAsNoDate++
	case n.plausible(day):
		tally.accepted++
	default:
		tally.refusedAsTooOld++
	}
}

// The clocks the lists are checked at: the test's usual date, January
// 2024 (the lists hold births up to 31 December 2023; Skatteverket adds a
// year each January), and New Year's morning 2026 in Sweden, which is
// still 2025 in UTC.
func listClocks() map[string]time.Time {
	return map[string]time.Time{
		"2026-03-15":              testNow(),
		"2024-01-15":              time.Date(2024, time.January, 15, 12, 0, 0, 0, time.UTC),
		"2026-01-01 00:30 Sweden": time.Date(2025, time.December, 31, 23, 30, 0, 0, time.UTC),
	}
}

func TestSkatteverketTestpersonnummer(t *testing.T) {
	var list []string
	readTestList(t, "allPins.json.gz", &list)
	require.Len(t, list, 41129, "the published list is the one the README describes")
	for label, now := range listClocks() {
		t.Run(label, func(t *testing.T) {
			var tally listTally
			day := today(t, now)
			for _, twelve := range list {
				n := readPublished(t, twelve)
				require.False(t, n.coordination, "%s is in the personnummer list", twelve)
				require.NotZero(t, n.month, "%s", twelve)
				require.NotZero(t, n.day, "%s", twelve)
				checkPublished(t, n, now, day, &tally)
			}
			require.Equal(t, len(list), tally.accepted+tally.refusedAsTooOld)
			require.Zero(t, tally.refusedAsNoDate, "every published personnummer has a real date")
			t.Logf("%d personnummer in %d notations: %d accepted, %d refused as born more than 130 years ago",
				tally.numbers, tally.notations, tally.accepted, tally.refusedAsTooOld)
		})
	}
}

func TestSkatteverketTestsamordningsnummer(t *testing.T) {
	var list []string
	readTestList(t, "allCoords.json", &list)
	require.Len(t, list, 2264, "the published list is the one the README describes")
	unknown := 0
	for _, twelve := range list {
		if n := readPublished(t, twelve); n.month == 0 || n.day == 0 {
			unknown++
		}
	}
	require.Equal(t, 170, unknown, "samordningsnummer with month 00 or day field 60")
	for label, now := range listClocks() {
		t.Run(label, func(t *testing.T) {
			var tally listTally
			day := today(t, now)
			for _, twelve := range list {
				n := readPublished(t, twelve)
				require.True(t, n.coordination, "%s is in the samordningsnummer list", twelve)
				checkPublished(t, n, now, day, &tally)
			}
			require.Equal(t, len(list), tally.accepted+tally.refusedAsTooOld+tally.refusedAsNoDate)
			require.Equal(t, 24, tally.refusedAsNoDate, "the test data's samordningsnummer on days that do not exist")
			t.Logf("%d samordningsnummer (%d with an unknown month or day) in %d notations: %d accepted, %d refused as born more than 130 years ago, %d as not a date",
				tally.numbers, unknown, tally.notations, tally.accepted, tally.refusedAsTooOld, tally.refusedAsNoDate)
		})
	}
}

// listEntry is one entry of the personnummer project's list.json: one
// number in five notations and whether it is valid.
type listEntry struct {
	Integer         int64  `json:"integer"`
	LongFormat      string `json:"long_format"`
	ShortFormat     string `json:"short_format"`
	SeparatedFormat string `json:"separated_format"`
	SeparatedLong   string `json:"separated_long"`
	Valid           bool   `json:"valid"`
	Type            string `json:"type"`
}

// TestPersonnummerProjectList runs the personnummer project's table
// (list.json) at a date when its separators are still right (the list
// was generated in 2023; none of its people crosses the hundred-year line
// between then and 2026). Every notation must be valid or invalid as the
// table says and, when valid, normalise to long_format — except the
// ten-digit form without a separator of a person over 100, which reads as
// the person a century younger (as the '-' form does).
func TestPersonnummerProjectList(t *testing.T) {
	var list []listEntry
	readTestList(t, "list.json", &list)
	require.Len(t, list, 14)
	now := testNow()
	valid, invalid := 0, 0
	for i, e := range list {
		notations := []string{e.LongFormat, e.ShortFormat, e.SeparatedFormat, e.SeparatedLong}
		if e.Integer != 0 {
			notations = append(notations, strconv.FormatInt(e.Integer, 10))
		}
		for _, in := range notations {
			t.Run(fmt.Sprintf("%d/%s", i, in), func(t *testing.T) {
				p, err := ParsePersonalNumber(in, now)
				if !e.Valid {
					invalid++
					require.ErrorIs(t, err, ErrInvalidPersonalNumber)
					return
				}
				valid++
				require.NoError(t, err)
				require.Equal(t, e.Type == "con", p.Coordination)
				want := e.LongFormat
				if in == e.ShortFormat && strings.Contains(e.SeparatedFormat, "+") {
					century, err := strconv.Atoi(e.LongFormat[:2])
					require.NoError(t, err)
					want = strconv.Itoa(century+1) + e.LongFormat[2:]
				}
				require.Equal(t, want, p.Normalised())
			})
		}
	}
	require.Positive(t, valid)
	require.Positive(t, invalid)
	t.Logf("list.json: %d entries, %d notations valid and %d invalid as the table says", len(list), valid, invalid)
}
