package ports

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"buf.build/go/protovalidate"
	"golang.org/x/text/encoding/htmlindex"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	"github.com/kontakt-se/kontakt/pkg/auth"
	"github.com/kontakt-se/kontakt/pkg/ratelimit"
	"github.com/kontakt-se/kontakt/pkg/server"
	"github.com/kontakt-se/kontakt/services/intake/app"
)

// Open311Service is one kind of fault a fault-reporting app can report
// (GeoReport v2 "service"); its code becomes the case's category.
type Open311Service struct {
	Code        string
	Name        string
	Description string
	Group       string
}

// Open311 serves the GeoReport v2 JSON endpoints under a prefix (for
// example /open311/v2): GET services.json, POST requests.json and GET
// requests/{id}.json. Reports become felanmälan cases from the form
// channel. Answers carry the case number and status, never personal data.
type Open311 struct {
	prefix    string
	validator protovalidate.Validator
	app       Registrar
	verifier  auth.Verifier
	limiter   *ratelimit.Limiter
	services  []Open311Service
	clock     func() time.Time
	logger    *slog.Logger
	maxBody   int64
}

// NewOpen311 builds the handler. verifier checks the caller's token (the
// api_key parameter or an Authorization bearer), which must carry the
// form-client role, and limiter rate-limits the posts as public
// submissions (a nil limiter limits nothing), because this path bypasses
// the gRPC interceptors.
func NewOpen311(prefix string, a Registrar, v protovalidate.Validator, verifier auth.Verifier, limiter *ratelimit.Limiter, services []Open311Service, clock func() time.Time, logger *slog.Logger) *Open311 {
	return &Open311{prefix: strings.TrimSuffix(prefix, "/"), validator: v, app: a, verifier: verifier, limiter: limiter, services: services, clock: clock, logger: logger, maxBody: 64 << 10}
}

// Pattern is where to mount the handler on an http.ServeMux.
func (o *Open311) Pattern() string { return o.prefix + "/" }

// open311Error is GeoReport v2's error shape.
type open311Error struct {
	Code        int    `json:"code"`
	Description string `json:"description"`
}

// ServeHTTP routes the three endpoints.
func (o *Open311) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, o.prefix)
	switch {
	case path == "/services.json" && r.Method == http.MethodGet:
		o.listServices(w)
	case path == "/requests.json" && r.Method == http.MethodPost:
		o.postRequest(w, r)
	case strings.HasPrefix(path, "/requests/") && strings.HasSuffix(path, ".json") && r.Method == http.MethodGet:
		o.getRequest(w, r, strings.TrimSuffix(strings.TrimPrefix(path, "/requests/"), ".json"))
	case path == "/services.json" || path == "/requests.json" || strings.HasPrefix(path, "/requests/"):
		writeOpen311Error(w, http.StatusMethodNotAllowed, "method not allowed")
	default:
		writeOpen311Error(w, http.StatusNotFound, "no such endpoint; this server speaks GeoReport v2 JSON (.json)")
	}
}

func (o *Open311) listServices(w http.ResponseWriter) {
	type service struct {
		ServiceCode string `json:"service_code"`
		ServiceName string `json:"service_name"`
		Description string `json:"description"`
		Metadata    bool   `json:"metadata"`
		Type        string `json:"type"`
		Keywords    string `json:"keywords"`
		Group       string `json:"group"`
	}
	out := make([]service, 0, len(o.services))
	for _, s := range o.services {
		out = append(out, service{ServiceCode: s.Code, ServiceName: s.Name, Description: s.Description, Type: "realtime", Group: s.Group})
	}
	writeJSON(w, http.StatusOK, out)
}

