package seal_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/blindindex"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

func envOf(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

func keyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

func writeFile(t *testing.T, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, data, mode))
	require.NoError(t, os.Chmod(p, mode)) // WriteFile's mode is subject to umask
	return p
}

func TestLoadMasterKey(t *testing.T) {
	keyA := bytes.Repeat([]byte{0xa1}, 32)
	keyB := bytes.Repeat([]byte{0xb2}, 32)
	b64A := base64.StdEncoding.EncodeToString(keyA)
	b64B := base64.StdEncoding.EncodeToString(keyB)
	dir := t.TempDir()
	fileB64 := writeFile(t, dir, "b64", []byte(b64B+"\n"), 0o600)
	fileRaw := writeFile(t, dir, "raw", keyB, 0o400)
	fileGroup := writeFile(t, dir, "group", []byte(b64B), 0o640)
	fileWorld := writeFile(t, dir, "world", []byte(b64B), 0o604)
	fileShort := writeFile(t, dir, "short", []byte(base64.StdEncoding.EncodeToString(keyB[:16])), 0o600)
	fileJunk := writeFile(t, dir, "junk", []byte("not a key at all!"), 0o600)
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name    string
		path    string
		env     map[string]string
		dev     bool
		wantKey []byte
		wantErr error
		errText string
	}{
		{name: "env", env: map[string]string{"KONTAKT_MASTER_KEY": b64A}, wantKey: keyA},
		{name: "env with whitespace, url alphabet, no padding", env: map[string]string{"KONTAKT_MASTER_KEY": " " + base64.RawURLEncoding.EncodeToString(keyA) + "\n"}, wantKey: keyA},
		{name: "env wins over file", path: fileB64, env: map[string]string{"KONTAKT_MASTER_KEY": b64A}, wantKey: keyA},
		{name: "env not base64", env: map[string]string{"KONTAKT_MASTER_KEY": "%%%"}, wantErr: seal.ErrInvalidMasterKey},
		{name: "env too short", env: map[string]string{"KONTAKT_MASTER_KEY": base64.StdEncoding.EncodeToString(keyA[:31])}, wantErr: seal.ErrInvalidMasterKey, errText: "31 bytes"},
		{name: "env set but empty", path: fileB64, env: map[string]string{"KONTAKT_MASTER_KEY": ""}, dev: true, wantErr: seal.ErrInvalidMasterKey},
		{name: "file base64", path: fileB64, wantKey: keyB},
		{name: "file raw", path: fileRaw, wantKey: keyB},
		{name: "file group-readable", path: fileGroup, wantErr: seal.ErrInvalidMasterKey, errText: "0640"},
		{name: "file world-readable", path: fileWorld, dev: true, wantErr: seal.ErrInvalidMasterKey, errText: "0604"},
		{name: "file bad length", path: fileShort, wantErr: seal.ErrInvalidMasterKey, errText: "16 bytes"},
		{name: "file junk", path: fileJunk, wantErr: seal.ErrInvalidMasterKey},
		{name: "file is a directory", path: dir, wantErr: seal.ErrInvalidMasterKey},
		{name: "production, file missing", path: missing, wantErr: seal.ErrNoMasterKey, errText: "no master key: set KONTAKT_MASTER_KEY or master_key_file"},
		{name: "production, nothing configured", wantErr: seal.ErrNoMasterKey, errText: "no master key: set KONTAKT_MASTER_KEY or master_key_file"},
		{name: "development, no path", dev: true, wantErr: seal.ErrNoMasterKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := seal.LoadMasterKey(tc.path, envOf(tc.env), tc.dev)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				require.Contains(t, err.Error(), tc.errText)
				require.True(t, k.IsZero())
				for _, secret := range []string{b64A, b64B, string(keyA), string(keyB)} {
					require.NotContains(t, err.Error(), secret, "error leaks key material")
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, keyID(tc.wantKey), k.ID())
			require.False(t, k.Created())
			require.NotEmpty(t, k.Origin())
		})
	}
	_, err := os.Stat(missing)
	require.ErrorIs(t, err, os.ErrNotExist, "production mode must not create a key")
}

func TestLoadMasterKeyCreatesOneInDevelopment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "keys", "master.key")
	k, err := seal.LoadMasterKey(path, nil, true)
	require.NoError(t, err)
	require.True(t, k.Created())
	require.Contains(t, k.Origin(), "created")
	require.Contains(t, k.Origin(), path)

	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	dirInfo, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), dirInfo.Mode().Perm())

	// The next start finds the same key, also in production mode.
	for _, dev := range []bool{true, false} {
		again, err := seal.LoadMasterKey(path, nil, dev)
		require.NoError(t, err)
		require.False(t, again.Created())
		require.Equal(t, k.ID(), again.ID())
	}

	// Two keys created in two places differ.
	other, err := seal.LoadMasterKey(filepath.Join(t.TempDir(), "master.key"), nil, true)
	require.NoError(t, err)
	require.NotEqual(t, k.ID(), other.ID())
}

func TestMasterKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0x5a}, 32)
	k, err := seal.NewMasterKey(raw)
	require.NoError(t, err)
	require.Equal(t, keyID(raw), k.ID())
	require.Len(t, k.ID(), 16)

	t.Run("never prints key material", func(t *testing.T) {
		raw[0] = 0 // NewMasterKey copied the key
		var logged bytes.Buffer
		slog.New(slog.NewTextHandler(&logged, nil)).Info("start", "master", k)
		wrapper := struct{ K seal.MasterKey }{k}
		outs := []string{logged.String(), fmt.Sprintf("%v %+v %#v %s %x %d %q", k, k, k, k, k, k, k),
			fmt.Sprintf("%v %+v %#v", wrapper, wrapper, &wrapper)}
		for _, out := range outs {
			require.NotContains(t, out, "5a5a")
			require.NotContains(t, out, "90 90")
			require.NotContains(t, out, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))[:8])
			require.NotContains(t, out, "ZZZZ") // 0x5a is 'Z'
		}
		require.Contains(t, fmt.Sprint(k), k.ID())
	})

	t.Run("derives keys for other uses", func(t *testing.T) {
		bi, err := k.DeriveKey(blindindex.KeyPurpose)
		require.NoError(t, err)
		require.Equal(t, blindindex.DeriveKey(bytes.Repeat([]byte{0x5a}, 32), blindindex.KeyPurpose), bi)
		_, err = k.DeriveKey("kontakt/seal/wrap/v1")
		require.Error(t, err, "the wrapping key's purpose is reserved")
		_, err = k.DeriveKey(" ")
		require.Error(t, err)
		_, err = seal.MasterKey{}.DeriveKey("x")
		require.ErrorIs(t, err, seal.ErrInvalidMasterKey)
	})

	t.Run("wrong sizes", func(t *testing.T) {
		for _, n := range []int{0, 16, 31, 33, 64} {
			_, err := seal.NewMasterKey(make([]byte, n))
			require.ErrorIs(t, err, seal.ErrInvalidMasterKey, n)
		}
	})
}
