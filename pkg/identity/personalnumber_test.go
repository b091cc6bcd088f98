package identity

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testNow is the fixed clock of the personal number tests: 15 March 2026.
func testNow() time.Time {
	return time.Date(2026, time.March, 15, 12, 0, 0, 0, time.UTC)
}

// luhnValid is the textbook Luhn test over a whole ten-digit number, written
// independently of the package's check digit computation: from the right,
// every second digit is doubled, and the digit sum must be a multiple of 10.
func luhnValid(ten string) bool {
	sum := 0
	for i := 0; i < len(ten); i++ {
		d := int(ten[len(ten)-1-i] - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d = d/10 + d%10
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// withCheck completes a number whose last digit is missing by trying every
// digit against luhnValid. The prefix is a ten-digit form without its check
// digit (YYMMDD-NNN, YYMMDD+NNN) or a twelve-digit one (YYYYMMDD-NNN).
func withCheck(t testing.TB, prefix string) string {
	t.Helper()
	ten := strings.NewReplacer("-", "", "+", "").Replace(prefix)
	if len(ten) == 11 {
		ten = ten[2:]
	}
	require.Len(t, ten, 9, "bad test prefix")
	for c := byte('0'); c <= '9'; c++ {
		if luhnValid(ten + string(c)) {
			return prefix + string(c)
		}
	}
	t.Fatal("no check digit found")
	return ""
}

// wrongCheck is withCheck with the check digit changed.
func wrongCheck(t testing.TB, prefix string) string {
	t.Helper()
	n := withCheck(t, prefix)
	last := n[len(n)-1]
	return n[:len(n)-1] + string('0'+(last-'0'+1)%10)
}

func TestLuhnHelperAgreesWithPublishedNumbers(t *testing.T) {
	// Skatteverket's well-known test numbers, so that the independent
	// helper is itself checked against an outside source.
	for _, ten := range []string{"1212121212", "0809032386", "8112189876"} {
		require.True(t, luhnValid(ten), ten)
	}
	require.False(t, luhnValid("1212121213"))
}

// digitsOf removes the separator of a notation.
func digitsOf(n string) string {
	return strings.NewReplacer("-", "", "+", "").Replace(n)
}

func TestParsePersonalNumberValid(t *testing.T) {
	tests := []struct {
		name         string
		in           string
		want         string
		birth        string // YYYY-MM-DD, or YYYY when the number does not give the whole date
		coordination bool
	}{
		{name: "twelve digits with dash", in: "19121212-1212", want: "191212121212", birth: "1912-12-12"},
		{name: "twelve digits", in: "191212121212", want: "191212121212", birth: "1912-12-12"},
		{name: "ten digits plus", in: "121212+1212", want: "191212121212", birth: "1912-12-12"},
		{name: "twelve digits plus when over a hundred", in: "19121212+1212", want: "191212121212", birth: "1912-12-12"},
		{name: "ten digits dash is this century", in: "121212-1212", want: "201212121212", birth: "2012-12-12"},
		{name: "ten digits no separator", in: "1212121212", want: "201212121212", birth: "2012-12-12"},
		{name: "published test number", in: "20080903-2386", want: "200809032386", birth: "2008-09-03"},
		{name: "published test number ten digits", in: "080903-2386", want: "200809032386", birth: "2008-09-03"},
		{name: "published test number eighties", in: "811218-9876", want: "198112189876", birth: "1981-12-18"},
		{name: "blanks trimmed", in: "  19121212-1212\t\n", want: "191212121212", birth: "1912-12-12"},
		{name: "no-break spaces trimmed", in: "\u00a019121212-1212\u202f", want: "191212121212", birth: "1912-12-12"},
		{name: "zero-width characters trimmed", in: "\ufeff\u200b121212+1212\u2060\u200e", want: "191212121212", birth: "1912-12-12"},
		{name: "leap day 2000", in: withCheck(t, "20000229-123"), want: digitsOf(withCheck(t, "20000229-123")), birth: "2000-02-29"},
		{name: "leap day 2000 ten digits", in: withCheck(t, "000229-123"), want: "20" + digitsOf(withCheck(t, "000229-123")), birth: "2000-02-29"},
		{name: "leap day 2024", in: withCheck(t, "20240229-987"), want: digitsOf(withCheck(t, "20240229-987")), birth: "2024-02-29"},
		{name: "born today", in: withCheck(t, "260315-001"), want: "20" + digitsOf(withCheck(t, "260315-001")), birth: "2026-03-15"},
		// Skatteverket's rule: '+' from the calendar year the person turns
		// 100, whether or not the birthday has come yet.
		{name: "plus in the year of the hundredth birthday, before it", in: withCheck(t, "261223+923"), want: "19" + digitsOf(withCheck(t, "261223+923")), birth: "1926-12-23"},
		{name: "plus on the hundredth birthday", in: withCheck(t, "260315+001"), want: "19" + digitsOf(withCheck(t, "260315+001")), birth: "1926-03-15"},
		{name: "plus the day after", in: withCheck(t, "260316+001"), want: "19" + digitsOf(withCheck(t, "260316+001")), birth: "1926-03-16"},
		{name: "twelve digits plus in the year of the hundredth birthday", in: withCheck(t, "19261223+923"), want: digitsOf(withCheck(t, "19261223+923")), birth: "1926-12-23"},
		{name: "twelve digits dash over a hundred", in: withCheck(t, "19261223-923"), want: digitsOf(withCheck(t, "19261223-923")), birth: "1926-12-23"},
		{name: "dash turns a hundred next year", in: withCheck(t, "270101-555"), want: "19" + digitsOf(withCheck(t, "270101-555")), birth: "1927-01-01"},
		{name: "ninety-nine", in: withCheck(t, "991231-001"), want: "19" + digitsOf(withCheck(t, "991231-001")), birth: "1999-12-31"},
		{name: "birth number 999", in: withCheck(t, "19121212-999"), want: digitsOf(withCheck(t, "19121212-999")), birth: "1912-12-12"},
		{name: "oldest plausible: exactly 130 today", in: withCheck(t, "960315+001"), want: "18" + digitsOf(withCheck(t, "960315+001")), birth: "1896-03-15"},
		{name: "oldest plausible twelve digits", in: withCheck(t, "18960315-001"), want: digitsOf(withCheck(t, "18960315-001")), birth: "1896-03-15"},
		{name: "samordningsnummer day 72", in: withCheck(t, "19121272-123"), want: digitsOf(withCheck(t, "19121272-123")), birth: "1912-12-12", coordination: true},
		{name: "samordningsnummer ten digits", in: withCheck(t, "850772-404"), want: "19" + digitsOf(withCheck(t, "850772-404")), birth: "1985-07-12", coordination: true},
		{name: "samordningsnummer day 61", in: withCheck(t, "900161-111"), want: "19" + digitsOf(withCheck(t, "900161-111")), birth: "1990-01-01", coordination: true},
		{name: "samordningsnummer day 91", in: withCheck(t, "19900191-111"), want: digitsOf(withCheck(t, "19900191-111")), birth: "1990-01-31", coordination: true},
		{name: "samordningsnummer leap day", in: withCheck(t, "20000289-222"), want: digitsOf(withCheck(t, "20000289-222")), birth: "2000-02-29", coordination: true},
		{name: "samordningsnummer plus", in: withCheck(t, "121272+123"), want: "19" + digitsOf(withCheck(t, "121272+123")), birth: "1912-12-12", coordination: true},
		// Month 00 and day field 60: Skatteverket did not know the month
		// or the day of birth.
		{name: "samordningsnummer day unknown", in: withCheck(t, "19121260-121"), want: digitsOf(withCheck(t, "19121260-121")), birth: "1912", coordination: true},
		{name: "samordningsnummer month unknown", in: withCheck(t, "19150072-239"), want: digitsOf(withCheck(t, "19150072-239")), birth: "1915", coordination: true},
		{name: "samordningsnummer month and day unknown", in: withCheck(t, "820060-123"), want: "19" + digitsOf(withCheck(t, "820060-123")), birth: "1982", coordination: true},
		{name: "samordningsnummer month unknown, day 31", in: withCheck(t, "19820091-123"), want: digitsOf(withCheck(t, "19820091-123")), birth: "1982", coordination: true},
		{name: "samordningsnummer day unknown in february of a leap year", in: withCheck(t, "20000260-123"), want: digitsOf(withCheck(t, "20000260-123")), birth: "2000", coordination: true},
		{name: "samordningsnummer unknown date this year", in: withCheck(t, "20260060-123"), want: digitsOf(withCheck(t, "20260060-123")), birth: "2026", coordination: true},
		{name: "samordningsnummer unknown day this month", in: withCheck(t, "20260360-123"), want: digitsOf(withCheck(t, "20260360-123")), birth: "2026", coordination: true},
		{name: "samordningsnummer unknown date 130 years ago", in: withCheck(t, "960060+123"), want: "18" + digitsOf(withCheck(t, "960060+123")), birth: "1896", coordination: true},
		{name: "samordningsnummer unknown day of the month 130 years ago", in: withCheck(t, "18960360-123"), want: digitsOf(withCheck(t, "18960360-123")), birth: "1896", coordination: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePersonalNumber(tt.in, testNow())
			require.NoError(t, err)
			require.Equal(t, tt.want, got.Normalised())
			require.Len(t, got.Normalised(), 12)
			require.Equal(t, tt.coordination, got.Coordination)
			birth, known := got.BirthDate()
			if len(tt.birth) == 4 {
				require.False(t, known, "birth date %s", birth)
				require.True(t, birth.IsZero())
				require.Equal(t, tt.birth, fmt.Sprint(got.BirthYear()))
			} else {
				want, err := time.Parse(time.DateOnly, tt.birth)
				require.NoError(t, err)
				require.True(t, known)
				require.True(t, want.Equal(birth), "birth date %s", birth)
				require.Equal(t, time.UTC, birth.Location())
				require.Equal(t, want.Year(), got.BirthYear())
			}

			again, err := ParsePersonalNumber(got.Normalised(), testNow())
			require.NoError(t, err)
			require.True(t, got == again, "normalised form parses to a different value")
		})
	}
}

func TestParsePersonalNumberNotationsAreEqual(t *testing.T) {
	var values []PersonalNumber
	for _, in := range []string{"19121212-1212", "191212121212", "121212+1212", " 121212+1212 ", "19121212+1212", "\u00a019121212-1212\u00a0"} {
		p, err := ParsePersonalNumber(in, testNow())
		require.NoError(t, err)
		values = append(values, p)
	}
	for _, p := range values[1:] {
		require.True(t, p == values[0])
	}
}

func TestParsePersonalNumberInvalid(t *testing.T) {
	const future = "date in the future"
	const futureDash = "date in the future (from the year a person turns a hundred the separator is a plus sign)"
	const tooOld = "born more than a hundred and thirty years ago"
	tests := []struct {
		name   string
		in     string
		reason string
	}{
		{name: "empty", in: "", reason: "wrong length"},
		{name: "blank", in: "   ", reason: "wrong length"},
		{name: "only invisible characters", in: "\u200b\ufeff\u00a0", reason: "wrong length"},
		{name: "nine digits", in: "121212121", reason: "wrong length"},
		{name: "eleven digits", in: "12121212121", reason: "wrong length"},
		{name: "thirteen digits", in: "1912121212121", reason: "wrong length"},
		{name: "far too long", in: strings.Repeat("1", 100), reason: "wrong length"},
		{name: "separator only", in: "-", reason: "wrong length"},
		{name: "letter", in: "19121212-121A", reason: "unexpected character"},
		{name: "reservnummer letters", in: "19121212-T212", reason: "unexpected character"},
		{name: "space separator", in: "121212 1212", reason: "unexpected character"},
		{name: "no-break space separator", in: "121212\u00a01212", reason: "unexpected character"},
		{name: "zero-width space inside", in: "121212\u200b1212", reason: "unexpected character"},
		{name: "slash separator", in: "121212/1212", reason: "unexpected character"},
		{name: "inner space", in: "1212 12-1212", reason: "unexpected character"},
		{name: "unicode digit", in: "١٢١٢١٢-١٢١٢", reason: "wrong length"},
		{name: "en dash", in: "121212–1212", reason: "unexpected character"},
		{name: "two separators", in: "12-1212-1212", reason: "more than one separator"},
		{name: "dash and plus", in: "121212-+1212", reason: "more than one separator"},
		{name: "separator too early", in: "12121-21212", reason: "separator in wrong position"},
		{name: "separator too late", in: "1212121-212", reason: "separator in wrong position"},
		{name: "separator at end", in: "1212121212-", reason: "separator in wrong position"},
		{name: "separator at start", in: "-1212121212", reason: "separator in wrong position"},
		{name: "twelve with ten-digit separator", in: "191212-121212", reason: "separator in wrong position"},
		{name: "wrong check digit", in: "19121212-1213", reason: "check digit does not match"},
		{name: "wrong check digit ten", in: "121212-1213", reason: "check digit does not match"},
		{name: "transposed digits", in: "19121212-2112", reason: "check digit does not match"},
		{name: "wrong check samordningsnummer", in: wrongCheck(t, "19121272-123"), reason: "check digit does not match"},
		{name: "wrong check samordningsnummer month unknown", in: wrongCheck(t, "19150072-239"), reason: "check digit does not match"},
		{name: "birth number zero", in: "20150916-0006", reason: "birth number zero is never issued"},
		{name: "birth number zero ten digits", in: withCheck(t, "811218-000"), reason: "birth number zero is never issued"},
		{name: "birth number zero samordningsnummer", in: withCheck(t, "19121272-000"), reason: "birth number zero is never issued"},
		{name: "birth number zero, unknown date", in: withCheck(t, "19820060-000"), reason: "birth number zero is never issued"},
		{name: "month zero in a personnummer", in: withCheck(t, "19120012-121"), reason: "not a date"},
		{name: "month thirteen", in: withCheck(t, "19121312-121"), reason: "not a date"},
		{name: "month thirteen samordningsnummer", in: withCheck(t, "19121372-121"), reason: "not a date"},
		{name: "day zero", in: withCheck(t, "19121200-121"), reason: "not a date"},
		{name: "day thirty-two", in: withCheck(t, "19121232-121"), reason: "not a date"},
		{name: "thirty-first of april", in: withCheck(t, "19120431-121"), reason: "not a date"},
		{name: "thirtieth of february", in: withCheck(t, "20000230-121"), reason: "not a date"},
		{name: "leap day 1900", in: withCheck(t, "19000229-121"), reason: "not a date"},
		{name: "leap day 2023", in: withCheck(t, "20230229-121"), reason: "not a date"},
		{name: "leap day 1900 through plus", in: withCheck(t, "000229+121"), reason: "not a date"},
		{name: "day forty", in: withCheck(t, "19121240-121"), reason: "not a date"},
		{name: "day fifty-nine", in: withCheck(t, "19121259-121"), reason: "not a date"},
		{name: "samordningsnummer day 92", in: withCheck(t, "19121292-121"), reason: "not a date"},
		{name: "samordningsnummer day 99", in: withCheck(t, "19121299-121"), reason: "not a date"},
		{name: "samordningsnummer 30 february", in: withCheck(t, "20000290-121"), reason: "not a date"},
		{name: "samordningsnummer 31 april", in: withCheck(t, "19120491-121"), reason: "not a date"},
		{name: "tomorrow", in: withCheck(t, "20260316-001"), reason: future},
		{name: "tomorrow ten digits", in: withCheck(t, "260316-001"), reason: futureDash},
		// In 2026 a person born on 23 December 1926 writes '+': with '-'
		// the number is a child born in December 2026.
		{name: "dash in the year of the hundredth birthday", in: withCheck(t, "261223-923"), reason: futureDash},
		{name: "no separator in the year of the hundredth birthday", in: digitsOf(withCheck(t, "261223-923")), reason: futureDash},
		{name: "next year", in: withCheck(t, "20270101-001"), reason: future},
		{name: "far future", in: withCheck(t, "99991231-001"), reason: future},
		{name: "samordningsnummer tomorrow", in: withCheck(t, "20260376-001"), reason: future},
		{name: "samordningsnummer unknown day of next month", in: withCheck(t, "20260460-001"), reason: future},
		{name: "samordningsnummer unknown date next year", in: withCheck(t, "20270060-001"), reason: future},
		{name: "twelve digits plus under a hundred this year", in: withCheck(t, "19270101+555"), reason: "plus sign but the person turns a hundred after this year"},
		{name: "twelve digits plus for a child", in: withCheck(t, "20121212+121"), reason: "plus sign but the person turns a hundred after this year"},
		{name: "130 years and a day", in: withCheck(t, "960314+001"), reason: tooOld},
		{name: "130 years and a day twelve digits", in: withCheck(t, "18960314-001"), reason: tooOld},
		{name: "plus a century before the dash reading", in: withCheck(t, "270101+555"), reason: tooOld},
		{name: "the old reading of 261223+9232", in: withCheck(t, "18261223-923"), reason: tooOld},
		{name: "samordningsnummer unknown date 131 years ago", in: withCheck(t, "950060+001"), reason: tooOld},
		{name: "samordningsnummer unknown day, month before 130 years", in: withCheck(t, "18960260-001"), reason: tooOld},
		{name: "nineteenth century", in: withCheck(t, "18000101-001"), reason: tooOld},
		{name: "year zero", in: withCheck(t, "00000101-001"), reason: tooOld},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePersonalNumber(tt.in, testNow())
			require.ErrorIs(t, err, ErrInvalidPersonalNumber)
			require.Equal(t, "invalid personal identity number: "+tt.reason, err.Error())
			require.Equal(t, PersonalNumber{}, got)
			requireNoEcho(t, err, tt.in)
		})
	}
}

