package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
)

// The edge guard runs in front of the transcoder for every request that is
// not native gRPC. It does what the transcoder cannot do right by itself:
//
//   - a body sent whole (REST, Connect unary) is read here, bounded by the
//     size limit after undoing its Content-Encoding, so that an oversized
//     or compressed body is refused before anything else runs (REST with
//     413, Connect with resource_exhausted), a body that claims gzip and is
//     not gets 400, and an encoding kontakt does not speak gets 415;
//   - a URL that is not UTF-8 is refused with 400 (the transcoder would
//     put it into a string field and then fail to encode it, as "unknown");
//   - a request the transcoder refuses before any handler ran is logged,
//     once, by protocol and status and never with its path or body, at INFO
//     for a client mistake and at ERROR for a server fault. Calls that
//     reach the handlers are logged by the logging interceptor instead.

// serveRPC serves the RPC protocols (gRPC-web, Connect, REST) through the
// edge guard and the transcoder.
func (s *Server) serveRPC(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	mark := &callMark{}
	r = s.markJSONClient(r.WithContext(context.WithValue(r.Context(), callMarkKey{}, mark)))
	rec := &statusRecorder{ResponseWriter: w}
	// Taken before the transcoder, which rewrites the request in place.
	protocol, method := s.protocolOf(r), s.rpcMethod(r.URL.Path)
	if s.guard(rec, r) {
		s.rpc.ServeHTTP(rec, r)
	}
	if !mark.logged.Load() {
		s.logRefusal(r.Context(), r.RemoteAddr, protocol, method, rec, time.Since(start))
	}
}

