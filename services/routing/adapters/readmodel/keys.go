package readmodel

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// Bucket names. Every bucket is top-level, so a rebuild can drop and
// recreate them all in one transaction.
const (
	// bucketMeta holds the checkpoint and the configuration the stored
	// rows were computed with.
	bucketMeta = "meta"
	// bucketCases maps case id -> record.
	bucketCases = "cases"
	// bucketNumbers maps case number -> case id.
	bucketNumbers = "numbers"
	// bucketByAge indexes open cases: queue, registered_at, case id ->
	// filter attributes.
	bucketByAge = "open_by_age"
	// bucketByDue indexes open cases: queue, due_at, case id -> filter
	// attributes.
	bucketByDue = "open_by_due"
	// bucketLoads maps queue -> Load counters.
	bucketLoads = "queue_loads"
	// bucketHistory holds history entries: case id, position -> entry.
	bucketHistory = "history"
)

func allBuckets() []string {
	return []string{bucketMeta, bucketCases, bucketNumbers, bucketByAge, bucketByDue, bucketLoads, bucketHistory}
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

// openIndexValue holds what ListQueue filters by, so filtering needs no
// read of the case row.
func openIndexValue(t casev1.CaseType, ch casev1.Channel) []byte {
	b := protowire.AppendVarint(nil, uint64(int64(t)))
	return protowire.AppendVarint(b, uint64(int64(ch)))
}

func decodeOpenIndexValue(v []byte) (casev1.CaseType, casev1.Channel, error) {
	t, n := protowire.ConsumeVarint(v)
	if n < 0 {
		return 0, 0, errCorrupt
	}
	ch, m := protowire.ConsumeVarint(v[n:])
	if m < 0 {
		return 0, 0, errCorrupt
	}
	return casev1.CaseType(int32(t)), casev1.Channel(int32(ch)), nil
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

func historyPrefix(caseID string) ([]byte, error) {
	return appendPrefixed(nil, caseID)
}

func historyKey(caseID string, pos eventstore.Position) ([]byte, error) {
	b, err := historyPrefix(caseID)
	if err != nil {
		return nil, err
	}
	return binary.BigEndian.AppendUint64(b, uint64(pos)), nil
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
