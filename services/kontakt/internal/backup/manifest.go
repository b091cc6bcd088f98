// Package backup is `kontakt backup` and `kontakt restore`: a backup of the
// single binary's state (JetStream stream snapshots and the services' read
// models) in two directories, the data and the data keys, kept apart, and
// a restore that never makes readable what was redacted or erased after
// the backup was taken, because it replays the shred journal
// (pkg/shredjournal) before anything serves. ARCHITECTURE.md ("Backup and
// restore") says why it is built this way.
package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// Format names the layout of a backup; a restore refuses others.
const Format = "kontakt-backup/1"

// File names inside a backup directory.
const (
	// ManifestFile is the manifest of either part.
	ManifestFile = "manifest.json"
	// StreamsDir holds one directory per stream, in the layout of the nats
	// CLI's `nats stream backup` (backup.json and the archive), so the
	// standard tools can read it too.
	StreamsDir = "streams"
	// ReadModelsDir holds the read models' files under their paths in the
	// data directory.
	ReadModelsDir = "readmodels"
)

// The two parts of a backup.
const (
	PartData = "data"
	PartKeys = "keys"
)

// Errors.
var (
	// ErrVerify means a backup does not match its manifest: a file is
	// missing, extra, of another size or another SHA-256. Nothing is
	// restored from it.
	ErrVerify = errors.New("backup does not match its manifest")
	// ErrUnsupported means the configuration keeps its state where this
	// backup cannot reach it.
	ErrUnsupported = errors.New("not supported by kontakt backup")
	// ErrJournal means the shred journal given to a restore does not
	// reach back to the backup.
	ErrJournal = errors.New("shred journal does not cover the backup")
	// ErrTarget means the directory to restore into (or to back up into)
	// is not empty.
	ErrTarget = errors.New("target directory is not empty")
)

// Manifest describes one part of a backup. Both parts carry the same
// BackupID, so a restore can tell that a keys directory belongs to a data
// directory.
type Manifest struct {
	Format   string `json:"format"`
	BackupID string `json:"backup_id"`
	// Part is PartData or PartKeys.
	Part           string    `json:"part"`
	KontaktVersion string    `json:"kontakt_version"`
	StartedAt      time.Time `json:"started_at"`
	FinishedAt     time.Time `json:"finished_at"`
	// Online says the backup was taken by a running server.
	Online bool `json:"online"`
	// MasterKeyID is the id (not the key) of the master key that wraps
	// the data keys; a restore refuses another master key.
	MasterKeyID string        `json:"master_key_id"`
	Streams     []StreamEntry `json:"streams"`
	ReadModels  []ReadModel   `json:"read_models,omitempty"`
	Journal     *JournalState `json:"journal,omitempty"`
	Files       []FileEntry   `json:"files"`
	Notes       []string      `json:"notes,omitempty"`
}

