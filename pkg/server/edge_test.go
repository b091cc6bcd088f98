package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// gzipOf compresses b.
func gzipOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	require.NoError(t, err)
	_, err = zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// bomb returns gzip that inflates to n bytes of JSON whitespace inside a
// valid-looking object.
func bomb(t testing.TB, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	require.NoError(t, err)
	_, err = zw.Write([]byte(`{"text":"`))
	require.NoError(t, err)
	chunk := bytes.Repeat([]byte("a"), 1<<16)
	for written := 0; written < n; written += len(chunk) {
		_, err = zw.Write(chunk)
		require.NoError(t, err)
	}
	_, err = zw.Write([]byte(`"}`))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func TestBoundedGunzip(t *testing.T) {
	const limit = 1000
	small := bytes.Repeat([]byte("x"), limit)
	tests := []struct {
		name    string
		input   []byte
		wantErr error
		want    []byte
	}{
		{name: "at the limit", input: gzipOf(t, small), want: small},
		{name: "one byte over", input: gzipOf(t, append(small, 'y')), wantErr: errInflatedTooLarge},
		{name: "a bomb", input: gzipOf(t, make([]byte, 50<<20)), wantErr: errInflatedTooLarge},
		{name: "not gzip", input: []byte("plain text"), wantErr: errBadGzip},
		{name: "cut short", input: gzipOf(t, small)[:30], wantErr: errBadGzip},
		{name: "bad checksum", input: func() []byte {
			b := gzipOf(t, []byte("hello"))
			b[len(b)-8] ^= 0xff
			return b
		}(), wantErr: errBadGzip},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &boundedGunzip{limit: limit}
			err := g.Reset(bytes.NewReader(tt.input))
			var out bytes.Buffer
			if err == nil {
				_, err = out.ReadFrom(g)
			}
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.LessOrEqual(t, out.Len(), limit+1, "never inflates more than one byte past the limit")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, out.Bytes())
		})
	}
}

