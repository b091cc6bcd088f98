package domain

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// matrixStates builds one case in each state the commands care about.
func matrixStates(t *testing.T) map[string]*Case {
	queued := func() *stream { return newStream(t).do(route("kontaktcenter")) }
	return map[string]*Case{
		"registered":        newStream(t).fold(),
		"queued":            queued().fold(),
		"assigned":          queued().do(claim(anna())).fold(),
		"forwarded-dept":    queued().do(forward(anna(), "bygglov", "stadsbyggnad", "")).fold(),
		"forwarded-officer": queued().do(forward(anna(), "", "", "olle")).fold(),
		"forwarded-claimed": queued().do(forward(anna(), "bygglov", "stadsbyggnad", "")).do(claim(olle())).fold(),
		"closed":            queued().do(claim(anna())).do(closeAs(anna())).fold(),
		"redacted": queued().add(&casev1.PersonalDataRedacted{
			CaseId:      caseID,
			DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_FREE_TEXT, casev1.DataClass_DATA_CLASS_CONTACT_DETAILS},
			Reason:      "retention",
		}).fold(),
		"deleted": queued().add(&casev1.CaseDeleted{CaseId: caseID, CaseNumber: "KC-2026-000001"}).fold(),
	}
}

// TestCommandMatrix runs every command in every state by every role. Each
// row lists the outcome for the actors sam (supervisor), anna (agent in
// the case's queue, the assignee where the case is assigned), bo (agent in
// the same queue), eve (agent in another queue), olle (officer at
// stadsbyggnad, the department cases are forwarded to), otto (officer
// elsewhere) and nobody (in the queue but without a role):
// ok = the event, NP = ErrNotPermitted, PC = ErrPrecondition,
// AA = ErrAlreadyAssigned.
func TestCommandMatrix(t *testing.T) {
	actors := []Actor{sam(), anna(), bo(), eve(), olle(), otto(), nobody()}
	outcomes := map[string]error{"ok": nil, "NP": ErrNotPermitted, "PC": ErrPrecondition, "AA": ErrAlreadyAssigned, "IA": ErrInvalidArgument}
	type command struct {
		name  string
		event proto.Message
		run   func(c *Case, a Actor) (proto.Message, error)
		grid  map[string]string
	}
	supervisorOnly := func(registered, open, closed string) map[string]string {
		row := func(s string) string { return s + " NP NP NP NP NP NP" }
		return map[string]string{
			"registered": row(registered), "queued": row(open), "assigned": row(open),
			"forwarded-dept": row(open), "forwarded-officer": row(open), "forwarded-claimed": row(open),
			"closed": row(closed), "redacted": row(open), "deleted": row(closed),
		}
	}
	commands := []command{
		{"Claim", &casev1.CaseAssigned{}, func(c *Case, a Actor) (proto.Message, error) { return c.Claim(a, now()) }, map[string]string{
			//                   sam anna bo eve olle otto nobody
			"registered":        "PC NP NP NP NP NP NP",
			"queued":            "ok ok ok NP NP NP NP",
			"assigned":          "AA PC AA NP NP NP NP",
			"forwarded-dept":    "ok NP NP NP ok NP NP",
			"forwarded-officer": "ok ok ok NP ok NP NP",
			"forwarded-claimed": "AA NP NP NP PC NP NP",
			"closed":            "PC PC PC NP NP NP NP",
			"redacted":          "ok ok ok NP NP NP NP",
			"deleted":           "PC PC PC NP NP NP NP",
		}},
		{"Release", &casev1.CaseReleased{}, func(c *Case, a Actor) (proto.Message, error) { return c.Release(a, now()) }, map[string]string{
			"registered":        "PC NP NP NP NP NP NP",
			"queued":            "PC PC PC NP NP NP NP",
			"assigned":          "ok ok NP NP NP NP NP",
			"forwarded-dept":    "PC NP NP NP PC NP NP",
			"forwarded-officer": "PC PC PC NP PC NP NP",
			"forwarded-claimed": "ok NP NP NP ok NP NP",
			"closed":            "PC PC PC NP NP NP NP",
			"redacted":          "PC PC PC NP NP NP NP",
			"deleted":           "PC PC PC NP NP NP NP",
		}},
		{"Assign", &casev1.CaseAssigned{}, func(c *Case, a Actor) (proto.Message, error) { return c.Assign(a, "bo", now()) },
			supervisorOnly("PC", "ok", "PC")},
		{"Move", &casev1.CaseMoved{}, func(c *Case, a Actor) (proto.Message, error) { return c.Move(a, "felanmalan", now()) },
			supervisorOnly("PC", "ok", "PC")},
		{"AddNote", &casev1.NoteAdded{}, func(c *Case, a Actor) (proto.Message, error) {
			return c.AddNote(a, "n-1", sealedText(), now())
		}, map[string]string{
			"registered":        "PC NP NP NP NP NP NP",
			"queued":            "ok ok ok NP NP NP NP",
			"assigned":          "ok ok ok NP NP NP NP",
			"forwarded-dept":    "ok NP NP NP ok NP NP",
			"forwarded-officer": "ok ok ok NP ok NP NP",
			"forwarded-claimed": "ok NP NP NP ok NP NP",
			"closed":            "ok ok ok NP NP NP NP",
			"redacted":          "ok ok ok NP NP NP NP",
			"deleted":           "PC PC PC NP NP NP NP",
		}},
		{"Forward", &casev1.CaseForwarded{}, func(c *Case, a Actor) (proto.Message, error) {
			return c.Forward(a, "bygglov", "stadsbyggnad", "", sealedText(), now())
		}, map[string]string{
			"registered":        "PC NP NP NP NP NP NP",
			"queued":            "ok ok ok NP NP NP NP",
			"assigned":          "ok ok NP NP NP NP NP",
			"forwarded-dept":    "ok NP NP NP ok NP NP",
			"forwarded-officer": "ok ok ok NP ok NP NP",
			"forwarded-claimed": "ok NP NP NP ok NP NP",
			"closed":            "PC PC PC NP NP NP NP",
			"redacted":          "ok ok ok NP NP NP NP",
			"deleted":           "PC PC PC NP NP NP NP",
		}},
		{"Answer", &casev1.CaseAnswered{}, func(c *Case, a Actor) (proto.Message, error) {
			return c.Answer(a, sealedText(), casev1.AnswerDelivery_ANSWER_DELIVERY_UNSPECIFIED, now())
		}, map[string]string{
			"registered":        "PC NP NP NP NP NP NP",
			"queued":            "ok NP NP NP NP NP NP",
			"assigned":          "ok ok NP NP NP NP NP",
			"forwarded-dept":    "ok NP NP NP NP NP NP",
			"forwarded-officer": "ok NP NP NP NP NP NP",
			"forwarded-claimed": "ok NP NP NP ok NP NP",
			"closed":            "PC PC PC NP NP NP NP",
			"redacted":          "ok NP NP NP NP NP NP",
			"deleted":           "PC PC PC NP NP NP NP",
		}},
		{"Close", &casev1.CaseClosed{}, func(c *Case, a Actor) (proto.Message, error) {
			return c.Close(a, casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY, false, now())
		}, map[string]string{
			"registered":        "PC NP NP NP NP NP NP",
			"queued":            "ok NP NP NP NP NP NP",
			"assigned":          "ok ok NP NP NP NP NP",
			"forwarded-dept":    "ok NP NP NP ok NP NP",
			"forwarded-officer": "ok NP NP NP ok NP NP",
			"forwarded-claimed": "ok NP NP NP ok NP NP",
			"closed":            "PC PC PC NP NP NP NP",
			"redacted":          "ok NP NP NP NP NP NP",
			"deleted":           "PC PC PC NP NP NP NP",
		}},
		{"Reopen", &casev1.CaseReopened{}, func(c *Case, a Actor) (proto.Message, error) { return c.Reopen(a, now()) }, map[string]string{
			"registered":        "PC NP NP NP NP NP NP",
			"queued":            "PC PC PC NP NP NP NP",
			"assigned":          "PC PC PC NP NP NP NP",
			"forwarded-dept":    "PC NP NP NP PC NP NP",
			"forwarded-officer": "PC PC PC NP PC NP NP",
			"forwarded-claimed": "PC NP NP NP PC NP NP",
			"closed":            "ok ok ok NP NP NP NP",
			"redacted":          "PC PC PC NP NP NP NP",
			"deleted":           "PC PC PC NP NP NP NP",
		}},
	}

	states := matrixStates(t)
	for _, cmd := range commands {
		require.Len(t, cmd.grid, len(states), "%s: every state has a row", cmd.name)
		for state, row := range cmd.grid {
			cells := strings.Fields(row)
			require.Len(t, cells, len(actors), "%s %s", cmd.name, state)
			for i, a := range actors {
				want, ok := outcomes[cells[i]]
				require.True(t, ok, "bad cell %q", cells[i])
				t.Run(cmd.name+"/"+state+"/"+a.Subject, func(t *testing.T) {
					c, ok := states[state]
					require.True(t, ok, "unknown state %q", state)
					before := clone(c)
					ev, err := cmd.run(c, a)
					require.Equal(t, before, c, "a command never changes the case")
					if want != nil {
						requireRefused(t, err, want)
						require.Nil(t, ev)
						return
					}
					require.NoError(t, err)
					require.Equal(t, TypeOf(cmd.event), TypeOf(ev))
					require.Equal(t, caseID, ev.(caseEvent).GetCaseId())
					after := clone(c)
					require.NoError(t, after.Apply(Event{Type: TypeOf(ev), Message: ev, Revision: c.Version + 1}))
					requireConsistent(t, after)
				})
			}
		}
	}
}

