package auth

import (
	"fmt"
	"strings"
)

// Role is a kontakt role. Authorisation is by role only, so the set is
// closed: a token may carry other roles of the identity provider, but only
// these ever grant access.
type Role string

// The roles of the design brief. Their string values are what tokens carry
// and what the API's method options name, so they must never change.
const (
	// RoleAgent is a contact-centre agent who registers and works cases.
	RoleAgent Role = "agent"
	// RoleOfficer is a department's case officer (handläggare).
	RoleOfficer Role = "officer"
	// RoleSupervisor leads agents and manages queues.
	RoleSupervisor Role = "supervisor"
	// RoleAnalyst reads anonymised statistics only.
	RoleAnalyst Role = "analyst"
	// RoleDPO is the data-protection officer who answers data-subject
	// requests and manages retention.
	RoleDPO Role = "dpo"
	// RoleFormClient is a public e-service form that posts cases.
	RoleFormClient Role = "form-client"
)

// AllRoles returns every kontakt role in a stable order, for listings such
// as CLI help and error messages. It returns a new slice each time so that
// callers cannot change the set.
func AllRoles() []Role {
	return []Role{RoleAgent, RoleOfficer, RoleSupervisor, RoleAnalyst, RoleDPO, RoleFormClient}
}

// Valid reports whether r is one of the kontakt roles. Comparison is exact
// (case-sensitive), as it is for every other claim value in a token.
func (r Role) Valid() bool {
	switch r {
	case RoleAgent, RoleOfficer, RoleSupervisor, RoleAnalyst, RoleDPO, RoleFormClient:
		return true
	}
	return false
}

// String returns the role's name as it appears in tokens.
func (r Role) String() string { return string(r) }

// ParseRole converts a role name from a token, flag or configuration file
// into a Role. It fails with ErrUnknownRole for anything else, naming the
// valid roles so that a person typing a CLI flag can correct it.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !r.Valid() {
		return "", fmt.Errorf("%w %q (valid roles: %s)", ErrUnknownRole, truncate(s, 64), joinRoles(AllRoles()))
	}
	return r, nil
}

// ParseRoles converts several role names, failing on the first unknown one.
func ParseRoles(names []string) ([]Role, error) {
	roles := make([]Role, 0, len(names))
	for _, n := range names {
		r, err := ParseRole(n)
		if err != nil {
			return nil, err
		}
		roles = append(roles, r)
	}
	return roles, nil
}

// joinRoles renders roles as "a, b, c" for messages.
func joinRoles(roles []Role) string {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}

// truncate bounds a caller-supplied string before it goes into an error
// message, so that a hostile token cannot flood the logs.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
