package domain

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// known is the configuration the test rule files are checked against.
func known() Known {
	return Known{
		Queues:     []string{"kontaktcenter", "felanmalan", "synpunkter", "registratur"},
		Categories: []string{"gatubelysning", "vag-och-gata", "klotter", "grundskola", "forskola", "parker", "bygglov"},
		Mailboxes:  []string{"kontakt@kommun.se", "bygglov@kommun.se"},
	}
}

const exampleRules = `version: "2026-11-01"
default_queue: kontaktcenter
rules:
  - name: felanmalan-gata
    queue: felanmalan
    types: [felanmalan]            # fraga, felanmalan, synpunkt, brev
    channels: [form, phone]        # empty = any
    categories: [gatubelysning]    # exact category codes
    category_keywords: [gata, vag] # substrings, case-insensitive
  - name: felanmalan-ovrigt
    queue: felanmalan
    types: [felanmälan]
  - name: klagomal-skola
    queue: synpunkter
    types: [synpunkt]
    category_keywords: [SKOLA]
  - name: brev
    queue: registratur
    channels: [letter]
`

func TestRoutePicksTheFirstMatchingRule(t *testing.T) {
	r, err := ParseRules([]byte(exampleRules), known())
	require.NoError(t, err)
	require.Equal(t, "2026-11-01", r.Version())
	require.Equal(t, "kontaktcenter", r.DefaultQueue())

	const (
		fraga      = casev1.CaseType_CASE_TYPE_FRAGA
		felanmalan = casev1.CaseType_CASE_TYPE_FELANMALAN
		synpunkt   = casev1.CaseType_CASE_TYPE_SYNPUNKT
		brev       = casev1.CaseType_CASE_TYPE_BREV
		phone      = casev1.Channel_CHANNEL_PHONE
		email      = casev1.Channel_CHANNEL_EMAIL
		form       = casev1.Channel_CHANNEL_FORM
		letter     = casev1.Channel_CHANNEL_LETTER
		visit      = casev1.Channel_CHANNEL_VISIT
	)
	tests := []struct {
		name      string
		t         casev1.CaseType
		ch        casev1.Channel
		category  string
		wantQueue string
		wantRule  string
	}{
		{"exact category", felanmalan, form, "gatubelysning", "felanmalan", "felanmalan-gata"},
		{"keyword inside a code", felanmalan, phone, "vag-och-gata", "felanmalan", "felanmalan-gata"},
		{"the channel does not match: the next rule", felanmalan, email, "gatubelysning", "felanmalan", "felanmalan-ovrigt"},
		{"category codes are exact", felanmalan, form, "Gatubelysning", "felanmalan", "felanmalan-ovrigt"},
		{"neither code nor keyword: the next rule", felanmalan, form, "klotter", "felanmalan", "felanmalan-ovrigt"},
		{"upper-case keyword in the file", synpunkt, email, "grundskola", "synpunkter", "klagomal-skola"},
		{"type matches, keyword does not", synpunkt, email, "parker", "kontaktcenter", "default"},
		{"channel alone", fraga, letter, "", "registratur", "brev"},
		{"earlier rule wins over the channel rule", felanmalan, letter, "vag-och-gata", "felanmalan", "felanmalan-ovrigt"},
		{"type brev by e-mail", brev, email, "x", "kontaktcenter", "default"},
		{"no rule", fraga, visit, "bygglov", "kontaktcenter", "default"},
		{"unspecified type", casev1.CaseType_CASE_TYPE_UNSPECIFIED, phone, "vag-och-gata", "kontaktcenter", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, rule := r.Route(tt.t, tt.ch, tt.category, "")
			require.Equal(t, tt.wantQueue, q)
			require.Equal(t, tt.wantRule, rule)
		})
	}
}

