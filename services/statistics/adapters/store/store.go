// Package store is the statistics service's read model in a bbolt file:
// the state of every live case (case id -> statistics id and current
// record), the latest version of every record (statistics id -> record,
// kept for ever), an index of records by registered hour for queries, the
// projector's checkpoint and the outbox of record versions still to be
// published.
//
// The projector writes a whole batch of events in one transaction:
// states, records, index entries, the checkpoint (the position of the
// batch's last event) and the outbox (the batch's record versions, as the
// exact bytes to publish). So the file always reflects exactly the events
// up to its checkpoint, and the versions those events produced are either
// in the stream already or in the outbox.
//
// Nothing in the file identifies a person. The case id -> statistics id
// mapping is deleted with the case. (bbolt does not zero the pages it
// frees, so a deleted mapping can linger in free pages of the file until
// they are reused; the file is as private as the case stream itself.)
package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/services/statistics/app"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

// ErrSchema means the file was written with a layout this binary does not
// read.
var ErrSchema = errors.New("statistics store: unknown file layout")

// schemaVersion names the file layout.
const schemaVersion = 1

// Bucket names. All are top-level.
const (
	// bucketMeta holds the checkpoint, the stream sequence a restart
	// scans from, and the schema version.
	bucketMeta = "meta"
	// bucketCases maps case id -> case state (exact registration time and
	// current record). Deleted with the case.
	bucketCases = "cases"
	// bucketRecords maps statistics id -> latest record version. Kept for
	// ever.
	bucketRecords = "records"
	// bucketByHour maps registered hour, statistics id -> the facts a
	// query aggregates.
	bucketByHour = "by_hour"
	// bucketOutbox holds the last batch's messages, by index.
	bucketOutbox = "outbox"
)

func allBuckets() []string {
	return []string{bucketMeta, bucketCases, bucketRecords, bucketByHour, bucketOutbox}
}

// Keys in bucketMeta.
const (
	keyCheckpoint = "checkpoint"
	keyScanFrom   = "scan_from"
	keySchema     = "schema"
)

// Options configures a Store.
type Options struct {
	// OpenTimeout bounds how long Open waits for the file lock another
	// process holds; zero means one second. The lock is what keeps two
	// projectors from sharing one file.
	OpenTimeout time.Duration
}

// Store is the read model. Queries run in parallel with each other and
// with the one writer.
type Store struct {
	db *bolt.DB
}

// WriteTo writes a consistent copy of the file to w (one read
// transaction), for a backup taken while the projector runs.
func (s *Store) WriteTo(w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Open opens or creates the file at path with mode 0600.
func Open(path string, opts Options) (*Store, error) {
	timeout := opts.OpenTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("statistics store: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets() {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket([]byte(bucketMeta))
		want := strconv.Itoa(schemaVersion)
		switch got := string(meta.Get([]byte(keySchema))); got {
		case "":
			return meta.Put([]byte(keySchema), []byte(want))
		case want:
			return nil
		default:
			return fmt.Errorf("%w: schema %q, this binary reads %q", ErrSchema, got, want)
		}
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("statistics store: initialise %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("statistics store: close: %w", err)
	}
	return nil
}

// State reads the checkpoint, the scan position and the outbox.
func (s *Store) State() (app.ReadModelState, error) {
	var st app.ReadModelState
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte(bucketMeta))
		cp, err := getUint(meta, keyCheckpoint)
		if err != nil {
			return err
		}
		st.Checkpoint = eventstore.Position(cp)
		if st.ScanFrom, err = getUint(meta, keyScanFrom); err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketOutbox)).ForEach(func(_, v []byte) error {
			m, err := decodeOutbox(v)
			if err != nil {
				return err
			}
			st.Outbox = append(st.Outbox, m)
			return nil
		})
	})
	if err != nil {
		return app.ReadModelState{}, fmt.Errorf("statistics store: read state: %w", err)
	}
	return st, nil
}

// Checkpoint returns the position of the last applied event.
func (s *Store) Checkpoint() (eventstore.Position, error) {
	st, err := s.State()
	return st.Checkpoint, err
}

func getUint(b *bolt.Bucket, key string) (uint64, error) {
	v := b.Get([]byte(key))
	switch len(v) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(v), nil
	default:
		return 0, fmt.Errorf("%w: %s", errCorrupt, key)
	}
}

