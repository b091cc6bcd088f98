package seal_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

func TestClassProtoConversion(t *testing.T) {
	tests := []struct {
		class seal.Class
		proto casev1.DataClass
	}{
		{seal.ClassContact, casev1.DataClass_DATA_CLASS_CONTACT_DETAILS},
		{seal.ClassIdentity, casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER},
		{seal.ClassFreeText, casev1.DataClass_DATA_CLASS_FREE_TEXT},
		{seal.ClassAttachments, casev1.DataClass_DATA_CLASS_ATTACHMENTS},
		{seal.ClassAnswer, casev1.DataClass_DATA_CLASS_ANSWER},
	}
	require.Len(t, tests, len(seal.Classes()))
	for i, tc := range tests {
		t.Run(string(tc.class), func(t *testing.T) {
			require.Equal(t, tc.class, seal.Classes()[i])
			require.True(t, tc.class.Valid())
			require.Equal(t, tc.proto, tc.class.ToProto())
			got, err := seal.ClassFromProto(tc.proto)
			require.NoError(t, err)
			require.Equal(t, tc.class, got)
		})
	}
	// Every proto value except UNSPECIFIED has a class, so a new enum
	// value without a class is noticed here.
	for v := range casev1.DataClass_name {
		dc := casev1.DataClass(v)
		_, err := seal.ClassFromProto(dc)
		if dc == casev1.DataClass_DATA_CLASS_UNSPECIFIED {
			require.ErrorIs(t, err, seal.ErrInvalidClass)
		} else {
			require.NoError(t, err, dc.String())
		}
	}
	_, err := seal.ClassFromProto(casev1.DataClass(99))
	require.ErrorIs(t, err, seal.ErrInvalidClass)
	require.Equal(t, casev1.DataClass_DATA_CLASS_UNSPECIFIED, seal.Class("email").ToProto())
}

func TestKeyID(t *testing.T) {
	const caseID = "3f1c2a9e-5b7d-4c1e-9a2b-8d6f4e3c2b1a"
	tests := []struct {
		class seal.Class
		gen   uint32
		want  string
	}{
		// Generation 0 keeps the form every key had before generations,
		// so data sealed then still opens.
		{seal.ClassFreeText, 0, caseID + ".freetext"},
		{seal.ClassAnswer, 1, caseID + ".answer.1"},
		{seal.ClassContact, 12, caseID + ".contact.12"},
		{seal.ClassIdentity, 4294967295, caseID + ".identity.4294967295"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			id, err := seal.KeyID(caseID, tc.class, tc.gen)
			require.NoError(t, err)
			require.Equal(t, tc.want, id)
			gotCase, gotClass, gotGen, err := seal.ParseKeyID(id)
			require.NoError(t, err)
			require.Equal(t, caseID, gotCase)
			require.Equal(t, tc.class, gotClass)
			require.Equal(t, tc.gen, gotGen)
		})
	}

	for _, bad := range []string{
		"", caseID, caseID + ".", "." + string(seal.ClassContact), "x.contact", caseID + ".Contact", caseID + ".contact.x",
		// One spelling per key: generation 0 has no suffix, and no
		// leading zeros, signs or values beyond 32 bits.
		caseID + ".contact.0", caseID + ".contact.01", caseID + ".contact.+1", caseID + ".contact.-1",
		caseID + ".contact.4294967296", caseID + ".contact.1.2", caseID + ".contact.",
	} {
		_, _, _, err := seal.ParseKeyID(bad)
		require.ErrorIs(t, err, seal.ErrInvalidKeyID, bad)
	}
}

func TestGenerations(t *testing.T) {
	redacted := func(dcs ...casev1.DataClass) *casev1.PersonalDataRedacted {
		return &casev1.PersonalDataRedacted{DataClasses: dcs}
	}
	var g seal.Generations
	for _, c := range seal.Classes() {
		require.Zero(t, g.Of(c), "a case never redacted is at generation 0")
	}
	g.Apply(&casev1.CaseAnswered{})
	g.Apply(&casev1.PersonalDataRectified{DataClass: casev1.DataClass_DATA_CLASS_CONTACT_DETAILS})
	require.Nil(t, g, "only redactions move a generation")

	g.Apply(redacted(casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, casev1.DataClass_DATA_CLASS_ANSWER))
	before := g.Clone()
	g.Apply(redacted(casev1.DataClass_DATA_CLASS_ANSWER, casev1.DataClass_DATA_CLASS_UNSPECIFIED, casev1.DataClass(99)))
	require.Equal(t, seal.Generations{seal.ClassContact: 1, seal.ClassAnswer: 2}, g)
	require.Equal(t, seal.Generations{seal.ClassContact: 1, seal.ClassAnswer: 1}, before, "a clone does not follow")
	require.Zero(t, g.Of(seal.ClassIdentity))
}

func TestValidateCaseID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"3f1c2a9e-5b7d-4c1e-9a2b-8d6f4e3c2b1a", true},
		{"01ARZ3NDEKTSV4RRFFQ69G5FAV", true},
		{"3F1C2A9E-5B7D-4C1E-9A2B-8D6F4E3C2B1A", false}, // one id, one spelling
		{"{3f1c2a9e-5b7d-4c1e-9a2b-8d6f4e3c2b1}", false},
		{"3f1c2a9e5b7d4c1e9a2b8d6f4e3c2b1a", false},
		{"00000000-0000-0000-0000-000000000000", false},
		{"01arz3ndektsv4rrffq69g5fav", false},
		{"81ARZ3NDEKTSV4RRFFQ69G5FAV", false}, // over 128 bits
		{"01ARZ3NDEKTSV4RRFFQ69G5FAU", false}, // U is not Crockford
		{"197001011234", false},
		{"anna@example.se", false},
		{"", false},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			err := seal.ValidateCaseID(tc.id)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, seal.ErrInvalidCaseID)
			if tc.id != "" {
				require.NotContains(t, err.Error(), tc.id)
			}
		})
	}
}
