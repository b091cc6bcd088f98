package app

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/receipt"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/shredjournal"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

// The interfaces the retention app needs from the world. The adapters
// implement them (the event store, sealer, audit log and shred journal
// come from pkg, the ledger, the deadline index and the archive from
// services/retention/adapters) and wire.Mount hands them in through
// Options; nothing here names an adapter.

// EventStore is what the service needs of the event store.
type EventStore interface {
	Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, ev eventstore.Event) (eventstore.Revision, error)
	Read(ctx context.Context, stream string) ([]eventstore.RecordedEvent, error)
	Subscribe(ctx context.Context, from eventstore.Position, h eventstore.Handler) error
	Delete(ctx context.Context, stream string) error
}

// Sealer seals, opens and destroys personal data; *seal.Sealer is one.
// gen and the destructions' generations are those of the classes' keys as
// the case's events give them (seal.Generations). The projector destroys
// the keys of a whole batch of events with one DestroyBatch.
type Sealer interface {
	Open(ctx context.Context, caseID string, sealed *casev1.SealedPersonalData) ([]byte, error)
	SealMessage(ctx context.Context, caseID string, class seal.Class, gen uint32, m proto.Message) (*casev1.SealedPersonalData, error)
	DestroyBatch(ctx context.Context, ds []seal.Destruction) error
}

// Ledger records receipts; *ledger.Ledger is one.
type Ledger interface {
	RecordBatch(ctx context.Context, rs []receipt.Receipt) error
	Scan(ctx context.Context, fn func(receipt.Receipt) error) error
}

// StoredRecorder is a Ledger that returns the receipts as it stored them;
// *ledger.Ledger is one. The shred journal needs them.
type StoredRecorder interface {
	RecordBatchStored(ctx context.Context, rs []receipt.Receipt) ([]receipt.Receipt, error)
}

// Journal is the shred journal (pkg/shredjournal): what the projector
// destroyed, kept outside the data directory, so that `kontakt restore`
// can destroy it again in a restored store. *shredjournal.Journal is one.
// Append must have synced the entries to disk when it returns.
type Journal interface {
	Append(entries ...shredjournal.Entry) error
}

// Audit is the log of reads of personal data; *audit.Log is one.
type Audit interface {
	Record(ctx context.Context, rec *routingv1.AuditRecord) error
	ForCase(ctx context.Context, caseID string) ([]*routingv1.AuditRecord, error)
}

// Index is the deadline index: every case the log holds, folded for
// retention, with the time its next deadline falls due, and the
// blind-index tokens that find a person's cases. The projector keeps it
// (Model), the sweeper and the queries read it.
type Index interface {
	// Get returns a case's entry, if the index has one.
	Get(caseID string) (*Entry, bool, error)
	// Due returns up to limit cases whose next deadline is at or before
	// now, earliest first.
	Due(now time.Time, limit int) ([]string, error)
	// Overdue counts the cases whose next deadline is at or before now
	// and returns the earliest such deadline (zero when none), walking
	// only those cases.
	Overdue(now time.Time) (n int, earliest time.Time, err error)
	// Each calls fn with every entry.
	Each(fn func(*Entry) error) error
	// FindByToken returns the cases a blind-index token stands for.
	FindByToken(token string) ([]string, error)
	// Plan returns the fingerprint of the plan the due times were
	// computed with.
	Plan() (string, error)
	// Reschedule recomputes every entry's due time with next and records
	// plan as the fingerprint.
	Reschedule(plan string, next func(*Entry) time.Time) error
	// Checkpoint is the log position the index has applied up to.
	Checkpoint() (eventstore.Position, error)
	// Model is the index as a read model of pkg/projection: apply folds
	// each batch inside the batch's transaction, which commits with the
	// checkpoint. plan is the fingerprint a reset index records.
	Model(plan string, apply Applier) projection.Resetter
}

// Applier applies a batch of events to the index inside the batch's
// transaction, and runs what must follow from them outside the index
// before that transaction commits (the projector's effects).
type Applier func(ctx context.Context, tx IndexTx, batch []projection.Event) error

// IndexTx is the index inside one batch's transaction.
type IndexTx interface {
	Get(caseID string) (*Entry, bool, error)
	Put(e *Entry) error
	Delete(caseID string) error
	// SetTokens replaces a case's tokens in one slot (SlotContact,
	// SlotIdentity); nil drops them.
	SetTokens(caseID, slot string, tokens []string)
	// DropTokens drops every token of a case.
	DropTokens(caseID string)
	// OnCommit runs fn once the transaction has committed.
	OnCommit(fn func())
}

// Entry is one case in the index.
type Entry struct {
	Case domain.Case `json:"case"`
	// NextDue is when the next retention action falls due; zero when
	// nothing is scheduled or a hold stops it.
	NextDue time.Time `json:"next_due,omitzero"`
}

// Token slots: a case's contact and identity tokens are kept apart so
// that redacting or rectifying one class replaces only its own tokens.
const (
	SlotContact  = "contact"
	SlotIdentity = "identity"
)

// Archive keeps the archive packages of preserved cases, outside the
// event log, for the archive authority.
type Archive interface {
	// Export writes a case's package, checks that what was written
	// verifies, and returns the package's name and the SHA-256 of its
	// file. Writing the same package again returns the one written.
	Export(p ArchivePackage) (name, sha256 string, err error)
	// RemoveCase removes the case's packages written before revision
	// before (a withdrawn mark's) and returns their names.
	RemoveCase(caseID string, before uint64) ([]string, error)
}

// ArchivePackage is what one archive package holds.
type ArchivePackage struct {
	// CaseID and CaseNumber name the case; both go into the file name, so
	// they are limited to [A-Za-z0-9_-].
	CaseID, CaseNumber string
	// CreatedAt is when the package was made; it is stored in the manifest
	// and as every entry's modification time.
	CreatedAt time.Time
	// Files are the package's files, in the order they are written.
	Files []ArchiveFile
	// Revision, when positive, is the revision of the case's stream the
	// package was taken at; it goes into the file name.
	Revision uint64
}

// ArchiveFile is one file of a package.
type ArchiveFile struct {
	// Path is the path inside the package, such as "case.json": relative,
	// clean, with '/' separators and no "..".
	Path string
	// Data is the file's content.
	Data []byte
}

// Attachments deletes the stored content of a case's attachments
// (pkg/blobstore, which *blobstore.Store implements): after the
// attachments key is destroyed the content is unreadable, and this
// removes the objects too. Deleting what is not there is no error.
type Attachments interface {
	DeleteCase(ctx context.Context, caseID string) error
}
