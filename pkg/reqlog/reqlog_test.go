package reqlog

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		out = append(out, m)
	}
	return out
}

func TestHandlerAddsTheRequest(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(Handler(slog.NewJSONHandler(&buf, nil)))
	ctx := Start(context.Background(), "00112233445566778899aabbccddeeff")

	log.InfoContext(context.Background(), "outside")
	log.InfoContext(ctx, "before authentication")
	SetSubject(ctx, "agent-7")
	log.InfoContext(ctx, "after")
	log.InfoContext(ctx, "own subject", KeySubject, "other")
	log.With(KeyRequestID, "x").InfoContext(ctx, "own id")
	log.Info("no context")

	got := lines(t, &buf)
	require.Len(t, got, 6)
	require.NotContains(t, got[0], KeyRequestID)
	require.Equal(t, "00112233445566778899aabbccddeeff", got[1][KeyRequestID])
	require.NotContains(t, got[1], KeySubject, "no caller is known yet")
	require.Equal(t, "agent-7", got[2][KeySubject])
	require.Equal(t, "other", got[3][KeySubject])
	require.Equal(t, "x", got[4][KeyRequestID])
	require.NotContains(t, got[5], KeyRequestID)
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		require.LessOrEqual(t, strings.Count(l, `"`+KeySubject+`"`), 1, "no key twice: %s", l)
		require.LessOrEqual(t, strings.Count(l, `"`+KeyRequestID+`"`), 1, "no key twice: %s", l)
	}
}

func TestFromHeader(t *testing.T) {
	for _, tt := range []struct {
		in   string
		keep bool
	}{
		{"0f8b2c1e-5a4d-4c3b-9e2f-7a6b5c4d3e2f", true}, // a UUID
		{"00112233445566778899aabbccddeeff", true},     // nginx $request_id
		{"", false},
		{"19121212-1212", false}, // an identity number
		{"070-1234567", false},   // a phone number
		{"anna.andersson@example.se", false},
		{"0011223344556677\n8899", false},
		{strings.Repeat("a", 65), false},
	} {
		got := FromHeader(tt.in)
		require.True(t, ValidID(got), got)
		if tt.keep {
			require.Equal(t, tt.in, got)
		} else {
			require.NotEqual(t, tt.in, got)
			require.Len(t, got, 32)
		}
	}
	require.NotEqual(t, NewID(), NewID())
}
