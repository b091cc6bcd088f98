package app

import (
	"context"
	"errors"

	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

// The interfaces the statistics use cases need, implemented by the
// adapters (adapters/store, adapters/stream): app depends on none of them,
// and tests may hand it others.

// ReadModel is the statistics read model: the state of every live case,
// the newest version of every record, an index of records by hour, the
// projector's checkpoint and the outbox of its last batch.
type ReadModel interface {
	// State reads the checkpoint, the scan position and the outbox.
	State() (ReadModelState, error)
	// Checkpoint returns the position of the last applied event.
	Checkpoint() (eventstore.Position, error)
	// Update runs fn in one write transaction, committed when fn returns
	// nil and rolled back otherwise.
	Update(fn func(Tx) error) error
	// UpsertRecords stores records read from the statistics stream, each
	// only if newer than the stored version (or of the same version but
	// different: the stream wins), and returns how many it wrote.
	UpsertRecords(rs []domain.Record) (int, error)
	// Reset empties the read model (checkpoint, scan position and outbox
	// included) in one transaction, for a rebuild.
	Reset() error
	// Scan calls fn with the facts of every record registered in
	// [from, to) (Unix seconds), in hour order.
	Scan(from, to int64, names bool, fn func(*domain.Facts)) error
}

// ReadModelState is what a starting projector needs to know.
type ReadModelState struct {
	// Checkpoint is the position of the last applied event.
	Checkpoint eventstore.Position
	// ScanFrom is the statistics stream sequence after which a restart
	// must read the stream: every message of the outbox, and any message
	// of a version newer than the checkpoint, lies after it.
	ScanFrom uint64
	// Outbox holds the messages of the last applied batch, in order. Some
	// or all of them may be published already.
	Outbox []domain.Message
}

// Tx is one write transaction of the read model.
type Tx interface {
	// Checkpoint returns the checkpoint as this transaction sees it.
	Checkpoint() (eventstore.Position, error)
	// Case returns a live case's state, or nil when there is none.
	Case(caseID string) (*domain.Case, error)
	// PutCase stores a case's state.
	PutCase(caseID string, c *domain.Case) error
	// DeleteCase drops a case's state, and with it the only link between
	// the case and its record.
	DeleteCase(caseID string) error
	// RecordVersion returns the version of the stored record, 0 when
	// there is none.
	RecordVersion(statisticsID string) (int64, error)
	// PutRecord stores a record version unless the stored one is as new
	// or newer, and reports whether it wrote.
	PutRecord(r domain.Record) (bool, error)
	// Finish records the end of a batch: the checkpoint, where a restart
	// scans the stream from, and the batch's messages, which replace the
	// previous batch's.
	Finish(checkpoint eventstore.Position, scanFrom uint64, outbox []domain.Message) error
}

// ErrConflict means the statistics stream's last message was not the one
// an append expected: another projector appended first.
var ErrConflict = errors.New("statistics stream: the stream has messages the publisher has not read")

// RecordStream is the statistics stream: every record version, kept for
// ever, in the order the projectors appended them.
type RecordStream interface {
	// Encode turns a record version into the exact message to publish.
	Encode(r domain.Record) (domain.Message, error)
	// LastSeq returns the sequence of the stream's last message (0 when
	// it is empty).
	LastSeq(ctx context.Context) (uint64, error)
	// Read calls fn for every message with a sequence in (after, upTo],
	// in order.
	Read(ctx context.Context, after, upTo uint64, fn func(StoredMessage) error) error
	// AppendBatch stores msgs, in order and with consecutive sequences,
	// all or none, and only if the stream's last sequence is still
	// after; it returns the sequence of the first. A stream that moved
	// on is refused with ErrConflict (wrapped), as is a batch holding a
	// message id the stream has stored within its duplicate window.
	AppendBatch(ctx context.Context, msgs []domain.Message, after uint64) (uint64, error)
	// Follow delivers every record version after stream sequence after,
	// then follows new ones until ctx ends or fn fails.
	Follow(ctx context.Context, after uint64, fn func(seq uint64, r *statisticsv1.StatisticsRecord) error) error
}

// StoredMessage is one message read back from the statistics stream.
type StoredMessage struct {
	// Seq is its stream sequence.
	Seq uint64
	// Record is the record version it carries; nil when it is not one
	// (somebody published on the subjects by hand).
	Record *domain.Record
	// Data is its payload, to tell two projectors' versions apart.
	Data []byte
}
