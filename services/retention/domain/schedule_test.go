package domain

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

func builtin(t *testing.T, name string) *Plan {
	t.Helper()
	p, err := Builtin(name)
	require.NoError(t, err)
	return p
}

func redacted(classes ...casev1.DataClass) *casev1.PersonalDataRedacted {
	return &casev1.PersonalDataRedacted{CaseId: caseID, DataClasses: classes, Reason: "retention"}
}

func TestScheduleMolndal(t *testing.T) {
	at90d := registered.AddDate(0, 0, 90)
	at2y := registered.AddDate(2, 0, 0)
	tests := []struct {
		name string
		msgs []proto.Message
		want []Due
	}{
		{
			name: "a phone case: personal data after 90 days, the case after 2 years",
			msgs: []proto.Message{registration(fraga, phone)},
			want: []Due{
				due(ActionRedact, PersonalClasses(), at90d, registered, "personuppgifter"),
				due(ActionDelete, []Class{ClassCase}, at2y, registered, "arendet"),
			},
		},
		{
			name: "closing does not move registration-anchored deadlines",
			msgs: []proto.Message{registration(felanmalan, form), &casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(registered.AddDate(0, 5, 0))}},
			want: []Due{
				due(ActionRedact, PersonalClasses(), at90d, registered, "personuppgifter"),
				due(ActionDelete, []Class{ClassCase}, at2y, registered, "arendet"),
			},
		},
		{
			name: "a chat case: the transcript after 30 days, the rest after 90",
			msgs: []proto.Message{registration(fraga, chat)},
			want: []Due{
				due(ActionRedact, []Class{ClassFreeText}, registered.AddDate(0, 0, 30), registered, "chatt-konversation"),
				due(ActionRedact, []Class{ClassContact, ClassIdentity, ClassAttachments, ClassAnswer}, at90d, registered, "personuppgifter"),
				due(ActionDelete, []Class{ClassCase}, at2y, registered, "arendet"),
			},
		},
		{
			name: "redacted classes are dropped",
			msgs: []proto.Message{
				registration(synpunkt, email),
				redacted(casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER),
			},
			want: []Due{
				due(ActionRedact, []Class{ClassFreeText, ClassAttachments, ClassAnswer}, at90d, registered, "personuppgifter"),
				due(ActionDelete, []Class{ClassCase}, at2y, registered, "arendet"),
			},
		},
		{
			name: "a redacted chat transcript drops its rule",
			msgs: []proto.Message{registration(fraga, chat), redacted(casev1.DataClass_DATA_CLASS_FREE_TEXT)},
			want: []Due{
				due(ActionRedact, []Class{ClassContact, ClassIdentity, ClassAttachments, ClassAnswer}, at90d, registered, "personuppgifter"),
				due(ActionDelete, []Class{ClassCase}, at2y, registered, "arendet"),
			},
		},
		{
			name: "an answer before the redaction goes with the case's first 90 days",
			msgs: []proto.Message{
				registration(synpunkt, phone),
				&casev1.CaseAnswered{CaseId: caseID, Answer: sealed(), AnsweredAt: ts(registered.AddDate(0, 0, 89))},
			},
			want: []Due{
				due(ActionRedact, PersonalClasses(), at90d, registered, "personuppgifter"),
				due(ActionDelete, []Class{ClassCase}, at2y, registered, "arendet"),
			},
		},
		{
			name: "a marked case is preserved",
			msgs: []proto.Message{registration(synpunkt, visit), &casev1.CaseMarkedForPreservation{CaseId: caseID}},
			want: []Due{
				due(ActionRedact, PersonalClasses(), at90d, registered, "personuppgifter"),
				due(ActionPreserve, []Class{ClassCase}, at2y, registered, "arendet-bevaras"),
			},
		},
		{
			name: "a hold does not change the schedule",
			msgs: []proto.Message{registration(fraga, phone), &casev1.HoldPlaced{CaseId: caseID, HoldId: "h1", Reason: "överklagande"}},
			want: []Due{
				due(ActionRedact, PersonalClasses(), at90d, registered, "personuppgifter"),
				due(ActionDelete, []Class{ClassCase}, at2y, registered, "arendet"),
			},
		},
		{
			name: "a deleted case has nothing left",
			msgs: []proto.Message{registration(fraga, phone), &casev1.CaseDeleted{CaseId: caseID}},
			want: nil,
		},
	}
	p := builtin(t, "molndal")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fold(t, tt.msgs...)
			require.Equal(t, tt.want, p.Schedule(c))
			next, ok := p.NextDue(c)
			require.Equal(t, len(tt.want) > 0, ok)
			if ok {
				require.Equal(t, tt.want[0].At, next)
			}
		})
	}
}

