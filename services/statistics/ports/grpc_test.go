package ports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/server"
	"github.com/kontakt-se/kontakt/services/statistics/app"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

func TestZeroServerIsUnimplemented(t *testing.T) {
	var s Server
	_, err := s.Query(context.Background(), &statisticsv1.QueryRequest{})
	require.Equal(t, codes.Unimplemented, status.Code(err))
	require.Equal(t, codes.Unimplemented, status.Code(s.StreamRecords(&statisticsv1.StreamRecordsRequest{}, nil)))
}

func TestErrorMappings(t *testing.T) {
	tests := []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{fmt.Errorf("%w: from must be before to", domain.ErrInvalidQuery), codes.InvalidArgument, "invalid query: from must be before to"},
		{fmt.Errorf("x: %w", app.ErrUnavailable), codes.Unavailable, app.ErrUnavailable.Error()},
		{errors.New("disk on fire at /var/lib/kontakt"), codes.Internal, "internal error"},
	}
	for _, tc := range tests {
		t.Run(tc.code.String(), func(t *testing.T) {
			st := status.Convert(server.ToStatus(context.Background(), tc.err, ErrorMappings(), slog.New(slog.DiscardHandler)))
			require.Equal(t, tc.code, st.Code())
			require.Equal(t, tc.msg, st.Message())
		})
	}
}
