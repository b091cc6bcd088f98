package server

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	server = <-accepted
	require.NotNil(t, server)
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

// headerBlock encodes a request's headers as a client's first block.
func headerBlock(t *testing.T, contentType string) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/kontakt.intake.v1.IntakeService/RegisterCase"},
		{Name: ":authority", Value: "localhost"}, {Name: "content-type", Value: contentType},
		{Name: "te", Value: "trailers"},
	} {
		require.NoError(t, enc.WriteField(f))
	}
	return b.Bytes()
}

func TestSniffDecidesByTheFirstRequest(t *testing.T) {
	type step func(t *testing.T, fr *http2.Framer)
	settings := func(t *testing.T, fr *http2.Framer) {
		require.NoError(t, fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}))
	}
	ack := func(t *testing.T, fr *http2.Framer) { require.NoError(t, fr.WriteSettingsAck()) }
	window := func(t *testing.T, fr *http2.Framer) { require.NoError(t, fr.WriteWindowUpdate(0, 1<<16)) }
	headers := func(ct string) step {
		return func(t *testing.T, fr *http2.Framer) {
			require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(t, ct), EndHeaders: true}))
		}
	}
	paddedWithPriority := func(ct string) step {
		return func(t *testing.T, fr *http2.Framer) {
			require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(t, ct), EndHeaders: true,
				PadLength: 7, Priority: http2.PriorityParam{StreamDep: 0, Weight: 15}}))
		}
	}
	continued := func(ct string) step {
		return func(t *testing.T, fr *http2.Framer) {
			block := headerBlock(t, ct)
			require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:5]}))
			require.NoError(t, fr.WriteContinuation(1, false, block[5:12]))
			require.NoError(t, fr.WriteContinuation(1, true, block[12:]))
		}
	}
	// A client that does not wait for the server's SETTINGS (Go's h2c
	// client) may send request bodies, more than the splitter buffers,
	// and another request before it acknowledges.
	data := func(n int) step {
		return func(t *testing.T, fr *http2.Framer) {
			for ; n > 0; n -= 16384 {
				require.NoError(t, fr.WriteData(1, false, make([]byte, min(n, 16384))))
			}
		}
	}
	headers3 := func(t *testing.T, fr *http2.Framer) {
		require.NoError(t, fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: headerBlock(t, "application/json"), EndHeaders: true}))
	}
	tests := []struct {
		name   string
		steps  []step
		native bool
	}{
		{"gRPC client waits for settings", []step{settings, ack, window, headers("application/grpc")}, true},
		{"gRPC with the proto codec named", []step{settings, ack, headers("application/grpc+proto")}, true},
		{"request before the acknowledgement", []step{settings, headers("application/grpc"), window, ack}, true},
		{"padded headers with priority", []step{settings, ack, paddedWithPriority("application/grpc")}, true},
		{"headers in continuation frames", []step{settings, ack, continued("application/grpc")}, true},
		{"gRPC-web", []step{settings, ack, headers("application/grpc-web+proto")}, false},
		{"gRPC in JSON goes to the transcoder", []step{settings, ack, headers("application/grpc+json")}, false},
		{"Connect", []step{settings, headers("application/proto"), ack}, false},
		{"bodies before the acknowledgement", []step{settings, headers("application/json"), data(70 << 10), headers3, data(20 << 10), ack, window}, false},
		{"REST", []step{settings, ack, headers("application/json")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tcpPair(t)
			var sent bytes.Buffer
			var ackFrame []byte
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				// The client: preface, then its frames, recording what it
				// sends apart from the acknowledgement.
				w := io.MultiWriter(client, &sent)
				_, _ = io.WriteString(w, http2Preface)
				for _, s := range tt.steps {
					var one bytes.Buffer
					s(t, http2.NewFramer(&one, nil))
					if bytes.Equal(one.Bytes(), []byte{0, 0, 0, frameSettings, flagAck, 0, 0, 0, 0}) {
						ackFrame = one.Bytes()
						_, _ = client.Write(one.Bytes())
						continue
					}
					_, _ = w.Write(one.Bytes())
				}
			}()
			require.NoError(t, server.SetDeadline(time.Now().Add(10*time.Second)))
			native, replay, rest, acked, err := sniff(server)
			require.NoError(t, err)
			<-wrote
			require.Equal(t, tt.native, native)
			require.NotNil(t, ackFrame, "the test sent an acknowledgement")
			if !acked {
				rest = &ackStripper{r: rest}
			}
			got := make([]byte, sent.Len())
			_, err = io.ReadFull(io.MultiReader(bytes.NewReader(replay), rest), got)
			require.NoError(t, err)
			require.Equal(t, sent.Bytes(), got, "everything but the acknowledgement is handed over, in order")

			// The client was sent exactly one empty SETTINGS frame.
			fr := http2.NewFramer(nil, client)
			require.NoError(t, client.SetReadDeadline(time.Now().Add(5*time.Second)))
			f, err := fr.ReadFrame()
			require.NoError(t, err)
			sf, ok := f.(*http2.SettingsFrame)
			require.True(t, ok, "got %T", f)
			require.False(t, sf.IsAck())
			require.Zero(t, sf.NumSettings())
		})
	}
}

