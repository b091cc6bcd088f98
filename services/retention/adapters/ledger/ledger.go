// Package ledger is the retention ledger's store: a JetStream stream of
// receipts (pkg/receipt), one for every redaction, deletion and archive
// export the retention service performs. The receipts are what the
// municipality shows an auditor (or the archive authority) to prove that
// the retention plan was carried out, so the stream is kept for ever,
// refuses deletes and purges, and keeps one receipt per key. What a
// receipt says, the bytes its hash covers and the check of the chain are
// pkg/receipt's, which does no I/O; this package chains each new receipt
// to the stream's last one, atomically against other writers, and reads
// them back.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kontakt-se/kontakt/pkg/backoff"
	"github.com/kontakt-se/kontakt/pkg/jsbatch"
	"github.com/kontakt-se/kontakt/pkg/jsread"
	"github.com/kontakt-se/kontakt/pkg/natserr"
	"github.com/kontakt-se/kontakt/pkg/receipt"
)

// Errors callers can test for with errors.Is.
var (
	// ErrInvalid means a receipt, key or configuration was refused before
	// anything was written; retrying it unchanged cannot succeed. It is
	// receipt.ErrInvalid.
	ErrInvalid = receipt.ErrInvalid
	// ErrChainBroken means the hash chain does not verify: a receipt was
	// altered, removed, inserted or reordered. It calls for an
	// investigation, not a retry. It is receipt.ErrChainBroken.
	ErrChainBroken = receipt.ErrChainBroken
	// ErrUnavailable means the stream could not be read or written (or
	// concurrent writers kept winning the race for the end of the chain);
	// the caller may retry, because Record is idempotent by key.
	ErrUnavailable = errors.New("ledger: unavailable")
	// ErrIncompatibleStream means an existing stream has a configuration
	// under which receipts may already have been lost, so New refuses to
	// adopt it rather than quietly repairing the configuration.
	ErrIncompatibleStream = errors.New("ledger: incompatible existing stream")
)

// Defaults for Config.
const (
	DefaultStream      = "KONTAKT_RETENTION_LEDGER"
	DefaultPrefix      = "kontakt.retention.ledger"
	DefaultMaxAttempts = 100
)

// Config configures the ledger stream.
type Config struct {
	// Stream is the stream name; empty means DefaultStream.
	Stream string
	// Prefix is the subject prefix; receipts go to "<Prefix>.<key>".
	// Empty means DefaultPrefix.
	Prefix string
	// Replicas is the number of stream replicas: 1 on a single server,
	// 3 on a cluster. Zero means 1.
	Replicas int
	// MaxAttempts bounds how often Record retries when other writers
	// extend the chain first. Zero means DefaultMaxAttempts.
	MaxAttempts int
}

// Ledger writes and reads receipts. It is safe for concurrent use, and
// several Ledgers on several connections may write to the same stream: the
// chain stays linear and every key gets exactly one receipt.
type Ledger struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	cfg    Config
}

// New creates the ledger stream, or updates an existing one to the ledger's
// configuration: file storage, no age or size limits, deletes and purges
// denied, at most one message per subject (that is, per key), and a
// two-minute de-duplication window. It refuses an existing stream that
// has, or had, limits under which receipts may have been dropped, or that
// listens on other subjects, because silently adopting it would hide the
// loss.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Ledger, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: nil JetStream", ErrInvalid)
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	switch {
	case strings.ContainsAny(cfg.Stream, " \t\r\n.*>/\\"):
		return nil, fmt.Errorf("%w: stream name %q", ErrInvalid, cfg.Stream)
	case !receipt.ValidTokens(cfg.Prefix):
		return nil, fmt.Errorf("%w: subject prefix %q is not dot-separated tokens of [A-Za-z0-9_-]", ErrInvalid, cfg.Prefix)
	case cfg.Replicas < 0:
		return nil, fmt.Errorf("%w: negative replica count %d", ErrInvalid, cfg.Replicas)
	case cfg.MaxAttempts < 0:
		return nil, fmt.Errorf("%w: negative MaxAttempts %d", ErrInvalid, cfg.MaxAttempts)
	}
	subject := cfg.Prefix + ".>"
	if st, err := js.Stream(ctx, cfg.Stream); err == nil {
		if err := checkExisting(st.CachedInfo().Config, subject); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: look up stream %s: %w", ErrUnavailable, cfg.Stream, err)
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:                 cfg.Stream,
		Description:          "kontakt retention ledger: hash-chained receipts of redactions, deletions and archive exports, kept for ever",
		Subjects:             []string{subject},
		Storage:              jetstream.FileStorage,
		Retention:            jetstream.LimitsPolicy,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		MaxMsgsPerSubject:    1,
		MaxMsgs:              -1,
		MaxBytes:             -1,
		MaxAge:               0,
		MaxConsumers:         -1,
		Replicas:             cfg.Replicas,
		Duplicates:           2 * time.Minute,
		DenyDelete:           true,
		DenyPurge:            true,
		AllowRollup:          false,
		AllowDirect:          false,
		// RecordBatch stores a batch of receipts with one disk sync.
		AllowAtomicPublish: true,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: create or update stream %s: %w", ErrUnavailable, cfg.Stream, err)
	}
	return &Ledger{js: js, stream: st, cfg: cfg}, nil
}

