package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/host"
	"github.com/kontakt-se/kontakt/services/kontakt/internal/admin"
	"github.com/kontakt-se/kontakt/services/kontakt/internal/backup"
	"github.com/kontakt-se/kontakt/services/kontakt/internal/node"
)

func newBackupCmd(g *globalFlags, stdout, stderr io.Writer, lookupEnv env) *cobra.Command {
	var out, keysOut string
	cmd := &cobra.Command{
		Use:   "backup --out DIR [--keys-out KEYDIR]",
		Short: "Back up the event log, the data keys (apart) and the read models, while serving or not.",
		Long: "Backup writes the streams of the embedded NATS server (JetStream snapshots) and the services' " +
			"read models to DIR, and the data keys to KEYDIR (default DIR.keys), each with a manifest of every " +
			"file's size and SHA-256. Store KEYDIR apart from DIR, and neither with the master key, which is never " +
			"in a backup. While `kontakt serve` runs on the data directory, the server takes the backup (through " +
			"its admin socket) without stopping; otherwise this command does it on the stopped data directory. " +
			"Restore with `kontakt restore`, which replays the shred journal: copying a backup back by hand " +
			"brings back what was erased after it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{errors.New("backup: --out DIR is required")}
			}
			cfg, err := g.loadConfig(lookupEnv)
			if err != nil {
				return err
			}
			if err := backup.CheckSupported(cfg); err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			absOut, err := filepath.Abs(out)
			if err != nil {
				return err
			}
			absKeys := keysOut
			if absKeys == "" {
				absKeys = backup.DefaultKeysDir(absOut)
			}
			if absKeys, err = filepath.Abs(absKeys); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			bars := newBars(stderr)
			res, err := admin.Backup(ctx, cfg.AdminSocketPath(), admin.BackupRequest{Out: absOut, KeysOut: absKeys}, bars.progress)
			if errors.Is(err, admin.ErrNoServer) {
				res, err = offlineBackup(ctx, cfg, lookupEnv, stderr, backup.Options{Out: absOut, KeysOut: absKeys}, bars.progress)
			}
			bars.finish()
			if err != nil {
				return err
			}
			dataBytes, keyBytes := res.Bytes()
			how := "from the stopped data directory"
			if res.Data.Online {
				how = "by the running server"
			}
			journal, _, _ := cfg.JournalPath()
			if abs, err := filepath.Abs(journal); err == nil {
				journal = abs
			}
			_, err = fmt.Fprintf(stdout, "backup %s written %s in %s\n  data: %s (%d files, %d bytes; %d streams, %d read models)\n  keys: %s (%d bytes)\n  shred journal: %s (marked; a restore needs it or a copy)\nStore the keys apart from the data, and neither with the master key (id %s), which is not in the backup.\nRestore with: kontakt restore --from %s --keys-from %s --journal %s --data-dir NEW\n",
				res.Data.BackupID, how, res.Duration.Round(time.Millisecond),
				absOut, len(res.Data.Files), dataBytes, len(res.Data.Streams), len(res.Data.ReadModels),
				absKeys, keyBytes, journal, res.Data.MasterKeyID, absOut, absKeys, journal)
			return err
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory for the data part (absent or empty)")
	cmd.Flags().StringVar(&keysOut, "keys-out", "", "directory for the data keys (default: the data directory's name + .keys); store it apart")
	return cmd
}

// offlineBackup takes the backup itself, on a data directory no server
// runs on: the services are built offline (their read models opened as
// serve opens them), and the same backup code runs.
func offlineBackup(ctx context.Context, cfg config.Config, lookupEnv env, stderr io.Writer, opts backup.Options, progress backup.Progress) (*backup.Result, error) {
	if _, err := os.Stat(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("backup: data directory %s: %w", cfg.DataDir, err)
	}
	logger, err := host.NewLogger(config.Log{Level: "warn", Format: cfg.Log.Format}, stderr)
	if err != nil {
		return nil, err
	}
	cfg.NATS.EmbeddedListen, cfg.MetricsListen = "", ""
	h, err := node.Open(ctx, cfg, logger, lookupEnv, node.Setup{Offline: true})
	if err != nil {
		return nil, fmt.Errorf("backup: open the stopped data directory (if kontakt serve runs on it, is its admin socket %s there?): %w", cfg.AdminSocketPath(), err)
	}
	defer h.Close()
	return backup.Run(ctx, h, opts, progress)
}

