package e2e

// Helpers for the intake tests: one way to call IntakeService over each
// protocol (grpc-go, connect-go in gRPC-web mode, REST/JSON), the Open311
// endpoints, a read-only view of the JetStream store through the embedded
// server's client port (as kontakt's service user), and valid Swedish
// identity numbers.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	// Europe/Stockholm decides the year on a case number; the test must
	// find the zone even where the system has no zoneinfo.
	_ "time/tzdata"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
)

// Names in the store, as ARCHITECTURE.md and the adapters document them.
const (
	casesStream         = "KONTAKT_CASES"
	caseSubjectPrefix   = "kontakt.case."
	eventTypeHeader     = "Kontakt-Event-Type"
	caseRegisteredType  = "kontakt.case.v1.CaseRegistered"
	caseNumbersStream   = "KONTAKT_CASENUMBER_BLOCKS"
	caseNumbersSubject  = "kontakt.casenumbers."
	keysBucket          = "KONTAKT_KEYS"
	idempotencyBucket   = "KONTAKT_IDEMPOTENCY"
	intakeServicePrefix = "/kontakt.intake.v1.IntakeService/"
	replayedHeader      = "Idempotent-Replayed"
)

// protocol is one way a client reaches IntakeService.
type protocol string

const (
	overGRPC    protocol = "grpc"
	overGRPCWeb protocol = "grpc-web"
	overREST    protocol = "rest"
)

var allProtocols = []protocol{overGRPC, overGRPCWeb, overREST}

// intakeEnv is a started binary whose embedded NATS listens on a port the
// test can read the store through.
type intakeEnv struct {
	k     *Kontakt
	conns []*grpc.ClientConn
	nc    *nats.Conn
	js    jetstream.JetStream
}

// startIntake starts kontakt with the embedded NATS server reachable.
func startIntake(t *testing.T) *intakeEnv {
	t.Helper()
	return startInspected(t, Options{})
}

// startInspected starts kontakt with opts and the embedded NATS server
// reachable, and connects the test's clients and its store inspector.
func startInspected(t *testing.T, opts Options) *intakeEnv {
	t.Helper()
	opts.EmbeddedNATS = true
	k := Start(t, opts)
	e := &intakeEnv{k: k}
	for range 4 {
		e.conns = append(e.conns, k.Dial(t))
	}
	nc := k.ConnectNATS(t, nats.Name("kontakt-e2e-inspector"), nats.MaxReconnects(0))
	e.nc = nc
	var err error
	e.js, err = jetstream.New(nc)
	require.NoError(t, err)
	return e
}

// conn returns one of a few shared grpc-go connections.
func (e *intakeEnv) conn(i int) *grpc.ClientConn { return e.conns[i%len(e.conns)] }

// violation is one google.rpc.BadRequest field violation.
type violation struct {
	Field       string `json:"field"`
	Description string `json:"description"`
}

// answer is what one IntakeService call returned, whatever the protocol.
type answer struct {
	Code         codes.Code
	Message      string
	HTTPStatus   int // REST only
	CaseID       string
	CaseNumber   string
	RegisteredAt time.Time
	Replayed     bool
	Violations   []violation
	Body         []byte // REST only: the raw answer
	// FirstDetail is the @type of details[0] of a REST error.
	FirstDetail string
}

// fields returns the violated field paths.
func (a answer) fields() []string {
	out := make([]string, 0, len(a.Violations))
	for _, v := range a.Violations {
		out = append(out, v.Field)
	}
	return out
}

