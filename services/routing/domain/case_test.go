package domain

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

func TestFoldRegistration(t *testing.T) {
	s := newStream(t)
	c := s.fold()
	require.Equal(t, caseID, c.ID)
	require.Equal(t, "KC-2026-000001", c.Number)
	require.Equal(t, casev1.CaseType_CASE_TYPE_FELANMALAN, c.Type)
	require.Equal(t, casev1.Channel_CHANNEL_PHONE, c.Channel)
	require.Equal(t, "Gatubelysning", c.Category)
	require.Equal(t, t0(), c.RegisteredAt)
	require.Equal(t, casev1.CaseStatus_CASE_STATUS_REGISTERED, c.Status)
	require.False(t, c.Routed)
	require.Equal(t, s.events[0].Revision, c.Version)
}

func TestFoldRefusesStreamsThatAreNoCase(t *testing.T) {
	reg := Event{Type: TypeOf(registered()), Message: registered(), Revision: 1}
	routed := &casev1.CaseRouted{CaseId: caseID, Queue: "q", Rule: "r"}
	tests := []struct {
		name   string
		events []Event
		want   error
	}{
		{"no events", nil, ErrNotRegistered},
		{"starts with another event", []Event{{Type: TypeOf(routed), Message: routed, Revision: 1}}, ErrNotRegistered},
		{"starts with an unknown event", []Event{{Type: "kontakt.case.v1.Future", Revision: 1}, reg}, ErrNotRegistered},
		{"registered without a case id", []Event{{Message: &casev1.CaseRegistered{}, Revision: 1}}, ErrInvalidStream},
		{"registered twice", []Event{reg, {Message: registered(), Revision: 2}}, ErrInvalidStream},
		{"another case's event", []Event{reg, {Message: &casev1.CaseRouted{CaseId: "c-other", Queue: "q"}, Revision: 2}}, ErrInvalidStream},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Fold(tt.events)
			require.ErrorIs(t, err, tt.want)
			require.Nil(t, c)
		})
	}
}

func TestFoldSkipsUnknownEventsButKeepsTheirRevision(t *testing.T) {
	s := newStream(t).do(route("kontaktcenter"))
	want := s.fold()
	s.events = append(s.events,
		Event{Type: "kontakt.case.v1.CaseEscalated", Revision: 900, Recorded: t0()},
		Event{Type: "kontakt.case.v1.ContactDetails", Message: &casev1.ContactDetails{Name: "x"}, Revision: 901},
	)
	got := s.fold()
	require.Equal(t, uint64(901), got.Version, "the next append must expect the stream's real revision")
	got.Version = want.Version
	require.Equal(t, want, got)
}

func TestFoldTimes(t *testing.T) {
	recorded := t0().Add(42 * time.Minute)
	c, err := Fold([]Event{
		{Message: &casev1.CaseRegistered{CaseId: caseID}, Revision: 1, Recorded: recorded},
		{Message: &casev1.CaseRouted{CaseId: caseID, Queue: "q", Rule: "r"}, Revision: 2},
		{Message: &casev1.CaseAnswered{CaseId: caseID}, Revision: 3, Recorded: recorded.Add(time.Minute)},
	})
	require.NoError(t, err)
	require.Equal(t, recorded, c.RegisteredAt, "an event without its own time falls back to the store's")
	require.Equal(t, recorded.Add(time.Minute), c.FirstResponseAt)
}

func TestFoldRetentionEvents(t *testing.T) {
	s := newStream(t).do(route("kontaktcenter"))
	s.add(&casev1.HoldPlaced{CaseId: caseID, HoldId: "h1", Reason: "överklagande"})
	s.add(&casev1.HoldPlaced{CaseId: caseID, HoldId: "h2"})
	s.add(&casev1.HoldReleased{CaseId: caseID, HoldId: "h1"})
	c := s.fold()
	require.True(t, c.OnHold())
	require.Equal(t, []string{"h2"}, sortedKeys(c.Holds))
	s.add(&casev1.HoldReleased{CaseId: caseID, HoldId: "h2"})
	s.add(&casev1.HoldReleased{CaseId: caseID, HoldId: "h-unknown"})
	require.False(t, s.fold().OnHold())

	s.add(&casev1.PersonalDataRedacted{CaseId: caseID, DataClasses: []casev1.DataClass{
		casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, casev1.DataClass_DATA_CLASS_UNSPECIFIED,
	}})
	s.add(&casev1.PersonalDataRedacted{CaseId: caseID, DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_FREE_TEXT}})
	s.add(&casev1.PersonalDataRectified{CaseId: caseID, DataClass: casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, Value: sealedText()})
	s.add(&casev1.CaseMarkedForPreservation{CaseId: caseID})
	c = s.fold()
	require.Equal(t, []casev1.DataClass{casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, casev1.DataClass_DATA_CLASS_FREE_TEXT}, sortedKeys(c.Redacted))
	require.True(t, c.IsRedacted())
	require.True(t, c.Preserved)
	require.Equal(t, casev1.CaseStatus_CASE_STATUS_QUEUED, c.Status, "retention does not move the case")

	s.add(&casev1.CaseDeleted{CaseId: caseID})
	require.True(t, s.fold().Deleted)
}

