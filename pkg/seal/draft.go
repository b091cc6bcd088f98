package seal

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// BatchKeyStore is implemented by key stores that can create many keys in
// one atomic write. CommitDrafts uses it so that a group of new cases
// costs one write to the key store instead of one per key.
type BatchKeyStore interface {
	// CreateBatch stores every key or none, for at most MaxBatchCases
	// cases. It fails with ErrKeyExists when any key id already has a key
	// or a tombstone (the NATS store: when any of the cases has keys or
	// tombstones at all), and with errors.ErrUnsupported when the store,
	// as configured, cannot batch.
	CreateBatch(ctx context.Context, keys []WrappedKey) error
}

// WrappedKey is a wrapped data key and its key id, for CreateBatch.
type WrappedKey struct {
	KeyID   string
	Wrapped []byte
}

// Draft seals the personal data of a case that does not exist yet, with
// fresh data keys held in memory until CommitDrafts stores them. It is how
// intake registers many cases with one key-store write: each request seals
// into its own draft, and one commit stores all the drafts' keys.
//
// Until the commit succeeds nothing sealed with a draft may be stored: the
// keys exist only in this process. If the commit fails (ErrKeyExists
// when a key id was used before, as for a form submission taken over after
// a crash), the draft's sealed values must be thrown away and the data
// sealed again with Sealer.Seal (generation 0), which uses the stored keys. A Draft is not
// safe for concurrent use.
type Draft struct {
	sealer *Sealer
	caseID string
	keys   []draftKey
}

type draftKey struct {
	class   Class
	keyID   string
	aead    cipher.AEAD
	wrapped []byte
}

// NewDraft starts a draft for a new case.
func (s *Sealer) NewDraft(caseID string) (*Draft, error) {
	if err := ValidateCaseID(caseID); err != nil {
		return nil, fmt.Errorf("seal: draft: %w", err)
	}
	return &Draft{sealer: s, caseID: caseID}, nil
}

// CaseID returns the case the draft seals for.
func (d *Draft) CaseID() string { return d.caseID }

// Seal encrypts plaintext like Sealer.Seal, with the draft's key of the
// class, made on first use. A draft's case does not exist yet, so nothing
// of it was ever redacted: its keys are of generation 0.
func (d *Draft) Seal(class Class, plaintext []byte) (*casev1.SealedPersonalData, error) {
	k, err := d.key(class)
	if err != nil {
		return nil, err
	}
	ct := k.aead.Seal(make([]byte, 0, len(plaintext)+Overhead), nil, plaintext, sealAD(k.keyID, d.caseID))
	return &casev1.SealedPersonalData{KeyId: k.keyID, Ciphertext: ct}, nil
}

func (d *Draft) key(class Class) (draftKey, error) {
	for _, k := range d.keys {
		if k.class == class {
			return k, nil
		}
	}
	keyID, err := KeyID(d.caseID, class, 0)
	if err != nil {
		return draftKey{}, fmt.Errorf("seal: draft: %w", err)
	}
	dk := make([]byte, DataKeySize)
	defer clear(dk)
	_, _ = rand.Read(dk) // crypto/rand.Read never fails (it crashes the program instead).
	aead, err := newAEAD(dk)
	if err != nil {
		return draftKey{}, err
	}
	k := draftKey{class: class, keyID: keyID, aead: aead, wrapped: d.sealer.wrap(keyID, dk)}
	d.keys = append(d.keys, k)
	return k, nil
}

// CommitDrafts stores the keys of the drafts, which must all come from
// this Sealer. With a BatchKeyStore (the NATS key store) it is one atomic
// write per MaxBatchCases drafts; otherwise the keys are created one by
// one. It fails with ErrKeyExists when a draft's case has keys already;
// then none of the drafts may be used (see Draft), although with a store
// that cannot batch, or beyond MaxBatchCases, some of their keys may have
// been stored: that is harmless, because sealing again with Sealer.Seal
// uses them.
func (s *Sealer) CommitDrafts(ctx context.Context, drafts []*Draft) error {
	for _, d := range drafts {
		if d.sealer != s {
			return errors.New("seal: commit drafts: a draft of another Sealer")
		}
	}
	b, batched := s.keys.(BatchKeyStore)
	// A draft's keys never go to two writes: the NATS store keeps a case's
	// keys in one record, which only the first write could create.
	for chunk := range slices.Chunk(drafts, MaxBatchCases) {
		keys := draftKeys(chunk)
		if len(keys) == 0 {
			continue
		}
		if !batched {
			if err := s.createEach(ctx, keys); err != nil {
				return err
			}
			continue
		}
		err := b.CreateBatch(ctx, keys)
		if errors.Is(err, errors.ErrUnsupported) {
			batched = false
			if err := s.createEach(ctx, keys); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("seal: commit drafts: %w", err)
		}
	}
	return nil
}

// draftKeys lists the wrapped keys of drafts.
func draftKeys(drafts []*Draft) []WrappedKey {
	var keys []WrappedKey
	for _, d := range drafts {
		for _, k := range d.keys {
			keys = append(keys, WrappedKey{KeyID: k.keyID, Wrapped: k.wrapped})
		}
	}
	return keys
}

// MaxBatchCases is the most drafts CommitDrafts stores in one write: the
// NATS key store writes one record per case, and this is the largest
// atomic batch a default nats-server accepts.
const MaxBatchCases = 1000

func (s *Sealer) createEach(ctx context.Context, keys []WrappedKey) error {
	for _, k := range keys {
		if err := s.keys.Create(ctx, k.KeyID, k.Wrapped); err != nil {
			return fmt.Errorf("seal: commit drafts: %w", err)
		}
	}
	return nil
}
