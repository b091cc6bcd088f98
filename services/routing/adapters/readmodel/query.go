package readmodel

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/services/routing/adapters/readmodel/internal/rowpb"
	"github.com/kontakt-se/kontakt/services/routing/app"
)

// Get returns one case, or an error wrapping app.ErrNotFound.
func (s *Store) Get(caseID string) (app.CaseRow, error) {
	var row app.CaseRow
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		row, err = s.getRow(tx, caseID)
		return err
	})
	if err != nil {
		return app.CaseRow{}, fmt.Errorf("readmodel: get case %s: %w", caseID, err)
	}
	return row, nil
}

func (s *Store) getRow(tx *bolt.Tx, caseID string) (app.CaseRow, error) {
	v := tx.Bucket([]byte(bucketCases)).Get([]byte(caseID))
	if v == nil {
		return app.CaseRow{}, app.ErrNotFound
	}
	r, err := decodeRecord(caseID, v)
	if err != nil {
		return app.CaseRow{}, err
	}
	return r.row(s.sla), nil
}

// FindByNumber returns the case with a case number, or an error wrapping
// app.ErrNotFound.
func (s *Store) FindByNumber(number string) (app.CaseRow, error) {
	var row app.CaseRow
	err := s.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket([]byte(bucketNumbers)).Get([]byte(number))
		if id == nil {
			return app.ErrNotFound
		}
		var err error
		row, err = s.getRow(tx, string(id))
		return err
	})
	if err != nil {
		// The case number is no personal data; it may be logged.
		return app.CaseRow{}, fmt.Errorf("readmodel: find case number %q: %w", number, err)
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
func (s *Store) FindByToken(token string) ([]app.CaseRow, error) {
	ids, err := s.tokens.Find(token)
	if err != nil {
		return nil, fmt.Errorf("readmodel: find by token: %w", err)
	}
	var rows []app.CaseRow
	err = s.db.View(func(tx *bolt.Tx) error {
		for _, id := range ids {
			r, err := s.getRow(tx, id)
			if errors.Is(err, app.ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("case %s of a token: %w", id, err)
			}
			rows = append(rows, r)
		}
		return nil
	})
	if err != nil {
		// Never the token itself: it links a person's cases.
		return nil, fmt.Errorf("readmodel: find by token: %w", err)
	}
	slices.SortFunc(rows, func(a, b app.CaseRow) int {
		return cmp.Or(a.RegisteredAt.Compare(b.RegisteredAt), cmp.Compare(a.CaseID, b.CaseID))
	})
	return rows, nil
}

// History returns a case's history in log order, or an error wrapping
// app.ErrNotFound.
func (s *Store) History(caseID string) ([]app.HistoryEntry, error) {
	var out []app.HistoryEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte(bucketCases)).Get([]byte(caseID)) == nil {
			return app.ErrNotFound
		}
		v := tx.Bucket([]byte(bucketHistory)).Get([]byte(caseID))
		if v == nil {
			return nil
		}
		var err error
		out, err = decodeHistory(caseID, v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("readmodel: history of case %s: %w", caseID, err)
	}
	return out, nil
}

// QueueLoad returns a queue's counters. A queue without open cases (or
// one nobody ever routed to) has zero counters.
func (s *Store) QueueLoad(queue string) (app.QueueLoad, error) {
	var l app.QueueLoad
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		l, err = decodeLoad(queue, tx.Bucket([]byte(bucketLoads)).Get([]byte(queue)))
		return err
	})
	if err != nil {
		return app.QueueLoad{}, fmt.Errorf("readmodel: load of queue %q: %w", queue, err)
	}
	return l, nil
}

// PastDue counts the queue's open cases whose due time is before now.
// It walks the due-order index from the queue's earliest due time and
// stops at the first case not yet due, so a scrape costs the cases past
// due, never every case stored.
func (s *Store) PastDue(queue string, now time.Time) (int, error) {
	prefix, err := queuePrefix(queue)
	if err != nil {
		return 0, err
	}
	var end [8]byte
	binary.BigEndian.PutUint64(end[:], sortableTime(now))
	n := 0
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketByDue)).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) < len(prefix)+8 || bytes.Compare(k[len(prefix):len(prefix)+8], end[:]) >= 0 {
				break
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("readmodel: cases past due in queue %q: %w", queue, err)
	}
	return n, nil
}

// AllQueueLoads returns the counters of every queue that has open cases,
// ordered by queue name. Queues without open cases are left out; the
// caller merges in its configured queues.
func (s *Store) AllQueueLoads() ([]app.QueueLoad, error) {
	var out []app.QueueLoad
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
// the page. Page size 0 means DefaultPageSize; it is capped at
// MaxPageSize. nextToken is empty on the last page; an invalid token
// gives app.ErrInvalidPageToken.
func (s *Store) ListQueue(query app.QueueQuery) ([]app.CaseRow, string, error) {
	queue, types, channels, pageSize, pageToken := query.Queue, query.Types, query.Channels, query.PageSize, query.PageToken
	switch {
	case pageSize <= 0:
		pageSize = DefaultPageSize
	case pageSize > MaxPageSize:
		pageSize = MaxPageSize
	}
	bucket, orderByte := bucketByAge, tokenOrderAge
	if query.Order == routingv1.QueueOrder_QUEUE_ORDER_DUE {
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
			return nil, "", fmt.Errorf("readmodel: list queue %q: %w", queue, app.ErrInvalidPageToken)
		}
		if _, err := caseIDFromOpenKey(raw[1:]); err != nil {
			return nil, "", fmt.Errorf("readmodel: list queue %q: %w", queue, app.ErrInvalidPageToken)
		}
		after = raw[1:]
	}
	var entry rowpb.OpenEntry
	match := func(v []byte) (bool, error) {
		if len(types) == 0 && len(channels) == 0 {
			return true, nil
		}
		if err := proto.Unmarshal(v, &entry); err != nil {
			return false, fmt.Errorf("%w: open index entry: %w", errCorrupt, err)
		}
		return (len(types) == 0 || slices.Contains(types, entry.GetType())) && (len(channels) == 0 || slices.Contains(channels, entry.GetChannel())), nil
	}

	rows := make([]app.CaseRow, 0, min(pageSize, 64))
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
			r, err := decodeRecord(id, rv)
			if err != nil {
				return err
			}
			rows = append(rows, r.row(s.sla))
			last = k
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("readmodel: list queue %q: %w", queue, err)
	}
	return rows, next, nil
}
