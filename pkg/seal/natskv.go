package seal

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kontakt-se/kontakt/pkg/jsbatch"
	"github.com/kontakt-se/kontakt/pkg/natserr"
)

// DefaultBucket names the stream that holds the wrapped data keys:
// "KV_" + DefaultBucket, on subjects "$KV." + DefaultBucket + ".>", named
// like a KV bucket so that KV tools can read it.
const DefaultBucket = "KONTAKT_KEYS"

// KeyLayout names the layout of the key stream that this package reads
// and writes: one record per case (keyspb.CaseKeys) on the subject
// "$KV.<bucket>.<case id>". It is kept in the stream's metadata, so that a
// stream of another layout (such as the one subject per key of kontakt's
// first versions) is refused at start instead of being misread.
const KeyLayout = "case-record/1"

// layoutMetadataKey is the stream metadata entry that holds KeyLayout.
const layoutMetadataKey = "kontakt_key_layout"

// kvOperationHeader is the NATS KV convention for a delete or purge marker
// (nats.go keeps it unexported). This package writes no markers, but an
// operator's KV tool could; a case whose last message is one counts as
// destroyed throughout.
const kvOperationHeader = "KV-Operation"

// maxKeyMsgSize bounds a message in the key stream. A case's record holds
// a wrapped key (WrappedKeySize bytes) per live key, at most a few per
// class, and a few bytes per class for what was destroyed; the limit stops
// the stream being used for anything else.
const maxKeyMsgSize = 4096

// maxRecordsPerCase is the most messages the stream keeps on a case's
// subject. Normally a case has one: only a writer that stopped between
// writing a record and erasing the one it replaced leaves more.
const maxRecordsPerCase = jetstream.KeyValueMaxHistory

// maxWriteAttempts bounds the rewrites of one case's record when it races
// with concurrent writers of the same case. Each lost race means another
// writer finished, so among k writers that start together none loses more
// than k-1 times; a case rarely has more than two (a redaction and an
// answer), and 32 leaves room for bursts.
const maxWriteAttempts = 32

// destroyParallel bounds how many cases' records one Destroy rewrites at
// the same time.
const destroyParallel = 64

// NATSKeyStoreConfig configures NewNATSKeyStore.
type NATSKeyStoreConfig struct {
	// Bucket names the stream ("KV_" + Bucket) and its subjects
	// ("$KV." + Bucket + ".>"); empty means DefaultBucket.
	Bucket string
	// Replicas is the number of stream replicas: 1 on a single server
	// (the embedded one), 3 on a cluster. Zero means 1.
	Replicas int
}

// NATSKeyStore is the KeyStore kept in a JetStream stream with one record
// per case: one subject, "$KV.<bucket>.<case id>", whose last message
// holds every live wrapped key of the case (all classes and generations)
// and which of its keys were destroyed (keyspb.CaseKeys, see caseRecord).
//
// One subject per case, rather than one per key, because JetStream keeps
// an in-memory index entry per subject and rebuilds that index at every
// start; with a subject per key (2.2 per case) the index was most of
// kontakt's memory and of its restart time.
//
// Every change rewrites the record: the new record is published with
// "expected last subject sequence" set to the record it was made from, so
// of two concurrent writers of one case one wins and the other reads
// again (optimistic concurrency). The stream keeps every message of a
// subject until this package erases it (it refuses new records rather
// than drop old ones), because a message the server drops by a limit or a
// purge leaves its bytes in the block file; the old record is erased
// instead with the stream's secure delete, which overwrites it on disk. Destroy erases every older record
// of the case, so that no copy of a destroyed key stays on disk. Create
// erases the one it replaced, which held only keys that stay live; one
// left behind by a crash is erased by the case's next Destroy.
//
// Reads go to the stream leader (no direct get), because a destroyed key
// must not be served by a lagging replica. The stream is named and laid
// out like a KV bucket ("KV_" + bucket), so KV clients such as the nats
// CLI can list the cases and read their records; but it is not a KV
// bucket, and its records must be written by this package only.
type NATSKeyStore struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	bucket  string
	subject string // subject prefix, "$KV.<bucket>."
}

var _ BatchKeyStore = (*NATSKeyStore)(nil)

