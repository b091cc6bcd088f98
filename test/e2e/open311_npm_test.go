package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// npmResult is what one call's callback received in
// testdata/open311_npm.js.
type npmResult struct {
	Err  any             `json:"err"`
	Data json.RawMessage `json:"data"`
}

// TestOpen311NpmClient drives kontakt with the npm `open311` package
// (pinned in tools/package.json, installed by `make tools`) in JSON: its
// serviceList, serviceDefinition, submitRequest, serviceRequest and
// serviceRequests (by ids and by filters), and serviceDiscovery. The
// client treats any answer but 200 to a GET as a failure, so each call
// succeeding is the specification's status; the data is checked here.
func TestOpen311NpmClient(t *testing.T) {
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node is needed for the npm Open311 client")
	modules := filepath.Join(repoRoot(t), "tools", "node_modules")
	_, err = os.Stat(filepath.Join(modules, "open311", "open311.js"))
	require.NoError(t, err, "the npm open311 client is installed by `make tools` (tools/package.json)")

	k := Start(t, Options{})
	form := k.Token(t, "node-app", "form-client")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("testdata", "open311_npm.js"), "http://"+k.Addr+"/open311/v2/", form)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "node: %s", stderr.String())

	t.Logf("what the client's callbacks received: %s", out)
	var res map[string]npmResult
	require.NoError(t, json.Unmarshal(out, &res), "%s", out)
	ok := func(name string, v any) {
		t.Helper()
		r, found := res[name]
		require.True(t, found, "%s was not called: %s", name, out)
		require.Nil(t, r.Err, "%s failed: %s", name, r.Data)
		require.NoError(t, json.Unmarshal(r.Data, v), "%s: %s", name, r.Data)
	}

	var services []map[string]any
	ok("serviceList", &services)
	require.NotEmpty(t, services)
	require.Equal(t, "gatubelysning", services[0]["service_code"])

	var def map[string]any
	ok("serviceDefinition", &def)
	require.Equal(t, "gatubelysning", def["service_code"])
	require.Equal(t, []any{}, def["attributes"])

	unknown := res["serviceDefinitionUnknown"]
	require.Equal(t, true, unknown.Err, "an unknown service is not a 200")
	require.Contains(t, string(unknown.Data), "404")

	var created, createdByAddressID []struct {
		ServiceRequestID string  `json:"service_request_id"`
		ServiceNotice    string  `json:"service_notice"`
		AccountID        *string `json:"account_id"`
	}
	ok("submitRequest", &created)
	require.Len(t, created, 1)
	id := created[0].ServiceRequestID
	require.Regexp(t, `^KC-\d{4}-\d{6}$`, id)
	require.Contains(t, created[0].ServiceNotice, id)
	ok("submitRequestAddressId", &createdByAddressID)
	require.Len(t, createdByAddressID, 1, "address_id alone is a location")
	id2 := createdByAddressID[0].ServiceRequestID

	type request struct {
		ServiceRequestID  string   `json:"service_request_id"`
		Status            string   `json:"status"`
		ServiceCode       string   `json:"service_code"`
		ServiceName       string   `json:"service_name"`
		RequestedDatetime string   `json:"requested_datetime"`
		UpdatedDatetime   string   `json:"updated_datetime"`
		Lat               *float64 `json:"lat"`
		Long              *float64 `json:"long"`
	}
	var one []request
	ok("serviceRequest", &one)
	require.Len(t, one, 1)
	require.Equal(t, id, one[0].ServiceRequestID)
	require.Equal(t, "open", one[0].Status)
	require.Equal(t, "gatubelysning", one[0].ServiceCode)
	require.Equal(t, "Gatubelysning", one[0].ServiceName)
	_, err = time.Parse(time.RFC3339, one[0].RequestedDatetime)
	require.NoError(t, err, "the client turned requested_datetime into a Date")
	require.NotNil(t, one[0].Lat)
	require.Equal(t, 57.66, *one[0].Lat, "rounded to the statistics cell")

	var byIDs []request
	ok("serviceRequestsByIds", &byIDs)
	require.Len(t, byIDs, 2)
	require.ElementsMatch(t, []string{id, id2}, []string{byIDs[0].ServiceRequestID, byIDs[1].ServiceRequestID})

	var filtered []request
	ok("serviceRequestsFiltered", &filtered)
	var ids []string
	for _, r := range filtered {
		require.Equal(t, "gatubelysning", r.ServiceCode)
		require.Equal(t, "open", r.Status)
		ids = append(ids, r.ServiceRequestID)
	}
	require.Contains(t, ids, id)
	require.NotContains(t, ids, id2, "klotter is filtered out")

	var disc struct {
		Endpoint string `json:"endpoint"`
		Format   string `json:"format"`
	}
	ok("serviceDiscovery", &disc)
	require.Equal(t, "http://"+k.Addr+"/open311/v2/", disc.Endpoint)
	require.Equal(t, "json", disc.Format)

	for _, p := range []string{"Nils", "Nodesson", "node.privat", "blinkar", "LM-998877", "GB-4711", "57.655312"} {
		require.NotContains(t, string(out), p, "a public answer shows what the reporter sent")
	}
}