// requireConsistent checks what must hold of every folded case.
func requireConsistent(t tb, c *Case) {
	t.Helper()
	require.Equal(t, c.Status == casev1.CaseStatus_CASE_STATUS_ASSIGNED, c.Assignee != "", "an assignee exactly when ASSIGNED: %+v", c)
	require.Equal(t, c.Routed, c.Status != casev1.CaseStatus_CASE_STATUS_REGISTERED, "REGISTERED exactly until routed")
	require.Equal(t, c.Status == casev1.CaseStatus_CASE_STATUS_CLOSED, !c.ClosedAt.IsZero(), "ClosedAt exactly when CLOSED")
	if c.Status == casev1.CaseStatus_CASE_STATUS_FORWARDED {
		require.True(t, c.Forwarded)
	}
	if c.Routed {
		require.NotEmpty(t, c.Queue)
	}
}

func TestClaim(t *testing.T) {
	t.Run("assigns the case to the claimant", func(t *testing.T) {
		s := newStream(t).do(route("kontaktcenter"))
		ev, err := s.fold().Claim(anna(), now())
		require.NoError(t, err)
		got := ev.(*casev1.CaseAssigned)
		require.Equal(t, "anna", got.GetAssignee())
		require.Equal(t, "anna", got.GetAssignedBy())
		require.Equal(t, now(), got.GetAssignedAt().AsTime())
		c := s.add(ev).fold()
		require.Equal(t, casev1.CaseStatus_CASE_STATUS_ASSIGNED, c.Status)
		require.Equal(t, "anna", c.Assignee)
	})
	t.Run("somebody else's case names the assignee", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(claim(anna())).fold()
		_, err := c.Claim(bo(), now())
		requireRefused(t, err, ErrAlreadyAssigned)
		require.EqualError(t, err, "already assigned to anna")
		var aa *AlreadyAssignedError
		require.ErrorAs(t, err, &aa)
		require.Equal(t, "anna", aa.Assignee)
	})
	t.Run("one's own case again", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(claim(anna())).fold()
		_, err := c.Claim(anna(), now())
		requireRefused(t, err, ErrPrecondition)
		require.Contains(t, err.Error(), "already assigned to you")
	})
	t.Run("closed", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(claim(anna())).do(closeAs(anna())).fold()
		_, err := c.Claim(anna(), now())
		requireRefused(t, err, ErrPrecondition)
		require.Contains(t, err.Error(), "a closed case cannot be claimed until reopened")
	})
	t.Run("not routed", func(t *testing.T) {
		_, err := newStream(t).fold().Claim(sam(), now())
		requireRefused(t, err, ErrPrecondition)
		require.Contains(t, err.Error(), "not routed yet")
	})
}

