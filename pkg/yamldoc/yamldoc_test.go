package yamldoc_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/kontakt-se/kontakt/pkg/yamldoc"
)

// TestReaderReportsEveryProblemAtItsLine reads one document with a
// repeated key, an unknown key, an empty value and a list where a value
// belongs, and checks that each is reported at its line.
func TestReaderReportsEveryProblemAtItsLine(t *testing.T) {
	src := "name: a\nname: b\ncolour: red\nversion:\nrules: x\nitems: [1, *x]\n"
	var problems []string
	r := yamldoc.Reader{Errorf: func(line int, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%d: %s", line, fmt.Sprintf(format, args...)))
	}}
	var doc yaml.Node
	err := yaml.Unmarshal([]byte(src), &doc)
	require.Error(t, err, "the alias *x names no anchor")
	r.SyntaxError(err)
	require.Len(t, problems, 1)
	require.Contains(t, problems[0], "invalid YAML")

	problems = nil
	require.NoError(t, yaml.Unmarshal([]byte("name: a\nname: b\ncolour: red\nversion:\nrules: x\n"), &doc))
	fields := r.Mapping(doc.Content[0], "plan: ", "name", "version", "rules")
	require.Equal(t, []string{
		`2: plan: duplicate key "name" (first at line 1)`,
		`3: plan: unknown key "colour" (allowed: name, version, rules)`,
	}, problems)
	require.Equal(t, "a", r.Scalar(fields["name"].Value, "", "name"))
	require.Empty(t, r.Scalar(fields["version"].Value, "", "version"))
	require.Nil(t, r.List(fields["rules"].Value, "", "rules"))
	require.Equal(t, []string{"4: version is empty", "5: rules must be a list"}, problems[2:])
}
