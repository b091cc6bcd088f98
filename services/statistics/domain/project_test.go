package domain

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
)

// reg is the registration time of the test case: 10:37:12 UTC, so the
// record's hour is 10:00.
func reg() time.Time { return time.Date(2026, 3, 2, 10, 37, 12, 0, time.UTC) }

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// recorded wraps messages as the store would deliver them: positions
// from 1, recorded one second apart.
func recorded(t *testing.T, msgs ...proto.Message) []eventstore.RecordedEvent {
	t.Helper()
	out := make([]eventstore.RecordedEvent, 0, len(msgs))
	for i, m := range msgs {
		pos := eventstore.Position(10 * (i + 1))
		ev := eventstore.RecordedEvent{Stream: "case-1", Position: pos, Recorded: reg().Add(time.Duration(i) * time.Second)}
		if m == nil {
			ev.Type = eventstore.TypeStreamDeleted
		} else {
			data, err := proto.Marshal(m)
			require.NoError(t, err)
			ev.Type = string(m.ProtoReflect().Descriptor().FullName())
			ev.Data = data
			ev.Revision = eventstore.Revision(pos)
		}
		out = append(out, ev)
	}
	return out
}

func registered() *casev1.CaseRegistered {
	return &casev1.CaseRegistered{
		CaseId: "case-1", CaseNumber: "KC-2026-000001",
		Type: casev1.CaseType_CASE_TYPE_FELANMALAN, Channel: casev1.Channel_CHANNEL_PHONE,
		Category: "gata", RegisteredAt: ts(reg()), RegisteredBy: "agent-x",
		CoarseLocation: &casev1.CoarseLocation{Latitude: 57.6543, Longitude: 12.0149},
	}
}

// run projects events through a fresh case and returns the final state,
// the last step and the positions that made a new version.
func run(t *testing.T, p Policy, evs []eventstore.RecordedEvent) (*Case, Step, []int64) {
	t.Helper()
	var c *Case
	var step Step
	var versions []int64
	for _, ev := range evs {
		var err error
		step, err = Project(c, ev, p, func(string) string { return "stat-1" })
		require.NoError(t, err)
		if step.Changed {
			versions = append(versions, step.Case.Record.Version)
			require.Equal(t, int64(ev.Position), step.Case.Record.Version)
		}
		c = step.Case
		if step.Forget {
			c = nil
		}
	}
	return c, step, versions
}

