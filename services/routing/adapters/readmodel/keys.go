package readmodel

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// Bucket names. Every bucket is top-level, so a rebuild can drop and
// recreate them all in one transaction.
const (
	// bucketMeta holds the checkpoint and the configuration the stored
	// rows were computed with.
	bucketMeta = "meta"
	// bucketCases maps case id -> record (rowpb.CaseRecord).
	bucketCases = "cases"
	// bucketNumbers maps case number -> case id.
	bucketNumbers = "numbers"
	// bucketByAge indexes open cases: queue, registered_at, case id ->
	// filter attributes (rowpb.OpenEntry).
	bucketByAge = "open_by_age"
	// bucketByDue indexes open cases: queue, due_at, case id -> filter
	// attributes (rowpb.OpenEntry).
	bucketByDue = "open_by_due"
	// bucketLoads maps queue -> counters (rowpb.QueueLoad).
	bucketLoads = "queue_loads"
	// bucketHistory maps case id -> the case's history (rowpb.History).
	bucketHistory = "history"
	// bucketUnrouted indexes the cases registered but not yet routed:
	// case id -> nothing. The router lists it at start and every few
	// minutes, so that costs what is waiting, not what was ever stored.
	bucketUnrouted = "unrouted"
)

func allBuckets() []string {
	return []string{bucketMeta, bucketCases, bucketNumbers, bucketByAge, bucketByDue, bucketLoads, bucketHistory, bucketUnrouted}
}

// Keys in bucketMeta.
const (
	keyCheckpoint = "checkpoint"
	keyConfig     = "config"
	// keyTokenEpoch is the epoch this file shares with its token file
	// (see pkg/tokenindex).
	keyTokenEpoch = "token_epoch"
)

// appendPrefixed appends s with a two-byte length in front. Length
// prefixes make every key component prefix-free, so "q" never matches the
// entries of queue "q2" and case ids need no forbidden separator byte.
func appendPrefixed(b []byte, s string) ([]byte, error) {
	if len(s) > math.MaxUint16 {
		return nil, fmt.Errorf("%w: key component of %d bytes is too long", ErrMalformedEvent, len(s))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...), nil
}

// sortableTime maps a time to a uint64 whose big-endian bytes sort like
// the time. The zero time sorts last, so cases without a due time come
// after all cases that have one.
func sortableTime(t time.Time) uint64 {
	if t.IsZero() {
		return math.MaxUint64
	}
	return uint64(t.UnixNano()) ^ (1 << 63)
}

// queuePrefix is the common prefix of a queue's entries in the open-case
// indexes.
func queuePrefix(queue string) ([]byte, error) {
	return appendPrefixed(make([]byte, 0, 2+len(queue)+8+2+40), queue)
}

func openIndexKey(queue string, t time.Time, caseID string) ([]byte, error) {
	b, err := queuePrefix(queue)
	if err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint64(b, sortableTime(t))
	return appendPrefixed(b, caseID)
}

// caseIDFromOpenKey returns the case id at the end of an open-index key.
func caseIDFromOpenKey(k []byte) (string, error) {
	if len(k) < 2 {
		return "", errCorrupt
	}
	qn := int(binary.BigEndian.Uint16(k))
	rest := k[2:]
	if len(rest) < qn+8+2 {
		return "", errCorrupt
	}
	rest = rest[qn+8:]
	n := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+n {
		return "", errCorrupt
	}
	return string(rest[2:]), nil
}

func hasPrefix(k, prefix []byte) bool { return k != nil && bytes.HasPrefix(k, prefix) }

// decodeSortableTime reverses sortableTime on the eight bytes it wrote.
func decodeSortableTime(b []byte) time.Time {
	v := binary.BigEndian.Uint64(b)
	if v == math.MaxUint64 {
		return time.Time{}
	}
	return time.Unix(0, int64(v^(1<<63))).UTC()
}
