package server

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/kontakt-se/kontakt/pkg/backoff"
)

// Native gRPC on the shared port.
//
// Every protocol is served on one port. gRPC used to reach grpc-go through
// net/http's HTTP/2 server and grpc.Server.ServeHTTP, which grpc-go itself
// documents as slower than its own transport; under load that transport
// cost was a fifth of a case registration's round trip. So the port is
// split by connection: a cleartext HTTP/2 connection whose first request is
// native gRPC goes to grpc-go's own transport, everything else (HTTP/1.1,
// and HTTP/2 whose first request is gRPC-web, Connect or REST) to the HTTP
// server as before.
//
// To see the first request, the splitter reads the HTTP/2 preface and the
// frames up to the first HEADERS, decoding its header block for the
// content type. A gRPC client waits for the server's SETTINGS before it
// sends a request, so the splitter sends an empty SETTINGS frame first,
// and removes the client's acknowledgement of it: the server that takes
// the connection over sends its own SETTINGS and would treat a second
// acknowledgement as a protocol error. The acknowledgement may come
// before the first request or long after it (a client that does not wait
// sends its request bodies first), so the splitter reads only up to the
// first header block and, if the acknowledgement has not come by then,
// removes it from the stream as it passes (ackStripper). Everything else
// is handed over unchanged.
//
// The choice holds for the whole connection. A client that sends native
// gRPC first and then another protocol on the same connection gets
// grpc-go's answer to that protocol (415); clients keep one protocol per
// connection in practice.

// http2Preface is what every cleartext HTTP/2 client sends first.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// HTTP/2 frame types and flags the splitter needs (RFC 9113, section 6).
const (
	frameHeaders      = 0x1
	frameSettings     = 0x4
	frameContinuation = 0x9
	flagAck           = 0x1
	flagEndHeaders    = 0x4
	flagPadded        = 0x8
	flagPriority      = 0x20
	frameHeaderLen    = 9
	// maxSniffFrame is the largest frame a client may send before it
	// has seen other settings (SETTINGS_MAX_FRAME_SIZE's initial value).
	maxSniffFrame = 16384
	// maxSniffBytes bounds what is buffered per connection while
	// deciding; a client that sends more before its first request is
	// handed to the HTTP server, which answers it as HTTP/2 does.
	maxSniffBytes = 64 << 10
)

// splitter accepts connections on one listener and hands each to the
// native gRPC listener or the HTTP listener.
type splitter struct {
	ln      net.Listener
	grpc    *connQueue
	http    *connQueue
	timeout time.Duration // for the client to show its first request
	logger  *slog.Logger
	// counted, if set, is told where each connection went.
	counted func(native bool)
}

func newSplitter(ln net.Listener, timeout time.Duration, logger *slog.Logger) *splitter {
	return &splitter{
		ln:      ln,
		grpc:    newConnQueue(ln.Addr()),
		http:    newConnQueue(ln.Addr()),
		timeout: timeout,
		logger:  logger,
	}
}

// run accepts until the listener is closed, then closes both queues; a
// connection still being sniffed then is closed when it is decided.
func (s *splitter) run() error {
	defer func() {
		s.grpc.Close()
		s.http.Close()
	}()
	// As net/http does: a failed accept (out of file descriptors, say)
	// is retried after a growing pause.
	pause := backoff.New(backoff.Policy{Initial: 5 * time.Millisecond, Max: time.Second})
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			wait := pause.Next()
			s.logger.Warn("accept failed; retrying", slog.String("error", err.Error()), slog.Duration("retry_in", wait))
			time.Sleep(wait)
			continue
		}
		pause.Reset()
		go s.route(c)
	}
}

// route decides where one connection goes.
func (s *splitter) route(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(s.timeout))
	native, replay, unread, acked, err := sniff(c)
	if err != nil {
		// The client went away or said nothing in time: nobody to answer.
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	rest := unread
	if !acked {
		// The acknowledgement of the splitter's SETTINGS is still to
		// come, after frames the client sent meanwhile (request
		// bodies, other requests): remove it on the way.
		rest = &ackStripper{r: unread}
	}
	conn := &replayConn{Conn: c, r: io.MultiReader(bytes.NewReader(replay), rest)}
	if s.counted != nil {
		s.counted(native)
	}
	if native {
		s.grpc.put(conn)
		return
	}
	s.http.put(conn)
}

