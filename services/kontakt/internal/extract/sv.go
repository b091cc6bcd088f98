package extract

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
)

// The Swedish words the document uses for the API's values. A value the
// tables do not know is shown as the API names it, never left out.

// planClassSv names a class of the plan ("contact", …, "case", "audit").
func planClassSv(c string) string {
	switch c {
	case "contact":
		return "Kontaktuppgifter"
	case "identity":
		return "Personnummer eller samordningsnummer"
	case "freetext":
		return "Det du skrev (rubrik, beskrivning, chatt, plats)"
	case "attachments":
		return "Bilagornas namn och id"
	case "answer":
		return "Svar, anteckningar och kommentarer från kommunen"
	case "case":
		return "Ärendet i sin helhet"
	case "audit":
		return "Loggen över vem som tagit del av ärendet"
	}
	return c
}

func dataClassSv(dc casev1.DataClass) string {
	switch dc {
	case casev1.DataClass_DATA_CLASS_CONTACT_DETAILS:
		return "kontaktuppgifter"
	case casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER:
		return "personnummer"
	case casev1.DataClass_DATA_CLASS_FREE_TEXT:
		return "fritext"
	case casev1.DataClass_DATA_CLASS_ATTACHMENTS:
		return "bilagor"
	case casev1.DataClass_DATA_CLASS_ANSWER:
		return "svar och anteckningar"
	}
	return dc.String()
}

func roleSv(r string) string {
	switch r {
	case "agent":
		return "medarbetare i kontaktcenter"
	case "officer":
		return "handläggare"
	case "supervisor":
		return "arbetsledare"
	case "dpo":
		return "dataskyddsombud"
	case "analyst":
		return "analytiker"
	case "":
		return "–"
	}
	return r
}

// rpcSv says in words what an audit entry's call did.
func rpcSv(rpc string) string {
	name := rpc[strings.LastIndexByte(rpc, '/')+1:]
	switch name {
	case "GetCase":
		return "läste ärendet"
	case "FindCases":
		return "sökte fram ärendet med dina uppgifter"
	case "ListAuditTrail":
		return "granskade loggen över vem som tagit del av ärendet"
	case "SubjectAccess":
		return "tog fram ett registerutdrag"
	case "MarkForPreservation":
		return "markerade ärendet för bevarande"
	case "WithdrawPreservationMark":
		return "återkallade markeringen för bevarande"
	case "":
		return "–"
	}
	return name
}

func textKindSv(k retentionv1.SubjectTextKind) string {
	switch k {
	case retentionv1.SubjectTextKind_SUBJECT_TEXT_KIND_ANSWER:
		return "Svar till dig"
	case retentionv1.SubjectTextKind_SUBJECT_TEXT_KIND_NOTE:
		return "Intern anteckning"
	case retentionv1.SubjectTextKind_SUBJECT_TEXT_KIND_FORWARD_COMMENT:
		return "Kommentar vid vidarebefordran"
	case retentionv1.SubjectTextKind_SUBJECT_TEXT_KIND_CITIZEN_MESSAGE:
		return "Ditt meddelande"
	}
	return k.String()
}

// periodSv writes a plan period ("90d", "6m", "2y", "1y6m") in words.
func periodSv(p string) string {
	var parts []string
	rest := p
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) {
			return p
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil {
			return p
		}
		var unit string
		switch rest[i] {
		case 'y':
			unit = "år"
		case 'm':
			unit = "månader"
			if n == 1 {
				unit = "månad"
			}
		case 'd':
			unit = "dagar"
			if n == 1 {
				unit = "dag"
			}
		default:
			return p
		}
		parts = append(parts, fmt.Sprintf("%d %s", n, unit))
		rest = rest[i+1:]
	}
	return strings.Join(parts, " och ")
}

// ruleSv says what a plan rule does, in words: "tas bort 90 dagar efter
// registreringen".
func ruleSv(r *retentionv1.SubjectRetention) string {
	if r.GetRule() == "" {
		return "tas bort när ärendet gallras"
	}
	from := "efter registreringen"
	if r.GetAnchor() == retentionv1.Anchor_ANCHOR_CLOSURE {
		from = "efter att ärendet avslutades"
	}
	if r.GetPlanClass() == "audit" {
		from = "efter att varje uppgift i loggen skrevs"
	}
	period := periodSv(r.GetPeriod())
	switch r.GetAction() {
	case retentionv1.Action_ACTION_REDACT:
		return "tas bort " + period + " " + from
	case retentionv1.Action_ACTION_DELETE:
		return "gallras " + period + " " + from
	case retentionv1.Action_ACTION_PRESERVE:
		return "bevaras: lämnas till kommunens arkiv " + period + " " + from + " och tas sedan bort ur ärendesystemet"
	case retentionv1.Action_ACTION_KEEP:
		return "sparas"
	}
	return r.GetAction().String()
}

// dateSv and timeSv write times as Swedish documents do (ISO dates).
func dateSv(t time.Time, loc *time.Location) string { return t.In(loc).Format("2006-01-02") }

func timeSv(t time.Time, loc *time.Location) string {
	return t.In(loc).Format("2006-01-02 15:04")
}

// sizeSv writes a file size with a decimal comma: "980 byte", "12 kB",
// "1,5 MB".
func sizeSv(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d byte", n)
	case n < 1000*1000:
		return strings.Replace(strconv.FormatFloat(float64(n)/1000, 'f', 0, 64), ".", ",", 1) + " kB"
	default:
		return strings.Replace(strconv.FormatFloat(float64(n)/1000/1000, 'f', 1, 64), ".", ",", 1) + " MB"
	}
}
