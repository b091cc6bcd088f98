package domain

import (
	"embed"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// Class is a kind of data that a rule of the plan decides about. The
// municipalities' plans give personal data, the case itself, logs and
// statistics different periods, so a rule names the classes it covers.
type Class string

// The classes a rule may name.
const (
	// ClassContact is the citizen's name, e-mail, phone and address. The
	// five personal classes are the sealed classes of pkg/seal, with the
	// same strings, so a rule's class names the key that redaction
	// destroys.
	ClassContact Class = "contact"
	// ClassIdentity is the personnummer or samordningsnummer.
	ClassIdentity Class = "identity"
	// ClassFreeText is what the citizen wrote, including a chat transcript.
	ClassFreeText Class = "freetext"
	// ClassAttachments is the attachments' names.
	ClassAttachments Class = "attachments"
	// ClassAnswer is the agents' answers, notes and forwarding comments.
	ClassAnswer Class = "answer"
	// ClassCase is the whole case: its event stream, which deletion
	// removes and preservation exports to the archive first.
	ClassCase Class = "case"
	// ClassAudit is the audit trail of who read the case, which the plans
	// keep longer than the case so misuse can still be investigated.
	ClassAudit Class = "audit"
	// ClassStatistics is the anonymised statistics records, which hold no
	// personal data and are usually kept (bevaras).
	ClassStatistics Class = "statistics"
)

// PersonalClasses returns the five sealed personal-data classes in the
// order of the proto enum DataClass. Redaction is only for these, and
// Schedule lists classes in this order so its output is stable.
func PersonalClasses() []Class {
	return []Class{ClassContact, ClassIdentity, ClassFreeText, ClassAttachments, ClassAnswer}
}

// allClasses returns every class a rule may name, in the order error
// messages list them.
func allClasses() []Class {
	return append(PersonalClasses(), ClassCase, ClassAudit, ClassStatistics)
}

// Personal reports whether c is one of the sealed personal-data classes,
// the only classes that redaction applies to.
func (c Class) Personal() bool {
	return slices.Contains(PersonalClasses(), c)
}

// Anchor is what a retention period counts from. The plans count personal
// data from when it came in and some cases from when they were closed
// ("vid inaktualitet"), and the two give different deadlines.
type Anchor int

// The anchors. Their numbers are those of kontakt.retention.v1.Anchor, so
// the zero value is "unspecified" as in the API: a keep rule that needs no
// period has it.
const (
	// AnchorRegistration counts from the case's registration.
	AnchorRegistration Anchor = iota + 1
	// AnchorClosure counts from the case's latest closing; while the case
	// is open (also after a reopening) the period has not begun.
	AnchorClosure
)

// String gives the name the plan file uses.
func (a Anchor) String() string {
	switch a {
	case AnchorRegistration:
		return "registration"
	case AnchorClosure:
		return "closure"
	}
	return "Anchor(" + strconv.Itoa(int(a)) + ")"
}

// Action is what happens when a rule's period ends.
type Action int

// The actions. Their numbers are those of kontakt.retention.v1.Action, so
// the zero value is "unspecified" as in the API.
const (
	// ActionRedact destroys the keys of personal-data classes, so the
	// sealed data becomes unreadable while the case's plain facts remain.
	ActionRedact Action = iota + 1
	// ActionDelete removes the case (or the audit trail) for good
	// (gallring).
	ActionDelete
	// ActionPreserve exports the case to the archive (bevaras) and then
	// removes it from the live system.
	ActionPreserve
	// ActionKeep says on purpose that nothing is removed, so that a plan
	// that forgot a class can be told from one that keeps it.
	ActionKeep
	// ActionArchive is no action a plan file may name: it is the Due that
	// says when the archive package of a case that must be archived is
	// written (ArchiveDue), for previews.
	ActionArchive
)

// String gives the name the plan file uses.
func (a Action) String() string {
	switch a {
	case ActionRedact:
		return "redact"
	case ActionDelete:
		return "delete"
	case ActionPreserve:
		return "preserve"
	case ActionKeep:
		return "keep"
	case ActionArchive:
		return "archive"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Rule is one line of the plan: for cases of the given types from the
// given channels (and, when Marked, only cases an officer marked for
// preservation), the given classes undergo Action when Period has passed
// since From.
type Rule struct {
	// Name identifies the rule in events (PersonalDataRedacted.rule,
	// CaseDeleted.rule) and receipts, so every removal can be explained.
	Name string
	// Line is the rule's line in the plan file, for messages.
	Line int
	// Types are the case types the rule covers; empty means every type.
	Types []casev1.CaseType
	// Channels are the channels the rule covers; empty means every channel.
	Channels []casev1.Channel
	// Marked restricts the rule to cases marked for preservation
	// (CaseMarkedForPreservation). A rule without it applies to marked
	// cases too, with lower precedence.
	Marked bool
	// Classes are the data classes the rule decides about.
	Classes []Class
	// Period is how long the data is kept; zero for a keep rule that
	// gives none.
	Period Period
	// From is what Period counts from; zero for a keep rule that gives
	// none.
	From Anchor
	// Action is what happens when Period has passed.
	Action Action
	// Note cites the municipality's document the rule comes from, so an
	// archivist can check the plan against its source.
	Note string
}

// Specificity ranks rules that match the same case and class; Resolve
// picks the highest. A rule for marked cases only counts 4, listing
// channels 2 and listing types 1, so a rule about one channel beats one
// about a type, and a rule for marked cases beats both.
func (r Rule) Specificity() int {
	s := 0
	if r.Marked {
		s += 4
	}
	if len(r.Channels) > 0 {
		s += 2
	}
	if len(r.Types) > 0 {
		s++
	}
	return s
}

// Matches reports whether the rule covers class c of a case of type t from
// channel ch, marked or not. A rule for marked cases does not match an
// unmarked case; every other rule matches both.
func (r Rule) Matches(t casev1.CaseType, ch casev1.Channel, marked bool, c Class) bool {
	if r.Marked && !marked {
		return false
	}
	if len(r.Types) > 0 && !slices.Contains(r.Types, t) {
		return false
	}
	if len(r.Channels) > 0 && !slices.Contains(r.Channels, ch) {
		return false
	}
	return slices.Contains(r.Classes, c)
}

// Plan is a municipality's retention plan (dokumenthanteringsplan) as
// data. It is versioned, and every event that removes data records the
// version and the rule, so a removal can be explained years later. A Plan
// from ParsePlan has passed every check; it is not changed afterwards and
// is safe for concurrent use.
type Plan struct {
	// Name says whose plan it is ("Mölndal stad, Kontaktcenter").
	Name string
	// Version is recorded in PersonalDataRedacted and CaseDeleted.
	Version string
	// Source names the document the plan transcribes.
	Source string
	// Rules are in file order.
	Rules []Rule
}

// Resolve returns the rule that decides class c of a case of type t from
// channel ch, marked for preservation or not: of the matching rules, the
// one with the highest Specificity. ParsePlan refuses plans in which two
// rules of equal specificity match the same case and class, so the choice
// is unique; for a Plan built by hand, the first in file order wins. It
// reports false when no rule covers the class, which for a personal class
// means it is never redacted.
func (p *Plan) Resolve(t casev1.CaseType, ch casev1.Channel, marked bool, c Class) (Rule, bool) {
	best, found := -1, false
	var out Rule
	for _, r := range p.Rules {
		if !r.Matches(t, ch, marked, c) {
			continue
		}
		if s := r.Specificity(); s > best {
			best, out, found = s, r, true
		}
	}
	return out, found
}

// DefaultPlanName is the builtin plan used when configuration names none:
// Mölndal's, whose process 2.11 is the most complete description of a
// contact centre's retention among the source documents.
const DefaultPlanName = "molndal"

// builtinDir is where the embedded plans live.
const builtinDir = "plans"

// builtinPlans are the plans shipped with the binary, so an installation
// works without a plan file and the shipped plans are checked by the same
// tests as the code.
//
//go:embed plans/*.yaml
var builtinPlans embed.FS

// BuiltinNames returns the names of the embedded plans, sorted, for
// configuration help and error messages.
func BuiltinNames() []string {
	entries, err := builtinPlans.ReadDir(builtinDir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Builtin parses the embedded plan of that name ("molndal" or "vaxjo";
// "" means DefaultPlanName). Every call parses afresh, so callers may
// change their copy. An unknown name is refused with ErrUnknownPlan and
// the list of known names, because a misspelt name in configuration must
// not silently fall back to another municipality's periods.
func Builtin(name string) (*Plan, error) {
	if name == "" {
		name = DefaultPlanName
	}
	name = strings.ToLower(name)
	if !slices.Contains(BuiltinNames(), name) {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownPlan, name, strings.Join(BuiltinNames(), ", "))
	}
	file := path.Join(builtinDir, name+".yaml")
	data, err := builtinPlans.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrUnknownPlan, name, err)
	}
	return ParsePlan(file, data)
}