// TestCompressedRequestsAreBounded sends gzip bombs and broken gzip over
// every protocol: each is refused with the size code or as the client's
// mistake, never inflated in full, never answered as a server fault.
func TestCompressedRequestsAreBounded(t *testing.T) {
	const limit = 64 << 10
	var routeSaw []byte
	open311 := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		switch {
		case isMaxBytes(err):
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		case IsBadEncoding(err):
			w.WriteHeader(http.StatusBadRequest)
		case err != nil:
			w.WriteHeader(http.StatusInternalServerError)
		default:
			routeSaw = body
			w.WriteHeader(http.StatusCreated)
		}
	})
	ts := startServer(t, Config{MaxRequestBytes: limit}, WithHTTPHandler("POST /open311/v2/requests.json", open311))
	big := bomb(t, 64<<20)
	require.Less(t, len(big), limit, "the bomb itself fits the limit; only inflated it does not")
	fine := gzipOf(t, []byte(`{"text":"hej"}`))
	notGzip := []byte(`{"text":"hej"}`)

	post := func(t *testing.T, path, contentType string, body []byte, header http.Header) (int, http.Header, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, ts.baseURL+path, bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", contentType)
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := httpClient(t, false).Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, resp.Header, b
	}
	gz := http.Header{"Content-Encoding": {"gzip"}}
	gzConnect := http.Header{"Content-Encoding": {"gzip"}, "Connect-Protocol-Version": {"1"}}

	t.Run("REST", func(t *testing.T) {
		code, _, body := post(t, "/v1/echo", "application/json", fine, gz)
		require.Equal(t, http.StatusOK, code, "%s", body)
		require.Contains(t, string(body), "hej")
		code, _, body = post(t, "/v1/echo", "application/json", big, gz)
		require.Equal(t, http.StatusRequestEntityTooLarge, code, "%s", body)
		require.Contains(t, string(body), `"code":8`)
		code, _, _ = post(t, "/v1/echo", "application/json", notGzip, gz)
		require.Equal(t, http.StatusBadRequest, code)
		code, _, _ = post(t, "/v1/echo", "application/json", fine, http.Header{"Content-Encoding": {"br"}})
		require.Equal(t, http.StatusUnsupportedMediaType, code)
	})
	t.Run("Connect unary JSON", func(t *testing.T) {
		path := "/grpc.testing.TestService/UnaryCall"
		fine := gzipOf(t, []byte(`{"payload":{"body":"aGVq"}}`))
		code, _, body := post(t, path, "application/json", fine, gzConnect)
		require.Equal(t, http.StatusOK, code, "%s", body)
		code, _, body = post(t, path, "application/json", big, gzConnect)
		require.Equal(t, http.StatusTooManyRequests, code, "Connect maps resource_exhausted to 429: %s", body)
		require.Contains(t, string(body), "resource_exhausted")
		code, _, body = post(t, path, "application/json", notGzip, gzConnect)
		require.Equal(t, http.StatusBadRequest, code, "%s", body)
		require.Contains(t, string(body), "invalid_argument")
	})
	t.Run("gRPC-web compressed envelope", func(t *testing.T) {
		envelope := func(flags byte, msg []byte) []byte {
			out := make([]byte, 5, 5+len(msg))
			out[0] = flags
			binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
			return append(out, msg...)
		}
		hdr := http.Header{"Grpc-Encoding": {"gzip"}}
		path := "/grpc.testing.TestService/UnaryCall"
		// A protobuf SimpleRequest whose payload body is 64 MiB of zeros,
		// compressed: field 3 (payload), field 3 (body).
		inner := make([]byte, 64<<20)
		msg := append(append([]byte{0x1a}, binary.AppendUvarint(nil, uint64(len(inner)+5))...), append(append([]byte{0x1a}, binary.AppendUvarint(nil, uint64(len(inner)))...), inner...)...)
		code, h, _ := post(t, path, "application/grpc-web+proto", envelope(1, gzipOf(t, msg)), hdr)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "8", h.Get("Grpc-Status"), "resource_exhausted")
		code, h, _ = post(t, path, "application/grpc-web+proto", envelope(1, []byte("not gzip at all")), hdr)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "3", h.Get("Grpc-Status"), "invalid_argument")
		code, h, _ = post(t, path, "application/grpc-web+proto", envelope(0, []byte("\xff\xff\xff not protobuf")), nil)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "3", h.Get("Grpc-Status"), "a message that does not parse is invalid_argument, not grpc-go's internal")
		code, h, _ = post(t, path, "application/grpc-web+proto", []byte{0, 0, 0}, nil)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "3", h.Get("Grpc-Status"), "an envelope cut short is invalid_argument")
		code, _, body := post(t, path, "application/grpc-web+proto", envelope(0, []byte{0x1a, 0x02, 0x1a, 0x00}), nil)
		require.Equal(t, http.StatusOK, code)
		require.Contains(t, strings.ToLower(string(body)), "grpc-status: 0", "a valid message goes through")
	})
	t.Run("connect-go with gzip", func(t *testing.T) {
		for _, p := range browserProtocols() {
			t.Run(p.name, func(t *testing.T) {
				c := connect.NewClient[testpb.SimpleRequest, testpb.SimpleResponse](
					httpClient(t, p.h2c), ts.baseURL+"/grpc.testing.TestService/UnaryCall",
					append(p.opts, connect.WithSendGzip())...)
				_, err := c.CallUnary(context.Background(), connect.NewRequest(payload("hej")))
				require.NoError(t, err)
				_, err = c.CallUnary(context.Background(), connect.NewRequest(payload(strings.Repeat("a", 4*limit))))
				require.Equal(t, connect.CodeResourceExhausted, connect.CodeOf(err), "%v", err)
			})
		}
	})
	t.Run("native gRPC with gzip", func(t *testing.T) {
		client := testpb.NewTestServiceClient(grpcConn(t, ts.addr))
		_, err := client.UnaryCall(context.Background(), payload("hej"), grpc.UseCompressor(grpcgzip.Name))
		require.NoError(t, err)
		_, err = client.UnaryCall(context.Background(), payload(strings.Repeat("a", 16<<20)), grpc.UseCompressor(grpcgzip.Name))
		require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	})
	t.Run("plain HTTP route", func(t *testing.T) {
		code, _, _ := post(t, "/open311/v2/requests.json", "application/json", fine, gz)
		require.Equal(t, http.StatusCreated, code)
		require.Equal(t, `{"text":"hej"}`, string(routeSaw), "the route sees the inflated body")
		code, _, _ = post(t, "/open311/v2/requests.json", "application/json", big, gz)
		require.Equal(t, http.StatusRequestEntityTooLarge, code)
		code, _, _ = post(t, "/open311/v2/requests.json", "application/json", notGzip, gz)
		require.Equal(t, http.StatusBadRequest, code)
		code, _, _ = post(t, "/open311/v2/requests.json", "application/json", fine, http.Header{"Content-Encoding": {"br"}})
		require.Equal(t, http.StatusUnsupportedMediaType, code)
	})
	require.Empty(t, logLines(ts.logs.String(), `"level":"ERROR"`), "client mistakes are not server faults")
	require.NotEmpty(t, logLines(ts.logs.String(), "request refused before reaching a handler", `"level":"WARN"`, `"http.status":413`),
		"a refused request is logged")
}

