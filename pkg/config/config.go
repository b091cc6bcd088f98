// Package config loads kontakt's configuration: one YAML file plus
// environment overrides, with defaults that make a zero-configuration start
// work. Every problem is reported with the key that caused it, because the
// person reading the message is an operator at start-up, not a developer.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/casenames"
	"github.com/kontakt-se/kontakt/pkg/server"
)

// Mode says whether kontakt runs for development or production. The
// difference matters for identity (local signing key or OIDC) and for
// anything that would weaken protection, such as a moved clock.
type Mode string

const (
	// Development accepts tokens minted by `kontakt token` and creates
	// missing secrets under the data directory.
	Development Mode = "development"
	// Production requires OIDC and refuses development shortcuts.
	Production Mode = "production"
)

// Config is the whole configuration. The yaml tags are the file's keys; the
// environment variable for a key is KONTAKT_ followed by its dotted path in
// upper case with dots as underscores (nats.url -> KONTAKT_NATS_URL).
type Config struct {
	Mode    Mode   `yaml:"mode"`
	DataDir string `yaml:"data_dir"`
	// Listen is the one address that serves gRPC, gRPC-web, Connect and
	// REST/JSON.
	Listen string `yaml:"listen"`
	// MetricsListen serves Prometheus metrics; empty turns them off.
	MetricsListen   string        `yaml:"metrics_listen"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	Log             Log           `yaml:"log"`
	CORS            CORS          `yaml:"cors"`
	// TLS serves the API port over TLS with this certificate.
	TLS     TLS     `yaml:"tls"`
	Limits  Limits  `yaml:"limits"`
	NATS    NATS    `yaml:"nats"`
	Auth    Auth    `yaml:"auth"`
	Tracing Tracing `yaml:"tracing"`
	Health  Health  `yaml:"health"`
	Routing Routing `yaml:"routing"`
	Intake  Intake  `yaml:"intake"`
	// Categories is the one list of case categories: a case's category
	// must be one of these codes (intake refuses others), Open311
	// service codes are categories from it, and routing rules may name
	// only these. See Category.
	Categories []Category `yaml:"categories"`
	Retention  Retention  `yaml:"retention"`
	EventStore EventStore `yaml:"event_store"`
	// RegisterExtract is the fixed text of the register extracts that
	// `kontakt subject-access` writes for citizens.
	RegisterExtract RegisterExtract `yaml:"register_extract"`
	// Mail is the e-mail channel: the SMTP/LMTP receiver that turns mail
	// to the contact centre's addresses into cases.
	Mail Mail `yaml:"mail"`
	// MasterKeyFile holds the master key that wraps every case's data key;
	// empty means <data_dir>/master.key. KONTAKT_MASTER_KEY (base64) takes
	// precedence. Development mode creates the file when it is missing;
	// production refuses to start without a key.
	MasterKeyFile string `yaml:"master_key_file"`
}

// EventStore chooses where case events live. Keys, case numbers,
// idempotency records, the audit trail, the retention ledger and the
// statistics stream stay on NATS JetStream with either backend.
type EventStore struct {
	// Backend is "jetstream" (the default: the NATS cluster or the
	// embedded server) or "esdb" (EventStoreDB / KurrentDB).
	Backend string `yaml:"backend"`
	// ESDBURL is the EventStoreDB connection string, for example
	// esdb://node1:2113,node2:2113,node3:2113?tls=true.
	ESDBURL string `yaml:"esdb_url"`
}

// Retention configures the retention plan and its sweeper.
type Retention struct {
	// Plan names a built-in plan: "molndal" (the default) or "vaxjo".
	Plan string `yaml:"plan"`
	// PlanFile is a plan of the municipality's own (YAML); it takes
	// precedence over Plan.
	PlanFile string `yaml:"plan_file"`
	// ArchiveDir receives archive packages of preserved cases; empty
	// means <data_dir>/archive.
	ArchiveDir string `yaml:"archive_dir"`
	// SweepInterval is how often the sweeper looks for due cases.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// DevClockOffset moves every component's clock forward, so a person
	// can watch the plan act. Development mode only: production refuses
	// to start with it.
	DevClockOffset time.Duration `yaml:"dev_clock_offset"`
	// JournalDir holds the shred journal (pkg/shredjournal): the record of
	// destroyed keys and receipts that `kontakt restore` replays, so that
	// restoring a backup never brings back what was erased after it. It
	// must be on other storage than the data directory and its backups
	// (production requires it to be set, outside data_dir); empty in
	// development means <data_dir>/journal.
	JournalDir string `yaml:"journal_dir"`
}

// RegisterExtract is what a register extract (GDPR art. 15) says besides
// the person's data: who is responsible, how to reach the
// data-protection officer, and why the data is processed. Empty values
// get a sensible Swedish default in the document, so an installation
// works without them; a municipality sets at least its name.
type RegisterExtract struct {
	// Controller names the controller (personuppgiftsansvarig), for
	// example "Mölndals stad, serviceförvaltningen".
	Controller string `yaml:"controller"`
	// Contact says how the citizen reaches the data-protection officer,
	// for example an e-mail address.
	Contact string `yaml:"contact"`
	// Purposes states the purposes of processing and their legal basis,
	// in Swedish.
	Purposes string `yaml:"purposes"`
}

// Category is one case category. The code is what the case's events and
// the statistics (kept for ever) store, in plain text; that is why a
// category is chosen from this list and never typed: a free string from
// a public form could hold a name or a personnummer that nothing could
// ever remove.
type Category struct {
	// Code is 1-64 of a-z, 0-9, '-' and '_' (for example "gatubelysning").
	Code string `yaml:"code"`
	// Title is the Swedish name a person reads (for example
	// "Gatubelysning").
	Title string `yaml:"title"`
	// Types limits the category to these case types (fraga, felanmalan,
	// synpunkt, brev; fråga and felanmälan are accepted too); empty
	// means every type.
	Types []string `yaml:"types"`
}

// CaseTypes returns the category's case types (none: every type). The
// names are checked by Validate; an unknown one is left out.
func (c Category) CaseTypes() []casev1.CaseType {
	var out []casev1.CaseType
	for _, n := range c.Types {
		if t, ok := casenames.ParseType(n); ok {
			out = append(out, t)
		}
	}
	return out
}

// Category returns the category with a code.
func (c Config) Category(code string) (Category, bool) {
	for _, cat := range c.Categories {
		if cat.Code == code {
			return cat, true
		}
	}
	return Category{}, false
}

// CategoryCodes lists the configured category codes, in file order.
func (c Config) CategoryCodes() []string {
	out := make([]string, 0, len(c.Categories))
	for _, cat := range c.Categories {
		out = append(out, cat.Code)
	}
	return out
}

// Intake configures case intake.
type Intake struct {
	// Open311Services are the fault types a GeoReport v2 app may report.
	Open311Services []Open311Service `yaml:"open311_services"`
	// Open311PublishFreeText lets the public Open311 answers (GET
	// requests, which need no api_key) show what the reporter wrote:
	// description, address_string, address_id, media_url and the exact
	// lat/long. Off by default: a citizen may write their name, phone
	// number or home into a fault report, and the text is sealed as
	// personal data. Off, the answers give the location rounded to the
	// statistics cell.
	Open311PublishFreeText bool `yaml:"open311_publish_free_text"`
}

// Open311Service is one GeoReport v2 service: its code is a category from
// Config.Categories (one that fault reports may use), which the
// felanmälan case gets.
type Open311Service struct {
	Code string `yaml:"code"`
	// Name is the service_name apps show; empty means the category's
	// title.
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	Group       string `yaml:"group"`
}

// Mail configures the e-mail channel.
type Mail struct {
	Inbound MailInbound `yaml:"inbound"`
	// Outbound is the relay kontakt sends its mail through: the
	// acknowledgement of a case that came by mail.
	Outbound MailOutbound `yaml:"outbound"`
}

// MailOutbound is the municipality's mail relay (submission) and what
// kontakt sends through it. Sending goes through an outbox: a kill -9
// loses no mail (one may be sent twice, see ARCHITECTURE.md).
type MailOutbound struct {
	// Host of the relay; empty turns sending off.
	Host string `yaml:"host"`
	// Port of the relay; 0 means 587 (465 with security tls).
	Port int `yaml:"port"`
	// Security is starttls (the default: refuse a relay that does not
	// offer it), tls (implicit TLS, port 465) or none (a relay on
	// loopback or a trusted network only).
	Security string `yaml:"security"`
	// Username and PasswordFile authenticate with AUTH PLAIN (only over
	// TLS); both empty: no authentication. KONTAKT_MAIL_OUTBOUND_PASSWORD
	// (the password itself) takes precedence over the file.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// CAFile holds PEM certificates to verify the relay's certificate
	// with; empty means the system's roots.
	CAFile string `yaml:"ca_file"`
	// From is the sender of every mail, for example
	// "Kontaktcenter <kontakt@kommun.se>".
	From string `yaml:"from"`
	// MaxAttempts bounds how often one mail is tried before it is
	// recorded as failed on its case.
	MaxAttempts int `yaml:"max_attempts"`
	// RetryInitial is the pause after the first failed attempt; each
	// further failure doubles it, up to RetryMax.
	RetryInitial time.Duration `yaml:"retry_initial"`
	RetryMax     time.Duration `yaml:"retry_max"`
	// Acknowledgements are the Swedish texts of the acknowledgement per
	// case type (Go text/template; {{.CaseNumber}} is the case number).
	// An empty subject or body keeps the built-in text.
	Acknowledgements MailTemplates `yaml:"acknowledgements"`
}

// MailTemplates holds one template per case type.
type MailTemplates struct {
	Fraga      MailTemplate `yaml:"fraga"`
	Felanmalan MailTemplate `yaml:"felanmalan"`
	Synpunkt   MailTemplate `yaml:"synpunkt"`
	Brev       MailTemplate `yaml:"brev"`
}

// MailTemplate is a mail's subject and plain-text body.
type MailTemplate struct {
	Subject string `yaml:"subject"`
	Body    string `yaml:"body"`
}

// ForType returns the template of a case type.
func (m MailTemplates) ForType(t casev1.CaseType) MailTemplate {
	switch t {
	case casev1.CaseType_CASE_TYPE_FELANMALAN:
		return m.Felanmalan
	case casev1.CaseType_CASE_TYPE_SYNPUNKT:
		return m.Synpunkt
	case casev1.CaseType_CASE_TYPE_BREV:
		return m.Brev
	default:
		return m.Fraga
	}
}

// RelayPort is the relay's port, with the default of its security.
func (o MailOutbound) RelayPort() int {
	switch {
	case o.Port != 0:
		return o.Port
	case o.Security == "tls":
		return 465
	default:
		return 587
	}
}

// MailInbound is the receiver the municipality's mail relay delivers to.
// Each mail to one of Addresses becomes a case (channel e-mail); mail to
// any other address is refused at RCPT, so kontakt never relays.
type MailInbound struct {
	// Listen is where the receiver accepts SMTP (or LMTP) connections,
	// for example 127.0.0.1:2525; empty turns the receiver off.
	Listen string `yaml:"listen"`
	// LMTP speaks LMTP (RFC 2033) instead of SMTP, for a relay that
	// delivers by LMTP (Postfix's lmtp transport).
	LMTP bool `yaml:"lmtp"`
	// Hostname is the name the receiver greets with; empty means
	// "kontakt".
	Hostname string `yaml:"hostname"`
	// MaxMessageBytes bounds one message as received; a larger one is
	// refused with 552 (the relay returns it to the sender). Messages are
	// held in memory only, never spooled to disk, so this also bounds the
	// memory one delivery costs.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// PerSender limits how many messages one sender address may deliver;
	// over the limit the receiver answers 450 (try again later), which
	// relays obey. per_minute 0 turns it off.
	PerSender RateLimit `yaml:"per_sender"`
	// StartTLS offers STARTTLS with the API port's certificate (tls.cert_file
	// and tls.key_file, which must be set).
	StartTLS bool `yaml:"starttls"`
	// Addresses are the contact centre's own addresses: what a mail to
	// each becomes. Routing rules match them (recipients).
	Addresses []MailAddress `yaml:"addresses"`
	// ReplyReopenWithin is how long after a case was closed a citizen's
	// reply (naming the case by a Message-ID kontakt sent or by its
	// number in the subject) still joins it and reopens it; a reply
	// later than that becomes a new case that refers to the old one's
	// number. 0: a reply to a closed case always becomes a new case.
	ReplyReopenWithin time.Duration `yaml:"reply_reopen_within"`
}

// MailAddress is one of the contact centre's addresses and the case a
// mail to it becomes: its type and category, which the intake rules
// require of every case; the queue is the routing rules' to choose.
type MailAddress struct {
	// Address is the function address, for example kontakt@kommun.se.
	Address string `yaml:"address"`
	// Type is the case type (fraga, felanmalan, synpunkt, brev); empty
	// means fraga.
	Type string `yaml:"type"`
	// Category is a code from categories, allowed for Type.
	Category string `yaml:"category"`
}

// Normalised is the form an address is compared and stored in: the
// address alone, in lower case.
func (a MailAddress) Normalised() string {
	return strings.ToLower(strings.TrimSpace(a.Address))
}

// CaseType is the address's case type (fråga when none is given).
func (a MailAddress) CaseType() casev1.CaseType {
	if strings.TrimSpace(a.Type) == "" {
		return casev1.CaseType_CASE_TYPE_FRAGA
	}
	t, _ := casenames.ParseType(a.Type)
	return t
}

// MailAddresses lists the normalised inbound addresses, in file order.
func (c Config) MailAddresses() []string {
	out := make([]string, 0, len(c.Mail.Inbound.Addresses))
	for _, a := range c.Mail.Inbound.Addresses {
		out = append(out, a.Normalised())
	}
	return out
}

// Log configures structured logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json or text.
	Format string `yaml:"format"`
}

// CORS lists the browser origins allowed to call the API. There is no
// wildcard default: an agent UI's origin must be named.
type CORS struct {
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// TLS names the certificate the API port is served with. Both empty (the
// default) serve cleartext, for a TLS proxy in front or a loopback
// address. Browsers speak HTTP/2 only over TLS, and over HTTP/1.1 they
// open at most six connections to a host, so a UI that keeps several
// WatchQueue streams open needs one or the other.
type TLS struct {
	// CertFile is the PEM certificate chain, leaf first.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of the leaf certificate.
	KeyFile string `yaml:"key_file"`
}

// Limits bounds what one request may cost.
type Limits struct {
	// MaxRequestBytes bounds one request body or message, counted after
	// decompression, on every protocol.
	MaxRequestBytes int `yaml:"max_request_bytes"`
	// PublicSubmissions rate-limits what the public sends: e-service
	// forms (SubmitForm, over every protocol) and Open311 posts.
	PublicSubmissions PublicSubmissions `yaml:"public_submissions"`
}

// PublicSubmissions limits public submissions with token buckets, one per
// credential and one per client address; a call must find a token in both.
type PublicSubmissions struct {
	PerCredential RateLimit `yaml:"per_credential"`
	PerAddress    RateLimit `yaml:"per_address"`
	// TrustedProxies are reverse proxies (addresses or CIDR prefixes)
	// whose X-Forwarded-For header names the client address. From any
	// other peer the header is ignored.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// RateLimit is one token bucket.
type RateLimit struct {
	// PerMinute is the sustained rate; 0 turns this bucket off.
	PerMinute int `yaml:"per_minute"`
	// Burst is how many calls may come at once after a quiet spell.
	Burst int `yaml:"burst"`
}

// NATS says where the event store lives.
type NATS struct {
	// URL of an external NATS cluster; empty starts the embedded server.
	URL string `yaml:"url"`
	// EmbeddedListen is where the embedded server accepts NATS clients
	// (for example the nats CLI reading the statistics stream); empty
	// keeps it in-process only. Clients need the credentials kontakt
	// keeps in NATSCredentialsDir.
	EmbeddedListen string `yaml:"embedded_listen"`
	// Replicas of each JetStream stream: 1 on one machine, 3 on a cluster.
	Replicas int `yaml:"replicas"`
	// CredentialsFile authenticates to an external cluster.
	CredentialsFile string `yaml:"credentials_file"`
}

// Auth configures identity. In production OIDC is required.
type Auth struct {
	OIDC OIDC `yaml:"oidc"`
	// DevKeyFile is the local signing key of development mode; empty means
	// <data_dir>/dev-signing-key.pem.
	DevKeyFile string `yaml:"dev_key_file"`
}

// OIDC configures bearer-token verification against an identity provider.
type OIDC struct {
	Issuer     string `yaml:"issuer"`
	Audience   string `yaml:"audience"`
	JWKSURL    string `yaml:"jwks_url"`
	RolesClaim string `yaml:"roles_claim"`
	// JWKSRefreshInterval is how often the provider's key set is fetched,
	// and so the longest a key removed from it is still honoured.
	JWKSRefreshInterval time.Duration `yaml:"jwks_refresh_interval"`
	// JWKSMinRefreshInterval is the least time between fetches caused by
	// tokens naming a key id the set does not hold (a key rotation, or a
	// forgery): forged tokens cannot make kontakt fetch more often.
	JWKSMinRefreshInterval time.Duration `yaml:"jwks_min_refresh_interval"`
}

// Tracing turns on OpenTelemetry export; it is off unless an endpoint is
// set.
type Tracing struct {
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	Insecure     bool   `yaml:"insecure"`
}

// Routing holds the queues agents work in and the rules that route new
// cases to them.
type Routing struct {
	Queues []Queue `yaml:"queues"`
	// RulesFile is a versioned YAML rule file; empty uses built-in rules
	// (fault reports to "felanmalan", feedback to "synpunkter" when those
	// queues exist, the rest to the first queue).
	RulesFile string `yaml:"rules_file"`
}

// Health configures what /readyz checks.
type Health struct {
	// MaxProjectionLag is how many events a read model may be behind the
	// log and the process still count as ready: a replica whose read
	// models are far behind answers with stale queues and statistics, so
	// the orchestrator sends it no traffic until it has caught up.
	MaxProjectionLag int `yaml:"max_projection_lag"`
}

// Queue is a work queue. Members are subject ids of agents who belong to
// it (token claims may add more).
type Queue struct {
	Name       string   `yaml:"name"`
	Title      string   `yaml:"title"`
	Department string   `yaml:"department"`
	Members    []string `yaml:"members"`
}

// Default returns the configuration used when nothing is configured: the
// single binary on 127.0.0.1:8080 with embedded NATS under ./data.
func Default() Config {
	return Config{
		Mode:            Development,
		DataDir:         "./data",
		Listen:          "127.0.0.1:8080",
		MetricsListen:   "127.0.0.1:8081",
		ShutdownTimeout: 15 * time.Second,
		Log:             Log{Level: "info", Format: "text"},
		// About a second of a busy contact centre's registrations for a
		// projector that has fallen behind, far above what a projector
		// keeping up ever shows between two scrapes.
		Health: Health{MaxProjectionLag: 10000},
		Limits: Limits{
			MaxRequestBytes: 4 << 20,
			// Five a second (18,000 an hour) is far above an
			// e-service's busiest hour and cuts a flood to that; the
			// burst lets a queue of retries through after an outage.
			PublicSubmissions: PublicSubmissions{
				PerCredential: RateLimit{PerMinute: 300, Burst: 100},
				PerAddress:    RateLimit{PerMinute: 300, Burst: 100},
			},
		},
		NATS:      NATS{Replicas: 1},
		Retention: Retention{Plan: "molndal", SweepInterval: time.Minute},
		Auth: Auth{OIDC: OIDC{
			RolesClaim:             "roles",
			JWKSRefreshInterval:    5 * time.Minute,
			JWKSMinRefreshInterval: 30 * time.Second,
		}},
		Routing: Routing{Queues: []Queue{
			{Name: "kontaktcenter", Title: "Kontaktcenter"},
			{Name: "felanmalan", Title: "Felanmälan"},
			{Name: "synpunkter", Title: "Synpunkter och klagomål"},
		}},
		Categories: DefaultCategories(),
		// 25 MiB is what the large mail providers accept; a message is
		// held in memory while it is read, so this bounds that too. Ten
		// mails a minute from one address is far above what a citizen
		// writes and cuts a loop with another robot short.
		Mail: Mail{
			Inbound: MailInbound{
				MaxMessageBytes: 25 << 20,
				PerSender:       RateLimit{PerMinute: 10, Burst: 20},
				// A month: a citizen who writes back about an answer
				// within it means the same matter.
				ReplyReopenWithin: 30 * 24 * time.Hour,
			},
			// Eight attempts from a minute doubling to an hour span
			// about four hours: a relay's maintenance window, not a
			// day's outage (the case then shows the failure).
			Outbound: MailOutbound{Security: "starttls", MaxAttempts: 8, RetryInitial: time.Minute, RetryMax: time.Hour},
		},
		Intake: Intake{Open311Services: []Open311Service{
			{Code: "gatubelysning", Name: "Gatubelysning", Description: "Trasig eller släckt gatubelysning", Group: "Gata och trafik"},
			{Code: "vag-och-gata", Name: "Väg och gata", Description: "Hål i vägen, skador på gata eller gångbana", Group: "Gata och trafik"},
			{Code: "klotter", Name: "Klotter", Description: "Klotter och skadegörelse", Group: "Stadsmiljö"},
			{Code: "park-och-lek", Name: "Park och lekplats", Description: "Fel i park, lekplats eller grönområde", Group: "Stadsmiljö"},
			{Code: "avfall", Name: "Avfall och nedskräpning", Description: "Full papperskorg, nedskräpning", Group: "Stadsmiljö"},
		}},
	}
}

// DefaultCategories is the category list of an installation that
// configures none: what a Swedish municipal contact centre is asked
// about (the source documents name questions, fault reports, feedback
// and complaints, letters, and consumer and budget advice), so that
// `make run` works with no configuration. A municipality replaces it
// with its own list under `categories`.
func DefaultCategories() []Category {
	fault := []string{"felanmalan"}
	return []Category{
		{Code: "gatubelysning", Title: "Gatubelysning", Types: fault},
		{Code: "vag-och-gata", Title: "Väg och gata"},
		{Code: "klotter", Title: "Klotter och skadegörelse", Types: fault},
		{Code: "park-och-lek", Title: "Park och lekplats"},
		{Code: "avfall", Title: "Avfall och återvinning"},
		{Code: "vatten-och-avlopp", Title: "Vatten och avlopp"},
		{Code: "snorojning", Title: "Snöröjning och halkbekämpning"},
		{Code: "trafik-och-parkering", Title: "Trafik och parkering"},
		{Code: "bygglov", Title: "Bygglov och byggande"},
		{Code: "forskola-och-skola", Title: "Förskola och skola"},
		{Code: "omsorg", Title: "Omsorg och stöd"},
		{Code: "ekonomiskt-bistand", Title: "Ekonomiskt bistånd"},
		{Code: "konsumentradgivning", Title: "Konsument- och budgetrådgivning"},
		{Code: "kultur-och-fritid", Title: "Kultur och fritid"},
		{Code: "bemotande", Title: "Bemötande och service", Types: []string{"synpunkt", "brev"}},
		{Code: "ovrigt", Title: "Övrigt"},
	}
}

// Load reads the file at path (none when path is empty), applies the
// environment, and validates the result. A missing or unreadable file, an
// unknown key, a value of the wrong type and an invalid value are all
// errors that name the file and the key.
func Load(path string, env func(string) (string, bool)) (Config, error) {
	cfg := Default()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, unwrapPathError(err))
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			return Config{}, fmt.Errorf("config %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		if problems := checkKeys(&doc); len(problems) > 0 {
			// One line for all problems: a start-up failure scattered over
			// several log lines is easy to read only in part.
			return Config{}, fmt.Errorf("config %s: %s", path, strings.Join(problems, "; "))
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			var te *yaml.TypeError
			if errors.As(err, &te) {
				// One line per problem would scatter a start-up failure over
				// several log lines; keep it to one.
				return Config{}, fmt.Errorf("config %s: %s", path, strings.Join(te.Errors, "; "))
			}
			return Config{}, fmt.Errorf("config %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
		}
	}
	if env != nil {
		if err := applyEnv(reflect.ValueOf(&cfg).Elem(), "KONTAKT", "", env); err != nil {
			return Config{}, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Validate checks values that a type alone cannot, and names the key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config key %s: %s", key, fmt.Sprintf(format, args...)))
	}
	switch c.Mode {
	case Development, Production:
	default:
		bad("mode", "must be %q or %q, not %q", Development, Production, c.Mode)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		bad("data_dir", "must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "must be host:port, not %q", c.Listen)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			bad("metrics_listen", "must be host:port or empty, not %q", c.MetricsListen)
		}
	}
	if c.Health.MaxProjectionLag < 1 {
		bad("health.max_projection_lag", "must be at least 1, not %d", c.Health.MaxProjectionLag)
	}
	if c.NATS.EmbeddedListen != "" {
		if _, _, err := net.SplitHostPort(c.NATS.EmbeddedListen); err != nil {
			bad("nats.embedded_listen", "must be host:port or empty, not %q", c.NATS.EmbeddedListen)
		}
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown_timeout", "must be positive")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		bad("log.format", "must be json or text, not %q", c.Log.Format)
	}
	for i, o := range c.CORS.AllowedOrigins {
		if o == "*" {
			bad(fmt.Sprintf("cors.allowed_origins[%d]", i), "a wildcard is not allowed: name each origin")
		} else if err := server.CheckOrigin(o); err != nil {
			bad(fmt.Sprintf("cors.allowed_origins[%d]", i), "%s", err)
		}
	}
	switch {
	case c.TLS.CertFile != "" && c.TLS.KeyFile == "":
		bad("tls.key_file", "must be set with tls.cert_file")
	case c.TLS.CertFile == "" && c.TLS.KeyFile != "":
		bad("tls.cert_file", "must be set with tls.key_file")
	case c.TLS.CertFile != "":
		if err := server.CheckCertificate(c.TLS.CertFile, c.TLS.KeyFile); err != nil {
			bad("tls.cert_file", "%s", err)
		}
	}
	if c.Limits.MaxRequestBytes < 1024 || c.Limits.MaxRequestBytes > 64<<20 {
		bad("limits.max_request_bytes", "must be between 1024 and 67108864, not %d", c.Limits.MaxRequestBytes)
	}
	for _, b := range []struct {
		name string
		rl   RateLimit
	}{
		{"per_credential", c.Limits.PublicSubmissions.PerCredential},
		{"per_address", c.Limits.PublicSubmissions.PerAddress},
	} {
		key, rl := "limits.public_submissions."+b.name, b.rl
		if rl.PerMinute < 0 || rl.PerMinute > 6_000_000 {
			bad(key+".per_minute", "must be between 0 (off) and 6000000, not %d", rl.PerMinute)
		}
		if rl.PerMinute > 0 && (rl.Burst < 1 || rl.Burst > 1_000_000) {
			bad(key+".burst", "must be between 1 and 1000000 when per_minute is set, not %d", rl.Burst)
		}
	}
	for i, p := range c.Limits.PublicSubmissions.TrustedProxies {
		if !validAddressOrPrefix(p) {
			bad(fmt.Sprintf("limits.public_submissions.trusted_proxies[%d]", i), "must be an IP address or a CIDR prefix, not %q", p)
		}
	}
	switch c.NATS.Replicas {
	case 1, 3, 5:
	default:
		bad("nats.replicas", "must be 1, 3 or 5, not %d", c.NATS.Replicas)
	}
	if c.NATS.Replicas > 1 && c.NATS.URL == "" {
		bad("nats.replicas", "more than one replica needs an external cluster (nats.url)")
	}
	if c.Mode == Production {
		if c.Auth.OIDC.Issuer == "" {
			bad("auth.oidc.issuer", "is required in production mode")
		}
		if c.Auth.OIDC.Audience == "" {
			bad("auth.oidc.audience", "is required in production mode")
		}
	}
	if o := c.Auth.OIDC; o.JWKSRefreshInterval < time.Second {
		bad("auth.oidc.jwks_refresh_interval", "must be at least 1s, not %s", o.JWKSRefreshInterval)
	} else if o.JWKSMinRefreshInterval < time.Second || o.JWKSMinRefreshInterval > o.JWKSRefreshInterval {
		bad("auth.oidc.jwks_min_refresh_interval", "must be at least 1s and at most auth.oidc.jwks_refresh_interval (%s), not %s", o.JWKSRefreshInterval, o.JWKSMinRefreshInterval)
	}
	switch c.EventStore.Backend {
	case "", "jetstream":
	case "esdb":
		if c.EventStore.ESDBURL == "" {
			bad("event_store.esdb_url", "is required when event_store.backend is esdb")
		}
	default:
		bad("event_store.backend", "must be jetstream or esdb, not %q", c.EventStore.Backend)
	}
	if c.Retention.SweepInterval <= 0 {
		bad("retention.sweep_interval", "must be positive")
	}
	if c.Retention.DevClockOffset < 0 {
		bad("retention.dev_clock_offset", "must not be negative")
	}
	if c.Mode == Production && c.Retention.JournalDir != "" && within(c.Retention.JournalDir, c.DataDir) {
		bad("retention.journal_dir", "must not be inside data_dir in production mode: a journal that is lost or restored with the data cannot keep erased data erased")
	}
	if c.Retention.DevClockOffset != 0 && c.Mode == Production {
		bad("retention.dev_clock_offset", "is refused in production mode: the clock decides when personal data is destroyed")
	}
	if len(c.Routing.Queues) == 0 {
		bad("routing.queues", "at least one queue is needed")
	}
	seen := map[string]bool{}
	for i, q := range c.Routing.Queues {
		key := fmt.Sprintf("routing.queues[%d].name", i)
		switch {
		case q.Name == "":
			bad(key, "must not be empty")
		case !validQueueName(q.Name):
			bad(key, "%q may hold only a-z, 0-9, '-' and '_'", q.Name)
		case seen[q.Name]:
			bad(key, "queue %q is defined twice", q.Name)
		}
		seen[q.Name] = true
	}
	if len(c.Categories) == 0 {
		bad("categories", "at least one category is needed: a case's category must come from this list")
	}
	categories := map[string]bool{}
	for i, cat := range c.Categories {
		key := fmt.Sprintf("categories[%d].code", i)
		switch {
		case !validQueueName(cat.Code):
			bad(key, "%q must be 1-64 of a-z, 0-9, '-' and '_'", cat.Code)
		case categories[cat.Code]:
			bad(key, "category %q is defined twice", cat.Code)
		}
		categories[cat.Code] = true
		if strings.TrimSpace(cat.Title) == "" {
			bad(fmt.Sprintf("categories[%d].title", i), "must not be empty")
		}
		for j, n := range cat.Types {
			if _, ok := casenames.ParseType(n); !ok {
				bad(fmt.Sprintf("categories[%d].types[%d]", i, j), "%q is not a case type (%s)", n, strings.Join(casenames.TypeNames(), ", "))
			}
		}
	}
	codes := map[string]bool{}
	for i, svc := range c.Intake.Open311Services {
		key := fmt.Sprintf("intake.open311_services[%d].code", i)
		cat, known := c.Category(svc.Code)
		switch {
		case !validQueueName(svc.Code):
			bad(key, "%q must be 1-64 of a-z, 0-9, '-' and '_'", svc.Code)
		case codes[svc.Code]:
			bad(key, "service %q is defined twice", svc.Code)
		case !known:
			bad(key, "%q is not one of the categories (an Open311 service is a category: add it to categories)", svc.Code)
		case len(cat.Types) > 0 && !slices.Contains(cat.CaseTypes(), casev1.CaseType_CASE_TYPE_FELANMALAN):
			bad(key, "category %q is not for fault reports (felanmalan), which every Open311 report is", svc.Code)
		}
		codes[svc.Code] = true
	}
	c.validateMail(bad)
	return errors.Join(errs...)
}

// validateMail checks mail.inbound: a receiver that is on needs
// addresses, each a plain address once, with a case type and a category
// the intake rules accept for it.
func (c Config) validateMail(bad func(key, format string, args ...any)) {
	in := c.Mail.Inbound
	c.validateOutbound(bad)
	if in.Listen == "" {
		return
	}
	if _, _, err := net.SplitHostPort(in.Listen); err != nil {
		bad("mail.inbound.listen", "must be host:port or empty, not %q", in.Listen)
	}
	if in.MaxMessageBytes < 1024 || in.MaxMessageBytes > 64<<20 {
		bad("mail.inbound.max_message_bytes", "must be between 1024 and 67108864, not %d", in.MaxMessageBytes)
	}
	if rl := in.PerSender; rl.PerMinute < 0 || rl.PerMinute > 6_000_000 {
		bad("mail.inbound.per_sender.per_minute", "must be between 0 (off) and 6000000, not %d", rl.PerMinute)
	} else if rl.PerMinute > 0 && (rl.Burst < 1 || rl.Burst > 1_000_000) {
		bad("mail.inbound.per_sender.burst", "must be between 1 and 1000000 when per_minute is set, not %d", rl.Burst)
	}
	if in.ReplyReopenWithin < 0 {
		bad("mail.inbound.reply_reopen_within", "must be 0 (never reopen) or a positive duration, not %s", in.ReplyReopenWithin)
	}
	if in.StartTLS && c.TLS.CertFile == "" {
		bad("mail.inbound.starttls", "needs the certificate of tls.cert_file and tls.key_file")
	}
	if len(in.Addresses) == 0 {
		bad("mail.inbound.addresses", "at least one address is needed when mail.inbound.listen is set")
	}
	seen := map[string]bool{}
	for i, a := range in.Addresses {
		key := fmt.Sprintf("mail.inbound.addresses[%d]", i)
		addr, err := mail.ParseAddress(a.Address)
		switch {
		case err != nil || addr.Name != "" || addr.Address != strings.TrimSpace(a.Address):
			bad(key+".address", "must be a plain e-mail address such as kontakt@kommun.se")
		case seen[a.Normalised()]:
			bad(key+".address", "%q is listed twice", a.Normalised())
		}
		seen[a.Normalised()] = true
		t, ok := casenames.ParseType(a.Type)
		if strings.TrimSpace(a.Type) == "" {
			t, ok = casev1.CaseType_CASE_TYPE_FRAGA, true
		}
		if !ok {
			bad(key+".type", "%q is not a case type (%s)", a.Type, strings.Join(casenames.TypeNames(), ", "))
		}
		if t == casev1.CaseType_CASE_TYPE_FELANMALAN {
			// A fault report needs a place, which a mail does not carry
			// in a form intake can read.
			bad(key+".type", "a mail cannot be a fault report (felanmalan): it carries no place intake can read")
		}
		cat, known := c.Category(a.Category)
		switch {
		case !known:
			bad(key+".category", "%q is not one of the categories", a.Category)
		case ok && len(cat.Types) > 0 && !slices.Contains(cat.CaseTypes(), t):
			bad(key+".category", "category %q is not for case type %s", a.Category, casenames.Type(t))
		}
	}
}

// validateOutbound checks mail.outbound when sending is on.
func (c Config) validateOutbound(bad func(key, format string, args ...any)) {
	out := c.Mail.Outbound
	if out.Host == "" {
		return
	}
	if out.Port < 0 || out.Port > 65535 {
		bad("mail.outbound.port", "must be a port number, not %d", out.Port)
	}
	switch out.Security {
	case "starttls", "tls", "none":
	default:
		bad("mail.outbound.security", "must be starttls, tls or none, not %q", out.Security)
	}
	if out.Security == "none" && c.Mode == Production && !loopbackHost(out.Host) {
		bad("mail.outbound.security", "none sends citizens' mail in clear: production allows it only to a relay on loopback, not %q", out.Host)
	}
	if out.Username != "" && out.Security == "none" {
		bad("mail.outbound.username", "authentication needs security starttls or tls: the password would cross the network in clear")
	}
	if a, err := mail.ParseAddress(out.From); err != nil || a.Address == "" {
		bad("mail.outbound.from", "must be an address such as \"Kontaktcenter <kontakt@kommun.se>\"")
	}
	if out.MaxAttempts < 1 || out.MaxAttempts > 100 {
		bad("mail.outbound.max_attempts", "must be between 1 and 100, not %d", out.MaxAttempts)
	}
	if out.RetryInitial <= 0 || out.RetryMax < out.RetryInitial {
		bad("mail.outbound.retry_initial", "must be positive and at most mail.outbound.retry_max")
	}
	for _, tt := range []struct {
		name string
		tmpl MailTemplate
	}{
		{"fraga", out.Acknowledgements.Fraga}, {"felanmalan", out.Acknowledgements.Felanmalan},
		{"synpunkt", out.Acknowledgements.Synpunkt}, {"brev", out.Acknowledgements.Brev},
	} {
		for part, text := range map[string]string{"subject": tt.tmpl.Subject, "body": tt.tmpl.Body} {
			if err := CheckMailTemplate(text); err != nil {
				bad("mail.outbound.acknowledgements."+tt.name+"."+part, "%s", err)
			}
		}
	}
}

// loopbackHost says whether host names this machine's loopback.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// MailTemplateData is what a mail template may use.
type MailTemplateData struct {
	// CaseNumber is the case's number, for example KC-2026-000123.
	CaseNumber string
}

// CheckMailTemplate parses a mail template and runs it on an example
// case, so a mistake stops start-up rather than the first mail.
func CheckMailTemplate(text string) error {
	t, err := template.New("mail").Option("missingkey=error").Parse(text)
	if err != nil {
		return err
	}
	return t.Execute(io.Discard, MailTemplateData{CaseNumber: "KC-2026-000123"})
}

func validAddressOrPrefix(s string) bool {
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

func validQueueName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_' {
			return false
		}
	}
	return true
}

// MasterKeyPath is where the master key file is read (and, in
// development mode, created).
func (c Config) MasterKeyPath() string {
	if c.MasterKeyFile != "" {
		return c.MasterKeyFile
	}
	return filepath.Join(c.DataDir, "master.key")
}

// NATSCredentialsDir is where kontakt keeps the keys of the embedded NATS
// server's users (the service user and the read-only analyst user), so
// that they stay the same for a data directory across restarts.
func (c Config) NATSCredentialsDir() string {
	return filepath.Join(c.DataDir, "nats-credentials")
}

// DevKeyPath is where development mode keeps its token-signing key.
func (c Config) DevKeyPath() string {
	if c.Auth.DevKeyFile != "" {
		return c.Auth.DevKeyFile
	}
	return filepath.Join(c.DataDir, "dev-signing-key.pem")
}

// applyEnv walks the configuration struct and overrides every scalar,
// duration and string-list field whose environment variable is set.
func applyEnv(v reflect.Value, prefix, keyPrefix string, env func(string) (string, bool)) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		key := keyPrefix + tag
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct {
			if err := applyEnv(fv, name, key+".", env); err != nil {
				return err
			}
			continue
		}
		raw, ok := env(name)
		if !ok {
			continue
		}
		if err := setFromString(fv, raw); err != nil {
			return fmt.Errorf("environment %s (config key %s): %w", name, key, err)
		}
	}
	return nil
}

var durationType = reflect.TypeOf(time.Duration(0))

func setFromString(fv reflect.Value, raw string) error {
	switch {
	case fv.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a duration (for example 15s)", raw)
		}
		fv.SetInt(int64(d))
	case fv.Kind() == reflect.String:
		fv.SetString(raw)
	case fv.Kind() == reflect.Int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", raw)
		}
		fv.SetInt(int64(n))
	case fv.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not true or false", raw)
		}
		fv.SetBool(b)
	case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String:
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		fv.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

// ErrNoJournal says production mode has no retention.journal_dir.
var ErrNoJournal = errors.New("config key retention.journal_dir: is required in production mode: the shred journal must live outside data_dir, on storage that is not restored with it (see README, Backup and restore)")

// JournalPath is the directory of the shred journal and whether it is the
// development default inside the data directory (which a caller should
// warn about: a journal restored together with the data protects
// nothing). Production mode without retention.journal_dir is
// ErrNoJournal; Validate refuses one inside data_dir.
func (c Config) JournalPath() (dir string, insideDataDir bool, err error) {
	if c.Retention.JournalDir != "" {
		return c.Retention.JournalDir, within(c.Retention.JournalDir, c.DataDir), nil
	}
	if c.Mode == Production {
		return "", false, ErrNoJournal
	}
	return filepath.Join(c.DataDir, "journal"), true, nil
}

// AdminSocketPath is the unix socket on which `kontakt serve` answers the
// local admin commands that need the running process (`kontakt backup`
// while serving). It is in a directory of its own that only kontakt's user
// may enter (0700): access is by file permission.
func (c Config) AdminSocketPath() string {
	return filepath.Join(c.DataDir, "admin", "kontakt.sock")
}

// within reports whether path is dir or lies under it, comparing absolute,
// cleaned paths (and the targets of symbolic links where they exist).
func within(path, dir string) bool {
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			p = a
		}
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		return filepath.Clean(p)
	}
	rel, err := filepath.Rel(abs(dir), abs(path))
	if err != nil {
		return false
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)))
}

// ArchivePath is where archive packages are written.
func (c Config) ArchivePath() string {
	if c.Retention.ArchiveDir != "" {
		return c.Retention.ArchiveDir
	}
	return filepath.Join(c.DataDir, "archive")
}
