package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kontakt.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadDefaultsWithoutFile(t *testing.T) {
	cfg, err := Load("", envOf(nil))
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8080", cfg.Listen)
	require.Equal(t, "./data", cfg.DataDir)
	require.Equal(t, Development, cfg.Mode)
	require.Empty(t, cfg.CORS.AllowedOrigins, "no browser origin is allowed by default")
	require.Equal(t, filepath.Join("data", "dev-signing-key.pem"), filepath.Clean(cfg.DevKeyPath()))
}

func TestLoadFileAndEnvironment(t *testing.T) {
	p := writeFile(t, "listen: 127.0.0.1:9000\ncors:\n  allowed_origins: [\"https://agent.example.se\"]\nshutdown_timeout: 3s\n")
	cfg, err := Load(p, envOf(map[string]string{
		"KONTAKT_DATA_DIR":                 "/tmp/k",
		"KONTAKT_NATS_URL":                 "nats://127.0.0.1:4222",
		"KONTAKT_CORS_ALLOWED_ORIGINS":     "https://a.example.se, https://b.example.se",
		"KONTAKT_LIMITS_MAX_REQUEST_BYTES": "8192",
	}))
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:9000", cfg.Listen)
	require.Equal(t, "/tmp/k", cfg.DataDir)
	require.Equal(t, "nats://127.0.0.1:4222", cfg.NATS.URL)
	require.Equal(t, []string{"https://a.example.se", "https://b.example.se"}, cfg.CORS.AllowedOrigins)
	require.Equal(t, 8192, cfg.Limits.MaxRequestBytes)
	require.Equal(t, 3*time.Second, cfg.ShutdownTimeout)
}

func TestPublicSubmissionLimits(t *testing.T) {
	cfg, err := Load("", envOf(nil))
	require.NoError(t, err)
	require.True(t, cfg.Limits.PublicSubmissions.PerCredential.PerMinute > 0, "on by default per credential")
	require.True(t, cfg.Limits.PublicSubmissions.PerAddress.PerMinute > 0, "on by default per address")

	cfg, err = Load("", envOf(map[string]string{
		"KONTAKT_LIMITS_PUBLIC_SUBMISSIONS_PER_CREDENTIAL_PER_MINUTE": "0",
		"KONTAKT_LIMITS_PUBLIC_SUBMISSIONS_PER_ADDRESS_PER_MINUTE":    "30",
		"KONTAKT_LIMITS_PUBLIC_SUBMISSIONS_PER_ADDRESS_BURST":         "3",
		"KONTAKT_LIMITS_PUBLIC_SUBMISSIONS_TRUSTED_PROXIES":           "10.0.0.0/8, 192.0.2.7",
	}))
	require.NoError(t, err)
	require.Equal(t, PublicSubmissions{
		PerCredential:  RateLimit{PerMinute: 0, Burst: 100},
		PerAddress:     RateLimit{PerMinute: 30, Burst: 3},
		TrustedProxies: []string{"10.0.0.0/8", "192.0.2.7"},
	}, cfg.Limits.PublicSubmissions)
}

func TestLoadEmptyFileIsDefaults(t *testing.T) {
	cfg, err := Load(writeFile(t, ""), envOf(nil))
	require.NoError(t, err)
	require.Equal(t, Default().Listen, cfg.Listen)
}

func TestLoadErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		want string
	}{
		{"unknown key", "listne: 1.2.3.4:5\n", nil, "line 1: unknown key listne (did you mean listen?)"},
		{"unknown nested key", "limits:\n  max_request_byte: 5\n", nil, "line 2: unknown key limits.max_request_byte (did you mean max_request_bytes?)"},
		{"not a duration", "shutdown_timeout: soon\n", nil, `line 1: key shutdown_timeout: "soon" is not a duration (for example 15s, 5m or 2h)`},
		{"every problem at once", "listne: x\nshutdown_timeout: soon\n", nil, `line 1: unknown key listne (did you mean listen?); line 2: key shutdown_timeout: "soon"`},
		{"keys where a value belongs", "listen: {a: 1}\n", nil, "line 1: key listen: must be a single value"},
		{"a value where keys belong", "limits: 5\n", nil, "line 1: key limits: must hold keys (max_request_bytes"},
		{"list item key", "routing:\n  queues:\n    - name: a\n      membres: [x]\n", nil, "line 4: unknown key routing.queues[0].membres (did you mean members?)"},
		{"wrong type", "limits:\n  max_request_bytes: lots\n", nil, `line 2: key limits.max_request_bytes: "lots" is not a whole number`},
		{"bad mode", "mode: testing\n", nil, "config key mode"},
		{"bad listen", "listen: 8080\n", nil, "config key listen"},
		{"wildcard origin", "cors:\n  allowed_origins: ['*']\n", nil, "config key cors.allowed_origins[0]: a wildcard is not allowed"},
		{"origin with a trailing slash", "cors:\n  allowed_origins: ['https://a.example.se', 'http://localhost:5173/']\n", nil, `config key cors.allowed_origins[1]: "http://localhost:5173/" never matches: a browser sends its origin as "http://localhost:5173"`},
		{"TLS certificate without key", "tls:\n  cert_file: /etc/kontakt/cert.pem\n", nil, "config key tls.key_file: must be set with tls.cert_file"},
		{"TLS certificate that is not there", "tls:\n  cert_file: /nonexistent/cert.pem\n  key_file: /nonexistent/key.pem\n", nil, "config key tls.cert_file: certificate /nonexistent/cert.pem"},
		{"origin without a scheme", "cors:\n  allowed_origins: ['localhost:5173']\n", nil, "config key cors.allowed_origins[0]: \"localhost:5173\" is not an origin"},
		{"production without oidc", "mode: production\n", nil, "config key auth.oidc.issuer"},
		{"replicas without cluster", "nats:\n  replicas: 3\n", nil, "config key nats.replicas"},
		{"unknown event store", "event_store:\n  backend: postgres\n", nil, "config key event_store.backend"},
		{"esdb without url", "event_store:\n  backend: esdb\n", nil, "config key event_store.esdb_url"},
		{"negative sweep", "retention:\n  sweep_interval: -1s\n", nil, "config key retention.sweep_interval"},
		{"dev clock in production", "mode: production\nauth:\n  oidc: {issuer: https://id.example.se, audience: kontakt}\nretention:\n  dev_clock_offset: 24h\n", nil, "config key retention.dev_clock_offset"},
		{"journal inside data_dir in production", "mode: production\ndata_dir: /srv/kontakt\nauth:\n  oidc: {issuer: https://id.example.se, audience: kontakt}\nretention:\n  journal_dir: /srv/kontakt/journal\n", nil, "config key retention.journal_dir"},
		{"journal is data_dir in production", "mode: production\ndata_dir: /srv/kontakt\nauth:\n  oidc: {issuer: https://id.example.se, audience: kontakt}\nretention:\n  journal_dir: /srv/kontakt/\n", nil, "config key retention.journal_dir"},
		{"JWKS refresh below a second", "auth:\n  oidc: {jwks_refresh_interval: 10ms}\n", nil, "config key auth.oidc.jwks_refresh_interval"},
		{"JWKS minimum above the interval", "auth:\n  oidc: {jwks_refresh_interval: 1m, jwks_min_refresh_interval: 2m}\n", nil, "config key auth.oidc.jwks_min_refresh_interval"},
		{"duplicate queue", "routing:\n  queues: [{name: a}, {name: a}]\n", nil, "config key routing.queues[1].name"},
		{"env not a number", "", map[string]string{"KONTAKT_LIMITS_MAX_REQUEST_BYTES": "x"}, "KONTAKT_LIMITS_MAX_REQUEST_BYTES (config key limits.max_request_bytes)"},
		{"env bad duration", "", map[string]string{"KONTAKT_SHUTDOWN_TIMEOUT": "soon"}, "KONTAKT_SHUTDOWN_TIMEOUT"},
		{"env on a list of structs", "", map[string]string{"KONTAKT_ROUTING_QUEUES": "a"}, "cannot be set from the environment"},
		{"no categories", "categories: []\nintake:\n  open311_services: []\n", nil, "config key categories: at least one category"},
		{"bad category code", "categories: [{code: Gata, title: Gata}]\nintake:\n  open311_services: []\n", nil, "config key categories[0].code"},
		{"duplicate category", "categories: [{code: gata, title: Gata}, {code: gata, title: Gator}]\nintake:\n  open311_services: []\n", nil, "config key categories[1].code"},
		{"category without title", "categories: [{code: gata}]\nintake:\n  open311_services: []\n", nil, "config key categories[0].title"},
		{"category of an unknown type", "categories: [{code: gata, title: Gata, types: [fraga, arende]}]\nintake:\n  open311_services: []\n", nil, "config key categories[0].types[1]"},
		{"open311 service that is no category", "categories: [{code: gata, title: Gata}]\nintake:\n  open311_services: [{code: gata}, {code: lampa}]\n", nil, "config key intake.open311_services[1].code: \"lampa\" is not one of the categories"},
		{"open311 service of a category without fault reports", "categories: [{code: skola, title: Skola, types: [fraga]}]\nintake:\n  open311_services: [{code: skola}]\n", nil, "config key intake.open311_services[0].code: category \"skola\" is not for fault reports"},
		{"default open311 services need their categories", "categories: [{code: skola, title: Skola}]\n", nil, "config key intake.open311_services[0].code"},
		{"negative rate", "limits:\n  public_submissions:\n    per_address: {per_minute: -1, burst: 5}\n", nil, "config key limits.public_submissions.per_address.per_minute"},
		{"rate without burst", "limits:\n  public_submissions:\n    per_credential: {per_minute: 60, burst: 0}\n", nil, "config key limits.public_submissions.per_credential.burst"},
		{"mail receiver without addresses", "mail:\n  inbound: {listen: '127.0.0.1:2525'}\n", nil, "config key mail.inbound.addresses: at least one address"},
		{"mail address with a display name", "mail:\n  inbound:\n    listen: '127.0.0.1:2525'\n    addresses: [{address: 'Kontakt <kontakt@kommun.se>', category: ovrigt}]\n", nil, "config key mail.inbound.addresses[0].address: must be a plain e-mail address"},
		{"mail address twice", "mail:\n  inbound:\n    listen: '127.0.0.1:2525'\n    addresses: [{address: kontakt@kommun.se, category: ovrigt}, {address: KONTAKT@kommun.se, category: ovrigt}]\n", nil, "config key mail.inbound.addresses[1].address"},
		{"mail address of an unknown category", "mail:\n  inbound:\n    listen: '127.0.0.1:2525'\n    addresses: [{address: kontakt@kommun.se, category: lampor}]\n", nil, "config key mail.inbound.addresses[0].category"},
		{"mail address of a category not for its type", "mail:\n  inbound:\n    listen: '127.0.0.1:2525'\n    addresses: [{address: kontakt@kommun.se, category: bemotande}]\n", nil, "config key mail.inbound.addresses[0].category: category \"bemotande\" is not for case type fraga"},
		{"mail address for fault reports", "mail:\n  inbound:\n    listen: '127.0.0.1:2525'\n    addresses: [{address: fel@kommun.se, type: felanmalan, category: gatubelysning}]\n", nil, "config key mail.inbound.addresses[0].type"},
		{"mail STARTTLS without a certificate", "mail:\n  inbound:\n    listen: '127.0.0.1:2525'\n    starttls: true\n    addresses: [{address: kontakt@kommun.se, category: ovrigt}]\n", nil, "config key mail.inbound.starttls"},
		{"mail message size too small", "mail:\n  inbound:\n    listen: '127.0.0.1:2525'\n    max_message_bytes: 10\n    addresses: [{address: kontakt@kommun.se, category: ovrigt}]\n", nil, "config key mail.inbound.max_message_bytes"},
		{"outbound without a sender", "mail:\n  outbound: {host: smtp.kommun.se}\n", nil, "config key mail.outbound.from"},
		{"outbound of unknown security", "mail:\n  outbound: {host: smtp.kommun.se, from: kontakt@kommun.se, security: ssl}\n", nil, "config key mail.outbound.security"},
		{"outbound in clear in production", "mode: production\nauth:\n  oidc: {issuer: https://id.example.se, audience: kontakt}\nmail:\n  outbound: {host: smtp.kommun.se, from: kontakt@kommun.se, security: none}\n", nil, "config key mail.outbound.security: none sends citizens' mail in clear"},
		{"outbound password in clear", "mail:\n  outbound: {host: smtp.kommun.se, from: kontakt@kommun.se, security: none, username: kc}\n", nil, "config key mail.outbound.username"},
		{"outbound template that does not parse", "mail:\n  outbound:\n    host: smtp.kommun.se\n    from: kontakt@kommun.se\n    acknowledgements:\n      synpunkt: {subject: 'Ärende {{.CaseNumber'}\n", nil, "config key mail.outbound.acknowledgements.synpunkt.subject"},
		{"outbound template naming what is not there", "mail:\n  outbound:\n    host: smtp.kommun.se\n    from: kontakt@kommun.se\n    acknowledgements:\n      brev: {body: 'Hej {{.Name}}'}\n", nil, "config key mail.outbound.acknowledgements.brev.body"},
		{"bad proxy", "limits:\n  public_submissions:\n    trusted_proxies: [gateway]\n", nil, "config key limits.public_submissions.trusted_proxies[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeFile(t, tt.file), envOf(tt.env))
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), envOf(nil))
	require.ErrorContains(t, err, "no such file or directory")
	require.ErrorContains(t, err, "nope.yaml")
}

