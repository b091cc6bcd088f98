package seal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kontakt-se/kontakt/pkg/jsbatch"
	"github.com/kontakt-se/kontakt/pkg/natserr"
)

// DefaultBucket is the name of the KV bucket that holds the wrapped data
// keys. Its stream is "KV_" + DefaultBucket.
const DefaultBucket = "KONTAKT_KEYS"

// kvOperationHeader and kvPurge are the NATS KV conventions for a purge
// marker (nats.go keeps them unexported). Using them makes a destroyed key
// look purged to every KV client, including the nats CLI.
const (
	kvOperationHeader = "KV-Operation"
	kvPurge           = "PURGE"
)

// maxKeyMsgSize bounds a message in the key bucket. A wrapped key is
// WrappedKeySize bytes and a tombstone a few headers; the limit stops the
// bucket being used for anything else.
const maxKeyMsgSize = 4096

// maxDestroyAttempts bounds Destroy's retries when it races with
// concurrent Creates or Destroys of the same key id. Each retry makes
// progress, so a handful is plenty.
const maxDestroyAttempts = 8

// NATSKeyStoreConfig configures NewNATSKeyStore.
type NATSKeyStoreConfig struct {
	// Bucket is the KV bucket name; empty means DefaultBucket.
	Bucket string
	// Replicas is the number of stream replicas: 1 on a single server
	// (the embedded one), 3 on a cluster. Zero means 1.
	Replicas int
}

// NATSKeyStore is the KeyStore kept in a NATS JetStream KV bucket, one
// key per key id, history 1, file storage.
//
// The bucket's stream is created by this package rather than by
// jetstream.CreateKeyValue, for one reason: a plain KV purge only marks the
// old message deleted, and the file store keeps its bytes in the block file
// until that block happens to be compacted (for a small bucket: never,
// because the last block is never compacted). So Destroy first
// overwrites the wrapped key in place with the stream's secure-delete
// (which needs a stream that allows message deletes, unlike a standard KV
// bucket) and then writes a KV purge marker as the tombstone. The stream is
// otherwise configured like a KV bucket, so KV clients can read it. Gets
// go to the stream leader (no direct get), because a destroyed key must not
// be served by a lagging replica.
//
// The tombstones must stay: never run a KV "purge deletes" (nats kv
// compact, PurgeDeletes) on this bucket, or destroyed key ids become
// "never existed" and a deleted case could be given a new key.
type NATSKeyStore struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	kv      jetstream.KeyValue
	bucket  string
	subject string // subject prefix, "$KV.<bucket>."
}

var (
	_ BatchKeyStore  = (*NATSKeyStore)(nil)
	_ BatchDestroyer = (*NATSKeyStore)(nil)
)

// NewNATSKeyStore opens the key bucket, creating its stream if needed or
// updating it to cfg (for instance a new replica count). It refuses a
// bucket whose stream denies message deletes (such as one made with
// jetstream.CreateKeyValue), because Destroy could not erase keys in it;
// such a stream cannot be changed and must be recreated.
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
		if err := checkExistingKeyStream(st.CachedInfo().Config); err != nil {
			return nil, fmt.Errorf("seal: key bucket %s: %w", bucket, err)
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("seal: key bucket %s: %w", bucket, err)
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              name,
		Description:       "kontakt data keys, wrapped with the master key; destroyed keys are erased and tombstoned",
		Subjects:          []string{"$KV." + bucket + ".>"},
		MaxMsgsPerSubject: 1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgSize:        maxKeyMsgSize,
		MaxConsumers:      -1,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		Discard:           jetstream.DiscardNew,
		Duplicates:        2 * time.Minute,
		AllowRollup:       true,
		DenyDelete:        false,
		DenyPurge:         false,
		AllowDirect:       false,
		// CreateBatch stores a group of keys with one disk sync.
		AllowAtomicPublish: true,
	})
	if err != nil {
		return nil, fmt.Errorf("seal: key bucket %s: create or update stream %s: %w", bucket, name, err)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("seal: key bucket %s: %w", bucket, err)
	}
	return &NATSKeyStore{js: js, stream: st, kv: kv, bucket: bucket, subject: "$KV." + bucket + "."}, nil
}

