// Package yamldoc reads YAML documents that people edit (routing rules,
// retention plans) strictly and with line numbers: unknown and repeated
// keys, wrong shapes and empty values are reported at their line, every
// problem at once, instead of being dropped or guessed by the YAML library.
package yamldoc

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Reader reports problems through Errorf, which the caller collects (as
// its own error type with the file name).
type Reader struct {
	Errorf func(line int, format string, args ...any)
}

// SyntaxError turns the YAML parser's "yaml: line 3: ..." into a problem
// at that line.
func (r Reader) SyntaxError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, reason, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(num); err == nil {
				r.Errorf(line, "invalid YAML: %s", reason)
				return
			}
		}
	}
	r.Errorf(0, "invalid YAML: %s", msg)
}

// Field is one key of a mapping with its value.
type Field struct {
	Key   *yaml.Node
	Value *yaml.Node
}

// Mapping returns a mapping's fields by key, refusing keys outside allowed
// and keys given twice (the YAML library would keep either silently).
// where prefixes the messages ("rule \"x\": ").
func (r Reader) Mapping(n *yaml.Node, where string, allowed ...string) map[string]Field {
	out := make(map[string]Field)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := Deref(n.Content[i]), Deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			r.Errorf(k.Line, "%skeys must be names", where)
			continue
		}
		if prev, dup := out[k.Value]; dup {
			r.Errorf(k.Line, "%sduplicate key %q (first at line %d)", where, k.Value, prev.Key.Line)
			continue
		}
		if !slices.Contains(allowed, k.Value) {
			r.Errorf(k.Line, "%sunknown key %q (allowed: %s)", where, k.Value, strings.Join(allowed, ", "))
			continue
		}
		out[k.Value] = Field{Key: k, Value: v}
	}
	return out
}

// Scalar returns a scalar's text. A date or number that YAML would type
// (version: 2021.1) is taken as written. Null, a list or a mapping is
// refused and gives "".
func (r Reader) Scalar(n *yaml.Node, where, key string) string {
	if n.Kind != yaml.ScalarNode {
		r.Errorf(n.Line, "%s%s must be a single value", where, key)
		return ""
	}
	v := strings.TrimSpace(n.Value)
	if n.Tag == "!!null" || v == "" {
		r.Errorf(n.Line, "%s%s is empty", where, key)
		return ""
	}
	return v
}

// List returns a list's entries; null gives none.
func (r Reader) List(n *yaml.Node, where, key string) []*yaml.Node {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		r.Errorf(n.Line, "%s%s must be a list", where, key)
		return nil
	}
	out := make([]*yaml.Node, 0, len(n.Content))
	for _, item := range n.Content {
		out = append(out, Deref(item))
	}
	return out
}

// Deref follows a YAML alias to the node it names.
func Deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// Document reads data as exactly one YAML document whose top level is a
// mapping and returns that mapping, or nil after reporting why not: a
// syntax error, a second document, or another shape. An empty file gives
// nil and empty, unreported, since what it lacks is the caller's to say.
// kind names the file in messages ("rule file"); keys lists what its top
// level holds ("version, default_queue and rules").
func (r Reader) Document(data []byte, kind, keys string) (root *yaml.Node, empty bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true
		}
		r.SyntaxError(err)
		return nil, false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		r.Errorf(extra.Line, "a %s holds one YAML document; remove the second", kind)
	} else if !errors.Is(err, io.EOF) {
		r.SyntaxError(err)
	}
	root = Deref(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = Deref(root.Content[0])
	}
	if root.Kind != yaml.MappingNode {
		r.Errorf(root.Line, "the file must be a mapping with %s", keys)
		return nil, false
	}
	return root, false
}

// JoinByLine joins the problems a reader collected, in line order (stable
// for one line), or returns nil when there are none, so a file's errors
// read top to bottom like the file.
func JoinByLine[E error](problems []E, line func(E) int) error {
	if len(problems) == 0 {
		return nil
	}
	sorted := slices.Clone(problems)
	slices.SortStableFunc(sorted, func(a, b E) int { return line(a) - line(b) })
	errs := make([]error, len(sorted))
	for i, e := range sorted {
		errs[i] = e
	}
	return errors.Join(errs...)
}