// checkExisting refuses a stream whose configuration may already have cost
// receipts, or that is not the ledger's.
func checkExisting(c jetstream.StreamConfig, subject string) error {
	limited := c.MaxMsgs > 0 || c.MaxBytes > 0 || c.MaxMsgsPerSubject > 1 ||
		(c.MaxMsgsPerSubject == 1 && !c.DiscardNewPerSubject)
	switch {
	case c.MaxAge != 0:
		return fmt.Errorf("%w: stream %s has MaxAge %s, so receipts may have aged out; the ledger is kept for ever", ErrIncompatibleStream, c.Name, c.MaxAge)
	case !slices.Equal(c.Subjects, []string{subject}):
		return fmt.Errorf("%w: stream %s listens on %q, want only %q", ErrIncompatibleStream, c.Name, c.Subjects, subject)
	case c.Storage != jetstream.FileStorage:
		return fmt.Errorf("%w: stream %s is not file-backed, so receipts would not survive a restart", ErrIncompatibleStream, c.Name)
	case c.Discard == jetstream.DiscardOld && limited:
		return fmt.Errorf("%w: stream %s discards old messages at a size limit, so receipts may have been dropped", ErrIncompatibleStream, c.Name)
	case c.AllowRollup || c.AllowMsgTTL || c.Sealed || c.Mirror != nil || len(c.Sources) > 0:
		return fmt.Errorf("%w: stream %s allows rollups or message TTLs, or is sealed, a mirror or sourced; receipts must only be appended by the ledger", ErrIncompatibleStream, c.Name)
	}
	return nil
}

// subject returns the subject of the receipt with key.
func (l *Ledger) subject(key string) string { return l.cfg.Prefix + "." + key }

// Record appends a receipt, chained to the current end of the ledger, and
// returns it as stored (with Seq, Prev and Hash) and false. If a receipt
// with the same key exists it returns that one and true instead, so a
// retried or repeated action leaves one receipt. Seq, Prev and Hash of r are
// ignored and At is stored in UTC.
//
// Each attempt reads the end of the chain and publishes with "expected last
// sequence" set to it, which the server checks atomically; if another
// writer got in first, Record looks for the key again and retries on the new
// end, up to Config.MaxAttempts times.
func (l *Ledger) Record(ctx context.Context, r receipt.Receipt) (receipt.Receipt, bool, error) {
	r, err := receipt.Normalise(r)
	if err != nil {
		return receipt.Receipt{}, false, err
	}
	var lastErr error
	pause := backoff.New(chainRace)
	for attempt := range l.cfg.MaxAttempts {
		if attempt > 0 {
			if err := pause.Wait(ctx); err != nil {
				return receipt.Receipt{}, false, fmt.Errorf("%w: record %s: %w (after %v)", ErrUnavailable, r.Key, err, lastErr)
			}
		}
		// Read the end before looking for the key: a receipt for the key
		// written after this read moves the end, and the publish below
		// is then refused.
		prev, lastSeq, err := l.last(ctx)
		if err != nil {
			return receipt.Receipt{}, false, err
		}
		existing, found, err := l.get(ctx, r.Key)
		if err != nil {
			return receipt.Receipt{}, false, err
		}
		if found {
			return existing, true, nil
		}
		r.Prev = prev
		r.Hash = receipt.ComputeHash(r)
		data, err := json.Marshal(r)
		if err != nil {
			return receipt.Receipt{}, false, fmt.Errorf("%w: encode receipt %s: %w", ErrInvalid, r.Key, err)
		}
		msg := nats.NewMsg(l.subject(r.Key))
		msg.Data = data
		ack, err := l.js.PublishMsg(ctx, msg,
			jetstream.WithExpectStream(l.cfg.Stream),
			jetstream.WithExpectLastSequence(lastSeq),
			jetstream.WithMsgID(r.Key))
		switch {
		case err == nil && ack.Duplicate:
			// Stored before under this key; the next round returns it.
			lastErr = fmt.Errorf("duplicate of sequence %d", ack.Sequence)
			continue
		case err == nil:
			var stored receipt.Receipt
			if err := json.Unmarshal(data, &stored); err != nil {
				return receipt.Receipt{}, false, fmt.Errorf("%w: decode receipt %s: %w", ErrInvalid, r.Key, err)
			}
			stored.Seq = ack.Sequence
			return stored, false, nil
		case isConflict(err):
			lastErr = err
			continue
		default:
			return receipt.Receipt{}, false, fmt.Errorf("%w: publish receipt %s: %w", ErrUnavailable, r.Key, err)
		}
	}
	return receipt.Receipt{}, false, fmt.Errorf("%w: record %s: other writers kept extending the chain, gave up after %d attempts: %v", ErrUnavailable, r.Key, l.cfg.MaxAttempts, lastErr)
}

