package domain

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// header is lines 1 to 3 of every test plan; its first rule starts on
// line 4.
const header = "name: Test\nversion: \"1\"\nrules:\n"

// caseRule is a correct rule for class case on lines 4 to 8, so plans
// built on it are covered; the rules a test adds start on line 9.
const caseRule = `  - name: arendet
    classes: [case]
    period: 2y
    from: registration
    action: delete
`

func TestParsePlanReadsEveryField(t *testing.T) {
	p, err := ParsePlan("test.yaml", []byte(`name: Test kommun
version: 2021.1
source: Dokumenthanteringsplan
rules:
  - name: personuppgifter
    types: [fråga, felanmälan, synpunkt, brev]
    channels: [phone, email, form, letter, visit, chat]
    marked: false
    classes: [contact, identity, freetext, attachments, answer]
    period: 1y6m
    from: closure
    action: redact
    note: "Personuppgifter gallras"
  - name: arendet
    types: "*"
    channels: ["*"]
    classes: [case]
    period: 2y
    from: closure
    action: delete
  - name: statistik
    classes: [statistics, audit]
    action: keep
`))
	require.NoError(t, err)
	require.Equal(t, &Plan{
		Name:    "Test kommun",
		Version: "2021.1",
		Source:  "Dokumenthanteringsplan",
		Rules: []Rule{
			{
				Name:     "personuppgifter",
				Line:     5,
				Types:    []casev1.CaseType{fraga, felanmalan, synpunkt, brev},
				Channels: []casev1.Channel{phone, email, form, letter, visit, chat},
				Classes:  PersonalClasses(),
				Period:   Period{Years: 1, Months: 6},
				From:     AnchorClosure,
				Action:   ActionRedact,
				Note:     "Personuppgifter gallras",
			},
			{
				Name:    "arendet",
				Line:    14,
				Classes: []Class{ClassCase},
				Period:  Period{Years: 2},
				From:    AnchorClosure,
				Action:  ActionDelete,
			},
			{
				Name:    "statistik",
				Line:    21,
				Classes: []Class{ClassStatistics, ClassAudit},
				Action:  ActionKeep,
			},
		},
	}, p)
}

