// Package tokenindex keeps blind-index tokens (pkg/blindindex) in a small
// file of their own and makes sure that a removed token leaves no byte
// behind on disk.
//
// Why a file of its own: a token is an HMAC of a personnummer, phone
// number or e-mail address. Whoever holds the master key can derive the
// blind-index key and test every personnummer against a token in
// seconds, so a token is as personal as the value it stands for, and
// must be gone from disk when the case's personal data is redacted.
// bbolt, which kontakt's read models use, is copy-on-write: a deleted key
// stays in the freed page (and as a separator in branch pages) until the
// page happens to be reused, and bbolt has no secure delete. The only way
// to be rid of the bytes is to copy the live keys into a fresh file and
// destroy the old one. Doing that to a read model of two years of cases
// after every redaction would cost far too much; tokens, however, live
// only until the case's personal data is redacted (90 days in Mölndal's
// plan), so a file holding nothing but tokens stays small, and copying it
// costs milliseconds (see the benchmarks).
//
// So every transaction that removes a token marks the file dirty, in the
// same commit, and Update then compacts: it copies the live keys into
// "<path>.compact" (bbolt.Compact), clears the mark there, syncs, renames
// the copy over the file, syncs the directory, and overwrites every byte
// of the old file (still open, now unlinked) with zeros before closing
// it. A crash before the rename leaves the old file marked dirty, and
// Open compacts it again (a half-written copy is overwritten and removed
// first); a crash after the rename leaves a clean file. What the crash
// can leave is the unlinked old inode's blocks in the file system's free
// space, which no file holds; only full-disk encryption protects free
// space (and an SSD's remapped blocks) against someone reading the raw
// device.
//
// Consistency with the main read model (crash safety): the owner (a read
// model) commits a batch's token changes with Update BEFORE it commits
// the batch and its checkpoint to its main file. Set replaces an owner's
// tokens and Drop removes them, so applying a change twice gives the
// same file: a crash between the two commits leaves the token file ahead
// by at most that batch, the owner's projector replays the batch from its
// checkpoint, and the replay writes what the token file already holds.
// Tokens are never resurrected by the replay, because a replay computes
// them from the events and keys as they are now, and a removed token's
// case was redacted (keys destroyed) or deleted. The opposite order would
// let a crash lose a removal for good: the checkpoint would say the
// redaction was applied while the token file still held the token.
//
// The file and its owner share an epoch (a random id): a rebuild that
// empties the owner's file gives it a new epoch and then resets the
// token file with the same one. An owner that finds another epoch in the
// token file at start (a crash between the two, a lost or copied-in token
// file) resets the token file and replays the log from the start, since
// neither file alone says which cases still need tokens.
package tokenindex

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Errors.
var (
	// ErrCorrupt means a stored record could not be decoded.
	ErrCorrupt = errors.New("tokenindex: corrupt record")
	// ErrTooLong means a token, owner or slot is longer than a key
	// component may be (65,535 bytes).
	ErrTooLong = errors.New("tokenindex: key component too long")
	// ErrBroken means a compaction failed after the new file had replaced
	// the old one but before it could be opened; the index must be opened
	// again.
	ErrBroken = errors.New("tokenindex: index must be reopened")
)

var (
	bucketMeta = []byte("meta")
	// bucketTokens indexes token -> owner: len16 token, token, len16
	// owner, owner, slot -> empty. The slot is in the key so that two
	// slots of one owner holding the same token stay independent.
	bucketTokens = []byte("tokens")
	// bucketOwners holds each owner's tokens per slot, so a replacement
	// knows what to remove: len16 owner, owner, slot -> len16-prefixed
	// tokens.
	bucketOwners = []byte("owners")

	keyEpoch = []byte("epoch")
	keyDirty = []byte("dirty")
)

// compactSuffix names the copy a compaction writes next to the file.
const compactSuffix = ".compact"

// Index is one token file. It is safe for concurrent use: lookups run in
// parallel with each other and with one writer; writers are serialised.
type Index struct {
	path string

	// mu guards db against the swap at the end of a compaction: lookups
	// hold it for reading, the swap for writing.
	mu sync.RWMutex
	db *bolt.DB

	// wmu serialises Update, Reset and compaction.
	wmu sync.Mutex
	// dirty is set while the file may hold removed tokens in freed pages.
	dirty bool
	// broken is set when the index lost its file (see ErrBroken).
	broken error
	// noCompact turns compaction off; only the benchmark sets it, to
	// measure the plain bbolt delete it is compared with.
	noCompact bool
	// compactions counts the compactions done, for tests.
	compactions int
}

