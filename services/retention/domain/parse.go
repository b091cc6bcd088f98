package domain

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/casenames"
	"github.com/kontakt-se/kontakt/pkg/yamldoc"
)

// ParsePlan reads a retention plan:
//
//	name: Mölndal stad, Kontaktcenter
//	version: "2021.1"
//	source: Dokumenthanteringsplan serviceförvaltningen 2021, process 2.11
//	rules:
//	  - name: personuppgifter
//	    types: [fraga, felanmalan, synpunkt, brev]  # optional; "*" or absent = all
//	    channels: [phone, email, form, letter, visit, chat]  # optional
//	    marked: false     # optional; true = only cases marked for preservation
//	    classes: [contact, identity, freetext, attachments, answer]
//	    period: 90d       # y, m, d in that order: 90d, 6m, 2y, 1y6m
//	    from: registration  # or closure
//	    action: redact    # redact | delete | preserve | keep
//	    note: "Personuppgifter gallras efter 3 månader"
//
// Types are fraga, felanmalan, synpunkt and brev (also fråga and
// felanmälan); channels are phone, email, form, letter, visit and chat;
// classes are contact, identity, freetext, attachments, answer (the
// personal classes), case, audit and statistics. period and from may be
// left out of a keep rule, which removes nothing.
//
// It is strict, because a mistake in a retention plan either loses data
// the municipality must keep or keeps data it must remove, silently and
// for years. It refuses unknown keys and names, a missing name, version or
// rules list, rules without a name or with a name used twice, bad periods,
// actions that do not fit the class (redact is for personal classes only;
// delete and preserve are for the case, delete also for the audit trail;
// statistics are only kept), and then, over the rules together: two rules
// of equal specificity deciding the same class of the same cases (Resolve
// could not choose); a personal class redacted after the case is deleted
// or preserved (the case would take its data with it first, or the rule
// is a mistake); and a case type and channel whose unmarked cases no rule
// for class case covers (a case that nothing removes must say so with
// keep). The checks over several rules run on the rules that are correct
// by themselves, and the last two only when all are, so one typo does not
// bury the file in consequences.
//
// Every problem is reported, in line order, each as a *PlanError naming
// file and line; the result is their errors.Join, for which
// errors.Is(err, ErrInvalidPlan) holds. file is only used in messages.
func ParsePlan(file string, data []byte) (*Plan, error) {
	p := &planParser{file: file}
	p.Reader = yamldoc.Reader{Errorf: p.errorf}
	plan := p.parse(data)
	if err := yamldoc.JoinByLine(p.errs, func(e *PlanError) int { return e.Line }); err != nil {
		return nil, err
	}
	return plan, nil
}

// planParser walks the YAML node tree, which keeps every value's line,
// and collects every problem instead of stopping at the first.
type planParser struct {
	yamldoc.Reader
	file string
	errs []*PlanError
}

func (p *planParser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &PlanError{File: p.file, Line: line, Reason: fmt.Sprintf(format, args...)})
}

func (p *planParser) parse(data []byte) *Plan {
	root, empty := p.Document(data, "plan file", "name, version and rules")
	if empty {
		p.errorf(0, "the file is empty: name, version and rules are required")
	}
	if root == nil {
		return nil
	}

	plan := &Plan{}
	fields := p.Mapping(root, "", "name", "version", "source", "rules")
	if f, ok := fields["name"]; ok {
		plan.Name = p.Scalar(f.Value, "", "name")
	} else {
		p.errorf(root.Line, "missing name")
	}
	if f, ok := fields["version"]; ok {
		plan.Version = p.Scalar(f.Value, "", "version")
	} else {
		p.errorf(root.Line, "missing version")
	}
	if f, ok := fields["source"]; ok {
		plan.Source = p.Scalar(f.Value, "", "source")
	}
	f, ok := fields["rules"]
	if !ok {
		p.errorf(root.Line, "missing rules")
		return plan
	}
	items := p.List(f.Value, "", "rules")
	if len(items) == 0 {
		if f.Value.Kind == yaml.SequenceNode || f.Value.Tag == "!!null" {
			p.errorf(f.Key.Line, "rules is empty")
		}
		return plan
	}

	allValid := true
	firstName := make(map[string]int)
	for i, item := range items {
		before := len(p.errs)
		r := p.rule(i, item, firstName)
		if len(p.errs) > before {
			allValid = false
			continue
		}
		plan.Rules = append(plan.Rules, r)
	}
	p.checkConflicts(plan.Rules)
	if allValid {
		p.checkOrder(plan)
		p.checkCoverage(plan, f.Key.Line)
	}
	return plan
}

