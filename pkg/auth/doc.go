// Package auth authenticates and authorises every gRPC call to kontakt.
//
// A call carries an OAuth 2.0 bearer token in the "authorization" metadata
// entry. A [Verifier] turns the token into a [Principal]: in production an
// [OIDCVerifier] checks tokens issued by the municipality's identity provider
// against its JWKS; in development a [DevKey] both mints and checks tokens
// signed with a local Ed25519 key, so that nobody needs an identity provider
// to try the system. The [Interceptor] then asks a [Policy] which roles may
// call the method, and places the Principal in the call's context where
// handlers find it with [FromContext].
//
// The package denies by default: a method the policy does not know is
// refused, so a new RPC cannot be exposed by forgetting to describe it.
// Neither tokens nor personal data are ever logged; the subject identifier
// is, because audit and operations need to know who was refused.
package auth
