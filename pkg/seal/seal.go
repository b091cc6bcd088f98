// Package seal encrypts a case's personal data with data keys that belong
// to that case, so that the data can be destroyed in an append-only event
// log by destroying the keys (crypto-shredding).
//
// Every data class of every case (contact details, identity number, free
// text, attachment names, answer) has its own random 256-bit data key,
// created on first use, so the retention plan can redact one class on its
// own and delete everything at the end. Data written into a class after
// its redaction gets a key of the next generation (KeyID, Generations),
// because a destroyed key is never made again. Values are sealed with AES-256-GCM
// under a fresh random nonce; the associated data binds the key id and the
// case id, so a sealed value copied into another case or class does not
// open. The data keys live in a KeyStore (by default NATSKeyStore, one
// record per case in a JetStream stream), wrapped with a key derived from
// the master key.
//
// Destroy removes the wrapped keys from the store, leaving tombstones: from
// then on every copy of the sealed data, in the event log, its replicas and
// its backups, is unreadable, Open fails with ErrKeyDestroyed in every
// process, and Seal refuses to make a new key under those key ids.
//
// Sealer keeps no cache of unwrapped keys: every Seal and Open reads the
// wrapped key from the store. That costs one round trip to the key store
// per operation, and buys the guarantee that no process keeps serving a
// destroyed key after Destroy returns.
//
// A Draft seals the data of a case that does not exist yet with fresh keys
// held in memory; CommitDrafts stores the keys of many drafts in one
// atomic write, so that a group of registrations costs one key-store write.
//
// Nothing in this package logs, and no error carries plaintext or key
// material; errors name key ids, which name no person.
package seal

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// DataKeySize is the size of a data key in bytes (AES-256).
const DataKeySize = 32

// Overhead is how many bytes sealing adds to a value: the 12-byte nonce in
// front and the 16-byte GCM tag behind.
const Overhead = nonceSize + tagSize

const (
	nonceSize = 12
	tagSize   = 16
)

// sealAD and wrapAD start the associated data of sealed values and of
// wrapped keys. Different prefixes keep the two uses apart, and the
// version allows a different format later.
const (
	sealADPrefix = "kontakt/seal/v1\x00"
	wrapADPrefix = "kontakt/seal/wrap/v1\x00"
)

// wrappedVersion is the first byte of a wrapped key. The layout is
// version(1) || master key id(8) || nonce(12) || AES-GCM(data key)(32+16).
const wrappedVersion = 1

const wrappedHeaderSize = 1 + masterKeyIDSize

// WrappedKeySize is the size of a wrapped data key as stored in the
// KeyStore.
const WrappedKeySize = wrappedHeaderSize + nonceSize + DataKeySize + tagSize

// Sealer seals and opens personal data and destroys data keys. It is safe
// for concurrent use, and several Sealers (in several processes) may share
// one key store.
type Sealer struct {
	keys   KeyStore
	master MasterKey
}

// NewSealer returns a Sealer that keeps data keys in keys, wrapped with
// master.
func NewSealer(keys KeyStore, master MasterKey) (*Sealer, error) {
	if keys == nil {
		return nil, errors.New("seal: NewSealer: nil KeyStore")
	}
	if master.IsZero() {
		return nil, fmt.Errorf("%w: NewSealer: no master key", ErrInvalidMasterKey)
	}
	return &Sealer{keys: keys, master: master}, nil
}

// Seal encrypts plaintext with the data key of generation gen of the given
// class of the case, creating that key on first use. Concurrent first
// Seals of one key id, in one process or in several, end up with the same
// key. gen is the class's current generation as the case's events say
// (Generations.Of; 0 for a new case). Sealing into a destroyed key fails
// with ErrKeyDestroyed and never resurrects it: the caller's view of the
// case is older than a redaction (fold the case again and seal under the
// next generation) or the case was deleted.
func (s *Sealer) Seal(ctx context.Context, caseID string, class Class, gen uint32, plaintext []byte) (*casev1.SealedPersonalData, error) {
	keyID, err := KeyID(caseID, class, gen)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := s.dataKey(ctx, keyID, true)
	if err != nil {
		return nil, err
	}
	ct := aead.Seal(make([]byte, 0, len(plaintext)+Overhead), nil, plaintext, sealAD(keyID, caseID))
	return &casev1.SealedPersonalData{KeyId: keyID, Ciphertext: ct}, nil
}

