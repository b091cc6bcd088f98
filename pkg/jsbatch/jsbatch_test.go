package jsbatch_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/jsbatch"
	"github.com/kontakt-se/kontakt/pkg/natserr"
	"github.com/kontakt-se/kontakt/pkg/natstest"
)

func setup(t *testing.T, atomic bool) (jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	js := natstest.JetStream(t, natstest.Embedded(t, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "B", Subjects: []string{"b.>"}, Storage: jetstream.FileStorage, AllowAtomicPublish: atomic,
	})
	require.NoError(t, err)
	return js, st
}

func msgs(n int, prefix string, expectNew bool) []*nats.Msg {
	out := make([]*nats.Msg, n)
	for i := range out {
		m := nats.NewMsg(fmt.Sprintf("b.%s.%d", prefix, i))
		m.Data = []byte(strconv.Itoa(i))
		if expectNew {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		}
		out[i] = m
	}
	return out
}

func TestPublishStoresAllInOrder(t *testing.T) {
	js, st := setup(t, true)
	ctx := context.Background()
	_, err := js.Publish(ctx, "b.before", nil)
	require.NoError(t, err)

	ack, err := jsbatch.Publish(ctx, js.Conn(), msgs(50, "x", true))
	require.NoError(t, err)
	require.Equal(t, "B", ack.Stream)
	require.Equal(t, uint64(2), ack.First)
	require.Equal(t, uint64(51), ack.Last)
	for i := range 50 {
		m, err := st.GetMsg(ctx, ack.Seq(i))
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("b.x.%d", i), m.Subject)
		require.Equal(t, strconv.Itoa(i), string(m.Data))
	}
}

// One failed expectation anywhere in the batch stores nothing at all.
func TestPublishIsAllOrNothing(t *testing.T) {
	js, st := setup(t, true)
	ctx := context.Background()
	_, err := js.Publish(ctx, "b.x.7", []byte("already there"))
	require.NoError(t, err)

	_, err = jsbatch.Publish(ctx, js.Conn(), msgs(20, "x", true))
	require.Error(t, err)
	require.True(t, natserr.IsWrongLastSequence(err), "got %v", err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs, "nothing of the refused batch may be stored")
}

func TestPublishRefusals(t *testing.T) {
	ctx := context.Background()
	t.Run("stream without atomic publish", func(t *testing.T) {
		js, _ := setup(t, false)
		_, err := jsbatch.Publish(ctx, js.Conn(), msgs(3, "x", false))
		require.True(t, natserr.Is(err, natserr.AtomicPublishDisabled), "got %v", err)
	})
	t.Run("duplicate id", func(t *testing.T) {
		js, _ := setup(t, true)
		_, err := js.Publish(ctx, "b.y", nil, jetstream.WithMsgID("dup"))
		require.NoError(t, err)
		batch := msgs(3, "x", false)
		batch[1].Header.Set(jetstream.MsgIDHeader, "dup")
		_, err = jsbatch.Publish(ctx, js.Conn(), batch)
		require.True(t, natserr.Is(err, natserr.AtomicPublishDuplicate), "got %v", err)
	})
	t.Run("too large and empty", func(t *testing.T) {
		js, _ := setup(t, true)
		_, err := jsbatch.Publish(ctx, js.Conn(), msgs(jsbatch.MaxMessages+1, "x", false))
		require.ErrorIs(t, err, jsbatch.ErrTooLarge)
		_, err = jsbatch.Publish(ctx, js.Conn(), nil)
		require.Error(t, err)
	})
}

