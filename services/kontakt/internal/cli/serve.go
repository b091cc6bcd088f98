package cli

import (
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kontakt-se/kontakt/services/kontakt/internal/node"
)

func newServeCmd(g *globalFlags, lookupEnv env) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run intake, routing, retention and statistics on one port with an embedded NATS server.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig(lookupEnv)
			if err != nil {
				return err
			}
			if listen != "" {
				cfg.Listen = listen
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			logger, err := node.NewLogger(cfg.Log, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			n, err := node.Build(ctx, cfg, logger, lookupEnv)
			if err != nil {
				return err
			}
			return n.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address for gRPC, gRPC-web, Connect and REST (overrides listen)")
	return cmd
}
