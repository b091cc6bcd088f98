package statistics

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/services/statistics/adapters/stream"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

// t0 is when the test cases are registered: not on the hour, so the
// rounding shows.
func t0() time.Time { return time.Date(2026, 3, 2, 8, 15, 30, 0, time.UTC) }

const day = 24 * time.Hour

// historyCase is one case of a varied history and the record it must
// give.
type historyCase struct {
	name string
	// events returns the case's events after its registration.
	reg    func(id string) *casev1.CaseRegistered
	events func(id string) []proto.Message
	// deleteAt, when set, appends CaseDeleted at that time and deletes
	// the stream.
	deleteAt time.Duration
	want     domain.Record
	// versionAt is the index of the event whose position is the record's
	// final version (0 is the registration; len(events)+1 the deletion).
	versionAt int
	subject   string
}

func variedHistory() []historyCase {
	hour := t0().Truncate(time.Hour)
	actor := marker + "-actor"
	return []historyCase{
		{
			name: "question answered and closed at first contact",
			reg: func(id string) *casev1.CaseRegistered {
				return registered(id, casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_PHONE, "cat-fraga", t0())
			},
			events: func(id string) []proto.Message {
				return []proto.Message{
					&casev1.CaseRouted{CaseId: id, Queue: "kundtjanst", Rule: "default", RulesVersion: "v1", RoutedAt: ts(t0().Add(time.Second))},
					&casev1.CaseAssigned{CaseId: id, Assignee: actor, AssignedBy: actor, AssignedAt: ts(t0().Add(time.Minute))},
					&casev1.CaseAnswered{CaseId: id, AnsweredBy: actor, Answer: sealed(id, "answer"), AnsweredAt: ts(t0().Add(20 * time.Minute))},
					&casev1.CaseClosed{CaseId: id, ClosedBy: actor, Resolution: casev1.Resolution(1), FirstContactResolution: true, ClosedAt: ts(t0().Add(25 * time.Minute))},
				}
			},
			want: domain.Record{
				Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE, Category: "cat-fraga", Queue: "kundtjanst",
				RegisteredHour: hour, TimeToFirstResponse: 20 * time.Minute, HasFirstResponse: true,
				TimeToClose: 25 * time.Minute, HasClose: true, FirstContactResolution: true, Closed: true,
			},
			versionAt: 4,
			subject:   "kontakt.stats.fraga",
		},
		{
			name: "fault report with an area, forwarded to a department",
			reg: func(id string) *casev1.CaseRegistered {
				r := registered(id, casev1.CaseType_CASE_TYPE_FELANMALAN, casev1.Channel_CHANNEL_FORM, "cat-gata", t0())
				r.CoarseLocation = &casev1.CoarseLocation{Latitude: 57.65678, Longitude: 12.01234}
				return r
			},
			events: func(id string) []proto.Message {
				return []proto.Message{
					&casev1.CaseRouted{CaseId: id, Queue: "gata", RoutedAt: ts(t0())},
					&casev1.CaseForwarded{CaseId: id, ToQueue: "teknik", ToDepartment: "Tekniska förvaltningen", ToOfficer: actor, Comment: sealed(id, "comment"), ForwardedBy: actor, ForwardedAt: ts(t0().Add(time.Hour))},
					&casev1.NoteAdded{CaseId: id, NoteId: marker + "-note", Author: actor, Text: sealed(id, "note"), AddedAt: ts(t0().Add(2 * time.Hour))},
					&casev1.CaseAnswered{CaseId: id, AnsweredBy: actor, Answer: sealed(id, "answer"), AnsweredAt: ts(t0().Add(2 * day))},
					&casev1.CaseClosed{CaseId: id, ClosedBy: actor, ClosedAt: ts(t0().Add(3 * day))},
				}
			},
			want: domain.Record{
				Type: casev1.CaseType_CASE_TYPE_FELANMALAN, Channel: casev1.Channel_CHANNEL_FORM, Category: "cat-gata",
				Queue: "teknik", Department: "Tekniska förvaltningen", RegisteredHour: hour,
				TimeToFirstResponse: 2 * day, HasFirstResponse: true, TimeToClose: 3 * day, HasClose: true, Closed: true,
				Area: domain.Area{Latitude: 57.66, Longitude: 12.01}, HasArea: true,
			},
			versionAt: 5,
			subject:   "kontakt.stats.felanmalan",
		},
		{
			name: "feedback reopened twice",
			reg: func(id string) *casev1.CaseRegistered {
				return registered(id, casev1.CaseType_CASE_TYPE_SYNPUNKT, casev1.Channel_CHANNEL_EMAIL, "cat-synpunkt", t0())
			},
			events: func(id string) []proto.Message {
				return []proto.Message{
					&casev1.CaseClosed{CaseId: id, ClosedBy: actor, FirstContactResolution: true, ClosedAt: ts(t0().Add(time.Hour))},
					&casev1.CaseReopened{CaseId: id, ReopenedBy: actor, ReopenedAt: ts(t0().Add(day))},
					&casev1.CaseClosed{CaseId: id, ClosedBy: actor, FirstContactResolution: true, ClosedAt: ts(t0().Add(2 * day))},
					&casev1.CaseReopened{CaseId: id, ReopenedBy: actor, ReopenedAt: ts(t0().Add(3 * day))},
					&casev1.CaseClosed{CaseId: id, ClosedBy: actor, FirstContactResolution: true, ClosedAt: ts(t0().Add(4 * day))},
				}
			},
			want: domain.Record{
				Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Channel: casev1.Channel_CHANNEL_EMAIL, Category: "cat-synpunkt",
				RegisteredHour: hour, TimeToClose: 4 * day, HasClose: true, Reopenings: 2, Closed: true,
			},
			versionAt: 5,
			subject:   "kontakt.stats.synpunkt",
		},
		{
			name: "letter redacted and deleted on time",
			reg: func(id string) *casev1.CaseRegistered {
				return registered(id, casev1.CaseType_CASE_TYPE_BREV, casev1.Channel_CHANNEL_LETTER, "cat-brev", t0())
			},
			events: func(id string) []proto.Message {
				return []proto.Message{
					&casev1.HoldPlaced{CaseId: id, HoldId: marker + "-hold", Reason: marker + "-reason", PlacedBy: actor, PlacedAt: ts(t0().Add(day))},
					&casev1.HoldReleased{CaseId: id, HoldId: marker + "-hold", ReleasedBy: actor, ReleasedAt: ts(t0().Add(2 * day))},
					&casev1.CaseClosed{CaseId: id, ClosedBy: actor, ClosedAt: ts(t0().Add(5 * day))},
					&casev1.PersonalDataRedacted{CaseId: id, DataClasses: []casev1.DataClass{1, 2, 3, 4, 5}, Reason: "retention", PlanVersion: marker + "-plan", Rule: marker + "-rule", RedactedAt: ts(t0().Add(90*day + 12*time.Hour))},
				}
			},
			deleteAt: 731 * day,
			want: domain.Record{
				Type: casev1.CaseType_CASE_TYPE_BREV, Channel: casev1.Channel_CHANNEL_LETTER, Category: "cat-brev",
				RegisteredHour: hour, TimeToClose: 5 * day, HasClose: true, Closed: true,
				PersonalDataRedactedOnTime: true, DeletedOnTime: true,
			},
			versionAt: 5,
			subject:   "kontakt.stats.brev",
		},
		{
			name: "chat redacted and deleted late",
			reg: func(id string) *casev1.CaseRegistered {
				return registered(id, casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_CHAT, "cat-chat", t0())
			},
			events: func(id string) []proto.Message {
				return []proto.Message{
					&casev1.PersonalDataRedacted{CaseId: id, DataClasses: []casev1.DataClass{3}, Reason: "erasure", RedactedAt: ts(t0().Add(10 * day))},
					&casev1.PersonalDataRedacted{CaseId: id, DataClasses: []casev1.DataClass{1, 2}, Reason: "retention", RedactedAt: ts(t0().Add(95 * day))},
				}
			},
			deleteAt: 740 * day,
			want: domain.Record{
				Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_CHAT, Category: "cat-chat", RegisteredHour: hour,
			},
			versionAt: 3, // the late deletion

			subject: "kontakt.stats.fraga",
		},
		{
			name: "visit moved by hand, rectified and marked for preservation",
			reg: func(id string) *casev1.CaseRegistered {
				r := registered(id, casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_VISIT, "cat-besok", t0())
				r.Contact, r.Identity = nil, nil
				return r
			},
			events: func(id string) []proto.Message {
				return []proto.Message{
					&casev1.CaseRouted{CaseId: id, Queue: "reception", RoutedAt: ts(t0())},
					&casev1.CaseMoved{CaseId: id, FromQueue: "reception", ToQueue: "kund", MovedBy: actor, MovedAt: ts(t0().Add(time.Hour))},
					&casev1.PersonalDataRectified{CaseId: id, DataClass: 3, Value: sealed(id, "rectified"), RectifiedBy: actor, RectifiedAt: ts(t0().Add(2 * time.Hour))},
					&casev1.CaseMarkedForPreservation{CaseId: id, MarkedBy: actor, Reason: marker + "-why", MarkedAt: ts(t0().Add(3 * time.Hour))},
					&casev1.CaseReleased{CaseId: id, ReleasedBy: actor, ReleasedAt: ts(t0().Add(4 * time.Hour))},
				}
			},
			want: domain.Record{
				Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_VISIT, Category: "cat-besok", Queue: "kund", RegisteredHour: hour,
			},
			versionAt: 2,
			subject:   "kontakt.stats.fraga",
		},
		{
			name: "a case of no known type",
			reg: func(id string) *casev1.CaseRegistered {
				return registered(id, casev1.CaseType_CASE_TYPE_UNSPECIFIED, casev1.Channel_CHANNEL_UNSPECIFIED, "cat-okand", t0().Add(3*time.Hour))
			},
			events: func(string) []proto.Message { return nil },
			want: domain.Record{
				Category: "cat-okand", RegisteredHour: hour.Add(3 * time.Hour),
			},
			subject: "kontakt.stats.okand",
		},
	}
}

