package domain

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// TestRandomCommandSequencesKeepTheCaseValid gives random commands, with
// random arguments, by random actors, and mixes in retention's events and
// events this version does not know. Whatever is accepted is appended
// (through Decode, like a store would hand it back) and the stream folded
// again; the folded case must always be valid, and what was accepted must
// follow the rules.
func TestRandomCommandSequencesKeepTheCaseValid(t *testing.T) {
	actors := []Actor{
		sam(), anna(), bo(), eve(), olle(), otto(), nobody(),
		{Subject: "oskar", Officer: true},
		{Subject: "x", Agent: true, Officer: true, Queues: []string{"felanmalan"}, Department: "stadsbyggnad"},
		{Queues: []string{"kontaktcenter"}, Agent: true},
	}
	queues := []string{"kontaktcenter", "felanmalan", "bygglov", "miljo", ""}
	departments := []string{"stadsbyggnad", "miljo", ""}
	people := []string{"anna", "bo", "eve", "olle", "otto", "x", ""}
	resolutions := []casev1.Resolution{
		casev1.Resolution_RESOLUTION_UNSPECIFIED,
		casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY,
		casev1.Resolution_RESOLUTION_FORWARDED,
		casev1.Resolution_RESOLUTION_DUPLICATE,
		casev1.Resolution_RESOLUTION_NO_ACTION,
	}
	maybeSealed := func(rt *rapid.T, label string) *casev1.SealedPersonalData {
		if rapid.IntRange(0, 5).Draw(rt, label) == 0 {
			return nil
		}
		return sealedText()
	}

	rapid.Check(t, func(rt *rapid.T) {
		var events []Event
		var rev uint64
		clock := t0()
		appendEvent := func(m proto.Message) {
			data, err := proto.Marshal(m)
			require.NoError(rt, err)
			decoded, err := Decode(TypeOf(m), data)
			require.NoError(rt, err)
			rev += rapid.Uint64Range(1, 5).Draw(rt, "revision step")
			events = append(events, Event{Type: TypeOf(m), Message: decoded, Revision: rev, Recorded: clock})
		}
		appendEvent(registered())
		incremental, err := Fold(events)
		require.NoError(rt, err)

		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		for range steps {
			pre, err := Fold(events)
			require.NoError(rt, err)
			snapshot := clone(pre)
			clock = clock.Add(time.Duration(rapid.IntRange(1, 600).Draw(rt, "minutes")) * time.Minute)
			a := rapid.SampledFrom(actors).Draw(rt, "actor")

			var ev proto.Message
			command := rapid.SampledFrom([]string{
				"route", "claim", "release", "assign", "move", "note", "forward",
				"answer", "close", "reopen", "redact", "hold", "unknown",
			}).Draw(rt, "command")
			switch command {
			case "route":
				ev, err = pre.Route(rapid.SampledFrom(queues).Draw(rt, "queue"), "r", "v1", clock)
			case "claim":
				ev, err = pre.Claim(a, clock)
			case "release":
				ev, err = pre.Release(a, clock)
			case "assign":
				ev, err = pre.Assign(a, rapid.SampledFrom(people).Draw(rt, "assignee"), clock)
			case "move":
				ev, err = pre.Move(a, rapid.SampledFrom(queues).Draw(rt, "queue"), clock)
			case "note":
				ev, err = pre.AddNote(a, "n", maybeSealed(rt, "note"), clock)
			case "forward":
				ev, err = pre.Forward(a,
					rapid.SampledFrom(queues).Draw(rt, "queue"),
					rapid.SampledFrom(departments).Draw(rt, "department"),
					rapid.SampledFrom(people).Draw(rt, "officer"),
					maybeSealed(rt, "comment"), clock)
			case "answer":
				ev, err = pre.Answer(a, maybeSealed(rt, "answer"), casev1.AnswerDelivery_ANSWER_DELIVERY_UNSPECIFIED, clock)
			case "close":
				ev, err = pre.Close(a, rapid.SampledFrom(resolutions).Draw(rt, "resolution"), rapid.Bool().Draw(rt, "fcr"), clock)
			case "reopen":
				ev, err = pre.Reopen(a, clock)
			case "redact":
				// Retention's events are facts, not commands.
				ev = &casev1.PersonalDataRedacted{CaseId: caseID, DataClasses: []casev1.DataClass{
					casev1.DataClass(rapid.IntRange(1, 5).Draw(rt, "class")),
				}}
			case "hold":
				id := rapid.SampledFrom([]string{"h1", "h2"}).Draw(rt, "hold")
				if rapid.Bool().Draw(rt, "place") {
					ev = &casev1.HoldPlaced{CaseId: caseID, HoldId: id}
				} else {
					ev = &casev1.HoldReleased{CaseId: caseID, HoldId: id}
				}
			case "unknown":
				rev += 1
				events = append(events, Event{Type: "kontakt.case.v1.CaseEscalated", Revision: rev, Recorded: clock})
			}
			require.Equal(rt, snapshot, pre, "a command never changes the case")

			if err != nil {
				require.Nil(rt, ev)
				requireClassified(rt, err)
				continue
			}
			if ev != nil {
				requireAllowed(rt, pre, a, command, ev)
				appendEvent(ev)
			}

			post, err := Fold(events)
			require.NoError(rt, err)
			require.NoError(rt, incremental.Apply(events[len(events)-1]))
			require.Equal(rt, post, incremental, "applying one event at a time folds like Fold")
			requireValid(rt, post, events)
		}
	})
}