// rule parses the i-th entry of rules. firstName maps the names seen so
// far to their lines, to refuse duplicates.
func (p *planParser) rule(i int, item *yaml.Node, firstName map[string]int) Rule {
	r := Rule{Line: item.Line}
	if item.Kind != yaml.MappingNode {
		p.errorf(item.Line, "rule %d must be a mapping with name, classes, period, from and action", i+1)
		return r
	}
	where := fmt.Sprintf("rule %d: ", i+1)
	if name := peekName(item); name != "" {
		where = fmt.Sprintf("rule %q: ", name)
	}
	fields := p.Mapping(item, where,
		"name", "types", "channels", "marked", "classes", "period", "from", "action", "note")

	if f, ok := fields["name"]; ok {
		r.Name = p.Scalar(f.Value, where, "name")
		if r.Name != "" {
			if line, dup := firstName[r.Name]; dup {
				p.errorf(f.Value.Line, "duplicate rule name %q (first at line %d)", r.Name, line)
			} else {
				firstName[r.Name] = f.Value.Line
			}
		}
	} else {
		p.errorf(item.Line, "rule %d has no name", i+1)
	}

	if f, ok := fields["types"]; ok {
		for _, e := range p.selector(f.Value, where, "types", "type") {
			name := p.Scalar(e, where, "a type")
			if name == "" {
				continue
			}
			t, known := casenames.ParseType(name)
			switch {
			case !known:
				p.errorf(e.Line, "%sunknown type %q (known: %s)", where, name, strings.Join(casenames.TypeNames(), ", "))
			case slices.Contains(r.Types, t):
				p.errorf(e.Line, "%stype %s is listed twice", where, name)
			default:
				r.Types = append(r.Types, t)
			}
		}
	}
	if f, ok := fields["channels"]; ok {
		for _, e := range p.selector(f.Value, where, "channels", "channel") {
			name := p.Scalar(e, where, "a channel")
			if name == "" {
				continue
			}
			ch, known := casenames.ParseChannel(name)
			switch {
			case !known:
				p.errorf(e.Line, "%sunknown channel %q (known: %s)", where, name, strings.Join(casenames.ChannelNames(), ", "))
			case slices.Contains(r.Channels, ch):
				p.errorf(e.Line, "%schannel %s is listed twice", where, name)
			default:
				r.Channels = append(r.Channels, ch)
			}
		}
	}
	if f, ok := fields["marked"]; ok {
		if f.Value.Kind != yaml.ScalarNode || f.Value.Tag != "!!bool" || f.Value.Decode(&r.Marked) != nil {
			p.errorf(f.Value.Line, "%smarked must be true or false", where)
		}
	}

	if f, ok := fields["classes"]; ok {
		entries := p.List(f.Value, where, "classes")
		if len(entries) == 0 && (f.Value.Kind == yaml.SequenceNode || f.Value.Tag == "!!null") {
			p.errorf(f.Value.Line, "%sclasses is empty", where)
		}
		for _, e := range entries {
			name := p.Scalar(e, where, "a class")
			if name == "" {
				continue
			}
			c := Class(name)
			switch {
			case !slices.Contains(allClasses(), c):
				p.errorf(e.Line, "%sunknown class %q (known: %s)", where, name, joinClasses(allClasses()))
			case slices.Contains(r.Classes, c):
				p.errorf(e.Line, "%sclass %s is listed twice", where, name)
			default:
				r.Classes = append(r.Classes, c)
			}
		}
	} else {
		p.errorf(item.Line, "%smissing classes", where)
	}

	actionLine := item.Line
	if f, ok := fields["action"]; ok {
		actionLine = f.Value.Line
		if name := p.Scalar(f.Value, where, "action"); name != "" {
			a, known := actionByName(name)
			if known {
				r.Action = a
			} else {
				p.errorf(f.Value.Line, "%sunknown action %q (known: redact, delete, preserve, keep)", where, name)
			}
		}
	} else {
		p.errorf(item.Line, "%smissing action", where)
	}
	// A keep rule removes nothing, so it needs no period; every other
	// action does.
	needsPeriod := r.Action != ActionKeep
	if f, ok := fields["period"]; ok {
		if s := p.Scalar(f.Value, where, "period"); s != "" {
			period, err := ParsePeriod(s)
			if err != nil {
				p.errorf(f.Value.Line, "%sbad period: %s", where, strings.TrimPrefix(err.Error(), ErrInvalidPeriod.Error()+": "))
			} else {
				r.Period = period
			}
		}
	} else if needsPeriod {
		p.errorf(item.Line, "%smissing period", where)
	}
	if f, ok := fields["from"]; ok {
		if name := p.Scalar(f.Value, where, "from"); name != "" {
			a, known := anchorByName(name)
			if known {
				r.From = a
			} else {
				p.errorf(f.Value.Line, "%sunknown from %q (known: registration, closure)", where, name)
			}
		}
	} else if needsPeriod {
		p.errorf(item.Line, "%smissing from", where)
	}
	if f, ok := fields["note"]; ok {
		r.Note = p.Scalar(f.Value, where, "note")
	}

	if r.Action != 0 {
		for _, c := range r.Classes {
			p.checkAction(where, actionLine, r.Action, c)
		}
	}
	return r
}

