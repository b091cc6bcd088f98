// Package wire mounts the routing service on a process (pkg/host): the
// single binary and routing's own binary build it the same way, and
// `kontakt rebuild routing` opens its read model through OpenReadModel.
package wire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/audit"
	"github.com/kontakt-se/kontakt/pkg/blobstore"
	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/host"
	"github.com/kontakt-se/kontakt/pkg/readcheck"
	"github.com/kontakt-se/kontakt/pkg/tokenindex"
	"github.com/kontakt-se/kontakt/services/routing/adapters/readmodel"
	"github.com/kontakt-se/kontakt/services/routing/app"
	"github.com/kontakt-se/kontakt/services/routing/domain"
	"github.com/kontakt-se/kontakt/services/routing/ports"
)

// Descriptor is the gRPC service routing serves.
func Descriptor() protoreflect.ServiceDescriptor {
	return routingv1.File_kontakt_routing_v1_routing_proto.Services().Get(0)
}

// ReadModel is routing's read side, opened apart from the server so the
// rebuild command can use it offline.
type ReadModel struct {
	Store     *readmodel.Store
	Projector *readmodel.Projector
}

// readModelFile is the read model's file in <data_dir>/routing.
const readModelFile = "readmodel.db"

// OpenReadModel opens routing's read model under the data directory and
// its projector. onChange receives every applied change (nil: none).
func OpenReadModel(h *host.Host, logger *slog.Logger, onChange func(app.Change)) (*ReadModel, error) {
	return openReadModel(h, h.Sealer, logger, onChange)
}

// openReadModel is OpenReadModel with the Sealer that opens the data the
// blind-index tokens are made of.
func openReadModel(h *host.Host, sealer app.Sealer, logger *slog.Logger, onChange func(app.Change)) (*ReadModel, error) {
	blind, err := h.BlindIndex()
	if err != nil {
		return nil, err
	}
	dir, err := h.DataPath("routing")
	if err != nil {
		return nil, err
	}
	rm, err := readmodel.Open(filepath.Join(dir, readModelFile), readmodel.Options{
		Tokenizer: app.NewTokenizer(sealer, blind, h.Clock),
		OnChange:  onChange,
	})
	if err != nil {
		return nil, err
	}
	proj, err := readmodel.NewProjector(h.Store, rm, logger.With("component", "routing-projector"), readmodel.WithHead(h.Store.Head))
	if err != nil {
		_ = rm.Close()
		return nil, err
	}
	return &ReadModel{Store: rm, Projector: proj}, nil
}

// declare describes the read model for pkg/host: its files for backup
// and restore, its runner for metrics and `kontakt rebuild`.
func (rm *ReadModel) declare() host.ReadModel {
	return host.ReadModel{
		Name:       "routing",
		Checkpoint: rm.Store.Checkpoint,
		Projection: rm.Projector.Runner(),
		Files: []host.ReadModelFile{
			{Path: filepath.Join("routing", readModelFile), WriteTo: rm.Store.WriteTo},
			{Path: filepath.Join("routing", tokenindex.PathFor(readModelFile)), WriteTo: rm.Store.WriteTokensTo},
		},
	}
}

// OpenOffline opens routing's read model on a host without a server, for
// `kontakt rebuild`; closing h closes it. Nobody watches its changes. Its
// tokens are made with the keys read in one pass (host's SnapshotSealer):
// the data directory is locked, and the projection only opens data, so
// the replay need not ask the key store once per case.
func OpenOffline(ctx context.Context, h *host.Host) (host.ReadModel, error) {
	sealer, err := h.SnapshotSealer(ctx)
	if err != nil {
		return host.ReadModel{}, fmt.Errorf("read the keys for the routing read model: %w", err)
	}
	rm, err := openReadModel(h, sealer, h.Logger.With("service", "routing"), nil)
	if err != nil {
		return host.ReadModel{}, fmt.Errorf("open the routing read model (stop kontakt serve first): %w", err)
	}
	h.OnClose(rm.Store.Close)
	return rm.declare(), nil
}

