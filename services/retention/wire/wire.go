// Package wire mounts the retention service on a process (pkg/host): the
// single binary and retention's own binary build it the same way.
package wire

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	"github.com/kontakt-se/kontakt/pkg/audit"
	"github.com/kontakt-se/kontakt/pkg/blobstore"
	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/host"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/readcheck"
	"github.com/kontakt-se/kontakt/pkg/shredjournal"
	"github.com/kontakt-se/kontakt/pkg/tokenindex"
	"github.com/kontakt-se/kontakt/services/retention/adapters/archive"
	"github.com/kontakt-se/kontakt/services/retention/adapters/index"
	"github.com/kontakt-se/kontakt/services/retention/adapters/ledger"
	"github.com/kontakt-se/kontakt/services/retention/app"
	"github.com/kontakt-se/kontakt/services/retention/domain"
	"github.com/kontakt-se/kontakt/services/retention/ports"
)

// Descriptor is the gRPC service retention serves.
func Descriptor() protoreflect.ServiceDescriptor {
	return retentionv1.File_kontakt_retention_v1_retention_proto.Services().Get(0)
}

// LoadPlan returns the retention plan the configuration names: the
// municipality's own file, or a built-in plan.
func LoadPlan(cfg config.Config) (*domain.Plan, error) {
	if cfg.Retention.PlanFile != "" {
		data, err := os.ReadFile(cfg.Retention.PlanFile)
		if err != nil {
			return nil, fmt.Errorf("config key retention.plan_file: %w", err)
		}
		return domain.ParsePlan(cfg.Retention.PlanFile, data)
	}
	name := cfg.Retention.Plan
	if name == "" {
		name = domain.DefaultPlanName
	}
	p, err := domain.Builtin(name)
	if err != nil {
		return nil, fmt.Errorf("config key retention.plan: %w", err)
	}
	return p, nil
}

// auditPeriod is how long the plan keeps the audit trail (zero: the plan
// says nothing).
func auditPeriod(p *domain.Plan) time.Duration {
	epoch := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, r := range p.Rules {
		if r.Action == domain.ActionDelete && slices.Contains(r.Classes, domain.ClassAudit) {
			return r.Period.After(epoch).Sub(epoch)
		}
	}
	return 0
}

// FaultEnv names the environment variable of the development-only fault
// that the crash test of the shred journal uses: set to
// FaultKillAfterJournal, the process kills itself (SIGKILL) right after
// the journal has synced a destructive event and before its keys are
// destroyed, the one moment the journal-first order exists for.
const (
	FaultEnv              = "KONTAKT_DEV_FAULT"
	FaultKillAfterJournal = "kill-after-journal"
)

// openJournal opens the shred journal the configuration names. In
// development its default is inside the data directory, which a backup
// of the directory then carries back: say so.
func openJournal(cfg config.Config, logger *slog.Logger) (*shredjournal.Journal, error) {
	dir, inside, err := cfg.JournalPath()
	if err != nil {
		return nil, err
	}
	if inside {
		logger.Warn("the shred journal is inside the data directory; in production it must live on other storage, or a restored copy of the directory brings erased data back", "journal_dir", dir)
	}
	var opts []shredjournal.Option
	if cfg.Mode == config.Development && os.Getenv(FaultEnv) == FaultKillAfterJournal {
		logger.Warn("development fault: the process kills itself after journaling a destructive event", "env", FaultEnv)
		opts = append(opts, shredjournal.WithAfterSync(func(added []shredjournal.Entry) {
			for _, e := range added {
				if e.Kind == shredjournal.KindEvent && (len(e.Event.Destroy) > 0 || e.Event.DestroyAll) {
					if p, err := os.FindProcess(os.Getpid()); err == nil {
						_ = p.Kill()
					}
					select {} // the signal is on its way
				}
			}
		}))
	}
	j, err := shredjournal.Open(dir, opts...)
	if err != nil {
		return nil, fmt.Errorf("config key retention.journal_dir: %w", err)
	}
	return j, nil
}