// allowedActions says what may happen to each class: personal data is
// redacted (its keys destroyed) rather than deleted, because the case's
// plain facts outlive it; only the case is preserved; the audit trail is
// deleted or kept; anonymised statistics are only kept.
func allowedActions(c Class) []Action {
	switch {
	case c.Personal():
		return []Action{ActionRedact, ActionKeep}
	case c == ClassCase:
		return []Action{ActionDelete, ActionPreserve, ActionKeep}
	case c == ClassAudit:
		return []Action{ActionDelete, ActionKeep}
	case c == ClassStatistics:
		return []Action{ActionKeep}
	}
	return nil
}

// checkAction refuses an action that does not fit class c, with a hint
// at what to write instead.
func (p *planParser) checkAction(where string, line int, a Action, c Class) {
	allowed := allowedActions(c)
	if slices.Contains(allowed, a) {
		return
	}
	switch {
	case c.Personal():
		p.errorf(line, "%saction %s does not apply to personal class %s: use redact", where, a, c)
	case a == ActionRedact:
		p.errorf(line, "%saction redact applies only to the personal classes (%s), not to %s", where, joinClasses(PersonalClasses()), c)
	default:
		names := make([]string, len(allowed))
		for i, x := range allowed {
			names[i] = x.String()
		}
		p.errorf(line, "%saction %s does not apply to class %s (allowed: %s)", where, a, c, strings.Join(names, ", "))
	}
}

// checkConflicts refuses two rules that Resolve could not choose between:
// equal specificity, and some case type, channel and class that both
// match. Equal specificity implies both are for marked cases or neither.
func (p *planParser) checkConflicts(rules []Rule) {
	for i, a := range rules {
		for _, b := range rules[i+1:] {
			if a.Specificity() != b.Specificity() {
				continue
			}
			t, okT := firstShared(a.Types, b.Types, casenames.Types())
			ch, okC := firstShared(a.Channels, b.Channels, casenames.Channels())
			c, okCl := firstShared(a.Classes, b.Classes, nil)
			if !okT || !okC || !okCl {
				continue
			}
			p.errorf(b.Line, "rules %q (line %d) and %q (line %d) both decide %s of %s cases with the same specificity; make one of them more specific",
				a.Name, a.Line, b.Name, b.Line, c, describe(t, ch, a.Marked))
		}
	}
}

// firstShared returns the first value of a that b also holds, where an
// empty list means every value of all.
func firstShared[T comparable](a, b, all []T) (T, bool) {
	if len(a) == 0 {
		a = all
	}
	for _, x := range a {
		if len(b) == 0 || slices.Contains(b, x) {
			return x, true
		}
	}
	var zero T
	return zero, false
}

