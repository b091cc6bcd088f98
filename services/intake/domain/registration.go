// Package domain holds intake's rules: what a case must contain to be
// registered, what a channel may and may not carry, and how the citizen's
// identifiers are normalised. It is pure: no I/O, no clock of its own.
package domain

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	"github.com/kontakt-se/kontakt/pkg/identity"
)

// ErrInvalidInput is what every validation failure wraps, so the edge can
// map it to InvalidArgument in one place.
var ErrInvalidInput = errors.New("invalid case")

// Violation names one wrong field, by its path in the request (for
// example "case.contact.identity_number"), and says what is wrong without
// repeating the value, which may be personal data.
type Violation struct {
	Field       string
	Description string
}

// ValidationError lists every wrong field of one request, so a form or an
// agent can correct them all at once.
type ValidationError struct {
	Violations []Violation
}

// Error summarises the violations by field name only.
func (e *ValidationError) Error() string {
	fields := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		fields[i] = v.Field
	}
	return fmt.Sprintf("invalid case: %s", strings.Join(fields, ", "))
}

// Unwrap lets errors.Is(err, ErrInvalidInput) hold.
func (e *ValidationError) Unwrap() error { return ErrInvalidInput }

// Limits that are policy rather than schema.
const (
	// MaxAttachmentsBytes bounds the attachments of one case together.
	MaxAttachmentsBytes = 50 << 20
	// MaxAttachmentBytes bounds one attachment (the API's limit on
	// size_bytes and content, which mail is held to as well).
	MaxAttachmentBytes = 25 << 20
	// MaxAttachments bounds how many attachments a case has (the API's
	// max_items; the blob store keeps at most this many per case).
	MaxAttachments = 20
	// coarseDecimals rounds locations for statistics to about a kilometre.
	coarseDecimals = 2
)

// allowedContentTypes are the attachment types a contact centre handles:
// documents, scans and photos, and forwarded e-mails.
func allowedContentTypes() map[string]bool {
	return map[string]bool{
		"application/pdf":    true,
		"image/jpeg":         true,
		"image/png":          true,
		"image/heic":         true,
		"image/tiff":         true,
		"text/plain":         true,
		"message/rfc822":     true,
		"application/msword": true,
		"application/vnd.openxmlformats-officedocument.wordprocessingml.document": true,
		"application/vnd.oasis.opendocument.text":                                 true,
	}
}

// Registration is a validated case with its identifiers normalised, ready
// to be sealed and registered.
type Registration struct {
	Type     casev1.CaseType
	Channel  casev1.Channel
	Category string
	// Contact is nil when no contact detail was given.
	Contact *casev1.ContactDetails
	// Identity is nil when no identity number was given.
	Identity *casev1.IdentityNumber
	// FreeText is nil when the citizen wrote nothing (a letter with only
	// attachments).
	FreeText *casev1.FreeText
	// AttachmentNames and AttachmentIDs are sealed together (the
	// attachments class): a file's name is the citizen's, and its id is
	// whatever the form chose, which may be the name again.
	AttachmentNames []string
	AttachmentIDs   []string
	// Attachments carry only what is not free: the content type (one of
	// a closed list) and the size.
	Attachments []*casev1.Attachment
	// Content holds, in the order of Attachments, the content uploaded
	// with the case (nil for an attachment stored elsewhere): intake
	// seals it into the blob store before the case is appended.
	Content              [][]byte
	Coarse               *casev1.CoarseLocation
	CallerNumberWithheld bool
	// Mailbox is the contact centre's address a mail came to (see
	// ValidateMail); empty for other channels.
	Mailbox string
	// RefersTo is the number of the case a citizen's reply named but
	// could not join (CaseRegistered.refers_to_case_number).
	RefersTo string
}

// Source says where a case came from, because forms may only register
// form cases and agents must say which channel they took a case from.
type Source int

const (
	// FromAgent is an agent registering a case they took.
	FromAgent Source = iota
	// FromForm is a public e-service form (or Open311 client).
	FromForm
)

