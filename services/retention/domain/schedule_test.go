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
				{ActionRedact, PersonalClasses(), at90d, "personuppgifter"},
				{ActionDelete, []Class{ClassCase}, at2y, "arendet"},
			},
		},
		{
			name: "closing does not move registration-anchored deadlines",
			msgs: []proto.Message{registration(felanmalan, form), &casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(registered.AddDate(0, 5, 0))}},
			want: []Due{
				{ActionRedact, PersonalClasses(), at90d, "personuppgifter"},
				{ActionDelete, []Class{ClassCase}, at2y, "arendet"},
			},
		},
		{
			name: "a chat case: the transcript after 30 days, the rest after 90",
			msgs: []proto.Message{registration(fraga, chat)},
			want: []Due{
				{ActionRedact, []Class{ClassFreeText}, registered.AddDate(0, 0, 30), "chatt-konversation"},
				{ActionRedact, []Class{ClassContact, ClassIdentity, ClassAttachments, ClassAnswer}, at90d, "personuppgifter"},
				{ActionDelete, []Class{ClassCase}, at2y, "arendet"},
			},
		},
		{
			name: "redacted classes are dropped",
			msgs: []proto.Message{
				registration(synpunkt, email),
				redacted(casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER),
			},
			want: []Due{
				{ActionRedact, []Class{ClassFreeText, ClassAttachments, ClassAnswer}, at90d, "personuppgifter"},
				{ActionDelete, []Class{ClassCase}, at2y, "arendet"},
			},
		},
		{
			name: "a redacted chat transcript drops its rule",
			msgs: []proto.Message{registration(fraga, chat), redacted(casev1.DataClass_DATA_CLASS_FREE_TEXT)},
			want: []Due{
				{ActionRedact, []Class{ClassContact, ClassIdentity, ClassAttachments, ClassAnswer}, at90d, "personuppgifter"},
				{ActionDelete, []Class{ClassCase}, at2y, "arendet"},
			},
		},
		{
			name: "an answer after redaction is scheduled again",
			msgs: []proto.Message{
				registration(brev, letter),
				redacted(casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER,
					casev1.DataClass_DATA_CLASS_FREE_TEXT, casev1.DataClass_DATA_CLASS_ATTACHMENTS, casev1.DataClass_DATA_CLASS_ANSWER),
				&casev1.CaseAnswered{CaseId: caseID, Answer: sealed()},
			},
			want: []Due{
				{ActionRedact, []Class{ClassAnswer}, at90d, "personuppgifter"},
				{ActionDelete, []Class{ClassCase}, at2y, "arendet"},
			},
		},
		{
			name: "a marked case is preserved",
			msgs: []proto.Message{registration(synpunkt, visit), &casev1.CaseMarkedForPreservation{CaseId: caseID}},
			want: []Due{
				{ActionRedact, PersonalClasses(), at90d, "personuppgifter"},
				{ActionPreserve, []Class{ClassCase}, at2y, "arendet-bevaras"},
			},
		},
		{
			name: "a hold does not change the schedule",
			msgs: []proto.Message{registration(fraga, phone), &casev1.HoldPlaced{CaseId: caseID, HoldId: "h1", Reason: "överklagande"}},
			want: []Due{
				{ActionRedact, PersonalClasses(), at90d, "personuppgifter"},
				{ActionDelete, []Class{ClassCase}, at2y, "arendet"},
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
	personal := Due{ActionRedact, PersonalClasses(), at6m, "ovriga-personuppgifter"}

	c := fold(t, registration(felanmalan, phone))
	require.Equal(t, []Due{personal}, p.Schedule(c), "open: the case's period has not begun")

	require.NoError(t, c.Apply(&casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(closed)}, 2, closed))
	require.Equal(t, []Due{
		personal,
		{ActionDelete, []Class{ClassCase}, closed.AddDate(2, 0, 0), "ovriga-arenden"},
	}, p.Schedule(c), "closed: culled 2 years later")

	require.NoError(t, c.Apply(&casev1.CaseReopened{CaseId: caseID}, 3, closed))
	require.Equal(t, []Due{personal}, p.Schedule(c), "reopened: current again")

	require.NoError(t, c.Apply(&casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(closedAgain)}, 4, closedAgain))
	require.Equal(t, []Due{
		personal,
		{ActionDelete, []Class{ClassCase}, closedAgain.AddDate(2, 0, 0), "ovriga-arenden"},
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
				{ActionRedact, []Class{ClassContact, ClassIdentity, ClassFreeText, ClassAnswer}, registered.AddDate(0, 6, 0), "fragor-personuppgifter"},
				{ActionRedact, []Class{ClassAttachments}, registered.AddDate(1, 0, 0), "fragor-bilagor"},
				{ActionDelete, []Class{ClassCase}, closed.AddDate(1, 0, 0), "fragor-arendet"},
			},
		},
		{
			name: "an open complaint of importance is delivered to the archive after 3 years",
			msgs: []proto.Message{registration(synpunkt, form), &casev1.CaseMarkedForPreservation{CaseId: caseID}},
			want: []Due{
				{ActionRedact, PersonalClasses(), registered.AddDate(0, 6, 0), "ovriga-personuppgifter"},
				{ActionPreserve, []Class{ClassCase}, registered.AddDate(3, 0, 0), "synpunkter-av-vikt"},
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
	require.NoError(t, c.Apply(&casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(registered)}, 2, registered))
	require.Equal(t, []Due{{ActionRedact, []Class{ClassFreeText}, registered, "fritext"}}, p.Schedule(c))
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
