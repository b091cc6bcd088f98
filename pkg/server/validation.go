package server

import (
	"context"

	"buf.build/go/protovalidate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kontakt-se/kontakt/pkg/fieldrules"
)

// SelfValidating is implemented by a service that runs the protovalidate
// rules itself, together with its domain rules, so that one answer names
// every wrong field. The validation interceptor leaves its requests alone.
type SelfValidating interface {
	ValidatesOwnRequests()
}

// validateRequest turns broken field rules into InvalidArgument with a
// google.rpc.BadRequest detail: the one error shape clients handle, for
// declarative rules and hand-written ones alike. The description never
// holds the field's value, which may be personal data.
func validateRequest(v protovalidate.Validator, req any) error {
	msg, ok := req.(proto.Message)
	if !ok {
		return status.Error(codes.Internal, internalMessage)
	}
	viols, err := fieldrules.Check(v, msg)
	if err != nil {
		return status.Error(codes.Internal, internalMessage)
	}
	if len(viols) > 0 {
		return InvalidArgument("invalid request", viols...)
	}
	return nil
}

func unaryValidation(v protovalidate.Validator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if _, self := info.Server.(SelfValidating); !self {
			if err := validateRequest(v, req); err != nil {
				return nil, err
			}
		}
		return handler(ctx, req)
	}
}

func streamValidation(v protovalidate.Validator) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if _, self := srv.(SelfValidating); self {
			return handler(srv, ss)
		}
		return handler(srv, &validatingStream{ServerStream: ss, v: v})
	}
}

type validatingStream struct {
	grpc.ServerStream
	v protovalidate.Validator
}

func (s *validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return validateRequest(s.v, m)
}
