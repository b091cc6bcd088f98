package auth

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kontakt-se/kontakt/pkg/reqlog"
)

// Verifier turns a raw bearer token into the caller's Principal. Both
// DevVerifier and OIDCVerifier implement it; the interceptor depends only on
// this interface so that a service does not care which mode it runs in.
type Verifier interface {
	Verify(ctx context.Context, rawToken string) (Principal, error)
}

// Messages returned to clients. They are fixed strings so that nothing from
// the token or from verification internals ever reaches a caller.
const (
	msgNotPermitted = "method not permitted"
	msgMissingToken = "missing bearer token"
	msgInvalidToken = "invalid bearer token"
	msgTokenExpired = "bearer token expired; reconnect with a new token"
)

// Interceptor authenticates and authorises every gRPC call: it is the one
// place where the policy is enforced, so handlers can rely on FromContext.
// Chain it before input validation, so that a caller who may not call a
// method learns nothing about what the method accepts.
type Interceptor struct {
	verifier Verifier
	policy   Policy
	logger   *slog.Logger
	now      func() time.Time
}

// InterceptorOption changes an Interceptor.
type InterceptorOption func(*Interceptor)

// WithClock sets the clock by which a token's remaining lifetime is
// measured when a stream opens; it should be the verifier's. Default
// time.Now.
func WithClock(now func() time.Time) InterceptorOption {
	return func(i *Interceptor) { i.now = now }
}

// NewInterceptor returns an interceptor that verifies tokens with v and
// decides with p. A nil logger discards logs. It panics when v or p is nil:
// that is a wiring mistake that must stop the server at start-up rather
// than leave it refusing or, worse, admitting every call.
func NewInterceptor(v Verifier, p Policy, logger *slog.Logger, opts ...InterceptorOption) *Interceptor {
	if v == nil {
		panic("auth: NewInterceptor called with a nil Verifier")
	}
	if p == nil {
		panic("auth: NewInterceptor called with a nil Policy")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	i := &Interceptor{verifier: v, policy: p, logger: logger, now: time.Now}
	for _, o := range opts {
		o(i)
	}
	return i
}

// Unary returns the interceptor for unary calls.
func (i *Interceptor) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := i.authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Stream returns the interceptor for streaming calls. The stream is wrapped
// so that its Context carries the Principal. Credentials are checked when
// the stream opens, and the stream lives no longer than they do: at the
// token's expiry its context ends and the call ends with Unauthenticated,
// whatever the handler returns, and nothing is sent after it. A server
// stream (WatchQueue, StreamRecords, ListReceipts) can otherwise run for
// hours on a token that expired minutes after it opened.
//
// The end is the token's own "exp" (measured by the verifier's clock, the
// interceptor's WithClock), without the verifier's leeway. The leeway (DefaultLeeway) exists so that a token is
// not refused at the door because the identity provider's clock runs a
// little ahead of ours; a stream already open has no such doubt to settle,
// and a client keeps its stream by renewing its token before "exp", as
// OIDC clients do. A stream opened inside the leeway therefore ends at
// once with Unauthenticated, which tells the client to renew.
func (i *Interceptor) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := i.authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		p, ok := FromContext(ctx)
		if !ok || p.ExpiresAt.IsZero() {
			// A public method, or a verifier that issues no expiry.
			return handler(srv, &principalStream{ServerStream: ss, ctx: ctx})
		}
		// The remaining lifetime by the verifier's clock, counted down on
		// the runtime's.
		ctx, cancel := context.WithTimeoutCause(ctx, p.ExpiresAt.Sub(i.now()), errStreamTokenExpired)
		defer cancel()
		err = handler(srv, &principalStream{ServerStream: ss, ctx: ctx})
		if errors.Is(context.Cause(ctx), errStreamTokenExpired) && ss.Context().Err() == nil {
			i.logger.InfoContext(ctx, "auth: stream ended at its token's expiry",
				slog.String("method", info.FullMethod))
			return tokenExpired()
		}
		return err
	}
}

