package e2e

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
)

// TestCategoryMustComeFromTheConfiguredList: the category is stored in
// plain text in the case's events and in the statistics, kept for ever,
// so a public form must not be able to put free text in it. A category
// that is not in the configured list (here a name and a personnummer,
// as a careless or hostile form could send) is refused with
// InvalidArgument naming case.category, on REST, gRPC and gRPC-web, from
// forms and agents alike, and Open311 refuses an unknown service_code
// with 400; nothing is appended, the answers and the log do not repeat
// it, and it is nowhere on disk. A configured code is accepted and stored
// as it is.
func TestCategoryMustComeFromTheConfiguredList(t *testing.T) {
	e := startIntake(t)
	agent := e.k.Token(t, "anna", "agent")
	form := e.k.Token(t, "e-tjanst-kategori", "form-client")
	run := randHex(t, 4)
	pnr := personnummer(1971, 4, 2, 100+int(run[0])%800, false)
	unknown := "Kalle Mrkkategori" + run + " " + dashed(pnr)

	before := e.snapshot(t)
	felanmalan := func(category string) *intakev1.CaseInput {
		return &intakev1.CaseInput{
			Type: casev1.CaseType_CASE_TYPE_FELANMALAN, Category: category,
			Description: "Lampan vid busshållplatsen är släckt.",
			Location:    &intakev1.LocationInput{Address: "Storgatan 1"},
		}
	}
	refused := func(label string, a answer) {
		t.Helper()
		require.Equal(t, codes.InvalidArgument.String(), a.Code.String(), "%s: %s", label, a.Message)
		require.Equal(t, []string{"case.category"}, a.fields(), label)
		if a.HTTPStatus != 0 {
			require.Equal(t, http.StatusBadRequest, a.HTTPStatus, label)
		}
		require.NotContains(t, a.Message, "Mrkkategori", label)
		for _, v := range a.Violations {
			require.NotContains(t, v.Description, "Mrkkategori", label)
			require.Contains(t, v.Description, "gatubelysning", "%s: the answer lists the codes to use", label)
		}
		require.NotContains(t, string(a.Body), "Mrkkategori", label)
	}
	for _, p := range allProtocols {
		in := felanmalan(unknown)
		refused("form over "+string(p), e.submit(t, p, 0, form, &intakev1.SubmitFormRequest{IdempotencyKey: "kat-" + run + "-" + string(p), Case: in}))
		in = felanmalan(unknown)
		in.Channel = casev1.Channel_CHANNEL_PHONE
		in.Contact = &intakev1.Contact{CallerNumberWithheld: true}
		refused("agent over "+string(p), e.register(t, p, agent, &intakev1.RegisterCaseRequest{Case: in}))
		// A configured category of another case type is refused too.
		in = felanmalan("bemotande")
		refused("a feedback category on a fault report over "+string(p), e.submit(t, p, 0, form, &intakev1.SubmitFormRequest{IdempotencyKey: "kat-typ-" + run + "-" + string(p), Case: in}))
	}
	code, body := e.open311Post(t, url.Values{
		"api_key": {form}, "service_code": {unknown}, "description": {"Lampan är släckt."}, "address_string": {"Storgatan 1"},
	})
	require.Equal(t, http.StatusNotFound, code, "GeoReport: an unknown service_code is 404: %s", body)
	require.Contains(t, string(body), "service_code")
	require.NotContains(t, string(body), "Mrkkategori")
	require.Equal(t, before, e.snapshot(t), "a refused category appended or stored something")

	// The configured codes work on every protocol, and are stored as sent.
	var numbers []string
	for _, p := range allProtocols {
		a := e.submit(t, p, 0, form, &intakev1.SubmitFormRequest{IdempotencyKey: "kat-ok-" + run + "-" + string(p), Case: felanmalan("gatubelysning")})
		require.Equal(t, codes.OK, a.Code, "%s: %s %v", p, a.Message, a.Violations)
		numbers = append(numbers, a.CaseNumber)
	}
	numbers = append(numbers, e.open311Submit(t, url.Values{
		"api_key": {form}, "service_code": {"klotter"}, "description": {"Klotter på muren."}, "address_string": {"Storgatan 2"},
	}))
	var stored []string
	for _, ev := range e.events(t) {
		if ev.Type == caseRegisteredType {
			stored = append(stored, decodeRegistered(t, ev).GetCategory())
		}
	}
	require.ElementsMatch(t, []string{"gatubelysning", "gatubelysning", "gatubelysning", "klotter"}, stored)

	require.NoError(t, e.k.Stop(t))
	require.NotContains(t, e.k.stderr.String(), "Mrkkategori", "the log repeats the refused category")
	control := "mrk-control-" + run
	require.NoError(t, os.WriteFile(filepath.Join(e.k.DataDir, "control.txt"), []byte(control), 0o600))
	found := scanDir(t, e.k.DataDir, append([]string{"Mrkkategori" + run, control}, numbers...))
	require.Len(t, found[control], 1, "the scan does not see the data directory")
	for _, n := range numbers {
		require.NotEmpty(t, found[n], "case number %s is not on disk: the scan does not see the store", n)
	}
	require.Empty(t, found["Mrkkategori"+run], "the refused category is on disk")
}

