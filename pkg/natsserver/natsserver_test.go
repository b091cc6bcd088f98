package natsserver_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/natsserver"
)

func start(t *testing.T, cfg natsserver.Config) *natsserver.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := natsserver.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(s.Shutdown)
	return s
}

func connect(t *testing.T, s *natsserver.Server, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := s.Connect(opts...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

func TestStartDefaultsAreDurable(t *testing.T) {
	s := start(t, natsserver.Config{StoreDir: t.TempDir(), Port: natsserver.RandomPort, ServerName: "t1"})
	require.True(t, s.SyncAlways(), "sync-always must be the default")

	js, err := jetstream.New(connect(t, s))
	require.NoError(t, err)
	ctx := t.Context()
	_, err = js.AccountInfo(ctx)
	require.NoError(t, err, "JetStream must be enabled")

	// The listener is real: a plain TCP client can connect.
	require.NotEmpty(t, s.ClientURL())
	nc, err := nats.Connect(s.ClientURL())
	require.NoError(t, err)
	nc.Close()

	s.Shutdown()
	s.Shutdown() // idempotent
}

func TestSyncIntervalRelaxesDurability(t *testing.T) {
	s := start(t, natsserver.Config{StoreDir: t.TempDir(), InProcessOnly: true, SyncInterval: time.Second})
	require.False(t, s.SyncAlways())
}

func TestInProcessOnlyHasNoListener(t *testing.T) {
	s := start(t, natsserver.Config{StoreDir: t.TempDir(), InProcessOnly: true})
	require.Empty(t, s.ClientURL())
	nc := connect(t, s)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.AccountInfo(t.Context())
	require.NoError(t, err)
}

func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()

	s := start(t, natsserver.Config{StoreDir: dir, InProcessOnly: true})
	js, err := jetstream.New(connect(t, s))
	require.NoError(t, err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "R", Subjects: []string{"r.>"}, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	ack, err := js.Publish(ctx, "r.1", []byte("hello"))
	require.NoError(t, err)
	s.Shutdown()

	s2 := start(t, natsserver.Config{StoreDir: dir, InProcessOnly: true})
	js2, err := jetstream.New(connect(t, s2))
	require.NoError(t, err)
	st, err := js2.Stream(ctx, "R")
	require.NoError(t, err)
	m, err := st.GetMsg(ctx, ack.Sequence)
	require.NoError(t, err)
	require.Equal(t, "hello", string(m.Data))
}

func TestStartErrors(t *testing.T) {
	// A port that is in use: hold a listener on it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	busyPort := l.Addr().(*net.TCPAddr).Port

	// A store "directory" below a regular file cannot be created.
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))

	tests := []struct {
		name    string
		cfg     natsserver.Config
		skip    string
		wantAll []string
	}{
		{
			name:    "missing store dir",
			cfg:     natsserver.Config{InProcessOnly: true},
			wantAll: []string{"StoreDir is required"},
		},
		{
			name:    "port in use",
			cfg:     natsserver.Config{StoreDir: t.TempDir(), Port: busyPort},
			wantAll: []string{"127.0.0.1:" + strconv.Itoa(busyPort), "address already in use"},
		},
		{
			name:    "store dir below a file",
			cfg:     natsserver.Config{StoreDir: filepath.Join(file, "js"), InProcessOnly: true},
			wantAll: []string{"cannot create store directory", file},
		},
		{
			name: "store dir without write permission",
			cfg: func() natsserver.Config {
				dir := filepath.Join(t.TempDir(), "ro")
				require.NoError(t, os.Mkdir(dir, 0o500))
				return natsserver.Config{StoreDir: dir, InProcessOnly: true}
			}(),
			skip:    skipIfRoot(),
			wantAll: []string{"not writable", "ro"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip != "" {
				t.Skip(tc.skip)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			s, err := natsserver.Start(ctx, tc.cfg)
			if s != nil {
				s.Shutdown()
			}
			require.Error(t, err)
			t.Logf("error: %v", err)
			for _, want := range tc.wantAll {
				require.Contains(t, err.Error(), want)
			}
		})
	}
}

func skipIfRoot() string {
	if os.Geteuid() == 0 {
		return "running as root: permission bits do not stop root from writing"
	}
	return ""
}