func TestParsePersonalNumberLeapDay1900ByCentury(t *testing.T) {
	// 000229 resolves to 2000 with '-', which exists, and to 1900 with '+',
	// which does not.
	p, err := ParsePersonalNumber(withCheck(t, "000229-121"), testNow())
	require.NoError(t, err)
	require.Equal(t, 2000, p.BirthYear())

	_, err = ParsePersonalNumber(withCheck(t, "000229+121"), testNow())
	require.ErrorIs(t, err, ErrInvalidPersonalNumber)
	require.ErrorContains(t, err, "not a date")

	// On 28 February 2000 the ten-digit form with '-' meant 2000 (the
	// person turns 100 after 2000), and 29 February 2000 was still to come.
	_, err = ParsePersonalNumber(withCheck(t, "000229-121"), time.Date(2000, time.February, 28, 12, 0, 0, 0, time.UTC))
	require.ErrorIs(t, err, ErrInvalidPersonalNumber)
	require.ErrorContains(t, err, "date in the future")
}

// TestParsePersonalNumberSeparatorFollowsTheCalendarYear walks a person
// born on 23 December 1926 and one born on 1 January 1950 through the
// years around their hundredth birthdays.
func TestParsePersonalNumberSeparatorFollowsTheCalendarYear(t *testing.T) {
	stockholm, err := time.LoadLocation("Europe/Stockholm")
	require.NoError(t, err)
	dec23 := withCheck(t, "261223-923")
	jan1 := withCheck(t, "500101-123")
	tests := []struct {
		label      string
		in         string
		now        time.Time
		dash, plus int // year of birth, 0 when refused
	}{
		{label: "1926: in 2025, at 98, dash", in: dec23, now: time.Date(2025, time.December, 31, 12, 0, 0, 0, stockholm), dash: 1926},
		{label: "1926: in 2026, the year of the hundredth birthday, plus", in: dec23, now: time.Date(2026, time.January, 1, 0, 30, 0, 0, stockholm), plus: 1926},
		{label: "1926: the day before the birthday", in: dec23, now: time.Date(2026, time.December, 22, 23, 59, 0, 0, stockholm), plus: 1926},
		// From 23 December 2026 the dash form is a child born that day.
		{label: "1926: on the birthday", in: dec23, now: time.Date(2026, time.December, 23, 0, 0, 0, 0, stockholm), dash: 2026, plus: 1926},
		{label: "1926: in 2056", in: dec23, now: time.Date(2056, time.June, 1, 0, 0, 0, 0, stockholm), plus: 1926, dash: 2026},
		{label: "1926: in 2057, past 130", in: dec23, now: time.Date(2057, time.June, 1, 0, 0, 0, 0, stockholm), dash: 2026},
		{label: "1950: in 2026", in: jan1, now: testNow(), dash: 1950},
		{label: "1950: on 31 December 2049", in: jan1, now: time.Date(2049, time.December, 31, 23, 59, 0, 0, stockholm), dash: 1950},
		{label: "1950: on 1 January 2050", in: jan1, now: time.Date(2050, time.January, 1, 0, 0, 0, 0, stockholm), dash: 2050, plus: 1950},
	}
	for _, tt := range tests {
		t.Run(tt.label, func(t *testing.T) {
			for _, c := range []struct {
				in   string
				want int
			}{{tt.in, tt.dash}, {strings.Replace(tt.in, "-", "+", 1), tt.plus}} {
				p, err := ParsePersonalNumber(c.in, tt.now)
				if c.want == 0 {
					require.ErrorIs(t, err, ErrInvalidPersonalNumber, "%s parsed as born %d", c.in[6:7], p.BirthYear())
					continue
				}
				require.NoError(t, err, "separator %s", c.in[6:7])
				require.Equal(t, c.want, p.BirthYear(), "separator %s", c.in[6:7])
			}
		})
	}
}

