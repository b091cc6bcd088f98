package cli

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/kontakt-se/kontakt/pkg/auth"
	"github.com/kontakt-se/kontakt/pkg/config"
)

func newTokenCmd(g *globalFlags, stdout io.Writer, lookupEnv env) *cobra.Command {
	var (
		subject    string
		roles      []string
		queues     []string
		department string
		ttl        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token --role ROLE --subject ID",
		Short: "Mint a development-mode bearer token signed by the local key under the data directory.",
		Long: "Mint a bearer token for development mode. Production uses tokens from the " +
			"municipality's identity provider (OIDC) and this command refuses to run there.",
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig(lookupEnv)
			if err != nil {
				return err
			}
			if cfg.Mode != config.Development {
				return errors.New("token: only development mode mints tokens; production uses the OIDC provider")
			}
			if subject == "" {
				return usageError{errors.New("token: --subject is required")}
			}
			if len(roles) == 0 {
				return usageError{errors.New("token: --role is required")}
			}
			parsed := make([]auth.Role, 0, len(roles))
			for _, r := range roles {
				role, err := auth.ParseRole(r)
				if err != nil {
					return usageError{fmt.Errorf("token: --role: %w", err)}
				}
				parsed = append(parsed, role)
			}
			if ttl <= 0 || ttl > 30*24*time.Hour {
				return usageError{errors.New("token: --ttl must be between 1s and 720h")}
			}
			key, err := loadDevKey(cfg)
			if err != nil {
				return err
			}
			tok, err := key.Mint(subject, parsed, queues, department, ttl, time.Now())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(stdout, tok)
			return err
		},
	}
	cmd.Flags().StringVar(&subject, "subject", "", "the caller's subject id, for example anna")
	cmd.Flags().StringSliceVar(&roles, "role", nil, "role(s): agent, officer, supervisor, analyst, dpo, form-client")
	cmd.Flags().StringSliceVar(&queues, "queue", nil, "queue(s) the caller belongs to")
	cmd.Flags().StringVar(&department, "department", "", "the caller's department")
	cmd.Flags().DurationVar(&ttl, "ttl", 8*time.Hour, "how long the token is valid")
	return cmd
}

// loadDevKey reads the server's development signing key from the
// configured data directory, and explains what to do when it is not there.
func loadDevKey(cfg config.Config) (*auth.DevKey, error) {
	key, err := auth.LoadDevKey(cfg.DevKeyPath())
	if errors.Is(err, auth.ErrNoDevKey) {
		return nil, fmt.Errorf("%w: the data directory is %s; start `kontakt serve` on it first, or name the server's with --data-dir or --config", err, cfg.DataDir)
	}
	return key, err
}
