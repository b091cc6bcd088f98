package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/jsm.go"
	natsgo "github.com/nats-io/nats.go"

	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/host"
	"github.com/kontakt-se/kontakt/pkg/receipt"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/shredjournal"
	"github.com/kontakt-se/kontakt/services/retention/adapters/ledger"
)

// RestoreOptions say what to restore and with which journals.
type RestoreOptions struct {
	// From is the data part, KeysFrom the keys part of one backup.
	From, KeysFrom string
	// Journals are copies of the shred journal to merge with the live one
	// (retention.journal_dir): entries are identified, so copies merge by
	// union.
	Journals []string
}

// RestoreResult says what a restore did.
type RestoreResult struct {
	BackupID string
	// Streams are the streams restored, with their last sequences.
	Streams []StreamEntry
	// JournalEntries is the size of the merged journal; JournalAdded how
	// many of its entries the live journal lacked.
	JournalEntries, JournalAdded int
	// KeysDestroyed counts the destroy operations replayed (per event).
	KeysDestroyed int
	// ReceiptsVerbatim were appended byte for byte; ReceiptsRerecorded
	// could not continue the chain as they were (a receipt the journal
	// lacks comes before them) and were recorded again, with new links.
	ReceiptsVerbatim, ReceiptsRerecorded int
	// EventsAppended were appended again; EventsPresent were in the
	// restored log already; EventsNoStream belong to cases the backup does
	// not hold (or deleted ones): nothing of them was restored.
	EventsAppended, EventsPresent, EventsNoStream int
	// Head is the log position every read model reached.
	Head     uint64
	Duration time.Duration
}

// Node opens the process a restore runs the services' code in: offline,
// with afterConnect run once NATS is up and beforeMount once the stores
// are open and before any service is mounted. The CLI passes the
// composition root (node.Open), which this package may not import.
type Node func(ctx context.Context, cfg config.Config, afterConnect func(context.Context, *natsgo.Conn) error, beforeMount func(context.Context, *host.Host) error) (*host.Host, error)

