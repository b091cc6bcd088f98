package e2e

// Open311 GeoReport v2 against real clients' shapes: FixMyStreet's
// (perllib/Open311.pm: XML, form posts with attribute[…], its parsing of
// the answers with XML::Simple) and the npm `open311` package's (JSON,
// open311_npm_test.go). Each call must answer as the specification says:
// http://wiki.open311.org/GeoReport_v2.

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The documents as FixMyStreet reads them (XML::Simple with ForceArray on
// service, request and error): root element, then a list.
type (
	fmsServices struct {
		XMLName  xml.Name `xml:"services"`
		Services []struct {
			ServiceCode string `xml:"service_code"`
			ServiceName string `xml:"service_name"`
			Description string `xml:"description"`
			Metadata    string `xml:"metadata"`
			Type        string `xml:"type"`
			Group       string `xml:"group"`
		} `xml:"service"`
	}
	fmsDefinition struct {
		XMLName     xml.Name `xml:"service_definition"`
		ServiceCode string   `xml:"service_code"`
		Attributes  []struct {
			Code string `xml:"code"`
		} `xml:"attributes>attribute"`
	}
	fmsRequests struct {
		XMLName  xml.Name     `xml:"service_requests"`
		Requests []fmsRequest `xml:"request"`
	}
	fmsRequest struct {
		ServiceRequestID  string `xml:"service_request_id"`
		Token             string `xml:"token"`
		ServiceNotice     string `xml:"service_notice"`
		Status            string `xml:"status"`
		ServiceCode       string `xml:"service_code"`
		ServiceName       string `xml:"service_name"`
		Description       string `xml:"description"`
		RequestedDatetime string `xml:"requested_datetime"`
		UpdatedDatetime   string `xml:"updated_datetime"`
		Address           string `xml:"address"`
		AddressID         string `xml:"address_id"`
		Lat               string `xml:"lat"`
		Long              string `xml:"long"`
		MediaURL          string `xml:"media_url"`
	}
	fmsErrors struct {
		XMLName xml.Name `xml:"errors"`
		Errors  []struct {
			Code        int    `xml:"code"`
			Description string `xml:"description"`
		} `xml:"error"`
	}
	fmsDiscovery struct {
		XMLName   xml.Name `xml:"discovery"`
		Endpoints []struct {
			Specification string   `xml:"specification"`
			URL           string   `xml:"url"`
			Type          string   `xml:"type"`
			Formats       []string `xml:"formats>format"`
		} `xml:"endpoints>endpoint"`
	}
)

// o311Call is one HTTP exchange with the Open311 endpoints.
type o311Call struct {
	Status      int
	ContentType string
	Body        []byte
}

// o311Do sends a request to path under /open311/v2.
func o311Do(t *testing.T, k *Kontakt, method, path, contentType string, body io.Reader) o311Call {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+k.Addr+"/open311/v2/"+path, body)
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return o311Call{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Body: b}
}

// xmlAnswer checks an XML answer's status and type and decodes it.
func xmlAnswer[T any](t *testing.T, c o311Call, status int) T {
	t.Helper()
	require.Equal(t, status, c.Status, "%s", c.Body)
	require.True(t, strings.HasPrefix(c.ContentType, "text/xml"), "Content-Type %q", c.ContentType)
	require.True(t, strings.HasPrefix(string(c.Body), `<?xml version="1.0"`), "%s", c.Body)
	var v T
	require.NoError(t, xml.Unmarshal(c.Body, &v), "%s", c.Body)
	return v
}

