package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kontakt-se/kontakt/pkg/fieldrules"
	"github.com/kontakt-se/kontakt/pkg/natserr"
)

// internalMessage is the only thing a client learns about a failure the
// server did not anticipate; the details go to the server log.
const internalMessage = "internal error"

// ErrorMapping ties a domain sentinel error to the gRPC code a client should
// see. A service keeps one table of these so that the mapping from domain
// failures to wire statuses is decided in one place, at the edge: the
// service hands it to the server with its registration (see MapErrors),
// the server applies it to every call of that service, and handlers return
// plain errors.
type ErrorMapping struct {
	// Target is matched with errors.Is, so wrapped errors match too. Its
	// Error() text becomes the status message, which is why sentinels must
	// be written to be shown to a caller.
	Target error
	// Code is the gRPC code returned for Target.
	Code codes.Code
	// Explain returns the whole error text instead of the sentinel's, for
	// domain errors whose wrapping says why in words fit for the caller
	// ("only the assignee or a supervisor may answer", "already assigned to
	// anna"). Use it only where the wrapping never holds personal data.
	Explain bool

	// as, set by MapAs, maps a typed error itself.
	as func(error) (error, bool)
}

// MapAs is the mapping for a typed error whose status carries more than a
// sentinel's code and text: every error that is, or wraps, an E
// (errors.As) becomes the status to returns, typically InvalidArgument
// with the fields the error names. to must return a status error built
// from what E says to callers, never from the wrapping; anything else is
// logged and becomes Internal.
func MapAs[E error](to func(E) error) ErrorMapping {
	return ErrorMapping{as: func(err error) (error, bool) {
		e, ok := errors.AsType[E](err)
		if !ok {
			return nil, false
		}
		return to(e), true
	}}
}

// ToStatus converts err into an error carrying a gRPC status, deciding what a
// client is allowed to see:
//
//   - nil stays nil;
//   - an error matching a mapping's Target (errors.Is) becomes that mapping's
//     Code with the sentinel's own message, so context added by wrapping
//     (identifiers, personal data) never leaves the server; one matching a
//     MapAs mapping becomes the status that mapping builds;
//   - an error that already carries a gRPC status, directly or wrapped, is
//     returned as that status (without the wrapping text);
//   - context cancellation and deadline errors become Canceled and
//     DeadlineExceeded;
//   - anything else is logged with its full text and becomes codes.Internal
//     "internal error", because an internal error message can contain file
//     paths, SQL, or personal data.
//
// Mappings are checked in order, before status pass-through. ctx is the
// call's, so the lines logged here carry its request id. A nil logger
// means slog.Default().
func ToStatus(ctx context.Context, err error, mappings []ErrorMapping, logger *slog.Logger) error {
	if err == nil {
		return nil
	}
	for _, m := range mappings {
		if m.as != nil {
			if mapped, ok := m.as(err); ok {
				if st, isStatus := status.FromError(mapped); isStatus && st.Code() != codes.OK {
					return mapped
				}
				return ToStatus(ctx, errors.New("error mapping returned no status"), nil, logger)
			}
			continue
		}
		if m.Target == nil || m.Code == codes.OK {
			continue
		}
		if errors.Is(err, m.Target) {
			if m.Explain {
				return status.Error(m.Code, err.Error())
			}
			return status.Error(m.Code, m.Target.Error())
		}
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		if st := se.GRPCStatus(); st != nil && st.Code() != codes.OK {
			return st.Err()
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, context.Canceled.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
	}
	if logger == nil {
		logger = slog.Default()
	}
	if natserr.IsTransient(err) {
		logger.WarnContext(ctx, "NATS briefly unavailable; the client may retry", slog.String("error", err.Error()))
		return status.Error(codes.Unavailable, unavailableMessage)
	}
	logger.ErrorContext(ctx, "unmapped error returned to client as internal error", slog.String("error", err.Error()))
	return status.Error(codes.Internal, internalMessage)
}

// unavailableMessage is what a client sees while NATS elects a new leader
// or reconnects.
const unavailableMessage = "temporarily unavailable; retry"

// FieldViolation names one invalid field of a request and says what is
// wrong with it: the one shape for declarative rules (fieldrules.Check)
// and hand-written checks alike.
type FieldViolation = fieldrules.Violation

// InvalidArgument returns a codes.InvalidArgument status with msg and, if any
// violations are given, a google.rpc.BadRequest detail listing them. It gives
// hand-written checks the same shape that protovalidate gives declarative
// ones, so clients need to understand only one error format.
func InvalidArgument(msg string, violations ...FieldViolation) error {
	st := status.New(codes.InvalidArgument, msg)
	if len(violations) == 0 {
		return st.Err()
	}
	br := &errdetails.BadRequest{FieldViolations: make([]*errdetails.BadRequest_FieldViolation, 0, len(violations))}
	for _, v := range violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       v.Field,
			Description: v.Description,
		})
	}
	withDetails, err := st.WithDetails(br)
	if err != nil {
		return st.Err()
	}
	return withDetails.Err()
}
