package server

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// HTTPStatus is the HTTP status that answers a call ending with code: the
// mapping of google.rpc.Code's documentation, which the transcoder
// (vanguard) uses for REST and Connect and grpc-gateway uses too. It is
// the one place kontakt turns a code into an HTTP status for its own
// answers (plain HTTP routes such as Open311, refusals at the edge), so
// every protocol answers one failure alike; a test holds it to the
// transcoder's answer for every code.
//
// A client's mistake (InvalidArgument, FailedPrecondition, OutOfRange,
// NotFound, AlreadyExists, Aborted, PermissionDenied, Unauthenticated,
// ResourceExhausted, Canceled) is a 4xx; only kontakt's own faults and
// unavailability are 5xx.
func HTTPStatus(code codes.Code) int {
	switch code {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499 // Client Closed Request, nginx's status, as google.rpc.Code says.
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	// Unknown, Internal, DataLoss and codes gRPC does not define.
	return http.StatusInternalServerError
}
