package auth

import (
	"slices"
	"strings"
)

// Rule says who may call one gRPC method.
type Rule struct {
	// Public methods are called without a token; the interceptor does not
	// look at credentials at all, and no Principal is in the context.
	Public bool
	// Roles are the roles of which the caller needs at least one. A
	// non-public rule with no roles admits nobody, so that a rule that was
	// left empty by mistake fails closed.
	Roles []Role
}

// Policy maps a full gRPC method name ("/package.Service/Method") to its
// rule. The boolean is false for a method the policy does not know, which
// the interceptor refuses: access is denied by default.
//
// The production policy is built from the API's proto method options
// elsewhere; this package only consumes it.
type Policy interface {
	Rule(fullMethod string) (Rule, bool)
}

// StaticPolicy is a Policy written out in code, for tests and small tools.
// Keys are full method names; a key "/package.Service/*" covers every method
// of that service that has no exact entry.
type StaticPolicy map[string]Rule

// Rule implements Policy.
func (p StaticPolicy) Rule(fullMethod string) (Rule, bool) {
	if r, ok := p[fullMethod]; ok {
		return r, true
	}
	if svc, ok := serviceOf(fullMethod); ok {
		if r, ok := p[svc+"/*"]; ok {
			return r, true
		}
	}
	return Rule{}, false
}

// serviceOf returns "/package.Service" for "/package.Service/Method".
func serviceOf(fullMethod string) (string, bool) {
	i := strings.LastIndexByte(fullMethod, '/')
	if i <= 0 || i == len(fullMethod)-1 {
		return "", false
	}
	return fullMethod[:i], true
}

// publicServices are the infrastructure services that must work without a
// token: load balancers and orchestrators probe health, and grpcurl needs
// reflection to be usable at all.
func publicServices() []string {
	return []string{
		"/grpc.health.v1.Health",
		"/grpc.reflection.v1.ServerReflection",
		"/grpc.reflection.v1alpha.ServerReflection",
	}
}

// PublicMethods returns a Policy that answers from next and, for methods
// next does not know, makes every method of the gRPC health and reflection
// services public. next wins so that a deployment can still restrict, say,
// reflection by listing it. next may be nil.
func PublicMethods(next Policy) Policy {
	return publicMethods{next: next}
}

type publicMethods struct{ next Policy }

func (p publicMethods) Rule(fullMethod string) (Rule, bool) {
	if p.next != nil {
		if r, ok := p.next.Rule(fullMethod); ok {
			return r, true
		}
	}
	if svc, ok := serviceOf(fullMethod); ok && slices.Contains(publicServices(), svc) {
		return Rule{Public: true}, true
	}
	return Rule{}, false
}
