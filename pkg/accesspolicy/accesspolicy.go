// Package accesspolicy reads the roles each RPC allows from the API's own
// contract: the kontakt.auth.v1.access method option in proto/. Keeping the
// policy in the .proto files means it lives in one place, next to the RPC it
// guards, and shows up in the API reference; this package turns it into the
// auth.Policy the interceptor enforces.
package accesspolicy

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	authv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/auth/v1"
	"github.com/kontakt-se/kontakt/pkg/auth"
)

// ErrUndeclared means an RPC has no access option. Start-up fails on it so
// that a new RPC cannot go live without someone deciding who may call it.
var ErrUndeclared = errors.New("accesspolicy: RPC declares no access roles")

// roleOf maps the proto enum to the role names tokens carry.
func roleOf(r authv1.Role) (auth.Role, error) {
	switch r {
	case authv1.Role_ROLE_AGENT:
		return auth.RoleAgent, nil
	case authv1.Role_ROLE_OFFICER:
		return auth.RoleOfficer, nil
	case authv1.Role_ROLE_SUPERVISOR:
		return auth.RoleSupervisor, nil
	case authv1.Role_ROLE_ANALYST:
		return auth.RoleAnalyst, nil
	case authv1.Role_ROLE_DPO:
		return auth.RoleDPO, nil
	case authv1.Role_ROLE_FORM_CLIENT:
		return auth.RoleFormClient, nil
	default:
		return "", fmt.Errorf("accesspolicy: unknown role %v", r)
	}
}

// FromServices builds the policy for every method of the given services.
// Every method must carry the access option with at least one role.
func FromServices(services ...protoreflect.ServiceDescriptor) (auth.StaticPolicy, error) {
	policy := auth.StaticPolicy{}
	var errs []error
	for _, svc := range services {
		methods := svc.Methods()
		for i := 0; i < methods.Len(); i++ {
			m := methods.Get(i)
			full := fmt.Sprintf("/%s/%s", svc.FullName(), m.Name())
			rule, err := ruleOf(m)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", full, err))
				continue
			}
			policy[full] = rule
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return policy, nil
}

func ruleOf(m protoreflect.MethodDescriptor) (auth.Rule, error) {
	opts, ok := m.Options().(*descriptorpb.MethodOptions)
	if !ok || opts == nil || !proto.HasExtension(opts, authv1.E_Access) {
		return auth.Rule{}, ErrUndeclared
	}
	access, _ := proto.GetExtension(opts, authv1.E_Access).(*authv1.Access)
	if len(access.GetRoles()) == 0 {
		return auth.Rule{}, ErrUndeclared
	}
	var rule auth.Rule
	for _, r := range access.GetRoles() {
		role, err := roleOf(r)
		if err != nil {
			return auth.Rule{}, err
		}
		rule.Roles = append(rule.Roles, role)
	}
	return rule, nil
}

// PublicSubmissions returns the full names of the methods whose access
// option sets public_submission: the calls through which the public's
// submissions arrive, which are rate limited per credential and address.
func PublicSubmissions(services ...protoreflect.ServiceDescriptor) []string {
	var out []string
	for _, svc := range services {
		methods := svc.Methods()
		for i := 0; i < methods.Len(); i++ {
			m := methods.Get(i)
			opts, ok := m.Options().(*descriptorpb.MethodOptions)
			if !ok || opts == nil || !proto.HasExtension(opts, authv1.E_Access) {
				continue
			}
			if access, _ := proto.GetExtension(opts, authv1.E_Access).(*authv1.Access); access.GetPublicSubmission() {
				out = append(out, fmt.Sprintf("/%s/%s", svc.FullName(), m.Name()))
			}
		}
	}
	return out
}
