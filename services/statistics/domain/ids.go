package domain

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
)

// MinIDKeySize is the shortest key IDs accepts.
const MinIDKeySize = 16

// ErrIDKey means the statistics id key is missing or too short.
var ErrIDKey = errors.New("statistics: the statistics id key must have at least 16 bytes")

// IDs derives statistics ids. Every instance of the service must derive
// the same id for the same case, or each would publish its own record of
// it; none may keep a link from the id to the case once the case is gone.
//
// The id is HMAC-SHA256 under a secret key (derived from the master key,
// the same in every instance) of CaseRegistered.statistics_seed, 128
// random bits that intake draws for each case and that live only in the
// case's own events: 128 bits, base32 like crypto/rand.Text (26
// characters). Deleting the case deletes the seed, and with it the last
// link; the seed alone (an archive package holds the case's events) does
// not name the record without the key.
//
// A CaseRegistered written before the seed existed has none. Its id is
// then the keyed hash of the event's log position: still the same in
// every instance, and no more linkable than the record already is, since
// its first version is that very position (see the README's known
// limits). A record that a stream already holds keeps the id it has there
// (the projector looks that up first), whatever these rules say.
type IDs struct {
	key []byte
}

// NewIDs returns the derivation under key (copied).
func NewIDs(key []byte) (IDs, error) {
	if len(key) < MinIDKeySize {
		return IDs{}, ErrIDKey
	}
	return IDs{key: append([]byte(nil), key...)}, nil
}

// For returns the statistics id of the case registered at position with
// seed ("" when the event has none).
func (d IDs) For(seed string, position int64) string {
	mac := hmac.New(sha256.New, d.key)
	if seed != "" {
		mac.Write([]byte("kontakt statistics id from seed\x00"))
		mac.Write([]byte(seed))
	} else {
		mac.Write([]byte("kontakt statistics id from position\x00"))
		mac.Write(binary.BigEndian.AppendUint64(nil, uint64(position)))
	}
	return idEncoding.EncodeToString(mac.Sum(nil)[:16])
}

// idEncoding is crypto/rand.Text's alphabet, without padding.
var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)
