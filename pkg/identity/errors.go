package identity

import (
	"errors"
	"fmt"
)

// Sentinel errors let callers tell the kinds of identifier apart with
// errors.Is. The returned errors wrap them with a fixed reason such as
// "check digit does not match", which helps a person correct the input but
// never repeats it, because the input is personal data and errors are logged.
var (
	// ErrInvalidPersonalNumber is returned, wrapped, by ParsePersonalNumber
	// for anything that is not a valid personnummer or samordningsnummer.
	ErrInvalidPersonalNumber = errors.New("invalid personal identity number")

	// ErrInvalidPhone is returned, wrapped, by NormalisePhone for anything
	// that cannot be read as a telephone number.
	ErrInvalidPhone = errors.New("invalid phone number")

	// ErrInvalidEmail is returned, wrapped, by NormaliseEmail for anything
	// that is not a single bare e-mail address.
	ErrInvalidEmail = errors.New("invalid e-mail address")
)

// invalid wraps sentinel with a reason. Reasons are constant strings chosen
// by this package, never derived from the input, so the result is safe to
// log.
func invalid(sentinel error, reason string) error {
	return fmt.Errorf("%w: %s", sentinel, reason)
}
