package app

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/shredjournal"
)

// ErrStaleStore means the store is older than the shred journal: the
// journal records receipts or events it lacks. That is what a data
// directory copied back from a backup by hand looks like (a tar of it, a
// disk snapshot), and serving it would make readable again what was
// erased since: the keys destroyed after the copy are in it. `kontakt
// restore` is the way back from a backup, because it replays the journal
// first.
var ErrStaleStore = errors.New("the data directory is older than the shred journal")

// receiptChecker is a Ledger that can say whether a key has its receipt;
// *ledger.Ledger is one.
type receiptChecker interface {
	Has(ctx context.Context, key string) (bool, error)
}

// CheckJournal compares the last entries of the shred journal with the
// store before anything serves, and fails with ErrStaleStore when the
// store lacks one of them: a receipt the ledger does not hold, or an
// event missing from its case stream while the stream still exists (a
// deleted stream has nothing left to protect). The check costs a request
// per entry, so only the journal's tail is given: a store restored from
// an older copy lacks the newest entries first.
func (s *Service) CheckJournal(ctx context.Context, tail []shredjournal.Entry) error {
	rc, ok := s.ledger.(receiptChecker)
	if !ok {
		return errors.New("retention: the ledger cannot be checked against the shred journal")
	}
	for _, e := range slices.Backward(tail) {
		switch e.Kind {
		case shredjournal.KindReceipt:
			has, err := rc.Has(ctx, e.Receipt.Key)
			if err != nil {
				return fmt.Errorf("retention: check the shred journal: %w", err)
			}
			if !has {
				return fmt.Errorf("%w: the journal holds receipt %s (written %s), which the ledger does not", ErrStaleStore, e.Receipt.Key, e.Written.Format("2006-01-02 15:04:05Z07:00"))
			}
		case shredjournal.KindEvent:
			recs, err := s.store.Read(ctx, e.Event.Stream)
			if errors.Is(err, eventstore.ErrStreamNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("retention: check the shred journal: %w", err)
			}
			if !slices.ContainsFunc(recs, func(r eventstore.RecordedEvent) bool { return r.ID == e.Event.ID }) {
				return fmt.Errorf("%w: the journal holds event %s of case %s (written %s), which the case's stream does not", ErrStaleStore, e.Event.ID, e.Event.Stream, e.Written.Format("2006-01-02 15:04:05Z07:00"))
			}
		}
	}
	return nil
}