// Open opens (or creates, mode 0600) the token file at path. A copy left
// by a compaction that crashed is destroyed, and a file marked dirty is
// compacted before Open returns, so a crash never leaves a removed token
// on disk for longer than the next start.
func Open(path string) (*Index, error) {
	if err := ShredFile(path + compactSuffix); err != nil {
		return nil, fmt.Errorf("tokenindex: remove the leftover of a compaction: %w", err)
	}
	x := &Index{path: path}
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	x.db = db
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketTokens, bucketOwners} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		x.dirty = tx.Bucket(bucketMeta).Get(keyDirty) != nil
		return nil
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("tokenindex: initialise %s: %w", path, err)
	}
	if x.dirty {
		if err := x.compactLocked(); err != nil {
			_ = x.Close()
			return nil, err
		}
	}
	return x, nil
}

func openDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("tokenindex: open %s: %w", path, err)
	}
	return db, nil
}

// PathFor names the token file that belongs to a read model's main file:
// "index.db" gets "index.tokens.db" next to it.
func PathFor(mainPath string) string {
	ext := filepath.Ext(mainPath)
	return strings.TrimSuffix(mainPath, ext) + ".tokens" + ext
}

// Close closes the file.
func (x *Index) Close() error {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.db == nil {
		return nil
	}
	err := x.db.Close()
	x.db = nil
	return err
}

// Path is the file's path.
func (x *Index) Path() string { return x.path }

// WriteTo writes a consistent copy of the file to w, for a backup taken
// while the process runs. It holds the writer lock while it copies, so no
// token changes and no compaction swaps the file under it: the copy holds
// exactly the live tokens (a file left dirty by a failed compaction is
// copied as it is, and compacted when the copy is opened).
func (x *Index) WriteTo(w io.Writer) (int64, error) {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.db == nil {
		return 0, fmt.Errorf("tokenindex: %s is closed", x.path)
	}
	var n int64
	err := x.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("tokenindex: copy %s: %w", x.path, err)
	}
	return n, nil
}

// Epoch returns the epoch the file belongs to ("" for a new file).
func (x *Index) Epoch() (string, error) {
	var e string
	err := x.view(func(tx *bolt.Tx) error {
		e = string(tx.Bucket(bucketMeta).Get(keyEpoch))
		return nil
	})
	return e, err
}

// Reset destroys the file (every byte overwritten before it is removed)
// and starts an empty one that belongs to epoch.
func (x *Index) Reset(epoch string) error {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	if x.broken != nil {
		return x.broken
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.db.Close(); err != nil {
		return fmt.Errorf("tokenindex: reset: %w", err)
	}
	x.db = nil
	if err := ShredFile(x.path); err != nil {
		x.broken = fmt.Errorf("%w: reset: %w", ErrBroken, err)
		return x.broken
	}
	db, err := openDB(x.path)
	if err != nil {
		x.broken = fmt.Errorf("%w: %w", ErrBroken, err)
		return x.broken
	}
	x.db = db
	x.dirty = false
	return db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketTokens, bucketOwners} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyEpoch, []byte(epoch))
	})
}

// Find returns the owners holding token, sorted, each once. An unknown
// token gives none and no error.
func (x *Index) Find(token string) ([]string, error) {
	prefix, err := appendPrefixed(nil, token)
	if err != nil {
		return nil, err
	}
	var out []string
	err = x.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketTokens).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			owner, _, err := consumePrefixed(k[len(prefix):])
			if err != nil {
				return err
			}
			out = append(out, owner)
		}
		return nil
	})
	if err != nil {
		// Never the token itself: it links a person's cases.
		return nil, fmt.Errorf("tokenindex: find: %w", err)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Each calls fn for every owner's slot and its tokens, in owner order.
func (x *Index) Each(fn func(owner, slot string, tokens []string) error) error {
	return x.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOwners).ForEach(func(k, v []byte) error {
			owner, slot, err := consumePrefixed(k)
			if err != nil {
				return err
			}
			toks, err := decodeTokens(v)
			if err != nil {
				return err
			}
			return fn(owner, string(slot), toks)
		})
	})
}

func (x *Index) view(fn func(*bolt.Tx) error) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.db == nil {
		return fmt.Errorf("tokenindex: %s is closed", x.path)
	}
	return x.db.View(fn)
}

