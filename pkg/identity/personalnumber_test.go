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

func TestParsePersonalNumberValid(t *testing.T) {
	tests := []struct {
		name         string
		in           string
		want         string
		birth        string
		coordination bool
	}{
		{name: "twelve digits with dash", in: "19121212-1212", want: "191212121212", birth: "1912-12-12"},
		{name: "twelve digits", in: "191212121212", want: "191212121212", birth: "1912-12-12"},
		{name: "ten digits plus", in: "121212+1212", want: "191212121212", birth: "1912-12-12"},
		{name: "ten digits dash is this century", in: "121212-1212", want: "201212121212", birth: "2012-12-12"},
		{name: "ten digits no separator", in: "1212121212", want: "201212121212", birth: "2012-12-12"},
		{name: "published test number", in: "20080903-2386", want: "200809032386", birth: "2008-09-03"},
		{name: "published test number ten digits", in: "080903-2386", want: "200809032386", birth: "2008-09-03"},
		{name: "published test number eighties", in: "811218-9876", want: "198112189876", birth: "1981-12-18"},
		{name: "blanks trimmed", in: "  19121212-1212\t\n", want: "191212121212", birth: "1912-12-12"},
		{name: "leap day 2000", in: withCheck(t, "20000229-123"), want: strings.ReplaceAll(withCheck(t, "20000229-123"), "-", ""), birth: "2000-02-29"},
		{name: "leap day 2000 ten digits", in: withCheck(t, "000229-123"), want: "20" + strings.ReplaceAll(withCheck(t, "000229-123"), "-", ""), birth: "2000-02-29"},
		{name: "leap day 2024", in: withCheck(t, "20240229-987"), want: strings.ReplaceAll(withCheck(t, "20240229-987"), "-", ""), birth: "2024-02-29"},
		{name: "born today", in: withCheck(t, "260315-001"), want: "20" + strings.ReplaceAll(withCheck(t, "260315-001"), "-", ""), birth: "2026-03-15"},
		{name: "tomorrow a century ago", in: withCheck(t, "260316-001"), want: "19" + strings.ReplaceAll(withCheck(t, "260316-001"), "-", ""), birth: "1926-03-16"},
		{name: "plus on tomorrow", in: withCheck(t, "260316+001"), want: "18" + strings.ReplaceAll(withCheck(t, "260316+001"), "+", ""), birth: "1826-03-16"},
		{name: "plus on today", in: withCheck(t, "260315+001"), want: "19" + strings.ReplaceAll(withCheck(t, "260315+001"), "+", ""), birth: "1926-03-15"},
		{name: "year after now's yy", in: withCheck(t, "270101-555"), want: "19" + strings.ReplaceAll(withCheck(t, "270101-555"), "-", ""), birth: "1927-01-01"},
		{name: "year after now's yy plus", in: withCheck(t, "270101+555"), want: "18" + strings.ReplaceAll(withCheck(t, "270101+555"), "+", ""), birth: "1827-01-01"},
		{name: "ninety-nine", in: withCheck(t, "991231-000"), want: "19" + strings.ReplaceAll(withCheck(t, "991231-000"), "-", ""), birth: "1999-12-31"},
		{name: "samordningsnummer day 72", in: withCheck(t, "19121272-123"), want: strings.ReplaceAll(withCheck(t, "19121272-123"), "-", ""), birth: "1912-12-12", coordination: true},
		{name: "samordningsnummer ten digits", in: withCheck(t, "850772-404"), want: "19" + strings.ReplaceAll(withCheck(t, "850772-404"), "-", ""), birth: "1985-07-12", coordination: true},
		{name: "samordningsnummer day 61", in: withCheck(t, "900161-111"), want: "19" + strings.ReplaceAll(withCheck(t, "900161-111"), "-", ""), birth: "1990-01-01", coordination: true},
		{name: "samordningsnummer day 91", in: withCheck(t, "19900191-111"), want: strings.ReplaceAll(withCheck(t, "19900191-111"), "-", ""), birth: "1990-01-31", coordination: true},
		{name: "samordningsnummer leap day", in: withCheck(t, "20000289-222"), want: strings.ReplaceAll(withCheck(t, "20000289-222"), "-", ""), birth: "2000-02-29", coordination: true},
		{name: "samordningsnummer plus", in: withCheck(t, "121272+123"), want: "19" + strings.ReplaceAll(withCheck(t, "121272+123"), "+", ""), birth: "1912-12-12", coordination: true},
		{name: "earliest year", in: withCheck(t, "18000101-000"), want: strings.ReplaceAll(withCheck(t, "18000101-000"), "-", ""), birth: "1800-01-01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePersonalNumber(tt.in, testNow())
			require.NoError(t, err)
			require.Equal(t, tt.want, got.Normalised())
			require.Len(t, got.Normalised(), 12)
			require.Equal(t, tt.coordination, got.Coordination)
			birth, err := time.Parse(time.DateOnly, tt.birth)
			require.NoError(t, err)
			require.True(t, birth.Equal(got.BirthDate()), "birth date %s", got.BirthDate())
			require.Equal(t, time.UTC, got.BirthDate().Location())

			again, err := ParsePersonalNumber(got.Normalised(), testNow())
			require.NoError(t, err)
			require.True(t, got == again, "normalised form parses to a different value")
		})
	}
}