func TestDefaultCategoriesCoverTheDefaultOpen311Services(t *testing.T) {
	cfg := Default()
	require.NoError(t, cfg.Validate())
	require.NotEmpty(t, cfg.Categories)
	for _, svc := range cfg.Intake.Open311Services {
		cat, ok := cfg.Category(svc.Code)
		require.True(t, ok, svc.Code)
		types := cat.CaseTypes()
		require.True(t, len(types) == 0 || slices.Contains(types, casev1.CaseType_CASE_TYPE_FELANMALAN), svc.Code)
	}
}

func TestCategoriesFromAFile(t *testing.T) {
	p := writeFile(t, "categories:\n  - {code: gata, title: Gata och väg, types: [felanmälan, fråga]}\n  - {code: skola, title: Skola}\nintake:\n  open311_services: [{code: gata}]\n")
	cfg, err := Load(p, envOf(nil))
	require.NoError(t, err)
	require.Equal(t, []string{"gata", "skola"}, cfg.CategoryCodes(), "the file's list replaces the default one")
	cat, ok := cfg.Category("gata")
	require.True(t, ok)
	require.Equal(t, []casev1.CaseType{casev1.CaseType_CASE_TYPE_FELANMALAN, casev1.CaseType_CASE_TYPE_FRAGA}, cat.CaseTypes())
	skola, _ := cfg.Category("skola")
	require.Empty(t, skola.CaseTypes(), "no types: every type")
}

