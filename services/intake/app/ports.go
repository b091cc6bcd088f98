package app

import (
	"context"
	"time"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// CaseNumbers allocates the human case numbers agents read on the phone
// (KC-2026-000123): unique and increasing within a year, shared by every
// intake instance.
type CaseNumbers interface {
	// Next allocates the next number of the year that at falls in and
	// remembers which case it belongs to.
	Next(ctx context.Context, at time.Time, caseID string) (string, error)
	// Allocate allocates one number per request, consecutive and in order
	// within a year, in one write where it can: group commit's share of
	// the numbers.
	Allocate(ctx context.Context, reqs []Allocation) ([]string, error)
	// Lookup returns the case id a number was allocated to.
	Lookup(ctx context.Context, number string) (string, error)
}

// Allocation asks for the number of one case, in the year At falls in.
type Allocation struct {
	At     time.Time
	CaseID string
}

// Sealer encrypts personal data with the case's own data key. Intake
// seals only for a case being registered, which nothing was redacted of
// yet, so always under the classes' generation-0 keys.
type Sealer interface {
	Seal(ctx context.Context, caseID string, class seal.Class, gen uint32, plaintext []byte) (*casev1.SealedPersonalData, error)
}

// IdempotencyRecord is what intake remembers about one form submission.
type IdempotencyRecord struct {
	// PayloadHash identifies the submitted payload (a keyed hash, so the
	// record holds nothing readable).
	PayloadHash string
	// CaseID is the case the submission creates; derived from the key.
	CaseID string
	// Done is set once the case is registered; then the fields below hold
	// the answer to repeat.
	Done         bool
	CaseNumber   string
	RegisteredAt time.Time
	// ClaimedAt is when the first request took the key; a claim that never
	// completes (its request crashed) may be taken over after a while.
	ClaimedAt time.Time
	// Revision is the store's revision of this record, for compare-and-set.
	Revision uint64
}

// Idempotency keeps form submissions for at least seven days, so a form
// that retries gets the first answer instead of a second case.
type Idempotency interface {
	// Claim stores rec under key if no record exists and returns (rec,
	// true); if one exists it returns it and false.
	Claim(ctx context.Context, key string, rec IdempotencyRecord) (IdempotencyRecord, bool, error)
	// Complete marks the record done with the answer, if its revision is
	// still rec.Revision.
	Complete(ctx context.Context, key string, rec IdempotencyRecord) error
	// Get returns the record under key.
	Get(ctx context.Context, key string) (IdempotencyRecord, error)
	// Release deletes an unfinished record still at rec.Revision, so a
	// retry need not wait for the claim to go stale.
	Release(ctx context.Context, key string, rec IdempotencyRecord) error
}

// AttachmentStore keeps the content of attachments uploaded with a case
// (a form's files, a mail's attachments), sealed with the case's
// attachments key before it leaves the process; *blobstore.Store is one.
// Objects are named by case id and index, so retention deletes them by
// case id and the orphan sweep (SweepOrphanAttachments) finds those of a
// case that was never appended.
type AttachmentStore interface {
	// Put seals content with the case's attachments key (creating it) and
	// stores it as the attachment at index, replacing what is there.
	Put(ctx context.Context, caseID string, index int, content []byte) error
	// DeleteCase deletes every attachment of the case.
	DeleteCase(ctx context.Context, caseID string) error
	// Stored lists the cases with stored content and when each was last
	// written.
	Stored(ctx context.Context) (map[string]time.Time, error)
}
