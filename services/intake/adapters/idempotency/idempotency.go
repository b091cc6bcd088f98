// Package idempotency remembers e-service form submissions in a NATS
// JetStream key-value bucket, so that a form that retries a submission
// (after a timeout, a double click, a reconnect) gets the first answer
// instead of creating a second case, whichever intake instance it reaches.
//
// Each record is stored under the caller's key as JSON. The record's
// revision is the JetStream revision of the entry, which makes Claim an
// atomic create and Complete a compare-and-set. The bucket's TTL removes
// records after Config.TTL, which must be at least seven days because that
// is how long intake promises to recognise a retry. A record is measured
// from its last write, so a completed record lives TTL from completion.
//
// Claims and completions that arrive while another write is in flight are
// written together, as one JetStream atomic batch (see groupcommit): on a
// sync-always server each write otherwise waits for a disk sync of its
// own, one after the other, and a form submission makes two of them. A
// batch that a write's expectation refuses stores nothing, and its writes
// are then made one by one, each with its own outcome.
//
// Records hold only a payload hash, a case id, a case number and a time:
// no personal data, as the keys are hashed by the caller too.
package idempotency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kontakt-se/kontakt/pkg/groupcommit"
	"github.com/kontakt-se/kontakt/pkg/jsbatch"
	"github.com/kontakt-se/kontakt/pkg/natserr"
	"github.com/kontakt-se/kontakt/services/intake/app"
)

// Defaults and limits for Config.
const (
	// DefaultBucket is the key-value bucket that holds the records.
	DefaultBucket = "KONTAKT_IDEMPOTENCY"
	// MinTTL is the shortest record lifetime New accepts: intake promises
	// that a retry within seven days returns the first answer.
	MinTTL = 7 * 24 * time.Hour
	// DefaultTTL keeps records a day longer than promised, so that a retry
	// right at the seven-day mark is still recognised despite clock skew
	// between the form's server and ours.
	DefaultTTL = 8 * 24 * time.Hour
)

const (
	// maxKeyLen keeps subjects short; a hex SHA-256 plus a namespace fits
	// easily.
	maxKeyLen = 256
	// claimAttempts bounds Claim's loop for the rare case that a record
	// exists when Claim tries to create it but has expired by the time
	// Claim reads it.
	claimAttempts = 3
	// maxBatch bounds the writes of one atomic batch, well below the
	// server's limit of jsbatch.MaxMessages.
	maxBatch = 256
	// batchTimeout bounds one batch's write; a batch is also given up once
	// none of its callers waits for it.
	batchTimeout = 15 * time.Second
)

// Config configures Store. The zero value is valid for a single server.
type Config struct {
	// Bucket is the key-value bucket; empty means DefaultBucket.
	Bucket string
	// TTL is how long a record is kept after its last write; zero means
	// DefaultTTL, and anything below MinTTL is refused.
	TTL time.Duration
	// Replicas is the JetStream replica count: zero means 1 (a single
	// server); clusters should use 3, so that a lost node does not turn a
	// retry into a second case.
	Replicas int
}

// Store implements app.Idempotency on a JetStream key-value bucket. It is
// safe for concurrent use, and any number of instances may share one
// bucket. It does not own the connection.
type Store struct {
	kv      jetstream.KeyValue
	nc      *nats.Conn
	subject string // the bucket's subject prefix, "$KV.<bucket>."
	writes  *groupcommit.Queue[write, uint64]
}

// write is one conditional write of a record: a claim (expect 0, the key
// has no record) or a completion (expect the claimed revision).
type write struct {
	key    string
	data   []byte
	expect uint64
}

// record is the stored form of app.IdempotencyRecord. The revision is not
// stored: it is the entry's revision in the bucket.
type record struct {
	PayloadHash  string    `json:"payload_hash"`
	CaseID       string    `json:"case_id"`
	Done         bool      `json:"done"`
	CaseNumber   string    `json:"case_number,omitempty"`
	RegisteredAt time.Time `json:"registered_at,omitzero"`
	ClaimedAt    time.Time `json:"claimed_at,omitzero"`
}

