package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/kontakt-se/kontakt/pkg/audit"
	"github.com/kontakt-se/kontakt/pkg/blindindex"
	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/retention/adapters/index"
	"github.com/kontakt-se/kontakt/services/retention/adapters/ledger"
	retentionapp "github.com/kontakt-se/kontakt/services/retention/app"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

// LoadPlan returns the retention plan the configuration names: the
// municipality's own file, or a built-in plan.
func LoadPlan(cfg config.Config) (*domain.Plan, error) { return loadPlan(cfg) }

func loadPlan(cfg config.Config) (*domain.Plan, error) {
	if cfg.Retention.PlanFile != "" {
		data, err := os.ReadFile(cfg.Retention.PlanFile)
		if err != nil {
			return nil, fmt.Errorf("config key retention.plan_file: %w", unwrapPath(err))
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

// auditRetention is how long the plan keeps the audit trail: the period
// of its rule that deletes the audit class, or the audit package's
// default when the plan has none.
func auditRetention(p *domain.Plan) time.Duration {
	epoch := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, r := range p.Rules {
		if r.Action == domain.ActionDelete && slices.Contains(r.Classes, domain.ClassAudit) {
			return r.Period.After(epoch).Sub(epoch)
		}
	}
	return audit.DefaultRetention
}

func (n *Node) buildRetention(ctx context.Context, store *jetstream.Store, sealer *seal.Sealer, master seal.MasterKey, js natsjs.JetStream, auditLog *audit.Log, plan *domain.Plan, clock func() time.Time) (*retentionapp.Service, error) {
	led, err := ledger.New(ctx, js, ledger.Config{Replicas: n.cfg.NATS.Replicas})
	if err != nil {
		return nil, fmt.Errorf("retention ledger: %w", err)
	}
	dir := filepath.Join(n.cfg.DataDir, "retention")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("retention directory %s: %w", dir, unwrapPath(err))
	}
	archiveDir := n.cfg.ArchivePath()
	if err := os.MkdirAll(archiveDir, 0o750); err != nil {
		return nil, fmt.Errorf("config key retention.archive_dir: %w", unwrapPath(err))
	}
	idx, err := index.Open(filepath.Join(dir, "index.db"))
	if err != nil {
		return nil, err
	}
	n.closers = append(n.closers, idx.Close)
	blindKey, err := master.DeriveKey(blindindex.KeyPurpose)
	if err != nil {
		return nil, err
	}
	blind, err := blindindex.New(blindKey)
	if err != nil {
		return nil, err
	}
	svc, err := retentionapp.New(store, sealer, led, idx, auditLog, blind, clock, n.logger.With("service", "retention"), retentionapp.Config{
		Plan: plan, ArchiveDir: archiveDir, SweepInterval: n.cfg.Retention.SweepInterval,
	})
	if err != nil {
		return nil, err
	}
	n.background = append(n.background, svc.RunProjector, svc.RunSweeper)
	return svc, nil
}