// TestRecordsFromVariedHistory projects a varied history written into
// the event store and checks each case's record in the stream, the
// stream's message form, and that nothing personal reached the stream.
func TestRecordsFromVariedHistory(t *testing.T) {
	h := startHarness(t)
	svc := h.service(t, Config{})
	running(t, svc)

	cases := variedHistory()
	ids := make([]string, len(cases))
	positions := make([][]int64, len(cases))
	for i, tc := range cases {
		id := newCaseID()
		ids[i] = id
		evs := append([]proto.Message{tc.reg(id)}, tc.events(id)...)
		for _, p := range h.appendEvents(t, id, evs...) {
			positions[i] = append(positions[i], int64(p))
		}
		if tc.deleteAt > 0 {
			h.deleteCase(t, svc, id, t0().Add(tc.deleteAt))
			positions[i] = append(positions[i], int64(h.revs[id]))
		}
	}
	h.settled(t, svc)

	recs := h.recount(t)
	require.Len(t, recs, len(cases))
	byCategory := map[string]domain.Record{}
	for _, r := range recs {
		byCategory[r.Category] = r
	}
	msgs := h.rawMessages(t)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := byCategory[tc.want.Category]
			require.True(t, ok, "no record")
			require.Len(t, got.StatisticsID, 26, "128 random bits as base32")
			require.Equal(t, positions[i][tc.versionAt], got.Version, "version is the position of the last change")
			want := tc.want
			want.StatisticsID, want.Version = got.StatisticsID, got.Version
			require.Equal(t, want, got)

			c, err := svc.store.Case(ids[i])
			require.NoError(t, err)
			if tc.deleteAt > 0 {
				require.Nil(t, c, "the mapping is gone with the case")
			} else {
				require.NotNil(t, c)
				require.Equal(t, got, c.Record, "the mapping leads to the record")
			}

			// Every version of this record, in stream order, with its
			// headers and JSON form.
			var versions []int64
			for _, m := range msgs {
				var j map[string]any
				require.NoError(t, json.Unmarshal(m.Data, &j))
				if j["statistics_id"] != got.StatisticsID {
					continue
				}
				v, err := strconv.ParseInt(m.Header.Get(stream.HeaderRecordVersion), 10, 64)
				require.NoError(t, err)
				require.Equal(t, strconv.FormatInt(v, 10), j["version"], "header and payload agree")
				require.Equal(t, got.StatisticsID+"-"+strconv.FormatInt(v, 10), m.Header.Get(jetstream.MsgIDHeader))
				require.Equal(t, tc.subject, m.Subject)
				require.Contains(t, j, "registered_hour", "proto field names")
				versions = append(versions, v)
			}
			require.NotEmpty(t, versions)
			require.IsIncreasing(t, versions)
			require.Equal(t, got.Version, versions[len(versions)-1])
			for _, v := range versions {
				require.Contains(t, positions[i], v, "every version is one of the case's positions")
			}
		})
	}

	requireNoPersonalData(t, msgs, ids, "57.656", "12.012", "57.657")
	for _, r := range recs {
		for _, id := range ids {
			require.NotContains(t, r.StatisticsID, strings.ReplaceAll(id, "-", "")[:8])
		}
	}
	require.Equal(t, recs, storeRecords(t, svc), "the read model holds what the stream holds")
}

