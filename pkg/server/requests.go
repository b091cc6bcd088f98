package server

import (
	"context"
	"log/slog"
	"net/http"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kontakt-se/kontakt/pkg/reqlog"
)

// Level is the one level policy for a finished call or request, by its
// status code:
//
//   - OK, and Canceled (the client went away), at INFO;
//   - kontakt's own faults (Internal, Unknown, DataLoss) at ERROR, which is
//     what an operator alerts on;
//   - everything else at WARN: the client's faults (InvalidArgument,
//     NotFound, AlreadyExists, PermissionDenied, Unauthenticated,
//     ResourceExhausted, FailedPrecondition, OutOfRange, Aborted,
//     Unimplemented) and the passing ones (Unavailable while NATS elects a
//     leader, DeadlineExceeded). A refusal is worth seeing when it
//     repeats, a flood of them is an attack or a broken client, but it is
//     nobody's page at night. The embedded NATS server logs its clients'
//     faults (a failed login, a permission violation) at WARN too.
//
// Every call's line (the logging interceptor), every request refused
// before a handler (the edge) and every plain HTTP route (logRoute) takes
// its level from here.
func Level(code codes.Code) slog.Level {
	switch code {
	case codes.OK, codes.Canceled:
		return slog.LevelInfo
	case codes.Internal, codes.Unknown, codes.DataLoss:
		return slog.LevelError
	default:
		return slog.LevelWarn
	}
}

// httpLevel is Level for an HTTP status, read as the code HTTPStatus maps
// to it: 499 is Canceled, 500 (and the 5xx no code maps to) kontakt's
// fault, 501, 503 and 504 Unimplemented, Unavailable and DeadlineExceeded,
// and every other 4xx a refusal of the client's request.
func httpLevel(status int) slog.Level {
	switch {
	case status < 400:
		return Level(codes.OK)
	case status == 499:
		return Level(codes.Canceled)
	case status == http.StatusNotImplemented:
		return Level(codes.Unimplemented)
	case status == http.StatusServiceUnavailable:
		return Level(codes.Unavailable)
	case status == http.StatusGatewayTimeout:
		return Level(codes.DeadlineExceeded)
	case status >= 500:
		return Level(codes.Internal)
	default:
		return Level(codes.InvalidArgument)
	}
}

// metadataRequestID is reqlog.Header as a gRPC metadata key.
const metadataRequestID = "x-request-id"

// withRequestID starts a request (reqlog) for everything served through
// the HTTP server: REST, Connect, gRPC-web, plain routes, and native gRPC
// on connections the splitter gave to net/http. The client's
// X-Request-Id is kept when it is safe to log, and the id is answered in
// the X-Request-Id response header, also on gRPC answers (as header
// metadata).
func withRequestID(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := reqlog.FromHeader(r.Header.Get(reqlog.Header))
		w.Header().Set(reqlog.Header, id)
		h.ServeHTTP(w, r.WithContext(reqlog.Start(r.Context(), id)))
	})
}

// unaryRequestID starts a request for a call that came on grpc-go's own
// transport (the splitter hands it native gRPC connections), where no
// HTTP handler ran; a call through the HTTP server has its request
// already. It runs first, so every interceptor's lines carry the id.
func unaryRequestID() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if reqlog.ID(ctx) != "" {
			return handler(ctx, req)
		}
		ctx, id := startRPCRequest(ctx)
		_ = grpc.SetHeader(ctx, metadata.Pairs(metadataRequestID, id))
		return handler(ctx, req)
	}
}

// streamRequestID is unaryRequestID for streams.
func streamRequestID() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if reqlog.ID(ss.Context()) != "" {
			return handler(srv, ss)
		}
		ctx, id := startRPCRequest(ss.Context())
		_ = ss.SetHeader(metadata.Pairs(metadataRequestID, id))
		return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	}
}

// startRPCRequest starts a request with the id in the call's metadata
// when it is safe (exactly one value), and a new one otherwise.
func startRPCRequest(ctx context.Context) (context.Context, string) {
	md, _ := metadata.FromIncomingContext(ctx)
	v := ""
	if ids := md.Get(metadataRequestID); len(ids) == 1 {
		v = ids[0]
	}
	id := reqlog.FromHeader(v)
	return reqlog.Start(ctx, id), id
}

// CallObserver is told how one call ended: the status code the client
// got and the header metadata the handler set (see Server.ObserveCalls).
type CallObserver func(code codes.Code, header metadata.MD)

// unaryObserve tells a method's observers how its calls ended. It runs
// outside the error mapping, so it sees the code the client gets, and it
// stands in for the call's transport stream to see the headers the
// handler sets (grpc.SetHeader), which is how a handler says more than
// the code does (intake's Idempotent-Replayed).
func unaryObserve(observers func(method string) []CallObserver) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		obs := observers(info.FullMethod)
		if len(obs) == 0 {
			return handler(ctx, req)
		}
		hs := &headerStream{ServerTransportStream: grpc.ServerTransportStreamFromContext(ctx)}
		if hs.ServerTransportStream != nil {
			ctx = grpc.NewContextWithServerTransportStream(ctx, hs)
		}
		resp, err := handler(ctx, req)
		code := status.Code(err)
		hs.mu.Lock()
		header := hs.header.Copy()
		hs.mu.Unlock()
		for _, o := range obs {
			o(code, header)
		}
		return resp, err
	}
}

// headerStream passes everything to the call's transport stream and
// keeps a copy of the headers set through it.
type headerStream struct {
	grpc.ServerTransportStream
	mu     sync.Mutex
	header metadata.MD
}

func (s *headerStream) SetHeader(md metadata.MD) error {
	s.keep(md)
	return s.ServerTransportStream.SetHeader(md)
}

func (s *headerStream) SendHeader(md metadata.MD) error {
	s.keep(md)
	return s.ServerTransportStream.SendHeader(md)
}

func (s *headerStream) keep(md metadata.MD) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.header = metadata.Join(s.header, md)
}
