// Package subject finds a data subject's cases without holding their
// personal data in plain text: it turns a case's sealed contact details
// and identity number, and a person's search key, into the same
// blind-index tokens. Routing (search by contact) and retention (register
// extracts and erasure) both index cases by these tokens, so they must
// compute them in exactly one way.
package subject

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/blindindex"
	"github.com/kontakt-se/kontakt/pkg/identity"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// ErrInvalidKey says a search key is not a valid e-mail address, phone
// number or identity number; the message names which.
var ErrInvalidKey = errors.New("invalid subject key")

// ErrRedacted says the contact details' key is destroyed: the case's
// tokens can no longer be computed, and the caller keeps none.
var ErrRedacted = errors.New("contact details redacted")

// Opener opens sealed personal data; *seal.Sealer is one.
type Opener interface {
	Open(ctx context.Context, caseID string, sealed *casev1.SealedPersonalData) ([]byte, error)
}

// Key is one way to name a person: exactly one field is set.
type Key struct {
	Email          string
	Phone          string
	IdentityNumber string
}

// Token normalises key and returns its blind-index token. now decides
// the century of 10-digit identity numbers.
func Token(blind *blindindex.Index, key Key, now time.Time) (string, error) {
	switch {
	case key.Email != "":
		n, err := identity.NormaliseEmail(key.Email)
		if err != nil {
			return "", fmt.Errorf("%w: e-mail", ErrInvalidKey)
		}
		return blind.Token(blindindex.Email, n), nil
	case key.Phone != "":
		n, err := identity.NormalisePhone(key.Phone)
		if err != nil {
			return "", fmt.Errorf("%w: phone", ErrInvalidKey)
		}
		return blind.Token(blindindex.Phone, n), nil
	case key.IdentityNumber != "":
		n, err := identity.ParsePersonalNumber(key.IdentityNumber, now)
		if err != nil {
			// The parser's reason ("check digit does not match", "birth
			// number zero is never issued") is a fixed phrase without the
			// input, so it may reach the client and tell them what to fix.
			return "", fmt.Errorf("%w: identity number: %w", ErrInvalidKey, err)
		}
		return blind.Token(blindindex.IdentityNumber, n.Normalised()), nil
	}
	return "", fmt.Errorf("%w: give an e-mail, phone or identity number", ErrInvalidKey)
}

// CaseTokens opens a case's sealed contact details and identity number
// and returns the tokens of the e-mail, phone and identity number they
// hold. A destroyed or missing contact key gives ErrRedacted; a destroyed
// identity key only leaves its token out.
func CaseTokens(ctx context.Context, o Opener, blind *blindindex.Index, caseID string, contact, id *casev1.SealedPersonalData) ([]string, error) {
	var out []string
	if contact != nil {
		b, err := o.Open(ctx, caseID, contact)
		if gone(err) {
			return nil, fmt.Errorf("%w: %w", ErrRedacted, err)
		}
		if err != nil {
			return nil, err
		}
		var c casev1.ContactDetails
		if err := proto.Unmarshal(b, &c); err != nil {
			return nil, err
		}
		if e, err := identity.NormaliseEmail(c.GetEmail()); err == nil {
			out = append(out, blind.Token(blindindex.Email, e))
		}
		// A stored number is in E.164 already: intake and rectification
		// store identity.NormalisePhone's answer, which is its own answer
		// when given again (TestNormalisePhoneValid checks it). Parsing it
		// again with libphonenumber cost a third of a routing rebuild's
		// token time, for the same string.
		if p := c.GetPhone(); p != "" {
			out = append(out, blind.Token(blindindex.Phone, p))
		}
	}
	if id != nil {
		b, err := o.Open(ctx, caseID, id)
		if gone(err) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var n casev1.IdentityNumber
		if err := proto.Unmarshal(b, &n); err != nil {
			return nil, err
		}
		if n.GetNumber() != "" {
			out = append(out, blind.Token(blindindex.IdentityNumber, n.GetNumber()))
		}
	}
	return out, nil
}

// gone reports whether an Open failed because the data was redacted.
func gone(err error) bool {
	return errors.Is(err, seal.ErrKeyDestroyed) || errors.Is(err, seal.ErrKeyNotFound)
}
