package archive_test

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/services/retention/adapters/archive"
)

// testPackage returns a plausible package.
func testPackage() archive.Package {
	return archive.Package{
		CaseID:     "0b7e4c1a-5d2f-4e8a-9c3b-1f6d2a7e8b90",
		CaseNumber: "KC-2026-000042",
		CreatedAt:  time.Date(2026, 3, 14, 9, 26, 53, 589793238, time.FixedZone("CET", 3600)),
		Files: []archive.File{
			{Path: "case.json", Data: []byte(`{"case_number":"KC-2026-000042"}`)},
			{Path: "attachments/photo.jpg", Data: bytes.Repeat([]byte{0xff, 0xd8, 0x00, 0x10}, 4096)},
			{Path: "empty.txt", Data: nil},
		},
	}
}

// entryOf returns the manifest entry of data at path.
func entryOf(path string, data []byte) archive.Entry {
	sum := sha256.Sum256(data)
	return archive.Entry{Path: path, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
}

// manifestOf returns the manifest Write would give p.
func manifestOf(p archive.Package) archive.Manifest {
	m := archive.Manifest{Format: archive.Format, CaseID: p.CaseID, CaseNumber: p.CaseNumber, CreatedAt: p.CreatedAt.UTC()}
	for _, f := range p.Files {
		m.Entries = append(m.Entries, entryOf(f.Path, f.Data))
	}
	return m
}

// zipEntry is one entry of a ZIP file written by hand.
type zipEntry struct {
	name string
	data []byte
}

// writeZip writes a ZIP file by hand, entries in order, so that tests can
// build packages Write would never produce.
func writeZip(t *testing.T, name string, entries []zipEntry) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := zw.Create(e.name)
		require.NoError(t, err)
		_, err = w.Write(e.data)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	require.NoError(t, os.WriteFile(name, buf.Bytes(), 0o640))
}

// manifestJSON encodes a manifest as a package holds it.
func manifestJSON(t *testing.T, m archive.Manifest) []byte {
	t.Helper()
	data, err := json.Marshal(m)
	require.NoError(t, err)
	return data
}

// sha256File returns the hex SHA-256 of a file.
func sha256File(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteAndVerifyRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := testPackage()

	path, sum, err := archive.Write(dir, p)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "KC-2026-000042_0b7e4c1a-5d2f-4e8a-9c3b-1f6d2a7e8b90.zip"), path)
	require.Equal(t, archive.FileName(p.CaseNumber, p.CaseID), filepath.Base(path))
	require.Equal(t, sha256File(t, path), sum)
	require.Equal(t, []string{filepath.Base(path)}, dirNames(t, dir), "no temporary file is left")

	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), st.Mode().Perm())

	m, err := archive.Verify(path)
	require.NoError(t, err)
	want := manifestOf(p)
	require.True(t, want.CreatedAt.Equal(m.CreatedAt))
	require.Equal(t, time.UTC, m.CreatedAt.Location())
	m.CreatedAt = want.CreatedAt
	require.Equal(t, want, m)

	// Any ZIP reader sees the files, then the manifest last.
	zr, err := zip.OpenReader(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = zr.Close() })
	require.Len(t, zr.File, len(p.Files)+1)
	for i, f := range p.Files {
		require.Equal(t, f.Path, zr.File[i].Name)
		rc, err := zr.File[i].Open()
		require.NoError(t, err)
		data, err := io.ReadAll(rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		require.Equal(t, len(f.Data), len(data))
		require.True(t, bytes.Equal(f.Data, data))
		require.True(t, zr.File[i].Modified.Equal(p.CreatedAt.Truncate(time.Second)))
	}
	require.Equal(t, archive.ManifestName, zr.File[len(p.Files)].Name)
}

