package server

import (
	"compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	connectcors "connectrpc.com/cors"
	"connectrpc.com/vanguard"
	"connectrpc.com/vanguard/vanguardgrpc"
	"github.com/rs/cors"
)

// corsMaxAge is how long a browser may cache a preflight answer. Two hours is
// the cap Chromium applies anyway; longer would only look like it works.
const corsMaxAge = 2 * time.Hour

// newHTTPHandler assembles everything served on the API port except the
// transcoder, which can only be built once all services are registered:
//
//	request id -> CORS -> native gRPC?  -> grpc.Server.ServeHTTP
//	                   -> extra routes  -> body limit (inflated) -> handler
//	                   -> "/"           -> edge guard -> rpc (vanguard transcoder, set by Run)
//
// Native gRPC goes straight to grpc-go, bypassing the transcoder: it needs no
// translation, it keeps working for services the transcoder cannot describe,
// and it keeps grpc-go's own limits and semantics. Registering the extra
// routes here, in New, means a bad or conflicting pattern is reported by New
// instead of panicking later.
func (s *Server) newHTTPHandler(routes []httpRoute) (h http.Handler, err error) {
	mux := http.NewServeMux()
	defer func() {
		// http.ServeMux reports invalid and conflicting patterns by
		// panicking; turn that into an error from New.
		if r := recover(); r != nil {
			h, err = nil, fmt.Errorf("server: HTTP route: %v", r)
		}
	}()
	for _, r := range routes {
		if r.handler == nil {
			return nil, fmt.Errorf("server: HTTP route %q: nil handler", r.pattern)
		}
		mux.Handle(r.pattern, s.logRoute(r.pattern, limitBody(r.handler, int64(s.cfg.MaxRequestBytes))))
	}
	mux.Handle("/", http.HandlerFunc(s.serveRPC))

	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isNativeGRPC(r) {
			s.grpc.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	return withRequestID(s.corsHandler().Handler(root)), nil
}

// corsRequestHeaders are the request headers a page may send besides
// Connect's own list (connectrpc.com/cors, which has what connect-web
// sends: Content-Type, Connect-Protocol-Version, Connect-Timeout-Ms,
// Grpc-Timeout, X-Grpc-Web, X-User-Agent). A header missing here fails
// the preflight, and the browser then sends nothing at all.
var corsRequestHeaders = []string{
	"Authorization",
	// An e-service form or Open311 post that chooses its own
	// idempotency key (docs/api.md).
	"Idempotency-Key",
	// Compression a client may negotiate in either RPC protocol.
	"Connect-Content-Encoding",
	"Connect-Accept-Encoding",
	"Grpc-Encoding",
	"Grpc-Accept-Encoding",
	// A UI that names its requests, to find them in the server's log.
	"X-Request-Id",
}

// corsResponseHeaders are the response headers a page may read besides
// Connect's list (the gRPC-web status headers). A browser hides every
// other header from the page, so what docs/api.md promises a client
// (Idempotent-Replayed, Retry-After) and what the Connect protocol
// answers with must be listed here.
var corsResponseHeaders = []string{
	"Idempotent-Replayed",
	"Retry-After",
	"Connect-Content-Encoding",
	"Connect-Accept-Encoding",
	"Grpc-Encoding",
	"Grpc-Accept-Encoding",
	"Content-Encoding",
	// The request's id, for a UI to show with an error (see
	// requests.go).
	"X-Request-Id",
}

// corsHandler answers preflights and adds CORS headers for allow-listed
// origins only. rs/cors treats an empty list as "allow all", so an empty
// allow-list is expressed as a function that refuses every origin.
func (s *Server) corsHandler() *cors.Cors {
	opts := cors.Options{
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: append(connectcors.AllowedHeaders(), corsRequestHeaders...),
		ExposedHeaders: append(connectcors.ExposedHeaders(), corsResponseHeaders...),
		MaxAge:         int(corsMaxAge / time.Second),
	}
	if len(s.cfg.AllowedOrigins) == 0 {
		opts.AllowOriginFunc = func(string) bool { return false }
	} else {
		opts.AllowedOrigins = s.cfg.AllowedOrigins
	}
	return cors.New(opts)
}

// newTranscoder wraps the gRPC server so that gRPC-web, Connect and REST/JSON
// requests are translated to gRPC. vanguardgrpc snapshots the registered
// services, so this must run after every service has registered; it fails if
// a registered service has no descriptor in protoregistry.GlobalFiles, which
// only happens for hand-written service descriptors.
func (s *Server) newTranscoder() (http.Handler, error) {
	limit := int64(s.cfg.MaxRequestBytes)
	t, err := vanguardgrpc.NewTranscoder(s.grpc,
		vanguard.WithDefaultServiceOptions(
			// The transcoder buffers whole messages; cap them like
			// grpc.MaxRecvMsgSize caps native gRPC, with the same
			// resource_exhausted error in each protocol's own form.
			vanguard.WithMaxMessageBufferBytes(uint32(s.cfg.MaxRequestBytes)),
			// Compressed envelopes (gRPC-web, Connect streaming) are
			// inflated here, by the bounded decompressor below, and
			// never handed to grpc-go compressed: one bound, and one
			// answer (invalid_argument) for a message that is not gzip.
			vanguard.WithNoTargetCompression(),
		),
		// vanguard v0.4.0 inflates with an unbounded ReadFrom; this
		// decompressor stops at the limit. Registering "gzip" ourselves
		// also sidesteps WithCompression resetting the table when no
		// codec option was given.
		vanguard.WithCompression(vanguard.CompressionGzip,
			func() connect.Compressor { return gzip.NewWriter(io.Discard) },
			func() connect.Decompressor { return newTranscoderGunzip(limit) }),
		// A request that is not valid JSON is the client's mistake.
		vanguard.WithCodec(newJSONCodec),
	)
	if err != nil {
		return nil, fmt.Errorf("server: build gRPC-web/Connect/REST transcoder (every registered service needs its descriptor in protoregistry.GlobalFiles): %w", err)
	}
	return t, nil
}

// isNativeGRPC reports whether r is a gRPC request in the default proto
// encoding that grpc-go can serve as it is. gRPC-web and gRPC with other
// codecs (e.g. application/grpc+json) go through the transcoder.
func isNativeGRPC(r *http.Request) bool {
	return isNativeGRPCContentType(r.Header.Get("Content-Type"))
}

// isNativeGRPCContentType is isNativeGRPC for a content type alone.
func isNativeGRPCContentType(ct string) bool {
	if !strings.HasPrefix(ct, "application/grpc") {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/grpc" || mt == "application/grpc+proto"
}

// limitBody bounds the body of a plain HTTP route: it undoes a gzip
// Content-Encoding with the bounded inflater (so a handler never sees more
// than limit inflated bytes; passing it reads as *http.MaxBytesError, a
// broken gzip as IsBadEncoding), refuses other encodings with 415, and
// refuses a declared length over the limit with 413 before reading.
func limitBody(h http.Handler, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := r.Body
		if r.ContentLength > limit {
			discardUnread(r, raw, limit)
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		// The handler's answer is still buffered when it returns; what
		// it left unread of the body is read first (discardUnread).
		defer discardUnread(r, raw, limit)
		body, status := decodedBody(r, limit)
		if status != 0 {
			http.Error(w, "unsupported Content-Encoding; send gzip or none", status)
			return
		}
		if body != r.Body {
			r.Header.Del("Content-Encoding")
			r.ContentLength = -1
		}
		r.Body = http.MaxBytesReader(w, body, limit)
		h.ServeHTTP(w, r)
	})
}

// headerTimeout is how long a client may take to send its first request's
// headers, on either side of the split port; it guards against slow-loris
// clients.
const headerTimeout = 10 * time.Second

// newHTTPServer returns the http.Server for one listener. HTTP/1.1 serves
// browsers and forms; HTTP/2 with prior knowledge serves gRPC clients and
// grpcurl on a cleartext port, and browsers too when the port serves TLS:
// the listener has decrypted the connection already (tls.go), so the
// server meets the same bytes either way.
func newHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:   h,
		Protocols: protocols,
		// Header timeout guards against slow-loris clients. There is no
		// read or write timeout because gRPC streams are long-lived.
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}