// NewNATSKeyStore opens the key stream, creating it if needed or updating
// it to cfg (for instance a new replica count). It refuses a stream that
// could not keep the guarantees (one that denies message deletes, as one
// made with jetstream.CreateKeyValue does, or drops old records by a
// per-subject limit) and a stream of another layout (KeyLayout).
func NewNATSKeyStore(ctx context.Context, js jetstream.JetStream, cfg NATSKeyStoreConfig) (*NATSKeyStore, error) {
	if js == nil {
		return nil, errors.New("seal: NewNATSKeyStore: nil JetStream")
	}
	bucket := cfg.Bucket
	if bucket == "" {
		bucket = DefaultBucket
	}
	replicas := cfg.Replicas
	if replicas == 0 {
		replicas = 1
	}
	if replicas < 0 {
		return nil, fmt.Errorf("seal: key bucket %s: negative replica count %d", bucket, replicas)
	}
	name := "KV_" + bucket
	if st, err := js.Stream(ctx, name); err == nil {
		if err := checkExistingKeyStream(st.CachedInfo()); err != nil {
			return nil, fmt.Errorf("seal: key bucket %s: %w", bucket, err)
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("seal: key bucket %s: %w", bucket, err)
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "kontakt data keys, one record per case, wrapped with the master key; destroyed keys are erased",
		Subjects:    []string{"$KV." + bucket + ".>"},
		// A case has one record, and for a moment two. The server must
		// never drop a record to make room (it would stay on disk), so a
		// case at its limit refuses new records instead, and the writer
		// erases the old ones (rewrite). The limit is KV's largest
		// history, so that KV tools accept the stream as a bucket.
		MaxMsgsPerSubject:    maxRecordsPerCase,
		DiscardNewPerSubject: true,
		MaxMsgs:              -1,
		MaxBytes:             -1,
		MaxMsgSize:           maxKeyMsgSize,
		MaxConsumers:         -1,
		Storage:              jetstream.FileStorage,
		Replicas:             replicas,
		Discard:              jetstream.DiscardNew,
		Duplicates:           2 * time.Minute,
		// No rollups: a rollup drops the older records without erasing
		// them.
		AllowRollup: false,
		DenyDelete:  false,
		DenyPurge:   false,
		AllowDirect: false,
		// CreateBatch stores the records of many cases with one disk
		// sync.
		AllowAtomicPublish: true,
		Metadata:           map[string]string{layoutMetadataKey: KeyLayout},
	})
	if err != nil {
		return nil, fmt.Errorf("seal: key bucket %s: create or update stream %s: %w", bucket, name, err)
	}
	return &NATSKeyStore{js: js, stream: st, bucket: bucket, subject: "$KV." + bucket + "."}, nil
}

// checkExistingKeyStream refuses a stream that would break Destroy's
// guarantees or that holds another layout.
func checkExistingKeyStream(info *jetstream.StreamInfo) error {
	c := info.Config
	switch {
	case c.DenyDelete:
		return fmt.Errorf("stream %s denies message deletes (was it made with CreateKeyValue?), so destroyed keys could not be erased from disk; recreate it with this package", c.Name)
	case c.Storage != jetstream.FileStorage:
		return fmt.Errorf("stream %s is not file-backed, so keys would not survive a restart", c.Name)
	case c.Metadata[layoutMetadataKey] != KeyLayout && info.State.LastSeq > 0:
		return fmt.Errorf("stream %s holds keys in another layout than %s (one subject per key, from before kontakt had a release); delete the stream or start from an empty data directory", c.Name, KeyLayout)
	}
	return nil
}

// StreamName returns the name of the key stream, for operators and tests
// that inspect it.
func (s *NATSKeyStore) StreamName() string { return "KV_" + s.bucket }

// Subject returns the subject of a case's record, for tests that inspect
// the stream.
func (s *NATSKeyStore) Subject(caseID string) string { return s.subject + caseID }

// Create implements KeyStore by rewriting the case's record with the new
// key added.
func (s *NATSKeyStore) Create(ctx context.Context, keyID string, wrapped []byte) error {
	ref, err := refOf(keyID)
	if err != nil {
		return err
	}
	err = s.rewrite(ctx, ref.caseID, false, func(r *caseRecord) (bool, error) {
		return true, r.add(ref.class, ref.gen, wrapped)
	})
	if err != nil {
		return fmt.Errorf("seal: store key %s: %w", keyID, err)
	}
	return nil
}

