package identity

import (
	"net/mail"
	"strings"

	"golang.org/x/net/idna"
)

const (
	// maxEmailLength is the longest address that fits the SMTP forward
	// path (RFC 5321: 256 octets including the angle brackets), counted
	// with the domain in its ASCII (A-label) form, the form mail travels in.
	maxEmailLength = 254
	// maxLocalPartLength is RFC 5321's limit on the part before the '@'.
	maxLocalPartLength = 64
	// maxLabelLength is RFC 1035's limit on one label of a domain name.
	maxLabelLength = 63
	// maxEmailInput bounds the input, a display name included: the API
	// takes at most 254 characters, which UTF-8 holds in four times as
	// many bytes. It caps the work spent on hostile input.
	maxEmailInput = 4 * maxEmailLength
)

// emailDomains maps and checks the domain of an address by IDNA2008 as
// UTS #46 applies it to lookups (the profile browsers and mail clients
// use): upper case, full-width letters and other compatibility forms are
// mapped ("ÖREBRO.SE" is "örebro.se"), Unicode is normalised (NFC), "ß"
// stays "ß" (non-transitional), and labels must be valid IDNA: letters,
// digits and inner hyphens only (STD3), the right-to-left rules, at most
// 63 octets a label and 253 in all in the ASCII form. An "xn--" label is
// decoded and must be a valid IDNA label too.
var emailDomains = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.BidiRule(),
	idna.VerifyDNSLength(true),
)

// Email is an e-mail address as ParseEmail read it. It has two forms:
// Address, to store and show, and Normalised, to compare and to feed the
// blind index. It has no String method, so that it is not printed by
// accident: an address is personal data.
type Email struct {
	// local is the part before the '@' as written: ASCII, case kept.
	local string
	// ascii is the domain in lower-case ASCII, with "xn--" A-labels for
	// internationalised labels.
	ascii string
	// unicode is the domain in lower-case Unicode (U-labels, NFC).
	unicode string
}

// Address is the form to store and to show: the local part as the citizen
// wrote it and the domain in Unicode, lower case. The domain is shown as
// people write it ("anna@räksmörgås.se"; nobody recognises
// "xn--rksmrgs-5wao1o.se" as their own), and because domains are case
// insensitive by definition, its case is normalised. The local part keeps
// its case: RFC 5321 lets the receiving server tell "Anna" from "anna", so
// an answer is sent to exactly what was given. A mailer converts the
// domain back with Normalised's ASCII domain, or with IDNA itself.
func (e Email) Address() string { return e.local + "@" + e.unicode }

// Normalised is the form to compare and to compute blind-index tokens
// from: the local part in lower case and the domain in lower-case ASCII
// (A-labels). Every spelling of one mailbox gives it: "anna@ÖREBRO.SE",
// "Anna@örebro.se" and "anna@xn--rebro-jua.se" alike. The ASCII form is
// chosen over the Unicode one because it is IDNA's own comparison form,
// one string per domain with nothing left to normalise, and because it
// leaves the token of every ASCII address what it was before
// internationalised domains were accepted. The local part is lower-cased,
// although RFC 5321 allows a server to tell case apart, because the
// providers citizens use do not, and a search must find
// "Anna.Svensson@Example.se" when an agent types "anna.svensson@example.se".
func (e Email) Normalised() string { return strings.ToLower(e.local) + "@" + e.ascii }

