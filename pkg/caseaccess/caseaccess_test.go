package caseaccess_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/caseaccess"
)

func fold(events ...proto.Message) caseaccess.Facts {
	var f caseaccess.Facts
	for _, e := range events {
		f.Apply(e)
	}
	return f
}

func TestApply(t *testing.T) {
	tests := []struct {
		name   string
		events []proto.Message
		want   caseaccess.Facts
	}{
		{"registered only", []proto.Message{&casev1.CaseRegistered{}}, caseaccess.Facts{}},
		{"routed", []proto.Message{&casev1.CaseRouted{Queue: "kc"}}, caseaccess.Facts{Queue: "kc"}},
		{"claimed", []proto.Message{&casev1.CaseRouted{Queue: "kc"}, &casev1.CaseAssigned{Assignee: "anna"}}, caseaccess.Facts{Queue: "kc", Assignee: "anna"}},
		{"released", []proto.Message{&casev1.CaseRouted{Queue: "kc"}, &casev1.CaseAssigned{Assignee: "anna"}, &casev1.CaseReleased{}}, caseaccess.Facts{Queue: "kc"}},
		{"forwarded to a queue and department", []proto.Message{&casev1.CaseRouted{Queue: "kc"}, &casev1.CaseAssigned{Assignee: "anna"},
			&casev1.CaseForwarded{ToQueue: "bygg", ToDepartment: "sbf"}}, caseaccess.Facts{Queue: "bygg", ForwardedToDepartment: "sbf"}},
		{"forwarded to an officer stays in its queue", []proto.Message{&casev1.CaseRouted{Queue: "kc"}, &casev1.CaseForwarded{ToOfficer: "olle"}},
			caseaccess.Facts{Queue: "kc", ForwardedToOfficer: "olle"}},
		{"moved clears the forwarding", []proto.Message{&casev1.CaseRouted{Queue: "kc"}, &casev1.CaseForwarded{ToOfficer: "olle", ToDepartment: "sbf"},
			&casev1.CaseMoved{ToQueue: "gata"}}, caseaccess.Facts{Queue: "gata"}},
		{"closed has no assignee", []proto.Message{&casev1.CaseRouted{Queue: "kc"}, &casev1.CaseAssigned{Assignee: "anna"}, &casev1.CaseClosed{}},
			caseaccess.Facts{Queue: "kc"}},
		{"retention events change nothing", []proto.Message{&casev1.CaseRouted{Queue: "kc"}, &casev1.CaseMarkedForPreservation{},
			&casev1.CasePreservationWithdrawn{}, &casev1.HoldPlaced{}}, caseaccess.Facts{Queue: "kc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, fold(tt.events...))
		})
	}
}

func TestRule(t *testing.T) {
	inQueue := caseaccess.Facts{Queue: "kc"}
	held := caseaccess.Facts{Queue: "kc", Assignee: "anna"}
	toOlle := caseaccess.Facts{Queue: "bygg", ForwardedToOfficer: "olle"}
	toSBF := caseaccess.Facts{Queue: "bygg", ForwardedToDepartment: "sbf"}
	agent := caseaccess.Caller{Subject: "anna", Agent: true, Queues: []string{"kc"}}
	stranger := caseaccess.Caller{Subject: "bert", Agent: true}
	olle := caseaccess.Caller{Subject: "olle", Officer: true}
	sbfOfficer := caseaccess.Caller{Subject: "siv", Officer: true, Department: "sbf"}
	sbfAgent := caseaccess.Caller{Subject: "sam", Agent: true, Department: "sbf"}
	noDept := caseaccess.Caller{Subject: "nils", Officer: true}
	sup := caseaccess.Caller{Subject: "sara", Supervisor: true}
	dpo := caseaccess.Caller{Subject: "dina", DPO: true}
	analyst := caseaccess.Caller{Subject: "alva"}
	noSubject := caseaccess.Caller{Agent: true, Queues: []string{"kc"}}

	tests := []struct {
		name                    string
		f                       caseaccess.Facts
		c                       caseaccess.Caller
		work, read, responsible bool
	}{
		{"queue member", inQueue, agent, true, true, false},
		{"assignee", held, agent, true, true, true},
		{"assignee outside the queue", held, caseaccess.Caller{Subject: "anna", Officer: true}, true, true, true},
		{"stranger", held, stranger, false, false, false},
		{"officer by name", toOlle, olle, true, true, true},
		{"officer of the department", toSBF, sbfOfficer, true, true, true},
		{"agent of the department is no officer", toSBF, sbfAgent, false, false, false},
		{"officer without a department", caseaccess.Facts{Queue: "x"}, noDept, false, false, false},
		{"other officer", toOlle, sbfOfficer, false, false, false},
		{"supervisor", held, sup, true, true, false},
		{"dpo reads only", held, dpo, false, true, false},
		{"analyst", held, analyst, false, false, false},
		{"no subject", inQueue, noSubject, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.work, tt.f.MayWork(tt.c), "MayWork")
			require.Equal(t, tt.read, tt.f.MayRead(tt.c), "MayRead")
			require.Equal(t, tt.responsible, tt.f.Responsible(tt.c), "Responsible")
		})
	}
}