func TestParseRulesAccepts(t *testing.T) {
	tests := []struct {
		name        string
		yaml        string
		wantVersion string
		wantRules   int
	}{
		{"no rules", "version: v1\ndefault_queue: kontaktcenter\n", "v1", 0},
		{"an empty rule list", "version: v1\ndefault_queue: kontaktcenter\nrules: []\n", "v1", 0},
		{"an unquoted date as version", "version: 2026-11-01\ndefault_queue: kontaktcenter\n", "2026-11-01", 0},
		{"a number as version", "version: 7\ndefault_queue: kontaktcenter\n", "7", 0},
		{"empty and null lists mean any", "version: v\ndefault_queue: kontaktcenter\nrules:\n  - name: a\n    queue: felanmalan\n    types: [felanmalan]\n    channels: []\n    categories:\n", "v", 1},
		{"aliases", "version: v\ndefault_queue: kontaktcenter\nrules:\n  - name: a\n    queue: &q felanmalan\n    types: &t [felanmalan]\n  - name: b\n    queue: *q\n    types: *t\n    channels: [chat]\n", "v", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRules([]byte(tt.yaml), known())
			require.NoError(t, err)
			require.Equal(t, tt.wantVersion, r.Version())
			require.Len(t, r.rules, tt.wantRules)
		})
	}
}

