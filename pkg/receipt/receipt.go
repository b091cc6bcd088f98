// Package receipt is the auditor's specification of the retention
// ledger's receipts: what a receipt says, the bytes its hash is computed
// over, and the check of a chain of them (Verifier). It does no I/O, so the
// ledger's JetStream store (services/retention/adapters/ledger), the
// retention service, `kontakt retention verify` and `kontakt restore` share
// one definition, and an auditor can read it, and recompute a hash by
// hand, without reading any storage code. ARCHITECTURE.md (Retention,
// "The ledger") gives a worked example with the sha256sum command that
// reproduces it; TestKnownAnswer holds the same vector.
//
// A receipt carries no personal data: case ids and numbers, the plan and
// rule applied, coded reasons, data-class names and hashes only. Callers
// must keep it that way, because the ledger can never be redacted.
//
// # Canonical encoding
//
// Receipt.Hash is the lowercase hex SHA-256 of the following bytes, which
// any auditor can reproduce without Go:
//
//	kontakt-retention-ledger/1\n
//	prev <len>:<Prev>\n
//	kind <len>:<Kind>\n
//	key <len>:<Key>\n
//	case_id <len>:<CaseID>\n
//	case_number <len>:<CaseNumber>\n
//	case_type <len>:<CaseType>\n
//	channel <len>:<Channel>\n
//	plan_name <len>:<PlanName>\n
//	plan_version <len>:<PlanVersion>\n
//	rule <len>:<Rule>\n
//	reason <len>:<Reason>\n
//	classes <n>\n
//	class <len>:<Classes[0]>\n    (one line per class, in order)
//	at <len>:<At in UTC, RFC 3339 with nanoseconds, trailing zeros trimmed>\n
//	archive_sha256 <len>:<ArchiveSHA256>\n
//
// where <len> is the value's length in bytes in decimal and <n> the number
// of classes. The length prefixes make the encoding unambiguous whatever the
// values contain. Every field except Seq and Hash is covered. Seq is left
// out because it is where the store put the receipt, not what the receipt
// says; the order is protected by Prev instead, which names the previous
// receipt's Hash (GenesisPrev, 64 zeros, for the first receipt).
package receipt

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors callers can test for with errors.Is.
var (
	// ErrInvalid means a receipt or key was refused before anything was
	// written; retrying it unchanged cannot succeed.
	ErrInvalid = errors.New("ledger: invalid")
	// ErrChainBroken means the hash chain does not verify: a receipt was
	// altered, removed, inserted or reordered. It calls for an
	// investigation, not a retry.
	ErrChainBroken = errors.New("ledger: hash chain broken")
)

// Receipt kinds.
const (
	KindRedaction = "redaction"
	KindDeletion  = "deletion"
	KindArchive   = "archive"
)

// GenesisPrev is the Prev of the first receipt in the ledger: 64 zeros, the
// hex form of an all-zero SHA-256.
const GenesisPrev = "0000000000000000000000000000000000000000000000000000000000000000"

// MaxKeyLen bounds a key so that the subject it is stored under stays well
// inside what NATS accepts and the key cannot be used to carry free text.
const MaxKeyLen = 255

// canonicalHeader starts the canonical encoding; its version changes if the
// encoding ever does.
const canonicalHeader = "kontakt-retention-ledger/1\n"