// CreateBatch implements BatchKeyStore with a JetStream atomic batch of
// one new record per case, each published with "expected last subject
// sequence 0": the server stores all of them or, if any of the cases has
// a record already, none. So it fails with ErrKeyExists when any case has
// keys (or destroyed keys) already, even if not the ones given; drafts,
// its one user, are of new cases.
func (s *NATSKeyStore) CreateBatch(ctx context.Context, keys []WrappedKey) error {
	var cases []string
	records := map[string]*caseRecord{}
	for _, k := range keys {
		ref, err := refOf(k.KeyID)
		if err != nil {
			return err
		}
		r, ok := records[ref.caseID]
		if !ok {
			r = &caseRecord{}
			records[ref.caseID] = r
			cases = append(cases, ref.caseID)
		}
		if err := r.add(ref.class, ref.gen, k.Wrapped); err != nil {
			return fmt.Errorf("seal: store %d keys: key %s given twice: %w", len(keys), k.KeyID, ErrKeyExists)
		}
	}
	if len(cases) > jsbatch.MaxMessages {
		return fmt.Errorf("seal: store keys of %d cases: at most %d in one batch", len(cases), jsbatch.MaxMessages)
	}
	msgs := make([]*nats.Msg, len(cases))
	for i, caseID := range cases {
		data, err := records[caseID].encode()
		if err != nil {
			return err
		}
		m := nats.NewMsg(s.subject + caseID)
		m.Data = data
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		msgs[i] = m
	}
	if len(msgs) == 0 {
		return nil
	}
	_, err := jsbatch.Publish(ctx, s.js.Conn(), msgs)
	switch {
	case err == nil:
		return nil
	case natserr.IsWrongLastSequence(err):
		return fmt.Errorf("seal: store keys of %d cases: a case has keys already: %w", len(cases), ErrKeyExists)
	case natserr.Is(err, natserr.AtomicPublishDisabled):
		return fmt.Errorf("seal: store keys of %d cases: %w (%w)", len(cases), errors.ErrUnsupported, err)
	}
	return fmt.Errorf("seal: store keys of %d cases: %w", len(cases), err)
}

// Get implements KeyStore from the case's record.
func (s *NATSKeyStore) Get(ctx context.Context, keyID string) ([]byte, error) {
	ref, err := refOf(keyID)
	if err != nil {
		return nil, err
	}
	r, _, err := s.load(ctx, ref.caseID)
	if err != nil {
		return nil, fmt.Errorf("seal: get key %s: %w", keyID, err)
	}
	return wrappedKey(r, ref, keyID)
}

// wrappedKey answers Get from a case's record (the zero record when the
// case has none).
func wrappedKey(r caseRecord, ref keyRef, keyID string) ([]byte, error) {
	switch st, wrapped := r.lookup(ref.class, ref.gen); st {
	case keyLive:
		return wrapped, nil
	case keyDestroyed:
		return nil, fmt.Errorf("seal: key %s: %w", keyID, ErrKeyDestroyed)
	}
	return nil, fmt.Errorf("seal: key %s: %w", keyID, ErrKeyNotFound)
}

