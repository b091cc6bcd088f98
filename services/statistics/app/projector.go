package app

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kontakt-se/kontakt/pkg/backoff"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/jsbatch"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

// recoverChunk is how many records recovered from the stream are written
// per transaction.
const recoverChunk = 4096

// DefaultBatchSize bounds the events applied in one transaction while
// following the log. An event makes at most one record version, so a
// full batch is published as five atomic batches at most (the server's
// limit is jsbatch.MaxMessages), beside the next batch's transaction. A
// backlog then costs one bbolt commit per 4096 events: the records are
// keyed by random statistics ids, so a commit writes a page for nearly
// every record it holds up to the tree's size, and larger batches share
// pages. In six paired runs of a 20,000-event backlog, 4096 projected
// 3-158% more events per second than 1000 (the raw baseline moved too
// much between runs for the ratio to say more). Live traffic fills much
// smaller batches (the runner applies a partial batch when the log goes
// quiet), so the bound matters only when the projector is behind.
const DefaultBatchSize = 4096

// Hooks let tests stop the projector at the points where a crash is
// interesting, and watch what it does. A hook that returns an error stops
// Run at once with that error, leaving everything as a kill -9 at that
// point would (the bbolt transaction is committed or not; nothing after
// the hook ran).
type Hooks struct {
	// BeforeApply runs before a batch of events is applied.
	BeforeApply func(batch []eventstore.RecordedEvent) error
	// AfterCommit runs after a batch's transaction committed and before
	// any of its record versions is published.
	AfterCommit func(checkpoint eventstore.Position) error
	// BeforePublish runs before the atomic batch that begins with the
	// i-th message to publish (counting from zero) is sent.
	BeforePublish func(i int) error
	// Published runs when a message is in the stream: appended by this
	// projector (appended), or found there, put by another.
	Published func(version int64, appended bool)
}

// hookError marks an error returned by a hook.
type hookError struct{ err error }

func (e hookError) Error() string { return e.err.Error() }
func (e hookError) Unwrap() error { return e.err }