// callIntake calls one IntakeService method over protocol p. conn picks
// the grpc-go connection. A transport failure fails the test; a status is
// returned in the answer.
func callIntake[Req, Resp any](t *testing.T, e *intakeEnv, p protocol, conn int, token, method, restPath string, req *Req) (*Resp, answer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp := new(Resp)
	reqMsg, respMsg := any(req).(proto.Message), any(resp).(proto.Message)
	var a answer
	switch p {
	case overGRPC:
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		var header metadata.MD
		err := e.conn(conn).Invoke(ctx, intakeServicePrefix+method, reqMsg, respMsg, grpc.Header(&header))
		a.Replayed = strings.Join(header.Get(strings.ToLower(replayedHeader)), ",") == "true"
		if err != nil {
			st := status.Convert(err)
			a.Code, a.Message = st.Code(), st.Message()
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					a.Violations = append(a.Violations, fromBadRequest(br)...)
				}
			}
			return nil, a
		}
	case overGRPCWeb:
		client := connect.NewClient[Req, Resp](http.DefaultClient, "http://"+e.k.Addr+intakeServicePrefix+method, connect.WithGRPCWeb())
		creq := connect.NewRequest(req)
		creq.Header().Set("Authorization", "Bearer "+token)
		cresp, err := client.CallUnary(ctx, creq)
		if err != nil {
			var ce *connect.Error
			require.True(t, errors.As(err, &ce), "grpc-web: %v", err)
			a.Code, a.Message = codes.Code(ce.Code()), ce.Message()
			for _, d := range ce.Details() {
				v, derr := d.Value()
				require.NoError(t, derr)
				if br, ok := v.(*errdetails.BadRequest); ok {
					a.Violations = append(a.Violations, fromBadRequest(br)...)
				}
			}
			return nil, a
		}
		a.Replayed = cresp.Header().Get(replayedHeader) == "true"
		resp = cresp.Msg
	case overREST:
		body, err := protojson.Marshal(reqMsg)
		require.NoError(t, err)
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+e.k.Addr+restPath, bytes.NewReader(body))
		require.NoError(t, err)
		hreq.Header.Set("Content-Type", "application/json")
		hreq.Header.Set("Authorization", "Bearer "+token)
		hresp, err := http.DefaultClient.Do(hreq)
		require.NoError(t, err)
		defer hresp.Body.Close()
		a.Body, err = io.ReadAll(hresp.Body)
		require.NoError(t, err)
		a.HTTPStatus = hresp.StatusCode
		a.Replayed = hresp.Header.Get(replayedHeader) == "true"
		if hresp.StatusCode != http.StatusOK {
			var st struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
				Details []struct {
					Type            string      `json:"@type"`
					FieldViolations []violation `json:"fieldViolations"`
				} `json:"details"`
			}
			require.NoError(t, json.Unmarshal(a.Body, &st), "REST error body: %s", a.Body)
			a.Code, a.Message = codes.Code(st.Code), st.Message
			if len(st.Details) > 0 {
				a.FirstDetail = st.Details[0].Type
			}
			for _, d := range st.Details {
				a.Violations = append(a.Violations, d.FieldViolations...)
			}
			return nil, a
		}
		require.NoError(t, protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(a.Body, respMsg), "REST body: %s", a.Body)
	default:
		t.Fatalf("unknown protocol %q", p)
	}
	a.Code = codes.OK
	return resp, a
}

func fromBadRequest(br *errdetails.BadRequest) []violation {
	out := make([]violation, 0, len(br.GetFieldViolations()))
	for _, fv := range br.GetFieldViolations() {
		out = append(out, violation{Field: fv.GetField(), Description: fv.GetDescription()})
	}
	return out
}

// register calls RegisterCase.
func (e *intakeEnv) register(t *testing.T, p protocol, token string, req *intakev1.RegisterCaseRequest) answer {
	t.Helper()
	resp, a := callIntake[intakev1.RegisterCaseRequest, intakev1.RegisterCaseResponse](t, e, p, 0, token, "RegisterCase", "/v1/cases", req)
	if resp != nil {
		a.CaseID, a.CaseNumber, a.RegisteredAt = resp.GetCaseId(), resp.GetCaseNumber(), resp.GetRegisteredAt().AsTime()
	}
	return a
}

// submit calls SubmitForm; conn picks the grpc-go connection.
func (e *intakeEnv) submit(t *testing.T, p protocol, conn int, token string, req *intakev1.SubmitFormRequest) answer {
	t.Helper()
	resp, a := callIntake[intakev1.SubmitFormRequest, intakev1.SubmitFormResponse](t, e, p, conn, token, "SubmitForm", "/v1/forms/cases", req)
	if resp != nil {
		a.CaseNumber, a.RegisteredAt = resp.GetCaseNumber(), resp.GetRegisteredAt().AsTime()
	}
	return a
}

// open311Post posts a GeoReport v2 service request, form-encoded.
func (e *intakeEnv) open311Post(t *testing.T, form url.Values) (int, []byte) {
	t.Helper()
	return e.open311PostWith(t, nil, form)
}

// open311PostWith is open311Post with extra request headers (an
// Idempotency-Key).
func (e *intakeEnv) open311PostWith(t *testing.T, header http.Header, form url.Values) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+e.k.Addr+"/open311/v2/requests.json", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, body
}

// open311Get reads a service request by its number, with the token as
// the api_key parameter.
func (e *intakeEnv) open311Get(t *testing.T, token, number string) (int, []byte) {
	t.Helper()
	u := "http://" + e.k.Addr + "/open311/v2/requests/" + url.PathEscape(number) + ".json?api_key=" + url.QueryEscape(token)
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, body
}

// open311Submit posts a report and returns its service_request_id.
func (e *intakeEnv) open311Submit(t *testing.T, form url.Values) string {
	t.Helper()
	code, body := e.open311Post(t, form)
	require.Equal(t, http.StatusCreated, code, "open311 POST: %s", body)
	// The answer holds nothing the reporter sent but the service code.
	for k, vals := range form {
		if k == "api_key" || k == "service_code" {
			continue
		}
		for _, v := range vals {
			if len(v) >= 5 {
				require.NotContains(t, string(body), v, "the Open311 answer repeats %s", k)
			}
		}
	}
	var created []struct {
		ServiceRequestID string `json:"service_request_id"`
	}
	require.NoError(t, json.Unmarshal(body, &created), string(body))
	require.Len(t, created, 1, string(body))
	require.NotEmpty(t, created[0].ServiceRequestID)
	return created[0].ServiceRequestID
}

// storedEvent is one message of the KONTAKT_CASES stream.
type storedEvent struct {
	Seq     uint64
	Subject string
	Type    string
	Header  nats.Header
	Data    []byte
}

// caseID returns the id in a case subject.
func (s storedEvent) caseID() string { return strings.TrimPrefix(s.Subject, caseSubjectPrefix) }

// events reads every message of KONTAKT_CASES, in order.
func (e *intakeEnv) events(t *testing.T) []storedEvent {
	t.Helper()
	var out []storedEvent
	for _, m := range streamMessages(t, e.js, casesStream) {
		out = append(out, storedEvent{Seq: m.Sequence, Subject: m.Subject, Type: m.Header.Get(eventTypeHeader), Header: m.Header, Data: m.Data})
	}
	return out
}

// streamMessages reads every message a stream holds, in order, one by one
// (the tests' streams are small).
func streamMessages(t *testing.T, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var out []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(t, err)
		out = append(out, m)
	}
	return out
}

// countRegistered counts CaseRegistered events in the whole store.
func countRegistered(evs []storedEvent) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == caseRegisteredType {
			n++
		}
	}
	return n
}

// subjectCount is how many messages the store holds for one case.
// subjectCount counts the CaseRegistered events on a case's subject.
func (e *intakeEnv) subjectCount(t *testing.T, caseID string) uint64 {
	t.Helper()
	var n uint64
	for _, ev := range e.events(t) {
		if ev.Subject == caseSubjectPrefix+caseID && ev.Type == caseRegisteredType {
			n++
		}
	}
	return n
}

// numberBlock is a message of the case-number stream: the first number
// of a block and the cases its numbers went to, in order.
type numberBlock struct {
	First uint64   `json:"first"`
	Cases []string `json:"cases"`
}

// numberBlocks reads every block of this year, in order, by walking the
// stream's messages of the year's subject (independently of intake's own
// binary search).
func (e *intakeEnv) numberBlocks(t *testing.T) []numberBlock {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := e.js.Stream(ctx, caseNumbersStream)
	require.NoError(t, err)
	subject := fmt.Sprintf("%s%d", caseNumbersSubject, stockholmYear(t))
	var out []numberBlock
	for seq := uint64(1); ; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		require.NoError(t, err)
		var b numberBlock
		require.NoError(t, json.Unmarshal(m.Data, &b))
		out = append(out, b)
		seq = m.Sequence + 1
	}
}

