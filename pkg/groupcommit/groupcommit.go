// Package groupcommit lets concurrent requests share one write.
//
// On a sync-always NATS server every acknowledged write waits for its own
// disk sync, and the writes of one stream are synced one after the other.
// Requests that arrive while a write is in flight can instead share the
// next one, an atomic batch that is synced once. Queue does that for any
// kind of request: callers hand it their request and wait for their own
// outcome; one goroutine, started when work arrives and gone when there
// is none, commits whatever is queued as one batch.
//
// Context is the context such a shared write runs on. It is given up when
// nobody waits for it any more, so one lost acknowledgement costs only
// the requests that waited for it.
package groupcommit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Context returns the context for a write done on behalf of members: it
// ends when every member's context has ended, or after timeout, whichever
// comes first, and not when parent is cancelled, so that stopping a
// service does not cut a write that started (parent only lends its
// values). A write given up this way has an unknown outcome, which callers
// handle as they handle a lost acknowledgement. The returned cancel must
// be called when the write is over.
func Context(parent context.Context, timeout time.Duration, members []context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), timeout)
	var waiting atomic.Int64
	waiting.Store(int64(len(members)))
	stops := make([]func() bool, 0, len(members))
	for _, m := range members {
		stops = append(stops, context.AfterFunc(m, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// Commit writes a batch of requests and returns one Result per request,
// in the same order. It is called on a context from Context.
type Commit[Req, Res any] func(ctx context.Context, reqs []Req) []Result[Res]

// Result is the outcome of one request.
type Result[Res any] struct {
	Value Res
	Err   error
}

// Config tunes a Queue.
type Config[Req any] struct {
	// MaxBatch bounds a batch; it must be positive.
	MaxBatch int
	// Timeout bounds one batch's commit; it must be positive.
	Timeout time.Duration
	// Key, if set, keeps requests with the same key out of one batch: the
	// second waits for the next batch. Writes that expect a key's
	// revision would otherwise refuse each other, and with them the
	// whole batch.
	Key func(Req) string
}

// Queue group-commits requests. The zero value is not usable; use New.
type Queue[Req, Res any] struct {
	commit Commit[Req, Res]
	cfg    Config[Req]

	mu      sync.Mutex
	queue   []*call[Req, Res]
	running bool
}

type call[Req, Res any] struct {
	ctx  context.Context
	req  Req
	done chan Result[Res]
}

// New returns a Queue that commits with commit. It panics on a
// configuration no caller can mean (a programming error, caught by the
// first test that builds one).
func New[Req, Res any](commit Commit[Req, Res], cfg Config[Req]) *Queue[Req, Res] {
	if commit == nil || cfg.MaxBatch < 1 || cfg.Timeout <= 0 {
		panic("groupcommit: New needs a commit function, MaxBatch >= 1 and Timeout > 0")
	}
	return &Queue[Req, Res]{commit: commit, cfg: cfg}
}

// Do queues req and waits for its outcome or for ctx. When ctx ends first,
// Do returns ctx's error and the outcome is unknown: the request may still
// be committed with its batch, as after a lost acknowledgement. A request
// whose ctx has ended before its batch is taken is not written at all.
func (q *Queue[Req, Res]) Do(ctx context.Context, req Req) (Res, error) {
	c := &call[Req, Res]{ctx: ctx, req: req, done: make(chan Result[Res], 1)}
	q.mu.Lock()
	q.queue = append(q.queue, c)
	if !q.running {
		q.running = true
		go q.run(context.WithoutCancel(ctx))
	}
	q.mu.Unlock()
	select {
	case r := <-c.done:
		return r.Value, r.Err
	case <-ctx.Done():
		var zero Res
		return zero, ctx.Err()
	}
}

// run commits batches until the queue is empty, then ends; the next Do
// starts it again. values only lends its values to the commits' contexts.
func (q *Queue[Req, Res]) run(values context.Context) {
	for {
		batch := q.take()
		if batch == nil {
			return
		}
		q.commitBatch(values, batch)
	}
}

// take removes the next batch from the queue: the requests still waiting,
// in order, up to MaxBatch, at most one per key. Requests whose callers
// gave up are answered and dropped. It returns nil, and marks the queue
// idle, when nothing is left.
func (q *Queue[Req, Res]) take() []*call[Req, Res] {
	q.mu.Lock()
	defer q.mu.Unlock()
	var batch, rest []*call[Req, Res]
	var keys map[string]bool
	if q.cfg.Key != nil {
		keys = make(map[string]bool)
	}
	for _, c := range q.queue {
		if err := c.ctx.Err(); err != nil {
			c.done <- Result[Res]{Err: err}
			continue
		}
		if len(batch) == q.cfg.MaxBatch {
			rest = append(rest, c)
			continue
		}
		if keys != nil {
			k := q.cfg.Key(c.req)
			if keys[k] {
				rest = append(rest, c)
				continue
			}
			keys[k] = true
		}
		batch = append(batch, c)
	}
	q.queue = rest
	if len(batch) == 0 {
		q.running = false
		return nil
	}
	return batch
}

// commitBatch runs commit on batch and answers every member.
func (q *Queue[Req, Res]) commitBatch(values context.Context, batch []*call[Req, Res]) {
	reqs := make([]Req, len(batch))
	members := make([]context.Context, len(batch))
	for i, c := range batch {
		reqs[i], members[i] = c.req, c.ctx
	}
	ctx, cancel := Context(values, q.cfg.Timeout, members)
	defer cancel()
	results := q.commit(ctx, reqs)
	for i, c := range batch {
		if i < len(results) {
			c.done <- results[i]
			continue
		}
		c.done <- Result[Res]{Err: errMissingResult}
	}
}

// errMissingResult answers requests a faulty Commit returned no result for,
// so that no caller waits for ever.
var errMissingResult = errors.New("groupcommit: commit returned no result for this request")