// Restore restores a backup into cfg's data directory, which must be
// absent or empty: a restore never overwrites a data directory (a running
// server's least of all). In order:
//
//  1. both parts are checked against their manifests (every file, size
//     and SHA-256) and against each other, and the master key against the
//     one the backup was taken with;
//  2. the shred journal's copies are merged into the live journal;
//  3. the streams are restored into a fresh embedded NATS server (no
//     port), the data-key bucket last, and the read models' files are
//     put in place;
//  4. the journal is replayed before anything serves: every key it names
//     is destroyed again, the receipts the restored ledger lacks are
//     appended (verbatim, in chain order), and the events the restored
//     log lacks are appended again with their ids;
//  5. the services are mounted and every read model is brought up to the
//     log's head (the retention projector applies the appended events as
//     it always does: deletions remove their streams, redactions drop
//     blind-index tokens), so the first `kontakt serve` serves nothing
//     the journal erased.
func Restore(ctx context.Context, cfg config.Config, lookupEnv func(string) (string, bool), open Node, opts RestoreOptions, progress Progress) (*RestoreResult, error) {
	start := time.Now()
	if err := CheckSupported(cfg); err != nil {
		return nil, err
	}
	from, err := filepath.Abs(opts.From)
	if err != nil {
		return nil, err
	}
	keysFrom := opts.KeysFrom
	if keysFrom == "" {
		keysFrom = DefaultKeysDir(from)
	}
	if keysFrom, err = filepath.Abs(keysFrom); err != nil {
		return nil, err
	}
	data, err := ReadManifest(from)
	if err != nil {
		return nil, err
	}
	keys, err := ReadManifest(keysFrom)
	if err != nil {
		return nil, err
	}
	switch {
	case data.Part != PartData:
		return nil, fmt.Errorf("%w: %s is the %s part of a backup, not its data", ErrVerify, from, data.Part)
	case keys.Part != PartKeys:
		return nil, fmt.Errorf("%w: %s is the %s part of a backup, not its keys", ErrVerify, keysFrom, keys.Part)
	case data.BackupID != keys.BackupID:
		return nil, fmt.Errorf("%w: the keys in %s belong to backup %s, the data in %s to backup %s", ErrVerify, keysFrom, keys.BackupID, from, data.BackupID)
	}
	var total int64
	for _, m := range []*Manifest{data, keys} {
		for _, f := range m.Files {
			total += f.Size
		}
	}
	var verified int64
	tick := func(n int64) {
		verified += n
		progress.send(Event{Phase: "verify", Unit: "bytes", Done: verified, Total: total})
	}
	if err := Verify(from, data, tick); err != nil {
		return nil, err
	}
	if err := Verify(keysFrom, keys, tick); err != nil {
		return nil, err
	}

	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	empty, err := emptyOrAbsent(dataDir)
	if err != nil {
		return nil, err
	}
	if !empty {
		return nil, fmt.Errorf("restore: %w: %s; a restore never overwrites a data directory (a running server's least of all): give an empty or new one with --data-dir", ErrTarget, dataDir)
	}
	cfg.DataDir = dataDir
	master, err := seal.LoadMasterKey(cfg.MasterKeyPath(), lookupEnv, false)
	if err != nil {
		return nil, fmt.Errorf("restore needs the master key the backup was taken with (%s; it is never in a backup): %w", data.MasterKeyID, err)
	}
	if master.ID() != data.MasterKeyID {
		return nil, fmt.Errorf("restore: the master key given has id %s; the backup's data keys are wrapped with %s", master.ID(), data.MasterKeyID)
	}

	// The journal: the live one and every copy, merged into the live one
	// before anything else, so that the union survives this restore too.
	res := &RestoreResult{BackupID: data.BackupID}
	journalDir, _, err := cfg.JournalPath()
	if err != nil {
		return nil, err
	}
	var lists [][]shredjournal.Entry
	for _, d := range append([]string{journalDir}, opts.Journals...) {
		entries, err := shredjournal.Read(d)
		if err != nil {
			return nil, fmt.Errorf("restore: shred journal %s: %w", d, err)
		}
		if d != journalDir {
			if _, err := os.Stat(filepath.Join(d, shredjournal.FileName)); err != nil {
				return nil, fmt.Errorf("restore: --journal %s: %w", d, err)
			}
		}
		lists = append(lists, entries)
	}
	merged := shredjournal.Merge(lists...)
	if j := data.Journal; j != nil && j.LastEntry != "" && !slices.ContainsFunc(merged, func(e shredjournal.Entry) bool { return e.ID() == j.LastEntry }) {
		return nil, fmt.Errorf("restore: %w: no journal given holds the backup's mark %s; the journal must reach from the backup to now, or data erased since the backup comes back: give the installation's journal (retention.journal_dir) or a copy of it with --journal, more than once if its copies differ", ErrJournal, j.LastEntry)
	}
	res.JournalEntries = len(merged)
	res.JournalAdded = len(merged) - len(lists[0])
	live, err := shredjournal.Open(journalDir)
	if err != nil {
		return nil, fmt.Errorf("restore: shred journal %s: %w", journalDir, err)
	}
	err = live.Append(merged...)
	if cerr := live.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("restore: shred journal %s: %w", journalDir, err)
	}
	progress.send(Event{Phase: "journal", Unit: "entries", Done: int64(len(merged)), Total: int64(len(merged))})

	// A fresh store: the embedded server in process only.
	cfg.NATS.EmbeddedListen = ""
	cfg.MetricsListen = ""
	afterConnect := func(ctx context.Context, conn *natsgo.Conn) error {
		streams, err := restoreStreams(ctx, conn, from, data, keysFrom, keys, progress)
		res.Streams = streams
		return err
	}
	beforeMount := func(ctx context.Context, h *host.Host) error {
		if err := copyReadModels(from, data, dataDir); err != nil {
			return err
		}
		return replay(ctx, h, merged, res, progress)
	}
	h, err := open(ctx, cfg, afterConnect, beforeMount)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	err = h.CatchUp(ctx, func(done, head uint64) {
		res.Head = head
		progress.send(Event{Phase: "catch up", Unit: "positions", Done: int64(done), Total: int64(head)})
	})
	if err != nil {
		return nil, fmt.Errorf("restore: bring the read models up to the log: %w", err)
	}
	res.Duration = time.Since(start)
	return res, nil
}

