package server

import (
	"fmt"
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
//	CORS -> native gRPC?  -> grpc.Server.ServeHTTP
//	     -> extra routes  -> body limit -> handler
//	     -> "/"           -> rpc (vanguard transcoder, set by Run)
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
		mux.Handle(r.pattern, limitBody(r.handler, int64(s.cfg.MaxRequestBytes)))
	}
	limit := int64(s.cfg.MaxRequestBytes)
	errorWriter := connect.NewErrorWriter()
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit && isConnectUnaryProto(r) {
			// vanguard v0.4.0 reports this case as "unavailable", which
			// clients treat as retryable; answer resource_exhausted in
			// the Connect format ourselves. Every other protocol gets the
			// right code from the transcoder or grpc-go.
			_ = errorWriter.Write(w, r, connect.NewError(connect.CodeResourceExhausted,
				fmt.Errorf("request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, limit)))
			return
		}
		s.rpc.ServeHTTP(w, r)
	}))

	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isNativeGRPC(r) {
			s.grpc.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	return s.corsHandler().Handler(root), nil
}

// corsHandler answers preflights and adds CORS headers for allow-listed
// origins only. rs/cors treats an empty list as "allow all", so an empty
// allow-list is expressed as a function that refuses every origin.
func (s *Server) corsHandler() *cors.Cors {
	opts := cors.Options{
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization"),
		ExposedHeaders: connectcors.ExposedHeaders(),
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
	t, err := vanguardgrpc.NewTranscoder(s.grpc,
		vanguard.WithDefaultServiceOptions(
			// The transcoder buffers whole messages; cap them like
			// grpc.MaxRecvMsgSize caps native gRPC, with the same
			// resource_exhausted error in each protocol's own form.
			vanguard.WithMaxMessageBufferBytes(uint32(s.cfg.MaxRequestBytes)),
		),
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

// isConnectUnaryProto reports whether r is a Connect unary request with a
// binary protobuf body: the one kind of request whose body the transcoder
// forwards unparsed, without a correct error when it is too large.
func isConnectUnaryProto(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/proto"
}

// limitBody refuses bodies larger than limit with 413, up front when the
// client declares the length and while reading otherwise, so that a plain
// HTTP endpoint cannot be made to buffer unbounded input.
func limitBody(h http.Handler, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		h.ServeHTTP(w, r)
	})
}

// headerTimeout is how long a client may take to send its first request's
// headers, on either side of the split port; it guards against slow-loris
// clients.
const headerTimeout = 10 * time.Second

// newHTTPServer returns the http.Server for one listener. HTTP/1.1 serves
// browsers and forms; cleartext HTTP/2 (prior knowledge) serves gRPC clients
// and grpcurl. TLS is terminated in front of the service.
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
