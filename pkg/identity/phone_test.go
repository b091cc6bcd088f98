package identity

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNormalisePhoneValid(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		// Swedish national forms.
		{in: "070-123 45 67", want: "+46701234567"},
		{in: "0701234567", want: "+46701234567"},
		{in: "070 123 45 67", want: "+46701234567"},
		{in: "070-1234567", want: "+46701234567"},
		{in: "070.123.45.67", want: "+46701234567"},
		{in: "(070) 123 45 67", want: "+46701234567"},
		{in: "  070-123 45 67  ", want: "+46701234567"},
		{in: "070\u00a0123\u00a045\u00a067", want: "+46701234567"},
		{in: "070\u2013123\u202f45\u200967", want: "+46701234567"},
		{in: "08-123 456 78", want: "+46812345678"},
		{in: "08-123 45 67", want: "+4681234567"},
		{in: "(08) 123 456 78", want: "+46812345678"},
		{in: "(0)8-123 456 78", want: "+46812345678"},
		{in: "031-12 34 56", want: "+4631123456"},
		{in: "031-123 45 67", want: "+46311234567"},
		{in: "0910-123 45", want: "+4691012345"},
		{in: "0980-123 45", want: "+4698012345"},
		{in: "020-123 456", want: "+4620123456"},
		{in: "0771-567 567", want: "+46771567567"},
		{in: "031-12345", want: "+463112345"},
		// Swedish numbers in international form.
		{in: "+46 70 123 45 67", want: "+46701234567"},
		{in: "+46701234567", want: "+46701234567"},
		{in: "+46-70-123 45 67", want: "+46701234567"},
		{in: "+46 (0)70 123 45 67", want: "+46701234567"},
		{in: "+46(0)701234567", want: "+46701234567"},
		{in: "+46 (0) 8 123 456 78", want: "+46812345678"},
		{in: "+46 070 123 45 67", want: "+46701234567"},
		{in: "+46 (08) 123 456 78", want: "+46812345678"},
		{in: "+ 46 70 123 45 67", want: "+46701234567"},
		{in: "+(46) 70 123 45 67", want: "+46701234567"},
		{in: "0046701234567", want: "+46701234567"},
		{in: "0046 70 123 45 67", want: "+46701234567"},
		{in: "00 46 (0)70 123 45 67", want: "+46701234567"},
		{in: "0046 070 123 45 67", want: "+46701234567"},
		// Other countries.
		{in: "+47 912 34 567", want: "+4791234567"},
		{in: "0047 91234567", want: "+4791234567"},
		{in: "+1 (212) 555-0100", want: "+12125550100"},
		{in: "+1 212.555.0100", want: "+12125550100"},
		{in: "+44 (0)20 7946 0000", want: "+442079460000"},
		{in: "+49 (0) 30 123456", want: "+4930123456"},
		{in: "+358 (0)40 123 4567", want: "+358401234567"},
		{in: "+39 06 1234 5678", want: "+390612345678"},
		{in: "+683 4002", want: "+6834002"},
		{in: "+123 456 789 012 345", want: "+123456789012345"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalisePhone(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)

			again, err := NormalisePhone(got)
			require.NoError(t, err)
			require.Equal(t, got, again)
		})
	}
}

func TestNormalisePhoneInvalid(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		reason string
	}{
		{name: "empty", in: "", reason: "empty"},
		{name: "blank", in: " \t ", reason: "empty"},
		{name: "too long", in: "070" + strings.Repeat(" ", 70) + "1234567", reason: "too long"},
		{name: "letters", in: "070-ABC 45 67", reason: "unexpected character"},
		{name: "extension", in: "08-123 456 78 ext 12", reason: "unexpected character"},
		{name: "slash", in: "070/123 45 67", reason: "unexpected character"},
		{name: "tab inside", in: "070\t1234567", reason: "unexpected character"},
		{name: "unicode digits", in: "070 ١٢٣ 4567", reason: "unexpected character"},
		{name: "leading dash", in: "-0701234567", reason: "must begin with a digit, plus sign or parenthesis"},
		{name: "leading letter", in: "tel 0701234567", reason: "must begin with a digit, plus sign or parenthesis"},
		{name: "trailing dash", in: "0701234567-", reason: "must end with a digit or parenthesis"},
		{name: "trailing dot", in: "070.123.45.67.", reason: "must end with a digit or parenthesis"},
		{name: "plus alone", in: "+", reason: "must end with a digit or parenthesis"},
		{name: "plus inside", in: "46+701234567", reason: "plus sign not at the start"},
		{name: "two plus", in: "++46701234567", reason: "plus sign not at the start"},
		{name: "nested parentheses", in: "((08)) 123 456 78", reason: "nested parentheses"},
		{name: "two groups", in: "+46 (0) (70) 123 45 67", reason: "more than one pair of parentheses"},
		{name: "unclosed", in: "(08 123 456 78", reason: "unbalanced parentheses"},
		{name: "unopened", in: "08) 123 456 78", reason: "unbalanced parentheses"},
		{name: "empty parentheses", in: "+46 () 70 123 45 67", reason: "no digits in parentheses"},
		{name: "no digits", in: "()", reason: "no digits in parentheses"},
		{name: "no trunk prefix", in: "70 123 45 67", reason: "neither a trunk prefix nor a country code"},
		{name: "no trunk prefix short", in: "112", reason: "neither a trunk prefix nor a country code"},
		{name: "short national", in: "08-123 45", reason: "too few digits for a Swedish number"},
		{name: "trunk only", in: "0", reason: "too few digits for a Swedish number"},
		{name: "long national", in: "070-123 45 67 8", reason: "too many digits for a Swedish number"},
		{name: "short international Swedish", in: "+46 8 123 45", reason: "too few digits for a Swedish number"},
		{name: "long international Swedish", in: "+46 70 123 45 678", reason: "too many digits for a Swedish number"},
		{name: "country code only", in: "+46", reason: "too few digits for a Swedish number"},
		{name: "two trunk zeros", in: "+46 (0)070 123 45 67", reason: "Swedish number cannot begin with a second zero"},
		{name: "double zero after country code", in: "+46 00 70 123 45 67", reason: "Swedish number cannot begin with a second zero"},
		{name: "trunk group too late", in: "+4670 (0)123 45 67", reason: "trunk prefix in parentheses not after the country code"},
		{name: "trunk group first", in: "+(0)46 70 123 45 67", reason: "trunk prefix in parentheses not after the country code"},
		{name: "international prefix only", in: "00", reason: "no digits"},
		{name: "country code zero", in: "+0 123 456 789", reason: "country code cannot begin with zero"},
		{name: "triple zero", in: "000 46 70 123 45 67", reason: "country code cannot begin with zero"},
		{name: "short foreign", in: "+47 1234", reason: "too few digits"},
		{name: "long foreign", in: "+1 234 567 890 123 456", reason: "too many digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalisePhone(tt.in)
			require.ErrorIs(t, err, ErrInvalidPhone)
			require.Equal(t, "invalid phone number: "+tt.reason, err.Error())
			require.Empty(t, got)
			requireNoEcho(t, err, tt.in)
		})
	}
}
