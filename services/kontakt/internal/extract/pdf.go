package extract

import (
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"time"

	"codeberg.org/go-fonts/liberation/liberationsansbold"
	"codeberg.org/go-fonts/liberation/liberationsansregular"
	"codeberg.org/go-pdf/fpdf"
	"golang.org/x/image/font/sfnt"
)

// The PDF is written with go-pdf/fpdf (MIT; the maintained continuation
// of jung-kurt/gofpdf, already in the binary through gonum's plot) and
// the Liberation Sans fonts (SIL Open Font License 1.1, which allows
// embedding), embedded as UTF-8 TrueType subsets so å, ä, ö and every
// other Latin letter come out as written, without fonts installed on the
// machine that reads it.

const (
	pdfFont    = "LiberationSans"
	pdfMargin  = 18.0 // mm
	pdfLine    = 5.0  // mm, body text line height
	pdfBody    = 10.0 // pt
	pdfPadding = 1.2  // mm, inside table cells
)

// missingGlyph stands in the PDF for a character the font cannot show.
const missingGlyph = '□'

// fontHas reports whether Liberation Sans has a glyph for r. fpdf refuses
// a whole document over one character beyond U+FFFF (an emoji in a chat)
// and prints nothing useful for one the font lacks, so such characters
// are replaced, visibly, and the document says the HTML file has them.
var fontHas = sync.OnceValue(func() func(rune) bool {
	f, err := sfnt.Parse(liberationsansregular.TTF)
	if err != nil {
		panic(fmt.Sprintf("extract: the embedded font does not parse: %v", err))
	}
	var mu sync.Mutex
	var buf sfnt.Buffer
	return func(r rune) bool {
		if r > 0xFFFF {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		g, err := f.GlyphIndex(&buf, r)
		return err == nil && g != 0
	}
})

// pdfText makes s printable with the embedded font: line breaks stay,
// other control characters become spaces, characters the font lacks
// become missingGlyph. It reports whether anything was replaced.
func pdfText(s string) (string, bool) {
	has := fontHas()
	replaced := false
	out := strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == ' ':
			return r
		case r < 0x20 || r == 0x7f:
			return ' '
		case !has(r):
			replaced = true
			return missingGlyph
		}
		return r
	}, s)
	return out, replaced
}

// forPDF returns a copy of the document with every text made printable
// (pdfText), and a note when a character had to be replaced.
func (d *Document) forPDF() *Document {
	replaced := false
	fix := func(s string) string {
		out, r := pdfText(s)
		replaced = replaced || r
		return out
	}
	fixFields := func(fs []Field) []Field {
		out := make([]Field, len(fs))
		for i, f := range fs {
			out[i] = Field{fix(f.Label), fix(f.Value)}
		}
		return out
	}
	fixAll := func(xs []string) []string {
		out := make([]string, len(xs))
		for i, x := range xs {
			out[i] = fix(x)
		}
		return out
	}
	var fixSection func(Section) Section
	fixSection = func(s Section) Section {
		o := Section{Title: fix(s.Title), Paragraphs: fixAll(s.Paragraphs), Fields: fixFields(s.Fields)}
		if s.Table != nil {
			o.Table = &Table{Head: fixAll(s.Table.Head)}
			for _, row := range s.Table.Rows {
				o.Table.Rows = append(o.Table.Rows, fixAll(row))
			}
		}
		for _, sub := range s.Subsections {
			o.Subsections = append(o.Subsections, fixSection(sub))
		}
		return o
	}
	o := &Document{Title: fix(d.Title), Subtitle: fix(d.Subtitle), Meta: fixFields(d.Meta), Intro: fixAll(d.Intro)}
	for _, s := range d.Cases {
		o.Cases = append(o.Cases, fixSection(s))
	}
	for _, s := range d.About {
		o.About = append(o.About, fixSection(s))
	}
	if replaced {
		o.Intro = append(o.Intro, "Tecken som inte kan visas i PDF-filen (till exempel emojier) visas som "+string(missingGlyph)+
			". HTML-filen med samma utdrag visar dem som de skrevs.")
	}
	return o
}