func TestRelease(t *testing.T) {
	t.Run("back to the queue", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(claim(anna())).
			do(func(c *Case) (proto.Message, error) { return c.Release(anna(), now()) }).fold()
		require.Equal(t, casev1.CaseStatus_CASE_STATUS_QUEUED, c.Status)
		require.Empty(t, c.Assignee)
	})
	t.Run("a forwarded case goes back to FORWARDED", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(forward(anna(), "bygglov", "stadsbyggnad", "")).do(claim(olle())).
			do(func(c *Case) (proto.Message, error) { return c.Release(olle(), now()) }).fold()
		require.Equal(t, casev1.CaseStatus_CASE_STATUS_FORWARDED, c.Status)
		require.Equal(t, "bygglov", c.Queue)
		require.Equal(t, "stadsbyggnad", c.ForwardedToDepartment)
	})
	t.Run("by a colleague", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(claim(anna())).fold()
		_, err := c.Release(bo(), now())
		requireRefused(t, err, ErrNotPermitted)
		require.Contains(t, err.Error(), "only the assignee or a supervisor may release")
	})
	t.Run("a supervisor releases anyone's case", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(claim(anna())).fold()
		ev, err := c.Release(sam(), now())
		require.NoError(t, err)
		require.Equal(t, "sam", ev.(*casev1.CaseReleased).GetReleasedBy())
	})
	t.Run("unassigned", func(t *testing.T) {
		_, err := newStream(t).do(route("kontaktcenter")).fold().Release(sam(), now())
		requireRefused(t, err, ErrPrecondition)
		require.Contains(t, err.Error(), "case is not assigned")
	})
}

