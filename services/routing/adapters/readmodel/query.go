package readmodel

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// Get returns one case, or ErrNotFound.
func (s *Store) Get(caseID string) (CaseRow, error) {
	var row CaseRow
	err := s.db.View(func(tx *bolt.Tx) error {
		r, err := getRecord(tx, caseID)
		if err != nil {
			return err
		}
		row = r.CaseRow
		return nil
	})
	if err != nil {
		return CaseRow{}, fmt.Errorf("readmodel: get case %s: %w", caseID, err)
	}
	return row, nil
}

func getRecord(tx *bolt.Tx, caseID string) (*record, error) {
	v := tx.Bucket([]byte(bucketCases)).Get([]byte(caseID))
	if v == nil {
		return nil, ErrNotFound
	}
	return decodeRecord(v)
}

// FindByNumber returns the case with a case number, or ErrNotFound.
func (s *Store) FindByNumber(number string) (CaseRow, error) {
	var row CaseRow
	err := s.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket([]byte(bucketNumbers)).Get([]byte(number))
		if id == nil {
			return ErrNotFound
		}
		r, err := getRecord(tx, string(id))
		if err != nil {
			return err
		}
		row = r.CaseRow
		return nil
	})
	if err != nil {
		// The case number is no personal data; it may be logged.
		return CaseRow{}, fmt.Errorf("readmodel: find case number %q: %w", number, err)
	}
	return row, nil
}

// FindByToken returns the cases a blind-index token stands for, oldest
// first, closed cases included: it answers "this caller's earlier cases"
// and register extracts. An unknown token gives no cases and no error.
//
// The token file may name a case this file does not hold (yet, or any
// more): it commits before this file, so after a crash it can be a batch
// ahead until the projector has replayed that batch. Such a case is left
// out.
func (s *Store) FindByToken(token string) ([]CaseRow, error) {
	ids, err := s.tokens.Find(token)
	if err != nil {
		return nil, fmt.Errorf("readmodel: find by token: %w", err)
	}
	var rows []CaseRow
	err = s.db.View(func(tx *bolt.Tx) error {
		for _, id := range ids {
			r, err := getRecord(tx, id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("case %s of a token: %w", id, err)
			}
			rows = append(rows, r.CaseRow)
		}
		return nil
	})
	if err != nil {
		// Never the token itself: it links a person's cases.
		return nil, fmt.Errorf("readmodel: find by token: %w", err)
	}
	slices.SortFunc(rows, func(a, b CaseRow) int {
		return cmp.Or(a.RegisteredAt.Compare(b.RegisteredAt), cmp.Compare(a.CaseID, b.CaseID))
	})
	return rows, nil
}

// History returns a case's history in log order, or ErrNotFound.
func (s *Store) History(caseID string) ([]HistoryEntry, error) {
	var out []HistoryEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte(bucketCases)).Get([]byte(caseID)) == nil {
			return ErrNotFound
		}
		prefix, err := historyPrefix(caseID)
		if err != nil {
			return err
		}
		c := tx.Bucket([]byte(bucketHistory)).Cursor()
		for k, v := c.Seek(prefix); hasPrefix(k, prefix); k, v = c.Next() {
			if len(k) != len(prefix)+8 {
				return errCorrupt
			}
			h, err := decodeHistory(v)
			if err != nil {
				return err
			}
			h.Position = eventstore.Position(binary.BigEndian.Uint64(k[len(prefix):]))
			out = append(out, h)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("readmodel: history of case %s: %w", caseID, err)
	}
	return out, nil
}

// QueueLoad returns a queue's counters. A queue without open cases (or
// one nobody ever routed to) has zero counters.
func (s *Store) QueueLoad(queue string) (Load, error) {
	var l Load
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		l, err = decodeLoad(queue, tx.Bucket([]byte(bucketLoads)).Get([]byte(queue)))
		return err
	})
	if err != nil {
		return Load{}, fmt.Errorf("readmodel: load of queue %q: %w", queue, err)
	}
	return l, nil
}