// Destroy implements KeyStore with one rewrite per case: the case's
// record without the keys, marking them destroyed, and then the secure
// erase of every older record of the case. A key already destroyed
// changes nothing, but the erase still runs, so that a Destroy
// interrupted between its two steps is finished by the next one.
//
// The keys of several cases (a sweep's batch of redactions) are destroyed
// with the new records of all the cases published as JetStream atomic
// batches, each record expecting the last subject sequence it was made
// from: one disk sync for many cases instead of one each. The erases that
// follow are one request per old record, side by side (the server has no
// batch of those). The cases of a refused batch (another writer got in
// first; a stream that cannot batch) and those with nothing to write are
// settled one by one, as a single case is.
func (s *NATSKeyStore) Destroy(ctx context.Context, keyIDs ...string) error {
	byCase := map[string][]keyRef{}
	var cases []string
	for _, keyID := range keyIDs {
		ref, err := refOf(keyID)
		if err != nil {
			return err
		}
		if _, ok := byCase[ref.caseID]; !ok {
			cases = append(cases, ref.caseID)
		}
		byCase[ref.caseID] = append(byCase[ref.caseID], ref)
	}
	destroyAll := func(r *caseRecord, refs []keyRef) bool {
		changed := false
		for _, ref := range refs {
			changed = r.destroy(ref.class, ref.gen) || changed
		}
		return changed
	}
	errs := make([]error, len(cases))
	rest := cases
	if len(cases) > 1 {
		rest = s.destroyBatched(ctx, cases, byCase, destroyAll, errs)
	}
	index := make(map[string]int, len(cases))
	for i, caseID := range cases {
		index[caseID] = i
	}
	parallel(len(rest), func(j int) {
		caseID := rest[j]
		err := s.rewrite(ctx, caseID, true, func(r *caseRecord) (bool, error) {
			return destroyAll(r, byCase[caseID]), nil
		})
		if err != nil {
			errs[index[caseID]] = fmt.Errorf("seal: destroy keys of case %s: %w", caseID, err)
		}
	})
	return errors.Join(errs...)
}

// recordWrite is a case's new record and the sequence of the record it
// replaces (0: none).
type recordWrite struct {
	caseID string
	prev   uint64
	next   caseRecord
}

// destroyBatched is Destroy's batched path: it reads the cases' records
// side by side, publishes the changed ones in atomic batches and erases
// what they replaced. It returns the cases left for the one-by-one path
// (unchanged, refused, or unreadable) and notes erase failures in errs,
// by the case's index in cases.
func (s *NATSKeyStore) destroyBatched(ctx context.Context, cases []string, byCase map[string][]keyRef,
	destroyAll func(*caseRecord, []keyRef) bool, errs []error,
) (rest []string) {
	writes := make([]*recordWrite, len(cases))
	parallel(len(cases), func(i int) {
		r, seq, err := s.load(ctx, cases[i])
		if err != nil {
			return
		}
		next := r.clone()
		if destroyAll(&next, byCase[cases[i]]) {
			writes[i] = &recordWrite{caseID: cases[i], prev: seq, next: next}
		}
	})
	var batch []*recordWrite
	var index []int
	for i, w := range writes {
		if w == nil {
			rest = append(rest, cases[i])
			continue
		}
		batch = append(batch, w)
		index = append(index, i)
	}
	newSeqs, refused := s.writeRecords(ctx, batch)
	for j := range refused {
		if refused[j] {
			rest = append(rest, batch[j].caseID)
		}
	}
	parallel(len(batch), func(j int) {
		if refused[j] || batch[j].prev == 0 {
			return
		}
		subject := s.subject + batch[j].caseID
		_ = s.stream.SecureDeleteMsg(ctx, batch[j].prev)
		if err := s.eraseOlder(ctx, subject, newSeqs[j]); err != nil {
			errs[index[j]] = fmt.Errorf("seal: destroy keys of case %s: %w", batch[j].caseID, err)
		}
	})
	return rest
}

// writeRecords publishes records in atomic batches of at most
// jsbatch.MaxMessages, each expecting the last subject sequence of the
// record it replaces, so a batch is stored whole only if no other writer
// changed any of its cases. It returns each record's new sequence, and
// which records were refused or are of unknown outcome: those of a batch
// the server refused, or that failed on the way.
func (s *NATSKeyStore) writeRecords(ctx context.Context, writes []*recordWrite) (seqs []uint64, refused []bool) {
	seqs = make([]uint64, len(writes))
	refused = make([]bool, len(writes))
	for start := 0; start < len(writes); start += jsbatch.MaxMessages {
		chunk := writes[start:min(start+jsbatch.MaxMessages, len(writes))]
		msgs := make([]*nats.Msg, 0, len(chunk))
		for _, w := range chunk {
			data, err := w.next.encode()
			if err != nil {
				break
			}
			m := nats.NewMsg(s.subject + w.caseID)
			m.Data = data
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.prev, 10))
			msgs = append(msgs, m)
		}
		var ack jsbatch.Ack
		var err error
		if len(msgs) == len(chunk) {
			ack, err = jsbatch.Publish(ctx, s.js.Conn(), msgs)
		} else {
			err = errors.New("a record does not encode")
		}
		for i := range chunk {
			if err != nil {
				refused[start+i] = true
				continue
			}
			seqs[start+i] = ack.Seq(i)
		}
	}
	return seqs, refused
}

