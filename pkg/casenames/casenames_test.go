package casenames

import (
	"testing"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

func TestNamesAreTheFilesVocabulary(t *testing.T) {
	// The files people already wrote use exactly these names, in this
	// order in messages; a change here breaks their files.
	require.Equal(t, []string{"fraga", "felanmalan", "synpunkt", "brev"}, TypeNames())
	require.Equal(t, []string{"phone", "email", "form", "letter", "visit", "chat"}, ChannelNames())
	require.Equal(t, []casev1.CaseType{
		casev1.CaseType_CASE_TYPE_FRAGA, casev1.CaseType_CASE_TYPE_FELANMALAN,
		casev1.CaseType_CASE_TYPE_SYNPUNKT, casev1.CaseType_CASE_TYPE_BREV,
	}, Types())
	require.Len(t, Channels(), len(casev1.Channel_name)-1, "every channel but UNSPECIFIED")
}

func TestEveryValueRoundTrips(t *testing.T) {
	for _, ty := range Types() {
		got, ok := ParseType(Type(ty))
		require.True(t, ok, "type %s", ty)
		require.Equal(t, ty, got)
	}
	for _, ch := range Channels() {
		got, ok := ParseChannel(Channel(ch))
		require.True(t, ok, "channel %s", ch)
		require.Equal(t, ch, got)
	}
}

func TestParse(t *testing.T) {
	parseType := func(n string) (int32, bool) { v, ok := ParseType(n); return int32(v), ok }
	parseChannel := func(n string) (int32, bool) { v, ok := ParseChannel(n); return int32(v), ok }
	tests := []struct {
		name  string
		parse func(string) (int32, bool)
		want  int32
		ok    bool
	}{
		{name: "fraga", parse: parseType, want: int32(casev1.CaseType_CASE_TYPE_FRAGA), ok: true},
		{name: "fråga", parse: parseType, want: int32(casev1.CaseType_CASE_TYPE_FRAGA), ok: true},
		{name: "felanmälan", parse: parseType, want: int32(casev1.CaseType_CASE_TYPE_FELANMALAN), ok: true},
		{name: "brev", parse: parseType, want: int32(casev1.CaseType_CASE_TYPE_BREV), ok: true},
		{name: "unspecified", parse: parseType},
		{name: "Fraga", parse: parseType},
		{name: " fraga", parse: parseType},
		{name: "CASE_TYPE_FRAGA", parse: parseType},
		{name: "phone", parse: parseType},
		{name: "", parse: parseType},
		{name: "visit", parse: parseChannel, want: int32(casev1.Channel_CHANNEL_VISIT), ok: true},
		{name: "chat", parse: parseChannel, want: int32(casev1.Channel_CHANNEL_CHAT), ok: true},
		{name: "unspecified", parse: parseChannel},
		{name: "Phone", parse: parseChannel},
		{name: "telefon", parse: parseChannel},
		{name: "fraga", parse: parseChannel},
		{name: "", parse: parseChannel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.parse(tt.name)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestNameOfAValueNotInTheTable(t *testing.T) {
	require.Equal(t, "unspecified", Type(casev1.CaseType_CASE_TYPE_UNSPECIFIED))
	require.Equal(t, "unspecified", Channel(casev1.Channel_CHANNEL_UNSPECIFIED))
	require.Equal(t, "99", Type(casev1.CaseType(99)))
	require.Equal(t, "99", Channel(casev1.Channel(99)))
}

func TestListsAreCopies(t *testing.T) {
	TypeNames()[0] = "changed"
	Types()[0] = casev1.CaseType_CASE_TYPE_BREV
	require.Equal(t, "fraga", TypeNames()[0])
	require.Equal(t, casev1.CaseType_CASE_TYPE_FRAGA, Types()[0])
}