// RecordBatch records receipts in order, chained one to the next. While
// this writer holds the end of the chain the whole batch costs one round
// trip and one disk sync: the receipts are published as one JetStream
// atomic batch (pkg/jsbatch), the first expecting the end of the chain as
// read and every one carrying its hash as message id, so the server
// stores them all right after that end, in order, or none. When the batch
// is refused (another writer moved the end, or a key already has its
// receipt after a crash), the receipts are recorded one by one with
// Record, which returns an existing receipt instead of writing a second
// one.
func (l *Ledger) RecordBatch(ctx context.Context, rs []receipt.Receipt) error {
	_, err := l.RecordBatchStored(ctx, rs)
	return err
}

// RecordBatchStored is RecordBatch that also returns each receipt as the
// ledger holds it (with Seq, Prev and Hash; for a key that already had a
// receipt, that receipt), in the order of rs. The shred journal keeps
// them, so that a restore can put them back byte for byte: Marshal of a
// returned receipt is the stored message.
func (l *Ledger) RecordBatchStored(ctx context.Context, rs []receipt.Receipt) ([]receipt.Receipt, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	norm := make([]receipt.Receipt, len(rs))
	for i, r := range rs {
		n, err := receipt.Normalise(r)
		if err != nil {
			return nil, err
		}
		norm[i] = n
	}
	prev, seq, err := l.last(ctx)
	if err != nil {
		return nil, err
	}
	stored := make([]receipt.Receipt, 0, len(rs))
	for len(stored) < len(norm) {
		chunk := norm[len(stored):min(len(norm), len(stored)+jsbatch.MaxMessages)]
		msgs := make([]*nats.Msg, len(chunk))
		for i := range chunk {
			r := &chunk[i]
			r.Prev = prev
			r.Hash = receipt.ComputeHash(*r)
			data, err := json.Marshal(r)
			if err != nil {
				return nil, fmt.Errorf("%w: encode receipt %s: %w", ErrInvalid, r.Key, err)
			}
			m := nats.NewMsg(l.subject(r.Key))
			m.Data = data
			m.Header.Set(jetstream.ExpectedStreamHeader, l.cfg.Stream)
			// The message id is the receipt's hash, which covers its
			// link: another writer's receipt for the same key has another
			// hash, so it never stands in for ours (the per-subject limit
			// keeps one receipt per key). Only the first message of an
			// atomic batch may expect the stream's last sequence; the
			// batch's consecutive sequences chain the rest.
			m.Header.Set(jetstream.MsgIDHeader, r.Hash)
			if i == 0 {
				m.Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(seq, 10))
			}
			msgs[i] = m
			prev = r.Hash
		}
		ack, err := jsbatch.Publish(ctx, l.js.Conn(), msgs)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w: record receipts: %w", ErrUnavailable, ctx.Err())
			}
			// Refused, or its outcome unknown: Record finds what is
			// stored and writes what is missing.
			break
		}
		for i, r := range chunk {
			r.Seq = ack.Seq(i)
			stored = append(stored, r)
		}
		seq = ack.Last
	}
	for _, r := range rs[len(stored):] {
		got, _, err := l.Record(ctx, r)
		if err != nil {
			return nil, err
		}
		stored = append(stored, got)
	}
	return stored, nil
}