// fmsPost posts as Open311.pm's _request does: LWP's POST of a hash, so
// application/x-www-form-urlencoded without a charset, values UTF-8.
func fmsPost(t *testing.T, k *Kontakt, form url.Values) o311Call {
	t.Helper()
	return o311Do(t, k, http.MethodPost, "requests.xml", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
}

// fixaMinGata is what _populate_service_request_params sends for the
// Swedish cobrand (fixamingata), with a problem's extra fields as
// attribute[…] and the photo as media_url.
func fixaMinGata(apiKey string) url.Values {
	return url.Values{
		"api_key":         {apiKey},
		"jurisdiction_id": {"molndal.se"},
		"service_code":    {"gatubelysning"},
		"description": {"Titel: Släckt lampa\n\nBeskrivning: Lampan vid busshållplatsen Åbybergsgatan lyser inte.\n\n" +
			"Länk till ärendet: https://fixamingata.se/report/123\n\nSkickad via FixaMinGata\n"},
		"first_name":                 {"Anna"},
		"last_name":                  {"Svensson-Privat"},
		"email":                      {"anna.privat@example.se"},
		"phone":                      {"070-123 45 67"},
		"lat":                        {"57.655312"},
		"long":                       {"12.013987"},
		"media_url":                  {"https://fixamingata.se/photo/123.0.full.jpeg"},
		"attribute[easting]":         {"320123"},
		"attribute[closest_address]": {"Åbybergsgatan 12"},
	}
}

// personal is what fixaMinGata holds that no public answer may show.
var personal = []string{"Anna", "Svensson-Privat", "anna.privat", "070-123", "701234567", "Beskrivning", "photo/123", "57.655312", "12.013987"}

// TestOpen311FixMyStreetXML drives kontakt as FixMyStreet's Open311
// client does, in XML: the service list and a definition, a post with
// attributes and a photo link, a post located only by address_id (its
// "not pinpointed" report), the request read back without an api_key one
// by one and in a list, and its errors.
func TestOpen311FixMyStreetXML(t *testing.T) {
	k := Start(t, Options{})
	form := k.Token(t, "fixamingata", "form-client")

	// get_service_list: services.xml.
	services := xmlAnswer[fmsServices](t, o311Do(t, k, http.MethodGet, "services.xml", "", nil), http.StatusOK)
	require.NotEmpty(t, services.Services)
	codes := map[string]string{}
	for _, s := range services.Services {
		codes[s.ServiceCode] = s.ServiceName
		require.Equal(t, "false", s.Metadata, "no service asks for attributes")
		require.Equal(t, "realtime", s.Type)
	}
	require.Equal(t, "Gatubelysning", codes["gatubelysning"])

	// get_service_meta_info: services/{code}.xml, and 404 for a code
	// that is no service.
	def := xmlAnswer[fmsDefinition](t, o311Do(t, k, http.MethodGet, "services/gatubelysning.xml", "", nil), http.StatusOK)
	require.Equal(t, "gatubelysning", def.ServiceCode)
	require.Empty(t, def.Attributes)
	missing := xmlAnswer[fmsErrors](t, o311Do(t, k, http.MethodGet, "services/finns-inte.xml", "", nil), http.StatusNotFound)
	require.Len(t, missing.Errors, 1)
	require.Equal(t, http.StatusNotFound, missing.Errors[0].Code)

	// The discovery document points at this endpoint.
	disc := xmlAnswer[fmsDiscovery](t, o311Do(t, k, http.MethodGet, "discovery.xml", "", nil), http.StatusOK)
	require.Len(t, disc.Endpoints, 1)
	require.Equal(t, "http://wiki.open311.org/GeoReport_v2", disc.Endpoints[0].Specification)
	require.Equal(t, "http://"+k.Addr+"/open311/v2", disc.Endpoints[0].URL)
	require.ElementsMatch(t, []string{"text/xml", "application/json"}, disc.Endpoints[0].Formats)

	// send_service_request: $obj->{request}->[0]->{service_request_id}.
	before := time.Now().UTC().Add(-time.Minute)
	created := xmlAnswer[fmsRequests](t, fmsPost(t, k, fixaMinGata(form)), http.StatusCreated)
	require.Len(t, created.Requests, 1)
	first := created.Requests[0].ServiceRequestID
	require.Regexp(t, `^KC-\d{4}-\d{6}$`, first)

	// A report FixMyStreet could not pinpoint: address_id only.
	notPinpointed := fixaMinGata(form)
	notPinpointed.Del("lat")
	notPinpointed.Del("long")
	notPinpointed.Set("address_id", "#NOTPINPOINTED#")
	notPinpointed.Set("description", "Trasig lampa, plats enligt adressregistret")
	created = xmlAnswer[fmsRequests](t, fmsPost(t, k, notPinpointed), http.StatusCreated)
	require.Len(t, created.Requests, 1)
	second := created.Requests[0].ServiceRequestID
	require.NotEqual(t, first, second)

	// get_service_requests with report_ids: requests.xml?service_request_id=a,b
	// (no api_key on a GET: Open311.pm sends it only with POSTs).
	// The list is a read model a few milliseconds behind a post.
	q := url.Values{"service_request_id": {first + "," + second}, "jurisdiction_id": {"molndal.se"}}
	var list fmsRequests
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		list = xmlAnswer[fmsRequests](t, o311Do(t, k, http.MethodGet, "requests.xml?"+q.Encode(), "", nil), http.StatusOK)
		assert.Len(c, list.Requests, 2, "%+v", list)
	}, 10*time.Second, 50*time.Millisecond)
	got := map[string]fmsRequest{}
	for _, r := range list.Requests {
		got[r.ServiceRequestID] = r
	}
	r := got[first]
	require.Equal(t, "open", r.Status)
	require.Equal(t, "gatubelysning", r.ServiceCode)
	require.Equal(t, "Gatubelysning", r.ServiceName)
	// GetServiceRequests.pm needs lat and long to place a report: the
	// point rounded to the statistics cell.
	require.Equal(t, "57.66", r.Lat)
	require.Equal(t, "12.01", r.Long)
	requested, err := time.Parse(time.RFC3339, r.RequestedDatetime)
	require.NoError(t, err, "W3C date-time")
	require.True(t, requested.After(before))
	_, err = time.Parse(time.RFC3339, r.UpdatedDatetime)
	require.NoError(t, err)
	require.Empty(t, r.Description, "the description is not published by default")
	require.Equal(t, "open", got[second].Status)
	require.Empty(t, got[second].Lat, "no coordinates were given")

	// The list by date, as GetServiceRequests.pm asks it (W3CDTF).
	q = url.Values{"start_date": {before.Format(time.RFC3339)}, "end_date": {time.Now().Add(time.Minute).In(time.FixedZone("CET", 3600)).Format(time.RFC3339)}}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		list := xmlAnswer[fmsRequests](t, o311Do(t, k, http.MethodGet, "requests.xml?"+q.Encode(), "", nil), http.StatusOK)
		var ids []string
		for _, r := range list.Requests {
			ids = append(ids, r.ServiceRequestID)
		}
		assert.Subset(c, ids, []string{first, second})
	}, 10*time.Second, 50*time.Millisecond)

	// One request, without an api_key.
	one := xmlAnswer[fmsRequests](t, o311Do(t, k, http.MethodGet, "requests/"+first+".xml", "", nil), http.StatusOK)
	require.Len(t, one.Requests, 1)
	require.Equal(t, first, one.Requests[0].ServiceRequestID)

	// Nothing the reporter sent is in any answer.
	for _, path := range []string{"requests/" + first + ".xml", "requests/" + first + ".json", "requests.xml?service_request_id=" + first + "," + second, "requests.json"} {
		body := string(o311Do(t, k, http.MethodGet, path, "", nil).Body)
		for _, p := range personal {
			require.NotContains(t, body, p, "%s shows personal data", path)
		}
	}

	// A number never given out: 404 in GeoReport's error list.
	never := first[:len(first)-6] + "999999"
	nf := xmlAnswer[fmsErrors](t, o311Do(t, k, http.MethodGet, "requests/"+never+".xml", "", nil), http.StatusNotFound)
	require.Len(t, nf.Errors, 1)
	require.Equal(t, http.StatusNotFound, nf.Errors[0].Code)
}

