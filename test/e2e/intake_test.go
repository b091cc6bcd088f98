package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	"github.com/kontakt-se/kontakt/pkg/server"
)

var (
	caseTypes = []casev1.CaseType{
		casev1.CaseType_CASE_TYPE_FRAGA,
		casev1.CaseType_CASE_TYPE_FELANMALAN,
		casev1.CaseType_CASE_TYPE_SYNPUNKT,
		casev1.CaseType_CASE_TYPE_BREV,
	}
	agentChannels = []casev1.Channel{
		casev1.Channel_CHANNEL_PHONE,
		casev1.Channel_CHANNEL_EMAIL,
		casev1.Channel_CHANNEL_LETTER,
		casev1.Channel_CHANNEL_VISIT,
		casev1.Channel_CHANNEL_CHAT,
	}
	categories = map[casev1.CaseType]string{
		casev1.CaseType_CASE_TYPE_FRAGA:      "avfall",
		casev1.CaseType_CASE_TYPE_FELANMALAN: "gatubelysning",
		casev1.CaseType_CASE_TYPE_SYNPUNKT:   "bemotande",
		casev1.CaseType_CASE_TYPE_BREV:       "ovrigt",
	}
)

// point is a location with the coarse cell it must be stored as.
type point struct {
	lat, long           float64
	coarseLat, coarseLo float64
}

var points = map[casev1.Channel]point{
	casev1.Channel_CHANNEL_PHONE: {57.70887, 11.97456, 57.71, 11.97},
	casev1.Channel_CHANNEL_EMAIL: {59.33459, 18.06324, 59.33, 18.06},
	casev1.Channel_CHANNEL_CHAT:  {55.60498, 13.00382, 55.60, 13.00},
	casev1.Channel_CHANNEL_FORM:  {63.82584, 20.26301, 63.83, 20.26},
}

// agentCase is a valid case of one type taken through one agent channel.
func agentCase(t *testing.T, typ casev1.CaseType, ch casev1.Channel) (*intakev1.CaseInput, *point) {
	in := &intakev1.CaseInput{
		Type:        typ,
		Channel:     ch,
		Category:    categories[typ],
		Subject:     "Ärende om " + strings.ToLower(categories[typ]),
		Description: fmt.Sprintf("Invånaren hörde av sig om %s via %s.", typ, ch),
	}
	switch ch {
	case casev1.Channel_CHANNEL_PHONE:
		if typ == casev1.CaseType_CASE_TYPE_SYNPUNKT {
			in.Contact = &intakev1.Contact{CallerNumberWithheld: true}
		} else {
			in.Contact = &intakev1.Contact{Name: "Sven Svensson", Phone: "070-123 45 67"}
		}
	case casev1.Channel_CHANNEL_EMAIL:
		in.Contact = &intakev1.Contact{Name: "Anna Andersson", Email: "anna.andersson@example.se"}
	case casev1.Channel_CHANNEL_LETTER:
		in.Contact = &intakev1.Contact{
			Name:           "Karin Karlsson",
			IdentityNumber: dashed(personnummer(1981, 12, 18, 238, false)),
			PostalAddress:  &casev1.PostalAddress{Street: "Storgatan 1", PostalCode: "431 82", City: "Mölndal"},
		}
	case casev1.Channel_CHANNEL_VISIT:
		if typ == casev1.CaseType_CASE_TYPE_FRAGA {
			in.Contact = &intakev1.Contact{Phone: "+46 8 123 456 78"}
		}
	case casev1.Channel_CHANNEL_CHAT:
		in.ChatTranscript = "Invånare: Hej, jag har en fråga.\nAgent: Hej! Vad gäller det?"
		in.Contact = &intakev1.Contact{Email: "chatt.besokare@example.se"}
	}
	var p *point
	switch typ {
	case casev1.CaseType_CASE_TYPE_FELANMALAN:
		if pt, ok := points[ch]; ok {
			p = &pt
			in.Location = &intakev1.LocationInput{Latitude: pt.lat, Longitude: pt.long, Address: "Kungsportsavenyen 1"}
		} else {
			in.Location = &intakev1.LocationInput{Address: "Storgatan 5, Mölndal"}
		}
	case casev1.CaseType_CASE_TYPE_BREV:
		in.Attachments = []*intakev1.AttachmentInput{{
			Name: "skannat-brev.pdf", ContentType: "application/pdf", SizeBytes: 123456, AttachmentId: "att-" + randHex(t, 8),
		}}
		if ch == casev1.Channel_CHANNEL_LETTER {
			// A letter with only attachments: no free text at all.
			in.Subject, in.Description = "", ""
		}
	}
	return in, p
}

// formCase is a valid e-service form case of one type.
func formCase(t *testing.T, typ casev1.CaseType, setChannel bool) (*intakev1.CaseInput, *point) {
	in := &intakev1.CaseInput{
		Type:        typ,
		Category:    categories[typ],
		Subject:     "E-tjänst: " + categories[typ],
		Description: fmt.Sprintf("Inskickat via e-tjänst (%s).", typ),
		Contact:     &intakev1.Contact{Name: "Eva Form", Email: "eva.form@example.se"},
	}
	if setChannel {
		in.Channel = casev1.Channel_CHANNEL_FORM
	}
	var p *point
	switch typ {
	case casev1.CaseType_CASE_TYPE_FELANMALAN:
		pt := points[casev1.Channel_CHANNEL_FORM]
		p = &pt
		in.Location = &intakev1.LocationInput{Latitude: pt.lat, Longitude: pt.long}
	case casev1.CaseType_CASE_TYPE_BREV:
		in.Attachments = []*intakev1.AttachmentInput{{
			Name: "bilaga.png", ContentType: "image/png", SizeBytes: 2048, AttachmentId: "att-" + randHex(t, 8),
		}}
	}
	return in, p
}

