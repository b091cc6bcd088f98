package identity

import (
	"log/slog"
	"strings"
	"time"
)

const (
	// coordinationDayOffset is what Skatteverket adds to the day of birth
	// in a samordningsnummer, so that it can never collide with a
	// personnummer.
	coordinationDayOffset = 60

	// earliestBirthYear bounds the century of a twelve-digit number.
	// Personnummer were introduced in 1947, so nobody who was ever given one
	// was born before the nineteenth century; an earlier year is a typing
	// error, not a person.
	earliestBirthYear = 1800

	// latestBirthYear keeps Normalised at twelve digits whatever clock a
	// caller passes.
	latestBirthYear = 9999
)

// PersonalNumber is a validated Swedish personal identity number
// (personnummer) or coordination number (samordningsnummer).
//
// The zero value is not a number; obtain one from ParsePersonalNumber.
// Values are comparable with ==, and two notations of the same number
// ("121212-1212", "19121212-1212", "191212121212") parse to equal values.
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

	// normalised is the twelve-digit form YYYYMMDDNNNC, with the day field
	// as written (plus 60 for a samordningsnummer).
	normalised string
	// year, month and day are the real date of birth.
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

// BirthDate returns the date of birth at midnight UTC; for a
// samordningsnummer this is the day field minus 60. It is a calendar date,
// not an instant, hence UTC rather than a local zone. The zero value
// returns the zero time.
func (p PersonalNumber) BirthDate() time.Time {
	if p.normalised == "" {
		return time.Time{}
	}
	return time.Date(p.year, p.month, p.day, 0, 0, 0, 0, time.UTC)
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

// ParsePersonalNumber parses a personnummer or samordningsnummer as a
// citizen writes it and checks that it can be real.
//
// Accepted notations, after surrounding blanks are trimmed, are exactly
// YYMMDD-NNNC, YYMMDD+NNNC, YYMMDDNNNC, YYYYMMDD-NNNC and YYYYMMDDNNNC; any
// other character or separator position is refused. A twelve-digit number
// with '+' is refused because '+' only exists to tell the century of the
// ten-digit form.
//
// The ten-digit form does not carry the century, so now decides it, as
// Skatteverket's rule does: with '-' or no separator the birth date is the
// latest one that is not after now's date, and '+' (the person is 100 or
// older) moves it one century further back. Now's calendar date is taken in
// now's own location, so pass a time in Europe/Stockholm to get Swedish
// dates around midnight. Parsing is deterministic for a given now, which is
// why now is a parameter and not read from the clock.
//
// The date must exist (leap years included), must not be after now's date,
// and must not be before 1800; for a samordningsnummer the day field is
// 61–91 and the real day is 60 less. The last digit must be the Luhn check
// digit of the ten-digit form's first nine digits.
//
// Errors wrap ErrInvalidPersonalNumber with a short reason and never contain
// the input.
func ParsePersonalNumber(s string, now time.Time) (PersonalNumber, error) {
	digits, sep, err := splitPersonalNumber(strings.TrimSpace(s))
	if err != nil {
		return PersonalNumber{}, err
	}

	// ten is the ten-digit form YYMMDDNNNC, whichever form was given; the
	// check digit and the date fields are read from it.
	ten := digits
	year := 0
	if len(digits) == 12 {
		year = atoi(digits[0:4])
		ten = digits[2:]
	}
	month := time.Month(atoi(ten[2:4]))
	day := atoi(ten[4:6])
	coordination := day > coordinationDayOffset
	if coordination {
		day -= coordinationDayOffset
	}
	if month < time.January || month > time.December || day < 1 || day > 31 {
		return PersonalNumber{}, invalid(ErrInvalidPersonalNumber, "not a date")
	}

	nowYear, nowMonth, nowDay := now.Date()
	if len(digits) == 10 {
		yy := atoi(ten[0:2])
		year = nowYear - ((nowYear-yy)%100+100)%100
		if dateAfter(year, month, day, nowYear, nowMonth, nowDay) {
			year -= 100
		}
		if sep == '+' {
			year -= 100
		}
	}

	if !dateExists(year, month, day) {
		return PersonalNumber{}, invalid(ErrInvalidPersonalNumber, "not a date")
	}
	if dateAfter(year, month, day, nowYear, nowMonth, nowDay) || year > latestBirthYear {
		return PersonalNumber{}, invalid(ErrInvalidPersonalNumber, "date in the future")
	}
	if year < earliestBirthYear {
		return PersonalNumber{}, invalid(ErrInvalidPersonalNumber, "date too far in the past")
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
		if len(digits) == 12 && sep == '+' {
			return nil, 0, invalid(ErrInvalidPersonalNumber, "plus separator only allowed in the ten-digit form")
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