// ReasonTokenExpired is the google.rpc.ErrorInfo reason of an answer to a
// call whose token has expired, so that a UI can renew the token and call
// again without reading the message; any other Unauthenticated means the
// token is missing or not kontakt's, and renewing will not help.
const ReasonTokenExpired = "TOKEN_EXPIRED"

// errorDomain is the ErrorInfo domain of kontakt's reasons.
const errorDomain = "kontakt"

// tokenExpired is the one answer to a call whose token has expired, when
// it comes and while a stream runs: the expiry named as expiry, in words
// and as an ErrorInfo reason. Whether a token has expired is no secret
// from its holder, who can read its exp claim.
func tokenExpired() error {
	st := status.New(codes.Unauthenticated, msgTokenExpired)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonTokenExpired, Domain: errorDomain}); err == nil {
		return withInfo.Err()
	}
	return st.Err()
}

// errStreamTokenExpired is the cause of a stream context that ended at its
// token's expiry.
var errStreamTokenExpired = errors.New("the stream's token expired")

// principalStream replaces a ServerStream's context with one carrying the
// Principal and ending at its token's expiry.
type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the context carrying the Principal.
func (s *principalStream) Context() context.Context { return s.ctx }

// SendMsg refuses to send once the token has expired, so that a handler
// that does not watch its context still delivers nothing after expiry.
func (s *principalStream) SendMsg(m any) error {
	if errors.Is(context.Cause(s.ctx), errStreamTokenExpired) {
		return tokenExpired()
	}
	return s.ServerStream.SendMsg(m)
}

// authorize applies the policy to one call and returns the context for the
// handler, or a status error for the client.
func (i *Interceptor) authorize(ctx context.Context, method string) (context.Context, error) {
	rule, ok := i.policy.Rule(method)
	if !ok {
		// gRPC answers unregistered methods itself, so this is a served
		// method that nobody described: a bug worth a warning.
		i.logger.WarnContext(ctx, "auth: method has no policy rule; denied", slog.String("method", method))
		return nil, status.Error(codes.PermissionDenied, msgNotPermitted)
	}
	if rule.Public {
		return ctx, nil
	}
	if len(rule.Roles) == 0 {
		i.logger.WarnContext(ctx, "auth: policy rule grants no role", slog.String("method", method))
		return nil, status.Error(codes.PermissionDenied, msgNotPermitted)
	}

	raw, err := bearerToken(ctx)
	if err != nil {
		i.logger.DebugContext(ctx, "auth: no bearer token", slog.String("method", method))
		return nil, status.Error(codes.Unauthenticated, msgMissingToken)
	}
	p, err := i.verifier.Verify(ctx, raw)
	if err != nil {
		// The reason helps an operator; it never contains the token.
		i.logger.DebugContext(ctx, "auth: token rejected",
			slog.String("method", method),
			slog.Bool("expired", errors.Is(err, ErrTokenExpired)),
			slog.String("reason", truncate(err.Error(), 512)))
		if errors.Is(err, ErrTokenExpired) {
			return nil, tokenExpired()
		}
		return nil, status.Error(codes.Unauthenticated, msgInvalidToken)
	}
	// From here every line the request logs names its caller, also the
	// refusal below.
	reqlog.SetSubject(ctx, p.Subject)
	if !p.HasAnyRole(rule.Roles...) {
		required := joinRoles(rule.Roles)
		// The call's own line (pkg/server) logs the refusal at the
		// level of every refusal; this one adds the roles it lacked.
		i.logger.DebugContext(ctx, "auth: permission denied",
			slog.String("method", method),
			slog.String("required", required))
		return nil, status.Error(codes.PermissionDenied, "requires one of: "+required)
	}
	return WithPrincipal(ctx, p), nil
}

// bearerToken extracts the token from the "authorization" metadata. Exactly
// one value is accepted, since two would leave it ambiguous which one was
// checked; the scheme is case-insensitive as HTTP specifies.
func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) != 1 {
		return "", ErrMissingToken
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", ErrMissingToken
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || strings.ContainsAny(token, " \t\r\n") {
		return "", ErrMissingToken
	}
	return token, nil
}