// Open decrypts a value sealed for caseID. It fails with ErrKeyDestroyed
// when the class was redacted or the case deleted, with ErrKeyNotFound when
// the key was never created, with ErrWrongMasterKey when this process has
// another master key than the one that wrapped the data key, and with
// ErrTampered when the value was altered or belongs to another case or
// class.
func (s *Sealer) Open(ctx context.Context, caseID string, sealed *casev1.SealedPersonalData) ([]byte, error) {
	if err := ValidateCaseID(caseID); err != nil {
		return nil, fmt.Errorf("seal: open: %w", err)
	}
	keyID := sealed.GetKeyId()
	keyCase, _, _, err := ParseKeyID(keyID)
	if err != nil {
		return nil, fmt.Errorf("seal: open: %w: %w", ErrTampered, err)
	}
	if keyCase != caseID {
		return nil, fmt.Errorf("seal: open: key id %s belongs to another case than %s: %w", keyID, caseID, ErrTampered)
	}
	ct := sealed.GetCiphertext()
	if len(ct) < Overhead {
		return nil, fmt.Errorf("seal: open %s: ciphertext of %d bytes is too short: %w", keyID, len(ct), ErrTampered)
	}
	aead, err := s.dataKey(ctx, keyID, false)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, nil, ct, sealAD(keyID, caseID))
	if err != nil {
		return nil, fmt.Errorf("seal: open %s: %w", keyID, ErrTampered)
	}
	return pt, nil
}

// SealMessage marshals m and seals it like Seal. Personal data travels in
// events as sealed protobuf messages (ContactDetails, IdentityNumber, ...).
func (s *Sealer) SealMessage(ctx context.Context, caseID string, class Class, gen uint32, m proto.Message) (*casev1.SealedPersonalData, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("seal: marshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	sealed, err := s.Seal(ctx, caseID, class, gen, b)
	clear(b)
	return sealed, err
}

// OpenMessage opens a value sealed by SealMessage into m, with Open's
// errors.
func (s *Sealer) OpenMessage(ctx context.Context, caseID string, sealed *casev1.SealedPersonalData, m proto.Message) error {
	b, err := s.Open(ctx, caseID, sealed)
	if err != nil {
		return err
	}
	defer clear(b)
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("seal: unmarshal %s from %s: %w", m.ProtoReflect().Descriptor().FullName(), sealed.GetKeyId(), err)
	}
	return nil
}

// Destroy destroys the data keys of the given classes of the case, or of
// all classes when none are given: for each class, the keys of every
// generation from 0 up to and including gens.Of(class), the class's
// current generation as the case's events say. Afterwards Open of
// anything sealed with them fails with ErrKeyDestroyed in every process,
// and Seal into them fails too. Destroying a key that was never created
// still records it as destroyed, so a deleted case can never get new keys.
// Destroy is idempotent (destroying destroyed keys writes nothing); it
// attempts every key even if one fails and returns the failures joined.
//
// Older generations were destroyed by the redactions that ended them;
// Destroy covers them again so that a key made by an older version of
// kontakt, or by a writer that crashed between sealing and appending, is
// never left behind.
//
// A Seal that read its key just before Destroy may finish just after it;
// what it sealed is as unreadable as everything else. Blind-index tokens
// are not keys of this package: the read models that hold them drop them
// at redaction.
func (s *Sealer) Destroy(ctx context.Context, caseID string, gens Generations, classes ...Class) error {
	return s.DestroyBatch(ctx, []Destruction{{CaseID: caseID, Gens: gens, Classes: classes}})
}

// Destruction names the keys of one case that DestroyBatch destroys, as
// Destroy's arguments do.
type Destruction struct {
	CaseID string
	// Gens are the case's generations: every generation of a class up to
	// Gens.Of(class) is destroyed.
	Gens Generations
	// Classes are the classes whose keys go; none means every class.
	Classes []Class
}

// DestroyBatch destroys the keys of several cases as Destroy destroys
// each case's, in one go: the store gets every key at once, and the NATS
// key store rewrites the records of many cases in atomic batches, one disk
// sync for many cases, instead of one write each. The retention projector
// destroys the keys of a batch of redactions this way. It attempts every
// key even if some fail and returns the failures joined.
func (s *Sealer) DestroyBatch(ctx context.Context, ds []Destruction) error {
	var keyIDs []string
	seen := map[string]bool{}
	for _, d := range ds {
		if err := ValidateCaseID(d.CaseID); err != nil {
			return fmt.Errorf("seal: destroy: %w", err)
		}
		classes := d.Classes
		if len(classes) == 0 {
			classes = Classes()
		}
		for _, c := range classes {
			for g := uint32(0); g <= d.Gens.Of(c); g++ {
				keyID, err := KeyID(d.CaseID, c, g)
				if err != nil {
					return fmt.Errorf("seal: destroy: %w", err)
				}
				if !seen[keyID] {
					seen[keyID] = true
					keyIDs = append(keyIDs, keyID)
				}
			}
		}
	}
	// One call for all the keys, so that the store can destroy them in
	// few writes (the NATS store rewrites each case's record once, and
	// the records of many cases in atomic batches).
	if err := s.keys.Destroy(ctx, keyIDs...); err != nil {
		return fmt.Errorf("seal: destroy: %w", err)
	}
	return nil
}

