package natsserver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// Accounts of a server with Auth. Each account is its own subject space:
// nothing published in one reaches the other except what the service
// account exports.
const (
	// ServiceAccount holds every stream and bucket of kontakt; only the
	// service user belongs to it.
	ServiceAccount = "KONTAKT"
	// AnalystAccount holds a mirror of the analyst stream and nothing
	// else; the analyst user belongs to it.
	AnalystAccount = "ANALYST"
)

// The analyst account reaches the service account only through these
// subjects, which only the mirror uses: an API alias under $JS (which
// the server refuses as a client's reply or delivery subject, so no
// client can make the server publish there for it), flow control, and
// the delivery prefix of the mirror's consumer.
const (
	mirrorAPIPrefix     = "$JS." + ServiceAccount + ".API"
	mirrorDeliverPrefix = "kontakt.analyst.mirror"
)

// Auth makes the server require credentials of every client and gives it
// exactly two users. Without it the server lets anybody in; only tests
// should start one like that.
//
// Why two accounts and a mirror rather than one account with subject
// permissions: within one account a client picks the reply subject of
// its requests and the delivery subject of the consumers it creates, and
// the server publishes its answers and the stream's messages there with
// its own rights. An analyst allowed only "stream info of the statistics
// stream" could send that request with the reply subject
// kontakt.case.<id> and the answer was stored in the case's stream.
// Permissions cannot stop that; an account boundary does. So the
// analyst's account has its own copy of the statistics stream (a mirror,
// fed by the server itself), and whatever an analyst makes the server
// publish stays in that account.
type Auth struct {
	// Service is the key of the service user (ServiceAccount, every
	// right). Connect authenticates with it.
	Service nkeys.KeyPair
	// AnalystPublicKey is the public key of the analyst user
	// (AnalystAccount), who may read AnalystStream and nothing else.
	AnalystPublicKey string
	// AnalystStream is the service account's stream that analysts read.
	// It is mirrored into the analyst account under the same name.
	AnalystStream string
	// AnalystSubjects filters the mirror: analysts see only messages on
	// these subjects of AnalystStream.
	AnalystSubjects string
}

func (a *Auth) validate() error {
	if a.Service == nil {
		return errors.New("natsserver: Auth.Service is required")
	}
	pub, err := a.Service.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return errors.New("natsserver: Auth.Service is not a user key")
	}
	if !nkeys.IsValidPublicUserKey(a.AnalystPublicKey) {
		return errors.New("natsserver: Auth.AnalystPublicKey is not a user public key")
	}
	if a.AnalystStream == "" || strings.ContainsAny(a.AnalystStream, ".*> \t\r\n\"") {
		return fmt.Errorf("natsserver: Auth.AnalystStream %q is not a stream name", a.AnalystStream)
	}
	if a.AnalystSubjects == "" || strings.ContainsAny(a.AnalystSubjects, " \t\r\n\"") {
		return fmt.Errorf("natsserver: Auth.AnalystSubjects %q is not a subject", a.AnalystSubjects)
	}
	return nil
}

// analystPublish are the only subjects an analyst may publish to: the
// JetStream API calls that read one stream through a consumer, which is
// what `nats sub --stream` (nats CLI 0.5) and an ordered consumer
// (nats.go 1.55) send. Each one is needed, found by taking it away:
// stream info (the CLI loads the stream first), consumer create (with
// the filter in the subject), consumer delete (an ordered consumer
// replaces its consumer and retries without end when it cannot delete
// the old one) and the next-message request of a pull consumer. Replies
// come to the client's _INBOX. In the analyst account all of this
// reaches only the mirror.
func analystPublish(stream string) []string {
	return []string{
		"$JS.API.STREAM.INFO." + stream,
		"$JS.API.CONSUMER.CREATE." + stream + ".>",
		"$JS.API.CONSUMER.DELETE." + stream + ".*",
		"$JS.API.CONSUMER.MSG.NEXT." + stream + ".*",
	}
}