// Validate checks a case against intake's rules and returns it normalised.
// Every wrong field is reported, not only the first. now is needed to
// refuse identity numbers dated in the future; cats is the installation's
// list of categories, the only values case.category may take.
func Validate(in *intakev1.CaseInput, src Source, now time.Time, cats Categories) (Registration, error) {
	var v violations
	if in == nil {
		v.add("case", "is required")
		return Registration{}, v.err()
	}
	r := Registration{Type: in.GetType(), Channel: in.GetChannel(), Category: strings.TrimSpace(in.GetCategory())}

	if r.Type == casev1.CaseType_CASE_TYPE_UNSPECIFIED {
		v.add("case.type", "is required")
	} else if _, ok := casev1.CaseType_name[int32(r.Type)]; !ok {
		v.add("case.type", "is not a known case type")
	}
	switch src {
	case FromForm:
		if r.Channel != casev1.Channel_CHANNEL_UNSPECIFIED && r.Channel != casev1.Channel_CHANNEL_FORM {
			v.add("case.channel", "must be CHANNEL_FORM or unset for a form submission")
		}
		r.Channel = casev1.Channel_CHANNEL_FORM
	default:
		switch _, known := casev1.Channel_name[int32(r.Channel)]; {
		case r.Channel == casev1.Channel_CHANNEL_UNSPECIFIED:
			v.add("case.channel", "is required")
		case !known:
			v.add("case.channel", "is not a known channel")
		case r.Channel == casev1.Channel_CHANNEL_FORM:
			// Form cases come through SubmitForm with an idempotency key;
			// an agent typing one in would skew the channel statistics.
			v.add("case.channel", "agents register phone, e-mail, letter, visit or chat cases; forms use SubmitForm")
		}
	}
	if msg := cats.check(r.Category, r.Type); msg != "" {
		v.add("case.category", msg)
	}

	r.Contact, r.Identity, r.CallerNumberWithheld = validateContact(&v, in.GetContact(), r.Channel, now)
	r.FreeText = freeText(in)
	r.AttachmentNames, r.AttachmentIDs, r.Attachments, r.Content = validateAttachments(&v, in.GetAttachments())

	hasText := r.FreeText != nil && (r.FreeText.GetSubject() != "" || r.FreeText.GetDescription() != "" || r.FreeText.GetChatTranscript() != "")
	if !hasText && !(r.Type == casev1.CaseType_CASE_TYPE_BREV && len(r.Attachments) > 0) {
		v.add("case.description", "a subject, a description or a chat transcript is required")
	}
	if r.Channel == casev1.Channel_CHANNEL_CHAT && strings.TrimSpace(in.GetChatTranscript()) == "" {
		v.add("case.chat_transcript", "is required for chat cases")
	}

	if loc := in.GetLocation(); loc != nil && !validCoordinates(loc) {
		v.add("case.location", "coordinates must be a latitude from -90 to 90 and a longitude from -180 to 180")
	} else if loc != nil && hasCoordinates(loc) {
		r.Coarse = &casev1.CoarseLocation{Latitude: round(loc.GetLatitude()), Longitude: round(loc.GetLongitude())}
	}
	if u := strings.TrimSpace(in.GetMediaUrl()); u != "" && !webURL(u) {
		// A link a public answer may show and an app may open: only the
		// web's schemes, never javascript: or data:.
		v.add("case.media_url", "must be an http or https URL")
	}
	if r.Type == casev1.CaseType_CASE_TYPE_FELANMALAN {
		loc := in.GetLocation()
		if !hasPlace(loc) {
			v.add("case.location", "a fault report needs coordinates, an address or an address id")
		}
	}
	if err := v.err(); err != nil {
		return Registration{}, err
	}
	return r, nil
}

