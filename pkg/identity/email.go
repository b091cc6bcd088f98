package identity

import (
	"net/mail"
	"strings"
)

const (
	// maxEmailLength is the longest address that fits the SMTP forward
	// path (RFC 5321: 256 octets including the angle brackets).
	maxEmailLength = 254
	// maxLocalPartLength is RFC 5321's limit on the part before the '@'.
	maxLocalPartLength = 64
	// maxLabelLength is RFC 1035's limit on one label of a domain name.
	maxLabelLength = 63
)

// NormaliseEmail checks that s is a single bare e-mail address and returns
// the form to store and to feed the blind index.
//
// After surrounding blanks are trimmed, s must parse with net/mail as
// exactly one address and nothing else: display names ("Anna
// <anna@example.se>"), angle brackets, comments and quoted local parts are
// refused, because they would let the same mailbox be written many ways.
// The local part must be 1 to 64 characters, the domain a host name of at
// least two labels of letters, digits and inner hyphens with a top-level
// domain that is not all digits (so no IP addresses), and the whole at most
// 254 characters.
//
// Only printable ASCII is accepted. Internationalised addresses would need
// Unicode normalisation and IDNA to compare reliably, which the standard
// library does not provide; a domain with å, ä or ö can be given in its
// "xn--" form.
//
// The result is entirely lower case. RFC 5321 lets a server treat the local
// part as case-sensitive, but the providers citizens use do not, and a
// search must find "Anna.Svensson@Example.se" when an agent types
// "anna.svensson@example.se". The address as the citizen wrote it is kept
// separately for display and for sending; this form is only for comparing.
//
// Errors wrap ErrInvalidEmail with a short reason and never contain the
// input.
func NormaliseEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", invalid(ErrInvalidEmail, "empty")
	}
	if len(s) > maxEmailLength {
		return "", invalid(ErrInvalidEmail, "too long")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return "", invalid(ErrInvalidEmail, "unexpected character")
		}
	}
	at := strings.IndexByte(s, '@')
	if at < 0 || strings.IndexByte(s[at+1:], '@') >= 0 {
		return "", invalid(ErrInvalidEmail, "not exactly one at sign")
	}
	local, domain := s[:at], s[at+1:]

	// net/mail also accepts display names, angle brackets, comments and
	// quoted local parts, and returns the address without them; requiring
	// it to return the input unchanged is what makes the address bare.
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" {
		return "", invalid(ErrInvalidEmail, "not a bare address")
	}
	if addr.Address != s {
		if strings.HasPrefix(local, `"`) {
			return "", invalid(ErrInvalidEmail, "quoted local part not supported")
		}
		return "", invalid(ErrInvalidEmail, "not a bare address")
	}

	if local == "" {
		return "", invalid(ErrInvalidEmail, "empty local part")
	}
	if len(local) > maxLocalPartLength {
		return "", invalid(ErrInvalidEmail, "local part too long")
	}
	if err := checkDomain(domain); err != nil {
		return "", err
	}
	return strings.ToLower(s), nil
}

// checkDomain checks that domain is a host name fit to receive mail: at
// least two labels, each of ASCII letters, digits and hyphens, not starting
// or ending with a hyphen, and a top-level label that is not a number.
func checkDomain(domain string) error {
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return invalid(ErrInvalidEmail, "domain has no dot")
	}
	for _, label := range labels {
		if label == "" {
			return invalid(ErrInvalidEmail, "empty domain label")
		}
		if len(label) > maxLabelLength {
			return invalid(ErrInvalidEmail, "domain label too long")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return invalid(ErrInvalidEmail, "domain label begins or ends with a hyphen")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !isASCIIDigit(c) && c != '-' && (c|0x20 < 'a' || c|0x20 > 'z') {
				return invalid(ErrInvalidEmail, "domain label has an unexpected character")
			}
		}
	}
	tld := labels[len(labels)-1]
	if strings.Trim(tld, "0123456789") == "" {
		return invalid(ErrInvalidEmail, "top-level domain is numeric")
	}
	return nil
}
