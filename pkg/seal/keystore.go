package seal

import "context"

// KeyStore keeps the wrapped data keys, one per key id. Sealer depends only
// on this interface so that the store can be the NATS KV bucket (the
// default, NATSKeyStore) or something else later, and so that the
// destroy-means-gone guarantee is stated in one place.
//
// The store only ever sees wrapped keys (encrypted with the master key) and
// key ids (which name no person). Implementations must be safe for
// concurrent use by several processes.
type KeyStore interface {
	// Create stores wrapped under keyID if keyID has never been used. It
	// must be atomic across processes: of two concurrent Creates of one key
	// id exactly one succeeds, and the other gets ErrKeyExists. Creating a
	// destroyed key id fails with ErrKeyDestroyed, never silently makes a
	// new key: data sealed after a redaction must not become readable.
	Create(ctx context.Context, keyID string, wrapped []byte) error
	// Get returns the wrapped key stored under keyID. It fails with
	// ErrKeyNotFound if the key id was never created and with
	// ErrKeyDestroyed if it was destroyed.
	Get(ctx context.Context, keyID string) ([]byte, error)
	// Destroy removes the wrapped key so that its bytes cannot be read
	// back from the store, its history or its files, and leaves a tombstone
	// so that the key id stays known as destroyed. It is idempotent, and
	// destroying a key id that was never created also leaves a tombstone
	// (so a deleted case can never get a new key).
	Destroy(ctx context.Context, keyID string) error
}

// BatchDestroyer is implemented by key stores that can destroy many keys
// with fewer writes than one each. Sealer.DestroyBatch uses it, so that a
// batch of redactions costs a few disk syncs instead of one per key.
type BatchDestroyer interface {
	// DestroyBatch destroys every key as Destroy destroys each: erased and
	// tombstoned, idempotent. It attempts every key even if some fail and
	// returns the failures joined.
	DestroyBatch(ctx context.Context, keyIDs []string) error
}