// WritePDF writes the document as an A4 PDF. created is the document's
// creation date (the extract's), so the same extract gives the same file.
func (d *Document) WritePDF(w io.Writer, created time.Time) error {
	d = d.forPDF()
	p := fpdf.New("P", "mm", "A4", "")
	p.AddUTF8FontFromBytes(pdfFont, "", liberationsansregular.TTF)
	p.AddUTF8FontFromBytes(pdfFont, "B", liberationsansbold.TTF)
	p.SetMargins(pdfMargin, pdfMargin, pdfMargin)
	p.SetAutoPageBreak(true, pdfMargin)
	p.SetTitle(d.Title, true)
	p.SetSubject(d.Subtitle, true)
	p.SetLang("sv")
	p.SetCreator("kontakt subject-access", true)
	p.SetCreationDate(created)
	p.SetModificationDate(created)
	p.SetCatalogSort(true)
	p.AliasNbPages("{nb}")
	p.SetFooterFunc(func() {
		p.SetY(-pdfMargin + 4)
		p.SetFont(pdfFont, "", 8)
		p.CellFormat(0, 4, fmt.Sprintf("%s – sida %d av {nb}", d.Title, p.PageNo()), "", 0, "C", false, 0, "")
	})
	p.AddPage()

	r := &pdfWriter{p: p}
	p.SetFont(pdfFont, "B", 20)
	p.MultiCell(0, 9, d.Title, "", "L", false)
	p.SetFont(pdfFont, "", 11)
	p.MultiCell(0, 6, d.Subtitle, "", "L", false)
	p.Ln(3)
	r.fields(d.Meta)
	for _, para := range d.Intro {
		r.paragraph(para)
	}
	for _, s := range d.Cases {
		r.section(s, 2)
	}
	for _, s := range d.About {
		r.section(s, 2)
	}
	if err := p.Error(); err != nil {
		return err
	}
	return p.Output(w)
}

type pdfWriter struct {
	p *fpdf.Fpdf
}

func (r *pdfWriter) width() float64 {
	w, _ := r.p.GetPageSize()
	return w - 2*pdfMargin
}

func (r *pdfWriter) bottom() float64 {
	_, h := r.p.GetPageSize()
	return h - pdfMargin
}

// ensure starts a new page unless h millimetres fit on this one.
func (r *pdfWriter) ensure(h float64) {
	if r.p.GetY()+h > r.bottom() {
		r.p.AddPage()
	}
}

func (r *pdfWriter) section(s Section, level int) {
	sizes := map[int]float64{2: 15, 3: 12}
	size, ok := sizes[level]
	if !ok {
		size = 11
	}
	// Keep a heading with the first lines under it.
	r.ensure(size*0.6 + 4*pdfLine)
	r.p.Ln(level2Space(level))
	r.p.SetFont(pdfFont, "B", size)
	r.p.MultiCell(0, size*0.5, s.Title, "", "L", false)
	if level == 2 {
		y := r.p.GetY() + 0.5
		r.p.SetLineWidth(0.5)
		r.p.Line(pdfMargin, y, pdfMargin+r.width(), y)
		r.p.SetLineWidth(0.2)
		r.p.Ln(2)
	}
	r.p.Ln(1)
	for _, para := range s.Paragraphs {
		r.paragraph(para)
	}
	r.fields(s.Fields)
	if s.Table != nil {
		r.table(s.Table)
	}
	for _, sub := range s.Subsections {
		r.section(sub, level+1)
	}
}

func level2Space(level int) float64 {
	if level == 2 {
		return 6
	}
	return 3
}

func (r *pdfWriter) paragraph(text string) {
	r.p.SetFont(pdfFont, "", pdfBody)
	r.p.MultiCell(0, pdfLine, text, "", "L", false)
	r.p.Ln(1.5)
}

// fields writes labelled values in two columns: the label in bold, the
// value wrapped beside it.
func (r *pdfWriter) fields(fs []Field) {
	if len(fs) == 0 {
		return
	}
	r.p.SetFont(pdfFont, "B", pdfBody)
	labelW := 0.0
	for _, f := range fs {
		labelW = math.Max(labelW, r.p.GetStringWidth(f.Label)+2*pdfPadding+2)
	}
	labelW = math.Min(labelW, r.width()*0.35)
	for _, f := range fs {
		r.p.SetFont(pdfFont, "", pdfBody)
		lines := r.p.SplitText(f.Value, r.width()-labelW)
		r.p.SetFont(pdfFont, "B", pdfBody)
		labelLines := r.p.SplitText(f.Label, labelW)
		h := float64(max(len(lines), len(labelLines), 1)) * pdfLine
		if h <= r.bottom()-pdfMargin {
			r.ensure(h)
		}
		x, y := r.p.GetXY()
		r.p.MultiCell(labelW, pdfLine, f.Label, "", "L", false)
		yLabel := r.p.GetY()
		r.p.SetXY(x+labelW, y)
		r.p.SetFont(pdfFont, "", pdfBody)
		r.p.MultiCell(r.width()-labelW, pdfLine, f.Value, "", "L", false)
		if r.p.GetY() < yLabel {
			r.p.SetY(yLabel)
		}
		r.p.SetX(x)
	}
	r.p.Ln(2)
}