func TestParseRulesNamesTheLineOfEveryProblem(t *testing.T) {
	const head = "version: \"2026-11-01\"\ndefault_queue: kontaktcenter\nrules:\n"
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown queue", head + "  - name: x\n    types: [fraga]\n    channels: [phone]\n    queue: bygglov\n",
			[]string{`rules.yaml line 7: rule "x": unknown queue "bygglov"`}},
		{"unknown type", head + "  - name: x\n    queue: felanmalan\n    types:\n      - felanmalan\n      - fragor\n",
			[]string{`rules.yaml line 8: rule "x": unknown type "fragor" (known: fraga, felanmalan, synpunkt, brev)`}},
		{"unknown channel", head + "  - name: x\n    queue: felanmalan\n    channels: [phone, fax]\n",
			[]string{`rules.yaml line 6: rule "x": unknown channel "fax" (known: phone, email, form, letter, visit, chat)`}},
		{"missing version", "default_queue: kontaktcenter\n",
			[]string{"rules.yaml line 1: missing version"}},
		{"empty version", "version: \"\"\ndefault_queue: kontaktcenter\n",
			[]string{"rules.yaml line 1: version is empty"}},
		{"null version", "version:\ndefault_queue: kontaktcenter\n",
			[]string{"rules.yaml line 1: version is empty"}},
		{"version as a list", "version: [1]\ndefault_queue: kontaktcenter\n",
			[]string{"rules.yaml line 1: version must be a single value"}},
		{"missing default queue", "version: v\n",
			[]string{"rules.yaml line 1: missing default_queue"}},
		{"unknown default queue", "version: v\n\ndefault_queue: bygglov\n",
			[]string{`rules.yaml line 3: unknown default_queue "bygglov"`}},
		{"duplicate rule names", head + "  - name: x\n    queue: felanmalan\n    types: [fraga]\n  - name: x\n    queue: felanmalan\n    types: [brev]\n",
			[]string{`rules.yaml line 7: duplicate rule name "x" (first at line 4)`}},
		{"a rule without a queue", head + "  - name: x\n    types: [fraga]\n",
			[]string{`rules.yaml line 4: rule "x": no queue`}},
		{"a rule with an empty queue", head + "  - name: x\n    queue: \"\"\n    types: [fraga]\n",
			[]string{`rules.yaml line 5: rule "x": queue is empty`}},
		{"a rule without a name", head + "  - queue: felanmalan\n    types: [fraga]\n",
			[]string{"rules.yaml line 4: rule 1 has no name"}},
		{"the reserved name", head + "  - name: default\n    queue: felanmalan\n    types: [fraga]\n",
			[]string{`rules.yaml line 4: rule name "default" is reserved for cases that no rule matches`}},
		{"a rule without criteria", head + "  - name: alla\n    queue: felanmalan\n    types: []\n",
			[]string{`rules.yaml line 4: rule "alla": no criteria: it would match every case; use default_queue for that`}},
		{"unknown key at the top", "version: v\ndefault_queue: kontaktcenter\nqueues: [a]\n",
			[]string{`rules.yaml line 3: unknown key "queues" (allowed: version, default_queue, rules)`}},
		{"unknown key in a rule, named whatever the order", head + "  - queue: felanmalan\n    type: [fraga]\n    name: x\n",
			[]string{
				`rules.yaml line 4: rule "x": no criteria: it would match every case; use default_queue for that`,
				`rules.yaml line 5: rule "x": unknown key "type" (allowed: name, queue, types, channels, categories, category_keywords, recipients)`,
			}},
		{"duplicate key", "version: v\ndefault_queue: kontaktcenter\nversion: w\n",
			[]string{`rules.yaml line 3: duplicate key "version" (first at line 1)`}},
		{"rules not a list", "version: v\ndefault_queue: kontaktcenter\nrules:\n  name: x\n",
			[]string{"rules.yaml line 4: rules must be a list"}},
		{"a rule not a mapping", head + "  - felanmalan\n",
			[]string{"rules.yaml line 4: rule 1 must be a mapping with name, queue and criteria"}},
		{"types not a list", head + "  - name: x\n    queue: felanmalan\n    types: felanmalan\n",
			[]string{`rules.yaml line 6: rule "x": types must be a list`}},
		{"an empty keyword", head + "  - name: x\n    queue: felanmalan\n    category_keywords: [gata, \"\"]\n",
			[]string{`rules.yaml line 6: rule "x": a keyword is empty`}},
		{"an empty category", head + "  - name: x\n    queue: felanmalan\n    categories: [\" \"]\n",
			[]string{`rules.yaml line 6: rule "x": a category is empty`}},
		{"a category not in the configuration", head + "  - name: x\n    queue: felanmalan\n    categories:\n      - gatubelysning\n      - Gatubelysning\n",
			[]string{`rules.yaml line 8: rule "x": unknown category "Gatubelysning" (not in the configuration's categories)`}},
		{"a keyword that no category holds", head + "  - name: x\n    queue: felanmalan\n    category_keywords: [gata, väg]\n",
			[]string{`rules.yaml line 6: rule "x": keyword "väg" occurs in none of the configuration's categories`}},
		{"a syntax error", "version: v\ndefault_queue: kontaktcenter\n  rules: []\n",
			[]string{"rules.yaml line 3: invalid YAML: mapping values are not allowed in this context"}},
		{"an empty file", "",
			[]string{"rules.yaml line 1: the file is empty: version and default_queue are required"}},
		{"not a mapping", "- a\n",
			[]string{"rules.yaml line 1: the file must be a mapping with version, default_queue and rules"}},
		{"two documents", "version: v\ndefault_queue: kontaktcenter\n---\nversion: w\n",
			[]string{"rules.yaml line 3: a rule file holds one YAML document; remove the second"}},
		{"every problem at once, in line order", "rules:\n  - name: x\n    queue: bygglov\n    types: [fraga, x]\n  - name: x\n    queue: felanmalan\n    channels: [chat]\nextra: 1\n",
			[]string{
				"rules.yaml line 1: missing version",
				"rules.yaml line 1: missing default_queue",
				`rules.yaml line 3: rule "x": unknown queue "bygglov"`,
				`rules.yaml line 4: rule "x": unknown type "x" (known: fraga, felanmalan, synpunkt, brev)`,
				`rules.yaml line 5: duplicate rule name "x" (first at line 2)`,
				`rules.yaml line 8: unknown key "extra" (allowed: version, default_queue, rules)`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRules([]byte(tt.yaml), known())
			require.Nil(t, r)
			require.ErrorIs(t, err, ErrInvalidRules)
			require.Equal(t, strings.Join(tt.want, "\n"), err.Error())
			var pe *ParseError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, "rules.yaml", pe.File)
		})
	}
}

func TestParseRulesFileNamesTheFile(t *testing.T) {
	_, err := ParseRulesFile("/etc/kontakt/routing.yaml", []byte("version: v\ndefault_queue: nowhere\n"), known())
	require.EqualError(t, err, `/etc/kontakt/routing.yaml line 2: unknown default_queue "nowhere"`)
	var pe *ParseError
	require.True(t, errors.As(err, &pe))
	require.Equal(t, 2, pe.Line)
}

