package buildinfo

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestReadNamesTheToolchainAndTheDataFormat(t *testing.T) {
	i := Read()
	require.Equal(t, runtime.Version(), i.GoVersion)
	require.Regexp(t, `^2\.\d+\.\d+`, i.NATS)
	require.Equal(t, DataFormat, i.DataFormat)
	require.NotEmpty(t, i.Commit)
	require.True(t, strings.HasPrefix(i.String(), "kontakt "+Version+" (commit "), i.String())
}

func TestCollectorExportsOneSeriesWithTheIdentity(t *testing.T) {
	i := Info{Version: "v1.2.3", Commit: "abc", GoVersion: "go1.26", NATS: "2.15.3", DataFormat: 1}
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(i.Collector()))
	want := `# HELP kontakt_build_info The running kontakt binary: version, commit, Go and NATS server versions and data format, as labels; always 1.
# TYPE kontakt_build_info gauge
kontakt_build_info{commit="abc",data_format="1",goversion="go1.26",nats_server="2.15.3",version="v1.2.3"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "kontakt_build_info"))
}
