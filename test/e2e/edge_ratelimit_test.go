package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
)

// The limits are set through the environment, which a binary without
// them ignores: so the test runs unchanged against the base binary, where
// it must fail.
const (
	envPerCredentialRate  = "KONTAKT_LIMITS_PUBLIC_SUBMISSIONS_PER_CREDENTIAL_PER_MINUTE"
	envPerCredentialBurst = "KONTAKT_LIMITS_PUBLIC_SUBMISSIONS_PER_CREDENTIAL_BURST"
	envPerAddressRate     = "KONTAKT_LIMITS_PUBLIC_SUBMISSIONS_PER_ADDRESS_PER_MINUTE"
	envPerAddressBurst    = "KONTAKT_LIMITS_PUBLIC_SUBMISSIONS_PER_ADDRESS_BURST"
)

// limited is what a refused submission said about when to retry.
type limited struct {
	refused    bool
	retryAfter time.Duration
}

// rlForm is a valid form with a fresh idempotency key.
func rlForm(i int, run string) *intakev1.SubmitFormRequest {
	return &intakev1.SubmitFormRequest{
		IdempotencyKey: fmt.Sprintf("rl-%s-%d", run, i),
		Case: &intakev1.CaseInput{
			Type: casev1.CaseType_CASE_TYPE_FRAGA, Category: "bygglov", Subject: "Fråga om bygglov",
		},
	}
}

// rlSubmit submits one form over protocol p as token and reports whether
// it was refused by the rate limit, checking the refusal's form: gRPC
// ResourceExhausted with google.rpc.RetryInfo, REST 429 with Retry-After,
// Open311 429 with Retry-After. Any other failure fails the test.
func rlSubmit(t *testing.T, k *Kontakt, conn *grpc.ClientConn, p string, token string, i int, run string) limited {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch p {
	case "grpc":
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		var hdr metadata.MD
		_, err := intakev1.NewIntakeServiceClient(conn).SubmitForm(ctx, rlForm(i, run), grpc.Header(&hdr))
		if err == nil {
			return limited{}
		}
		st := status.Convert(err)
		require.Equal(t, codes.ResourceExhausted, st.Code(), "%v", err)
		var info *errdetails.RetryInfo
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				info = ri
			}
		}
		require.NotNil(t, info, "a refused gRPC call carries google.rpc.RetryInfo")
		require.Positive(t, info.GetRetryDelay().AsDuration())
		return limited{refused: true, retryAfter: info.GetRetryDelay().AsDuration()}
	case "grpc-web":
		client := connect.NewClient[intakev1.SubmitFormRequest, intakev1.SubmitFormResponse](
			http.DefaultClient, "http://"+k.Addr+intakeServicePrefix+"SubmitForm", connect.WithGRPCWeb())
		req := connect.NewRequest(rlForm(i, run))
		req.Header().Set("Authorization", "Bearer "+token)
		_, err := client.CallUnary(ctx, req)
		if err == nil {
			return limited{}
		}
		require.Equal(t, connect.CodeResourceExhausted, connect.CodeOf(err), "%v", err)
		var ce *connect.Error
		require.ErrorAs(t, err, &ce)
		for _, d := range ce.Details() {
			v, derr := d.Value()
			require.NoError(t, derr)
			if ri, ok := v.(*errdetails.RetryInfo); ok {
				return limited{refused: true, retryAfter: ri.GetRetryDelay().AsDuration()}
			}
		}
		t.Fatalf("a refused gRPC-web call carries google.rpc.RetryInfo: %v", err)
	case "rest":
		body, err := protojson.Marshal(rlForm(i, run))
		require.NoError(t, err)
		a := k.edgeDo(t, http.DefaultClient, edgeCall{method: http.MethodPost, path: "/v1/forms/cases",
			header: edgeHeader("Content-Type", "application/json", "Authorization", "Bearer "+token), body: body})
		if a.status == http.StatusOK {
			return limited{}
		}
		require.Equal(t, http.StatusTooManyRequests, a.status, "%s", a.body)
		var st struct {
			Code int `json:"code"`
		}
		require.NoError(t, json.Unmarshal(a.body, &st))
		require.Equal(t, int(codes.ResourceExhausted), st.Code)
		return limited{refused: true, retryAfter: retryAfterHeader(t, a.header)}
	case "open311":
		form := url.Values{"api_key": {token}, "service_code": {"gatubelysning"}, "lat": {"57.6554"}, "long": {"12.0138"},
			"description": {fmt.Sprintf("Lampan lyser inte (%s %d)", run, i)}}
		a := k.edgeDo(t, http.DefaultClient, edgeCall{method: http.MethodPost, path: "/open311/v2/requests.json",
			header: edgeHeader("Content-Type", "application/x-www-form-urlencoded"), body: []byte(form.Encode())})
		if a.status == http.StatusCreated {
			return limited{}
		}
		require.Equal(t, http.StatusTooManyRequests, a.status, "%s", a.body)
		return limited{refused: true, retryAfter: retryAfterHeader(t, a.header)}
	}
	t.Fatalf("unknown protocol %s", p)
	return limited{}
}

