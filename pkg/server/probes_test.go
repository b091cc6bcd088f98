package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHealthAndReadinessProbes(t *testing.T) {
	ts := startServer(t, Config{MetricsAddr: "127.0.0.1:0"})
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := httpClient(t, false).Get("http://" + ts.srv.MetricsAddr().String() + path)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode, string(body)
	}

	code, body := get("/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	code, body = get("/readyz")
	require.Equal(t, http.StatusOK, code, "no checks: ready")
	require.Empty(t, body)

	var natsDown error
	ts.srv.AddReadinessCheck("nats", func(context.Context) error { return natsDown })
	ts.srv.AddReadinessCheck("slow", func(ctx context.Context) error { return nil })
	code, body = get("/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "nats: ok\nslow: ok\n", body)

	natsDown = errors.New("NATS is not connected")
	code, body = get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "nats: not ready: NATS is not connected\nslow: ok\n", body)
	code, _ = get("/healthz")
	require.Equal(t, http.StatusOK, code, "liveness runs no checks: a restart would not reconnect NATS sooner")

	// A check that hangs is cut off by the probe's own bound.
	ts.srv.AddReadinessCheck("slow", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	natsDown = nil
	code, body = get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "slow: not ready: context deadline exceeded")

	// The API port serves neither.
	resp, err := httpClient(t, false).Get(ts.baseURL + "/readyz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.NotEqual(t, http.StatusOK, resp.StatusCode)
}
