package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kontakt-se/kontakt/pkg/host"
	"github.com/kontakt-se/kontakt/pkg/natsserver"
)

func newNATSCmd(g *globalFlags, stdout io.Writer, lookupEnv env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nats",
		Short: "The embedded NATS server's port and its users.",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "credentials",
		Short: "Print where the embedded NATS server's keys are and the nats command an analyst runs.",
		Long: "With nats.embedded_listen set, the embedded NATS server lets in two users only, with " +
			"keys `kontakt serve` creates under the data directory: the analyst, who may read the " +
			"statistics stream and nothing else, and kontakt's own service user. This prints the " +
			"files (it never prints a key) and the command an analyst runs with them.",
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig(lookupEnv)
			if err != nil {
				return err
			}
			if cfg.NATS.URL != "" {
				return errors.New("nats credentials: kontakt uses an external NATS cluster (nats.url); its users are the cluster's")
			}
			if cfg.NATS.EmbeddedListen == "" {
				return errors.New("nats credentials: nats.embedded_listen is not set, so the embedded NATS server opens no port to connect to")
			}
			dir, err := filepath.Abs(cfg.NATSCredentialsDir())
			if err != nil {
				return err
			}
			analystKey := filepath.Join(dir, natsserver.AnalystSeedFile)
			ctxFile := filepath.Join(dir, natsserver.AnalystContextFile)
			serviceKey := filepath.Join(dir, natsserver.ServiceSeedFile)
			for _, f := range []string{analystKey, ctxFile, serviceKey} {
				if _, err := os.Stat(f); errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("nats credentials: %s does not exist yet; `kontakt serve` creates it when it starts with nats.embedded_listen set", f)
				} else if err != nil {
					return fmt.Errorf("nats credentials: %w", err)
				}
			}
			_, err = fmt.Fprintf(stdout, `The embedded NATS server on %s lets in these users only:

  analyst   may read the statistics stream %s, nothing else
            key      %s
            context  %s (the server's URL and the key's path)
  service   kontakt itself, with every right: for operators only
            key      %s

An analyst reads every statistics record with

  nats --context %s sub '%s' --stream %s --all

Delete a key file and restart kontakt to replace that key.
`, cfg.NATS.EmbeddedListen, host.AnalystStream, analystKey, ctxFile, serviceKey, ctxFile, host.AnalystSubjects, host.AnalystStream)
			return err
		},
	})
	return cmd
}
