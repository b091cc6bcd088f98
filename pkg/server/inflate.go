package server

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"connectrpc.com/connect"
)

// Request bodies and messages may arrive gzip-compressed (Content-Encoding
// on REST, Connect unary and plain HTTP routes; a flag on each envelope of
// gRPC-web and Connect streaming; grpc-encoding on native gRPC). A few
// hundred kilobytes of gzip can inflate to gigabytes, so the size limit
// must count the inflated bytes and stop inflating as soon as it is
// passed, before anything else (authentication included) looks at the
// request. boundedGunzip is that one mechanism: the transcoder uses it for
// envelopes, the edge guard for Content-Encoding bodies, and the plain HTTP
// routes for theirs. Native gRPC is bounded by grpc-go itself, which reads
// at most MaxRecvMsgSize+1 inflated bytes (grpc.MaxRecvMsgSize is set to
// the same limit).

// errInflatedTooLarge reports that a body inflated past the limit.
var errInflatedTooLarge = errors.New("inflated body exceeds the size limit")

// errBadGzip reports a body that claims to be gzip and is not, or is cut
// short: a client mistake, never a server fault.
var errBadGzip = errors.New("body is not valid gzip")

// boundedGunzip inflates gzip and refuses to produce more than limit bytes.
// It reads at most one byte past the limit, so an oversized body costs at
// most limit+1 bytes of output, however far it would inflate.
type boundedGunzip struct {
	zr    gzip.Reader
	limit int64
	out   int64
	err   error
}

// Reset starts inflating src. A stream that does not start with a gzip
// header fails here with errBadGzip.
func (g *boundedGunzip) Reset(src io.Reader) error {
	g.out, g.err = 0, nil
	if err := g.zr.Reset(src); err != nil {
		if isMaxBytes(err) {
			g.err = errInflatedTooLarge
		} else {
			g.err = fmt.Errorf("%w: %w", errBadGzip, err)
		}
		return g.err
	}
	return nil
}

// Read inflates into p, at most up to one byte past the limit.
func (g *boundedGunzip) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if room := g.limit - g.out + 1; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := g.zr.Read(p)
	g.out += int64(n)
	switch {
	case g.out > g.limit:
		g.err = errInflatedTooLarge
		return n, g.err
	case err == nil, errors.Is(err, io.EOF):
		return n, err
	case isMaxBytes(err):
		// The compressed body itself passed the limit.
		g.err = errInflatedTooLarge
		return n, g.err
	default:
		// A corrupt or truncated stream, or a bad checksum.
		g.err = fmt.Errorf("%w: %w", errBadGzip, err)
		return n, g.err
	}
}

// Close ends the stream; it does not close the source.
func (g *boundedGunzip) Close() error { return g.zr.Close() }

// transcoderGunzip is boundedGunzip as the transcoder's decompressor: its
// errors are Connect errors, so the transcoder answers resource_exhausted
// and invalid_argument in each protocol's own form instead of "internal".
type transcoderGunzip struct{ boundedGunzip }

var _ connect.Decompressor = (*transcoderGunzip)(nil)

func newTranscoderGunzip(limit int64) connect.Decompressor {
	return &transcoderGunzip{boundedGunzip{limit: limit}}
}

func (g *transcoderGunzip) Reset(src io.Reader) error {
	return asConnectInflateError(g.boundedGunzip.Reset(src), g.limit)
}

func (g *transcoderGunzip) Read(p []byte) (int, error) {
	n, err := g.boundedGunzip.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, asConnectInflateError(err, g.limit)
	}
	return n, err
}

// asConnectInflateError words an inflation failure for the client, without
// repeating anything from the body.
func asConnectInflateError(err error, limit int64) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errInflatedTooLarge):
		return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("message larger than the limit of %d bytes after decompression", limit))
	case errors.Is(err, errBadGzip):
		return connect.NewError(connect.CodeInvalidArgument, errors.New("message is not valid gzip"))
	default:
		return err
	}
}

// httpGunzip is boundedGunzip as a request body for plain HTTP handlers:
// passing the limit is reported as *http.MaxBytesError, the error those
// handlers already know from http.MaxBytesReader.
type httpGunzip struct {
	boundedGunzip
	body io.ReadCloser
}

func (g *httpGunzip) Read(p []byte) (int, error) {
	n, err := g.boundedGunzip.Read(p)
	if errors.Is(err, errInflatedTooLarge) {
		return n, &http.MaxBytesError{Limit: g.limit}
	}
	return n, err
}

func (g *httpGunzip) Close() error { return g.body.Close() }

// IsBadEncoding reports whether err is a request body that was declared
// gzip but did not inflate, so that a plain HTTP handler can answer 400.
func IsBadEncoding(err error) bool { return errors.Is(err, errBadGzip) }

// decodedBody returns r's body with its Content-Encoding undone and the
// whole inflated body bounded by limit, or ok=false with the HTTP status
// to refuse it with: 415 for an encoding kontakt does not speak. A gzip
// body whose header is broken fails on the first read (IsBadEncoding).
// The compressed bytes are bounded too, by the same limit.
func decodedBody(r *http.Request, limit int64) (body io.ReadCloser, status int) {
	switch contentEncoding(r) {
	case "", "identity":
		return r.Body, 0
	case "gzip", "x-gzip":
		g := &httpGunzip{boundedGunzip: boundedGunzip{limit: limit}, body: r.Body}
		// A broken header is remembered and reported by the first Read,
		// where the handler decides the answer.
		_ = g.Reset(http.MaxBytesReader(nil, r.Body, limit))
		return g, 0
	default:
		return nil, http.StatusUnsupportedMediaType
	}
}

// contentEncoding is the request's single Content-Encoding, lower case;
// "unsupported" when it lists several (kontakt inflates at most once).
func contentEncoding(r *http.Request) string {
	values := r.Header.Values("Content-Encoding")
	switch len(values) {
	case 0:
		return ""
	case 1:
		return strings.ToLower(strings.TrimSpace(values[0]))
	default:
		return "unsupported"
	}
}

func isMaxBytes(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}
