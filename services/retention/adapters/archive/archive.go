// Package archive writes and checks archive packages: ZIP files holding what
// is kept of a case the retention plan says is preserved (bevaras), written
// before anything of the case is removed, so that the public record
// survives the redaction or deletion.
//
// A package holds the caller's files and, as its last entry, manifest.json,
// which lists every other entry with its size and SHA-256. Verify recomputes
// those, so a package that was altered, truncated or padded after it was
// written is detected, and the SHA-256 of the whole file, which Write
// returns, goes into the retention ledger's archive receipt.
//
// Write is crash-safe: it writes a temporary file
// ("<final name>.tmp-<random>") in the target directory, fsyncs it, renames
// it into place and fsyncs the directory, so the final name only ever holds
// a complete package. A crash can leave a temporary file behind, which is
// never a package and may be removed; writing the same package again after
// a crash returns the one already in place.
package archive

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kontakt-se/kontakt/services/retention/app"
)

// Errors callers can test for with errors.Is.
var (
	// ErrInvalid means the package was refused before anything was
	// written: a bad path, id or time.
	ErrInvalid = errors.New("archive: invalid package")
	// ErrCorrupt means a package file does not match its manifest, or is
	// not a package at all.
	ErrCorrupt = errors.New("archive: corrupt package")
	// ErrExists means the final file exists but is not this package (other
	// content, or it does not verify). Write never overwrites it, because
	// it may be the only copy of a case that has since been removed.
	ErrExists = errors.New("archive: a different package exists")
)

// Format is the manifest's format identifier; it changes if the layout of
// packages ever does, so that readers can tell which rules apply.
const Format = "kontakt-archive/1"

// ManifestName is the path of the manifest inside a package.
const ManifestName = "manifest.json"

// Limits.
const (
	// maxPathLen bounds an entry path; real paths are short.
	maxPathLen = 1024
	// maxIDLen bounds the case id and case number, which form the file
	// name.
	maxIDLen = 128
	// maxManifestSize bounds how much of a manifest Verify reads, so that a
	// hostile package cannot exhaust memory.
	maxManifestSize = 16 << 20
	// fileMode is the permission of a package file: readable by the
	// service's group (backup, archive transfer), by nobody else.
	fileMode = 0o640
)

// File is one file of a package (the retention app's ArchiveFile).
type File = app.ArchiveFile

// Package is what Write puts in one archive file (the retention app's
// ArchivePackage).
type Package = app.ArchivePackage

// Dir is the archive directory as the retention app uses it: it
// implements app.Archive with Write, Verify and RemoveCase on one
// directory.
type Dir string

var _ app.Archive = Dir("")

// Export implements app.Archive: Write, then Verify of what was written,
// so a package that does not read back is never recorded as exported.
func (d Dir) Export(p Package) (name, sum string, err error) {
	path, sum, err := Write(string(d), p)
	if err != nil {
		return "", "", err
	}
	if _, err := Verify(path); err != nil {
		return "", "", fmt.Errorf("the written package does not verify: %w", err)
	}
	return filepath.Base(path), sum, nil
}

// RemoveCase implements app.Archive with RemoveCase on the directory.
func (d Dir) RemoveCase(caseID string, before uint64) ([]string, error) {
	return RemoveCase(string(d), caseID, before)
}

// Entry describes one file of a package in the manifest.
type Entry struct {
	// Path is the file's path inside the package.
	Path string `json:"path"`
	// Size is the file's size in bytes.
	Size int64 `json:"size"`
	// SHA256 is the lowercase hex SHA-256 of the file's content.
	SHA256 string `json:"sha256"`
}

// Manifest is the content of manifest.json.
type Manifest struct {
	// Format is always Format.
	Format string `json:"format"`
	// CaseID is the case the package belongs to.
	CaseID string `json:"case_id"`
	// CaseNumber is the case's public number.
	CaseNumber string `json:"case_number"`
	// CreatedAt is when the package was made, in UTC.
	CreatedAt time.Time `json:"created_at"`
	// Entries lists every other entry of the package, in order.
	Entries []Entry `json:"entries"`
}

// FileName returns the name Write gives the package of a case:
// "<case_number>_<case_id>.zip".
func FileName(caseNumber, caseID string) string {
	return caseNumber + "_" + caseID + ".zip"
}

