package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// checkKeys reads the file's YAML tree against the Config struct and
// returns every problem in the file's own words: the key's dotted path and
// line, what was expected, and for a misspelt key the key that was meant.
// The YAML decoder's own messages name Go types and struct tags instead
// ("field max_request_byte not found in type config.Limits", "cannot
// unmarshal !!str `soon` into time.Duration"), which an operator cannot
// map back to the file.
func checkKeys(doc *yaml.Node) []string {
	if doc.Kind == 0 {
		return nil // an empty file: every default
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil
		}
		doc = doc.Content[0]
	}
	var problems []string
	walkKeys(doc, reflect.TypeFor[Config](), "", &problems)
	return problems
}

func walkKeys(n *yaml.Node, t reflect.Type, path string, problems *[]string) {
	bad := func(format string, args ...any) {
		what := "key " + path
		if path == "" {
			what = "the file"
		}
		*problems = append(*problems, fmt.Sprintf("line %d: %s: ", n.Line, what)+fmt.Sprintf(format, args...))
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value keeps the default
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			bad("must be a duration such as 15s or 2h")
		} else if _, err := time.ParseDuration(n.Value); err != nil {
			bad("%q is not a duration (for example 15s, 5m or 2h)", n.Value)
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			bad("must hold keys (%s), not a single value", strings.Join(keysOf(t), ", "))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			child := k.Value
			if path != "" {
				child = path + "." + k.Value
			}
			f, ok := fieldByKey(t, k.Value)
			if !ok {
				msg := fmt.Sprintf("line %d: unknown key %s", k.Line, child)
				if near := nearest(k.Value, keysOf(t)); near != "" {
					msg += fmt.Sprintf(" (did you mean %s?)", near)
				}
				*problems = append(*problems, msg)
				continue
			}
			walkKeys(v, f.Type, child, problems)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			bad("must be a list")
			return
		}
		for i, e := range n.Content {
			walkKeys(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), problems)
		}
	case t.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode {
			bad("must be a single value, not a list or keys")
		}
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64 || t.Kind() == reflect.Uint32 || t.Kind() == reflect.Int32:
		if n.Kind != yaml.ScalarNode {
			bad("must be a whole number")
		} else if _, err := strconv.ParseInt(n.Value, 0, 64); err != nil {
			bad("%q is not a whole number", n.Value)
		}
	case t.Kind() == reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			bad("%q is not true or false", n.Value)
		}
	}
}

// fieldByKey finds the struct field whose yaml key is key.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == key && tag != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// keysOf lists the yaml keys of a struct, in declaration order.
func keysOf(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}

// nearest returns the known key closest to a misspelt one, when it is
// close enough (an edit distance of at most a third of its length, and at
// most 3) to be what was meant.
func nearest(key string, known []string) string {
	best, bestDist := "", 4
	for _, k := range known {
		if d := editDistance(key, k); d < bestDist && d*3 <= max(len(k), 3) {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between two short keys.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
