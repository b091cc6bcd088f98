// Package index is the retention service's deadline index: for every case
// in the log, its retention state (type, channel, times, holds, what is
// already redacted), the time its next retention action falls due, and
// its blind-index tokens, so the sweeper finds due cases and data-subject
// requests find a person's cases without scanning the log.
//
// The file holds no personal data: case states carry only categories and
// times, and the tokens are HMACs that are useless without the
// blind-index key. A batch of events is applied in one bbolt transaction
// with the checkpoint, so after a crash the index holds exactly the events
// up to its checkpoint and the projector resumes from there.
package index

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

// ErrCorrupt means a stored record could not be decoded.
var ErrCorrupt = errors.New("retention index: corrupt record")

var (
	bucketMeta   = []byte("meta")
	bucketCases  = []byte("cases")
	bucketDue    = []byte("due")
	bucketTokens = []byte("tokens")

	keyCheckpoint = []byte("checkpoint")
	keyPlan       = []byte("plan")
	keySchema     = []byte("schema")
)

// schema names the file's layout; a file with another one is emptied and
// rebuilt from the log by the projector.
const schema = "retention-index/2"

// Entry is one case in the index.
type Entry struct {
	Case domain.Case `json:"case"`
	// ContactTokens and IdentityTokens are the blind-index tokens of the
	// case's contact details and identity number, kept apart so that
	// redacting or rectifying one class replaces only its own tokens.
	ContactTokens  []string `json:"contact_tokens,omitempty"`
	IdentityTokens []string `json:"identity_tokens,omitempty"`
	// NextDue is when the next retention action falls due; zero when
	// nothing is scheduled or a hold stops it.
	NextDue time.Time `json:"next_due,omitzero"`
}

// Store is the index file.
type Store struct {
	db *bolt.DB
}

// Open opens (or creates) the index at path. A file of another layout is
// emptied, and Open reports so through Rebuilt, so the caller replays the
// log from the start.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("retention index %s: %w", path, err)
	}
	s := &Store{db: db}
	if err := db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if got := meta.Get(keySchema); got != nil && string(got) != schema {
			if err := wipe(tx); err != nil {
				return err
			}
			if meta, err = tx.CreateBucketIfNotExists(bucketMeta); err != nil {
				return err
			}
		}
		for _, b := range [][]byte{bucketCases, bucketDue, bucketTokens} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return meta.Put(keySchema, []byte(schema))
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("retention index %s: %w", path, err)
	}
	return s, nil
}

func wipe(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketMeta, bucketCases, bucketDue, bucketTokens} {
		if tx.Bucket(b) != nil {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

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
// stores it as the checkpoint in the same transaction.
func (s *Store) Update(pos eventstore.Position, fn func(*Tx) error) error {
	return s.db.Update(func(btx *bolt.Tx) error {
		tx := &Tx{tx: btx}
		if err := fn(tx); err != nil {
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
func (s *Store) Reschedule(plan string, next func(*Entry) time.Time) error {
	return s.db.Update(func(btx *bolt.Tx) error {
		tx := &Tx{tx: btx}
		var all []*Entry
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

// Tx is one write transaction.
type Tx struct {
	tx *bolt.Tx
}

// Get returns the entry of a case.
func (t *Tx) Get(caseID string) (*Entry, bool, error) {
	return get(t.tx, caseID)
}

// Put stores e and moves its due-time and token entries to match.
func (t *Tx) Put(e *Entry) error {
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
	for _, tok := range tokens(e) {
		if err := t.tx.Bucket(bucketTokens).Put(tokenKey(tok, e.Case.ID), nil); err != nil {
			return err
		}
	}
	return nil
}

// Delete drops a case and its index entries.
func (t *Tx) Delete(caseID string) error {
	old, found, err := get(t.tx, caseID)
	if err != nil || !found {
		return err
	}
	if err := t.unindex(old); err != nil {
		return err
	}
	return t.tx.Bucket(bucketCases).Delete([]byte(caseID))
}

func (t *Tx) unindex(e *Entry) error {
	if !e.NextDue.IsZero() {
		if err := t.tx.Bucket(bucketDue).Delete(dueKey(e.NextDue, e.Case.ID)); err != nil {
			return err
		}
	}
	for _, tok := range tokens(e) {
		if err := t.tx.Bucket(bucketTokens).Delete(tokenKey(tok, e.Case.ID)); err != nil {
			return err
		}
	}
	return nil
}

// Get returns the entry of a case.
func (s *Store) Get(caseID string) (e *Entry, found bool, err error) {
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

// FindByToken returns the ids of the cases holding a blind-index token.
func (s *Store) FindByToken(token string) ([]string, error) {
	var out []string
	prefix := tokenKey(token, "")
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketTokens).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			out = append(out, string(k[len(prefix):]))
		}
		return nil
	})
	return out, err
}

// Each calls fn for every case, in case id order.
func (s *Store) Each(fn func(*Entry) error) error {
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

func get(tx *bolt.Tx, caseID string) (*Entry, bool, error) {
	v := tx.Bucket(bucketCases).Get([]byte(caseID))
	if v == nil {
		return nil, false, nil
	}
	e, err := decode(v)
	return e, err == nil, err
}

func decode(v []byte) (*Entry, error) {
	var e Entry
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return &e, nil
}

func tokens(e *Entry) []string {
	return slices.Concat(e.ContactTokens, e.IdentityTokens)
}

// dueKey orders by due time: 8 bytes of big-endian Unix nanoseconds
// (times before 1970 sort first as zero) followed by the case id.
func dueKey(at time.Time, caseID string) []byte {
	k := make([]byte, 8, 8+len(caseID))
	binary.BigEndian.PutUint64(k, uint64(max(at.UnixNano(), 0)))
	return append(k, caseID...)
}

func tokenKey(token, caseID string) []byte {
	k := make([]byte, 0, len(token)+1+len(caseID))
	k = append(k, token...)
	k = append(k, 0)
	return append(k, caseID...)
}