// restoreStreams restores every stream of both parts, the key bucket last.
func restoreStreams(ctx context.Context, conn *natsgo.Conn, from string, data *Manifest, keysFrom string, keys *Manifest, progress Progress) ([]StreamEntry, error) {
	mgr, err := jsm.New(conn, jsm.WithTimeout(30*time.Second))
	if err != nil {
		return nil, err
	}
	type job struct {
		dir string
		s   StreamEntry
	}
	var jobs []job
	var total int64
	for _, p := range []struct {
		dir string
		m   *Manifest
	}{{from, data}, {keysFrom, keys}} {
		for _, s := range p.m.Streams {
			jobs = append(jobs, job{filepath.Join(p.dir, filepath.FromSlash(s.Dir)), s})
			total += int64(s.Bytes)
		}
	}
	if !slices.ContainsFunc(keys.Streams, func(s StreamEntry) bool { return s.Name == KeyStream }) {
		return nil, fmt.Errorf("%w: the keys part holds no %s", ErrVerify, KeyStream)
	}
	var done int64
	var out []StreamEntry
	for _, j := range jobs {
		if existing, err := mgr.IsKnownStream(j.s.Name); err != nil || existing {
			return nil, fmt.Errorf("restore: stream %s exists already in the new store (%v)", j.s.Name, err)
		}
		base := done
		_, state, err := mgr.RestoreSnapshotFromDirectory(ctx, j.s.Name, j.dir, jsm.RestoreNotify(func(p jsm.RestoreProgress) {
			progress.send(Event{Phase: "streams", Item: j.s.Name, Unit: "bytes", Done: base + min(int64(p.BytesSent()), int64(j.s.Bytes)), Total: total})
		}))
		if err != nil {
			return nil, fmt.Errorf("restore: stream %s: %w", j.s.Name, err)
		}
		if state.LastSeq != j.s.LastSeq || state.Msgs != j.s.Messages {
			return nil, fmt.Errorf("restore: stream %s came back with %d messages up to %d; the backup had %d up to %d", j.s.Name, state.Msgs, state.LastSeq, j.s.Messages, j.s.LastSeq)
		}
		done += int64(j.s.Bytes)
		progress.send(Event{Phase: "streams", Item: j.s.Name, Unit: "bytes", Done: done, Total: total})
		out = append(out, j.s)
	}
	return out, nil
}

