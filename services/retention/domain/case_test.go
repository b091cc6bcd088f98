package domain

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

const caseID = "0b3c6c36-5f7e-4bd2-9d0e-6a1f6f1c2a10"

// registered is 15 January 2026 at 10:00 UTC, when the test cases are
// registered.
var registered = time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func sealed() *casev1.SealedPersonalData {
	return &casev1.SealedPersonalData{KeyId: caseID + ".x", Ciphertext: []byte{1}}
}

func registration(ty casev1.CaseType, ch casev1.Channel) *casev1.CaseRegistered {
	return &casev1.CaseRegistered{
		CaseId:       caseID,
		CaseNumber:   "KC-2026-000123",
		Type:         ty,
		Channel:      ch,
		RegisteredAt: ts(registered),
		Contact:      sealed(),
		FreeText:     sealed(),
	}
}

// fold applies messages with revisions 1, 2, … recorded a minute apart
// after registration.
func fold(t *testing.T, msgs ...proto.Message) *Case {
	t.Helper()
	events := make([]Event, len(msgs))
	for i, m := range msgs {
		events[i] = Event{Message: m, Revision: uint64(i + 1), Recorded: registered.Add(time.Duration(i) * time.Minute)}
	}
	c, err := Fold(events)
	require.NoError(t, err)
	return c
}

