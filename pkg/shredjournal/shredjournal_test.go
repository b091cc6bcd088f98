package shredjournal_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/shredjournal"
)

func event(id string, classes ...string) shredjournal.Entry {
	return shredjournal.Entry{Kind: shredjournal.KindEvent, Event: &shredjournal.Event{
		Stream: "c0ffee00-0000-4000-8000-000000000001", ID: id, Type: "kontakt.case.v1.PersonalDataRedacted",
		Data: []byte{0x0a, 0x01, 0x02}, Revision: 7, Position: 7, Destroy: classes,
	}}
}

func receipt(hash, prev string) shredjournal.Entry {
	return shredjournal.Entry{Kind: shredjournal.KindReceipt, Receipt: &shredjournal.Receipt{
		Key: "case.redaction." + hash[:4], Hash: hash, Prev: prev, Data: []byte(`{"hash":"` + hash + `"}`),
	}}
}

func ids(es []shredjournal.Entry) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.ID())
	}
	return out
}

func openJournal(t *testing.T, dir string, opts ...shredjournal.Option) *shredjournal.Journal {
	t.Helper()
	j, err := shredjournal.Open(dir, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func TestAppendReadAndDuplicates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	j := openJournal(t, dir)
	require.NoError(t, j.Append(event("e1", "contact"), receipt("aaaa1111", "0000")))
	// A batch retried after a crash writes the same entries again: they
	// are stored once; so is a duplicate inside one call.
	require.NoError(t, j.Append(event("e1", "contact"), event("e2"), event("e2")))
	last, n := j.Last()
	require.Equal(t, "event:e2", last)
	require.Equal(t, 3, n)
	require.True(t, j.Has("receipt:aaaa1111"))
	require.False(t, j.Has("event:e3"))

	got, err := shredjournal.Read(dir)
	require.NoError(t, err)
	require.Equal(t, []string{"event:e1", "receipt:aaaa1111", "event:e2"}, ids(got))
	require.Equal(t, []string{"contact"}, got[0].Event.Destroy)
	require.Equal(t, []byte{0x0a, 0x01, 0x02}, got[0].Event.Data)
	require.False(t, got[0].Written.IsZero())

	// Reopened, the journal knows what it holds.
	require.NoError(t, j.Close())
	j2 := openJournal(t, dir)
	require.Equal(t, []string{"event:e1", "receipt:aaaa1111", "event:e2"}, ids(j2.Tail()))
	require.NoError(t, j2.Append(event("e1"), event("e3")))
	require.Equal(t, []string{"event:e1", "receipt:aaaa1111", "event:e2", "event:e3"}, ids(j2.Tail()))
	for i := range 40 {
		require.NoError(t, j2.Append(event(fmt.Sprintf("more-%02d", i))))
	}
	tail := j2.Tail()
	require.Len(t, tail, 32)
	require.Equal(t, "event:more-39", tail[31].ID())
	got, err = shredjournal.Read(dir)
	require.NoError(t, err)
	got = got[:4]
	require.NoError(t, err)
	require.Equal(t, []string{"event:e1", "receipt:aaaa1111", "event:e2", "event:e3"}, ids(got))

	info, err := os.Stat(filepath.Join(dir, shredjournal.FileName))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	dinfo, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), dinfo.Mode().Perm())
}

func TestMissingJournalIsEmpty(t *testing.T) {
	got, err := shredjournal.Read(filepath.Join(t.TempDir(), "none"))
	require.NoError(t, err)
	require.Empty(t, got)
}

// TestEntriesAreOnDiskBeforeAppendReturns: the hook that runs after the
// sync (where the retention projector goes on to destroy keys) already
// finds the entries in the file, read by another handle.
func TestEntriesAreOnDiskBeforeAppendReturns(t *testing.T) {
	dir := t.TempDir()
	var seenByHook []string
	j := openJournal(t, dir, shredjournal.WithAfterSync(func(added []shredjournal.Entry) {
		got, err := shredjournal.Read(dir)
		require.NoError(t, err)
		seenByHook = ids(got)
		require.Equal(t, ids(added), seenByHook[len(seenByHook)-len(added):])
	}))
	require.NoError(t, j.Append(event("e1", "identity")))
	require.Equal(t, []string{"event:e1"}, seenByHook)
	// Nothing new: no write, no hook.
	seenByHook = nil
	require.NoError(t, j.Append(event("e1", "identity")))
	require.Nil(t, seenByHook)
}

