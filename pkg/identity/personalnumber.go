package identity

import (
	"log/slog"
	"strings"
	"time"
	_ "time/tzdata" // Europe/Stockholm decides "this year", also on hosts without zoneinfo.
	"unicode"
)

const (
	// coordinationDayOffset is what Skatteverket adds to the day of birth
	// in a samordningsnummer, so that it can never collide with a
	// personnummer. A day field of exactly 60 is day 00 plus 60: the day
	// of birth is not known.
	coordinationDayOffset = 60

	// plusAge is the age whose calendar year changes the separator of the
	// ten-digit form from '-' to '+' (18 § folkbokföringslagen).
	plusAge = 100

	// maxAge bounds a plausible age. Nobody who could contact a
	// municipality today was born more than 130 years ago (the oldest
	// person ever documented lived to 122); an older date is a typing
	// error or a wrong century, and accepting it would store the number
	// under a blind-index token that no correct search ever finds.
	maxAge = 130

	// earliestBirthYear and latestBirthYear keep Normalised at exactly
	// four year digits whatever clock a caller passes.
	earliestBirthYear = 1000
	latestBirthYear   = 9999
)

// stockholm is the zone whose calendar decides "this year" and "today"
// for the separator and for the age checks: the rules are Swedish, and a
// clock that runs in UTC would otherwise move New Year's Eve by an hour or
// two. time/tzdata embeds the zone, so this works on hosts without
// zoneinfo; should loading fail anyway, Central European Time without
// daylight saving is at most an hour off.
var stockholm = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Stockholm")
	if err != nil {
		return time.FixedZone("CET", 60*60)
	}
	return loc
}()

// PersonalNumber is a validated Swedish personal identity number
// (personnummer) or coordination number (samordningsnummer).
//
// The zero value is not a number; obtain one from ParsePersonalNumber.
// Values are comparable with ==, and two notations of the same number
// ("261223+9232", "19261223-9232", "192612239232") parse to equal values.
//
// A PersonalNumber deliberately prints as a placeholder through fmt and
// log/slog, so that logging a value does not leak the number; call
// Normalised for the number itself.
type PersonalNumber struct {
	// Coordination is true for a samordningsnummer, whose day field is the
	// day of birth plus 60. It is issued by Skatteverket to people who are
	// not, or not yet, registered in Sweden, and its birth date is less
	// reliable, which case officers need to know.
	Coordination bool

	// normalised is the twelve-digit form YYYYMMDDNNNC, with the month and
	// day fields as written (day plus 60 for a samordningsnummer).
	normalised string
	// year, month and day are the date of birth. month is 0 and day is 0
	// where a samordningsnummer says they are not known (month 00, day
	// field 60).
	year  int
	month time.Month
	day   int
}

// Normalised returns the number as twelve digits, YYYYMMDDNNNC, without a
// separator. This is the form to store and to feed the blind index: it is
// the same for every accepted notation and, unlike the ten-digit form,
// it does not change when the person turns 100. A samordningsnummer keeps
// its day field plus 60, because that is part of the identifier.
func (p PersonalNumber) Normalised() string {
	return p.normalised
}

// BirthDate returns the date of birth at midnight UTC and true, or the
// zero time and false when the number does not give the whole date: a
// samordningsnummer may have month 00 or day field 60 when Skatteverket
// did not know the month or day of birth. For a samordningsnummer the day
// is the day field minus 60. It is a calendar date, not an instant, hence
// UTC rather than a local zone. The zero value returns false.
func (p PersonalNumber) BirthDate() (time.Time, bool) {
	if p.normalised == "" || p.month == 0 || p.day == 0 {
		return time.Time{}, false
	}
	return time.Date(p.year, p.month, p.day, 0, 0, 0, 0, time.UTC), true
}

// BirthYear returns the year of birth, which every accepted number gives,
// or 0 for the zero value.
func (p PersonalNumber) BirthYear() int {
	return p.year
}

// String returns a placeholder rather than the number, so that a
// PersonalNumber passed to fmt, an error or a log line by mistake does not
// leak personal data.
func (p PersonalNumber) String() string {
	if p.Coordination {
		return "samordningsnummer(redacted)"
	}
	return "personnummer(redacted)"
}

// GoString returns the same placeholder as String, because %#v would
// otherwise print the unexported fields, number included.
func (p PersonalNumber) GoString() string {
	return p.String()
}

// LogValue implements slog.LogValuer so that structured logging, which does
// not always go through String, prints the placeholder too.
func (p PersonalNumber) LogValue() slog.Value {
	return slog.StringValue(p.String())
}

