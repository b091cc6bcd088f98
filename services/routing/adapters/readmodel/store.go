// Package readmodel is the routing service's read model: the cases, the
// open cases of each queue in age and due order, the queues' load, the
// cases waiting for the router and the blind index, kept in a bbolt file
// by a projector that follows the log of all case events. It implements
// the routing app's ReadModel and Unrouted (services/routing/app), in the
// app's types.
//
// What an event does to a case is decided by the routing domain's fold
// (domain.Case.Apply), the one state machine of a case, which the
// commands use too; the read model keeps the fold's state of every case
// and derives its rows from it (record.go). The stored values are the
// messages of a private proto (codec.go).
//
// Every batch of events is applied in one bbolt transaction together with
// the checkpoint (the position of the batch's last event), so after a
// crash the file holds exactly the events up to its checkpoint and the
// projector resumes from there: nothing is applied twice and nothing is
// lost. Events at or before the checkpoint are skipped, which makes
// re-delivery harmless.
//
// The file never holds plain personal data. Contact details, identity
// numbers, free text, attachment names and answer texts are kept sealed,
// exactly as the events carry them, so destroying a case's keys
// (crypto-shredding) makes the read model's copies unreadable as well;
// redaction also drops the copies, and deletion drops the case entirely.
// bbolt does not zero the pages it frees, so bytes of dropped rows stay
// in the file until those pages are reused; the rows are sealed, and
// their keys destroyed. Blind-index tokens, which anyone holding the
// master key could test personnummer against, are therefore never
// written to this file: they live in a token file of their own
// (pkg/tokenindex, "<name>.tokens.db" next to it), which is compacted
// after every batch that removed one, so a redacted case's tokens leave
// no byte on disk. The token file commits before this file (see
// batch.writeTokens).
package readmodel

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/tokenindex"
	"github.com/kontakt-se/kontakt/services/routing/app"
)

// Sentinel errors. A case that is not there and a page token ListQueue
// did not issue are the app's errors (app.ErrNotFound,
// app.ErrInvalidPageToken), since the app reads them.
var (
	// ErrMalformedEvent means an event of a known type could not be
	// decoded. The batch is not applied, so the projector stops at the
	// event (and retries) instead of silently diverging from the log.
	ErrMalformedEvent = errors.New("readmodel: malformed event")
	// ErrRebuilding means a rebuild is running: live batches are refused
	// until it is done, and a live projector resumes after the rebuilt
	// checkpoint, so the two never write over each other.
	ErrRebuilding = errors.New("readmodel: rebuild in progress")
)

// schemaVersion names the layout of the file. A file written with another
// version is not read: it needs a rebuild from the log (see NeedsRebuild),
// which the service does before it serves. Version 4 stores the private
// proto's messages (codec.go), the domain fold's state and the unrouted
// index; blind-index tokens live in the token file (pkg/tokenindex), never
// here.
const schemaVersion = 4

// Page sizes of ListQueue, the same bounds as ListQueueCasesRequest's
// validation, so a page never costs more than the API promises.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Tokenizer computes a case's blind-index tokens from its sealed contact
// details and identity number. The application implements it
// (app.Tokenizer): it unseals the values, normalises them and computes
// HMAC tokens, so the read model never holds the values nor the index
// key, only the opaque tokens. Either argument may be nil (the case has
// no such data, or it was redacted). A case whose tokens can never be
// computed (its keys are destroyed) has none: the Tokenizer returns no
// tokens and no error. An error aborts the batch, and the projector
// retries it.
type Tokenizer interface {
	Tokens(ctx context.Context, caseID string, contact, identity *casev1.SealedPersonalData) ([]string, error)
}

// DefaultSLA returns the default time from registration to due date per
// case type: a question in two days, a fault report in one, feedback and
// letters in ten. It returns a fresh map, so callers may change it.
func DefaultSLA() map[casev1.CaseType]time.Duration {
	const day = 24 * time.Hour
	return map[casev1.CaseType]time.Duration{
		casev1.CaseType_CASE_TYPE_FRAGA:      2 * day,
		casev1.CaseType_CASE_TYPE_FELANMALAN: 1 * day,
		casev1.CaseType_CASE_TYPE_SYNPUNKT:   10 * day,
		casev1.CaseType_CASE_TYPE_BREV:       10 * day,
	}
}

