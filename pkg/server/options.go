package server

import (
	"net/http"

	"google.golang.org/grpc"
)

// Option changes how New builds a Server. Options carry what differs between
// services (authentication, extra HTTP routes); everything an
// operator tunes lives in Config instead.
type Option func(*options)

type options struct {
	unary      []grpc.UnaryServerInterceptor
	stream     []grpc.StreamServerInterceptor
	httpRoutes []httpRoute
}

type httpRoute struct {
	pattern string
	handler http.Handler
}

// WithUnaryInterceptors adds unary interceptors that run after recovery,
// logging and metrics but before request validation. Authentication and
// authorisation belong here: a rejected call is still logged and counted,
// and unauthenticated callers learn nothing from validation errors.
// Interceptors run in the order given, across repeated uses of the option.
func WithUnaryInterceptors(interceptors ...grpc.UnaryServerInterceptor) Option {
	return func(o *options) { o.unary = append(o.unary, interceptors...) }
}

// WithStreamInterceptors is the streaming counterpart of
// WithUnaryInterceptors and sits at the same place in the chain.
func WithStreamInterceptors(interceptors ...grpc.StreamServerInterceptor) Option {
	return func(o *options) { o.stream = append(o.stream, interceptors...) }
}

// WithHTTPHandler mounts a plain HTTP handler on the API port, ahead of the
// gRPC transcoder, for endpoints that are not gRPC services (for example an
// Open311 GeoReport API under "/open311/"). The pattern uses net/http.ServeMux
// syntax; it must not be "/" because that is where the RPC protocols live.
// Request bodies are capped at Config.MaxRequestBytes and CORS applies.
// Native gRPC requests (Content-Type application/grpc) never reach it.
func WithHTTPHandler(pattern string, h http.Handler) Option {
	return func(o *options) { o.httpRoutes = append(o.httpRoutes, httpRoute{pattern: pattern, handler: h}) }
}