// TestDeletionDropsMappingKeepsRecord deletes cases while the projector
// runs and while it is down (so it only ever sees the stream's
// tombstone), and checks the records outlive the mappings.
func TestDeletionDropsMappingKeepsRecord(t *testing.T) {
	h := startHarness(t)
	svc := h.service(t, Config{})
	stop := running(t, svc)

	live, gone, goneWhileDown := newCaseID(), newCaseID(), newCaseID()
	// goneWhileDown's deletion is timed by its tombstone, which the store
	// stamps now: register it an hour ago.
	regAt := []time.Time{t0(), t0(), time.Now().Add(-time.Hour)}
	for i, id := range []string{live, gone, goneWhileDown} {
		h.appendEvents(t, id, registered(id, casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_EMAIL, "cat-"+strconv.Itoa(i), regAt[i]))
	}
	h.deleteCase(t, svc, gone, t0().Add(800*day)) // late
	h.settled(t, svc)
	require.NoError(t, stop())

	// While the projector is down the case is closed and deleted: its
	// events are purged before the projector reads them.
	h.appendEvents(t, goneWhileDown, &casev1.CaseClosed{CaseId: goneWhileDown, ClosedAt: ts(time.Now())})
	h.deleteCase(t, nil, goneWhileDown, time.Now().Add(800*day)) // never seen: purged first
	svc.Close()
	svc = h.service(t, Config{})
	running(t, svc)
	h.settled(t, svc)

	tests := []struct {
		name          string
		id            string
		category      string
		mapped        bool
		deletedOnTime bool
	}{
		{"live case keeps its mapping", live, "cat-0", true, false},
		{"deleted case keeps its record, late", gone, "cat-1", false, false},
		{"deleted while down: the tombstone drops the mapping and counts as deleted now", goneWhileDown, "cat-2", false, true},
	}
	recs := h.recount(t)
	require.Len(t, recs, 3)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := svc.store.Case(tc.id)
			require.NoError(t, err)
			require.Equal(t, tc.mapped, c != nil)
			var found bool
			for _, r := range recs {
				if r.Category == tc.category {
					found = true
					require.Equal(t, tc.deletedOnTime, r.DeletedOnTime)
				}
			}
			require.True(t, found)
		})
	}
	n, err := svc.store.CaseCount()
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, recs, storeRecords(t, svc))
}