// serverConfig is the accounts block in the server's configuration
// language: the only way to enable JetStream per account when embedding
// (the account limits have no exported setter). setup is the public key
// of the user that maintains the mirror from inside this process.
func (a *Auth) serverConfig(setup string) (string, error) {
	service, err := a.Service.PublicKey()
	if err != nil {
		return "", err
	}
	quoteAll := func(subjects []string) string {
		q := make([]string, len(subjects))
		for i, s := range subjects {
			q[i] = fmt.Sprintf("%q", s)
		}
		return strings.Join(q, ", ")
	}
	s := a.AnalystStream
	create := "$JS.API.CONSUMER.CREATE." + s + ".>"
	fc := "$JS.FC." + s + ".>"
	deliver := mirrorDeliverPrefix + ".>"
	return fmt.Sprintf(`
accounts {
  %[1]s: {
    jetstream: enabled
    users: [
      {nkey: %[3]q, allowed_connection_types: ["STANDARD", "IN_PROCESS"]}
    ]
    exports: [
      {service: %[6]q, accounts: [%[2]s]}
      {service: %[7]q, accounts: [%[2]s]}
      {stream: %[8]q, accounts: [%[2]s]}
    ]
  }
  %[2]s: {
    jetstream: {max_streams: 1, max_consumers: 100}
    users: [
      {nkey: %[4]q, allowed_connection_types: ["STANDARD"], permissions: {
        publish: {allow: [%[10]s]}
        subscribe: {allow: ["_INBOX.>"]}
      }}
      {nkey: %[5]q, allowed_connection_types: ["IN_PROCESS"], permissions: {
        publish: {allow: [%[11]s]}
        subscribe: {allow: ["_INBOX.>"]}
      }}
    ]
    imports: [
      {service: {account: %[1]s, subject: %[6]q}, to: %[9]q}
      {service: {account: %[1]s, subject: %[7]q}}
      {stream: {account: %[1]s, subject: %[8]q}}
    ]
  }
}
`, ServiceAccount, AnalystAccount, service, a.AnalystPublicKey, setup,
		create, fc, deliver, strings.Replace(create, "$JS.API", mirrorAPIPrefix, 1),
		quoteAll(analystPublish(s)),
		quoteAll([]string{"$JS.API.STREAM.CREATE." + s, "$JS.API.STREAM.UPDATE." + s, "$JS.API.STREAM.INFO." + s, "$JS.API.STREAM.DELETE." + s}),
	), nil
}

// mirrorConfig is the analyst account's copy of the analyst stream. It
// refuses deletes and purges like the statistics stream it copies.
func (a *Auth) mirrorConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        a.AnalystStream,
		Description: "kontakt: read-only copy of " + a.AnalystStream + " in the analyst account",
		Storage:     jetstream.FileStorage,
		DenyDelete:  true,
		DenyPurge:   true,
		Mirror: &jetstream.StreamSource{
			Name:          a.AnalystStream,
			FilterSubject: a.AnalystSubjects,
			External:      &jetstream.ExternalStream{APIPrefix: mirrorAPIPrefix, DeliverPrefix: mirrorDeliverPrefix},
		},
	}
}

// maintainMirror creates or updates the analyst account's mirror when
// analysts can connect, and removes it when they cannot (no listener), so
// a server nobody reads statistics from keeps no second copy. It connects
// in process as the setup user, whose key exists only in this process.
func (s *Server) maintainMirror(ctx context.Context, setup nkeys.KeyPair) error {
	pub, err := setup.PublicKey()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(s.srv.ClientURL(), nats.InProcessServer(s.srv), nats.Name("kontakt-analyst-mirror"), nats.Nkey(pub, setup.Sign))
	if err != nil {
		return fmt.Errorf("natsserver: connect to the analyst account: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("natsserver: analyst account: %w", err)
	}
	cfg := s.cfg.Auth.mirrorConfig()
	if s.cfg.InProcessOnly {
		if err := js.DeleteStream(ctx, cfg.Name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("natsserver: remove the analyst mirror %s: %w", cfg.Name, err)
		}
		return nil
	}
	if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("natsserver: analyst mirror %s: %w", cfg.Name, err)
	}
	return nil
}