// copyReadModels puts the read models' files where the services open
// them (0600, directories 0750 as the services make them).
func copyReadModels(from string, data *Manifest, dataDir string) error {
	for _, rm := range data.ReadModels {
		for _, p := range rm.Files {
			src := filepath.Join(from, ReadModelsDir, filepath.FromSlash(p))
			dst := filepath.Join(dataDir, filepath.FromSlash(p))
			if !within(dst, dataDir) {
				return fmt.Errorf("%w: read model file %q is outside the data directory", ErrVerify, p)
			}
			if err := copyFile(src, dst); err != nil {
				return fmt.Errorf("restore: read model %s: %w", rm.Name, err)
			}
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// replay applies the journal to the restored store, before any service
// runs: keys, then receipts, then events (see Restore).
func replay(ctx context.Context, h *host.Host, entries []shredjournal.Entry, res *RestoreResult, progress Progress) error {
	var events []*shredjournal.Event
	var receipts []*shredjournal.Receipt
	for _, e := range entries {
		switch e.Kind {
		case shredjournal.KindEvent:
			events = append(events, e.Event)
		case shredjournal.KindReceipt:
			receipts = append(receipts, e.Receipt)
		}
	}
	total := int64(len(events)*2 + len(receipts))
	var done int64
	step := func(item string) {
		done++
		progress.send(Event{Phase: "journal replay", Item: item, Unit: "entries", Done: done, Total: total})
	}

	// (a) Every key the journal names is destroyed again: the key bucket
	// came back from the backup with keys destroyed since.
	for _, ev := range events {
		var classes []seal.Class
		if !ev.DestroyAll {
			for _, c := range ev.Destroy {
				classes = append(classes, seal.Class(c))
			}
		}
		var gens seal.Generations
		for c, g := range ev.Generations {
			if gens == nil {
				gens = seal.Generations{}
			}
			gens[seal.Class(c)] = g
		}
		if ev.DestroyAll || len(classes) > 0 {
			if err := h.Sealer.Destroy(ctx, ev.Stream, gens, classes...); err != nil {
				return fmt.Errorf("restore: destroy the keys of case %s: %w", ev.Stream, err)
			}
			res.KeysDestroyed++
		}
		step("keys")
	}

	// (b) The receipts the restored ledger lacks, in chain order from its
	// head, byte for byte.
	led, err := ledger.New(ctx, h.JS, ledger.Config{Replicas: h.Config.NATS.Replicas})
	if err != nil {
		return fmt.Errorf("restore: ledger: %w", err)
	}
	head, err := led.Head(ctx)
	if err != nil {
		return fmt.Errorf("restore: ledger: %w", err)
	}
	byPrev := map[string]*shredjournal.Receipt{}
	for _, r := range receipts {
		byPrev[r.Prev] = r
	}
	used := map[string]bool{}
	for r := byPrev[head]; r != nil && !used[r.Hash]; r = byPrev[r.Hash] {
		used[r.Hash] = true
		_, added, err := led.Restore(ctx, r.Data)
		if err != nil {
			return fmt.Errorf("restore: receipt %s: %w", r.Key, err)
		}
		if added {
			res.ReceiptsVerbatim++
		}
		step("receipts")
	}
	// Receipts not on the chain from the restored head (the journal lacks
	// one before them, or began after the backup) that the ledger lacks
	// (by key: one action, one receipt): recorded again, so none is lost;
	// their links are new.
	for _, r := range receipts {
		if used[r.Hash] {
			continue
		}
		has, err := led.Has(ctx, r.Key)
		if err != nil {
			return fmt.Errorf("restore: receipt %s: %w", r.Key, err)
		}
		if !has {
			var rec receipt.Receipt
			if err := json.Unmarshal(r.Data, &rec); err != nil {
				return fmt.Errorf("restore: receipt %s: %w", r.Key, err)
			}
			if _, _, err := led.Record(ctx, rec); err != nil {
				return fmt.Errorf("restore: receipt %s: %w", r.Key, err)
			}
			res.ReceiptsRerecorded++
		}
		step("receipts")
	}

	// (c) The events the restored log lacks, appended again with their
	// ids and the revision they first had (the retention projector keys
	// their receipts by it).
	for _, ev := range events {
		appended, err := reappend(ctx, h.Store, ev)
		switch {
		case errors.Is(err, eventstore.ErrStreamNotFound):
			res.EventsNoStream++
		case err != nil:
			return fmt.Errorf("restore: event %s of case %s: %w", ev.ID, ev.Stream, err)
		case appended:
			res.EventsAppended++
		default:
			res.EventsPresent++
		}
		step("events")
	}
	return nil
}

// reappend appends a journaled event to its case stream unless the stream
// holds it already. A stream the restored log does not hold (or holds
// deleted) is ErrStreamNotFound: nothing of that case was restored.
func reappend(ctx context.Context, store host.EventStore, ev *shredjournal.Event) (bool, error) {
	for range 5 {
		recs, err := store.Read(ctx, ev.Stream)
		if err != nil {
			return false, err
		}
		if slices.ContainsFunc(recs, func(r eventstore.RecordedEvent) bool { return r.ID == ev.ID }) {
			return false, nil
		}
		md := maps.Clone(ev.Metadata)
		if md == nil {
			md = map[string]string{}
		}
		if _, ok := md[shredjournal.MetaOriginalRevision]; !ok {
			md[shredjournal.MetaOriginalRevision] = strconv.FormatUint(ev.Revision, 10)
		}
		_, err = store.Append(ctx, ev.Stream, eventstore.Exact(recs[len(recs)-1].Revision), eventstore.Event{
			ID: ev.ID, Type: ev.Type, Data: ev.Data, Metadata: md,
		})
		if errors.Is(err, eventstore.ErrConflict) {
			continue
		}
		return err == nil, err
	}
	return false, fmt.Errorf("case %s kept changing while the journal was replayed", ev.Stream)
}