// Tx is one write transaction of Update.
type Tx struct {
	tx      *bolt.Tx
	removed int
	added   int
}

// Update runs fn in one write transaction and commits it (with fsync).
// When the transaction removed a token, the file is compacted before
// Update returns (see the package comment); if that fails, Update returns
// the error and the next Update (or Open) compacts again, so a caller
// that commits its own checkpoint only after Update succeeded never
// records a removal whose bytes are still on disk.
func (x *Index) Update(fn func(*Tx) error) error {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	if x.broken != nil {
		return x.broken
	}
	var t *Tx
	x.mu.RLock()
	db := x.db
	x.mu.RUnlock()
	if db == nil {
		return fmt.Errorf("tokenindex: %s is closed", x.path)
	}
	err := func() error {
		btx, err := db.Begin(true)
		if err != nil {
			return err
		}
		t = &Tx{tx: btx}
		if err := fn(t); err != nil {
			_ = btx.Rollback()
			return err
		}
		if t.removed == 0 && t.added == 0 {
			// Nothing changed (a replayed batch, a drop of an owner
			// without tokens): a commit would still write and sync.
			return btx.Rollback()
		}
		if t.removed > 0 {
			if err := btx.Bucket(bucketMeta).Put(keyDirty, []byte{1}); err != nil {
				_ = btx.Rollback()
				return err
			}
		}
		return btx.Commit()
	}()
	if err != nil {
		return fmt.Errorf("tokenindex: update: %w", err)
	}
	if t.removed > 0 {
		x.dirty = true
	}
	if x.dirty && !x.noCompact {
		return x.compactLocked()
	}
	return nil
}

// Set replaces the tokens an owner holds in one slot with tokens (empty
// strings dropped, duplicates ignored); no tokens removes the slot.
// Setting what is already stored writes nothing.
func (t *Tx) Set(owner, slot string, tokens []string) error {
	key, err := ownerKey(owner, slot)
	if err != nil {
		return err
	}
	want := normalise(tokens)
	owners := t.tx.Bucket(bucketOwners)
	var have []string
	if v := owners.Get(key); v != nil {
		if have, err = decodeTokens(v); err != nil {
			return err
		}
	}
	if slices.Equal(have, want) {
		return nil
	}
	idx := t.tx.Bucket(bucketTokens)
	for _, tok := range have {
		if _, keep := slices.BinarySearch(want, tok); keep {
			continue
		}
		k, err := tokenKey(tok, owner, slot)
		if err != nil {
			return err
		}
		if err := idx.Delete(k); err != nil {
			return err
		}
		t.removed++
	}
	for _, tok := range want {
		if _, had := slices.BinarySearch(have, tok); had {
			continue
		}
		k, err := tokenKey(tok, owner, slot)
		if err != nil {
			return err
		}
		if err := idx.Put(k, nil); err != nil {
			return err
		}
		t.added++
	}
	if len(want) == 0 {
		return owners.Delete(key)
	}
	v, err := encodeTokens(want)
	if err != nil {
		return err
	}
	// The page the old list leaves behind holds only tokens that are
	// still live or were counted as removed above.
	return owners.Put(key, v)
}

// Drop removes every token of an owner, in every slot.
func (t *Tx) Drop(owner string) error {
	prefix, err := appendPrefixed(nil, owner)
	if err != nil {
		return err
	}
	var slots []string
	c := t.tx.Bucket(bucketOwners).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		slots = append(slots, string(k[len(prefix):]))
	}
	for _, s := range slots {
		if err := t.Set(owner, s, nil); err != nil {
			return err
		}
	}
	return nil
}

// Removed reports how many stored tokens (or token lists) the transaction
// removed or overwrote so far.
func (t *Tx) Removed() int { return t.removed }

