package auth

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testNow is a fixed instant so that token lifetimes in tests do not depend
// on the wall clock.
func testNow() time.Time { return time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC) }

// fixedClock returns a clock stopped at t.
func fixedClock(t time.Time) func() time.Time {
	return func() time.Time { return t }
}

// newTestDevKey creates a development key in a fresh temporary directory.
func newTestDevKey(t *testing.T) *DevKey {
	t.Helper()
	k, err := LoadOrCreateDevKey(filepath.Join(t.TempDir(), DevKeyFile))
	require.NoError(t, err)
	return k
}

// mint issues a development token at testNow() valid for an hour.
func mint(t *testing.T, k *DevKey, subject string, roles ...Role) string {
	t.Helper()
	tok, err := k.Mint(subject, roles, []string{"q-bygglov", "q-skola"}, "stadsbyggnad", time.Hour, testNow())
	require.NoError(t, err)
	return tok
}

// logBuffer is a goroutine-safe log sink: the gRPC server logs from its own
// goroutines while the test reads.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newTestLogger logs everything, debug included, to a buffer the test can
// search for leaked tokens.
func newTestLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}