// o311Error is one entry of GeoReport's error list.
type o311Error struct {
	Code        int    `json:"code"`
	Description string `json:"description"`
}

// o311Errors checks an error answer's status and decodes its list from
// JSON or XML (<errors><error><code/><description/></error></errors>).
func o311Errors(t *testing.T, c o311Call, format string, status int) []o311Error {
	t.Helper()
	require.Equal(t, status, c.Status, "%s", c.Body)
	var list []o311Error
	if format == "xml" {
		for _, e := range xmlAnswer[fmsErrors](t, c, status).Errors {
			list = append(list, o311Error{e.Code, e.Description})
		}
		return list
	}
	require.True(t, strings.HasPrefix(c.ContentType, "application/json"), "Content-Type %q", c.ContentType)
	require.NoError(t, json.Unmarshal(c.Body, &list), "%s", c.Body)
	return list
}

// params maps each entry's parameter (the text before its colon) to its
// code.
func params(t *testing.T, list []o311Error) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, e := range list {
		param, _, ok := strings.Cut(e.Description, ":")
		require.True(t, ok, "each entry names its parameter: %q", e.Description)
		out[param] = e.Code
	}
	return out
}

// TestOpen311StatusCodesAndErrorLists: 403 for a missing or invalid
// api_key, 404 for an unknown service_code or request, 400 with one
// {code, description} per problem, all problems at once, in JSON and XML.
func TestOpen311StatusCodesAndErrorLists(t *testing.T) {
	k := Start(t, Options{})
	form := k.Token(t, "fixamingata", "form-client")
	agent := k.Token(t, "anna", "agent")
	post := func(format string, f url.Values) o311Call {
		return o311Do(t, k, http.MethodPost, "requests."+format, "application/x-www-form-urlencoded", strings.NewReader(f.Encode()))
	}

	for _, format := range []string{"json", "xml"} {
		t.Run(format, func(t *testing.T) {
			for _, tt := range []struct {
				name   string
				apiKey string
			}{{"missing", ""}, {"invalid", "not-a-token"}, {"not a form client", agent}} {
				f := fixaMinGata(form)
				f.Set("api_key", tt.apiKey)
				if tt.apiKey == "" {
					f.Del("api_key")
				}
				errs := o311Errors(t, post(format, f), format, http.StatusForbidden)
				require.Len(t, errs, 1, "api_key %s", tt.name)
				require.Equal(t, http.StatusForbidden, errs[0].Code, "api_key %s", tt.name)
			}

			f := fixaMinGata(form)
			f.Set("service_code", "finns-inte")
			errs := o311Errors(t, post(format, f), format, http.StatusNotFound)
			require.Equal(t, map[string]int{"service_code": 404}, params(t, errs), "unknown service_code")

			f.Set("lat", "north")
			f.Set("long", "999")
			f.Set("email", "inte en adress")
			f.Set("media_url", "javascript:alert(1)")
			f.Set("description", strings.Repeat("x", 4001))
			errs = o311Errors(t, post(format, f), format, http.StatusBadRequest)
			require.Equal(t, map[string]int{
				"service_code": 404, "lat": 400, "long": 400, "email": 400, "media_url": 400, "description": 400,
			}, params(t, errs), "every problem at once")
			for _, e := range errs {
				require.NotContains(t, e.Description, "inte en adress", "no entry repeats the value")
			}

			f = fixaMinGata(form)
			f.Del("lat")
			f.Del("long")
			errs = o311Errors(t, post(format, f), format, http.StatusBadRequest)
			require.Len(t, errs, 1, "no place at all")
			require.Contains(t, errs[0].Description, "address_id")

			q := url.Values{"service_code": {"gatubelysning,finns-inte"}, "status": {"open,pending"}, "start_date": {"igår"}, "end_date": {"2026-01-01T00:00:00Z"}}
			errs = o311Errors(t, o311Do(t, k, http.MethodGet, "requests."+format+"?"+q.Encode(), "", nil), format, http.StatusBadRequest)
			require.Equal(t, map[string]int{"service_code": 404, "status": 400, "start_date": 400}, params(t, errs), "list filters")

			q = url.Values{"start_date": {"2026-01-01T00:00:00Z"}, "end_date": {"2026-06-01T00:00:00Z"}}
			errs = o311Errors(t, o311Do(t, k, http.MethodGet, "requests."+format+"?"+q.Encode(), "", nil), format, http.StatusBadRequest)
			require.Len(t, errs, 1)
			require.Contains(t, errs[0].Description, "90 days")

			errs = o311Errors(t, o311Do(t, k, http.MethodGet, "requests/KC-2026-999999."+format, "", nil), format, http.StatusNotFound)
			require.Equal(t, []o311Error{{404, "service_request_id: no such service request"}}, errs, "unknown request")
			errs = o311Errors(t, o311Do(t, k, http.MethodGet, "services/finns-inte."+format, "", nil), format, http.StatusNotFound)
			require.Equal(t, map[string]int{"service_code": 404}, params(t, errs), "unknown service definition")
		})
	}
}