// due is a Due as Schedule gives it for data the plan counts from its
// anchor (from): the registration or the closure.
func due(a Action, classes []Class, at, from time.Time, rule string) Due {
	return Due{Action: a, Classes: classes, At: at, From: from, Rule: rule}
}

// rewritten is a Due for data written after its classes were redacted,
// counted from when it was first written.
func rewritten(classes []Class, at, from time.Time, rule string) Due {
	return Due{Action: ActionRedact, Classes: classes, At: at, From: from, Rewritten: true, Rule: rule}
}

// allRedacted is a redaction of every personal class, as the plan's
// first deadline or an erasure appends it.
func allRedacted() *casev1.PersonalDataRedacted {
	return redacted(casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER,
		casev1.DataClass_DATA_CLASS_FREE_TEXT, casev1.DataClass_DATA_CLASS_ATTACHMENTS, casev1.DataClass_DATA_CLASS_ANSWER)
}

// TestScheduleAfterRedaction: data written into a class after its
// redaction falls under the plan again, counted from when it was written,
// not from the registration (which would redact it at the next sweep).
func TestScheduleAfterRedaction(t *testing.T) {
	day := func(n int) time.Time { return registered.AddDate(0, 0, n) }
	month := func(n int) time.Time { return registered.AddDate(0, n, 0) }
	answerAt := func(at time.Time) proto.Message {
		return &casev1.CaseAnswered{CaseId: caseID, Answer: sealed(), AnsweredAt: ts(at)}
	}
	answerOnly := redacted(casev1.DataClass_DATA_CLASS_ANSWER)
	tests := []struct {
		name string
		plan string
		msgs []proto.Message
		want []Due
	}{
		{
			name: "mölndal: culled at day 91, answered at day 120: due at day 210",
			plan: "molndal",
			msgs: []proto.Message{registration(synpunkt, phone), allRedacted(), answerAt(day(120))},
			want: []Due{
				rewritten([]Class{ClassAnswer}, day(210), day(120), "personuppgifter"),
				due(ActionDelete, []Class{ClassCase}, registered.AddDate(2, 0, 0), registered, "arendet"),
			},
		},
		{
			name: "mölndal: a note and a comment later in the same generation go with the first write",
			plan: "molndal",
			msgs: []proto.Message{
				registration(synpunkt, phone), allRedacted(), answerAt(day(120)),
				&casev1.NoteAdded{CaseId: caseID, Text: sealed(), AddedAt: ts(day(150))},
				&casev1.CaseForwarded{CaseId: caseID, Comment: sealed(), ForwardedAt: ts(day(160))},
			},
			want: []Due{
				rewritten([]Class{ClassAnswer}, day(210), day(120), "personuppgifter"),
				due(ActionDelete, []Class{ClassCase}, registered.AddDate(2, 0, 0), registered, "arendet"),
			},
		},
		{
			name: "mölndal: redacted again at day 211, a note at day 300: due at day 390",
			plan: "molndal",
			msgs: []proto.Message{
				registration(synpunkt, phone), allRedacted(), answerAt(day(120)), answerOnly,
				&casev1.NoteAdded{CaseId: caseID, Text: sealed(), AddedAt: ts(day(300))},
			},
			want: []Due{
				rewritten([]Class{ClassAnswer}, day(390), day(300), "personuppgifter"),
				due(ActionDelete, []Class{ClassCase}, registered.AddDate(2, 0, 0), registered, "arendet"),
			},
		},
		{
			name: "mölndal: the second redaction leaves nothing scheduled but the case",
			plan: "molndal",
			msgs: []proto.Message{registration(synpunkt, phone), allRedacted(), answerAt(day(120)), answerOnly},
			want: []Due{due(ActionDelete, []Class{ClassCase}, registered.AddDate(2, 0, 0), registered, "arendet")},
		},
		{
			name: "mölndal: a rectification after an erasure counts from when it was written",
			plan: "molndal",
			msgs: []proto.Message{
				registration(fraga, email), allRedacted(),
				&casev1.PersonalDataRectified{CaseId: caseID, DataClass: casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, Value: sealed(), RectifiedAt: ts(day(10))},
				answerAt(day(20)),
			},
			want: []Due{
				rewritten([]Class{ClassContact}, day(100), day(10), "personuppgifter"),
				rewritten([]Class{ClassAnswer}, day(110), day(20), "personuppgifter"),
				due(ActionDelete, []Class{ClassCase}, registered.AddDate(2, 0, 0), registered, "arendet"),
			},
		},
		{
			name: "växjö: a complaint culled at 6 months, answered at 7: due at 13 months",
			plan: "vaxjo",
			msgs: []proto.Message{registration(synpunkt, phone), allRedacted(), answerAt(month(7))},
			want: []Due{rewritten([]Class{ClassAnswer}, month(13), month(7), "ovriga-personuppgifter")},
		},
		{
			name: "växjö: a question's answer after 6 months, its attachments still on their year",
			plan: "vaxjo",
			msgs: []proto.Message{
				registration(fraga, email),
				redacted(casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER,
					casev1.DataClass_DATA_CLASS_FREE_TEXT, casev1.DataClass_DATA_CLASS_ANSWER),
				answerAt(month(8)),
			},
			want: []Due{
				due(ActionRedact, []Class{ClassAttachments}, registered.AddDate(1, 0, 0), registered, "fragor-bilagor"),
				rewritten([]Class{ClassAnswer}, month(14), month(8), "fragor-personuppgifter"),
			},
		},
		{
			name: "växjö: closing a rewritten complaint does not move its registration-anchored data",
			plan: "vaxjo",
			msgs: []proto.Message{
				registration(synpunkt, phone), allRedacted(), answerAt(month(7)),
				&casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(month(8))},
			},
			want: []Due{
				rewritten([]Class{ClassAnswer}, month(13), month(7), "ovriga-personuppgifter"),
				due(ActionDelete, []Class{ClassCase}, month(8).AddDate(2, 0, 0), month(8), "ovriga-arenden"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := builtin(t, tt.plan)
			c := fold(t, tt.msgs...)
			require.Equal(t, tt.want, p.Schedule(c))
		})
	}

	// A period counted from closure counts from the later of the closure
	// and the write: a note added to a closed case after its closure
	// rule redacted the class is not redacted at the next sweep.
	p, err := ParsePlan("closure.yaml", []byte(header+
		"  - name: arendet\n    classes: [case]\n    action: keep\n"+
		"  - name: svar\n    classes: [answer]\n    period: 30d\n    from: closure\n    action: redact\n"))
	require.NoError(t, err)
	c := fold(t, registration(fraga, phone), &casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(day(10))}, answerOnly,
		&casev1.NoteAdded{CaseId: caseID, Text: sealed(), AddedAt: ts(day(50))})
	require.Equal(t, []Due{rewritten([]Class{ClassAnswer}, day(80), day(50), "svar")}, p.Schedule(c))
	require.NoError(t, c.Apply(&casev1.CaseReopened{CaseId: caseID}, 100, day(60)))
	require.Empty(t, p.Schedule(c), "reopened: the closure period has not begun")
	require.NoError(t, c.Apply(&casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(day(70))}, 101, day(70)))
	require.Equal(t, []Due{rewritten([]Class{ClassAnswer}, day(100), day(70), "svar")}, p.Schedule(c), "closed again after the write: from the closure")
}