// ErrNotNext means a receipt given to Restore does not continue the chain:
// its Prev is not the hash of the ledger's last receipt.
var ErrNotNext = errors.New("ledger: receipt does not continue the chain")

// Restore appends a receipt exactly as another copy of this ledger stored
// it (data is the stored message, as RecordBatchStored's receipts marshal),
// for `kontakt restore`: a restored ledger gets back the receipts written
// after its backup, byte for byte, so the chain an auditor verifies is the
// original one. The receipt's hash must match its contents and its Prev
// must be the hash of the ledger's last receipt (else ErrNotNext). A key
// that already has this very receipt returns it and false; a key that has
// another receipt is ErrChainBroken, because one key has one receipt.
func (l *Ledger) Restore(ctx context.Context, data []byte) (receipt.Receipt, bool, error) {
	var r receipt.Receipt
	if err := json.Unmarshal(data, &r); err != nil {
		return receipt.Receipt{}, false, fmt.Errorf("%w: receipt to restore cannot be decoded: %w", ErrInvalid, err)
	}
	if !receipt.ValidKey(r.Key) {
		return receipt.Receipt{}, false, fmt.Errorf("%w: receipt key %q", ErrInvalid, r.Key)
	}
	if want := receipt.ComputeHash(r); r.Hash != want {
		return receipt.Receipt{}, false, fmt.Errorf("%w: receipt %s to restore: hash %s does not match its contents (%s)", ErrChainBroken, r.Key, r.Hash, want)
	}
	prev, lastSeq, err := l.last(ctx)
	if err != nil {
		return receipt.Receipt{}, false, err
	}
	existing, found, err := l.get(ctx, r.Key)
	if err != nil {
		return receipt.Receipt{}, false, err
	}
	if found {
		if existing.Hash == r.Hash {
			return existing, false, nil
		}
		return receipt.Receipt{}, false, fmt.Errorf("%w: key %s has receipt %s, not %s", ErrChainBroken, r.Key, existing.Hash, r.Hash)
	}
	if r.Prev != prev {
		return receipt.Receipt{}, false, fmt.Errorf("%w: receipt %s follows %s, the ledger ends at %s", ErrNotNext, r.Key, r.Prev, prev)
	}
	msg := nats.NewMsg(l.subject(r.Key))
	msg.Data = data
	ack, err := l.js.PublishMsg(ctx, msg,
		jetstream.WithExpectStream(l.cfg.Stream),
		jetstream.WithExpectLastSequence(lastSeq),
		jetstream.WithMsgID(r.Hash))
	if err != nil {
		return receipt.Receipt{}, false, fmt.Errorf("%w: restore receipt %s: %w", ErrUnavailable, r.Key, err)
	}
	r.Seq = ack.Sequence
	return r, true, nil
}

// Head returns the hash of the ledger's last receipt (receipt.GenesisPrev for an
// empty ledger), after checking that receipt's own hash.
func (l *Ledger) Head(ctx context.Context) (string, error) {
	h, _, err := l.last(ctx)
	return h, err
}

// chainRace paces the attempts of writers racing for the end of the
// chain: a short random pause, so that they spread out.
var chainRace = backoff.Policy{Initial: time.Millisecond, Max: 20 * time.Millisecond, Jitter: true}

// isConflict reports whether a publish was refused because the stream moved
// on since the end of the chain was read, or because the key already has a
// message (the per-subject limit).
func isConflict(err error) bool {
	return natserr.IsWrongLastSequence(err) || natserr.IsSubjectFull(err)
}

// last returns the Hash and sequence of the last receipt, or receipt.GenesisPrev
// and 0 for an empty ledger. It checks the last receipt's own hash, so that
// a new receipt is never chained onto an altered one.
//
// It asks for the stream's last sequence and then for that message, rather
// than for the last message on "<prefix>.>", because the server answers a
// wildcard last-message request by walking every subject (every key) of
// the stream.
func (l *Ledger) last(ctx context.Context) (string, uint64, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("%w: stream info: %w", ErrUnavailable, err)
	}
	seq := info.State.LastSeq
	if seq == 0 {
		return receipt.GenesisPrev, 0, nil
	}
	m, err := l.stream.GetMsg(ctx, seq)
	if natserr.IsMessageNotFound(err) {
		return "", 0, fmt.Errorf("%w: the last receipt, seq %d, is missing", ErrChainBroken, seq)
	}
	if err != nil {
		return "", 0, fmt.Errorf("%w: read the last receipt, seq %d: %w", ErrUnavailable, seq, err)
	}
	r, err := l.decode(m.Subject, m.Sequence, m.Data)
	if err != nil {
		return "", 0, err
	}
	if want := receipt.ComputeHash(r); r.Hash != want {
		return "", 0, fmt.Errorf("%w: last receipt seq %d key %q: hash %s does not match its contents (%s)", ErrChainBroken, r.Seq, r.Key, r.Hash, want)
	}
	return r.Hash, seq, nil
}

