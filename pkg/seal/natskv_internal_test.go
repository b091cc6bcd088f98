package seal

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/jsbatch"
	"github.com/kontakt-se/kontakt/pkg/natstest"
)

// newTestKeyStore returns a NATS key store on a fresh embedded server.
func newTestKeyStore(t *testing.T) *NATSKeyStore {
	t.Helper()
	js := natstest.JetStream(t, natstest.Embedded(t, 0))
	s, err := NewNATSKeyStore(t.Context(), js, NATSKeyStoreConfig{})
	require.NoError(t, err)
	return s
}

func newKeyIDs(t *testing.T, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		id, err := KeyID(uuid.NewString(), ClassContact, 0)
		require.NoError(t, err)
		ids[i] = id
	}
	return ids
}

// requireGet checks what Get says of each key id.
func requireGet(t *testing.T, s *NATSKeyStore, want error, keyIDs ...string) {
	t.Helper()
	for _, keyID := range keyIDs {
		_, err := s.Get(t.Context(), keyID)
		if want == nil {
			require.NoError(t, err, keyID)
			continue
		}
		require.ErrorIs(t, err, want, keyID)
	}
}

// TestTombstoneBatches: DestroyBatch's batched tombstones are written
// whole or not at all, and what is refused is handed back for Destroy to
// settle; DestroyBatch ends with every key destroyed either way.
func TestTombstoneBatches(t *testing.T) {
	ctx := t.Context()

	t.Run("more than one atomic batch, all written", func(t *testing.T) {
		s := newTestKeyStore(t)
		ids := newKeyIDs(t, jsbatch.MaxMessages+3)
		refused, err := s.tombstones(ctx, ids)
		require.NoError(t, err)
		require.Empty(t, refused)
		requireGet(t, s, ErrKeyDestroyed, ids...)
		info, err := s.stream.Info(ctx)
		require.NoError(t, err)
		require.EqualValues(t, len(ids), info.State.Msgs, "one tombstone per key id")
	})

	t.Run("a key id that holds a key refuses its whole batch", func(t *testing.T) {
		s := newTestKeyStore(t)
		ids := newKeyIDs(t, 3)
		require.NoError(t, s.Create(ctx, ids[1], []byte("wrapped")))
		refused, err := s.tombstones(ctx, ids)
		require.NoError(t, err)
		require.Equal(t, ids, refused)
		requireGet(t, s, ErrKeyNotFound, ids[0], ids[2])
		requireGet(t, s, nil, ids[1])

		require.NoError(t, s.DestroyBatch(ctx, ids))
		requireGet(t, s, ErrKeyDestroyed, ids...)
	})

	t.Run("a stream that cannot batch", func(t *testing.T) {
		s := newTestKeyStore(t)
		cfg := s.stream.CachedInfo().Config
		cfg.AllowAtomicPublish = false
		_, err := s.js.UpdateStream(ctx, cfg)
		require.NoError(t, err)
		ids := newKeyIDs(t, 4)
		require.NoError(t, s.Create(ctx, ids[0], []byte("wrapped")))
		refused, err := s.tombstones(ctx, ids[1:])
		require.NoError(t, err)
		require.Equal(t, ids[1:], refused)

		require.NoError(t, s.DestroyBatch(ctx, ids))
		requireGet(t, s, ErrKeyDestroyed, ids...)
	})

	t.Run("keys, tombstones, nothing and repeats", func(t *testing.T) {
		s := newTestKeyStore(t)
		ids := newKeyIDs(t, 6)
		for _, id := range ids[:3] {
			require.NoError(t, s.Create(ctx, id, []byte("wrapped")))
		}
		require.NoError(t, s.Destroy(ctx, ids[2]))
		require.NoError(t, s.Destroy(ctx, ids[3]))
		require.NoError(t, s.DestroyBatch(ctx, append(ids, ids[0], ids[4])))
		requireGet(t, s, ErrKeyDestroyed, ids...)
		for _, id := range ids {
			m, err := s.stream.GetLastMsgForSubject(ctx, s.subject+id)
			require.NoError(t, err)
			require.True(t, isTombstone(m.Header), id)
			require.Empty(t, m.Data, id)
		}
		info, err := s.stream.Info(ctx)
		require.NoError(t, err)
		require.EqualValues(t, len(ids), info.State.Msgs, "one message per key id: its tombstone")
		require.NoError(t, s.DestroyBatch(ctx, ids), "idempotent")
		require.ErrorIs(t, s.DestroyBatch(ctx, []string{ids[0], "not-a-key-id"}), ErrInvalidKeyID)
		require.ErrorIs(t, s.Create(ctx, ids[5], []byte("again")), ErrKeyDestroyed)
	})
}