// registration is one case the test registered and what the store must
// hold for it.
type registration struct {
	label        string
	in           *intakev1.CaseInput
	channel      casev1.Channel
	by           string
	coarse       *point
	caseID       string
	number       string
	registeredAt time.Time
}

// personalValues are the plain personal values of a case input, which
// must never appear in its event.
func personalValues(in *intakev1.CaseInput) []string {
	c := in.GetContact()
	vals := []string{
		c.GetName(), c.GetEmail(), c.GetPhone(), c.GetIdentityNumber(),
		strings.ReplaceAll(c.GetIdentityNumber(), "-", ""),
		c.GetPostalAddress().GetStreet(), c.GetPostalAddress().GetCity(),
		in.GetSubject(), in.GetDescription(), in.GetChatTranscript(), in.GetLocation().GetAddress(),
	}
	for _, a := range in.GetAttachments() {
		vals = append(vals, a.GetName())
	}
	out := vals[:0]
	for _, v := range vals {
		if len(v) >= 5 {
			out = append(out, v)
		}
	}
	return out
}

// requireSealed checks one sealed data class of a case.
func requireSealed(t *testing.T, label, class string, want bool, sp *casev1.SealedPersonalData, caseID string, personal []string) {
	t.Helper()
	if !want {
		require.Nil(t, sp, "%s: %s must be absent when no such data was given", label, class)
		return
	}
	require.NotNil(t, sp, "%s: %s must be sealed", label, class)
	require.NotEmpty(t, sp.GetKeyId(), "%s: %s key id", label, class)
	require.True(t, strings.HasPrefix(sp.GetKeyId(), caseID), "%s: %s key id %q is not the case's own", label, class, sp.GetKeyId())
	// Nonce (12) and tag (16) at least, and something sealed in between.
	require.Greater(t, len(sp.GetCiphertext()), 12+16, "%s: %s ciphertext", label, class)
	for _, v := range personal {
		require.NotContains(t, sp.GetKeyId(), v, "%s: %s key id names a person", label, class)
		require.False(t, bytes.Contains(sp.GetCiphertext(), []byte(v)), "%s: %s holds %q in plain text", label, class, v)
	}
}

func checkRegistered(t *testing.T, r registration, ev storedEvent) {
	t.Helper()
	cr := decodeRegistered(t, ev)
	in := r.in
	require.Equal(t, r.caseID, cr.GetCaseId(), r.label)
	require.Equal(t, r.number, cr.GetCaseNumber(), r.label)
	require.Equal(t, in.GetType(), cr.GetType(), r.label)
	require.Equal(t, r.channel, cr.GetChannel(), r.label)
	require.Equal(t, strings.TrimSpace(in.GetCategory()), cr.GetCategory(), r.label)
	require.True(t, r.registeredAt.Equal(cr.GetRegisteredAt().AsTime()), "%s: registered_at %s in the store, %s in the answer", r.label, cr.GetRegisteredAt().AsTime(), r.registeredAt)
	require.Contains(t, cr.GetRegisteredBy(), r.by, r.label)
	require.Equal(t, in.GetContact().GetCallerNumberWithheld(), cr.GetCallerNumberWithheld(), r.label)

	personal := personalValues(in)
	c := in.GetContact()
	pa := c.GetPostalAddress()
	hasContact := c.GetName() != "" || c.GetEmail() != "" || c.GetPhone() != "" || pa.GetStreet() != "" || pa.GetCity() != "" || pa.GetPostalCode() != ""
	hasFreeText := in.GetSubject() != "" || in.GetDescription() != "" || in.GetChatTranscript() != "" || in.GetLocation() != nil
	requireSealed(t, r.label, "contact", hasContact, cr.GetContact(), r.caseID, personal)
	requireSealed(t, r.label, "identity", c.GetIdentityNumber() != "", cr.GetIdentity(), r.caseID, personal)
	requireSealed(t, r.label, "free_text", hasFreeText, cr.GetFreeText(), r.caseID, personal)
	requireSealed(t, r.label, "attachment_names", len(in.GetAttachments()) > 0, cr.GetAttachmentNames(), r.caseID, personal)
	// Each class has its own key, so that a class can be redacted alone.
	keyIDs := map[string]string{}
	for class, sp := range map[string]*casev1.SealedPersonalData{
		"contact": cr.GetContact(), "identity": cr.GetIdentity(), "free_text": cr.GetFreeText(), "attachment_names": cr.GetAttachmentNames(),
	} {
		if sp == nil {
			continue
		}
		other, dup := keyIDs[sp.GetKeyId()]
		require.False(t, dup, "%s: %s and %s share key id %s", r.label, class, other, sp.GetKeyId())
		keyIDs[sp.GetKeyId()] = class
	}

	require.Len(t, cr.GetAttachments(), len(in.GetAttachments()), r.label)
	for i, a := range in.GetAttachments() {
		got := cr.GetAttachments()[i]
		// The form's id for the file is sealed with its name (it may name
		// the citizen); the event keeps only the type and the size.
		require.Empty(t, got.GetAttachmentId(), r.label)
		require.Equal(t, a.GetContentType(), got.GetContentType(), r.label)
		require.Equal(t, a.GetSizeBytes(), got.GetSizeBytes(), r.label)
	}

	if r.coarse == nil {
		require.Nil(t, cr.GetCoarseLocation(), "%s: no coordinates were given", r.label)
	} else {
		require.NotNil(t, cr.GetCoarseLocation(), r.label)
		require.InDelta(t, r.coarse.coarseLat, cr.GetCoarseLocation().GetLatitude(), 1e-9, "%s: coarse latitude", r.label)
		require.InDelta(t, r.coarse.coarseLo, cr.GetCoarseLocation().GetLongitude(), 1e-9, "%s: coarse longitude", r.label)
	}

	// Nothing personal in the plain bytes of the event or its headers.
	for _, v := range personal {
		require.False(t, bytes.Contains(ev.Data, []byte(v)), "%s: event holds %q in plain text", r.label, v)
		for name, hv := range ev.Header {
			require.NotContains(t, strings.Join(hv, ","), v, "%s: header %s holds personal data", r.label, name)
		}
	}
}