// New creates the bucket, or updates it to the configuration given, and
// returns a Store that uses it. Updating an existing bucket means that a
// shorter TTL set on it by hand is raised again, so the seven-day promise
// holds for every record written from now on.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	if js == nil {
		return nil, errors.New("idempotency: JetStream context is nil")
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.TTL < MinTTL {
		return nil, fmt.Errorf("idempotency: TTL %s is shorter than the %s that retries must be recognised for", cfg.TTL, MinTTL)
	}
	if cfg.Replicas < 1 || cfg.Replicas > 5 {
		return nil, fmt.Errorf("idempotency: replicas %d out of range 1..5", cfg.Replicas)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "kontakt intake idempotency records of form submissions",
		History:     1,
		TTL:         cfg.TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("idempotency: create or update key-value bucket %q: %w", cfg.Bucket, err)
	}
	if err := allowAtomicPublish(ctx, js, "KV_"+cfg.Bucket); err != nil {
		return nil, fmt.Errorf("idempotency: key-value bucket %q: %w", cfg.Bucket, err)
	}
	s := &Store{kv: kv, nc: js.Conn(), subject: "$KV." + cfg.Bucket + "."}
	s.writes = groupcommit.New(s.commit, groupcommit.Config[write]{
		MaxBatch: maxBatch,
		Timeout:  batchTimeout,
		// A claim and a completion of one key refuse each other.
		Key: func(w write) string { return w.key },
	})
	return s, nil
}

// allowAtomicPublish turns on atomic batches for the bucket's stream; the
// key-value API has no setting for it, and updating the bucket turns it
// off again.
func allowAtomicPublish(ctx context.Context, js jetstream.JetStream, stream string) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", stream, err)
	}
	cfg := st.CachedInfo().Config
	if cfg.AllowAtomicPublish {
		return nil
	}
	cfg.AllowAtomicPublish = true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("allow atomic batches on stream %s (nats-server 2.12 or later): %w", stream, err)
	}
	return nil
}

// commit writes a batch of claims and completions: alone, as the
// key-value API does, when it is one; otherwise as one atomic batch. When
// the server refuses the batch as a whole, nothing of it is stored, and
// every write is made alone, so each gets its own outcome (most often one
// claim met a record and the rest succeed). Any other failure of the
// batch, such as a lost acknowledgement, is every write's failure, with an
// unknown outcome, as it is for a single write.
func (s *Store) commit(ctx context.Context, ws []write) []groupcommit.Result[uint64] {
	out := make([]groupcommit.Result[uint64], len(ws))
	if len(ws) == 1 {
		out[0].Value, out[0].Err = s.writeAlone(ctx, ws[0])
		return out
	}
	msgs := make([]*nats.Msg, len(ws))
	for i, w := range ws {
		m := nats.NewMsg(s.subject + w.key)
		m.Data = w.data
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.expect, 10))
		msgs[i] = m
	}
	ack, err := jsbatch.Publish(ctx, s.nc, msgs)
	switch {
	case err == nil:
		for i := range out {
			out[i].Value = ack.Seq(i)
		}
	case natserr.IsWrongLastSequence(err) || natserr.Is(err, natserr.AtomicPublishDisabled, natserr.AtomicPublishIncomplete, natserr.AtomicPublishTooManyInflight, natserr.AtomicPublishDuplicate):
		var wg sync.WaitGroup
		for i, w := range ws {
			wg.Go(func() { out[i].Value, out[i].Err = s.writeAlone(ctx, w) })
		}
		wg.Wait()
	default:
		for i := range out {
			out[i].Err = err
		}
	}
	return out
}

// writeAlone makes one write through the key-value API. A claim uses
// Create, which also takes over a key whose last entry is a deletion (a
// released claim); a completion uses Update at the claimed revision.
func (s *Store) writeAlone(ctx context.Context, w write) (uint64, error) {
	if w.expect == 0 {
		return s.kv.Create(ctx, w.key, w.data)
	}
	return s.kv.Update(ctx, w.key, w.data, w.expect)
}

// Claim stores rec under key if no record exists there and returns it with
// its revision and true. If a record exists, Claim returns that record and
// false, so the caller can compare payload hashes and wait for or repeat
// the first answer. The create is atomic on the server, so of any number
// of concurrent claims on one key exactly one wins. rec.Revision is
// ignored.
func (s *Store) Claim(ctx context.Context, key string, rec app.IdempotencyRecord) (app.IdempotencyRecord, bool, error) {
	if err := validateKey(key); err != nil {
		return app.IdempotencyRecord{}, false, fmt.Errorf("idempotency: claim: %w", err)
	}
	data, err := encode(rec)
	if err != nil {
		return app.IdempotencyRecord{}, false, fmt.Errorf("idempotency: claim: %w", err)
	}
	for range claimAttempts {
		rev, err := s.writes.Do(ctx, write{key: key, data: data})
		if err == nil {
			rec.Revision = rev
			return rec, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return app.IdempotencyRecord{}, false, fmt.Errorf("idempotency: claim: %w", err)
		}
		existing, err := s.get(ctx, key)
		if errors.Is(err, app.ErrNotFound) {
			continue // Expired between our create and our read; try again.
		}
		if err != nil {
			return app.IdempotencyRecord{}, false, fmt.Errorf("idempotency: claim: existing record: %w", err)
		}
		return existing, false, nil
	}
	return app.IdempotencyRecord{}, false, fmt.Errorf("idempotency: claim: the record kept appearing and vanishing %d times", claimAttempts)
}

