package auth

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

const (
	methodCheck = "/grpc.health.v1.Health/Check"
	methodWatch = "/grpc.health.v1.Health/Watch"
)

// recorder sits behind the auth interceptor and records what a handler
// would see, proving that the principal reaches handlers and that refused
// calls never do.
type recorder struct {
	mu    sync.Mutex
	calls int
	p     Principal
	ok    bool
}

func (r *recorder) record(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.p, r.ok = FromContext(ctx)
}

func (r *recorder) seen() (calls int, p Principal, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, r.p, r.ok
}

func (r *recorder) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	r.record(ctx)
	return handler(ctx, req)
}

func (r *recorder) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	r.record(ss.Context())
	return handler(srv, ss)
}

// testServer is a real gRPC server on an in-memory listener with the health
// and reflection services behind the auth interceptor.
type testServer struct {
	conn *grpc.ClientConn
	rec  *recorder
	logs *logBuffer
}

// startServer starts the server. Its interceptor's clock is testNow(), the
// time the tests' tokens are minted at, unless opts set another.
func startServer(t *testing.T, v Verifier, p Policy, opts ...InterceptorOption) *testServer {
	t.Helper()
	logger, logs := newTestLogger()
	rec := &recorder{}
	ic := NewInterceptor(v, p, logger, append([]InterceptorOption{WithClock(fixedClock(testNow()))}, opts...)...)

	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(ic.Unary(), rec.unary),
		grpc.ChainStreamInterceptor(ic.Stream(), rec.stream),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	reflection.Register(srv)

	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &testServer{conn: conn, rec: rec, logs: logs}
}