func TestProjectBuildsRecord(t *testing.T) {
	p := DefaultPolicy()
	day := 24 * time.Hour
	base := Record{
		StatisticsID: "stat-1", Type: casev1.CaseType_CASE_TYPE_FELANMALAN, Channel: casev1.Channel_CHANNEL_PHONE,
		Category: "gata", RegisteredHour: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC),
		Area: Area{Latitude: 57.65, Longitude: 12.01}, HasArea: true,
	}
	tests := []struct {
		name     string
		events   []proto.Message
		want     func(r *Record)
		versions []int64 // positions that made versions (events are at 10, 20, …)
		forget   bool
	}{
		{
			name:     "registration rounds the hour and the area",
			events:   []proto.Message{registered()},
			want:     func(r *Record) { r.Version = 10 },
			versions: []int64{10},
		},
		{
			name: "routing, moving and forwarding set queue and department",
			events: []proto.Message{
				registered(),
				&casev1.CaseRouted{CaseId: "case-1", Queue: "kundtjanst", Rule: "r1"},
				&casev1.CaseMoved{CaseId: "case-1", ToQueue: "gata", MovedBy: "sup-x"},
				&casev1.CaseForwarded{CaseId: "case-1", ToQueue: "teknik", ToDepartment: "Tekniska förvaltningen", ForwardedBy: "agent-x"},
				&casev1.CaseForwarded{CaseId: "case-1", ToOfficer: "officer-x", ForwardedBy: "agent-x"},
			},
			want: func(r *Record) {
				r.Version, r.Queue, r.Department = 40, "teknik", "Tekniska förvaltningen"
			},
			versions: []int64{10, 20, 30, 40},
		},
		{
			name: "first answer counts, later ones and unused events change nothing",
			events: []proto.Message{
				registered(),
				&casev1.CaseAssigned{CaseId: "case-1", Assignee: "agent-x"},
				&casev1.CaseAnswered{CaseId: "case-1", AnsweredBy: "agent-x", AnsweredAt: ts(reg().Add(90 * time.Minute))},
				&casev1.NoteAdded{CaseId: "case-1", Author: "agent-x"},
				&casev1.CaseAnswered{CaseId: "case-1", AnsweredBy: "agent-y", AnsweredAt: ts(reg().Add(5 * time.Hour))},
			},
			want: func(r *Record) {
				r.Version, r.TimeToFirstResponse, r.HasFirstResponse = 30, 90*time.Minute, true
			},
			versions: []int64{10, 30},
		},
		{
			name: "answered by e-mail: the first answer the relay accepted, not the AnswerCase call",
			events: []proto.Message{
				registered(),
				&casev1.CaseAnswered{CaseId: "case-1", AnsweredBy: "agent-x", AnsweredAt: ts(reg().Add(90 * time.Minute))},
				&casev1.MailSent{CaseId: "case-1", Kind: casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT, SentAt: ts(reg().Add(time.Minute))},
				&casev1.MailFailed{CaseId: "case-1", Kind: casev1.MailKind_MAIL_KIND_ANSWER, FailedAt: ts(reg().Add(2 * time.Hour))},
				&casev1.CaseAnswered{CaseId: "case-1", AnsweredBy: "agent-x", AnsweredAt: ts(reg().Add(3 * time.Hour))},
				&casev1.MailSent{CaseId: "case-1", Kind: casev1.MailKind_MAIL_KIND_ANSWER, SentAt: ts(reg().Add(4 * time.Hour))},
				&casev1.CaseAnswered{CaseId: "case-1", AnsweredBy: "agent-x", AnsweredAt: ts(reg().Add(5 * time.Hour))},
				&casev1.MailSent{CaseId: "case-1", Kind: casev1.MailKind_MAIL_KIND_ANSWER, SentAt: ts(reg().Add(6 * time.Hour))},
			},
			want: func(r *Record) {
				r.Version, r.TimeToFirstResponse, r.HasFirstResponse = 60, 4*time.Hour, true
			},
			versions: []int64{10, 20, 60},
		},
		{
			name: "close with first-contact resolution",
			events: []proto.Message{
				registered(),
				&casev1.CaseClosed{CaseId: "case-1", FirstContactResolution: true, ClosedAt: ts(reg().Add(3 * time.Minute))},
			},
			want: func(r *Record) {
				r.Version, r.Closed, r.TimeToClose, r.HasClose, r.FirstContactResolution = 20, true, 3*time.Minute, true, true
			},
			versions: []int64{10, 20},
		},
		{
			name: "reopening counts and time to close is the last close",
			events: []proto.Message{
				registered(),
				&casev1.CaseClosed{CaseId: "case-1", FirstContactResolution: true, ClosedAt: ts(reg().Add(time.Hour))},
				&casev1.CaseReopened{CaseId: "case-1", ReopenedAt: ts(reg().Add(2 * day))},
				&casev1.CaseClosed{CaseId: "case-1", FirstContactResolution: true, ClosedAt: ts(reg().Add(3 * day))},
				&casev1.CaseReopened{CaseId: "case-1", ReopenedAt: ts(reg().Add(4 * day))},
			},
			want: func(r *Record) {
				r.Version, r.Reopenings, r.TimeToClose, r.HasClose = 50, 2, 3*day, true
			},
			versions: []int64{10, 20, 30, 40, 50},
		},
		{
			name: "closed again after a reopening: not resolved at first contact",
			events: []proto.Message{
				registered(),
				&casev1.CaseClosed{CaseId: "case-1", FirstContactResolution: true, ClosedAt: ts(reg().Add(time.Hour))},
				&casev1.CaseReopened{CaseId: "case-1", ReopenedAt: ts(reg().Add(day))},
				&casev1.CaseClosed{CaseId: "case-1", FirstContactResolution: true, ClosedAt: ts(reg().Add(2 * day))},
			},
			want: func(r *Record) {
				r.Version, r.Reopenings, r.Closed, r.TimeToClose, r.HasClose = 40, 1, true, 2*day, true
			},
			versions: []int64{10, 20, 30, 40},
		},
		{
			name: "event time missing: the store's time counts",
			events: []proto.Message{
				registered(),
				&casev1.CaseAnswered{CaseId: "case-1"}, // recorded at reg+1s
			},
			want:     func(r *Record) { r.Version, r.TimeToFirstResponse, r.HasFirstResponse = 20, time.Second, true },
			versions: []int64{10, 20},
		},
		{
			name: "an answer stamped before the registration counts as immediate",
			events: []proto.Message{
				registered(),
				&casev1.CaseAnswered{CaseId: "case-1", AnsweredAt: ts(reg().Add(-time.Minute))},
			},
			want:     func(r *Record) { r.Version, r.HasFirstResponse = 20, true },
			versions: []int64{10, 20},
		},
		{
			name: "redaction exactly at 90 days plus grace is on time",
			events: []proto.Message{
				registered(),
				&casev1.PersonalDataRedacted{CaseId: "case-1", Reason: "retention", RedactedAt: ts(reg().Add(91 * day))},
			},
			want:     func(r *Record) { r.Version, r.PersonalDataRedactedOnTime = 20, true },
			versions: []int64{10, 20},
		},
		{
			name: "redaction a second late is not on time",
			events: []proto.Message{
				registered(),
				&casev1.PersonalDataRedacted{CaseId: "case-1", Reason: "retention", RedactedAt: ts(reg().Add(91*day + time.Second))},
			},
			want:     func(r *Record) { r.Version = 10 },
			versions: []int64{10},
		},
		{
			name: "an early erasure then a late redaction is late",
			events: []proto.Message{
				registered(),
				&casev1.PersonalDataRedacted{CaseId: "case-1", Reason: "erasure", RedactedAt: ts(reg().Add(5 * day))},
				&casev1.PersonalDataRedacted{CaseId: "case-1", Reason: "retention", RedactedAt: ts(reg().Add(120 * day))},
			},
			want:     func(r *Record) { r.Version = 30 },
			versions: []int64{10, 20, 30},
		},
		{
			name: "deletion on time forgets the case and keeps the record",
			events: []proto.Message{
				registered(),
				&casev1.CaseDeleted{CaseId: "case-1", CaseNumber: "KC-2026-000001", DeletedAt: ts(reg().Add(731 * day))},
				nil, // the stream's tombstone: the case is forgotten already
			},
			want:     func(r *Record) { r.Version, r.DeletedOnTime = 20, true },
			versions: []int64{10, 20},
			forget:   true,
		},
		{
			name: "late deletion still makes a version",
			events: []proto.Message{
				registered(),
				&casev1.CaseDeleted{CaseId: "case-1", DeletedAt: ts(reg().Add(800 * day))},
			},
			want:     func(r *Record) { r.Version = 20 },
			versions: []int64{10, 20},
			forget:   true,
		},
		{
			name: "a tombstone without CaseDeleted deletes by its own time",
			events: []proto.Message{
				registered(),
				nil, // recorded at reg+1s
			},
			want:     func(r *Record) { r.Version, r.DeletedOnTime = 20, true },
			versions: []int64{10, 20},
			forget:   true,
		},
		{
			name: "a second registration is ignored",
			events: []proto.Message{
				registered(),
				&casev1.CaseRegistered{CaseId: "case-1", Type: casev1.CaseType_CASE_TYPE_BREV, RegisteredAt: ts(reg().Add(time.Hour))},
			},
			want:     func(r *Record) { r.Version = 10 },
			versions: []int64{10},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs := recorded(t, tc.events...)
			var c *Case
			var last Record
			var versions []int64
			forgotten := false
			for _, ev := range evs {
				step, err := Project(c, ev, p, func(string) string { return "stat-1" })
				require.NoError(t, err)
				if step.Changed {
					versions = append(versions, step.Case.Record.Version)
				}
				if step.Case != nil {
					last = step.Case.Record
				}
				c = step.Case
				if step.Forget {
					c, forgotten = nil, true
				}
			}
			want := base
			tc.want(&want)
			require.Equal(t, want, last)
			require.Equal(t, tc.versions, versions)
			require.Equal(t, tc.forget, forgotten)
		})
	}
}