// TestClientMistakesAreInvalidArgument sends JSON the message cannot hold
// over REST and Connect: each is 400/invalid_argument, and the log shows
// neither the body nor a server fault.
func TestClientMistakesAreInvalidArgument(t *testing.T) {
	ts := startServer(t, Config{})
	const marker = "MARKER-7f3a"
	// Each mistake for the REST echo route and the Connect path of
	// TestService (field responseSize is an int32, payload a message).
	bodies := map[string][2]string{
		"cut short":       {`{"text":`, `{"payload":`},
		"deep nesting":    {`{"text":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`, `{"payload":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`},
		"not UTF-8":       {"{\"text\":\"" + marker + "\xff\xfe\"}", "{\"payload\":{\"body\":\"" + marker + "\xff\"}}"},
		"number too big":  {`{"text":` + strings.Repeat("9", 400) + `}`, `{"responseSize":` + strings.Repeat("9", 40) + `}`},
		"wrong type":      {`{"text":{"` + marker + `":1}}`, `{"responseSize":"` + marker + `"}`},
		"not JSON at all": {marker + "<xml/>", marker + "<xml/>"},
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			for i, path := range []string{"/v1/echo", "/grpc.testing.TestService/UnaryCall"} {
				req, err := http.NewRequest(http.MethodPost, ts.baseURL+path, strings.NewReader(body[i]))
				require.NoError(t, err)
				req.Header.Set("Content-Type", "application/json")
				if i == 1 {
					req.Header.Set("Connect-Protocol-Version", "1")
				}
				resp, err := httpClient(t, false).Do(req)
				require.NoError(t, err)
				b, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				_ = resp.Body.Close()
				require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: %s", path, b)
				require.NotContains(t, string(b), marker, "the answer does not repeat the input")
			}
		})
	}
	t.Run("Connect protobuf that does not parse", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, ts.baseURL+"/grpc.testing.TestService/UnaryCall", strings.NewReader("\xff\xff\xff"+marker))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/proto")
		req.Header.Set("Connect-Protocol-Version", "1")
		resp, err := httpClient(t, false).Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})
	t.Run("empty JSON body is an empty message", func(t *testing.T) {
		resp, err := httpClient(t, false).Post(ts.baseURL+"/v1/echo", "application/json", http.NoBody)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "text is required, so validation refuses it")
	})
	t.Run("URL not UTF-8", func(t *testing.T) {
		resp, err := httpClient(t, false).Get(ts.baseURL + "/v1/echo?text=%FF" + marker)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})
	logs := ts.logs.String()
	require.NotContains(t, logs, marker)
	require.Empty(t, logLines(logs, `"level":"ERROR"`))
	// A refusal is logged at WARN, by the one level policy (Level).
	require.NotEmpty(t, logLines(logs, "request refused before reaching a handler", `"level":"WARN"`, `"http.status":400`))
	require.False(t, errors.Is(nil, errBadGzip))
}
