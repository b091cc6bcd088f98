package extract

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The values of the fixture: Swedish letters, a would-be script and
// markup in what a citizen and an official wrote.
const (
	name        = "Åsa Öberg-Ädel"
	script      = `<script>alert("x")</script> & "citat"`
	noteText    = "Ringde tillbaka <b>två</b> gånger"
	attachment  = "ansökan <Åsa>.pdf"
	newName     = "Åsa Öberg"
	description = "Lampan på Gröna gången är trasig.\nDen blinkar."
)

var stockholm = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Stockholm")
	if err != nil {
		panic(err)
	}
	return loc
}()

func at(s string) *timestamppb.Timestamp {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return timestamppb.New(t)
}

// fixture is a register extract of two cases with data in every class,
// one case with its free text redacted.
func fixture() *retentionv1.SubjectAccessResponse {
	contact := &casev1.ContactDetails{Name: name, Email: "asa@example.se", Phone: "+46701234567",
		PostalAddress: &casev1.PostalAddress{Street: "Storgatan 1", PostalCode: "431 30", City: "Mölndal"}}
	return &retentionv1.SubjectAccessResponse{
		GeneratedAt: at("2026-04-02T08:30:00Z"), PlanName: "Mölndal stad, Kontaktcenter", PlanVersion: "2021.1",
		Cases: []*retentionv1.SubjectCase{{
			CaseId: "c1", CaseNumber: "KC-2026-000001", Type: casev1.CaseType_CASE_TYPE_FELANMALAN, Channel: casev1.Channel_CHANNEL_PHONE,
			Category: "gatubelysning", RegisteredAt: at("2026-03-02T08:00:00Z"), ClosedAt: at("2026-03-03T12:00:00Z"),
			Contact:  contact,
			Identity: &casev1.IdentityNumber{Number: "197103045675"},
			FreeText: &casev1.FreeText{Subject: script, Description: description,
				Location: &casev1.ExactLocation{Latitude: 57.6554, Longitude: 12.0138, Address: "Gröna gången 3"}},
			Attachments: []*retentionv1.SubjectAttachment{{Name: attachment, AttachmentId: "asa-ansokan", ContentType: "application/pdf", SizeBytes: 123456}},
			Answers:     []string{noteText, "Gatukontoret tar den", "Lampan lagas inom en vecka."},
			Texts: []*retentionv1.SubjectText{
				{Kind: retentionv1.SubjectTextKind_SUBJECT_TEXT_KIND_NOTE, Author: "anna", WrittenAt: at("2026-03-02T09:00:00Z"), Text: noteText},
				{Kind: retentionv1.SubjectTextKind_SUBJECT_TEXT_KIND_FORWARD_COMMENT, Author: "anna", WrittenAt: at("2026-03-02T09:05:00Z"), Text: "Gatukontoret tar den"},
				{Kind: retentionv1.SubjectTextKind_SUBJECT_TEXT_KIND_ANSWER, Author: "olle", WrittenAt: at("2026-03-03T11:00:00Z"), Text: "Lampan lagas inom en vecka."},
			},
			Forwardings: []*retentionv1.SubjectForwarding{{ToQueue: "gata", ToOfficer: "olle", By: "anna", At: at("2026-03-02T09:05:00Z")}},
			Rectifications: []*retentionv1.SubjectRectification{{
				DataClass: casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, RectifiedBy: "dora", RectifiedAt: at("2026-03-10T10:00:00Z"),
				Previous: &retentionv1.SubjectValue{Value: &retentionv1.SubjectValue_Contact{Contact: &casev1.ContactDetails{Name: "Åsa Öberg-Adel", Email: "asa@example.se"}}},
				Value:    &retentionv1.SubjectValue{Value: &retentionv1.SubjectValue_Contact{Contact: contact}},
			}},
			Retention: []*retentionv1.SubjectRetention{
				{DataClass: casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, PlanClass: "contact", Rule: "personuppgifter", Action: retentionv1.Action_ACTION_REDACT,
					Period: "90d", Anchor: retentionv1.Anchor_ANCHOR_REGISTRATION, DueAt: at("2026-05-31T08:00:00Z"), HoldsData: true},
				{DataClass: casev1.DataClass_DATA_CLASS_FREE_TEXT, PlanClass: "freetext", Rule: "personuppgifter", Action: retentionv1.Action_ACTION_REDACT,
					Period: "90d", Anchor: retentionv1.Anchor_ANCHOR_REGISTRATION, DueAt: at("2026-05-31T08:00:00Z"), HoldsData: true},
				{PlanClass: "case", Rule: "arendet", Action: retentionv1.Action_ACTION_DELETE, Period: "2y", Anchor: retentionv1.Anchor_ANCHOR_REGISTRATION,
					DueAt: at("2028-03-02T08:00:00Z"), HoldsData: true},
				{PlanClass: "audit", Rule: "aktivitetslogg", Action: retentionv1.Action_ACTION_DELETE, Period: "5y", Anchor: retentionv1.Anchor_ANCHOR_REGISTRATION, HoldsData: true},
			},
			RedactionDueAt: at("2026-05-31T08:00:00Z"), DeletionDueAt: at("2028-03-02T08:00:00Z"),
			Reads: []*retentionv1.SubjectAuditEntry{
				{Actor: "anna", Role: "agent", Rpc: "/kontakt.routing.v1.RoutingService/FindCases", Purpose: "sökning efter ärenden",
					ReadAt: at("2026-03-02T08:59:00Z"), DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER}},
				{Actor: "anna", Role: "agent", Rpc: "/kontakt.routing.v1.RoutingService/GetCase", Purpose: "återkoppling",
					ReadAt: at("2026-03-02T09:00:00Z"), DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, casev1.DataClass_DATA_CLASS_FREE_TEXT}},
			},
		}, {
			CaseId: "c2", CaseNumber: "KC-2026-000002", Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_CHAT,
			Category: "ovrigt", RegisteredAt: at("2026-02-20T10:00:00Z"), Contact: &casev1.ContactDetails{Email: "asa@example.se"},
			MarkedForPreservation: true, ArchiveDueAt: at("2026-05-21T10:00:00Z"), OnHold: true,
			Retention: []*retentionv1.SubjectRetention{
				{DataClass: casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, PlanClass: "contact", Rule: "personuppgifter", Action: retentionv1.Action_ACTION_REDACT,
					Period: "90d", Anchor: retentionv1.Anchor_ANCHOR_REGISTRATION, DueAt: at("2026-05-21T10:00:00Z"), HoldsData: true},
				{DataClass: casev1.DataClass_DATA_CLASS_FREE_TEXT, PlanClass: "freetext", Rule: "chatt-konversation", Action: retentionv1.Action_ACTION_REDACT,
					Period: "30d", Anchor: retentionv1.Anchor_ANCHOR_REGISTRATION, RedactedAt: at("2026-03-23T02:00:00Z"), RedactionReason: "retention"},
				{PlanClass: "case", Rule: "arendet-bevaras", Action: retentionv1.Action_ACTION_PRESERVE, Period: "2y", Anchor: retentionv1.Anchor_ANCHOR_REGISTRATION,
					DueAt: at("2028-02-20T10:00:00Z"), HoldsData: true},
			},
		}},
	}
}