// TestConcurrentBodiesOverH2C is what Go's h2c client does with two
// requests at once on a new connection: both bodies start before it
// acknowledges the splitter's SETTINGS. The server must not see that
// acknowledgement (it answered with GOAWAY PROTOCOL_ERROR).
func TestConcurrentBodiesOverH2C(t *testing.T) {
	ts := startServer(t, Config{})
	for range 3 {
		client := httpClient(t, true)
		errs := make(chan error, 2)
		for range 2 {
			go func() {
				body := `{"text":"` + strings.Repeat("a", 200<<10) + `"}`
				resp, err := client.Post(ts.baseURL+"/v1/echo", "application/json", strings.NewReader(body))
				if err == nil {
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				errs <- err
			}()
		}
		require.NoError(t, <-errs)
		require.NoError(t, <-errs)
	}
}

func TestSniffHandsHTTP1OverAtOnce(t *testing.T) {
	client, server := tcpPair(t)
	_, err := io.WriteString(client, "GET /healthz HTTP/1.0\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, server.SetDeadline(time.Now().Add(10*time.Second)))
	native, replay, _, _, err := sniff(server)
	require.NoError(t, err)
	require.False(t, native)
	require.True(t, bytes.HasPrefix([]byte("GET /healthz HTTP/1.0\r\n\r\n"), replay), "what was read is handed over: %q", replay)
	require.NotEmpty(t, replay)
}

func TestSniffRefusesOversizeAndMalformedStarts(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
	}{
		{"frame above the initial maximum size", []byte{0x00, 0x40, 0x01, 0x0, 0, 0, 0, 0, 1}},
		{"padding longer than the headers", []byte{0, 0, 2, frameHeaders, flagPadded | flagEndHeaders, 0, 0, 0, 1, 9, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tcpPair(t)
			go func() {
				_, _ = io.WriteString(client, http2Preface)
				_, _ = client.Write(tt.frame)
				_, _ = client.Write([]byte{0, 0, 0, frameSettings, flagAck, 0, 0, 0, 0})
			}()
			require.NoError(t, server.SetDeadline(time.Now().Add(10*time.Second)))
			native, replay, _, _, err := sniff(server)
			require.NoError(t, err)
			require.False(t, native, "the HTTP server answers what cannot be read")
			require.True(t, bytes.HasPrefix(replay, []byte(http2Preface)))
		})
	}
}

// A client that connects and says nothing is closed after the header
// timeout, whichever protocol it might have spoken.
func TestSplitterClosesSilentClients(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := newSplitter(ln, 200*time.Millisecond, slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() { done <- s.run() }()
	t.Cleanup(func() {
		_ = ln.Close()
		require.ErrorIs(t, <-done, net.ErrClosed)
		_, err := s.grpc.Accept()
		require.ErrorIs(t, err, net.ErrClosed, "the queues close with the listener")
	})
	for _, start := range []string{"", http2Preface} {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		_, err = io.WriteString(c, start)
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, err = io.ReadAll(c) // the SETTINGS frame, if any, then EOF
		require.NoError(t, err, "closed by the splitter, not by the test's deadline")
		_ = c.Close()
	}
}