// Complete marks the record under key done with rec's answer (case number
// and registration time), provided the record's revision is still
// rec.Revision; otherwise it returns an error wrapping
// app.ErrRevisionMismatch, because someone else changed or replaced the
// record and the caller must read it again. A record that has expired
// counts as changed.
func (s *Store) Complete(ctx context.Context, key string, rec app.IdempotencyRecord) error {
	if err := validateKey(key); err != nil {
		return fmt.Errorf("idempotency: complete: %w", err)
	}
	if rec.Revision == 0 {
		// Revision 0 would mean "only if absent" to JetStream and silently
		// recreate a vanished record.
		return errors.New("idempotency: complete: record has no revision; pass the one Claim or Get returned")
	}
	rec.Done = true
	data, err := encode(rec)
	if err != nil {
		return fmt.Errorf("idempotency: complete: %w", err)
	}
	if _, err := s.writes.Do(ctx, write{key: key, data: data, expect: rec.Revision}); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("idempotency: complete at revision %d: %w", rec.Revision, errors.Join(app.ErrRevisionMismatch, err))
		}
		return fmt.Errorf("idempotency: complete: %w", err)
	}
	return nil
}

// Release deletes an unfinished record whose revision is still
// rec.Revision, so a retry of a submission that failed can claim the key at
// once instead of waiting for the claim to go stale. A record that moved
// on (completed, or taken over) is left alone: that is not an error.
func (s *Store) Release(ctx context.Context, key string, rec app.IdempotencyRecord) error {
	if err := validateKey(key); err != nil {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	if rec.Revision == 0 || rec.Done {
		return nil
	}
	err := s.kv.Delete(ctx, key, jetstream.LastRevision(rec.Revision))
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) && !natserr.IsWrongLastSequence(err) {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	return nil
}

// Get returns the record under key with its revision, or an error wrapping
// app.ErrNotFound if there is none (never stored, or expired).
func (s *Store) Get(ctx context.Context, key string) (app.IdempotencyRecord, error) {
	if err := validateKey(key); err != nil {
		return app.IdempotencyRecord{}, fmt.Errorf("idempotency: get: %w", err)
	}
	rec, err := s.get(ctx, key)
	if err != nil {
		return app.IdempotencyRecord{}, fmt.Errorf("idempotency: get: %w", err)
	}
	return rec, nil
}

// get reads and decodes the record under a validated key.
func (s *Store) get(ctx context.Context, key string) (app.IdempotencyRecord, error) {
	entry, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return app.IdempotencyRecord{}, app.ErrNotFound
	}
	if err != nil {
		return app.IdempotencyRecord{}, fmt.Errorf("read record: %w", err)
	}
	var r record
	if err := json.Unmarshal(entry.Value(), &r); err != nil {
		return app.IdempotencyRecord{}, fmt.Errorf("decode record at revision %d: %w", entry.Revision(), err)
	}
	return app.IdempotencyRecord{
		PayloadHash:  r.PayloadHash,
		CaseID:       r.CaseID,
		Done:         r.Done,
		CaseNumber:   r.CaseNumber,
		RegisteredAt: r.RegisteredAt,
		ClaimedAt:    r.ClaimedAt,
		Revision:     entry.Revision(),
	}, nil
}

// encode turns rec into the stored JSON, leaving out the revision.
func encode(rec app.IdempotencyRecord) ([]byte, error) {
	data, err := json.Marshal(record{
		PayloadHash:  rec.PayloadHash,
		CaseID:       rec.CaseID,
		Done:         rec.Done,
		CaseNumber:   rec.CaseNumber,
		RegisteredAt: rec.RegisteredAt,
		ClaimedAt:    rec.ClaimedAt,
	})
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return data, nil
}

// validateKey accepts what JetStream accepts as a key (letters, digits and
// -/_=.; no leading, trailing or double dot), up to maxKeyLen bytes. The
// key is not echoed in the error, because a caller that forgot to hash it
// might be passing personal data.
func validateKey(key string) error {
	if key == "" || len(key) > maxKeyLen {
		return fmt.Errorf("key of %d bytes is empty or longer than %d bytes: %w", len(key), maxKeyLen, jetstream.ErrInvalidKey)
	}
	if key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return fmt.Errorf("key of %d bytes has an empty dot-separated token: %w", len(key), jetstream.ErrInvalidKey)
	}
	for i := range len(key) {
		if !keyByte(key[i]) {
			return fmt.Errorf("key of %d bytes has a byte outside [-/_=.a-zA-Z0-9] at offset %d: %w", len(key), i, jetstream.ErrInvalidKey)
		}
	}
	return nil
}

// keyByte reports whether c may appear in a JetStream key.
func keyByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-/_=.", c) >= 0
}
