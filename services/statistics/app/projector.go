package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/services/statistics/adapters/store"
	"github.com/kontakt-se/kontakt/services/statistics/adapters/stream"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

// Projector defaults.
const (
	// DefaultBatchSize bounds the events applied in one transaction.
	DefaultBatchSize = 256
	// DefaultIdleFlush is how long the projector waits for more events
	// before it applies a partial batch.
	DefaultIdleFlush = 5 * time.Millisecond
	// recoverChunk is how many records recovered from the stream are
	// written per transaction.
	recoverChunk = 4096
)

// Back-off after a failure.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 15 * time.Second
)

// Hooks let tests stop the projector at the points where a crash is
// interesting. A hook that returns an error stops Run at once with that
// error, leaving everything as a kill -9 at that point would (the bbolt
// transaction is committed or not; nothing after the hook ran).
type Hooks struct {
	// AfterCommit runs after a batch's transaction committed and before
	// any of its record versions is published.
	AfterCommit func(checkpoint eventstore.Position) error
	// BeforePublish runs before the i-th message of a batch (counting
	// from zero) is published.
	BeforePublish func(i int) error
}

// hookError marks an error returned by a hook.
type hookError struct{ err error }

func (e hookError) Error() string { return e.err.Error() }
func (e hookError) Unwrap() error { return e.err }

// ProjectorConfig configures a Projector.
type ProjectorConfig struct {
	Policy    domain.Policy
	BatchSize int
	IdleFlush time.Duration
	Hooks     Hooks
	// NewID returns a new statistics id; nil means 128 random bits from
	// crypto/rand, so an id says nothing about the case it describes.
	NewID func() string
}

// Projector follows the log of all case events and keeps the read model
// and the statistics stream up to date.
//
// # Crash safety
//
// A batch of events is applied in one bbolt transaction that also stores
// the checkpoint and the batch's record versions as the exact messages
// to publish (the outbox). Only after the commit are the messages
// published, one at a time, each waiting for its acknowledgement, so the
// stream never has a gap: if version v is in the stream, so is every
// version the projector produced before it. The next batch is applied
// only when all messages of this one are acknowledged, so the outbox
// holds the only messages that can be missing.
//
// The transaction also stores ScanFrom, the stream's last sequence before
// the batch was published. A starting projector reads the stream after
// ScanFrom, which holds every message of the outbox that did land, and
// publishes the rest, in order. Whatever the moment of a kill -9:
//
//   - before the commit: the batch is not in the file and nothing of it
//     was published (its random statistics ids were never seen); it is
//     applied again from the checkpoint;
//   - after the commit, before or during publishing: the file has the
//     batch, and the messages not yet in the stream are published on
//     start; Nats-Msg-Id de-duplicates a message whose acknowledgement was
//     lost, and the scan covers it after the duplicate window too;
//   - after publishing: nothing is missing.
//
// Query reads one entry per statistics id from the file, and a recount
// of the stream keeps the newest version per statistics id, so neither
// ever counts a record twice.
//
// # A file older than the stream
//
// When the file lags the stream (restored from a backup, or deleted to be
// rebuilt), the stream holds versions newer than the checkpoint. The
// start-up scan then also recovers those records into the file (newest
// version wins, so records of cases deleted since are kept), remembers
// which statistics id each re-registered case had (a record's first
// version is its CaseRegistered's position), and marks their versions as
// published. Re-projecting then reuses the same ids and publishes only
// versions the stream lacks, so the stream's content and Query's answers
// are the same as if the file had never been lost. ScanFrom stays at the
// scan's start until the projector has passed the newest recovered
// version, so a crash during the catch-up recovers again.
//
// A case deleted since the copy was made shows up only as its tombstone
// (its events were purged), with a stale state in the file. Every
// projected CaseDeleted makes a record version, so the stream then holds
// a version newer than that state, and the projector forgets the case
// without deriving anything from the stale state.
//
// All of this assumes one projector per statistics stream, which the
// bbolt file lock enforces for one file; two installations with their
// own files writing to one stream would double every record.
type Projector struct {
	es    eventstore.Store
	st    *store.Store
	out   *stream.Stream
	cfg   ProjectorConfig
	log   *slog.Logger
	newID func() string

	// streamSeq is the stream's last sequence as far as the projector
	// knows (after its own acknowledgements).
	streamSeq uint64
	// rec holds what the start-up scan recovered from a stream ahead of
	// the file; nil when the file was not behind.
	rec *recovery
}

// recovery is what a stream ahead of the file tells about versions newer
// than the checkpoint.
type recovery struct {
	// scanFrom is the sequence the scan started after; it is kept as the
	// stored ScanFrom until the projector passes until.
	scanFrom uint64
	// until is the newest version in the stream.
	until int64
	// versions are all versions in the stream newer than the checkpoint,
	// sorted: they are published already.
	versions []int64
	// created maps the first version of each record seen to its id: for a
	// record created after the checkpoint that is its CaseRegistered's
	// position.
	created map[int64]string
}

