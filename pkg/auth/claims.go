package auth

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Claim names shared by development and OIDC tokens. They are part of the
// contract with the identity provider's configuration, so they are fixed.
const (
	claimRoles      = "roles"
	claimQueues     = "queues"
	claimDepartment = "department"
	claimClient     = "client"
)

// newPrincipal assembles a Principal from verified claims. Keeping this in
// one place makes the dev and OIDC verifiers agree on what a token means,
// in particular on when Client is set.
func newPrincipal(subject string, roles []Role, queues []string, department, client string, expiresAt time.Time) Principal {
	p := Principal{
		Subject:    subject,
		Roles:      dedupe(roles),
		Queues:     dedupe(queues),
		Department: department,
		ExpiresAt:  expiresAt.UTC(),
	}
	if p.HasRole(RoleFormClient) {
		p.Client = client
		if p.Client == "" {
			p.Client = subject
		}
	}
	return p
}

// dedupe removes repeated values while keeping the first occurrence's order,
// so that a principal's lists read the same as the token's.
func dedupe[T comparable](in []T) []T {
	if len(in) == 0 {
		return nil
	}
	out := make([]T, 0, len(in))
	for _, v := range in {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// lookupClaim finds a claim by name. A literal top-level name wins, because
// namespaced claims such as "https://example.se/roles" contain dots; only
// when there is none is a dotted name read as a path into nested objects,
// as Keycloak's "realm_access.roles" requires.
func lookupClaim(claims map[string]json.RawMessage, name string) (json.RawMessage, bool, error) {
	if raw, ok := claims[name]; ok {
		return raw, true, nil
	}
	if !strings.Contains(name, ".") {
		return nil, false, nil
	}
	parts := strings.Split(name, ".")
	cur := claims
	for i, part := range parts {
		raw, ok := cur[part]
		if !ok {
			return nil, false, nil
		}
		if i == len(parts)-1 {
			return raw, true, nil
		}
		var next map[string]json.RawMessage
		if err := json.Unmarshal(raw, &next); err != nil || next == nil {
			return nil, false, fmt.Errorf("claim %q: %q is not an object", name, part)
		}
		cur = next
	}
	return nil, false, nil
}

// stringsClaim reads a claim that should hold strings. A single string is
// accepted as a list of one, because some identity providers collapse
// one-element arrays; any other type is an error so that a malformed token
// is refused rather than read as granting nothing.
func stringsClaim(claims map[string]json.RawMessage, name string) ([]string, error) {
	raw, ok, err := lookupClaim(claims, name)
	if err != nil || !ok {
		return nil, err
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err == nil {
		return list, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	return nil, fmt.Errorf("claim %q: not a string or an array of strings", name)
}

// stringClaim reads an optional string claim.
func stringClaim(claims map[string]json.RawMessage, name string) (string, error) {
	raw, ok := claims[name]
	if !ok {
		return "", nil
	}
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("claim %q: not a string", name)
	}
	if s == nil {
		return "", nil
	}
	return *s, nil
}