// Options configures a Store.
type Options struct {
	// Tokenizer computes blind-index tokens; nil keeps no tokens.
	Tokenizer Tokenizer
	// OnChange, when set, is called once per applied event that shows
	// in a case's history or deletes a case, in log order, after the
	// transaction that applied it committed and outside it, so live queue
	// watchers and the router can be told. It runs on the applying
	// goroutine and delays the next batch, so it must not block, and it
	// must not call Apply (queries are fine). It is not called during
	// Projector.Rebuild (watchers should list again after a rebuild).
	OnChange func(app.Change)
	// SLA is the time from registration to due date per case type; nil
	// means DefaultSLA. A type without an entry gets no due time (it sorts
	// last in due order). The due-order index is written when a case is
	// projected: after changing the SLA, rebuild (Open reports it through
	// NeedsRebuild).
	SLA map[casev1.CaseType]time.Duration
	// OpenTimeout bounds how long Open waits for the file lock another
	// process holds; zero means one second.
	OpenTimeout time.Duration
}

// Store is the routing read model in a bbolt file. It is safe for
// concurrent use: queries run in parallel with each other and with one
// writer.
type Store struct {
	db        *bolt.DB
	tokens    *tokenindex.Index
	tokenizer Tokenizer
	onChange  func(app.Change)
	sla       map[casev1.CaseType]time.Duration
	config    string
	// applyMu serialises batches, so OnChange sees events in log order
	// even if two goroutines apply.
	applyMu      sync.Mutex
	needsRebuild bool
	// rebuilding is set while a Projector rebuilds this store.
	rebuilding atomic.Bool
}

// Open opens or creates the read model file at path. The file is created
// with mode 0600: it holds sealed personal data and blind-index tokens,
// which are nobody else's business even encrypted.
func Open(path string, opts Options) (*Store, error) {
	timeout := opts.OpenTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	s := &Store{tokenizer: opts.Tokenizer, onChange: opts.OnChange, sla: opts.SLA}
	if s.sla == nil {
		s.sla = DefaultSLA()
	} else {
		s.sla = maps.Clone(s.sla)
	}
	s.config = configString(s.sla)
	db, err := openMain(path, timeout)
	if err != nil {
		return nil, err
	}
	s.db = db
	if s.tokens, err = tokenindex.Open(tokenindex.PathFor(path)); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("readmodel: %w", err)
	}
	var epoch string
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte(bucketMeta))
		if meta == nil {
			// A new file: nothing stored yet, so nothing was computed with
			// another configuration.
			epoch = newEpoch()
			return createBuckets(tx, s.config, epoch)
		}
		for _, name := range allBuckets() {
			if tx.Bucket([]byte(name)) == nil {
				s.needsRebuild = true
			}
		}
		if string(meta.Get([]byte(keyConfig))) != s.config {
			s.needsRebuild = true
		}
		epoch = string(meta.Get([]byte(keyTokenEpoch)))
		return nil
	})
	if err == nil {
		err = s.checkTokenEpoch(epoch)
	}
	if err != nil {
		_ = s.tokens.Close()
		_ = db.Close()
		return nil, fmt.Errorf("readmodel: initialise %s: %w", path, err)
	}
	return s, nil
}

// openMain opens the main file.
func openMain(path string, timeout time.Duration) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: timeout,
		// The hashmap freelist stays fast when a large file is
		// fragmented by redactions and deletions.
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("readmodel: open %s: %w", path, err)
	}
	return db, nil
}

