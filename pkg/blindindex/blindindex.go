// Package blindindex lets kontakt find a citizen's cases by e-mail address,
// phone number or identity number without storing those values anywhere a
// search could reach them.
//
// A blind index token is an HMAC-SHA256 of the normalised value under a
// secret key. The same value always gives the same token, so a read model
// can keep "token -> case ids" and answer "earlier cases of this caller" or
// a register extract; but a token on its own does not reveal the value, and
// without the key nobody can test guesses against it. Phone numbers and
// identity numbers have small value spaces, so the key is what protects
// them: it must be a secret with at least 256 bits of entropy, never the
// master key itself (derive it with DeriveKey), and it must never be logged.
//
// Tokens are personal data by association (they link cases of one person),
// so read models remove them at redaction, together with the case's other
// personal data.
//
// Normalisation is the caller's job and happens before Token is called: the
// same person's e-mail address written in two ways must be normalised to
// one string first, or the two spellings give unrelated tokens. This
// package deliberately does not normalise, so that exactly one package in
// kontakt decides what "the same value" means.
package blindindex

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// MinKeySize is the smallest key New accepts, in bytes. The index protects
// values with small value spaces (phone and identity numbers) only through
// the key's secrecy, so the key must be a full-strength 256-bit secret.
const MinKeySize = 32

// ErrKeyTooShort is returned by New for keys shorter than MinKeySize.
var ErrKeyTooShort = errors.New("blindindex: key too short")

// Kind says what sort of value a token stands for. It is part of the HMAC
// input, so an e-mail address and a phone number that happen to be the same
// string never give the same token, and a token of one kind can never be
// used to look up another kind.
type Kind string

// The kinds of value kontakt searches by.
const (
	// Email is a normalised e-mail address.
	Email Kind = "email"
	// Phone is a normalised phone number (E.164).
	Phone Kind = "phone"
	// IdentityNumber is a normalised personnummer or samordningsnummer
	// (twelve digits).
	IdentityNumber Kind = "identity-number"
)

// Valid reports whether k is one of the kinds this package defines. Only
// those are accepted, because a kind is part of every stored token and an
// accidental new spelling would silently split the index.
func (k Kind) Valid() bool {
	switch k {
	case Email, Phone, IdentityNumber:
		return true
	}
	return false
}

// Index computes blind index tokens with one secret key. It is safe for
// concurrent use.
type Index struct {
	key []byte
}

// New returns an Index that uses a copy of key. The key must be at least
// MinKeySize bytes of secret, uniformly random material; use DeriveKey to
// get one from the master key.
func New(key []byte) (*Index, error) {
	if len(key) < MinKeySize {
		return nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrKeyTooShort, len(key), MinKeySize)
	}
	return &Index{key: append([]byte(nil), key...)}, nil
}

// Token returns the token of a value of the given kind: the lowercase hex
// encoding of HMAC-SHA256(key, kind || 0x00 || normalisedValue). Hex is
// used because the token is stored as a key in read models and KV buckets,
// where it must be a plain, case-stable string.
//
// The caller must normalise the value first and must not index empty
// values (every empty value of a kind has the same token, which would link
// unrelated cases). kind must be one of the constants of this package;
// anything else is a programming error and panics, because returning a
// token for it would silently split or merge the index.
func (x *Index) Token(kind Kind, normalisedValue string) string {
	if !kind.Valid() {
		panic(fmt.Sprintf("blindindex: unknown kind %q", string(kind)))
	}
	mac := hmac.New(sha256.New, x.key)
	// hash.Hash.Write never returns an error.
	_, _ = io.WriteString(mac, string(kind))
	_, _ = mac.Write([]byte{0})
	_, _ = io.WriteString(mac, normalisedValue)
	return hex.EncodeToString(mac.Sum(nil))
}

// String describes the index without its key, so that printing an Index by
// mistake cannot leak key material.
func (x *Index) String() string { return "blindindex.Index{key: redacted}" }

// Format implements fmt.Formatter so that every verb (%v, %+v, %#v, %x,
// ...) prints String instead of the key bytes.
func (x *Index) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, x.String()) }

// LogValue implements slog.LogValuer so that logging an Index by mistake
// cannot leak key material.
func (x *Index) LogValue() slog.Value { return slog.StringValue(x.String()) }

// KeyPurpose is the DeriveKey purpose of kontakt's blind-index key. Every
// service must use the same one, or their tokens will not match.
const KeyPurpose = "kontakt/blindindex/v1"

// DerivedKeySize is the length of the keys DeriveKey returns, in bytes.
const DerivedKeySize = 32

// DeriveKey derives a 32-byte key for one purpose from a master secret with
// HKDF-SHA256 (RFC 5869; no salt, purpose as the info string). Deriving
// keeps each use of the master key separate: the blind-index key, the
// data-key wrapping key and any later key are independent, and revealing
// one (for example a blind-index key handed to a read model) reveals
// neither the master key nor the others.
//
// purpose names the use and its version, for example
// "kontakt/blindindex/v1"; changing it changes the key. master must be at
// least 32 bytes of secret and purpose must not be empty: both are fixed by
// the program (the master key comes from seal.LoadMasterKey, which only
// returns 32-byte keys), so a violation is a programming error and panics
// rather than yielding a weak key.
func DeriveKey(master []byte, purpose string) []byte {
	if len(master) < MinKeySize {
		panic(fmt.Sprintf("blindindex: DeriveKey: master secret is %d bytes, need at least %d", len(master), MinKeySize))
	}
	if strings.TrimSpace(purpose) == "" {
		panic("blindindex: DeriveKey: empty purpose")
	}
	key, err := hkdf.Key(sha256.New, master, nil, purpose, DerivedKeySize)
	if err != nil {
		// Only an impossible output length (or a FIPS-only policy
		// rejecting the inputs checked above) makes hkdf.Key fail.
		panic(fmt.Sprintf("blindindex: DeriveKey: %v", err))
	}
	return key
}
