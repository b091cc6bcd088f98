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
		{in: "070/123 45 67", want: "+46701234567"},
		{in: "(070) 123 45 67", want: "+46701234567"},
		{in: "  070-123 45 67  ", want: "+46701234567"},
		{in: "070\u00a0123\u00a045\u00a067", want: "+46701234567"},
		{in: "070\u2013123\u202f45\u200967", want: "+46701234567"},
		{in: "\u200b070-123 45 67\ufeff", want: "+46701234567"},
		{in: "08-123 456 78", want: "+46812345678"},
		{in: "08-123 45 67", want: "+4681234567"},
		{in: "08/123 456 78", want: "+46812345678"},
		{in: "(08) 123 456 78", want: "+46812345678"},
		{in: "(0)8-123 456 78", want: "+46812345678"},
		{in: "031-12 34 56", want: "+4631123456"},
		{in: "031-123 45 67", want: "+46311234567"},
		{in: "090-123 45", want: "+469012345"},
		{in: "0910-123 45", want: "+4691012345"},
		{in: "0980-123 45", want: "+4698012345"},
		{in: "020-123 456", want: "+4620123456"},
		{in: "0771-567 567", want: "+46771567567"},
		{in: "010-123 45 67", want: "+46101234567"},
		// Without the trunk prefix: libphonenumber reads a national
		// significant number as such.
		{in: "70 123 45 67", want: "+46701234567"},
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
		{in: "(+46) 70 123 45 67", want: "+46701234567"},
		{in: "(+46)70-123 45 67", want: "+46701234567"},
		{in: "0046701234567", want: "+46701234567"},
		{in: "0046 70 123 45 67", want: "+46701234567"},
		{in: "00 46 (0)70 123 45 67", want: "+46701234567"},
		{in: "0046 070 123 45 67", want: "+46701234567"},
		// The country code without "+" or "00": read as +46 because the
		// digits are not a valid Swedish national number but are one
		// after 46 (libphonenumber's rule for the default region).
		{in: "46701234567", want: "+46701234567"},
		{in: "46 70 123 45 67", want: "+46701234567"},
		{in: "46 8 123 456 78", want: "+46812345678"},
		// ... but digits that are a valid Swedish number as they stand
		// stay one: 046 is Lund's area code.
		{in: "468123456", want: "+46468123456"},
		// Other countries.
		{in: "+47 912 34 567", want: "+4791234567"},
		{in: "0047 91234567", want: "+4791234567"},
		{in: "+1 (212) 555-0100", want: "+12125550100"},
		{in: "+1 212.555.0100", want: "+12125550100"},
		{in: "+44 (0)20 7946 0000", want: "+442079460000"},
		{in: "+44 7911 123456", want: "+447911123456"},
		{in: "+49 (0) 30 123456", want: "+4930123456"},
		{in: "+358 (0)40 123 4567", want: "+358401234567"},
		// Italy keeps its leading 0 after the country code: it is part
		// of the number, not a trunk prefix, so "(0)" is not dropped.
		{in: "+39 (0)6 1234 5678", want: "+390612345678"},
		{in: "+39 06 1234 5678", want: "+390612345678"},
		{in: "0039 06 1234 5678", want: "+390612345678"},
		{in: "+683 4002", want: "+6834002"},
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
	const notInPlan = "not in its country's numbering plan (a digit missing or too many?)"
	tests := []struct {
		name   string
		in     string
		reason string
	}{
		{name: "empty", in: "", reason: "empty"},
		{name: "blank", in: " \t\u00a0 ", reason: "empty"},
		{name: "too long", in: "070" + strings.Repeat(" ", 70) + "1234567", reason: "too long"},
		{name: "letters", in: "070-ABC 45 67", reason: "unexpected character"},
		{name: "extension", in: "08-123 456 78 ext 12", reason: "unexpected character"},
		{name: "hash extension", in: "08-123 456 78#12", reason: "unexpected character"},
		{name: "tel URI", in: "tel:+46701234567", reason: "unexpected character"},
		{name: "RFC 3966 extension", in: "0701234567;ext=1", reason: "unexpected character"},
		{name: "tab inside", in: "070\t1234567", reason: "unexpected character"},
		{name: "unicode digits", in: "070 ١٢٣ 4567", reason: "unexpected character"},
		{name: "full-width digits", in: "０７０１２３４５６７", reason: "unexpected character"},
		{name: "plus inside", in: "46+701234567", reason: "plus sign not at the start"},
		{name: "two plus", in: "++46701234567", reason: "plus sign not at the start"},
		{name: "plus alone", in: "+", reason: "no digits"},
		{name: "no digits", in: "()", reason: "no digits"},
		{name: "international prefix only", in: "00", reason: "too few digits"},
		// A mobile number with a dropped digit has the length of a
		// fixed-line number, so only the numbering plan tells.
		{name: "mobile missing a digit", in: "070-123 45 6", reason: notInPlan},
		{name: "mobile missing a digit, international", in: "+46 70 123 45 6", reason: notInPlan},
		{name: "mobile with a digit too many", in: "070-123 45 67 8", reason: notInPlan},
		{name: "mobile with a digit too many, international", in: "+46 70 123 45 678", reason: notInPlan},
		{name: "short Stockholm number", in: "08-123 45", reason: notInPlan},
		{name: "short Stockholm number, international", in: "+46 8 123 45", reason: notInPlan},
		{name: "two trunk zeros", in: "+46 (0)070 123 45 67", reason: notInPlan},
		{name: "trunk group in the middle", in: "+4670 (0)123 45 67", reason: notInPlan},
		{name: "emergency number", in: "112", reason: "too few digits for its country"},
		{name: "trunk only", in: "0", reason: "not a phone number"},
		{name: "country code only", in: "+46", reason: "not a phone number"},
		{name: "unassigned country code", in: "+999 123 456 789", reason: "no such country code"},
		{name: "unassigned country code 2", in: "+80 123 456 789", reason: "no such country code"},
		{name: "country code zero", in: "+0 123 456 789", reason: "no such country code"},
		{name: "triple zero", in: "000 46 70 123 45 67", reason: "too many digits for its country"},
		{name: "short Norwegian", in: "+47 1234", reason: "too few digits for its country"},
		{name: "short British", in: "+44 20 7946", reason: notInPlan},
		{name: "short American", in: "+1 555 0100", reason: notInPlan},
		{name: "long E.164", in: "+123 456 789 012 345", reason: "too many digits for its country"},
		{name: "long foreign", in: "+1 234 567 890 123 456", reason: "too many digits for its country"},
		// A foreign number without "+" or "00" is read as Swedish, and
		// is no Swedish number.
		{name: "foreign without prefix", in: "4791234567", reason: notInPlan},
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
