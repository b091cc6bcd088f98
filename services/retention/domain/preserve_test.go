package domain

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/caseaccess"
)

func TestWhoMayMarkAndWithdraw(t *testing.T) {
	routed := &casev1.CaseRouted{CaseId: caseID, Queue: "kontaktcenter"}
	assignedOlle := &casev1.CaseAssigned{CaseId: caseID, Assignee: "olle"}
	toSBF := &casev1.CaseForwarded{CaseId: caseID, ToQueue: "bygg", ToDepartment: "sbf"}
	mark := &casev1.CaseMarkedForPreservation{CaseId: caseID, MarkedBy: "olle", Reason: "av vikt"}

	olle := caseaccess.Caller{Subject: "olle", Officer: true}
	siv := caseaccess.Caller{Subject: "siv", Officer: true, Department: "sbf"}
	otto := caseaccess.Caller{Subject: "otto", Officer: true, Department: "miljo", Queues: []string{"kontaktcenter"}}
	anna := caseaccess.Caller{Subject: "anna", Agent: true, Queues: []string{"kontaktcenter"}}
	annaHolds := &casev1.CaseAssigned{CaseId: caseID, Assignee: "anna"}
	sara := caseaccess.Caller{Subject: "sara", Supervisor: true}
	dina := caseaccess.Caller{Subject: "dina", DPO: true}

	tests := []struct {
		name   string
		events []proto.Message
		by     caseaccess.Caller
		mark   error // nil: allowed
	}{
		{"supervisor on any case", []proto.Message{routed}, sara, nil},
		{"officer the case is assigned to", []proto.Message{routed, assignedOlle}, olle, nil},
		{"officer of the department it was forwarded to", []proto.Message{routed, toSBF}, siv, nil},
		{"officer in the queue but not responsible", []proto.Message{routed}, otto, ErrNotPermitted},
		{"officer of another case", []proto.Message{routed, toSBF}, olle, ErrNotPermitted},
		{"agent, even holding the case", []proto.Message{routed, annaHolds}, anna, ErrNotPermitted},
		{"data-protection officer", []proto.Message{routed}, dina, ErrNotPermitted},
	}
	for _, tt := range tests {
		t.Run("mark: "+tt.name, func(t *testing.T) {
			c := fold(t, append([]proto.Message{registration(synpunkt, phone)}, tt.events...)...)
			ev, err := c.MarkForPreservation(tt.by, "klagomål av vikt", registered.Add(time.Hour))
			if tt.mark != nil {
				require.ErrorIs(t, err, tt.mark)
				require.Nil(t, ev)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.by.Subject, ev.GetMarkedBy())
			require.Equal(t, "klagomål av vikt", ev.GetReason())
		})
	}

	withdraw := []struct {
		name   string
		events []proto.Message
		by     caseaccess.Caller
		want   error
	}{
		{"data-protection officer always", []proto.Message{routed, toSBF, mark}, dina, nil},
		{"supervisor", []proto.Message{routed, mark}, sara, nil},
		{"the officer who marked, still responsible", []proto.Message{routed, assignedOlle, mark}, olle, nil},
		{"the officer who marked, no longer responsible", []proto.Message{routed, assignedOlle, mark, toSBF}, olle, ErrNotPermitted},
		{"another responsible officer", []proto.Message{routed, toSBF, mark}, siv, ErrNotPermitted},
		{"agent", []proto.Message{routed, annaHolds, mark}, anna, ErrNotPermitted},
		{"an unmarked case", []proto.Message{routed}, dina, ErrPrecondition},
	}
	for _, tt := range withdraw {
		t.Run("withdraw: "+tt.name, func(t *testing.T) {
			c := fold(t, append([]proto.Message{registration(synpunkt, phone)}, tt.events...)...)
			ev, err := c.WithdrawPreservation(tt.by, "inte av vikt", registered.Add(2*time.Hour))
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.by.Subject, ev.GetWithdrawnBy())
			require.Equal(t, "olle", ev.GetMarkedBy())
		})
	}
}

func TestMarkRefusesACaseWithNothingLeft(t *testing.T) {
	sara := caseaccess.Caller{Subject: "sara", Supervisor: true}
	reg := registration(synpunkt, phone) // contact and free text sealed
	all := redacted(casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, casev1.DataClass_DATA_CLASS_FREE_TEXT)

	c := fold(t, reg, all)
	_, err := c.MarkForPreservation(sara, "av vikt", registered)
	require.ErrorIs(t, err, ErrPrecondition)
	require.Contains(t, err.Error(), "nothing is left to preserve")

	c = fold(t, reg, redacted(casev1.DataClass_DATA_CLASS_CONTACT_DETAILS))
	ev, err := c.MarkForPreservation(sara, "av vikt", registered)
	require.NoError(t, err, "the free text is still there")
	require.NotNil(t, ev)
	require.Equal(t, []Class{ClassFreeText}, c.LeftToPreserve())

	// Marked already: nothing to append, also after the redaction.
	c = fold(t, reg, &casev1.CaseMarkedForPreservation{CaseId: caseID}, all)
	ev, err = c.MarkForPreservation(sara, "av vikt", registered)
	require.NoError(t, err)
	require.Nil(t, ev)

	_, err = fold(t, reg).MarkForPreservation(sara, " ", registered)
	require.ErrorIs(t, err, ErrPrecondition)
}

func TestArchiveDue(t *testing.T) {
	vaxjo := builtin(t, "vaxjo")
	reg := registration(synpunkt, phone)
	marked := &casev1.CaseMarkedForPreservation{CaseId: caseID}

	_, ok := vaxjo.ArchiveDue(fold(t, reg))
	require.False(t, ok, "an unmarked complaint needs no package")

	d, ok := vaxjo.ArchiveDue(fold(t, reg, marked))
	require.True(t, ok)
	require.Equal(t, ActionArchive, d.Action)
	require.Equal(t, registered.AddDate(0, 6, 0), d.At, "written before the 6-month redaction")
	require.Equal(t, "ovriga-personuppgifter", d.Rule)

	_, ok = vaxjo.ArchiveDue(fold(t, reg, marked, &casev1.CaseArchived{CaseId: caseID, Sha256: "ab"}))
	require.False(t, ok, "a current package")
	d, ok = vaxjo.ArchiveDue(fold(t, reg, marked, &casev1.CaseArchived{CaseId: caseID, Sha256: "ab"}, &casev1.NoteAdded{CaseId: caseID, Text: sealed()}))
	require.True(t, ok, "content after the package: written again")
	require.Equal(t, registered.AddDate(0, 6, 0), d.At)

	_, ok = vaxjo.ArchiveDue(fold(t, reg, marked, &casev1.CasePreservationWithdrawn{CaseId: caseID}))
	require.False(t, ok, "withdrawn")
}