func retryAfterHeader(t *testing.T, h http.Header) time.Duration {
	t.Helper()
	v := h.Get("Retry-After")
	require.NotEmpty(t, v, "a 429 carries Retry-After")
	secs, err := strconv.Atoi(v)
	require.NoError(t, err, "Retry-After in seconds: %q", v)
	require.Positive(t, secs)
	return time.Duration(secs) * time.Second
}

// TestEdgePublicSubmissionRateLimit bursts form submissions and Open311
// posts with one credential from one address: after the burst each
// protocol answers with its form of "too many" and when to retry, one
// credential's forms and posts share a bucket, a second credential from
// the same address is stopped by the address's bucket, and after waiting
// as long as told the call goes through again.
func TestEdgePublicSubmissionRateLimit(t *testing.T) {
	run := randHex(t, 4)
	// One token every ten seconds: the bursts below finish well within
	// that, even on a loaded machine.
	const perMinute, burst = 6, 3

	t.Run("per credential", func(t *testing.T) {
		t.Setenv(envPerCredentialRate, strconv.Itoa(perMinute))
		t.Setenv(envPerCredentialBurst, strconv.Itoa(burst))
		t.Setenv(envPerAddressRate, "0")
		k := Start(t, Options{})
		conn := k.Dial(t)
		var last limited
		for _, p := range []string{"grpc", "grpc-web", "rest", "open311"} {
			token := k.Token(t, "e-tjanst-rl-"+p, "form-client")
			for i := range burst {
				require.False(t, rlSubmit(t, k, conn, p, token, i, run+p).refused, "%s: submission %d is within the burst", p, i)
			}
			last = rlSubmit(t, k, conn, p, token, burst, run+p)
			require.True(t, last.refused, "%s: the submission after the burst is refused", p)
			require.LessOrEqual(t, last.retryAfter, 10*time.Second, "%s: retry when the next token is in", p)
			t.Logf("%s: refused after %d, retry after %s", p, burst, last.retryAfter)
			if p == "grpc" {
				// The same credential's Open311 posts share its bucket.
				require.True(t, rlSubmit(t, k, conn, "open311", token, 99, run+p).refused, "forms and posts of one credential share a bucket")
			}
		}
		// After waiting as long as told, the last credential may submit
		// again.
		time.Sleep(last.retryAfter)
		token := k.Token(t, "e-tjanst-rl-open311", "form-client")
		require.False(t, rlSubmit(t, k, conn, "open311", token, burst+1, run+"open311").refused, "allowed again after Retry-After")
		require.NotContains(t, k.stderr.String(), "level=ERROR")
	})

	t.Run("per address", func(t *testing.T) {
		t.Setenv(envPerCredentialRate, strconv.Itoa(perMinute))
		t.Setenv(envPerCredentialBurst, "10")
		t.Setenv(envPerAddressRate, strconv.Itoa(perMinute))
		t.Setenv(envPerAddressBurst, "4")
		k := Start(t, Options{})
		conn := k.Dial(t)
		first := k.Token(t, "e-tjanst-rl-a", "form-client")
		second := k.Token(t, "e-tjanst-rl-b", "form-client")
		for i := range 2 {
			require.False(t, rlSubmit(t, k, conn, "grpc", first, i, run+"a").refused)
			require.False(t, rlSubmit(t, k, conn, "rest", second, i, run+"b").refused)
		}
		// The second credential has 8 of its own 10 tokens left, but the
		// address has used its 4.
		for _, p := range []string{"grpc", "rest", "open311"} {
			l := rlSubmit(t, k, conn, p, second, 10, run+"b"+p)
			require.True(t, l.refused, "%s: the address's bucket stops a second credential", p)
		}
		require.False(t, strings.Contains(k.stderr.String(), "level=ERROR"), "a refusal is not a server fault")
	})
}