func TestFold(t *testing.T) {
	closed := registered.Add(48 * time.Hour)
	stockholm := time.FixedZone("CET", 3600)
	reg := registration(fraga, phone)
	tests := []struct {
		name string
		msgs []proto.Message
		want func(c *Case)
	}{
		{
			name: "registration",
			msgs: []proto.Message{reg},
			want: func(*Case) {},
		},
		{
			name: "registration without a time uses the recorded time, in UTC",
			msgs: []proto.Message{&casev1.CaseRegistered{CaseId: caseID, CaseNumber: "KC-2026-000123", Type: fraga, Channel: phone}},
			want: func(c *Case) { c.Sealed = nil }, // nothing sealed, no keys
		},
		{
			name: "closure",
			msgs: []proto.Message{reg, &casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(closed)}},
			want: func(c *Case) { c.ClosedAt = closed; c.Revision = 2 },
		},
		{
			name: "closure without a time",
			msgs: []proto.Message{reg, &casev1.CaseRouted{CaseId: caseID}, &casev1.CaseClosed{CaseId: caseID}},
			want: func(c *Case) { c.ClosedAt = registered.Add(2 * time.Minute); c.Revision = 3 },
		},
		{
			name: "reopening clears the closure",
			msgs: []proto.Message{reg, &casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(closed)}, &casev1.CaseReopened{CaseId: caseID}},
			want: func(c *Case) { c.Revision = 3 },
		},
		{
			name: "closed again after reopening",
			msgs: []proto.Message{
				reg,
				&casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(closed)},
				&casev1.CaseReopened{CaseId: caseID},
				&casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(closed.Add(time.Hour))},
			},
			want: func(c *Case) { c.ClosedAt = closed.Add(time.Hour); c.Revision = 4 },
		},
		{
			name: "holds placed and released",
			msgs: []proto.Message{
				reg,
				&casev1.HoldPlaced{CaseId: caseID, HoldId: "h1", Reason: "överklagande"},
				&casev1.HoldPlaced{CaseId: caseID, HoldId: "h2", Reason: "JO-anmälan"},
				&casev1.HoldReleased{CaseId: caseID, HoldId: "h1"},
			},
			want: func(c *Case) { c.Holds = map[string]string{"h2": "JO-anmälan"}; c.Revision = 4 },
		},
		{
			name: "marked and archived",
			msgs: []proto.Message{
				reg,
				&casev1.CaseMarkedForPreservation{CaseId: caseID, Reason: "av vikt", MarkedBy: "sara", MarkedAt: ts(registered.Add(time.Hour))},
				&casev1.CaseArchived{CaseId: caseID, Package: "KC-2026-000123.zip", Sha256: "ab"},
			},
			want: func(c *Case) {
				c.Marked = true
				c.Mark = &Mark{By: "sara", At: registered.Add(time.Hour), Reason: "av vikt"}
				c.Archived = true
				c.Revision = 3
			},
		},
		{
			name: "a withdrawn mark leaves no mark and no current package",
			msgs: []proto.Message{
				reg,
				&casev1.CaseMarkedForPreservation{CaseId: caseID, Reason: "av vikt", MarkedBy: "sara", MarkedAt: ts(registered.Add(time.Hour))},
				&casev1.CaseArchived{CaseId: caseID, Package: "KC-2026-000123.zip", Sha256: "ab"},
				&casev1.CasePreservationWithdrawn{CaseId: caseID, WithdrawnBy: "dina", Reason: "inte av vikt"},
			},
			want: func(c *Case) { c.Revision = 4 },
		},
		{
			name: "redactions add up",
			msgs: []proto.Message{
				reg,
				&casev1.PersonalDataRedacted{CaseId: caseID, DataClasses: []casev1.DataClass{
					casev1.DataClass_DATA_CLASS_FREE_TEXT,
				}},
				&casev1.PersonalDataRedacted{CaseId: caseID, DataClasses: []casev1.DataClass{
					casev1.DataClass_DATA_CLASS_CONTACT_DETAILS,
					casev1.DataClass_DATA_CLASS_UNSPECIFIED,
					casev1.DataClass_DATA_CLASS_ANSWER,
				}},
			},
			want: func(c *Case) {
				c.Redacted = map[Class]bool{ClassFreeText: true, ClassContact: true, ClassAnswer: true}
				c.Generations = seal.Generations{seal.ClassFreeText: 1, seal.ClassContact: 1, seal.ClassAnswer: 1}
				c.Revision = 3
			},
		},
		{
			name: "new sealed data undoes a redaction of its class, counted from when it was written",
			msgs: []proto.Message{
				reg,
				&casev1.PersonalDataRedacted{CaseId: caseID, DataClasses: []casev1.DataClass{
					casev1.DataClass_DATA_CLASS_CONTACT_DETAILS,
					casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER,
					casev1.DataClass_DATA_CLASS_ANSWER,
				}},
				&casev1.CaseAnswered{CaseId: caseID, Answer: sealed()},
				&casev1.PersonalDataRectified{CaseId: caseID, DataClass: casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, Value: sealed()},
				&casev1.NoteAdded{CaseId: caseID, NoteId: "n1"}, // no text: nothing sealed
			},
			want: func(c *Case) {
				c.Redacted = map[Class]bool{ClassIdentity: true}
				c.Sealed[ClassAnswer] = true
				c.Generations = seal.Generations{seal.ClassContact: 1, seal.ClassIdentity: 1, seal.ClassAnswer: 1}
				// Recorded a minute apart; the events carry no time.
				c.Rewritten = map[Class]time.Time{ClassAnswer: registered.Add(2 * time.Minute), ClassContact: registered.Add(3 * time.Minute)}
				c.Revision = 5
			},
		},
		{
			name: "a second redaction ends the rewritten generation",
			msgs: []proto.Message{
				reg,
				&casev1.PersonalDataRedacted{CaseId: caseID, DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_ANSWER}},
				&casev1.CaseAnswered{CaseId: caseID, Answer: sealed(), AnsweredAt: ts(closed)},
				&casev1.NoteAdded{CaseId: caseID, NoteId: "n1", Text: sealed(), AddedAt: ts(closed.Add(time.Hour))},
				&casev1.PersonalDataRedacted{CaseId: caseID, DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_ANSWER}},
			},
			want: func(c *Case) {
				c.Redacted = map[Class]bool{ClassAnswer: true}
				c.Sealed[ClassAnswer] = true
				c.Generations = seal.Generations{seal.ClassAnswer: 2}
				c.Rewritten = map[Class]time.Time{}
				c.Revision = 5
			},
		},
		{
			name: "deleted",
			msgs: []proto.Message{reg, &casev1.CaseDeleted{CaseId: caseID, CaseNumber: "KC-2026-000123"}},
			want: func(c *Case) { c.Deleted = true; c.Revision = 2 },
		},
		{
			name: "workflow events move only the access facts and the revision",
			msgs: []proto.Message{
				reg,
				&casev1.CaseRouted{CaseId: caseID, Queue: "kontaktcenter"},
				&casev1.CaseAssigned{CaseId: caseID, Assignee: "anna"},
				&casev1.CaseForwarded{CaseId: caseID, ToQueue: "bygg"},
				&timestamppb.Timestamp{}, // not a case event at all
			},
			want: func(c *Case) { c.Access.Queue = "bygg"; c.Revision = 5 },
		},
		{
			name: "times in another zone are kept in UTC",
			msgs: []proto.Message{reg, &casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(closed.In(stockholm))}},
			want: func(c *Case) { c.ClosedAt = closed; c.Revision = 2 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := &Case{
				ID:           caseID,
				Number:       "KC-2026-000123",
				Type:         fraga,
				Channel:      phone,
				RegisteredAt: registered,
				Holds:        map[string]string{},
				Redacted:     map[Class]bool{},
				Sealed:       map[Class]bool{ClassContact: true, ClassFreeText: true},
				Revision:     1,
			}
			tt.want(want)
			got := fold(t, tt.msgs...)
			require.Equal(t, want, got)
			require.Equal(t, time.UTC, got.RegisteredAt.Location())
		})
	}
}

