package identity

import (
	"strings"
	"unicode"
)

const (
	// maxPhoneInput bounds the input, separators included. Real numbers
	// written generously stay far below it, and it caps the work spent on
	// hostile input.
	maxPhoneInput = 64

	// minE164Digits and maxE164Digits bound the digits of an international
	// number, country code included. ITU-T E.164 allows at most 15; the
	// shortest numbers in use (small island states) have 7.
	minE164Digits = 7
	maxE164Digits = 15

	// swedishCountryCode is Sweden's E.164 country code.
	swedishCountryCode = "46"

	// minSwedishNSN and maxSwedishNSN bound a Swedish national significant
	// number, the digits after +46: from a three-digit area code with a
	// five-digit subscriber number (0xx-xx xxx, 7 digits without the 0) to
	// a mobile number (07x-xxx xx xx, 9 digits).
	minSwedishNSN = 7
	maxSwedishNSN = 9
)

// NormalisePhone returns a telephone number in E.164 form, "+46701234567",
// which is the form to store and to feed the blind index: the same number
// written "070-123 45 67", "+46 (0)70 123 45 67" or "0046701234567" must
// give the same key.
//
// Spaces (including no-break spaces), dashes, dots and one pair of
// parentheses may separate the digits; any other character, letters and
// extensions included, is refused. A number beginning with "+" or "00" is
// international. Otherwise it is a Swedish national number and must begin
// with the trunk prefix 0, which is dropped and replaced by +46; a number
// without either is refused rather than guessed at.
//
// In an international number a "(0)" right after the country code is the
// habit of writing the trunk prefix for domestic callers, and is dropped.
// After +46 a bare leading 0 is dropped too, because no Swedish national
// significant number begins with 0 and "+46 070…" is a common mistake;
// at most one such 0 is dropped. A Swedish number must have 7 to 9 digits
// after +46, which excludes short numbers such as 112. Other countries'
// numbers are checked only against E.164: a country code not beginning
// with 0 and 7 to 15 digits in all.
//
// Errors wrap ErrInvalidPhone with a short reason and never contain the
// input.
func NormalisePhone(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", invalid(ErrInvalidPhone, "empty")
	}
	if len(s) > maxPhoneInput {
		return "", invalid(ErrInvalidPhone, "too long")
	}
	if c := s[0]; c != '+' && c != '(' && !isASCIIDigit(c) {
		return "", invalid(ErrInvalidPhone, "must begin with a digit, plus sign or parenthesis")
	}
	if c := s[len(s)-1]; c != ')' && !isASCIIDigit(c) {
		return "", invalid(ErrInvalidPhone, "must end with a digit or parenthesis")
	}

	digits := make([]byte, 0, len(s))
	plus := false
	groups := 0
	groupOpen := false
	groupStart := 0
	// trunkGroup is the index in digits of a "(0)" group, or -1.
	trunkGroup := -1
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits = append(digits, byte(r))
		case r == '+':
			if i != 0 {
				return "", invalid(ErrInvalidPhone, "plus sign not at the start")
			}
			plus = true
		case r == '(':
			if groupOpen {
				return "", invalid(ErrInvalidPhone, "nested parentheses")
			}
			if groups > 0 {
				return "", invalid(ErrInvalidPhone, "more than one pair of parentheses")
			}
			groups++
			groupOpen = true
			groupStart = len(digits)
		case r == ')':
			if !groupOpen {
				return "", invalid(ErrInvalidPhone, "unbalanced parentheses")
			}
			groupOpen = false
			switch group := digits[groupStart:]; {
			case len(group) == 0:
				return "", invalid(ErrInvalidPhone, "no digits in parentheses")
			case string(group) == "0":
				trunkGroup = groupStart
			}
		case isPhoneSeparator(r):
		default:
			return "", invalid(ErrInvalidPhone, "unexpected character")
		}
	}
	if groupOpen {
		return "", invalid(ErrInvalidPhone, "unbalanced parentheses")
	}

	international := plus
	countryStart := 0
	if !plus && len(digits) >= 2 && digits[0] == '0' && digits[1] == '0' {
		international = true
		countryStart = 2
	}

	if !international {
		// A Swedish national number: the trunk prefix 0, then the national
		// significant number. A "(0)" here is simply that prefix written
		// in parentheses, so it needs no special case.
		if len(digits) == 0 || digits[0] != '0' {
			return "", invalid(ErrInvalidPhone, "neither a trunk prefix nor a country code")
		}
		return swedishE164(digits[1:])
	}

	droppedTrunk := false
	if trunkGroup >= 0 {
		// Country codes have one to three digits; a "(0)" anywhere else is
		// not a trunk prefix and dropping it would change the number.
		if pos := trunkGroup - countryStart; pos < 1 || pos > 3 {
			return "", invalid(ErrInvalidPhone, "trunk prefix in parentheses not after the country code")
		}
		digits = append(digits[:trunkGroup], digits[trunkGroup+1:]...)
		droppedTrunk = true
	}
	number := digits[countryStart:]
	if len(number) == 0 {
		return "", invalid(ErrInvalidPhone, "no digits")
	}
	if number[0] == '0' {
		return "", invalid(ErrInvalidPhone, "country code cannot begin with zero")
	}
	if nsn, ok := strings.CutPrefix(string(number), swedishCountryCode); ok {
		if !droppedTrunk && strings.HasPrefix(nsn, "0") {
			nsn = nsn[1:]
		}
		return swedishE164([]byte(nsn))
	}
	if len(number) < minE164Digits {
		return "", invalid(ErrInvalidPhone, "too few digits")
	}
	if len(number) > maxE164Digits {
		return "", invalid(ErrInvalidPhone, "too many digits")
	}
	return "+" + string(number), nil
}

// swedishE164 checks a Swedish national significant number, without trunk
// prefix, and returns it with +46.
func swedishE164(nsn []byte) (string, error) {
	if len(nsn) > 0 && nsn[0] == '0' {
		return "", invalid(ErrInvalidPhone, "Swedish number cannot begin with a second zero")
	}
	if len(nsn) < minSwedishNSN {
		return "", invalid(ErrInvalidPhone, "too few digits for a Swedish number")
	}
	if len(nsn) > maxSwedishNSN {
		return "", invalid(ErrInvalidPhone, "too many digits for a Swedish number")
	}
	return "+" + swedishCountryCode + string(nsn), nil
}

// isPhoneSeparator reports whether r may separate digit groups: any Unicode
// space (numbers pasted from documents carry no-break and thin spaces), the
// hyphen-minus and its typographic relatives, which word processors
// substitute, and the dot.
func isPhoneSeparator(r rune) bool {
	switch r {
	case '-', '.', '\u2010', '\u2011', '\u2012', '\u2013', '\u2014', '\u2212':
		return true
	}
	return unicode.Is(unicode.Zs, r)
}

// isASCIIDigit reports whether c is one of '0' to '9'.
func isASCIIDigit(c byte) bool {
	return c >= '0' && c <= '9'
}