// CheckOffline compares routing's read model with the log, for `kontakt
// check` on a stopped data directory: the live file is opened read-only,
// and a second read model is built by the same code from the log up to
// the live one's checkpoint, in a scratch directory under the data
// directory (removed afterwards; it holds sealed copies as the live file
// does, never plain personal data, and no blind-index tokens, since it is
// built without a tokenizer). The two are compared case by case and
// queue by queue (readmodel.Compare). A data directory without the file
// compares as an empty read model.
func CheckOffline(ctx context.Context, h *host.Host) ([]readcheck.Result, error) {
	path := filepath.Join(h.Config.DataDir, "routing", readModelFile)
	var got readmodel.Census
	var cp eventstore.Position
	stale := false
	live, err := readmodel.OpenReadOnly(path, readmodel.Options{})
	switch {
	case errors.Is(err, readmodel.ErrNoFile):
	case err != nil:
		return nil, fmt.Errorf("routing read model (stop kontakt serve first): %w", err)
	default:
		defer func() { _ = live.Close() }()
		if cp, err = live.Checkpoint(); err != nil {
			return nil, err
		}
		if stale = live.NeedsRebuild(); !stale {
			if got, err = live.Census(); err != nil {
				return nil, err
			}
		}
	}
	head, err := h.Store.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("routing: head of the log: %w", err)
	}
	scratch, err := os.MkdirTemp(h.Config.DataDir, ".check-routing-")
	if err != nil {
		return nil, fmt.Errorf("routing: scratch directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(scratch) }()
	fresh, err := readmodel.Open(filepath.Join(scratch, readModelFile), readmodel.Options{})
	if err != nil {
		return nil, err
	}
	defer func() { _ = fresh.Close() }()
	if err := readcheck.Replay(ctx, h.Store, cp, fresh.Model().Apply); err != nil {
		return nil, fmt.Errorf("routing: %w", err)
	}
	want, err := fresh.Census()
	if err != nil {
		return nil, err
	}
	cases := readcheck.New("routing", "cases", cp, head)
	queues := readcheck.New("routing", "queues", cp, head)
	readmodel.Compare(got, want, &cases, &queues)
	if stale {
		cases.Differ("the file was written with another layout or SLA; kontakt serve rebuilds it at start")
	}
	return []readcheck.Result{cases, queues}, nil
}

// Mount builds routing on h: queues, rules, commands, the read model and
// its projector, the router, audited queries, and the gRPC handlers.
func Mount(ctx context.Context, h *host.Host) error {
	cfg := h.Config
	queueCfg, rules, err := settings(cfg)
	if err != nil {
		return err
	}
	queues := app.NewQueues(queueCfg, rules)
	auditLog, err := audit.New(ctx, h.JS, audit.Config{Replicas: cfg.NATS.Replicas, Metrics: h.Server.Metrics()})
	if err != nil {
		return err
	}
	logger := h.Logger.With("service", "routing")
	// Queues, their members and the rules follow the configuration file
	// without a restart; a file that would not start the service is
	// refused and changes nothing.
	h.OnReload(func(cfg config.Config) (func(), error) {
		queueCfg, rules, err := settings(cfg)
		if err != nil {
			return nil, fmt.Errorf("routing: %w", err)
		}
		return func() {
			queues.Replace(queueCfg, rules)
			logger.Info("routing queues and rules reloaded", "queues", len(queueCfg), "rules_version", rules.Version())
		}, nil
	})
	names := make([]string, 0, len(queueCfg))
	for _, q := range queueCfg {
		names = append(names, q.Name)
	}
	firstResponse, err := ports.NewFirstResponseMetrics(h.Server.Metrics(), names)
	if err != nil {
		return fmt.Errorf("routing: first-response metrics: %w", err)
	}
	cmds := app.NewCommands(app.CommandsConfig{Store: h.Store, Sealer: h.Sealer, Clock: h.Clock, Logger: logger, Metrics: firstResponse})
	broker := app.NewBroker()
	var router *app.Router
	rm, err := OpenReadModel(h, logger, func(c app.Change) {
		broker.Publish(c)
		router.Observe(c)
	})
	if err != nil {
		return err
	}
	h.OnClose(rm.Store.Close)
	if err := h.AddReadModel(rm.declare()); err != nil {
		return err
	}
	if rm.Store.NeedsRebuild() {
		// The file was written with another layout or SLA; its due times
		// and indexes cannot be trusted, so replay the log before serving.
		logger.Warn("routing read model was built with other settings; rebuilding it from the event log")
		if err := rm.Projector.Rebuild(ctx, nil); err != nil {
			return fmt.Errorf("rebuild routing read model: %w", err)
		}
	}
	blind, err := h.BlindIndex()
	if err != nil {
		return err
	}
	router = app.NewRouter(app.RouterConfig{Commands: cmds, Queues: queues, Unrouted: rm.Store, Logger: logger})
	h.Go(rm.Projector.Run)
	h.Go(router.Run)
	blobs, err := blobstore.Open(ctx, h.JS, h.Sealer, blobstore.Config{Replicas: h.Config.NATS.Replicas})
	if err != nil {
		return fmt.Errorf("attachment store: %w", err)
	}
	queries := app.NewQueries(app.QueriesConfig{
		ReadModel: rm.Store, Sealer: h.Sealer, Audit: auditLog, Blind: blind, Queues: queues, Clock: h.Clock,
		Attachments: blobs,
	})
	if err := h.Server.Metrics().Register(ports.NewQueueMetrics(queries)); err != nil {
		return fmt.Errorf("routing: queue metrics: %w", err)
	}
	ports.Register(h.Server, ports.NewServer(ports.Config{
		Queues: queues, Commands: cmds, Queries: queries, Broker: broker,
		Stopping: h.Server.ShuttingDown(), Logger: logger,
	}))
	return nil
}

// settings are the queues and rules of a configuration, checked against
// each other: the one path both start-up and reload take.
func settings(cfg config.Config) ([]app.Queue, *domain.Rules, error) {
	queues := make([]app.Queue, 0, len(cfg.Routing.Queues))
	names := make([]string, 0, len(cfg.Routing.Queues))
	for _, q := range cfg.Routing.Queues {
		queues = append(queues, app.Queue{Name: q.Name, Title: q.Title, Department: q.Department, Members: q.Members})
		names = append(names, q.Name)
	}
	rules, err := loadRules(cfg, names)
	if err != nil {
		return nil, nil, err
	}
	return queues, rules, nil
}

// loadRules reads the routing rule file, or uses the built-in rules.
func loadRules(cfg config.Config, queues []string) (*domain.Rules, error) {
	if cfg.Routing.RulesFile == "" {
		return domain.DefaultRules(queues[0], queues...), nil
	}
	data, err := os.ReadFile(cfg.Routing.RulesFile)
	if err != nil {
		return nil, fmt.Errorf("config key routing.rules_file: %w", err)
	}
	rules, err := domain.ParseRulesFile(cfg.Routing.RulesFile, data, domain.Known{Queues: queues, Categories: cfg.CategoryCodes(), Mailboxes: cfg.MailAddresses()})
	if err != nil {
		// One line: the rule file's problems, joined.
		return nil, errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return rules, nil
}

// Check reads the routing queues and the rule file as Mount does, and
// creates nothing: the single binary and kontakt-routing call it before
// they open anything, so a bad rule file stops start-up with no key,
// store or port left behind.
func Check(cfg config.Config) error {
	_, _, err := settings(cfg)
	return err
}
