package ports

import (
	"encoding/json"
	"encoding/xml"
	"net/http"
)

// The documents of GeoReport v2, each with its JSON names and its XML
// elements as the specification's examples show them. An XML answer
// wraps a list in the specification's root element (<services>,
// <service_requests>, <errors>); a JSON answer is the bare array.

// discoveryDoc is the Service Discovery document.
type discoveryDoc struct {
	XMLName    xml.Name            `json:"-" xml:"discovery"`
	Changeset  string              `json:"changeset" xml:"changeset"`
	Contact    string              `json:"contact" xml:"contact"`
	KeyService string              `json:"key_service" xml:"key_service"`
	Endpoints  []discoveryEndpoint `json:"endpoints" xml:"endpoints>endpoint"`
}

type discoveryEndpoint struct {
	Specification string   `json:"specification" xml:"specification"`
	URL           string   `json:"url" xml:"url"`
	Changeset     string   `json:"changeset" xml:"changeset"`
	Type          string   `json:"type" xml:"type"`
	Formats       []string `json:"formats" xml:"formats>format"`
}

type serviceDoc struct {
	ServiceCode string `json:"service_code" xml:"service_code"`
	ServiceName string `json:"service_name" xml:"service_name"`
	Description string `json:"description" xml:"description"`
	Metadata    bool   `json:"metadata" xml:"metadata"`
	Type        string `json:"type" xml:"type"`
	Keywords    string `json:"keywords" xml:"keywords"`
	Group       string `json:"group" xml:"group"`
}

type servicesXML struct {
	XMLName  xml.Name     `xml:"services"`
	Services []serviceDoc `xml:"service"`
}

type serviceDefinitionDoc struct {
	XMLName     xml.Name   `json:"-" xml:"service_definition"`
	ServiceCode string     `json:"service_code" xml:"service_code"`
	Attributes  []struct{} `json:"attributes" xml:"attributes>attribute"`
}

// createdDoc answers a POST. account_id is null: kontakt keeps no
// accounts.
type createdDoc struct {
	ServiceRequestID string  `json:"service_request_id" xml:"service_request_id"`
	ServiceNotice    string  `json:"service_notice" xml:"service_notice"`
	AccountID        *string `json:"account_id" xml:"account_id"`
}

type createdXML struct {
	XMLName  xml.Name     `xml:"service_requests"`
	Requests []createdDoc `xml:"request"`
}

// requestDoc is a service request as GET requests answers it. The
// fields kontakt has no value for are left out.
type requestDoc struct {
	ServiceRequestID  string   `json:"service_request_id" xml:"service_request_id"`
	Status            string   `json:"status" xml:"status"`
	StatusNotes       string   `json:"status_notes,omitempty" xml:"status_notes,omitempty"`
	ServiceName       string   `json:"service_name" xml:"service_name"`
	ServiceCode       string   `json:"service_code" xml:"service_code"`
	Description       string   `json:"description,omitempty" xml:"description,omitempty"`
	AgencyResponsible string   `json:"agency_responsible,omitempty" xml:"agency_responsible,omitempty"`
	ServiceNotice     string   `json:"service_notice,omitempty" xml:"service_notice,omitempty"`
	RequestedDatetime string   `json:"requested_datetime" xml:"requested_datetime"`
	UpdatedDatetime   string   `json:"updated_datetime" xml:"updated_datetime"`
	ExpectedDatetime  string   `json:"expected_datetime,omitempty" xml:"expected_datetime,omitempty"`
	Address           string   `json:"address,omitempty" xml:"address,omitempty"`
	AddressID         string   `json:"address_id,omitempty" xml:"address_id,omitempty"`
	Lat               *float64 `json:"lat,omitempty" xml:"lat,omitempty"`
	Long              *float64 `json:"long,omitempty" xml:"long,omitempty"`
	MediaURL          string   `json:"media_url,omitempty" xml:"media_url,omitempty"`
}

type requestsXML struct {
	XMLName  xml.Name     `xml:"service_requests"`
	Requests []requestDoc `xml:"request"`
}

// open311Error is one entry of GeoReport v2's error list; code is the
// HTTP status.
type open311Error struct {
	Code        int    `json:"code" xml:"code"`
	Description string `json:"description" xml:"description"`
}

type errorsXML struct {
	XMLName xml.Name       `xml:"errors"`
	Errors  []open311Error `xml:"error"`
}

// write answers with the JSON or the XML form of a document.
func (o *Open311) write(w http.ResponseWriter, f string, code int, asJSON, asXML any) {
	if f == formatXML {
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		w.WriteHeader(code)
		// A failed write means the client went away; there is nobody to
		// tell.
		_, _ = w.Write([]byte(xml.Header))
		_ = xml.NewEncoder(w).Encode(asXML)
		_, _ = w.Write([]byte("\n"))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(asJSON)
}

// writeErrors answers with GeoReport's error list, one entry per problem.
func (o *Open311) writeErrors(w http.ResponseWriter, f string, code int, problems ...problem) {
	list := make([]open311Error, len(problems))
	for i, p := range problems {
		list[i] = open311Error{Code: p.Code, Description: p.Description}
	}
	o.write(w, f, code, list, errorsXML{Errors: list})
}