// FileNameAt names the package of a case exported at a revision of its
// stream. A case exported again after it changed, or an export that lost a
// race with another append and is taken again, gets a file of its own, so
// a package once written is never replaced and always matches the SHA-256
// that an event or receipt recorded for it.
func FileNameAt(caseNumber, caseID string, revision uint64) string {
	return fmt.Sprintf("%s_%s_r%d.zip", caseNumber, caseID, revision)
}

// Write writes p as a package into dir and returns the package's path and
// the hex SHA-256 of the whole file. If the file is already there and
// verifies with the same manifest (an export repeated after a crash: same
// case, same entries in the same order; the creation time may differ), it
// is left as it is and its path and SHA-256 are returned; if something else
// is there, Write fails with ErrExists.
func Write(dir string, p Package) (string, string, error) {
	return write(dir, p, linkNoReplace)
}

// linkNoReplace gives the finished temporary file its final name unless
// that name exists (os.ErrExist then), and removes the temporary name. A
// rename would replace a package that another retention instance wrote
// at the same moment, leaving a file whose SHA-256 is not the one its
// event and receipt recorded.
func linkNoReplace(tmp, final string) error {
	if err := os.Link(tmp, final); err != nil {
		return err
	}
	return os.Remove(tmp)
}

// write is Write with the rename step replaceable, so that tests can make
// the last step fail and check that nothing is left behind.
func write(dir string, p Package, rename func(oldpath, newpath string) error) (_ string, _ string, err error) {
	want, err := manifestOf(p)
	if err != nil {
		return "", "", err
	}
	name := FileName(p.CaseNumber, p.CaseID)
	if p.Revision > 0 {
		name = FileNameAt(p.CaseNumber, p.CaseID, p.Revision)
	}
	final := filepath.Join(dir, name)
	if _, err := os.Lstat(final); err == nil {
		return existing(final, want)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("archive: write %s: %w", final, err)
	}

	f, err := os.CreateTemp(dir, name+".tmp-*")
	if err != nil {
		return "", "", fmt.Errorf("archive: write %s: %w", final, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(fileMode); err != nil {
		return "", "", fmt.Errorf("archive: write %s: %w", final, err)
	}
	h := sha256.New()
	if err := writeZip(io.MultiWriter(f, h), p, want); err != nil {
		return "", "", fmt.Errorf("archive: write %s: %w", final, err)
	}
	if err := f.Sync(); err != nil {
		return "", "", fmt.Errorf("archive: write %s: sync: %w", final, err)
	}
	if err := f.Close(); err != nil {
		return "", "", fmt.Errorf("archive: write %s: close: %w", final, err)
	}
	if err := rename(tmp, final); err != nil {
		if errors.Is(err, os.ErrExist) {
			// Another writer got there first: keep theirs if it is the
			// same package.
			_ = os.Remove(tmp)
			return existing(final, want)
		}
		return "", "", fmt.Errorf("archive: write %s: %w", final, err)
	}
	if err := syncDir(dir); err != nil {
		// The package is complete under its final name; only its
		// durability across a power cut is in doubt, and a repeated Write
		// finds and returns it.
		return "", "", fmt.Errorf("archive: write %s: %w", final, err)
	}
	return final, hex.EncodeToString(h.Sum(nil)), nil
}

// writeZip writes the package's entries and then its manifest to w.
func writeZip(w io.Writer, p Package, m Manifest) error {
	zw := zip.NewWriter(w)
	modified := m.CreatedAt
	for _, file := range p.Files {
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: file.Path, Method: zip.Deflate, Modified: modified})
		if err != nil {
			return fmt.Errorf("entry %q: %w", file.Path, err)
		}
		if _, err := fw.Write(file.Data); err != nil {
			return fmt.Errorf("entry %q: %w", file.Path, err)
		}
	}
	data, err := encodeManifest(m)
	if err != nil {
		return err
	}
	fw, err := zw.CreateHeader(&zip.FileHeader{Name: ManifestName, Method: zip.Deflate, Modified: modified})
	if err != nil {
		return fmt.Errorf("entry %q: %w", ManifestName, err)
	}
	if _, err := fw.Write(data); err != nil {
		return fmt.Errorf("entry %q: %w", ManifestName, err)
	}
	return zw.Close()
}