// dataKey returns the AEAD of a data key, creating the key first if create
// is set and the key id was never used.
func (s *Sealer) dataKey(ctx context.Context, keyID string, create bool) (cipher.AEAD, error) {
	wrapped, err := s.keys.Get(ctx, keyID)
	if errors.Is(err, ErrKeyNotFound) && create {
		return s.createDataKey(ctx, keyID)
	}
	if err != nil {
		return nil, fmt.Errorf("seal: data key %s: %w", keyID, err)
	}
	return s.unwrap(keyID, wrapped)
}

// createDataKey makes, wraps and stores a new data key. If another Sealer
// created the key first, its key is used instead, so that everything sealed
// for one key id can be opened with one key.
func (s *Sealer) createDataKey(ctx context.Context, keyID string) (cipher.AEAD, error) {
	dk := make([]byte, DataKeySize)
	defer clear(dk)
	_, _ = rand.Read(dk) // crypto/rand.Read never fails (it crashes the program instead).
	wrapped := s.wrap(keyID, dk)
	err := s.keys.Create(ctx, keyID, wrapped)
	switch {
	case err == nil:
		return newAEAD(dk)
	case errors.Is(err, ErrKeyExists):
		// Lost the race: use the winner's key.
		existing, err := s.keys.Get(ctx, keyID)
		if err != nil {
			return nil, fmt.Errorf("seal: data key %s: %w", keyID, err)
		}
		return s.unwrap(keyID, existing)
	default:
		return nil, fmt.Errorf("seal: create data key %s: %w", keyID, err)
	}
}

// wrap encrypts a data key with the master key's wrapping key. The
// associated data binds the header (version and master key id) and the key
// id, so a wrapped key copied to another key id does not unwrap.
func (s *Sealer) wrap(keyID string, dk []byte) []byte {
	out := make([]byte, wrappedHeaderSize, WrappedKeySize)
	out[0] = wrappedVersion
	copy(out[1:wrappedHeaderSize], s.master.m.idRaw[:])
	return s.master.m.wrap.Seal(out, nil, dk, wrapAD(out[:wrappedHeaderSize], keyID))
}

// unwrap checks and decrypts a wrapped data key.
func (s *Sealer) unwrap(keyID string, wrapped []byte) (cipher.AEAD, error) {
	if len(wrapped) != WrappedKeySize || wrapped[0] != wrappedVersion {
		return nil, fmt.Errorf("seal: wrapped data key %s is malformed (%d bytes): %w", keyID, len(wrapped), ErrTampered)
	}
	if got := wrapped[1:wrappedHeaderSize]; !bytes.Equal(got, s.master.m.idRaw[:]) {
		return nil, fmt.Errorf("seal: data key %s was wrapped with master key %x, this process has %s: %w",
			keyID, got, s.master.ID(), ErrWrongMasterKey)
	}
	dk, err := s.master.m.wrap.Open(nil, nil, wrapped[wrappedHeaderSize:], wrapAD(wrapped[:wrappedHeaderSize], keyID))
	if err != nil {
		return nil, fmt.Errorf("seal: unwrap data key %s: %w", keyID, ErrTampered)
	}
	defer clear(dk)
	return newAEAD(dk)
}

// newAEAD returns AES-256-GCM with a random 96-bit nonce per Seal, placed
// in front of the ciphertext: the nonce||ciphertext||tag layout of
// SealedPersonalData.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: data key cipher: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("seal: data key cipher: %w", err)
	}
	return aead, nil
}

func sealAD(keyID, caseID string) []byte {
	ad := make([]byte, 0, len(sealADPrefix)+len(keyID)+1+len(caseID))
	ad = append(ad, sealADPrefix...)
	ad = append(ad, keyID...)
	ad = append(ad, 0)
	return append(ad, caseID...)
}

func wrapAD(header []byte, keyID string) []byte {
	ad := make([]byte, 0, len(wrapADPrefix)+len(header)+len(keyID))
	ad = append(ad, wrapADPrefix...)
	ad = append(ad, header...)
	return append(ad, keyID...)
}