// ParseEmail reads an e-mail address as citizens type or paste it.
//
// Blanks around it are trimmed (TrimBlanks). A display name, angle
// brackets or a comment around the address, as a copy from a mail
// client leaves them ("Anna Svensson <anna@example.se>"), are dropped and
// the address alone is kept; net/mail (RFC 5322) decides what is a
// single address, so two addresses or a broken display name are refused
// (a group holding exactly one address, "Styrelsen: anna@example.se;",
// is read as that address, as net/mail reads it).
//
// The local part must be a dot-atom of 1 to 64 ASCII characters (letters,
// digits and !#$%&'*+-/=?^_`{|}~, dots between them). Quotes that change
// nothing are dropped as RFC 5322 says (`"anna"@example.se` is
// anna@example.se); a local part that needs them (spaces, a second '@')
// is refused, because such addresses let one mailbox be written many ways
// and few mail systems deliver to them. Non-ASCII local parts (RFC 6531)
// are refused because most mail relays, a municipality's included, cannot
// deliver to them, so an answer would bounce. The domain may be
// internationalised ("räksmörgås.se", "ÖREBRO.SE", or its "xn--" form)
// and goes through IDNA (emailDomains); it must have at least two labels
// and a top-level label that is not a number, so IP addresses and domain
// literals are refused. IDNA2008 also refuses labels with "--" in the
// third and fourth place other than "xn--" (reserved; no registry hands
// them out). The whole address, with the domain in ASCII, is at most 254
// characters.
//
// Errors wrap ErrInvalidEmail with a short reason and never contain the
// input.
func ParseEmail(s string) (Email, error) {
	s = TrimBlanks(s)
	if s == "" {
		return Email{}, invalid(ErrInvalidEmail, "empty")
	}
	if len(s) > maxEmailInput {
		return Email{}, invalid(ErrInvalidEmail, "too long")
	}
	if !strings.Contains(s, "@") {
		return Email{}, invalid(ErrInvalidEmail, "no at sign")
	}
	addr, err := mail.ParseAddress(s)
	if err != nil {
		return Email{}, invalid(ErrInvalidEmail, "not a single e-mail address")
	}
	at := strings.LastIndexByte(addr.Address, '@')
	if at < 0 {
		return Email{}, invalid(ErrInvalidEmail, "not a single e-mail address")
	}
	local, domain := addr.Address[:at], addr.Address[at+1:]
	if err := checkLocalPart(local); err != nil {
		return Email{}, err
	}
	if strings.HasPrefix(domain, "[") {
		return Email{}, invalid(ErrInvalidEmail, "domain is an address, not a name")
	}
	// IDNA's errors quote the label they refuse, so they are replaced by
	// a fixed reason here, never wrapped.
	ascii, err := emailDomains.ToASCII(domain)
	if err != nil {
		return Email{}, invalid(ErrInvalidEmail, "domain is not a valid domain name")
	}
	if err := checkDomain(ascii); err != nil {
		return Email{}, err
	}
	unicode, err := emailDomains.ToUnicode(ascii)
	if err != nil {
		return Email{}, invalid(ErrInvalidEmail, "domain is not a valid domain name")
	}
	if len(local)+1+len(ascii) > maxEmailLength {
		return Email{}, invalid(ErrInvalidEmail, "too long")
	}
	return Email{local: local, ascii: ascii, unicode: unicode}, nil
}

// NormaliseEmail reads s as ParseEmail does and returns its Normalised
// form, the one to compare and to feed the blind index.
func NormaliseEmail(s string) (string, error) {
	e, err := ParseEmail(s)
	if err != nil {
		return "", err
	}
	return e.Normalised(), nil
}

// checkLocalPart checks that local is an RFC 5322 dot-atom of printable
// ASCII: atext runs separated by single dots.
func checkLocalPart(local string) error {
	if local == "" {
		return invalid(ErrInvalidEmail, "empty local part")
	}
	if len(local) > maxLocalPartLength {
		return invalid(ErrInvalidEmail, "local part too long")
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case c >= 0x80:
			return invalid(ErrInvalidEmail, "local part must be ASCII")
		case c == '.':
			if i == 0 || i == len(local)-1 || local[i-1] == '.' {
				return invalid(ErrInvalidEmail, "local part has a misplaced dot")
			}
		case !isAtext(c):
			return invalid(ErrInvalidEmail, "local part has an unexpected character")
		}
	}
	return nil
}

// isAtext reports whether c is an RFC 5322 atext character.
func isAtext(c byte) bool {
	if isASCIIDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'z') {
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// checkDomain checks that domain, in its ASCII form, is a host name fit
// to receive mail: at least two labels, each of ASCII letters, digits and
// hyphens, not starting or ending with a hyphen, and a top-level label
// that is not a number. IDNA checks most of it already; this keeps the
// rules kontakt relies on in one readable place.
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
