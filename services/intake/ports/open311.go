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
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"buf.build/go/protovalidate"
	"golang.org/x/text/encoding/htmlindex"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	"github.com/kontakt-se/kontakt/pkg/auth"
	"github.com/kontakt-se/kontakt/pkg/fieldrules"
	"github.com/kontakt-se/kontakt/pkg/ratelimit"
	"github.com/kontakt-se/kontakt/pkg/reqlog"
	"github.com/kontakt-se/kontakt/pkg/server"
	"github.com/kontakt-se/kontakt/services/intake/app"
	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// Open311Service is one kind of fault a fault-reporting app can report
// (GeoReport v2 "service"); its code becomes the case's category.
type Open311Service struct {
	Code        string
	Name        string
	Description string
	Group       string
}

// PublicLister lists fault reports for the public GeoReport list method.
type PublicLister interface {
	List(f app.PublicFilter) []app.CaseState
	Get(number string) (app.CaseState, bool)
}

// Open311Options are the parts of the GeoReport endpoints a municipality
// chooses.
type Open311Options struct {
	// Public answers GET requests.{json,xml} without service_request_id.
	Public PublicLister
	// PublishFreeText lets public answers show what the reporter wrote
	// (description, address_string, address_id, media_url, exact
	// lat/long); off, they show the location rounded to the statistics
	// cell and no text.
	PublishFreeText bool
	// Submissions counts the posts by outcome; nil counts nothing.
	Submissions *SubmissionMetrics
}

// Open311 serves GeoReport v2 under a prefix (for example /open311/v2),
// in XML (which the specification requires) and JSON, chosen by the
// format extension of each path: discovery, services, services/{code},
// requests (GET list, POST) and requests/{id}. Reports become felanmälan
// cases from the form channel. Reading needs no api_key, as the
// specification says: a request number is not a secret, and the answers
// carry only what a public fault map shows, never the reporter's contact
// details.
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
	opts      Open311Options
	// changeset dates the service list for the discovery document: it
	// changes only when the process (and its configuration) does.
	changeset time.Time
}

// NewOpen311 builds the handler. verifier checks the poster's token (the
// api_key parameter or an Authorization bearer), which must carry the
// form-client role, and limiter rate-limits the posts as public
// submissions (a nil limiter limits nothing), because this path bypasses
// the gRPC interceptors.
func NewOpen311(prefix string, a Registrar, v protovalidate.Validator, verifier auth.Verifier, limiter *ratelimit.Limiter, services []Open311Service, clock func() time.Time, logger *slog.Logger, opts Open311Options) *Open311 {
	return &Open311{
		prefix: strings.TrimSuffix(prefix, "/"), validator: v, app: a, verifier: verifier, limiter: limiter,
		services: services, clock: clock, logger: logger, maxBody: 64 << 10, opts: opts,
		changeset: clock().UTC().Truncate(time.Second),
	}
}

// Pattern is where to mount the handler on an http.ServeMux.
func (o *Open311) Pattern() string { return o.prefix + "/" }

// Formats of a GeoReport path's extension.
const (
	formatJSON = "json"
	formatXML  = "xml"
)

// maxListed bounds a list answer, as GeoReport servers do (the
// specification's examples use 1000); listWindow is the longest date
// range a list may ask for and the default one.
const (
	maxListed  = 1000
	listWindow = 90 * 24 * time.Hour
)

// ServeHTTP routes the endpoints by path and extension.
func (o *Open311) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, o.prefix)
	dot := strings.LastIndexByte(rest, '.')
	if dot < 0 || (rest[dot+1:] != formatJSON && rest[dot+1:] != formatXML) {
		o.writeErrors(w, formatJSON, http.StatusNotFound, problem{http.StatusNotFound, "no such endpoint; GeoReport v2 paths end in .xml or .json"})
		return
	}
	name, f := rest[:dot], rest[dot+1:]
	var allow string
	switch {
	case name == "/discovery":
		allow = http.MethodGet
		if r.Method == http.MethodGet {
			o.discovery(w, r, f)
			return
		}
	case name == "/services":
		allow = http.MethodGet
		if r.Method == http.MethodGet {
			o.listServices(w, f)
			return
		}
	case strings.HasPrefix(name, "/services/"):
		allow = http.MethodGet
		if r.Method == http.MethodGet {
			o.serviceDefinition(w, f, strings.TrimPrefix(name, "/services/"))
			return
		}
	case name == "/requests":
		allow = http.MethodGet + ", " + http.MethodPost
		switch r.Method {
		case http.MethodGet:
			o.listRequests(w, r, f)
			return
		case http.MethodPost:
			o.postRequest(w, r, f)
			return
		}
	case strings.HasPrefix(name, "/requests/"):
		allow = http.MethodGet
		if r.Method == http.MethodGet {
			o.getRequest(w, r, f, strings.TrimPrefix(name, "/requests/"))
			return
		}
	default:
		o.writeErrors(w, f, http.StatusNotFound, problem{http.StatusNotFound, "no such endpoint; see discovery." + f})
		return
	}
	w.Header().Set("Allow", allow)
	o.writeErrors(w, f, http.StatusMethodNotAllowed, problem{http.StatusMethodNotAllowed, "method not allowed; use " + allow})
}

// problem is one entry of a GeoReport error answer: its own status code
// and what is wrong. A request with several mistakes gets one entry each.
type problem struct {
	Code        int
	Description string
}

func (o *Open311) discovery(w http.ResponseWriter, r *http.Request, f string) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	changeset := o.changeset.Format(time.RFC3339)
	doc := discoveryDoc{
		Changeset: changeset,
		Contact:   "The municipality's contact centre",
		KeyService: "Ask the municipality for a form-client credential; send it as api_key " +
			"(or an Authorization bearer) when you POST requests. Reading needs no key.",
		Endpoints: []discoveryEndpoint{{
			Specification: "http://wiki.open311.org/GeoReport_v2",
			URL:           scheme + "://" + r.Host + o.prefix,
			Changeset:     changeset,
			Type:          "production",
			Formats:       []string{"text/xml", "application/json"},
		}},
	}
	o.write(w, f, http.StatusOK, doc, doc)
}

func (o *Open311) listServices(w http.ResponseWriter, f string) {
	out := make([]serviceDoc, 0, len(o.services))
	for _, s := range o.services {
		out = append(out, serviceDoc{ServiceCode: s.Code, ServiceName: s.Name, Description: s.Description, Type: "realtime", Group: s.Group})
	}
	o.write(w, f, http.StatusOK, out, servicesXML{Services: out})
}

// serviceDefinition answers GET services/{code}: kontakt's services ask
// for no extra attributes (metadata is false), so a definition lists
// none; an unknown code is 404.
func (o *Open311) serviceDefinition(w http.ResponseWriter, f, code string) {
	if _, ok := o.service(code); !ok {
		o.writeErrors(w, f, http.StatusNotFound, problem{http.StatusNotFound, "service_code: no such service; see services." + f})
		return
	}
	def := serviceDefinitionDoc{ServiceCode: code, Attributes: []struct{}{}}
	o.write(w, f, http.StatusOK, def, def)
}

// authenticate accepts the token as an Authorization bearer or as the
// api_key parameter GeoReport clients send. Every failure is 403, as
// GeoReport says for an api_key that is missing or invalid.
func (o *Open311) authenticate(ctx context.Context, r *http.Request, apiKey string) (auth.Principal, *problem) {
	token := apiKey
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, value, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return auth.Principal{}, &problem{http.StatusForbidden, "malformed Authorization header"}
		}
		token = strings.TrimSpace(value)
	}
	if token == "" {
		return auth.Principal{}, &problem{http.StatusForbidden, "api_key is required"}
	}
	p, err := o.verifier.Verify(ctx, token)
	if err != nil {
		return auth.Principal{}, &problem{http.StatusForbidden, "api_key is invalid"}
	}
	// Every line the request logs from here names its caller, as the
	// RPCs' authentication does.
	reqlog.SetSubject(ctx, p.Subject)
	if !p.HasRole(auth.RoleFormClient) || p.Client == "" {
		return auth.Principal{}, &problem{http.StatusForbidden, "api_key is not a form-client credential"}
	}
	return p, nil
}

