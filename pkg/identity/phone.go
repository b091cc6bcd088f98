package identity

import (
	"errors"
	"strings"
	"unicode"

	"github.com/nyaruka/phonenumbers"
)

const (
	// maxPhoneInput bounds the input, separators included. Real numbers
	// written generously stay far below it, and it caps the work spent on
	// hostile input before it reaches libphonenumber's regular expressions.
	maxPhoneInput = 64

	// phoneRegion is the region a number without a country code is read
	// in: kontakt serves Swedish municipalities, so "070-123 45 67" and
	// "70 123 45 67" are Swedish numbers.
	phoneRegion = "SE"
)

// NormalisePhone returns a telephone number in E.164 form, "+46701234567",
// which is the form to store and to feed the blind index: the same number
// written "070-123 45 67", "070/123 45 67", "+46 (0)70 123 45 67",
// "(+46) 70 123 45 67", "0046701234567" or "46701234567" gives the same
// key.
//
// The number is read by libphonenumber (the Go port
// github.com/nyaruka/phonenumbers), which knows every country's numbering
// plan: which country codes are assigned, which trunk prefix a country
// drops after its country code (Sweden's "(0)"), which it keeps (Italy's
// 0, so "+39 (0)6 1234 5678" is +390612345678), and which number ranges
// and lengths exist. A number without a country code is read as Swedish,
// with or without its trunk 0 ("070-123 45 67", "70 123 45 67").
//
// A number beginning with 46 and without "+" or "00" ("46701234567", as a
// form that strips the "+" sends it) is read by libphonenumber's rule for
// the default region's own country code: the digits are taken as Swedish
// with their country code when they are not a valid Swedish national
// number as they stand but are one after the 46. So "46701234567" is
// +46701234567, while "468123456", a valid number in Lund's area code
// 046, stays +46468123456. Other countries' codes need "+" or "00":
// "4791234567" is read as Swedish and refused.
//
// Only valid numbers are accepted (libphonenumber's IsValidNumber): the
// number must lie in a range its country's plan assigns, not merely have
// a length some number there has ("possible"). A mobile number with a
// dropped digit, "070-123 45 6", is possible (Swedish fixed-line numbers
// are that long) but not valid, and storing it would give a case nobody
// can call back and a blind-index token no correct spelling finds. The
// price is that a range a regulator opens after the pinned library's
// metadata was made is refused until the library is updated; the reason
// says the number is not in the country's numbering plan.
//
// Before the number reaches the library, blanks around it are trimmed
// (TrimBlanks), and only digits 0-9, one leading "+", parentheses, and the
// separators people use (spaces of every kind, dashes, dots, slashes) are
// allowed. Letters are refused, although libphonenumber would read them
// as a keypad's digits ("070-ABC"), and so are extensions ("ext 12",
// "#12"): E.164 has no place for an extension and dropping it silently
// would store another number than the one given.
//
// Errors wrap ErrInvalidPhone with a short reason and never contain the
// input.
func NormalisePhone(s string) (string, error) {
	s = TrimBlanks(s)
	if s == "" {
		return "", invalid(ErrInvalidPhone, "empty")
	}
	if len(s) > maxPhoneInput {
		return "", invalid(ErrInvalidPhone, "too long")
	}
	var b strings.Builder
	b.Grow(len(s))
	digits, plus := 0, false
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
			b.WriteRune(r)
		case r == '+':
			if digits > 0 || plus {
				return "", invalid(ErrInvalidPhone, "plus sign not at the start")
			}
			plus = true
			b.WriteRune(r)
		case r == '(' || r == ')':
			b.WriteRune(r)
		case isPhoneSeparator(r):
			// libphonenumber knows many separators but not every space a
			// document may hold (thin space U+2009); one ASCII space
			// stands for them all.
			b.WriteByte(' ')
		default:
			return "", invalid(ErrInvalidPhone, "unexpected character")
		}
	}
	if digits == 0 {
		return "", invalid(ErrInvalidPhone, "no digits")
	}

	n, err := phonenumbers.Parse(b.String(), phoneRegion)
	if err != nil {
		// The library's errors are fixed texts too, but the reasons
		// kontakt gives are its own, so no library change can put the
		// input into a log.
		switch {
		case errors.Is(err, phonenumbers.ErrInvalidCountryCode):
			return "", invalid(ErrInvalidPhone, "no such country code")
		case errors.Is(err, phonenumbers.ErrTooShortNSN), errors.Is(err, phonenumbers.ErrTooShortAfterIDD):
			return "", invalid(ErrInvalidPhone, "too few digits")
		case errors.Is(err, phonenumbers.ErrNumTooLong):
			return "", invalid(ErrInvalidPhone, "too many digits")
		}
		return "", invalid(ErrInvalidPhone, "not a phone number")
	}
	if n.GetExtension() != "" {
		return "", invalid(ErrInvalidPhone, "extensions are not taken")
	}
	if !phonenumbers.IsValidNumber(n) {
		switch phonenumbers.IsPossibleNumberWithReason(n) {
		case phonenumbers.INVALID_COUNTRY_CODE:
			return "", invalid(ErrInvalidPhone, "no such country code")
		case phonenumbers.TOO_SHORT:
			return "", invalid(ErrInvalidPhone, "too few digits for its country")
		case phonenumbers.TOO_LONG:
			return "", invalid(ErrInvalidPhone, "too many digits for its country")
		case phonenumbers.INVALID_LENGTH:
			return "", invalid(ErrInvalidPhone, "wrong number of digits for its country")
		}
		return "", invalid(ErrInvalidPhone, "not in its country's numbering plan (a digit missing or too many?)")
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}

// isPhoneSeparator reports whether r may separate digit groups: any Unicode
// space (numbers pasted from documents carry no-break and thin spaces), the
// hyphen-minus and its typographic relatives, which word processors
// substitute, the dot, and the slash ("070/123 45 67", an old Swedish way
// of setting the area code apart).
func isPhoneSeparator(r rune) bool {
	switch r {
	case '-', '.', '/', '\u2010', '\u2011', '\u2012', '\u2013', '\u2014', '\u2212':
		return true
	}
	return unicode.Is(unicode.Zs, r)
}

// isASCIIDigit reports whether c is one of '0' to '9'.
func isASCIIDigit(c byte) bool {
	return c >= '0' && c <= '9'
}
