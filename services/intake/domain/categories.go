package domain

import (
	"slices"
	"strings"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// Category is one entry of the installation's list of case categories:
// a code (what events and statistics store), and the case types it
// applies to (none: every type).
type Category struct {
	Code  string
	Types []casev1.CaseType
}

// Categories is the closed list of categories a case may be registered
// under. The category is stored in plain text in the case's events and
// in the statistics, which are kept for ever, so it must never be free
// text a citizen typed: a form that could send any string could send a
// name or a personnummer, and nothing could ever remove it. Only codes
// from the configured list are accepted. The zero value accepts nothing.
type Categories struct {
	byCode map[string][]casev1.CaseType
	codes  []string
}

// NewCategories builds the list. Codes are checked by the configuration
// (pkg/config), which names the key of a bad one.
func NewCategories(list []Category) Categories {
	c := Categories{byCode: make(map[string][]casev1.CaseType, len(list))}
	for _, e := range list {
		c.byCode[e.Code] = slices.Clone(e.Types)
		c.codes = append(c.codes, e.Code)
	}
	slices.Sort(c.codes)
	return c
}

// check returns what is wrong with category code for a case of type t,
// or "" when nothing is. The description names the codes that would do
// (they are configuration, not personal data) and never repeats what was
// sent.
func (c Categories) check(code string, t casev1.CaseType) string {
	types, known := c.byCode[code]
	switch {
	case code == "":
		return "is required"
	case !known:
		return "is not one of the configured categories; use one of: " + c.listFor(t)
	case len(types) > 0 && !slices.Contains(types, t):
		return "is not a category for this case type; use one of: " + c.listFor(t)
	}
	return ""
}

// Allows reports whether code is a category for cases of type t.
func (c Categories) Allows(code string, t casev1.CaseType) bool {
	return code != "" && c.check(code, t) == ""
}

// listFor lists the codes that a case of type t may use.
func (c Categories) listFor(t casev1.CaseType) string {
	var out []string
	for _, code := range c.codes {
		types := c.byCode[code]
		if len(types) == 0 || t == casev1.CaseType_CASE_TYPE_UNSPECIFIED || slices.Contains(types, t) {
			out = append(out, code)
		}
	}
	if len(out) == 0 {
		return "(none configured)"
	}
	return strings.Join(out, ", ")
}