// open311Request holds the GeoReport v2 POST parameters kontakt uses.
// attribute[…], account_id, device_id and jurisdiction_id are accepted
// and not kept.
type open311Request struct {
	APIKey        string
	ServiceCode   string
	Lat, Long     string
	AddressString string
	AddressID     string
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
	errUnsupportedType = errors.New("Content-Type must be application/x-www-form-urlencoded, multipart/form-data or application/json")
	errUnknownCharset  = errors.New("Content-Type names a charset kontakt does not know; send UTF-8 or name a standard charset (ISO-8859-1, windows-1252, …)")
)

// decode reads the POST parameters. A form may be in any charset its
// Content-Type names (charset=ISO-8859-1, windows-1252, …): its values are
// turned into UTF-8. Without a charset a form must be UTF-8, and JSON
// always must be; a value that is not is refused, naming the parameter.
// multipart/form-data (FixMyStreet's form when it has files) gives its
// fields; a file part is refused, since kontakt takes media as media_url.
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
			return open311Request{}, errors.New("JSON must be UTF-8")
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
	case "multipart/form-data":
		if vals, err = multipartFields(raw, params["boundary"]); err != nil {
			return open311Request{}, err
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
		Lat: get("lat"), Long: get("long"), AddressString: get("address_string"), AddressID: get("address_id"),
		Email: get("email"), Phone: get("phone"), FirstName: get("first_name"), LastName: get("last_name"),
		Description: get("description"), MediaURL: get("media_url"),
	}, nil
}

// multipartFields reads the fields of a multipart/form-data body (already
// bounded by the size limit). A part with a file name is refused.
func multipartFields(raw []byte, boundary string) (url.Values, error) {
	if boundary == "" {
		return nil, errors.New("multipart/form-data without a boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(raw), boundary)
	vals := url.Values{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return vals, nil
		}
		if err != nil {
			return nil, errors.New("body is not valid multipart/form-data")
		}
		name := part.FormName()
		if part.FileName() != "" {
			return nil, errors.New("file uploads are not accepted; link media with media_url")
		}
		b, err := io.ReadAll(part)
		if err != nil {
			return nil, errors.New("body is not valid multipart/form-data")
		}
		vals.Add(name, string(b))
	}
}

// toUTF8 decodes form values from charset (empty or utf-8: they must be
// UTF-8 already). A charset kontakt does not know is errUnknownCharset.
// Every parameter that does not decode is named, one error each
// (errors.Join), sorted, so a client learns of all of them at once.
func toUTF8(vals url.Values, charset string) (url.Values, error) {
	var bad []string
	if charset == "" || charset == "utf-8" || charset == "utf8" {
		for k, vs := range vals {
			if !utf8.ValidString(k) {
				bad = append(bad, "a parameter name is not valid UTF-8; send UTF-8 or name the charset in Content-Type")
				continue
			}
			if slices.ContainsFunc(vs, func(v string) bool { return !utf8.ValidString(v) }) {
				bad = append(bad, k+": not valid UTF-8; send UTF-8 or name the charset in Content-Type")
			}
		}
		return vals, joinSorted(bad)
	}
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return nil, errUnknownCharset
	}
	out := make(url.Values, len(vals))
	for k, vs := range vals {
		key, err := enc.NewDecoder().String(k)
		if err != nil || !utf8.ValidString(key) {
			bad = append(bad, "a parameter name is not valid in the declared charset")
			continue
		}
		for _, v := range vs {
			dv, err := enc.NewDecoder().String(v)
			if err != nil || !utf8.ValidString(dv) {
				bad = append(bad, key+": not valid in the declared charset")
				break
			}
			out[key] = append(out[key], dv)
		}
	}
	return out, joinSorted(bad)
}

// joinSorted is one error per message, in a stable order; nil for none.
func joinSorted(msgs []string) error {
	if len(msgs) == 0 {
		return nil
	}
	slices.Sort(msgs)
	msgs = slices.Compact(msgs)
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		errs[i] = errors.New(m)
	}
	return errors.Join(errs...)
}

// decodeProblems is a decode failure as GeoReport errors: one entry per
// joined error.
func decodeProblems(err error) []problem {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	out := make([]problem, len(list))
	for i, e := range list {
		out[i] = problem{http.StatusBadRequest, e.Error()}
	}
	return out
}

// postRequest answers a post and counts it by outcome
// (kontakt_intake_submissions_total{channel="open311"}).
func (o *Open311) postRequest(w http.ResponseWriter, r *http.Request, f string) {
	o.opts.Submissions.observe(ChannelOpen311, o.post(w, r, f))
}

// post answers a post and returns its outcome.
func (o *Open311) post(w http.ResponseWriter, r *http.Request, f string) (outcome string) {
	req, err := o.decode(r)
	switch {
	case errors.Is(err, errTooLarge):
		o.writeErrors(w, f, http.StatusRequestEntityTooLarge, problem{http.StatusRequestEntityTooLarge, err.Error()})
		return OutcomeTooLarge
	case errors.Is(err, errUnsupportedType):
		o.writeErrors(w, f, http.StatusUnsupportedMediaType, problem{http.StatusUnsupportedMediaType, err.Error()})
		return OutcomeInvalid
	case err != nil:
		o.writeErrors(w, f, http.StatusBadRequest, decodeProblems(err)...)
		return OutcomeInvalid
	}
	p, denied := o.authenticate(r.Context(), r, req.APIKey)
	if denied != nil {
		o.writeErrors(w, f, denied.Code, *denied)
		return OutcomeDenied
	}
	// A post is a public submission, limited like SubmitForm and in the
	// same buckets: one credential, one address.
	if wait := o.limiter.Allow(ratelimit.CredentialKey(p), o.limiter.HTTPClientAddr(r)); wait > 0 {
		secs := ratelimit.RetryAfterSeconds(wait)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		o.writeErrors(w, f, http.StatusTooManyRequests, problem{http.StatusTooManyRequests, fmt.Sprintf("too many submissions; retry in %d s", secs)})
		return OutcomeRateLimited
	}
	in, problems := o.caseInput(r.Context(), req, f)
	key := r.Header.Get("Idempotency-Key")
	if key != "" && !validIdempotencyKey(key) {
		problems = append(problems, problem{http.StatusBadRequest, "Idempotency-Key: 8 to 128 of A-Z a-z 0-9 . _ : -"})
	}
	if len(problems) > 0 {
		o.writeErrors(w, f, answerStatus(problems), problems...)
		return outcomeOfHTTP(answerStatus(problems), false)
	}
	if key == "" {
		// GeoReport has no idempotency key; an identical report from the
		// same client is taken as a retry of the same report.
		key = "content\x00" + open311Fingerprint(req)
	} else {
		key = "key\x00" + key
	}
	res, err := o.app.SubmitForm(r.Context(), p.Client+"/open311", key, in)
	if err != nil {
		return outcomeOf(o.writeAppError(w, r, f, err), false)
	}
	created := createdDoc{
		ServiceRequestID: res.CaseNumber,
		ServiceNotice:    "Tack! Din felanmälan är registrerad med ärendenummer " + res.CaseNumber + ".",
	}
	o.write(w, f, http.StatusCreated, []createdDoc{created}, createdXML{Requests: []createdDoc{created}})
	return outcomeOf(codes.OK, res.Replayed)
}