// Projector follows the log of all case events and keeps the read model
// and the statistics stream up to date. Several projectors, each with its
// own read model, may follow one log and write one stream: every one of
// them projects every event and offers every record version, and the
// stream stores each version exactly once.
//
// # The same records everywhere
//
// Projection is deterministic (domain.Project), and so is the statistics
// id: a keyed hash of the seed intake puts into CaseRegistered
// (domain.IDs). Every projector therefore makes the same record versions,
// message for message. What a stream holds already is the truth: a
// registration whose version the stream has gets that record's id there,
// and a record version read from the stream replaces a different one of
// the same version in the read model.
//
// # Each version once: conditional appends
//
// A projector appends a message only with JetStream's expected last
// sequence set to the last stream sequence it has accounted for (its
// tail: every message up to there it has read, or appended itself), and
// only if no message it has read carries that version. When another
// projector appended first, JetStream refuses; the projector reads the
// new messages (storing their records in its read model), and either
// finds its version there or tries again after them. So a version is
// appended only by a projector that has seen the whole stream after its
// scan start without it: never twice, whatever the duplicate window
// (Nats-Msg-Id de-duplication is only a second guard), and an
// acknowledgement lost in transit costs nothing (the retry is refused and
// the read finds the message). A dead projector loses nothing either:
// the others offer the same versions.
//
// # One runner, one transaction and one atomic batch per batch
//
// The projector runs on the one projection runner (pkg/projection),
// which hands it the case log in batches (each event decoded once) and
// retries a failed batch from the checkpoint with its back-off. A batch
// of events is applied in one bbolt transaction that also stores the
// checkpoint and the batch's record versions as the exact messages to
// publish (the outbox). Only after the commit are the messages published:
// as JetStream atomic batches of up to PublishBatch messages (one batch
// for a projector batch of up to 1000 versions), each stored all or none
// with consecutive sequences and one disk sync, where a version used to
// cost a sync-always publish of its own. The first message of an atomic
// batch carries the expected last sequence described above; that, not
// Nats-Msg-Id, is what keeps a re-published version out: a version is
// re-offered only after a crash or a lost acknowledgement, possibly long
// after JetStream's duplicate window, and its subject is shared by every
// record of a case type, so neither the window nor an expected last
// subject sequence could say whether this version is in; the stream-wide
// sequence after a read of the stream can. Publishing waits for each
// atomic batch's acknowledgement (or finds its versions in the stream),
// in order, so the stream never has a gap: if version v is in the stream,
// so is every version the projectors made before it. The next batch is
// applied only when all messages of this one are in the stream, so the
// outbox holds the only messages that can be missing.
//
// The transaction also stores ScanFrom, a stream sequence before every
// message this projector may still need to know about: every message of
// the outbox, and every version newer than its checkpoint that it has
// seen. A starting projector reads the stream after ScanFrom, and
// publishes the rest of the outbox, in order. Whatever the moment of a
// kill -9:
//
//   - before the commit: the batch is not in the file, and whatever of it
//     the stream has (from another projector) is read on start; it is
//     applied again from the checkpoint;
//   - after the commit, before or during publishing: the file has the
//     batch, and the messages not yet in the stream (whole atomic
//     batches: the stream never holds part of one) are appended on
//     start, conditionally as always;
//   - after publishing: nothing is missing.
//
// Query reads one entry per statistics id from the file, and a recount
// of the stream keeps the newest version per statistics id, so neither
// ever counts a record twice.
//
// # A file older than the stream
//
// When the file lags the stream (another projector is ahead, or the file
// was restored from a backup or deleted to be rebuilt), the stream holds
// versions newer than the checkpoint. Reading them stores their records
// in the file (newest version wins, so records of cases deleted since are
// kept), remembers which statistics id each record registered after the
// checkpoint has (a record's first version is its CaseRegistered's
// position), and marks their versions as published. Re-projecting then
// reuses the same ids and publishes only versions the stream lacks, so
// the stream's content and Query's answers are the same as if the file
// had never been behind. ScanFrom stays before those versions until the
// projector has passed them, so a crash during the catch-up reads them
// again.
//
// A case deleted since the file was written shows up only as its
// tombstone (its events were purged), with a stale state in the file.
// Every projected CaseDeleted makes a record version, so when any
// projector saw the deletion the stream holds a version newer than that
// state: before a batch with a tombstone the projector reads the stream's
// new messages, and then forgets the case without deriving anything from
// the stale state.
//
// # Publishing beside the next batch
//
// A batch's versions are published while the next batch is applied: the
// bbolt transaction of batch N+1 and the atomic batches of N are written
// at the same time, which nearly halves a backlog's time (the two cost
// about the same), and batch N+1's versions are published only after
// N's, so the stream keeps the log's order. Nothing of the rules above
// changes. Until N is in the stream, the outbox that N+1's transaction
// stores holds N's messages as well as its own, and the scan position
// it stores is at most the stream's tail from before N's first append,
// so that a restart finds whatever part of N reached the stream and
// publishes only the rest. A failed publish fails the next batch, which
// then recovers as after a restart.
type Projector struct {
	rm     ReadModel
	out    RecordStream
	cfg    ProjectorConfig
	log    *slog.Logger
	runner *projection.Runner

	// The fields below belong to the goroutine that runs the projector
	// (Run, Rebuild): the runner calls the model from it.

	// recovered says view is valid.
	recovered bool
	// crash ends the run when a hook fails.
	crash context.CancelCauseFunc
	// inflight is the last batch's publish, nil before the first.
	inflight *publishing

	// mu guards view, which the publishing goroutine updates while the
	// next batch is applied. It is never held across I/O.
	mu sync.Mutex
	// view is what the projector knows of the stream; valid only when
	// recovered is set.
	view *view
}

// publishing is one batch's publish, running beside the next batch.
type publishing struct {
	msgs       []domain.Message
	checkpoint eventstore.Position
	// startTail is the stream's tail when the publish began: every
	// message it appends comes after it.
	startTail uint64
	// finished and err are set under the projector's mu before done is
	// closed.
	finished bool
	err      error
	done     chan struct{}
}

