package backup

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	natsgo "github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/host"
)

// writePart writes files into dir and a manifest listing them, as Run
// does.
func writePart(t *testing.T, dir string, files map[string]string) *Manifest {
	t.Helper()
	m := &Manifest{Format: Format, BackupID: "B1", Part: PartData}
	for name, content := range files {
		w, err := createFile(filepath.Join(dir, filepath.FromSlash(name)), nil)
		require.NoError(t, err)
		_, err = w.Write([]byte(content))
		require.NoError(t, err)
		require.NoError(t, w.Close())
		fe, err := w.entry(dir)
		require.NoError(t, err)
		m.Files = append(m.Files, fe)
	}
	require.NoError(t, writeManifest(dir, m))
	return m
}

func TestVerifyRefusesAnyChange(t *testing.T) {
	files := map[string]string{
		"streams/KONTAKT_CASES/stream.arc.s2": "case events",
		"streams/KONTAKT_CASES/backup.json":   `{"config":{}}`,
		"readmodels/routing/readmodel.db":     "routing",
	}
	tests := []struct {
		name    string
		change  func(t *testing.T, dir string)
		message string
	}{
		{"untouched", func(*testing.T, string) {}, ""},
		{"a flipped byte", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "streams", "KONTAKT_CASES", "stream.arc.s2")
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			b[3] ^= 0x20
			require.NoError(t, os.WriteFile(p, b, 0o600))
		}, "SHA-256"},
		{"a file cut short", func(t *testing.T, dir string) {
			require.NoError(t, os.Truncate(filepath.Join(dir, "readmodels", "routing", "readmodel.db"), 3))
		}, "3 bytes"},
		{"a file missing", func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, "streams", "KONTAKT_CASES", "backup.json")))
		}, "lacks streams/KONTAKT_CASES/backup.json"},
		{"a file slipped in", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "readmodels", "routing", "extra.db"), []byte("x"), 0o600))
		}, "does not list"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writePart(t, dir, files)
			tc.change(t, dir)
			m, err := ReadManifest(dir)
			require.NoError(t, err)
			var read int64
			err = Verify(dir, m, func(n int64) { read += n })
			if tc.message == "" {
				require.NoError(t, err)
				require.Equal(t, int64(len("case events")+len(`{"config":{}}`)+len("routing")), read)
				return
			}
			require.ErrorIs(t, err, ErrVerify)
			require.ErrorContains(t, err, tc.message)
		})
	}
}

func TestManifestRefusesForeignPaths(t *testing.T) {
	dir := t.TempDir()
	m := writePart(t, dir, map[string]string{"a": "x"})
	m.Files[0].Path = "../a"
	require.ErrorIs(t, Verify(dir, m, nil), ErrVerify)

	require.NoError(t, os.WriteFile(filepath.Join(dir, ManifestFile), []byte(`{"format":"other/9"}`), 0o600))
	_, err := ReadManifest(dir)
	require.ErrorIs(t, err, ErrVerify)
	_, err = ReadManifest(t.TempDir())
	require.ErrorIs(t, err, ErrVerify, "a directory without a manifest is no backup (or an unfinished one)")
}

// TestRestoreRefusesANonEmptyDataDirectory: nothing is started, opened or
// written in a data directory that holds anything (a running server's
// least of all).
func TestRestoreRefusesANonEmptyDataDirectory(t *testing.T) {
	from := t.TempDir()
	data := writePart(t, from, map[string]string{"streams/KONTAKT_CASES/backup.json": "{}"})
	keysFrom := DefaultKeysDir(from)
	require.NoError(t, os.MkdirAll(keysFrom, 0o700))
	keys := *data
	keys.Part, keys.Files = PartKeys, nil
	require.NoError(t, writeManifest(keysFrom, &keys))

	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	marker := filepath.Join(cfg.DataDir, "nats")
	require.NoError(t, os.Mkdir(marker, 0o750))
	opened := false
	open := func(context.Context, config.Config, func(context.Context, *natsgo.Conn) error, func(context.Context, *host.Host) error) (*host.Host, error) {
		opened = true
		return nil, nil
	}
	_, err := Restore(t.Context(), cfg, func(string) (string, bool) { return "", false }, open, RestoreOptions{From: from}, nil)
	require.ErrorIs(t, err, ErrTarget)
	require.ErrorContains(t, err, "never overwrites a data directory")
	require.False(t, opened)
	entries, err := os.ReadDir(cfg.DataDir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "the restore wrote into the directory it refused")

	// The keys of another backup are refused too.
	keys.BackupID = "B2"
	require.NoError(t, writeManifest(keysFrom, &keys))
	cfg.DataDir = filepath.Join(t.TempDir(), "new")
	_, err = Restore(t.Context(), cfg, func(string) (string, bool) { return "", false }, open, RestoreOptions{From: from}, nil)
	require.ErrorIs(t, err, ErrVerify)
	require.ErrorContains(t, err, "belong to backup B2")
	require.False(t, opened)
}

func TestBackupDirectories(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "b1")
	gotOut, gotKeys, err := prepareDirs(out, "")
	require.NoError(t, err)
	require.Equal(t, out, gotOut)
	require.Equal(t, out+".keys", gotKeys, "the keys go next to the data, not into it")
	for _, d := range []string{gotOut, gotKeys} {
		info, err := os.Stat(d)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o700), info.Mode().Perm())
	}
	// Keys inside the data, or the other way round, are refused.
	_, _, err = prepareDirs(filepath.Join(root, "b2"), filepath.Join(root, "b2", "keys"))
	require.ErrorContains(t, err, "apart")
	_, _, err = prepareDirs(filepath.Join(root, "b3", "data"), filepath.Join(root, "b3"))
	require.ErrorContains(t, err, "apart")
	// A backup never overwrites another.
	require.NoError(t, os.WriteFile(filepath.Join(out, "x"), nil, 0o600))
	_, _, err = prepareDirs(out, filepath.Join(root, "k"))
	require.ErrorIs(t, err, ErrTarget)
}

func TestStreamOrder(t *testing.T) {
	got, err := streamOrder([]string{"KONTAKT_STATS", KeyStream, "KONTAKT_AUDIT", "KONTAKT_CASES", "KV_KONTAKT_IDEMPOTENCY", "KONTAKT_RETENTION_LEDGER", "KONTAKT_CASENUMBER_BLOCKS"})
	require.NoError(t, err)
	require.Equal(t, []string{
		"KV_KONTAKT_IDEMPOTENCY", "KONTAKT_CASES",
		"KONTAKT_AUDIT", "KONTAKT_CASENUMBER_BLOCKS", "KONTAKT_RETENTION_LEDGER", "KONTAKT_STATS",
		KeyStream,
	}, got, "idempotency before the cases, case numbers and the rest after, the keys last")
	_, err = streamOrder([]string{"KONTAKT_CASES"})
	require.ErrorContains(t, err, KeyStream)
}

func TestSupported(t *testing.T) {
	cfg := config.Default()
	require.NoError(t, CheckSupported(cfg))
	cfg.NATS.URL = "nats://a:4222"
	require.ErrorIs(t, CheckSupported(cfg), ErrUnsupported)
	cfg = config.Default()
	cfg.EventStore.Backend = "esdb"
	require.ErrorIs(t, CheckSupported(cfg), ErrUnsupported)
}
