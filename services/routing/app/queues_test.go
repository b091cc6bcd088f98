package app

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestQueuesVisible(t *testing.T) {
	q := NewQueues([]Queue{
		{Name: "kontaktcenter", Members: []string{"anna"}},
		{Name: "felanmalan"},
		{Name: "bygglov", Department: "stadsbyggnad"},
	})
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