// TestIntakeEveryTypeAndChannel registers every case type through every
// agent channel (rotating the protocol), through the form API over REST and
// gRPC, and through Open311, then checks the numbers and the store.
func TestIntakeEveryTypeAndChannel(t *testing.T) {
	e := startIntake(t)
	agent := e.k.Token(t, "anna", "agent")
	const formClient = "e-tjanst-synpunkter"
	form := e.k.Token(t, formClient, "form-client")
	year := stockholmYear(t)

	var regs []registration
	i := 0
	for _, typ := range caseTypes {
		for _, ch := range agentChannels {
			p := allProtocols[i%len(allProtocols)]
			i++
			in, pt := agentCase(t, typ, ch)
			label := fmt.Sprintf("RegisterCase %s/%s over %s", typ, ch, p)
			before := time.Now()
			a := e.register(t, p, agent, &intakev1.RegisterCaseRequest{Case: in})
			require.Equal(t, codes.OK, a.Code, "%s: %s %v", label, a.Message, a.Violations)
			require.NotEmpty(t, a.CaseID, label)
			require.False(t, a.RegisteredAt.Before(before.Add(-time.Second)) || a.RegisteredAt.After(time.Now().Add(time.Second)), "%s: registered_at %s", label, a.RegisteredAt)
			regs = append(regs, registration{label: label, in: in, channel: ch, by: "anna", coarse: pt, caseID: a.CaseID, number: a.CaseNumber, registeredAt: a.RegisteredAt})
		}
	}
	for _, p := range []protocol{overREST, overGRPC} {
		for j, typ := range caseTypes {
			in, pt := formCase(t, typ, j%2 == 0)
			label := fmt.Sprintf("SubmitForm %s over %s", typ, p)
			a := e.submit(t, p, 0, form, &intakev1.SubmitFormRequest{IdempotencyKey: "every-" + randHex(t, 8), Case: in})
			require.Equal(t, codes.OK, a.Code, "%s: %s %v", label, a.Message, a.Violations)
			require.False(t, a.Replayed, label)
			regs = append(regs, registration{label: label, in: in, channel: casev1.Channel_CHANNEL_FORM, by: formClient, coarse: pt, caseID: e.caseIDOfNumber(t, a.CaseNumber), number: a.CaseNumber, registeredAt: a.RegisteredAt})
		}
	}

	// Open311: a street light reported by a fault-reporting app.
	const (
		o311Description = "Lampan vid busshållplatsen lyser inte sedan i tisdags."
		o311Email       = "lamp.anmalare@example.se"
	)
	pt := point{58.41086, 15.62157, 58.41, 15.62}
	number := e.open311Submit(t, url.Values{
		"api_key": {form}, "service_code": {"gatubelysning"},
		"lat": {"58.41086"}, "long": {"15.62157"},
		"description": {o311Description}, "email": {o311Email},
	})
	code, body := e.open311Get(t, form, number)
	require.Equal(t, http.StatusOK, code, string(body))
	var got []map[string]any
	require.NoError(t, json.Unmarshal(body, &got), string(body))
	require.Len(t, got, 1, string(body))
	require.Equal(t, number, got[0]["service_request_id"])
	require.Equal(t, "open", got[0]["status"])
	require.Equal(t, "gatubelysning", got[0]["service_code"])
	for _, personal := range []string{o311Description, o311Email, "58.41086", "15.62157"} {
		require.NotContains(t, string(body), personal, "Open311 answer holds personal data")
	}
	o311ID := e.caseIDOfNumber(t, number)
	regs = append(regs, registration{
		label: "Open311 gatubelysning",
		in: &intakev1.CaseInput{
			Type: casev1.CaseType_CASE_TYPE_FELANMALAN, Category: "gatubelysning", Description: o311Description,
			Contact:  &intakev1.Contact{Email: o311Email},
			Location: &intakev1.LocationInput{Latitude: pt.lat, Longitude: pt.long},
		},
		channel: casev1.Channel_CHANNEL_FORM, by: formClient, coarse: &pt, caseID: o311ID, number: number,
	})

	// Neither the tokens (Open311 takes one as a parameter) nor the
	// reports are logged.
	logs := e.k.stderr.String()
	for _, secret := range []string{agent, form, o311Description, o311Email} {
		require.NotContains(t, logs, secret, "the log holds a token or personal data")
	}

	// Case numbers: KC-<year>-NNNNNN, unique, strictly increasing.
	var last uint64
	seenNumbers, seenIDs := map[string]bool{}, map[string]bool{}
	for _, r := range regs {
		seq := caseNumberSeq(t, year, r.number)
		require.Greater(t, seq, last, "%s: %s does not follow the previous number", r.label, r.number)
		last = seq
		require.False(t, seenNumbers[r.number], "%s: duplicate number %s", r.label, r.number)
		require.False(t, seenIDs[r.caseID], "%s: duplicate case id %s", r.label, r.caseID)
		seenNumbers[r.number], seenIDs[r.caseID] = true, true
		require.Equal(t, r.caseID, e.caseIDOfNumber(t, r.number), "%s: number maps to another case", r.label)
	}

	// The store: exactly one CaseRegistered per case (routing adds its
	// own CaseRouted, which is not intake's to check).
	evs := e.events(t)
	bySubject := map[string][]storedEvent{}
	for _, ev := range evs {
		if ev.Type == caseRegisteredType {
			bySubject[ev.Subject] = append(bySubject[ev.Subject], ev)
		}
	}
	require.Equal(t, len(regs), countRegistered(evs), "CaseRegistered events in the store")
	require.Len(t, bySubject, len(regs), "case subjects in the store")
	allKeyIDs := map[string]string{}
	for _, r := range regs {
		got := bySubject[caseSubjectPrefix+r.caseID]
		require.Len(t, got, 1, "%s: events on its subject", r.label)
		if r.registeredAt.IsZero() { // Open311 does not answer the time.
			r.registeredAt = decodeRegistered(t, got[0]).GetRegisteredAt().AsTime()
		}
		checkRegistered(t, r, got[0])
		cr := decodeRegistered(t, got[0])
		for _, sp := range []*casev1.SealedPersonalData{cr.GetContact(), cr.GetIdentity(), cr.GetFreeText(), cr.GetAttachmentNames()} {
			if sp == nil {
				continue
			}
			other, dup := allKeyIDs[sp.GetKeyId()]
			require.False(t, dup, "%s and %s share key id %s", r.label, other, sp.GetKeyId())
			allKeyIDs[sp.GetKeyId()] = r.label
		}
	}
}