func TestAssign(t *testing.T) {
	queued := func() *Case { return newStream(t).do(route("kontaktcenter")).fold() }
	t.Run("reassigns a held case", func(t *testing.T) {
		s := newStream(t).do(route("kontaktcenter")).do(claim(anna()))
		ev, err := s.fold().Assign(sam(), "bo", now())
		require.NoError(t, err)
		require.Equal(t, "sam", ev.(*casev1.CaseAssigned).GetAssignedBy())
		require.Equal(t, "bo", s.add(ev).fold().Assignee)
	})
	t.Run("only a supervisor", func(t *testing.T) {
		_, err := queued().Assign(anna(), "bo", now())
		requireRefused(t, err, ErrNotPermitted)
		require.Contains(t, err.Error(), "only a supervisor may assign a case")
	})
	t.Run("to whoever holds it", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(claim(anna())).fold()
		_, err := c.Assign(sam(), "anna", now())
		requireRefused(t, err, ErrPrecondition)
		require.Contains(t, err.Error(), "already assigned to anna")
	})
	t.Run("to nobody", func(t *testing.T) {
		_, err := queued().Assign(sam(), "  ", now())
		requireRefused(t, err, ErrInvalidArgument)
	})
	t.Run("the assignee outside the queue may work the case", func(t *testing.T) {
		s := newStream(t).do(route("kontaktcenter")).
			do(func(c *Case) (proto.Message, error) { return c.Assign(sam(), "eve", now()) })
		c := s.fold()
		_, err := c.Answer(eve(), sealedText(), casev1.AnswerDelivery_ANSWER_DELIVERY_UNSPECIFIED, now())
		require.NoError(t, err)
		_, err = c.Close(eve(), casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY, true, now())
		require.NoError(t, err)
		// Once released, eve is a stranger to kontaktcenter again.
		c = s.do(func(c *Case) (proto.Message, error) { return c.Release(eve(), now()) }).fold()
		_, err = c.AddNote(eve(), "n", sealedText(), now())
		requireRefused(t, err, ErrNotPermitted)
	})
}