// Receipt is one entry of the ledger. It records that a retention action was
// taken on a case, by which plan and rule, and is chained to the receipt
// before it. It must carry no personal data.
type Receipt struct {
	// Seq is the stream sequence, filled in when a receipt is read or
	// recorded. It is not part of the hash (see the package comment).
	Seq uint64 `json:"-"`
	// Kind is KindRedaction, KindDeletion or KindArchive.
	Kind string `json:"kind"`
	// Key is the caller's idempotency key, such as
	// "<caseid>.redaction.<revision>", "<caseid>.deletion" or
	// "<caseid>.archive": tokens of [A-Za-z0-9_-] separated by '.'. There
	// is at most one receipt per key.
	Key string `json:"key"`
	// CaseID is the case the action was taken on.
	CaseID string `json:"case_id"`
	// CaseNumber is the case's public number, which is no personal data.
	CaseNumber string `json:"case_number"`
	// CaseType is the case type the plan matched on.
	CaseType string `json:"case_type"`
	// Channel is the channel the case came in by.
	Channel string `json:"channel"`
	// PlanName names the retention plan (dokumenthanteringsplan) applied.
	PlanName string `json:"plan_name"`
	// PlanVersion is the version of that plan.
	PlanVersion string `json:"plan_version"`
	// Rule names the rule of the plan that applied.
	Rule string `json:"rule"`
	// Reason is a coded reason, never free text written about a person.
	Reason string `json:"reason"`
	// Classes are the data classes the action covered.
	Classes []string `json:"classes"`
	// At is when the action was taken, by the caller's clock, in UTC.
	At time.Time `json:"at"`
	// ArchiveSHA256 is the hex SHA-256 of the archive package; it is set
	// for archive receipts only.
	ArchiveSHA256 string `json:"archive_sha256,omitempty"`
	// Prev is the Hash of the receipt before this one, or GenesisPrev.
	Prev string `json:"prev"`
	// Hash is the hex SHA-256 of the canonical encoding.
	Hash string `json:"hash"`
}

// Canonical returns the bytes the receipt's hash is computed over (see the
// package comment): every field except Seq and Hash, At in UTC.
func Canonical(r Receipt) []byte {
	var b strings.Builder
	b.WriteString(canonicalHeader)
	field := func(name, value string) {
		b.WriteString(name)
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(len(value)))
		b.WriteByte(':')
		b.WriteString(value)
		b.WriteByte('\n')
	}
	field("prev", r.Prev)
	field("kind", r.Kind)
	field("key", r.Key)
	field("case_id", r.CaseID)
	field("case_number", r.CaseNumber)
	field("case_type", r.CaseType)
	field("channel", r.Channel)
	field("plan_name", r.PlanName)
	field("plan_version", r.PlanVersion)
	field("rule", r.Rule)
	field("reason", r.Reason)
	b.WriteString("classes ")
	b.WriteString(strconv.Itoa(len(r.Classes)))
	b.WriteByte('\n')
	for _, c := range r.Classes {
		field("class", c)
	}
	field("at", r.At.UTC().Format(time.RFC3339Nano))
	field("archive_sha256", r.ArchiveSHA256)
	return []byte(b.String())
}

// ComputeHash returns the hash the receipt should carry: the lowercase hex
// SHA-256 of Canonical(r), which covers Prev and every other field except
// Seq and Hash. Tools that received receipts over the API use it to show
// what a broken receipt should have said.
func ComputeHash(r Receipt) string {
	sum := sha256.Sum256(Canonical(r))
	return hex.EncodeToString(sum[:])
}

// ValidKey reports whether key is a usable idempotency key: one or more
// tokens of [A-Za-z0-9_-] separated by single dots, at most 255 bytes. Such
// a key is safe to use as the tail of a NATS subject.
func ValidKey(key string) bool {
	return len(key) <= MaxKeyLen && ValidTokens(key)
}

