package seal_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// draftOf seals one value per class into a new draft.
func draftOf(t *testing.T, s *seal.Sealer, classes ...seal.Class) (*seal.Draft, map[seal.Class]*casev1.SealedPersonalData) {
	t.Helper()
	d, err := s.NewDraft(newCaseID())
	require.NoError(t, err)
	out := map[seal.Class]*casev1.SealedPersonalData{}
	for _, c := range classes {
		v, err := d.Seal(c, []byte("data of "+string(c)))
		require.NoError(t, err)
		out[c] = v
	}
	return d, out
}

func TestDraftsOpenOnlyAfterCommit(t *testing.T) {
	srv := startServer(t)
	master := testMaster(t, 1)
	s, other := newSealer(t, srv, master), newSealer(t, srv, master)
	ctx := t.Context()

	var drafts []*seal.Draft
	var sealed []map[seal.Class]*casev1.SealedPersonalData
	for range 30 {
		d, v := draftOf(t, s, seal.ClassContact, seal.ClassFreeText, seal.ClassIdentity)
		drafts, sealed = append(drafts, d), append(sealed, v)
	}
	for c, v := range sealed[0] {
		_, err := other.Open(ctx, drafts[0].CaseID(), v)
		require.ErrorIs(t, err, seal.ErrKeyNotFound, "class %s: a draft's key is not stored before the commit", c)
	}
	require.NoError(t, s.CommitDrafts(ctx, drafts))
	for i, d := range drafts {
		for c, v := range sealed[i] {
			got, err := other.Open(ctx, d.CaseID(), v)
			require.NoError(t, err, "class %s", c)
			require.Equal(t, "data of "+string(c), string(got))
			// Sealing again through the Sealer uses the committed key.
			again, err := s.Seal(ctx, d.CaseID(), c, 0, []byte("more"))
			require.NoError(t, err)
			require.Equal(t, v.GetKeyId(), again.GetKeyId())
		}
	}
	// A draft seals each class with one key, and a value does not open
	// as another case's.
	_, err := other.Open(ctx, drafts[1].CaseID(), sealed[0][seal.ClassContact])
	require.ErrorIs(t, err, seal.ErrTampered)
}

// A commit that meets a used key id, live or destroyed, stores none of
// its keys, so no draft of the group can be mistaken for committed.
func TestCommitDraftsIsAllOrNothing(t *testing.T) {
	srv := startServer(t)
	s := newSealer(t, srv, testMaster(t, 1))
	ctx := t.Context()

	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, caseID string)
	}{
		{"key exists", func(t *testing.T, caseID string) {
			_, err := s.Seal(ctx, caseID, seal.ClassContact, 0, []byte("first"))
			require.NoError(t, err)
		}},
		{"key destroyed", func(t *testing.T, caseID string) {
			require.NoError(t, s.Destroy(ctx, caseID, nil, seal.ClassContact))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var drafts []*seal.Draft
			var sealed []map[seal.Class]*casev1.SealedPersonalData
			for range 5 {
				d, v := draftOf(t, s, seal.ClassContact)
				drafts, sealed = append(drafts, d), append(sealed, v)
			}
			tc.spoil(t, drafts[3].CaseID())
			err := s.CommitDrafts(ctx, drafts)
			require.ErrorIs(t, err, seal.ErrKeyExists)
			for i, d := range drafts {
				_, err := s.Open(ctx, d.CaseID(), sealed[i][seal.ClassContact])
				if i == 3 {
					require.Error(t, err)
					continue
				}
				require.ErrorIs(t, err, seal.ErrKeyNotFound, "draft %d", i)
			}
			if tc.name == "key destroyed" {
				_, err := s.Seal(ctx, drafts[3].CaseID(), seal.ClassContact, 0, []byte("x"))
				require.ErrorIs(t, err, seal.ErrKeyDestroyed, "a failed commit must not revive a destroyed key")
			}
		})
	}
}

// Two processes committing drafts for one case id (a form taken over
// after a crash) end with exactly one key: one commit wins, the other is
// refused whole.
func TestConcurrentCommitsOfOneCase(t *testing.T) {
	srv := startServer(t)
	master := testMaster(t, 1)
	s1, s2 := newSealer(t, srv, master), newSealer(t, srv, master)
	ctx := context.Background()
	caseID := newCaseID()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	values := make([]*casev1.SealedPersonalData, 2)
	for i, s := range []*seal.Sealer{s1, s2} {
		d, err := s.NewDraft(caseID)
		require.NoError(t, err)
		values[i], err = d.Seal(seal.ClassContact, []byte("x"))
		require.NoError(t, err)
		wg.Go(func() { errs[i] = s.CommitDrafts(ctx, []*seal.Draft{d}) })
	}
	wg.Wait()
	require.True(t, (errs[0] == nil) != (errs[1] == nil), "exactly one commit wins: %v", errs)
	for i := range 2 {
		_, err := s1.Open(ctx, caseID, values[i])
		if errs[i] == nil {
			require.NoError(t, err)
		} else {
			require.ErrorIs(t, errs[i], seal.ErrKeyExists)
			require.ErrorIs(t, err, seal.ErrTampered, "the loser's value was sealed with a key that was never stored")
		}
	}
}

func TestDraftRefusals(t *testing.T) {
	srv := startServer(t)
	master := testMaster(t, 1)
	s, other := newSealer(t, srv, master), newSealer(t, srv, master)
	_, err := s.NewDraft("not-a-case-id")
	require.ErrorIs(t, err, seal.ErrInvalidCaseID)
	d, err := s.NewDraft(newCaseID())
	require.NoError(t, err)
	_, err = d.Seal(seal.Class("misspelt"), []byte("x"))
	require.ErrorIs(t, err, seal.ErrInvalidClass)
	_, err = d.Seal(seal.ClassContact, []byte("x"))
	require.NoError(t, err)
	require.Error(t, other.CommitDrafts(t.Context(), []*seal.Draft{d}), "drafts belong to their Sealer")
	require.NoError(t, s.CommitDrafts(t.Context(), nil))
}

// plainKeyStore hides CreateBatch, as a key store that cannot batch would.
type plainKeyStore struct{ seal.KeyStore }

func TestCommitDraftsWithoutBatchStore(t *testing.T) {
	srv := startServer(t)
	store, err := seal.NewNATSKeyStore(t.Context(), connect(t, srv), seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	s, err := seal.NewSealer(plainKeyStore{store}, testMaster(t, 1))
	require.NoError(t, err)
	ctx := t.Context()

	d1, v1 := draftOf(t, s, seal.ClassContact, seal.ClassAnswer)
	d2, v2 := draftOf(t, s, seal.ClassIdentity)
	require.NoError(t, s.CommitDrafts(ctx, []*seal.Draft{d1, d2}))
	for d, vs := range map[*seal.Draft]map[seal.Class]*casev1.SealedPersonalData{d1: v1, d2: v2} {
		for c, v := range vs {
			got, err := s.Open(ctx, d.CaseID(), v)
			require.NoError(t, err)
			require.Equal(t, "data of "+string(c), string(got))
		}
	}
	require.ErrorIs(t, s.CommitDrafts(ctx, []*seal.Draft{d1}), seal.ErrKeyExists)
}
