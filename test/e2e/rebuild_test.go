package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRebuildRoutingReplaysTheLog stops the server, deletes nothing but
// replays the log into a fresh routing read model with `kontakt rebuild
// routing`, and checks that the restarted server shows the same cases.
func TestRebuildRoutingReplaysTheLog(t *testing.T) {
	e := startRouting(t, "")
	var numbers []string
	for i := range 5 {
		_, n := e.register(t, fragaInput("Ombyggnad "+string(rune('A'+i)), nil))
		numbers = append(numbers, n)
	}
	before := map[string]string{}
	for _, n := range numbers {
		s := e.waitRouted(t, n)
		before[n] = s.GetQueue() + "/" + s.GetStatus().String()
	}
	require.NoError(t, e.k.Stop(t))

	// Throw the read model away entirely, so only the log can restore it.
	rm := filepath.Join(e.k.DataDir, "routing", "readmodel.db")
	require.NoError(t, os.Remove(rm))
	code, out := runKontakt(t, "rebuild", "routing", "--config", e.k.Config)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "rebuilt routing up to log position")

	again := startRouting(t, e.k.DataDir)
	for _, n := range numbers {
		s := again.summaryByNumber(t, n)
		require.NotNil(t, s, "case %s is missing after the rebuild", n)
		require.Equal(t, before[n], s.GetQueue()+"/"+s.GetStatus().String(), n)
	}
}

// TestRebuildRefusesWhileServing: the read model and the embedded store
// are the server's while it runs; the rebuild must say so, not wait.
func TestRebuildRefusesWhileServing(t *testing.T) {
	e := startRouting(t, "")
	code, out := runKontakt(t, "rebuild", "routing", "--config", e.k.Config)
	require.NotEqual(t, 0, code, out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.True(t, strings.HasPrefix(lines[len(lines)-1], "kontakt: "), out)
}