// TestOpen311FormCharsets: a form post in Latin-1 (as older clients send)
// is decoded by its declared charset; an unknown charset is 400, never
// 5xx.
func TestOpen311FormCharsets(t *testing.T) {
	k := Start(t, Options{})
	form := k.Token(t, "fixamingata", "form-client")

	for _, format := range []string{"json", "xml"} {
		c := o311Do(t, k, http.MethodPost, "requests."+format, "application/x-www-form-urlencoded; charset=ISO-8859-1", strings.NewReader(latin1Report(form)))
		require.Equal(t, http.StatusCreated, c.Status, "declared Latin-1 is decoded: %s", c.Body)

		for _, charset := range []string{"x-klingon", "utf-7000"} {
			c := o311Do(t, k, http.MethodPost, "requests."+format, "application/x-www-form-urlencoded; charset="+charset, strings.NewReader(latin1Report(form)))
			errs := o311Errors(t, c, format, http.StatusBadRequest)
			require.Len(t, errs, 1)
			require.Contains(t, errs[0].Description, "charset")
		}
		// Latin-1 bytes sent without a charset are not guessed at: each
		// parameter that is not UTF-8 is named.
		c = o311Do(t, k, http.MethodPost, "requests."+format, "application/x-www-form-urlencoded", strings.NewReader(latin1Report(form)))
		errs := o311Errors(t, c, format, http.StatusBadRequest)
		require.Equal(t, map[string]int{"address_string": 400, "description": 400}, params(t, errs))
	}
}

