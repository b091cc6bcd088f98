package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

const queuesConfig = `
cors:
  allowed_origins: ["https://agent.kommun.example"]
limits:
  max_request_bytes: 65536
routing:
  queues:
    - {name: kontaktcenter, title: Kontaktcenter, members: [anna]}
    - {name: felanmalan, title: Felanmälan}
    - {name: bygglov, title: Bygglov, department: stadsbyggnad}
`

func TestGrpcurlListShowsEveryService(t *testing.T) {
	k := Start(t, Options{})
	out, err := exec.Command(binary(t, "grpcurl"), "-plaintext", k.Addr, "list").CombinedOutput()
	require.NoError(t, err, string(out))
	for _, svc := range []string{
		"kontakt.intake.v1.IntakeService",
		"kontakt.routing.v1.RoutingService",
		"kontakt.retention.v1.RetentionService",
		"kontakt.statistics.v1.StatisticsService",
		"grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection",
	} {
		require.Contains(t, strings.Fields(string(out)), svc)
	}
	// grpcurl can describe an RPC from reflection alone.
	out, err = exec.Command(binary(t, "grpcurl"), "-plaintext", k.Addr, "describe", "kontakt.routing.v1.RoutingService.ListQueues").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "rpc ListQueues")
}

// listQueues calls RoutingService/ListQueues with one client kind and
// returns the queue names or the status code.
type listQueuesFunc func(t *testing.T, k *Kontakt, token string) ([]string, codes.Code)

func viaGRPC(t *testing.T, k *Kontakt, token string) ([]string, codes.Code) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	resp, err := routingv1.NewRoutingServiceClient(k.Dial(t)).ListQueues(ctx, &routingv1.ListQueuesRequest{})
	if err != nil {
		return nil, status.Code(err)
	}
	return queueNames(resp), codes.OK
}

func viaGRPCWeb(t *testing.T, k *Kontakt, token string) ([]string, codes.Code) {
	client := connect.NewClient[routingv1.ListQueuesRequest, routingv1.ListQueuesResponse](
		http.DefaultClient, "http://"+k.Addr+"/kontakt.routing.v1.RoutingService/ListQueues", connect.WithGRPCWeb())
	req := connect.NewRequest(&routingv1.ListQueuesRequest{})
	if token != "" {
		req.Header().Set("Authorization", "Bearer "+token)
	}
	req.Header().Set("Origin", "https://agent.kommun.example")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.CallUnary(ctx, req)
	if err != nil {
		return nil, codes.Code(connect.CodeOf(err))
	}
	return queueNames(resp.Msg), codes.OK
}

func queueNames(resp *routingv1.ListQueuesResponse) []string {
	var names []string
	for _, q := range resp.GetQueues() {
		names = append(names, q.GetName())
	}
	return names
}

func TestAuthenticatedRPCOverGRPCAndGRPCWeb(t *testing.T) {
	k := Start(t, Options{ExtraConfig: queuesConfig})
	agent := k.Token(t, "anna", "agent")
	supervisor := k.Token(t, "sara", "supervisor")
	analyst := k.Token(t, "olle", "analyst")

	clients := map[string]listQueuesFunc{"grpc": viaGRPC, "grpc-web": viaGRPCWeb}
	tests := []struct {
		name   string
		token  string
		code   codes.Code
		queues []string
	}{
		{"no token", "", codes.Unauthenticated, nil},
		{"garbage token", "not.a.jwt", codes.Unauthenticated, nil},
		{"wrong role", analyst, codes.PermissionDenied, nil},
		{"agent sees own queue", agent, codes.OK, []string{"kontaktcenter"}},
		{"supervisor sees all", supervisor, codes.OK, []string{"kontaktcenter", "felanmalan", "bygglov"}},
	}
	for clientName, call := range clients {
		for _, tt := range tests {
			t.Run(clientName+"/"+tt.name, func(t *testing.T) {
				queues, code := call(t, k, tt.token)
				require.Equal(t, tt.code, code)
				require.Equal(t, tt.queues, queues)
			})
		}
	}
}

