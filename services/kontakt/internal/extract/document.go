// Package extract turns a register extract (RetentionService/SubjectAccess)
// into the files the data-protection officer sends to the citizen: the
// JSON of the API's answer, and a document in Swedish as HTML and PDF.
// Both documents are rendered from one Document, so they say the same.
// It does no I/O beyond the writers it is given, so it is tested without
// a server.
package extract

import (
	"fmt"
	"slices"
	"strings"
	"time"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	"github.com/kontakt-se/kontakt/services/kontakt/internal/sv"
)

// DefaultController names the controller when the configuration does not.
const DefaultController = "Kommunen"

// DefaultPurposes is the purposes and legal basis of a municipal contact
// centre's case register, for an installation that configures none.
const DefaultPurposes = "Kommunen registrerar ärenden i kontaktcentret för att kunna besvara dina frågor, " +
	"ta emot felanmälningar, synpunkter och klagomål, lämna dem vidare till rätt verksamhet och följa upp dem. " +
	"Behandlingen är nödvändig för att utföra uppgifter av allmänt intresse och som ett led i kommunens " +
	"myndighetsutövning (artikel 6.1 e i dataskyddsförordningen) och för att fullgöra kommunens skyldighet " +
	"att registrera, hålla ordnade och bevara allmänna handlingar (artikel 6.1 c; offentlighets- och " +
	"sekretesslagen, arkivlagen)."

// Queue is how the document names a queue a case was sent to.
type Queue struct {
	Title, Department string
}

// Info is what the document needs besides the extract: the fixed text
// from configuration and the names of codes.
type Info struct {
	// Controller is the municipality responsible for the register
	// (personuppgiftsansvarig); empty: DefaultController.
	Controller string
	// Contact says how the citizen reaches the data-protection officer;
	// empty: the document says "kommunens dataskyddsombud".
	Contact string
	// Purposes states the purposes and legal basis; empty:
	// DefaultPurposes.
	Purposes string
	// SearchedBy says what the person was found by ("e-postadress") and
	// Searched the value given.
	SearchedBy, Searched string
	// Categories maps category codes to titles, Queues queue names to
	// their titles and departments.
	Categories map[string]string
	Queues     map[string]Queue
	// Loc is the time zone dates are written in.
	Loc *time.Location
	// WithoutActors leaves staff's user ids out of the document (the
	// JSON keeps them). The CJEU (C-579/21, Pankki S) held that the log's
	// dates and purposes must be given but employees' identities only
	// where the person needs them to exercise their rights; the
	// data-protection officer decides.
	WithoutActors bool
}

// Document is the register extract as the citizen reads it.
type Document struct {
	Title, Subtitle string
	// Meta are the facts of the extract itself (controller, date, key).
	Meta []Field
	// Intro are the opening paragraphs.
	Intro []string
	// Cases has one section per case.
	Cases []Section
	// About are the fixed sections of article 15: purposes, recipients,
	// storage periods, source, rights, contact.
	About []Section
}

// Section is a heading with, in this order, paragraphs, a list of
// fields, a table and subsections.
type Section struct {
	Title       string
	Paragraphs  []string
	Fields      []Field
	Table       *Table
	Subsections []Section
}

// Field is one labelled value.
type Field struct {
	Label, Value string
}

// Table has a header row and rows of the same width.
type Table struct {
	Head []string
	Rows [][]string
}

