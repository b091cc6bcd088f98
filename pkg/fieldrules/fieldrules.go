// Package fieldrules runs a request's declarative field rules
// (protovalidate) and words each broken rule for a person, as kontakt's
// own checks word theirs. It is a package of its own, apart from the
// server, so that what a form's JSON goes through before a case is
// registered can be fuzzed without compiling (and instrumenting) the
// whole server.
package fieldrules

import (
	"errors"
	"fmt"
	"strings"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Violation names one invalid field of a request and says what is wrong
// with it, so that a form can show the message next to the field.
type Violation struct {
	// Field is the path to the field, e.g. "contact.email".
	Field string
	// Description says what is wrong, in words fit for the caller.
	Description string
}

// Check runs the protovalidate rules of msg and returns the broken ones
// as field violations (nil when msg is valid), each described in words
// fit for a UI (plainMessage). A rule that cannot be evaluated is
// returned as an error.
func Check(v protovalidate.Validator, msg proto.Message) ([]Violation, error) {
	err := v.Validate(msg)
	if err == nil {
		return nil, nil
	}
	var ve *protovalidate.ValidationError
	if !errors.As(err, &ve) {
		return nil, err
	}
	out := make([]Violation, 0, len(ve.Violations))
	for _, viol := range ve.Violations {
		out = append(out, Violation{
			Field:       protovalidate.FieldPathString(viol.Proto.GetField()),
			Description: plainMessage(viol),
		})
	}
	return out, nil
}

// plainMessage words a broken protovalidate rule the way kontakt's own
// checks word theirs ("is required", "must be at most 200 characters"),
// so that a UI can show it next to the field. protovalidate's own texts
// are written for developers: "value must not be in list [0]" for a
// missing enum, and for a pattern the regular expression itself. The
// rule id (buf.validate's "string.max_len", "enum.not_in", …) decides;
// a rule without a wording here keeps protovalidate's text without its
// leading "value ".
func plainMessage(v *protovalidate.Violation) string {
	id := v.Proto.GetRuleId()
	n := ruleNumber(v)
	switch id {
	case "required":
		return "is required"
	case "string.min_len", "string.min_bytes":
		if n == "1" {
			return "is required"
		}
		return "must be at least " + n + " characters"
	case "string.max_len", "string.max_bytes":
		return "must be at most " + n + " characters"
	case "string.len", "string.len_bytes":
		return "must be exactly " + n + " characters"
	case "string.pattern":
		return "is not in the expected format"
	case "string.email", "string.email_empty":
		return "must be an e-mail address"
	case "string.uuid", "string.uuid_empty":
		return "must be a UUID"
	case "enum.defined_only", "enum.in", "enum.const":
		return "is not one of the allowed values"
	case "enum.not_in":
		if v.FieldValue.IsValid() && v.FieldValue.Enum() == 0 {
			return "is required"
		}
		return "is not one of the allowed values"
	case "repeated.min_items", "map.min_pairs":
		return "must hold at least " + n + " items"
	case "repeated.max_items", "map.max_pairs":
		return "may hold at most " + n + " items"
	case "repeated.unique":
		return "must not hold the same value twice"
	}
	if _, rule, ok := strings.Cut(id, "."); ok {
		switch rule {
		case "gt", "gte", "lt", "lte", "gt_lt", "gt_lte", "gte_lt", "gte_lte",
			"gt_lt_exclusive", "gt_lte_exclusive", "gte_lt_exclusive", "gte_lte_exclusive":
			if text := rangeText(v.FieldDescriptor); text != "" {
				return text
			}
		case "finite":
			return "must be a finite number"
		case "in", "not_in", "const":
			return "is not one of the allowed values"
		}
	}
	return strings.TrimPrefix(v.Proto.GetMessage(), "value ")
}

// ruleNumber is the value of the broken rule (a length, a count) as text.
func ruleNumber(v *protovalidate.Violation) string {
	if !v.RuleValue.IsValid() {
		return ""
	}
	return fmt.Sprint(v.RuleValue.Interface())
}

// rangeText words the bounds a numeric field's rules set: "must be from
// -90 to 90", "must be at least 1", "must be greater than 0".
func rangeText(fd protoreflect.FieldDescriptor) string {
	if fd == nil {
		return ""
	}
	rules, ok := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
	if !ok || rules == nil {
		return ""
	}
	if items := rules.GetRepeated().GetItems(); items != nil {
		rules = items
	}
	m := rules.ProtoReflect()
	typed := m.WhichOneof(m.Descriptor().Oneofs().ByName("type"))
	if typed == nil || typed.Message() == nil {
		return ""
	}
	r := m.Get(typed).Message()
	bound := func(name protoreflect.Name) (string, bool) {
		f := r.Descriptor().Fields().ByName(name)
		if f == nil || !r.Has(f) {
			return "", false
		}
		return fmt.Sprint(r.Get(f).Interface()), true
	}
	gte, hasGTE := bound("gte")
	gt, hasGT := bound("gt")
	lte, hasLTE := bound("lte")
	lt, hasLT := bound("lt")
	var lower, upper string
	switch {
	case hasGTE:
		lower = "at least " + gte
	case hasGT:
		lower = "greater than " + gt
	}
	switch {
	case hasLTE:
		upper = "at most " + lte
	case hasLT:
		upper = "less than " + lt
	}
	switch {
	case hasGTE && hasLTE:
		return "must be from " + gte + " to " + lte
	case lower != "" && upper != "":
		return "must be " + lower + " and " + upper
	case lower != "":
		return "must be " + lower
	case upper != "":
		return "must be " + upper
	}
	return ""
}
