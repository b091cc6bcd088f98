package ratelimit

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kontakt-se/kontakt/pkg/auth"
)

// RetryAfterHeader is the response header that says, in whole seconds,
// when a refused call may be tried again. Over REST and Connect it is the
// HTTP Retry-After header; gRPC clients also get a google.rpc.RetryInfo
// detail.
const RetryAfterHeader = "retry-after"

// CredentialKey is the bucket key of a caller: the form client's e-service
// (the same bucket for its forms and its Open311 posts), or the subject for
// any other role.
func CredentialKey(p auth.Principal) string {
	if p.Client != "" {
		return "client:" + p.Client
	}
	return "subject:" + p.Subject
}

// HTTPClientAddr is ClientAddr for a plain HTTP request.
func (l *Limiter) HTTPClientAddr(r *http.Request) netip.Addr {
	return l.ClientAddr(r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
}

// UnaryServerInterceptor limits calls to the given methods (full names,
// "/package.Service/Method"). Chain it after authentication, so that the
// credential is known, and before validation, so that a flood of invalid
// submissions is limited too.
func (l *Limiter) UnaryServerInterceptor(methods []string) grpc.UnaryServerInterceptor {
	limited := methodSet(methods)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if limited[info.FullMethod] {
			if err := l.check(ctx); err != nil {
				return nil, err
			}
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streams; a stream
// takes one token when it opens.
func (l *Limiter) StreamServerInterceptor(methods []string) grpc.StreamServerInterceptor {
	limited := methodSet(methods)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if limited[info.FullMethod] {
			if err := l.check(ss.Context()); err != nil {
				return err
			}
		}
		return handler(srv, ss)
	}
}

func methodSet(methods []string) map[string]bool {
	set := make(map[string]bool, len(methods))
	for _, m := range methods {
		set[m] = true
	}
	return set
}

// check takes the call's tokens or returns ResourceExhausted with a
// RetryInfo detail and the retry-after header.
func (l *Limiter) check(ctx context.Context) error {
	credential := ""
	if p, ok := auth.FromContext(ctx); ok {
		credential = CredentialKey(p)
	}
	remote := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		remote = p.Addr.String()
	}
	md, _ := metadata.FromIncomingContext(ctx)
	wait := l.Allow(credential, l.ClientAddr(remote, md.Get("x-forwarded-for")))
	if wait == 0 {
		return nil
	}
	secs := RetryAfterSeconds(wait)
	_ = grpc.SetHeader(ctx, metadata.Pairs(RetryAfterHeader, strconv.Itoa(secs)))
	return Refusal(secs)
}

// Refusal is the status a limited call gets: ResourceExhausted, saying
// when to retry in words and as google.rpc.RetryInfo.
func Refusal(retryAfterSeconds int) error {
	st := status.New(codes.ResourceExhausted, fmt.Sprintf("too many submissions; retry in %d s", retryAfterSeconds))
	if withInfo, err := st.WithDetails(&errdetails.RetryInfo{
		RetryDelay: durationpb.New(time.Duration(retryAfterSeconds) * time.Second),
	}); err == nil {
		st = withInfo
	}
	return st.Err()
}
