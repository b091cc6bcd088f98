package auth

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseRole(t *testing.T) {
	tests := []struct {
		in      string
		want    Role
		wantErr bool
	}{
		{in: "agent", want: RoleAgent},
		{in: "officer", want: RoleOfficer},
		{in: "supervisor", want: RoleSupervisor},
		{in: "analyst", want: RoleAnalyst},
		{in: "dpo", want: RoleDPO},
		{in: "form-client", want: RoleFormClient},
		{in: "", wantErr: true},
		{in: "Agent", wantErr: true},
		{in: " agent", wantErr: true},
		{in: "form_client", wantErr: true},
		{in: "admin", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRole(tt.in)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrUnknownRole)
				require.Contains(t, err.Error(), "valid roles: agent, officer, supervisor, analyst, dpo, form-client")
				require.Empty(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.in, got.String())
		})
	}
}

func TestParseRoleTruncatesLongInput(t *testing.T) {
	long := make([]byte, 1000)
	for i := range long {
		long[i] = 'x'
	}
	_, err := ParseRole(string(long))
	require.ErrorIs(t, err, ErrUnknownRole)
	require.Less(t, len(err.Error()), 200)
}

func TestParseRoles(t *testing.T) {
	got, err := ParseRoles([]string{"agent", "dpo"})
	require.NoError(t, err)
	require.Equal(t, []Role{RoleAgent, RoleDPO}, got)

	_, err = ParseRoles([]string{"agent", "root"})
	require.ErrorIs(t, err, ErrUnknownRole)
}

func TestAllRoles(t *testing.T) {
	all := AllRoles()
	require.Equal(t, []Role{"agent", "officer", "supervisor", "analyst", "dpo", "form-client"}, all)
	for _, r := range all {
		require.True(t, r.Valid(), r)
	}
	all[0] = "root"
	require.Equal(t, RoleAgent, AllRoles()[0], "AllRoles must return a fresh slice")
}
