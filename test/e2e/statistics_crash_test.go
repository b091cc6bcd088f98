package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
)

// TestStatisticsExactlyOnceAfterKill9 kills the binary with SIGKILL while
// cases keep coming and the statistics projector commits batches and
// publishes their record versions as atomic batches, restarts it, and
// kills it again while it projects the whole log into a read model thrown
// away (reading the stream back first), several times. In the end every
// registered case has exactly one record, no record version is stored
// twice (neither by message id nor by statistics id and version), and
// Query counts every case once.
func TestStatisticsExactlyOnceAfterKill9(t *testing.T) {
	e := retStart(t, "", 0)
	dataDir := e.k.DataDir
	token := e.token(t, anna)

	// burst registers cases from eight goroutines until stop is closed
	// or a call fails (the process was killed).
	burst := func(e *retEnv, stop <-chan struct{}) *sync.WaitGroup {
		var wg sync.WaitGroup
		var n atomic.Int64
		for w := range 8 {
			client := intakev1.NewIntakeServiceClient(e.conns[w%len(e.conns)])
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := withToken(token)
					_, err := client.RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: fragaInput(fmt.Sprintf("Statistikskur %d", n.Add(1)), nil)})
					cancel()
					if err != nil {
						return
					}
				}
			})
		}
		return &wg
	}

	rng := rand.New(rand.NewPCG(7, 15))
	for round := range 4 {
		if round > 0 {
			if round%2 == 0 {
				// Throw the read model away: the restart reads the
				// stream back and projects the whole log again.
				require.NoError(t, os.Remove(filepath.Join(dataDir, "statistics", "statistics.db")))
			}
			e = retStart(t, dataDir, 0)
		}
		stop := make(chan struct{})
		wg := burst(e, stop)
		// A kill at a random moment of the burst (the moment is what is
		// random; nothing waits for an outcome).
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		e.k.kill9(t)
		close(stop)
		wg.Wait()
	}

	e = retStart(t, dataDir, 0)
	registered := countRegistered(e.events(t))
	require.Positive(t, registered)
	day := time.Now().UTC().Truncate(24 * time.Hour)
	var count int64
	require.True(t, eventually(60*time.Second, func() bool {
		count, _, _ = retStatsTotals(e.statsQuery(t, day.Add(-48*time.Hour), day.Add(48*time.Hour)))
		return count == int64(registered)
	}), "statistics counts %d cases of %d registered", count, registered)

	msgIDs := map[string]bool{}
	versions := map[string]bool{}
	newest := map[string]int64{}
	for _, m := range streamMessages(t, e.js, retStatsStream) {
		id := m.Header.Get(jetstream.MsgIDHeader)
		require.False(t, msgIDs[id], "message id %s stored twice", id)
		msgIDs[id] = true
	}
	for _, r := range e.statsRecords(t) {
		key := fmt.Sprintf("%s-%d", r.rec.GetStatisticsId(), r.rec.GetVersion())
		require.False(t, versions[key], "record version %s stored twice", key)
		versions[key] = true
		newest[r.rec.GetStatisticsId()] = max(newest[r.rec.GetStatisticsId()], r.rec.GetVersion())
	}
	require.Len(t, newest, registered, "one record per registered case")
	t.Logf("%d cases registered over 4 kills; %d record versions in the stream", registered, len(versions))
}
