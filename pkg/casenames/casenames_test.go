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

func TestParseType(t *testing.T) {
	tests := []struct {
		name string
		want casev1.CaseType
		ok   bool
	}{
		{name: "fraga", want: casev1.CaseType_CASE_TYPE_FRAGA, ok: true},
		{name: "fråga", want: casev1.CaseType_CASE_TYPE_FRAGA, ok: true},
		{name: "felanmälan", want: casev1.CaseType_CASE_TYPE_FELANMALAN, ok: true},
		{name: "brev", want: casev1.CaseType_CASE_TYPE_BREV, ok: true},
		{name: "unspecified"},
		{name: "Fraga"},
		{name: " fraga"},
		{name: "CASE_TYPE_FRAGA"},
		{name: "phone"},
		{name: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseType(tt.name)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseChannel(t *testing.T) {
	tests := []struct {
		name string
		want casev1.Channel
		ok   bool
	}{
		{name: "visit", want: casev1.Channel_CHANNEL_VISIT, ok: true},
		{name: "chat", want: casev1.Channel_CHANNEL_CHAT, ok: true},
		{name: "unspecified"},
		{name: "Phone"},
		{name: "telefon"},
		{name: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseChannel(tt.name)
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