// badCase is one request intake must refuse.
type badCase struct {
	name string
	// Exactly one of register and submit is set.
	register func() *intakev1.RegisterCaseRequest
	submit   func() *intakev1.SubmitFormRequest
	fields   []string
	// secrets must not be echoed in the answer.
	secrets []string
}

func TestIntakeRefusesBadInput(t *testing.T) {
	e := startIntake(t)
	agent := e.k.Token(t, "anna", "agent")
	form := e.k.Token(t, "e-tjanst-bad", "form-client")

	validPnr := personnummer(1975, 3, 14, 482, false)
	badCheck := validPnr[:11] + string([]byte{'0' + (validPnr[11]-'0'+1)%10})
	future := personnummer(time.Now().Year()+1, 6, 1, 123, false)
	day95 := tenDigit(personnummer(1981, 12, 35, 238, true)) // day field 95
	require.Equal(t, "95", day95[4:6])

	base := func(ch casev1.Channel) *intakev1.CaseInput {
		in := &intakev1.CaseInput{
			Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: ch, Category: "forskola-och-skola",
			Description: "Fråga om skolskjuts.",
		}
		switch ch {
		case casev1.Channel_CHANNEL_EMAIL:
			in.Contact = &intakev1.Contact{Email: "fraga@example.se"}
		case casev1.Channel_CHANNEL_PHONE:
			in.Contact = &intakev1.Contact{Phone: "0701234567"}
		}
		return in
	}
	reg := func(ch casev1.Channel, mutate func(*intakev1.CaseInput)) func() *intakev1.RegisterCaseRequest {
		return func() *intakev1.RegisterCaseRequest {
			in := base(ch)
			mutate(in)
			return &intakev1.RegisterCaseRequest{Case: in}
		}
	}
	attachment := func(ct string, size int64) *intakev1.AttachmentInput {
		return &intakev1.AttachmentInput{Name: "bilaga", ContentType: ct, SizeBytes: size, AttachmentId: "att-1"}
	}
	visit, phone, email := casev1.Channel_CHANNEL_VISIT, casev1.Channel_CHANNEL_PHONE, casev1.Channel_CHANNEL_EMAIL

	cases := []badCase{
		{name: "visit with name", register: reg(visit, func(in *intakev1.CaseInput) {
			in.Contact = &intakev1.Contact{Name: "Nils Besökare"}
		}), fields: []string{"case.contact.name"}, secrets: []string{"Nils Besökare"}},
		{name: "visit with identity number", register: reg(visit, func(in *intakev1.CaseInput) {
			in.Contact = &intakev1.Contact{IdentityNumber: dashed(validPnr)}
		}), fields: []string{"case.contact.identity_number"}, secrets: []string{validPnr[:8]}},
		{name: "phone without number or withheld flag", register: reg(phone, func(in *intakev1.CaseInput) {
			in.Contact = nil
		}), fields: []string{"case.contact.phone"}},
		{name: "withheld flag and a number", register: reg(phone, func(in *intakev1.CaseInput) {
			in.Contact = &intakev1.Contact{Phone: "0709998877", CallerNumberWithheld: true}
		}), fields: []string{"case.contact.phone"}, secrets: []string{"0709998877", "709998877"}},
		{name: "personnummer with a bad check digit", register: reg(email, func(in *intakev1.CaseInput) {
			in.Contact.IdentityNumber = badCheck
		}), fields: []string{"case.contact.identity_number"}, secrets: []string{badCheck[:8]}},
		{name: "personnummer dated in the future", register: reg(email, func(in *intakev1.CaseInput) {
			in.Contact.IdentityNumber = dashed(future)
		}), fields: []string{"case.contact.identity_number"}, secrets: []string{future[:8]}},
		{name: "samordningsnummer with day 95", register: reg(email, func(in *intakev1.CaseInput) {
			in.Contact.IdentityNumber = dashed(day95)
		}), fields: []string{"case.contact.identity_number"}, secrets: []string{day95[:6]}},
		{name: "bad e-mail", register: reg(email, func(in *intakev1.CaseInput) {
			in.Contact.Email = "inte-en-adress.example.se"
		}), fields: []string{"case.contact.email"}, secrets: []string{"inte-en-adress"}},
		{name: "bad phone", register: reg(phone, func(in *intakev1.CaseInput) {
			in.Contact.Phone = "12345"
		}), fields: []string{"case.contact.phone"}, secrets: []string{"12345"}},
		{name: "description of 4001 characters", register: reg(email, func(in *intakev1.CaseInput) {
			in.Description = strings.Repeat("å", 4001)
		}), fields: []string{"case.description"}, secrets: []string{strings.Repeat("å", 10)}},
		{name: "felanmalan without location", register: reg(email, func(in *intakev1.CaseInput) {
			in.Type = casev1.CaseType_CASE_TYPE_FELANMALAN
		}), fields: []string{"case.location"}},
		{name: "felanmalan with an empty location", register: reg(email, func(in *intakev1.CaseInput) {
			in.Type = casev1.CaseType_CASE_TYPE_FELANMALAN
			in.Location = &intakev1.LocationInput{Address: "   "}
		}), fields: []string{"case.location"}},
		{name: "executable attachment", register: reg(email, func(in *intakev1.CaseInput) {
			in.Attachments = []*intakev1.AttachmentInput{attachment("application/x-msdownload", 1000)}
		}), fields: []string{"case.attachments[0].content_type"}},
		{name: "attachment over 25 MiB", register: reg(email, func(in *intakev1.CaseInput) {
			in.Attachments = []*intakev1.AttachmentInput{attachment("application/pdf", 26214401)}
		}), fields: []string{"case.attachments[0].size_bytes"}},
		{name: "missing category", register: reg(email, func(in *intakev1.CaseInput) {
			in.Category = ""
		}), fields: []string{"case.category"}},
		{name: "blank category", register: reg(email, func(in *intakev1.CaseInput) {
			in.Category = "   "
		}), fields: []string{"case.category"}},
		{name: "missing type", register: reg(email, func(in *intakev1.CaseInput) {
			in.Type = casev1.CaseType_CASE_TYPE_UNSPECIFIED
		}), fields: []string{"case.type"}},
		{name: "unknown type", register: reg(email, func(in *intakev1.CaseInput) {
			in.Type = 99
		}), fields: []string{"case.type"}},
		{name: "missing channel", register: reg(casev1.Channel_CHANNEL_UNSPECIFIED, func(in *intakev1.CaseInput) {}),
			fields: []string{"case.channel"}},
		{name: "no case at all", register: func() *intakev1.RegisterCaseRequest { return &intakev1.RegisterCaseRequest{} },
			fields: []string{"case"}},
		{name: "no subject, description or transcript", register: reg(email, func(in *intakev1.CaseInput) {
			in.Description = "  "
		}), fields: []string{"case.description"}},
		{name: "e-mail case without e-mail", register: reg(email, func(in *intakev1.CaseInput) {
			in.Contact = &intakev1.Contact{Name: "Utan Adress"}
		}), fields: []string{"case.contact.email"}, secrets: []string{"Utan Adress"}},
		{name: "chat without transcript", register: reg(casev1.Channel_CHANNEL_CHAT, func(in *intakev1.CaseInput) {}),
			fields: []string{"case.chat_transcript"}},
		{name: "withheld flag on an e-mail case", register: reg(email, func(in *intakev1.CaseInput) {
			in.Contact.CallerNumberWithheld = true
		}), fields: []string{"case.contact.caller_number_withheld"}},
		{name: "bad Swedish postal code", register: reg(email, func(in *intakev1.CaseInput) {
			in.Contact.PostalAddress = &casev1.PostalAddress{Street: "Storgatan 1", PostalCode: "1234", City: "Mölndal"}
		}), fields: []string{"case.contact.postal_address.postal_code"}, secrets: []string{"Storgatan"}},
		{name: "latitude out of range", register: reg(email, func(in *intakev1.CaseInput) {
			in.Type = casev1.CaseType_CASE_TYPE_FELANMALAN
			in.Location = &intakev1.LocationInput{Latitude: 91, Longitude: 11}
		}), fields: []string{"case.location.latitude"}},
		{name: "attachment id twice", register: reg(email, func(in *intakev1.CaseInput) {
			in.Attachments = []*intakev1.AttachmentInput{attachment("application/pdf", 10), attachment("image/png", 10)}
		}), fields: []string{"case.attachments[1].attachment_id"}},
		{name: "attachments over 50 MiB together", register: reg(email, func(in *intakev1.CaseInput) {
			for i := range 3 {
				a := attachment("application/pdf", 20<<20)
				a.AttachmentId = fmt.Sprintf("att-%d", i)
				in.Attachments = append(in.Attachments, a)
			}
		}), fields: []string{"case.attachments"}},
		{name: "form without idempotency key", submit: func() *intakev1.SubmitFormRequest {
			in := base(casev1.Channel_CHANNEL_FORM)
			return &intakev1.SubmitFormRequest{Case: in}
		}, fields: []string{"idempotency_key"}},
		{name: "form with channel phone", submit: func() *intakev1.SubmitFormRequest {
			in := base(casev1.Channel_CHANNEL_PHONE)
			return &intakev1.SubmitFormRequest{IdempotencyKey: "bad-channel-" + randHex(t, 4), Case: in}
		}, fields: []string{"case.channel"}},
		{name: "several wrong fields", register: reg(visit, func(in *intakev1.CaseInput) {
			in.Type = casev1.CaseType_CASE_TYPE_FELANMALAN
			in.Category = ""
			in.Description = strings.Repeat("x", 4001)
			in.Contact = &intakev1.Contact{Name: "Nils Besökare", Email: "inte-en-adress.example.se"}
			in.Attachments = []*intakev1.AttachmentInput{attachment("application/x-msdownload", 26214401)}
		}), fields: []string{
			"case.contact.name", "case.contact.email", "case.description", "case.category", "case.location",
			"case.attachments[0].content_type", "case.attachments[0].size_bytes",
		}, secrets: []string{"Nils Besökare", "inte-en-adress"}},
		{name: "several wrong fields in a form", submit: func() *intakev1.SubmitFormRequest {
			in := base(casev1.Channel_CHANNEL_CHAT)
			in.Contact = &intakev1.Contact{Phone: "12345", IdentityNumber: badCheck}
			return &intakev1.SubmitFormRequest{IdempotencyKey: "no spaces allowed", Case: in}
		}, fields: []string{"idempotency_key", "case.channel", "case.contact.phone", "case.contact.identity_number"},
			secrets: []string{"12345", badCheck[:8]}},
	}

	// A valid case first: the counter exists and the store is reachable.
	first := e.register(t, overGRPC, agent, &intakev1.RegisterCaseRequest{Case: base(email)})
	require.Equal(t, codes.OK, first.Code, first.Message)
	before := e.snapshot(t)

	// Every protocol gets the same violations, in the same order, with the
	// same descriptions as grpc-go, which runs first.
	overGRPCViolations := map[string][]violation{}
	for _, p := range allProtocols {
		for _, tc := range cases {
			t.Run(string(p)+"/"+tc.name, func(t *testing.T) {
				var a answer
				if tc.register != nil {
					a = e.register(t, p, agent, tc.register())
				} else {
					a = e.submit(t, p, 0, form, tc.submit())
				}
				require.Equal(t, codes.InvalidArgument, a.Code, "%s %v", a.Message, a.Violations)
				if p == overREST {
					require.Equal(t, http.StatusBadRequest, a.HTTPStatus, string(a.Body))
					require.Equal(t, "type.googleapis.com/google.rpc.BadRequest", a.FirstDetail, string(a.Body))
				}
				if p == overGRPC {
					overGRPCViolations[tc.name] = a.Violations
				} else if want, ok := overGRPCViolations[tc.name]; ok {
					if p == overREST {
						want = inJSONNames(want)
					}
					require.Equal(t, want, a.Violations, "%s answers other violations than grpc-go", p)
				}
				// Every wrong field is named, and no other; a field may be
				// named more than once when it breaks several rules (an empty
				// idempotency key is both too short and off the pattern).
				// REST names it by its JSON name (error_details.proto).
				fields := tc.fields
				if p == overREST {
					fields = jsonPaths(fields)
				}
				require.ElementsMatch(t, fields, distinct(a.fields()), "field violations: %+v", a.Violations)
				for _, v := range a.Violations {
					require.NotEmpty(t, v.Description, "violation of %s has no description", v.Field)
				}
				for _, s := range tc.secrets {
					require.NotContains(t, a.Message, s, "the answer echoes the input")
					for _, v := range a.Violations {
						require.NotContains(t, v.Description, s, "the answer echoes the input")
					}
					require.NotContains(t, string(a.Body), s, "the answer echoes the input")
				}
			})
		}
	}

	require.Equal(t, before, e.snapshot(t), "a refused request changed the store")
	// No case number was used up either: the next case gets the next one.
	next := e.register(t, overREST, agent, &intakev1.RegisterCaseRequest{Case: base(email)})
	require.Equal(t, codes.OK, next.Code, next.Message)
	year := stockholmYear(t)
	require.Equal(t, caseNumberSeq(t, year, first.CaseNumber)+1, caseNumberSeq(t, year, next.CaseNumber))
}