// ParsePersonalNumber parses a personnummer or samordningsnummer as
// Skatteverket writes it and checks that it can be real.
//
// Accepted notations, after surrounding blanks are trimmed (TrimBlanks),
// are exactly YYMMDD-NNNC, YYMMDD+NNNC, YYMMDDNNNC, YYYYMMDD-NNNC,
// YYYYMMDD+NNNC and YYYYMMDDNNNC; any other character or separator
// position is refused.
//
// The separator follows 18 § folkbokföringslagen (1991:481): "Mellan
// födelsetiden och födelsenumret sätts ett bindestreck som byts mot ett
// plustecken det år en person fyller 100 år" — the hyphen becomes a plus
// sign from the calendar year in which the person turns 100, not from the
// birthday (Skatteverket, Rättslig vägledning, "Personnummer",
// https://www4.skatteverket.se/rattsligvagledning/edition/2020.9/330245.html).
// The rule therefore looks at the year only:
//
//   - YYMMDD+NNNC: the person turns 100 in this year or earlier, so the
//     year of birth is the latest year ending in YY that is at most this
//     year minus 100. In 2026, 261223+9232 is born in 1926.
//   - YYMMDD-NNNC and YYMMDDNNNC: the person turns 100 after this year, so
//     the year of birth is the latest year ending in YY that is at most
//     this year. In 2026, 261223-9232 is born in 2026, and refused as a
//     date in the future until 23 December 2026.
//   - The twelve-digit form carries the century itself. It is accepted
//     with '-' or without a separator at any age, because that is how
//     registers write it; with '+' it is accepted only when the plus is
//     right, that is when the person turns 100 this year or earlier.
//
// "This year" and "today" are now's calendar date in Sweden
// (Europe/Stockholm), whatever now's location. Parsing is deterministic
// for a given now, which is why now is a parameter and not read from the
// clock: pass the service's injected clock.
//
// The date must exist (leap years included); for a samordningsnummer the
// day field is 60–91 and the day of birth is 60 less, where day field 60
// and month 00 mean that the day or month is not known. Skatteverket
// issues such numbers, its published test samordningsnummer contain them,
// and it has confirmed both that and that a day the month does not have
// (30 February) is invalid, although 24 of its test numbers have one
// (https://github.com/ActiveLogin/ActiveLogin.Identity/issues/126). The
// person must be born no later than today and no more than 130
// years ago; where the month or day is unknown, the earliest possible date
// decides "not later than today" and the latest possible date decides
// "not more than 130 years ago", so that no real person is refused. The
// birth number (NNN) is 001–999: Skatteverket never issues 000. The last
// digit must be the Luhn check digit of the ten-digit form's first nine
// digits.
//
// Errors wrap ErrInvalidPersonalNumber with a short reason and never contain
// the input.
func ParsePersonalNumber(s string, now time.Time) (PersonalNumber, error) {
	digits, sep, err := splitPersonalNumber(TrimBlanks(s))
	if err != nil {
		return PersonalNumber{}, err
	}

	// ten is the ten-digit form YYMMDDNNNC, whichever form was given; the
	// check digit and the date fields are read from it.
	ten := digits
	if len(digits) == 12 {
		ten = digits[2:]
	}
	month := time.Month(atoi(ten[2:4]))
	day := atoi(ten[4:6])
	coordination := day >= coordinationDayOffset
	if coordination {
		day -= coordinationDayOffset
	}
	// Month 00 and day 00 (field 60) exist only in a samordningsnummer; a
	// personnummer always has the whole date.
	if month > time.December || day > 31 || (!coordination && (month == 0 || day == 0)) {
		return PersonalNumber{}, invalid(ErrInvalidPersonalNumber, "not a date")
	}

	thisYear, thisMonth, today := now.In(stockholm).Date()
	var year int
	if len(digits) == 10 {
		latest := thisYear
		if sep == '+' {
			latest -= plusAge
		}
		year = latest - ((latest-atoi(ten[0:2]))%100+100)%100
	} else {
		year = atoi(digits[0:4])
		if sep == '+' && thisYear-year < plusAge {
			return PersonalNumber{}, invalid(ErrInvalidPersonalNumber, "plus sign but the person turns a hundred after this year")
		}
	}

	if month != 0 && day != 0 && !dateExists(year, month, day) {
		return PersonalNumber{}, invalid(ErrInvalidPersonalNumber, "not a date")
	}
	// earliest and latest are the first and last days the birth date can
	// be; they differ only where a samordningsnummer leaves the month or
	// the day unknown.
	em, ed, lm, ld := month, day, month, day
	if month == 0 {
		em, lm = time.January, time.December
	}
	if day == 0 {
		ed, ld = 1, daysIn(year, lm)
	}
	if dateAfter(year, em, ed, thisYear, thisMonth, today) || year > latestBirthYear {
		if len(digits) == 10 && sep != '+' {
			return PersonalNumber{}, invalid(ErrInvalidPersonalNumber,
				"date in the future (from the year a person turns a hundred the separator is a plus sign)")
		}
		return PersonalNumber{}, invalid(ErrInvalidPersonalNumber, "date in the future")
	}
	if dateAfter(thisYear-maxAge, thisMonth, today, year, lm, ld) || year < earliestBirthYear {
		return PersonalNumber{}, invalid(ErrInvalidPersonalNumber, "born more than a hundred and thirty years ago")
	}
	if string(ten[6:9]) == "000" {
		return PersonalNumber{}, invalid(ErrInvalidPersonalNumber, "birth number zero is never issued")
	}
	if luhnCheckDigit(ten[:9]) != ten[9] {
		return PersonalNumber{}, invalid(ErrInvalidPersonalNumber, "check digit does not match")
	}

	normalised := make([]byte, 0, 12)
	normalised = append(normalised,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10))
	normalised = append(normalised, ten[2:]...)
	return PersonalNumber{
		Coordination: coordination,
		normalised:   string(normalised),
		year:         year,
		month:        month,
		day:          day,
	}, nil
}