func TestProjectIsIdempotent(t *testing.T) {
	evs := recorded(t,
		registered(),
		&casev1.CaseRouted{CaseId: "case-1", Queue: "q"},
		&casev1.CaseReopened{CaseId: "case-1"},
	)
	c, _, _ := run(t, DefaultPolicy(), evs)
	for _, ev := range evs[1:] {
		step, err := Project(c, ev, DefaultPolicy(), func(string) string { t.Fatal("no new id"); return "" })
		require.NoError(t, err)
		require.False(t, step.Changed, "re-applied %s", ev.Type)
		require.Same(t, c, step.Case)
	}
	require.EqualValues(t, 1, c.Record.Reopenings)
}

func TestProjectUsesPolicy(t *testing.T) {
	evs := recorded(t, registered(),
		&casev1.PersonalDataRedacted{CaseId: "case-1", RedactedAt: ts(reg().Add(20 * 24 * time.Hour))})
	short := Policy{RedactAfter: 10 * 24 * time.Hour, DeleteAfter: DefaultDeleteAfter}
	c, _, _ := run(t, short, evs)
	require.False(t, c.Record.PersonalDataRedactedOnTime)
	c, _, _ = run(t, DefaultPolicy(), evs)
	require.True(t, c.Record.PersonalDataRedactedOnTime)
}

func TestProjectUnknownCaseAndMalformedEvents(t *testing.T) {
	evs := recorded(t, &casev1.CaseClosed{CaseId: "case-1"}, nil)
	for _, ev := range evs {
		step, err := Project(nil, ev, DefaultPolicy(), nil)
		require.NoError(t, err)
		require.Equal(t, Step{}, step)
	}
	bad := recorded(t, registered())[0]
	bad.Data = []byte{0xff, 0xff, 0xff}
	_, err := Project(nil, bad, DefaultPolicy(), func(string) string { return "x" })
	require.ErrorIs(t, err, ErrMalformedEvent)
	require.NotContains(t, err.Error(), "case-1")
}