func putUint(b *bolt.Bucket, key string, v uint64) error {
	return b.Put([]byte(key), binary.BigEndian.AppendUint64(nil, v))
}

// Tx is one write transaction of the projector (app.Tx).
type Tx struct {
	tx *bolt.Tx
}

// Update runs fn in one write transaction, committed when fn returns nil
// and rolled back otherwise.
func (s *Store) Update(fn func(app.Tx) error) error {
	if err := s.db.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) }); err != nil {
		return fmt.Errorf("statistics store: update: %w", err)
	}
	return nil
}

// Reset empties every bucket, the checkpoint, the scan position and the
// outbox included, in one transaction: a rebuild then reads the stream
// from its start and projects the log from its start (see app.Projector).
func (s *Store) Reset() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets() {
			if err := tx.DeleteBucket([]byte(name)); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
				return fmt.Errorf("drop bucket %s: %w", name, err)
			}
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return tx.Bucket([]byte(bucketMeta)).Put([]byte(keySchema), []byte(strconv.Itoa(schemaVersion)))
	})
	if err != nil {
		return fmt.Errorf("statistics store: reset: %w", err)
	}
	return nil
}

// Checkpoint returns the checkpoint as this transaction sees it.
func (t *Tx) Checkpoint() (eventstore.Position, error) {
	v, err := getUint(t.tx.Bucket([]byte(bucketMeta)), keyCheckpoint)
	return eventstore.Position(v), err
}

// Case returns a live case's state, or nil when there is none.
func (t *Tx) Case(caseID string) (*domain.Case, error) {
	return getCase(t.tx, caseID)
}

func getCase(tx *bolt.Tx, caseID string) (*domain.Case, error) {
	v := tx.Bucket([]byte(bucketCases)).Get([]byte(caseID))
	if v == nil {
		return nil, nil
	}
	return decodeCase(v)
}

// PutCase stores a case's state.
func (t *Tx) PutCase(caseID string, c *domain.Case) error {
	v, err := encodeCase(c)
	if err != nil {
		return err
	}
	return t.tx.Bucket([]byte(bucketCases)).Put([]byte(caseID), v)
}

// DeleteCase drops a case's state, and with it the only link between the
// case and its record.
func (t *Tx) DeleteCase(caseID string) error {
	return t.tx.Bucket([]byte(bucketCases)).Delete([]byte(caseID))
}

// RecordVersion returns the version of the stored record, 0 when there
// is none.
func (t *Tx) RecordVersion(statisticsID string) (int64, error) {
	v := t.tx.Bucket([]byte(bucketRecords)).Get([]byte(statisticsID))
	if v == nil {
		return 0, nil
	}
	version, _, err := recordValueVersion(v)
	return version, err
}

// PutRecord stores a record version and its index entry unless the store
// holds that version or a newer one already (which happens when records
// were recovered from the stream before the events that made them were
// projected again). It reports whether it wrote.
func (t *Tx) PutRecord(r domain.Record) (bool, error) {
	return putRecord(t.tx, r, false)
}

// putRecord stores r unless the stored version is newer, or as new and
// either equal or not from the stream: of two different records of the
// same version (two instances that disagreed), the stream's wins.
func putRecord(tx *bolt.Tx, r domain.Record, fromStream bool) (bool, error) {
	records := tx.Bucket([]byte(bucketRecords))
	byHour := tx.Bucket([]byte(bucketByHour))
	id := []byte(r.StatisticsID)
	if len(id) == 0 {
		return false, fmt.Errorf("statistics store: record without statistics id")
	}
	v, err := encodeRecordValue(r)
	if err != nil {
		return false, err
	}
	if old := records.Get(id); old != nil {
		version, hour, err := recordValueVersion(old)
		if err != nil {
			return false, err
		}
		if version > r.Version || version == r.Version && (!fromStream || bytes.Equal(old, v)) {
			return false, nil
		}
		if hour != sortableHour(r.RegisteredHour) {
			// A record's hour never changes; this only keeps the index
			// right should it ever.
			if err := byHour.Delete(hourKey(hour, r.StatisticsID)); err != nil {
				return false, err
			}
		}
	}
	if err := records.Put(id, v); err != nil {
		return false, err
	}
	if err := byHour.Put(hourKey(sortableHour(r.RegisteredHour), r.StatisticsID), encodeFacts(r)); err != nil {
		return false, err
	}
	return true, nil
}