// authenticate accepts the token as an Authorization bearer or as the
// api_key parameter GeoReport clients send.
func (o *Open311) authenticate(ctx context.Context, r *http.Request, apiKey string) (auth.Principal, int, string) {
	token := apiKey
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, value, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return auth.Principal{}, http.StatusUnauthorized, "malformed Authorization header"
		}
		token = strings.TrimSpace(value)
	}
	if token == "" {
		return auth.Principal{}, http.StatusUnauthorized, "api_key is required"
	}
	p, err := o.verifier.Verify(ctx, token)
	if err != nil {
		return auth.Principal{}, http.StatusUnauthorized, "invalid api_key"
	}
	if !p.HasRole(auth.RoleFormClient) || p.Client == "" {
		return auth.Principal{}, http.StatusForbidden, "requires a form-client credential"
	}
	return p, 0, ""
}

// open311Request holds the GeoReport v2 POST parameters kontakt uses.
type open311Request struct {
	APIKey        string
	ServiceCode   string
	Lat, Long     string
	AddressString string
	Email         string
	Phone         string
	FirstName     string
	LastName      string
	Description   string
	MediaURL      string
}

// errTooLarge and errUnsupportedType are decode failures with their own
// status; every other decode failure is 400.
var (
	errTooLarge        = errors.New("request body too large")
	errUnsupportedType = errors.New("Content-Type must be application/x-www-form-urlencoded or application/json (UTF-8), or a form in a charset named with charset=")
)

// decode reads the POST parameters. A form may be in any charset its
// Content-Type names (charset=ISO-8859-1, windows-1252, …): its values are
// turned into UTF-8. Without a charset a form must be UTF-8, and JSON
// always must be; a value that is not is refused, naming the parameter.
func (o *Open311) decode(r *http.Request) (open311Request, error) {
	raw, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, o.maxBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return open311Request{}, errTooLarge
	case server.IsBadEncoding(err):
		return open311Request{}, errors.New("body is not valid gzip")
	case err != nil:
		return open311Request{}, errors.New("body could not be read")
	}
	ct, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil && r.Header.Get("Content-Type") != "" {
		return open311Request{}, errUnsupportedType
	}
	charset := strings.ToLower(strings.TrimSpace(params["charset"]))
	var vals url.Values
	switch ct {
	case "application/json":
		if charset != "" && charset != "utf-8" {
			return open311Request{}, errUnsupportedType
		}
		if !utf8.Valid(raw) {
			return open311Request{}, errors.New("body is not valid UTF-8")
		}
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			return open311Request{}, errors.New("body is not a JSON object")
		}
		vals = url.Values{}
		for k, v := range m {
			switch v := v.(type) {
			case string:
				vals.Set(k, v)
			case json.Number:
				vals.Set(k, v.String())
			}
		}
	case "application/x-www-form-urlencoded", "":
		vals, err = url.ParseQuery(string(raw))
		if err != nil {
			return open311Request{}, errors.New("body is not form-encoded")
		}
		if vals, err = toUTF8(vals, charset); err != nil {
			return open311Request{}, err
		}
	default:
		return open311Request{}, errUnsupportedType
	}
	get := vals.Get
	return open311Request{
		APIKey: get("api_key"), ServiceCode: get("service_code"),
		Lat: get("lat"), Long: get("long"), AddressString: get("address_string"),
		Email: get("email"), Phone: get("phone"), FirstName: get("first_name"), LastName: get("last_name"),
		Description: get("description"), MediaURL: get("media_url"),
	}, nil
}

// toUTF8 decodes form values from charset (empty or utf-8: they must be
// UTF-8 already). A charset kontakt does not know is errUnsupportedType.
func toUTF8(vals url.Values, charset string) (url.Values, error) {
	if charset == "" || charset == "utf-8" || charset == "utf8" {
		for k, vs := range vals {
			if !utf8.ValidString(k) {
				return nil, errors.New("a parameter name is not valid UTF-8; send UTF-8 or name the charset in Content-Type")
			}
			for _, v := range vs {
				if !utf8.ValidString(v) {
					return nil, fmt.Errorf("%s: not valid UTF-8; send UTF-8 or name the charset in Content-Type", k)
				}
			}
		}
		return vals, nil
	}
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return nil, errUnsupportedType
	}
	out := make(url.Values, len(vals))
	for k, vs := range vals {
		key, err := enc.NewDecoder().String(k)
		if err != nil {
			return nil, errors.New("a parameter name is not valid in the declared charset")
		}
		for _, v := range vs {
			dv, err := enc.NewDecoder().String(v)
			if err != nil || !utf8.ValidString(dv) {
				return nil, fmt.Errorf("%s: not valid in the declared charset", key)
			}
			out[key] = append(out[key], dv)
		}
	}
	return out, nil
}

