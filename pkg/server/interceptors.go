package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// recoveryHandler turns a panic into codes.Internal. The panic value and the
// stack go to the log only: a panic message can contain anything, including
// personal data from the request being handled.
func recoveryHandler(logger *slog.Logger) func(ctx context.Context, p any) error {
	return func(ctx context.Context, p any) error {
		method, _ := grpc.Method(ctx)
		logger.ErrorContext(ctx, "panic in gRPC handler",
			slog.String("grpc.method", method),
			slog.String("panic", fmt.Sprint(p)),
			slog.String("stack", string(debug.Stack())),
		)
		return status.Error(codes.Internal, internalMessage)
	}
}

// unaryLogging logs one line per finished unary call. It deliberately logs
// only the method, the status code and message, the duration and the peer
// address: never request or response bodies, never metadata, because those
// carry personal data and bearer tokens.
func unaryLogging(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		logCall(ctx, logger, info.FullMethod, err, time.Since(start))
		return resp, err
	}
}

// streamLogging is the streaming counterpart of unaryLogging; it logs once,
// when the stream ends.
func streamLogging(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		logCall(ss.Context(), logger, info.FullMethod, err, time.Since(start))
		return err
	}
}

func logCall(ctx context.Context, logger *slog.Logger, method string, err error, d time.Duration) {
	markLogged(ctx)
	st := status.Convert(err)
	level := callLevel(method, st.Code())
	if !logger.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 5)
	attrs = append(attrs,
		slog.String("grpc.method", method),
		slog.String("grpc.code", st.Code().String()),
		slog.Duration("duration", d),
	)
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
	}
	if err != nil && messageLogged(st.Code()) {
		// For faults on our side the message says what went wrong. For
		// a refusal of the client's request it is left out: messages
		// of that kind may quote what the client sent (a queue, a
		// field's value), and a log must not repeat client input.
		attrs = append(attrs, slog.String("grpc.message", st.Message()))
	}
	logger.LogAttrs(ctx, level, "gRPC call", attrs...)
}

// messageLogged reports whether a status message of code goes into the
// log: only for codes whose messages kontakt writes itself without client
// input (server faults, unavailability, size and rate limits).
func messageLogged(code codes.Code) bool {
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented,
		codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Canceled:
		return true
	}
	return false
}

// callLevel is Level, except that successful health probes and
// reflection go to DEBUG: a probe every few seconds would drown everything
// else.
func callLevel(method string, code codes.Code) slog.Level {
	if code == codes.OK && (strings.HasPrefix(method, "/grpc.health.v1.Health/") || strings.HasPrefix(method, "/grpc.reflection.")) {
		return slog.LevelDebug
	}
	return Level(code)
}

// unaryErrorMapping applies ToStatus, with the error table of the called
// method's service (tables), to every error a handler returns. grpc-go
// would otherwise send a plain error's full text to the client as
// codes.Unknown.
func unaryErrorMapping(tables func(method string) []ErrorMapping, logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			return nil, withJSONFieldPaths(ctx, info.FullMethod, ToStatus(ctx, err, tables(info.FullMethod), logger.With(slog.String("grpc.method", info.FullMethod))))
		}
		return resp, nil
	}
}

// streamErrorMapping is the streaming counterpart of unaryErrorMapping.
func streamErrorMapping(tables func(method string) []ErrorMapping, logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := handler(srv, ss); err != nil {
			return withJSONFieldPaths(ss.Context(), info.FullMethod, ToStatus(ss.Context(), err, tables(info.FullMethod), logger.With(slog.String("grpc.method", info.FullMethod))))
		}
		return nil
	}
}

// missingRequestIsClientMistake wraps a stream so that grpc-go's
// "cardinality violation: received no request message" on receive is
// InvalidArgument. For a server-streaming RPC it means the client sent no
// request, or the transcoder refused the request it sent (too large after
// inflation, not gzip, not valid JSON) and has already answered the client
// with that reason; either way it is the client's mistake and must not be
// logged as a server fault. The status grpc-go already sent stays as it is.
func missingRequestIsClientMistake() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &mistakeStream{ServerStream: ss})
	}
}

type mistakeStream struct{ grpc.ServerStream }

func (s *mistakeStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if st, ok := status.FromError(err); ok && st.Code() == codes.Internal && strings.HasPrefix(st.Message(), "cardinality violation") {
		return status.Error(codes.InvalidArgument, "the request message is missing or was refused")
	}
	return err
}

// endWatchesOnShutdown ends grpc.health.v1.Health/Watch streams when shutdown
// begins. Such a stream never ends by itself, so a single client doing
// client-side health checking would otherwise hold every graceful shutdown
// for the full ShutdownTimeout. Ending the stream is also the right signal:
// the server is going away.
func endWatchesOnShutdown(stopping <-chan struct{}) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if info.FullMethod != healthpb.Health_Watch_FullMethodName {
			return handler(srv, ss)
		}
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		go func() {
			select {
			case <-stopping:
				cancel()
			case <-ctx.Done():
			}
		}()
		return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	}
}

// contextStream replaces a stream's context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }
