package e2e

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The HTTP fuzz: about 20,000 requests over REST, Connect JSON, Open311
// and (fewer) gRPC-web, most of them client mistakes (valid bodies cut short,
// bit-flipped, nested deep, with huge numbers, wrong types, bytes that are
// not UTF-8, false or broken gzip, wrong content types, bad paths and
// ids). No client mistake may get a 5xx, the server must stay up with its
// memory bounded, and its log must hold neither an ERROR line nor any
// marker the requests carried. The generator is seeded; the seed is
// logged, and KONTAKT_FUZZ_SEED=<seed> replays the same requests.

const (
	fuzzRequests = 20_000
	// fuzzBudget stops sending early on a machine too loaded to finish;
	// the counts say how far it got.
	fuzzBudget   = 100 * time.Second
	fuzzWorkers  = 8
	fuzzPeakRSS  = 300 << 20
	fuzzMaxShown = 20
)

// fuzzReq is one generated request.
type fuzzReq struct {
	class string
	call  edgeCall
}

// fuzzGen generates requests from a seeded source.
type fuzzGen struct {
	r       *rand.Rand
	marker  string
	tokens  map[string]string // role -> token
	n       int
	ids     []string
	numbers []string
}

func (g *fuzzGen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

// mark returns a fresh marker-bearing string.
func (g *fuzzGen) mark() string {
	g.n++
	return fmt.Sprintf("%s%d", g.marker, g.n)
}

// jsonTarget is an RPC reachable as REST and as Connect JSON, with a valid
// body to mutate.
type jsonTarget struct {
	rest, restMethod string // REST path ({id} is replaced) and method
	connect          string // Connect path
	role             string
	body             func(g *fuzzGen) string
}

func (g *fuzzGen) uuid() string {
	if len(g.ids) > 0 && g.r.IntN(2) == 0 {
		return g.ids[g.r.IntN(len(g.ids))]
	}
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", g.r.Uint32(), g.r.IntN(1<<16), g.r.IntN(1<<12), g.r.IntN(1<<12), g.r.Uint64()&(1<<48-1))
}

var fuzzTargets = []jsonTarget{
	{rest: "/v1/forms/cases", restMethod: http.MethodPost, connect: "/kontakt.intake.v1.IntakeService/SubmitForm", role: "form-client",
		body: func(g *fuzzGen) string {
			return fmt.Sprintf(`{"idempotencyKey":"fz-%d-%d","case":{"type":"CASE_TYPE_FELANMALAN","category":"gatubelysning","description":"Lampan %s lyser inte","location":{"latitude":57.6554,"longitude":12.0138},"contact":{"email":"a@example.se","phone":"070-123 45 67","name":"%s"}}}`,
				g.r.IntN(1<<30), g.n, g.mark(), g.mark())
		}},
	{rest: "/v1/cases", restMethod: http.MethodPost, connect: "/kontakt.intake.v1.IntakeService/RegisterCase", role: "agent",
		body: func(g *fuzzGen) string {
			return fmt.Sprintf(`{"case":{"type":"CASE_TYPE_FRAGA","channel":"CHANNEL_PHONE","category":"bygglov","subject":"%s","contact":{"phone":"070-123 45 67","identityNumber":"19121212-1212"},"attachments":[{"name":"a.pdf","contentType":"application/pdf","sizeBytes":"1024","attachmentId":"%s"}]}}`,
				g.mark(), g.mark())
		}},
	{rest: "/v1/cases:find", restMethod: http.MethodPost, connect: "/kontakt.routing.v1.RoutingService/FindCases", role: "supervisor",
		body: func(g *fuzzGen) string {
			return g.pick(`{"phone":"070-123 45 67"}`, `{"email":"a@example.se"}`, `{"identityNumber":"19121212-1212"}`, fmt.Sprintf(`{"caseNumber":"KC-2026-%s"}`, g.mark()))
		}},
	{rest: "/v1/audit:list", restMethod: http.MethodPost, connect: "/kontakt.routing.v1.RoutingService/ListAuditTrail", role: "dpo",
		body: func(g *fuzzGen) string { return fmt.Sprintf(`{"caseId":"%s"}`, g.uuid()) }},
	{rest: "/v1/statistics:query", restMethod: http.MethodPost, connect: "/kontakt.statistics.v1.StatisticsService/Query", role: "supervisor",
		body: func(g *fuzzGen) string {
			return `{"from":"2026-10-01T00:00:00+02:00","to":"2026-11-01T00:00:00+01:00","groupBy":["DIMENSION_TYPE","DIMENSION_CHANNEL"],"granularity":"GRANULARITY_WEEK","publishable":true}`
		}},
	{rest: "/v1/cases/{id}:claim", restMethod: http.MethodPost, connect: "/kontakt.routing.v1.RoutingService/ClaimCase", role: "supervisor",
		body: func(g *fuzzGen) string { return fmt.Sprintf(`{"caseId":"%s"}`, g.uuid()) }},
	{rest: "/v1/cases/{id}/notes", restMethod: http.MethodPost, connect: "/kontakt.routing.v1.RoutingService/AddNote", role: "supervisor",
		body: func(g *fuzzGen) string { return fmt.Sprintf(`{"caseId":"%s","text":"%s"}`, g.uuid(), g.mark()) }},
	{rest: "/v1/cases/{id}:rectify", restMethod: http.MethodPost, connect: "/kontakt.retention.v1.RetentionService/Rectify", role: "dpo",
		body: func(g *fuzzGen) string {
			return fmt.Sprintf(`{"caseId":"%s","contact":{"name":"%s","email":"b@example.se"},"reason":"fel"}`, g.uuid(), g.mark())
		}},
	{rest: "/v1/cases/{id}/holds", restMethod: http.MethodPost, connect: "/kontakt.retention.v1.RetentionService/PlaceHold", role: "supervisor",
		body: func(g *fuzzGen) string { return fmt.Sprintf(`{"caseId":"%s","reason":"överklagande"}`, g.uuid()) }},
}

// mutate applies one random client mistake to a valid JSON body.
func (g *fuzzGen) mutate(body []byte) (string, []byte) {
	b := append([]byte(nil), body...)
	switch g.r.IntN(11) {
	case 0:
		return "valid", b
	case 1:
		return "cut short", b[:g.r.IntN(len(b))]
	case 2:
		for range 1 + g.r.IntN(8) {
			i := g.r.IntN(len(b))
			b[i] ^= byte(1 << g.r.IntN(8))
		}
		return "bit flips", b
	case 3:
		d := 100 + g.r.IntN(100_000)
		open, closing := "[", "]"
		if g.r.IntN(2) == 0 {
			open, closing = `{"a":`, "}"
		}
		return "deep nesting", g.replaceValue(b, strings.Repeat(open, d)+"1"+strings.Repeat(closing, d))
	case 4:
		return "huge number", g.replaceValue(b, g.pick("1e999", "-1e400", strings.Repeat("9", 20+g.r.IntN(400)), `"`+strings.Repeat("9", 25)+`"`, "1.7976931348623157e309", "NaN", `"Infinity"`, "-0", "0x10"))
	case 5:
		return "wrong type", g.replaceValue(b, g.pick(`{}`, `[]`, `true`, `null`, `"`+g.mark()+`"`, `12`, `[1,"`+g.mark()+`"]`, `{"x":[{}]}`, `"CASE_TYPE_`+g.mark()+`"`))
	case 6:
		i := g.r.IntN(len(b))
		bad := []string{"\xff", "\xfe\xff", "\xc3\x28", "\xed\xa0\x80", "\xe5", "\x00", `\ud800`, `\u0000`, "\x1b[31m"}
		return "not UTF-8", append(append(b[:i:i], g.pick(bad...)...), b[i:]...)
	case 7:
		return "duplicate and unknown fields", append(append([]byte(`{"`+g.mark()+`":1,`), b[1:len(b)-1]...), []byte(`,"case":null,"case":{}}`)...)
	case 8:
		n := g.r.IntN(512)
		junk := make([]byte, n)
		for i := range junk {
			junk[i] = byte(g.r.IntN(256))
		}
		return "random bytes", append([]byte(g.mark()), junk...)
	case 9:
		return "not an object", []byte(g.pick(`[]`, `"`+g.mark()+`"`, `1`, `null`, ``, ` `, `{"case":`+strings.Repeat(" ", 1000)))
	default:
		return "long string", g.replaceValue(b, `"`+g.mark()+strings.Repeat("å", g.r.IntN(200_000))+`"`)
	}
}

// replaceValue puts v where a random value of the JSON object b starts (at
// a colon), keeping the rest: a crude but type-agnostic way to put a
// wrong value into a real field.
func (g *fuzzGen) replaceValue(b []byte, v string) []byte {
	var colons []int
	for i, c := range b {
		if c == ':' {
			colons = append(colons, i)
		}
	}
	if len(colons) == 0 {
		return append(b, v...)
	}
	at := colons[g.r.IntN(len(colons))] + 1
	end := at
	for end < len(b) && b[end] != ',' && b[end] != '}' {
		end++
	}
	return append(append(append([]byte(nil), b[:at]...), v...), b[end:]...)
}

// encode applies a random content encoding or content type mistake.
func (g *fuzzGen) encode(class string, body []byte, h http.Header) (string, []byte) {
	switch g.r.IntN(14) {
	case 0:
		h.Set("Content-Encoding", "gzip")
		return class + ", gzip", fuzzGzip(body)
	case 1:
		h.Set("Content-Encoding", "gzip")
		return class + ", false gzip header", body
	case 2:
		h.Set("Content-Encoding", "gzip")
		z := fuzzGzip(body)
		return class + ", gzip cut short", z[:g.r.IntN(len(z))]
	case 3:
		h.Set("Content-Encoding", "gzip")
		z := fuzzGzip(body)
		z[g.r.IntN(len(z))] ^= 0xff
		return class + ", gzip corrupt", z
	case 4:
		h.Set("Content-Encoding", "gzip")
		return class + ", gzip bomb", fuzzBomb
	case 5:
		h.Set("Content-Encoding", g.pick("br", "deflate, gzip", "identity", "x-"+g.mark(), "GZIP"))
		return class + ", odd encoding", body
	case 6:
		h.Set("Content-Type", g.pick("text/plain", "application/xml", "multipart/form-data; boundary="+g.mark(), "application/json; charset=latin1",
			"", "application/x-www-form-urlencoded", "application/grpc-web+json", "application/connect+json", "application/proto", ";;;", g.mark()+"/x"))
		return class + ", odd content type", body
	default:
		return class, body
	}
}

func fuzzGzip(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// fuzzBomb inflates to 8 MiB, twice the default limit.
var fuzzBomb = func() []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write([]byte(`{"text":"`))
	_, _ = zw.Write(bytes.Repeat([]byte("a"), 8<<20))
	_, _ = zw.Write([]byte(`"}`))
	_ = zw.Close()
	return buf.Bytes()
}()

// badID returns an id a client might send by mistake or malice.
func (g *fuzzGen) badID() string {
	m := g.mark()
	return g.pick(m, m+"'", m+"%FF", "%00"+m, m+"%2F..%2F", strings.Repeat("a", 200)+m, m+"%E5", url.PathEscape(m+" é\"<>"), "-"+m, m+".json")
}

// next generates the next request.
func (g *fuzzGen) next() fuzzReq {
	switch k := g.r.IntN(10); {
	case k < 6:
		t := fuzzTargets[g.r.IntN(len(fuzzTargets))]
		class, body := g.mutate([]byte(t.body(g)))
		h := edgeHeader("Content-Type", "application/json")
		g.auth(h, t.role)
		var path string
		switch g.r.IntN(5) {
		case 0:
			// gRPC-web, the agent UI's protocol: the JSON codec, or
			// protobuf bytes that are mostly not a message.
			h.Set("Content-Type", "application/grpc-web+json")
			if g.r.IntN(2) == 0 {
				h.Set("Content-Type", "application/grpc-web+proto")
				_, body = g.mutate([]byte{0x0a, 0x10, 'f', 'z', '-', 'k', 'e', 'y', '-', '0', '0', '0', '0', '0', '0', '0', '0', '1', 0x12, 0x00})
			}
			flag := byte(0)
			if g.r.IntN(4) == 0 {
				flag, body = 1, fuzzGzip(body)
				h.Set("Grpc-Encoding", g.pick("gzip", "gzip", "br"))
			}
			env := edgeEnvelope(flag == 1, body)
			if g.r.IntN(6) == 0 {
				env = env[:g.r.IntN(len(env))]
			}
			return fuzzReq{class: "gRPC-web: " + class, call: edgeCall{method: http.MethodPost, path: t.connect, header: h, body: env}}
		case 1, 2:
			class, path = "REST: "+class, strings.ReplaceAll(t.rest, "{id}", g.pathID())
		default:
			class, path = "Connect: "+class, t.connect
			h.Set("Connect-Protocol-Version", "1")
		}
		class, body = g.encode(class, body, h)
		return fuzzReq{class: class, call: edgeCall{method: t.restMethod, path: path, header: h, body: body}}
	case k < 7:
		h := edgeHeader()
		g.auth(h, g.pick("supervisor", "agent", "dpo"))
		path := g.pick("/v1/cases/"+g.pathID()+"?purpose="+url.QueryEscape(g.mark()),
			"/v1/queues/"+g.pick("kontaktcenter", g.badID())+"/cases?pageSize="+g.pick("20", "-1", "99999999999999999999", "abc", "1e3", g.mark())+"&order="+g.pick("QUEUE_ORDER_AGE", g.mark(), "%FF"),
			"/v1/retention/preview?days="+g.pick("30", "-5", "99999999999", "x"+g.mark()),
			"/v1/"+g.badID(), "/kontakt.routing.v1.RoutingService/"+g.badID(), "/"+g.badID(),
			"/v1/cases/"+g.pathID()+"?purpose=%ZZ"+g.mark(), "/v1/queues?"+g.mark()+"=%FF")
		var body []byte
		if g.r.IntN(5) == 0 {
			body = []byte(`{"` + g.mark() + `":1}`)
		}
		return fuzzReq{class: "REST GET: bad path or query", call: edgeCall{method: http.MethodGet, path: path, header: h, body: body}}
	default:
		return g.open311()
	}
}

func (g *fuzzGen) pathID() string {
	if g.r.IntN(3) == 0 {
		return g.uuid()
	}
	return g.badID()
}

func (g *fuzzGen) auth(h http.Header, role string) {
	switch g.r.IntN(10) {
	case 0:
		return
	case 1:
		h.Set("Authorization", "Bearer "+g.mark())
	default:
		h.Set("Authorization", "Bearer "+g.tokens[role])
	}
}

// open311 generates an Open311 request.
func (g *fuzzGen) open311() fuzzReq {
	format := g.pick("json", "xml")
	switch g.r.IntN(8) {
	case 0, 1:
		path := "/open311/v2/requests/" + g.pick(g.badID(), "KC-2026-"+g.mark(), "KC-2026-000001", "KC-9999999999999999999-1") + "." + format + g.pick("", "?api_key="+g.tokens["form-client"])
		return fuzzReq{class: "Open311 GET", call: edgeCall{method: http.MethodGet, path: path}}
	case 2:
		// The public list, with every filter in good and bad forms.
		q := []string{
			"service_request_id=" + g.pick("KC-2026-000001,KC-2026-000002", g.mark(), ",,,", strings.Repeat("KC-2026-000001,", 1001), "%FF"),
			"service_code=" + g.pick("gatubelysning,klotter", g.mark(), "%00"),
			"status=" + g.pick("open", "closed,open", g.mark()),
			"start_date=" + g.pick("2026-12-01T00:00:00Z", "2026-12-01", "0000-00-00", g.mark(), "9999-12-31T23:59:59Z"),
			"end_date=" + g.pick("2026-12-07T00:00:00+01:00", "1900-01-01T00:00:00Z", g.mark()),
			"jurisdiction_id=" + g.mark(),
		}
		g.r.Shuffle(len(q), func(i, j int) { q[i], q[j] = q[j], q[i] })
		path := "/open311/v2/requests." + format + "?" + strings.Join(q[:g.r.IntN(len(q)+1)], "&")
		return fuzzReq{class: "Open311 list", call: edgeCall{method: http.MethodGet, path: path}}
	case 3:
		path := "/open311/v2/" + g.pick("services."+format, "services/"+g.pick("gatubelysning", g.mark(), "%FF")+"."+format, "discovery."+format, "requests."+g.mark())
		return fuzzReq{class: "Open311 GET", call: edgeCall{method: http.MethodGet, path: path}}
	}
	vals := []string{
		"api_key=" + url.QueryEscape(g.pick(g.tokens["form-client"], g.tokens["form-client"], g.mark())),
		"service_code=" + g.pick("gatubelysning", "klotter", g.mark(), "%FF"),
		"lat=" + g.pick("57.6554", "91", "NaN", "1e999", "-0", g.mark(), "%E5"),
		"long=" + g.pick("12.0138", "-181", "Infinity", "0x1p3"),
		"description=" + g.pick("Lampan+lyser+inte+"+g.mark(), "L%E5mpan+"+g.mark(), "%ZZ"+g.mark(), strings.Repeat("a", g.r.IntN(10_000))+g.mark(), "%C3%28"+g.mark()),
		"email=" + g.pick("a%40example.se", g.mark(), "%FF%FE"),
		"first_name=" + g.mark(),
		"address_string=" + g.pick("Storgatan+1", g.mark(), "%00"),
		"address_id=" + g.pick("LM-123", g.mark(), "%FF"),
		"media_url=" + g.pick("https%3A%2F%2Fexample.se%2Fa.jpg", "javascript%3Aalert(1)", g.mark()),
		"attribute%5B" + g.mark() + "%5D=" + g.mark(),
	}
	g.r.Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
	body := []byte(strings.Join(vals[:3+g.r.IntN(len(vals)-2)], g.pick("&", "&", ";", "&&")))
	h := edgeHeader("Content-Type", g.pick("application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=ISO-8859-1",
		"application/x-www-form-urlencoded; charset=utf-16", "application/x-www-form-urlencoded; charset="+g.mark(), ""))
	class := "Open311 form"
	switch g.r.IntN(6) {
	case 0:
		class, body = "Open311 JSON", g.open311JSON()
		h.Set("Content-Type", g.pick("application/json", "application/json; charset=latin1", "text/json"))
	case 1:
		_, body = g.mutate(body)
		class += ", mutated"
	}
	if g.r.IntN(4) == 0 {
		h.Set("Idempotency-Key", g.pick(g.mark(), "short", strings.Repeat("k", 300), "ok-key-"+g.mark()+"\xff"))
	}
	class, body = g.encode(class, body, h)
	return fuzzReq{class: class, call: edgeCall{method: http.MethodPost, path: "/open311/v2/requests." + format, header: h, body: body}}
}

func (g *fuzzGen) open311JSON() []byte {
	b := fmt.Sprintf(`{"api_key":"%s","service_code":"gatubelysning","lat":57.6554,"long":12.0138,"description":"%s"}`, g.tokens["form-client"], g.mark())
	_, mutated := g.mutate([]byte(b))
	return mutated
}

// fuzzSeed is KONTAKT_FUZZ_SEED, or a new seed.
func fuzzSeed(t *testing.T) uint64 {
	if s := os.Getenv("KONTAKT_FUZZ_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "KONTAKT_FUZZ_SEED")
		return n
	}
	return uint64(time.Now().UnixNano())
}

func TestEdgeFuzzHTTPSurface(t *testing.T) {
	seed := fuzzSeed(t)
	t.Logf("seed %d: KONTAKT_FUZZ_SEED=%d replays these requests", seed, seed)
	// The rate limit would turn most submissions into 429 before they
	// reach the code under test; it has its own test. (A binary without
	// the setting ignores these variables.)
	t.Setenv(envPerCredentialRate, "0")
	t.Setenv(envPerAddressRate, "0")
	k := Start(t, Options{})
	g := &fuzzGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), marker: "MRK" + strings.ToUpper(strconv.FormatUint(seed%(1<<32), 36)) + "Z",
		tokens: map[string]string{}}
	for _, role := range []string{"form-client", "agent", "supervisor", "dpo"} {
		g.tokens[role] = k.Token(t, "fuzz-"+role, role)
	}
	// A few real cases, so that some ids hit something.
	for i := range 5 {
		a := k.edgeDo(t, http.DefaultClient, edgeCall{method: http.MethodPost, path: "/v1/cases",
			header: edgeHeader("Content-Type", "application/json", "Authorization", "Bearer "+g.tokens["agent"]),
			body:   []byte(fmt.Sprintf(`{"case":{"type":"CASE_TYPE_FRAGA","channel":"CHANNEL_VISIT","category":"bygglov","subject":"fuzz %d"}}`, i))})
		require.Equal(t, http.StatusOK, a.status, "%s", a.body)
		if id := jsonField(a.body, "caseId"); id != "" {
			g.ids = append(g.ids, id)
		}
	}

	// Half the workers speak HTTP/1.1, half cleartext HTTP/2.
	clients := []*http.Client{
		{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: fuzzWorkers, DisableCompression: true}},
		edgeClient(),
	}
	jobs := make(chan fuzzReq, fuzzWorkers)
	var (
		sent, transportErrs atomic.Int64
		mu                  sync.Mutex
		statuses            = map[int]int{}
		serverFaults        = map[string]int{}
		shown               []string
		wg                  sync.WaitGroup
	)
	for w := range fuzzWorkers {
		client := clients[w%len(clients)]
		wg.Go(func() {
			for req := range jobs {
				a, err := fuzzDo(k, client, req.call)
				sent.Add(1)
				if err != nil {
					transportErrs.Add(1)
					continue
				}
				mu.Lock()
				statuses[a.status]++
				if fuzzFault(a) {
					serverFaults[req.class]++
					if len(shown) < fuzzMaxShown {
						shown = append(shown, fmt.Sprintf("%s: %s %s -> %d %.200q", req.class, req.call.method, req.call.path, a.status, a.body))
					}
				}
				mu.Unlock()
			}
		})
	}
	start := time.Now()
	generated := 0
	for ; generated < fuzzRequests && time.Since(start) < fuzzBudget; generated++ {
		jobs <- g.next()
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)

	codes := make([]int, 0, len(statuses))
	for c := range statuses {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var hist []string
	faults := 0
	for _, c := range codes {
		hist = append(hist, fmt.Sprintf("%d×%d", c, statuses[c]))
	}
	for _, n := range serverFaults {
		faults += n
	}
	t.Logf("sent %d requests in %s (%d without an answer at the transport level); statuses: %s", sent.Load(), elapsed.Round(time.Millisecond), transportErrs.Load(), strings.Join(hist, " "))
	t.Logf("5xx (or internal/unknown inside a 200) for client mistakes: %d", faults)
	for class, n := range serverFaults {
		t.Logf("  in class %q: %d", class, n)
	}
	for _, s := range shown {
		t.Log("  e.g. " + s)
	}
	peak := k.edgePeakRSS(t)
	t.Logf("peak resident memory of kontakt: %d MB", peak>>20)

	require.Zero(t, faults, "no client mistake is answered as a server fault")
	require.Less(t, transportErrs.Load(), sent.Load()/100, "the server answers (almost) every request")
	k.edgeRequireHealthy(t)
	require.Less(t, peak, int64(fuzzPeakRSS), "memory stays bounded")
	log := k.stderr.String()
	errs := edgeErrorLines(log)
	if len(errs) > 5 {
		errs = errs[:5]
	}
	require.Empty(t, errs, "no ERROR line for client mistakes")
	var leaks []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, g.marker) && len(leaks) < 5 {
			leaks = append(leaks, l)
		}
	}
	require.Empty(t, leaks, "the log repeats no input")
}