func TestOnHoldAndClosed(t *testing.T) {
	c := fold(t, registration(fraga, phone))
	require.False(t, c.OnHold())
	require.False(t, c.Closed())
	require.NoError(t, c.Apply(&casev1.HoldPlaced{CaseId: caseID, HoldId: "h1", Reason: "överklagande"}, 2, registered))
	require.True(t, c.OnHold())
	require.NoError(t, c.Apply(&casev1.CaseClosed{CaseId: caseID, ClosedAt: ts(registered)}, 3, registered))
	require.True(t, c.Closed())
	require.NoError(t, c.Apply(&casev1.HoldReleased{CaseId: caseID, HoldId: "h1"}, 4, registered))
	require.False(t, c.OnHold())
}

func TestApplyRefuses(t *testing.T) {
	tests := []struct {
		name    string
		before  []proto.Message
		msg     proto.Message
		wantErr error
		reason  string
	}{
		{"an event before registration", nil, &casev1.CaseClosed{CaseId: caseID}, ErrNotRegistered, "CaseClosed at revision 9 before CaseRegistered"},
		{"an unknown event before registration", nil, &timestamppb.Timestamp{}, ErrNotRegistered, "before CaseRegistered"},
		{"a second registration", []proto.Message{registration(fraga, phone)}, registration(fraga, phone), ErrInvalidStream, "second CaseRegistered"},
		{"a registration without id", nil, &casev1.CaseRegistered{}, ErrInvalidStream, "without a case id"},
		{"another case's event", []proto.Message{registration(fraga, phone)}, &casev1.CaseClosed{CaseId: "other"}, ErrInvalidStream, "event for case other"},
		{"a nil event", []proto.Message{registration(fraga, phone)}, nil, ErrInvalidStream, "nil event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Case{}
			for i, m := range tt.before {
				require.NoError(t, c.Apply(m, uint64(i+1), registered))
			}
			before := *c
			err := c.Apply(tt.msg, 9, registered)
			require.ErrorIs(t, err, tt.wantErr)
			require.ErrorContains(t, err, tt.reason)
			require.Equal(t, before, *c, "a refused event changes nothing")
		})
	}
}

func TestFoldRefuses(t *testing.T) {
	tests := []struct {
		name    string
		events  []Event
		wantErr error
	}{
		{"an empty stream", nil, ErrNotRegistered},
		{"a stream without registration", []Event{{Message: &casev1.CaseClosed{CaseId: caseID}, Revision: 1}}, ErrNotRegistered},
		{"a stream with two registrations", []Event{
			{Message: registration(fraga, phone), Revision: 1},
			{Message: registration(fraga, phone), Revision: 2},
		}, ErrInvalidStream},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Fold(tt.events)
			require.ErrorIs(t, err, tt.wantErr)
			require.Nil(t, c)
		})
	}
}
