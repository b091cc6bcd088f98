package domain

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/casenames"
	"github.com/kontakt-se/kontakt/pkg/yamldoc"
)

// DefaultRuleName is the rule name that CaseRouted records when no rule
// matched and the case went to the default queue. A rule file may not
// use it, so statistics can tell the two apart.
const DefaultRuleName = "default"

// BuiltinRulesVersion is the version of the rules from DefaultRules.
const BuiltinRulesVersion = "builtin"

// defaultRulesFile names the rule file in errors when the caller gives
// no name.
const defaultRulesFile = "rules.yaml"

// Rules routes new cases to queues. They are data rather than code, so a
// municipality changes its routing without a release; every CaseRouted
// records the file's version and the rule that matched, so a routing can
// be explained afterwards. Rules are immutable once parsed and safe for
// concurrent use.
type Rules struct {
	version      string
	defaultQueue string
	rules        []rule
}

// rule is one entry of the file; an empty criterion matches anything.
type rule struct {
	name       string
	queue      string
	types      []casev1.CaseType
	channels   []casev1.Channel
	categories []string
	// keywords are lower-cased once at parse time.
	keywords []string
	// recipients are the contact centre's mail addresses, lower-cased
	// once at parse time.
	recipients []string
}

// Version is the rule file's version, recorded in every CaseRouted.
func (r *Rules) Version() string { return r.version }

// DefaultQueue is where cases go that no rule matches.
func (r *Rules) DefaultQueue() string { return r.defaultQueue }

// Route chooses the queue for a new case: the first rule, in file order,
// whose every given criterion matches (type, channel, category, and for
// mail the address it was sent to, mailbox; see matches), so a file reads
// top-down from the most specific rule to the most general. When none
// matches, the case goes to the default queue with the rule name
// "default".
func (r *Rules) Route(t casev1.CaseType, ch casev1.Channel, category, mailbox string) (queue, ruleName string) {
	lower := strings.ToLower(category)
	mailbox = strings.ToLower(mailbox)
	for _, ru := range r.rules {
		if ru.matches(t, ch, category, lower, mailbox) {
			return ru.queue, ru.name
		}
	}
	return r.defaultQueue, DefaultRuleName
}

// matches reports whether every criterion the rule gives holds. The
// criteria are the type, the channel, the recipient address (a case that
// did not come by mail has none, so a rule with recipients never matches
// it) and the category; categories and
// category_keywords are two ways of naming the category criterion, so the
// category matches when it is one of the codes or contains one of the
// keywords. (Requiring both would make a rule such as "categories:
// [gatubelysning], category_keywords: [gata, vag]" match nothing.)
func (ru rule) matches(t casev1.CaseType, ch casev1.Channel, category, lowerCategory, mailbox string) bool {
	if len(ru.types) > 0 && !slices.Contains(ru.types, t) {
		return false
	}
	if len(ru.recipients) > 0 && !slices.Contains(ru.recipients, mailbox) {
		return false
	}
	if len(ru.channels) > 0 && !slices.Contains(ru.channels, ch) {
		return false
	}
	if len(ru.categories) == 0 && len(ru.keywords) == 0 {
		return true
	}
	return slices.Contains(ru.categories, category) ||
		slices.ContainsFunc(ru.keywords, func(k string) bool { return strings.Contains(lowerCategory, k) })
}

// DefaultRules are the rules of an installation without a rule file, so
// that a new user's first cases land somewhere sensible: felanmälan goes
// to the queue "felanmalan" and synpunkt to "synpunkter" when those queues
// are among knownQueues, and everything else to defaultQueue. Their
// version is "builtin". The caller passes a configured defaultQueue; an
// empty one makes Route refuse every case, which is louder than losing
// them.
func DefaultRules(defaultQueue string, knownQueues ...string) *Rules {
	r := &Rules{version: BuiltinRulesVersion, defaultQueue: defaultQueue}
	builtins := []struct {
		queue string
		t     casev1.CaseType
	}{
		{"felanmalan", casev1.CaseType_CASE_TYPE_FELANMALAN},
		{"synpunkter", casev1.CaseType_CASE_TYPE_SYNPUNKT},
	}
	for _, b := range builtins {
		if b.queue != defaultQueue && slices.Contains(knownQueues, b.queue) {
			r.rules = append(r.rules, rule{name: b.queue, queue: b.queue, types: []casev1.CaseType{b.t}})
		}
	}
	return r
}

// Known is what a rule file may name: the configured queues, the
// configured category codes (config key categories) and the contact
// centre's mail addresses (mail.inbound.addresses, lower case), so that
// no rule waits for a category or an address no case can have, and no
// case is routed to a queue nobody sees.
type Known struct {
	Queues     []string
	Categories []string
	Mailboxes  []string
}

