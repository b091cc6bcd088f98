package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// writeCert writes a self-signed certificate for 127.0.0.1 valid from
// notBefore to notAfter, and its key, into dir.
func writeCert(t *testing.T, dir string, notBefore, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "kontakt test"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile
}

// TestTLSMultiplexesStreams is the browser's case: over HTTP/1.1 a page
// gets six connections, and six open server streams stall every other
// call. Over TLS the port speaks HTTP/2, and a client held to ONE
// connection keeps eight gRPC-web server streams open and still gets
// its other calls answered, all on that connection.
func TestTLSMultiplexesStreams(t *testing.T) {
	certFile, keyFile := writeCert(t, t.TempDir(), time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	ts := startServer(t, Config{TLS: TLSConfig{CertFile: certFile, KeyFile: keyFile}})

	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ts.roots},
		ForceAttemptHTTP2: true,
		MaxConnsPerHost:   1,
	}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	var (
		mu     sync.Mutex
		conns  = map[net.Conn]bool{}
		protos = map[string]bool{}
	)
	traced := func(ctx context.Context) context.Context {
		return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			mu.Lock()
			defer mu.Unlock()
			conns[info.Conn] = true
			if tc, ok := info.Conn.(*tls.Conn); ok {
				protos[tc.ConnectionState().NegotiatedProtocol] = true
			}
		}})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watch := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](
		client, ts.baseURL+"/grpc.health.v1.Health/Watch", connect.WithGRPCWeb())
	const streams = 8
	for i := range streams {
		stream, err := watch.CallServerStream(traced(ctx), connect.NewRequest(&healthpb.HealthCheckRequest{}))
		require.NoError(t, err, "stream %d", i)
		t.Cleanup(func() { _ = stream.Close() })
		require.True(t, stream.Receive(), "stream %d: %v", i, stream.Err())
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, stream.Msg().GetStatus())
	}

	check := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](
		client, ts.baseURL+"/grpc.health.v1.Health/Check", connect.WithGRPCWeb())
	callCtx, callCancel := context.WithTimeout(traced(ctx), 5*time.Second)
	defer callCancel()
	resp, err := check.CallUnary(callCtx, connect.NewRequest(&healthpb.HealthCheckRequest{}))
	require.NoError(t, err, "a call beside %d open streams", streams)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.Msg.GetStatus())

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, conns, 1, "every stream and the call on one connection")
	require.Equal(t, map[string]bool{"h2": true}, protos, "HTTP/2 by ALPN")
}

// TestTLSServesEveryProtocol: native gRPC (grpc-go's transport, through
// the splitter) and HTTP/1.1 clients are served on the TLS port too.
func TestTLSServesEveryProtocol(t *testing.T) {
	certFile, keyFile := writeCert(t, t.TempDir(), time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	ts := startServer(t, Config{TLS: TLSConfig{CertFile: certFile, KeyFile: keyFile}})

	resp, err := healthpb.NewHealthClient(ts.grpcConn(t)).Check(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err, "native gRPC over TLS")
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.roots, NextProtos: []string{"http/1.1"}}}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	t.Cleanup(tr.CloseIdleConnections)
	c := connect.NewClient[healthpb.HealthCheckRequest, healthpb.HealthCheckResponse](
		&http.Client{Transport: tr}, ts.baseURL+"/grpc.health.v1.Health/Check")
	cresp, err := c.CallUnary(context.Background(), connect.NewRequest(&healthpb.HealthCheckRequest{}))
	require.NoError(t, err, "Connect over HTTP/1.1 and TLS")
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, cresp.Msg.GetStatus())

	plain, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + ts.addr + "/grpc.health.v1.Health/Check")
	if err == nil {
		_ = plain.Body.Close()
	}
	require.Error(t, err, "a cleartext request to the TLS port is not served")
}

func TestTLSRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	expiredCert, expiredKey := writeCert(t, dir, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	otherDir := t.TempDir()
	_, otherKey := writeCert(t, otherDir, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	tests := []struct {
		name string
		tls  TLSConfig
		want string
	}{
		{name: "certificate without key", tls: TLSConfig{CertFile: expiredCert}, want: "both the certificate and the key file"},
		{name: "missing file", tls: TLSConfig{CertFile: filepath.Join(dir, "none.pem"), KeyFile: expiredKey}, want: "none.pem"},
		{name: "key of another certificate", tls: TLSConfig{CertFile: expiredCert, KeyFile: otherKey}, want: "private key does not match public key"},
		{name: "expired", tls: TLSConfig{CertFile: expiredCert, KeyFile: expiredKey}, want: "expired on"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{TLS: tt.tls}, discardLogger())
			require.ErrorContains(t, err, tt.want)
		})
	}
}
