// Package index is the retention service's deadline index: for every case
// in the log, its retention state (type, channel, times, holds, what is
// already redacted), the time its next retention action falls due, and
// its blind-index tokens, so the sweeper finds due cases and data-subject
// requests find a person's cases without scanning the log.
//
// The file holds no personal data: case states carry only categories and
// times. The blind-index tokens, HMACs that anyone with the master key
// can test personnummer against, are kept in a token file of their own
// ("index.tokens.db", pkg/tokenindex), compacted after every batch that
// removed one, so a redacted case's tokens leave no byte on disk; this
// file never holds one (bbolt keeps deleted keys in freed pages). A batch
// of events is applied in one bbolt transaction with the checkpoint, so
// after a crash the index holds exactly the events up to its checkpoint
// and the projector resumes from there; the batch's token changes are
// committed to the token file just before (see Store.Update).
package index

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/tokenindex"
	"github.com/kontakt-se/kontakt/services/retention/app"
)

// ErrCorrupt means a stored record could not be decoded.
var ErrCorrupt = errors.New("retention index: corrupt record")

var (
	bucketMeta  = []byte("meta")
	bucketCases = []byte("cases")
	bucketDue   = []byte("due")

	keyCheckpoint = []byte("checkpoint")
	keyPlan       = []byte("plan")
	keySchema     = []byte("schema")
	// keyTokenEpoch is the epoch this file shares with its token file.
	keyTokenEpoch = []byte("token_epoch")
)

// schema names the file's layout; a file with another one is destroyed
// (overwritten, then removed) and rebuilt from the log by the projector.
// Layout 4 folds the generations of the cases' keys and when a redacted
// class was written again.
const schema = "retention-index/4"

// Store is the index file and its token file; it is the retention
// app's Index, and its Tx the app's IndexTx.
type Store struct {
	db     *bolt.DB
	tokens *tokenindex.Index
}

var (
	_ app.Index   = (*Store)(nil)
	_ app.IndexTx = (*Tx)(nil)
)

// Open opens (or creates) the index at path and its token file next to
// it. A file of another layout is destroyed and a new one started, and so
// is one whose token file belongs to another epoch (see pkg/tokenindex);
// either way the checkpoint is gone and the projector replays the log
// from the start.
func Open(path string) (*Store, error) {
	db, err := openMain(path)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db}
	if s.tokens, err = tokenindex.Open(tokenindex.PathFor(path)); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("retention index: %w", err)
	}
	var epoch string
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		for _, b := range [][]byte{bucketCases, bucketDue} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		epoch = string(meta.Get(keyTokenEpoch))
		return meta.Put(keySchema, []byte(schema))
	})
	if err == nil {
		var got string
		if got, err = s.tokens.Epoch(); err == nil && (got != epoch || epoch == "") {
			err = s.startOver("")
		}
	}
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("retention index %s: %w", path, err)
	}
	return s, nil
}

// Model returns the index as a read model of pkg/projection: apply
// folds each batch, and the batch's token changes, its entries and its
// checkpoint are committed as Update commits them (token file first, then
// one bbolt transaction). plan is the fingerprint of the plan apply
// computes due times with; Reset records it in the emptied file, so a
// rebuilt index is not rescheduled again at the next start.
func (s *Store) Model(plan string, apply app.Applier) projection.Resetter {
	return &model{s: s, plan: plan, apply: apply}
}

type model struct {
	s     *Store
	plan  string
	apply app.Applier
}

func (m *model) Checkpoint() (eventstore.Position, error) { return m.s.Checkpoint() }

func (m *model) Apply(ctx context.Context, batch []projection.Event) error {
	if len(batch) == 0 {
		return nil
	}
	return m.s.Update(batch[len(batch)-1].Recorded.Position, func(tx *Tx) error {
		return m.apply(ctx, tx, batch)
	})
}

// Reset empties the index, checkpoint and tokens included, under a new
// epoch (see startOver).
func (m *model) Reset(context.Context) error { return m.s.startOver(m.plan) }

// openMain opens the main file, destroying it first when it has another
// layout.
func openMain(path string) (*bolt.DB, error) {
	open := func() (*bolt.DB, error) {
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
		if err != nil {
			return nil, fmt.Errorf("retention index %s: %w", path, err)
		}
		return db, nil
	}
	db, err := open()
	if err != nil {
		return nil, err
	}
	var other bool
	_ = db.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			got := meta.Get(keySchema)
			other = got == nil || string(got) != schema
		}
		return nil
	})
	if !other {
		return db, nil
	}
	if err := db.Close(); err != nil {
		return nil, fmt.Errorf("retention index %s: %w", path, err)
	}
	if err := tokenindex.ShredFile(path); err != nil {
		return nil, fmt.Errorf("retention index: destroy %s of another layout: %w", path, err)
	}
	return open()
}

