package esdb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// This file works around weaknesses of EventStore-Client-Go v4.2.0
// (upstream issue 187 and pull requests 188 and 189, of which v4.2.0 has
// neither):
//
//   - The client's connection is a goroutine fed through an unbuffered
//     channel. It exits for good when node discovery fails (every later call
//     reports ErrorCodeConnectionClosed); calls queued behind that discovery,
//     or hitting an error while it exits, block forever sending to it; and
//     Close closes the channel under calls that still send on it, which
//     panics ("send on closed channel") in the calling goroutine. With 16
//     concurrent appends to an unreachable server, 15 panicked that way in a
//     test here before the gate below existed.
//   - Reads and subscriptions do not trigger the client's reconnection after
//     a transport error (pull request 188), so in a cluster a client can
//     keep talking to a node that is gone.
//
// So:
//
//   - Every call into the client runs in a goroutine of its own under a
//     recover, and the caller waits for it at most until its deadline.
//   - Only one call enters a new client until that call has shown that the
//     connection works (the gate in generation); if it fails, the calls
//     waiting for it fail with its error instead of queueing behind a
//     discovery that strands them.
//   - A client that failed at the transport level or panicked is retired:
//     the next call gets a fresh client, which discovers the node again,
//     and the retired client is closed once no call is inside it any more.
//     Retiring is per client generation, so a burst of failures on one
//     client replaces it once.
//   - A call still inside a client stuckGrace after its context ended is
//     stuck (blocked on the dead connection goroutine): the client is then
//     closed under it, which makes the stuck send panic, recovered, and so
//     ends that goroutine. That close under a running call is the library's
//     own data race, which -race would report; after the gate it is left to
//     calls that would otherwise hang forever.

// errClosed is returned after Store.Close.
var errClosed = errors.New("store closed")

// stuckGrace is how long a call may take to return after its context ended
// before it counts as stuck and its client is closed under it.
const stuckGrace = 2 * time.Second

// clientPool holds the current client and replaces it when retired.
type clientPool struct {
	cfg esdbclient.Configuration

	mu     sync.Mutex
	cur    *generation
	gens   uint64
	closed bool
}

// generation is one client and the calls inside it. Fields other than id,
// client and ready are guarded by clientPool.mu.
type generation struct {
	id     uint64
	client *esdbclient.Client

	inflight int  // goroutines inside the client
	retired  bool // no new calls; close when inflight drops to zero
	isClosed bool

	// The gate. A new client discovers the node on its first call, and the
	// calls that queue behind a discovery that fails are stuck for good (the
	// connection goroutine exits). So only one call enters a new client;
	// the others wait until it settles the gate: they enter once it showed
	// that the client works, and fail with its error otherwise.
	entered bool          // the first call entered
	settled bool          // ready is closed
	failed  error         // why the first call showed the client unusable
	ready   chan struct{} // closed when settled
}

// acquire returns the current generation, creating a client if the last
// one was retired, and counts the caller in; release counts it out, and
// settle reports each call's outcome. Creating a client does not connect:
// the client discovers the node on its first call.
func (p *clientPool) acquire(ctx context.Context) (*generation, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errClosed
		}
		if p.cur == nil {
			cfg := p.cfg // Each client gets its own copy.
			c, err := esdbclient.NewClient(&cfg)
			if err != nil {
				p.mu.Unlock()
				return nil, fmt.Errorf("%w: %w", eventstore.ErrInvalid, err)
			}
			p.gens++
			p.cur = &generation{id: p.gens, client: c, ready: make(chan struct{})}
		}
		g := p.cur
		switch {
		case g.settled && g.failed != nil:
			p.mu.Unlock()
			return nil, g.failed
		case g.settled || !g.entered:
			g.entered = true
			g.inflight++
			p.mu.Unlock()
			return g, nil
		}
		p.mu.Unlock()
		select {
		case <-g.ready:
			p.mu.Lock()
			failed := g.failed
			p.mu.Unlock()
			if failed != nil {
				return nil, failed
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// settle reports the outcome of a call on g: the first outcome settles the
// gate, and a failure that a new client may cure retires g.
func (p *clientPool) settle(g *generation, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	bad := needsNewClient(err)
	if !g.settled {
		g.settled = true
		if bad {
			g.failed = err
		}
		close(g.ready)
	}
	if bad {
		p.retireLocked(g)
	}
}

// release counts a call out of g, closing g when it was retired and this
// was its last call.
func (p *clientPool) release(g *generation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g.inflight--
	if g.retired && g.inflight == 0 {
		g.close()
	}
}

// retire stops handing out g; it is closed once its calls have left it.
func (p *clientPool) retire(g *generation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.retireLocked(g)
}

func (p *clientPool) retireLocked(g *generation) {
	if p.cur == g {
		p.cur = nil
	}
	g.retired = true
	if g.inflight == 0 {
		g.close()
	}
}

// forceClose retires g and closes it even with calls inside: they are
// stuck, and closing is what ends them.
func (p *clientPool) forceClose(g *generation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == g {
		p.cur = nil
	}
	g.retired = true
	g.close()
}

// close retires the current client; later calls fail with errClosed.
func (p *clientPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	if g := p.cur; g != nil {
		p.cur = nil
		g.retired = true
		if g.inflight == 0 {
			g.close()
		}
	}
}

// close closes the client once; clientPool.mu must be held.
func (g *generation) close() {
	if g.isClosed {
		return
	}
	g.isClosed = true
	// Close only closes a channel; the client's goroutine then closes the
	// gRPC connection. Nothing of it panics, but stay safe.
	defer func() { _ = recover() }()
	_ = g.client.Close()
}

// clientPanic is a panic inside the client library, recovered.
type clientPanic struct{ value any }

func (p *clientPanic) Error() string { return fmt.Sprintf("event store client panicked: %v", p.value) }

// guard runs fn and turns a panic into a *clientPanic error.
func guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &clientPanic{value: r}
		}
	}()
	return fn()
}

