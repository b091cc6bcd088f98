package esdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/eventstore/eventstoretest"
)

// defaultImage is the EventStoreDB image the conformance suite starts;
// KONTAKT_ESDB_IMAGE overrides it (a KurrentDB image works too).
const defaultImage = "docker.eventstore.com/eventstore/eventstore:24.10"

// skipNoDocker is the one line TestConformance skips with.
const skipNoDocker = "esdb conformance: skipped: no Docker engine here (set DOCKER_HOST to run it against an EventStoreDB container, or KONTAKT_ESDB_URL to use a running server)"

// TestConformance runs the eventstore conformance suite against a real
// EventStoreDB: the server KONTAKT_ESDB_URL names (for example
// "esdb://localhost:2113?tls=false"), or else a container started with
// testcontainers. Without either it skips.
func TestConformance(t *testing.T) {
	eventstoretest.Run(t, harness(serverURL(t)))
}

// TestConformanceFake runs the suite against the in-memory fake of
// fake_test.go, through the real client library and gRPC. It checks the
// store's logic against the fake's model of EventStoreDB, not EventStoreDB.
func TestConformanceFake(t *testing.T) {
	t.Run("idempotent server", func(t *testing.T) {
		t.Parallel()
		eventstoretest.Run(t, harness(startFake(t).url()))
	})
	t.Run("server without idempotence", func(t *testing.T) {
		// Retries get WrongExpectedVersion, so the store's own check after
		// a conflict is what recognises them.
		t.Parallel()
		f := startFake(t)
		f.db.noIdempotence = true
		eventstoretest.Run(t, harness(f.url()))
	})
	t.Run("server reporting the current revision on retries", func(t *testing.T) {
		t.Parallel()
		f := startFake(t)
		f.db.idempotentReportsCurrent = true
		eventstoretest.Run(t, harness(f.url()))
	})
}

// harness adapts a server at url. Every store gets a stream prefix of its
// own, which isolates the stores of parallel subtests on one server: a
// store only reads, and subscribes to, the streams under its prefix.
func harness(url string) eventstoretest.Harness {
	return eventstoretest.Harness{
		NewStore: func(t *testing.T) eventstore.Store {
			s, err := New(Config{URL: url, StreamPrefix: "t" + randomHex(t, 6) + "-"})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
		SimulateLostAck: func(t *testing.T, st eventstore.Store, stream string, expected eventstore.ExpectedRevision, ev eventstore.Event) {
			simulateLostAck(t, st.(*Store), stream, expected, ev)
		},
		// EventStoreDB's idempotence on exact expectations does not expire,
		// and Any is checked by the store itself: no window to wait past.
		DuplicateWindow: 0,
	}
}

// simulateLostAck writes ev the way Append would, through the client
// directly, and ignores the acknowledgement.
func simulateLostAck(t *testing.T, s *Store, stream string, expected eventstore.ExpectedRevision, ev eventstore.Event) {
	t.Helper()
	ctx := t.Context()
	name, err := s.streamName(stream)
	require.NoError(t, err)
	data, err := eventData(ev)
	require.NoError(t, err)
	exp, _ := expectedRevision(expected)
	if expected.IsAny() {
		// Append turns Any into an exact expectation on the last event.
		last, err := s.readOne(ctx, name, esdbclient.Backwards, esdbclient.End{})
		require.NoError(t, err)
		exp = esdbclient.NoStream{}
		if last != nil {
			exp = esdbclient.StreamRevision{Value: last.EventNumber}
		}
	}
	err = s.pool.call(ctx, s.cfg.Timeout, func(ctx context.Context, c *esdbclient.Client) error {
		_, err := c.AppendToStream(ctx, name, esdbclient.AppendToStreamOptions{ExpectedRevision: exp}, data)
		return err
	})
	require.NoError(t, err)
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// serverURL returns KONTAKT_ESDB_URL, or starts an EventStoreDB container
// and returns its URL, or skips the test when there is no Docker engine.
func serverURL(t *testing.T) string {
	t.Helper()
	if u := os.Getenv("KONTAKT_ESDB_URL"); u != "" {
		return u
	}
	if !dockerHealthy() {
		t.Skip(skipNoDocker)
	}
	image := os.Getenv("KONTAKT_ESDB_IMAGE")
	if image == "" {
		image = defaultImage
	}
	env := "EVENTSTORE_"
	if strings.Contains(strings.ToLower(image), "kurrent") {
		env = "KURRENTDB_"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ctr, err := testcontainers.Run(ctx, image,
		testcontainers.WithEnv(map[string]string{
			// The settings of EventStoreDB's own docker-compose examples,
			// without projections, on an in-memory database.
			env + "CLUSTER_SIZE":               "1",
			env + "INSECURE":                   "true",
			env + "RUN_PROJECTIONS":            "None",
			env + "START_STANDARD_PROJECTIONS": "false",
			env + "MEM_DB":                     "true",
		}),
		testcontainers.WithExposedPorts("2113/tcp"),
		testcontainers.WithWaitStrategy(wait.ForHTTP("/health/live").WithPort("2113/tcp").
			WithStatusCodeMatcher(func(code int) bool { return code == 200 || code == 204 }).
			WithStartupTimeout(3*time.Minute)),
	)
	testcontainers.CleanupContainer(t, ctr)
	require.NoError(t, err, "start %s", image)
	endpoint, err := ctr.PortEndpoint(ctx, "2113/tcp", "")
	require.NoError(t, err)
	return "esdb://" + endpoint + "?tls=false"
}

// dockerHealthy reports whether a Docker engine answers. It looks for one
// before asking testcontainers, which would otherwise spend time (and log)
// discovering that there is none.
func dockerHealthy() (ok bool) {
	if !dockerConfigured() {
		return false
	}
	defer func() {
		if recover() != nil { // testcontainers panics on some set-ups.
			ok = false
		}
	}()
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.Health(ctx) == nil // Health closes the provider.
}

// dockerConfigured reports whether a Docker host is configured or a Docker
// (or Podman) socket exists in one of the usual places.
func dockerConfigured() bool {
	if os.Getenv("DOCKER_HOST") != "" {
		return true
	}
	home, _ := os.UserHomeDir()
	candidates := []string{"/var/run/docker.sock", "/run/docker.sock", "/run/podman/podman.sock"}
	if home != "" {
		candidates = append(candidates,
			filepath.Join(home, ".docker", "run", "docker.sock"),
			filepath.Join(home, ".docker", "desktop", "docker.sock"),
			filepath.Join(home, ".testcontainers.properties"))
	}
	if xdg := os.Getenv("XDG_RUNTIME_DIR"); xdg != "" {
		candidates = append(candidates, filepath.Join(xdg, "docker.sock"), filepath.Join(xdg, "podman", "podman.sock"))
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return true
		}
	}
	return false
}
