package seal

import (
	"context"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
)

// Blobs: large values (attachment content) sealed in segments.
//
// A file of several megabytes is sealed as a sequence of segments of
// BlobSegmentSize bytes, each with AES-256-GCM under the same data key as
// the class's small values (one key-store read per blob, not one per
// segment) and a fresh random nonce. The associated data of a segment
// binds the key id, the case, the blob's name (its place in the case), the
// segment's index and whether it is the last one, so segments cannot be
// reordered, dropped from the end, moved to another blob or another case
// without Open failing with ErrTampered. The key id travels in the blob's
// header, so OpenBlob needs no other record of which generation sealed
// it, and destroying that key (a redaction of the class, the deletion of
// the case) makes every copy of the blob unreadable, like every other
// sealed value.
//
// Layout: version(1) || len(key id)(1) || key id || segments, each
// nonce(12) || ciphertext || tag(16).

// BlobSegmentSize is the plaintext size of a blob's segments (the last
// one may be shorter).
const BlobSegmentSize = 64 << 10

const (
	blobVersion  = 1
	blobADPrefix = "kontakt/seal/blob/v1\x00"
)

// SealBlob seals a large value for the case's class under generation gen,
// creating the data key on first use, as Seal does. name says which blob
// of the case this is (the blob store's object name); OpenBlob must be
// given the same name.
func (s *Sealer) SealBlob(ctx context.Context, caseID string, class Class, gen uint32, name string, plaintext []byte) ([]byte, error) {
	keyID, err := KeyID(caseID, class, gen)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := s.dataKey(ctx, keyID, true)
	if err != nil {
		return nil, err
	}
	return sealBlob(aead, keyID, caseID, name, plaintext), nil
}

// OpenBlob opens a blob sealed by SealBlob for caseID under name, with
// Open's errors: ErrKeyDestroyed once the class was redacted or the case
// deleted, ErrTampered when any byte, segment or the name does not match.
func (s *Sealer) OpenBlob(ctx context.Context, caseID, name string, blob []byte) ([]byte, error) {
	if err := ValidateCaseID(caseID); err != nil {
		return nil, fmt.Errorf("seal: open blob: %w", err)
	}
	if len(blob) < 2 || blob[0] != blobVersion || len(blob) < 2+int(blob[1]) {
		return nil, fmt.Errorf("seal: open blob: malformed header: %w", ErrTampered)
	}
	keyID := string(blob[2 : 2+int(blob[1])])
	keyCase, _, _, err := ParseKeyID(keyID)
	if err != nil {
		return nil, fmt.Errorf("seal: open blob: %w: %w", ErrTampered, err)
	}
	if keyCase != caseID {
		return nil, fmt.Errorf("seal: open blob: key id %s belongs to another case than %s: %w", keyID, caseID, ErrTampered)
	}
	aead, err := s.dataKey(ctx, keyID, false)
	if err != nil {
		return nil, err
	}
	return openBlob(aead, keyID, caseID, name, blob[2+len(keyID):])
}

func sealBlob(aead cipher.AEAD, keyID, caseID, name string, plaintext []byte) []byte {
	segments := max(1, (len(plaintext)+BlobSegmentSize-1)/BlobSegmentSize)
	out := make([]byte, 0, 2+len(keyID)+len(plaintext)+segments*Overhead)
	out = append(out, blobVersion, byte(len(keyID)))
	out = append(out, keyID...)
	for i := range segments {
		seg := plaintext[i*BlobSegmentSize : min(len(plaintext), (i+1)*BlobSegmentSize)]
		out = aead.Seal(out, nil, seg, blobAD(keyID, caseID, name, uint64(i), i == segments-1))
	}
	return out
}

func openBlob(aead cipher.AEAD, keyID, caseID, name string, body []byte) ([]byte, error) {
	const full = BlobSegmentSize + Overhead
	out := make([]byte, 0, len(body))
	for i := uint64(0); ; i++ {
		n := min(len(body), full)
		last := len(body) <= full
		if n < Overhead {
			return nil, fmt.Errorf("seal: open blob %s: segment %d is truncated: %w", keyID, i, ErrTampered)
		}
		var err error
		out, err = aead.Open(out, nil, body[:n], blobAD(keyID, caseID, name, i, last))
		if err != nil {
			clear(out)
			return nil, fmt.Errorf("seal: open blob %s: segment %d: %w", keyID, i, ErrTampered)
		}
		body = body[n:]
		if last {
			return out, nil
		}
	}
}

func blobAD(keyID, caseID, name string, index uint64, last bool) []byte {
	ad := make([]byte, 0, len(blobADPrefix)+len(keyID)+len(caseID)+len(name)+12)
	ad = append(ad, blobADPrefix...)
	ad = append(ad, keyID...)
	ad = append(ad, 0)
	ad = append(ad, caseID...)
	ad = append(ad, 0)
	ad = append(ad, name...)
	ad = append(ad, 0)
	ad = binary.BigEndian.AppendUint64(ad, index)
	if last {
		return append(ad, 1)
	}
	return append(ad, 0)
}