func TestMustArchive(t *testing.T) {
	molndal := builtin(t, "molndal")
	vaxjo := builtin(t, "vaxjo")
	plain := &Case{ID: caseID, Type: synpunkt, Channel: email, RegisteredAt: registered}
	marked := &Case{ID: caseID, Type: synpunkt, Channel: email, RegisteredAt: registered, Marked: true}
	markedQuestion := &Case{ID: caseID, Type: fraga, Channel: email, RegisteredAt: registered, Marked: true}
	// A plan that preserves every case, marked or not.
	preserving, err := ParsePlan("p.yaml", []byte(header+"  - name: bevaras\n    classes: [case]\n    period: 3y\n    from: closure\n    action: preserve\n"))
	require.NoError(t, err)
	tests := []struct {
		name string
		plan *Plan
		c    *Case
		want bool
	}{
		{"mölndal, unmarked", molndal, plain, false},
		{"mölndal, marked", molndal, marked, true},
		{"växjö, unmarked complaint", vaxjo, plain, false},
		{"växjö, complaint of importance", vaxjo, marked, true},
		{"växjö, marked question: the officer's mark counts", vaxjo, markedQuestion, true},
		{"a plan that preserves every case", preserving, plain, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.plan.MustArchive(tt.c))
		})
	}
}

