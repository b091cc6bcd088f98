package backup

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jsm.go"
	natsgo "github.com/nats-io/nats.go"

	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
	"github.com/kontakt-se/kontakt/pkg/host"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/shredjournal"
	"github.com/kontakt-se/kontakt/services/intake/adapters/idempotency"
)

// KeyStream is the stream of the data-key bucket: it goes to the keys
// part, never to the data part, and it is copied last.
const KeyStream = "KV_" + seal.DefaultBucket

// beforeCases are streams copied before the case events. Idempotency
// records are: a form's record copied without its case would answer the
// form's retry after a restore with a case that does not exist (the
// submission lost without a word), while a case copied without its record
// is at worst registered a second time by the retry.
var beforeCases = []string{"KV_" + idempotency.DefaultBucket}

// Event is a step of a backup or a restore, for a progress bar or a
// client of the admin socket: Phase names the step, Item what it works
// on, Done and Total its progress (Total 0: unknown) in Unit.
type Event struct {
	Phase string `json:"phase"`
	Item  string `json:"item,omitempty"`
	Unit  string `json:"unit,omitempty"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
}

// Progress receives Events; nil is allowed.
type Progress func(Event)

func (p Progress) send(e Event) {
	if p != nil {
		p(e)
	}
}

// Options say where a backup goes.
type Options struct {
	// Out is the data part's directory; KeysOut the keys part's. Both must
	// be absent or empty, and neither inside the other: the keys are kept
	// apart from the data they open.
	Out, KeysOut string
	// Online says the process serves while the backup runs.
	Online bool
}

// Result is what a backup wrote.
type Result struct {
	Data, Keys *Manifest
	Duration   time.Duration
}

// Bytes is the size of both parts.
func (r *Result) Bytes() (data, keys int64) {
	for _, f := range r.Data.Files {
		data += f.Size
	}
	for _, f := range r.Keys.Files {
		keys += f.Size
	}
	return data, keys
}

// CheckSupported refuses configurations whose state this backup does not
// reach: the event log in EventStoreDB, or on an external NATS cluster
// (whose streams the cluster's operator backs up, and whose read models
// live in other processes).
func CheckSupported(cfg config.Config) error {
	if cfg.EventStore.Backend == "esdb" {
		return fmt.Errorf("%w: the event log is in EventStoreDB (event_store.backend: esdb)", ErrUnsupported)
	}
	if cfg.NATS.URL != "" {
		return fmt.Errorf("%w: the event log is on an external NATS cluster (nats.url); kontakt backup covers the embedded server", ErrUnsupported)
	}
	return nil
}

// Run takes a backup of h: the read models first (each copied in one read
// transaction, so each copy's checkpoint is at or before the log it will
// be restored with), then the streams (the idempotency records, the case
// events, then the rest: case numbers, audit trail, ledger, statistics),
// each a JetStream snapshot, and the data-key bucket last, so that every
// event in the backup has its key (or its tombstone) in the keys part.
// Online or offline the same code runs: the process that holds the read
// models must copy them.
func Run(ctx context.Context, h *host.Host, opts Options, progress Progress) (*Result, error) {
	start := time.Now()
	if err := CheckSupported(h.Config); err != nil {
		return nil, err
	}
	out, keysOut, err := prepareDirs(opts.Out, opts.KeysOut)
	if err != nil {
		return nil, err
	}
	id := rand.Text()
	data := &Manifest{Format: Format, BackupID: id, Part: PartData, KontaktVersion: Version(), StartedAt: start.UTC(), Online: opts.Online, MasterKeyID: h.Master.ID()}
	keys := &Manifest{Format: Format, BackupID: id, Part: PartKeys, KontaktVersion: data.KontaktVersion, StartedAt: data.StartedAt, Online: opts.Online, MasterKeyID: data.MasterKeyID}

	// The read models.
	var total int64
	for _, rm := range h.ReadModels() {
		total += int64(len(rm.Files))
	}
	var done int64
	for _, rm := range h.ReadModels() {
		cp, err := rm.Checkpoint()
		if err != nil {
			return nil, fmt.Errorf("backup: %s read model: %w", rm.Name, err)
		}
		entry := ReadModel{Name: rm.Name, Checkpoint: uint64(cp)}
		for _, f := range rm.Files {
			progress.send(Event{Phase: "read models", Item: f.Path, Unit: "files", Done: done, Total: total})
			w, err := createFile(filepath.Join(out, ReadModelsDir, filepath.FromSlash(f.Path)), nil)
			if err != nil {
				return nil, fmt.Errorf("backup: %w", err)
			}
			if _, err := f.WriteTo(w); err != nil {
				_ = w.Close()
				return nil, fmt.Errorf("backup: copy %s: %w", f.Path, err)
			}
			if err := w.Close(); err != nil {
				return nil, fmt.Errorf("backup: %w", err)
			}
			fe, err := w.entry(out)
			if err != nil {
				return nil, err
			}
			data.Files = append(data.Files, fe)
			entry.Files = append(entry.Files, filepath.ToSlash(f.Path))
			done++
		}
		data.ReadModels = append(data.ReadModels, entry)
	}
	progress.send(Event{Phase: "read models", Unit: "files", Done: done, Total: total})

	// The streams, keys last.
	conn := h.JS.Conn()
	mgr, err := jsm.New(conn, jsm.WithTimeout(30*time.Second))
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	names, err := mgr.StreamNames(nil)
	if err != nil {
		return nil, fmt.Errorf("backup: list streams: %w", err)
	}
	order, err := streamOrder(names)
	if err != nil {
		return nil, err
	}
	var streamBytes int64
	for _, name := range order {
		s, err := mgr.LoadStream(name)
		if err != nil {
			return nil, fmt.Errorf("backup: stream %s: %w", name, err)
		}
		st, err := s.LatestState()
		if err != nil {
			return nil, fmt.Errorf("backup: stream %s: %w", name, err)
		}
		streamBytes += int64(st.Bytes)
	}
	var copied int64
	for _, name := range order {
		part, dir, m := out, out, data
		if name == KeyStream {
			part, dir, m = keysOut, keysOut, keys
		}
		entry, files, err := snapshot(ctx, mgr, conn, name, filepath.Join(dir, StreamsDir, name), part, func(n int64) {
			progress.send(Event{Phase: "streams", Item: name, Unit: "bytes", Done: copied + n, Total: streamBytes})
		})
		if err != nil {
			return nil, err
		}
		copied += int64(entry.Bytes)
		progress.send(Event{Phase: "streams", Item: name, Unit: "bytes", Done: copied, Total: streamBytes})
		m.Streams = append(m.Streams, entry)
		m.Files = append(m.Files, files...)
	}

	// Where the shred journal stood: the backup marks it, and a restore
	// of the backup needs a journal that holds the mark (it reaches from
	// the backup to now). The mark is written once every stream is copied,
	// so everything the journal holds before it happened before the copy
	// ended, which a restore does not rely on (it replays every entry).
	j := h.Journal()
	if j == nil {
		return nil, errors.New("backup: this process keeps no shred journal (retention is not mounted)")
	}
	mark := shredjournal.Entry{Kind: shredjournal.KindBackup, Backup: id}
	if err := j.Append(mark); err != nil {
		return nil, fmt.Errorf("backup: mark the shred journal: %w", err)
	}
	_, entries := j.Last()
	data.Journal = &JournalState{LastEntry: mark.ID(), Entries: entries}
	data.Notes = []string{
		"The data keys of this backup are in a directory of their own (the keys part, same backup_id). Store it apart from this one: together with the master key they open the personal data of this backup.",
		"Restore with `kontakt restore`, which replays the shred journal: copying these files back by hand brings back what was erased after the backup.",
	}
	keys.Notes = []string{"Store apart from the data part of this backup (same backup_id) and never with the master key."}
	now := time.Now().UTC()
	data.FinishedAt, keys.FinishedAt = now, now
	// The keys' manifest first: a data part with a manifest has its keys.
	if err := writeManifest(keysOut, keys); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := writeManifest(out, data); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return &Result{Data: data, Keys: keys, Duration: time.Since(start)}, nil
}

// prepareDirs checks and creates the two parts' directories (0700).
func prepareDirs(out, keysOut string) (string, string, error) {
	if out == "" {
		return "", "", fmt.Errorf("backup: no directory to write to")
	}
	if keysOut == "" {
		keysOut = DefaultKeysDir(out)
	}
	var err error
	if out, err = filepath.Abs(out); err != nil {
		return "", "", err
	}
	if keysOut, err = filepath.Abs(keysOut); err != nil {
		return "", "", err
	}
	if within(keysOut, out) || within(out, keysOut) {
		return "", "", fmt.Errorf("backup: the keys (%s) must be kept apart from the data (%s), neither inside the other", keysOut, out)
	}
	for _, d := range []string{out, keysOut} {
		empty, err := emptyOrAbsent(d)
		if err != nil {
			return "", "", fmt.Errorf("backup: %w", err)
		}
		if !empty {
			return "", "", fmt.Errorf("backup: %w: %s (a backup never overwrites another)", ErrTarget, d)
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", "", fmt.Errorf("backup: %w", err)
		}
	}
	return out, keysOut, nil
}

// DefaultKeysDir is where the keys part goes when no directory is given:
// next to the data part, "<out>.keys".
func DefaultKeysDir(out string) string {
	return strings.TrimRight(out, string(filepath.Separator)) + ".keys"
}

// streamOrder orders the streams of a backup (see Run), and refuses a
// store without the case events or the key bucket.
func streamOrder(names []string) ([]string, error) {
	for _, must := range []string{jetstream.DefaultStreamName, KeyStream} {
		if !slices.Contains(names, must) {
			return nil, fmt.Errorf("backup: the store has no stream %s; is this a kontakt data directory?", must)
		}
	}
	var order []string
	for _, n := range beforeCases {
		if slices.Contains(names, n) {
			order = append(order, n)
		}
	}
	order = append(order, jetstream.DefaultStreamName)
	rest := slices.Clone(names)
	slices.Sort(rest)
	for _, n := range rest {
		if !slices.Contains(order, n) && n != KeyStream {
			order = append(order, n)
		}
	}
	return append(order, KeyStream), nil
}

// snapshot writes one stream's JetStream snapshot into dir, in the layout
// of `nats stream backup` (backup.json with the configuration and state,
// and the archive), hashing as it writes.
func snapshot(ctx context.Context, mgr *jsm.Manager, conn *natsgo.Conn, name, dir, part string, onBytes func(int64)) (StreamEntry, []FileEntry, error) {
	s, err := mgr.LoadStream(name)
	if err != nil {
		return StreamEntry{}, nil, fmt.Errorf("backup: stream %s: %w", name, err)
	}
	var mu sync.Mutex
	var written int64
	dataFile, err := createFile(filepath.Join(dir, snapshotDataFile(conn)), func(n int64) {
		mu.Lock()
		written += n
		w := written
		mu.Unlock()
		onBytes(w)
	})
	if err != nil {
		return StreamEntry{}, nil, fmt.Errorf("backup: %w", err)
	}
	metaFile, err := createFile(filepath.Join(dir, jsm.SnapshotMetaFile), nil)
	if err != nil {
		_ = dataFile.Close()
		return StreamEntry{}, nil, fmt.Errorf("backup: %w", err)
	}
	// SnapshotToBuffer closes both writers itself; Close is idempotent
	// here, so they are synced either way.
	_, err = s.SnapshotToBuffer(ctx, dataFile, metaFile, jsm.SnapshotHealthCheck())
	if cerr := errors.Join(dataFile.Close(), metaFile.Close()); err == nil {
		err = cerr
	}
	if err != nil {
		return StreamEntry{}, nil, fmt.Errorf("backup: snapshot of %s: %w", name, err)
	}
	meta, err := os.ReadFile(metaFile.path)
	if err != nil {
		return StreamEntry{}, nil, err
	}
	var state struct {
		State struct {
			Msgs     uint64 `json:"messages"`
			Bytes    uint64 `json:"bytes"`
			FirstSeq uint64 `json:"first_seq"`
			LastSeq  uint64 `json:"last_seq"`
		} `json:"state"`
	}
	if err := json.Unmarshal(meta, &state); err != nil {
		return StreamEntry{}, nil, fmt.Errorf("backup: snapshot of %s: %w", name, err)
	}
	rel, err := filepath.Rel(part, dir)
	if err != nil {
		return StreamEntry{}, nil, err
	}
	entry := StreamEntry{Name: name, Dir: filepath.ToSlash(rel), FirstSeq: state.State.FirstSeq, LastSeq: state.State.LastSeq, Messages: state.State.Msgs, Bytes: state.State.Bytes}
	var files []FileEntry
	for _, f := range []*hashingFile{metaFile, dataFile} {
		fe, err := f.entry(part)
		if err != nil {
			return StreamEntry{}, nil, err
		}
		files = append(files, fe)
	}
	return entry, files, nil
}

// snapshotDataFile is the archive's name for the connected server, as the
// nats CLI names it: servers from 2.15 send the NATSARC1 format.
func snapshotDataFile(conn *natsgo.Conn) string {
	major, minor := 0, 0
	parts := strings.SplitN(strings.TrimPrefix(conn.ConnectedServerVersion(), "v"), ".", 3)
	if len(parts) >= 2 {
		major, _ = strconv.Atoi(parts[0])
		minor, _ = strconv.Atoi(parts[1])
	}
	if major > 2 || (major == 2 && minor >= 15) {
		return jsm.SnapshotDataFile
	}
	return jsm.SnapshotLegacyDataFile
}
