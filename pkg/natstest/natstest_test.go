package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/natstest"
)

func TestBinaryIsCachedAndOverridable(t *testing.T) {
	bin := natstest.Binary(t)
	require.FileExists(t, bin)
	require.Equal(t, bin, natstest.Binary(t), "second call must reuse the cached binary")

	t.Setenv(natstest.EnvBinary, bin)
	require.Equal(t, bin, natstest.Binary(t))
}

func TestProcessKillAndRestartKeepsData(t *testing.T) {
	p := natstest.StartProcess(t, natstest.Options{
		ServerName:  "solo",
		ConfigExtra: "max_payload: 2MB",
	})

	nc, err := nats.Connect(p.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	require.EqualValues(t, 2<<20, nc.MaxPayload(), "ConfigExtra must reach the server")

	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "P", Subjects: []string{"p.>"}, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	ack, err := js.Publish(ctx, "p.1", []byte("kept"))
	require.NoError(t, err)

	require.NoError(t, p.Kill9())
	down, cancelDown := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = js.Publish(down, "p.1", []byte("lost"), jetstream.WithRetryAttempts(0))
	cancelDown()
	require.Error(t, err, "the server is gone")

	p.Restart(t)
	require.Eventually(t, nc.IsConnected, 10*time.Second, 20*time.Millisecond, "client must reconnect to the same URL")
	st, err := js.Stream(ctx, "P")
	require.NoError(t, err)
	m, err := st.GetMsg(ctx, ack.Sequence)
	require.NoError(t, err)
	require.Equal(t, "kept", string(m.Data))
	require.Contains(t, p.Log(), "solo")
}