func TestVerifyDetectsCorruption(t *testing.T) {
	p := testPackage()
	caseJSON, photo := p.Files[0].Data, p.Files[1].Data
	good := manifestOf(archive.Package{CaseID: p.CaseID, CaseNumber: p.CaseNumber, CreatedAt: p.CreatedAt, Files: p.Files[:2]})
	withEntries := func(es ...archive.Entry) archive.Manifest {
		m := good
		m.Entries = es
		return m
	}
	flipped := bytes.Clone(photo)
	flipped[100] ^= 0x01

	tests := []struct {
		name    string
		entries func(t *testing.T) []zipEntry
		want    string
	}{
		{
			name: "byte flipped in an entry",
			entries: func(t *testing.T) []zipEntry {
				return []zipEntry{{"case.json", caseJSON}, {"attachments/photo.jpg", flipped}, {archive.ManifestName, manifestJSON(t, good)}}
			},
			want: `entry "attachments/photo.jpg" has SHA-256`,
		},
		{
			name: "entry truncated",
			entries: func(t *testing.T) []zipEntry {
				return []zipEntry{{"case.json", caseJSON[:5]}, {"attachments/photo.jpg", photo}, {archive.ManifestName, manifestJSON(t, good)}}
			},
			want: `entry "case.json" has 5 bytes`,
		},
		{
			name: "entry padded",
			entries: func(t *testing.T) []zipEntry {
				return []zipEntry{{"case.json", append(bytes.Clone(caseJSON), ' ')}, {"attachments/photo.jpg", photo}, {archive.ManifestName, manifestJSON(t, good)}}
			},
			want: `entry "case.json" is longer`,
		},
		{
			name: "extra entry",
			entries: func(t *testing.T) []zipEntry {
				return []zipEntry{{"case.json", caseJSON}, {"attachments/photo.jpg", photo}, {"notes.txt", []byte("x")}, {archive.ManifestName, manifestJSON(t, good)}}
			},
			want: `entry "notes.txt" is not in the manifest`,
		},
		{
			name: "missing entry",
			entries: func(t *testing.T) []zipEntry {
				return []zipEntry{{"case.json", caseJSON}, {archive.ManifestName, manifestJSON(t, good)}}
			},
			want: `entry "attachments/photo.jpg" is in the manifest but missing`,
		},
		{
			name: "duplicate entry",
			entries: func(t *testing.T) []zipEntry {
				return []zipEntry{{"case.json", caseJSON}, {"case.json", caseJSON}, {"attachments/photo.jpg", photo}, {archive.ManifestName, manifestJSON(t, good)}}
			},
			want: `entry "case.json" appears more than once`,
		},
		{
			name: "duplicate in the manifest",
			entries: func(t *testing.T) []zipEntry {
				m := withEntries(entryOf("case.json", caseJSON), entryOf("case.json", caseJSON))
				return []zipEntry{{"case.json", caseJSON}, {archive.ManifestName, manifestJSON(t, m)}}
			},
			want: `entry "case.json": duplicate`,
		},
		{
			name: "no manifest",
			entries: func(t *testing.T) []zipEntry {
				return []zipEntry{{"case.json", caseJSON}, {"attachments/photo.jpg", photo}}
			},
			want: "no manifest.json",
		},
		{
			name: "two manifests",
			entries: func(t *testing.T) []zipEntry {
				return []zipEntry{{"case.json", caseJSON}, {"attachments/photo.jpg", photo}, {archive.ManifestName, manifestJSON(t, good)}, {archive.ManifestName, manifestJSON(t, good)}}
			},
			want: `entry "manifest.json" appears more than once`,
		},
		{
			name: "manifest not JSON",
			entries: func(t *testing.T) []zipEntry {
				return []zipEntry{{"case.json", caseJSON}, {archive.ManifestName, []byte("case.json 42")}}
			},
			want: `entry "manifest.json" is not a manifest`,
		},
		{
			name: "manifest with unknown field",
			entries: func(t *testing.T) []zipEntry {
				data := bytes.Replace(manifestJSON(t, withEntries(entryOf("case.json", caseJSON))), []byte(`{"format"`), []byte(`{"extra":1,"format"`), 1)
				return []zipEntry{{"case.json", caseJSON}, {archive.ManifestName, data}}
			},
			want: `entry "manifest.json" is not a manifest`,
		},
		{
			name: "other format",
			entries: func(t *testing.T) []zipEntry {
				m := withEntries(entryOf("case.json", caseJSON))
				m.Format = "kontakt-archive/2"
				return []zipEntry{{"case.json", caseJSON}, {archive.ManifestName, manifestJSON(t, m)}}
			},
			want: `format "kontakt-archive/2"`,
		},
		{
			name: "path escaping the package",
			entries: func(t *testing.T) []zipEntry {
				m := withEntries(entryOf("../evil", caseJSON))
				return []zipEntry{{"../evil", caseJSON}, {archive.ManifestName, manifestJSON(t, m)}}
			},
			want: `entry "../evil": path is not clean`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "p.zip")
			writeZip(t, name, tc.entries(t))
			_, err := archive.Verify(name)
			require.ErrorIs(t, err, archive.ErrCorrupt)
			require.ErrorContains(t, err, tc.want)
		})
	}

	t.Run("hand-made package that is right verifies", func(t *testing.T) {
		name := filepath.Join(t.TempDir(), "p.zip")
		writeZip(t, name, []zipEntry{{"case.json", caseJSON}, {"attachments/photo.jpg", photo}, {archive.ManifestName, manifestJSON(t, good)}})
		_, err := archive.Verify(name)
		require.NoError(t, err)
	})
}