func (o *Open311) postRequest(w http.ResponseWriter, r *http.Request) {
	req, err := o.decode(r)
	switch {
	case errors.Is(err, errTooLarge):
		writeOpen311Error(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	case errors.Is(err, errUnsupportedType):
		writeOpen311Error(w, http.StatusUnsupportedMediaType, err.Error())
		return
	case err != nil:
		writeOpen311Error(w, http.StatusBadRequest, err.Error())
		return
	}
	p, code, msg := o.authenticate(r.Context(), r, req.APIKey)
	if code != 0 {
		writeOpen311Error(w, code, msg)
		return
	}
	// A post is a public submission, limited like SubmitForm and in the
	// same buckets: one credential, one address.
	if wait := o.limiter.Allow(ratelimit.CredentialKey(p), o.limiter.HTTPClientAddr(r)); wait > 0 {
		secs := ratelimit.RetryAfterSeconds(wait)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeOpen311Error(w, http.StatusTooManyRequests, fmt.Sprintf("too many submissions; retry in %d s", secs))
		return
	}
	if !o.knownService(req.ServiceCode) {
		writeOpen311Error(w, http.StatusBadRequest, "service_code: unknown service; see services.json")
		return
	}
	in := &intakev1.CaseInput{
		Type:        casev1.CaseType_CASE_TYPE_FELANMALAN,
		Channel:     casev1.Channel_CHANNEL_FORM,
		Category:    req.ServiceCode,
		Description: req.Description,
		Contact: &intakev1.Contact{
			Name:  strings.TrimSpace(req.FirstName + " " + req.LastName),
			Email: req.Email,
			Phone: req.Phone,
		},
		Location: &intakev1.LocationInput{Address: req.AddressString},
	}
	var coordErrs []string
	if req.Lat != "" || req.Long != "" {
		lat, err1 := strconv.ParseFloat(req.Lat, 64)
		lon, err2 := strconv.ParseFloat(req.Long, 64)
		switch {
		case err1 != nil || math.IsNaN(lat) || lat < -90 || lat > 90:
			coordErrs = append(coordErrs, "lat: must be a latitude in decimal degrees")
		case err2 != nil || math.IsNaN(lon) || lon < -180 || lon > 180:
			coordErrs = append(coordErrs, "long: must be a longitude in decimal degrees")
		default:
			in.Location.Latitude, in.Location.Longitude = lat, lon
		}
	}
	if len([]rune(req.Description)) > 4000 {
		coordErrs = append(coordErrs, "description: at most 4000 characters")
	}
	if len(coordErrs) > 0 {
		writeOpen311Error(w, http.StatusBadRequest, strings.Join(coordErrs, "; "))
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key != "" && !validIdempotencyKey(key) {
		writeOpen311Error(w, http.StatusBadRequest, "Idempotency-Key: 8 to 128 of A-Z a-z 0-9 . _ : -")
		return
	}
	if key == "" {
		// GeoReport has no idempotency key; an identical report from the
		// same client is taken as a retry of the same report.
		key = "content\x00" + open311Fingerprint(req)
	} else {
		key = "key\x00" + key
	}
	// The same field rules as the gRPC path, so no protocol is a way
	// around them.
	if viols, err := server.Violations(o.validator, &intakev1.SubmitFormRequest{IdempotencyKey: "open311-request", Case: in}); err != nil {
		o.writeAppError(w, err)
		return
	} else if len(viols) > 0 {
		o.writeAppError(w, server.InvalidArgument("invalid case", viols...))
		return
	}
	res, err := o.app.SubmitForm(r.Context(), p.Client+"/open311", key, in)
	if err != nil {
		o.writeAppError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, []map[string]any{{
		"service_request_id": res.CaseNumber,
		"service_notice":     "Tack! Din felanmälan är registrerad med ärendenummer " + res.CaseNumber + ".",
		"account_id":         nil,
	}})
}

// open311Fingerprint identifies a report by its content (not stored as
// such: the idempotency layer hashes it).
func open311Fingerprint(r open311Request) string {
	return strings.Join([]string{r.ServiceCode, r.Lat, r.Long, r.AddressString, r.Email, r.Phone, r.FirstName, r.LastName, r.Description, r.MediaURL}, "\x1f")
}

func (o *Open311) getRequest(w http.ResponseWriter, r *http.Request, id string) {
	apiKey := r.URL.Query().Get("api_key")
	p, code, msg := o.authenticate(r.Context(), r, apiKey)
	if code != 0 {
		writeOpen311Error(w, code, msg)
		return
	}
	st, err := o.app.Status(r.Context(), id)
	if err != nil {
		o.writeAppError(w, err)
		return
	}
	// A client sees only the reports it filed: case numbers are
	// sequential, and nobody may walk through other cases' status.
	if st.RegisteredBy != "form:"+p.Client+"/open311" {
		// The same answer as for a number never given out.
		o.writeAppError(w, app.ErrNotFound)
		return
	}
	state := "open"
	if st.Closed {
		state = "closed"
	}
	writeJSON(w, http.StatusOK, []map[string]any{{
		"service_request_id": st.CaseNumber,
		"status":             state,
		"service_code":       st.Category,
		"service_name":       o.serviceName(st.Category),
		"requested_datetime": st.RequestedAt.UTC().Format(time.RFC3339),
		"updated_datetime":   st.UpdatedAt.UTC().Format(time.RFC3339),
	}})
}

// writeAppError answers a failed command or query through intake's one
// error table (ErrorMappings) and the one code-to-HTTP mapping
// (server.HTTPStatus), so a failure gets here the status and the words it
// gets over REST; the fields a refused case names are given by their
// GeoReport parameters.
func (o *Open311) writeAppError(w http.ResponseWriter, err error) {
	st := status.Convert(server.ToStatus(err, ErrorMappings(), o.logger.With("http.route", o.prefix)))
	description := st.Message()
	for _, d := range st.Details() {
		br, ok := d.(*errdetails.BadRequest)
		if !ok {
			continue
		}
		parts := make([]string, 0, len(br.GetFieldViolations()))
		for _, v := range br.GetFieldViolations() {
			parts = append(parts, open311Field(v.GetField())+": "+v.GetDescription())
		}
		description = strings.Join(parts, "; ")
	}
	writeOpen311Error(w, server.HTTPStatus(st.Code()), description)
}

// validIdempotencyKey is SubmitFormRequest.idempotency_key's rule, for
// the Idempotency-Key header.
func validIdempotencyKey(k string) bool {
	if len(k) < 8 || len(k) > 128 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// open311Field names a case field by its GeoReport parameter.
func open311Field(f string) string {
	switch f {
	case "case.contact.email":
		return "email"
	case "case.contact.phone":
		return "phone"
	case "case.description":
		return "description"
	case "case.location":
		return "lat/long or address_string"
	case "case.contact.name":
		return "first_name/last_name"
	case "case.location.address":
		return "address_string"
	case "case.location.latitude":
		return "lat"
	case "case.location.longitude":
		return "long"
	}
	return f
}

func (o *Open311) knownService(code string) bool {
	for _, s := range o.services {
		if s.Code == code {
			return true
		}
	}
	return false
}

func (o *Open311) serviceName(code string) string {
	for _, s := range o.services {
		if s.Code == code {
			return s.Name
		}
	}
	return code
}

func writeOpen311Error(w http.ResponseWriter, code int, description string) {
	writeJSON(w, code, []open311Error{{Code: code, Description: description}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	// A failed write means the client went away; there is nobody to tell.
	_ = json.NewEncoder(w).Encode(v)
}