// latin1Report is a form post encoded in ISO-8859-1.
func latin1Report(apiKey string) string {
	return "api_key=" + url.QueryEscape(apiKey) + "&service_code=gatubelysning&address_string=G%E5ngv%E4gen+3" +
		"&description=Lampan+vid+g%E5ngv%E4gen+%E4r+sl%E4ckt"
}

// TestOpen311PublishesFreeTextOnlyWhenAllowed: with
// intake.open311_publish_free_text the public answers show what the
// reporter wrote about the fault (description, address, address_id,
// media_url, exact lat/long), and still never the contact details.
func TestOpen311PublishesFreeTextOnlyWhenAllowed(t *testing.T) {
	k := Start(t, Options{ExtraConfig: "intake:\n  open311_publish_free_text: true\n"})
	form := k.Token(t, "fixamingata", "form-client")

	f := fixaMinGata(form)
	f.Set("address_string", "Åbybergsgatan 12")
	f.Set("address_id", "LM-123456")
	created := xmlAnswer[fmsRequests](t, fmsPost(t, k, f), http.StatusCreated)
	id := created.Requests[0].ServiceRequestID

	c := o311Do(t, k, http.MethodGet, "requests/"+id+".json", "", nil)
	require.Equal(t, http.StatusOK, c.Status, "%s", c.Body)
	var got []map[string]any
	require.NoError(t, json.Unmarshal(c.Body, &got), "%s", c.Body)
	require.Len(t, got, 1)
	require.Equal(t, strings.TrimSpace(f.Get("description")), got[0]["description"])
	require.Equal(t, "Åbybergsgatan 12", got[0]["address"])
	require.Equal(t, "LM-123456", got[0]["address_id"])
	require.Equal(t, "https://fixamingata.se/photo/123.0.full.jpeg", got[0]["media_url"])
	require.Equal(t, 57.655312, got[0]["lat"])
	require.Equal(t, 12.013987, got[0]["long"])
	for _, p := range []string{"Anna", "Svensson-Privat", "anna.privat", "070-123", "701234567", "attribute", "320123"} {
		require.NotContains(t, string(c.Body), p, "contact details and unkept parameters never appear")
	}

	// A Latin-1 post reads back as the reporter wrote it.
	c = o311Do(t, k, http.MethodPost, "requests.xml", "application/x-www-form-urlencoded; charset=ISO-8859-1", strings.NewReader(latin1Report(form)))
	created = xmlAnswer[fmsRequests](t, c, http.StatusCreated)
	one := xmlAnswer[fmsRequests](t, o311Do(t, k, http.MethodGet, "requests/"+created.Requests[0].ServiceRequestID+".xml", "", nil), http.StatusOK)
	require.Len(t, one.Requests, 1)
	require.Equal(t, "Lampan vid gångvägen är släckt", one.Requests[0].Description, "decoded from Latin-1")
	require.Equal(t, "Gångvägen 3", one.Requests[0].Address)
}