func TestJournalPath(t *testing.T) {
	prod := func(journal string) Config {
		c := Default()
		c.Mode, c.DataDir, c.Retention.JournalDir = Production, "/srv/kontakt/data", journal
		c.Auth.OIDC.Issuer, c.Auth.OIDC.Audience = "https://id.example.se", "kontakt"
		return c
	}
	dev := Default()
	dev.DataDir = "/tmp/kontakt-data"
	tests := []struct {
		name    string
		cfg     Config
		dir     string
		inside  bool
		wantErr error
	}{
		{"development default", dev, "/tmp/kontakt-data/journal", true, nil},
		{"production outside", prod("/srv/journal"), "/srv/journal", false, nil},
		{"production beside data_dir with a common prefix", prod("/srv/kontakt/data-journal"), "/srv/kontakt/data-journal", false, nil},
		{"production without one", prod(""), "", false, ErrNoJournal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, inside, err := tc.cfg.JournalPath()
			require.ErrorIs(t, err, tc.wantErr)
			require.Equal(t, tc.dir, dir)
			require.Equal(t, tc.inside, inside)
		})
	}
	require.NoError(t, prod("/srv/kontakt/data-journal").Validate(), "a sibling whose name starts like data_dir is outside it")
	require.ErrorContains(t, prod("/srv/kontakt/data/j").Validate(), "config key retention.journal_dir")
}

func TestMailInboundAddresses(t *testing.T) {
	cfg, err := Load(writeFile(t, "mail:\n  inbound:\n    listen: '127.0.0.1:2525'\n    addresses:\n      - {address: Kontakt@Kommun.se, category: ovrigt}\n      - {address: synpunkter@kommun.se, type: synpunkt, category: bemotande}\n"), envOf(nil))
	require.NoError(t, err)
	require.Equal(t, []string{"kontakt@kommun.se", "synpunkter@kommun.se"}, cfg.MailAddresses())
	require.Equal(t, casev1.CaseType_CASE_TYPE_FRAGA, cfg.Mail.Inbound.Addresses[0].CaseType())
	require.Equal(t, casev1.CaseType_CASE_TYPE_SYNPUNKT, cfg.Mail.Inbound.Addresses[1].CaseType())
	require.Equal(t, 25<<20, cfg.Mail.Inbound.MaxMessageBytes)
}