// TestRedactionOnTime checks the on-time flags against configured
// periods, at the edges of the grace day.
func TestRedactionOnTime(t *testing.T) {
	h := startHarness(t)
	svc := h.service(t, Config{RedactAfter: 30 * day, DeleteAfter: 365 * day})
	running(t, svc)
	tests := []struct {
		name                  string
		redactAt, deleteAt    time.Duration
		wantRedacted, wantDel bool
	}{
		{"both at the last moment", 31 * day, 366 * day, true, true},
		{"both a second late", 31*day + time.Second, 366*day + time.Second, false, false},
		{"redacted early, deleted on time", day, 200 * day, true, true},
		{"not redacted, never deleted", 0, 0, false, false},
	}
	ids := make([]string, len(tests))
	for i, tc := range tests {
		id := newCaseID()
		ids[i] = id
		h.appendEvents(t, id, registered(id, casev1.CaseType_CASE_TYPE_BREV, casev1.Channel_CHANNEL_LETTER, "cat-"+strconv.Itoa(i), t0()))
		if tc.redactAt > 0 {
			h.appendEvents(t, id, &casev1.PersonalDataRedacted{CaseId: id, Reason: "retention", RedactedAt: ts(t0().Add(tc.redactAt))})
		}
		if tc.deleteAt > 0 {
			h.deleteCase(t, svc, id, t0().Add(tc.deleteAt))
		}
	}
	h.settled(t, svc)
	recs := h.recount(t)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r *domain.Record
			for j := range recs {
				if recs[j].Category == "cat-"+strconv.Itoa(i) {
					r = &recs[j]
				}
			}
			require.NotNil(t, r)
			require.Equal(t, tc.wantRedacted, r.PersonalDataRedactedOnTime)
			require.Equal(t, tc.wantDel, r.DeletedOnTime)
		})
	}
	requireNoPersonalData(t, h.rawMessages(t), ids)
}