func TestParsePlanRefuses(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		line   int
		reason string
		count  int // number of problems; 0 means 1
	}{
		{
			name:   "an empty file",
			yaml:   "",
			line:   0,
			reason: "the file is empty",
		},
		{
			name:   "invalid YAML",
			yaml:   header + caseRule + "  - name: x: y\n",
			line:   9,
			reason: "invalid YAML: mapping values are not allowed in this context",
		},
		{
			name:   "a second document",
			yaml:   header + caseRule + "---\nname: other\n",
			line:   9,
			reason: "one YAML document",
		},
		{
			name:   "a list instead of a mapping",
			yaml:   "- name: x\n",
			line:   1,
			reason: "the file must be a mapping",
		},
		{
			name:   "an unknown top-level key",
			yaml:   "name: Test\nversion: \"1\"\nowner: kansliet\nrules:\n" + caseRule,
			line:   3,
			reason: `unknown key "owner" (allowed: name, version, source, rules)`,
		},
		{
			name:   "a duplicate top-level key",
			yaml:   header + caseRule + "version: \"2\"\n",
			line:   9,
			reason: `duplicate key "version" (first at line 2)`,
		},
		{
			name:   "an unknown rule key",
			yaml:   header + caseRule + "    colour: red\n",
			line:   9,
			reason: `rule "arendet": unknown key "colour" (allowed: name, types, channels, marked, classes, period, from, action, note)`,
		},
		{
			name:   "a missing name",
			yaml:   "version: \"1\"\nrules:\n" + caseRule,
			line:   1,
			reason: "missing name",
		},
		{
			name:   "a missing version",
			yaml:   "name: Test\nrules:\n" + caseRule,
			line:   1,
			reason: "missing version",
		},
		{
			name:   "an empty version",
			yaml:   "name: Test\nversion: \"\"\nrules:\n" + caseRule,
			line:   2,
			reason: "version is empty",
		},
		{
			name:   "missing rules",
			yaml:   "name: Test\nversion: \"1\"\n",
			line:   1,
			reason: "missing rules",
		},
		{
			name:   "an empty rules list",
			yaml:   "name: Test\nversion: \"1\"\nrules: []\n",
			line:   3,
			reason: "rules is empty",
		},
		{
			name:   "rules that are not a list",
			yaml:   "name: Test\nversion: \"1\"\nrules: all\n",
			line:   3,
			reason: "rules must be a list",
		},
		{
			name:   "a rule that is not a mapping",
			yaml:   header + caseRule + "  - arendet\n",
			line:   9,
			reason: "rule 2 must be a mapping",
		},
		{
			name:   "a rule without a name",
			yaml:   header + caseRule + "  - classes: [statistics]\n    action: keep\n",
			line:   9,
			reason: "rule 2 has no name",
		},
		{
			name:   "an empty rule name",
			yaml:   header + caseRule + "  - name: \"\"\n    classes: [statistics]\n    action: keep\n",
			line:   9,
			reason: "rule 2: name is empty",
		},
		{
			name:   "a duplicate rule name",
			yaml:   header + caseRule + "  - name: arendet\n    classes: [statistics]\n    action: keep\n",
			line:   9,
			reason: `duplicate rule name "arendet" (first at line 4)`,
		},
		{
			name:   "an unknown type",
			yaml:   header + caseRule + "  - name: s\n    types: [fraga, bygglov]\n    classes: [statistics]\n    action: keep\n",
			line:   10,
			reason: `rule "s": unknown type "bygglov" (known: fraga, felanmalan, synpunkt, brev)`,
		},
		{
			name:   "a type listed twice",
			yaml:   header + caseRule + "  - name: s\n    types: [fraga, fråga]\n    classes: [statistics]\n    action: keep\n",
			line:   10,
			reason: `rule "s": type fråga is listed twice`,
		},
		{
			name:   "a star among types",
			yaml:   header + caseRule + "  - name: s\n    types: [fraga, \"*\"]\n    classes: [statistics]\n    action: keep\n",
			line:   10,
			reason: `rule "s": "*" means every type; list nothing else with it`,
		},
		{
			name:   "types that are neither a list nor a star",
			yaml:   header + caseRule + "  - name: s\n    types: fraga\n    classes: [statistics]\n    action: keep\n",
			line:   10,
			reason: `rule "s": types must be a list or "*"`,
		},
		{
			name:   "an unknown channel",
			yaml:   header + caseRule + "  - name: s\n    channels: [fax]\n    classes: [statistics]\n    action: keep\n",
			line:   10,
			reason: `rule "s": unknown channel "fax" (known: phone, email, form, letter, visit, chat)`,
		},
		{
			name:   "marked that is not a boolean",
			yaml:   header + caseRule + "  - name: s\n    marked: yes\n    classes: [statistics]\n    action: keep\n",
			line:   10,
			reason: `rule "s": marked must be true or false`,
		},
		{
			name:   "an unknown class",
			yaml:   header + caseRule + "  - name: s\n    classes: [statistics, kontakt]\n    action: keep\n",
			line:   10,
			reason: `rule "s": unknown class "kontakt" (known: contact, identity, freetext, attachments, answer, case, audit, statistics)`,
		},
		{
			name:   "a class listed twice",
			yaml:   header + caseRule + "  - name: s\n    classes: [statistics, statistics]\n    action: keep\n",
			line:   10,
			reason: `rule "s": class statistics is listed twice`,
		},
		{
			name:   "missing classes",
			yaml:   header + caseRule + "  - name: s\n    action: keep\n",
			line:   9,
			reason: `rule "s": missing classes`,
		},
		{
			name:   "empty classes",
			yaml:   header + caseRule + "  - name: s\n    classes: []\n    action: keep\n",
			line:   10,
			reason: `rule "s": classes is empty`,
		},
		{
			name:   "an unknown anchor",
			yaml:   header + caseRule + "  - name: s\n    classes: [contact]\n    period: 1y\n    from: inaktualitet\n    action: redact\n",
			line:   12,
			reason: `rule "s": unknown from "inaktualitet" (known: registration, closure)`,
		},
		{
			name:   "a missing anchor",
			yaml:   header + caseRule + "  - name: s\n    classes: [contact]\n    period: 1y\n    action: redact\n",
			line:   9,
			reason: `rule "s": missing from`,
		},
		{
			name:   "an unknown action",
			yaml:   header + caseRule + "  - name: s\n    classes: [contact]\n    period: 1y\n    from: registration\n    action: gallra\n",
			line:   13,
			reason: `rule "s": unknown action "gallra" (known: redact, delete, preserve, keep)`,
		},
		{
			name:   "a missing action",
			yaml:   header + caseRule + "  - name: s\n    classes: [contact]\n    period: 1y\n    from: registration\n",
			line:   9,
			reason: `rule "s": missing action`,
		},
		{
			name:   "a bad period",
			yaml:   header + caseRule + "  - name: s\n    classes: [contact]\n    period: 3 months\n    from: registration\n    action: redact\n",
			line:   11,
			reason: `rule "s": bad period: "3 months": unknown unit " "`,
		},
		{
			name:   "a negative period",
			yaml:   header + caseRule + "  - name: s\n    classes: [contact]\n    period: -90d\n    from: registration\n    action: redact\n",
			line:   11,
			reason: `rule "s": bad period: "-90d" is negative`,
		},
		{
			name:   "a period without unit",
			yaml:   header + caseRule + "  - name: s\n    classes: [contact]\n    period: 90\n    from: registration\n    action: redact\n",
			line:   11,
			reason: `rule "s": bad period: "90": the number 90 has no unit (y, m or d)`,
		},
		{
			name:   "a missing period",
			yaml:   header + caseRule + "  - name: s\n    classes: [contact]\n    from: registration\n    action: redact\n",
			line:   9,
			reason: `rule "s": missing period`,
		},
		{
			name:   "redact of the case",
			yaml:   header + caseRule + "  - name: s\n    types: [fraga]\n    classes: [case]\n    period: 1y\n    from: registration\n    action: redact\n",
			line:   14,
			reason: `rule "s": action redact applies only to the personal classes (contact, identity, freetext, attachments, answer), not to case`,
		},
		{
			name:   "redact of statistics",
			yaml:   header + caseRule + "  - name: s\n    classes: [statistics]\n    period: 1y\n    from: registration\n    action: redact\n",
			line:   13,
			reason: `not to statistics`,
		},
		{
			name:   "delete of personal data",
			yaml:   header + caseRule + "  - name: s\n    classes: [identity]\n    period: 1y\n    from: registration\n    action: delete\n",
			line:   13,
			reason: `rule "s": action delete does not apply to personal class identity: use redact`,
		},
		{
			name:   "preserve of personal data",
			yaml:   header + caseRule + "  - name: s\n    classes: [freetext]\n    period: 1y\n    from: registration\n    action: preserve\n",
			line:   13,
			reason: `rule "s": action preserve does not apply to personal class freetext: use redact`,
		},
		{
			name:   "preserve of the audit trail",
			yaml:   header + caseRule + "  - name: s\n    classes: [audit]\n    period: 5y\n    from: registration\n    action: preserve\n",
			line:   13,
			reason: `rule "s": action preserve does not apply to class audit (allowed: delete, keep)`,
		},
		{
			name:   "delete of statistics",
			yaml:   header + caseRule + "  - name: s\n    classes: [statistics]\n    period: 5y\n    from: registration\n    action: delete\n",
			line:   13,
			reason: `rule "s": action delete does not apply to class statistics (allowed: keep)`,
		},
		{
			name: "two rules of equal specificity for the same class",
			yaml: header + caseRule +
				"  - name: fragor\n    types: [fraga, brev]\n    classes: [contact, identity]\n    period: 90d\n    from: registration\n    action: redact\n" +
				"  - name: brev\n    types: [brev]\n    classes: [identity]\n    period: 30d\n    from: registration\n    action: redact\n",
			line:   15,
			reason: `rules "fragor" (line 9) and "brev" (line 15) both decide identity of brev/phone cases with the same specificity; make one of them more specific`,
		},
		{
			name: "two marked rules for the case",
			yaml: header + caseRule +
				"  - name: bevaras\n    marked: true\n    classes: [case]\n    period: 2y\n    from: registration\n    action: preserve\n" +
				"  - name: bevaras-igen\n    marked: true\n    classes: [case]\n    period: 3y\n    from: registration\n    action: preserve\n",
			line:   15,
			reason: `rules "bevaras" (line 9) and "bevaras-igen" (line 15) both decide case of marked fraga/phone cases`,
		},
		{
			name: "personal data redacted after the case is deleted",
			yaml: header + caseRule +
				"  - name: personuppgifter\n    classes: [contact, identity, freetext, attachments, answer]\n    period: 3y\n    from: registration\n    action: redact\n",
			line:   9,
			reason: `rule "personuppgifter" redacts contact, identity, freetext, attachments, answer after rule "arendet" (line 4) deletes the case (redact 3y from registration, delete 2y from registration; for example fraga/phone cases)`,
		},
		{
			name: "personal data redacted from closure, the case deleted from registration",
			yaml: header + caseRule +
				"  - name: bilagor\n    classes: [attachments]\n    period: 30d\n    from: closure\n    action: redact\n",
			line:   9,
			reason: `rule "bilagor" redacts attachments after rule "arendet" (line 4) deletes the case`,
		},
		{
			name: "personal data redacted after a marked case is preserved",
			yaml: header + caseRule +
				"  - name: bevaras\n    marked: true\n    types: [synpunkt]\n    classes: [case]\n    period: 1y\n    from: registration\n    action: preserve\n" +
				"  - name: personuppgifter\n    classes: [answer]\n    period: 18m\n    from: registration\n    action: redact\n",
			line:   16,
			reason: `rule "personuppgifter" redacts answer after rule "bevaras" (line 9) archives and removes the case (redact 18m from registration, preserve 1y from registration; for example marked synpunkt/phone cases)`,
		},
		{
			name: "cases that no rule decides",
			yaml: header +
				"  - name: fragor\n    types: [fraga]\n    channels: [phone, email, form, letter, visit]\n    classes: [case]\n    period: 1y\n    from: registration\n    action: delete\n" +
				"  - name: ovriga\n    types: [felanmalan, synpunkt, brev]\n    classes: [case]\n    action: keep\n",
			line:   3,
			reason: "no rule for class case covers unmarked fraga cases from chat; add one (with action keep if nothing removes them)",
		},
		{
			name:   "a plan without any case rule",
			yaml:   header + "  - name: s\n    classes: [statistics]\n    action: keep\n",
			line:   3,
			reason: "no rule for class case covers unmarked brev cases from phone, email, form, letter, visit, chat",
			count:  4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePlan("test.yaml", []byte(tt.yaml))
			errs := planErrors(t, err)
			want := max(tt.count, 1)
			require.Len(t, errs, want, "%v", err)
			var found bool
			for _, e := range errs {
				require.Equal(t, "test.yaml", e.File)
				if e.Line == tt.line && strings.Contains(e.Reason, tt.reason) {
					found = true
				}
			}
			require.True(t, found, "want line %d: %s\ngot: %v", tt.line, tt.reason, err)
		})
	}
}

func TestParsePlanListsEveryProblem(t *testing.T) {
	_, err := ParsePlan("plan.yaml", []byte(`name: Test
rules:
  - name: a
    classes: [kontakt]
    period: 1 år
    from: registration
    action: redact
  - name: a
    classes: [case]
    period: 2y
    from: registration
    action: delete
`))
	errs := planErrors(t, err)
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	require.Equal(t, []string{
		"plan.yaml:1: missing version",
		`plan.yaml:4: rule "a": unknown class "kontakt" (known: contact, identity, freetext, attachments, answer, case, audit, statistics)`,
		`plan.yaml:5: rule "a": bad period: "1 år": unknown unit " " (use y, m or d)`,
		`plan.yaml:8: duplicate rule name "a" (first at line 3)`,
	}, got)
	require.ErrorContains(t, err, "plan.yaml:1: missing version\n")
}

func TestPlanErrorWithoutLine(t *testing.T) {
	e := &PlanError{File: "plan.yaml", Reason: "the file is empty"}
	require.Equal(t, "plan.yaml: the file is empty", e.Error())
	require.ErrorIs(t, e, ErrInvalidPlan)
}