// sniff reads the start of a connection. It returns whether the
// connection's first request is native gRPC, the bytes to hand over, and
// the rest of the connection (starting at a frame boundary, with what was
// read ahead), and whether the client's acknowledgement of the
// splitter's SETTINGS was among the bytes read (and removed). It reads no
// further than the first request's header block: a client that does not
// wait for the server's SETTINGS may send its bodies and further requests
// before it acknowledges, more than is worth buffering.
func sniff(c net.Conn) (native bool, replay []byte, unread io.Reader, acked bool, err error) {
	// The preface, compared as it arrives: an HTTP/1.1 request differs in
	// its first byte and may be shorter than the preface.
	buf := make([]byte, 0, 512)
	for len(buf) < len(http2Preface) {
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if !bytes.HasPrefix([]byte(http2Preface), buf[:min(len(buf), len(http2Preface))]) {
			return false, buf, c, true, nil
		}
		if err != nil {
			return false, nil, nil, false, err
		}
	}
	if _, err := c.Write([]byte{0, 0, 0, frameSettings, 0, 0, 0, 0, 0}); err != nil {
		return false, nil, nil, false, err
	}
	replay = append(replay, buf[:len(http2Preface)]...)
	r := io.MultiReader(bytes.NewReader(buf[len(http2Preface):]), c)
	var (
		block     []byte
		inHeaders bool
		decided   bool
	)
	for !decided {
		if len(replay) > maxSniffBytes {
			// Not a request we can read: the HTTP server answers it.
			return false, replay, r, acked, nil
		}
		head := make([]byte, frameHeaderLen)
		if _, err := io.ReadFull(r, head); err != nil {
			return false, nil, nil, false, err
		}
		length := int(head[0])<<16 | int(head[1])<<8 | int(head[2])
		typ, flags := head[3], head[4]
		if length > maxSniffFrame {
			// A broken client: the HTTP server refuses what follows,
			// so nothing more is removed from it.
			return false, append(replay, head...), r, true, nil
		}
		payload := make([]byte, length)
		if _, err := io.ReadFull(r, payload); err != nil {
			return false, nil, nil, false, err
		}
		if typ == frameSettings && flags&flagAck != 0 && !acked {
			// The acknowledgement of the splitter's own SETTINGS.
			acked = true
			continue
		}
		replay = append(replay, head...)
		replay = append(replay, payload...)
		switch {
		case typ == frameHeaders && !inHeaders:
			fragment, ok := headerFragment(flags, payload)
			if !ok {
				return false, replay, r, acked, nil
			}
			block, inHeaders = append(block, fragment...), true
		case typ == frameContinuation && inHeaders:
			block = append(block, payload...)
		default:
			continue
		}
		if flags&flagEndHeaders != 0 {
			native, decided = nativeGRPCBlock(block), true
		}
	}
	return native, replay, r, acked, nil
}

// headerFragment strips a HEADERS frame's padding and priority fields.
func headerFragment(flags byte, p []byte) ([]byte, bool) {
	pad := 0
	if flags&flagPadded != 0 {
		if len(p) < 1 {
			return nil, false
		}
		pad, p = int(p[0]), p[1:]
	}
	if flags&flagPriority != 0 {
		if len(p) < 5 {
			return nil, false
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, false
	}
	return p[:len(p)-pad], true
}

// nativeGRPCBlock reports whether an HPACK header block carries a native
// gRPC content type. It is the first block of the connection, so the
// decoder starts from the empty dynamic table the client's encoder also
// started from.
func nativeGRPCBlock(block []byte) bool {
	var ct string
	d := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if f.Name == "content-type" {
			ct = f.Value
		}
	})
	d.SetMaxStringLength(maxSniffFrame)
	if _, err := d.Write(block); err != nil {
		return false
	}
	if err := d.Close(); err != nil {
		return false
	}
	return isNativeGRPCContentType(ct)
}

// ackStripper passes HTTP/2 frames through, except the first SETTINGS
// acknowledgement, which answers the splitter's SETTINGS and must not
// reach the server that takes the connection over. After it, bytes pass
// through unparsed.
type ackStripper struct {
	r         io.Reader
	done      bool
	pending   []byte // a frame header to hand on
	remaining int    // payload bytes of the current frame still to hand on
}

func (s *ackStripper) Read(p []byte) (int, error) {
	for {
		if len(s.pending) > 0 {
			n := copy(p, s.pending)
			s.pending = s.pending[n:]
			return n, nil
		}
		if s.done {
			return s.r.Read(p)
		}
		if s.remaining > 0 {
			if len(p) > s.remaining {
				p = p[:s.remaining]
			}
			n, err := s.r.Read(p)
			s.remaining -= n
			return n, err
		}
		var head [frameHeaderLen]byte
		if _, err := io.ReadFull(s.r, head[:]); err != nil {
			return 0, err
		}
		length := int(head[0])<<16 | int(head[1])<<8 | int(head[2])
		if head[3] == frameSettings && head[4]&flagAck != 0 {
			s.done = true
			continue
		}
		s.pending = append(s.pending[:0], head[:]...)
		s.remaining = length
	}
}

// replayConn is a connection whose first bytes were read by the splitter
// and are read again by the server that takes it over.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// connQueue is a net.Listener fed by the splitter.
type connQueue struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// put hands a connection to the server accepting on q, or closes it if q
// is closed (the server is shutting down).
func (q *connQueue) put(c net.Conn) {
	select {
	case q.conns <- c:
	case <-q.closed:
		_ = c.Close()
	}
}

// Accept implements net.Listener.
func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener; it may be called more than once.
func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

// Addr implements net.Listener.
func (q *connQueue) Addr() net.Addr { return q.addr }
