package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/services/statistics/app"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

func openStore(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "statistics.db")
	s, err := Open(path, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func record(id string, version int64, hour time.Time) domain.Record {
	return domain.Record{
		StatisticsID: id, Version: version, Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Channel: casev1.Channel_CHANNEL_FORM,
		Category: "bygglov", Queue: "kund", Department: "Stadsbyggnad", RegisteredHour: hour,
		TimeToFirstResponse: time.Minute, HasFirstResponse: true, TimeToClose: time.Hour, HasClose: true,
		FirstContactResolution: true, Reopenings: 1, Area: domain.Area{Latitude: 57.1, Longitude: 12.2}, HasArea: true,
	}
}

func TestCodecsRoundTrip(t *testing.T) {
	hour := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		r    domain.Record
	}{
		{"full", record("s1", 42, hour)},
		{"sparse", domain.Record{StatisticsID: "s2", Version: 1, RegisteredHour: hour}},
		{"zero durations", func() domain.Record {
			r := record("s3", 2, hour)
			r.TimeToFirstResponse, r.TimeToClose = 0, 0
			return r
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := encodeRecordValue(tc.r)
			require.NoError(t, err)
			got, err := decodeRecordValue(v)
			require.NoError(t, err)
			require.Equal(t, tc.r, got)

			for _, mailed := range []bool{false, true} {
				c := &domain.Case{RegisteredAt: hour.Add(17*time.Minute + 3*time.Nanosecond), Record: tc.r, FirstResponseMailed: mailed}
				cv, err := encodeCase(c)
				require.NoError(t, err)
				gotCase, err := decodeCase(cv)
				require.NoError(t, err)
				require.Equal(t, c, gotCase)
			}

			var f domain.Facts
			require.NoError(t, decodeFacts(encodeFacts(tc.r), &f, true))
			want := tc.r.Facts()
			want.Hour = 0
			require.Equal(t, string(want.Category), string(f.Category))
			require.Equal(t, string(want.Queue), string(f.Queue))
			require.Equal(t, string(want.Department), string(f.Department))
			f.Category, f.Queue, f.Department = want.Category, want.Queue, want.Department
			require.Equal(t, want, f)
		})
	}
	m := domain.Message{Subject: "kontakt.stats.brev", MsgID: "x-9", Version: 9, Data: []byte(`{"a":1}`)}
	got, err := decodeOutbox(encodeOutbox(m))
	require.NoError(t, err)
	require.Equal(t, m, got)
	require.Error(t, decodeFacts([]byte{0, 2}, &domain.Facts{}, true))
}

func TestPutRecordKeepsNewest(t *testing.T) {
	s, _ := openStore(t)
	hour := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		r         domain.Record
		wantWrote bool
		wantQueue string
	}{
		{"first", withQueue(record("s1", 10, hour), "a"), true, "a"},
		{"newer", withQueue(record("s1", 20, hour), "b"), true, "b"},
		{"same version", withQueue(record("s1", 20, hour), "c"), false, "b"},
		{"older", withQueue(record("s1", 15, hour), "d"), false, "b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var wrote bool
			require.NoError(t, s.Update(func(tx app.Tx) error {
				var err error
				wrote, err = tx.PutRecord(tc.r)
				return err
			}))
			require.Equal(t, tc.wantWrote, wrote)
			recs, err := s.Records()
			require.NoError(t, err)
			require.Len(t, recs, 1)
			require.Equal(t, tc.wantQueue, recs[0].Queue)
			var queues []string
			require.NoError(t, s.Scan(hour.Unix(), hour.Unix()+3600, true, func(f *domain.Facts) { queues = append(queues, string(f.Queue)) }))
			require.Equal(t, []string{tc.wantQueue}, queues, "the index follows the record")
		})
	}
}

func withQueue(r domain.Record, q string) domain.Record {
	r.Queue = q
	return r
}

