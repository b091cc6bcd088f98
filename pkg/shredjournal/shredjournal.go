// Package shredjournal is the shred journal: an append-only file of what
// the retention service destroyed (the events whose effects destroy data
// keys, delete case streams or remove archive packages) and of the
// receipts it wrote for them, kept outside the data directory and outside
// every backup of it.
//
// Why it exists: crypto-shredding makes a redaction reach every copy of
// the events, backups included, only as long as the destroyed key is gone
// from every copy of the key store too. A backup taken before an erasure
// holds the key, so restoring it would make the erased data readable
// again, and it would lose the receipts written after it. `kontakt
// restore` therefore replays this journal into a restored store before
// anything serves: it destroys every key the journal names, appends the
// receipts the restored ledger lacks (verbatim, so the hash chain is the
// original one) and appends the journaled events the restored log lacks.
// The journal must live where the data backup does not (other storage,
// copied continuously); a journal lost together with the data is no
// protection.
//
// Ordering, which the retention projector keeps: an event's entry is
// written and synced to disk BEFORE its keys are destroyed, and a
// receipt's entry after the receipt is in the ledger. So a crash at any
// point leaves a journal that names at least every key already destroyed.
//
// Format: one entry per line, "<sha256 hex of the JSON> <JSON>\n". The
// checksum lets a reader tell a torn last line (a crash during a write)
// from corruption: a last line that is incomplete or fails its checksum is
// ignored (and cut off before the next append); a bad line anywhere else
// is corruption, which reading reports rather than skips, because a
// skipped entry could be a key that must stay destroyed.
//
// Entries are identified by their event id or receipt hash, so several
// copies of a journal (an operator may rsync it to other hosts) merge by
// union (Merge), and writing an entry twice (a batch retried after a
// crash, a rebuilt index) stores it once.
//
// No personal data: receipts hold none (see the retention ledger), and the
// journaled events hold personal data only sealed, under keys the entry
// itself says are destroyed. Free text an official typed into an event
// (an erasure's note, a withdrawn mark's reason) is cleared before the
// event is journaled (Event.Stripped says which fields), because the
// journal outlives the case.
package shredjournal

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// FileName is the journal's file inside its directory.
const FileName = "shred.journal"

// MetaOriginalRevision is the metadata key `kontakt restore` puts on an
// event it appends again from the journal: the revision the event had in
// the stream it was first appended to. The retention projector keys the
// event's receipt by it, so the receipt restored from the journal is
// recognised as this event's and no second receipt is written.
const MetaOriginalRevision = "kontakt-journal-revision"

// Errors.
var (
	// ErrCorrupt means a line other than the last failed its checksum or
	// could not be decoded. The journal cannot be trusted to be complete;
	// use another copy.
	ErrCorrupt = errors.New("shredjournal: corrupt entry")
	// ErrLocked means another process writes the journal.
	ErrLocked = errors.New("shredjournal: journal is written by another process")
	// ErrInvalid means an entry is not well formed.
	ErrInvalid = errors.New("shredjournal: invalid entry")
)

// Kind says what an entry records.
type Kind string

const (
	// KindEvent is a retention event whose effect destroys something.
	KindEvent Kind = "event"
	// KindReceipt is a ledger receipt exactly as stored.
	KindReceipt Kind = "receipt"
	// KindBackup marks where a backup was taken: a restore of that backup
	// needs a journal that holds the mark, so that it reaches from the
	// backup to now.
	KindBackup Kind = "backup"
)

// Entry is one line of the journal.
type Entry struct {
	Kind Kind `json:"kind"`
	// Written is when the entry was written, by the writer's clock (for
	// people reading the file; nothing depends on it).
	Written time.Time `json:"written"`
	Event   *Event    `json:"event,omitempty"`
	Receipt *Receipt  `json:"receipt,omitempty"`
	// Backup is the id of the backup a KindBackup entry marks.
	Backup string `json:"backup,omitempty"`
}

// Event is a case event as it was appended, and what its effect destroys.
type Event struct {
	// Stream is the case id.
	Stream string `json:"stream"`
	// ID is the event id, which identifies the entry.
	ID   string `json:"id"`
	Type string `json:"type"`
	// Data is the encoded event, with the Stripped fields cleared.
	Data []byte `json:"data"`
	// Metadata is the event's metadata (non-personal by contract).
	Metadata map[string]string `json:"metadata,omitempty"`
	// Revision and Position are where the event was in the log.
	Revision uint64    `json:"revision"`
	Position uint64    `json:"position"`
	Recorded time.Time `json:"recorded"`
	// Destroy names the data classes whose keys the effect destroys;
	// DestroyAll says it destroys every key of the case (a deletion).
	Destroy    []string `json:"destroy,omitempty"`
	DestroyAll bool     `json:"destroy_all,omitempty"`
	// Generations is, per class, the generation of the case's current key
	// before the event (as the case's events said where the projector
	// applied it): the effect destroys every generation up to it. Absent
	// classes are at generation 0.
	Generations map[string]uint32 `json:"generations,omitempty"`
	// Unarchive says the effect removes the case's archive packages (a
	// withdrawn mark for preservation).
	Unarchive bool `json:"unarchive,omitempty"`
	// Stripped names the free-text fields cleared in Data.
	Stripped []string `json:"stripped,omitempty"`
}

