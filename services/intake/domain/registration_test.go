package domain

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
)

var now = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// cats is the tests' list of categories: bygglov for every type,
// gatubelysning for fault reports only.
var cats = NewCategories([]Category{
	{Code: "bygglov"},
	{Code: "gatubelysning", Types: []casev1.CaseType{casev1.CaseType_CASE_TYPE_FELANMALAN}},
})

func base(ch casev1.Channel) *intakev1.CaseInput {
	return &intakev1.CaseInput{
		Type:        casev1.CaseType_CASE_TYPE_FRAGA,
		Channel:     ch,
		Category:    "bygglov",
		Subject:     "Fråga om bygglov",
		Description: "Behöver jag bygglov för ett attefallshus?",
		Contact:     &intakev1.Contact{Name: "Anna Andersson", Email: "anna@example.se", Phone: "070-123 45 67"},
	}
}

func with(in *intakev1.CaseInput, f func(*intakev1.CaseInput)) *intakev1.CaseInput {
	c := proto.Clone(in).(*intakev1.CaseInput)
	f(c)
	return c
}

func fields(err error) []string {
	var ve *ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	out := make([]string, len(ve.Violations))
	for i, v := range ve.Violations {
		out[i] = v.Field
	}
	return out
}

func TestValidateRefusesWithTheFieldNamed(t *testing.T) {
	tests := []struct {
		name   string
		in     *intakev1.CaseInput
		src    Source
		fields []string
	}{
		{"visit with a name", with(base(casev1.Channel_CHANNEL_VISIT), func(c *intakev1.CaseInput) { c.Contact.Phone = "" }), FromAgent, []string{"case.contact.name"}},
		{"visit with an identity number", with(base(casev1.Channel_CHANNEL_VISIT), func(c *intakev1.CaseInput) {
			c.Contact = &intakev1.Contact{IdentityNumber: "19121212-1212"}
		}), FromAgent, []string{"case.contact.identity_number"}},
		{"visit with both", with(base(casev1.Channel_CHANNEL_VISIT), func(c *intakev1.CaseInput) {
			c.Contact = &intakev1.Contact{Name: "X", IdentityNumber: "19121212-1212"}
		}), FromAgent, []string{"case.contact.name", "case.contact.identity_number"}},
		{"phone without number", with(base(casev1.Channel_CHANNEL_PHONE), func(c *intakev1.CaseInput) { c.Contact.Phone = "" }), FromAgent, []string{"case.contact.phone"}},
		{"phone withheld but given", with(base(casev1.Channel_CHANNEL_PHONE), func(c *intakev1.CaseInput) { c.Contact.CallerNumberWithheld = true }), FromAgent, []string{"case.contact.phone"}},
		{"withheld on e-mail", with(base(casev1.Channel_CHANNEL_EMAIL), func(c *intakev1.CaseInput) { c.Contact.CallerNumberWithheld = true }), FromAgent, []string{"case.contact.caller_number_withheld"}},
		{"e-mail case without address", with(base(casev1.Channel_CHANNEL_EMAIL), func(c *intakev1.CaseInput) { c.Contact.Email = "" }), FromAgent, []string{"case.contact.email"}},
		{"bad e-mail", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Contact.Email = "anna@" }), FromAgent, []string{"case.contact.email"}},
		{"bad phone", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Contact.Phone = "12" }), FromAgent, []string{"case.contact.phone"}},
		{"mobile number missing a digit", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Contact.Phone = "070-123 45 6" }), FromAgent, []string{"case.contact.phone"}},
		{"unassigned country code", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Contact.Phone = "+999 123 456 789" }), FromAgent, []string{"case.contact.phone"}},
		{"two e-mail addresses", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Contact.Email = "anna@example.se, bo@example.se" }), FromAgent, []string{"case.contact.email"}},
		{"bad check digit", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Contact.IdentityNumber = "19121212-1213" }), FromAgent, []string{"case.contact.identity_number"}},
		{"future date", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Contact.IdentityNumber = "20991212-1212" }), FromAgent, []string{"case.contact.identity_number"}},
		{"birth number 000", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Contact.IdentityNumber = "20150916-0006" }), FromAgent, []string{"case.contact.identity_number"}},
		{"born more than 130 years ago", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Contact.IdentityNumber = "18900101-9802" }), FromAgent, []string{"case.contact.identity_number"}},
		{"twelve digits with plus under a hundred", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Contact.IdentityNumber = "19270101+5550" }), FromAgent, []string{"case.contact.identity_number"}},
		{"no channel from an agent", base(casev1.Channel_CHANNEL_UNSPECIFIED), FromAgent, []string{"case.channel"}},
		{"form channel from an agent", base(casev1.Channel_CHANNEL_FORM), FromAgent, []string{"case.channel"}},
		{"NaN coordinates", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) {
			c.Location = &intakev1.LocationInput{Latitude: math.NaN(), Longitude: 12}
		}), FromAgent, []string{"case.location"}},
		{"phone channel from a form", base(casev1.Channel_CHANNEL_PHONE), FromForm, []string{"case.channel"}},
		{"blank category", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Category = "  " }), FromAgent, []string{"case.category"}},
		{"unknown category from a form", with(base(casev1.Channel_CHANNEL_FORM), func(c *intakev1.CaseInput) { c.Category = "Anna Andersson 19121212-1212" }), FromForm, []string{"case.category"}},
		{"category by its title, not its code", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Category = "Bygglov" }), FromAgent, []string{"case.category"}},
		{"category of another case type", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Category = "gatubelysning" }), FromAgent, []string{"case.category"}},
		{"no text", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Subject, c.Description = "", " " }), FromAgent, []string{"case.description"}},
		{"chat without transcript", base(casev1.Channel_CHANNEL_CHAT), FromAgent, []string{"case.chat_transcript"}},
		{"media link that is not a web address", with(base(casev1.Channel_CHANNEL_FORM), func(c *intakev1.CaseInput) { c.MediaUrl = "javascript:alert(1)" }), FromForm, []string{"case.media_url"}},
		{"fault report without place", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Type = casev1.CaseType_CASE_TYPE_FELANMALAN }), FromAgent, []string{"case.location"}},
		{"attachment of a refused type", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) {
			c.Attachments = []*intakev1.AttachmentInput{{Name: "a.exe", ContentType: "application/x-msdownload", SizeBytes: 10, AttachmentId: "a1"}}
		}), FromAgent, []string{"case.attachments[0].content_type"}},
		{"attachments too large together", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) {
			for i := range 3 {
				c.Attachments = append(c.Attachments, &intakev1.AttachmentInput{Name: "scan.pdf", ContentType: "application/pdf", SizeBytes: 20 << 20, AttachmentId: string(rune('a' + i))})
			}
		}), FromAgent, []string{"case.attachments"}},
		{"postal code", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) {
			c.Contact.PostalAddress = &casev1.PostalAddress{Street: "Storgatan 1", PostalCode: "4318", City: "Mölndal"}
		}), FromAgent, []string{"case.contact.postal_address.postal_code"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Validate(tt.in, tt.src, now, cats)
			require.ErrorIs(t, err, ErrInvalidInput)
			require.Equal(t, tt.fields, fields(err))
		})
	}
}

