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

// newKeyIDs returns the contact key ids of n new cases.
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

// streamBatches returns how many messages the key stream holds and how
// many distinct atomic batches wrote them.
func streamBatches(t *testing.T, s *NATSKeyStore) (msgs, batches int) {
	t.Helper()
	info, err := s.stream.Info(t.Context())
	require.NoError(t, err)
	ids := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.stream.GetMsg(t.Context(), seq)
		if err != nil {
			continue
		}
		msgs++
		if id := m.Header.Get("Nats-Batch-Id"); id != "" {
			ids[id] = true
		}
	}
	require.EqualValues(t, info.State.Msgs, msgs)
	return msgs, len(ids)
}

// TestDestroyBatches: Destroy of many cases writes their new records as
// atomic batches, whole or not at all; what is refused is settled one by
// one, and every key ends destroyed either way.
func TestDestroyBatches(t *testing.T) {
	ctx := t.Context()

	t.Run("more than one atomic batch, all written", func(t *testing.T) {
		s := newTestKeyStore(t)
		ids := newKeyIDs(t, jsbatch.MaxMessages+3)
		require.NoError(t, s.Destroy(ctx, ids...))
		requireGet(t, s, ErrKeyDestroyed, ids...)
		msgs, batches := streamBatches(t, s)
		require.Equal(t, len(ids), msgs, "one tombstone record per case")
		require.Equal(t, 2, batches, "written as two atomic batches")
	})

	t.Run("records with keys: rewritten in a batch, the old ones erased", func(t *testing.T) {
		s := newTestKeyStore(t)
		ids := newKeyIDs(t, 20)
		kept := make([]string, len(ids))
		for i, id := range ids {
			require.NoError(t, s.Create(ctx, id, []byte("wrapped")))
			ref, err := refOf(id)
			require.NoError(t, err)
			kept[i] = keyRef{ref.caseID, ClassAnswer, 0}.keyID()
			require.NoError(t, s.Create(ctx, kept[i], []byte("kept")))
		}
		require.NoError(t, s.Destroy(ctx, ids...))
		requireGet(t, s, ErrKeyDestroyed, ids...)
		requireGet(t, s, nil, kept...)
		msgs, batches := streamBatches(t, s)
		require.Equal(t, len(ids), msgs, "one record per case: the replaced ones erased")
		require.Equal(t, 1, batches)
	})

	t.Run("a record changed by another writer refuses its whole batch", func(t *testing.T) {
		s := newTestKeyStore(t)
		ids := newKeyIDs(t, 3)
		var writes []*recordWrite
		for _, id := range ids {
			ref, err := refOf(id)
			require.NoError(t, err)
			var r caseRecord
			require.True(t, r.destroy(ref.class, ref.gen))
			writes = append(writes, &recordWrite{caseID: ref.caseID, next: r})
		}
		// Another writer gives the second case a record after the batch's
		// records were made from "no record".
		require.NoError(t, s.Create(ctx, ids[1], []byte("wrapped")))
		_, refused := s.writeRecords(ctx, writes)
		require.Equal(t, []bool{true, true, true}, refused)
		requireGet(t, s, ErrKeyNotFound, ids[0], ids[2])
		requireGet(t, s, nil, ids[1])

		require.NoError(t, s.Destroy(ctx, ids...))
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
		require.NoError(t, s.Destroy(ctx, ids...))
		requireGet(t, s, ErrKeyDestroyed, ids...)
		msgs, batches := streamBatches(t, s)
		require.Equal(t, len(ids), msgs)
		require.Zero(t, batches)
	})

	t.Run("keys, tombstones, nothing and repeats", func(t *testing.T) {
		s := newTestKeyStore(t)
		ids := newKeyIDs(t, 6)
		for _, id := range ids[:3] {
			require.NoError(t, s.Create(ctx, id, []byte("wrapped")))
		}
		require.NoError(t, s.Destroy(ctx, ids[2]))
		require.NoError(t, s.Destroy(ctx, ids[3]))
		require.NoError(t, s.Destroy(ctx, append(ids, ids[0], ids[4])...))
		requireGet(t, s, ErrKeyDestroyed, ids...)
		for _, id := range ids {
			ref, err := refOf(id)
			require.NoError(t, err)
			m, err := s.stream.GetLastMsgForSubject(ctx, s.subject+ref.caseID)
			require.NoError(t, err)
			r, err := decodeRecord(m.Data)
			require.NoError(t, err)
			st, w := r.lookup(ref.class, ref.gen)
			require.Equal(t, keyDestroyed, st, id)
			require.Nil(t, w)
		}
		msgs, _ := streamBatches(t, s)
		require.Equal(t, len(ids), msgs, "one message per case: its tombstone record")
		require.NoError(t, s.Destroy(ctx, ids...), "idempotent")
		require.ErrorIs(t, s.Destroy(ctx, ids[0], "not-a-key-id"), ErrInvalidKeyID)
		require.ErrorIs(t, s.Create(ctx, ids[5], []byte("again")), ErrKeyDestroyed)
	})
}