// checkOrder refuses a plan that would remove a case (delete, or preserve:
// export and remove) before redacting one of its personal classes. The
// redaction would then either never happen or reveal that the periods
// were written down wrong. A redaction counts as later when its period is
// nominally longer (whatever the anchors: a case may be closed the moment
// it is registered) or when it counts from closure while the removal
// counts from registration (a case may stay open past any period).
func (p *planParser) checkOrder(plan *Plan) {
	type pair struct{ redact, remove string }
	type finding struct {
		redact, remove Rule
		classes        []Class
		example        string
	}
	var order []pair
	found := make(map[pair]*finding)
	for _, marked := range []bool{false, true} {
		for _, t := range casenames.Types() {
			for _, ch := range casenames.Channels() {
				d, ok := plan.Resolve(t, ch, marked, ClassCase)
				if !ok || (d.Action != ActionDelete && d.Action != ActionPreserve) {
					continue
				}
				for _, c := range PersonalClasses() {
					r, ok := plan.Resolve(t, ch, marked, c)
					if !ok || r.Action != ActionRedact || !redactsAfter(r, d) {
						continue
					}
					k := pair{r.Name, d.Name}
					f := found[k]
					if f == nil {
						f = &finding{redact: r, remove: d, example: describe(t, ch, marked)}
						found[k] = f
						order = append(order, k)
					}
					if !slices.Contains(f.classes, c) {
						f.classes = append(f.classes, c)
					}
				}
			}
		}
	}
	for _, k := range order {
		f := found[k]
		verb := "deletes"
		if f.remove.Action == ActionPreserve {
			verb = "archives and removes"
		}
		slices.SortFunc(f.classes, func(a, b Class) int {
			return cmp.Compare(slices.Index(PersonalClasses(), a), slices.Index(PersonalClasses(), b))
		})
		p.errorf(f.redact.Line, "rule %q redacts %s after rule %q (line %d) %s the case (%s %s from %s, %s %s from %s; for example %s cases)",
			f.redact.Name, joinClasses(f.classes), f.remove.Name, f.remove.Line, verb,
			f.redact.Action, f.redact.Period, f.redact.From, f.remove.Action, f.remove.Period, f.remove.From, f.example)
	}
}

// redactsAfter reports whether redaction rule r can fall due after removal
// rule d; see checkOrder.
func redactsAfter(r, d Rule) bool {
	if r.Period.NominalDays() > d.Period.NominalDays() {
		return true
	}
	return r.From == AnchorClosure && d.From == AnchorRegistration
}

// checkCoverage refuses a plan that leaves the unmarked cases of some type
// and channel without a rule for class case: such cases would be kept for
// ever by omission. Marked cases fall back to the unmarked rules, so they
// are covered whenever the unmarked ones are.
func (p *planParser) checkCoverage(plan *Plan, line int) {
	for _, t := range casenames.Types() {
		var missing []string
		for _, ch := range casenames.Channels() {
			if _, ok := plan.Resolve(t, ch, false, ClassCase); !ok {
				missing = append(missing, casenames.Channel(ch))
			}
		}
		if len(missing) > 0 {
			p.errorf(line, "no rule for class case covers unmarked %s cases from %s; add one (with action keep if nothing removes them)",
				casenames.Type(t), strings.Join(missing, ", "))
		}
	}
}

// describe names a combination in messages: "fraga/phone" or "marked
// fraga/phone".
func describe(t casev1.CaseType, ch casev1.Channel, marked bool) string {
	s := casenames.Type(t) + "/" + casenames.Channel(ch)
	if marked {
		s = "marked " + s
	}
	return s
}

func joinClasses(cs []Class) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}

// selector returns the entries of types or channels. "*", alone or as the
// only entry, an empty list and null all mean every value and give none.
func (p *planParser) selector(n *yaml.Node, where, key, singular string) []*yaml.Node {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		if strings.TrimSpace(n.Value) == "*" {
			return nil
		}
		p.errorf(n.Line, "%s%s must be a list or \"*\"", where, key)
		return nil
	}
	entries := p.List(n, where, key)
	star := slices.IndexFunc(entries, func(e *yaml.Node) bool {
		return e.Kind == yaml.ScalarNode && strings.TrimSpace(e.Value) == "*"
	})
	if star < 0 {
		return entries
	}
	if len(entries) > 1 {
		p.errorf(entries[star].Line, "%s\"*\" means every %s; list nothing else with it", where, singular)
	}
	return nil
}

// peekName finds a rule's name before its fields are checked, so every
// message about the rule can name it, whatever the order of its keys.
func peekName(n *yaml.Node) string {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := yamldoc.Deref(n.Content[i]), yamldoc.Deref(n.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.Value == "name" && v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
			return strings.TrimSpace(v.Value)
		}
	}
	return ""
}

// anchorByName maps the file's from values to anchors.
func anchorByName(name string) (Anchor, bool) {
	for _, a := range []Anchor{AnchorRegistration, AnchorClosure} {
		if a.String() == name {
			return a, true
		}
	}
	return 0, false
}

// actionByName maps the file's action names to actions.
func actionByName(name string) (Action, bool) {
	for _, a := range []Action{ActionRedact, ActionDelete, ActionPreserve, ActionKeep} {
		if a.String() == name {
			return a, true
		}
	}
	return 0, false
}
