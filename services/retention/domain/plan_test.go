package domain

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/casenames"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

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
	chat       = casev1.Channel_CHANNEL_CHAT
)

func TestPersonalClassesAreTheSealedClasses(t *testing.T) {
	var want []Class
	for _, c := range seal.Classes() {
		want = append(want, Class(c))
	}
	require.Equal(t, want, PersonalClasses())
	for _, c := range allClasses() {
		require.Equal(t, seal.Class(c).Valid(), c.Personal(), c)
	}
}

func TestEnumsMatchTheAPI(t *testing.T) {
	// The numbers are those of kontakt.retention.v1, so conversion is a
	// cast and the zero value means "unspecified" in both.
	require.Equal(t, 1, int(AnchorRegistration))
	require.Equal(t, 2, int(AnchorClosure))
	require.Equal(t, 1, int(ActionRedact))
	require.Equal(t, 2, int(ActionDelete))
	require.Equal(t, 3, int(ActionPreserve))
	require.Equal(t, 4, int(ActionKeep))
	require.Equal(t, "registration", AnchorRegistration.String())
	require.Equal(t, "closure", AnchorClosure.String())
	require.Equal(t, "Anchor(0)", Anchor(0).String())
	require.Equal(t, "redact", ActionRedact.String())
	require.Equal(t, "delete", ActionDelete.String())
	require.Equal(t, "preserve", ActionPreserve.String())
	require.Equal(t, "keep", ActionKeep.String())
	require.Equal(t, "Action(9)", Action(9).String())
}

func TestBuiltinPlansLoad(t *testing.T) {
	require.Equal(t, []string{"molndal", "vaxjo"}, BuiltinNames())
	tests := []struct {
		name        string
		wantName    string
		wantVersion string
		wantRules   int
	}{
		{"molndal", "Mölndal stad, Kontaktcenter", "2021.1", 6},
		{"vaxjo", "Växjö kommun, Invånar- och kundservice", "2020.1", 8},
		{"", "Mölndal stad, Kontaktcenter", "2021.1", 6},
		{"Vaxjo", "Växjö kommun, Invånar- och kundservice", "2020.1", 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Builtin(tt.name)
			require.NoError(t, err)
			require.Equal(t, tt.wantName, p.Name)
			require.Equal(t, tt.wantVersion, p.Version)
			require.NotEmpty(t, p.Source)
			require.Len(t, p.Rules, tt.wantRules)
			for _, r := range p.Rules {
				require.NotEmpty(t, r.Note, "rule %s cites no source", r.Name)
				require.Positive(t, r.Line)
			}
			// Every case is decided, marked or not.
			for _, marked := range []bool{false, true} {
				for _, ty := range casenames.Types() {
					for _, ch := range casenames.Channels() {
						_, ok := p.Resolve(ty, ch, marked, ClassCase)
						require.True(t, ok, "%s", describe(ty, ch, marked))
					}
				}
			}
		})
	}
}

func TestBuiltinRefusesUnknownNames(t *testing.T) {
	_, err := Builtin("goteborg")
	require.ErrorIs(t, err, ErrUnknownPlan)
	require.ErrorContains(t, err, `"goteborg" (known: molndal, vaxjo)`)
	require.Equal(t, "molndal", DefaultPlanName)
}

func TestBuiltinPlansSayWhatTheSourcesSay(t *testing.T) {
	molndal, err := Builtin("molndal")
	require.NoError(t, err)
	vaxjo, err := Builtin("vaxjo")
	require.NoError(t, err)
	tests := []struct {
		name       string
		plan       *Plan
		t          casev1.CaseType
		ch         casev1.Channel
		marked     bool
		class      Class
		wantRule   string
		wantAction Action
		wantPeriod string
		wantFrom   Anchor
	}{
		{"mölndal personal data", molndal, brev, letter, false, ClassIdentity, "personuppgifter", ActionRedact, "90d", AnchorRegistration},
		{"mölndal chat transcript", molndal, fraga, chat, false, ClassFreeText, "chatt-konversation", ActionRedact, "30d", AnchorRegistration},
		{"mölndal chat contact", molndal, fraga, chat, false, ClassContact, "personuppgifter", ActionRedact, "90d", AnchorRegistration},
		{"mölndal case", molndal, synpunkt, visit, false, ClassCase, "arendet", ActionDelete, "2y", AnchorRegistration},
		{"mölndal marked case", molndal, synpunkt, visit, true, ClassCase, "arendet-bevaras", ActionPreserve, "2y", AnchorRegistration},
		{"mölndal audit", molndal, fraga, phone, false, ClassAudit, "aktivitetslogg", ActionDelete, "5y", AnchorRegistration},
		{"mölndal statistics", molndal, fraga, phone, false, ClassStatistics, "statistik", ActionKeep, "0d", 0},
		{"växjö question", vaxjo, fraga, form, false, ClassFreeText, "fragor-personuppgifter", ActionRedact, "6m", AnchorRegistration},
		{"växjö question attachments", vaxjo, fraga, form, false, ClassAttachments, "fragor-bilagor", ActionRedact, "1y", AnchorRegistration},
		{"växjö question case", vaxjo, fraga, form, false, ClassCase, "fragor-arendet", ActionDelete, "1y", AnchorClosure},
		{"växjö fault report data", vaxjo, felanmalan, phone, false, ClassContact, "ovriga-personuppgifter", ActionRedact, "6m", AnchorRegistration},
		{"växjö fault report", vaxjo, felanmalan, phone, false, ClassCase, "ovriga-arenden", ActionDelete, "2y", AnchorClosure},
		{"växjö complaint", vaxjo, synpunkt, email, false, ClassCase, "ovriga-arenden", ActionDelete, "2y", AnchorClosure},
		{"växjö important complaint", vaxjo, synpunkt, email, true, ClassCase, "synpunkter-av-vikt", ActionPreserve, "3y", AnchorRegistration},
		{"växjö important complaint data", vaxjo, synpunkt, email, true, ClassAnswer, "ovriga-personuppgifter", ActionRedact, "6m", AnchorRegistration},
		{"växjö marked question", vaxjo, fraga, email, true, ClassCase, "fragor-arendet", ActionDelete, "1y", AnchorClosure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := tt.plan.Resolve(tt.t, tt.ch, tt.marked, tt.class)
			require.True(t, ok)
			require.Equal(t, tt.wantRule, r.Name)
			require.Equal(t, tt.wantAction, r.Action)
			require.Equal(t, tt.wantPeriod, r.Period.String())
			require.Equal(t, tt.wantFrom, r.From)
		})
	}
}