// ParseError is one problem of a rule file, at the line where it is, so
// whoever edits the file can find it. Errors from ParseRules join one
// ParseError per problem; errors.Is(err, ErrInvalidRules) holds for them.
type ParseError struct {
	// File names the rule file ("rules.yaml" unless the caller named it).
	File string
	// Line is 1-based; 0 when the YAML parser gave no line.
	Line int
	// Reason says what is wrong.
	Reason string
}

// Error reads "rules.yaml line 7: rule "x": unknown queue "bygglov"".
func (e *ParseError) Error() string {
	if e.Line <= 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("%s line %d: %s", e.File, e.Line, e.Reason)
}

// Unwrap lets errors.Is(err, ErrInvalidRules) hold.
func (e *ParseError) Unwrap() error { return ErrInvalidRules }

// ParseRules reads a rule file:
//
//	version: "2026-11-01"
//	default_queue: kontaktcenter
//	rules:
//	  - name: felanmalan-gata
//	    queue: felanmalan
//	    types: [felanmalan]             # fraga, felanmalan, synpunkt, brev
//	    channels: [form, phone]         # phone, email, form, letter, visit, chat
//	    categories: [gatubelysning]     # exact category codes
//	    category_keywords: [gata, vag]  # substrings of codes, case-insensitive
//	    recipients: [felanmalan@kommun.se]  # mail.inbound addresses a mail was sent to
//
// A rule matches a case when the case's type is among types, its channel
// among channels, the address a mail case was sent to among recipients
// (ignoring case), and its category is one of categories or contains one
// of category_keywords (ignoring case); an empty or missing list matches
// anything. The first matching rule wins; no match routes to
// default_queue with the rule name "default".
//
// It is strict, because a mistyped key or name would otherwise route cases
// silently to the wrong queue: unknown keys, duplicate keys, unknown
// types, channels and queues, a missing version or default queue, rules
// without a name or queue, duplicate rule names, the reserved name
// "default", empty list entries and a rule without any criterion (it would
// catch every case; that is what default_queue is for) are all refused.
// Every queue must be in known.Queues, the configured queues, so no case
// is routed to a queue nobody sees; every category must be in
// known.Categories, the configured category codes, and every keyword must
// occur in at least one of them, since a case can have no other category.
// All problems are reported together, in line order, each as a
// *ParseError naming its line. Types may also be written in Swedish
// (fråga, felanmälan); criteria lists may be empty, which means any.
func ParseRules(data []byte, known Known) (*Rules, error) {
	return ParseRulesFile(defaultRulesFile, data, known)
}

// ParseRulesFile is ParseRules with the file's name for the error
// messages, so an operator sees the path that was loaded.
func ParseRulesFile(name string, data []byte, known Known) (*Rules, error) {
	p := &ruleParser{file: name, known: known.Queues, categories: known.Categories, mailboxes: known.Mailboxes}
	p.Reader = yamldoc.Reader{Errorf: p.errorf}
	r := p.parse(data)
	if err := yamldoc.JoinByLine(p.errs, func(e *ParseError) int { return e.Line }); err != nil {
		return nil, err
	}
	return r, nil
}

// ruleParser walks the YAML node tree, which keeps every value's line,
// and collects every problem instead of stopping at the first.
type ruleParser struct {
	yamldoc.Reader
	file       string
	known      []string
	categories []string
	mailboxes  []string
	errs       []*ParseError
}

func (p *ruleParser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &ParseError{File: p.file, Line: line, Reason: fmt.Sprintf(format, args...)})
}

// parseNames reads the list at n with parse (a type or channel name),
// reporting each name parse does not know together with the ones it does.
func parseNames[E any](p *ruleParser, n *yaml.Node, where, key, what string, parse func(string) (E, bool), known []string) []E {
	var out []E
	for _, e := range p.List(n, where, key) {
		name := p.Scalar(e, where, "a "+what)
		if name == "" {
			continue
		}
		v, ok := parse(name)
		if !ok {
			p.errorf(e.Line, "%sunknown %s %q (known: %s)", where, what, name, strings.Join(known, ", "))
			continue
		}
		out = append(out, v)
	}
	return out
}