func TestParseRulesWithoutConfiguredQueues(t *testing.T) {
	_, err := ParseRules([]byte("version: v\ndefault_queue: kontaktcenter\n"), Known{})
	require.EqualError(t, err, `rules.yaml line 2: unknown default_queue "kontaktcenter"`)
}

func TestParseRulesWithoutConfiguredCategories(t *testing.T) {
	_, err := ParseRules([]byte("version: v\ndefault_queue: kontaktcenter\nrules:\n  - {name: x, queue: felanmalan, categories: [gatubelysning]}\n"), Known{Queues: known().Queues})
	require.EqualError(t, err, `rules.yaml line 4: rule "x": unknown category "gatubelysning" (not in the configuration's categories)`)
}

func TestParseErrorWithoutALine(t *testing.T) {
	require.EqualError(t, &ParseError{File: "rules.yaml", Reason: "x"}, "rules.yaml: x")
}

func TestDefaultRules(t *testing.T) {
	tests := []struct {
		name   string
		known  []string
		t      casev1.CaseType
		queue  string
		ruleID string
	}{
		{"felanmälan to its queue", []string{"kontaktcenter", "felanmalan", "synpunkter"}, casev1.CaseType_CASE_TYPE_FELANMALAN, "felanmalan", "felanmalan"},
		{"synpunkt to its queue", []string{"kontaktcenter", "felanmalan", "synpunkter"}, casev1.CaseType_CASE_TYPE_SYNPUNKT, "synpunkter", "synpunkter"},
		{"fråga to the default", []string{"kontaktcenter", "felanmalan", "synpunkter"}, casev1.CaseType_CASE_TYPE_FRAGA, "kontaktcenter", "default"},
		{"felanmälan without its queue", []string{"kontaktcenter", "synpunkter"}, casev1.CaseType_CASE_TYPE_FELANMALAN, "kontaktcenter", "default"},
		{"synpunkt without its queue", []string{"kontaktcenter"}, casev1.CaseType_CASE_TYPE_SYNPUNKT, "kontaktcenter", "default"},
		{"no queues known", nil, casev1.CaseType_CASE_TYPE_FELANMALAN, "kontaktcenter", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := DefaultRules("kontaktcenter", tt.known...)
			require.Equal(t, BuiltinRulesVersion, r.Version())
			require.Equal(t, "kontaktcenter", r.DefaultQueue())
			q, rule := r.Route(tt.t, casev1.Channel_CHANNEL_PHONE, "x", "")
			require.Equal(t, tt.queue, q)
			require.Equal(t, tt.ruleID, rule)
		})
	}
	t.Run("the default queue named felanmalan needs no rule", func(t *testing.T) {
		q, rule := DefaultRules("felanmalan", "felanmalan").Route(casev1.CaseType_CASE_TYPE_FELANMALAN, casev1.Channel_CHANNEL_FORM, "", "")
		require.Equal(t, "felanmalan", q)
		require.Equal(t, "default", rule)
	})
}

func TestRouteByRecipient(t *testing.T) {
	r, err := ParseRules([]byte(`version: "1"
default_queue: kontaktcenter
rules:
  - name: bygglov-mail
    queue: synpunkter
    recipients: [Bygglov@Kommun.se]
`), known())
	require.NoError(t, err)
	tests := []struct {
		name, mailbox, wantRule string
	}{
		{"the address, in any case", "BYGGLOV@kommun.se", "bygglov-mail"},
		{"another of the addresses", "kontakt@kommun.se", "default"},
		{"not a mail case", "", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, rule := r.Route(casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_EMAIL, "bygglov", tt.mailbox)
			require.Equal(t, tt.wantRule, rule)
		})
	}
	_, err = ParseRules([]byte("version: \"1\"\ndefault_queue: kontaktcenter\nrules:\n  - name: x\n    queue: synpunkter\n    recipients: [annan@kommun.se]\n"), known())
	require.EqualError(t, err, `rules.yaml line 6: rule "x": unknown recipient "annan@kommun.se" (not one of mail.inbound.addresses)`)
}
