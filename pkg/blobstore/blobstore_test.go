package blobstore_test

import (
	"bytes"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/blobstore"
	"github.com/kontakt-se/kontakt/pkg/natstest"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

func TestPutGetDeleteCase(t *testing.T) {
	srv := natstest.Embedded(t, 0)
	js := natstest.JetStream(t, srv)
	ctx := t.Context()
	keys, err := seal.NewNATSKeyStore(ctx, js, seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	master, err := seal.NewMasterKey(bytes.Repeat([]byte{7}, seal.MasterKeySize))
	require.NoError(t, err)
	sealer, err := seal.NewSealer(keys, master)
	require.NoError(t, err)
	store, err := blobstore.Open(ctx, js, sealer, blobstore.Config{})
	require.NoError(t, err)

	caseID, other := uuid.NewString(), uuid.NewString()
	content := bytes.Repeat([]byte("MARKER-content-"), 20000)
	require.NoError(t, store.Put(ctx, caseID, 0, content))
	require.NoError(t, store.Put(ctx, caseID, 1, []byte("second")))
	require.NoError(t, store.Put(ctx, other, 0, []byte("other")))

	got, err := store.Get(ctx, caseID, 0)
	require.NoError(t, err)
	require.Equal(t, content, got)
	_, err = store.Get(ctx, caseID, 2)
	require.ErrorIs(t, err, blobstore.ErrNotFound)

	stored, err := store.Stored(ctx)
	require.NoError(t, err)
	require.Len(t, stored, 2)
	require.Contains(t, stored, caseID)

	require.NoError(t, sealer.Destroy(ctx, caseID, nil, seal.ClassAttachments))
	_, err = store.Get(ctx, caseID, 0)
	require.ErrorIs(t, err, seal.ErrKeyDestroyed)

	require.NoError(t, store.DeleteCase(ctx, caseID))
	require.NoError(t, store.DeleteCase(ctx, caseID), "a second delete is no error")
	for i := range 2 {
		_, err = store.Get(ctx, caseID, i)
		require.ErrorIs(t, err, blobstore.ErrNotFound)
	}
	got, err = store.Get(ctx, other, 0)
	require.NoError(t, err)
	require.Equal(t, []byte("other"), got)
	stored, err = store.Stored(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{other}, keysOf(stored))
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestCaseOf(t *testing.T) {
	id := uuid.NewString()
	for name, want := range map[string]bool{
		blobstore.Name(id, 0): true, blobstore.Name(id, 19): true, id + "/20": false, id: false, "x/0": false, id + "/-1": false,
	} {
		got, ok := blobstore.CaseOf(name)
		require.Equal(t, want, ok, name)
		if ok {
			require.Equal(t, id, got)
		}
	}
}