// settle waits for the last batch's publish and returns its error.
func (p *Projector) settle() error {
	if p.inflight == nil {
		return nil
	}
	<-p.inflight.done
	err := p.inflight.err
	p.inflight = nil
	return err
}

// ProjectorConfig configures a Projector.
type ProjectorConfig struct {
	// Events is the case log, and Head returns its last position (for
	// Rebuild and the lag metric).
	Events eventstore.Store
	Head   func(ctx context.Context) (eventstore.Position, error)
	// ReadModel and Stream are where the records go.
	ReadModel ReadModel
	Stream    RecordStream
	// Policy is the retention policy records are measured against.
	Policy domain.Policy
	// IDs derives statistics ids; every projector writing one stream
	// must use the same key.
	IDs domain.IDs
	// BatchSize bounds the events applied in one transaction while
	// following the log; zero means DefaultBatchSize. CatchUpBatchSize
	// bounds them while rebuilding; zero means the runner's default.
	BatchSize, CatchUpBatchSize int
	// IdleFlush is how long the projector waits for more events before
	// it applies a partial batch; zero means the runner's default.
	IdleFlush time.Duration
	// PublishBatch bounds the messages of one atomic batch; zero means
	// jsbatch.MaxMessages, the server's limit.
	PublishBatch int
	// Backoff is the pause after a failure; zero means
	// projection.DefaultBackoff.
	Backoff backoff.Policy
	Hooks   Hooks
	// Logger receives failures; nil discards them.
	Logger *slog.Logger
}

