package node

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/host"
	statsstream "github.com/kontakt-se/kontakt/services/statistics/adapters/stream"
)

// The embedded NATS server lets analysts read the stream pkg/host names;
// it must be the statistics service's stream, or analysts read nothing
// (or something else).
func TestAnalystStreamIsTheStatisticsStream(t *testing.T) {
	require.Equal(t, statsstream.StreamName, host.AnalystStream)
	require.Equal(t, statsstream.SubjectPrefix+".>", host.AnalystSubjects)
}