func validateContact(v *violations, c *intakev1.Contact, ch casev1.Channel, now time.Time) (*casev1.ContactDetails, *casev1.IdentityNumber, bool) {
	withheld := c.GetCallerNumberWithheld()
	name := strings.TrimSpace(c.GetName())
	email := strings.TrimSpace(c.GetEmail())
	phone := strings.TrimSpace(c.GetPhone())
	// The identity number is trimmed as the parser trims it, so that a
	// field holding only blanks (a no-break space or a zero-width space
	// from a copy and paste included) counts as empty here too.
	pnr := identity.TrimBlanks(c.GetIdentityNumber())

	// Seed 000, process 2.11: physical visits register no name and no
	// personnummer.
	if ch == casev1.Channel_CHANNEL_VISIT {
		if name != "" {
			v.add("case.contact.name", "visits register no name")
		}
		if pnr != "" {
			v.add("case.contact.identity_number", "visits register no identity number")
		}
	}
	// Phone cases register the caller's number unless it was hidden.
	if ch == casev1.Channel_CHANNEL_PHONE {
		switch {
		case withheld && phone != "":
			v.add("case.contact.phone", "must be empty when the caller's number is withheld")
		case !withheld && phone == "":
			v.add("case.contact.phone", "is required for phone cases unless caller_number_withheld is set")
		}
	} else if withheld {
		v.add("case.contact.caller_number_withheld", "applies only to phone cases")
	}
	if ch == casev1.Channel_CHANNEL_EMAIL && email == "" {
		v.add("case.contact.email", "is required for e-mail cases")
	}

	out := &casev1.ContactDetails{Name: name}
	if email != "" {
		// The address is stored as identity.Email.Address gives it (a
		// pasted display name dropped, the domain in lower-case Unicode),
		// so that every reader of the case sees the address alone and
		// the blind index finds it by any spelling.
		if e, err := identity.ParseEmail(email); err != nil {
			v.add("case.contact.email", "is not a valid e-mail address: "+reason(err))
		} else {
			out.Email = e.Address()
		}
	}
	if phone != "" {
		if e164, err := identity.NormalisePhone(phone); err != nil {
			v.add("case.contact.phone", "is not a valid Swedish or international phone number: "+reason(err))
		} else {
			out.Phone = e164
		}
	}
	if a := c.GetPostalAddress(); a != nil {
		pa := &casev1.PostalAddress{
			Street:     strings.TrimSpace(a.GetStreet()),
			PostalCode: strings.TrimSpace(a.GetPostalCode()),
			City:       strings.TrimSpace(a.GetCity()),
			Country:    strings.ToUpper(strings.TrimSpace(a.GetCountry())),
		}
		if pa.Country == "" {
			pa.Country = "SE"
		}
		if len(pa.Street) > 200 || len(pa.City) > 100 || len(pa.PostalCode) > 12 {
			v.add("case.contact.postal_address", "a part of the address is too long")
		}
		if pa.Country == "SE" && pa.PostalCode != "" && !swedishPostalCode(pa.PostalCode) {
			v.add("case.contact.postal_address.postal_code", "must be five digits (for example 431 82)")
		}
		if pa.Street != "" || pa.PostalCode != "" || pa.City != "" {
			out.PostalAddress = pa
		}
	}
	var id *casev1.IdentityNumber
	if pnr != "" && ch != casev1.Channel_CHANNEL_VISIT {
		pn, err := identity.ParsePersonalNumber(pnr, now)
		if err != nil {
			v.add("case.contact.identity_number", "is not a valid personnummer or samordningsnummer: "+reason(err))
		} else {
			id = &casev1.IdentityNumber{Number: pn.Normalised(), CoordinationNumber: pn.Coordination}
		}
	}
	if out.GetName() == "" && out.GetEmail() == "" && out.GetPhone() == "" && out.GetPostalAddress() == nil {
		out = nil
	}
	return out, id, withheld
}

// reason returns the part of a parse error after the sentinel, which says
// what was wrong without the value.
func reason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

func freeText(in *intakev1.CaseInput) *casev1.FreeText {
	ft := &casev1.FreeText{
		Subject:        strings.TrimSpace(in.GetSubject()),
		Description:    strings.TrimSpace(in.GetDescription()),
		ChatTranscript: in.GetChatTranscript(),
	}
	if strings.TrimSpace(ft.ChatTranscript) == "" {
		ft.ChatTranscript = ""
	}
	if loc := in.GetLocation(); hasPlace(loc) {
		ft.Location = &casev1.ExactLocation{
			Latitude: loc.GetLatitude(), Longitude: loc.GetLongitude(),
			Address: strings.TrimSpace(loc.GetAddress()), AddressId: strings.TrimSpace(loc.GetAddressId()),
		}
	}
	ft.MediaUrl = strings.TrimSpace(in.GetMediaUrl())
	if ft.Subject == "" && ft.Description == "" && ft.ChatTranscript == "" && ft.Location == nil && ft.MediaUrl == "" {
		return nil
	}
	return ft
}

