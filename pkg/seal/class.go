package seal

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// Class is a data class of a case: a group of personal data that the
// retention plan keeps for its own period. Each class of each case has its
// own data key, so redacting one class destroys only that key. The values
// are short lowercase tokens because they appear in key ids (and so in KV
// keys and NATS subjects).
type Class string

// The data classes, matching kontakt.case.v1.DataClass.
const (
	// ClassContact is name, e-mail, phone number and postal address.
	ClassContact Class = "contact"
	// ClassIdentity is the personnummer or samordningsnummer.
	ClassIdentity Class = "identity"
	// ClassFreeText is what the citizen wrote, including a fault report's
	// exact location.
	ClassFreeText Class = "freetext"
	// ClassAttachments is the attachments' names.
	ClassAttachments Class = "attachments"
	// ClassAnswer is the agent's answer, notes and forwarding comments.
	ClassAnswer Class = "answer"
)

// Classes returns every data class, in the order of the proto enum. Destroy
// without classes destroys the keys of all of them.
func Classes() []Class {
	return []Class{ClassContact, ClassIdentity, ClassFreeText, ClassAttachments, ClassAnswer}
}

// Valid reports whether c is one of the defined classes. Unknown classes
// are refused everywhere, because a misspelt class would silently get a key
// of its own that redaction of the real class would not destroy.
func (c Class) Valid() bool {
	switch c {
	case ClassContact, ClassIdentity, ClassFreeText, ClassAttachments, ClassAnswer:
		return true
	}
	return false
}

// ClassFromProto converts the API's data class to a Class. It fails for
// DATA_CLASS_UNSPECIFIED and unknown values, since sealing or redacting
// "no class" is always a bug in the caller.
func ClassFromProto(dc casev1.DataClass) (Class, error) {
	switch dc {
	case casev1.DataClass_DATA_CLASS_CONTACT_DETAILS:
		return ClassContact, nil
	case casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER:
		return ClassIdentity, nil
	case casev1.DataClass_DATA_CLASS_FREE_TEXT:
		return ClassFreeText, nil
	case casev1.DataClass_DATA_CLASS_ATTACHMENTS:
		return ClassAttachments, nil
	case casev1.DataClass_DATA_CLASS_ANSWER:
		return ClassAnswer, nil
	}
	return "", fmt.Errorf("%w: proto data class %s", ErrInvalidClass, dc)
}

// ToProto converts c to the API's data class, for events such as
// PersonalDataRedacted. An invalid class gives DATA_CLASS_UNSPECIFIED,
// which event validation rejects.
func (c Class) ToProto() casev1.DataClass {
	switch c {
	case ClassContact:
		return casev1.DataClass_DATA_CLASS_CONTACT_DETAILS
	case ClassIdentity:
		return casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER
	case ClassFreeText:
		return casev1.DataClass_DATA_CLASS_FREE_TEXT
	case ClassAttachments:
		return casev1.DataClass_DATA_CLASS_ATTACHMENTS
	case ClassAnswer:
		return casev1.DataClass_DATA_CLASS_ANSWER
	}
	return casev1.DataClass_DATA_CLASS_UNSPECIFIED
}

// KeyID returns the id of the data key of generation gen of one class of
// one case. It is deterministic, so every instance of every service finds
// the same key without a lookup table, and it names no person, because the
// case id is a random id.
//
// Generation 0 is the key a class gets at registration: "<caseID>.<class>",
// the only form key ids had before generations, so everything sealed then
// still opens. A destroyed key id can never be created again, so data
// written into a class after its redaction goes under the next generation,
// "<caseID>.<class>.<gen>" (gen 1, 2, …; see Generations): a fresh key that
// the next redaction destroys in turn. Generation 0 has the one spelling
// without a suffix, so no key has two ids.
//
// The case id must be a canonical lowercase UUID (as uuid.NewString gives)
// or an uppercase ULID. The check is strict on purpose: the key id becomes
// a KV key and a NATS subject, where personal data must never appear, and
// two spellings of one id would otherwise give a case two keys.
func KeyID(caseID string, class Class, gen uint32) (string, error) {
	if err := ValidateCaseID(caseID); err != nil {
		return "", err
	}
	if !class.Valid() {
		return "", fmt.Errorf("%w: %q", ErrInvalidClass, string(class))
	}
	if gen == 0 {
		return caseID + "." + string(class), nil
	}
	return caseID + "." + string(class) + "." + strconv.FormatUint(uint64(gen), 10), nil
}