func TestParsePersonalNumberUsesSwedishCalendar(t *testing.T) {
	// 23:30 UTC on 15 March is already 16 March in Sweden, whatever
	// location the clock reports.
	utc := time.Date(2026, time.March, 15, 23, 30, 0, 0, time.UTC)
	in := withCheck(t, "20260316-001")
	for _, now := range []time.Time{utc, utc.In(time.FixedZone("PST", -8*60*60)), utc.In(time.FixedZone("CET", 60*60))} {
		p, err := ParsePersonalNumber(in, now)
		require.NoError(t, err, "clock in %s", now.Location())
		birth, known := p.BirthDate()
		require.True(t, known)
		require.Equal(t, time.Date(2026, time.March, 16, 0, 0, 0, 0, time.UTC), birth)
	}
	_, err := ParsePersonalNumber(in, utc.Add(-time.Hour))
	require.ErrorContains(t, err, "date in the future")

	// New Year's Eve 23:30 UTC is 2026 in Sweden: a person born in 1926
	// writes '+' from then, and a twelve-digit '+' agrees.
	eve := time.Date(2025, time.December, 31, 23, 30, 0, 0, time.UTC)
	p, err := ParsePersonalNumber(withCheck(t, "260101+001"), eve)
	require.NoError(t, err)
	require.Equal(t, 1926, p.BirthYear())
	_, err = ParsePersonalNumber(withCheck(t, "19260101+001"), eve)
	require.NoError(t, err)
	_, err = ParsePersonalNumber(withCheck(t, "19260101+001"), eve.Add(-time.Hour))
	require.ErrorContains(t, err, "plus sign but the person turns a hundred after this year")
}