// checkTokenEpoch makes sure the token file belongs to this file. One
// that does not (a crash between a rebuild's wipe and the token file's
// reset, a lost or copied-in token file) is reset, and since neither file
// then says which cases need tokens, the rows are rebuilt from the log.
func (s *Store) checkTokenEpoch(epoch string) error {
	got, err := s.tokens.Epoch()
	if err != nil {
		return err
	}
	if got == epoch && epoch != "" {
		return nil
	}
	if epoch == "" {
		// A file from before the epoch: give it one.
		epoch = newEpoch()
		if err := s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte(bucketMeta)).Put([]byte(keyTokenEpoch), []byte(epoch))
		}); err != nil {
			return err
		}
	}
	if err := s.tokens.Reset(epoch); err != nil {
		return err
	}
	if cp, err := s.Checkpoint(); err != nil || cp > 0 {
		s.needsRebuild = true
		return err
	}
	return nil
}

// newEpoch draws a random epoch for a fresh or wiped file.
func newEpoch() string { return rand.Text() }

// configString describes what stored rows depend on besides the events:
// the file layout and the SLA.
func configString(sla map[casev1.CaseType]time.Duration) string {
	var b strings.Builder
	b.WriteString("schema=" + strconv.Itoa(schemaVersion))
	for _, t := range slices.Sorted(maps.Keys(sla)) {
		fmt.Fprintf(&b, ";sla.%d=%d", t, int64(sla[t]))
	}
	return b.String()
}

func createBuckets(tx *bolt.Tx, config, epoch string) error {
	for _, name := range allBuckets() {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket([]byte(bucketMeta))
	if err := meta.Put([]byte(keyTokenEpoch), []byte(epoch)); err != nil {
		return err
	}
	return meta.Put([]byte(keyConfig), []byte(config))
}

// Close closes the files. Queries and Apply fail afterwards.
func (s *Store) Close() error {
	var tokensErr error
	if s.tokens != nil { // OpenReadOnly opens no token file.
		tokensErr = s.tokens.Close()
	}
	if err := errors.Join(s.db.Close(), tokensErr); err != nil {
		return fmt.Errorf("readmodel: close: %w", err)
	}
	return nil
}

// NeedsRebuild reports whether the file was written with another layout
// or SLA than this Store uses, so its rows must be rebuilt from the log
// before they can be trusted.
func (s *Store) NeedsRebuild() bool {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return s.needsRebuild
}

// WriteTo writes a consistent copy of the main file to w (one read
// transaction), for a backup taken while the projector runs; the copy's
// checkpoint says where a restored projector resumes. The token file is
// copied apart (WriteTokensTo), after this one, so it is at least as new
// (see pkg/tokenindex on the order of the two files).
func (s *Store) WriteTo(w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// WriteTokensTo writes a consistent copy of the token file to w.
func (s *Store) WriteTokensTo(w io.Writer) (int64, error) { return s.tokens.WriteTo(w) }

// Checkpoint returns the position of the last applied event: projection
// resumes after it.
func (s *Store) Checkpoint() (eventstore.Position, error) {
	var pos eventstore.Position
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		pos, err = readCheckpoint(tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("readmodel: read checkpoint: %w", err)
	}
	return pos, nil
}

func readCheckpoint(tx *bolt.Tx) (eventstore.Position, error) {
	meta := tx.Bucket([]byte(bucketMeta))
	if meta == nil {
		return 0, nil
	}
	v := meta.Get([]byte(keyCheckpoint))
	switch len(v) {
	case 0:
		return 0, nil
	case 8:
		return eventstore.Position(binary.BigEndian.Uint64(v)), nil
	default:
		return 0, fmt.Errorf("checkpoint: %w", errCorrupt)
	}
}

func writeCheckpoint(tx *bolt.Tx, pos eventstore.Position) error {
	return tx.Bucket([]byte(bucketMeta)).Put([]byte(keyCheckpoint), binary.BigEndian.AppendUint64(nil, uint64(pos)))
}

// wipe drops everything in one transaction: all buckets (also those of
// another layout), the checkpoint and the recorded configuration, which is
// set to the current one, with a new token epoch; then it resets the
// token file to that epoch. Either the whole file is empty afterwards or
// nothing changed; a crash before the token file's reset is found by the
// epoch at the next Open.
func (s *Store) wipe() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	epoch := newEpoch()
	err := s.db.Update(func(tx *bolt.Tx) error {
		var names [][]byte
		if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, slices.Clone(name))
			return nil
		}); err != nil {
			return err
		}
		for _, name := range names {
			if err := tx.DeleteBucket(name); err != nil {
				return fmt.Errorf("drop bucket %s: %w", name, err)
			}
		}
		return createBuckets(tx, s.config, epoch)
	})
	if err == nil {
		err = s.tokens.Reset(epoch)
	}
	if err != nil {
		return fmt.Errorf("readmodel: wipe: %w", err)
	}
	s.needsRebuild = false
	return nil
}

