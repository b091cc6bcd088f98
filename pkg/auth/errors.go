package auth

import "errors"

// Sentinel errors let callers and tests tell the kinds of failure apart with
// errors.Is, while the interceptor maps all of them to a generic gRPC status
// so that a client never learns why its token was refused.
var (
	// ErrInvalidToken is returned, wrapped, for every token that does not
	// pass verification: bad signature, algorithm, issuer, audience, claims
	// or expiry.
	ErrInvalidToken = errors.New("invalid token")

	// ErrTokenExpired is returned together with ErrInvalidToken when the
	// token's lifetime has passed, so that logs can tell stale tokens from
	// forged ones.
	ErrTokenExpired = errors.New("token expired")

	// ErrUnknownRole is returned by ParseRole, and wrapped into
	// ErrInvalidToken by the development verifier, for a role name that
	// kontakt does not define.
	ErrUnknownRole = errors.New("unknown role")

	// ErrMissingToken is returned when a call carries no usable
	// "authorization: Bearer <token>" metadata.
	ErrMissingToken = errors.New("missing bearer token")

	// ErrInvalidDevKey is returned when the development signing key file
	// exists but cannot be used, so that an operator fixes or removes it
	// instead of the process silently replacing it.
	ErrInvalidDevKey = errors.New("invalid development signing key")

	// ErrInvalidConfig is returned by NewOIDCVerifier for a configuration
	// that would weaken verification or cannot work.
	ErrInvalidConfig = errors.New("invalid auth configuration")
)
