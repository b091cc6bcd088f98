package app

import (
	"context"
	"time"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// The interfaces the routing app needs from the world. The adapters
// implement them (the event store and sealer come from pkg, the read
// model from adapters/readmodel, the audit log from pkg/audit) and
// wire.Mount hands them in; nothing here names an adapter.

// EventStore is the part of the event store the commands use.
type EventStore interface {
	Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, ev eventstore.Event) (eventstore.Revision, error)
	Read(ctx context.Context, stream string) ([]eventstore.RecordedEvent, error)
}

// Sealer seals and opens personal data with the case's keys; gen is the
// generation of the class's key (seal.Generations).
type Sealer interface {
	Seal(ctx context.Context, caseID string, class seal.Class, gen uint32, plaintext []byte) (*casev1.SealedPersonalData, error)
	Open(ctx context.Context, caseID string, sealed *casev1.SealedPersonalData) ([]byte, error)
}

// Metrics is what the commands report for the operator's metrics.
type Metrics interface {
	// FirstResponse observes, once per case, the time from its
	// registration to its first answer (the domain's first response:
	// the first CaseAnswered), by the queue the case is in.
	FirstResponse(queue string, d time.Duration)
}

// ReadModel is what the queries read: the cases as the read model
// projected them from the log. A case that does not exist (or was
// deleted) gives an error wrapping ErrNotFound; a page token ListQueue
// did not issue for the same queue and order, ErrInvalidPageToken.
type ReadModel interface {
	Get(caseID string) (CaseRow, error)
	FindByNumber(number string) (CaseRow, error)
	// FindByToken returns the cases a blind-index token stands for,
	// oldest first.
	FindByToken(token string) ([]CaseRow, error)
	// History returns a case's history in log order.
	History(caseID string) ([]HistoryEntry, error)
	QueueLoad(queue string) (QueueLoad, error)
	// PastDue counts the queue's open cases whose due time is before
	// now, from an index ordered by due time (a scrape must not read
	// every case).
	PastDue(queue string, now time.Time) (int, error)
	// ListQueue returns a page of a queue's open cases and the token of
	// the next page (empty on the last).
	ListQueue(q QueueQuery) ([]CaseRow, string, error)
}

// QueueQuery asks ListQueue for one page of a queue.
type QueueQuery struct {
	Queue string
	// Order is by age (registration time, the default) or by due time.
	Order routingv1.QueueOrder
	// Types and Channels keep only those cases, when not empty.
	Types    []casev1.CaseType
	Channels []casev1.Channel
	// PageSize 0 means the read model's default; it caps larger ones.
	PageSize int
	// PageToken continues after an earlier page.
	PageToken string
}

// Unrouted lists the cases registered but not yet in a queue. The router
// asks at start and every few minutes, so its cost must grow with the
// cases waiting, not with the cases ever stored.
type Unrouted interface {
	Unrouted() ([]string, error)
}

// AuditLog records reads of personal data before they happen.
type AuditLog interface {
	Record(ctx context.Context, rec *routingv1.AuditRecord) error
	ForCase(ctx context.Context, caseID string) ([]*routingv1.AuditRecord, error)
}