func TestIntakeIdempotency(t *testing.T) {
	e := startIntake(t)
	const clientA, clientB = "e-tjanst-a", "e-tjanst-b"
	formA := e.k.Token(t, clientA, "form-client")
	formB := e.k.Token(t, clientB, "form-client")

	payload := func(desc string) *intakev1.CaseInput {
		return &intakev1.CaseInput{
			Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Category: "park-och-lek",
			Description: desc, Contact: &intakev1.Contact{Email: "park@example.se"},
		}
	}
	created := 0 // distinct cases this test creates

	for _, p := range allProtocols {
		t.Run(string(p), func(t *testing.T) {
			key := "idem-" + string(p) + "-" + randHex(t, 6)
			req := &intakev1.SubmitFormRequest{IdempotencyKey: key, Case: payload("Gungan i parken är trasig.")}
			first := e.submit(t, p, 0, formA, req)
			require.Equal(t, codes.OK, first.Code, first.Message)
			require.False(t, first.Replayed, "the first submission is no replay")
			created++

			again := e.submit(t, p, 1, formA, req)
			require.Equal(t, codes.OK, again.Code, again.Message)
			require.Equal(t, first.CaseNumber, again.CaseNumber)
			require.True(t, first.RegisteredAt.Equal(again.RegisteredAt), "registered_at %s then %s", first.RegisteredAt, again.RegisteredAt)
			require.True(t, again.Replayed, "the retry must carry idempotent-replayed: true")
			if p == overREST {
				require.Equal(t, string(first.Body), string(again.Body), "a retry gets the first answer byte for byte")
			}

			// The same submission retried over another protocol.
			other := allProtocols[(indexOf(allProtocols, p)+1)%len(allProtocols)]
			cross := e.submit(t, other, 2, formA, req)
			require.Equal(t, codes.OK, cross.Code, cross.Message)
			require.Equal(t, first.CaseNumber, cross.CaseNumber)
			require.True(t, cross.Replayed)

			// The channel may be set to FORM or left unset: same payload.
			withChannel := &intakev1.SubmitFormRequest{IdempotencyKey: key, Case: payload("Gungan i parken är trasig.")}
			withChannel.Case.Channel = casev1.Channel_CHANNEL_FORM
			same := e.submit(t, p, 3, formA, withChannel)
			require.Equal(t, codes.OK, same.Code, same.Message)
			require.Equal(t, first.CaseNumber, same.CaseNumber)

			changed := e.submit(t, p, 0, formA, &intakev1.SubmitFormRequest{IdempotencyKey: key, Case: payload("Rutschkanan är också trasig.")})
			require.Equal(t, codes.FailedPrecondition, changed.Code, "%s %v", changed.Message, changed.Violations)
			if p == overREST {
				require.Equal(t, http.StatusBadRequest, changed.HTTPStatus, string(changed.Body))
			}

			otherClient := e.submit(t, p, 1, formB, req)
			require.Equal(t, codes.OK, otherClient.Code, otherClient.Message)
			require.NotEqual(t, first.CaseNumber, otherClient.CaseNumber, "another e-service's key is another submission")
			require.False(t, otherClient.Replayed)
			created++
		})
	}

	t.Run("50 concurrent submissions", func(t *testing.T) {
		before := countRegistered(e.events(t))
		req := &intakev1.SubmitFormRequest{IdempotencyKey: "idem-concurrent-" + randHex(t, 6), Case: payload("Alla lampor i parken är släckta.")}
		const n = 50
		type result struct {
			number   string
			at       time.Time
			replayed bool
			err      error
		}
		results := make([]result, n)
		start := make(chan struct{})
		var ready, done sync.WaitGroup
		for i := range n {
			ready.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				client := intakev1.NewIntakeServiceClient(e.conn(i))
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+formA)
				var header metadata.MD
				ready.Done()
				<-start
				resp, err := client.SubmitForm(ctx, req, grpc.Header(&header))
				results[i] = result{
					number: resp.GetCaseNumber(), at: resp.GetRegisteredAt().AsTime(), err: err,
					replayed: strings.Join(header.Get("idempotent-replayed"), ",") == "true",
				}
			}()
		}
		ready.Wait()
		close(start)
		done.Wait()

		fresh := 0
		for i, r := range results {
			require.NoError(t, r.err, "submission %d: %s", i, status.Code(r.err))
			require.Equal(t, results[0].number, r.number, "submission %d", i)
			require.True(t, results[0].at.Equal(r.at), "submission %d", i)
			if !r.replayed {
				fresh++
			}
		}
		require.Equal(t, 1, fresh, "exactly one answer is the original, the rest are replays")
		created++

		caseID := e.caseIDOfNumber(t, results[0].number)
		require.Equal(t, uint64(1), e.subjectCount(t, caseID), "CaseRegistered events on the case's subject")
		evs := e.events(t)
		require.Equal(t, before+1, countRegistered(evs), "CaseRegistered events before and after")
		require.Equal(t, created, countRegistered(evs), "CaseRegistered events of the whole test")
	})
}

