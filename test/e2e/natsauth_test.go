package e2e

// Issue 13, hole 3: the embedded NATS port had no authentication. With
// nats.embedded_listen set, a local client without credentials read the
// data keys, wrote a forged event into a case stream, purged a case's
// key and deleted the audit and ledger streams. The test below attacks
// the port of the real binary with nats.go and the nats CLI: as a
// stranger, and as the analyst user kontakt creates, who may read the
// statistics records and nothing else.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
)

// Names in the store (as the adapters name them) and the attacks' timing:
// an attack that gets no answer has failed after natsAttackTimeout, and a
// write the server was tricked into making would land within
// eavesdropWindow (milliseconds on the base binary).
const (
	statisticsStreamName  = "KONTAKT_STATS"
	retentionLedgerStream = "KONTAKT_RETENTION_LEDGER"
	keysBucketStream      = "KV_" + keysBucket
	natsAttackTimeout     = 3 * time.Second
	eavesdropWindow       = 2 * time.Second
	forgedEventType       = "kontakt.case.v1.CaseClosed"
	attackerStreamName    = "EVIL"
)

// natsAuthEnv is a started binary with its embedded NATS port open, an
// inspector that sees the store as kontakt does, and a case.
type natsAuthEnv struct {
	k      *Kontakt
	ic     intakev1.IntakeServiceClient
	rc     routingv1.RoutingServiceClient
	agent  string
	super  string
	svc    jetstream.JetStream
	caseID string
	// dataKeys are KV keys of the key store, one per case (its record of
	// wrapped data keys); each attack on a key has its own, so that one
	// attack's damage is not counted for another.
	dataKeys []string
}

// natsInspector connects as kontakt's service user. A binary from before
// issue 13 writes no key and lets anybody in; then, and only then, the
// inspector connects without one, so that the attacks below can be shown
// to succeed against it.
func natsInspector(t *testing.T, k *Kontakt) jetstream.JetStream {
	t.Helper()
	var nc *nats.Conn
	if _, err := os.Stat(filepath.Join(k.NATSCredentialsDir(), "service.nk")); err == nil {
		nc = k.ConnectNATS(t, nats.Name("natsauth-inspector"))
	} else {
		t.Logf("no service key in %s (a binary from before issue 13): inspecting without credentials", k.NATSCredentialsDir())
		var err error
		nc, err = nats.Connect("nats://"+k.NATSAddr, nats.Name("natsauth-inspector"))
		require.NoError(t, err)
		t.Cleanup(nc.Close)
	}
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func (e *natsAuthEnv) register(t *testing.T, subject string) string {
	t.Helper()
	ctx, cancel := withToken(e.agent)
	defer cancel()
	resp, err := e.ic.RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: fragaInput(subject, nil)})
	require.NoError(t, err)
	return resp.GetCaseId()
}

// readCase reads a case with its personal data, waiting until routing has
// it.
func (e *natsAuthEnv) readCase(t *testing.T, id string) *routingv1.GetCaseResponse {
	t.Helper()
	var resp *routingv1.GetCaseResponse
	var err error
	require.True(t, eventually(30*time.Second, func() bool {
		ctx, cancel := withToken(e.super)
		defer cancel()
		resp, err = e.rc.GetCase(ctx, &routingv1.GetCaseRequest{CaseId: id, Purpose: "natsauth"})
		return err == nil
	}), "read case %s: %v", id, err)
	return resp
}

// lastSeq is the sequence of the last message on subject in stream, 0
// when there is none.
func (e *natsAuthEnv) lastSeq(t *testing.T, stream, subject string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.svc.Stream(ctx, stream)
	require.NoError(t, err)
	m, err := s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0
	}
	require.NoError(t, err)
	return m.Sequence
}

// streamInfo is the inspector's view of a stream; nil when it is gone.
func (e *natsAuthEnv) streamInfo(t *testing.T, name string) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.svc.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	return info
}

// keyEntry is the inspector's view of a data key; nil when it is gone.
func (e *natsAuthEnv) keyEntry(t *testing.T, key string) jetstream.KeyValueEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := e.svc.KeyValue(ctx, keysBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	require.NoError(t, err)
	entry, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	require.NoError(t, err)
	return entry
}

