package identity

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseEmailValid(t *testing.T) {
	tests := []struct {
		in string
		// address is the form stored and shown, normalised the form
		// compared and fed to the blind index.
		address    string
		normalised string
	}{
		{in: "anna.svensson@example.se", address: "anna.svensson@example.se", normalised: "anna.svensson@example.se"},
		{in: "Anna.Svensson@Example.SE", address: "Anna.Svensson@example.se", normalised: "anna.svensson@example.se"},
		{in: "  anna@example.se\n", address: "anna@example.se", normalised: "anna@example.se"},
		{in: "\u00a0anna@example.se\u200b", address: "anna@example.se", normalised: "anna@example.se"},
		{in: "anna+kontakt@example.se", address: "anna+kontakt@example.se", normalised: "anna+kontakt@example.se"},
		{in: "anna_svensson-1@mail.example.se", address: "anna_svensson-1@mail.example.se", normalised: "anna_svensson-1@mail.example.se"},
		{in: "a@b.se", address: "a@b.se", normalised: "a@b.se"},
		{in: "o'brien@example.ie", address: "o'brien@example.ie", normalised: "o'brien@example.ie"},
		{in: "!#$%&'*+-/=?^_`{|}~@example.se", address: "!#$%&'*+-/=?^_`{|}~@example.se", normalised: "!#$%&'*+-/=?^_`{|}~@example.se"},
		{in: "anna@sub-domain.example.co.uk", address: "anna@sub-domain.example.co.uk", normalised: "anna@sub-domain.example.co.uk"},
		{in: "anna@123.example.se", address: "anna@123.example.se", normalised: "anna@123.example.se"},
		// Internationalised domains: stored in Unicode, compared in ASCII.
		{in: "anna@räksmörgås.se", address: "anna@räksmörgås.se", normalised: "anna@xn--rksmrgs-5wao1o.se"},
		{in: "info@brf-åkern.se", address: "info@brf-åkern.se", normalised: "info@xn--brf-kern-d0a.se"},
		{in: "anna@ÖREBRO.SE", address: "anna@örebro.se", normalised: "anna@xn--rebro-iua.se"},
		{in: "anna@örebro.se", address: "anna@örebro.se", normalised: "anna@xn--rebro-iua.se"},
		{in: "info@xn--rksmrgs-5wao1o.se", address: "info@räksmörgås.se", normalised: "info@xn--rksmrgs-5wao1o.se"},
		{in: "INFO@XN--RKSMRGS-5WAO1O.SE", address: "INFO@räksmörgås.se", normalised: "info@xn--rksmrgs-5wao1o.se"},
		// "ö" written as "o" and a combining diaeresis (NFD, as macOS
		// file names and some keyboards give it) is the same domain.
		{in: "anna@o\u0308rebro.se", address: "anna@örebro.se", normalised: "anna@xn--rebro-iua.se"},
		{in: "anna@ｅｘａｍｐｌｅ.se", address: "anna@example.se", normalised: "anna@example.se"},
		{in: "anna@straße.de", address: "anna@straße.de", normalised: "anna@xn--strae-oqa.de"},
		// Pasted from a mail client: the address is kept, the name dropped.
		{in: "Anna Svensson <anna@example.se>", address: "anna@example.se", normalised: "anna@example.se"},
		{in: " Anna Svensson <Anna@Example.se> ", address: "Anna@example.se", normalised: "anna@example.se"},
		{in: `"Svensson, Anna" <anna@example.se>`, address: "anna@example.se", normalised: "anna@example.se"},
		{in: "Åsa Öberg <asa@örebro.se>", address: "asa@örebro.se", normalised: "asa@xn--rebro-iua.se"},
		{in: "=?utf-8?q?=C3=85sa?= <asa@example.se>", address: "asa@example.se", normalised: "asa@example.se"},
		{in: "<anna@example.se>", address: "anna@example.se", normalised: "anna@example.se"},
		{in: "anna@example.se (Anna)", address: "anna@example.se", normalised: "anna@example.se"},
		{in: `"anna"@example.se`, address: "anna@example.se", normalised: "anna@example.se"},
		{in: strings.Repeat("a", 64) + "@example.se", address: strings.Repeat("a", 64) + "@example.se", normalised: strings.Repeat("a", 64) + "@example.se"},
		{in: "a@" + strings.Repeat("b", 63) + ".se", address: "a@" + strings.Repeat("b", 63) + ".se", normalised: "a@" + strings.Repeat("b", 63) + ".se"},
		{in: maxLengthEmail(), address: maxLengthEmail(), normalised: maxLengthEmail()},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			e, err := ParseEmail(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.address, e.Address())
			require.Equal(t, tt.normalised, e.Normalised())

			n, err := NormaliseEmail(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.normalised, n)

			// Both forms read back to the same address: what is stored
			// finds the same blind-index token as what was typed.
			for _, form := range []string{e.Address(), e.Normalised()} {
				again, err := ParseEmail(form)
				require.NoError(t, err)
				require.Equal(t, tt.normalised, again.Normalised())
			}
			again, err := ParseEmail(e.Address())
			require.NoError(t, err)
			require.Equal(t, e.Address(), again.Address())
		})
	}
}

