package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// TestReadmeListsEveryKey reads the configuration block of the README and
// checks that it names every key Config has (a list's keys in at least one
// of its entries) and none it does not: the README is where an operator
// learns the keys.
func TestReadmeListsEveryKey(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	m := regexp.MustCompile("(?s)## Configuration.*?```yaml\n(.*?)```").FindSubmatch(raw)
	require.NotNil(t, m, "the README's Configuration section has a yaml block")
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal(m[1], &doc))
	require.Empty(t, checkKeys(&doc), "the README's block is a valid configuration")

	documented := map[string]bool{}
	var collect func(n *yaml.Node, path string)
	collect = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			collect(n.Content[0], path)
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := strings.TrimPrefix(path+"."+n.Content[i].Value, ".")
				documented[p] = true
				collect(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for _, e := range n.Content {
				collect(e, path+"[]")
			}
		}
	}
	collect(&doc, "")
	// The README names list members in a comment where its example list
	// leaves them out; count a key named in a comment on its list's line.
	for _, line := range regexp.MustCompile(`(?m)^\s*(\w+):\s*#(.*)$`).FindAllSubmatch(m[1], -1) {
		for _, named := range regexp.MustCompile(`\b(\w+): `).FindAllSubmatch(line[2], -1) {
			for p := range documented {
				if p == string(line[1]) || strings.HasSuffix(p, "."+string(line[1])) {
					documented[p+"[]."+string(named[1])] = true
				}
			}
		}
	}

	var missing []string
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for i := range t.NumField() {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			p := strings.TrimPrefix(path+"."+tag, ".")
			ft := t.Field(i).Type
			switch {
			case ft.Kind() == reflect.Struct && ft != durationType:
				walk(ft, p)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				if !documented[p] {
					missing = append(missing, p)
				}
				walk(ft.Elem(), p+"[]")
			default:
				if !documented[p] {
					missing = append(missing, p)
				}
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	slices.Sort(missing)
	require.Empty(t, missing, "keys of Config the README's configuration block does not name")
}