// withAuth attaches authorization metadata values to ctx.
func withAuth(ctx context.Context, values ...string) context.Context {
	for _, v := range values {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", v)
	}
	return ctx
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestInterceptorUnary(t *testing.T) {
	k := newTestDevKey(t)
	otherKey := newTestDevKey(t)
	v := k.Verifier(fixedClock(testNow().Add(time.Minute)))

	agentTok := mint(t, k, "agent-1", RoleAgent)
	analystTok := mint(t, k, "analyst-1", RoleAnalyst)
	noRoleTok := mint(t, k, "nobody-1")
	expiredTok, err := k.Mint("agent-1", []Role{RoleAgent}, nil, "", time.Second, testNow().Add(-time.Hour))
	require.NoError(t, err)
	foreignTok := mint(t, otherKey, "agent-1", RoleAgent)

	agentOrSupervisor := StaticPolicy{methodCheck: {Roles: []Role{RoleAgent, RoleSupervisor}}}

	tests := []struct {
		name        string
		policy      Policy
		auth        []string
		wantCode    codes.Code
		wantMsg     string
		wantSubject string // "" means the handler must see no principal
		wantLog     string
	}{
		{name: "public without token", policy: PublicMethods(nil), wantCode: codes.OK},
		{name: "public ignores a bad token", policy: PublicMethods(nil), auth: []string{"Bearer garbage"}, wantCode: codes.OK},
		{name: "agent allowed", policy: agentOrSupervisor, auth: []string{"Bearer " + agentTok}, wantCode: codes.OK, wantSubject: "agent-1"},
		{name: "scheme is case-insensitive", policy: agentOrSupervisor, auth: []string{"bearer " + agentTok}, wantCode: codes.OK, wantSubject: "agent-1"},
		{name: "missing header", policy: agentOrSupervisor, wantCode: codes.Unauthenticated, wantMsg: "missing bearer token"},
		{name: "basic auth", policy: agentOrSupervisor, auth: []string{"Basic YWdlbnQ6aHVudGVyMg=="}, wantCode: codes.Unauthenticated, wantMsg: "missing bearer token"},
		{name: "bearer without token", policy: agentOrSupervisor, auth: []string{"Bearer"}, wantCode: codes.Unauthenticated, wantMsg: "missing bearer token"},
		{name: "bearer with blank token", policy: agentOrSupervisor, auth: []string{"Bearer    "}, wantCode: codes.Unauthenticated, wantMsg: "missing bearer token"},
		{name: "token without scheme", policy: agentOrSupervisor, auth: []string{agentTok}, wantCode: codes.Unauthenticated, wantMsg: "missing bearer token"},
		{name: "two authorization values", policy: agentOrSupervisor, auth: []string{"Bearer " + agentTok, "Bearer " + analystTok}, wantCode: codes.Unauthenticated, wantMsg: "missing bearer token"},
		{name: "garbage token", policy: agentOrSupervisor, auth: []string{"Bearer garbage"}, wantCode: codes.Unauthenticated, wantMsg: "invalid bearer token", wantLog: "token rejected"},
		{name: "expired token", policy: agentOrSupervisor, auth: []string{"Bearer " + expiredTok}, wantCode: codes.Unauthenticated, wantMsg: msgTokenExpired, wantLog: "expired=true"},
		{name: "token from another key", policy: agentOrSupervisor, auth: []string{"Bearer " + foreignTok}, wantCode: codes.Unauthenticated, wantMsg: "invalid bearer token", wantLog: "token rejected"},
		{name: "wrong role", policy: agentOrSupervisor, auth: []string{"Bearer " + analystTok}, wantCode: codes.PermissionDenied, wantMsg: "requires one of: agent, supervisor", wantLog: "required=\"agent, supervisor\""},
		{name: "no role", policy: agentOrSupervisor, auth: []string{"Bearer " + noRoleTok}, wantCode: codes.PermissionDenied, wantMsg: "requires one of: agent, supervisor"},
		{name: "method not in policy", policy: StaticPolicy{}, auth: []string{"Bearer " + agentTok}, wantCode: codes.PermissionDenied, wantMsg: "method not permitted"},
		{name: "method not in policy, no token", policy: StaticPolicy{}, wantCode: codes.PermissionDenied, wantMsg: "method not permitted"},
		{name: "rule without roles admits nobody", policy: StaticPolicy{methodCheck: {}}, auth: []string{"Bearer " + agentTok}, wantCode: codes.PermissionDenied, wantMsg: "method not permitted"},
		{name: "explicit rule beats public default", policy: PublicMethods(agentOrSupervisor), wantCode: codes.Unauthenticated, wantMsg: "missing bearer token"},
		{name: "explicit rule beats public default, with token", policy: PublicMethods(agentOrSupervisor), auth: []string{"Bearer " + agentTok}, wantCode: codes.OK, wantSubject: "agent-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, v, tt.policy)
			client := healthpb.NewHealthClient(ts.conn)

			resp, err := client.Check(withAuth(callCtx(t), tt.auth...), &healthpb.HealthCheckRequest{})
			st := status.Convert(err)
			require.Equal(t, tt.wantCode, st.Code(), "status: %v", st)

			calls, p, ok := ts.rec.seen()
			if tt.wantCode != codes.OK {
				require.Nil(t, resp)
				require.Equal(t, tt.wantMsg, st.Message())
				require.Zero(t, calls, "a refused call must not reach the handler")
				if tt.wantMsg == msgTokenExpired {
					requireReason(t, st, ReasonTokenExpired)
				} else {
					require.Empty(t, st.Details(), "only an expired token names a reason")
				}
			} else {
				require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
				require.Equal(t, 1, calls)
				if tt.wantSubject == "" {
					require.False(t, ok, "public calls carry no principal")
				} else {
					require.True(t, ok)
					require.Equal(t, tt.wantSubject, p.Subject)
					require.Equal(t, []Role{RoleAgent}, p.Roles)
					require.Equal(t, []string{"q-bygglov", "q-skola"}, p.Queues)
					require.Equal(t, "stadsbyggnad", p.Department)
				}
			}

			logs := ts.logs.String()
			if tt.wantLog != "" {
				require.Contains(t, logs, tt.wantLog)
			}
			for _, a := range tt.auth {
				_, tok, _ := strings.Cut(a, " ")
				if len(tok) > 20 {
					require.NotContains(t, st.Message(), tok, "the status must not echo the token")
					require.NotContains(t, logs, tok, "logs must not contain the token")
					// Not even its signature, which is what makes it usable.
					require.NotContains(t, logs, tok[strings.LastIndexByte(tok, '.')+1:])
				}
			}
		})
	}
}

