package seal_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
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
// wrapped data key in the key stream: not in a case's current record, not
// in the records it replaced, not in the stream's history, and not in any
// file of the NATS store directory. The keys that are not destroyed are
// the positive control: they must be found by the same searches, or the
// searches prove nothing.
//
// It runs for keys made one by one (Seal), where every new key rewrites
// its case's record and so leaves replaced records behind for Destroy to
// have erased; for keys committed in atomic batches (CommitDrafts), whose
// messages pass through the server's batch staging files on their way into
// the stream; and for records that a writer left behind when it stopped
// between writing a record and erasing the one it replaced.
func TestDestroyErasesKeyBytes(t *testing.T) {
	for _, how := range []string{"keys made by Seal", "keys committed as drafts", "records left by a crashed writer"} {
		t.Run(how, func(t *testing.T) { testDestroyErasesKeyBytes(t, how) })
	}
}

func testDestroyErasesKeyBytes(t *testing.T, how string) {
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
	require.NoError(t, err, "KV tools must be able to read the key stream")
	st, err := js.Stream(ctx, store.StreamName())
	require.NoError(t, err)

	// a1..a3 are deleted (every class destroyed), b1 has its contact
	// details redacted, b2 is kept whole. Interleaved, so that destroyed
	// keys sit at the start, in the middle and at the end of the message
	// block, between keys that stay.
	a1, b1, a2, b2, a3 := newCaseID(), newCaseID(), newCaseID(), newCaseID(), newCaseID()
	order := []struct {
		caseID string
		class  seal.Class
	}{
		{a1, seal.ClassContact}, {b1, seal.ClassContact}, {a1, seal.ClassIdentity},
		{a2, seal.ClassFreeText}, {b1, seal.ClassFreeText}, {a1, seal.ClassAttachments},
		{b2, seal.ClassContact}, {a2, seal.ClassAnswer}, {b2, seal.ClassAnswer}, {a3, seal.ClassContact},
	}
	sealed := map[string]*casev1.SealedPersonalData{}
	wrapped := map[string][]byte{}
	destroyed := map[string]bool{}
	var values []*casev1.SealedPersonalData
	switch how {
	case "keys committed as drafts":
		// Two commits (a draft is a new case, so all of a case's keys go
		// in one), so the destroyed cases still sit between kept ones.
		drafts := map[string]*seal.Draft{}
		for _, o := range order {
			d, ok := drafts[o.caseID]
			if !ok {
				d, err = s.NewDraft(o.caseID)
				require.NoError(t, err)
				drafts[o.caseID] = d
			}
			v, err := d.Seal(o.class, []byte("personal data"))
			require.NoError(t, err)
			values = append(values, v)
		}
		require.NoError(t, s.CommitDrafts(ctx, []*seal.Draft{drafts[a1], drafts[b1]}))
		require.NoError(t, s.CommitDrafts(ctx, []*seal.Draft{drafts[a2], drafts[b2], drafts[a3]}))
	default:
		for _, o := range order {
			v, err := s.Seal(ctx, o.caseID, o.class, 0, []byte("personal data"))
			require.NoError(t, err)
			values = append(values, v)
		}
	}
	for i, o := range order {
		v := values[i]
		w, err := store.Get(ctx, v.GetKeyId())
		require.NoError(t, err)
		require.Len(t, w, seal.WrappedKeySize)
		sealed[v.GetKeyId()] = v
		wrapped[v.GetKeyId()] = bytes.Clone(w)
		destroyed[v.GetKeyId()] = o.caseID == a1 || o.caseID == a2 || o.caseID == a3 ||
			(o.caseID == b1 && o.class == seal.ClassContact)
	}
	if how == "records left by a crashed writer" {
		// A writer that stopped after writing a record and before erasing
		// the one it replaced leaves two records of the case, both holding
		// its keys. Copy every current record, raw, to make that state.
		for _, caseID := range []string{a1, b1, a2} {
			m, err := st.GetLastMsgForSubject(ctx, store.Subject(caseID))
			require.NoError(t, err)
			_, err = js.Publish(ctx, m.Subject, m.Data)
			require.NoError(t, err)
		}
	}
	for keyID, w := range wrapped {
		require.NotEmpty(t, filesContaining(t, dir, w), "before destroy, %s must be on disk (else the scan proves nothing)", keyID)
	}

	require.NoError(t, s.Destroy(ctx, a1, nil))
	require.NoError(t, s.Destroy(ctx, a2, nil))
	require.NoError(t, s.Destroy(ctx, a3, nil))
	require.NoError(t, s.Destroy(ctx, b1, nil, seal.ClassContact))

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
		// Each case has exactly one message left, its record: every
		// record it replaced was erased (by Create as it replaced it, or
		// by Destroy).
		for _, caseID := range []string{a1, b1, a2, b2, a3} {
			var left []storedMsg
			for _, m := range msgs {
				if m.subject == store.Subject(caseID) {
					left = append(left, m)
				}
			}
			require.Len(t, left, 1, caseID)
		}
	})

	t.Run("KV view", func(t *testing.T) {
		lister, err := kv.ListKeys(ctx)
		require.NoError(t, err)
		var cases []string
		for k := range lister.Keys() {
			cases = append(cases, k)
		}
		require.ElementsMatch(t, []string{a1, b1, a2, b2, a3}, cases, "one subject per case")
		for keyID := range wrapped {
			_, err := store.Get(ctx, keyID)
			if destroyed[keyID] {
				require.ErrorIs(t, err, seal.ErrKeyDestroyed, keyID)
			} else {
				require.NoError(t, err, keyID)
			}
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

// subjectsAndMessages returns how many subjects and messages the key
// stream holds.
func subjectsAndMessages(t *testing.T, js jetstream.JetStream, store *seal.NATSKeyStore) (subjects, msgs uint64) {
	t.Helper()
	st, err := js.Stream(t.Context(), store.StreamName())
	require.NoError(t, err)
	info, err := st.Info(t.Context())
	require.NoError(t, err)
	return info.State.NumSubjects, info.State.Msgs
}

// TestNATSKeyStoreOneRecordPerCase checks the layout that keeps restarts
// fast: whatever the keys of a case and however they were made (by several
// processes racing on the case's record, and with classes destroyed in
// between), the case has one subject with one message in the stream.
func TestNATSKeyStoreOneRecordPerCase(t *testing.T) {
	srv := startServer(t)
	js := connect(t, srv)
	stores := make([]*seal.NATSKeyStore, 3)
	for i := range stores {
		var err error
		stores[i], err = seal.NewNATSKeyStore(t.Context(), connect(t, srv), seal.NATSKeyStoreConfig{})
		require.NoError(t, err)
	}
	ctx := t.Context()
	const cases = 8
	for range cases {
		caseID := newCaseID()
		// Every store creates every class at once, and one destroys the
		// identity number's key (generation 0) and generation 2 of the
		// answer's, so most writes lose a race and read again.
		var wg sync.WaitGroup
		var mu sync.Mutex
		created := map[string][]byte{}
		var unexpected []error
		for i, store := range stores {
			for _, c := range seal.Classes() {
				wg.Go(func() {
					keyID, err := seal.KeyID(caseID, c, 0)
					require.NoError(t, err)
					value := fmt.Appendf(nil, "key %s from store %d", keyID, i)
					err = store.Create(ctx, keyID, value)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						if _, dup := created[keyID]; dup {
							unexpected = append(unexpected, fmt.Errorf("%s created twice", keyID))
						}
						created[keyID] = value
					case errors.Is(err, seal.ErrKeyExists), c == seal.ClassIdentity && errors.Is(err, seal.ErrKeyDestroyed):
					default:
						unexpected = append(unexpected, err)
					}
				})
			}
		}
		wg.Go(func() {
			id, _ := seal.KeyID(caseID, seal.ClassIdentity, 0)
			answer2, _ := seal.KeyID(caseID, seal.ClassAnswer, 2)
			if err := stores[0].Destroy(ctx, id, answer2); err != nil {
				mu.Lock()
				unexpected = append(unexpected, err)
				mu.Unlock()
			}
		})
		wg.Wait()
		require.Empty(t, unexpected)
		for _, c := range seal.Classes() {
			keyID, _ := seal.KeyID(caseID, c, 0)
			got, err := stores[2].Get(ctx, keyID)
			if c == seal.ClassIdentity {
				require.ErrorIs(t, err, seal.ErrKeyDestroyed)
				continue
			}
			require.NoError(t, err, keyID)
			require.Equal(t, string(created[keyID]), string(got), "the one key that Create reported stored")
		}
		answer1, _ := seal.KeyID(caseID, seal.ClassAnswer, 1)
		answer2, _ := seal.KeyID(caseID, seal.ClassAnswer, 2)
		_, err := stores[1].Get(ctx, answer1)
		require.ErrorIs(t, err, seal.ErrKeyNotFound, "only generation 2 was destroyed")
		_, err = stores[1].Get(ctx, answer2)
		require.ErrorIs(t, err, seal.ErrKeyDestroyed)
		require.ErrorIs(t, stores[1].Create(ctx, answer2, []byte("again")), seal.ErrKeyDestroyed)
	}
	subjects, msgs := subjectsAndMessages(t, js, stores[0])
	require.Equal(t, uint64(cases), subjects, "one subject per case")
	require.Equal(t, uint64(cases), msgs, "one message per case: every replaced record erased")
}

// TestNATSKeyStoreDestroysManyCases destroys keys of several cases in one
// call, as the retention sweep does, and checks each case's record on its
// own.
func TestNATSKeyStoreDestroysManyCases(t *testing.T) {
	srv := startServer(t)
	js := connect(t, srv)
	store, err := seal.NewNATSKeyStore(t.Context(), js, seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	ctx := t.Context()
	var destroy, keep []string
	for range 40 {
		caseID := newCaseID()
		for _, c := range []seal.Class{seal.ClassContact, seal.ClassFreeText} {
			keyID, _ := seal.KeyID(caseID, c, 0)
			require.NoError(t, store.Create(ctx, keyID, []byte("key of "+keyID)))
			if c == seal.ClassContact {
				destroy = append(destroy, keyID)
			} else {
				keep = append(keep, keyID)
			}
		}
		never, _ := seal.KeyID(newCaseID(), seal.ClassAnswer, 0)
		destroy = append(destroy, never)
	}
	require.NoError(t, store.Destroy(ctx, destroy...))
	require.NoError(t, store.Destroy(ctx, destroy...), "idempotent")
	for _, keyID := range destroy {
		_, err := store.Get(ctx, keyID)
		require.ErrorIs(t, err, seal.ErrKeyDestroyed, keyID)
	}
	for _, keyID := range keep {
		got, err := store.Get(ctx, keyID)
		require.NoError(t, err, keyID)
		require.Equal(t, "key of "+keyID, string(got))
	}
	subjects, msgs := subjectsAndMessages(t, js, store)
	require.Equal(t, uint64(80), subjects, "40 cases with keys, 40 with a tombstone record")
	require.Equal(t, subjects, msgs)
	require.ErrorIs(t, store.Destroy(ctx, keep[0], "bogus"), seal.ErrInvalidKeyID, "bad input changes nothing")
	_, err = store.Get(ctx, keep[0])
	require.NoError(t, err)
}

// TestNATSKeyStoreFullSubject fills a case's subject with records left
// behind (as crashed writers would leave them) up to the stream's limit:
// the server then refuses new records rather than dropping old ones
// unerased, and the store erases the old ones and goes on.
func TestNATSKeyStoreFullSubject(t *testing.T) {
	srv := startServer(t)
	js := connect(t, srv)
	store, err := seal.NewNATSKeyStore(t.Context(), js, seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	ctx := t.Context()
	caseID := newCaseID()
	contact, _ := seal.KeyID(caseID, seal.ClassContact, 0)
	require.NoError(t, store.Create(ctx, contact, []byte("contact key")))
	st, err := js.Stream(ctx, store.StreamName())
	require.NoError(t, err)
	m, err := st.GetLastMsgForSubject(ctx, store.Subject(caseID))
	require.NoError(t, err)
	for range jetstream.KeyValueMaxHistory - 1 {
		_, err := js.Publish(ctx, m.Subject, m.Data)
		require.NoError(t, err)
	}
	_, err = js.Publish(ctx, m.Subject, m.Data)
	require.Error(t, err, "the subject must be full, or this test proves nothing")

	answer, _ := seal.KeyID(caseID, seal.ClassAnswer, 0)
	require.NoError(t, store.Create(ctx, answer, []byte("answer key")))
	for keyID, want := range map[string]string{contact: "contact key", answer: "answer key"} {
		got, err := store.Get(ctx, keyID)
		require.NoError(t, err)
		require.Equal(t, want, string(got))
	}
	_, msgs := subjectsAndMessages(t, js, store)
	require.LessOrEqual(t, msgs, uint64(2), "the old records were erased")
}

// TestNATSKeyStoreForeignMessages covers messages on a case's subject that
// this package did not write: a KV delete marker (an operator's tool)
// makes every key of the case count as destroyed, and a record that does
// not parse is refused as tampered, never read as "no keys".
func TestNATSKeyStoreForeignMessages(t *testing.T) {
	srv := startServer(t)
	js := connect(t, srv)
	store, err := seal.NewNATSKeyStore(t.Context(), js, seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	ctx := t.Context()
	kv, err := js.KeyValue(ctx, seal.DefaultBucket)
	require.NoError(t, err)

	deleted := newCaseID()
	contact, _ := seal.KeyID(deleted, seal.ClassContact, 0)
	require.NoError(t, store.Create(ctx, contact, []byte("k")))
	require.NoError(t, kv.Delete(ctx, deleted))
	_, err = store.Get(ctx, contact)
	require.ErrorIs(t, err, seal.ErrKeyDestroyed)
	answer, _ := seal.KeyID(deleted, seal.ClassAnswer, 0)
	require.ErrorIs(t, store.Create(ctx, answer, []byte("k")), seal.ErrKeyDestroyed)
	require.NoError(t, store.Destroy(ctx, answer))

	garbled := newCaseID()
	contact, _ = seal.KeyID(garbled, seal.ClassContact, 0)
	_, err = js.Publish(ctx, store.Subject(garbled), []byte{0xff, 0xff, 0xff})
	require.NoError(t, err)
	_, err = store.Get(ctx, contact)
	require.ErrorIs(t, err, seal.ErrTampered)
	require.ErrorIs(t, store.Create(ctx, contact, []byte("k")), seal.ErrTampered)
}

// TestNATSKeyStoreRefusesOldLayout: a stream holding keys in the layout
// of one subject per key must not be read as records; an empty one is
// taken over.
func TestNATSKeyStoreRefusesOldLayout(t *testing.T) {
	srv := startServer(t)
	js := connect(t, srv)
	ctx := t.Context()
	old := jetstream.StreamConfig{
		Name: "KV_" + seal.DefaultBucket, Subjects: []string{"$KV." + seal.DefaultBucket + ".>"},
		MaxMsgsPerSubject: 1, AllowRollup: true, Storage: jetstream.FileStorage, Discard: jetstream.DiscardNew,
	}
	_, err := js.CreateStream(ctx, old)
	require.NoError(t, err)
	_, err = seal.NewNATSKeyStore(ctx, js, seal.NATSKeyStoreConfig{})
	require.NoError(t, err, "an empty stream of the old layout is taken over")

	require.NoError(t, js.DeleteStream(ctx, old.Name))
	_, err = js.CreateStream(ctx, old)
	require.NoError(t, err)
	_, err = js.Publish(ctx, "$KV."+seal.DefaultBucket+"."+newCaseID()+".contact", make([]byte, seal.WrappedKeySize))
	require.NoError(t, err)
	_, err = seal.NewNATSKeyStore(ctx, js, seal.NATSKeyStoreConfig{})
	require.ErrorContains(t, err, "another layout")
}

// TestNATSKeyStoreSnapshotAnswersAsTheStore: a snapshot answers Get as the
// store does for every kind of case the stream can hold (a live key, a
// destroyed one, a case deleted by a KV tool, a garbled record, a case
// without keys), refuses writes, and knows nothing made after it.
func TestNATSKeyStoreSnapshotAnswersAsTheStore(t *testing.T) {
	srv := startServer(t)
	js := connect(t, srv)
	store, err := seal.NewNATSKeyStore(t.Context(), js, seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	ctx := t.Context()
	kv, err := js.KeyValue(ctx, seal.DefaultBucket)
	require.NoError(t, err)

	key := func(caseID string, c seal.Class) string {
		id, err := seal.KeyID(caseID, c, 0)
		require.NoError(t, err)
		return id
	}
	live, partly, deleted, garbled, none := newCaseID(), newCaseID(), newCaseID(), newCaseID(), newCaseID()
	require.NoError(t, store.Create(ctx, key(live, seal.ClassContact), []byte("live contact")))
	require.NoError(t, store.Create(ctx, key(partly, seal.ClassContact), []byte("partly contact")))
	require.NoError(t, store.Create(ctx, key(partly, seal.ClassFreeText), []byte("partly text")))
	require.NoError(t, store.Destroy(ctx, key(partly, seal.ClassFreeText)))
	require.NoError(t, store.Create(ctx, key(deleted, seal.ClassContact), []byte("deleted")))
	require.NoError(t, kv.Delete(ctx, deleted))
	_, err = js.Publish(ctx, store.Subject(garbled), []byte{0xff, 0xff, 0xff})
	require.NoError(t, err)

	snap, err := store.Snapshot(ctx)
	require.NoError(t, err)
	var checked int
	for _, caseID := range []string{live, partly, deleted, garbled, none} {
		for _, c := range []seal.Class{seal.ClassContact, seal.ClassFreeText, seal.ClassIdentity} {
			id := key(caseID, c)
			want, wantErr := store.Get(ctx, id)
			got, gotErr := snap.Get(ctx, id)
			require.Equal(t, want, got, id)
			for _, sentinel := range []error{seal.ErrKeyDestroyed, seal.ErrKeyNotFound, seal.ErrTampered} {
				require.Equal(t, errors.Is(wantErr, sentinel), errors.Is(gotErr, sentinel), "%s: store %v, snapshot %v", id, wantErr, gotErr)
			}
			if wantErr == nil {
				checked++
			}
		}
	}
	require.Equal(t, 2, checked, "two live keys compared")

	require.ErrorIs(t, snap.Create(ctx, key(none, seal.ClassContact), []byte("x")), seal.ErrReadOnly)
	require.ErrorIs(t, snap.Destroy(ctx, key(live, seal.ClassContact)), seal.ErrReadOnly)
	later := newCaseID()
	require.NoError(t, store.Create(ctx, key(later, seal.ClassContact), []byte("later")))
	_, err = snap.Get(ctx, key(later, seal.ClassContact))
	require.ErrorIs(t, err, seal.ErrKeyNotFound, "made after the snapshot")
	_, err = snap.Get(ctx, "not a key id")
	require.ErrorIs(t, err, seal.ErrInvalidKeyID)
}