// Finish records the end of a batch: the checkpoint, where a restart
// scans the stream from, and the batch's messages, which replace the
// previous batch's (all published by now).
func (t *Tx) Finish(checkpoint eventstore.Position, scanFrom uint64, outbox []domain.Message) error {
	meta := t.tx.Bucket([]byte(bucketMeta))
	if err := putUint(meta, keyCheckpoint, uint64(checkpoint)); err != nil {
		return err
	}
	if err := putUint(meta, keyScanFrom, scanFrom); err != nil {
		return err
	}
	if err := t.tx.DeleteBucket([]byte(bucketOutbox)); err != nil {
		return err
	}
	ob, err := t.tx.CreateBucket([]byte(bucketOutbox))
	if err != nil {
		return err
	}
	for i, m := range outbox {
		if err := ob.Put(binary.BigEndian.AppendUint32(nil, uint32(i)), encodeOutbox(m)); err != nil {
			return err
		}
	}
	return nil
}

// UpsertRecords stores records read from the statistics stream in one
// transaction, each only if it is newer than the stored version (see
// PutRecord) or of the same version but different (the stream is the
// truth every instance converges on), and returns how many it wrote.
func (s *Store) UpsertRecords(rs []domain.Record) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, r := range rs {
			wrote, err := putRecord(tx, r, true)
			if err != nil {
				return err
			}
			if wrote {
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("statistics store: upsert records: %w", err)
	}
	return n, nil
}

// Scan calls fn with the facts of every record registered in
// [from, to) (Unix seconds), in hour order. The facts and their byte
// slices are valid only during the call. Category, queue and department
// are filled in only when names is set.
func (s *Store) Scan(from, to int64, names bool, fn func(*domain.Facts)) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketByHour)).Cursor()
		var f domain.Facts
		seek := binary.BigEndian.AppendUint64(nil, sortableUnix(from))
		for k, v := c.Seek(seek); k != nil; k, v = c.Next() {
			if len(k) < 8 {
				return fmt.Errorf("%w: index key", errCorrupt)
			}
			hour := unixFromSortable(binary.BigEndian.Uint64(k))
			if hour >= to {
				return nil
			}
			if err := decodeFacts(v, &f, names); err != nil {
				return err
			}
			f.Hour = hour
			fn(&f)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("statistics store: scan: %w", err)
	}
	return nil
}

// Records returns the latest version of every record, in statistics id
// order.
func (s *Store) Records() ([]domain.Record, error) {
	var out []domain.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketRecords)).ForEach(func(_, v []byte) error {
			r, err := decodeRecordValue(v)
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("statistics store: records: %w", err)
	}
	return out, nil
}

// Case returns a live case's state, or nil when the store has none (never
// registered, or deleted).
func (s *Store) Case(caseID string) (*domain.Case, error) {
	var c *domain.Case
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		c, err = getCase(tx, caseID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("statistics store: case: %w", err)
	}
	return c, nil
}

// CaseCount returns the number of live cases the store maps.
func (s *Store) CaseCount() (int, error) {
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte(bucketCases)).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("statistics store: count cases: %w", err)
	}
	return n, nil
}

// OpenReadOnly opens the file for reading only, for `kontakt check`:
// bbolt's shared lock and no write of any kind (no buckets created, no
// schema recorded). A file of another layout is ErrSchema.
func OpenReadOnly(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("statistics store: open %s read-only: %w", path, err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		for _, name := range allBuckets() {
			if tx.Bucket([]byte(name)) == nil {
				return fmt.Errorf("%w: no bucket %s", ErrSchema, name)
			}
		}
		if got := string(tx.Bucket([]byte(bucketMeta)).Get([]byte(keySchema))); got != strconv.Itoa(schemaVersion) {
			return fmt.Errorf("%w: schema %q, this binary reads %d", ErrSchema, got, schemaVersion)
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("statistics store: %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// EachCase calls fn with every live case's state, in case id order.
func (s *Store) EachCase(fn func(caseID string, c *domain.Case) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketCases)).ForEach(func(k, v []byte) error {
			c, err := decodeCase(v)
			if err != nil {
				return err
			}
			return fn(string(k), c)
		})
	})
}