func TestInterceptorStream(t *testing.T) {
	k := newTestDevKey(t)
	v := k.Verifier(fixedClock(testNow()))
	agentTok := mint(t, k, "agent-1", RoleAgent, RoleSupervisor)
	analystTok := mint(t, k, "analyst-1", RoleAnalyst)
	restricted := StaticPolicy{methodWatch: {Roles: []Role{RoleSupervisor}}}

	tests := []struct {
		name        string
		policy      Policy
		auth        []string
		wantCode    codes.Code
		wantMsg     string
		wantSubject string
	}{
		{name: "public watch", policy: PublicMethods(nil), wantCode: codes.OK},
		{name: "supervisor watches", policy: restricted, auth: []string{"Bearer " + agentTok}, wantCode: codes.OK, wantSubject: "agent-1"},
		{name: "no token", policy: restricted, wantCode: codes.Unauthenticated, wantMsg: "missing bearer token"},
		{name: "bad token", policy: restricted, auth: []string{"Bearer x.y.z"}, wantCode: codes.Unauthenticated, wantMsg: "invalid bearer token"},
		{name: "wrong role", policy: restricted, auth: []string{"Bearer " + analystTok}, wantCode: codes.PermissionDenied, wantMsg: "requires one of: supervisor"},
		{name: "not in policy", policy: StaticPolicy{}, auth: []string{"Bearer " + agentTok}, wantCode: codes.PermissionDenied, wantMsg: "method not permitted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, v, tt.policy)
			client := healthpb.NewHealthClient(ts.conn)

			stream, err := client.Watch(withAuth(callCtx(t), tt.auth...), &healthpb.HealthCheckRequest{})
			require.NoError(t, err) // stream errors arrive with the first Recv
			resp, err := stream.Recv()

			calls, p, ok := ts.rec.seen()
			if tt.wantCode != codes.OK {
				st := status.Convert(err)
				require.Equal(t, tt.wantCode, st.Code(), "status: %v", st)
				require.Equal(t, tt.wantMsg, st.Message())
				require.Zero(t, calls)
				return
			}
			require.NoError(t, err)
			require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
			require.Equal(t, 1, calls)
			if tt.wantSubject == "" {
				require.False(t, ok)
				return
			}
			require.True(t, ok, "the wrapped stream's Context must carry the principal")
			require.Equal(t, tt.wantSubject, p.Subject)
			require.Equal(t, []Role{RoleAgent, RoleSupervisor}, p.Roles)
		})
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// verifierFunc adapts a function to Verifier.
type verifierFunc func(context.Context, string) (Principal, error)

func (f verifierFunc) Verify(ctx context.Context, raw string) (Principal, error) { return f(ctx, raw) }

// TestInterceptorStreamEndsAtExpiry checks that a stream lives no longer
// than its token: it ends with Unauthenticated at the token's expiry, and
// one opened after the expiry (inside the verifier's leeway) ends at once.
func TestInterceptorStreamEndsAtExpiry(t *testing.T) {
	const lifetime = 300 * time.Millisecond
	policy := StaticPolicy{methodWatch: {Roles: []Role{RoleAgent}}}
	tests := []struct {
		name      string
		expiresIn time.Duration
	}{
		{name: "open stream ends at expiry", expiresIn: lifetime},
		{name: "expired inside the leeway ends at once", expiresIn: -10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var expires time.Time
			v := verifierFunc(func(context.Context, string) (Principal, error) {
				expires = time.Now().Add(tt.expiresIn)
				return Principal{Subject: "agent-1", Roles: []Role{RoleAgent}, ExpiresAt: expires}, nil
			})
			ts := startServer(t, v, policy, WithClock(time.Now))
			opened := time.Now()
			stream, err := healthpb.NewHealthClient(ts.conn).Watch(withAuth(callCtx(t), "Bearer x"), &healthpb.HealthCheckRequest{})
			require.NoError(t, err)
			if tt.expiresIn > 0 {
				resp, err := stream.Recv()
				require.NoError(t, err)
				require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
			}
			_, err = stream.Recv()
			ended := time.Now()
			st := status.Convert(err)
			require.Equal(t, codes.Unauthenticated, st.Code(), "status: %v", st)
			require.Equal(t, msgTokenExpired, st.Message())
			requireReason(t, st, ReasonTokenExpired)
			require.False(t, ended.Before(expires), "ended %s before the expiry", expires.Sub(ended))
			require.Less(t, ended.Sub(later(opened, expires)), 5*time.Second, "ended long after the expiry")
			require.Contains(t, ts.logs.String(), "stream ended at its token's expiry")
		})
	}
}

