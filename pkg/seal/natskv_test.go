package seal_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/natsserver"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// storedMsg is one message of the key bucket's stream, read raw.
type storedMsg struct {
	seq     uint64
	subject string
	data    []byte
	op      string
}

// streamMessages reads every message of the stream twice, by sequence
// number with GetMsg (from 1, so nothing below the first sequence hides)
// and with an ordered consumer from the start, and checks that both agree.
func streamMessages(t *testing.T, js jetstream.JetStream, name string) []storedMsg {
	t.Helper()
	ctx := t.Context()
	st, err := js.Stream(ctx, name)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)

	var bySeq []storedMsg
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(t, err, "seq %d", seq)
		bySeq = append(bySeq, storedMsg{m.Sequence, m.Subject, nilIfEmpty(m.Data), m.Header.Get("KV-Operation")})
	}
	require.Len(t, bySeq, int(info.State.Msgs))

	cons, err := js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	require.NoError(t, err)
	batch, err := cons.Fetch(len(bySeq), jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var byConsumer []storedMsg
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		require.NoError(t, err)
		byConsumer = append(byConsumer, storedMsg{meta.Sequence.Stream, m.Subject(), nilIfEmpty(m.Data()), m.Headers().Get("KV-Operation")})
	}
	require.NoError(t, batch.Error())
	require.Equal(t, bySeq, byConsumer)
	return bySeq
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// filesContaining returns the files under dir that contain needle.
func filesContaining(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			rel, _ := filepath.Rel(dir, path)
			hits = append(hits, rel)
		}
		return nil
	})
	require.NoError(t, err)
	return hits
}

// TestDestroyErasesKeyBytes proves that Destroy leaves no copy of the
// wrapped data key in the key bucket: not as a current value, not in the
// stream's history, and not in any file of the NATS store directory. Case
// B's keys, which are not destroyed, are the positive control: they must
// be found by the same searches, or the searches prove nothing.
//
// It runs for keys made one by one (Seal) and for keys committed in atomic
// batches (CommitDrafts), whose messages pass through the server's batch
// staging files on their way into the stream.
func TestDestroyErasesKeyBytes(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(map[bool]string{false: "keys made by Seal", true: "keys committed as drafts"}[batched], func(t *testing.T) {
			testDestroyErasesKeyBytes(t, batched)
		})
	}
}