func (r *recovery) published(v int64) bool {
	if r == nil {
		return false
	}
	_, ok := slices.BinarySearch(r.versions, v)
	return ok
}

// NewProjector returns a projector from es into st and out. A nil logger
// discards log output.
func NewProjector(es eventstore.Store, st *store.Store, out *stream.Stream, cfg ProjectorConfig, logger *slog.Logger) *Projector {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.IdleFlush <= 0 {
		cfg.IdleFlush = DefaultIdleFlush
	}
	p := &Projector{es: es, st: st, out: out, cfg: cfg, log: logger, newID: cfg.NewID}
	if p.newID == nil {
		p.newID = rand.Text
	}
	return p
}

// Run recovers (see Projector) and then follows the log from the
// checkpoint until ctx ends, when it returns nil. Failures (the event
// store or NATS away, a malformed event) are logged and retried after a
// back-off, because statistics must not stop for good on a passing
// outage; a malformed event is retried too, as skipping it would publish
// wrong statistics for ever. Only a test hook's error ends Run early.
func (p *Projector) Run(ctx context.Context) error {
	backoff := minBackoff
	for {
		progressed, err := p.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var he hookError
		if errors.As(err, &he) {
			return he.err
		}
		if progressed {
			backoff = minBackoff
		}
		// Errors name positions and versions, never cases or people.
		p.log.Warn("statistics projector failed, retrying", "retry_in", backoff, "error", err)
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (p *Projector) runOnce(ctx context.Context) (bool, error) {
	if err := p.recover(ctx); err != nil {
		return false, err
	}
	cp, err := p.st.Checkpoint()
	if err != nil {
		return false, err
	}
	return p.follow(ctx, cp)
}

// recover reads the stream after the stored ScanFrom, publishes what the
// outbox holds that the stream lacks, and recovers records when the
// stream is ahead of the file.
func (p *Projector) recover(ctx context.Context) error {
	st, err := p.st.State()
	if err != nil {
		return err
	}
	last, err := p.out.LastSeq(ctx)
	if err != nil {
		return err
	}
	scanFrom := st.ScanFrom
	if last < scanFrom {
		// Messages the file knows were published are gone: the stream was
		// recreated. Its history cannot be restored from here.
		p.log.Error("statistics stream holds fewer messages than the read model has seen; was it recreated?", "stream_last_seq", last, "read_model_scan_from", scanFrom)
		scanFrom = last
	}
	inOutbox := make(map[int64]bool, len(st.Outbox))
	for _, m := range st.Outbox {
		inOutbox[m.Version] = false
	}
	rec := &recovery{scanFrom: scanFrom, created: map[int64]string{}}
	firstSeen := map[string]bool{}
	var chunk []domain.Record
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		if _, err := p.st.UpsertRecords(chunk); err != nil {
			return err
		}
		chunk = chunk[:0]
		return nil
	}
	err = p.out.Read(ctx, scanFrom, last, func(m stream.Received) error {
		if _, ok := inOutbox[m.Version]; ok {
			inOutbox[m.Version] = true
		}
		if m.Version <= int64(st.Checkpoint) {
			return nil // Not newer than the file (or not a record at all).
		}
		pr, err := stream.Decode(m.Data)
		if err != nil || pr.GetStatisticsId() == "" || pr.GetVersion() != m.Version {
			p.log.Warn("statistics stream: skipping a message that is not a record version", "stream_seq", m.Seq)
			return nil
		}
		r := domain.RecordFromProto(pr)
		rec.versions = append(rec.versions, r.Version)
		rec.until = max(rec.until, r.Version)
		if !firstSeen[r.StatisticsID] {
			firstSeen[r.StatisticsID] = true
			rec.created[r.Version] = r.StatisticsID
		}
		chunk = append(chunk, r)
		if len(chunk) >= recoverChunk {
			return flush()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan statistics stream after %d: %w", scanFrom, err)
	}
	if err := flush(); err != nil {
		return err
	}
	p.streamSeq = last
	if len(rec.versions) > 0 {
		slices.Sort(rec.versions)
		rec.versions = slices.Compact(rec.versions)
		p.rec = rec
		p.log.Warn("statistics read model is behind its stream; recovered records and will re-project without publishing twice",
			"checkpoint", st.Checkpoint, "recovered_versions", len(rec.versions), "newest_version", rec.until)
	} else {
		p.rec = nil
	}
	var missing []domain.Message
	for _, m := range st.Outbox {
		if !inOutbox[m.Version] {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		p.log.Info("statistics projector: publishing the last batch's record versions that the stream lacks", "count", len(missing), "of", len(st.Outbox))
	}
	return p.publish(ctx, missing)
}

// follow subscribes after from and applies events in batches.
func (p *Projector) follow(ctx context.Context, from eventstore.Position) (progressed bool, err error) {
	return eventstore.SubscribeBatches(ctx, p.es, from, eventstore.BatchOptions{Size: p.cfg.BatchSize, Idle: p.cfg.IdleFlush}, p.apply)
}

// apply applies one batch in one transaction, then publishes the record
// versions it produced.
func (p *Projector) apply(ctx context.Context, evs []eventstore.RecordedEvent) error {
	var outbox []domain.Message
	var checkpoint eventstore.Position
	committed := false
	err := p.st.Update(func(tx *store.Tx) error {
		outbox = outbox[:0]
		cp, err := tx.Checkpoint()
		if err != nil {
			return err
		}
		last := cp
		for _, ev := range evs {
			if ev.Position <= last {
				continue // Applied already: never twice.
			}
			msg, err := p.applyEvent(tx, ev)
			if err != nil {
				return err
			}
			if msg != nil {
				outbox = append(outbox, *msg)
			}
			last = ev.Position
		}
		if last == cp {
			return nil
		}
		scanFrom := p.streamSeq
		if p.rec != nil {
			scanFrom = p.rec.scanFrom
		}
		checkpoint, committed = last, true
		return tx.Finish(last, scanFrom, outbox)
	})
	if err != nil {
		return err
	}
	if !committed {
		return nil
	}
	if p.rec != nil && int64(checkpoint) >= p.rec.until {
		// Caught up with the stream: from now on everything produced is
		// new, and restarts scan from the current tail again.
		p.rec = nil
		p.log.Info("statistics projector caught up with its stream", "checkpoint", checkpoint)
	}
	if h := p.cfg.Hooks.AfterCommit; h != nil {
		if err := h(checkpoint); err != nil {
			return hookError{err}
		}
	}
	return p.publish(ctx, outbox)
}

// applyEvent applies one event and returns the message to publish, if
// the event made a record version the stream lacks.
func (p *Projector) applyEvent(tx *store.Tx, ev eventstore.RecordedEvent) (*domain.Message, error) {
	caseID := ev.Stream
	c, err := tx.Case(caseID)
	if err != nil {
		return nil, err
	}
	if c != nil && ev.Type == eventstore.TypeStreamDeleted {
		// When the file is older than the stream, a case deleted since
		// shows up with only its tombstone (the rest was purged), while
		// the stream already has the versions its lost events made,
		// deletion included. That record is the truth: forget the case
		// without deriving a version from the stale state.
		stored, err := tx.RecordVersion(c.Record.StatisticsID)
		if err != nil {
			return nil, err
		}
		if stored > c.Record.Version {
			return nil, tx.DeleteCase(caseID)
		}
	}
	step, err := domain.Project(c, ev, p.cfg.Policy, func() string { return p.statisticsID(ev) })
	if err != nil {
		return nil, err
	}
	switch {
	case step.Forget:
		if c != nil {
			if err := tx.DeleteCase(caseID); err != nil {
				return nil, err
			}
		}
	case step.Case != nil && (c == nil || step.Changed):
		if err := tx.PutCase(caseID, step.Case); err != nil {
			return nil, err
		}
	}
	if !step.Changed {
		return nil, nil
	}
	r := step.Case.Record
	if _, err := tx.PutRecord(r); err != nil {
		return nil, err
	}
	if p.rec.published(r.Version) {
		return nil, nil
	}
	m, err := stream.Encode(r)
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// statisticsID returns the id for the case registered by ev: the one it
// had before when the stream is ahead of the file, a random one
// otherwise.
func (p *Projector) statisticsID(ev eventstore.RecordedEvent) string {
	if p.rec != nil {
		if id, ok := p.rec.created[int64(ev.Position)]; ok {
			return id
		}
	}
	return p.newID()
}

// publish sends messages one at a time, in order, each after the
// previous one was acknowledged, retrying each until it is stored or ctx
// ends: the stream must never get a gap.
func (p *Projector) publish(ctx context.Context, msgs []domain.Message) error {
	for i, m := range msgs {
		if h := p.cfg.Hooks.BeforePublish; h != nil {
			if err := h(i); err != nil {
				return hookError{err}
			}
		}
		backoff := minBackoff
		for {
			seq, err := p.out.Publish(ctx, m)
			if err == nil {
				p.streamSeq = max(p.streamSeq, seq)
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.log.Warn("statistics projector: publish failed, retrying", "version", m.Version, "retry_in", backoff, "error", err)
			if !sleep(ctx, backoff) {
				return ctx.Err()
			}
			backoff = min(2*backoff, maxBackoff)
		}
	}
	return nil
}

// sleep waits for d and reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
