package identity

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNormaliseEmailValid(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{in: "anna.svensson@example.se", want: "anna.svensson@example.se"},
		{in: "Anna.Svensson@Example.SE", want: "anna.svensson@example.se"},
		{in: "  anna@example.se\n", want: "anna@example.se"},
		{in: "anna+kontakt@example.se", want: "anna+kontakt@example.se"},
		{in: "anna_svensson-1@mail.example.se", want: "anna_svensson-1@mail.example.se"},
		{in: "a@b.se", want: "a@b.se"},
		{in: "o'brien@example.ie", want: "o'brien@example.ie"},
		{in: "!#$%&'*+-/=?^_`{|}~@example.se", want: "!#$%&'*+-/=?^_`{|}~@example.se"},
		{in: "info@xn--rksmrgs-5wao1o.se", want: "info@xn--rksmrgs-5wao1o.se"},
		{in: "anna@sub-domain.example.co.uk", want: "anna@sub-domain.example.co.uk"},
		{in: "anna@123.example.se", want: "anna@123.example.se"},
		{in: strings.Repeat("a", 64) + "@example.se", want: strings.Repeat("a", 64) + "@example.se"},
		{in: "a@" + strings.Repeat("b", 63) + ".se", want: "a@" + strings.Repeat("b", 63) + ".se"},
		{in: maxLengthEmail(), want: maxLengthEmail()},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormaliseEmail(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)

			again, err := NormaliseEmail(got)
			require.NoError(t, err)
			require.Equal(t, got, again)
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

func TestNormaliseEmailInvalid(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		reason string
	}{
		{name: "empty", in: "", reason: "empty"},
		{name: "blank", in: "  ", reason: "empty"},
		{name: "too long", in: "a" + maxLengthEmail(), reason: "too long"},
		{name: "display name", in: "Anna <anna@example.se>", reason: "unexpected character"},
		{name: "quoted display name", in: `"Anna"<anna@example.se>`, reason: "not a bare address"},
		{name: "angle brackets", in: "<anna@example.se>", reason: "not a bare address"},
		{name: "comment", in: "anna@example.se(Anna)", reason: "not a bare address"},
		{name: "two addresses", in: "anna@example.se,bo@example.se", reason: "not exactly one at sign"},
		{name: "inner space", in: "anna svensson@example.se", reason: "unexpected character"},
		{name: "non-ASCII local", in: "åsa@example.se", reason: "unexpected character"},
		{name: "non-ASCII domain", in: "info@räksmörgås.se", reason: "unexpected character"},
		{name: "control character", in: "anna\x00@example.se", reason: "unexpected character"},
		{name: "invalid UTF-8", in: "anna\xff@example.se", reason: "unexpected character"},
		{name: "no at", in: "anna.example.se", reason: "not exactly one at sign"},
		{name: "two at", in: "anna@svensson@example.se", reason: "not exactly one at sign"},
		{name: "quoted local", in: `"anna"@example.se`, reason: "quoted local part not supported"},
		{name: "quoted at", in: `"anna@x"@example.se`, reason: "not exactly one at sign"},
		{name: "empty local", in: "@example.se", reason: "not a bare address"},
		{name: "leading dot", in: ".anna@example.se", reason: "not a bare address"},
		{name: "trailing dot local", in: "anna.@example.se", reason: "not a bare address"},
		{name: "double dot local", in: "anna..svensson@example.se", reason: "not a bare address"},
		{name: "backslash", in: `anna\svensson@example.se`, reason: "not a bare address"},
		{name: "local too long", in: strings.Repeat("a", 65) + "@example.se", reason: "local part too long"},
		{name: "empty domain", in: "anna@", reason: "not a bare address"},
		{name: "no dot", in: "anna@localhost", reason: "domain has no dot"},
		{name: "trailing dot domain", in: "anna@example.se.", reason: "not a bare address"},
		{name: "double dot domain", in: "anna@example..se", reason: "not a bare address"},
		{name: "domain literal", in: "anna@[192.168.0.1]", reason: "domain label has an unexpected character"},
		{name: "ip address", in: "anna@192.168.0.1", reason: "top-level domain is numeric"},
		{name: "numeric tld", in: "anna@example.123", reason: "top-level domain is numeric"},
		{name: "label hyphen start", in: "anna@-example.se", reason: "domain label begins or ends with a hyphen"},
		{name: "label hyphen end", in: "anna@example-.se", reason: "domain label begins or ends with a hyphen"},
		{name: "underscore in domain", in: "anna@ex_ample.se", reason: "domain label has an unexpected character"},
		{name: "plus in domain", in: "anna@ex+ample.se", reason: "domain label has an unexpected character"},
		{name: "label too long", in: "a@" + strings.Repeat("b", 64) + ".se", reason: "domain label too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormaliseEmail(tt.in)
			require.ErrorIs(t, err, ErrInvalidEmail)
			require.Equal(t, "invalid e-mail address: "+tt.reason, err.Error())
			require.Empty(t, got)
			requireNoEcho(t, err, tt.in)
			require.NotContains(t, err.Error(), "@")
		})
	}
}