// parallel calls f(0) … f(n-1) side by side, at most destroyParallel at a
// time, and returns when all have returned.
func parallel(n int, f func(i int)) {
	sem := make(chan struct{}, destroyParallel)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

// load reads the last message of a case's subject: its record and the
// record's stream sequence (0 when the case has none).
func (s *NATSKeyStore) load(ctx context.Context, caseID string) (caseRecord, uint64, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, s.subject+caseID)
	if natserr.IsMessageNotFound(err) {
		return caseRecord{}, 0, nil
	}
	if err != nil {
		return caseRecord{}, 0, err
	}
	if isMarker(m.Header) {
		return caseRecord{gone: true}, m.Sequence, nil
	}
	r, err := decodeRecord(m.Data)
	if err != nil {
		return caseRecord{}, 0, fmt.Errorf("record at sequence %d: %w", m.Sequence, err)
	}
	return r, m.Sequence, nil
}

// rewrite applies change to the case's record and publishes the result
// in place of the record it was made from, reading again when another
// writer got in first. change reports whether it changed anything; an
// error from it ends the rewrite and is returned as it is. After a
// rewrite the replaced record is erased; with eraseAll, every older
// message of the case is erased, even when nothing changed.
func (s *NATSKeyStore) rewrite(ctx context.Context, caseID string, eraseAll bool, change func(*caseRecord) (bool, error)) error {
	subject := s.subject + caseID
	var lastErr error
	for range maxWriteAttempts {
		r, seq, err := s.load(ctx, caseID)
		if err != nil {
			return err
		}
		next := r.clone()
		changed, err := change(&next)
		if err != nil {
			return err
		}
		if !changed {
			if eraseAll && seq > 0 {
				return s.eraseOlder(ctx, subject, seq)
			}
			return nil
		}
		data, err := next.encode()
		if err != nil {
			return err
		}
		m := nats.NewMsg(subject)
		m.Data = data
		ack, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(seq))
		if natserr.IsWrongLastSequence(err) {
			lastErr = err
			continue
		}
		if natserr.IsSubjectFull(err) && seq > 0 {
			// Old records left behind fill the case's subject: erase them
			// and try again.
			if err := s.eraseOlder(ctx, subject, seq); err != nil {
				return err
			}
			lastErr = err
			continue
		}
		if err != nil {
			return fmt.Errorf("write record: %w", err)
		}
		if seq == 0 {
			return nil
		}
		if !eraseAll {
			// The replaced record holds only keys that stay live, so an
			// erase that fails here leaks nothing; the case's next
			// Destroy erases it.
			_ = s.stream.SecureDeleteMsg(ctx, seq)
			return nil
		}
		// Erase the replaced record directly (the common case needs no
		// search), then anything older that a crash left behind.
		_ = s.stream.SecureDeleteMsg(ctx, seq)
		return s.eraseOlder(ctx, subject, ack.Sequence)
	}
	return fmt.Errorf("no progress after %d attempts: %w", maxWriteAttempts, lastErr)
}

// eraseOlder securely erases every message of subject below sequence
// keep, oldest first: it overwrites each on disk, so that the keys it held
// cannot be read back from the store's files.
func (s *NATSKeyStore) eraseOlder(ctx context.Context, subject string, keep uint64) error {
	var failedSeq uint64
	var failed error
	for {
		m, err := s.stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject))
		if natserr.IsMessageNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("find old records: %w", err)
		}
		if m.Sequence >= keep {
			return nil
		}
		if m.Sequence == failedSeq {
			return fmt.Errorf("erase old record %d: %w", failedSeq, failed)
		}
		if err := s.stream.SecureDeleteMsg(ctx, m.Sequence); err != nil {
			// Perhaps a concurrent Destroy erased it first; look again.
			failedSeq, failed = m.Sequence, err
		}
	}
}

// isMarker reports whether a message of the key stream is a marker (a KV
// delete or purge, or a server marker) rather than a record.
func isMarker(h nats.Header) bool {
	return h.Get(kvOperationHeader) != "" || h.Get(jetstream.MarkerReasonHeader) != ""
}