func TestMove(t *testing.T) {
	t.Run("starts afresh in the new queue", func(t *testing.T) {
		s := newStream(t).do(route("kontaktcenter")).do(forward(anna(), "bygglov", "stadsbyggnad", "olle")).do(claim(olle()))
		ev, err := s.fold().Move(sam(), "felanmalan", now())
		require.NoError(t, err)
		moved := ev.(*casev1.CaseMoved)
		require.Equal(t, "bygglov", moved.GetFromQueue())
		require.Equal(t, "felanmalan", moved.GetToQueue())
		c := s.add(ev).fold()
		require.Equal(t, casev1.CaseStatus_CASE_STATUS_QUEUED, c.Status)
		require.Equal(t, "felanmalan", c.Queue)
		require.Empty(t, c.Assignee)
		require.False(t, c.Forwarded)
		require.Empty(t, c.ForwardedToDepartment)
		require.Empty(t, c.ForwardedToOfficer)
		_, err = c.AddNote(olle(), "n", sealedText(), now())
		requireRefused(t, err, ErrNotPermitted)
		_, err = c.Claim(eve(), now())
		require.NoError(t, err)
	})
	t.Run("to the queue it is in", func(t *testing.T) {
		_, err := newStream(t).do(route("kontaktcenter")).fold().Move(sam(), "kontaktcenter", now())
		requireRefused(t, err, ErrPrecondition)
		require.Contains(t, err.Error(), `already in queue "kontaktcenter"`)
	})
	t.Run("nowhere", func(t *testing.T) {
		_, err := newStream(t).do(route("kontaktcenter")).fold().Move(sam(), "", now())
		requireRefused(t, err, ErrInvalidArgument)
	})
	t.Run("only a supervisor", func(t *testing.T) {
		_, err := newStream(t).do(route("kontaktcenter")).fold().Move(anna(), "felanmalan", now())
		requireRefused(t, err, ErrNotPermitted)
		require.Contains(t, err.Error(), "only a supervisor may move a case")
	})
}

func TestAddNote(t *testing.T) {
	t.Run("on a closed case", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(claim(anna())).do(closeAs(anna())).fold()
		ev, err := c.AddNote(bo(), "n-7", sealedText(), now())
		require.NoError(t, err)
		note := ev.(*casev1.NoteAdded)
		require.Equal(t, "n-7", note.GetNoteId())
		require.Equal(t, "bo", note.GetAuthor())
		require.True(t, proto.Equal(sealedText(), note.GetText()))
	})
	c := newStream(t).do(route("kontaktcenter")).fold()
	tests := []struct {
		name, id string
		text     *casev1.SealedPersonalData
		reason   string
	}{
		{"without an id", "", sealedText(), "a note id is required"},
		{"without text", "n", nil, "the note text is required"},
		{"unsealed", "n", &casev1.SealedPersonalData{Ciphertext: []byte("x")}, "the note text is not sealed"},
		{"empty ciphertext", "n", &casev1.SealedPersonalData{KeyId: "k"}, "the note text is not sealed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.AddNote(anna(), tt.id, tt.text, now())
			requireRefused(t, err, ErrInvalidArgument)
			require.Contains(t, err.Error(), tt.reason)
		})
	}
}

func TestForward(t *testing.T) {
	t.Run("to a department's queue clears the assignee", func(t *testing.T) {
		s := newStream(t).do(route("kontaktcenter")).do(claim(anna()))
		ev, err := s.fold().Forward(anna(), "bygglov", "stadsbyggnad", "", sealedText(), now())
		require.NoError(t, err)
		fw := ev.(*casev1.CaseForwarded)
		require.Equal(t, "anna", fw.GetForwardedBy())
		c := s.add(ev).fold()
		require.Equal(t, casev1.CaseStatus_CASE_STATUS_FORWARDED, c.Status)
		require.Equal(t, "bygglov", c.Queue)
		require.Empty(t, c.Assignee)
		require.Equal(t, "stadsbyggnad", c.ForwardedToDepartment)
		require.Equal(t, 1, c.Forwardings)
		// anna handed it over; it is no longer hers to work.
		_, err = c.AddNote(anna(), "n", sealedText(), now())
		requireRefused(t, err, ErrNotPermitted)
	})
	t.Run("to an officer keeps the queue", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(forward(anna(), "", "", "olle")).fold()
		require.Equal(t, "kontaktcenter", c.Queue)
		require.Equal(t, "olle", c.ForwardedToOfficer)
		require.Equal(t, casev1.CaseStatus_CASE_STATUS_FORWARDED, c.Status)
	})
	t.Run("a new forwarding replaces the targets", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(forward(anna(), "bygglov", "stadsbyggnad", "olle")).
			do(forward(olle(), "miljo", "miljo", "")).fold()
		require.Equal(t, "miljo", c.Queue)
		require.Equal(t, "miljo", c.ForwardedToDepartment)
		require.Empty(t, c.ForwardedToOfficer)
		require.Equal(t, 2, c.Forwardings)
		_, err := c.Claim(otto(), now())
		require.NoError(t, err)
		_, err = c.Claim(olle(), now())
		requireRefused(t, err, ErrNotPermitted)
	})
	t.Run("a closed case", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(claim(anna())).do(closeAs(anna())).fold()
		_, err := c.Forward(anna(), "bygglov", "", "", nil, now())
		requireRefused(t, err, ErrPrecondition)
		require.Contains(t, err.Error(), "a closed case cannot be forwarded until reopened")
	})
	t.Run("somebody else's case", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(claim(anna())).fold()
		_, err := c.Forward(bo(), "bygglov", "", "", nil, now())
		requireRefused(t, err, ErrNotPermitted)
		require.Contains(t, err.Error(), "only the assignee or a supervisor may forward an assigned case")
	})
	c := newStream(t).do(route("kontaktcenter")).fold()
	args := []struct {
		name, queue, dept, officer string
		comment                    *casev1.SealedPersonalData
		want                       error
	}{
		{"nowhere", "", "", "", nil, ErrInvalidArgument},
		{"a department alone", "", "stadsbyggnad", "", nil, ErrInvalidArgument},
		{"blank", " ", "", "\t", nil, ErrInvalidArgument},
		{"an unsealed comment", "bygglov", "", "", &casev1.SealedPersonalData{}, ErrInvalidArgument},
		{"without a comment", "bygglov", "", "", nil, nil},
		{"to an officer", "", "", "olle", sealedText(), nil},
	}
	for _, tt := range args {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Forward(anna(), tt.queue, tt.dept, tt.officer, tt.comment, now())
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			requireRefused(t, err, tt.want)
		})
	}
}

