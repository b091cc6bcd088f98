package seal

import "context"

// KeyStore keeps the wrapped data keys, one per key id. Sealer depends only
// on this interface so that the store can be the NATS key stream (the
// default, NATSKeyStore, which keeps one record per case) or something
// else later, and so that the destroy-means-gone guarantee is stated in
// one place.
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
	// Destroy removes the wrapped keys so that their bytes cannot be read
	// back from the store, its history or its files, and leaves a tombstone
	// so that each key id stays known as destroyed. It is idempotent, and
	// destroying a key id that was never created also leaves a tombstone
	// (so a deleted case can never get a new key). It takes many key ids
	// so that a store can destroy the keys of one case, or of many, in
	// fewer writes; it attempts every key even if one fails and returns
	// the failures joined.
	Destroy(ctx context.Context, keyIDs ...string) error
}