func TestVerifyDetectsFlippedByteOnDisk(t *testing.T) {
	p := testPackage()
	p.Files = []archive.File{{Path: "case.json", Data: bytes.Repeat([]byte("kontakt "), 1000)}}
	path, _, err := archive.Write(t.TempDir(), p)
	require.NoError(t, err)

	zr, err := zip.OpenReader(path)
	require.NoError(t, err)
	off, err := zr.File[0].DataOffset()
	require.NoError(t, err)
	size := int64(zr.File[0].CompressedSize64)
	require.NoError(t, zr.Close())

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	data[off+size/2] ^= 0x40
	require.NoError(t, os.WriteFile(path, data, 0o640))

	_, err = archive.Verify(path)
	require.ErrorIs(t, err, archive.ErrCorrupt)
	require.ErrorContains(t, err, `entry "case.json"`)
}

func TestVerifyRefusesWhatIsNoPackage(t *testing.T) {
	dir := t.TempDir()
	notZip := filepath.Join(dir, "x.zip")
	require.NoError(t, os.WriteFile(notZip, []byte("not a zip"), 0o640))
	_, err := archive.Verify(notZip)
	require.ErrorIs(t, err, archive.ErrCorrupt)

	_, err = archive.Verify(dir)
	require.ErrorIs(t, err, archive.ErrCorrupt)

	_, err = archive.Verify(filepath.Join(dir, "missing.zip"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestWriteIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	p := testPackage()
	path, sum, err := archive.Write(dir, p)
	require.NoError(t, err)
	before, err := os.Stat(path)
	require.NoError(t, err)

	// The same package again, as after a crash between writing the
	// package and recording its receipt; the time may come back in
	// another zone.
	again := testPackage()
	again.CreatedAt = again.CreatedAt.UTC()
	path2, sum2, err := archive.Write(dir, again)
	require.NoError(t, err)
	require.Equal(t, path, path2)
	require.Equal(t, sum, sum2)
	after, err := os.Stat(path)
	require.NoError(t, err)
	require.True(t, os.SameFile(before, after), "the package is not rewritten")
	require.Equal(t, before.ModTime(), after.ModTime())
	require.Equal(t, []string{filepath.Base(path)}, dirNames(t, dir))

	// A repeated export usually has a new creation time; it is still the
	// same package, and the one in place is kept.
	later := testPackage()
	later.CreatedAt = later.CreatedAt.Add(time.Hour)
	path3, sum3, err := archive.Write(dir, later)
	require.NoError(t, err)
	require.Equal(t, path, path3)
	require.Equal(t, sum, sum3)
	m, err := archive.Verify(path)
	require.NoError(t, err)
	require.True(t, m.CreatedAt.Equal(testPackage().CreatedAt), "the first creation time stays")

	// Writing the same package to a fresh directory gives the same bytes.
	_, sum4, err := archive.Write(t.TempDir(), testPackage())
	require.NoError(t, err)
	require.Equal(t, sum, sum4)
}

func TestWriteRefusesToReplaceAnotherPackage(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, final string)
		also    error
	}{
		{
			name: "other content",
			prepare: func(t *testing.T, final string) {
				p := testPackage()
				p.Files[0].Data = []byte(`{"case_number":"changed"}`)
				path, _, err := archive.Write(filepath.Dir(final), p)
				require.NoError(t, err)
				require.Equal(t, final, path)
			},
		},
		{
			name: "files in another order",
			prepare: func(t *testing.T, final string) {
				p := testPackage()
				p.Files[0], p.Files[1] = p.Files[1], p.Files[0]
				_, _, err := archive.Write(filepath.Dir(final), p)
				require.NoError(t, err)
			},
		},
		{
			name: "a file more",
			prepare: func(t *testing.T, final string) {
				p := testPackage()
				p.Files = append(p.Files, archive.File{Path: "more.txt"})
				_, _, err := archive.Write(filepath.Dir(final), p)
				require.NoError(t, err)
			},
		},
		{
			name: "corrupt file",
			prepare: func(t *testing.T, final string) {
				require.NoError(t, os.WriteFile(final, []byte("half a zip"), 0o640))
			},
			also: archive.ErrCorrupt,
		},
		{
			name: "directory",
			prepare: func(t *testing.T, final string) {
				require.NoError(t, os.Mkdir(final, 0o750))
			},
			also: archive.ErrCorrupt,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := testPackage()
			final := filepath.Join(dir, archive.FileName(p.CaseNumber, p.CaseID))
			tc.prepare(t, final)
			before, err := os.Stat(final)
			require.NoError(t, err)

			_, _, err = archive.Write(dir, p)
			require.ErrorIs(t, err, archive.ErrExists)
			if tc.also != nil {
				require.ErrorIs(t, err, tc.also)
			}
			after, err := os.Stat(final)
			require.NoError(t, err)
			require.True(t, os.SameFile(before, after), "the existing file is left alone")
			require.Equal(t, before.ModTime(), after.ModTime())
			require.Equal(t, []string{filepath.Base(final)}, dirNames(t, dir), "no temporary file is left")
		})
	}
}

