package e2e

// Helpers for the edge tests (size limits, client mistakes, rate limits,
// the HTTP fuzz): raw HTTP calls in each protocol's wire form, the server's
// peak memory, and checks on its log.

import (
	"bytes"
	"context"
	binpkg "encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// edgePeakRSS returns the kontakt process's peak resident set (VmHWM) in bytes.
func (k *Kontakt) edgePeakRSS(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", k.cmd.Process.Pid))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	require.NotNil(t, m, "VmHWM in /proc/<pid>/status")
	kb, err := strconv.ParseInt(string(m[1]), 10, 64)
	require.NoError(t, err)
	return kb << 10
}

// edgeRequireHealthy fails unless the server still answers its health check.
func (k *Kontakt) edgeRequireHealthy(t *testing.T) {
	t.Helper()
	select {
	case err := <-k.done:
		k.done <- err
		t.Fatalf("kontakt exited: %v", err)
	default:
	}
	resp, err := http.Get("http://" + k.Addr + "/open311/v2/services.json")
	require.NoError(t, err, "server still answers")
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, k.waitServing(t))
}

// edgeErrorLines returns the log lines at ERROR.
func edgeErrorLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

// edgeClient is an HTTP client for requests the server may refuse before
// reading their whole body. It speaks cleartext HTTP/2, where a server
// that answers early ends that one stream and the client still gets the
// answer; over HTTP/1.1 the server must close the connection under a
// client that is still writing, and the client may see only the reset.
// It gives up after a minute, long after any answer that counts as cheap.
func edgeClient() *http.Client {
	tr := &http.Transport{DisableCompression: true}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: time.Minute, Transport: tr}
}

// edgeCall is one HTTP request and what came back.
type edgeCall struct {
	method, path string
	header       http.Header
	body         []byte
}

type edgeAnswer struct {
	status   int
	header   http.Header
	trailer  http.Header
	body     []byte
	duration time.Duration
}

// grpcStatus is the gRPC status of a gRPC-web answer: from the headers
// (trailers-only) or from the trailer frame in the body; "" if none.
func (a edgeAnswer) grpcStatus() string {
	if s := a.header.Get("Grpc-Status"); s != "" {
		return s
	}
	b := a.body
	for len(b) >= 5 {
		n := int(binpkg.BigEndian.Uint32(b[1:5]))
		if len(b) < 5+n {
			break
		}
		if b[0]&0x80 != 0 {
			for _, line := range strings.Split(string(b[5:5+n]), "\r\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "grpc-status") {
					return strings.TrimSpace(v)
				}
			}
		}
		b = b[5+n:]
	}
	return ""
}

func (k *Kontakt) edgeDo(t *testing.T, c *http.Client, call edgeCall) edgeAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, call.method, "http://"+k.Addr+call.path, bytes.NewReader(call.body))
	require.NoError(t, err)
	if call.body == nil {
		req.Body = http.NoBody
	}
	for h, vs := range call.header {
		req.Header[h] = vs
	}
	start := time.Now()
	resp, err := c.Do(req)
	require.NoError(t, err, "%s %s", call.method, call.path)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return edgeAnswer{status: resp.StatusCode, header: resp.Header, trailer: resp.Trailer, body: body, duration: time.Since(start)}
}

// edgeEnvelope frames one message as gRPC-web and Connect streaming do.
func edgeEnvelope(compressed bool, msg []byte) []byte {
	out := make([]byte, 5, 5+len(msg))
	if compressed {
		out[0] = 1
	}
	binpkg.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

// edgeHeader builds an http.Header from pairs.
func edgeHeader(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}