// startOver empties the index (checkpoint included) under a new epoch and
// resets the token file to it, in that order: a crash in between leaves
// two epochs, which the next Open finds and starts over again. plan, when
// set, is recorded as the plan the entries to come are computed with.
func (s *Store) startOver(plan string) error {
	epoch := rand.Text()
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := wipe(tx); err != nil {
			return err
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		for _, b := range [][]byte{bucketCases, bucketDue} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		if err := meta.Put(keySchema, []byte(schema)); err != nil {
			return err
		}
		if plan != "" {
			if err := meta.Put(keyPlan, []byte(plan)); err != nil {
				return err
			}
		}
		return meta.Put(keyTokenEpoch, []byte(epoch))
	}); err != nil {
		return err
	}
	return s.tokens.Reset(epoch)
}

func wipe(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketMeta, bucketCases, bucketDue} {
		if tx.Bucket(b) != nil {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close closes the files.
func (s *Store) Close() error {
	var errs []error
	if s.tokens != nil {
		errs = append(errs, s.tokens.Close())
	}
	return errors.Join(append(errs, s.db.Close())...)
}

// WriteTo writes a consistent copy of the index file to w (one read
// transaction), for a backup taken while the projector runs. The token
// file is copied apart (WriteTokensTo), after this one, so it is at least
// as new (see pkg/tokenindex on the order of the two files).
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

// Checkpoint is the position of the last applied event.
func (s *Store) Checkpoint() (eventstore.Position, error) {
	var pos eventstore.Position
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyCheckpoint); len(v) == 8 {
			pos = eventstore.Position(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	return pos, err
}

// Plan returns the fingerprint of the plan the due times were computed
// with ("" for a new file).
func (s *Store) Plan() (string, error) {
	var p string
	err := s.db.View(func(tx *bolt.Tx) error {
		p = string(tx.Bucket(bucketMeta).Get(keyPlan))
		return nil
	})
	return p, err
}

// Update runs fn in one write transaction and, when pos is positive,
// stores it as the checkpoint in the same transaction. The token changes
// fn made are committed to the token file after fn and before this
// transaction: a crash between the two leaves the token file ahead, and
// the projector's replay of the batch writes the same changes again,
// while the other order could record a redaction as applied with its
// tokens still on disk.
func (s *Store) Update(pos eventstore.Position, fn func(*Tx) error) error {
	return s.db.Update(func(btx *bolt.Tx) error {
		tx := &Tx{tx: btx}
		if err := fn(tx); err != nil {
			return err
		}
		if err := s.writeTokens(tx.tokens); err != nil {
			return err
		}
		if pos > 0 {
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], uint64(pos))
			return btx.Bucket(bucketMeta).Put(keyCheckpoint, b[:])
		}
		return nil
	})
}

// Reschedule recomputes every entry's due time with next (after a change
// of plan) and records the plan's fingerprint, in one transaction.
func (s *Store) Reschedule(plan string, next func(*app.Entry) time.Time) error {
	return s.db.Update(func(btx *bolt.Tx) error {
		tx := &Tx{tx: btx}
		var all []*app.Entry
		if err := btx.Bucket(bucketCases).ForEach(func(_, v []byte) error {
			e, err := decode(v)
			if err != nil {
				return err
			}
			all = append(all, e)
			return nil
		}); err != nil {
			return err
		}
		for _, e := range all {
			e.NextDue = next(e)
			if err := tx.Put(e); err != nil {
				return err
			}
		}
		return btx.Bucket(bucketMeta).Put(keyPlan, []byte(plan))
	})
}

// writeTokens commits a transaction's token changes, in order.
func (s *Store) writeTokens(changes []tokenChange) error {
	if len(changes) == 0 {
		return nil
	}
	return s.tokens.Update(func(tx *tokenindex.Tx) error {
		for _, c := range changes {
			var err error
			if c.drop {
				err = tx.Drop(c.caseID)
			} else {
				err = tx.Set(c.caseID, c.slot, c.tokens)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Tx is one write transaction.
type Tx struct {
	tx     *bolt.Tx
	tokens []tokenChange
}

// tokenChange replaces a case's tokens in one slot, or drops them all.
type tokenChange struct {
	caseID, slot string
	tokens       []string
	drop         bool
}

// SetTokens replaces a case's tokens in one slot (app.SlotContact or
// app.SlotIdentity); none removes them.
func (t *Tx) SetTokens(caseID, slot string, tokens []string) {
	t.tokens = append(t.tokens, tokenChange{caseID: caseID, slot: slot, tokens: tokens})
}

// OnCommit runs fn once the transaction has committed (not at all if it
// fails), for what may only happen once the index shows the batch.
func (t *Tx) OnCommit(fn func()) { t.tx.OnCommit(fn) }

// DropTokens removes every token of a case.
func (t *Tx) DropTokens(caseID string) {
	t.tokens = append(t.tokens, tokenChange{caseID: caseID, drop: true})
}

// Get returns the entry of a case.
func (t *Tx) Get(caseID string) (*app.Entry, bool, error) {
	return get(t.tx, caseID)
}

// Put stores e and moves its due-time entry to match.
func (t *Tx) Put(e *app.Entry) error {
	old, found, err := get(t.tx, e.Case.ID)
	if err != nil {
		return err
	}
	if found {
		if err := t.unindex(old); err != nil {
			return err
		}
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketCases).Put([]byte(e.Case.ID), b); err != nil {
		return err
	}
	if !e.NextDue.IsZero() {
		if err := t.tx.Bucket(bucketDue).Put(dueKey(e.NextDue, e.Case.ID), nil); err != nil {
			return err
		}
	}
	return nil
}

// Delete drops a case, its index entries and its tokens (also when the
// index does not know the case: the token file may be a batch ahead).
func (t *Tx) Delete(caseID string) error {
	t.DropTokens(caseID)
	old, found, err := get(t.tx, caseID)
	if err != nil || !found {
		return err
	}
	if err := t.unindex(old); err != nil {
		return err
	}
	return t.tx.Bucket(bucketCases).Delete([]byte(caseID))
}

func (t *Tx) unindex(e *app.Entry) error {
	if !e.NextDue.IsZero() {
		if err := t.tx.Bucket(bucketDue).Delete(dueKey(e.NextDue, e.Case.ID)); err != nil {
			return err
		}
	}
	return nil
}

// Get returns the entry of a case.
func (s *Store) Get(caseID string) (e *app.Entry, found bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		e, found, err = get(tx, caseID)
		return err
	})
	return e, found, err
}

// Due returns up to limit cases whose next action is due at or before
// now, earliest first.
func (s *Store) Due(now time.Time, limit int) ([]string, error) {
	var out []string
	end := dueKey(now, "")
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDue).Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			if bytes.Compare(k[:8], end[:8]) > 0 {
				break
			}
			out = append(out, string(k[8:]))
		}
		return nil
	})
	return out, err
}