// A batch of one is sent as a plain publish (no staging on the server)
// and answers as a batch of one would: stored with its sequence, refused
// for a failed expectation or a known message id, with nothing stored.
func TestBatchOfOneAnswersAsABatch(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		prep   func(t *testing.T, js jetstream.JetStream)
		msg    func() *nats.Msg
		refuse func(error) bool
	}{
		{"stored", func(*testing.T, jetstream.JetStream) {}, func() *nats.Msg { return msgs(1, "x", true)[0] }, nil},
		{"wrong last sequence", func(t *testing.T, js jetstream.JetStream) {
			_, err := js.Publish(ctx, "b.x.0", []byte("already there"))
			require.NoError(t, err)
		}, func() *nats.Msg { return msgs(1, "x", true)[0] }, natserr.IsWrongLastSequence},
		{"duplicate id", func(t *testing.T, js jetstream.JetStream) {
			_, err := js.Publish(ctx, "b.y", nil, jetstream.WithMsgID("dup"))
			require.NoError(t, err)
		}, func() *nats.Msg {
			m := msgs(1, "x", false)[0]
			m.Header.Set(jetstream.MsgIDHeader, "dup")
			return m
		}, func(err error) bool { return natserr.Is(err, natserr.AtomicPublishDuplicate) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js, st := setup(t, true)
			tt.prep(t, js)
			before, err := st.Info(ctx)
			require.NoError(t, err)
			ack, err := jsbatch.Publish(ctx, js.Conn(), []*nats.Msg{tt.msg()})
			after, ierr := st.Info(ctx)
			require.NoError(t, ierr)
			if tt.refuse != nil {
				require.True(t, tt.refuse(err), "got %v", err)
				require.Equal(t, before.State.Msgs, after.State.Msgs, "nothing stored")
				return
			}
			require.NoError(t, err)
			require.Equal(t, jsbatch.Ack{Stream: "B", First: after.State.LastSeq, Last: after.State.LastSeq}, ack)
			m, err := st.GetMsg(ctx, ack.First)
			require.NoError(t, err)
			require.Empty(t, m.Header.Get("Nats-Batch-Id"), "sent as a plain publish")
		})
	}
}

// Batches from many goroutines and plain publishes interleave without
// mixing: every batch occupies consecutive sequences.
func TestConcurrentBatchesStayContiguous(t *testing.T) {
	js, st := setup(t, true)
	ctx := context.Background()
	var wg sync.WaitGroup
	acks := make([]jsbatch.Ack, 8)
	errs := make([]error, 8)
	for g := range 8 {
		wg.Go(func() {
			acks[g], errs[g] = jsbatch.Publish(ctx, js.Conn(), msgs(25, strconv.Itoa(g), true))
		})
		wg.Go(func() {
			for i := range 10 {
				_, err := js.Publish(ctx, fmt.Sprintf("b.plain.%d.%d", g, i), nil)
				if err != nil {
					errs[g] = errors.Join(errs[g], err)
				}
			}
		})
	}
	wg.Wait()
	for g := range 8 {
		require.NoError(t, errs[g])
		for i := range 25 {
			m, err := st.GetMsg(ctx, acks[g].Seq(i))
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("b.%d.%d", g, i), m.Subject)
		}
	}
}

// TestPublishWaitsForAStreamThatIsStillAppearing publishes a batch while
// its stream does not exist yet: a stream just created on a cluster is not
// reachable from every server at once, and a commit nobody answers
// ("no responders") stored nothing, so the batch is sent again for a
// moment, as JetStream publishes are. With no stream at all it gives up.
func TestPublishWaitsForAStreamThatIsStillAppearing(t *testing.T) {
	js := natstest.JetStream(t, natstest.Embedded(t, 0))
	ctx := t.Context()

	_, err := jsbatch.Publish(ctx, js.Conn(), msgs(3, "none", true))
	require.ErrorIs(t, err, nats.ErrNoResponders)

	created := make(chan error, 1)
	time.AfterFunc(100*time.Millisecond, func() {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: "B", Subjects: []string{"b.>"}, Storage: jetstream.FileStorage, AllowAtomicPublish: true,
		})
		created <- err
	})
	ack, err := jsbatch.Publish(ctx, js.Conn(), msgs(3, "late", true))
	require.NoError(t, <-created)
	require.NoError(t, err)
	require.Equal(t, uint64(1), ack.First)
	require.Equal(t, uint64(3), ack.Last)
}