func TestParsePersonalNumberNotationsAreEqual(t *testing.T) {
	var values []PersonalNumber
	for _, in := range []string{"19121212-1212", "191212121212", "121212+1212", " 121212+1212 "} {
		p, err := ParsePersonalNumber(in, testNow())
		require.NoError(t, err)
		values = append(values, p)
	}
	for _, p := range values[1:] {
		require.True(t, p == values[0])
	}
}

func TestParsePersonalNumberInvalid(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		reason string
	}{
		{name: "empty", in: "", reason: "wrong length"},
		{name: "blank", in: "   ", reason: "wrong length"},
		{name: "nine digits", in: "121212121", reason: "wrong length"},
		{name: "eleven digits", in: "12121212121", reason: "wrong length"},
		{name: "thirteen digits", in: "1912121212121", reason: "wrong length"},
		{name: "far too long", in: strings.Repeat("1", 100), reason: "wrong length"},
		{name: "separator only", in: "-", reason: "wrong length"},
		{name: "letter", in: "19121212-121A", reason: "unexpected character"},
		{name: "reservnummer letters", in: "19121212-T212", reason: "unexpected character"},
		{name: "space separator", in: "121212 1212", reason: "unexpected character"},
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
		{name: "plus in twelve-digit form", in: "19121212+1212", reason: "plus separator only allowed in the ten-digit form"},
		{name: "wrong check digit", in: "19121212-1213", reason: "check digit does not match"},
		{name: "wrong check digit ten", in: "121212-1213", reason: "check digit does not match"},
		{name: "transposed digits", in: "19121212-2112", reason: "check digit does not match"},
		{name: "wrong check samordningsnummer", in: wrongCheck(t, "19121272-123"), reason: "check digit does not match"},
		{name: "month zero", in: withCheck(t, "19120012-121"), reason: "not a date"},
		{name: "month thirteen", in: withCheck(t, "19121312-121"), reason: "not a date"},
		{name: "day zero", in: withCheck(t, "19121200-121"), reason: "not a date"},
		{name: "day thirty-two", in: withCheck(t, "19121232-121"), reason: "not a date"},
		{name: "thirty-first of april", in: withCheck(t, "19120431-121"), reason: "not a date"},
		{name: "thirtieth of february", in: withCheck(t, "20000230-121"), reason: "not a date"},
		{name: "leap day 1900", in: withCheck(t, "19000229-121"), reason: "not a date"},
		{name: "leap day 2023", in: withCheck(t, "20230229-121"), reason: "not a date"},
		{name: "leap day 1900 through plus", in: withCheck(t, "000229+121"), reason: "not a date"},
		{name: "day sixty", in: withCheck(t, "19121260-121"), reason: "not a date"},
		{name: "day forty", in: withCheck(t, "19121240-121"), reason: "not a date"},
		{name: "samordningsnummer day 92", in: withCheck(t, "19121292-121"), reason: "not a date"},
		{name: "samordningsnummer day 99", in: withCheck(t, "19121299-121"), reason: "not a date"},
		{name: "samordningsnummer 30 february", in: withCheck(t, "20000290-121"), reason: "not a date"},
		{name: "tomorrow", in: withCheck(t, "20260316-001"), reason: "date in the future"},
		{name: "next year", in: withCheck(t, "20270101-001"), reason: "date in the future"},
		{name: "far future", in: withCheck(t, "99991231-001"), reason: "date in the future"},
		{name: "samordningsnummer tomorrow", in: withCheck(t, "20260376-001"), reason: "date in the future"},
		{name: "before 1800", in: withCheck(t, "17991231-001"), reason: "date too far in the past"},
		{name: "year zero", in: withCheck(t, "00000101-001"), reason: "date too far in the past"},
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
	require.Equal(t, 2000, p.BirthDate().Year())

	_, err = ParsePersonalNumber(withCheck(t, "000229+121"), testNow())
	require.ErrorIs(t, err, ErrInvalidPersonalNumber)

	// On 28 February 2000, 29 February 2000 was still to come, so the
	// ten-digit form meant 1900, which had no leap day.
	_, err = ParsePersonalNumber(withCheck(t, "000229-121"), time.Date(2000, time.February, 28, 12, 0, 0, 0, time.UTC))
	require.ErrorIs(t, err, ErrInvalidPersonalNumber)
	require.ErrorContains(t, err, "not a date")
}