// compactLocked copies the live keys into a fresh file, puts it in the
// old one's place and overwrites the old one; see the package comment.
// The caller holds wmu (or is Open).
func (x *Index) compactLocked() error {
	tmp := x.path + compactSuffix
	if err := ShredFile(tmp); err != nil {
		return fmt.Errorf("tokenindex: compact: %w", err)
	}
	x.mu.RLock()
	src := x.db
	x.mu.RUnlock()
	// used is how much of the old file bbolt has written; past it the
	// file is a hole that never held a byte. The copy maps as much from
	// the start, instead of growing its map (and walking every node) a
	// dozen times while it fills.
	var used int64
	if err := src.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil }); err != nil {
		return fmt.Errorf("tokenindex: compact: %w", err)
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: 5 * time.Second, InitialMmapSize: int(used)})
	if err != nil {
		return fmt.Errorf("tokenindex: compact: %w", err)
	}
	fail := func(err error) error {
		_ = dst.Close()
		_ = ShredFile(tmp)
		return fmt.Errorf("tokenindex: compact %s: %w", x.path, err)
	}
	if err := bolt.Compact(dst, src, 0); err != nil {
		return fail(err)
	}
	// The copy is clean; clearing the mark is a transaction of its own
	// (Compact copies every key), and what it frees in the new file holds
	// only live keys.
	if err := dst.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyDirty) }); err != nil {
		return fail(err)
	}
	if err := dst.Close(); err != nil {
		return fail(err)
	}
	// A handle on the old file's inode, to overwrite it once the copy has
	// taken its name.
	old, err := os.OpenFile(x.path, os.O_RDWR, 0)
	if err != nil {
		_ = ShredFile(tmp)
		return fmt.Errorf("tokenindex: compact %s: %w", x.path, err)
	}
	defer old.Close()
	if err := os.Rename(tmp, x.path); err != nil {
		_ = ShredFile(tmp)
		return fmt.Errorf("tokenindex: compact %s: %w", x.path, err)
	}
	// From here the new file is the index, whatever happens next.
	if err := syncDir(filepath.Dir(x.path)); err != nil {
		return x.breakWith(err)
	}
	db, err := openDB(x.path)
	if err != nil {
		return x.breakWith(err)
	}
	x.mu.Lock()
	prev := x.db
	x.db = db
	x.mu.Unlock()
	x.dirty = false
	x.compactions++
	// Close waits for lookups still reading the old file.
	if err := prev.Close(); err != nil {
		return fmt.Errorf("tokenindex: compact %s: close the old file: %w", x.path, err)
	}
	if err := overwrite(old, used); err != nil {
		return fmt.Errorf("tokenindex: compact %s: overwrite the old file: %w", x.path, err)
	}
	return nil
}

// breakWith records that the index has lost its file.
func (x *Index) breakWith(err error) error {
	x.broken = fmt.Errorf("%w: %w", ErrBroken, err)
	return x.broken
}

// ShredFile overwrites every byte of the file at path with zeros, syncs
// it, removes it and syncs its directory. It is for files that held
// tokens (or anything else that must not stay on disk): removing a file
// alone leaves its bytes in blocks the file system may not reuse for a
// long time. A missing file is not an error.
func ShredFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := overwrite(f, -1); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// overwrite writes zeros over the first n bytes of the file (all of it
// when n is negative or beyond its end) and syncs it.
func overwrite(f *os.File, n int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if n >= 0 && n < size {
		size = n
	}
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
	}
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func normalise(tokens []string) []string {
	out := slices.DeleteFunc(slices.Clone(tokens), func(s string) bool { return s == "" })
	slices.Sort(out)
	return slices.Compact(out)
}

// appendPrefixed appends s with a two-byte length in front, which makes
// every key component prefix-free without a forbidden separator byte.
func appendPrefixed(b []byte, s string) ([]byte, error) {
	if len(s) > math.MaxUint16 {
		return nil, ErrTooLong
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...), nil
}

// consumePrefixed reads one length-prefixed component and returns it and
// the rest.
func consumePrefixed(b []byte) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, ErrCorrupt
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return "", nil, ErrCorrupt
	}
	return string(b[2 : 2+n]), b[2+n:], nil
}

func ownerKey(owner, slot string) ([]byte, error) {
	b, err := appendPrefixed(nil, owner)
	if err != nil {
		return nil, err
	}
	if len(slot) > math.MaxUint16 {
		return nil, ErrTooLong
	}
	return append(b, slot...), nil
}

func tokenKey(token, owner, slot string) ([]byte, error) {
	b, err := appendPrefixed(nil, token)
	if err != nil {
		return nil, err
	}
	if b, err = appendPrefixed(b, owner); err != nil {
		return nil, err
	}
	if len(slot) > math.MaxUint16 {
		return nil, ErrTooLong
	}
	return append(b, slot...), nil
}

func encodeTokens(tokens []string) ([]byte, error) {
	var b []byte
	for _, t := range tokens {
		var err error
		if b, err = appendPrefixed(b, t); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func decodeTokens(v []byte) ([]string, error) {
	var out []string
	for len(v) > 0 {
		s, rest, err := consumePrefixed(v)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		v = rest
	}
	return out, nil
}