// AllQueueLoads returns the counters of every queue that has open cases,
// ordered by queue name. Queues without open cases are left out; the
// caller merges in its configured queues.
func (s *Store) AllQueueLoads() ([]Load, error) {
	var out []Load
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketLoads)).ForEach(func(k, v []byte) error {
			l, err := decodeLoad(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, l)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("readmodel: queue loads: %w", err)
	}
	return out, nil
}

// Page token layout: one byte for the order, then the index key of the
// last case returned. Continuing after that key (instead of an offset)
// keeps pages stable while cases enter and leave the queue.
const (
	tokenOrderAge byte = 1
	tokenOrderDue byte = 2
)

// ListQueue returns a page of the open (not closed) cases of a queue,
// oldest first (QUEUE_ORDER_AGE, the default) or earliest due first
// (QUEUE_ORDER_DUE), keeping only the given case types and channels when
// those are not empty. Filters are applied while the index is scanned,
// from attributes kept in the index, so rows are read only for cases on
// the page. pageSize 0 means DefaultPageSize; it is capped at MaxPageSize.
// nextToken is empty on the last page; an invalid token gives
// ErrInvalidPageToken.
func (s *Store) ListQueue(queue string, order routingv1.QueueOrder, types []casev1.CaseType, channels []casev1.Channel, pageSize int, pageToken string) ([]CaseRow, string, error) {
	switch {
	case pageSize <= 0:
		pageSize = DefaultPageSize
	case pageSize > MaxPageSize:
		pageSize = MaxPageSize
	}
	bucket, orderByte := bucketByAge, tokenOrderAge
	if order == routingv1.QueueOrder_QUEUE_ORDER_DUE {
		bucket, orderByte = bucketByDue, tokenOrderDue
	}
	prefix, err := queuePrefix(queue)
	if err != nil {
		return nil, "", fmt.Errorf("readmodel: list queue: %w", err)
	}
	var after []byte
	if pageToken != "" {
		raw, err := base64.RawURLEncoding.DecodeString(pageToken)
		if err != nil || len(raw) < 1 || raw[0] != orderByte || !bytes.HasPrefix(raw[1:], prefix) {
			return nil, "", fmt.Errorf("readmodel: list queue %q: %w", queue, ErrInvalidPageToken)
		}
		if _, err := caseIDFromOpenKey(raw[1:]); err != nil {
			return nil, "", fmt.Errorf("readmodel: list queue %q: %w", queue, ErrInvalidPageToken)
		}
		after = raw[1:]
	}
	match := func(v []byte) (bool, error) {
		if len(types) == 0 && len(channels) == 0 {
			return true, nil
		}
		t, ch, err := decodeOpenIndexValue(v)
		if err != nil {
			return false, err
		}
		return (len(types) == 0 || slices.Contains(types, t)) && (len(channels) == 0 || slices.Contains(channels, ch)), nil
	}

	rows := make([]CaseRow, 0, min(pageSize, 64))
	var next string
	err = s.db.View(func(tx *bolt.Tx) error {
		cases := tx.Bucket([]byte(bucketCases))
		c := tx.Bucket([]byte(bucket)).Cursor()
		k, v := c.Seek(prefix)
		if after != nil {
			k, v = c.Seek(after)
			if bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		var last []byte
		for ; hasPrefix(k, prefix); k, v = c.Next() {
			ok, err := match(v)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if len(rows) == pageSize {
				// There is at least one more: the page gets a token.
				next = base64.RawURLEncoding.EncodeToString(append([]byte{orderByte}, last...))
				return nil
			}
			id, err := caseIDFromOpenKey(k)
			if err != nil {
				return err
			}
			rv := cases.Get([]byte(id))
			if rv == nil {
				return fmt.Errorf("case %s is in the open index but has no row: %w", id, errCorrupt)
			}
			r, err := decodeRecord(rv)
			if err != nil {
				return err
			}
			rows = append(rows, r.CaseRow)
			last = k
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("readmodel: list queue %q: %w", queue, err)
	}
	return rows, next, nil
}