// fuzzDo is edgeDo that reports transport errors instead of failing: a
// server may close a connection on a request it refuses.
func fuzzDo(k *Kontakt, c *http.Client, call edgeCall) (edgeAnswer, error) {
	req, err := http.NewRequest(call.method, "http://"+k.Addr+call.path, bytes.NewReader(call.body))
	if err != nil {
		// The generator made a URL Go will not send: count it as sent
		// and answered by nobody.
		return edgeAnswer{}, err
	}
	if call.body == nil {
		req.Body = http.NoBody
	}
	for h, vs := range call.header {
		req.Header[h] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		return edgeAnswer{}, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return edgeAnswer{status: resp.StatusCode, header: resp.Header, body: buf.Bytes()}, nil
}

// fuzzFault reports an answer that says "server fault": a 5xx, or, where
// an RPC protocol answers 200 with the status inside (gRPC-web, Connect
// streaming), an internal, unknown or data-loss code.
func fuzzFault(a edgeAnswer) bool {
	if a.status >= 500 {
		return true
	}
	switch a.grpcStatus() {
	case "2", "13", "15":
		return true
	}
	body := string(a.body)
	return strings.HasPrefix(a.header.Get("Content-Type"), "application/connect+") &&
		(strings.Contains(body, `"code":"internal"`) || strings.Contains(body, `"code":"unknown"`) || strings.Contains(body, `"code":"data_loss"`))
}

// jsonField finds "name":"value" in a JSON answer.
func jsonField(body []byte, name string) string {
	_, rest, ok := strings.Cut(string(body), `"`+name+`":"`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}