// maxLengthEmail returns a valid address of exactly 254 characters.
func maxLengthEmail() string {
	local := strings.Repeat("a", 64)
	domain := strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 58) + ".se"
	return local + "@" + domain
}

func TestMaxLengthEmailIsMaximal(t *testing.T) {
	require.Len(t, maxLengthEmail(), 254)
}

func TestParseEmailInvalid(t *testing.T) {
	const notSingle = "not a single e-mail address"
	const badDomain = "domain is not a valid domain name"
	tests := []struct {
		name   string
		in     string
		reason string
	}{
		{name: "empty", in: "", reason: "empty"},
		{name: "blank", in: "  \u00a0", reason: "empty"},
		{name: "too long", in: strings.Replace(maxLengthEmail(), ".se", "d.se", 1), reason: "too long"},
		{name: "too long input", in: strings.Repeat("Anna ", 200) + "<anna@example.se>", reason: "too long"},
		// A label of 61 characters that is 68 in its ASCII form.
		{name: "label too long in ASCII", in: "a@" + strings.Repeat("a", 60) + "ö.se", reason: badDomain},
		{name: "two addresses", in: "anna@example.se,bo@example.se", reason: notSingle},
		{name: "two addresses with names", in: "Anna <anna@example.se>, Bo <bo@example.se>", reason: notSingle},
		{name: "unclosed angle bracket", in: "Anna Svensson <anna@example.se", reason: notSingle},
		{name: "inner space", in: "anna svensson@example.se", reason: notSingle},
		{name: "non-ASCII local", in: "åsa@example.se", reason: "local part must be ASCII"},
		{name: "control character", in: "anna\x00@example.se", reason: notSingle},
		{name: "invalid UTF-8", in: "anna\xff@example.se", reason: notSingle},
		{name: "no at", in: "anna.example.se", reason: "no at sign"},
		{name: "two at", in: "anna@svensson@example.se", reason: notSingle},
		{name: "quoted at", in: `"anna@x"@example.se`, reason: "local part has an unexpected character"},
		{name: "quoted space", in: `"anna svensson"@example.se`, reason: "local part has an unexpected character"},
		{name: "quoted dots", in: `"anna..svensson"@example.se`, reason: "local part has a misplaced dot"},
		{name: "empty local", in: "@example.se", reason: notSingle},
		{name: "leading dot", in: ".anna@example.se", reason: notSingle},
		{name: "trailing dot local", in: "anna.@example.se", reason: notSingle},
		{name: "double dot local", in: "anna..svensson@example.se", reason: notSingle},
		{name: "backslash", in: `anna\svensson@example.se`, reason: notSingle},
		{name: "local too long", in: strings.Repeat("a", 65) + "@example.se", reason: "local part too long"},
		{name: "empty domain", in: "anna@", reason: notSingle},
		{name: "no dot", in: "anna@localhost", reason: "domain has no dot"},
		{name: "no dot, Unicode", in: "anna@räksmörgås", reason: "domain has no dot"},
		{name: "trailing dot domain", in: "anna@example.se.", reason: notSingle},
		{name: "double dot domain", in: "anna@example..se", reason: notSingle},
		{name: "domain literal", in: "anna@[192.168.0.1]", reason: "domain is an address, not a name"},
		{name: "ip address", in: "anna@192.168.0.1", reason: "top-level domain is numeric"},
		{name: "numeric tld", in: "anna@example.123", reason: "top-level domain is numeric"},
		{name: "label hyphen start", in: "anna@-example.se", reason: badDomain},
		{name: "label hyphen end", in: "anna@example-.se", reason: badDomain},
		{name: "reserved hyphens", in: "anna@ab--cd.se", reason: badDomain},
		{name: "underscore in domain", in: "anna@ex_ample.se", reason: badDomain},
		{name: "plus in domain", in: "anna@ex+ample.se", reason: badDomain},
		{name: "slash in domain", in: "anna@räk/smörgås.se", reason: badDomain},
		{name: "broken punycode", in: "anna@xn--abc.se", reason: badDomain},
		{name: "label too long", in: "a@" + strings.Repeat("b", 64) + ".se", reason: badDomain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseEmail(tt.in)
			require.ErrorIs(t, err, ErrInvalidEmail)
			require.Equal(t, "invalid e-mail address: "+tt.reason, err.Error())
			require.Equal(t, Email{}, e)
			requireNoEcho(t, err, tt.in)
			require.NotContains(t, err.Error(), "@")

			n, err := NormaliseEmail(tt.in)
			require.ErrorIs(t, err, ErrInvalidEmail)
			require.Empty(t, n)
		})
	}
}