// TestStreamConfig checks the statistics stream is kept for ever and
// refuses removals.
func TestStreamConfig(t *testing.T) {
	h := startHarness(t)
	h.service(t, Config{})
	ctx := context.Background()
	st, err := h.js.Stream(ctx, stream.StreamName)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	cfg := info.Config
	require.Equal(t, []string{"kontakt.stats.*"}, cfg.Subjects)
	require.Equal(t, jetstream.FileStorage, cfg.Storage)
	require.Zero(t, cfg.MaxAge)
	require.EqualValues(t, -1, cfg.MaxMsgs)
	require.EqualValues(t, -1, cfg.MaxBytes)
	require.True(t, cfg.DenyDelete)
	require.True(t, cfg.DenyPurge)
	require.Equal(t, 1, cfg.Replicas)

	_, err = h.js.Publish(ctx, "kontakt.stats.fraga", []byte(`{}`))
	require.NoError(t, err)
	require.Error(t, st.DeleteMsg(ctx, 1), "deleting a message is refused")
	require.Error(t, st.Purge(ctx), "purging is refused")
}

func TestNewRefusesBadConfig(t *testing.T) {
	h := startHarness(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no data directory", Config{DataDir: "-"}},
		{"negative k", Config{SuppressBelow: -1}},
		{"negative period", Config{RedactAfter: -day}},
		{"too many replicas", Config{Replicas: 7}},
		{"no id key", Config{IDKey: []byte{}}},
		{"short id key", Config{IDKey: []byte("fifteen bytes..")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			switch cfg.DataDir {
			case "-":
				cfg.DataDir = ""
			default:
				cfg.DataDir = t.TempDir()
			}
			if cfg.IDKey == nil {
				cfg.IDKey = testIDKey
			}
			_, err := New(context.Background(), cfg, h.es, h.js, nil)
			require.Error(t, err)
		})
	}
}