// caseInput turns a post into a case and names every problem with it at
// once: its own (the service, the coordinates), the field rules of the
// proto and the domain's rules, each by its GeoReport parameter.
func (o *Open311) caseInput(ctx context.Context, req open311Request, f string) (*intakev1.CaseInput, []problem) {
	var problems []problem
	switch _, known := o.service(req.ServiceCode); {
	case strings.TrimSpace(req.ServiceCode) == "":
		problems = append(problems, problem{http.StatusBadRequest, "service_code: is required; see services." + f})
	case !known:
		problems = append(problems, problem{http.StatusNotFound, "service_code: no such service; see services." + f})
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
		Location: &intakev1.LocationInput{Address: req.AddressString, AddressId: req.AddressID},
		MediaUrl: strings.TrimSpace(req.MediaURL),
	}
	badCoordinates := false
	if req.Lat != "" || req.Long != "" {
		lat, err1 := strconv.ParseFloat(strings.TrimSpace(req.Lat), 64)
		lon, err2 := strconv.ParseFloat(strings.TrimSpace(req.Long), 64)
		if err1 != nil || math.IsNaN(lat) || lat < -90 || lat > 90 {
			problems = append(problems, problem{http.StatusBadRequest, "lat: must be a latitude in decimal degrees (WGS84), from -90 to 90"})
			badCoordinates = true
		}
		if err2 != nil || math.IsNaN(lon) || lon < -180 || lon > 180 {
			problems = append(problems, problem{http.StatusBadRequest, "long: must be a longitude in decimal degrees (WGS84), from -180 to 180"})
			badCoordinates = true
		}
		if !badCoordinates {
			in.Location.Latitude, in.Location.Longitude = lat, lon
		}
	}
	// The same field rules as the gRPC path, so no protocol is a way
	// around them, and the domain's rules with them, so one answer names
	// every mistake.
	viols, err := fieldrules.Check(o.validator, &intakev1.SubmitFormRequest{IdempotencyKey: "open311-request", Case: in})
	if err != nil {
		problems = append(problems, problem{http.StatusInternalServerError, "internal error"})
		o.logger.ErrorContext(ctx, "open311: field rules failed to run", "error", err)
		return nil, problems
	}
	var ve *domain.ValidationError
	if derr := o.app.Validate(in, domain.FromForm); errors.As(derr, &ve) {
		viols = mergeViolations(viols, ve.Violations)
	}
	seen := map[string]bool{}
	for _, v := range viols {
		switch {
		case v.Field == "case.category":
			// Said above, by its GeoReport name.
			continue
		case badCoordinates && strings.HasPrefix(v.Field, "case.location"):
			continue
		}
		d := open311Field(v.Field) + ": " + v.Description
		if !seen[d] {
			seen[d] = true
			problems = append(problems, problem{http.StatusBadRequest, d})
		}
	}
	return in, problems
}

// answerStatus is the status of an answer with several problems: the
// most general one (400 if any problem is bad input, else the first's).
func answerStatus(problems []problem) int {
	for _, p := range problems {
		if p.Code == http.StatusBadRequest || p.Code >= 500 {
			return p.Code
		}
	}
	return problems[0].Code
}

// open311Fingerprint identifies a report by its content (not stored as
// such: the idempotency layer hashes it). address_id is added only when
// given, so a retry of a report from before it existed still matches.
func open311Fingerprint(r open311Request) string {
	parts := []string{r.ServiceCode, r.Lat, r.Long, r.AddressString, r.Email, r.Phone, r.FirstName, r.LastName, r.Description, r.MediaURL}
	if r.AddressID != "" {
		parts = append(parts, "address_id="+r.AddressID)
	}
	return strings.Join(parts, "\x1f")
}

// getRequest answers GET requests/{id}: public, as GeoReport says. A
// number that is not a fault report of one of the services answers the
// same 404 as a number never given out, so the list of other cases
// cannot be walked.
func (o *Open311) getRequest(w http.ResponseWriter, r *http.Request, f, id string) {
	st, ok, err := o.publicStatus(r.Context(), id)
	if err != nil {
		o.writeAppError(w, r, f, err)
		return
	}
	if !ok {
		o.writeErrors(w, f, http.StatusNotFound, problem{http.StatusNotFound, "service_request_id: no such service request"})
		return
	}
	doc, err := o.requestDoc(r.Context(), st)
	if err != nil {
		o.writeAppError(w, r, f, err)
		return
	}
	o.write(w, f, http.StatusOK, []requestDoc{doc}, requestsXML{Requests: []requestDoc{doc}})
}

