package tokenindex

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// token returns a random token shaped like blindindex's: 64 hex digits.
func token(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

func openIndex(t testing.TB) (*Index, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens.db")
	x, err := Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = x.Close() })
	return x, path
}

func update(t testing.TB, x *Index, fn func(*Tx) error) {
	t.Helper()
	require.NoError(t, x.Update(fn))
}

// scan reads every file under dir and returns, per needle (a token: 64
// hex digits), how many files hold it in hex or as its 32 raw bytes, the
// way an attacker with the disk would look. Every window of a file is
// looked up in a set, so thousands of needles cost one pass.
func scan(t *testing.T, dir string, needles []string) map[string]int {
	t.Helper()
	want := map[string]string{}
	for _, n := range needles {
		require.Len(t, n, 64, "scan looks for 64-digit tokens")
		raw, err := hex.DecodeString(n)
		require.NoError(t, err)
		want[n], want[string(raw)] = n, n
	}
	found := map[string]int{}
	var files int
	require.NoError(t, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		inFile := map[string]bool{}
		for _, w := range []int{64, 32} {
			for i := 0; i+w <= len(b); i++ {
				if n, ok := want[string(b[i:i+w])]; ok {
					inFile[n] = true
				}
			}
		}
		for n := range inFile {
			found[n]++
		}
		return nil
	}))
	require.NotZero(t, files, "no files under %s", dir)
	return found
}

// people registers n owners with three tokens each (as a case with an
// e-mail address, a phone number and a personnummer has) and returns
// their tokens by owner.
func people(t testing.TB, x *Index, n int) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	update(t, x, func(tx *Tx) error {
		for i := range n {
			owner := fmt.Sprintf("case-%05d", i)
			toks := []string{token(t), token(t), token(t)}
			out[owner] = toks
			if err := tx.Set(owner, "", toks); err != nil {
				return err
			}
		}
		return nil
	})
	return out
}

func TestSetFindDrop(t *testing.T) {
	x, _ := openIndex(t)
	shared, mail, pnr := token(t), token(t), token(t)
	update(t, x, func(tx *Tx) error {
		require.NoError(t, tx.Set("a", "contact", []string{shared, mail, "", mail}))
		require.NoError(t, tx.Set("a", "identity", []string{pnr}))
		return tx.Set("b", "contact", []string{shared})
	})
	find := func(tok string) []string {
		got, err := x.Find(tok)
		require.NoError(t, err)
		return got
	}
	require.Equal(t, []string{"a", "b"}, find(shared), "two owners of one token")
	require.Equal(t, []string{"a"}, find(pnr))
	require.Empty(t, find(token(t)), "an unknown token finds nothing")
	require.Empty(t, find(shared[:10]), "a prefix of a token is not the token")

	// Replacing one slot leaves the other alone.
	update(t, x, func(tx *Tx) error { return tx.Set("a", "contact", nil) })
	require.Equal(t, []string{"b"}, find(shared))
	require.Empty(t, find(mail))
	require.Equal(t, []string{"a"}, find(pnr))

	// The same token in two slots of one owner: removing one keeps the
	// other.
	update(t, x, func(tx *Tx) error { return tx.Set("b", "identity", []string{shared}) })
	update(t, x, func(tx *Tx) error { return tx.Set("b", "contact", nil) })
	require.Equal(t, []string{"b"}, find(shared))

	update(t, x, func(tx *Tx) error { return tx.Drop("b") })
	require.Empty(t, find(shared))
	require.Equal(t, []string{"a"}, find(pnr), "dropping b leaves a")

	var slots []string
	require.NoError(t, x.Each(func(owner, slot string, toks []string) error {
		slots = append(slots, owner+"/"+slot)
		return nil
	}))
	require.Equal(t, []string{"a/identity"}, slots)
}

// TestSetTwiceWritesNothing: a replayed batch finds what it would write
// already there, so it neither removes nor compacts, and a transaction
// that changes nothing is not committed (a commit would cost a sync).
func TestSetTwiceWritesNothing(t *testing.T) {
	x, _ := openIndex(t)
	toks := []string{token(t), token(t)}
	update(t, x, func(tx *Tx) error { return tx.Set("a", "", toks) })
	txid := func() int {
		var id int
		require.NoError(t, x.view(func(tx *bolt.Tx) error { id = tx.ID(); return nil }))
		return id
	}
	before, committed := x.compactions, txid()
	update(t, x, func(tx *Tx) error {
		require.NoError(t, tx.Set("a", "", []string{toks[1], toks[0]}))
		require.NoError(t, tx.Drop("nobody"))
		require.Zero(t, tx.Removed())
		return nil
	})
	require.Equal(t, before, x.compactions, "nothing removed, nothing compacted")
	require.Equal(t, committed, txid(), "nothing changed, nothing committed")
	update(t, x, func(tx *Tx) error { return tx.Set("b", "", toks[:1]) })
	require.Equal(t, committed+1, txid(), "a change is committed")
}