// specificityPlan has one rule for every specificity, all for class
// contact, so Resolve's choice shows which one wins.
const specificityPlan = `name: Test
version: "1"
rules:
  - name: all
    classes: [contact, case]
    period: 1y
    from: registration
    action: keep
  - name: type
    types: [fraga]
    classes: [contact]
    period: 1y
    from: registration
    action: redact
  - name: channel
    channels: [chat]
    classes: [contact]
    period: 1y
    from: registration
    action: redact
  - name: type-and-channel
    types: [fraga]
    channels: [chat]
    classes: [contact]
    period: 1y
    from: registration
    action: redact
  - name: marked
    marked: true
    classes: [contact]
    period: 1y
    from: registration
    action: redact
  - name: marked-type
    marked: true
    types: [brev]
    classes: [contact]
    period: 1y
    from: registration
    action: redact
`

func TestResolvePicksTheMostSpecificRule(t *testing.T) {
	p, err := ParsePlan("test.yaml", []byte(specificityPlan))
	require.NoError(t, err)
	tests := []struct {
		name   string
		t      casev1.CaseType
		ch     casev1.Channel
		marked bool
		class  Class
		want   string
	}{
		{"nothing more specific", synpunkt, phone, false, ClassContact, "all"},
		{"type beats all", fraga, phone, false, ClassContact, "type"},
		{"channel beats all", synpunkt, chat, false, ClassContact, "channel"},
		{"both beat either", fraga, chat, false, ClassContact, "type-and-channel"},
		{"marked beats both", fraga, chat, true, ClassContact, "marked"},
		{"marked with type beats marked", brev, chat, true, ClassContact, "marked-type"},
		{"marked rules skip unmarked cases", brev, chat, false, ClassContact, "channel"},
		{"unmarked rules apply to marked cases", synpunkt, phone, true, ClassCase, "all"},
		{"other classes are not matched", fraga, chat, true, ClassCase, "all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := p.Resolve(tt.t, tt.ch, tt.marked, tt.class)
			require.True(t, ok)
			require.Equal(t, tt.want, r.Name)
		})
	}
	_, ok := p.Resolve(fraga, phone, false, ClassAudit)
	require.False(t, ok, "no rule names audit")
}

func TestSpecificity(t *testing.T) {
	tests := []struct {
		rule Rule
		want int
	}{
		{Rule{}, 0},
		{Rule{Types: []casev1.CaseType{fraga}}, 1},
		{Rule{Channels: []casev1.Channel{chat}}, 2},
		{Rule{Types: []casev1.CaseType{fraga}, Channels: []casev1.Channel{chat}}, 3},
		{Rule{Marked: true}, 4},
		{Rule{Marked: true, Types: []casev1.CaseType{fraga}, Channels: []casev1.Channel{chat}}, 7},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, tt.rule.Specificity(), "%+v", tt.rule)
	}
}

// planErrors unpacks ParsePlan's joined error.
func planErrors(t *testing.T, err error) []*PlanError {
	t.Helper()
	require.ErrorIs(t, err, ErrInvalidPlan)
	joined, ok := err.(interface{ Unwrap() []error })
	require.True(t, ok, "ParsePlan joins its errors: %v", err)
	var out []*PlanError
	for _, e := range joined.Unwrap() {
		var pe *PlanError
		require.True(t, errors.As(e, &pe), "%v is a *PlanError", e)
		out = append(out, pe)
	}
	return out
}