// Receipt is a ledger receipt exactly as the ledger stored it.
type Receipt struct {
	// Key is the receipt's idempotency key (one receipt per key).
	Key string `json:"key"`
	// Hash identifies the entry; Prev is the hash before it in the chain.
	Hash string `json:"hash"`
	Prev string `json:"prev"`
	// Data is the stored message, byte for byte.
	Data []byte `json:"data"`
}

// ID identifies an entry across copies of the journal: "event:<event id>"
// or "receipt:<hash>".
func (e Entry) ID() string {
	switch {
	case e.Kind == KindEvent && e.Event != nil:
		return "event:" + e.Event.ID
	case e.Kind == KindReceipt && e.Receipt != nil:
		return "receipt:" + e.Receipt.Hash
	case e.Kind == KindBackup && e.Backup != "":
		return "backup:" + e.Backup
	}
	return ""
}

// validate checks that an entry can be written and replayed.
func (e Entry) validate() error {
	switch e.Kind {
	case KindEvent:
		ev := e.Event
		if ev == nil || ev.Stream == "" || ev.ID == "" || ev.Type == "" || e.Receipt != nil || e.Backup != "" {
			return fmt.Errorf("%w: an event entry needs a stream, an id and a type, and no receipt", ErrInvalid)
		}
	case KindReceipt:
		r := e.Receipt
		if r == nil || r.Key == "" || r.Hash == "" || len(r.Data) == 0 || e.Event != nil {
			return fmt.Errorf("%w: a receipt entry needs a key, a hash and the stored bytes, and no event", ErrInvalid)
		}
	case KindBackup:
		if e.Backup == "" || e.Event != nil || e.Receipt != nil {
			return fmt.Errorf("%w: a backup entry needs the backup's id, and no event or receipt", ErrInvalid)
		}
	default:
		return fmt.Errorf("%w: kind %q", ErrInvalid, e.Kind)
	}
	return nil
}

// encode returns the entry's line, newline included.
func encode(e Entry) ([]byte, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	line := make([]byte, 0, 2*len(sum)+1+len(body)+1)
	line = hex.AppendEncode(line, sum[:])
	line = append(line, ' ')
	line = append(line, body...)
	return append(line, '\n'), nil
}

// decode parses one line (without its newline).
func decode(line []byte) (Entry, error) {
	sumHex, body, ok := bytes.Cut(line, []byte{' '})
	if !ok || len(sumHex) != 2*sha256.Size {
		return Entry{}, errors.New("no checksum")
	}
	want, err := hex.DecodeString(string(sumHex))
	if err != nil {
		return Entry{}, errors.New("checksum is not hex")
	}
	got := sha256.Sum256(body)
	if !bytes.Equal(want, got[:]) {
		return Entry{}, errors.New("checksum does not match")
	}
	var e Entry
	if err := json.Unmarshal(body, &e); err != nil {
		return Entry{}, fmt.Errorf("not an entry: %w", err)
	}
	if err := e.validate(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// scan reads a journal's lines. It returns the entries, the length of the
// file up to the end of the last good line, and whether a torn last line
// followed it. A bad line before the last is ErrCorrupt.
func scan(r io.Reader, name string) (entries []Entry, good int64, torn bool, err error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var pending []byte // the previous complete line, not yet known not to be the last
	pendingLine := 0
	lineNo := 0
	flush := func(last bool) error {
		if pending == nil {
			return nil
		}
		e, derr := decode(pending)
		if derr != nil {
			if last {
				torn = true
				return nil
			}
			return fmt.Errorf("%w: %s line %d: %v", ErrCorrupt, name, pendingLine, derr)
		}
		entries = append(entries, e)
		good += int64(len(pending)) + 1
		pending = nil
		return nil
	}
	for {
		line, rerr := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			if err := flush(false); err != nil {
				return nil, 0, false, err
			}
			lineNo++
			pending = bytes.Clone(line[:len(line)-1])
			pendingLine = lineNo
		} else if len(line) > 0 {
			// Bytes after the last newline: a write cut short.
			if err := flush(false); err != nil {
				return nil, 0, false, err
			}
			torn = true
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return nil, 0, false, fmt.Errorf("shredjournal: read %s: %w", name, rerr)
		}
	}
	if err := flush(true); err != nil {
		return nil, 0, false, err
	}
	return entries, good, torn, nil
}

// Read returns the entries of the journal in dir, in the order written. A
// missing directory or file is an empty journal; a torn last line is left
// out; corruption anywhere else is ErrCorrupt.
func Read(dir string) ([]Entry, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("shredjournal: %w", err)
	}
	defer f.Close()
	entries, _, _, err := scan(f, path)
	return entries, err
}