func TestScanRange(t *testing.T) {
	s, _ := openStore(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var recs []domain.Record
	for i := range 48 {
		recs = append(recs, record(string(rune('A'+i)), 1, base.Add(time.Duration(i)*time.Hour)))
	}
	// One before 1970, to check the sortable encoding of negative times.
	recs = append(recs, record("old", 1, time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC)))
	n, err := s.UpsertRecords(recs)
	require.NoError(t, err)
	require.Equal(t, len(recs), n)
	tests := []struct {
		name     string
		from, to time.Time
		want     int
	}{
		{"all", time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), base.Add(100 * time.Hour), 49},
		{"a day", base, base.Add(24 * time.Hour), 24},
		{"from inside an hour excludes that hour", base.Add(30 * time.Minute), base.Add(2 * time.Hour), 1},
		{"to is exclusive", base.Add(time.Hour), base.Add(time.Hour), 0},
		{"before 1970", time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC), base, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := 0
			last := int64(-1 << 62)
			require.NoError(t, s.Scan(tc.from.Unix(), tc.to.Unix(), false, func(f *domain.Facts) {
				require.GreaterOrEqual(t, f.Hour, last, "hour order")
				last = f.Hour
				got++
			}))
			require.Equal(t, tc.want, got)
		})
	}
}

func TestFinishAndState(t *testing.T) {
	s, path := openStore(t)
	st, err := s.State()
	require.NoError(t, err)
	require.Equal(t, app.ReadModelState{}, st)

	one := []domain.Message{{Subject: "a", MsgID: "x-1", Version: 1, Data: []byte("1")}, {Subject: "a", MsgID: "y-2", Version: 2, Data: []byte("2")}}
	require.NoError(t, s.Update(func(tx app.Tx) error {
		require.NoError(t, tx.PutCase("case-1", &domain.Case{RegisteredAt: time.Unix(5, 0).UTC(), Record: record("x", 1, time.Unix(3600, 0).UTC())}))
		return tx.Finish(7, 3, one)
	}))
	st, err = s.State()
	require.NoError(t, err)
	require.Equal(t, app.ReadModelState{Checkpoint: 7, ScanFrom: 3, Outbox: one}, st)

	two := []domain.Message{{Subject: "b", MsgID: "z-9", Version: 9, Data: []byte("9")}}
	require.NoError(t, s.Update(func(tx app.Tx) error {
		require.NoError(t, tx.DeleteCase("case-1"))
		return tx.Finish(9, 5, two)
	}))
	st, err = s.State()
	require.NoError(t, err)
	require.Equal(t, app.ReadModelState{Checkpoint: 9, ScanFrom: 5, Outbox: two}, st, "the outbox is replaced, not extended")
	c, err := s.Case("case-1")
	require.NoError(t, err)
	require.Nil(t, c)

	// A failed transaction changes nothing.
	errAbort := errors.New("abort the transaction")
	require.ErrorIs(t, s.Update(func(tx app.Tx) error {
		require.NoError(t, tx.Finish(99, 99, nil))
		return errAbort
	}), errAbort)
	cp, err := s.Checkpoint()
	require.NoError(t, err)
	require.Equal(t, eventstore.Position(9), cp)

	// Reopening keeps everything.
	require.NoError(t, s.Close())
	s2, err := Open(path, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s2.Close() })
	st, err = s2.State()
	require.NoError(t, err)
	require.Equal(t, app.ReadModelState{Checkpoint: 9, ScanFrom: 5, Outbox: two}, st)
}

func TestOpenRefusesOtherSchema(t *testing.T) {
	s, path := openStore(t)
	require.NoError(t, s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketMeta)).Put([]byte(keySchema), []byte("999"))
	}))
	require.NoError(t, s.Close())
	_, err := Open(path, Options{})
	require.ErrorIs(t, err, ErrSchema)
}

// TestReset checks that Reset empties the read model, checkpoint, scan
// position, outbox, cases and records, and leaves a file that opens
// again.
func TestReset(t *testing.T) {
	s, path := openStore(t)
	one := []domain.Message{{Subject: "a", MsgID: "x-1", Version: 1, Data: []byte("1")}}
	require.NoError(t, s.Update(func(tx app.Tx) error {
		require.NoError(t, tx.PutCase("case-1", &domain.Case{RegisteredAt: time.Unix(5, 0).UTC(), Record: record("x", 1, time.Unix(3600, 0).UTC())}))
		_, err := tx.PutRecord(record("x", 1, time.Unix(3600, 0).UTC()))
		require.NoError(t, err)
		return tx.Finish(7, 3, one)
	}))
	require.NoError(t, s.Reset())
	st, err := s.State()
	require.NoError(t, err)
	require.Equal(t, app.ReadModelState{}, st)
	n, err := s.CaseCount()
	require.NoError(t, err)
	require.Zero(t, n)
	recs, err := s.Records()
	require.NoError(t, err)
	require.Empty(t, recs)
	require.NoError(t, s.Close())
	s2, err := Open(path, Options{})
	require.NoError(t, err)
	require.NoError(t, s2.Close())
}
