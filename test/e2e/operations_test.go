package e2e

// What an operator meets first (issue 17): the command line's exit codes
// and version, the refusals that must come before anything is created or
// opened, and the health endpoints an orchestrator probes.

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
)

func TestCommandLineExitCodesAndVersion(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{name: "unknown command", args: []string{"foo"}, wantCode: 2, wantOut: `unknown command "foo" for "kontakt"`},
		{name: "unknown subcommand of a group", args: []string{"retention", "bogus"}, wantCode: 2, wantOut: `unknown command "bogus" for "kontakt retention"`},
		{name: "argument a command does not take", args: []string{"serve", "now"}, wantCode: 2, wantOut: `unknown command "now" for "kontakt serve"`},
		{name: "unknown flag", args: []string{"serve", "--bogus"}, wantCode: 2, wantOut: "unknown flag: --bogus"},
		{name: "--version", args: []string{"--version"}, wantCode: 0, wantOut: "nats-server 2."},
		{name: "version", args: []string{"version"}, wantCode: 0, wantOut: "data format 1"},
		{name: "version as JSON", args: []string{"version", "--json"}, wantCode: 0, wantOut: `"data_format": 1`},
		{name: "help", args: []string{"--help"}, wantCode: 0, wantOut: "Available Commands"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := runKontaktIn(t, dir, nil, tt.args...)
			require.Equal(t, tt.wantCode, code, out)
			require.Contains(t, out, tt.wantOut)
		})
	}
	// The Makefile writes the commit in: a binary built by `make build`
	// names the commit it was built from.
	_, out := runKontaktIn(t, dir, nil, "version", "--json")
	require.NotContains(t, out, `"commit": "unknown"`, "built without the Makefile's commit stamp: %s", out)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "no command above may create anything")
}

func TestTokenNeverCreatesASigningKeyOfItsOwn(t *testing.T) {
	k := Start(t, Options{})
	elsewhere := t.TempDir()

	// Run from another folder without naming the server's data directory:
	// before, this created ./data with a new key and minted a token the
	// server refused.
	code, out := runKontaktIn(t, elsewhere, nil, "token", "--subject", "anna", "--role", "agent")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "no development signing key at data/dev-signing-key.pem")
	require.Contains(t, out, "--data-dir")
	_, err := os.Stat(filepath.Join(elsewhere, "data"))
	require.ErrorIs(t, err, os.ErrNotExist, "token created a data directory")

	// Named, it mints with the server's key, and the server takes it.
	code, out = runKontaktIn(t, elsewhere, nil, "token", "--data-dir", k.DataDir, "--subject", "anna", "--role", "supervisor")
	require.Equal(t, 0, code, out)
	req, err := http.NewRequest(http.MethodGet, "http://"+k.Addr+"/v1/queues", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(out))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestUnknownEnvironmentVariableStopsStartUpBeforeAnythingIsCreated(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	code, out := runKontaktIn(t, dir, []string{"KONTAKT_LISTN=127.0.0.1:1"}, "serve", "--data-dir", data)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "unknown environment variable KONTAKT_LISTN")
	require.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, "one line: %s", out)
	_, err := os.Stat(data)
	require.ErrorIs(t, err, os.ErrNotExist, "nothing may be created before the configuration is valid")
}

func TestSecondProcessOnADataDirectoryRefusesAtOnce(t *testing.T) {
	k := Start(t, Options{})
	for _, args := range [][]string{
		{"serve", "--config", k.Config, "--listen", freeAddr(t)},
		{"rebuild", "routing", "--config", k.Config},
	} {
		t.Run(args[0], func(t *testing.T) {
			began := time.Now()
			code, out := runKontaktIn(t, t.TempDir(), nil, args...)
			require.Equal(t, 1, code, out)
			require.Contains(t, out, "data directory in use: "+k.DataDir+" is used by another kontakt process (pid ")
			// Before, the second process opened the live JetStream store,
			// logged file-store warnings and failed on "readmodel.db: timeout".
			require.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, "one line, nothing opened first: %s", out)
			require.Less(t, time.Since(began), 10*time.Second)
		})
	}
	// The first server still serves.
	k.Dial(t)
	code, body := getMetricsPath(t, k, "/readyz")
	require.Equal(t, http.StatusOK, code, body)
}

