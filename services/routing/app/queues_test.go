package app

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/services/routing/domain"
)

func TestQueuesVisible(t *testing.T) {
	q := NewQueues([]Queue{
		{Name: "kontaktcenter", Members: []string{"anna"}},
		{Name: "felanmalan"},
		{Name: "bygglov", Department: "stadsbyggnad"},
	}, nil)
	names := func(qs []Queue) []string {
		var out []string
		for _, x := range qs {
			out = append(out, x.Name)
		}
		return out
	}
	tests := []struct {
		name   string
		caller Caller
		want   []string
	}{
		{"member by configuration", Caller{Subject: "anna"}, []string{"kontaktcenter"}},
		{"member by token claim", Caller{Subject: "bo", Queues: []string{"felanmalan"}}, []string{"felanmalan"}},
		{"officer by department", Caller{Subject: "cia", Department: "stadsbyggnad"}, []string{"bygglov"}},
		{"supervisor sees all", Caller{Subject: "dan", Supervisor: true}, []string{"kontaktcenter", "felanmalan", "bygglov"}},
		{"stranger sees none", Caller{Subject: "eva"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, names(q.Visible(tt.caller)))
		})
	}
}

func TestQueuesReplace(t *testing.T) {
	rulesA := domain.DefaultRules("a", "a")
	q := NewQueues([]Queue{{Name: "a", Members: []string{"anna"}}}, rulesA)
	changed := q.Changed()
	require.Len(t, q.Visible(Caller{Subject: "anna"}), 1)
	require.Same(t, rulesA, q.Rules())
	select {
	case <-changed:
		t.Fatal("Changed closed before any replacement")
	default:
	}

	rulesB := domain.DefaultRules("b", "a", "b")
	q.Replace([]Queue{{Name: "a"}, {Name: "b"}}, rulesB)
	select {
	case <-changed:
	default:
		t.Fatal("Changed must close when the queues are replaced")
	}
	require.Empty(t, q.Visible(Caller{Subject: "anna"}), "a member removed by configuration no longer sees the queue")
	require.Equal(t, []string{"a", "b"}, q.Names())
	require.Same(t, rulesB, q.Rules(), "queues and rules are replaced together")
	require.NotEqual(t, changed, q.Changed(), "the next replacement closes a new channel")
}

func TestQueuesKeepsItsOwnCopy(t *testing.T) {
	members := []string{"anna"}
	in := []Queue{{Name: "a", Members: members}}
	q := NewQueues(in, nil)
	members[0] = "mallory"
	in[0].Name = "b"
	require.True(t, q.Known("a"))
	require.Len(t, q.Visible(Caller{Subject: "anna"}), 1)
	require.Empty(t, q.Visible(Caller{Subject: "mallory"}))
}
