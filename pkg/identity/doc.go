// Package identity parses and normalises the identifiers that citizens give
// a contact centre: Swedish personal identity and coordination numbers,
// telephone numbers and e-mail addresses.
//
// Normalisation serves two purposes. Validation tells a citizen or an agent
// at once that an identifier cannot be right, before a case is created with
// it. And the blind index, which lets agents find cases by identifier
// without the identifier being stored in plain text, hashes the normalised
// form: "19121212-1212", "121212+1212" and "191212121212" must give the same
// key, or a search misses cases. Every normaliser is therefore idempotent:
// normalising its own output returns that output unchanged.
//
// The identifiers are personal data, and errors end up in logs. No error
// returned by this package contains the input or any part of it; errors
// wrap a sentinel ([ErrInvalidPersonalNumber], [ErrInvalidPhone],
// [ErrInvalidEmail]) with a short, fixed reason. For the same reason a
// [PersonalNumber] does not print its number through fmt or log/slog.
package identity