func info() Info {
	return Info{
		Controller: "Mölndals stad, serviceförvaltningen", Contact: "dataskyddsombud@molndal.se",
		SearchedBy: "e-postadress", Searched: "asa@example.se",
		Categories: map[string]string{"gatubelysning": "Gatubelysning", "ovrigt": "Övrigt"},
		Queues:     map[string]Queue{"gata": {Title: "Gata och trafik", Department: "stadsbyggnad"}},
		Loc:        stockholm,
	}
}

func renderHTML(t *testing.T, resp *retentionv1.SubjectAccessResponse, in Info) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, Build(resp, in).WriteHTML(&buf))
	return buf.Bytes()
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to write %s", path)
	require.Equal(t, string(want), string(got), "%s differs; if the change is intended run go test -update and review the diff", path)
}

func TestHTMLGolden(t *testing.T) {
	golden(t, "extract.html", renderHTML(t, fixture(), info()))
}

// textOf is the text of a parsed HTML document, as a reader sees it.
func textOf(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// elements lists the parsed document's elements by tag.
func elements(n *html.Node, tag string) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == tag {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// TestHTMLIsSafeAndComplete parses the page as a browser would: it is in
// Swedish, loads nothing from elsewhere, runs nothing, and shows every
// value as the text it is, markup included.
func TestHTMLIsSafeAndComplete(t *testing.T) {
	raw := renderHTML(t, fixture(), info())
	doc, err := html.Parse(bytes.NewReader(raw))
	require.NoError(t, err)
	require.Equal(t, "sv", attr(elements(doc, "html")[0], "lang"))
	require.Empty(t, elements(doc, "script"), "a value became a script element")
	require.Empty(t, elements(doc, "b"), "a value became markup")
	for _, tag := range []string{"link", "img", "iframe", "object", "embed"} {
		require.Empty(t, elements(doc, tag), "the page loads a %s", tag)
	}
	require.NotContains(t, string(raw), "<script")
	require.Contains(t, string(raw), "&lt;script&gt;")
	require.Contains(t, string(raw), `charset="utf-8"`)
	text := textOf(doc)
	for _, want := range []string{
		name, script, noteText, attachment, "asa-ansokan", description, "Gröna gången 3", "19710304-5675", "+46701234567",
		"Storgatan 1, 431 30 Mölndal", "Åsa Öberg-Adel", // the value the rectification replaced
		"Gatukontoret tar den", "Lampan lagas inom en vecka.",
		"kön Gata och trafik, förvaltningen stadsbyggnad, handläggaren olle",
		"Gatubelysning", "telefon", "chatt",
		"tas bort 90 dagar efter registreringen", "gallras 2 år efter registreringen", "2026-05-31", "2028-03-02",
		"Uppgifterna gallrades 2026-03-23 enligt kommunens dokumenthanteringsplan", "Togs bort 2026-03-23",
		"sökte fram ärendet med dina uppgifter", "läste ärendet", "återkoppling", "medarbetare i kontaktcenter",
		"Mölndals stad, serviceförvaltningen", "dataskyddsombud@molndal.se", "Integritetsskyddsmyndigheten",
		"Ärendet ska bevaras enligt arkivlagen", "Gallring uppskjuten",
		"Mölndal stad, Kontaktcenter, version 2021.1",
	} {
		require.Contains(t, text, want)
	}
	// Times are Stockholm's: 08:00 UTC on 2 March is 09:00 there.
	require.Contains(t, text, "2026-03-02 09:00")
	require.Len(t, elements(doc, "section"), 2+7, "two cases and the seven fixed sections")
}

// TestHTMLWithoutActors: with WithoutActors the staff's user ids are not
// in the document, and everything else still is.
func TestHTMLWithoutActors(t *testing.T) {
	in := info()
	in.WithoutActors = true
	doc, err := html.Parse(bytes.NewReader(renderHTML(t, fixture(), in)))
	require.NoError(t, err)
	text := textOf(doc)
	for _, id := range []string{"anna", "dora"} {
		require.NotContains(t, text, id)
	}
	require.Contains(t, text, "läste ärendet")
	require.Contains(t, text, noteText)
	// "olle" is still named where the case was sent to him: a recipient,
	// not a reader.
	require.Contains(t, text, "handläggaren olle")
}

func TestHTMLEmptyExtract(t *testing.T) {
	resp := &retentionv1.SubjectAccessResponse{GeneratedAt: at("2026-04-02T08:30:00Z"), PlanName: "Mölndal stad, Kontaktcenter", PlanVersion: "2021.1"}
	doc, err := html.Parse(bytes.NewReader(renderHTML(t, resp, Info{Loc: stockholm})))
	require.NoError(t, err)
	text := textOf(doc)
	require.Contains(t, text, "Vi har inte hittat några personuppgifter om dig")
	require.Contains(t, text, DefaultController)
	require.Contains(t, text, "Integritetsskyddsmyndigheten")
}

func TestPDF(t *testing.T) {
	render := func() []byte {
		var buf bytes.Buffer
		require.NoError(t, Build(fixture(), info()).WritePDF(&buf, fixture().GetGeneratedAt().AsTime()))
		return buf.Bytes()
	}
	pdf := render()
	require.True(t, bytes.HasPrefix(pdf, []byte("%PDF-")))
	for _, want := range []string{"/Lang (sv)", "/FontFile2", "/BaseFont /utf8liberationsans", "/ToUnicode"} {
		// The language, the embedded font (so å, ä, ö need nothing
		// installed) and the map that lets a reader copy and search text.
		require.True(t, bytes.Contains(pdf, []byte(want)), "the PDF lacks %s", want)
	}
	require.True(t, bytes.Equal(pdf, render()), "the same extract gives the same file")

	// The text as a reader gets it out of the file. pdftotext (poppler)
	// is the independent reader; without it the check is skipped.
	bin, err := exec.LookPath("pdftotext")
	if err != nil {
		t.Skip("pdftotext (poppler-utils) not installed: the PDF's text is not checked")
	}
	path := filepath.Join(t.TempDir(), "extract.pdf")
	require.NoError(t, os.WriteFile(path, pdf, 0o600))
	out, err := exec.Command(bin, "-enc", "UTF-8", path, "-").Output()
	require.NoError(t, err)
	text := strings.Join(strings.Fields(string(out)), " ")
	for _, want := range []string{name, script, "ansökan <Åsa>.pdf", "Gröna gången 3", "19710304-5675", "Integritetsskyddsmyndigheten", "Lampan lagas inom en vecka.", "sida 1 av"} {
		require.Contains(t, text, strings.Join(strings.Fields(want), " "))
	}
}

func TestJSONIsTheAPIsAnswer(t *testing.T) {
	var a, b bytes.Buffer
	require.NoError(t, WriteJSON(&a, fixture()))
	require.NoError(t, WriteJSON(&b, fixture()))
	require.Equal(t, a.String(), b.String(), "the same extract gives the same bytes")
	back := &retentionv1.SubjectAccessResponse{}
	require.NoError(t, protojson.Unmarshal(a.Bytes(), back))
	require.True(t, proto.Equal(fixture(), back), "the JSON reads back as the same extract")
	require.Contains(t, a.String(), `"attachmentId": "asa-ansokan"`, "REST's lowerCamelCase names")
}

func TestPeriodSv(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"90d", "90 dagar"}, {"1d", "1 dag"}, {"6m", "6 månader"}, {"1m", "1 månad"}, {"2y", "2 år"},
		{"1y6m", "1 år och 6 månader"}, {"x", "x"}, {"12", "12"},
	} {
		require.Equal(t, tt.want, periodSv(tt.in), tt.in)
	}
}