// ParseKeyID splits a key id made by KeyID into its case id, class and
// generation. It is used to check that a sealed value belongs to the case
// it is opened for, and to tell which class a sealed value holds.
func ParseKeyID(keyID string) (caseID string, class Class, gen uint32, err error) {
	parts := strings.Split(keyID, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return "", "", 0, fmt.Errorf("%w: want <case>.<class> or <case>.<class>.<generation>", ErrInvalidKeyID)
	}
	caseID, class = parts[0], Class(parts[1])
	if err := ValidateCaseID(caseID); err != nil {
		return "", "", 0, fmt.Errorf("%w: %w", ErrInvalidKeyID, err)
	}
	if !class.Valid() {
		return "", "", 0, fmt.Errorf("%w: unknown class", ErrInvalidKeyID)
	}
	if len(parts) == 3 {
		g := parts[2]
		n, perr := strconv.ParseUint(g, 10, 32)
		// One spelling per key: no sign, no leading zero, and generation
		// 0 only without a suffix.
		if perr != nil || n == 0 || g[0] < '1' || g[0] > '9' {
			return "", "", 0, fmt.Errorf("%w: bad generation", ErrInvalidKeyID)
		}
		gen = uint32(n)
	}
	return caseID, class, gen, nil
}

// Generations is, for one case, the generation of each class's current
// data key: how many redactions have covered the class (see KeyID). It is
// folded from the case's own events with Apply, so every service that
// seals into an existing case (routing's answers, notes and forwarding
// comments, retention's rectifications) and the retention projector that
// destroys keys agree on the key ids without asking each other. A writer
// that folded the case before a redaction was appended seals under a key
// that is, or soon will be, destroyed; its append then fails on the
// expected revision (or its Seal with ErrKeyDestroyed) and it folds again.
// The zero value, nil, is a case never redacted: every class at 0.
type Generations map[Class]uint32

// Of returns the generation of class c's current key.
func (g Generations) Of(c Class) uint32 { return g[c] }

// Apply folds one case event: PersonalDataRedacted moves every class it
// names to the next generation; every other event changes nothing. Folds
// call it for every event, so which events advance a generation is decided
// here alone.
func (g *Generations) Apply(ev proto.Message) {
	m, ok := ev.(*casev1.PersonalDataRedacted)
	if !ok {
		return
	}
	for _, dc := range m.GetDataClasses() {
		c, err := ClassFromProto(dc)
		if err != nil {
			continue
		}
		if *g == nil {
			*g = make(Generations)
		}
		(*g)[c]++
	}
}

// Clone returns a copy that later Applies do not change.
func (g Generations) Clone() Generations { return maps.Clone(g) }

// ValidateCaseID checks that id is a canonical lowercase UUID (not the nil
// UUID) or an uppercase ULID, the two forms of random case id kontakt
// uses. The error does not repeat the id, because a wrong value passed here
// may be personal data (an identity number given as a case id by mistake).
func ValidateCaseID(id string) error {
	switch len(id) {
	case 36:
		u, err := uuid.Parse(id)
		if err == nil && u != uuid.Nil && u.String() == id {
			return nil
		}
	case 26:
		if isULID(id) {
			return nil
		}
	}
	return fmt.Errorf("%w: want a lowercase UUID or an uppercase ULID (%d characters given)", ErrInvalidCaseID, len(id))
}

// isULID reports whether s is a 26-character ULID in Crockford's base32
// alphabet, uppercase, whose first character keeps it within 128 bits.
func isULID(s string) bool {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	if len(s) != 26 || s[0] > '7' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}