// StreamEntry is one stream's snapshot.
type StreamEntry struct {
	Name string `json:"name"`
	// Dir is the snapshot's directory, relative to the part.
	Dir      string `json:"dir"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
}

// ReadModel is one read model's copy.
type ReadModel struct {
	Name string `json:"name"`
	// Checkpoint is the log position it had applied when it was copied
	// (read just before the copy; the copy's own may be later).
	Checkpoint uint64 `json:"checkpoint"`
	// Files are the files' paths relative to the data directory.
	Files []string `json:"files"`
}

// JournalState is the shred journal as the backup left it.
type JournalState struct {
	// LastEntry is the id of the mark the backup wrote into the journal
	// ("backup:<backup id>"): a restore needs a journal that holds it.
	LastEntry string `json:"last_entry"`
	// Entries is the number of entries, the mark included.
	Entries int `json:"entries"`
}

// FileEntry is one file of a part.
type FileEntry struct {
	// Path is relative to the part's directory, with forward slashes.
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Version is this build's version: the module version and the VCS
// revision it was built from, as far as the build recorded them.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			v += " " + s.Value
		}
		if s.Key == "vcs.modified" && s.Value == "true" {
			v += " (modified)"
		}
	}
	return v
}

// hashingFile is a file being written that counts and hashes what goes in
// and reports written bytes.
type hashingFile struct {
	f     *os.File
	h     hash.Hash
	n     int64
	path  string
	onAdd func(int64)
}

// createFile creates path (and its directories, 0700) for writing, mode
// 0600: a backup holds sealed personal data and blind-index tokens.
func createFile(path string, onAdd func(int64)) (*hashingFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &hashingFile{f: f, h: sha256.New(), path: path, onAdd: onAdd}, nil
}

func (w *hashingFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if w.onAdd != nil && n > 0 {
		w.onAdd(int64(n))
	}
	return n, err
}

// Close syncs and closes the file.
func (w *hashingFile) Close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	return err
}

// entry is the file's manifest entry, relative to root.
func (w *hashingFile) entry(root string) (FileEntry, error) {
	rel, err := filepath.Rel(root, w.path)
	if err != nil {
		return FileEntry{}, err
	}
	return FileEntry{Path: filepath.ToSlash(rel), Size: w.n, SHA256: hex.EncodeToString(w.h.Sum(nil))}, nil
}

// writeManifest writes m as dir/manifest.json, synced, through a temporary
// file and a rename, so a manifest is either whole or absent: a backup
// without one was not finished.
func writeManifest(dir string, m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ManifestFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestFile)); err != nil {
		return err
	}
	return syncDir(dir)
}

// ReadManifest reads a part's manifest.
func ReadManifest(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s (not a kontakt backup, or one that did not finish)", ErrVerify, dir, ManifestFile)
	}
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrVerify, filepath.Join(dir, ManifestFile), err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("%w: %s is format %q; this kontakt reads %q", ErrVerify, dir, m.Format, Format)
	}
	return &m, nil
}

// Verify checks a part against its manifest: every file listed is there
// with its size and SHA-256, and no other file is (a file slipped into a
// backup would be restored unchecked). progress gets the bytes read.
func Verify(dir string, m *Manifest, progress func(int64)) error {
	want := map[string]FileEntry{}
	for _, f := range m.Files {
		if f.Path == "" || strings.HasPrefix(f.Path, "/") || slices.Contains(strings.Split(f.Path, "/"), "..") {
			return fmt.Errorf("%w: %s lists the path %q", ErrVerify, dir, f.Path)
		}
		want[f.Path] = f
	}
	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == ManifestFile {
			return nil
		}
		f, ok := want[rel]
		if !ok {
			return fmt.Errorf("%w: %s holds %s, which its manifest does not list", ErrVerify, dir, rel)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%w: %s is not a regular file", ErrVerify, path)
		}
		seen[rel] = true
		sum, n, err := hashFile(path, progress)
		if err != nil {
			return err
		}
		if n != f.Size || sum != f.SHA256 {
			return fmt.Errorf("%w: %s has %d bytes with SHA-256 %s; the manifest says %d bytes with %s", ErrVerify, path, n, sum, f.Size, f.SHA256)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for p := range want {
		if !seen[p] {
			return fmt.Errorf("%w: %s lacks %s", ErrVerify, dir, p)
		}
	}
	return nil
}

func hashFile(path string, progress func(int64)) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	var w io.Writer = h
	if progress != nil {
		w = io.MultiWriter(h, progressWriter(progress))
	}
	n, err := io.Copy(w, f)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

type progressWriter func(int64)

func (p progressWriter) Write(b []byte) (int, error) {
	p(int64(len(b)))
	return len(b), nil
}

// emptyOrAbsent reports whether dir does not exist or holds nothing.
func emptyOrAbsent(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return len(entries) == 0, nil
}

// syncDir makes directory entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// within reports whether path is dir or lies under it (both absolute and
// clean).
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && (rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))))
}