func TestInterceptorReflectionIsPublic(t *testing.T) {
	k := newTestDevKey(t)
	ts := startServer(t, k.Verifier(fixedClock(testNow())), PublicMethods(StaticPolicy{}))

	stream, err := reflectionpb.NewServerReflectionClient(ts.conn).ServerReflectionInfo(callCtx(t))
	require.NoError(t, err)
	require.NoError(t, stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"},
	}))
	resp, err := stream.Recv()
	require.NoError(t, err)
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	require.Contains(t, names, "grpc.health.v1.Health")
	require.NoError(t, stream.CloseSend())
	_, err = stream.Recv()
	require.True(t, errors.Is(err, io.EOF), "got %v", err)
}

// TestInterceptorOIDCWithoutKontaktRole checks the distinction the API's
// clients rely on: a valid token from the identity provider that grants no
// kontakt role is PermissionDenied (known but not allowed), not
// Unauthenticated (log in again).
func TestInterceptorOIDCWithoutKontaktRole(t *testing.T) {
	p := newIDP(t)
	v := newOIDCVerifier(t, p.config())
	ts := startServer(t, v, StaticPolicy{methodCheck: {Roles: []Role{RoleOfficer}}})
	client := healthpb.NewHealthClient(ts.conn)

	claims := p.claims()
	claims["roles"] = []string{"offline_access", "uma_authorization"}
	_, err := client.Check(withAuth(callCtx(t), "Bearer "+p.sign(t, claims)), &healthpb.HealthCheckRequest{})
	st := status.Convert(err)
	require.Equal(t, codes.PermissionDenied, st.Code(), "status: %v", st)
	require.Equal(t, "requires one of: officer", st.Message())

	_, err = client.Check(withAuth(callCtx(t), "Bearer "+p.sign(t, p.claims())), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	_, got, ok := ts.rec.seen()
	require.True(t, ok)
	require.Equal(t, "5d1c2b7e-officer", got.Subject)

	claims = p.claims()
	claims["iss"] = "https://evil.example.com"
	_, err = client.Check(withAuth(callCtx(t), "Bearer "+p.sign(t, claims)), &healthpb.HealthCheckRequest{})
	st = status.Convert(err)
	require.Equal(t, codes.Unauthenticated, st.Code())
	require.Equal(t, "invalid bearer token", st.Message(), "verification details must not reach the client")
}

func TestNewInterceptorPanicsOnMissingParts(t *testing.T) {
	k := newTestDevKey(t)
	require.Panics(t, func() { NewInterceptor(nil, StaticPolicy{}, nil) })
	require.Panics(t, func() { NewInterceptor(k.Verifier(nil), nil, nil) })
	require.NotPanics(t, func() { NewInterceptor(k.Verifier(nil), StaticPolicy{}, nil) })
}

// requireReason checks that st carries a google.rpc.ErrorInfo with reason.
func requireReason(t *testing.T, st *status.Status, reason string) {
	t.Helper()
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			require.Equal(t, reason, info.GetReason())
			require.Equal(t, "kontakt", info.GetDomain())
			return
		}
	}
	t.Fatalf("no ErrorInfo in %v", st.Details())
}