// caseIDOfNumber looks up the case a number was allocated to, in the
// case-number blocks.
func (e *intakeEnv) caseIDOfNumber(t *testing.T, number string) string {
	t.Helper()
	n := caseNumberSeq(t, stockholmYear(t), number)
	for _, b := range e.numberBlocks(t) {
		if n >= b.First && n < b.First+uint64(len(b.Cases)) {
			return b.Cases[n-b.First]
		}
	}
	t.Fatalf("case number %s is in no block", number)
	return ""
}

// stockholmYear is the year case numbers carry now.
func stockholmYear(t *testing.T) int {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Stockholm")
	require.NoError(t, err)
	return time.Now().In(loc).Year()
}

// counter is the last case number allocated this year (0 when none was).
func (e *intakeEnv) counter(t *testing.T) uint64 {
	t.Helper()
	blocks := e.numberBlocks(t)
	if len(blocks) == 0 {
		return 0
	}
	last := blocks[len(blocks)-1]
	return last.First + uint64(len(last.Cases)) - 1
}

// storeSnapshot is everything intake may write, counted. Case events are
// counted by CaseRegistered only: the router appends CaseRouted to earlier
// cases while a test runs, which is not intake's doing.
type storeSnapshot struct {
	Registered int
	Counter    uint64
	BucketMsgs map[string]uint64
}

func (e *intakeEnv) snapshot(t *testing.T) storeSnapshot {
	t.Helper()
	s := storeSnapshot{Registered: countRegistered(e.events(t)), Counter: e.counter(t), BucketMsgs: map[string]uint64{}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, b := range []string{caseNumbersStream, "KV_" + keysBucket, "KV_" + idempotencyBucket} {
		st, err := e.js.Stream(ctx, b)
		require.NoError(t, err)
		bi, err := st.Info(ctx)
		require.NoError(t, err)
		s.BucketMsgs[b] = bi.State.LastSeq
	}
	return s
}

// caseNumberSeq checks the form KC-<year>-NNNNNN and returns NNNNNN.
func caseNumberSeq(t *testing.T, year int, number string) uint64 {
	t.Helper()
	prefix := fmt.Sprintf("KC-%d-", year)
	require.True(t, strings.HasPrefix(number, prefix), "case number %q lacks %q", number, prefix)
	digits := strings.TrimPrefix(number, prefix)
	require.GreaterOrEqual(t, len(digits), 6, "case number %q", number)
	for _, c := range digits {
		require.True(t, c >= '0' && c <= '9', "case number %q", number)
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("%s%06d", prefix, n), number, "non-canonical case number")
	return n
}

// personnummer returns a valid twelve-digit number YYYYMMDDNNNC for the
// date and serial (day+60 when coordination is set).
func personnummer(year, month, day, serial int, coordination bool) string {
	if coordination {
		day += 60
	}
	nine := fmt.Sprintf("%02d%02d%02d%03d", year%100, month, day, serial)
	return fmt.Sprintf("%04d", year) + nine[2:] + string(luhn(nine))
}

// tenDigit returns the ten-digit form YYMMDDNNNC of a twelve-digit number.
func tenDigit(twelve string) string { return twelve[2:] }

// dashed returns YYYYMMDD-NNNC or YYMMDD-NNNC.
func dashed(n string) string { return n[:len(n)-4] + "-" + n[len(n)-4:] }

func luhn(nine string) byte {
	sum := 0
	for i, c := range nine {
		v := int(c - '0')
		if i%2 == 0 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return byte('0' + (10-sum%10)%10)
}

// randHex returns n random bytes as hex, for markers and keys.
func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// randDigits returns n random decimal digits.
func randDigits(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	return string(b)
}

// scanDir reads every regular file under dir and returns, for each needle,
// the files that contain it.
func scanDir(t *testing.T, dir string, needles []string) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	files := 0
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found[n] = append(found[n], path)
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.NotZero(t, files, "no files under %s", dir)
	return found
}

// decodeRegistered decodes a CaseRegistered event.
func decodeRegistered(t *testing.T, ev storedEvent) *casev1.CaseRegistered {
	t.Helper()
	require.Equal(t, caseRegisteredType, ev.Type, "event %d on %s", ev.Seq, ev.Subject)
	var cr casev1.CaseRegistered
	require.NoError(t, proto.Unmarshal(ev.Data, &cr))
	require.Empty(t, cr.ProtoReflect().GetUnknown(), "CaseRegistered carries fields the schema does not know")
	return &cr
}