func TestTornLastLine(t *testing.T) {
	path := func(dir string) string { return filepath.Join(dir, shredjournal.FileName) }
	tests := []struct {
		name string
		tear func(t *testing.T, b []byte) []byte
	}{
		{"cut in the middle", func(_ *testing.T, b []byte) []byte { return b[:len(b)-20] }},
		{"newline missing", func(_ *testing.T, b []byte) []byte { return b[:len(b)-1] }},
		{"zeros after the last line", func(_ *testing.T, b []byte) []byte { return append(b, make([]byte, 512)...) }},
		{"last line fails its checksum", func(t *testing.T, b []byte) []byte {
			i := bytes.LastIndex(b[:len(b)-1], []byte("\n"))
			require.Positive(t, i)
			c := bytes.Clone(b)
			c[i+70] ^= 0x01
			return c
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			j := openJournal(t, dir)
			require.NoError(t, j.Append(event("e1"), event("e2")))
			require.NoError(t, j.Append(event("e3")))
			require.NoError(t, j.Close())
			b, err := os.ReadFile(path(dir))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path(dir), tc.tear(t, b), 0o600))

			got, err := shredjournal.Read(dir)
			require.NoError(t, err)
			want := []string{"event:e1", "event:e2"}
			if tc.name == "zeros after the last line" {
				want = append(want, "event:e3")
			}
			require.Equal(t, want, ids(got))

			// The writer cuts the torn line off, so the next entry starts
			// on a line of its own and the file reads clean.
			j2 := openJournal(t, dir)
			require.NoError(t, j2.Append(event("e4")))
			got, err = shredjournal.Read(dir)
			require.NoError(t, err)
			require.Equal(t, append(want, "event:e4"), ids(got))
			// e3, cut off when torn, can be written again.
			require.NoError(t, j2.Append(event("e3")))
			got, err = shredjournal.Read(dir)
			require.NoError(t, err)
			require.Contains(t, ids(got), "event:e3")
		})
	}
}

// TestCorruptionIsNotSkipped: a bad line before the last is reported,
// by the reader and the writer: skipping it could forget a destroyed key.
func TestCorruptionIsNotSkipped(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir)
	require.NoError(t, j.Append(event("e1", "contact"), event("e2"), event("e3")))
	require.NoError(t, j.Close())
	p := filepath.Join(dir, shredjournal.FileName)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	i := bytes.Index(b, []byte(`"contact"`))
	require.Positive(t, i)
	b[i+1] = 'k' // "kontact": the JSON still parses, the checksum does not
	require.NoError(t, os.WriteFile(p, b, 0o600))

	_, err = shredjournal.Read(dir)
	require.ErrorIs(t, err, shredjournal.ErrCorrupt)
	require.Contains(t, err.Error(), "line 1")
	_, err = shredjournal.Open(dir)
	require.ErrorIs(t, err, shredjournal.ErrCorrupt)
}

func TestBackupMarks(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir)
	mark := shredjournal.Entry{Kind: shredjournal.KindBackup, Backup: "B1"}
	require.NoError(t, j.Append(event("e1"), mark, mark))
	got, err := shredjournal.Read(dir)
	require.NoError(t, err)
	require.Equal(t, []string{"event:e1", "backup:B1"}, ids(got))
	require.ErrorIs(t, j.Append(shredjournal.Entry{Kind: shredjournal.KindBackup}), shredjournal.ErrInvalid)
}

func TestMergeIsAUnion(t *testing.T) {
	a := []shredjournal.Entry{event("e1"), receipt("aaaa1111", "0000"), event("e2")}
	b := []shredjournal.Entry{event("e1"), event("e9"), receipt("aaaa1111", "0000"), receipt("bbbb2222", "aaaa1111")}
	require.Equal(t, []string{"event:e1", "receipt:aaaa1111", "event:e2", "event:e9", "receipt:bbbb2222"}, ids(shredjournal.Merge(a, b)))
	require.Equal(t, ids(shredjournal.Merge(a, b)), ids(shredjournal.Merge(shredjournal.Merge(a, b), a, b)), "merging again adds nothing")
	require.Empty(t, shredjournal.Merge())
}

func TestInvalidEntriesAreRefused(t *testing.T) {
	j := openJournal(t, t.TempDir())
	for i, e := range []shredjournal.Entry{
		{Kind: "other"},
		{Kind: shredjournal.KindEvent},
		{Kind: shredjournal.KindEvent, Event: &shredjournal.Event{Stream: "s", ID: "i"}},
		{Kind: shredjournal.KindReceipt, Receipt: &shredjournal.Receipt{Key: "k", Hash: "h"}},
		{Kind: shredjournal.KindReceipt, Receipt: &shredjournal.Receipt{Key: "k", Hash: "h", Data: []byte("x")}, Event: &shredjournal.Event{}},
	} {
		require.ErrorIs(t, j.Append(e), shredjournal.ErrInvalid, "entry %d", i)
	}
	_, n := j.Last()
	require.Zero(t, n)
}

func TestOneWriterAtATime(t *testing.T) {
	dir := t.TempDir()
	openJournal(t, dir)
	_, err := shredjournal.Open(dir)
	require.ErrorIs(t, err, shredjournal.ErrLocked)
}

func TestClockStampsEntries(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	j := openJournal(t, dir, shredjournal.WithClock(func() time.Time { return at }))
	require.NoError(t, j.Append(event("e1")))
	got, err := shredjournal.Read(dir)
	require.NoError(t, err)
	require.True(t, got[0].Written.Equal(at), fmt.Sprint(got[0].Written))
}
