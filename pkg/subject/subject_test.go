package subject_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/blindindex"
	"github.com/kontakt-se/kontakt/pkg/identity"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/subject"
)

// plainOpener "opens" sealed data by returning its ciphertext, or fails
// for the key ids listed in gone.
type plainOpener struct{ gone map[string]bool }

func (o plainOpener) Open(_ context.Context, _ string, s *casev1.SealedPersonalData) ([]byte, error) {
	if o.gone[s.GetKeyId()] {
		return nil, seal.ErrKeyDestroyed
	}
	return s.GetCiphertext(), nil
}

func sealed(t *testing.T, keyID string, m proto.Message) *casev1.SealedPersonalData {
	t.Helper()
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return &casev1.SealedPersonalData{KeyId: keyID, Ciphertext: b}
}

func TestSearchKeyAndCaseGiveTheSameTokens(t *testing.T) {
	blind, err := blindindex.New(make([]byte, 32))
	require.NoError(t, err)
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	// Stored as intake stores it: the number in E.164.
	phone, err := identity.NormalisePhone("070-123 45 67")
	require.NoError(t, err)
	contact := sealed(t, "c", &casev1.ContactDetails{Email: "Anna.Svensson@Example.se", Phone: phone})
	id := sealed(t, "i", &casev1.IdentityNumber{Number: "198112189876"})
	toks, err := subject.CaseTokens(context.Background(), plainOpener{}, blind, "case", contact, id)
	require.NoError(t, err)
	require.Len(t, toks, 3)

	for _, key := range []subject.Key{
		{Email: "anna.svensson@example.se"},
		{Phone: "+46701234567"},
		{Phone: "0701234567"},
		{Phone: "(+46) 70 123 45 67"},
		{IdentityNumber: "811218-9876"},
	} {
		tok, err := subject.Token(blind, key, now)
		require.NoError(t, err, "%+v", key)
		require.Contains(t, toks, tok, "%+v", key)
	}

	_, err = subject.CaseTokens(context.Background(), plainOpener{gone: map[string]bool{"c": true}}, blind, "case", contact, id)
	require.ErrorIs(t, err, subject.ErrRedacted)
	toks, err = subject.CaseTokens(context.Background(), plainOpener{gone: map[string]bool{"i": true}}, blind, "case", contact, id)
	require.NoError(t, err)
	require.Len(t, toks, 2, "a destroyed identity key only drops its token")
}

// TestIdentityNotationsGiveOneToken: a case registered with a number as
// Skatteverket writes it (261223+9232 in 2026, the year the person turns
// 100) is found by every other notation of the same number, blanks from a
// copy and paste included.
func TestIdentityNotationsGiveOneToken(t *testing.T) {
	blind, err := blindindex.New(make([]byte, 32))
	require.NoError(t, err)
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	id := sealed(t, "i", &casev1.IdentityNumber{Number: "192612239232"})
	toks, err := subject.CaseTokens(context.Background(), plainOpener{}, blind, "case", nil, id)
	require.NoError(t, err)
	require.Len(t, toks, 1)
	for _, n := range []string{"261223+9232", "19261223-9232", "19261223+9232", "192612239232", " 19261223-9232 ", "\u00a0261223+9232\u200b"} {
		tok, err := subject.Token(blind, subject.Key{IdentityNumber: n}, now)
		require.NoError(t, err, "%q", n)
		require.Equal(t, toks[0], tok, "%q", n)
	}
}

func TestTokenRefusesBadKeys(t *testing.T) {
	blind, err := blindindex.New(make([]byte, 32))
	require.NoError(t, err)
	for _, tc := range []struct {
		key  subject.Key
		want string
	}{
		{subject.Key{Email: "not-an-address"}, "e-mail"},
		{subject.Key{Phone: "abc"}, "phone"},
		{subject.Key{IdentityNumber: "811218-9875"}, "identity number: invalid personal identity number: check digit does not match"},
		{subject.Key{IdentityNumber: " "}, "identity number: invalid personal identity number: wrong length"},
		{subject.Key{IdentityNumber: "20150916-0006"}, "identity number: invalid personal identity number: birth number zero is never issued"},
		{subject.Key{}, "give an e-mail"},
	} {
		_, err := subject.Token(blind, tc.key, time.Now())
		require.ErrorIs(t, err, subject.ErrInvalidKey)
		require.ErrorContains(t, err, tc.want)
		require.NotRegexp(t, "[0-9@]", err.Error(), "the error repeats the key")
	}
}