func TestScheduleVaxjoFollowsClosure(t *testing.T) {
	p := builtin(t, "vaxjo")
	at6m := registered.AddDate(0, 6, 0)
	closed := registered.AddDate(0, 2, 0)
	closedAgain := registered.AddDate(0, 4, 0)
	personal := due(ActionRedact, PersonalClasses(), at6m, registered, "ovriga-personuppgifter")

	c := fold(t, registration(felanmalan, phone))
	require.Equal(t, []Due{personal}, p.Schedule(c), "open: the case's period has not begun")

	require.NoError(t, c.Apply(&casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(closed)}, 2, closed))
	require.Equal(t, []Due{
		personal,
		due(ActionDelete, []Class{ClassCase}, closed.AddDate(2, 0, 0), closed, "ovriga-arenden"),
	}, p.Schedule(c), "closed: culled 2 years later")

	require.NoError(t, c.Apply(&casev1.CaseReopened{CaseId: caseID}, 3, closed))
	require.Equal(t, []Due{personal}, p.Schedule(c), "reopened: current again")

	require.NoError(t, c.Apply(&casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(closedAgain)}, 4, closedAgain))
	require.Equal(t, []Due{
		personal,
		due(ActionDelete, []Class{ClassCase}, closedAgain.AddDate(2, 0, 0), closedAgain, "ovriga-arenden"),
	}, p.Schedule(c), "closed again: counted from the latest closing")
}

func TestScheduleVaxjo(t *testing.T) {
	p := builtin(t, "vaxjo")
	closed := registered.AddDate(0, 1, 0)
	tests := []struct {
		name string
		msgs []proto.Message
		want []Due
	}{
		{
			name: "a closed question: text after 6 months, attachments after a year, the case a year after closing",
			msgs: []proto.Message{registration(fraga, email), &casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(closed)}},
			want: []Due{
				due(ActionRedact, []Class{ClassContact, ClassIdentity, ClassFreeText, ClassAnswer}, registered.AddDate(0, 6, 0), registered, "fragor-personuppgifter"),
				due(ActionRedact, []Class{ClassAttachments}, registered.AddDate(1, 0, 0), registered, "fragor-bilagor"),
				due(ActionDelete, []Class{ClassCase}, closed.AddDate(1, 0, 0), closed, "fragor-arendet"),
			},
		},
		{
			name: "an open complaint of importance is delivered to the archive after 3 years",
			msgs: []proto.Message{registration(synpunkt, form), &casev1.CaseMarkedForPreservation{CaseId: caseID}},
			want: []Due{
				due(ActionRedact, PersonalClasses(), registered.AddDate(0, 6, 0), registered, "ovriga-personuppgifter"),
				due(ActionPreserve, []Class{ClassCase}, registered.AddDate(3, 0, 0), registered, "synpunkter-av-vikt"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, p.Schedule(fold(t, tt.msgs...)))
		})
	}
}

func TestScheduleKeepsWhatThePlanKeeps(t *testing.T) {
	p, err := ParsePlan("keep.yaml", []byte(header+
		"  - name: behall\n    classes: [case, contact]\n    action: keep\n"+
		"  - name: fritext\n    classes: [freetext]\n    period: 0d\n    from: closure\n    action: redact\n"))
	require.NoError(t, err)
	c := fold(t, registration(fraga, phone))
	require.Empty(t, p.Schedule(c), "kept, uncovered or not yet begun")
	_, ok := p.NextDue(c)
	require.False(t, ok)
	closed := registered.AddDate(0, 0, 3)
	require.NoError(t, c.Apply(&casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(closed)}, 2, closed))
	require.Equal(t, []Due{due(ActionRedact, []Class{ClassFreeText}, closed, closed, "fritext")}, p.Schedule(c))
}

func TestDueBy(t *testing.T) {
	p := builtin(t, "molndal")
	c := fold(t, registration(fraga, chat))
	tests := []struct {
		name string
		now  time.Time
		want []string
	}{
		{"at registration", registered, nil},
		{"a second before 30 days", registered.AddDate(0, 0, 30).Add(-time.Second), nil},
		{"at 30 days", registered.AddDate(0, 0, 30), []string{"chatt-konversation"}},
		{"at 90 days", registered.AddDate(0, 0, 90), []string{"chatt-konversation", "personuppgifter"}},
		{"after 2 years", registered.AddDate(2, 0, 1), []string{"chatt-konversation", "personuppgifter", "arendet"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, d := range p.DueBy(c, tt.now) {
				got = append(got, d.Rule)
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestScheduleOfAnUnregisteredCase(t *testing.T) {
	p := builtin(t, "molndal")
	require.Nil(t, p.Schedule(&Case{}))
	require.False(t, p.MustArchive(&Case{}))
}