// requireClassified checks that a refusal wraps exactly one sentinel.
func requireClassified(t tb, err error) {
	t.Helper()
	var kinds []error
	for _, s := range sentinels() {
		if errors.Is(err, s) {
			kinds = append(kinds, s)
		}
	}
	require.Len(t, kinds, 1, "refusal %q must wrap exactly one sentinel", err)
}

// requireAllowed checks an accepted command against the rules, stated
// again from the outside rather than through the code that decided.
func requireAllowed(t tb, pre *Case, a Actor, command string, ev proto.Message) {
	t.Helper()
	require.Equal(t, pre.ID, ev.(caseEvent).GetCaseId())
	require.False(t, pre.Deleted, "a deleted case accepts nothing")
	if command == "redact" || command == "hold" {
		return
	}
	if command == "route" {
		require.False(t, pre.Routed, "a case is routed once")
		return
	}
	require.True(t, pre.Routed, "only a routed case is worked")
	require.NotEmpty(t, a.Subject)
	require.True(t, a.Agent || a.Officer || a.Supervisor, "only working roles act")
	if !a.Supervisor {
		inQueue := slices.Contains(a.Queues, pre.Queue)
		holds := pre.Assignee == a.Subject
		forwardedToMe := a.Officer && pre.Forwarded &&
			((pre.ForwardedToOfficer != "" && pre.ForwardedToOfficer == a.Subject) ||
				(pre.ForwardedToDepartment != "" && pre.ForwardedToDepartment == a.Department))
		require.True(t, inQueue || holds || forwardedToMe, "%s by %s on a case in %q", command, a.Subject, pre.Queue)
	}
	closed := pre.Status == casev1.CaseStatus_CASE_STATUS_CLOSED
	switch m := ev.(type) {
	case *casev1.NoteAdded:
	case *casev1.CaseReopened:
		require.True(t, closed, "only a closed case is reopened")
	default:
		require.False(t, closed, "a closed case accepts only notes and reopening, not %s", TypeOf(m))
	}
	switch m := ev.(type) {
	case *casev1.CaseAssigned:
		if command == "claim" {
			require.Empty(t, pre.Assignee, "a claim never takes a held case")
			require.Equal(t, a.Subject, m.GetAssignee())
		} else {
			require.True(t, a.Supervisor)
			require.NotEqual(t, pre.Assignee, m.GetAssignee())
		}
	case *casev1.CaseMoved:
		require.True(t, a.Supervisor)
	case *casev1.CaseReleased:
		require.NotEmpty(t, pre.Assignee)
		require.True(t, a.Supervisor || pre.Assignee == a.Subject)
	case *casev1.CaseAnswered:
		require.True(t, a.Supervisor || pre.Assignee == a.Subject)
	case *casev1.CaseForwarded:
		require.True(t, m.GetToQueue() != "" || m.GetToOfficer() != "")
		require.True(t, pre.Assignee == "" || a.Supervisor || pre.Assignee == a.Subject)
	case *casev1.CaseClosed:
		require.NotEqual(t, casev1.Resolution_RESOLUTION_UNSPECIFIED, m.GetResolution())
		if pre.Assignee != "" {
			require.True(t, a.Supervisor || pre.Assignee == a.Subject)
		}
		if m.GetFirstContactResolution() {
			require.Zero(t, pre.Forwardings)
			require.Zero(t, pre.Reopenings)
		}
	}
}

// requireValid checks the folded case against its events.
func requireValid(t tb, c *Case, events []Event) {
	t.Helper()
	requireConsistent(t, c)
	var reopened, forwarded, routed int
	var firstAnswer time.Time
	for _, ev := range events {
		switch m := ev.Message.(type) {
		case *casev1.CaseReopened:
			reopened++
		case *casev1.CaseForwarded:
			forwarded++
		case *casev1.CaseRouted:
			routed++
		case *casev1.CaseAnswered:
			if firstAnswer.IsZero() {
				firstAnswer = m.GetAnsweredAt().AsTime()
			}
		}
	}
	require.Equal(t, reopened, c.Reopenings, "Reopenings counts CaseReopened")
	require.Equal(t, forwarded, c.Forwardings)
	require.LessOrEqual(t, routed, 1, "routed once")
	require.Equal(t, firstAnswer, c.FirstResponseAt)
	require.Equal(t, events[len(events)-1].Revision, c.Version, "Version is the last revision")
	if c.Status == casev1.CaseStatus_CASE_STATUS_CLOSED {
		require.NotEqual(t, casev1.Resolution_RESOLUTION_UNSPECIFIED, c.Resolution)
	}
}
