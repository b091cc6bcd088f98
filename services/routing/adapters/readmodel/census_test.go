package readmodel

import (
	"context"
	"io/fs"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/kontakt-se/kontakt/pkg/readcheck"
	"github.com/kontakt-se/kontakt/pkg/tokenindex"
)

// TestCensusOfTwoStoresBuiltAlikeAgrees applies one random history to
// two stores, one opened read-only afterwards as `kontakt check` opens the
// live file: the censuses agree and every check is OK. Then the read-only
// file's queue list loses an entry, and the comparison names the queue.
func TestCensusOfTwoStoresBuiltAlikeAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 17))
	evs := history(0, genHistory(rng, 60)...)
	live, path := openStore(t, Options{})
	fresh, _ := openStore(t, Options{})
	require.NoError(t, live.Apply(context.Background(), evs...))
	require.NoError(t, fresh.Apply(context.Background(), evs...))
	require.NoError(t, live.Close())

	compare := func() (readcheck.Result, readcheck.Result) {
		t.Helper()
		ro, err := OpenReadOnly(path, Options{})
		require.NoError(t, err)
		defer func() { require.NoError(t, ro.Close()) }()
		got, err := ro.Census()
		require.NoError(t, err)
		want, err := fresh.Census()
		require.NoError(t, err)
		cases, queues := readcheck.New("routing", "cases", 0, 0), readcheck.New("routing", "queues", 0, 0)
		Compare(got, want, &cases, &queues)
		return cases, queues
	}
	cases, queues := compare()
	require.True(t, cases.OK, cases.Differences)
	require.True(t, queues.OK, queues.Differences)
	require.Positive(t, queues.Counts["open"], "the history leaves open cases")

	// The first entry of the list by due time goes.
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	var queue string
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket([]byte(bucketByDue)).Cursor().First()
		q, _, err := splitOpenKey(k)
		queue = q
		require.NoError(t, err)
		return tx.Bucket([]byte(bucketByDue)).Delete(k)
	}))
	require.NoError(t, db.Close())
	cases, queues = compare()
	require.True(t, cases.OK, "the rows are intact")
	require.False(t, queues.OK)
	require.Len(t, queues.Differences, 1)
	require.True(t, strings.HasPrefix(queues.Differences[0], "queue "+queue+": cases in the list by due time "), queues.Differences[0])
}

func TestOpenReadOnlyCreatesNothing(t *testing.T) {
	path := t.TempDir() + "/none.db"
	_, err := OpenReadOnly(path, Options{})
	require.ErrorIs(t, err, ErrNoFile)
	_, err = os.Stat(path)
	require.ErrorIs(t, err, fs.ErrNotExist, "no file created")
	_, err = os.Stat(tokenindex.PathFor(path))
	require.ErrorIs(t, err, fs.ErrNotExist, "no token file created")
}
