package natsserver_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/natsserver"
)

const (
	statsStream   = "STATS"
	statsSubjects = "stats.>"
)

// authServer starts a server with Auth on a random port and returns it
// with the credentials its users connect with.
func authServer(t *testing.T, storeDir string, inProcessOnly bool) (*natsserver.Server, *natsserver.Credentials) {
	t.Helper()
	creds, err := natsserver.LoadOrCreateCredentials(filepath.Join(t.TempDir(), "creds"))
	require.NoError(t, err)
	cfg := natsserver.Config{StoreDir: storeDir, Port: natsserver.RandomPort, InProcessOnly: inProcessOnly, Auth: &natsserver.Auth{
		Service: creds.Service, AnalystPublicKey: creds.AnalystPublicKey, AnalystStream: statsStream, AnalystSubjects: statsSubjects,
	}}
	return start(t, cfg), creds
}

func nkeyOption(t *testing.T, seedFile string) nats.Option {
	t.Helper()
	opt, err := nats.NkeyOptionFromSeed(seedFile)
	require.NoError(t, err)
	return opt
}

func TestAuthRefusesClientsWithoutTheirKey(t *testing.T) {
	s, _ := authServer(t, t.TempDir(), false)
	stranger, err := nkeys.CreateUser()
	require.NoError(t, err)
	strangerPub, err := stranger.PublicKey()
	require.NoError(t, err)
	for name, opts := range map[string][]nats.Option{
		"anonymous":         nil,
		"user and password": {nats.UserInfo("kontakt", "kontakt")},
		"token":             {nats.Token("kontakt")},
		"unknown nkey":      {nats.Nkey(strangerPub, stranger.Sign)},
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := nats.Connect(s.ClientURL(), append(opts, nats.NoReconnect())...)
			if nc != nil {
				nc.Close()
			}
			require.ErrorIs(t, err, nats.ErrAuthorization)
		})
	}
}

func TestAuthServiceUserHasEveryRight(t *testing.T) {
	s, creds := authServer(t, t.TempDir(), false)
	ctx := t.Context()
	for name, nc := range map[string]*nats.Conn{
		"in process": connect(t, s),
		"over TCP":   connectURL(t, s.ClientURL(), nkeyOption(t, creds.ServiceSeedPath())),
	} {
		t.Run(name, func(t *testing.T) {
			js, err := jetstream.New(nc)
			require.NoError(t, err)
			stream := "S" + fmt.Sprint(len(name))
			_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{stream + ".>"}})
			require.NoError(t, err)
			_, err = js.Publish(ctx, stream+".x", []byte("x"))
			require.NoError(t, err)
			require.NoError(t, js.DeleteStream(ctx, stream))
		})
	}
}

