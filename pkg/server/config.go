package server

import (
	"errors"
	"fmt"
	"math"
	"net"
	"time"
)

// Default values used by DefaultConfig and by New for zero fields. They bind
// to loopback so that a service started without configuration is never
// reachable from the network by accident.
const (
	DefaultListenAddr      = "127.0.0.1:8080"
	DefaultMetricsAddr     = "127.0.0.1:8081"
	DefaultMaxRequestBytes = 4 << 20
	DefaultShutdownTimeout = 15 * time.Second
	defaultServiceName     = "kontakt"
)

// Config is everything an operator can change about how a kontakt service
// serves. It is plain data so that the binary can fill it from flags or the
// environment without this package knowing about either.
type Config struct {
	// ListenAddr is the single host:port on which gRPC, gRPC-web, Connect,
	// REST/JSON and the extra HTTP routes are served. Empty means
	// DefaultListenAddr. Port 0 picks a free port (see Server.Addr).
	ListenAddr string

	// MetricsAddr is where /metrics is served, on its own listener so that
	// the scrape endpoint need not be exposed where the API is. Empty turns
	// the endpoint off; DefaultConfig sets it to DefaultMetricsAddr.
	MetricsAddr string

	// AllowedOrigins is the CORS allow-list of browser origins, such as
	// "https://kontakt.example.se". Empty means no browser origin may call
	// the API cross-origin. A bare "*" is refused because the API carries
	// personal data and must never be open to every web page.
	AllowedOrigins []string

	// MaxRequestBytes caps the size of one request message (gRPC) or one
	// request body (gRPC-web, Connect, REST, extra HTTP routes), so that a
	// client cannot make the server buffer arbitrary amounts of memory.
	// Zero means DefaultMaxRequestBytes. The same cap applies to responses
	// that have to be transcoded for gRPC-web, Connect or REST clients,
	// because the transcoder has a single buffer limit.
	MaxRequestBytes int

	// ShutdownTimeout bounds how long a graceful shutdown waits for
	// in-flight calls before cutting them off. Zero means
	// DefaultShutdownTimeout.
	ShutdownTimeout time.Duration

	// TLS serves the API port over TLS (HTTP/2 and HTTP/1.1 by ALPN)
	// when its files are set; else the port speaks cleartext.
	TLS TLSConfig

	// Tracing configures OpenTelemetry export. Tracing is off unless
	// Tracing.OTLPEndpoint is set.
	Tracing TracingConfig
}

// TLSConfig names the API port's certificate. Both empty: cleartext.
type TLSConfig struct {
	// CertFile is the PEM certificate chain, leaf first.
	CertFile string
	// KeyFile is the PEM private key of the leaf.
	KeyFile string
}

// TracingConfig says where spans go. It is separate from Config so that an
// empty value plainly means "no tracing".
type TracingConfig struct {
	// OTLPEndpoint is the OTLP/gRPC collector, either host:port or a URL
	// such as "http://otel-collector:4317". Empty disables tracing.
	OTLPEndpoint string
	// ServiceName is reported as the service.name resource attribute.
	// Empty means "kontakt".
	ServiceName string
	// Insecure sends spans without TLS, for a collector on the same host or
	// inside a cluster network.
	Insecure bool
}

// DefaultConfig returns the configuration a service gets when the operator
// changes nothing. The binary should start from it so that MetricsAddr has
// its default; New cannot tell an intentionally empty MetricsAddr (off) from
// an unset one.
func DefaultConfig() Config {
	return Config{
		ListenAddr:      DefaultListenAddr,
		MetricsAddr:     DefaultMetricsAddr,
		MaxRequestBytes: DefaultMaxRequestBytes,
		ShutdownTimeout: DefaultShutdownTimeout,
	}
}

// withDefaults fills zero fields and rejects values that would make the
// server unsafe or unable to start, so that mistakes surface in New rather
// than at the first request.
func (c Config) withDefaults() (Config, error) {
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Tracing.ServiceName == "" {
		c.Tracing.ServiceName = defaultServiceName
	}
	c.AllowedOrigins = append([]string(nil), c.AllowedOrigins...)

	var errs []error
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		errs = append(errs, fmt.Errorf("listen address %q: %w", c.ListenAddr, err))
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("metrics address %q: %w", c.MetricsAddr, err))
		}
	}
	if c.MaxRequestBytes < 0 || int64(c.MaxRequestBytes) > math.MaxUint32 {
		errs = append(errs, fmt.Errorf("max request bytes %d: must be between 1 and %d", c.MaxRequestBytes, uint32(math.MaxUint32)))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("shutdown timeout %s: must not be negative", c.ShutdownTimeout))
	}
	for _, o := range c.AllowedOrigins {
		if err := CheckOrigin(o); err != nil {
			errs = append(errs, fmt.Errorf("allowed origins: %w", err))
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("TLS: give both the certificate and the key file, or neither"))
	} else if c.TLS.CertFile != "" {
		if err := CheckCertificate(c.TLS.CertFile, c.TLS.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("TLS: %w", err))
		}
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("server: invalid config: %w", errors.Join(errs...))
	}
	return c, nil
}
