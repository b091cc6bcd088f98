// Package sv holds the Swedish words kontakt's documents use for the
// API's case types and channels: the register extract a citizen reads and
// the monthly report a manager reads say the same thing the same way. A
// value the table does not know is shown as the API names it, never left
// out.
package sv

import (
	"strconv"
	"strings"
	"time"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// Type names a case type as a heading or a table cell ("Felanmälan").
func Type(t casev1.CaseType) string {
	switch t {
	case casev1.CaseType_CASE_TYPE_FRAGA:
		return "Fråga"
	case casev1.CaseType_CASE_TYPE_FELANMALAN:
		return "Felanmälan"
	case casev1.CaseType_CASE_TYPE_SYNPUNKT:
		return "Synpunkt eller klagomål"
	case casev1.CaseType_CASE_TYPE_BREV:
		return "Brev"
	}
	return t.String()
}

// Channel names a contact channel inside a sentence ("kom in via
// telefon"); Capitalised gives its form at the start of a cell.
func Channel(c casev1.Channel) string {
	switch c {
	case casev1.Channel_CHANNEL_PHONE:
		return "telefon"
	case casev1.Channel_CHANNEL_EMAIL:
		return "e-post"
	case casev1.Channel_CHANNEL_FORM:
		return "e-tjänst på webben"
	case casev1.Channel_CHANNEL_LETTER:
		return "brev"
	case casev1.Channel_CHANNEL_VISIT:
		return "besök"
	case casev1.Channel_CHANNEL_CHAT:
		return "chatt"
	}
	return c.String()
}

// Capitalised upper-cases the first letter of a word or phrase.
func Capitalised(s string) string {
	for i, r := range s {
		return strings.ToUpper(string(r)) + s[i+len(string(r)):]
	}
	return s
}

// APIKey names the value of a statistics row's key in Swedish: an enum
// name of a case type or channel (CASE_TYPE_FELANMALAN, CHANNEL_PHONE)
// becomes its Swedish word; anything else (a queue, a category code) is
// shown as it is, and "" as "(ingen)".
func APIKey(key string) string {
	if key == "" {
		return "(ingen)"
	}
	if v, ok := casev1.CaseType_value[key]; ok && v != 0 {
		return Type(casev1.CaseType(v))
	}
	if v, ok := casev1.Channel_value[key]; ok && v != 0 {
		return Capitalised(Channel(casev1.Channel(v)))
	}
	return key
}

// months are the Swedish month names, January first.
var months = [...]string{"januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti", "september", "oktober", "november", "december"}

// weekdays are the Swedish short weekday names, Sunday first as
// time.Weekday counts.
var weekdays = [...]string{"sön", "mån", "tis", "ons", "tor", "fre", "lör"}

// Month names a month in lower case, as Swedish writes it ("oktober").
func Month(t time.Time) string { return months[t.Month()-1] }

// Date writes a date the Swedish way in running text ("5 oktober 2026").
func Date(t time.Time) string {
	return strconv.Itoa(t.Day()) + " " + months[t.Month()-1] + " " + strconv.Itoa(t.Year())
}

// ShortDay labels a day on a chart's axis ("mån 5 okt").
func ShortDay(t time.Time) string {
	return weekdays[t.Weekday()] + " " + strconv.Itoa(t.Day()) + " " + months[t.Month()-1][:3]
}