func TestAnswer(t *testing.T) {
	t.Run("the first answer is the first response", func(t *testing.T) {
		s := newStream(t).do(route("kontaktcenter")).do(claim(anna()))
		first := now()
		ev, err := s.fold().Answer(anna(), sealedText(), casev1.AnswerDelivery_ANSWER_DELIVERY_UNSPECIFIED, first)
		require.NoError(t, err)
		s.add(ev)
		ev, err = s.fold().Answer(anna(), sealedText(), casev1.AnswerDelivery_ANSWER_DELIVERY_UNSPECIFIED, first.Add(time.Hour))
		require.NoError(t, err)
		c := s.add(ev).fold()
		require.Equal(t, first, c.FirstResponseAt)
		require.Equal(t, casev1.CaseStatus_CASE_STATUS_ASSIGNED, c.Status, "answering does not close")
	})
	t.Run("an unclaimed case", func(t *testing.T) {
		_, err := newStream(t).do(route("kontaktcenter")).fold().Answer(anna(), sealedText(), casev1.AnswerDelivery_ANSWER_DELIVERY_UNSPECIFIED, now())
		requireRefused(t, err, ErrNotPermitted)
		require.Contains(t, err.Error(), "only the assignee or a supervisor may answer")
	})
	t.Run("without an answer", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(claim(anna())).fold()
		_, err := c.Answer(anna(), nil, casev1.AnswerDelivery_ANSWER_DELIVERY_UNSPECIFIED, now())
		requireRefused(t, err, ErrInvalidArgument)
	})
	t.Run("a redacted case", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(claim(anna())).
			add(&casev1.PersonalDataRedacted{CaseId: caseID, DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_ANSWER}}).fold()
		require.True(t, c.IsRedacted())
		_, err := c.Answer(anna(), sealedText(), casev1.AnswerDelivery_ANSWER_DELIVERY_UNSPECIFIED, now())
		require.NoError(t, err)
	})
}