// encodeManifest renders the manifest as indented JSON, for people who
// open the package by hand.
func encodeManifest(m Manifest) ([]byte, error) {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return append(data, '\n'), nil
}

// existing decides what to do when the final file is already there: return
// it if it is this package, refuse otherwise.
func existing(final string, want Manifest) (string, string, error) {
	got, err := Verify(final)
	if err != nil {
		return "", "", fmt.Errorf("%w: %s is there but does not verify: %w", ErrExists, final, err)
	}
	if !sameManifest(got, want) {
		return "", "", fmt.Errorf("%w: %s holds other content for case %s", ErrExists, final, want.CaseID)
	}
	sum, err := fileSHA256(final)
	if err != nil {
		return "", "", err
	}
	return final, sum, nil
}

// sameManifest reports whether two manifests describe the same package: the
// same case and the same entries, in the same order. CreatedAt is left out
// on purpose: an export repeated after a crash usually stamps the package
// with a new time, and it is still the same export of the same files.
func sameManifest(a, b Manifest) bool {
	return a.Format == b.Format && a.CaseID == b.CaseID && a.CaseNumber == b.CaseNumber &&
		slices.Equal(a.Entries, b.Entries)
}

// fileSHA256 returns the hex SHA-256 of a file's content.
func fileSHA256(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", fmt.Errorf("archive: hash %s: %w", name, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("archive: hash %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// syncDir fsyncs a directory, so that a rename into it survives a power
// cut.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// manifestOf validates a package and returns the manifest it gets.
func manifestOf(p Package) (Manifest, error) {
	if !validID(p.CaseID) {
		return Manifest{}, fmt.Errorf("%w: case id %q is not 1 to %d characters of [A-Za-z0-9_-]", ErrInvalid, p.CaseID, maxIDLen)
	}
	if !validID(p.CaseNumber) {
		return Manifest{}, fmt.Errorf("%w: case number %q is not 1 to %d characters of [A-Za-z0-9_-]", ErrInvalid, p.CaseNumber, maxIDLen)
	}
	// ZIP keeps modification times as MS-DOS dates, 1980 to 2107.
	if y := p.CreatedAt.UTC().Year(); y < 1980 || y > 2107 {
		return Manifest{}, fmt.Errorf("%w: creation time %s is missing or outside 1980..2107", ErrInvalid, p.CreatedAt)
	}
	if len(p.Files) == 0 {
		return Manifest{}, fmt.Errorf("%w: case %s: a package needs at least one file", ErrInvalid, p.CaseID)
	}
	paths := make([]string, len(p.Files))
	for i, f := range p.Files {
		paths[i] = f.Path
	}
	if err := checkPaths(paths); err != nil {
		return Manifest{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	m := Manifest{Format: Format, CaseID: p.CaseID, CaseNumber: p.CaseNumber, CreatedAt: p.CreatedAt.UTC(), Entries: make([]Entry, len(p.Files))}
	for i, f := range p.Files {
		sum := sha256.Sum256(f.Data)
		m.Entries[i] = Entry{Path: f.Path, Size: int64(len(f.Data)), SHA256: hex.EncodeToString(sum[:])}
	}
	return m, nil
}

// validID reports whether s can be part of a file name on every system:
// 1 to maxIDLen characters of [A-Za-z0-9_-].
func validID(s string) bool {
	if s == "" || len(s) > maxIDLen {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkPaths checks the entry paths of a package: each valid (see
// checkPath), none the manifest, no two the same when case is ignored (they
// would collide when extracted on Windows or macOS), and none both a file
// and a directory.
func checkPaths(paths []string) error {
	seen := make(map[string]string, len(paths))
	for _, p := range paths {
		if err := checkPath(p); err != nil {
			return err
		}
		folded := strings.ToLower(p)
		if other, dup := seen[folded]; dup {
			return fmt.Errorf("entry %q: duplicate of %q", p, other)
		}
		seen[folded] = p
	}
	for _, p := range paths {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if other, clash := seen[strings.ToLower(dir)]; clash {
				return fmt.Errorf("entry %q: %q is a file, not a directory", p, other)
			}
		}
	}
	return nil
}

// checkPath checks one entry path: non-empty valid UTF-8 without control
// characters, backslashes or colons; relative; clean (no ".", "..", empty
// or trailing elements); and not the manifest's name.
func checkPath(p string) error {
	switch {
	case p == "":
		return errors.New("entry with an empty path")
	case len(p) > maxPathLen:
		return fmt.Errorf("entry %q: path longer than %d bytes", p[:32]+"...", maxPathLen)
	case !utf8.ValidString(p):
		return fmt.Errorf("entry %q: path is not valid UTF-8", p)
	case strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' || r == ':' }):
		return fmt.Errorf("entry %q: path contains a control character, backslash or colon", p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("entry %q: path is absolute", p)
	case p == "." || p == ".." || strings.HasPrefix(p, "../") || path.Clean(p) != p:
		return fmt.Errorf("entry %q: path is not clean and relative", p)
	case strings.EqualFold(p, ManifestName):
		return fmt.Errorf("entry %q: the name is reserved for the manifest", p)
	}
	return nil
}

// Verify opens a package and checks it against its manifest: the manifest
// is there once and well-formed, every entry it lists is there once with
// the listed size and SHA-256 (and its ZIP checksum), and there is no other
// entry. It returns the manifest. Every failure wraps ErrCorrupt and names
// the entry at fault.
func Verify(name string) (Manifest, error) {
	f, err := os.Open(name)
	if err != nil {
		return Manifest{}, fmt.Errorf("archive: verify %s: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Manifest{}, fmt.Errorf("archive: verify %s: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return Manifest{}, fmt.Errorf("%w: %s is not a regular file", ErrCorrupt, name)
	}
	zr, err := zip.NewReader(f, st.Size())
	if err != nil && !(errors.Is(err, zip.ErrInsecurePath) && zr != nil) {
		// An insecure path is reported below, with its name.
		return Manifest{}, fmt.Errorf("%w: %s is not a ZIP file: %w", ErrCorrupt, name, err)
	}
	m, err := verify(zr)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %s: %w", ErrCorrupt, name, err)
	}
	return m, nil
}

// verify checks an open package; see Verify.
func verify(zr *zip.Reader) (Manifest, error) {
	files := make(map[string]*zip.File, len(zr.File))
	for _, zf := range zr.File {
		if _, dup := files[zf.Name]; dup {
			return Manifest{}, fmt.Errorf("entry %q appears more than once", zf.Name)
		}
		files[zf.Name] = zf
	}
	mf, ok := files[ManifestName]
	if !ok {
		return Manifest{}, fmt.Errorf("no %s", ManifestName)
	}
	m, err := readManifest(mf)
	if err != nil {
		return Manifest{}, err
	}
	listed := make(map[string]bool, len(m.Entries))
	for _, e := range m.Entries {
		listed[e.Path] = true
	}
	for _, zf := range zr.File {
		if zf.Name != ManifestName && !listed[zf.Name] {
			return Manifest{}, fmt.Errorf("entry %q is not in the manifest", zf.Name)
		}
	}
	for _, e := range m.Entries {
		zf, ok := files[e.Path]
		if !ok {
			return Manifest{}, fmt.Errorf("entry %q is in the manifest but missing", e.Path)
		}
		if err := checkEntry(zf, e); err != nil {
			return Manifest{}, err
		}
	}
	return m, nil
}

// readManifest reads and validates manifest.json.
func readManifest(zf *zip.File) (Manifest, error) {
	rc, err := zf.Open()
	if err != nil {
		return Manifest{}, fmt.Errorf("entry %q: %w", ManifestName, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxManifestSize+1))
	if err != nil {
		return Manifest{}, fmt.Errorf("entry %q cannot be read: %w", ManifestName, err)
	}
	if len(data) > maxManifestSize {
		return Manifest{}, fmt.Errorf("entry %q is larger than %d bytes", ManifestName, maxManifestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("entry %q is not a manifest: %w", ManifestName, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Manifest{}, fmt.Errorf("entry %q has data after the manifest", ManifestName)
	}
	switch {
	case m.Format != Format:
		return Manifest{}, fmt.Errorf("entry %q: format %q, want %q", ManifestName, m.Format, Format)
	case !validID(m.CaseID) || !validID(m.CaseNumber):
		return Manifest{}, fmt.Errorf("entry %q: invalid case id %q or case number %q", ManifestName, m.CaseID, m.CaseNumber)
	case m.CreatedAt.IsZero():
		return Manifest{}, fmt.Errorf("entry %q: no creation time", ManifestName)
	}
	paths := make([]string, len(m.Entries))
	for i, e := range m.Entries {
		paths[i] = e.Path
		if e.Size < 0 || len(e.SHA256) != sha256.Size*2 {
			return Manifest{}, fmt.Errorf("entry %q: the manifest gives an invalid size or SHA-256", e.Path)
		}
	}
	if err := checkPaths(paths); err != nil {
		return Manifest{}, fmt.Errorf("manifest: %w", err)
	}
	return m, nil
}

// checkEntry recomputes one entry's size and SHA-256. It reads at most one
// byte more than the manifest promises, so an entry that inflates far
// beyond it (a ZIP bomb) costs nothing; reading the entry to its end also
// checks its ZIP CRC-32.
func checkEntry(zf *zip.File, e Entry) error {
	rc, err := zf.Open()
	if err != nil {
		return fmt.Errorf("entry %q cannot be opened: %w", e.Path, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(rc, e.Size+1))
	if err != nil {
		return fmt.Errorf("entry %q cannot be read: %w", e.Path, err)
	}
	if n > e.Size {
		return fmt.Errorf("entry %q is longer than the %d bytes the manifest says", e.Path, e.Size)
	}
	if n < e.Size {
		return fmt.Errorf("entry %q has %d bytes, the manifest says %d", e.Path, n, e.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.SHA256 {
		return fmt.Errorf("entry %q has SHA-256 %s, the manifest says %s", e.Path, got, e.SHA256)
	}
	return nil
}

// RemoveCase removes every package of a case from dir that was written at
// a revision of its stream before the given one (and temporary files a
// crash left of one) and returns their names; a package named without a
// revision (FileName) is always older. Each file is overwritten with zeros
// and synced before it is removed, so the personal data a package held
// does not stay behind in the freed blocks of the file system. Removing
// the packages of a case that has none does nothing. kontakt calls it when
// a mark for preservation is withdrawn, with the withdrawal's revision:
// the packages were written only because of the mark, and no personal
// data may be kept beyond the plan because of a mark that no longer
// stands. A package written after it, because the case was marked again,
// is not the withdrawn mark's: when the retention index is rebuilt from
// the log and the withdrawal applied again, that package must stay.
func RemoveCase(dir, caseID string, before uint64) ([]string, error) {
	if !validID(caseID) {
		return nil, fmt.Errorf("%w: case id", ErrInvalid)
	}
	var names []string
	for _, pattern := range []string{"*_" + caseID + ".zip", "*_" + caseID + "_r*.zip", "*_" + caseID + ".zip.tmp-*", "*_" + caseID + "_r*.zip.tmp-*"} {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		for _, name := range m {
			// "<case number>_<case id>…": the case id must follow the
			// number's underscore, not end another case's id.
			_, rest, ok := strings.Cut(filepath.Base(name), "_")
			if !ok {
				continue
			}
			if strings.HasPrefix(rest, caseID+".zip") {
				names = append(names, name)
				continue
			}
			digits, _, found := strings.Cut(strings.TrimPrefix(rest, caseID+"_r"), ".zip")
			rev, err := strconv.ParseUint(digits, 10, 64)
			if strings.HasPrefix(rest, caseID+"_r") && found && err == nil && rev < before {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	var removed []string
	for _, name := range names {
		if err := shred(name); err != nil {
			return removed, err
		}
		removed = append(removed, filepath.Base(name))
	}
	if len(removed) > 0 {
		if err := syncDir(dir); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// shred overwrites a file with zeros, syncs it and removes it.
func shred(name string) error {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("archive: remove %s: %w", filepath.Base(name), err)
	}
	info, err := f.Stat()
	if err == nil {
		zeros := make([]byte, 64<<10)
		for left := info.Size(); left > 0 && err == nil; {
			n := min(left, int64(len(zeros)))
			_, err = f.Write(zeros[:n])
			left -= n
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("archive: overwrite %s: %w", filepath.Base(name), err)
	}
	if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("archive: remove %s: %w", filepath.Base(name), err)
	}
	return nil
}
