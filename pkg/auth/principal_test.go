package auth

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFromContextWithoutPrincipal(t *testing.T) {
	p, ok := FromContext(context.Background())
	require.False(t, ok)
	require.Equal(t, Principal{}, p)
}

func TestWithPrincipalRoundTripAndIsolation(t *testing.T) {
	in := Principal{
		Subject:    "u-123",
		Roles:      []Role{RoleAgent},
		Queues:     []string{"q1"},
		Department: "skola",
		ExpiresAt:  testNow(),
	}
	ctx := WithPrincipal(context.Background(), in)

	got, ok := FromContext(ctx)
	require.True(t, ok)
	require.Equal(t, in, got)

	// Neither the caller of WithPrincipal nor a reader may change what the
	// next reader sees.
	in.Roles[0] = RoleDPO
	got.Queues[0] = "other"
	again, ok := FromContext(ctx)
	require.True(t, ok)
	require.Equal(t, []Role{RoleAgent}, again.Roles)
	require.Equal(t, []string{"q1"}, again.Queues)
}

func TestPrincipalRoleChecks(t *testing.T) {
	p := Principal{Roles: []Role{RoleAgent, RoleOfficer}, Queues: []string{"q1"}}
	tests := []struct {
		name  string
		roles []Role
		want  bool
	}{
		{name: "one matches", roles: []Role{RoleSupervisor, RoleOfficer}, want: true},
		{name: "none matches", roles: []Role{RoleDPO, RoleAnalyst}, want: false},
		{name: "empty list grants nothing", roles: nil, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, p.HasAnyRole(tt.roles...))
		})
	}
	require.True(t, p.HasRole(RoleAgent))
	require.False(t, p.HasRole(RoleDPO))
	require.True(t, p.InQueue("q1"))
	require.False(t, p.InQueue("q2"))
	require.False(t, Principal{}.HasAnyRole(RoleAgent))
}

func TestNewPrincipalClient(t *testing.T) {
	exp := testNow().Add(time.Hour)
	tests := []struct {
		name       string
		roles      []Role
		client     string
		wantClient string
	}{
		{name: "form client with client claim", roles: []Role{RoleFormClient}, client: "e-tjanst-felanmalan", wantClient: "e-tjanst-felanmalan"},
		{name: "form client falls back to subject", roles: []Role{RoleFormClient}, wantClient: "sub-1"},
		{name: "person never gets a client", roles: []Role{RoleAgent}, client: "e-tjanst-felanmalan", wantClient: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPrincipal("sub-1", tt.roles, nil, "", tt.client, exp)
			require.Equal(t, tt.wantClient, p.Client)
			require.Equal(t, exp, p.ExpiresAt)
		})
	}
}

func TestNewPrincipalDedupes(t *testing.T) {
	p := newPrincipal("s", []Role{RoleAgent, RoleAgent, RoleDPO}, []string{"a", "b", "a"}, "", "", testNow())
	require.Equal(t, []Role{RoleAgent, RoleDPO}, p.Roles)
	require.Equal(t, []string{"a", "b"}, p.Queues)
}
