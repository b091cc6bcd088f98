package cli

import (
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/host"
	routingwire "github.com/kontakt-se/kontakt/services/routing/wire"
)

func newRebuildCmd(g *globalFlags, stdout io.Writer, lookupEnv env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rebuild routing",
		Short: "Replay the event log from the start into a read model (stop kontakt serve first).",
		Long: "Rebuild wipes a service's read model and replays every case event into it, " +
			"with a progress bar. The read model and the embedded NATS store are locked by a " +
			"running server, so stop `kontakt serve` first.",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"routing"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "routing" {
				return usageError{fmt.Errorf("rebuild: unknown read model %q (known: routing)", args[0])}
			}
			cfg, err := g.loadConfig(lookupEnv)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			logger, err := host.NewLogger(config.Log{Level: "warn", Format: cfg.Log.Format}, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			b, err := host.OpenBackends(ctx, cfg, logger, lookupEnv)
			if err != nil {
				return err
			}
			defer b.Close()
			r, err := routingwire.OpenReadModel(b, logger, nil)
			if err != nil {
				return fmt.Errorf("rebuild: open the routing read model (stop kontakt serve first): %w", err)
			}
			defer r.Store.Close()
			bar := progressbar.NewOptions64(-1,
				progressbar.OptionSetWriter(stdout),
				progressbar.OptionSetDescription("rebuilding routing"),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("positions"),
				progressbar.OptionThrottle(100*time.Millisecond),
			)
			start := time.Now()
			var head uint64
			err = r.Projector.Rebuild(ctx, func(done, total uint64) {
				if bar.GetMax64() != int64(total) {
					bar.ChangeMax64(int64(total))
				}
				_ = bar.Set64(int64(done))
				head = total
			})
			_ = bar.Finish()
			if err != nil {
				return fmt.Errorf("rebuild routing: %w", err)
			}
			_, err = fmt.Fprintf(stdout, "\nrebuilt routing up to log position %d in %s\n", head, time.Since(start).Round(time.Millisecond))
			return err
		},
	}
	return cmd
}