// checkExistingKeyStream refuses a stream that would break Destroy's
// guarantees.
func checkExistingKeyStream(c jetstream.StreamConfig) error {
	switch {
	case c.DenyDelete:
		return fmt.Errorf("stream %s denies message deletes (was it made with CreateKeyValue?), so destroyed keys could not be erased from disk; recreate it with this package", c.Name)
	case c.DenyPurge || !c.AllowRollup:
		return fmt.Errorf("stream %s does not allow KV purge markers, so destroyed keys could not be tombstoned", c.Name)
	case c.MaxMsgsPerSubject != 1:
		return fmt.Errorf("stream %s keeps %d revisions per key, want 1", c.Name, c.MaxMsgsPerSubject)
	case c.Storage != jetstream.FileStorage:
		return fmt.Errorf("stream %s is not file-backed, so keys would not survive a restart", c.Name)
	}
	return nil
}

// StreamName returns the name of the bucket's stream, for operators and
// tests that inspect it.
func (s *NATSKeyStore) StreamName() string { return "KV_" + s.bucket }

// Create implements KeyStore. It publishes with "expected last subject
// sequence 0", which the server checks atomically: it succeeds only if the
// key id has no message at all, neither a key nor a tombstone.
func (s *NATSKeyStore) Create(ctx context.Context, keyID string, wrapped []byte) error {
	if _, _, _, err := ParseKeyID(keyID); err != nil {
		return err
	}
	_, err := s.kv.Update(ctx, keyID, wrapped, 0)
	if err == nil {
		return nil
	}
	if !natserr.IsWrongLastSequence(err) {
		return fmt.Errorf("seal: store key %s: %w", keyID, err)
	}
	// Something is there already: a key or a tombstone.
	_, gerr := s.Get(ctx, keyID)
	switch {
	case gerr == nil:
		return fmt.Errorf("seal: store key %s: %w", keyID, ErrKeyExists)
	case errors.Is(gerr, ErrKeyDestroyed):
		return gerr
	case errors.Is(gerr, ErrKeyNotFound):
		// The only way a key id stops having messages is Destroy erasing
		// the key just before it writes the tombstone.
		return fmt.Errorf("seal: store key %s: destroy in progress: %w", keyID, ErrKeyDestroyed)
	default:
		return gerr
	}
}

// CreateBatch implements BatchKeyStore with a JetStream atomic batch: each
// key is published with "expected last subject sequence 0", as Create
// does, and the server stores all of them or, if any key id was used
// before, none.
func (s *NATSKeyStore) CreateBatch(ctx context.Context, keys []WrappedKey) error {
	if len(keys) > jsbatch.MaxMessages {
		return fmt.Errorf("seal: store %d keys: at most %d in one batch", len(keys), jsbatch.MaxMessages)
	}
	msgs := make([]*nats.Msg, len(keys))
	for i, k := range keys {
		if _, _, _, err := ParseKeyID(k.KeyID); err != nil {
			return err
		}
		m := nats.NewMsg(s.subject + k.KeyID)
		m.Data = k.Wrapped
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		msgs[i] = m
	}
	_, err := jsbatch.Publish(ctx, s.js.Conn(), msgs)
	switch {
	case err == nil:
		return nil
	case natserr.IsWrongLastSequence(err):
		return fmt.Errorf("seal: store %d keys: a key id was used before: %w", len(keys), ErrKeyExists)
	case natserr.Is(err, natserr.AtomicPublishDisabled):
		return fmt.Errorf("seal: store %d keys: %w (%w)", len(keys), errors.ErrUnsupported, err)
	}
	return fmt.Errorf("seal: store %d keys: %w", len(keys), err)
}

