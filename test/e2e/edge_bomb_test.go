package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// bombInflated is how far each bomb inflates: 200 MiB, fifty times the
// default limits.max_request_bytes.
const bombInflated = 200 << 20

// bombPeakLimit is the most the server's peak resident memory may reach
// while it refuses the bombs. It idles near 60 MB; inflating one bomb in
// full takes it past 1 GB.
const bombPeakLimit = 300 << 20

// bombAnswerLimit is far above what refusing a bomb takes (inflating at
// most 4 MiB): only a server that inflates in full comes near it.
const bombAnswerLimit = 10 * time.Second

// jsonBomb is gzip that inflates to a JSON form submission whose
// idempotency key is bombInflated bytes long.
func jsonBomb(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	require.NoError(t, err)
	_, err = zw.Write([]byte(`{"idempotencyKey":"`))
	require.NoError(t, err)
	chunk := bytes.Repeat([]byte("a"), 1<<20)
	for range bombInflated >> 20 {
		_, err = zw.Write(chunk)
		require.NoError(t, err)
	}
	_, err = zw.Write([]byte(`","case":{"type":"CASE_TYPE_FRAGA","category":"x","subject":"s"}}`))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// rawCodec sends bytes as they are, so grpc-go compresses exactly the
// bomb's payload.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

// TestEdgeDecompressionBomb sends, with and without a token, a gzip body of
// about 200 KB that inflates to 200 MiB over every protocol: REST, Connect
// unary JSON, gRPC-web and Connect streaming with compressed envelopes,
// native gRPC and Open311. Each is refused with the size code, fast, and
// the server's peak memory stays far below one inflated bomb.
func TestEdgeDecompressionBomb(t *testing.T) {
	k := Start(t, Options{})
	form := k.Token(t, "e-tjanst-bomb", "form-client")
	agent := k.Token(t, "sara", "supervisor")
	gz := jsonBomb(t)
	t.Logf("bomb: %d bytes of gzip inflating to %d MiB", len(gz), bombInflated>>20)
	require.Less(t, len(gz), 1<<20, "the bomb itself is small")
	before := k.edgePeakRSS(t)

	type attempt struct {
		name  string
		call  edgeCall
		check func(t *testing.T, a edgeAnswer)
	}
	bearer := func(tok string) string {
		if tok == "" {
			return ""
		}
		return "Bearer " + tok
	}
	httpStatus := func(want int) func(t *testing.T, a edgeAnswer) {
		return func(t *testing.T, a edgeAnswer) {
			t.Helper()
			require.Equal(t, want, a.status, "%s", a.body)
		}
	}
	grpcWebStatus := func(want codes.Code) func(t *testing.T, a edgeAnswer) {
		return func(t *testing.T, a edgeAnswer) {
			t.Helper()
			require.Equal(t, strconv.Itoa(int(want)), a.grpcStatus(), "HTTP %d %q %s", a.status, a.header, a.body)
		}
	}
	connectEnd := func(want string) func(t *testing.T, a edgeAnswer) {
		return func(t *testing.T, a edgeAnswer) {
			t.Helper()
			require.Contains(t, string(a.body), `"code":"`+want+`"`, "HTTP %d %s", a.status, a.body)
		}
	}
	var attempts []attempt
	for _, tok := range []string{form, ""} {
		who := "with token"
		if tok == "" {
			who = "without token"
		}
		auth := bearer(tok)
		attempts = append(attempts,
			attempt{name: "REST " + who, call: edgeCall{method: http.MethodPost, path: "/v1/forms/cases",
				header: edgeHeader("Content-Type", "application/json", "Content-Encoding", "gzip", "Authorization", auth), body: gz},
				check: httpStatus(http.StatusRequestEntityTooLarge)},
			attempt{name: "Connect unary JSON " + who, call: edgeCall{method: http.MethodPost, path: "/kontakt.intake.v1.IntakeService/SubmitForm",
				header: edgeHeader("Content-Type", "application/json", "Content-Encoding", "gzip", "Connect-Protocol-Version", "1", "Authorization", auth), body: gz},
				check: func(t *testing.T, a edgeAnswer) {
					require.Equal(t, http.StatusTooManyRequests, a.status, "Connect's status for resource_exhausted: %s", a.body)
					require.Contains(t, string(a.body), "resource_exhausted")
				}},
			attempt{name: "gRPC-web compressed envelope " + who, call: edgeCall{method: http.MethodPost, path: "/kontakt.intake.v1.IntakeService/SubmitForm",
				header: edgeHeader("Content-Type", "application/grpc-web+json", "Grpc-Encoding", "gzip", "Authorization", auth), body: edgeEnvelope(true, gz)},
				check: grpcWebStatus(codes.ResourceExhausted)},
			attempt{name: "Open311 " + who, call: edgeCall{method: http.MethodPost, path: "/open311/v2/requests.json",
				header: edgeHeader("Content-Type", "application/json", "Content-Encoding", "gzip", "Authorization", auth), body: gz},
				check: httpStatus(http.StatusRequestEntityTooLarge)},
		)
	}
	// Connect streaming: the edge reads and inflates a server-streaming
	// method's one request message before anything else.
	for _, tok := range []string{agent, ""} {
		want, who := "resource_exhausted", "with token"
		if tok == "" {
			who = "without token"
		}
		attempts = append(attempts, attempt{name: "Connect streaming compressed envelope " + who,
			call: edgeCall{method: http.MethodPost, path: "/kontakt.routing.v1.RoutingService/WatchQueue",
				header: edgeHeader("Content-Type", "application/connect+json", "Connect-Content-Encoding", "gzip", "Authorization", bearer(tok)),
				body:   edgeEnvelope(true, gz)},
			check: connectEnd(want)})
	}

	client := edgeClient()
	for _, a := range attempts {
		t.Run(a.name, func(t *testing.T) {
			// Two at once, as an attacker would.
			var wg sync.WaitGroup
			answers := make([]edgeAnswer, 2)
			for i := range answers {
				wg.Go(func() {
					call := a.call
					if call.header.Get("Authorization") == "" {
						call.header = call.header.Clone()
						call.header.Del("Authorization")
					}
					answers[i] = k.edgeDo(t, client, call)
				})
			}
			wg.Wait()
			for _, ans := range answers {
				a.check(t, ans)
				t.Logf("answered in %s", ans.duration)
				require.Less(t, ans.duration, bombAnswerLimit, "refusing a bomb is cheap")
			}
		})
	}

	t.Run("native gRPC", func(t *testing.T) {
		// grpc-go compresses the 200 MiB itself (grpc-encoding: gzip);
		// grpc-go on the server inflates at most MaxRecvMsgSize+1 bytes.
		plain := make([]byte, bombInflated)
		conn, err := grpc.NewClient(k.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.UseCompressor(grpcgzip.Name)))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		for _, tok := range []string{form, ""} {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if tok != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
			}
			var out []byte
			start := time.Now()
			err := conn.Invoke(ctx, "/kontakt.intake.v1.IntakeService/SubmitForm", &plain, &out)
			cancel()
			require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
			t.Logf("native gRPC (token %v) answered in %s: %v", tok != "", time.Since(start), err)
		}
	})

	peak := k.edgePeakRSS(t)
	t.Logf("peak resident memory of kontakt: %d MB before the bombs, %d MB after", before>>20, peak>>20)
	require.Less(t, peak, int64(bombPeakLimit), "peak memory while refusing 200 MiB bombs")
	k.edgeRequireHealthy(t)
	require.Empty(t, edgeErrorLines(k.stderr.String()), "a bomb is the client's doing, not a server fault")
}