func TestClose(t *testing.T) {
	assigned := func() *stream { return newStream(t).do(route("kontaktcenter")).do(claim(anna())) }
	t.Run("records the closing", func(t *testing.T) {
		s := assigned()
		ev, err := s.fold().Close(anna(), casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY, true, now())
		require.NoError(t, err)
		c := s.add(ev).fold()
		require.Equal(t, casev1.CaseStatus_CASE_STATUS_CLOSED, c.Status)
		require.Empty(t, c.Assignee)
		require.Equal(t, "anna", c.ClosedBy)
		require.Equal(t, now(), c.ClosedAt)
		require.Equal(t, casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY, c.Resolution)
		require.True(t, c.FirstContactResolution)
	})
	t.Run("already closed", func(t *testing.T) {
		_, err := assigned().do(closeAs(anna())).fold().Close(sam(), casev1.Resolution_RESOLUTION_DUPLICATE, false, now())
		requireRefused(t, err, ErrPrecondition)
		require.Contains(t, err.Error(), "case is already closed")
	})
	t.Run("a redacted case", func(t *testing.T) {
		c := assigned().add(&casev1.PersonalDataRedacted{CaseId: caseID, DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_FREE_TEXT}}).fold()
		_, err := c.Close(anna(), casev1.Resolution_RESOLUTION_NO_ACTION, false, now())
		require.NoError(t, err)
	})
	t.Run("a colleague's case", func(t *testing.T) {
		_, err := assigned().fold().Close(bo(), casev1.Resolution_RESOLUTION_NO_ACTION, false, now())
		requireRefused(t, err, ErrNotPermitted)
	})
	t.Run("an officer's colleague's case", func(t *testing.T) {
		colleague := Actor{Subject: "olga", Officer: true, Department: "stadsbyggnad"}
		c := newStream(t).do(route("kontaktcenter")).do(forward(anna(), "bygglov", "stadsbyggnad", "")).do(claim(colleague)).fold()
		_, err := c.Close(olle(), casev1.Resolution_RESOLUTION_FORWARDED, false, now())
		requireRefused(t, err, ErrNotPermitted)
	})
	resolutions := []struct {
		name       string
		resolution casev1.Resolution
		fcr        bool
		want       error
	}{
		{"without a resolution", casev1.Resolution_RESOLUTION_UNSPECIFIED, false, ErrInvalidArgument},
		{"with an unknown resolution", casev1.Resolution(42), false, ErrInvalidArgument},
		{"forwarded at first contact", casev1.Resolution_RESOLUTION_FORWARDED, true, ErrInvalidArgument},
		{"duplicate", casev1.Resolution_RESOLUTION_DUPLICATE, false, nil},
		{"no action at first contact", casev1.Resolution_RESOLUTION_NO_ACTION, true, nil},
	}
	for _, tt := range resolutions {
		t.Run(tt.name, func(t *testing.T) {
			_, err := assigned().fold().Close(anna(), tt.resolution, tt.fcr, now())
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			requireRefused(t, err, tt.want)
		})
	}
	t.Run("a forwarded case was not resolved at first contact", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(forward(anna(), "", "", "olle")).fold()
		_, err := c.Close(olle(), casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY, true, now())
		requireRefused(t, err, ErrPrecondition)
		_, err = c.Close(olle(), casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY, false, now())
		require.NoError(t, err)
	})
	t.Run("a reopened case was not resolved at first contact", func(t *testing.T) {
		c := assigned().do(closeAs(anna())).do(func(c *Case) (proto.Message, error) { return c.Reopen(anna(), now()) }).do(claim(anna())).fold()
		_, err := c.Close(anna(), casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY, true, now())
		requireRefused(t, err, ErrPrecondition)
		require.Contains(t, err.Error(), "reopened")
	})
}

func TestReopen(t *testing.T) {
	reopen := func(a Actor) func(c *Case) (proto.Message, error) {
		return func(c *Case) (proto.Message, error) { return c.Reopen(a, now()) }
	}
	t.Run("back in the queue, unassigned", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).do(claim(anna())).do(closeAs(anna())).do(reopen(bo())).fold()
		require.Equal(t, casev1.CaseStatus_CASE_STATUS_QUEUED, c.Status)
		require.Empty(t, c.Assignee)
		require.Equal(t, 1, c.Reopenings)
		require.True(t, c.ClosedAt.IsZero())
		require.Empty(t, c.ClosedBy)
		require.Equal(t, casev1.Resolution_RESOLUTION_UNSPECIFIED, c.Resolution)
	})
	t.Run("a forwarded case returns to its department", func(t *testing.T) {
		s := newStream(t).do(route("kontaktcenter")).do(forward(anna(), "bygglov", "stadsbyggnad", "")).do(closeAs(olle()))
		c := s.do(reopen(olle())).fold()
		require.Equal(t, casev1.CaseStatus_CASE_STATUS_FORWARDED, c.Status)
		require.Equal(t, "bygglov", c.Queue)
		c = s.do(closeAs(olle())).do(reopen(sam())).fold()
		require.Equal(t, 2, c.Reopenings)
	})
	t.Run("an open case", func(t *testing.T) {
		_, err := newStream(t).do(route("kontaktcenter")).fold().Reopen(anna(), now())
		requireRefused(t, err, ErrPrecondition)
		require.Contains(t, err.Error(), "only a closed case can be reopened")
	})
}