func distinct(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func indexOf(ps []protocol, p protocol) int {
	for i, q := range ps {
		if q == p {
			return i
		}
	}
	return -1
}

func TestIntakeNoPlainPersonalDataOnDisk(t *testing.T) {
	e := startIntake(t)
	agent := e.k.Token(t, "anna", "agent")
	form := e.k.Token(t, "e-tjanst-marker", "form-client")
	run := randHex(t, 4)
	m := func(kind string) string { return "mrk-" + kind + "-" + run }

	// Unique mobile numbers (national significant digits, as a scan must
	// find them after normalisation to E.164) and valid personnummer.
	phoneDigits := "70" + randDigits(t, 7)
	phone := "0" + phoneDigits[:2] + "-" + phoneDigits[2:5] + " " + phoneDigits[5:7] + " " + phoneDigits[7:]
	phone2Digits := "73" + randDigits(t, 7)
	o311PhoneDigits := "76" + randDigits(t, 7)
	serial := func() int {
		n, err := strconv.Atoi(randDigits(t, 3))
		require.NoError(t, err)
		return 100 + n%900
	}
	pnr := personnummer(1963, 7, 21, serial(), false)
	pnr2 := personnummer(1990, 2, 9, serial(), false)

	markers := map[string]string{
		"name":            "Mrkname" + run + " Efternamn",
		"email":           m("e") + "@example.se",
		"phone":           phoneDigits,
		"identity12":      pnr,
		"identityDashed":  dashed(pnr),
		"identity10":      tenDigit(pnr),
		"identity10Dash":  dashed(tenDigit(pnr)),
		"street":          "Mrkgatan" + run + " 12",
		"city":            "Mrkstad" + run,
		"subject":         m("subject"),
		"description":     m("description"),
		"chat":            m("chat"),
		"address":         m("address") + " Torget 3",
		"attachment":      m("attachment") + ".pdf",
		"name2":           "Mrkbrev" + run,
		"email2":          m("e2") + "@example.se",
		"phone2":          phone2Digits,
		"identity2":       pnr2,
		"identity2Dashed": dashed(pnr2),
		"attachment2":     m("scan") + ".tiff",
		"street2":         "Mrkvagen" + run + " 1",
		"formDesc":        m("formdesc"),
		"formAddress":     m("formaddress"),
		"o311Desc":        m("o311desc"),
		"o311Email":       m("o311") + "@example.se",
		"o311First":       "Mrkfirst" + run,
		"o311Last":        "Mrklast" + run,
		"o311Address":     m("o311addr"),
		"o311Phone":       o311PhoneDigits,
	}

	var numbers []string
	ok := func(a answer) {
		t.Helper()
		require.Equal(t, codes.OK, a.Code, "%s %v", a.Message, a.Violations)
		numbers = append(numbers, a.CaseNumber)
	}
	// Phone, gRPC: name, phone, identity number, postal address, subject,
	// description.
	ok(e.register(t, overGRPC, agent, &intakev1.RegisterCaseRequest{Case: &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE, Category: "bygglov",
		Subject: markers["subject"], Description: markers["description"],
		Contact: &intakev1.Contact{
			Name: markers["name"], Phone: phone, IdentityNumber: markers["identityDashed"],
			PostalAddress: &casev1.PostalAddress{Street: markers["street"], PostalCode: "123 45", City: markers["city"]},
		},
	}}))
	// E-mail, REST: e-mail, attachment name, fault location.
	ok(e.register(t, overREST, agent, &intakev1.RegisterCaseRequest{Case: &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FELANMALAN, Channel: casev1.Channel_CHANNEL_EMAIL, Category: "vag-och-gata",
		Description: markers["description"] + " igen",
		Contact:     &intakev1.Contact{Email: markers["email"]},
		Location:    &intakev1.LocationInput{Latitude: 57.7, Longitude: 11.9, Address: markers["address"]},
		Attachments: []*intakev1.AttachmentInput{{Name: markers["attachment"], ContentType: "application/pdf", SizeBytes: 10, AttachmentId: "att-" + run}},
	}}))
	// Chat, gRPC-web: chat transcript.
	ok(e.register(t, overGRPCWeb, agent, &intakev1.RegisterCaseRequest{Case: &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_SYNPUNKT, Channel: casev1.Channel_CHANNEL_CHAT, Category: "bemotande",
		ChatTranscript: "Invånare: " + markers["chat"],
		Contact:        &intakev1.Contact{Email: markers["email"]},
	}}))
	// Letter, gRPC: another person, identity number in twelve digits,
	// attachment only.
	ok(e.register(t, overGRPC, agent, &intakev1.RegisterCaseRequest{Case: &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_BREV, Channel: casev1.Channel_CHANNEL_LETTER, Category: "ovrigt",
		Contact: &intakev1.Contact{
			Name: markers["name2"], IdentityNumber: markers["identity2"], Phone: "0" + phone2Digits,
			PostalAddress: &casev1.PostalAddress{Street: markers["street2"], City: markers["city"]},
		},
		Attachments: []*intakev1.AttachmentInput{{Name: markers["attachment2"], ContentType: "image/tiff", SizeBytes: 10, AttachmentId: "att2-" + run}},
	}}))
	// Form, REST.
	ok(e.submit(t, overREST, 0, form, &intakev1.SubmitFormRequest{IdempotencyKey: "mrk-" + run, Case: &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FELANMALAN, Category: "park-och-lek",
		Description: markers["formDesc"],
		Contact:     &intakev1.Contact{Email: markers["email2"], Name: markers["name"]},
		Location:    &intakev1.LocationInput{Address: markers["formAddress"]},
	}}))
	// Open311.
	numbers = append(numbers, e.open311Submit(t, url.Values{
		"api_key": {form}, "service_code": {"gatubelysning"},
		"lat": {"57.70887"}, "long": {"11.97456"}, "address_string": {markers["o311Address"]},
		"description": {markers["o311Desc"]}, "email": {markers["o311Email"]}, "phone": {"+46 " + o311PhoneDigits},
		"first_name": {markers["o311First"]}, "last_name": {markers["o311Last"]},
	}))

	needles := make([]string, 0, len(markers))
	for _, v := range markers {
		needles = append(needles, v)
	}
	require.NoError(t, e.k.Stop(t))

	// Nothing personal in the log either.
	logs := e.k.stderr.String()
	require.Contains(t, logs, "shut down cleanly")
	for kind, v := range markers {
		require.NotContains(t, logs, v, "the log holds the %s marker", kind)
	}

	// Controls: the scanner finds a marker planted in the data directory,
	// and the case numbers, which are stored in plain text, so the files
	// it reads are the ones the cases were written to.
	control := m("control")
	require.NoError(t, os.WriteFile(filepath.Join(e.k.DataDir, "control-marker.txt"), []byte("x"+control+"x"), 0o600))
	found := scanDir(t, e.k.DataDir, append(append(needles, control), numbers...))
	require.Len(t, found[control], 1, "the scanner did not find the planted marker")
	for _, n := range numbers {
		require.NotEmpty(t, found[n], "case number %s not found on disk: the scan does not see the store", n)
	}
	for kind, v := range markers {
		require.Empty(t, found[v], "the %s marker %q is on disk in plain text", kind, v)
	}
}