func testDestroyErasesKeyBytes(t *testing.T, batched bool) {
	ctx := t.Context()
	dir := t.TempDir()
	srv, err := natsserver.Start(ctx, natsserver.Config{StoreDir: dir, InProcessOnly: true})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	js := connect(t, srv)
	store, err := seal.NewNATSKeyStore(ctx, js, seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	require.Equal(t, "KV_KONTAKT_KEYS", store.StreamName())
	master := testMaster(t, 1)
	s, err := seal.NewSealer(store, master)
	require.NoError(t, err)
	kv, err := js.KeyValue(ctx, seal.DefaultBucket)
	require.NoError(t, err)

	caseA, caseB := newCaseID(), newCaseID()
	// Interleaved, so that destroyed keys sit at the start, in the middle
	// and at the end of the message block, between keys that stay.
	order := []struct {
		caseID string
		class  seal.Class
	}{
		{caseA, seal.ClassContact}, {caseB, seal.ClassContact}, {caseA, seal.ClassIdentity},
		{caseA, seal.ClassFreeText}, {caseB, seal.ClassFreeText}, {caseA, seal.ClassAttachments},
		{caseA, seal.ClassAnswer}, {caseB, seal.ClassAnswer},
	}
	sealed := map[string]*casev1.SealedPersonalData{}
	wrapped := map[string][]byte{}
	destroyed := map[string]bool{}
	var values []*casev1.SealedPersonalData
	if batched {
		// Three commits, each with a draft per case, so the destroyed keys
		// still sit between kept ones.
		for chunk := range slices.Chunk(order, 3) {
			drafts := map[string]*seal.Draft{}
			var list []*seal.Draft
			for _, o := range chunk {
				d, ok := drafts[o.caseID]
				if !ok {
					d, err = s.NewDraft(o.caseID)
					require.NoError(t, err)
					drafts[o.caseID] = d
					list = append(list, d)
				}
				v, err := d.Seal(o.class, []byte("personal data"))
				require.NoError(t, err)
				values = append(values, v)
			}
			require.NoError(t, s.CommitDrafts(ctx, list))
		}
	} else {
		for _, o := range order {
			v, err := s.Seal(ctx, o.caseID, o.class, 0, []byte("personal data"))
			require.NoError(t, err)
			values = append(values, v)
		}
	}
	for i, o := range order {
		v := values[i]
		e, err := kv.Get(ctx, v.GetKeyId())
		require.NoError(t, err)
		require.Len(t, e.Value(), seal.WrappedKeySize)
		sealed[v.GetKeyId()] = v
		wrapped[v.GetKeyId()] = bytes.Clone(e.Value())
		destroyed[v.GetKeyId()] = o.caseID == caseA
	}
	for keyID, w := range wrapped {
		require.NotEmpty(t, filesContaining(t, dir, w), "before destroy, %s must be on disk (else the scan proves nothing)", keyID)
	}

	require.NoError(t, s.Destroy(ctx, caseA, nil))

	t.Run("stream history", func(t *testing.T) {
		msgs := streamMessages(t, js, store.StreamName())
		for keyID, w := range wrapped {
			var holders []uint64
			for _, m := range msgs {
				if bytes.Contains(m.data, w) {
					holders = append(holders, m.seq)
				}
			}
			if destroyed[keyID] {
				require.Empty(t, holders, "destroyed key %s still in the stream", keyID)
			} else {
				require.NotEmpty(t, holders, "kept key %s missing from the stream", keyID)
			}
		}
		// Each destroyed key id has exactly one message left: its
		// tombstone, a KV purge marker without data.
		for keyID := range wrapped {
			var left []storedMsg
			for _, m := range msgs {
				if m.subject == "$KV.KONTAKT_KEYS."+keyID {
					left = append(left, m)
				}
			}
			require.Len(t, left, 1, keyID)
			if destroyed[keyID] {
				require.Equal(t, "PURGE", left[0].op, keyID)
				require.Empty(t, left[0].data, keyID)
			}
		}
	})

	t.Run("KV view", func(t *testing.T) {
		for keyID := range wrapped {
			_, err := kv.Get(ctx, keyID)
			if !destroyed[keyID] {
				require.NoError(t, err)
				continue
			}
			require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
			hist, err := kv.History(ctx, keyID)
			require.NoError(t, err)
			require.Len(t, hist, 1)
			require.Equal(t, jetstream.KeyValuePurge, hist[0].Operation())
		}
	})

	srv.Shutdown()

	t.Run("store files", func(t *testing.T) {
		for keyID, w := range wrapped {
			hits := filesContaining(t, dir, w)
			if destroyed[keyID] {
				require.Empty(t, hits, "destroyed key %s still on disk", keyID)
			} else {
				require.NotEmpty(t, hits, "kept key %s not found on disk: the scan is blind", keyID)
			}
		}
	})

	t.Run("after restart", func(t *testing.T) {
		srv2, err := natsserver.Start(ctx, natsserver.Config{StoreDir: dir, InProcessOnly: true})
		require.NoError(t, err)
		t.Cleanup(srv2.Shutdown)
		s2 := newSealer(t, srv2, master)
		for keyID, v := range sealed {
			caseID, _, _, err := seal.ParseKeyID(keyID)
			require.NoError(t, err)
			_, err = s2.Open(ctx, caseID, v)
			if destroyed[keyID] {
				require.ErrorIs(t, err, seal.ErrKeyDestroyed, keyID)
			} else {
				require.NoError(t, err, keyID)
			}
		}
	})
}

// TestPlainKVPurgeKeepsBytesOnDisk records the server behaviour that
// NATSKeyStore works around: in a standard KV bucket, Purge removes the
// value from every API but leaves its bytes in the stream's block file. If
// this test fails, a newer nats-server erases on purge, and the secure
// delete in NATSKeyStore.Destroy (and its documentation) can be revisited.
func TestPlainKVPurgeKeepsBytesOnDisk(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	srv, err := natsserver.Start(ctx, natsserver.Config{StoreDir: dir, InProcessOnly: true})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	js := connect(t, srv)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "PLAIN", History: 1, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	secret := make([]byte, seal.WrappedKeySize)
	_, _ = rand.Read(secret)
	_, err = kv.Put(ctx, "a", secret)
	require.NoError(t, err)
	_, err = kv.Put(ctx, "b", []byte("other"))
	require.NoError(t, err)
	require.NoError(t, kv.Purge(ctx, "a"))
	_, err = kv.Get(ctx, "a")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
	srv.Shutdown()
	require.NotEmpty(t, filesContaining(t, dir, secret),
		"nats-server now erases purged KV values on disk; revisit NATSKeyStore.Destroy")
}

func TestNATSKeyStoreRefusesStandardKVBucket(t *testing.T) {
	srv := startServer(t)
	js := connect(t, srv)
	_, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: seal.DefaultBucket, History: 1})
	require.NoError(t, err)
	_, err = seal.NewNATSKeyStore(t.Context(), js, seal.NATSKeyStoreConfig{})
	require.ErrorContains(t, err, "denies message deletes")
}