func validateAttachments(v *violations, in []*intakev1.AttachmentInput) (names, ids []string, out []*casev1.Attachment, content [][]byte) {
	if len(in) == 0 {
		return nil, nil, nil, nil
	}
	if len(in) > MaxAttachments {
		v.add("case.attachments", fmt.Sprintf("are more than %d", MaxAttachments))
	}
	var uploaded bool
	content = make([][]byte, len(in))
	allowed := allowedContentTypes()
	names = make([]string, 0, len(in))
	ids = make([]string, 0, len(in))
	out = make([]*casev1.Attachment, 0, len(in))
	seen := map[string]bool{}
	var total int64
	for i, a := range in {
		field := fmt.Sprintf("case.attachments[%d]", i)
		ct := strings.ToLower(strings.TrimSpace(strings.Split(a.GetContentType(), ";")[0]))
		if !allowed[ct] {
			v.add(field+".content_type", "is not an accepted attachment type (PDF, JPEG, PNG, HEIC, TIFF, plain text, e-mail, Word or ODF text)")
		}
		if strings.TrimSpace(a.GetName()) == "" {
			v.add(field+".name", "is required")
		}
		if seen[a.GetAttachmentId()] {
			v.add(field+".attachment_id", "appears twice")
		}
		seen[a.GetAttachmentId()] = true
		if c := a.GetContent(); len(c) > 0 {
			switch {
			case len(c) > MaxAttachmentBytes:
				v.add(field+".content", fmt.Sprintf("exceeds %d MiB", MaxAttachmentBytes>>20))
			case int64(len(c)) != a.GetSizeBytes():
				v.add(field+".size_bytes", "is not the length of the content")
			}
			content[i], uploaded = c, true
		}
		total += a.GetSizeBytes()
		names = append(names, strings.TrimSpace(a.GetName()))
		ids = append(ids, a.GetAttachmentId())
		out = append(out, &casev1.Attachment{ContentType: ct, SizeBytes: a.GetSizeBytes(), Stored: len(a.GetContent()) > 0})
	}
	if total > MaxAttachmentsBytes {
		v.add("case.attachments", fmt.Sprintf("together exceed %d MiB", MaxAttachmentsBytes>>20))
	}
	if !uploaded {
		content = nil
	}
	return names, ids, out, content
}

// hasPlace says whether a location names a place: coordinates, an
// address as a person wrote it, or an id from the municipality's address
// register (Open311 allows any one of the three).
func hasPlace(l *intakev1.LocationInput) bool {
	return l != nil && (hasCoordinates(l) || strings.TrimSpace(l.GetAddress()) != "" || strings.TrimSpace(l.GetAddressId()) != "")
}

// webURL says whether s is an absolute http or https URL with a host.
func webURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func hasCoordinates(l *intakev1.LocationInput) bool {
	return l.GetLatitude() != 0 || l.GetLongitude() != 0
}

// validCoordinates refuses what the field rules cannot: NaN and infinities
// compare false with every bound, so a range check alone lets them through.
func validCoordinates(l *intakev1.LocationInput) bool {
	lat, lon := l.GetLatitude(), l.GetLongitude()
	return !math.IsNaN(lat) && !math.IsNaN(lon) && !math.IsInf(lat, 0) && !math.IsInf(lon, 0) &&
		lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180
}

func round(x float64) float64 {
	p := math.Pow(10, coarseDecimals)
	return math.Round(x*p) / p
}

func swedishPostalCode(s string) bool {
	digits := strings.ReplaceAll(s, " ", "")
	if len(digits) != 5 {
		return false
	}
	for _, r := range digits {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

type violations struct{ list []Violation }

func (v *violations) add(field, description string) {
	v.list = append(v.list, Violation{Field: field, Description: description})
}

func (v *violations) err() error {
	if len(v.list) == 0 {
		return nil
	}
	return &ValidationError{Violations: v.list}
}