// open builds the retention service on h: the plan, the ledger, the
// deadline index and the shred journal, to be closed with h. It refuses a
// data directory older than the journal.
func open(ctx context.Context, h *host.Host) (*app.Service, host.ReadModel, error) {
	cfg := h.Config
	plan, err := LoadPlan(cfg)
	if err != nil {
		return nil, host.ReadModel{}, err
	}
	logger := h.Logger.With("service", "retention")
	// The audit stream's age limit is one setting shared by every
	// process that writes it; a plan that says otherwise is reported,
	// not silently applied by whichever process started last.
	if p := auditPeriod(plan); p != 0 && p != audit.DefaultRetention {
		logger.Warn("the plan's audit-trail period differs from the audit stream's; the stream's applies", "plan", p.String(), "stream", audit.DefaultRetention.String())
	}
	auditCfg := audit.Config{Replicas: cfg.NATS.Replicas}
	if h.Server != nil {
		// A host without a server (`kontakt rebuild`) exports nothing.
		auditCfg.Metrics = h.Server.Metrics()
	}
	auditLog, err := audit.New(ctx, h.JS, auditCfg)
	if err != nil {
		return nil, host.ReadModel{}, err
	}
	led, err := ledger.New(ctx, h.JS, ledger.Config{Replicas: cfg.NATS.Replicas})
	if err != nil {
		return nil, host.ReadModel{}, fmt.Errorf("retention ledger: %w", err)
	}
	dir, err := h.DataPath("retention")
	if err != nil {
		return nil, host.ReadModel{}, err
	}
	archiveDir := cfg.ArchivePath()
	if err := os.MkdirAll(archiveDir, 0o750); err != nil {
		return nil, host.ReadModel{}, fmt.Errorf("config key retention.archive_dir: %w", err)
	}
	idx, err := index.Open(filepath.Join(dir, "index.db"))
	if err != nil {
		return nil, host.ReadModel{}, err
	}
	h.OnClose(idx.Close)
	blind, err := h.BlindIndex()
	if err != nil {
		return nil, host.ReadModel{}, err
	}
	journal, err := openJournal(cfg, logger)
	if err != nil {
		return nil, host.ReadModel{}, err
	}
	h.OnClose(journal.Close)
	h.SetJournal(journal)
	blobs, err := blobstore.Open(ctx, h.JS, h.Sealer, blobstore.Config{Replicas: cfg.NATS.Replicas})
	if err != nil {
		return nil, host.ReadModel{}, fmt.Errorf("attachment store: %w", err)
	}
	svc, err := app.New(app.Options{
		Store: h.Store, Sealer: h.Sealer, Ledger: led, Index: idx, Archive: archive.Dir(archiveDir), Audit: auditLog,
		Blind: blind, Clock: h.Clock, Logger: logger, Attachments: blobs,
		Config: app.Config{Plan: plan, SweepInterval: cfg.Retention.SweepInterval, Journal: journal},
	})
	if err != nil {
		return nil, host.ReadModel{}, err
	}
	// A data directory older than the journal (copied back by hand from
	// a backup) holds keys destroyed since: refuse to serve it.
	if err := svc.CheckJournal(ctx, journal.Tail()); err != nil {
		return nil, host.ReadModel{}, fmt.Errorf("%w; it was restored from a copy without `kontakt restore`, and serving it would make data erased since that copy readable again: restore the backup with `kontakt restore` (it replays the journal in %s), or, if that journal belongs to another installation, set retention.journal_dir to this one's", err, journal.Dir())
	}
	return svc, host.ReadModel{
		Name:       "retention",
		Checkpoint: idx.Checkpoint,
		Files: []host.ReadModelFile{
			{Path: filepath.Join("retention", "index.db"), WriteTo: idx.WriteTo},
			{Path: filepath.Join("retention", tokenindex.PathFor("index.db")), WriteTo: idx.WriteTokensTo},
		},
		Projection: svc.Projection(),
	}, nil
}