// publicStatus looks a number up; ok is false when it names no public
// service request.
func (o *Open311) publicStatus(ctx context.Context, id string) (app.CaseState, bool, error) {
	st, err := o.app.Status(ctx, id)
	if errors.Is(err, app.ErrNotFound) {
		return app.CaseState{}, false, nil
	}
	if err != nil {
		return app.CaseState{}, false, err
	}
	return st, o.public(st), nil
}

// public says whether a case is a service request anyone may read: a
// fault report of one of the services.
func (o *Open311) public(st app.CaseState) bool {
	_, ok := o.service(st.Category)
	return ok && st.Type == casev1.CaseType_CASE_TYPE_FELANMALAN
}

// listRequests answers GET requests: by service_request_id (a comma
// list, which overrides the other parameters, as the specification says),
// or by service_code, status, start_date and end_date (the last 90 days
// by default), newest first, at most 1000.
func (o *Open311) listRequests(w http.ResponseWriter, r *http.Request, f string) {
	q := r.URL.Query()
	var problems []problem
	if ids := commaList(q, "service_request_id"); len(ids) > 0 {
		if len(ids) > maxListed {
			o.writeErrors(w, f, http.StatusBadRequest, problem{http.StatusBadRequest, fmt.Sprintf("service_request_id: at most %d at once", maxListed)})
			return
		}
		// From the read model, not the streams: an unauthenticated call
		// may name a thousand numbers.
		docs := make([]requestDoc, 0, len(ids))
		for _, id := range ids {
			st, ok := o.opts.Public.Get(id)
			if !ok || !o.public(st) {
				continue
			}
			doc, err := o.requestDoc(r.Context(), st)
			if err != nil {
				o.writeAppError(w, r, f, err)
				return
			}
			docs = append(docs, doc)
		}
		o.write(w, f, http.StatusOK, docs, requestsXML{Requests: docs})
		return
	}
	filter := app.PublicFilter{Limit: maxListed}
	for _, code := range commaList(q, "service_code") {
		if _, ok := o.service(code); !ok {
			problems = append(problems, problem{http.StatusNotFound, "service_code: no such service; see services." + f})
			continue
		}
		filter.Categories = append(filter.Categories, code)
	}
	if len(filter.Categories) == 0 {
		for _, s := range o.services {
			filter.Categories = append(filter.Categories, s.Code)
		}
	}
	var open, closed bool
	for _, s := range commaList(q, "status") {
		switch strings.ToLower(s) {
		case "open":
			open = true
		case "closed":
			closed = true
		default:
			problems = append(problems, problem{http.StatusBadRequest, "status: must be open or closed"})
		}
	}
	if open != closed {
		filter.Closed = &closed
	}
	start, okStart := w3cTime(q.Get("start_date"))
	end, okEnd := w3cTime(q.Get("end_date"))
	if !okStart {
		problems = append(problems, problem{http.StatusBadRequest, "start_date: must be a W3C date-time, for example 2026-12-01T00:00:00Z"})
	}
	if !okEnd {
		problems = append(problems, problem{http.StatusBadRequest, "end_date: must be a W3C date-time, for example 2026-12-07T23:59:59Z"})
	}
	if okStart && okEnd {
		switch {
		case end.IsZero() && start.IsZero():
			end = o.clock()
			start = end.Add(-listWindow)
		case end.IsZero():
			end = start.Add(listWindow)
		case start.IsZero():
			start = end.Add(-listWindow)
		}
		switch {
		case end.Before(start):
			problems = append(problems, problem{http.StatusBadRequest, "end_date: is before start_date"})
		case end.Sub(start) > listWindow:
			problems = append(problems, problem{http.StatusBadRequest, "start_date, end_date: may span at most 90 days"})
		}
	}
	if len(problems) > 0 {
		o.writeErrors(w, f, answerStatus(problems), problems...)
		return
	}
	filter.From, filter.To = start, end
	states := o.opts.Public.List(filter)
	docs := make([]requestDoc, 0, len(states))
	for _, st := range states {
		doc, err := o.requestDoc(r.Context(), st)
		if err != nil {
			o.writeAppError(w, r, f, err)
			return
		}
		docs = append(docs, doc)
	}
	o.write(w, f, http.StatusOK, docs, requestsXML{Requests: docs})
}