// table writes a table whose cells wrap; the header is repeated on each
// new page. Column widths follow the content: each column gets at least
// its longest word and shares the rest by how much text it holds.
func (r *pdfWriter) table(t *Table) {
	const size = 9.0
	line := 4.3
	n := len(t.Head)
	if n == 0 {
		return
	}
	r.p.SetFont(pdfFont, "", size)
	minW := make([]float64, n)
	want := make([]float64, n)
	measure := func(col int, s string, bold bool) {
		style := ""
		if bold {
			style = "B"
		}
		r.p.SetFont(pdfFont, style, size)
		for _, word := range strings.Fields(s) {
			minW[col] = math.Max(minW[col], r.p.GetStringWidth(word)+2*pdfPadding+0.5)
		}
		for _, l := range strings.Split(s, "\n") {
			want[col] = math.Max(want[col], r.p.GetStringWidth(l)+2*pdfPadding+0.5)
		}
	}
	for i, h := range t.Head {
		measure(i, h, true)
	}
	for _, row := range t.Rows {
		for i := 0; i < n && i < len(row); i++ {
			measure(i, row[i], false)
		}
	}
	widths := columnWidths(minW, want, r.width())

	r.p.SetCellMargin(pdfPadding)
	defer r.p.SetCellMargin(pdfPadding)
	header := func() { r.row(t.Head, widths, line, size, true) }
	r.ensure(2 * line * 2)
	header()
	for _, row := range t.Rows {
		cells := make([]string, n)
		copy(cells, row)
		h := r.rowHeight(cells, widths, line, size)
		if r.p.GetY()+h > r.bottom() {
			r.p.AddPage()
			header()
		}
		r.row(cells, widths, line, size, false)
	}
	r.p.Ln(3)
}

// columnWidths gives each column at least its minimum (its longest
// word), then shares the remaining width in proportion to what each
// column would take unwrapped. When even the minimums do not fit, they
// are scaled down (words then break inside).
func columnWidths(minW, want []float64, total float64) []float64 {
	out := make([]float64, len(minW))
	sumMin, sumExtra := 0.0, 0.0
	for i := range minW {
		want[i] = math.Max(want[i], minW[i])
		sumMin += minW[i]
		sumExtra += want[i] - minW[i]
	}
	if sumMin >= total {
		for i := range minW {
			out[i] = minW[i] * total / sumMin
		}
		return out
	}
	spare := total - sumMin
	for i := range minW {
		out[i] = minW[i]
		if sumExtra > 0 {
			out[i] += spare * (want[i] - minW[i]) / sumExtra
		} else {
			out[i] += spare / float64(len(minW))
		}
	}
	// Columns that need no more than they want give the rest to the
	// others only through the proportion above; that is enough here.
	return out
}

func (r *pdfWriter) rowHeight(cells []string, widths []float64, line, size float64) float64 {
	r.p.SetFont(pdfFont, "", size)
	lines := 1
	for i, c := range cells {
		lines = max(lines, len(r.p.SplitText(c, widths[i])))
	}
	return float64(lines)*line + 2*pdfPadding
}

// row draws one table row: every cell as tall as the tallest. A row too
// tall for a page is split over pages by MultiCell, without borders.
func (r *pdfWriter) row(cells []string, widths []float64, line, size float64, head bool) {
	style := ""
	if head {
		style = "B"
		r.p.SetFillColor(235, 235, 235)
	}
	h := r.rowHeight(cells, widths, line, size)
	r.p.SetFont(pdfFont, style, size)
	x0, y0 := r.p.GetXY()
	if y0+h > r.bottom() {
		// Taller than what is left of a fresh page: write the cells one
		// after the other, each with its heading, so nothing is lost.
		for i, c := range cells {
			r.p.SetFont(pdfFont, "B", size)
			r.p.MultiCell(0, line, fmt.Sprintf("%d.", i+1), "", "L", false)
			r.p.SetFont(pdfFont, "", size)
			r.p.MultiCell(0, line, c, "", "L", false)
		}
		return
	}
	x := x0
	for i, c := range cells {
		r.p.Rect(x, y0, widths[i], h, map[bool]string{true: "FD", false: "D"}[head])
		r.p.SetXY(x, y0+pdfPadding)
		r.p.MultiCell(widths[i], line, c, "", "L", false)
		x += widths[i]
	}
	r.p.SetXY(x0, y0+h)
}
