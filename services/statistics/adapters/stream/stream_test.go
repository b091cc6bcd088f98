package stream

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/natsserver"
	"github.com/kontakt-se/kontakt/services/statistics/app"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

func startStream(t *testing.T) (*Stream, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := natsserver.Start(ctx, natsserver.Config{StoreDir: t.TempDir(), InProcessOnly: true})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := New(ctx, js, Config{})
	require.NoError(t, err)
	return s, js
}

func rec(id string, version int64, typ casev1.CaseType) domain.Record {
	return domain.Record{
		StatisticsID: id, Version: version, Type: typ, Channel: casev1.Channel_CHANNEL_CHAT, Category: "c",
		RegisteredHour: time.Date(2026, 5, 1, 7, 0, 0, 0, time.UTC), TimeToClose: 90 * time.Minute, HasClose: true,
		Area: domain.Area{Latitude: 57.7, Longitude: 11.97}, HasArea: true, Closed: true,
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		typ     casev1.CaseType
		subject string
	}{
		{casev1.CaseType_CASE_TYPE_FRAGA, "kontakt.stats.fraga"},
		{casev1.CaseType_CASE_TYPE_FELANMALAN, "kontakt.stats.felanmalan"},
		{casev1.CaseType_CASE_TYPE_SYNPUNKT, "kontakt.stats.synpunkt"},
		{casev1.CaseType_CASE_TYPE_BREV, "kontakt.stats.brev"},
		{casev1.CaseType_CASE_TYPE_UNSPECIFIED, "kontakt.stats.okand"},
		{casev1.CaseType(99), "kontakt.stats.okand"},
	}
	for _, tc := range tests {
		t.Run(tc.subject, func(t *testing.T) {
			r := rec("ABC", 42, tc.typ)
			m, err := Encode(r)
			require.NoError(t, err)
			again, err := Encode(r)
			require.NoError(t, err)
			require.Equal(t, m, again, "same record, same bytes")
			require.Equal(t, tc.subject, m.Subject)
			require.Equal(t, "ABC-42", m.MsgID)
			require.EqualValues(t, 42, m.Version)
			var j map[string]any
			require.NoError(t, json.Unmarshal(m.Data, &j))
			require.Equal(t, "ABC", j["statistics_id"])
			require.Equal(t, "5400s", j["time_to_close"])
			require.Equal(t, "2026-05-01T07:00:00Z", j["registered_hour"])
			require.NotContains(t, string(m.Data), " ", "compact")
			p, err := Decode(m.Data)
			require.NoError(t, err)
			require.Equal(t, r, domain.RecordFromProto(p))
		})
	}
	_, err := Encode(domain.Record{StatisticsID: "x"})
	require.Error(t, err, "a record needs a version")
}

func TestPublishReadRecount(t *testing.T) {
	s, _ := startStream(t)
	ctx := context.Background()
	var seqs []uint64
	for _, r := range []domain.Record{rec("A", 1, 1), rec("B", 2, 2), rec("A", 3, 1), rec("B", 2, 2), rec("C", 4, 4)} {
		m, err := Encode(r)
		require.NoError(t, err)
		seq, err := s.Publish(ctx, m)
		require.NoError(t, err)
		seqs = append(seqs, seq)
	}
	require.Equal(t, []uint64{1, 2, 3, 2, 4}, seqs, "a re-published version is stored once")
	// Somebody publishes by hand; it cannot be deleted, so readers skip it.
	_, err := s.js.Publish(ctx, "kontakt.stats.fraga", []byte(`hello`))
	require.NoError(t, err)
	last, err := s.LastSeq(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 5, last)

	tests := []struct {
		name        string
		after, upTo uint64
		want        []int64
	}{
		{"all", 0, 5, []int64{1, 2, 3, 4, 0}},
		{"a middle part", 1, 3, []int64{2, 3}},
		{"nothing", 5, 5, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []int64
			require.NoError(t, s.Read(ctx, tc.after, tc.upTo, func(m app.StoredMessage) error {
				var v int64
				if m.Record != nil {
					v = m.Record.Version
				}
				got = append(got, v)
				return nil
			}))
			require.Equal(t, tc.want, got)
		})
	}
	recs, err := s.Recount(ctx)
	require.NoError(t, err)
	require.Len(t, recs, 3)
	require.Equal(t, []string{"A", "B", "C"}, []string{recs[0].StatisticsID, recs[1].StatisticsID, recs[2].StatisticsID})
	require.EqualValues(t, 3, recs[0].Version, "the newest version wins")

	fctx, cancel := context.WithCancel(ctx)
	var followed []uint64
	err = s.Follow(fctx, 2, func(seq uint64, r *statisticsv1.StatisticsRecord) error {
		followed = append(followed, seq)
		if seq == 4 {
			cancel()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, []uint64{3, 4}, followed)

	// Following past the hand-published message: it is skipped, and a
	// later record arrives.
	go func() {
		m, _ := Encode(rec("D", 9, 3))
		_, _ = s.Publish(ctx, m)
	}()
	fctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	followed = nil
	err = s.Follow(fctx, 4, func(seq uint64, r *statisticsv1.StatisticsRecord) error {
		followed = append(followed, seq)
		cancel()
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, []uint64{6}, followed)
}

// TestAppendBatch checks the conditional atomic append every projector
// publishes with: it stores a whole batch, with consecutive sequences,
// only after the expected last sequence, refuses with app.ErrConflict
// otherwise (also a batch holding a copy the duplicate window knows), and
// stores nothing of a refused batch.
func TestAppendBatch(t *testing.T) {
	s, _ := startStream(t)
	ctx := context.Background()
	enc := func(id string, v int64) domain.Message {
		m, err := Encode(rec(id, v, 1))
		require.NoError(t, err)
		return m
	}
	m1, m2, m3 := enc("A", 1), enc("A", 2), enc("B", 3)

	first, err := s.AppendBatch(ctx, []domain.Message{m1, m2}, 0)
	require.NoError(t, err)
	require.EqualValues(t, 1, first, "the first message of an empty stream")
	_, err = s.AppendBatch(ctx, []domain.Message{m3}, 0)
	require.ErrorIs(t, err, app.ErrConflict, "somebody appended after 0")
	_, err = s.AppendBatch(ctx, []domain.Message{m1}, 0)
	require.ErrorIs(t, err, app.ErrConflict, "a stale publisher is refused even for a copy")
	_, err = s.AppendBatch(ctx, []domain.Message{m2, m3}, 2)
	require.ErrorIs(t, err, app.ErrConflict, "within the window, a batch holding a copy is refused whole")
	last, err := s.LastSeq(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, last, "nothing of a refused batch is stored")

	// A hand-published message is a conflict too, and is read as no
	// record.
	_, err = s.js.Publish(ctx, "kontakt.stats.fraga", []byte(`{}`))
	require.NoError(t, err)
	_, err = s.AppendBatch(ctx, []domain.Message{m3}, 2)
	require.ErrorIs(t, err, app.ErrConflict)
	var got []*domain.Record
	require.NoError(t, s.Read(ctx, 2, 3, func(m app.StoredMessage) error {
		got = append(got, m.Record)
		return nil
	}))
	require.Equal(t, []*domain.Record{nil}, got)
	first, err = s.AppendBatch(ctx, []domain.Message{m3}, 3)
	require.NoError(t, err)
	require.EqualValues(t, 4, first)
	require.NoError(t, s.Read(ctx, 3, 4, func(m app.StoredMessage) error {
		require.NotNil(t, m.Record)
		require.Equal(t, int64(3), m.Record.Version)
		return nil
	}))
}