func TestRecordProtoRoundTrip(t *testing.T) {
	r := Record{
		StatisticsID: "s", Version: 7, Type: casev1.CaseType_CASE_TYPE_BREV, Channel: casev1.Channel_CHANNEL_LETTER,
		Category: "c", Queue: "q", Department: "d", RegisteredHour: time.Date(2026, 1, 1, 5, 0, 0, 0, time.UTC),
		TimeToFirstResponse: 0, HasFirstResponse: true, TimeToClose: time.Hour, HasClose: true,
		FirstContactResolution: true, Reopenings: 3, PersonalDataRedactedOnTime: true, DeletedOnTime: true,
		Area: Area{Latitude: 1.5, Longitude: -2.25}, HasArea: true, Closed: true,
	}
	require.Equal(t, r, RecordFromProto(r.ToProto()))
	require.Equal(t, Record{}, RecordFromProto(Record{}.ToProto()))
}

// TestRegistrationPassesTheSeed checks the registration hands its
// statistics seed (or none, in an event older than the field) to the id
// derivation, and the record carries what it returns.
func TestRegistrationPassesTheSeed(t *testing.T) {
	for _, seed := range []string{"SEEDSEEDSEED", ""} {
		m := registered()
		m.StatisticsSeed = seed
		var got []string
		step, err := Project(nil, recorded(t, m)[0], DefaultPolicy(), func(s string) string {
			got = append(got, s)
			return "id-for-" + s
		})
		require.NoError(t, err)
		require.Equal(t, []string{seed}, got)
		require.Equal(t, "id-for-"+seed, step.Case.Record.StatisticsID)
	}
}

// TestProjectJudgesByTheEventsDeadline checks that a redaction or
// deletion carrying the plan's deadline is judged against it (plans differ
// by type and channel, and may count from closure), and that without one
// the policy's fixed periods apply.
func TestProjectJudgesByTheEventsDeadline(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		name   string
		ev     proto.Message
		onTime func(r Record) bool
		want   bool
	}{
		{"redacted 200 days in, due at 182 (Växjö 6m), 18 days late", &casev1.PersonalDataRedacted{CaseId: "case-1", RedactedAt: ts(reg().Add(200 * day)), DueAt: ts(reg().Add(182 * day))}, func(r Record) bool { return r.PersonalDataRedactedOnTime }, false},
		{"redacted 30 days in, due at 30 (a chat transcript)", &casev1.PersonalDataRedacted{CaseId: "case-1", RedactedAt: ts(reg().Add(30 * day)), DueAt: ts(reg().Add(30 * day))}, func(r Record) bool { return r.PersonalDataRedactedOnTime }, true},
		{"redacted 200 days in, due at 250 (counted from closure)", &casev1.PersonalDataRedacted{CaseId: "case-1", RedactedAt: ts(reg().Add(200 * day)), DueAt: ts(reg().Add(250 * day))}, func(r Record) bool { return r.PersonalDataRedactedOnTime }, true},
		{"no deadline: the policy's 90 days", &casev1.PersonalDataRedacted{CaseId: "case-1", RedactedAt: ts(reg().Add(200 * day))}, func(r Record) bool { return r.PersonalDataRedactedOnTime }, false},
		{"deleted on the 731st day of a leap span, due then", &casev1.CaseDeleted{CaseId: "case-1", DeletedAt: ts(reg().Add(731*day + time.Hour)), DueAt: ts(reg().Add(731 * day))}, func(r Record) bool { return r.DeletedOnTime }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, last, _ := run(t, DefaultPolicy(), recorded(t, registered(), tc.ev))
			require.Equal(t, tc.want, tc.onTime(last.Case.Record))
		})
	}
}

// TestRecordKeepsOnlyConfiguredCategories: a category that is not in the
// configured list (an event from before the list, written from free
// text) is not copied into the record, which is kept for ever.
func TestRecordKeepsOnlyConfiguredCategories(t *testing.T) {
	tests := []struct {
		name       string
		categories []string
		category   string
		want       string
	}{
		{"a configured code", []string{"gata", "skola"}, "gata", "gata"},
		{"free text from an old event", []string{"gata", "skola"}, "Anna Andersson 19121212-1212", ""},
		{"no list: kept as it is", nil, "gata", "gata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := registered()
			m.Category = tt.category
			c, _, _ := run(t, Policy{RedactAfter: DefaultRedactAfter, DeleteAfter: DefaultDeleteAfter, Categories: tt.categories}, recorded(t, m))
			require.Equal(t, tt.want, c.Record.Category)
		})
	}
}
