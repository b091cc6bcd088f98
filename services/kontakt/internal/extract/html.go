package extract

import (
	_ "embed"
	"html/template"
	"io"
)

// pageSource is the document's HTML template: one self-contained page
// (no scripts, fonts, images or style sheets from elsewhere) that prints
// as it reads. html/template escapes every value, so what a citizen or an
// official wrote is shown as text, never interpreted.
//
//go:embed extract.html.tmpl
var pageSource string

// sectionView is a section with its heading level, for the recursive
// "section" template.
type sectionView struct {
	S     Section
	Level int
}

var page = template.Must(template.New("extract").Funcs(template.FuncMap{
	"sectionAt": func(s Section, level int) sectionView { return sectionView{S: s, Level: level} },
	"inc":       func(n int) int { return n + 1 },
}).Parse(pageSource))

// WriteHTML writes the document as one HTML page in Swedish.
func (d *Document) WriteHTML(w io.Writer) error {
	return page.Execute(w, d)
}