// ValidTokens reports whether s is non-empty dot-separated tokens of
// [A-Za-z0-9_-].
func ValidTokens(s string) bool {
	if s == "" {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" {
			return false
		}
		for _, c := range []byte(tok) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Normalise validates a receipt before it is recorded and returns it in the form
// it is stored: At in UTC, chain fields cleared.
func Normalise(r Receipt) (Receipt, error) {
	switch r.Kind {
	case KindRedaction, KindDeletion, KindArchive:
	default:
		return Receipt{}, fmt.Errorf("%w: receipt kind %q is not %q, %q or %q", ErrInvalid, r.Kind, KindRedaction, KindDeletion, KindArchive)
	}
	if !ValidKey(r.Key) {
		return Receipt{}, fmt.Errorf("%w: receipt key %q is not dot-separated tokens of [A-Za-z0-9_-] of at most %d bytes", ErrInvalid, r.Key, MaxKeyLen)
	}
	if r.CaseID == "" {
		return Receipt{}, fmt.Errorf("%w: receipt %s has no case id", ErrInvalid, r.Key)
	}
	if r.At.IsZero() {
		return Receipt{}, fmt.Errorf("%w: receipt %s has no time", ErrInvalid, r.Key)
	}
	if y := r.At.UTC().Year(); y < 1 || y > 9999 {
		return Receipt{}, fmt.Errorf("%w: receipt %s: time %s is outside years 1..9999", ErrInvalid, r.Key, r.At)
	}
	if r.Kind == KindArchive && r.ArchiveSHA256 == "" {
		return Receipt{}, fmt.Errorf("%w: archive receipt %s has no archive SHA-256", ErrInvalid, r.Key)
	}
	if r.ArchiveSHA256 != "" && !isHexSHA256(r.ArchiveSHA256) {
		return Receipt{}, fmt.Errorf("%w: receipt %s: archive SHA-256 %q is not 64 lowercase hex digits", ErrInvalid, r.Key, r.ArchiveSHA256)
	}
	// JSON would replace invalid UTF-8 with U+FFFD, so the stored receipt
	// would no longer match the hash computed here.
	texts := []string{r.CaseID, r.CaseNumber, r.CaseType, r.Channel, r.PlanName, r.PlanVersion, r.Rule, r.Reason}
	texts = append(texts, r.Classes...)
	for _, s := range texts {
		if !utf8.ValidString(s) {
			return Receipt{}, fmt.Errorf("%w: receipt %s has a field that is not valid UTF-8", ErrInvalid, r.Key)
		}
	}
	r.Seq, r.Prev, r.Hash = 0, "", ""
	r.At = r.At.UTC()
	r.Classes = slices.Clone(r.Classes)
	return r, nil
}

// isHexSHA256 reports whether s is a SHA-256 in lowercase hex.
func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Verifier checks a sequence of receipts, in ledger order, against the hash
// chain. It touches no store, so a tool can check receipts it received over
// the API as well as the ledger's own. The zero value is not ready; use
// NewVerifier. After the first failure every later Add returns that
// failure, because nothing after a broken link can be trusted.
type Verifier struct {
	head    string
	count   int
	lastSeq uint64
	err     error
}

// NewVerifier returns a Verifier expecting the first receipt of a ledger.
func NewVerifier() *Verifier {
	return &Verifier{head: GenesisPrev}
}

// Add checks the next receipt: that its Prev is the Hash of the receipt
// before it (GenesisPrev for the first), that its Hash matches its
// contents, and, where both carry a Seq, that it comes after the one
// before. The error wraps ErrChainBroken and names the receipt's Seq and
// Key.
func (v *Verifier) Add(r Receipt) error {
	if v.err != nil {
		return v.err
	}
	var problem string
	switch want := ComputeHash(r); {
	case r.Prev != v.head:
		problem = fmt.Sprintf("prev %s is not the hash %s of the receipt before it (receipt %d of the chain): a receipt was removed, inserted or reordered", r.Prev, v.head, v.count+1)
	case r.Hash != want:
		problem = fmt.Sprintf("hash %s does not match its contents, which hash to %s: the receipt was altered", r.Hash, want)
	case r.Seq != 0 && v.lastSeq != 0 && r.Seq <= v.lastSeq:
		problem = fmt.Sprintf("it comes after seq %d: the receipts are out of order", v.lastSeq)
	}
	if problem != "" {
		v.err = fmt.Errorf("%w: receipt seq %d key %q: %s", ErrChainBroken, r.Seq, r.Key, problem)
		return v.err
	}
	v.head = r.Hash
	v.count++
	if r.Seq != 0 {
		v.lastSeq = r.Seq
	}
	return nil
}

// Count returns how many receipts verified so far.
func (v *Verifier) Count() int { return v.count }

// Head returns the Hash of the last receipt that verified, or GenesisPrev
// if none did. An auditor can note it down and later check that the
// ledger still leads to it.
func (v *Verifier) Head() string { return v.head }
