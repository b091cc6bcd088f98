package readmodel

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/tokenindex"
)

// onDisk returns the needles found in any file under dir.
func onDisk(t *testing.T, dir string, needles []string) []string {
	t.Helper()
	var found []string
	var files int
	require.NoError(t, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found = append(found, n+" in "+filepath.Base(path))
			}
		}
		return nil
	}))
	require.NotZero(t, files)
	return found
}

// TestRedactedTokensLeaveNoBytes: the read model keeps tokens only in
// its token file, and a redaction or deletion leaves none of a case's
// tokens in any file under the directory, while the tokens of the cases
// that keep their data are still found there.
func TestRedactedTokensLeaveNoBytes(t *testing.T) {
	s, path := openStore(t, Options{Tokenizer: &fakeTokenizer{}})
	var drafts []draft
	ids := make([]string, 300)
	for i := range ids {
		ids[i] = fmt.Sprintf("case-%04d", i)
		drafts = append(drafts, ev(ids[i], registered(ids[i], "KC-"+ids[i], casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_EMAIL, t0())))
	}
	evs := history(0, drafts...)
	require.NoError(t, s.Apply(context.Background(), evs...))
	pos := evs[len(evs)-1].Position

	tokensOf := func(id string) []string {
		return []string{
			tokenFor("contact", sealedAs("k-"+id+"-contact", "CONTACT:"+id)),
			tokenFor("identity", sealedAs("k-"+id+"-identity", "IDENTITY:"+id)),
		}
	}
	var gone, kept []string
	drafts = nil
	for i, id := range ids {
		switch i % 3 {
		case 0:
			drafts = append(drafts, ev(id, &casev1.PersonalDataRedacted{CaseId: id, Reason: "retention", DataClasses: []casev1.DataClass{
				casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER, casev1.DataClass_DATA_CLASS_FREE_TEXT,
			}}))
			gone = append(gone, tokensOf(id)...)
		case 1:
			drafts = append(drafts, ev(id, &casev1.CaseDeleted{CaseId: id}))
			gone = append(gone, tokensOf(id)...)
		default:
			kept = append(kept, tokensOf(id)...)
		}
	}
	// In three batches, as a projector would apply them.
	evs = history(pos, drafts...)
	for len(evs) > 0 {
		n := min(len(evs), 70)
		require.NoError(t, s.Apply(context.Background(), evs[:n]...))
		evs = evs[n:]
	}
	checkConsistent(t, s)
	for _, tok := range kept[:4] {
		rows, err := s.FindByToken(tok)
		require.NoError(t, err)
		require.Len(t, rows, 1)
	}
	for _, tok := range gone[:4] {
		rows, err := s.FindByToken(tok)
		require.NoError(t, err)
		require.Empty(t, rows)
	}

	dir := filepath.Dir(path)
	require.Empty(t, onDisk(t, dir, gone), "tokens of redacted and deleted cases are on disk")
	require.Len(t, onDisk(t, dir, kept), len(kept), "the kept tokens are on disk (the scan reads the files)")
	for _, f := range onDisk(t, dir, kept) {
		require.Contains(t, f, "routing.tokens.db", "a token outside the token file")
	}
}

// TestTokenFileOfAnotherEpoch: a token file that does not belong to the
// read model (a crash between a rebuild's wipe and the token file's
// reset, or a token file copied in from elsewhere) is reset, and the
// rows are rebuilt.
func TestTokenFileOfAnotherEpoch(t *testing.T) {
	s, path := openStore(t, Options{Tokenizer: &fakeTokenizer{}})
	require.NoError(t, s.Apply(context.Background(), history(0, ev("a", registered("a", "KC-a", casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_EMAIL, t0())))...))
	require.NoError(t, s.Close())

	x, err := tokenindex.Open(tokenindex.PathFor(path))
	require.NoError(t, err)
	stray := tokenFor("contact", sealedAs("k", "stray"))
	require.NoError(t, x.Reset("someone else's"))
	require.NoError(t, x.Update(func(tx *tokenindex.Tx) error { return tx.Set("a", "", []string{stray}) }))
	require.NoError(t, x.Close())

	s, err = Open(path, Options{Tokenizer: &fakeTokenizer{}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.True(t, s.NeedsRebuild(), "rows without their tokens must be rebuilt")
	rows, err := s.FindByToken(stray)
	require.NoError(t, err)
	require.Empty(t, rows)
	require.Empty(t, onDisk(t, filepath.Dir(path), []string{stray}))
}

// TestTokenFileAheadIsRepairedByReplay: the token file commits before
// the main file, so a crash between the two leaves it one batch ahead;
// replaying the batch gives the same state as if nothing had happened,
// including for a redaction (the tokens stay gone).
func TestTokenFileAheadIsRepairedByReplay(t *testing.T) {
	s, path := openStore(t, Options{Tokenizer: &fakeTokenizer{}})
	reg := history(0, ev("a", registered("a", "KC-a", casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_EMAIL, t0())))
	require.NoError(t, s.Apply(context.Background(), reg...))
	redact := history(reg[0].Position, ev("a", &casev1.PersonalDataRedacted{CaseId: "a", DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_CONTACT_DETAILS}}))

	// The crash: the batch's token change is committed, its main
	// transaction is not.
	contact := tokenFor("contact", sealedAs("k-a-contact", "CONTACT:a"))
	identity := tokenFor("identity", sealedAs("k-a-identity", "IDENTITY:a"))
	require.NoError(t, s.tokens.Update(func(tx *tokenindex.Tx) error { return tx.Set("a", "", []string{identity}) }))
	require.Empty(t, onDisk(t, filepath.Dir(path), []string{contact}))
	cp, err := s.Checkpoint()
	require.NoError(t, err)
	require.Equal(t, reg[0].Position, cp)

	require.NoError(t, s.Apply(context.Background(), redact...))
	checkConsistent(t, s)
	rows, err := s.FindByToken(contact)
	require.NoError(t, err)
	require.Empty(t, rows)
	rows, err = s.FindByToken(identity)
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.Empty(t, onDisk(t, filepath.Dir(path), []string{contact}))
}
