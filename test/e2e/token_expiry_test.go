package e2e

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

// TestExpiredTokenIsNamedExpired: a UI must tell "your token expired,
// renew it" from "your token is wrong". Before, an expired token on a
// unary call was answered like a forged one ("invalid bearer token").
// The token lives one second; the server tolerates 30 s of clock skew, so
// the test polls for about that long once.
func TestExpiredTokenIsNamedExpired(t *testing.T) {
	k := Start(t, Options{})
	token := cliToken(t, k, "anna", "agent", "1s")
	client := routingv1.NewRoutingServiceClient(k.Dial(t))
	// The token works until the leeway has passed, then it is refused.
	var err error
	deadline := tokenExpiry(t, token).Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := withToken(token)
		_, err = client.ListQueues(ctx, &routingv1.ListQueuesRequest{})
		cancel()
		if err != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	require.Error(t, err, "the token was still taken a minute after it expired")
	require.False(t, time.Now().Before(tokenExpiry(t, token)), "refused before it expired: %v", err)
	st := status.Convert(err)
	require.Equal(t, codes.Unauthenticated, st.Code(), "%v", err)
	require.Contains(t, st.Message(), "expired")
	var reason string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	require.Equal(t, "TOKEN_EXPIRED", reason)

	// Over REST the same words reach the page.
	req, err := http.NewRequest(http.MethodGet, "http://"+k.Addr+"/v1/queues", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, string(body), "expired")
}
