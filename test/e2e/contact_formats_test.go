package e2e

// Phone numbers and e-mail addresses as citizens type them (issue 16,
// part 3), against the real binary over gRPC and REST: numbers are read
// by their country's numbering plan (libphonenumber) and stored in E.164,
// e-mail domains may be internationalised (IDNA) and a pasted display
// name is dropped. What is stored is read back with GetCase, and the
// blind index finds each case by another spelling of the same number or
// address. Refusals are InvalidArgument (HTTP 400) naming the field, and
// the binary's log never repeats a value.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

func TestContactDetailsAsCitizensTypeThem(t *testing.T) {
	// The test needs no view of the store, so it does not open the
	// embedded NATS port: the same test runs against older binaries.
	k := Start(t, Options{ExtraConfig: routingQueues})
	e := &routingEnv{intakeEnv: &intakeEnv{k: k, conns: []*grpc.ClientConn{k.Dial(t)}}, tokens: map[string]string{}}
	e.rc = routingv1.NewRoutingServiceClient(e.conns[0])
	agent := e.token(t, anna)
	protocols := []protocol{overGRPC, overREST}

	// storedContact waits until the routing read model holds the case and
	// returns its contact details as GetCase shows them to the supervisor,
	// who may read a case before it is routed to a queue.
	storedContact := func(t *testing.T, id string) *casev1.ContactDetails {
		t.Helper()
		var got *casev1.ContactDetails
		var lastErr error
		ok := eventually(10*time.Second, func() bool {
			ctx, cancel := e.as(t, sara)
			defer cancel()
			resp, err := e.rc.GetCase(ctx, &routingv1.GetCaseRequest{CaseId: id, Purpose: "kontroll av kontaktuppgifter"})
			lastErr = err
			if status.Code(err) == codes.NotFound {
				return false
			}
			require.NoError(t, err)
			got = resp.GetCase().GetPersonalData().GetContact()
			return true
		})
		require.True(t, ok, "GetCase finds case %s within 10 s (last error: %v)", id, lastErr)
		return got
	}
	// find returns the ids of the cases FindCases finds by key. The
	// supervisor reads every case, whichever queue it was routed to.
	find := func(t *testing.T, key *routingv1.FindCasesRequest) []string {
		t.Helper()
		ctx, cancel := e.as(t, sara)
		defer cancel()
		resp, err := e.rc.FindCases(ctx, key)
		require.NoError(t, err)
		var ids []string
		for _, c := range resp.GetCases() {
			ids = append(ids, c.GetCaseId())
		}
		return ids
	}
	register := func(t *testing.T, p protocol, in *intakev1.CaseInput) answer {
		t.Helper()
		return e.intakeEnv.register(t, p, agent, &intakev1.RegisterCaseRequest{Case: in})
	}
	phoneCase := func(phone string) *intakev1.CaseInput {
		return fragaInput("Telefonnummer", &intakev1.Contact{Name: "Sven Svensson", Phone: phone})
	}
	emailCase := func(email string) *intakev1.CaseInput {
		in := fragaInput("E-postadress", &intakev1.Contact{Name: "Anna Svensson", Email: email})
		in.Channel = casev1.Channel_CHANNEL_EMAIL
		return in
	}
	// values collects every value sent, to look for in the log.
	var values []string

	t.Run("phone numbers accepted and stored in E.164", func(t *testing.T) {
		swedish := map[string]bool{}
		for _, tt := range []struct{ in, want string }{
			{in: "070/123 45 67", want: "+46701234567"},
			{in: "(+46) 70 123 45 67", want: "+46701234567"},
			// A Swedish number with its country code but no "+" or "00":
			// the digits are no Swedish national number, but are one
			// after 46.
			{in: "46701234567", want: "+46701234567"},
			{in: "+46 (0)70-123 45 67", want: "+46701234567"},
			// Italy's leading 0 is part of the number, not a trunk prefix.
			{in: "+39 (0)6 1234 5678", want: "+390612345678"},
			{in: "+44 (0)20 7946 0000", want: "+442079460000"},
		} {
			values = append(values, tt.in)
			for _, p := range protocols {
				t.Run(fmt.Sprintf("%s %s", p, tt.in), func(t *testing.T) {
					a := register(t, p, phoneCase(tt.in))
					require.Equal(t, codes.OK, a.Code, "%s %q: %s %v", p, tt.in, a.Message, a.Violations)
					got := storedContact(t, a.CaseID)
					require.Equal(t, tt.want, got.GetPhone(), "%s %q is stored in E.164", p, tt.in)
					if tt.want == "+46701234567" {
						swedish[a.CaseID] = true
					}
				})
			}
		}
		// Every spelling of the number finds every case registered with
		// any spelling of it.
		for _, spelling := range []string{"+46701234567", "070-123 45 67", "46701234567"} {
			ids := find(t, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_Phone{Phone: spelling}})
			require.Len(t, ids, len(swedish), "FindCases by %q", spelling)
			for _, id := range ids {
				require.True(t, swedish[id], "FindCases by %q found case %s", spelling, id)
			}
		}
	})

	t.Run("phone numbers refused naming the field", func(t *testing.T) {
		for _, in := range []string{
			"070-123 45 6",     // a mobile number with a dropped digit
			"+999 123 456 789", // no such country code
			"+47 1234",         // too short for Norway
			"+1 555 0100",      // too short for North America
			"070-ABC 45 67",    // letters
		} {
			values = append(values, in)
			for _, p := range protocols {
				t.Run(fmt.Sprintf("%s %s", p, in), func(t *testing.T) {
					a := register(t, p, phoneCase(in))
					require.Equal(t, codes.InvalidArgument, a.Code, "%s %q: %s", p, in, a.Message)
					require.Equal(t, []string{"case.contact.phone"}, a.fields(), "%s %q", p, in)
					if p == overREST {
						require.Equal(t, http.StatusBadRequest, a.HTTPStatus)
					}
					for _, v := range a.Violations {
						require.NotContains(t, v.Description, in)
					}
				})
			}
		}
	})

	t.Run("e-mail addresses accepted and normalised", func(t *testing.T) {
		byIDN := map[string]bool{}
		for _, tt := range []struct{ in, want string }{
			{in: "anna@räksmörgås.se", want: "anna@räksmörgås.se"},
			{in: "info@brf-åkern.se", want: "info@brf-åkern.se"},
			// Domains are case-insensitive: stored in lower case.
			{in: "anna@ÖREBRO.SE", want: "anna@örebro.se"},
			// Pasted from a mail client: the address alone is kept.
			{in: "Anna Svensson <anna.svensson@example.se>", want: "anna.svensson@example.se"},
			{in: "  anna.svensson@example.se\u00a0", want: "anna.svensson@example.se"},
		} {
			values = append(values, strings.TrimSpace(tt.in))
			for _, p := range protocols {
				t.Run(fmt.Sprintf("%s %s", p, tt.in), func(t *testing.T) {
					a := register(t, p, emailCase(tt.in))
					require.Equal(t, codes.OK, a.Code, "%s %q: %s %v", p, tt.in, a.Message, a.Violations)
					got := storedContact(t, a.CaseID)
					require.Equal(t, tt.want, got.GetEmail(), "%s %q", p, tt.in)
					if strings.Contains(tt.want, "räksmörgås") {
						byIDN[a.CaseID] = true
					}
				})
			}
		}
		// The blind index compares the ASCII form of the domain, so the
		// A-label finds what was written in Unicode.
		for _, spelling := range []string{"anna@XN--RKSMRGS-5WAO1O.SE", "Anna@RÄKSMÖRGÅS.se"} {
			ids := find(t, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_Email{Email: spelling}})
			require.Len(t, ids, len(byIDN), "FindCases by %q", spelling)
			for _, id := range ids {
				require.True(t, byIDN[id], "FindCases by %q found case %s", spelling, id)
			}
		}
	})

	t.Run("e-mail addresses refused naming the field", func(t *testing.T) {
		for _, in := range []string{
			"anna.svensson@",
			"Anna <anna.svensson@example.se>, Bo <bo.berg@example.se>",
			"anna.svensson@exam_ple.se",
			"åsa.berg@example.se",
		} {
			values = append(values, in)
			for _, p := range protocols {
				t.Run(fmt.Sprintf("%s %s", p, in), func(t *testing.T) {
					a := register(t, p, emailCase(in))
					require.Equal(t, codes.InvalidArgument, a.Code, "%s %q: %s", p, in, a.Message)
					require.Equal(t, []string{"case.contact.email"}, a.fields(), "%s %q", p, in)
					if p == overREST {
						require.Equal(t, http.StatusBadRequest, a.HTTPStatus)
					}
					for _, v := range a.Violations {
						require.NotContains(t, v.Description, in)
					}
				})
			}
		}
	})

	t.Run("the log repeats no value", func(t *testing.T) {
		log := e.k.stderr.String()
		require.Contains(t, log, "InvalidArgument", "refusals are logged")
		for _, v := range values {
			require.NotContains(t, log, v, fmt.Sprintf("the log repeats %q", v))
		}
	})
}