// Build makes the document of a register extract.
func Build(resp *retentionv1.SubjectAccessResponse, info Info) *Document {
	if info.Loc == nil {
		info.Loc = time.UTC
	}
	controller := info.Controller
	if controller == "" {
		controller = DefaultController
	}
	d := &Document{
		Title:    "Registerutdrag",
		Subtitle: "Utdrag ur kontaktcentrets ärendesystem enligt artikel 15 i dataskyddsförordningen (GDPR)",
		Meta: []Field{
			{"Personuppgiftsansvarig", controller},
			{"Framtaget", timeSv(resp.GetGeneratedAt().AsTime(), info.Loc)},
		},
	}
	if info.SearchedBy != "" {
		d.Meta = append(d.Meta, Field{"Sökt på", info.SearchedBy + " " + info.Searched})
	}
	d.Meta = append(d.Meta, Field{"Antal ärenden", fmt.Sprint(len(resp.GetCases()))})
	if len(resp.GetCases()) == 0 {
		d.Intro = []string{
			"Vi har inte hittat några personuppgifter om dig i kontaktcentrets ärendesystem.",
			"Uppgifter som redan har gallrats enligt kommunens dokumenthanteringsplan finns inte kvar och kan därför inte visas.",
		}
	} else {
		d.Intro = []string{
			fmt.Sprintf("Här är de personuppgifter om dig som finns i kontaktcentrets ärendesystem: %d %s. "+
				"För varje ärende visas vad du lämnade, vad kommunens medarbetare skrev, vart ärendet skickades, "+
				"om uppgifter har rättats, när uppgifterna tas bort och vem som har tagit del av dem och varför.",
				len(resp.GetCases()), plural(len(resp.GetCases()), "ärende", "ärenden")),
			"Uppgifter som redan har gallrats finns inte kvar och kan inte visas; för dem anges när de togs bort.",
		}
	}
	for _, c := range resp.GetCases() {
		d.Cases = append(d.Cases, caseSection(c, info))
	}
	d.About = about(resp, info, controller)
	return d
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func caseSection(c *retentionv1.SubjectCase, info Info) Section {
	s := Section{Title: "Ärende " + c.GetCaseNumber()}
	category := c.GetCategory()
	if t, ok := info.Categories[category]; ok {
		category = t
	}
	closed := "Pågår"
	if c.GetClosedAt() != nil {
		closed = "Avslutat " + dateSv(c.GetClosedAt().AsTime(), info.Loc)
	}
	s.Fields = []Field{
		{"Typ av ärende", sv.Type(c.GetType())},
		{"Kategori", category},
		{"Kom in via", sv.Channel(c.GetChannel())},
		{"Registrerat", timeSv(c.GetRegisteredAt().AsTime(), info.Loc)},
		{"Status", closed},
	}
	if c.GetMarkedForPreservation() {
		v := "Ärendet ska bevaras enligt arkivlagen: det lämnas till kommunens arkiv med dina uppgifter"
		if c.GetArchiveDueAt() != nil {
			v += " den " + dateSv(c.GetArchiveDueAt().AsTime(), info.Loc)
		}
		s.Fields = append(s.Fields, Field{"Bevaras", v + ". Sådana uppgifter omfattas inte av rätten till radering (artikel 17.3 b och d)."})
	}
	if c.GetOnHold() {
		s.Fields = append(s.Fields, Field{"Gallring uppskjuten", "Ett beslut (till exempel ett överklagande) hindrar att uppgifterna i ärendet tas bort tills vidare."})
	}

	retention := map[string]*retentionv1.SubjectRetention{}
	for _, r := range c.GetRetention() {
		retention[r.GetPlanClass()] = r
	}
	gone := func(class string) []string {
		r := retention[class]
		if r == nil || r.GetRedactedAt() == nil || r.GetHoldsData() {
			return nil
		}
		return []string{redactedSv(r, info.Loc)}
	}

	// Contact details.
	if ct := c.GetContact(); ct != nil {
		s.Subsections = append(s.Subsections, Section{Title: "Kontaktuppgifter", Fields: contactFields(ct)})
	} else if p := gone("contact"); p != nil {
		s.Subsections = append(s.Subsections, Section{Title: "Kontaktuppgifter", Paragraphs: p})
	}
	// Identity number.
	if id := c.GetIdentity(); id != nil {
		label := "Personnummer"
		if id.GetCoordinationNumber() {
			label = "Samordningsnummer"
		}
		s.Subsections = append(s.Subsections, Section{Title: "Personnummer", Fields: []Field{{label, identitySv(id.GetNumber())}}})
	} else if p := gone("identity"); p != nil {
		s.Subsections = append(s.Subsections, Section{Title: "Personnummer", Paragraphs: p})
	}
	// Free text.
	if ft := c.GetFreeText(); ft != nil {
		s.Subsections = append(s.Subsections, Section{Title: "Det du skrev", Fields: freeTextFields(ft)})
	} else if p := gone("freetext"); p != nil {
		s.Subsections = append(s.Subsections, Section{Title: "Det du skrev", Paragraphs: p})
	}
	// Attachments.
	if len(c.GetAttachments()) > 0 {
		t := &Table{Head: []string{"Filnamn", "Id", "Typ", "Storlek"}}
		for _, a := range c.GetAttachments() {
			name := a.GetName()
			if a.GetRedacted() && name == "" {
				name = "(gallrat)"
			}
			t.Rows = append(t.Rows, []string{name, a.GetAttachmentId(), a.GetContentType(), sizeSv(a.GetSizeBytes())})
		}
		sec := Section{Title: "Bilagor", Table: t,
			Paragraphs: []string{"Kontaktcentret sparar filernas namn och id; själva filerna finns i kommunens filarkiv under samma id."}}
		sec.Paragraphs = append(sec.Paragraphs, gone("attachments")...)
		s.Subsections = append(s.Subsections, sec)
	}
	// What staff wrote.
	if len(c.GetTexts()) > 0 {
		t := &Table{Head: []string{"Datum", "Vad", "Skrivet av", "Text"}}
		if info.WithoutActors {
			t.Head = []string{"Datum", "Vad", "Text"}
		}
		for _, x := range c.GetTexts() {
			text := x.GetText()
			if x.GetRedacted() {
				text = "(gallrad)"
			}
			row := []string{timeSv(x.GetWrittenAt().AsTime(), info.Loc), textKindSv(x.GetKind()), x.GetAuthor(), text}
			if info.WithoutActors {
				row = slices.Delete(row, 2, 3)
			}
			t.Rows = append(t.Rows, row)
		}
		sec := Section{Title: "Svar, anteckningar och kommentarer från kommunen", Table: t}
		sec.Paragraphs = append(sec.Paragraphs, gone("answer")...)
		s.Subsections = append(s.Subsections, sec)
	}
	// Recipients.
	if len(c.GetForwardings()) > 0 {
		t := &Table{Head: []string{"Datum", "Skickat till", "Av"}}
		if info.WithoutActors {
			t.Head = t.Head[:2]
		}
		for _, f := range c.GetForwardings() {
			row := []string{timeSv(f.GetAt().AsTime(), info.Loc), recipientSv(f, info), f.GetBy()}
			if info.WithoutActors {
				row = row[:2]
			}
			t.Rows = append(t.Rows, row)
		}
		s.Subsections = append(s.Subsections, Section{Title: "Mottagare", Table: t,
			Paragraphs: []string{"Ärendet, med dina uppgifter, har skickats till dessa delar av kommunen."}})
	}
	// Rectifications.
	if len(c.GetRectifications()) > 0 {
		t := &Table{Head: []string{"Datum", "Uppgift", "Tidigare värde", "Nytt värde", "Rättat av"}}
		for _, r := range c.GetRectifications() {
			prev, next := valueSv(r.GetPrevious()), valueSv(r.GetValue())
			if r.GetRedacted() {
				prev, next = "(gallrat)", "(gallrat)"
			}
			t.Rows = append(t.Rows, []string{timeSv(r.GetRectifiedAt().AsTime(), info.Loc), dataClassSv(r.GetDataClass()), prev, next, r.GetRectifiedBy()})
		}
		if info.WithoutActors {
			for i := range t.Rows {
				t.Rows[i] = t.Rows[i][:4]
			}
			t.Head = t.Head[:4]
		}
		s.Subsections = append(s.Subsections, Section{Title: "Rättelser", Table: t, Paragraphs: []string{
			"Det tidigare värdet finns kvar i ärendets historik tills uppgifterna gallras, och visas därför här.",
		}})
	}
	// Retention.
	if len(c.GetRetention()) > 0 {
		t := &Table{Head: []string{"Uppgifter", "Vad som händer", "När"}}
		for _, r := range c.GetRetention() {
			t.Rows = append(t.Rows, []string{planClassSv(r.GetPlanClass()), ruleSv(r), whenSv(r, c, info.Loc)})
		}
		s.Subsections = append(s.Subsections, Section{Title: "När uppgifterna tas bort", Table: t})
	}
	// Audit trail.
	sec := Section{Title: "Vem som har tagit del av uppgifterna"}
	if len(c.GetReads()) == 0 {
		sec.Paragraphs = []string{"Ingen har tagit del av uppgifterna i ärendet via ärendesystemet, utöver detta registerutdrag."}
	} else {
		sec.Paragraphs = []string{"Varje gång någon läser eller söker fram dina uppgifter loggas det. Detta registerutdrag har också loggats."}
		t := &Table{Head: []string{"Tid", "Vem", "Roll", "Vad", "Syfte", "Uppgifter"}}
		for _, r := range c.GetReads() {
			var classes []string
			for _, dc := range r.GetDataClasses() {
				classes = append(classes, dataClassSv(dc))
			}
			row := []string{timeSv(r.GetReadAt().AsTime(), info.Loc), r.GetActor(), roleSv(r.GetRole()), rpcSv(r.GetRpc()), r.GetPurpose(), strings.Join(classes, ", ")}
			if info.WithoutActors {
				row = slices.Delete(row, 1, 2)
			}
			t.Rows = append(t.Rows, row)
		}
		if info.WithoutActors {
			t.Head = slices.Delete(t.Head, 1, 2)
		}
		sec.Table = t
	}
	s.Subsections = append(s.Subsections, sec)
	return s
}

func redactedSv(r *retentionv1.SubjectRetention, loc *time.Location) string {
	date := dateSv(r.GetRedactedAt().AsTime(), loc)
	if r.GetRedactionReason() == "erasure" {
		return "Uppgifterna togs bort " + date + " efter en begäran om radering."
	}
	return "Uppgifterna gallrades " + date + " enligt kommunens dokumenthanteringsplan och finns inte kvar."
}

// whenSv says when a class is or was removed.
func whenSv(r *retentionv1.SubjectRetention, c *retentionv1.SubjectCase, loc *time.Location) string {
	switch {
	case r.GetRedactedAt() != nil && !r.GetHoldsData():
		return "Togs bort " + dateSv(r.GetRedactedAt().AsTime(), loc)
	case r.GetDueAt() != nil:
		s := dateSv(r.GetDueAt().AsTime(), loc)
		if c.GetOnHold() {
			s += " (uppskjutet så länge beslutet gäller)"
		}
		if r.GetRedactedAt() != nil {
			s += "; tidigare uppgifter togs bort " + dateSv(r.GetRedactedAt().AsTime(), loc)
		}
		return s
	case r.GetAction() == retentionv1.Action_ACTION_KEEP:
		return "–"
	case r.GetPlanClass() == "audit":
		return "Löpande"
	case r.GetAnchor() == retentionv1.Anchor_ANCHOR_CLOSURE && c.GetClosedAt() == nil:
		return "Räknas från när ärendet avslutas"
	case r.GetRule() == "":
		return "Med ärendet"
	}
	return "–"
}

func contactFields(c *casev1.ContactDetails) []Field {
	var out []Field
	add := func(label, v string) {
		if v != "" {
			out = append(out, Field{label, v})
		}
	}
	add("Namn", c.GetName())
	add("E-post", c.GetEmail())
	add("Telefon", c.GetPhone())
	add("Postadress", addressSv(c.GetPostalAddress()))
	return out
}

func addressSv(a *casev1.PostalAddress) string {
	if a == nil {
		return ""
	}
	var parts []string
	if a.GetStreet() != "" {
		parts = append(parts, a.GetStreet())
	}
	if pc := strings.TrimSpace(a.GetPostalCode() + " " + a.GetCity()); pc != "" {
		parts = append(parts, pc)
	}
	if a.GetCountry() != "" && a.GetCountry() != "SE" {
		parts = append(parts, a.GetCountry())
	}
	return strings.Join(parts, ", ")
}

func freeTextFields(f *casev1.FreeText) []Field {
	var out []Field
	add := func(label, v string) {
		if v != "" {
			out = append(out, Field{label, v})
		}
	}
	add("Rubrik", f.GetSubject())
	add("Beskrivning", f.GetDescription())
	add("Chatt", f.GetChatTranscript())
	if l := f.GetLocation(); l != nil {
		add("Plats", l.GetAddress())
		if l.GetLatitude() != 0 || l.GetLongitude() != 0 {
			add("Koordinater", fmt.Sprintf("%.5f, %.5f", l.GetLatitude(), l.GetLongitude()))
		}
	}
	return out
}

// identitySv writes a 12-digit number as Skatteverket does: YYYYMMDD-NNNN.
func identitySv(n string) string {
	if len(n) == 12 {
		return n[:8] + "-" + n[8:]
	}
	return n
}

func recipientSv(f *retentionv1.SubjectForwarding, info Info) string {
	var parts []string
	if q := f.GetToQueue(); q != "" {
		name := q
		if qi, ok := info.Queues[q]; ok && qi.Title != "" {
			name = qi.Title
		}
		parts = append(parts, "kön "+name)
	}
	dept := f.GetToDepartment()
	if dept == "" {
		dept = info.Queues[f.GetToQueue()].Department
	}
	if dept != "" {
		parts = append(parts, "förvaltningen "+dept)
	}
	if o := f.GetToOfficer(); o != "" {
		parts = append(parts, "handläggaren "+o)
	}
	s := strings.Join(parts, ", ")
	if f.GetMoved() {
		s += " (flyttat av arbetsledare)"
	}
	return s
}

// valueSv writes a rectified value on one line.
func valueSv(v *retentionv1.SubjectValue) string {
	if v == nil {
		return "(kan inte visas)"
	}
	var fields []Field
	switch x := v.GetValue().(type) {
	case *retentionv1.SubjectValue_Contact:
		fields = contactFields(x.Contact)
	case *retentionv1.SubjectValue_Identity:
		return identitySv(x.Identity.GetNumber())
	case *retentionv1.SubjectValue_FreeText:
		fields = freeTextFields(x.FreeText)
	case *retentionv1.SubjectValue_Attachments:
		return strings.Join(x.Attachments.GetNames(), ", ")
	}
	parts := make([]string, 0, len(fields))
	for _, f := range fields {
		parts = append(parts, f.Label+": "+f.Value)
	}
	if len(parts) == 0 {
		return "(tomt)"
	}
	return strings.Join(parts, "; ")
}

// about is the fixed information of article 15.1 a–h and 15.2.
func about(resp *retentionv1.SubjectAccessResponse, info Info, controller string) []Section {
	purposes := info.Purposes
	if purposes == "" {
		purposes = DefaultPurposes
	}
	contact := "kommunens dataskyddsombud"
	if info.Contact != "" {
		contact = "kommunens dataskyddsombud: " + info.Contact
	}
	// The storage periods: every rule that applies to the person's cases,
	// once, in words.
	var periods []string
	seen := map[string]bool{}
	var channels []string
	for _, c := range resp.GetCases() {
		if ch := sv.Channel(c.GetChannel()); !slices.Contains(channels, ch) {
			channels = append(channels, ch)
		}
		for _, r := range c.GetRetention() {
			line := planClassSv(r.GetPlanClass()) + ": " + ruleSv(r)
			if r.GetRule() != "" {
				line += " (regel " + r.GetRule() + ")"
			}
			line += "."
			if !seen[line] {
				seen[line] = true
				periods = append(periods, line)
			}
		}
	}
	storage := Section{Title: "Hur länge uppgifterna sparas"}
	plan := "kommunens dokumenthanteringsplan"
	if resp.GetPlanName() != "" {
		plan += " (" + resp.GetPlanName()
		if resp.GetPlanVersion() != "" {
			plan += ", version " + resp.GetPlanVersion()
		}
		plan += ")"
	}
	storage.Paragraphs = append(storage.Paragraphs, "Uppgifterna sparas så länge som "+plan+" anger och tas sedan bort automatiskt. Anonymiserad statistik utan personuppgifter sparas för alltid.")
	if len(periods) > 0 {
		storage.Paragraphs = append(storage.Paragraphs, "För dina ärenden gäller:")
		storage.Table = &Table{Head: []string{"Regel"}}
		for _, p := range periods {
			storage.Table.Rows = append(storage.Table.Rows, []string{p})
		}
	}
	source := "Uppgifterna kommer från dig"
	if len(channels) > 0 {
		source += ", när du kontaktade kommunen via " + joinSv(channels)
	}
	source += ". Svar, anteckningar och kommentarer har skrivits av kommunens medarbetare."
	return []Section{
		{Title: "Varför vi behandlar dina uppgifter", Paragraphs: []string{purposes}},
		{Title: "Vilka som får del av uppgifterna", Paragraphs: []string{
			"Uppgifterna används av kommunens kontaktcenter och av de förvaltningar och handläggare som ärendet har skickats till (se Mottagare under varje ärende).",
			"Ärenden är allmänna handlingar. Kommunen lämnar ut dem till andra bara när lagen kräver det, till exempel när någon begär att få ta del av en allmän handling och ingen sekretess hindrar det. Uppgifterna förs inte över till länder utanför EU/EES.",
		}},
		storage,
		{Title: "Varifrån uppgifterna kommer", Paragraphs: []string{source}},
		{Title: "Automatiserade beslut", Paragraphs: []string{
			"Inga beslut om dig fattas automatiskt. Ärendesystemet sorterar ärenden till rätt kö efter typ och kategori; det är inte ett beslut om dig.",
		}},
		{Title: "Dina rättigheter", Paragraphs: []string{
			"Du har rätt att få felaktiga uppgifter rättade (artikel 16) och att begära att uppgifter raderas (artikel 17). Uppgifter i allmänna handlingar som kommunen enligt lag ska bevara kan inte raderas.",
			"Du har också rätt att begära att behandlingen begränsas (artikel 18) och att invända mot behandlingen (artikel 21).",
			"Om du anser att kommunen behandlar dina personuppgifter felaktigt har du rätt att lämna klagomål till Integritetsskyddsmyndigheten (IMY), Box 8114, 104 20 Stockholm, www.imy.se.",
		}},
		{Title: "Kontakt", Paragraphs: []string{
			"Personuppgiftsansvarig är " + controller + ". Frågor om utdraget eller om hur kommunen behandlar dina personuppgifter besvaras av " + contact + ".",
		}},
	}
}

// joinSv joins with commas and "och".
func joinSv(xs []string) string {
	switch len(xs) {
	case 0:
		return ""
	case 1:
		return xs[0]
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " och " + xs[len(xs)-1]
}