// Get implements KeyStore. A KV delete or purge marker, or a server marker
// (such as a TTL expiry), counts as destroyed.
func (s *NATSKeyStore) Get(ctx context.Context, keyID string) ([]byte, error) {
	if _, _, _, err := ParseKeyID(keyID); err != nil {
		return nil, err
	}
	m, err := s.stream.GetLastMsgForSubject(ctx, s.subject+keyID)
	if natserr.IsMessageNotFound(err) {
		return nil, fmt.Errorf("seal: key %s: %w", keyID, ErrKeyNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("seal: get key %s: %w", keyID, err)
	}
	if isTombstone(m.Header) {
		return nil, fmt.Errorf("seal: key %s: %w", keyID, ErrKeyDestroyed)
	}
	return m.Data, nil
}

// Destroy implements KeyStore. It overwrites the stored wrapped key with
// random bytes on disk (stream secure delete), then writes a KV purge
// marker as the tombstone. The marker is written with "expected last
// subject sequence 0", so if a concurrent Create slipped in a new key
// between the two steps, the marker is refused and the loop erases that key
// too.
func (s *NATSKeyStore) Destroy(ctx context.Context, keyID string) error {
	if _, _, _, err := ParseKeyID(keyID); err != nil {
		return err
	}
	subject := s.subject + keyID
	var lastErr error
	for range maxDestroyAttempts {
		m, err := s.stream.GetLastMsgForSubject(ctx, subject)
		switch {
		case natserr.IsMessageNotFound(err):
			// Nothing stored (never created, or erased): write the tombstone.
		case err != nil:
			return fmt.Errorf("seal: destroy key %s: %w", keyID, err)
		case isTombstone(m.Header):
			return nil
		default:
			if err := s.stream.SecureDeleteMsg(ctx, m.Sequence); err != nil {
				// Perhaps a concurrent Destroy erased it first; look again.
				lastErr = fmt.Errorf("erase revision %d: %w", m.Sequence, err)
				continue
			}
		}
		_, err = s.js.PublishMsg(ctx, s.tombstone(keyID), jetstream.WithExpectLastSequencePerSubject(0))
		if err == nil {
			return nil
		}
		if !natserr.IsWrongLastSequence(err) {
			return fmt.Errorf("seal: destroy key %s: write tombstone: %w", keyID, err)
		}
		lastErr = fmt.Errorf("write tombstone: %w", err)
	}
	return fmt.Errorf("seal: destroy key %s: no progress after %d attempts: %w", keyID, maxDestroyAttempts, lastErr)
}

// DestroyBatch implements BatchDestroyer. It erases the stored keys side
// by side, as Destroy erases one (stream secure delete: nats-server has no
// batch of those), then writes the tombstones of every key that lacks one
// in atomic batches (tombstones), each marker expecting "last subject
// sequence 0" as in Destroy: one disk sync per batch instead of one per
// key. The keys of a refused batch (a concurrent Create slipped a key in
// after the erase; a server that cannot batch) and those whose erase
// failed are left to Destroy, one by one, which loops until each key is
// erased and tombstoned.
func (s *NATSKeyStore) DestroyBatch(ctx context.Context, keyIDs []string) error {
	seen := make(map[string]bool, len(keyIDs))
	var ids []string
	for _, keyID := range keyIDs {
		if _, _, _, err := ParseKeyID(keyID); err != nil {
			return err
		}
		if !seen[keyID] {
			seen[keyID] = true
			ids = append(ids, keyID)
		}
	}
	// Erase first, noting the key ids that need a tombstone.
	mark := make([]bool, len(ids))
	retry := make([]bool, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxDestroyers)
	for i, keyID := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			m, err := s.stream.GetLastMsgForSubject(ctx, s.subject+keyID)
			switch {
			case natserr.IsMessageNotFound(err):
				mark[i] = true
			case err != nil:
				retry[i] = true
			case isTombstone(m.Header):
			default:
				if err := s.stream.SecureDeleteMsg(ctx, m.Sequence); err != nil {
					retry[i] = true
					return
				}
				mark[i] = true
			}
		})
	}
	wg.Wait()
	var marked, rest []string
	for i, keyID := range ids {
		switch {
		case mark[i]:
			marked = append(marked, keyID)
		case retry[i]:
			rest = append(rest, keyID)
		}
	}
	refused, err := s.tombstones(ctx, marked)
	if err != nil {
		return fmt.Errorf("seal: destroy %d keys: %w", len(ids), err)
	}
	return destroyEach(ctx, s, append(rest, refused...))
}

// tombstones writes the tombstones of keyIDs in atomic batches of at most
// jsbatch.MaxMessages, each marker expecting "last subject sequence 0", so
// a batch is stored whole only if none of its key ids holds a message; it
// returns the key ids of the batches that were refused or whose outcome is
// unknown, for Destroy to settle one by one. It fails only when ctx ends.
func (s *NATSKeyStore) tombstones(ctx context.Context, keyIDs []string) (refused []string, err error) {
	for chunk := range slices.Chunk(keyIDs, jsbatch.MaxMessages) {
		msgs := make([]*nats.Msg, len(chunk))
		for i, keyID := range chunk {
			msgs[i] = s.tombstone(keyID)
			msgs[i].Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		}
		if _, err := jsbatch.Publish(ctx, s.js.Conn(), msgs); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			refused = append(refused, chunk...)
		}
	}
	return refused, nil
}

// tombstone is the KV purge marker that records keyID as destroyed.
func (s *NATSKeyStore) tombstone(keyID string) *nats.Msg {
	marker := nats.NewMsg(s.subject + keyID)
	marker.Header.Set(kvOperationHeader, kvPurge)
	marker.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	return marker
}

// isTombstone reports whether a message of the key bucket marks its key id
// as destroyed rather than holding a key.
func isTombstone(h nats.Header) bool {
	return h.Get(kvOperationHeader) != "" || h.Get(jetstream.MarkerReasonHeader) != ""
}
