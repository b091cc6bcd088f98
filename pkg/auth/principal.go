package auth

import (
	"context"
	"slices"
	"time"
)

// Principal is the authenticated caller of a gRPC method. Handlers use it to
// decide what the caller may see (queue membership, department) and to
// write the "who" of audit records.
type Principal struct {
	// Subject is the token's "sub": a stable, opaque identifier of the
	// person or client. It may be logged; names and e-mail addresses are
	// deliberately not part of Principal.
	Subject string
	// Roles are the kontakt roles the token grants. Roles that kontakt does
	// not define are never present.
	Roles []Role
	// Queues are the queues the caller is a member of (claim "queues").
	Queues []string
	// Department is the caller's department (claim "department"), used to
	// route forwarded cases to the right case officers.
	Department string
	// Client identifies the e-service of a form-client: claim "client", or
	// the subject when that claim is absent. It is empty for principals
	// without the form-client role, so it cannot be confused with a person.
	Client string
	// ExpiresAt is when the token expires. Long-lived streams may use it to
	// end a stream whose credentials have run out.
	ExpiresAt time.Time
}

// HasRole reports whether the principal holds role r.
func (p Principal) HasRole(r Role) bool {
	return slices.Contains(p.Roles, r)
}

// HasAnyRole reports whether the principal holds at least one of roles. It
// is false for an empty list, so that a rule without roles grants nothing.
func (p Principal) HasAnyRole(roles ...Role) bool {
	return slices.ContainsFunc(roles, p.HasRole)
}

// InQueue reports whether the principal is a member of queue q.
func (p Principal) InQueue(q string) bool {
	return slices.Contains(p.Queues, q)
}

// clone returns a copy that shares no slices with p, so that a handler
// changing its copy cannot change what other code sees in the context.
func (p Principal) clone() Principal {
	p.Roles = slices.Clone(p.Roles)
	p.Queues = slices.Clone(p.Queues)
	return p
}

// principalKey is the context key for the Principal. It is unexported so
// that only this package can place a principal in a context.
type principalKey struct{}

// WithPrincipal returns a context carrying p. The interceptor calls it after
// authentication; tests call it to run handlers as a given caller.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p.clone())
}

// FromContext returns the authenticated caller. The boolean is false on
// public methods and outside a gRPC call, and a handler that needs a caller
// must then refuse rather than act anonymously.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	if !ok {
		return Principal{}, false
	}
	return p.clone(), true
}