func TestWriteRefusesInvalidPackages(t *testing.T) {
	file := func(path string) archive.File { return archive.File{Path: path, Data: []byte("x")} }
	tests := []struct {
		name   string
		mutate func(*archive.Package)
		want   string
	}{
		{"empty path", func(p *archive.Package) { p.Files = []archive.File{file("")} }, "empty path"},
		{"absolute", func(p *archive.Package) { p.Files = []archive.File{file("/etc/passwd")} }, "absolute"},
		{"parent", func(p *archive.Package) { p.Files = []archive.File{file("../case.json")} }, "not clean"},
		{"dot dot alone", func(p *archive.Package) { p.Files = []archive.File{file("..")} }, "not clean"},
		{"dot", func(p *archive.Package) { p.Files = []archive.File{file(".")} }, "not clean"},
		{"inner parent", func(p *archive.Package) { p.Files = []archive.File{file("a/../case.json")} }, "not clean"},
		{"dot element", func(p *archive.Package) { p.Files = []archive.File{file("./case.json")} }, "not clean"},
		{"double slash", func(p *archive.Package) { p.Files = []archive.File{file("a//case.json")} }, "not clean"},
		{"directory", func(p *archive.Package) { p.Files = []archive.File{file("attachments/")} }, "not clean"},
		{"backslash", func(p *archive.Package) { p.Files = []archive.File{file(`..\case.json`)} }, "backslash"},
		{"drive letter", func(p *archive.Package) { p.Files = []archive.File{file("C:case.json")} }, "colon"},
		{"control character", func(p *archive.Package) { p.Files = []archive.File{file("case\n.json")} }, "control"},
		{"invalid UTF-8", func(p *archive.Package) { p.Files = []archive.File{file("case\xff.json")} }, "UTF-8"},
		{"too long", func(p *archive.Package) { p.Files = []archive.File{file(strings.Repeat("a", 1025))} }, "longer"},
		{"manifest", func(p *archive.Package) { p.Files = append(p.Files, file("manifest.json")) }, "reserved"},
		{"manifest other case", func(p *archive.Package) { p.Files = append(p.Files, file("Manifest.JSON")) }, "reserved"},
		{"duplicate", func(p *archive.Package) { p.Files = append(p.Files, file("case.json")) }, "duplicate"},
		{"duplicate other case", func(p *archive.Package) { p.Files = append(p.Files, file("CASE.json")) }, "duplicate"},
		{"file and directory", func(p *archive.Package) { p.Files = append(p.Files, file("case.json/x")) }, "not a directory"},
		{"no files", func(p *archive.Package) { p.Files = nil }, "at least one file"},
		{"no case id", func(p *archive.Package) { p.CaseID = "" }, "case id"},
		{"case id with slash", func(p *archive.Package) { p.CaseID = "../x" }, "case id"},
		{"case number with space", func(p *archive.Package) { p.CaseNumber = "KC 1" }, "case number"},
		{"no time", func(p *archive.Package) { p.CreatedAt = time.Time{} }, "creation time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := testPackage()
			tc.mutate(&p)
			_, _, err := archive.Write(dir, p)
			require.ErrorIs(t, err, archive.ErrInvalid)
			require.ErrorContains(t, err, tc.want)
			require.Empty(t, dirNames(t, dir), "nothing is written")
		})
	}
}

func TestWriteIntoMissingDirectoryFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	_, _, err := archive.Write(dir, testPackage())
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestRemoveCase(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	pkg := func(caseID string, rev uint64) string {
		p, _, err := archive.Write(dir, archive.Package{CaseID: caseID, CaseNumber: "KC-2026-000001", CreatedAt: at, Revision: rev,
			Files: []archive.File{{Path: "case.json", Data: []byte(`{"name":"Anna Andersson"}`)}}})
		require.NoError(t, err)
		return p
	}
	pkg("c-1", 3)
	pkg("c-1", 7)
	other := pkg("x_c-1", 3) // another case whose id ends in this one's
	kept := pkg("c-2", 3)
	// Written after the withdrawal at revision 10: the case was marked
	// again. A rebuilt index applies the withdrawal again and must leave
	// it, or the archive loses it.
	later := pkg("c-1", 12)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "KC-2026-000001_c-1_r9.zip.tmp-abc"), []byte("half"), 0o600))
	laterTmp := filepath.Join(dir, "KC-2026-000001_c-1_r14.zip.tmp-def")
	require.NoError(t, os.WriteFile(laterTmp, []byte("half"), 0o600))
	legacy := filepath.Join(dir, archive.FileName("KC-2026-000001", "c-1"))
	require.NoError(t, os.WriteFile(legacy, []byte("before revisions were named"), 0o600))

	removed, err := archive.RemoveCase(dir, "c-1", 10)
	require.NoError(t, err)
	require.Equal(t, []string{"KC-2026-000001_c-1.zip", "KC-2026-000001_c-1_r3.zip", "KC-2026-000001_c-1_r7.zip", "KC-2026-000001_c-1_r9.zip.tmp-abc"}, removed)
	left, err := filepath.Glob(filepath.Join(dir, "*"))
	require.NoError(t, err)
	require.ElementsMatch(t, []string{other, kept, later, laterTmp}, left)

	removed, err = archive.RemoveCase(dir, "c-1", 10)
	require.NoError(t, err)
	require.Empty(t, removed)
	_, err = archive.RemoveCase(dir, "../c-1", 10)
	require.ErrorIs(t, err, archive.ErrInvalid)
}