func TestTrimBlanks(t *testing.T) {
	tests := []struct{ in, want string }{
		{" 19261223-9232 ", "19261223-9232"},
		{"\t\r\n19261223-9232\v\f", "19261223-9232"},
		{"\u00a0\u202f\u2007\u3000x\u0085\u2028", "x"},
		{"\ufeff\u200b\u2060\u200e\u200fx\u200f", "x"},
		{"a b\u00a0c", "a b\u00a0c"},
		{"", ""},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, TrimBlanks(tt.in), "%q", tt.in)
	}
}

func TestPersonalNumberDoesNotPrintItself(t *testing.T) {
	p, err := ParsePersonalNumber("19121212-1212", testNow())
	require.NoError(t, err)
	c, err := ParsePersonalNumber(withCheck(t, "19121272-123"), testNow())
	require.NoError(t, err)

	for _, s := range []string{
		fmt.Sprint(p), fmt.Sprintf("%v %+v %#v %s", p, p, p, p), fmt.Sprintf("%v", &p),
	} {
		require.NotContains(t, s, "1212")
		require.Contains(t, s, "personnummer(redacted)")
	}
	require.Equal(t, "samordningsnummer(redacted)", c.String())

	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "pnr", p)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "pnr", p)
	require.NotContains(t, buf.String(), "1212")
	require.Contains(t, buf.String(), "redacted")
}

func TestPersonalNumberZeroValue(t *testing.T) {
	var p PersonalNumber
	require.Empty(t, p.Normalised())
	birth, known := p.BirthDate()
	require.False(t, known)
	require.True(t, birth.IsZero())
	require.Zero(t, p.BirthYear())
	require.False(t, p.Coordination)
}

// requireNoEcho checks that err does not repeat in or, for inputs long
// enough to be personal data, any six-character piece of it that contains
// a digit. Reasons are fixed English phrases, so a piece without digits
// could match by coincidence ("number") without anything leaking.
func requireNoEcho(t testing.TB, err error, in string) {
	t.Helper()
	msg := err.Error()
	in = strings.TrimSpace(in)
	if len(in) >= 6 {
		require.NotContains(t, msg, in)
	}
	for i := 0; i+6 <= len(in); i++ {
		piece := in[i : i+6]
		if strings.ContainsAny(piece, "0123456789") {
			require.NotContains(t, msg, piece)
		}
	}
}
