package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// TLS on the API port.
//
// Browsers speak HTTP/2 only over TLS. Over cleartext they use HTTP/1.1,
// at most six connections to a host, and each open server stream
// (WatchQueue) holds one: with six watches open every other call of the
// page waits. Served over TLS, the port offers HTTP/2 by ALPN, and one
// connection carries every stream. The listener decrypts, and the
// splitter (split.go) sees the same bytes as on a cleartext port: native
// gRPC goes to grpc-go's transport, everything else to the HTTP server,
// which serves HTTP/2 on the decrypted connection as it serves cleartext
// HTTP/2.

// certCheckInterval is how often the certificate files are looked at
// for a renewal (a new modification time), at a handshake.
const certCheckInterval = time.Minute

// CheckCertificate loads certFile and keyFile and says, without quoting
// them, why they cannot serve: unreadable, not PEM, a key that is not the
// certificate's, or a certificate that has expired. The configuration
// and New both use it, so a bad file stops start-up naming the key.
func CheckCertificate(certFile, keyFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("certificate %s with key %s: %w", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("certificate %s: %w", certFile, err)
	}
	if time.Now().After(leaf.NotAfter) {
		return fmt.Errorf("certificate %s expired on %s", certFile, leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	return nil
}

// certFiles serves the certificate from its files and takes up a renewed
// one (a certificate manager writes new files every few weeks) without a
// restart: at a handshake, at most once per certCheckInterval, it looks
// at the files' modification times and loads them again when they
// changed. A pair that does not load (caught between the two writes) is
// logged and the one in use kept.
type certFiles struct {
	certFile, keyFile string
	logger            *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]time.Time
	checked time.Time
}

func newCertFiles(certFile, keyFile string, logger *slog.Logger) (*certFiles, error) {
	c := &certFiles{certFile: certFile, keyFile: keyFile, logger: logger}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

// load reads the pair; the caller holds mu or owns c.
func (c *certFiles) load() error {
	stamp, err := c.modTimes()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("certificate %s with key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert, c.stamp, c.checked = &cert, stamp, time.Now()
	return nil
}

func (c *certFiles) modTimes() ([2]time.Time, error) {
	var stamp [2]time.Time
	for i, name := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return stamp, err
		}
		stamp[i] = fi.ModTime()
	}
	return stamp, nil
}

// get is tls.Config.GetCertificate.
func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) < certCheckInterval {
		return c.cert, nil
	}
	c.checked = time.Now()
	stamp, err := c.modTimes()
	if err != nil || stamp == c.stamp {
		return c.cert, nil
	}
	if err := c.load(); err != nil {
		c.logger.Warn("TLS certificate files changed but do not load; serving the previous certificate", slog.String("error", err.Error()))
		return c.cert, nil
	}
	c.logger.Info("TLS certificate renewed from its files")
	return c.cert, nil
}

// newTLSConfig is the API port's TLS configuration: HTTP/2 first by ALPN
// (browsers, gRPC clients), HTTP/1.1 for the rest, TLS 1.2 at least.
func newTLSConfig(cfg TLSConfig, logger *slog.Logger) (*tls.Config, error) {
	if cfg.CertFile == "" {
		return nil, errors.New("server: TLS without a certificate")
	}
	files, err := newCertFiles(cfg.CertFile, cfg.KeyFile, logger)
	if err != nil {
		return nil, fmt.Errorf("server: TLS: %w", err)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: files.get,
	}, nil
}

// TLSConfig is the API port's TLS configuration for another listener of
// the process (the mail receiver's STARTTLS), so that every port serves
// the same certificate and takes up its renewal alike; nil when the API
// port is cleartext. It offers no ALPN protocols, which are the API's.
func (s *Server) TLSConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	c := s.tls.Clone()
	c.NextProtos = nil
	return c
}