// TestIntakeOpen311AppliesFieldRules: the Open311 edge must enforce the
// same field rules as the gRPC edge (coordinate ranges, NaN, lengths), so
// no protocol is a way around them.
func TestIntakeOpen311AppliesFieldRules(t *testing.T) {
	e := startIntake(t)
	form := e.k.Token(t, "e-tjanst-open311", "form-client")
	before := e.snapshot(t)
	tests := []struct {
		name   string
		values url.Values
	}{
		{"NaN latitude", url.Values{"lat": {"NaN"}, "long": {"11.97"}}},
		{"NaN longitude", url.Values{"lat": {"57.70"}, "long": {"nan"}}},
		{"address_string over 300 characters", url.Values{"address_string": {strings.Repeat("a", 301)}}},
		{"name over 200 characters", url.Values{"address_string": {"Torget 1"}, "first_name": {strings.Repeat("b", 150)}, "last_name": {strings.Repeat("c", 60)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := url.Values{"api_key": {form}, "service_code": {"gatubelysning"}, "description": {"Lampan är trasig: " + tc.name}}
			for k, vals := range tc.values {
				v[k] = vals
			}
			code, body := e.open311Post(t, v)
			require.Equal(t, http.StatusBadRequest, code, string(body))
		})
	}
	require.Equal(t, before, e.snapshot(t), "a refused Open311 report changed the store")
}

// TestIntakeAgentChannelIsNotForm: RegisterCase is for cases an agent took
// by phone, e-mail, letter, visit or chat; CHANNEL_FORM is the e-service
// forms' channel, and an agent using it skews the channel statistics.
func TestIntakeAgentChannelIsNotForm(t *testing.T) {
	e := startIntake(t)
	agent := e.k.Token(t, "anna", "agent")
	for _, p := range []protocol{overGRPC, overREST} {
		a := e.register(t, p, agent, &intakev1.RegisterCaseRequest{Case: &intakev1.CaseInput{
			Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_FORM, Category: "forskola-och-skola", Description: "Fråga.",
		}})
		require.Equal(t, codes.InvalidArgument, a.Code, "%s: %s", p, a.CaseNumber)
		require.Equal(t, []string{"case.channel"}, distinct(a.fields()))
	}
}

// jsonPaths writes field paths in the JSON names a REST client gets them
// in (case.contact.identity_number is case.contact.identityNumber).
func jsonPaths(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = server.JSONFieldPath(nil, p)
	}
	return out
}

// inJSONNames is vs with each field path in its JSON names.
func inJSONNames(vs []violation) []violation {
	out := make([]violation, len(vs))
	for i, v := range vs {
		v.Field = server.JSONFieldPath(nil, v.Field)
		out[i] = v
	}
	return out
}