// commaList is a parameter's values, each split at commas (GeoReport's
// way of giving several), without blanks or empty entries.
func commaList(q url.Values, name string) []string {
	var out []string
	for _, v := range q[name] {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// w3cTime parses a GeoReport date: a W3C date-time, or a day (its
// start, UTC). An empty value is the zero time and fine.
func w3cTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, true
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// requestDoc is a case as a public answer shows it: status, service,
// times and the location rounded to the statistics cell, and what the
// reporter wrote only when the municipality publishes it. Contact
// details never.
func (o *Open311) requestDoc(ctx context.Context, st app.CaseState) (requestDoc, error) {
	state := "open"
	if st.Closed {
		state = "closed"
	}
	svc, _ := o.service(st.Category)
	doc := requestDoc{
		ServiceRequestID:  st.CaseNumber,
		Status:            state,
		ServiceCode:       st.Category,
		ServiceName:       svc.Name,
		RequestedDatetime: st.RequestedAt.UTC().Format(time.RFC3339),
		UpdatedDatetime:   st.UpdatedAt.UTC().Format(time.RFC3339),
	}
	if c := st.Coarse; c != nil {
		doc.Lat, doc.Long = ptr(c.GetLatitude()), ptr(c.GetLongitude())
	}
	if !o.opts.PublishFreeText {
		return doc, nil
	}
	ft, err := o.app.OpenFreeText(ctx, st.CaseID, st.FreeText)
	if err != nil || ft == nil {
		// A redacted text is no text; a key service away is an error.
		return doc, err
	}
	doc.Description = ft.GetDescription()
	doc.MediaURL = ft.GetMediaUrl()
	if loc := ft.GetLocation(); loc != nil {
		doc.Address, doc.AddressID = loc.GetAddress(), loc.GetAddressId()
		if loc.GetLatitude() != 0 || loc.GetLongitude() != 0 {
			doc.Lat, doc.Long = ptr(loc.GetLatitude()), ptr(loc.GetLongitude())
		}
	}
	return doc, nil
}

func ptr[T any](v T) *T { return &v }

// writeAppError answers a failed command or query through intake's one
// error table (ErrorMappings) and the one code-to-HTTP mapping
// (server.HTTPStatus), so a failure gets here the status and the words it
// gets over REST; a refused case gets one entry per wrong field, named by
// its GeoReport parameter. It returns the code the failure maps to.
func (o *Open311) writeAppError(w http.ResponseWriter, r *http.Request, f string, err error) codes.Code {
	st := status.Convert(server.ToStatus(r.Context(), err, ErrorMappings(), o.logger.With("http.route", o.prefix)))
	code := server.HTTPStatus(st.Code())
	var problems []problem
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				problems = append(problems, problem{code, open311Field(v.GetField()) + ": " + v.GetDescription()})
			}
		}
	}
	if len(problems) == 0 {
		problems = []problem{{code, st.Message()}}
	}
	o.writeErrors(w, f, code, problems...)
	return st.Code()
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
		return "lat/long, address_string or address_id"
	case "case.contact.name":
		return "first_name/last_name"
	case "case.location.address":
		return "address_string"
	case "case.location.address_id":
		return "address_id"
	case "case.location.latitude":
		return "lat"
	case "case.location.longitude":
		return "long"
	case "case.media_url":
		return "media_url"
	case "case.category":
		return "service_code"
	}
	return f
}

func (o *Open311) service(code string) (Open311Service, bool) {
	i := slices.IndexFunc(o.services, func(s Open311Service) bool { return s.Code == code })
	if i < 0 {
		return Open311Service{}, false
	}
	return o.services[i], true
}