// Merge returns the union of journals, each entry once, in the order in
// which it first appears (journals in the order given).
func Merge(journals ...[]Entry) []Entry {
	seen := map[string]bool{}
	var out []Entry
	for _, j := range journals {
		for _, e := range j {
			id := e.ID()
			if seen[id] {
				continue
			}
			seen[id] = true
			out = append(out, e)
		}
	}
	return out
}

// Option configures a Journal.
type Option func(*Journal)

// WithClock sets the clock that stamps Entry.Written (default time.Now).
func WithClock(now func() time.Time) Option { return func(j *Journal) { j.now = now } }

// WithAfterSync calls fn after every write that synced new entries to
// disk, with those entries. Tests use it to crash a process exactly
// there.
func WithAfterSync(fn func([]Entry)) Option { return func(j *Journal) { j.afterSync = fn } }

// Journal appends to the journal in a directory. It is safe for
// concurrent use; one process at a time may hold it (ErrLocked).
type Journal struct {
	dir       string
	now       func() time.Time
	afterSync func([]Entry)

	mu   sync.Mutex
	f    *os.File
	seen map[string]struct{}
	last string
	n    int
	tail []Entry
}

// tailSize is how many of the newest entries Tail returns.
const tailSize = 32

// Open opens the journal in dir for appending, creating the directory
// (0700) and the file (0600) if needed. It reads the journal (so entries
// already written are not written again), cuts off a torn last line, and
// takes an exclusive lock on the file.
func Open(dir string, opts ...Option) (*Journal, error) {
	j := &Journal{dir: dir, now: time.Now, seen: map[string]struct{}{}}
	for _, o := range opts {
		o(j)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("shredjournal: directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("shredjournal: %w", err)
	}
	if err := lockFile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrLocked, path, err)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		if err := syncDir(dir); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	entries, good, torn, err := scan(f, path)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	if torn {
		// The next append must start on a line of its own, or the torn
		// line would become corruption in the middle of the file.
		if err := f.Truncate(good); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("shredjournal: cut the torn last line of %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("shredjournal: %w", err)
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("shredjournal: %w", err)
	}
	for _, e := range entries {
		j.seen[e.ID()] = struct{}{}
	}
	if len(entries) > 0 {
		j.last = entries[len(entries)-1].ID()
	}
	j.n = len(entries)
	j.tail = slices.Clone(entries[max(0, len(entries)-tailSize):])
	j.f = f
	return j, nil
}

// Dir is the journal's directory.
func (j *Journal) Dir() string { return j.dir }

// Append writes the entries not yet in the journal and syncs the file
// before it returns: once Append returned nil, the entries survive a crash
// or a power cut. Entries without a Written time get the clock's.
func (j *Journal) Append(entries ...Entry) error {
	if len(entries) == 0 {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return errors.New("shredjournal: journal is closed")
	}
	var buf []byte
	var added []Entry
	ids := map[string]struct{}{}
	for _, e := range entries {
		if err := e.validate(); err != nil {
			return err
		}
		id := e.ID()
		if _, ok := j.seen[id]; ok {
			continue
		}
		if _, ok := ids[id]; ok {
			continue
		}
		if e.Written.IsZero() {
			e.Written = j.now().UTC()
		}
		line, err := encode(e)
		if err != nil {
			return fmt.Errorf("shredjournal: encode: %w", err)
		}
		buf = append(buf, line...)
		ids[id] = struct{}{}
		added = append(added, e)
	}
	if len(added) == 0 {
		return nil
	}
	if _, err := j.f.Write(buf); err != nil {
		return fmt.Errorf("shredjournal: write: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("shredjournal: sync: %w", err)
	}
	for id := range ids {
		j.seen[id] = struct{}{}
	}
	j.last = added[len(added)-1].ID()
	j.n += len(added)
	j.tail = append(j.tail, added...)
	j.tail = slices.Clone(j.tail[max(0, len(j.tail)-tailSize):])
	if j.afterSync != nil {
		j.afterSync(added)
	}
	return nil
}

// Has reports whether an entry with this id (Entry.ID) is in the journal.
func (j *Journal) Has(id string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	_, ok := j.seen[id]
	return ok
}

// Last returns the id of the last entry written and the number of
// entries.
func (j *Journal) Last() (string, int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.last, j.n
}

// Tail returns the newest entries (at most 32), oldest first: what a
// process checks its store against at start (a store older than its
// journal lacks the newest entries first).
func (j *Journal) Tail() []Entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.tail)
}

// Close releases the file and its lock.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("shredjournal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("shredjournal: sync %s: %w", dir, err)
	}
	return nil
}
