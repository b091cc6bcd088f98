package idempotency

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/natstest"
	"github.com/kontakt-se/kontakt/services/intake/app"
)

// TestBatchOutcomes drives commit, the batch write behind Claim and
// Complete, with batches whose writes the server accepts or refuses, and
// checks each write's own outcome and what was stored.
func TestBatchOutcomes(t *testing.T) {
	js := natstest.JetStream(t, natstest.Embedded(t, 0))
	_, err := New(t.Context(), js, Config{})
	require.NoError(t, err)
	// Updating the bucket, as every start does, turns atomic batches off
	// for a moment; New turns them on again.
	s, err := New(t.Context(), js, Config{})
	require.NoError(t, err)
	ctx := t.Context()
	st, err := js.Stream(ctx, "KV_"+DefaultBucket)
	require.NoError(t, err)
	require.True(t, st.CachedInfo().Config.AllowAtomicPublish)
	rec := func(hash string) []byte {
		data, err := encode(app.IdempotencyRecord{PayloadHash: hash, CaseID: "case-1", ClaimedAt: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)})
		require.NoError(t, err)
		return data
	}
	claim := func(key string) write { return write{key: key, data: rec("h-" + key)} }

	// Records that exist before the batches below: a claim, and a claim
	// that was released (its last entry is a deletion).
	taken, ok, err := s.Claim(ctx, "form.taken", app.IdempotencyRecord{PayloadHash: "first"})
	require.NoError(t, err)
	require.True(t, ok)
	released, ok, err := s.Claim(ctx, "form.released", app.IdempotencyRecord{PayloadHash: "first"})
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, s.Release(ctx, "form.released", released))

	t.Run("accepted batch stores every write in one batch", func(t *testing.T) {
		res := s.commit(ctx, []write{claim("form.a"), claim("form.b"), claim("form.c")})
		ids := map[string]bool{}
		for i, key := range []string{"form.a", "form.b", "form.c"} {
			require.NoError(t, res[i].Err, key)
			got, err := s.Get(ctx, key)
			require.NoError(t, err)
			require.Equal(t, res[i].Value, got.Revision, key)
			require.Equal(t, "h-"+key, got.PayloadHash)
			ids[batchID(t, js, got.Revision)] = true
		}
		require.Len(t, ids, 1, "the writes were not stored as one batch")
		require.NotContains(t, ids, "")
	})

	t.Run("refused batch: each write gets its own outcome", func(t *testing.T) {
		a, err := s.Get(ctx, "form.a")
		require.NoError(t, err)
		done := a
		done.Done, done.CaseNumber = true, "KC-2026-000001"
		completion, err := encode(done)
		require.NoError(t, err)
		res := s.commit(ctx, []write{
			claim("form.taken"),    // exists: refused
			claim("form.d"),        // new
			claim("form.released"), // deleted: Create takes it over
			{key: "form.b", data: completion, expect: a.Revision}, // form.b is at another revision
			{key: "form.a", data: completion, expect: a.Revision}, // right revision
		})
		require.ErrorIs(t, res[0].Err, jetstream.ErrKeyExists)
		require.NoError(t, res[1].Err)
		require.NoError(t, res[2].Err)
		require.ErrorIs(t, res[3].Err, jetstream.ErrKeyExists, "completion at a stale revision")
		require.NoError(t, res[4].Err)

		got, err := s.Get(ctx, "form.taken")
		require.NoError(t, err)
		require.Equal(t, taken.Revision, got.Revision, "a refused claim changed the record")
		got, err = s.Get(ctx, "form.released")
		require.NoError(t, err)
		require.Equal(t, "h-form.released", got.PayloadHash)
		got, err = s.Get(ctx, "form.a")
		require.NoError(t, err)
		require.True(t, got.Done)
		require.Equal(t, res[4].Value, got.Revision)
		got, err = s.Get(ctx, "form.b")
		require.NoError(t, err)
		require.False(t, got.Done, "a completion at a stale revision was stored")
	})
}

// batchID returns the atomic batch id stored with the message at seq in
// the bucket's stream, or "" for a message written alone.
func batchID(t *testing.T, js jetstream.JetStream, seq uint64) string {
	t.Helper()
	st, err := js.Stream(t.Context(), "KV_"+DefaultBucket)
	require.NoError(t, err)
	m, err := st.GetMsg(t.Context(), seq)
	require.NoError(t, err)
	return m.Header.Get("Nats-Batch-Id")
}
