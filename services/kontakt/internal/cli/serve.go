package cli

import (
	"fmt"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/pkg/host"
	"github.com/kontakt-se/kontakt/services/kontakt/internal/admin"
	"github.com/kontakt-se/kontakt/services/kontakt/internal/node"
)

func newServeCmd(g *globalFlags, lookupEnv env) *cobra.Command {
	var listen, clockOffset string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run intake, routing, retention and statistics on one port with an embedded NATS server.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// load is how the configuration is read at start and again at
			// SIGHUP: the file, the environment and these flags.
			load := func() (config.Config, error) {
				cfg, err := g.loadConfig(lookupEnv)
				if err != nil {
					return config.Config{}, err
				}
				if listen != "" {
					cfg.Listen = listen
				}
				if clockOffset != "" {
					d, err := parseDays(clockOffset)
					if err != nil {
						return config.Config{}, usageError{fmt.Errorf("--dev-clock-offset: %w", err)}
					}
					cfg.Retention.DevClockOffset = d
					if err := cfg.Validate(); err != nil {
						return config.Config{}, err
					}
				}
				return cfg, nil
			}
			cfg, err := load()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			logger, err := host.NewLogger(cfg.Log, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			n, err := node.Build(ctx, cfg, logger, lookupEnv, load)
			if err != nil {
				return err
			}
			// The admin socket lets `kontakt backup` run in this process,
			// which holds the read models. Serving goes on without it.
			if adm, err := admin.Listen(n, cfg.AdminSocketPath(), logger); err != nil {
				logger.Warn("no admin socket: `kontakt backup` cannot run while this server serves", "error", err)
			} else {
				n.Go(adm.Serve)
			}
			return n.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address for gRPC, gRPC-web, Connect and REST (overrides listen)")
	cmd.Flags().StringVar(&clockOffset, "dev-clock-offset", "", "development only: run every clock this far ahead, e.g. 91d or 731d, to watch the retention plan act")
	return cmd
}

// parseDays reads an offset as days ("91d") or as a Go duration ("36h").
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("%q is not a number of days", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is neither days (91d) nor a duration (36h)", s)
	}
	return d, nil
}