// OpenOffline opens the retention deadline index on a host without a
// server, for `kontakt rebuild`; closing h closes it. A rebuild runs the
// projector's effects again, which find themselves done.
func OpenOffline(ctx context.Context, h *host.Host) (host.ReadModel, error) {
	_, rm, err := open(ctx, h)
	if err != nil {
		return host.ReadModel{}, fmt.Errorf("open the retention index (stop kontakt serve first): %w", err)
	}
	return rm, nil
}

// CheckOffline compares retention's deadline index with the log, for
// `kontakt check` on a stopped data directory: the index file is opened
// read-only, and the log up to its checkpoint is folded in memory by the
// projector's own apply with the configured plan (app.Replay), without
// tokens and without effects, so nothing is destroyed, written or
// deleted. Opening nothing else of retention (not the ledger, the
// journal or the archive) keeps the check from writing. A data directory
// without the file compares as an empty index.
func CheckOffline(ctx context.Context, h *host.Host) ([]readcheck.Result, error) {
	plan, err := LoadPlan(h.Config)
	if err != nil {
		return nil, err
	}
	got := app.IndexView{Entries: map[string]*app.Entry{}, Due: map[string]time.Time{}}
	var cp eventstore.Position
	idx, err := index.OpenReadOnly(filepath.Join(h.Config.DataDir, "retention", "index.db"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("retention index (stop kontakt serve first): %w", err)
	default:
		defer func() { _ = idx.Close() }()
		if cp, err = idx.Checkpoint(); err != nil {
			return nil, err
		}
		if got.Plan, err = idx.Plan(); err != nil {
			return nil, err
		}
		if err := idx.Each(func(e *app.Entry) error { got.Entries[e.Case.ID] = e; return nil }); err != nil {
			return nil, err
		}
		if err := idx.DueIndex(func(id string, at time.Time) error { got.Due[id] = at; return nil }); err != nil {
			return nil, err
		}
	}
	head, err := h.Store.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("retention: head of the log: %w", err)
	}
	mem := app.NewReplayIndex()
	err = readcheck.Replay(ctx, h.Store, cp, func(_ context.Context, batch []projection.Event) error {
		return app.Replay(plan, mem, batch)
	})
	if err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	want, err := mem.View(plan)
	if err != nil {
		return nil, err
	}
	if cp == 0 && got.Plan == "" {
		got.Plan = want.Plan // An empty index has computed nothing yet.
	}
	cases := readcheck.New("retention", "cases", cp, head)
	deadlines := readcheck.New("retention", "deadlines", cp, head)
	// "Due now" by the clock the server's sweeper uses (development runs
	// it ahead with retention.dev_clock_offset).
	now := h.Clock().Add(h.Config.Retention.DevClockOffset)
	if err := app.CompareIndex(got, want, now, &cases, &deadlines); err != nil {
		return nil, err
	}
	return []readcheck.Result{cases, deadlines}, nil
}

// Mount builds retention on h: the plan, the ledger, the deadline index,
// the projector and the sweeper, and the gRPC handlers.
func Mount(ctx context.Context, h *host.Host) error {
	svc, rm, err := open(ctx, h)
	if err != nil {
		return err
	}
	if err := h.AddReadModel(rm); err != nil {
		return err
	}
	h.Go(svc.RunProjector)
	h.Go(svc.RunSweeper)
	if err := h.Server.Metrics().Register(ports.NewSweepMetrics(svc)); err != nil {
		return fmt.Errorf("retention: sweep metrics: %w", err)
	}
	ports.Register(h.Server, ports.NewServer(svc))
	return nil
}

// Check reads the retention plan as Mount does, and creates nothing: the
// single binary and kontakt-retention call it before they open anything,
// so a bad plan stops start-up with no key, store or port left behind.
func Check(cfg config.Config) error {
	_, err := LoadPlan(cfg)
	return err
}