// get returns the receipt with key, if there is one.
func (l *Ledger) get(ctx context.Context, key string) (receipt.Receipt, bool, error) {
	m, err := l.stream.GetLastMsgForSubject(ctx, l.subject(key))
	if natserr.IsMessageNotFound(err) {
		return receipt.Receipt{}, false, nil
	}
	if err != nil {
		return receipt.Receipt{}, false, fmt.Errorf("%w: look up receipt %s: %w", ErrUnavailable, key, err)
	}
	r, err := l.decode(m.Subject, m.Sequence, m.Data)
	if err != nil {
		return receipt.Receipt{}, false, err
	}
	return r, true, nil
}

// decode parses a stored receipt and checks that it is stored under its own
// key, which the idempotency of Record relies on.
func (l *Ledger) decode(subject string, seq uint64, data []byte) (receipt.Receipt, error) {
	var r receipt.Receipt
	if err := json.Unmarshal(data, &r); err != nil {
		return receipt.Receipt{}, fmt.Errorf("%w: receipt seq %d on %s cannot be decoded: %w", ErrChainBroken, seq, subject, err)
	}
	r.Seq = seq
	if subject != l.subject(r.Key) {
		return receipt.Receipt{}, fmt.Errorf("%w: receipt seq %d key %q is stored on subject %s", ErrChainBroken, seq, r.Key, subject)
	}
	return r, nil
}

// Has reports whether a receipt with key exists.
func (l *Ledger) Has(ctx context.Context, key string) (bool, error) {
	if !receipt.ValidKey(key) {
		return false, fmt.Errorf("%w: receipt key %q", ErrInvalid, key)
	}
	_, found, err := l.get(ctx, key)
	return found, err
}

// Get returns the receipt with key and true, or false if there is none.
func (l *Ledger) Get(ctx context.Context, key string) (receipt.Receipt, bool, error) {
	if !receipt.ValidKey(key) {
		return receipt.Receipt{}, false, fmt.Errorf("%w: receipt key %q", ErrInvalid, key)
	}
	return l.get(ctx, key)
}

// Count returns the number of receipts in the ledger.
func (l *Ledger) Count(ctx context.Context) (uint64, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: stream info: %w", ErrUnavailable, err)
	}
	return info.State.Msgs, nil
}

// scanBatch is how many receipts one pull of Scan asks for.
const scanBatch = 1000

// Scan calls fn with every receipt in stream order, up to the last receipt
// at the time Scan started, reading them in batches through jsread (which
// removes its consumer when done) rather than one request per receipt,
// because the ledger grows without limit. It stops at the first error fn
// returns and returns it wrapped.
func (l *Ledger) Scan(ctx context.Context, fn func(receipt.Receipt) error) error {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("%w: stream info: %w", ErrUnavailable, err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	err = jsread.Each(ctx, l.js, jsread.Range{
		Stream: l.cfg.Stream, Subjects: []string{l.cfg.Prefix + ".>"}, UpTo: info.State.LastSeq, Batch: scanBatch,
	}, func(m jsread.Msg) error {
		r, err := l.decode(m.Subject, m.Sequence, m.Data)
		if err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return fmt.Errorf("ledger: scan stopped at receipt seq %d: %w", m.Sequence, err)
		}
		return nil
	})
	if errors.Is(err, jsread.ErrUnavailable) {
		return fmt.Errorf("%w: read receipts: %w", ErrUnavailable, err)
	}
	return err
}

// Verify reads the whole ledger and checks its chain (receipt.Verifier),
// returning the number of receipts and the head hash.
func Verify(ctx context.Context, l *Ledger) (int, string, error) {
	v := receipt.NewVerifier()
	if err := l.Scan(ctx, v.Add); err != nil {
		return v.Count(), v.Head(), err
	}
	return v.Count(), v.Head(), nil
}