func connectURL(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append(opts, nats.NoReconnect())...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// TestAnalystReadsTheStatisticsOnly: the analyst reads the records through
// the mirror and cannot make the server write into the service account,
// not even with the reply subject of an allowed request.
func TestAnalystReadsTheStatisticsOnly(t *testing.T) {
	s, creds := authServer(t, t.TempDir(), false)
	ctx := t.Context()
	svc, err := jetstream.New(connect(t, s))
	require.NoError(t, err)
	cases, err := svc.CreateStream(ctx, jetstream.StreamConfig{Name: "CASES", Subjects: []string{"case.>"}})
	require.NoError(t, err)
	_, err = svc.CreateStream(ctx, jetstream.StreamConfig{Name: statsStream, Subjects: []string{"stats.*"}})
	require.NoError(t, err)
	for i := range 3 {
		_, err = svc.Publish(ctx, "stats.fraga", fmt.Appendf(nil, `{"n":%d}`, i))
		require.NoError(t, err)
	}

	errs := make(chan error, 16)
	an := connectURL(t, s.ClientURL(), nkeyOption(t, creds.AnalystSeedPath()), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	ajs, err := jetstream.New(an)
	require.NoError(t, err)
	var got []string
	require.Eventually(t, func() bool {
		c, err := ajs.OrderedConsumer(ctx, statsStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{statsSubjects}})
		if err != nil {
			return false
		}
		got = got[:0]
		for {
			m, err := c.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
			if err != nil {
				break
			}
			got = append(got, string(m.Data()))
		}
		return len(got) == 3
	}, 20*time.Second, 100*time.Millisecond, "the analyst reads every record through the mirror")
	require.Equal(t, []string{`{"n":0}`, `{"n":1}`, `{"n":2}`}, got)

	// Allowed request, hostile reply subject: the answer stays in the
	// analyst's account.
	require.NoError(t, an.PublishRequest("$JS.API.STREAM.INFO."+statsStream, "case.victim", nil))
	// A consumer pushing the records into the case stream.
	_, err = an.Request("$JS.API.CONSUMER.CREATE."+statsStream+".evil", []byte(`{"stream_name":"STATS","config":{"name":"evil","deliver_subject":"case.victim","ack_policy":"none"}}`), 5*time.Second)
	require.NoError(t, err)
	// Refused outright: anything else.
	for _, subj := range []string{"case.victim", "stats.fraga", "$JS.API.STREAM.DELETE.CASES", "$JS.API.STREAM.PURGE." + statsStream, "$JS.KONTAKT.API.CONSUMER.CREATE." + statsStream + ".x.stats.>"} {
		require.NoError(t, an.Publish(subj, []byte("{}")))
		select {
		case err := <-errs:
			require.ErrorIs(t, err, nats.ErrPermissionViolation, subj)
		case <-time.After(5 * time.Second):
			t.Fatalf("publish to %s was not refused", subj)
		}
	}
	require.NoError(t, an.Flush())
	// The mirror keeps running, so anything that reached the service
	// account would be in CASES within its delivery time.
	_, err = svc.Publish(ctx, "stats.fraga", []byte(`{"n":3}`))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := ajs.Stream(ctx, statsStream)
		return err == nil && st.CachedInfo().State.Msgs == 4
	}, 10*time.Second, 50*time.Millisecond)
	info, err := cases.Info(ctx)
	require.NoError(t, err)
	require.Zero(t, info.State.Msgs, "the analyst made the server write into the service account")
	stats, err := svc.Stream(ctx, statsStream)
	require.NoError(t, err)
	require.Equal(t, uint64(4), stats.CachedInfo().State.Msgs)
}

func TestMirrorOnlyWhileListening(t *testing.T) {
	dir := t.TempDir()
	creds, err := natsserver.LoadOrCreateCredentials(filepath.Join(t.TempDir(), "creds"))
	require.NoError(t, err)
	auth := &natsserver.Auth{Service: creds.Service, AnalystPublicKey: creds.AnalystPublicKey, AnalystStream: statsStream, AnalystSubjects: statsSubjects}
	run := func(inProcessOnly bool) int {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := natsserver.Start(ctx, natsserver.Config{StoreDir: dir, Port: natsserver.RandomPort, InProcessOnly: inProcessOnly, Auth: auth})
		require.NoError(t, err)
		defer s.Shutdown()
		entries, err := os.ReadDir(filepath.Join(dir, "jetstream", natsserver.AnalystAccount, "streams"))
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		require.NoError(t, err)
		// JetStream renames a deleted stream's directory to ".<name>" and
		// removes it in the background.
		n := 0
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				n++
			}
		}
		return n
	}
	require.Equal(t, 1, run(false), "a listening server keeps the analysts' mirror")
	require.Equal(t, 0, run(true), "a server nobody can reach keeps no copy")
	require.Equal(t, 1, run(false))
}

func TestCredentialsAreCreatedOnceAndPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "creds")
	first, err := natsserver.LoadOrCreateCredentials(dir)
	require.NoError(t, err)
	info, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), info.Mode().Perm())
	for _, f := range []string{first.ServiceSeedPath(), first.AnalystSeedPath()} {
		info, err := os.Stat(f)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), f)
	}
	again, err := natsserver.LoadOrCreateCredentials(dir)
	require.NoError(t, err)
	pub1, err := first.Service.PublicKey()
	require.NoError(t, err)
	pub2, err := again.Service.PublicKey()
	require.NoError(t, err)
	require.Equal(t, pub1, pub2, "the service key is kept")
	require.Equal(t, first.AnalystPublicKey, again.AnalystPublicKey)
	require.NotEqual(t, pub1, first.AnalystPublicKey)

	// A deleted analyst key is replaced; the service key stays.
	require.NoError(t, os.Remove(first.AnalystSeedPath()))
	rotated, err := natsserver.LoadOrCreateCredentials(dir)
	require.NoError(t, err)
	require.NotEqual(t, first.AnalystPublicKey, rotated.AnalystPublicKey)
	pub3, err := rotated.Service.PublicKey()
	require.NoError(t, err)
	require.Equal(t, pub1, pub3)

	require.NoError(t, rotated.WriteAnalystContext("nats://127.0.0.1:4222"))
	info, err = os.Stat(rotated.AnalystContextPath())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	data, err := os.ReadFile(rotated.AnalystContextPath())
	require.NoError(t, err)
	require.Contains(t, string(data), `"url": "nats://127.0.0.1:4222"`)
	require.Contains(t, string(data), rotated.AnalystSeedPath())
	seed, err := os.ReadFile(rotated.AnalystSeedPath())
	require.NoError(t, err)
	require.NotContains(t, string(data), string(seed[:10]), "the context names the seed file, never the seed")
}

func TestCredentialsRefuseExposedFiles(t *testing.T) {
	for name, tc := range map[string]struct {
		file string
		mode os.FileMode
	}{
		"service seed readable by group": {natsserver.ServiceSeedFile, 0o640},
		"analyst seed readable by all":   {natsserver.AnalystSeedFile, 0o644},
		"directory writable by group":    {"", 0o770},
		"directory writable by all":      {"", 0o707},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "creds")
			_, err := natsserver.LoadOrCreateCredentials(dir)
			require.NoError(t, err)
			target := filepath.Join(dir, tc.file)
			require.NoError(t, os.Chmod(target, tc.mode))
			t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
			_, err = natsserver.LoadOrCreateCredentials(dir)
			require.ErrorIs(t, err, natsserver.ErrCredentialsExposed)
			require.ErrorContains(t, err, target)
		})
	}
	t.Run("not a seed", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "creds")
		require.NoError(t, os.MkdirAll(dir, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(dir, natsserver.ServiceSeedFile), []byte("password123\n"), 0o600))
		_, err := natsserver.LoadOrCreateCredentials(dir)
		require.ErrorContains(t, err, "does not hold an nkey seed")
		require.NotContains(t, err.Error(), "password123")
	})
}

// recorder keeps the levels and messages of the records it handles.
type recorder struct {
	mu      sync.Mutex
	records []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Level.String()+" "+rec.Message)
	return nil
}

func (r *recorder) matching(substr string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.records {
		if strings.Contains(m, substr) {
			out = append(out, m)
		}
	}
	return out
}

// A client's failed login and permission violations are the client's
// doing: warnings, never errors, in kontakt's log.
func TestClientFaultsAreWarnings(t *testing.T) {
	rec := &recorder{}
	creds, err := natsserver.LoadOrCreateCredentials(filepath.Join(t.TempDir(), "creds"))
	require.NoError(t, err)
	s := start(t, natsserver.Config{StoreDir: t.TempDir(), Port: natsserver.RandomPort, Logger: slog.New(rec), Auth: &natsserver.Auth{
		Service: creds.Service, AnalystPublicKey: creds.AnalystPublicKey, AnalystStream: statsStream, AnalystSubjects: statsSubjects,
	}})
	_, err = nats.Connect(s.ClientURL(), nats.NoReconnect())
	require.ErrorIs(t, err, nats.ErrAuthorization)
	quiet := nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
	an := connectURL(t, s.ClientURL(), nkeyOption(t, creds.AnalystSeedPath()), quiet)
	require.NoError(t, an.Publish("case.x", nil))
	_, err = an.SubscribeSync(">")
	require.NoError(t, err)
	require.NoError(t, an.Flush())
	faults := []string{"Subscription Violation", "Publish Violation", "authentication error"}
	// The server logs from its own goroutines: read the records only
	// through the recorder's lock, also for the failure message.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, m := range faults {
			assert.Len(c, rec.matching(m), 1, "%q in %v", m, rec.matching(""))
		}
	}, 10*time.Second, 20*time.Millisecond)
	for _, m := range faults {
		require.True(t, strings.HasPrefix(rec.matching(m)[0], "WARN "), rec.matching(m)[0])
	}
	require.Empty(t, rec.matching("ERROR"))
}