// natsAttacker is a client on the embedded NATS port: the analyst user when
// the binary made one, or a stranger without credentials.
type natsAttacker struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// request sends a raw request and reports whether an answer came.
func (a *natsAttacker) request(subject string, body []byte) (*nats.Msg, error) {
	return a.nc.Request(subject, body, natsAttackTimeout)
}

// caught subscribes to subject, runs trigger (kontakt doing its work),
// and reports whether anything arrived on the subscription.
func (a *natsAttacker) caught(t *testing.T, subject string, trigger func()) bool {
	t.Helper()
	sub, err := a.nc.SubscribeSync(subject)
	if err != nil {
		return false
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = a.nc.Flush()
	trigger()
	_, err = sub.NextMsg(eavesdropWindow)
	return err == nil
}

func attackCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), natsAttackTimeout)
}

// natsAttack is one thing a client on the port must not be able to do. try
// does it and reports whether it got what it was after; the inspector,
// not the attacker's own client, decides whether anything changed.
type natsAttack struct {
	name string
	try  func(t *testing.T, a *natsAttacker) bool
}

func (e *natsAuthEnv) attacks() []natsAttack {
	caseSubject := caseSubjectPrefix + e.caseID
	keySubject := func(key string) string { return "$KV." + keysBucket + "." + key }
	// landed wraps a write: it reports whether a new message appeared on
	// the case's subject.
	landedInCase := func(t *testing.T, do func()) bool {
		before := e.lastSeq(t, casesStream, caseSubject)
		do()
		// The analyst's mirror keeps running; give anything the server
		// was made to publish time to arrive.
		time.Sleep(eavesdropWindow)
		return e.lastSeq(t, casesStream, caseSubject) != before
	}
	readOrdered := func(stream string) func(t *testing.T, a *natsAttacker) bool {
		return func(t *testing.T, a *natsAttacker) bool {
			ctx, cancel := attackCtx()
			defer cancel()
			c, err := a.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
			if err != nil {
				return false
			}
			_, err = c.Next(jetstream.FetchMaxWait(natsAttackTimeout))
			return err == nil
		}
	}
	deleteStream := func(stream string) func(t *testing.T, a *natsAttacker) bool {
		return func(t *testing.T, a *natsAttacker) bool {
			_, _ = a.request("$JS.API.STREAM.DELETE."+stream, nil)
			return e.streamInfo(t, stream) == nil
		}
	}
	expire := func(stream string) func(t *testing.T, a *natsAttacker) bool {
		return func(t *testing.T, a *natsAttacker) bool {
			cfg := e.streamInfo(t, stream).Config
			was := cfg.MaxAge
			// The duplicate window may not be longer than the age limit.
			cfg.MaxAge, cfg.Duplicates = time.Second, time.Second
			body, _ := json.Marshal(cfg)
			_, _ = a.request("$JS.API.STREAM.UPDATE."+stream, body)
			return e.streamInfo(t, stream).Config.MaxAge != was
		}
	}
	trigger := func(t *testing.T) func() {
		return func() { e.readCase(t, e.register(t, "avlyssnad")) }
	}
	return []natsAttack{
		// Reading what must stay inside kontakt.
		{"list the data keys", func(t *testing.T, a *natsAttacker) bool {
			ctx, cancel := attackCtx()
			defer cancel()
			kv, err := a.js.KeyValue(ctx, keysBucket)
			if err != nil {
				return false
			}
			keys, err := kv.ListKeys(ctx)
			if err != nil {
				return false
			}
			n := 0
			for range keys.Keys() {
				n++
			}
			return n > 0
		}},
		{"get a case's wrapped data key", func(t *testing.T, a *natsAttacker) bool {
			ctx, cancel := attackCtx()
			defer cancel()
			kv, err := a.js.KeyValue(ctx, keysBucket)
			if err != nil {
				return false
			}
			entry, err := kv.Get(ctx, e.dataKeys[0])
			return err == nil && len(entry.Value()) > 0
		}},
		{"get the key's message through the stream API", func(t *testing.T, a *natsAttacker) bool {
			body, _ := json.Marshal(map[string]string{"last_by_subj": keySubject(e.dataKeys[0])})
			m, err := a.request("$JS.API.STREAM.MSG.GET."+keysBucketStream, body)
			return err == nil && bytes.Contains(m.Data, []byte(`"message"`))
		}},
		{"subscribe to key writes ($KV.KONTAKT_KEYS.>)", func(t *testing.T, a *natsAttacker) bool {
			return a.caught(t, "$KV."+keysBucket+".>", func() { e.register(t, "nyckel") })
		}},
		{"subscribe to every case event (kontakt.case.>)", func(t *testing.T, a *natsAttacker) bool {
			return a.caught(t, caseSubjectPrefix+">", func() { e.register(t, "händelse") })
		}},
		{"subscribe to everything (>)", func(t *testing.T, a *natsAttacker) bool {
			return a.caught(t, ">", func() { e.register(t, "allt") })
		}},
		{"eavesdrop on kontakt's replies (_INBOX.>)", func(t *testing.T, a *natsAttacker) bool {
			return a.caught(t, "_INBOX.>", trigger(t))
		}},
		{"read the case events (consumer on KONTAKT_CASES)", readOrdered(casesStream)},
		{"read the audit trail (consumer on KONTAKT_AUDIT)", readOrdered(auditStream)},
		{"read the case numbers (consumer on KONTAKT_CASENUMBER_BLOCKS)", readOrdered(caseNumbersStream)},
		{"read the key store (consumer on KV_KONTAKT_KEYS)", readOrdered(keysBucketStream)},
		{"get a case's last event through the stream API", func(t *testing.T, a *natsAttacker) bool {
			body, _ := json.Marshal(map[string]string{"last_by_subj": caseSubject})
			m, err := a.request("$JS.API.STREAM.MSG.GET."+casesStream, body)
			return err == nil && bytes.Contains(m.Data, []byte(`"message"`))
		}},
		{"list kontakt's streams", func(t *testing.T, a *natsAttacker) bool {
			ctx, cancel := attackCtx()
			defer cancel()
			names := a.js.StreamNames(ctx)
			for n := range names.Name() {
				if n == casesStream {
					return true
				}
			}
			return false
		}},

		// Writing into the store.
		{"publish a forged event into a case stream (JetStream)", func(t *testing.T, a *natsAttacker) bool {
			return landedInCase(t, func() {
				ctx, cancel := attackCtx()
				defer cancel()
				m := nats.NewMsg(caseSubject)
				m.Header.Set(eventTypeHeader, forgedEventType)
				m.Data = []byte("forged")
				_, _ = a.js.PublishMsg(ctx, m)
			})
		}},
		{"publish a forged event into a case stream (core NATS)", func(t *testing.T, a *natsAttacker) bool {
			return landedInCase(t, func() { _ = a.nc.Publish(caseSubject, []byte("forged")); _ = a.nc.Flush() })
		}},
		{"answer an allowed request into a case stream (reply subject)", func(t *testing.T, a *natsAttacker) bool {
			return landedInCase(t, func() {
				_ = a.nc.PublishRequest("$JS.API.STREAM.INFO."+statisticsStreamName, caseSubject, nil)
				_ = a.nc.Flush()
			})
		}},
		{"push the statistics records into a case stream (deliver subject)", func(t *testing.T, a *natsAttacker) bool {
			return landedInCase(t, func() {
				cfg := fmt.Sprintf(`{"stream_name":%q,"config":{"name":"evil-push","deliver_subject":%q,"deliver_policy":"all","ack_policy":"none"}}`, statisticsStreamName, caseSubject)
				_, _ = a.request("$JS.API.CONSUMER.CREATE."+statisticsStreamName+".evil-push", []byte(cfg))
			})
		}},
		{"pull the statistics records into a case stream (next-message reply)", func(t *testing.T, a *natsAttacker) bool {
			return landedInCase(t, func() {
				cfg := fmt.Sprintf(`{"stream_name":%q,"config":{"name":"evil-pull","deliver_policy":"all","ack_policy":"none"}}`, statisticsStreamName)
				if _, err := a.request("$JS.API.CONSUMER.CREATE."+statisticsStreamName+".evil-pull", []byte(cfg)); err != nil {
					return
				}
				_ = a.nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+statisticsStreamName+".evil-pull", caseSubject, []byte(`{"batch":5,"no_wait":true}`))
				_ = a.nc.Flush()
			})
		}},
		{"create a consumer in kontakt's account through the mirror's import", func(t *testing.T, a *natsAttacker) bool {
			cfg := fmt.Sprintf(`{"stream_name":%q,"config":{"name":"evil-alias","deliver_subject":%q,"deliver_policy":"all","ack_policy":"none","filter_subject":"kontakt.stats.>"}}`, statisticsStreamName, caseSubject)
			landed := landedInCase(t, func() {
				_, _ = a.request("$JS.KONTAKT.API.CONSUMER.CREATE."+statisticsStreamName+".evil-alias.kontakt.stats.>", []byte(cfg))
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := e.svc.Stream(ctx, statisticsStreamName)
			require.NoError(t, err)
			_, err = s.Consumer(ctx, "evil-alias")
			return landed || err == nil
		}},
		{"publish a forged statistics record", func(t *testing.T, a *natsAttacker) bool {
			before := e.streamInfo(t, statisticsStreamName).State.LastSeq
			ctx, cancel := attackCtx()
			defer cancel()
			_, _ = a.js.Publish(ctx, "kontakt.stats.fraga", []byte(`{"statistics_id":"forged"}`))
			return e.streamInfo(t, statisticsStreamName).State.LastSeq != before
		}},
		{"overwrite a case's data key", func(t *testing.T, a *natsAttacker) bool {
			key := e.dataKeys[1]
			before := e.keyEntry(t, key)
			require.NotNil(t, before)
			ctx, cancel := attackCtx()
			defer cancel()
			if kv, err := a.js.KeyValue(ctx, keysBucket); err == nil {
				_, _ = kv.Put(ctx, key, []byte("forged"))
			}
			after := e.keyEntry(t, key)
			return after == nil || after.Revision() != before.Revision()
		}},
		{"purge a case's data key (KV purge marker)", func(t *testing.T, a *natsAttacker) bool {
			key := e.dataKeys[2]
			require.NotNil(t, e.keyEntry(t, key))
			ctx, cancel := attackCtx()
			defer cancel()
			if kv, err := a.js.KeyValue(ctx, keysBucket); err == nil {
				_ = kv.Purge(ctx, key)
			}
			return e.keyEntry(t, key) == nil
		}},
		{"purge a case's data key (stream purge by subject)", func(t *testing.T, a *natsAttacker) bool {
			key := e.dataKeys[3]
			require.NotNil(t, e.keyEntry(t, key))
			body, _ := json.Marshal(map[string]string{"filter": keySubject(key)})
			_, _ = a.request("$JS.API.STREAM.PURGE."+keysBucketStream, body)
			return e.keyEntry(t, key) == nil
		}},
		{"purge a case's events", func(t *testing.T, a *natsAttacker) bool {
			before := e.streamInfo(t, casesStream).State.Msgs
			body, _ := json.Marshal(map[string]string{"filter": caseSubject})
			_, _ = a.request("$JS.API.STREAM.PURGE."+casesStream, body)
			return e.streamInfo(t, casesStream).State.Msgs < before
		}},
		// The server refuses to lift deny_delete and deny_purge; an age
		// limit empties a stream all the same.
		{"let the statistics expire (stream update, max age 1s)", expire(statisticsStreamName)},
		{"let the audit trail expire (stream update, max age 1s)", expire(auditStream)},
		{"create a stream in kontakt's account", func(t *testing.T, a *natsAttacker) bool {
			ctx, cancel := attackCtx()
			defer cancel()
			_, _ = a.js.CreateStream(ctx, jetstream.StreamConfig{Name: attackerStreamName, Subjects: []string{"evil.>"}})
			return e.streamInfo(t, attackerStreamName) != nil
		}},
		{"create a durable consumer on the case events", func(t *testing.T, a *natsAttacker) bool {
			actx, acancel := attackCtx()
			defer acancel()
			_, _ = a.js.CreateOrUpdateConsumer(actx, casesStream, jetstream.ConsumerConfig{Durable: "evil"})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := e.svc.Stream(ctx, casesStream)
			require.NoError(t, err)
			_, err = s.Consumer(ctx, "evil")
			return err == nil
		}},
		{"delete the statistics stream", deleteStream(statisticsStreamName)},
		{"delete the audit stream", deleteStream(auditStream)},
		{"delete the retention ledger stream", deleteStream(retentionLedgerStream)},
		{"delete the data key bucket", deleteStream(keysBucketStream)},
		{"delete the case events stream", deleteStream(casesStream)},
	}
}

// TestEmbeddedNATSPortNeedsCredentials: with nats.embedded_listen set,
// nobody connects without a key kontakt made; the analyst reads the
// statistics records (nats CLI, as the README says, and an ordered
// consumer) and can do nothing else; the key files are private; kontakt
// keeps working.
func TestEmbeddedNATSPortNeedsCredentials(t *testing.T) {
	k := Start(t, Options{EmbeddedNATS: true, ExtraConfig: routingQueues})
	conn := k.Dial(t)
	e := &natsAuthEnv{
		k: k, ic: intakev1.NewIntakeServiceClient(conn), rc: routingv1.NewRoutingServiceClient(conn),
		agent: k.Token(t, "anna", "agent"), super: k.Token(t, "sara", "supervisor"),
		svc: natsInspector(t, k),
	}

	// (e) kontakt itself works through its own, authenticated connection.
	e.caseID = e.register(t, "Sophämtning")
	got := e.readCase(t, e.caseID)
	require.Equal(t, "Sven Svensson", got.GetCase().GetPersonalData().GetContact().GetName())
	// More cases, and so more key records, to attack: one each.
	for _, subject := range []string{"Gatubelysning", "Parkering", "Snöröjning"} {
		e.readCase(t, e.register(t, subject))
	}
	require.True(t, eventually(30*time.Second, func() bool {
		info := e.streamInfo(t, statisticsStreamName)
		return info != nil && info.State.Msgs > 0
	}), "the case's statistics record")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := e.svc.KeyValue(ctx, keysBucket)
	require.NoError(t, err)
	keys, err := kv.ListKeys(ctx)
	require.NoError(t, err)
	for key := range keys.Keys() {
		e.dataKeys = append(e.dataKeys, key)
	}
	require.GreaterOrEqual(t, len(e.dataKeys), 4, "data keys to natsAttack")

	// (d) the keys kontakt made are readable by its user only.
	t.Run("credential files are private", func(t *testing.T) {
		dir := k.NATSCredentialsDir()
		info, err := os.Stat(dir)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o700), info.Mode().Perm(), dir)
		for _, f := range []string{"service.nk", "analyst.nk", "analyst.json"} {
			info, err := os.Stat(filepath.Join(dir, f))
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), f)
		}
		// Each holds a user seed, which kontakt never writes to its log.
		for _, f := range []string{"service.nk", "analyst.nk"} {
			kp, err := nkeyFromFile(filepath.Join(dir, f))
			require.NoError(t, err, f)
			seed, err := kp.Seed()
			require.NoError(t, err)
			require.NotContains(t, k.stderr.String(), string(seed), "the seed of %s in kontakt's log", f)
		}
	})

	tried, letIn := 0, []string{}
	record := func(name string, in bool) {
		tried++
		if in {
			letIn = append(letIn, name)
		}
	}

	// (a), (b) nobody connects without a key kontakt made.
	stranger, err := nkeys.CreateUser()
	require.NoError(t, err)
	strangerPub, err := stranger.PublicKey()
	require.NoError(t, err)
	analystPub := ""
	if kp, err := nkeyFromFile(filepath.Join(k.NATSCredentialsDir(), "analyst.nk")); err == nil {
		analystPub, _ = kp.PublicKey()
	}
	for _, c := range []struct {
		name string
		opts []nats.Option
	}{
		{"connect without credentials", nil},
		{"connect with a guessed user and password", []nats.Option{nats.UserInfo("kontakt", "kontakt")}},
		{"connect with a guessed token", []nats.Option{nats.Token("kontakt")}},
		{"connect with an unknown nkey", []nats.Option{nats.Nkey(strangerPub, stranger.Sign)}},
		{"connect as the analyst without the analyst's seed", []nats.Option{nats.Nkey(analystPub, stranger.Sign)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if strings.HasSuffix(c.name, "seed") && analystPub == "" {
				t.Skip("no analyst key to impersonate on this binary")
			}
			nc, err := nats.Connect("nats://"+k.NATSAddr, append(c.opts, nats.NoReconnect())...)
			if nc != nil {
				nc.Close()
			}
			record(c.name, err == nil)
			require.ErrorIs(t, err, nats.ErrAuthorization)
		})
	}

	// (c) the analyst reads the statistics records, as the README says.
	t.Run("analyst reads the statistics with the nats CLI", func(t *testing.T) {
		// The command `kontakt nats credentials` prints, as written (plus
		// --raw and --count, so that it ends).
		code, printed := runKontakt(t, "nats", "credentials", "--config", k.Config)
		require.Equal(t, 0, code, printed)
		var args []string
		for _, line := range strings.Split(printed, "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "nats "); ok {
				args = strings.Fields(strings.ReplaceAll(rest, "'", ""))
			}
		}
		require.Equal(t, []string{"--context", k.AnalystNATSContext(), "sub", "kontakt.stats.>", "--stream", statisticsStreamName, "--all"}, args, printed)
		count := e.streamInfo(t, statisticsStreamName).State.Msgs
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, natscli(t), append(args, "--raw", "--count", fmt.Sprint(count))...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		records := 0
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 || line[0] != '{' {
				continue
			}
			var rec statisticsv1.StatisticsRecord
			require.NoError(t, protojson.Unmarshal(line, &rec), "%s", line)
			require.NotEmpty(t, rec.GetStatisticsId())
			records++
		}
		require.Equal(t, int(count), records, "every record of the statistics stream: %s", out)
	})
	analystOpt, analystErr := nats.NkeyOptionFromSeed(filepath.Join(k.NATSCredentialsDir(), "analyst.nk"))
	t.Run("analyst reads the statistics with an ordered consumer", func(t *testing.T) {
		require.NoError(t, analystErr)
		nc, err := nats.Connect("nats://"+k.NATSAddr, analystOpt, nats.NoReconnect())
		require.NoError(t, err)
		defer nc.Close()
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := js.OrderedConsumer(ctx, statisticsStreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"kontakt.stats.>"}})
		require.NoError(t, err)
		m, err := c.Next(jetstream.FetchMaxWait(10 * time.Second))
		require.NoError(t, err)
		var rec statisticsv1.StatisticsRecord
		require.NoError(t, protojson.Unmarshal(m.Data(), &rec))
		require.NotEmpty(t, rec.GetStatisticsId())
	})

	// (c) and nothing else: every attack of the issue and more, as the
	// analyst (or, on a binary that made no analyst, as a stranger).
	opts := []nats.Option{nats.Name("natsauth-natsAttacker"), nats.NoReconnect()}
	if analystErr == nil {
		opts = append(opts, analystOpt)
	} else {
		t.Logf("no analyst key (%v): attacking without credentials", analystErr)
	}
	nc, err := nats.Connect("nats://"+k.NATSAddr, opts...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	ajs, err := jetstream.New(nc)
	require.NoError(t, err)
	a := &natsAttacker{nc: nc, js: ajs}
	for _, at := range e.attacks() {
		t.Run(at.name, func(t *testing.T) {
			in := at.try(t, a)
			record(at.name, in)
			require.False(t, in, "let in: %s", at.name)
		})
	}

	// (e) and kontakt still works, the case's personal data included.
	t.Run("kontakt still works after the attacks", func(t *testing.T) {
		got := e.readCase(t, e.caseID)
		require.Equal(t, "Sven Svensson", got.GetCase().GetPersonalData().GetContact().GetName())
		id := e.register(t, "Efteråt")
		require.NotEmpty(t, e.readCase(t, id).GetCase().GetPersonalData().GetContact().GetName())
	})
	t.Run("the analyst still reads the statistics after the attacks", func(t *testing.T) {
		require.NoError(t, analystErr)
		want := e.streamInfo(t, statisticsStreamName).State.Msgs
		nc, err := nats.Connect("nats://"+k.NATSAddr, analystOpt, nats.NoReconnect())
		require.NoError(t, err)
		defer nc.Close()
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		require.True(t, eventually(30*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := js.Stream(ctx, statisticsStreamName)
			return err == nil && s.CachedInfo().State.Msgs == want
		}), "the analysts' copy has every record, %d", want)
	})
	t.Logf("attacks tried: %d, let in: %d %q", tried, len(letIn), letIn)
	require.Empty(t, letIn)
}

func nkeyFromFile(path string) (nkeys.KeyPair, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return nkeys.FromSeed(bytes.TrimSpace(data))
}