// call runs fn with the current client under guard, in its own goroutine,
// with a context that ends after timeout (no limit when timeout is zero)
// or with ctx. It returns fn's error as is (not mapped to the eventstore
// sentinels), or the context's error when fn did not return in time. It
// retires the client after failures that a new client may cure.
func (p *clientPool) call(ctx context.Context, timeout time.Duration, fn func(ctx context.Context, c *esdbclient.Client) error) error {
	g, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	cctx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		cctx, cancel = context.WithTimeout(ctx, timeout)
	}
	done := make(chan error, 1)
	go func() {
		err := guard(func() error { return fn(cctx, g.client) })
		p.settle(g, err)
		p.release(g)
		done <- err
	}()
	select {
	case err := <-done:
		cancel()
		return err
	case <-cctx.Done():
		err := cctx.Err()
		cancel()
		p.watch(g, done)
		return err
	}
}

// watch force-closes g unless done delivers within stuckGrace: a call that
// ignores its ended context is stuck inside the client.
func (p *clientPool) watch(g *generation, done <-chan error) {
	go func() {
		t := time.NewTimer(stuckGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			p.forceClose(g)
		}
	}()
}

// needsNewClient reports whether err shows a client that a new one may do
// better than: it panicked, its connection goroutine is gone, or the node
// is unreachable (the client does not rediscover after read errors).
func needsNewClient(err error) bool {
	if err == nil || errors.Is(err, errClosed) {
		return false
	}
	var cp *clientPanic
	if errors.As(err, &cp) {
		return true
	}
	var ee *esdbclient.Error
	if errors.As(err, &ee) {
		switch ee.Code() {
		case esdbclient.ErrorCodeConnectionClosed, esdbclient.ErrorUnavailable, esdbclient.ErrorCodeNotLeader:
			return true
		}
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable {
		return true
	}
	return false
}

// wrapErr adds the matching eventstore sentinel to an error of the client,
// keeping the original for errors.As and the message.
//
//   - wrong expected version -> ErrConflict
//   - stream deleted -> ErrStreamDeleted (and ErrStreamNotFound)
//   - stream not found -> ErrStreamNotFound
//   - unreachable node, time-outs, closed connections, not-leader answers,
//     cancelled contexts, client panics and anything unrecognised ->
//     ErrUnavailable: the outcome of a write is unknown
//   - invalid arguments and oversized appends -> ErrInvalid
//   - refusals (authentication, access, unsupported feature) stay
//     unwrapped: retrying will not help.
func wrapErr(err error) error {
	if err == nil {
		return nil
	}
	var cp *clientPanic
	if errors.As(err, &cp) || errors.Is(err, errClosed) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
	}
	var ee *esdbclient.Error
	if errors.As(err, &ee) {
		switch ee.Code() {
		case esdbclient.ErrorCodeWrongExpectedVersion:
			return fmt.Errorf("%w: %w", eventstore.ErrConflict, err)
		case esdbclient.ErrorCodeStreamDeleted:
			return fmt.Errorf("%w (%w): %w", eventstore.ErrStreamDeleted, eventstore.ErrStreamNotFound, err)
		case esdbclient.ErrorCodeResourceNotFound:
			return fmt.Errorf("%w: %w", eventstore.ErrStreamNotFound, err)
		case esdbclient.ErrorCodeDeadlineExceeded, esdbclient.ErrorCodeConnectionClosed,
			esdbclient.ErrorUnavailable, esdbclient.ErrorCodeNotLeader, esdbclient.ErrorAborted:
			return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
		case esdbclient.ErrorCodeUnauthenticated, esdbclient.ErrorCodeAccessDenied,
			esdbclient.ErrorCodeUnsupportedFeature:
			return err
		}
		// Unknown and internal codes: look at the gRPC status below.
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.InvalidArgument, codes.OutOfRange:
			// Among others, the server's maximum append size.
			return fmt.Errorf("%w: %w", eventstore.ErrInvalid, err)
		case codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented:
			return err
		}
	}
	return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
}