func TestRoute(t *testing.T) {
	t.Run("once", func(t *testing.T) {
		s := newStream(t)
		ev, err := s.fold().Route("felanmalan", "gata", "2026-11-01", now())
		require.NoError(t, err)
		c := s.add(ev).fold()
		require.True(t, c.Routed)
		require.Equal(t, casev1.CaseStatus_CASE_STATUS_QUEUED, c.Status)
		require.Equal(t, "felanmalan", c.Queue)
		require.Equal(t, "gata", c.Rule)
		require.Equal(t, "2026-11-01", c.RulesVersion)
		_, err = c.Route("kontaktcenter", "default", "2026-11-01", now())
		requireRefused(t, err, ErrAlreadyRouted)
		require.Contains(t, err.Error(), `routed to queue "felanmalan" by rule "gata"`)
	})
	t.Run("by the rules", func(t *testing.T) {
		s := newStream(t)
		ev, err := s.fold().RouteBy(DefaultRules("kontaktcenter", "felanmalan"), now())
		require.NoError(t, err)
		routed := ev.(*casev1.CaseRouted)
		require.Equal(t, "felanmalan", routed.GetQueue())
		require.Equal(t, "felanmalan", routed.GetRule())
		require.Equal(t, BuiltinRulesVersion, routed.GetRulesVersion())
	})
	args := []struct{ name, queue, rule string }{
		{"without a queue", "", "gata"},
		{"with a blank queue", "  ", "gata"},
		{"without a rule", "felanmalan", ""},
	}
	for _, tt := range args {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newStream(t).fold().Route(tt.queue, tt.rule, "v", now())
			requireRefused(t, err, ErrInvalidArgument)
		})
	}
	t.Run("a deleted case", func(t *testing.T) {
		_, err := newStream(t).add(&casev1.CaseDeleted{CaseId: caseID}).fold().Route("q", "r", "v", now())
		requireRefused(t, err, ErrPrecondition)
	})
}

func TestAuthorisation(t *testing.T) {
	forwardedToOfficer := func() *Case {
		return newStream(t).do(route("kontaktcenter")).do(forward(anna(), "", "", "olle")).fold()
	}
	tests := []struct {
		name string
		c    *Case
		a    Actor
		want error
	}{
		{"an officer without a department is not every department's", forwardedToOfficer(), Actor{Subject: "oskar", Officer: true}, ErrNotPermitted},
		{"the named officer", forwardedToOfficer(), olle(), nil},
		{"an agent named as officer is not an officer", forwardedToOfficer(), Actor{Subject: "olle", Agent: true}, ErrNotPermitted},
		{"an officer in the queue", newStream(t).do(route("kontaktcenter")).fold(), Actor{Subject: "oskar", Officer: true, Queues: []string{"kontaktcenter"}}, nil},
		{"an actor without a subject", newStream(t).do(route("kontaktcenter")).fold(), Actor{Supervisor: true}, ErrNotPermitted},
		{"roles add up", newStream(t).do(route("kontaktcenter")).do(forward(anna(), "bygglov", "stadsbyggnad", "")).fold(),
			Actor{Subject: "x", Agent: true, Officer: true, Queues: []string{"felanmalan"}, Department: "stadsbyggnad"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.c.AddNote(tt.a, "n", sealedText(), now())
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			requireRefused(t, err, tt.want)
		})
	}
	t.Run("the reason names the queue rule", func(t *testing.T) {
		c := newStream(t).do(route("kontaktcenter")).fold()
		_, err := c.Claim(eve(), now())
		require.EqualError(t, err, "not permitted: the case is not in one of your queues")
		_, err = c.Claim(otto(), now())
		require.EqualError(t, err, "not permitted: the case is neither in one of your queues nor forwarded to you or your department")
		_, err = c.Claim(nobody(), now())
		require.EqualError(t, err, "not permitted: only agents, officers and supervisors work cases")
	})
}

func TestRefusalsAreClassified(t *testing.T) {
	for _, kind := range sentinels() {
		for _, other := range sentinels() {
			if kind != other {
				require.False(t, errors.Is(kind, other))
			}
		}
	}
}
