package domain

import (
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

const caseID = "c-0001"

func t0() time.Time { return time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC) }

// The cast of the tests. anna and bo work the contact centre's queue, eve
// the fault reports; olle is a case officer at stadsbyggnad, otto at
// miljö; sam supervises; nobody holds a queue but no role.
func sam() Actor  { return Actor{Subject: "sam", Supervisor: true} }
func anna() Actor { return Actor{Subject: "anna", Agent: true, Queues: []string{"kontaktcenter"}} }
func bo() Actor   { return Actor{Subject: "bo", Agent: true, Queues: []string{"kontaktcenter"}} }
func eve() Actor  { return Actor{Subject: "eve", Agent: true, Queues: []string{"felanmalan"}} }
func olle() Actor { return Actor{Subject: "olle", Officer: true, Department: "stadsbyggnad"} }
func otto() Actor { return Actor{Subject: "otto", Officer: true, Department: "miljo"} }
func nobody() Actor {
	return Actor{Subject: "nobody", Queues: []string{"kontaktcenter"}}
}

func sealedText() *casev1.SealedPersonalData {
	return &casev1.SealedPersonalData{KeyId: "key-1", Ciphertext: []byte{0x01, 0x02, 0x03}}
}

func registered() *casev1.CaseRegistered {
	return &casev1.CaseRegistered{
		CaseId:       caseID,
		CaseNumber:   "KC-2026-000001",
		Type:         casev1.CaseType_CASE_TYPE_FELANMALAN,
		Channel:      casev1.Channel_CHANNEL_PHONE,
		Category:     "Gatubelysning",
		RegisteredAt: timestamppb.New(t0()),
		RegisteredBy: "anna",
	}
}

// tb is what both *testing.T and *rapid.T offer to require.
type tb interface {
	require.TestingT
	Helper()
}

// stream is a case's events as a store would hand them back: revisions
// are increasing but not contiguous, as JetStream's stream sequences are.
type stream struct {
	t      *testing.T
	events []Event
	rev    uint64
}

func newStream(t *testing.T) *stream {
	t.Helper()
	s := &stream{t: t}
	return s.add(registered())
}

// add appends an event as it comes back from the store: encoded and
// decoded again, so the tests go through Decode like the app does.
func (s *stream) add(m proto.Message) *stream {
	s.t.Helper()
	data, err := proto.Marshal(m)
	require.NoError(s.t, err)
	decoded, err := Decode(TypeOf(m), data)
	require.NoError(s.t, err)
	s.rev += 7
	s.events = append(s.events, Event{
		Type:     TypeOf(m),
		Message:  decoded,
		Revision: s.rev,
		Recorded: t0().Add(time.Duration(len(s.events)) * time.Minute),
	})
	return s
}

// do folds the stream, gives a command that must succeed and appends its
// event.
func (s *stream) do(cmd func(c *Case) (proto.Message, error)) *stream {
	s.t.Helper()
	ev, err := cmd(s.fold())
	require.NoError(s.t, err)
	return s.add(ev)
}

func (s *stream) fold() *Case {
	s.t.Helper()
	c, err := Fold(s.events)
	require.NoError(s.t, err)
	return c
}

func now() time.Time { return t0().Add(time.Hour) }

func route(q string) func(c *Case) (proto.Message, error) {
	return func(c *Case) (proto.Message, error) { return c.Route(q, "test-rule", "v1", now()) }
}

func claim(a Actor) func(c *Case) (proto.Message, error) {
	return func(c *Case) (proto.Message, error) { return c.Claim(a, now()) }
}

func closeAs(a Actor) func(c *Case) (proto.Message, error) {
	return func(c *Case) (proto.Message, error) {
		return c.Close(a, casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY, false, now())
	}
}

func forward(a Actor, queue, dept, officer string) func(c *Case) (proto.Message, error) {
	return func(c *Case) (proto.Message, error) {
		return c.Forward(a, queue, dept, officer, sealedText(), now())
	}
}

// clone copies a case deeply enough to notice a command that changed it.
func clone(c *Case) *Case {
	d := *c
	d.Redacted = maps.Clone(c.Redacted)
	d.Holds = maps.Clone(c.Holds)
	return &d
}

// sentinels are the errors a refusal may wrap; exactly one must hold.
func sentinels() []error {
	return []error{ErrPrecondition, ErrNotPermitted, ErrAlreadyAssigned, ErrAlreadyRouted, ErrInvalidArgument}
}

// requireRefused checks that err wraps want and none of the other
// sentinels, so the edge maps it to one status code.
func requireRefused(t tb, err, want error) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, want)
	for _, other := range sentinels() {
		if other != want {
			require.False(t, errors.Is(err, other), "%v also wraps %v", err, other)
		}
	}
}

func sortedKeys[K ~int32 | ~string, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}