// TestPDFOutsideTheFont: text the embedded font has no glyphs for (an
// emoji, which fpdf refused outright, and Chinese) is shown as □ with a
// note that the HTML file has it; the rest of the line is intact.
func TestPDFOutsideTheFont(t *testing.T) {
	resp := fixture()
	resp.Cases[0].FreeText.Description = "Tack 😀 漢字 för hjälpen"
	var buf bytes.Buffer
	require.NoError(t, Build(resp, info()).WritePDF(&buf, resp.GetGeneratedAt().AsTime()))
	require.True(t, bytes.HasPrefix(buf.Bytes(), []byte("%PDF-")))
	bin, err := exec.LookPath("pdftotext")
	if err != nil {
		t.Skip("pdftotext (poppler-utils) not installed: the PDF's text is not checked")
	}
	path := filepath.Join(t.TempDir(), "extract.pdf")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o600))
	out, err := exec.Command(bin, "-enc", "UTF-8", path, "-").Output()
	require.NoError(t, err)
	text := strings.Join(strings.Fields(string(out)), " ")
	require.Contains(t, text, "Tack □ □□ för hjälpen")
	require.Contains(t, text, "visas som □")
	// The HTML shows them as written.
	require.Contains(t, string(renderHTML(t, resp, info())), "Tack 😀 漢字 för hjälpen")
}
