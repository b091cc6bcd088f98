package jsread_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/jsread"
	"github.com/kontakt-se/kontakt/pkg/natstest"
)

const stream = "READS"

// setup makes a stream with 10 messages on a.<i%2>: sequences 1..10,
// data "m1".."m10".
func setup(t *testing.T) jetstream.JetStream {
	t.Helper()
	js := natstest.JetStream(t, natstest.Embedded(t, 0))
	_, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: stream, Subjects: []string{"a.>"}})
	require.NoError(t, err)
	for i := 1; i <= 10; i++ {
		_, err := js.Publish(t.Context(), fmt.Sprintf("a.%d", i%2), fmt.Appendf(nil, "m%d", i))
		require.NoError(t, err)
	}
	return js
}

func consumers(t *testing.T, js jetstream.JetStream) int {
	t.Helper()
	s, err := js.Stream(t.Context(), stream)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	return info.State.Consumers
}

func TestEachReadsTheRangeInOrder(t *testing.T) {
	js := setup(t)
	tests := []struct {
		name string
		r    jsread.Range
		want []uint64
	}{
		{"everything", jsread.Range{}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"one subject", jsread.Range{Subjects: []string{"a.1"}}, []uint64{1, 3, 5, 7, 9}},
		{"two subjects", jsread.Range{Subjects: []string{"a.1", "a.0"}}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"after", jsread.Range{After: 7}, []uint64{8, 9, 10}},
		{"after and up to", jsread.Range{After: 2, UpTo: 5}, []uint64{3, 4, 5}},
		{"subject, after and up to", jsread.Range{Subjects: []string{"a.0"}, After: 2, UpTo: 7}, []uint64{4, 6}},
		{"small batches", jsread.Range{Batch: 3}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"no match", jsread.Range{Subjects: []string{"a.9"}}, nil},
		{"after the end", jsread.Range{After: 10}, nil},
		{"empty range", jsread.Range{After: 5, UpTo: 5}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.r.Stream = stream
			var got []uint64
			err := jsread.Each(t.Context(), js, tt.r, func(m jsread.Msg) error {
				require.Equal(t, fmt.Sprintf("m%d", m.Sequence), string(m.Data))
				got = append(got, m.Sequence)
				return nil
			})
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.Zero(t, consumers(t, js), "the read's consumer is deleted")
		})
	}
}

func TestEachEndsAtTheEndItSawFirst(t *testing.T) {
	js := setup(t)
	var got []uint64
	err := jsread.Each(t.Context(), js, jsread.Range{Stream: stream, Batch: 2}, func(m jsread.Msg) error {
		got = append(got, m.Sequence)
		// A writer that keeps appending does not keep the read going.
		_, err := js.Publish(context.Background(), "a.1", []byte("later"))
		return err
	})
	require.NoError(t, err)
	require.Equal(t, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, got)
}

func TestEachStopsAndFailsWithoutLeavingItsConsumer(t *testing.T) {
	js := setup(t)
	boom := errors.New("boom")
	n := 0
	err := jsread.Each(t.Context(), js, jsread.Range{Stream: stream}, func(jsread.Msg) error {
		n++
		if n == 3 {
			return boom
		}
		return nil
	})
	require.ErrorIs(t, err, boom)
	require.Zero(t, consumers(t, js))

	n = 0
	err = jsread.Each(t.Context(), js, jsread.Range{Stream: stream}, func(jsread.Msg) error {
		n++
		if n == 4 {
			return jsread.Stop()
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 4, n)
	require.Zero(t, consumers(t, js))

	err = jsread.Each(t.Context(), js, jsread.Range{Stream: "NO_SUCH_STREAM"}, func(jsread.Msg) error { return nil })
	require.ErrorIs(t, err, jsread.ErrUnavailable)
}

func TestManyReadsLeaveNoConsumer(t *testing.T) {
	js := setup(t)
	for range 500 {
		require.NoError(t, jsread.Each(t.Context(), js, jsread.Range{Stream: stream, Subjects: []string{"a.1"}}, func(jsread.Msg) error { return nil }))
	}
	require.Zero(t, consumers(t, js))
}
