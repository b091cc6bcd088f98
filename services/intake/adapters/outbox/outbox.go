// Package outbox keeps intake's mail outbox in a bbolt file: the mails the
// log decided and not yet recorded as sent or failed, and the checkpoint
// of the events applied, committed together (see app.Outbox). Items are
// references (case id, kind, answer event id, attempts, next time): no
// address or text is ever written here.
package outbox

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/services/intake/app"
)

var (
	metaBucket  = []byte("meta")
	itemsBucket = []byte("items")
	// sentBucket maps the Message-ID of every mail kontakt sent to its
	// case id; sentByCaseBucket holds "<case id>\x00<Message-ID>" keys,
	// so a deleted case's entries go without a scan. Message-IDs are
	// derived from the case (domain.MessageID) and name nothing personal.
	sentBucket       = []byte("sent")
	sentByCaseBucket = []byte("sent-by-case")
	checkpoint       = []byte("checkpoint")
)

// Store is the bbolt outbox.
type Store struct{ db *bolt.DB }

// Open opens (or creates) the outbox file. bbolt syncs every commit, so
// an item is on disk when Apply returns.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("outbox %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{metaBucket, itemsBucket, sentBucket, sentByCaseBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("outbox %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// record is an item as stored.
type record struct {
	CaseID        string    `json:"case_id"`
	Kind          int32     `json:"kind"`
	AnswerEventID string    `json:"answer_event_id,omitempty"`
	Attempts      int       `json:"attempts"`
	NextAt        time.Time `json:"next_at"`
}

func encode(it app.OutboxItem) ([]byte, error) {
	return json.Marshal(record{CaseID: it.CaseID, Kind: int32(it.Kind), AnswerEventID: it.AnswerEventID, Attempts: it.Attempts, NextAt: it.NextAt.UTC()})
}

func decode(b []byte) (app.OutboxItem, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return app.OutboxItem{}, err
	}
	return app.OutboxItem{CaseID: r.CaseID, Kind: casev1.MailKind(r.Kind), AnswerEventID: r.AnswerEventID, Attempts: r.Attempts, NextAt: r.NextAt}, nil
}

// Checkpoint returns the position of the last applied event.
func (s *Store) Checkpoint() (eventstore.Position, error) {
	var p eventstore.Position
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(metaBucket).Get(checkpoint); len(v) == 8 {
			p = eventstore.Position(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	return p, err
}

// Apply adds, removes, indexes and moves the checkpoint in one
// transaction.
func (s *Store) Apply(add []app.OutboxItem, done []string, sent []app.SentMail, deleted []string, cp eventstore.Position) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		byID, byCase := tx.Bucket(sentBucket), tx.Bucket(sentByCaseBucket)
		for _, m := range sent {
			if err := byID.Put([]byte(m.MessageID), []byte(m.CaseID)); err != nil {
				return err
			}
			if err := byCase.Put([]byte(m.CaseID+"\x00"+m.MessageID), nil); err != nil {
				return err
			}
		}
		for _, caseID := range deleted {
			prefix := []byte(caseID + "\x00")
			c := byCase.Cursor()
			var keys [][]byte
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				keys = append(keys, bytes.Clone(k))
			}
			for _, k := range keys {
				if err := byID.Delete(k[len(prefix):]); err != nil {
					return err
				}
				if err := byCase.Delete(k); err != nil {
					return err
				}
			}
		}
		items := tx.Bucket(itemsBucket)
		for _, it := range add {
			if items.Get([]byte(it.Key())) != nil {
				continue
			}
			v, err := encode(it)
			if err != nil {
				return err
			}
			if err := items.Put([]byte(it.Key()), v); err != nil {
				return err
			}
		}
		for _, k := range done {
			if err := items.Delete([]byte(k)); err != nil {
				return err
			}
		}
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(cp))
		return tx.Bucket(metaBucket).Put(checkpoint, b[:])
	})
}

// CaseOfMessage returns the case a mail with the Message-ID was sent
// about: one read of the index.
func (s *Store) CaseOfMessage(messageID string) (caseID string, found bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(sentBucket).Get([]byte(messageID)); v != nil {
			caseID, found = string(v), true
		}
		return nil
	})
	return caseID, found, err
}

// Due returns up to limit items due at now, in key order. The outbox
// holds what is waiting for the relay, a handful at a time, so a scan is
// cheaper than keeping a second index by time.
func (s *Store) Due(now time.Time, limit int) ([]app.OutboxItem, error) {
	var out []app.OutboxItem
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(itemsBucket).ForEach(func(_, v []byte) error {
			if len(out) >= limit {
				return nil
			}
			it, err := decode(v)
			if err != nil {
				return err
			}
			if !it.NextAt.After(now) {
				out = append(out, it)
			}
			return nil
		})
	})
	return out, err
}

// Put replaces an item that is still there; one removed meanwhile (its
// outcome was recorded) stays removed.
func (s *Store) Put(it app.OutboxItem) error {
	v, err := encode(it)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		items := tx.Bucket(itemsBucket)
		if items.Get([]byte(it.Key())) == nil {
			return nil
		}
		return items.Put([]byte(it.Key()), v)
	})
}

// Remove drops an item.
func (s *Store) Remove(key string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(itemsBucket).Delete([]byte(key)) })
}

// Len counts the items waiting, for a metric and for tests.
func (s *Store) Len() (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(itemsBucket).Stats().KeyN; return nil })
	return n, err
}
