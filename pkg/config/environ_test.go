package config

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckEnviron(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		wantErr string
	}{
		{name: "nothing of ours", environ: []string{"PATH=/bin", "HOME=/root"}},
		{name: "known keys", environ: []string{"KONTAKT_LISTEN=:1", "KONTAKT_NATS_URL=x", "KONTAKT_LIMITS_MAX_REQUEST_BYTES=1", "KONTAKT_MASTER_KEY=x", "KONTAKT_CONFIG=a.yaml", "KONTAKT_RETENTION_JOURNAL_DIR=/j"}},
		{name: "the Makefile's and the tests' own", environ: []string{"KONTAKT_BIN=/b", "KONTAKT_NATS_SERVER_BIN=/n", "KONTAKT_BENCH_CASES=1", "KONTAKT_CRASH_CASES=3"}},
		{name: "a misspelt key", environ: []string{"KONTAKT_LISTN=:1", "KONTAKT_LISTEN=:2"}, wantErr: "unknown environment variable KONTAKT_LISTN:"},
		{name: "every unknown one, sorted", environ: []string{"KONTAKT_Z=1", "KONTAKT_NATS_REPLICA=3"}, wantErr: "unknown environment variable KONTAKT_NATS_REPLICA, KONTAKT_Z:"},
		{name: "a list of objects has no variable", environ: []string{"KONTAKT_ROUTING_QUEUES=x"}, wantErr: "KONTAKT_ROUTING_QUEUES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckEnviron(tt.environ)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestEveryEnvNameIsAppliedByLoad(t *testing.T) {
	// Each name EnvNames gives must be one Load reads: ask Load with an
	// environment that records what it looks up.
	looked := map[string]bool{}
	_, _ = Load("", func(k string) (string, bool) { looked[k] = true; return "", false })
	for _, n := range EnvNames() {
		if n == "KONTAKT_CONFIG" || n == "KONTAKT_MASTER_KEY" || n == "KONTAKT_TOKEN" || n == "KONTAKT_DEV_FAULT" {
			continue
		}
		require.True(t, looked[n], "%s is listed but Load never reads it", n)
	}
	for n := range looked {
		if slices.Contains(EnvNames(), n) {
			continue
		}
		// A list of objects is looked up but cannot be set from a variable.
		_, err := Load("", func(k string) (string, bool) { return "x", k == n })
		require.Error(t, err, "Load applies %s but EnvNames does not list it", n)
	}
}