func TestParsePersonalNumberCenturyFollowsNow(t *testing.T) {
	in := withCheck(t, "500101-123")
	tests := []struct {
		now   time.Time
		dash  int
		plus  int
		label string
	}{
		{label: "2026", now: testNow(), dash: 1950, plus: 1850},
		{label: "day before fiftieth anniversary", now: time.Date(2049, time.December, 31, 0, 0, 0, 0, time.UTC), dash: 1950, plus: 1850},
		{label: "on the day", now: time.Date(2050, time.January, 1, 0, 0, 0, 0, time.UTC), dash: 2050, plus: 1950},
		{label: "2149", now: time.Date(2149, time.June, 1, 0, 0, 0, 0, time.UTC), dash: 2050, plus: 1950},
	}
	for _, tt := range tests {
		t.Run(tt.label, func(t *testing.T) {
			p, err := ParsePersonalNumber(in, tt.now)
			require.NoError(t, err)
			require.Equal(t, tt.dash, p.BirthDate().Year())

			p, err = ParsePersonalNumber(strings.Replace(in, "-", "+", 1), tt.now)
			require.NoError(t, err)
			require.Equal(t, tt.plus, p.BirthDate().Year())
		})
	}
}

func TestParsePersonalNumberUsesNowsLocation(t *testing.T) {
	// 23:30 UTC on 15 March is already 16 March in Sweden.
	utc := time.Date(2026, time.March, 15, 23, 30, 0, 0, time.UTC)
	stockholm := utc.In(time.FixedZone("CET", 60*60))
	in := withCheck(t, "20260316-001")

	_, err := ParsePersonalNumber(in, utc)
	require.ErrorContains(t, err, "date in the future")

	p, err := ParsePersonalNumber(in, stockholm)
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, time.March, 16, 0, 0, 0, 0, time.UTC), p.BirthDate())
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
	require.True(t, p.BirthDate().IsZero())
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
