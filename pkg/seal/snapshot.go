package seal

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kontakt-se/kontakt/pkg/jsread"
)

// ErrReadOnly is returned by a key snapshot's Create and Destroy.
var ErrReadOnly = errors.New("seal: the key snapshot is read-only")

// Snapshot reads every case's record into memory in one pass over the key
// stream and returns a KeyStore that answers Get from it and refuses
// writes. It is for replaying the whole log while kontakt is stopped
// (`kontakt rebuild`), where opening a case's data would otherwise cost a
// request to the stream's leader per case, one after the other: for a
// routing rebuild of 10,000 cases those requests were a fifth of the
// CPU and most of the waiting. The pass is one bulk read (pkg/jsread),
// at the rate of a raw consumer.
//
// A snapshot is as true as the stream when it was read: a key destroyed
// afterwards still opens from it. That is the race every reader of a key
// has with a redaction (see Sealer.Destroy), and for a rebuild it ends the
// same way: the redaction's event, later in the log, drops what was
// derived from the data. The records are kept as stored, about 100 to
// 300 bytes per case, and each is checked as Get checks it when it is
// used.
func (s *NATSKeyStore) Snapshot(ctx context.Context) (KeyStore, error) {
	snap := &keySnapshot{records: map[string]snapshotRecord{}}
	err := jsread.Each(ctx, s.js, jsread.Range{Stream: s.StreamName(), Subjects: []string{s.subject + ">"}},
		func(m jsread.Msg) error {
			caseID := strings.TrimPrefix(m.Subject, s.subject)
			// The last message of a subject is its record; the stream
			// holds older ones only when a writer stopped between writing
			// a record and erasing the one it replaced.
			snap.records[caseID] = snapshotRecord{data: m.Data, seq: m.Sequence, marker: isMarker(m.Header)}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("seal: snapshot of the key stream: %w", err)
	}
	return snap, nil
}

// keySnapshot is the KeyStore that Snapshot returns.
type keySnapshot struct {
	records map[string]snapshotRecord
}

type snapshotRecord struct {
	data   []byte
	seq    uint64
	marker bool
}

// Get implements KeyStore as NATSKeyStore.Get does, from the snapshot.
func (k *keySnapshot) Get(_ context.Context, keyID string) ([]byte, error) {
	ref, err := refOf(keyID)
	if err != nil {
		return nil, err
	}
	var r caseRecord
	switch sr, ok := k.records[ref.caseID]; {
	case !ok:
	case sr.marker:
		r = caseRecord{gone: true}
	default:
		if r, err = decodeRecord(sr.data); err != nil {
			return nil, fmt.Errorf("seal: get key %s: record at sequence %d: %w", keyID, sr.seq, err)
		}
	}
	return wrappedKey(r, ref, keyID)
}

// Create implements KeyStore: a snapshot makes no keys.
func (k *keySnapshot) Create(context.Context, string, []byte) error { return ErrReadOnly }

// Destroy implements KeyStore: a snapshot destroys no keys.
func (k *keySnapshot) Destroy(context.Context, ...string) error { return ErrReadOnly }