func TestRESTJSON(t *testing.T) {
	k := Start(t, Options{ExtraConfig: queuesConfig})
	get := func(token string) (*http.Response, []byte) {
		req, err := http.NewRequest(http.MethodGet, "http://"+k.Addr+"/v1/queues", nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, body
	}
	resp, body := get(k.Token(t, "sara", "supervisor"))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var out struct {
		Queues []struct{ Name, Title string } `json:"queues"`
	}
	require.NoError(t, json.Unmarshal(body, &out))
	require.Len(t, out.Queues, 3)
	require.Equal(t, "Felanmälan", out.Queues[1].Title)

	resp, _ = get("")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestCORSPreflight(t *testing.T) {
	k := Start(t, Options{ExtraConfig: queuesConfig})
	preflight := func(origin string) http.Header {
		req, err := http.NewRequest(http.MethodOptions, "http://"+k.Addr+"/kontakt.routing.v1.RoutingService/ListQueues", nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		// Browsers send the header names lower-case and sorted.
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,x-grpc-web")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.Header
	}
	allowed := preflight("https://agent.kommun.example")
	require.Equal(t, "https://agent.kommun.example", allowed.Get("Access-Control-Allow-Origin"))
	require.Contains(t, strings.ToLower(allowed.Get("Access-Control-Allow-Headers")), "authorization")
	require.Contains(t, allowed.Get("Access-Control-Allow-Methods"), "POST")

	refused := preflight("https://evil.example")
	for name := range refused {
		require.False(t, strings.HasPrefix(strings.ToLower(name), "access-control-allow"), "refused origin got %s", name)
	}
}

func TestOversizedRequestIsRefused(t *testing.T) {
	k := Start(t, Options{ExtraConfig: queuesConfig})
	token := k.Token(t, "anna", "agent")
	big := &intakev1.RegisterCaseRequest{Case: &intakev1.CaseInput{
		Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_PHONE, Category: "ovrigt",
		ChatTranscript: strings.Repeat("a", 100_000),
	}}

	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	_, err := intakev1.NewIntakeServiceClient(k.Dial(t)).RegisterCase(ctx, big)
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "grpc: %v", err)

	client := connect.NewClient[intakev1.RegisterCaseRequest, intakev1.RegisterCaseResponse](
		http.DefaultClient, "http://"+k.Addr+"/kontakt.intake.v1.IntakeService/RegisterCase", connect.WithGRPCWeb())
	req := connect.NewRequest(big)
	req.Header().Set("Authorization", "Bearer "+token)
	_, err = client.CallUnary(context.Background(), req)
	require.Equal(t, connect.CodeResourceExhausted, connect.CodeOf(err), "grpc-web: %v", err)
}

func TestMetricsEndpoint(t *testing.T) {
	k := Start(t, Options{ExtraConfig: queuesConfig})
	_, code := viaGRPC(t, k, k.Token(t, "sara", "supervisor"))
	require.Equal(t, codes.OK, code)
	resp, err := http.Get("http://" + k.Metrics + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, string(body), `grpc_server_handled_total{grpc_code="OK",grpc_method="ListQueues"`)
}

func TestGracefulShutdownExitsZero(t *testing.T) {
	k := Start(t, Options{})
	require.NoError(t, k.Stop(t))
}

func TestStartupFailuresAreOneClearLine(t *testing.T) {
	dir := t.TempDir()
	badKey := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(badKey, []byte("listen: 127.0.0.1:1\nlisten_adress: nope\n"), 0o600))
	notAFile := filepath.Join(dir, "missing.yaml")
	fileInTheWay := filepath.Join(dir, "plainfile")
	require.NoError(t, os.WriteFile(fileInTheWay, nil, 0o600))

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { busy.Close() })

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"serve", "--no-such-flag"}, 2, "unknown flag: --no-such-flag"},
		{"unreadable config", []string{"serve", "--config", notAFile}, 1, "missing.yaml: no such file or directory"},
		{"unknown config key", []string{"serve", "--config", badKey}, 1, "line 2: unknown key listen_adress"},
		{"port in use", []string{"serve", "--data-dir", filepath.Join(dir, "d1"), "--listen", busy.Addr().String()}, 1, busy.Addr().String()},
		{"data dir not a directory", []string{"serve", "--data-dir", filepath.Join(fileInTheWay, "data"), "--listen", freeAddr(t)}, 1, "data directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := runKontakt(t, tt.args...)
			require.Equal(t, tt.code, code, out)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			require.Len(t, lines, 1, "one clear line, got:\n%s", out)
			require.True(t, strings.HasPrefix(lines[0], "kontakt: "), lines[0])
			require.Contains(t, lines[0], tt.want)
		})
	}
}

// TestDataDirWithoutWritePermission runs the binary as an unprivileged
// user (when the tests run as root, which ignores permissions) against a
// directory it may not write.
func TestDataDirWithoutWritePermission(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "readonly")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.Chmod(dir, 0o555))
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	// The temp dir's parents must be traversable by the unprivileged user.
	for p := filepath.Dir(dir); p != "/" && p != "."; p = filepath.Dir(p) {
		if st, err := os.Stat(p); err == nil && st.Mode().Perm()&0o001 == 0 && os.Geteuid() == 0 {
			require.NoError(t, os.Chmod(p, st.Mode().Perm()|0o001))
		}
	}
	cmd := exec.Command(binary(t, "kontakt"), "serve", "--data-dir", dir, "--listen", freeAddr(t))
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "expected a non-zero exit, got %v: %s", err, out.String())
	require.Equal(t, 1, ee.ExitCode())
	line := strings.TrimSpace(out.String())
	require.NotContains(t, line, "\n")
	require.Contains(t, line, "is not writable: permission denied")
}
