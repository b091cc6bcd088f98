package cli

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/host"
	retentionwire "github.com/kontakt-se/kontakt/services/retention/wire"
	routingwire "github.com/kontakt-se/kontakt/services/routing/wire"
	statisticswire "github.com/kontakt-se/kontakt/services/statistics/wire"
)

// rebuildable are the read models `kontakt rebuild` knows, in the order
// `all` rebuilds them: each opened on a host without a server, and
// rebuilt the same way, through its projection runner.
var rebuildable = []struct {
	name string
	open func(context.Context, *host.Host) (host.ReadModel, error)
}{
	{"routing", routingwire.OpenOffline},
	{"retention", retentionwire.OpenOffline},
	{"statistics", statisticswire.OpenOffline},
}

func rebuildNames() []string {
	names := make([]string, 0, len(rebuildable)+1)
	for _, r := range rebuildable {
		names = append(names, r.name)
	}
	return append(names, "all")
}

func newRebuildCmd(g *globalFlags, stdout io.Writer, lookupEnv env) *cobra.Command {
	names := rebuildNames()
	cmd := &cobra.Command{
		Use:   "rebuild " + strings.Join(names, "|"),
		Short: "Replay the event log from the start into read models (stop kontakt serve first).",
		Long: "Rebuild wipes a service's read model (or every one, with all) and replays every " +
			"case event into it, with a progress bar. The read models and the embedded NATS " +
			"store are locked by a running server, so stop `kontakt serve` first. Rebuilding " +
			"statistics keeps the statistics stream and publishes no record twice; rebuilding " +
			"retention runs its effects again, which find themselves done.",
		Args:      cobra.ExactArgs(1),
		ValidArgs: names,
		RunE: func(cmd *cobra.Command, args []string) error {
			var chosen []int
			for i, r := range rebuildable {
				if args[0] == r.name || args[0] == "all" {
					chosen = append(chosen, i)
				}
			}
			if len(chosen) == 0 {
				return usageError{fmt.Errorf("rebuild: unknown read model %q (known: %s)", args[0], strings.Join(names, ", "))}
			}
			ctx, b, done, err := openStopped(cmd, g, lookupEnv)
			if err != nil {
				return err
			}
			defer done()
			// Open every chosen model before rebuilding any, so one that
			// cannot be opened leaves all of them as they were.
			models := make([]host.ReadModel, 0, len(chosen))
			for _, i := range chosen {
				rm, err := rebuildable[i].open(ctx, b)
				if err != nil {
					return fmt.Errorf("rebuild: %w", err)
				}
				models = append(models, rm)
			}
			for _, rm := range models {
				if err := rebuild(ctx, stdout, rm); err != nil {
					return err
				}
			}
			return nil
		},
	}
	return cmd
}

// rebuild empties one read model and replays the log into it through its
// runner, showing progress, and says how far it got and how long the
// replay took.
func rebuild(ctx context.Context, stdout io.Writer, rm host.ReadModel) error {
	if rm.Projection == nil {
		return fmt.Errorf("rebuild %s: the read model has no projection runner", rm.Name)
	}
	bar := progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(stdout),
		progressbar.OptionSetDescription("rebuilding "+rm.Name),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("positions"),
		progressbar.OptionThrottle(100*time.Millisecond),
	)
	start := time.Now()
	var head uint64
	err := rm.Projection.Rebuild(ctx, func(done, total uint64) {
		if bar.GetMax64() != int64(total) {
			bar.ChangeMax64(int64(total))
		}
		_ = bar.Set64(int64(done))
		head = total
	})
	_ = bar.Finish()
	if err != nil {
		return fmt.Errorf("rebuild %s: %w", rm.Name, err)
	}
	_, err = fmt.Fprintf(stdout, "\nrebuilt %s up to log position %d in %s\n", rm.Name, head, time.Since(start).Round(time.Millisecond))
	return err
}

// openStopped opens the backends of a stopped data directory for a
// maintenance command (rebuild, check): the configuration, a logger that
// shows warnings only, and the event store, key store and NATS behind the
// data directory's lock, with the command cancelled by SIGINT or SIGTERM.
// done closes what it opened. A configuration error is returned as it
// is; the caller words a failure to open the backends.
func openStopped(cmd *cobra.Command, g *globalFlags, lookupEnv env) (context.Context, *host.Host, func(), error) {
	cfg, err := g.loadConfig(lookupEnv)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	logger, err := host.NewLogger(config.Log{Level: "warn", Format: cfg.Log.Format}, cmd.ErrOrStderr())
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	b, err := host.OpenBackends(ctx, cfg, logger, lookupEnv)
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	return ctx, b, func() { b.Close(); stop() }, nil
}