// guard checks and prepares r; it answers and returns false when r is
// refused.
func (s *Server) guard(w http.ResponseWriter, r *http.Request) bool {
	limit := int64(s.cfg.MaxRequestBytes)
	if !utf8.ValidString(r.URL.Path) || !validQueryUTF8(r.URL.RawQuery) {
		s.refuse(w, r, connect.CodeInvalidArgument, "the URL is not valid UTF-8")
		return false
	}
	if envelopedProtocol(r) {
		// Enveloped messages are bounded and inflated one by one by
		// the transcoder's decompressor.
		return s.guardEnvelope(w, r, limit)
	}
	if r.Body == nil || r.Body == http.NoBody {
		if r.Method != http.MethodPost && r.Method != http.MethodPut && r.Method != http.MethodPatch {
			return true // a GET carries its message in the URL
		}
		r.Body = http.NoBody
	}
	if r.ContentLength > limit {
		s.refuseWith(w, r, connect.CodeResourceExhausted, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, limit))
		return false
	}
	body, status := decodedBody(r, limit)
	if status != 0 {
		s.refuseWith(w, r, connect.CodeInvalidArgument, http.StatusUnsupportedMediaType, "unsupported Content-Encoding; send gzip or none")
		return false
	}
	data, err := io.ReadAll(http.MaxBytesReader(nil, body, limit))
	switch {
	case isMaxBytes(err):
		s.refuseWith(w, r, connect.CodeResourceExhausted, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request body exceeds the limit of %d bytes (after decompression)", limit))
		return false
	case IsBadEncoding(err):
		s.refuse(w, r, connect.CodeInvalidArgument, "request body is not valid gzip")
		return false
	case err != nil:
		// The client went away or sent less than it announced.
		s.refuse(w, r, connect.CodeInvalidArgument, "request body could not be read")
		return false
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	hasBody := r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch
	if !hasBody {
		if len(data) > 0 {
			// The transcoder answers this as "unknown".
			s.refuse(w, r, connect.CodeInvalidArgument, "a "+methodName(r.Method)+" request has no body")
			return false
		}
		r.Body, r.ContentLength = http.NoBody, 0
		return true
	}
	if len(data) == 0 && (mt == "application/json" || mt == "") {
		// An empty JSON body is an empty message, as REST gateways take
		// it; the transcoder would pass on no message at all, which
		// grpc-go answers as an internal "cardinality violation".
		data = []byte("{}")
	}
	method := s.rpcMethod(r.URL.Path)
	if method == "" && mt != "" && mt != "application/json" {
		// REST speaks JSON. The transcoder would hand another body to
		// grpc-go unparsed, to be answered as "internal".
		s.refuseWith(w, r, connect.CodeInvalidArgument, http.StatusUnsupportedMediaType, "a REST request body must be application/json")
		return false
	}
	if method != "" && mt == "application/proto" {
		// The transcoder hands a Connect protobuf body to grpc-go
		// unparsed, and grpc-go answers one it cannot parse as
		// "internal". Parse it here, so that a malformed body is the
		// client's mistake.
		if err := s.checkProto(method, data); err != nil {
			s.refuse(w, r, connect.CodeInvalidArgument, err.Error())
			return false
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	r.ContentLength = int64(len(data))
	r.Header.Del("Content-Encoding")
	r.Header.Set("Content-Length", strconv.Itoa(len(data)))
	return true
}

// guardEnvelope checks that a gRPC-web or Connect streaming request to a
// method that takes one request message carries one whole envelope
// header, and, when the body's length is declared, the whole message. The
// transcoder hands a body cut short to grpc-go as "no message", which it
// answers as an internal "cardinality violation".
func (s *Server) guardEnvelope(w http.ResponseWriter, r *http.Request, limit int64) bool {
	info, ok := s.methodInfo(r.URL.Path)
	if !ok || info.IsClientStream {
		return true
	}
	var hdr [5]byte
	body := r.Body
	if body == nil {
		body = http.NoBody
	}
	if _, err := io.ReadFull(body, hdr[:]); err != nil {
		s.refuse(w, r, connect.CodeInvalidArgument, "the request holds no complete message")
		return false
	}
	length := int64(binary.BigEndian.Uint32(hdr[1:]))
	switch {
	case length > limit:
		s.refuseWith(w, r, connect.CodeResourceExhausted, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request message of %d bytes exceeds the limit of %d bytes", length, limit))
		return false
	case r.ContentLength >= 0 && r.ContentLength < int64(len(hdr))+length:
		s.refuse(w, r, connect.CodeInvalidArgument, "the request message is cut short")
		return false
	}
	var first []byte
	if hdr[0] <= 1 {
		// The one request message is read here and inflated with the
		// bounded reader, so that a bomb is refused before anything
		// else runs, whatever the method does first; a protobuf message
		// is parsed too, because grpc-go would answer one it cannot
		// parse as "internal". It is passed on uncompressed.
		msg := make([]byte, length)
		if _, err := io.ReadFull(body, msg); err != nil {
			s.refuse(w, r, connect.CodeInvalidArgument, "the request message is cut short")
			return false
		}
		first = msg
		// A compression other than gzip is left to the transcoder,
		// which refuses an encoding it does not know.
		if hdr[0] == 0 || envelopeEncoding(r) == "gzip" {
			if hdr[0] == 1 {
				inflated, code, msg := inflateMessage(first, limit)
				switch code {
				case 0:
				case connect.CodeResourceExhausted:
					s.refuseWith(w, r, code, http.StatusRequestEntityTooLarge, msg)
					return false
				default:
					s.refuse(w, r, code, msg)
					return false
				}
				first = inflated
				hdr[0] = 0
				binary.BigEndian.PutUint32(hdr[1:], uint32(len(first)))
			}
			if protoEnvelope(r) {
				if err := s.checkProto(s.rpcMethod(r.URL.Path), first); err != nil {
					s.refuse(w, r, connect.CodeInvalidArgument, err.Error())
					return false
				}
			}
		}
		r.ContentLength = -1
		r.Header.Del("Content-Length")
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(hdr[:]), bytes.NewReader(first), body), body}
	return true
}

// inflateMessage inflates one gzip envelope with the bounded reader, or
// says why not.
func inflateMessage(compressed []byte, limit int64) ([]byte, connect.Code, string) {
	g := &boundedGunzip{limit: limit}
	var out bytes.Buffer
	err := g.Reset(bytes.NewReader(compressed))
	if err == nil {
		_, err = out.ReadFrom(g)
	}
	switch {
	case errors.Is(err, errInflatedTooLarge):
		return nil, connect.CodeResourceExhausted, fmt.Sprintf("message larger than the limit of %d bytes after decompression", limit)
	case err != nil:
		return nil, connect.CodeInvalidArgument, "message is not valid gzip"
	}
	return out.Bytes(), 0, ""
}

// protoEnvelope reports gRPC-web and Connect streaming requests in the
// protobuf codec.
func protoEnvelope(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/grpc-web", "application/grpc-web+proto", "application/connect+proto":
		return true
	}
	return false
}

// envelopeEncoding is the compression a gRPC-web or Connect streaming
// request declares for its envelopes.
func envelopeEncoding(r *http.Request) string {
	if e := r.Header.Get("Grpc-Encoding"); e != "" {
		return strings.ToLower(strings.TrimSpace(e))
	}
	return strings.ToLower(strings.TrimSpace(r.Header.Get("Connect-Content-Encoding")))
}

// methodInfo describes the registered method a path names.
func (s *Server) methodInfo(path string) (grpc.MethodInfo, bool) {
	svc, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !ok {
		return grpc.MethodInfo{}, false
	}
	for _, m := range s.services[svc].Methods {
		if m.Name == method {
			return m, true
		}
	}
	return grpc.MethodInfo{}, false
}

// checkProto parses a protobuf request body for method ("/svc/Method")
// and says, without repeating it, what is wrong with it.
func (s *Server) checkProto(method string, data []byte) error {
	svc, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil // not described; grpc-go decides
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return nil
	}
	if err := proto.Unmarshal(data, dynamicpb.NewMessage(md.Input())); err != nil {
		return fmt.Errorf("request body is not a valid %s", md.Input().FullName())
	}
	return nil
}

// envelopedProtocol reports gRPC-web and Connect streaming requests, whose
// messages come in envelopes (each possibly compressed on its own).
func envelopedProtocol(r *http.Request) bool {
	ct := strings.ToLower(r.Header.Get("Content-Type"))
	return strings.HasPrefix(ct, "application/grpc") || strings.HasPrefix(ct, "application/connect+")
}

// validQueryUTF8 reports whether every key and value of a query string
// decodes to UTF-8. A query that does not parse is left to the transcoder,
// which refuses it with invalid_argument.
func validQueryUTF8(raw string) bool {
	if raw == "" {
		return true
	}
	values, err := url.ParseQuery(raw)
	if err != nil {
		return true
	}
	for k, vs := range values {
		if !utf8.ValidString(k) {
			return false
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	return true
}

// refuse answers r with an error in its protocol's form: Connect (or
// gRPC-web) for an RPC path, google.rpc.Status JSON with the code's HTTP
// status (HTTPStatus) for REST. msg must not repeat anything the client
// sent.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code connect.Code, msg string) {
	s.refuseWith(w, r, code, HTTPStatus(codes.Code(code)), msg)
}

// refuseWith is refuse with a REST status of its own, where HTTP has a
// more exact answer than the code's: 413 for a body too large (the code's
// 429 would tell the client to wait and send it again) and 415 for a
// content type or encoding kontakt does not take.
func (s *Server) refuseWith(w http.ResponseWriter, r *http.Request, code connect.Code, httpStatus int, msg string) {
	discardUnread(r, r.Body, int64(s.cfg.MaxRequestBytes))
	if s.rpcMethod(r.URL.Path) != "" || envelopedProtocol(r) {
		_ = connect.NewErrorWriter().Write(w, r, connect.NewError(code, errors.New(msg)))
		return
	}
	body, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(&spb.Status{Code: int32(code), Message: msg})
	if err != nil {
		body = []byte(`{"code":13,"message":"internal error","details":[]}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body)
}

// discardFactor times the size limit is how much of a refused request's
// unread body discardUnread reads before the answer goes out.
const discardFactor = 4

// discardUnread reads and throws away what is left of a refused request's
// body, up to discardFactor times the limit, before the answer is sent.
//
// Over HTTP/1.1 a browser reads the answer only after it has sent the
// whole body. When the server answers early and closes the connection
// with body bytes still unread, its kernel resets the connection, and
// the page sees "Failed to fetch" instead of resource_exhausted or 413:
// it cannot tell a request too large from a server that is down (17 of
// 20 tries with a 5 MiB gRPC-web request in Chromium). Reading the rest
// costs the bandwidth the client spends anyway; a body larger than the
// bound is cut off as before. HTTP/2 needs none of this: the server
// answers and resets only the stream.
func discardUnread(r *http.Request, body io.Reader, limit int64) {
	if r.ProtoMajor != 1 || body == nil || body == http.NoBody {
		return
	}
	_, _ = io.CopyN(io.Discard, body, discardFactor*limit)
}

// rpcMethod returns "/service/Method" when path names a method of a
// registered service, and "" otherwise (REST paths, unknown paths).
func (s *Server) rpcMethod(path string) string {
	svc, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !ok || method == "" || strings.Contains(method, "/") {
		return ""
	}
	info, ok := s.services[svc]
	if !ok {
		return ""
	}
	for _, m := range info.Methods {
		if m.Name == method {
			return "/" + svc + "/" + method
		}
	}
	return ""
}

// callMark records that the logging interceptor logged a call, so that the
// edge does not log it a second time.
type callMark struct{ logged atomic.Bool }

type callMarkKey struct{}

// markLogged notes on ctx, when it came through the edge guard, that the
// call has been logged.
func markLogged(ctx context.Context) {
	if m, ok := ctx.Value(callMarkKey{}).(*callMark); ok {
		m.logged.Store(true)
	}
}

// statusRecorder remembers the status a handler answered with, and the
// gRPC status of a trailers-only answer (gRPC-web).
type statusRecorder struct {
	http.ResponseWriter
	status     int
	grpcStatus string
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
		r.grpcStatus = r.Header().Get("Grpc-Status")
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	return r.ResponseWriter.Write(p)
}

// Flush is needed by the transcoder and by grpc-go.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// logRefusal logs a request that ended in an error before any handler saw
// it. It names the protocol, the status and, for an RPC path, the method:
// never the raw path, query, headers or body, which may carry identifiers
// and personal data.
func (s *Server) logRefusal(ctx context.Context, peer, protocol, method string, rec *statusRecorder, d time.Duration) {
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	grpcCode := -1
	if n, err := strconv.Atoi(rec.grpcStatus); err == nil {
		grpcCode = n
	}
	if status < 400 && grpcCode <= 0 {
		return
	}
	level := httpLevel(status)
	if grpcCode > 0 {
		// An RPC protocol's refusal says more in its code than in
		// the HTTP status (Connect and gRPC-web answer errors with
		// 200 and a status header, or a status the code maps to).
		level = Level(codes.Code(grpcCode))
	}
	attrs := []slog.Attr{
		slog.String("protocol", protocol),
		slog.Int("http.status", status),
		slog.Duration("duration", d),
		slog.String("peer", peer),
	}
	if grpcCode >= 0 {
		attrs = append(attrs, slog.String("grpc.code", codes.Code(grpcCode).String()))
	}
	if method != "" {
		attrs = append(attrs, slog.String("grpc.method", method))
	}
	s.logger.LogAttrs(ctx, level, "request refused before reaching a handler", attrs...)
}

// logRoute logs one line per request to a plain HTTP route, as the
// logging interceptor does per RPC: the route's pattern (never the raw
// path, which may hold identifiers), the status, the duration and the
// peer, at the level Level's policy gives its status (httpLevel);
// handlers log the cause of their own faults.
func (s *Server) logRoute(pattern string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		level := httpLevel(status)
		s.logger.LogAttrs(r.Context(), level, "HTTP request",
			slog.String("http.route", pattern),
			slog.String("http.method", methodName(r.Method)),
			slog.Int("http.status", status),
			slog.Duration("duration", time.Since(start)),
			slog.String("peer", r.RemoteAddr),
		)
	})
}

// methodName is r.Method for the standard methods and "other" otherwise:
// the method is client input too.
func methodName(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// protocolOf names the protocol of a request for the log, from a fixed
// set: the raw Content-Type is client input.
func (s *Server) protocolOf(r *http.Request) string {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case strings.HasPrefix(mt, "application/grpc-web"):
		return "grpc-web"
	case strings.HasPrefix(mt, "application/grpc"):
		return "grpc"
	case strings.HasPrefix(mt, "application/connect+"):
		return "connect-stream"
	}
	if s.rpcMethod(r.URL.Path) != "" {
		return "connect"
	}
	return "rest"
}

// jsonCodec is the transcoder's JSON codec, with one change: a request
// body that is not valid JSON for its message (cut short, too deeply
// nested, not UTF-8, a number out of range, a value of the wrong type) is
// invalid_argument, the client's mistake, where the transcoder would
// answer "unknown" (HTTP 500). The message gives the position, never the
// offending value.
type jsonCodec struct{ *vanguard.JSONCodec }

func newJSONCodec(res vanguard.TypeResolver) vanguard.Codec {
	return jsonCodec{vanguard.NewJSONCodec(res)}
}

// Unmarshal decodes a request message.
func (c jsonCodec) Unmarshal(data []byte, msg proto.Message) error {
	return asInvalidJSON(c.JSONCodec.Unmarshal(data, msg), msg)
}

// UnmarshalField decodes a REST body that maps to one field.
func (c jsonCodec) UnmarshalField(data []byte, msg proto.Message, field protoreflect.FieldDescriptor) error {
	return asInvalidJSON(c.JSONCodec.UnmarshalField(data, msg, field), msg)
}

var jsonPosition = regexp.MustCompile(`\(line (\d+):(\d+)\)`)

func asInvalidJSON(err error, msg proto.Message) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	text := fmt.Sprintf("request body is not valid JSON for %s", msg.ProtoReflect().Descriptor().FullName())
	if m := jsonPosition.FindStringSubmatch(err.Error()); m != nil {
		text += fmt.Sprintf(" (line %s, column %s)", m[1], m[2])
	}
	return connect.NewError(connect.CodeInvalidArgument, errors.New(text))
}