// Apply applies a batch of events, in log order, in one transaction that
// also stores the position of the last one as the checkpoint: what the
// projection runner does with Model, for callers that hold stored events
// (tests, tools). Events at or before the stored checkpoint are skipped,
// so applying a batch again changes nothing. Event types the read model
// does not know are skipped too, but the checkpoint moves past them. If
// anything fails (a malformed event, a Tokenizer error, the file) nothing
// of the batch is applied and the checkpoint stays. OnChange is called for
// each applied event after the commit. While a Projector rebuilds the
// store, Apply refuses with ErrRebuilding.
func (s *Store) Apply(ctx context.Context, evs ...eventstore.RecordedEvent) error {
	batch, err := projection.Decode(evs)
	if err != nil {
		return fmt.Errorf("readmodel: apply %d events: %w: %w", len(evs), ErrMalformedEvent, err)
	}
	return s.apply(ctx, false, batch)
}

// Model returns the store as a read model of pkg/projection, the one
// runner that keeps it up to date: each batch the runner hands it is
// applied and committed with its checkpoint in one bbolt transaction (and
// the token file just before), and Reset empties it for a rebuild.
func (s *Store) Model() projection.Resetter { return model{s} }

type model struct{ s *Store }

func (m model) Checkpoint() (eventstore.Position, error) { return m.s.Checkpoint() }

func (m model) Apply(ctx context.Context, batch []projection.Event) error {
	return m.s.apply(ctx, rebuildingIn(ctx), batch)
}

func (m model) Reset(context.Context) error { return m.s.wipe() }

// rebuildKey marks the context of a Projector's Rebuild, so the batches
// it hands the model through the runner tell no watcher and pass while
// live batches are refused.
type rebuildKey struct{}

func rebuildingIn(ctx context.Context) bool { v, _ := ctx.Value(rebuildKey{}).(bool); return v }

func byPosition(a, b projection.Event) int {
	return cmp.Compare(a.Recorded.Position, b.Recorded.Position)
}

// apply applies a batch, for a rebuild or live. Rebuild batches tell no
// watcher, and live ones are refused while a rebuild runs.
func (s *Store) apply(ctx context.Context, rebuild bool, evs []projection.Event) error {
	if len(evs) == 0 {
		return nil
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if !rebuild && s.rebuilding.Load() {
		return ErrRebuilding
	}
	// A batch that was applied already needs no write transaction (which
	// would cost an fsync).
	if cp, err := s.Checkpoint(); err == nil && evs[len(evs)-1].Recorded.Position <= cp && slices.IsSortedFunc(evs, byPosition) {
		return nil
	}
	notify := !rebuild && s.onChange != nil
	var changes []app.Change
	err := s.db.Update(func(tx *bolt.Tx) error {
		cp, err := readCheckpoint(tx)
		if err != nil {
			return err
		}
		b := newBatch(s, tx, notify)
		last := cp
		for i := range evs {
			ev := &evs[i]
			if ev.Recorded.Position <= last {
				continue // Applied already (or out of order): never twice.
			}
			if err := b.apply(ev); err != nil {
				return fmt.Errorf("event at position %d (%s): %w", ev.Recorded.Position, ev.Recorded.Type, err)
			}
			last = ev.Recorded.Position
		}
		if last == cp {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.flush(ctx); err != nil {
			return err
		}
		if err := b.writeTokens(); err != nil {
			return err
		}
		changes = b.changes
		return writeCheckpoint(tx, last)
	})
	if err != nil {
		return fmt.Errorf("readmodel: apply %d events: %w", len(evs), err)
	}
	for _, c := range changes {
		s.onChange(c)
	}
	return nil
}
