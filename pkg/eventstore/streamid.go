package eventstore

import "fmt"

// MaxStreamIDLen bounds a stream id; case ids are UUIDs.
const MaxStreamIDLen = 128

// ValidateStreamID accepts 1 to MaxStreamIDLen characters of
// [A-Za-z0-9_-]: one NATS subject token without wildcards or separators,
// and a stream name any backend can hold, so that ids move between the
// backends unchanged. Every backend refuses other ids with ErrInvalid.
func ValidateStreamID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty stream id", ErrInvalid)
	}
	if len(id) > MaxStreamIDLen {
		return fmt.Errorf("%w: stream id longer than %d characters", ErrInvalid, MaxStreamIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			// The id came from somewhere we do not trust to hold no
			// personal data; the error must not carry it into a log.
			return fmt.Errorf("%w: stream id may only contain A-Z, a-z, 0-9, '_' and '-'", ErrInvalid)
		}
	}
	return nil
}
