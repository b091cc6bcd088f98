package cli

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
)

// fakeRetention answers SubjectAccess with one case and remembers the
// requests.
type fakeRetention struct {
	retentionv1.UnimplementedRetentionServiceServer
	mu   sync.Mutex
	reqs []*retentionv1.SubjectAccessRequest
}

const (
	fakeName  = "Östen Åberg"
	fakeEmail = "osten@example.se"
)

func (f *fakeRetention) SubjectAccess(_ context.Context, req *retentionv1.SubjectAccessRequest) (*retentionv1.SubjectAccessResponse, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, proto.Clone(req).(*retentionv1.SubjectAccessRequest))
	f.mu.Unlock()
	return &retentionv1.SubjectAccessResponse{
		GeneratedAt: timestamppb.New(time.Date(2026, 4, 2, 8, 0, 0, 0, time.UTC)),
		Cases: []*retentionv1.SubjectCase{{
			CaseNumber: "KC-2026-000009", Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_EMAIL,
			RegisteredAt: timestamppb.New(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)),
			Contact:      &casev1.ContactDetails{Name: fakeName, Email: fakeEmail},
			Reads:        []*retentionv1.SubjectAuditEntry{{Actor: "anna", Rpc: "/kontakt.routing.v1.RoutingService/GetCase"}, {Actor: "bo"}},
		}},
	}, nil
}

func (f *fakeRetention) requests() []*retentionv1.SubjectAccessRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*retentionv1.SubjectAccessRequest(nil), f.reqs...)
}

func startRetention(t *testing.T, f *fakeRetention) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	retentionv1.RegisterRetentionServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestSubjectAccessWritesPrivateFiles: the extract lands in the three
// files, readable by the caller alone in a directory of the caller's
// own, and standard output names only the files and counts.
func TestSubjectAccessWritesPrivateFiles(t *testing.T) {
	f := &fakeRetention{}
	addr := startRetention(t, f)
	out := filepath.Join(t.TempDir(), "utdrag", "osten")
	code, stdout, stderr := run(t, noEnv, "subject-access", "--data-dir", t.TempDir(), "--addr", addr, "--token", "t",
		"--email", " "+fakeEmail+" ", "--out", out, "--purpose", "begäran 2026-17")
	require.Equal(t, exitOK, code, stderr)
	require.Empty(t, stderr)
	require.Equal(t, "wrote "+filepath.Join(out, "extract.json")+", "+filepath.Join(out, "extract.html")+", "+filepath.Join(out, "extract.pdf")+
		": 1 case, 2 audit entries\n", stdout)
	require.NotContains(t, stdout, fakeEmail)

	reqs := f.requests()
	require.Len(t, reqs, 1)
	require.Equal(t, fakeEmail, reqs[0].GetSubject().GetEmail(), "blanks trimmed")
	require.Equal(t, "begäran 2026-17", reqs[0].GetPurpose())

	st, err := os.Stat(out)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	for _, name := range []string{"extract.json", "extract.html", "extract.pdf"} {
		st, err := os.Stat(filepath.Join(out, name))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), name)
	}
	html, err := os.ReadFile(filepath.Join(out, "extract.html"))
	require.NoError(t, err)
	require.Contains(t, string(html), fakeName)
	require.Contains(t, string(html), "Sökt på")
	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	require.Len(t, entries, 3, "no temporary file left behind")
}

func TestSubjectAccessIdentifierFromStdin(t *testing.T) {
	f := &fakeRetention{}
	addr := startRetention(t, f)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	_, err = w.WriteString("19710304-5675\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	saved := os.Stdin
	os.Stdin = r
	t.Cleanup(func() { os.Stdin = saved })
	out := t.TempDir()
	code, _, stderr := run(t, noEnv, "subject-access", "--data-dir", t.TempDir(), "--addr", addr, "--token", "t",
		"--identity-number", "-", "--out", out, "--format", "json")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "19710304-5675", f.requests()[0].GetSubject().GetIdentityNumber())
	_, err = os.Stat(filepath.Join(out, "extract.html"))
	require.True(t, os.IsNotExist(err), "only the JSON was asked for")
}

func TestSubjectAccessUsageErrors(t *testing.T) {
	base := []string{"subject-access", "--addr", "127.0.0.1:1", "--token", "t"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no identifier", []string{"--out", "x"}, "give exactly one of --identity-number, --email and --phone"},
		{"two identifiers", []string{"--email", "a@example.se", "--phone", "0701234567", "--out", "x"}, "exactly one"},
		{"no out", []string{"--email", "a@example.se"}, "--out DIR is required"},
		{"unknown format", []string{"--email", "a@example.se", "--out", "x", "--format", "json,docx"}, `unknown format "docx"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, noEnv, append(base, tc.args...)...)
			require.Equal(t, exitUsage, code)
			require.Empty(t, stdout)
			require.Contains(t, stderr, tc.want)
			require.NotContains(t, stderr, "a@example.se", "the identifier is repeated")
		})
	}
}

func TestParseFormats(t *testing.T) {
	got, err := parseFormats([]string{"pdf", "JSON", "json", " html "})
	require.NoError(t, err)
	require.Equal(t, []string{"json", "html", "pdf"}, got)
	_, err = parseFormats([]string{""})
	require.ErrorContains(t, err, "at least one")
}