func (p *ruleParser) parse(data []byte) *Rules {
	root, empty := p.Document(data, "rule file", "version, default_queue and rules")
	if empty {
		p.errorf(1, "the file is empty: version and default_queue are required")
	}
	if root == nil {
		return nil
	}

	r := &Rules{}
	fields := p.Mapping(root, "", "version", "default_queue", "rules")
	if v, ok := fields["version"]; ok {
		r.version = p.Scalar(v.Value, "", "version")
	} else {
		p.errorf(root.Line, "missing version")
	}
	if v, ok := fields["default_queue"]; ok {
		if q := p.Scalar(v.Value, "", "default_queue"); q != "" {
			if !slices.Contains(p.known, q) {
				p.errorf(v.Value.Line, "unknown default_queue %q", q)
			}
			r.defaultQueue = q
		}
	} else {
		p.errorf(root.Line, "missing default_queue")
	}
	if v, ok := fields["rules"]; ok {
		r.rules = p.rules(v.Value)
	}
	return r
}

func (p *ruleParser) rules(n *yaml.Node) []rule {
	items := p.List(n, "", "rules")
	var out []rule
	firstName := make(map[string]int)
	for i, item := range items {
		if item.Kind != yaml.MappingNode {
			p.errorf(item.Line, "rule %d must be a mapping with name, queue and criteria", i+1)
			continue
		}
		where := fmt.Sprintf("rule %d: ", i+1)
		if name := peekName(item); name != "" {
			where = fmt.Sprintf("rule %q: ", name)
		}
		fields := p.Mapping(item, where,
			"name", "queue", "types", "channels", "categories", "category_keywords", "recipients")
		var ru rule
		if f, ok := fields["name"]; ok {
			ru.name = p.Scalar(f.Value, where, "name")
		} else {
			p.errorf(item.Line, "rule %d has no name", i+1)
		}
		if ru.name != "" {
			switch line, dup := firstName[ru.name]; {
			case dup:
				p.errorf(fields["name"].Value.Line, "duplicate rule name %q (first at line %d)", ru.name, line)
			case ru.name == DefaultRuleName:
				p.errorf(fields["name"].Value.Line, "rule name %q is reserved for cases that no rule matches", DefaultRuleName)
			default:
				firstName[ru.name] = fields["name"].Value.Line
			}
		}
		if f, ok := fields["queue"]; ok {
			if q := p.Scalar(f.Value, where, "queue"); q != "" {
				if !slices.Contains(p.known, q) {
					p.errorf(f.Value.Line, "%sunknown queue %q", where, q)
				}
				ru.queue = q
			}
		} else {
			p.errorf(item.Line, "%sno queue", where)
		}
		if f, ok := fields["types"]; ok {
			ru.types = parseNames(p, f.Value, where, "types", "type", casenames.ParseType, casenames.TypeNames())
		}
		if f, ok := fields["channels"]; ok {
			ru.channels = parseNames(p, f.Value, where, "channels", "channel", casenames.ParseChannel, casenames.ChannelNames())
		}
		if f, ok := fields["categories"]; ok {
			for _, e := range p.List(f.Value, where, "categories") {
				code := p.Scalar(e, where, "a category")
				if code == "" {
					continue
				}
				if !slices.Contains(p.categories, code) {
					p.errorf(e.Line, "%sunknown category %q (not in the configuration's categories)", where, code)
				}
				ru.categories = append(ru.categories, code)
			}
		}
		if f, ok := fields["category_keywords"]; ok {
			for _, e := range p.List(f.Value, where, "category_keywords") {
				kw := strings.ToLower(p.Scalar(e, where, "a keyword"))
				if kw == "" {
					continue
				}
				if !slices.ContainsFunc(p.categories, func(c string) bool { return strings.Contains(strings.ToLower(c), kw) }) {
					p.errorf(e.Line, "%skeyword %q occurs in none of the configuration's categories", where, kw)
				}
				ru.keywords = append(ru.keywords, kw)
			}
		}
		if f, ok := fields["recipients"]; ok {
			for _, e := range p.List(f.Value, where, "recipients") {
				addr := strings.ToLower(p.Scalar(e, where, "an address"))
				if addr == "" {
					continue
				}
				if !slices.Contains(p.mailboxes, addr) {
					p.errorf(e.Line, "%sunknown recipient %q (not one of mail.inbound.addresses)", where, addr)
				}
				ru.recipients = append(ru.recipients, addr)
			}
		}
		if !hasCriterion(fields) {
			p.errorf(item.Line, "%sno criteria: it would match every case; use default_queue for that", where)
		}
		out = append(out, ru)
	}
	return out
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

// hasCriterion reports whether a rule names any criterion with at least
// one entry. It looks at the nodes, not the parsed values, so that a rule
// whose only entries were refused is not reported twice.
func hasCriterion(fields map[string]yamldoc.Field) bool {
	for _, k := range []string{"types", "channels", "categories", "category_keywords", "recipients"} {
		if f, ok := fields[k]; ok && (f.Value.Kind != yaml.SequenceNode || len(f.Value.Content) > 0) && f.Value.Tag != "!!null" {
			return true
		}
	}
	return false
}