// TrimBlanks removes what a copy and paste or a form field leaves around
// an identifier: Unicode white space (space, tab, line breaks, the
// no-break spaces U+00A0 and U+202F, and the other Zs spaces), and the
// invisible format characters that editors and web pages insert — zero
// width space U+200B, word joiner U+2060, byte order mark U+FEFF and the
// direction marks U+200E and U+200F. Characters inside the value are kept,
// so "121212 1212" stays refused: inside a number a blank is not a
// separator Skatteverket uses. ParsePersonalNumber trims with it, and
// callers that test whether a field is empty before parsing use it too,
// so that a field holding only blanks counts as empty everywhere.
func TrimBlanks(s string) string {
	return strings.TrimFunc(s, isBlank)
}

func isBlank(r rune) bool {
	switch r {
	case '\u200b', '\u2060', '\ufeff', '\u200e', '\u200f':
		return true
	}
	return unicode.IsSpace(r)
}

// splitPersonalNumber checks the shape of a trimmed number and returns its
// ten or twelve digits and its separator ('-', '+' or 0 for none).
func splitPersonalNumber(s string) (digits []byte, sep byte, err error) {
	// The longest accepted notation, YYYYMMDD-NNNC, has 13 characters;
	// refusing longer input first also bounds the work on hostile input.
	if len(s) > 13 {
		return nil, 0, invalid(ErrInvalidPersonalNumber, "wrong length")
	}
	digits = make([]byte, 0, 12)
	sepPos := -1
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
		case c == '-' || c == '+':
			if sepPos >= 0 {
				return nil, 0, invalid(ErrInvalidPersonalNumber, "more than one separator")
			}
			sepPos, sep = i, c
		default:
			return nil, 0, invalid(ErrInvalidPersonalNumber, "unexpected character")
		}
	}
	if len(digits) != 10 && len(digits) != 12 {
		return nil, 0, invalid(ErrInvalidPersonalNumber, "wrong length")
	}
	if sepPos >= 0 {
		// The separator stands before the last four digits: YYMMDD-NNNC or
		// YYYYMMDD-NNNC.
		if sepPos != len(digits)-4 {
			return nil, 0, invalid(ErrInvalidPersonalNumber, "separator in wrong position")
		}
	}
	return digits, sep, nil
}

// luhnCheckDigit computes the check digit of a personal number from the
// first nine digits of its ten-digit form: weights 2,1,2,1,… from the left,
// digit sums of the products added up, and the difference to the next
// multiple of ten. It returns an ASCII digit.
func luhnCheckDigit(nine []byte) byte {
	sum := 0
	for i, c := range nine {
		v := int(c - '0')
		if i%2 == 0 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return byte('0' + (10-sum%10)%10)
}

// dateExists reports whether year-month-day is a real calendar date, so
// that 30 February and 29 February 1900 are refused.
func dateExists(year int, month time.Month, day int) bool {
	t := time.Date(year, month, day, 0, 0, 0, 0, time.UTC)
	y, m, d := t.Date()
	return y == year && m == month && d == day
}

// daysIn returns the number of days in month m of year y.
func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// dateAfter reports whether the date y-m-d comes after the date ny-nm-nd.
func dateAfter(y int, m time.Month, d int, ny int, nm time.Month, nd int) bool {
	if y != ny {
		return y > ny
	}
	if m != nm {
		return m > nm
	}
	return d > nd
}

// atoi converts a short run of ASCII digits, already checked, to an int.
func atoi(b []byte) int {
	n := 0
	for _, c := range b {
		n = n*10 + int(c-'0')
	}
	return n
}