func getMetricsPath(t *testing.T, k *Kontakt, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + k.Metrics + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestHealthEndpointsAndBuildInfo(t *testing.T) {
	k := Start(t, Options{})
	code, body := getMetricsPath(t, k, "/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	code, body = getMetricsPath(t, k, "/readyz")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "nats: ok\n")
	require.Contains(t, body, "projection retention: ok\n", "each read model's lag is a readiness check")
	code, body = getMetricsPath(t, k, "/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Regexp(t, `kontakt_build_info\{commit="[0-9a-f]{40}",data_format="1",goversion="go1\.[^"]+",nats_server="2\.[^"]+",version="[^"]+"\} 1`, body)
	require.Contains(t, body, `kontakt_nats_stream_messages{stream="KONTAKT_CASES"} 0`)

	// A registered case shows in the storage figures.
	ctx, cancel := withToken(k.Token(t, "anna", "agent"))
	defer cancel()
	_, err := intakev1.NewIntakeServiceClient(k.Dial(t)).RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: crashCaseInput(0)})
	require.NoError(t, err)
	_, body = getMetricsPath(t, k, "/metrics")
	require.Regexp(t, `kontakt_nats_stream_messages\{stream="KONTAKT_CASES"\} [1-9]`, body)
	require.Regexp(t, `kontakt_nats_storage_bytes [1-9]`, body)
	// The case is routed to a queue: the queue's load shows it.
	require.Eventually(t, func() bool {
		_, body = getMetricsPath(t, k, "/metrics")
		return regexp.MustCompile(`kontakt_queue_open_cases\{queue="[a-z]+"\} 1`).MatchString(body)
	}, 20*time.Second, 100*time.Millisecond, "a queue with one open case")
	require.Regexp(t, `kontakt_queue_unassigned_cases\{queue="[a-z]+"\} 1`, body)
	require.Regexp(t, `kontakt_queue_open_cases_by_status\{queue="[a-z]+",status="queued"\} 1`, body)
	require.Regexp(t, `kontakt_queue_open_cases_by_status\{queue="[a-z]+",status="assigned"\} 0`, body)
	require.Regexp(t, `kontakt_queue_open_cases_by_status\{queue="[a-z]+",status="forwarded"\} 0`, body)
	require.Regexp(t, `kontakt_queue_oldest_open_age_seconds\{queue="[a-z]+"\} `, body)
}

func TestConfigErrorsInTheFilesOwnWords(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "kontakt.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("data_dir: "+filepath.Join(dir, "data")+"\nlimits:\n  max_request_byte: 5\nshutdown_timeout: soon\n"), 0o600))
	code, out := runKontaktIn(t, dir, nil, "serve", "--config", cfg)
	require.Equal(t, 1, code, out)
	// Before: "field max_request_byte not found in type config.Limits" and
	// "cannot unmarshal !!str `soon` into time.Duration", one at a time.
	require.Contains(t, out, "line 3: unknown key limits.max_request_byte (did you mean max_request_bytes?)")
	require.Contains(t, out, `line 4: key shutdown_timeout: "soon" is not a duration`)
	require.NotContains(t, out, "config.Limits")
	require.NotContains(t, out, "time.Duration")
	_, err := os.Stat(filepath.Join(dir, "data"))
	require.ErrorIs(t, err, os.ErrNotExist, "nothing may be created before the configuration is valid")
}

func TestBadRulesOrPlanFileStopsStartUpBeforeAnythingIsCreated(t *testing.T) {
	for _, tt := range []struct{ name, key string }{
		{name: "routing rules", key: "routing:\n  rules_file: %s\n"},
		{name: "retention plan", key: "retention:\n  plan_file: %s\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			bad := filepath.Join(dir, "bad.yaml")
			require.NoError(t, os.WriteFile(bad, []byte("rules: [{{{\n"), 0o600))
			cfg := filepath.Join(dir, "kontakt.yaml")
			data := filepath.Join(dir, "data")
			body := "data_dir: " + data + "\nlisten: " + freeAddr(t) + "\nmetrics_listen: " + freeAddr(t) + "\n" + strings.Replace(tt.key, "%s", bad, 1)
			require.NoError(t, os.WriteFile(cfg, []byte(body), 0o600))
			code, out := runKontaktIn(t, dir, nil, "serve", "--config", cfg)
			require.Equal(t, 1, code, out)
			require.Contains(t, out, "bad.yaml")
			// Before: the master key, the signing key, the NATS store and
			// its credentials were made, NATS started and stopped, and only
			// then was the file read.
			require.NotContains(t, out, "nats-server")
			_, err := os.Stat(data)
			require.ErrorIs(t, err, os.ErrNotExist, "nothing may be created before the rules and the plan are valid")
		})
	}
}

// duplicateKeys returns the keys that occur more than once in one JSON
// object (a log line); encoding/json would silently keep the last.
func duplicateKeys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	tok, err := dec.Token()
	require.NoError(t, err, line)
	require.Equal(t, json.Delim('{'), tok, line)
	seen := map[string]bool{}
	var dups []string
	for dec.More() {
		k, err := dec.Token()
		require.NoError(t, err, line)
		key := k.(string)
		if seen[key] {
			dups = append(dups, key)
		}
		seen[key] = true
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip), line)
	}
	return dups
}

func TestJSONLogsHaveOneValuePerKeyAndDurationsInSeconds(t *testing.T) {
	k := Start(t, Options{ExtraConfig: "log: {format: json, level: debug}\n"})
	token := k.Token(t, "sara", "supervisor")
	req, err := http.NewRequest(http.MethodGet, "http://"+k.Addr+"/v1/queues", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.NoError(t, k.Stop(t))

	durations := 0
	for line := range strings.SplitSeq(strings.TrimSpace(k.stderr.String()), "\n") {
		// Before: the embedded NATS server's lines carried
		// component=nats and component=nats-server.
		require.Empty(t, duplicateKeys(t, line), "a key twice in %s", line)
		var fields map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &fields))
		if d, ok := fields["duration"]; ok {
			durations++
			secs, isNumber := d.(float64)
			require.True(t, isNumber, "duration is a number: %s", line)
			// Before: integer nanoseconds (a call of 2 ms logged 2000000).
			require.Less(t, secs, 60.0, "duration in seconds: %s", line)
		}
	}
	require.Positive(t, durations, "the call was logged with its duration")
}

// TestGrafanaDashboardUsesMetricsTheBinaryExports reads the dashboard
// shipped in deploy/grafana and checks that every metric its queries name
// is one the running binary exports, so a renamed metric cannot leave a
// panel silently empty.
func TestGrafanaDashboardUsesMetricsTheBinaryExports(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/grafana/kontakt.json")
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	require.NotEmpty(t, dash.Panels)

	k := Start(t, Options{})
	// Exported only where the process verifies OIDC tokens (production).
	productionOnly := map[string]bool{"kontakt_auth_jwks_fetches_total": true}
	_, body := getMetricsPath(t, k, "/metrics")
	names := regexp.MustCompile(`\b(kontakt_[a-z_]+|grpc_server_[a-z_]+)\b`)
	for _, p := range dash.Panels {
		require.NotEmpty(t, p.Targets, p.Title)
		for _, target := range p.Targets {
			for _, name := range names.FindAllString(target.Expr, -1) {
				if productionOnly[name] {
					continue
				}
				require.Regexp(t, `(?m)^`+name+`[{ ]`, body, "panel %q queries %s, which the binary does not export", p.Title, name)
			}
		}
	}
}