func newRestoreCmd(g *globalFlags, stdout, stderr io.Writer, lookupEnv env) *cobra.Command {
	var from, keysFrom, masterKeyFile string
	var journals []string
	cmd := &cobra.Command{
		Use:   "restore --from DIR --keys-from KEYDIR [--journal JDIR ...] [--data-dir NEW]",
		Short: "Restore a backup into a new data directory, replaying the shred journal before anything serves.",
		Long: "Restore checks both parts of a backup against their manifests, restores the streams and the data keys " +
			"into a fresh embedded NATS server (no port) and the read models into the data directory, which must be " +
			"empty or absent (a restore never overwrites a data directory, a running server's least of all). Then, " +
			"before anything serves, it replays the shred journal (retention.journal_dir, merged with every --journal " +
			"copy): the keys destroyed after the backup are destroyed again, the receipts written after it are " +
			"appended to the ledger as they were, and the redactions and deletions are appended to the log again; " +
			"the read models are then brought up to the log. The master key is the one the backup was taken with " +
			"(KONTAKT_MASTER_KEY, master_key_file or --master-key-file).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return usageError{errors.New("restore: --from DIR is required")}
			}
			cfg, err := g.loadConfig(lookupEnv)
			if err != nil {
				return err
			}
			configuredKey := cfg.MasterKeyFile
			if masterKeyFile != "" {
				cfg.MasterKeyFile = masterKeyFile
			}
			logger, err := host.NewLogger(config.Log{Level: "warn", Format: cfg.Log.Format}, stderr)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			bars := newBars(stderr)
			open := func(ctx context.Context, cfg config.Config, after func(context.Context, *natsgo.Conn) error, before func(context.Context, *host.Host) error) (*host.Host, error) {
				return node.Open(ctx, cfg, logger, lookupEnv, node.Setup{Offline: true, AfterConnect: after, BeforeMount: before})
			}
			res, err := backup.Restore(ctx, cfg, lookupEnv, open, backup.RestoreOptions{From: from, KeysFrom: keysFrom, Journals: journals}, bars.progress)
			bars.finish()
			if err != nil {
				return err
			}
			dataDir, _ := filepath.Abs(cfg.DataDir)
			var keyNote string
			// Development keeps the master key in the data directory, and
			// a serve that finds none there makes a new one, with which
			// nothing restored opens: put the key given where serve looks.
			if _, fromEnv := lookupEnv(envMasterKey); cfg.Mode == config.Development && configuredKey == "" && masterKeyFile != "" && !fromEnv {
				dst := filepath.Join(dataDir, "master.key")
				if err := copyKeyFile(masterKeyFile, dst); err != nil {
					return fmt.Errorf("restore: %w", err)
				}
				keyNote = fmt.Sprintf("  master key: copied to %s (development mode keeps it there)\n", dst)
			}
			var streams []string
			for _, s := range res.Streams {
				streams = append(streams, fmt.Sprintf("%s (%d messages)", s.Name, s.Messages))
			}
			journalDir, _, _ := cfg.JournalPath()
			_, err = fmt.Fprintf(stdout, "restored backup %s into %s in %s\n  streams: %s\n  shred journal: %d entries (%d added to %s)\n  replayed: keys of %d events destroyed again; %d receipts appended verbatim, %d recorded again; %d events appended again, %d already in the backup, %d of cases the backup does not hold\n  read models: up to log position %d\n%sStart it with: kontakt serve --data-dir %s\n",
				res.BackupID, dataDir, res.Duration.Round(time.Millisecond), strings.Join(streams, ", "),
				res.JournalEntries, res.JournalAdded, journalDir,
				res.KeysDestroyed, res.ReceiptsVerbatim, res.ReceiptsRerecorded, res.EventsAppended, res.EventsPresent, res.EventsNoStream,
				res.Head, keyNote, dataDir)
			return err
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the backup's data part")
	cmd.Flags().StringVar(&keysFrom, "keys-from", "", "the backup's keys part (default: the data part's name + .keys)")
	cmd.Flags().StringArrayVar(&journals, "journal", nil, "a copy of the shred journal to merge with retention.journal_dir (repeatable)")
	cmd.Flags().StringVar(&masterKeyFile, "master-key-file", "", "the master key the backup was taken with (overrides master_key_file)")
	return cmd
}

// envMasterKey is the environment variable of the master key (pkg/seal).
const envMasterKey = "KONTAKT_MASTER_KEY"

// copyKeyFile copies a master key file, readable by its owner only.
func copyKeyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// bars shows one progress bar per phase of a backup or a restore.
type bars struct {
	w     io.Writer
	phase string
	bar   *progressbar.ProgressBar
}

func newBars(w io.Writer) *bars { return &bars{w: w} }

func (b *bars) progress(e backup.Event) {
	if e.Phase != b.phase || b.bar == nil {
		b.finish()
		b.phase = e.Phase
		opts := []progressbar.Option{
			progressbar.OptionSetWriter(b.w),
			progressbar.OptionSetDescription(fmt.Sprintf("%-15s", e.Phase)),
			progressbar.OptionShowCount(),
			progressbar.OptionThrottle(100 * time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(b.w) }),
		}
		if e.Unit == "bytes" {
			opts = append(opts, progressbar.OptionShowBytes(true))
		} else if e.Unit != "" {
			opts = append(opts, progressbar.OptionSetItsString(e.Unit), progressbar.OptionShowIts())
		}
		total := e.Total
		if total <= 0 {
			total = -1
		}
		b.bar = progressbar.NewOptions64(total, opts...)
	}
	if e.Total > 0 && b.bar.GetMax64() != e.Total {
		b.bar.ChangeMax64(e.Total)
	}
	_ = b.bar.Set64(min(e.Done, max(e.Total, e.Done)))
}

func (b *bars) finish() {
	if b.bar != nil {
		_ = b.bar.Finish()
		b.bar = nil
	}
}