// TestFormFieldsNeverPlainOnDisk puts a marker in every field a public
// form (SubmitForm over REST, gRPC and gRPC-web) or an Open311 app can
// fill, and requires that none of them is stored in plain text anywhere
// under the data directory, nor repeated in the log: the fields are
// sealed (contact details, identity number, free text, location,
// attachment names and ids), hashed (idempotency keys), checked against a
// closed list (category, content type: see
// TestCategoryMustComeFromTheConfiguredList), or not kept at all (Open311
// media_url and attributes).
func TestFormFieldsNeverPlainOnDisk(t *testing.T) {
	e := startIntake(t)
	form := e.k.Token(t, "e-tjanst-falt", "form-client")
	run := randHex(t, 4)
	markers := map[string]string{}
	m := func(field string) string {
		v := "mrk" + field + run
		markers[field] = v
		return v
	}
	var numbers []string
	for i, p := range allProtocols {
		suffix := string(rune('a' + i))
		phoneDigits := "70" + randDigits(t, 7)
		markers["phone"+suffix] = phoneDigits
		pnr := personnummer(1980+i, 3, 14, 200+i, false)
		markers["pnr"+suffix] = tenDigit(pnr)
		in := &intakev1.CaseInput{
			Type: casev1.CaseType_CASE_TYPE_FELANMALAN, Category: "park-och-lek",
			Subject: m("subject" + suffix), Description: m("description" + suffix), ChatTranscript: m("chat" + suffix),
			Contact: &intakev1.Contact{
				Name: "Mrkname" + run + suffix, Email: m("email"+suffix) + "@example.se", Phone: "0" + phoneDigits,
				IdentityNumber: pnr,
				PostalAddress:  &casev1.PostalAddress{Street: m("street" + suffix), PostalCode: "431 82", City: m("city" + suffix), Country: "SE"},
			},
			Location: &intakev1.LocationInput{Latitude: 57.655312, Longitude: 12.013987, Address: m("address" + suffix), AddressId: m("addressid" + suffix)},
			MediaUrl: "https://example.se/" + m("media"+suffix) + ".jpg",
			Attachments: []*intakev1.AttachmentInput{{
				Name: m("attname"+suffix) + ".pdf", ContentType: "application/pdf", SizeBytes: 1024, AttachmentId: m("attid" + suffix),
			}},
		}
		markers["name"+suffix] = "Mrkname" + run + suffix
		a := e.submit(t, p, 0, form, &intakev1.SubmitFormRequest{IdempotencyKey: m("idemkey" + suffix), Case: in})
		require.Equal(t, codes.OK, a.Code, "%s: %s %v", p, a.Message, a.Violations)
		numbers = append(numbers, a.CaseNumber)
	}
	o311Phone := "73" + randDigits(t, 7)
	markers["o311phone"] = o311Phone
	numbers = append(numbers, e.open311Submit(t, url.Values{
		"api_key": {form}, "service_code": {"park-och-lek"},
		"lat": {"57.70887"}, "long": {"11.97456"}, "address_string": {m("o311address")}, "address_id": {m("o311addressid")},
		"description": {m("o311description")}, "email": {m("o311email") + "@example.se"}, "phone": {"+46" + o311Phone},
		"first_name": {m("o311first")}, "last_name": {m("o311last")}, "media_url": {"https://example.se/" + m("o311media") + ".jpg"},
		"attribute[lampnummer]": {m("o311attribute")},
	}))

	require.NoError(t, e.k.Stop(t))
	logs := e.k.stderr.String()
	for field, v := range markers {
		require.NotContains(t, logs, v, "the log holds the %s marker", field)
	}
	control := "mrk-control-" + run
	require.NoError(t, os.WriteFile(filepath.Join(e.k.DataDir, "control.txt"), []byte(control), 0o600))
	needles := append([]string{control}, numbers...)
	for _, v := range markers {
		needles = append(needles, v)
	}
	found := scanDir(t, e.k.DataDir, needles)
	require.Len(t, found[control], 1, "the scan does not see the data directory")
	for _, n := range numbers {
		require.NotEmpty(t, found[n], "case number %s is not on disk: the scan does not see the store", n)
	}
	var plain []string
	for field, v := range markers {
		if len(found[v]) > 0 {
			plain = append(plain, field+" in "+strings.Join(found[v], ", "))
		}
	}
	require.Empty(t, plain, "markers on disk in plain text")
}