// TestRemovedTokensLeaveNoBytes is the point of the package: after
// tokens are removed (replaced, set empty, dropped), no file under the
// directory holds their bytes, in hex or raw; the live tokens are still
// there (so the scan does read the index), and without the compaction
// plain bbolt would have left the removed ones behind.
func TestRemovedTokensLeaveNoBytes(t *testing.T) {
	for _, compact := range []bool{true, false} {
		t.Run(fmt.Sprintf("compact=%v", compact), func(t *testing.T) {
			x, path := openIndex(t)
			x.noCompact = !compact
			all := people(t, x, 3000)
			var removed, live []string
			owners := slices.Sorted(maps.Keys(all))
			// Twenty transactions, as twenty projector batches would be.
			for chunk := range slices.Chunk(owners, len(owners)/20) {
				update(t, x, func(tx *Tx) error {
					for _, owner := range chunk {
						toks := all[owner]
						i, err := strconv.Atoi(strings.TrimPrefix(owner, "case-"))
						require.NoError(t, err)
						switch i % 4 {
						case 0: // erased or deleted case
							removed = append(removed, toks...)
							require.NoError(t, tx.Drop(owner))
						case 1: // contact redacted, identity kept
							removed = append(removed, toks[:2]...)
							live = append(live, toks[2])
							require.NoError(t, tx.Set(owner, "", toks[2:]))
						case 2: // rectified: one token replaced
							removed = append(removed, toks[0])
							fresh := token(t)
							live = append(live, toks[1], toks[2], fresh)
							require.NoError(t, tx.Set(owner, "", []string{fresh, toks[1], toks[2]}))
						default:
							live = append(live, toks...)
						}
					}
					return nil
				})
			}
			found := scan(t, filepath.Dir(path), append(append([]string{}, removed...), live...))
			var removedFound, liveFound int
			for _, r := range removed {
				if found[r] > 0 {
					removedFound++
				}
			}
			for _, l := range live {
				if found[l] > 0 {
					liveFound++
				}
			}
			t.Logf("removed tokens on disk: %d of %d; live tokens on disk: %d of %d", removedFound, len(removed), liveFound, len(live))
			require.Equal(t, len(live), liveFound, "every live token is in the file: the scan reads it")
			if compact {
				require.Zero(t, removedFound, "removed tokens left on disk")
			} else {
				require.NotZero(t, removedFound, "plain bbolt deletes leave tokens behind: the control shows the scan can find them")
			}
		})
	}
}

// TestCrashBeforeCompactionIsRepairedAtOpen: a removal committed without
// its compaction (a crash between the two) marks the file dirty; Open
// compacts it, and destroys a half-written copy a crashed compaction
// left next to it.
func TestCrashBeforeCompactionIsRepairedAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.db")
	x, err := Open(path)
	require.NoError(t, err)
	all := people(t, x, 500)
	x.noCompact = true // the crash: the removal commits, the compaction never runs
	var removed []string
	update(t, x, func(tx *Tx) error {
		for owner, toks := range all {
			removed = append(removed, toks...)
			if err := tx.Drop(owner); err != nil {
				return err
			}
			if len(removed) >= 600 {
				break
			}
		}
		return nil
	})
	require.NoError(t, x.Close())
	leftover := removed[0]
	require.NoError(t, os.WriteFile(path+compactSuffix, []byte("half a copy "+leftover), 0o600))
	require.NotEmpty(t, scan(t, filepath.Dir(path), removed), "the crashed state holds removed tokens")

	x, err = Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = x.Close() })
	require.Empty(t, scan(t, filepath.Dir(path), removed), "Open left removed tokens on disk")
	_, err = os.Stat(path + compactSuffix)
	require.ErrorIs(t, err, os.ErrNotExist, "the leftover copy is removed")
	got, err := x.Find(removed[1])
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestResetDestroysEverything(t *testing.T) {
	x, path := openIndex(t)
	all := people(t, x, 200)
	var toks []string
	for _, ts := range all {
		toks = append(toks, ts...)
	}
	e, err := x.Epoch()
	require.NoError(t, err)
	require.Empty(t, e, "a new file has no epoch")
	require.NoError(t, x.Reset("epoch-2"))
	e, err = x.Epoch()
	require.NoError(t, err)
	require.Equal(t, "epoch-2", e)
	require.Empty(t, scan(t, filepath.Dir(path), toks))
	got, err := x.Find(toks[0])
	require.NoError(t, err)
	require.Empty(t, got)
	update(t, x, func(tx *Tx) error { return tx.Set("new", "", toks[:1]) })
	got, err = x.Find(toks[0])
	require.NoError(t, err)
	require.Equal(t, []string{"new"}, got, "the reset file works")
}

// TestLookupsDuringCompaction: lookups go on while removals compact the
// file under them (run with -race).
func TestLookupsDuringCompaction(t *testing.T) {
	x, _ := openIndex(t)
	all := people(t, x, 300)
	stable := token(t)
	update(t, x, func(tx *Tx) error { return tx.Set("stable", "", []string{stable}) })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := x.Find(stable)
				if err != nil || len(got) != 1 {
					errs <- fmt.Errorf("lookup during compaction: %v %v", got, err)
					return
				}
			}
		})
	}
	n := 0
	for owner := range all {
		update(t, x, func(tx *Tx) error { return tx.Drop(owner) })
		if n++; n == 30 {
			break
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.GreaterOrEqual(t, x.compactions, 30)
}

func TestShredFileOverwritesBeforeRemoving(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	require.NoError(t, os.WriteFile(path, bytes.Repeat([]byte("secret"), 100000), 0o600))
	f, err := os.Open(path) // a reader that still has the inode
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, ShredFile(path))
	_, err = os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist)
	b := make([]byte, 600000)
	n, err := f.ReadAt(b, 0)
	require.Equal(t, 600000, n, "%v", err)
	require.False(t, bytes.Contains(b, []byte("secret")), "the removed file's bytes were not overwritten")
	require.NoError(t, ShredFile(path), "a missing file is no error")
}
