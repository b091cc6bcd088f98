package stream

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/natstest"
	"github.com/kontakt-se/kontakt/services/statistics/app"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

// TestAppendReplicated checks the conditional append on a replicated
// stream of a three-node cluster, which refuses a stale append with
// another error code than a single server: two publishers, each on its
// own node, race for the same versions, and each version is stored once.
func TestAppendReplicated(t *testing.T) {
	cluster := natstest.StartCluster(t, "stats", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var streams []*Stream
	for i := range 2 {
		nc, err := nats.Connect(cluster.Nodes[i].URL())
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		s, err := New(ctx, js, Config{Replicas: 3, DuplicateWindow: 100 * time.Millisecond, Timeout: 20 * time.Second})
		require.NoError(t, err)
		streams = append(streams, s)
	}
	a, b := streams[0], streams[1]
	m1, err := Encode(rec("A", 1, 1))
	require.NoError(t, err)
	m2, err := Encode(rec("A", 2, 1))
	require.NoError(t, err)
	got, err := a.AppendBatch(ctx, []domain.Message{m1}, 0)
	require.NoError(t, err)
	require.EqualValues(t, 1, got)
	time.Sleep(150 * time.Millisecond) // Outlive the window.
	_, err = b.AppendBatch(ctx, []domain.Message{m1}, 0)
	require.ErrorIs(t, err, app.ErrConflict, "b has not read a's message")
	got, err = b.AppendBatch(ctx, []domain.Message{m2}, 1)
	require.NoError(t, err)
	require.EqualValues(t, 2, got)
	time.Sleep(150 * time.Millisecond)
	_, err = a.AppendBatch(ctx, []domain.Message{m2}, 1)
	require.ErrorIs(t, err, app.ErrConflict)
	last, err := a.LastSeq(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, last)
}