// NewProjector returns a projector from cfg.Events into cfg.ReadModel
// and cfg.Stream.
func NewProjector(cfg ProjectorConfig) (*Projector, error) {
	if cfg.Events == nil || cfg.ReadModel == nil || cfg.Stream == nil {
		return nil, errors.New("statistics projector: the case log, the read model and the stream are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PublishBatch <= 0 || cfg.PublishBatch > jsbatch.MaxMessages {
		cfg.PublishBatch = jsbatch.MaxMessages
	}
	if cfg.Backoff.Initial <= 0 {
		cfg.Backoff = projection.DefaultBackoff
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	p := &Projector{rm: cfg.ReadModel, out: cfg.Stream, cfg: cfg, log: cfg.Logger, view: newView(0, 0)}
	r, err := projection.New(projection.Config{
		Name: "statistics", Store: cfg.Events, Model: model{p}, Head: cfg.Head,
		BatchSize: cfg.BatchSize, CatchUpBatchSize: cfg.CatchUpBatchSize, Idle: cfg.IdleFlush,
		Backoff: cfg.Backoff, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("statistics projector: %w", err)
	}
	p.runner = r
	return p, nil
}

// Runner is the projection runner, whose metrics the process registers.
func (p *Projector) Runner() *projection.Runner { return p.runner }

// Run recovers (see Projector) and then follows the log from the
// checkpoint until ctx ends, when it returns nil. Failures (the event
// store or NATS away, a malformed event) are logged and retried after a
// back-off by the runner, because statistics must not stop for good on a
// passing outage; a malformed event is retried too, as skipping it would
// publish wrong statistics for ever. Only a test hook's error ends Run
// early. Run the projector from one goroutine at a time.
func (p *Projector) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p.crash = cancel
	// Recovering first publishes what a crash left in the outbox even
	// when no new event comes to make the runner call the model.
	policy := p.cfg.Backoff
	policy.OnRetry = func(err error, wait time.Duration) {
		p.log.Warn("statistics projector: recovery failed, retrying", "retry_in", wait, "error", err)
	}
	if err := backoff.Retry(ctx, policy, func() error { return p.ensureRecovered(ctx) }); err == nil {
		_ = p.runner.Run(ctx)
	}
	_ = p.settle() // Ends with ctx; what it left is in the outbox.
	return p.stopped(ctx)
}

// Rebuild empties the read model and projects the log from its start up
// to its head, for `kontakt rebuild statistics` (the server stopped).
// The stream is kept: the records it holds are read back first, so the
// rebuilt file gives every record the id it has there and nothing is
// published twice. progress, if not nil, gets the position reached and
// the head after each batch.
func (p *Projector) Rebuild(ctx context.Context, progress func(done, total uint64)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p.crash = cancel
	err := p.runner.Rebuild(ctx, progress)
	if serr := p.settle(); err == nil {
		err = serr
	}
	if herr := p.stopped(ctx); herr != nil {
		return herr
	}
	return err
}

// stopped returns the error of the hook that ended the run, if one did.
func (p *Projector) stopped(ctx context.Context) error {
	var he hookError
	if errors.As(context.Cause(ctx), &he) {
		return he.err
	}
	return nil
}

// hook runs a test hook; its error ends the run as a kill -9 would.
func (p *Projector) hook(err error) error {
	if err == nil {
		return nil
	}
	he := hookError{err}
	if p.crash != nil {
		p.crash(he)
	}
	return he
}

// model is the projector as a read model of the runner.
type model struct{ p *Projector }

func (m model) Checkpoint() (eventstore.Position, error) { return m.p.rm.Checkpoint() }

func (m model) Apply(ctx context.Context, batch []projection.Event) error {
	return m.p.apply(ctx, batch)
}

func (m model) Reset(context.Context) error {
	_ = m.p.settle() // The outbox and the view are being dropped.
	m.p.recovered = false
	return m.p.rm.Reset()
}

// ensureRecovered recovers unless the view is valid.
func (p *Projector) ensureRecovered(ctx context.Context) error {
	if p.recovered {
		return nil
	}
	// A publish still running would move the stream under the recovery.
	_ = p.settle()
	if err := p.recover(ctx); err != nil {
		return err
	}
	p.recovered = true
	return nil
}

// recover reads the stream after the stored ScanFrom (storing the records
// it finds), publishes what the outbox holds that the stream lacks, and
// remembers the versions the stream has beyond the checkpoint.
func (p *Projector) recover(ctx context.Context) error {
	st, err := p.rm.State()
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
	// Everything after the batch before the outbox's may be in the
	// stream.
	floor := int64(st.Checkpoint)
	for _, m := range st.Outbox {
		floor = min(floor, m.Version-1)
	}
	p.mu.Lock()
	p.view = newView(scanFrom, floor)
	p.mu.Unlock()
	if err := p.catchUp(ctx, last); err != nil {
		return err
	}
	var missing []domain.Message
	for _, m := range st.Outbox {
		if _, ok := p.viewHas(m.Version); !ok {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		p.log.Info("statistics projector: publishing the last batch's record versions that the stream lacks", "count", len(missing), "of", len(st.Outbox))
	}
	if err := p.publish(ctx, missing); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.view.advance(int64(st.Checkpoint))
	if n := len(p.view.present); n > 0 {
		p.log.Info("statistics stream is ahead of this read model (another instance, or an older file): stored its records and will not publish them again",
			"checkpoint", st.Checkpoint, "versions_ahead", n, "newest_version", p.view.present[n-1].version)
	}
	return nil
}

// catchUpToLast reads the stream's messages after the view's tail.
func (p *Projector) catchUpToLast(ctx context.Context) error {
	last, err := p.out.LastSeq(ctx)
	if err != nil {
		return err
	}
	return p.catchUp(ctx, last)
}

// catchUp reads the stream's messages after the view's tail up to upTo:
// it stores their records in the read model and notes their versions
// (and the ids of records first seen) in the view.
func (p *Projector) catchUp(ctx context.Context, upTo uint64) error {
	p.mu.Lock()
	from := p.view.tail
	p.mu.Unlock()
	if upTo <= from {
		return nil
	}
	first := map[string]int64{}
	var chunk []domain.Record
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		if _, err := p.rm.UpsertRecords(chunk); err != nil {
			return err
		}
		chunk = chunk[:0]
		return nil
	}
	err := p.out.Read(ctx, from, upTo, func(m StoredMessage) error {
		if m.Record == nil {
			p.log.Warn("statistics stream: skipping a message that is not a record version", "stream_seq", m.Seq)
			return nil
		}
		r := *m.Record
		p.mu.Lock()
		p.view.add(m.Seq, r.Version, checksum(m.Data))
		p.mu.Unlock()
		if v, ok := first[r.StatisticsID]; !ok || r.Version < v {
			first[r.StatisticsID] = r.Version
		}
		chunk = append(chunk, r)
		if len(chunk) >= recoverChunk {
			return flush()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read statistics stream after %d: %w", from, err)
	}
	if err := flush(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, v := range first {
		p.view.addCreated(v, id)
	}
	p.view.tail = max(p.view.tail, upTo)
	return nil
}

// apply applies one batch in one transaction, then publishes the record
// versions it produced. Any failure leaves the view to be rebuilt from the
// file and the stream (recover) before the next batch, as after a
// restart.
func (p *Projector) apply(ctx context.Context, evs []projection.Event) (err error) {
	defer func() {
		if err != nil {
			p.recovered = false
		}
	}()
	if err := p.ensureRecovered(ctx); err != nil {
		return err
	}
	if h := p.cfg.Hooks.BeforeApply; h != nil {
		recs := make([]eventstore.RecordedEvent, len(evs))
		for i := range evs {
			recs[i] = evs[i].Recorded
		}
		if err := p.hook(h(recs)); err != nil {
			return err
		}
	}
	for _, ev := range evs {
		if ev.Deleted() {
			// A tombstone of a case whose deletion this projector did not
			// see: the version another projector made of it must be known
			// (see Projector). The last batch's publish is waited for
			// first, so that the read is of a stream nobody here moves.
			if err := p.settle(); err != nil {
				return err
			}
			if err := p.catchUpToLast(ctx); err != nil {
				return err
			}
			break
		}
	}
	var outbox []domain.Message
	var checkpoint eventstore.Position
	committed := false
	err = p.rm.Update(func(tx Tx) error {
		outbox = outbox[:0]
		cp, err := tx.Checkpoint()
		if err != nil {
			return err
		}
		last := cp
		for i := range evs {
			ev := &evs[i]
			if ev.Recorded.Position <= last {
				continue // Applied already: never twice.
			}
			msg, err := p.applyEvent(tx, ev)
			if err != nil {
				return err
			}
			if msg != nil {
				outbox = append(outbox, *msg)
			}
			last = ev.Recorded.Position
		}
		if last == cp {
			return nil
		}
		checkpoint, committed = last, true
		// The last batch's messages stay in the outbox until they are in
		// the stream, and the scan position stays before them (see
		// Projector).
		stored := outbox
		p.mu.Lock()
		scanFrom := p.view.scanFrom()
		if in := p.inflight; in != nil && !in.finished {
			stored = append(slices.Clip(in.msgs), outbox...)
			scanFrom = min(scanFrom, in.startTail)
		}
		p.mu.Unlock()
		return tx.Finish(last, scanFrom, stored)
	})
	if err != nil {
		return err
	}
	if !committed {
		return nil
	}
	if h := p.cfg.Hooks.AfterCommit; h != nil {
		if err := p.hook(h(checkpoint)); err != nil {
			return err
		}
	}
	// The versions of this batch follow those of the last one.
	if err := p.settle(); err != nil {
		return err
	}
	p.mu.Lock()
	in := &publishing{msgs: outbox, checkpoint: checkpoint, startTail: p.view.tail, done: make(chan struct{})}
	p.mu.Unlock()
	p.inflight = in
	go func() {
		err := p.publish(ctx, in.msgs)
		p.mu.Lock()
		if err == nil {
			p.view.advance(int64(in.checkpoint))
		}
		in.err, in.finished = err, true
		p.mu.Unlock()
		close(in.done)
	}()
	return nil
}

// viewHas is view.has under the lock.
func (p *Projector) viewHas(version int64) (seen, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.view.has(version)
}

// applyEvent applies one event and returns the message to publish, if
// the event made a record version the stream lacks.
func (p *Projector) applyEvent(tx Tx, ev *projection.Event) (*domain.Message, error) {
	caseID := ev.Recorded.Stream
	c, err := tx.Case(caseID)
	if err != nil {
		return nil, err
	}
	if c != nil && ev.Deleted() {
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
	step, err := domain.ProjectDecoded(c, ev.Recorded, ev.Message, p.cfg.Policy, func(seed string) string { return p.statisticsID(ev.Recorded, seed) })
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
	if _, ok := p.viewHas(r.Version); ok {
		return nil, nil // In the stream already; the stream's record stands.
	}
	m, err := p.out.Encode(r)
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// statisticsID returns the id for the case registered by ev: the one its
// record has in the stream when the stream holds it already, else the
// one derived from the event's seed (or, without one, its position).
func (p *Projector) statisticsID(ev eventstore.RecordedEvent, seed string) string {
	p.mu.Lock()
	id, ok := p.view.createdID(int64(ev.Position))
	p.mu.Unlock()
	if ok {
		return id
	}
	return p.cfg.IDs.For(seed, int64(ev.Position))
}

// publish appends messages in order, as atomic batches of up to
// PublishBatch messages each appended only when the stream lacks all of
// its versions (see Projector), retrying until every message is in the
// stream or ctx ends: the stream must never get a gap.
func (p *Projector) publish(ctx context.Context, msgs []domain.Message) error {
	pause := backoff.New(p.cfg.Backoff)
	for i := 0; i < len(msgs); {
		if s, ok := p.viewHas(msgs[i].Version); ok {
			if s.sum != checksum(msgs[i].Data) {
				// Another projector made this version differently:
				// different configurations (retention periods, the id
				// key) or a different lag behind deletion. The stream's
				// version stands, and the read model took it.
				p.log.Warn("statistics stream holds a different record of a version this projector made; keeping the stream's (do all instances share their configuration?)",
					"version", msgs[i].Version, "stream_seq", s.seq)
			}
			p.published(msgs[i].Version, false)
			i++
			continue
		}
		// The longest run of versions from i the stream lacks.
		j := i + 1
		for j < len(msgs) && j-i < p.cfg.PublishBatch {
			if _, ok := p.viewHas(msgs[j].Version); ok {
				break
			}
			j++
		}
		if h := p.cfg.Hooks.BeforePublish; h != nil {
			if err := p.hook(h(i)); err != nil {
				return err
			}
		}
		batch := msgs[i:j]
		p.mu.Lock()
		tail := p.view.tail
		p.mu.Unlock()
		first, err := p.out.AppendBatch(ctx, batch, tail)
		if err == nil {
			p.mu.Lock()
			p.view.tail = first + uint64(len(batch)) - 1
			p.mu.Unlock()
			for _, m := range batch {
				p.published(m.Version, true)
			}
			pause.Reset()
			i = j
			continue
		}
		if errors.Is(err, ErrConflict) {
			// Somebody appended first: read it, and look again.
			if err = p.catchUpToLast(ctx); err == nil {
				p.mu.Lock()
				moved := p.view.tail > tail
				p.mu.Unlock()
				if moved {
					continue
				}
				err = errors.New("the stream refused an append but showed nothing new")
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := pause.Next()
		p.log.Warn("statistics projector: publish failed, retrying", "versions", len(batch), "first_version", batch[0].Version, "retry_in", wait, "error", err)
		if err := backoff.Sleep(ctx, wait); err != nil {
			return err
		}
	}
	return nil
}

func (p *Projector) published(version int64, appended bool) {
	if h := p.cfg.Hooks.Published; h != nil {
		h(version, appended)
	}
}

// checksum identifies a message's payload, to notice projectors that
// disagree.
func checksum(data []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(data)
	return h.Sum64()
}