func TestApplyLeavesTheCaseOnError(t *testing.T) {
	c := newStream(t).do(route("kontaktcenter")).fold()
	before := clone(c)
	err := c.Apply(Event{Message: &casev1.CaseAssigned{CaseId: "c-other", Assignee: "x"}, Revision: 99})
	require.ErrorIs(t, err, ErrInvalidStream)
	require.Equal(t, before, c)
}

// eventDescriptors are the messages of events.proto: the case events.
func eventDescriptors() []protoreflect.MessageDescriptor {
	msgs := casev1.File_kontakt_case_v1_events_proto.Messages()
	out := make([]protoreflect.MessageDescriptor, msgs.Len())
	for i := range out {
		out[i] = msgs.Get(i)
	}
	return out
}

func TestDecodeKnowsEveryCaseEvent(t *testing.T) {
	descs := eventDescriptors()
	require.GreaterOrEqual(t, len(descs), 16)
	for _, d := range descs {
		t.Run(string(d.Name()), func(t *testing.T) {
			mt, err := protoregistry.GlobalTypes.FindMessageByName(d.FullName())
			require.NoError(t, err)
			m := mt.New().Interface()
			// Set the case id so the round trip carries data.
			fields := m.ProtoReflect().Descriptor().Fields()
			m.ProtoReflect().Set(fields.ByName("case_id"), protoreflect.ValueOfString(caseID))
			data, err := proto.Marshal(m)
			require.NoError(t, err)
			got, err := Decode(string(d.FullName()), data)
			require.NoError(t, err)
			require.True(t, proto.Equal(m, got))
			require.Equal(t, string(d.FullName()), TypeOf(got))

			// Fold knows it too: a new event in events.proto needs a case
			// in Case.apply, and this test says so.
			c := &Case{ID: caseID}
			require.True(t, c.apply(Event{Message: got}), "Case.apply does not handle %s", d.FullName())
		})
	}
}

func TestDecodeRefusesWhatIsNoCaseEvent(t *testing.T) {
	for _, name := range []string{
		"",
		"CaseRegistered",
		"kontakt.case.v1.CaseEscalated",
		"kontakt.case.v1.ContactDetails",
		"kontakt.case.v2.CaseRegistered",
		"other.v1.CaseRegistered",
		"kontakt.case.v1.CaseRegistered.",
		"$stream-deleted",
	} {
		t.Run(name, func(t *testing.T) {
			m, err := Decode(name, nil)
			require.ErrorIs(t, err, ErrUnknownEvent)
			require.Nil(t, m)
		})
	}
	t.Run("garbage is not an unknown type", func(t *testing.T) {
		_, err := Decode(TypeOf(&casev1.CaseRouted{}), []byte{0xff, 0xff, 0xff})
		require.Error(t, err)
		require.NotErrorIs(t, err, ErrUnknownEvent)
	})
}

func TestDecodedEventsFoldLikeTheOriginals(t *testing.T) {
	at := timestamppb.New(t0())
	originals := []proto.Message{
		registered(),
		&casev1.CaseRouted{CaseId: caseID, Queue: "kontaktcenter", Rule: "r", RoutedAt: at},
		&casev1.CaseAssigned{CaseId: caseID, Assignee: "anna", AssignedAt: at},
		&casev1.CaseClosed{CaseId: caseID, ClosedBy: "anna", Resolution: casev1.Resolution_RESOLUTION_DUPLICATE, ClosedAt: at},
	}
	var plain, decoded []Event
	for i, m := range originals {
		plain = append(plain, Event{Type: TypeOf(m), Message: m, Revision: uint64(i + 1)})
		data, err := proto.Marshal(m)
		require.NoError(t, err)
		d, err := Decode(TypeOf(m), data)
		require.NoError(t, err)
		decoded = append(decoded, Event{Type: TypeOf(m), Message: d, Revision: uint64(i + 1)})
	}
	a, err := Fold(plain)
	require.NoError(t, err)
	b, err := Fold(decoded)
	require.NoError(t, err)
	require.Equal(t, a, b)
}