// Overdue counts the cases whose next action is due at or before now, and
// returns the earliest of their due times. It walks the due bucket from
// its start and stops at the first case not yet due, so it costs what is
// overdue, not what the index holds.
func (s *Store) Overdue(now time.Time) (n int, earliest time.Time, err error) {
	end := dueKey(now, "")
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDue).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if bytes.Compare(k[:8], end[:8]) > 0 {
				break
			}
			if n == 0 {
				earliest = time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
			}
			n++
		}
		return nil
	})
	return n, earliest, err
}

// FindByToken returns the ids of the cases holding a blind-index token.
// After a crash the token file may name a case of the batch the index
// has not applied yet; callers read the case's stream, which is the
// truth, in any case.
func (s *Store) FindByToken(token string) ([]string, error) {
	return s.tokens.Find(token)
}

// Tokens calls fn for every case's tokens per slot; for tests and checks.
func (s *Store) Tokens(fn func(caseID, slot string, tokens []string) error) error {
	return s.tokens.Each(fn)
}

// Each calls fn for every case, in case id order.
func (s *Store) Each(fn func(*app.Entry) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCases).ForEach(func(_, v []byte) error {
			e, err := decode(v)
			if err != nil {
				return err
			}
			return fn(e)
		})
	})
}

// Count returns how many cases the index holds.
func (s *Store) Count() (int, error) {
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketCases).Stats().KeyN
		return nil
	})
	return n, err
}

func get(tx *bolt.Tx, caseID string) (*app.Entry, bool, error) {
	v := tx.Bucket(bucketCases).Get([]byte(caseID))
	if v == nil {
		return nil, false, nil
	}
	e, err := decode(v)
	return e, err == nil, err
}

func decode(v []byte) (*app.Entry, error) {
	var e app.Entry
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return &e, nil
}

// dueKey orders by due time: 8 bytes of big-endian Unix nanoseconds
// (times before 1970 sort first as zero) followed by the case id.
func dueKey(at time.Time, caseID string) []byte {
	k := make([]byte, 8, 8+len(caseID))
	binary.BigEndian.PutUint64(k, uint64(max(at.UnixNano(), 0)))
	return append(k, caseID...)
}

// OpenReadOnly opens the index file for reading only, for `kontakt
// check`: bbolt's shared lock and no write of any kind (no buckets
// created, no file of another layout destroyed, no token file opened), so
// a check changes nothing it looks at. Each, Checkpoint, Plan and
// DueIndex answer; nothing that writes or reads tokens may be called. A
// file that does not exist is fs.ErrNotExist, and one of another layout
// ErrCorrupt.
func OpenReadOnly(path string) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("retention index: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("retention index %s: %w", path, err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || tx.Bucket(bucketCases) == nil || tx.Bucket(bucketDue) == nil || string(meta.Get(keySchema)) != schema {
			return fmt.Errorf("%w: not an index of layout %s (kontakt serve rebuilds it at start)", ErrCorrupt, schema)
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("retention index %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// DueIndex calls fn for every entry of the due-time index, which the
// sweeper reads (Due), earliest first: the case and the time it is due.
func (s *Store) DueIndex(fn func(caseID string, at time.Time) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDue).ForEach(func(k, _ []byte) error {
			if len(k) < 8 {
				return ErrCorrupt
			}
			return fn(string(k[8:]), time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))).UTC())
		})
	})
}