func TestValidationErrorsNeverEchoValues(t *testing.T) {
	in := with(base(casev1.Channel_CHANNEL_VISIT), func(c *intakev1.CaseInput) {
		c.Contact = &intakev1.Contact{Name: "MARKER-NAME", IdentityNumber: "MARKER-PNR", Email: "MARKER@", Phone: "MARKER-PHONE"}
		c.Category = "MARKER-CATEGORY"
	})
	_, err := Validate(in, FromAgent, now, cats)
	require.Error(t, err)
	var ve *ValidationError
	require.True(t, errors.As(err, &ve))
	for _, v := range ve.Violations {
		require.NotContains(t, v.Description, "MARKER")
	}
	require.NotContains(t, err.Error(), "MARKER")
}

func TestValidateNormalises(t *testing.T) {
	tests := []struct {
		name  string
		in    *intakev1.CaseInput
		src   Source
		check func(t *testing.T, r Registration)
	}{
		{"phone to E.164 and identity to 12 digits", with(base(casev1.Channel_CHANNEL_PHONE), func(c *intakev1.CaseInput) { c.Contact.IdentityNumber = "121212+1212" }), FromAgent, func(t *testing.T, r Registration) {
			require.Equal(t, "+46701234567", r.Contact.GetPhone())
			require.Equal(t, "191212121212", r.Identity.GetNumber())
			require.False(t, r.Identity.GetCoordinationNumber())
		}},
		{"pasted e-mail keeps the address alone, phone as typed", with(base(casev1.Channel_CHANNEL_EMAIL), func(c *intakev1.CaseInput) {
			c.Contact.Email, c.Contact.Phone = " Anna Svensson <Anna@Example.SE> ", "(+46) 70 123 45 67"
		}), FromAgent, func(t *testing.T, r Registration) {
			require.Equal(t, "Anna@example.se", r.Contact.GetEmail())
			require.Equal(t, "+46701234567", r.Contact.GetPhone())
		}},
		{"internationalised domain in lower-case Unicode, Italian 0 kept", with(base(casev1.Channel_CHANNEL_EMAIL), func(c *intakev1.CaseInput) {
			c.Contact.Email, c.Contact.Phone = "anna@RÄKSMÖRGÅS.SE", "+39 (0)6 1234 5678"
		}), FromAgent, func(t *testing.T, r Registration) {
			require.Equal(t, "anna@räksmörgås.se", r.Contact.GetEmail())
			require.Equal(t, "+390612345678", r.Contact.GetPhone())
		}},
		{"withheld phone", with(base(casev1.Channel_CHANNEL_PHONE), func(c *intakev1.CaseInput) { c.Contact.Phone, c.Contact.CallerNumberWithheld = "", true }), FromAgent, func(t *testing.T, r Registration) {
			require.True(t, r.CallerNumberWithheld)
			require.Empty(t, r.Contact.GetPhone())
		}},
		{"visit without identity is fine", with(base(casev1.Channel_CHANNEL_VISIT), func(c *intakev1.CaseInput) { c.Contact = nil }), FromAgent, func(t *testing.T, r Registration) {
			require.Nil(t, r.Contact)
			require.Nil(t, r.Identity)
		}},
		{"form channel is forced", base(casev1.Channel_CHANNEL_UNSPECIFIED), FromForm, func(t *testing.T, r Registration) {
			require.Equal(t, casev1.Channel_CHANNEL_FORM, r.Channel)
		}},
		{"fault report is rounded for statistics and exact in free text", with(base(casev1.Channel_CHANNEL_FORM), func(c *intakev1.CaseInput) {
			c.Type = casev1.CaseType_CASE_TYPE_FELANMALAN
			c.Location = &intakev1.LocationInput{Latitude: 57.655312, Longitude: 12.013987}
		}), FromForm, func(t *testing.T, r Registration) {
			require.Equal(t, 57.66, r.Coarse.GetLatitude())
			require.Equal(t, 12.01, r.Coarse.GetLongitude())
			require.Equal(t, 57.655312, r.FreeText.GetLocation().GetLatitude())
		}},
		{"fault report with only an address", with(base(casev1.Channel_CHANNEL_FORM), func(c *intakev1.CaseInput) {
			c.Type = casev1.CaseType_CASE_TYPE_FELANMALAN
			c.Location = &intakev1.LocationInput{Address: "Storgatan 1"}
		}), FromForm, func(t *testing.T, r Registration) {
			require.Nil(t, r.Coarse)
			require.Equal(t, "Storgatan 1", r.FreeText.GetLocation().GetAddress())
		}},
		{"fault report with only an address id, and a media link", with(base(casev1.Channel_CHANNEL_FORM), func(c *intakev1.CaseInput) {
			c.Type = casev1.CaseType_CASE_TYPE_FELANMALAN
			c.Location = &intakev1.LocationInput{AddressId: " 12345 "}
			c.MediaUrl = "https://example.se/bild.jpg"
		}), FromForm, func(t *testing.T, r Registration) {
			require.Nil(t, r.Coarse)
			require.Equal(t, "12345", r.FreeText.GetLocation().GetAddressId())
			require.Equal(t, "https://example.se/bild.jpg", r.FreeText.GetMediaUrl(), "sealed with the free text")
		}},
		{"letter with only a scan", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) {
			c.Type, c.Subject, c.Description = casev1.CaseType_CASE_TYPE_BREV, "", ""
			c.Attachments = []*intakev1.AttachmentInput{{Name: "brev.pdf", ContentType: "application/pdf; charset=binary", SizeBytes: 1000, AttachmentId: "s1"}}
		}), FromAgent, func(t *testing.T, r Registration) {
			require.Equal(t, []string{"brev.pdf"}, r.AttachmentNames)
			require.Equal(t, []string{"s1"}, r.AttachmentIDs, "the id is sealed with the name")
			require.Empty(t, r.Attachments[0].GetAttachmentId(), "the form's id is not kept in plain text")
			require.Equal(t, "application/pdf", r.Attachments[0].GetContentType())
		}},
		{"category with spaces around", with(base(casev1.Channel_CHANNEL_FORM), func(c *intakev1.CaseInput) {
			c.Type, c.Category = casev1.CaseType_CASE_TYPE_FELANMALAN, " gatubelysning "
			c.Location = &intakev1.LocationInput{Address: "Storgatan 1"}
		}), FromForm, func(t *testing.T, r Registration) {
			require.Equal(t, "gatubelysning", r.Category)
		}},
		{"samordningsnummer", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Contact.IdentityNumber = "701063-2391" }), FromAgent, func(t *testing.T, r Registration) {
			require.True(t, r.Identity.GetCoordinationNumber())
			require.True(t, strings.HasPrefix(r.Identity.GetNumber(), "197010"))
		}},
		// Skatteverket's test number 192612239232: in 2026 the person turns
		// 100, so the ten-digit form has '+', and it is 1926, not 1826.
		{"plus from the year of the hundredth birthday", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Contact.IdentityNumber = "261223+9232" }), FromAgent, func(t *testing.T, r Registration) {
			require.Equal(t, "192612239232", r.Identity.GetNumber())
		}},
		{"twelve digits with plus", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Contact.IdentityNumber = "19261223+9232" }), FromAgent, func(t *testing.T, r Registration) {
			require.Equal(t, "192612239232", r.Identity.GetNumber())
		}},
		{"blanks around the number", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Contact.IdentityNumber = " \u00a019261223-9232\u200b " }), FromAgent, func(t *testing.T, r Registration) {
			require.Equal(t, "192612239232", r.Identity.GetNumber())
		}},
		{"samordningsnummer with month 00", with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Contact.IdentityNumber = "19150072-2390" }), FromAgent, func(t *testing.T, r Registration) {
			require.True(t, r.Identity.GetCoordinationNumber())
			require.Equal(t, "191500722390", r.Identity.GetNumber())
		}},
		{"only blanks is no identity number", with(base(casev1.Channel_CHANNEL_VISIT), func(c *intakev1.CaseInput) { c.Contact = &intakev1.Contact{IdentityNumber: "\u00a0\u200b "} }), FromAgent, func(t *testing.T, r Registration) {
			require.Nil(t, r.Identity)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Validate(tt.in, tt.src, now, cats)
			require.NoError(t, err)
			tt.check(t, r)
		})
	}
}

func TestCategoryViolationListsTheCodesForTheType(t *testing.T) {
	_, err := Validate(with(base(casev1.Channel_CHANNEL_LETTER), func(c *intakev1.CaseInput) { c.Category = "okand" }), FromAgent, now, cats)
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Violations, 1)
	require.Equal(t, "is not one of the configured categories; use one of: bygglov", ve.Violations[0].Description, "a question may not use the fault-report category")

	_, err = Validate(base(casev1.Channel_CHANNEL_LETTER), FromAgent, now, Categories{})
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "case.category", ve.Violations[0].Field, "no list configured: nothing is accepted")
}