func TestNATSKeyStoreReopens(t *testing.T) {
	srv := startServer(t)
	js := connect(t, srv)
	for range 2 {
		_, err := seal.NewNATSKeyStore(t.Context(), js, seal.NATSKeyStoreConfig{})
		require.NoError(t, err)
	}
	_, err := seal.NewNATSKeyStore(t.Context(), js, seal.NATSKeyStoreConfig{Replicas: -1})
	require.Error(t, err)
	_, err = seal.NewNATSKeyStore(t.Context(), nil, seal.NATSKeyStoreConfig{})
	require.Error(t, err)
}

func TestNATSKeyStoreContract(t *testing.T) {
	srv := startServer(t)
	store, err := seal.NewNATSKeyStore(t.Context(), connect(t, srv), seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	ctx := t.Context()
	keyID := newCaseID() + ".contact"

	_, err = store.Get(ctx, keyID)
	require.ErrorIs(t, err, seal.ErrKeyNotFound)
	require.NoError(t, store.Create(ctx, keyID, []byte("first")))
	require.ErrorIs(t, store.Create(ctx, keyID, []byte("second")), seal.ErrKeyExists)
	got, err := store.Get(ctx, keyID)
	require.NoError(t, err)
	require.Equal(t, "first", string(got), "Create must never overwrite")

	require.NoError(t, store.Destroy(ctx, keyID))
	require.NoError(t, store.Destroy(ctx, keyID))
	_, err = store.Get(ctx, keyID)
	require.ErrorIs(t, err, seal.ErrKeyDestroyed)
	require.ErrorIs(t, store.Create(ctx, keyID, []byte("again")), seal.ErrKeyDestroyed)

	for _, bad := range []string{"", "KONTAKT", "19700101-1234.contact", newCaseID() + ".x", newCaseID() + ".contact.more"} {
		require.ErrorIs(t, store.Create(ctx, bad, []byte("x")), seal.ErrInvalidKeyID, bad)
		_, err := store.Get(ctx, bad)
		require.ErrorIs(t, err, seal.ErrInvalidKeyID, bad)
		require.ErrorIs(t, store.Destroy(ctx, bad), seal.ErrInvalidKeyID, bad)
	}
}
