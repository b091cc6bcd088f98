// Package cli is the kontakt command line: `serve` runs the system, the
// other commands administer it. Errors are printed as one line prefixed
// with "kontakt:" and give a non-zero exit code, because they are read by
// an operator at a terminal or in a unit log.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/kontakt-se/kontakt/pkg/buildinfo"
	"github.com/kontakt-se/kontakt/pkg/config"
)

// Exit codes. Usage errors are told apart from failures at run time so a
// supervisor (systemd, Kubernetes) need not restart a mistyped command.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// env looks up an environment variable; injected so tests need not touch
// the process environment.
type env func(string) (string, bool)

type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer, lookupEnv env) int {
	root := newRoot(stdout, stderr, lookupEnv)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "kontakt: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailure
}

// globalFlags are the flags every command shares.
type globalFlags struct {
	configPath string
	dataDir    string
}

func newRoot(stdout, stderr io.Writer, lookupEnv env) *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "kontakt",
		Short:         "Case handling for municipal contact centres: intake, routing, retention, statistics.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildinfo.Read().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVar(&g.configPath, "config", "", "configuration file (YAML); also KONTAKT_CONFIG")
	root.PersistentFlags().StringVar(&g.dataDir, "data-dir", "", "data directory (overrides data_dir)")
	root.AddCommand(newServeCmd(g, lookupEnv), newTokenCmd(g, stdout, lookupEnv), newRebuildCmd(g, stdout, lookupEnv), newStatsCmd(g, stdout, lookupEnv), newRetentionCmd(g, stdout, lookupEnv), newSubjectAccessCmd(g, stdout, lookupEnv), newNATSCmd(g, stdout, lookupEnv),
		newBackupCmd(g, stdout, stderr, lookupEnv), newRestoreCmd(g, stdout, stderr, lookupEnv), newCheckCmd(g, stdout, lookupEnv), newVersionCmd(stdout))
	for _, c := range root.Commands() {
		c.Flags().SetInterspersed(true)
		c.SilenceUsage = true
	}
	strictArgs(root)
	return root
}

// strictArgs makes every wrong argument a usage error (exit 2): a command
// given arguments it does not take, and a group of commands (`kontakt
// retention`) given one it does not have, which cobra would otherwise
// answer with its help and exit 0.
func strictArgs(c *cobra.Command) {
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		c.Args = cobra.NoArgs
	}
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageError{fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		strictArgs(sub)
	}
}

// loadConfig reads the configuration named by --config or KONTAKT_CONFIG,
// applies the environment, then the flags that override it.
func (g *globalFlags) loadConfig(lookupEnv env) (config.Config, error) {
	if err := config.CheckEnviron(os.Environ()); err != nil {
		return config.Config{}, err
	}
	path := g.configPath
	if path == "" {
		path, _ = lookupEnv("KONTAKT_CONFIG")
	}
	cfg, err := config.Load(path, lookupEnv)
	if err != nil {
		return config.Config{}, err
	}
	if g.dataDir != "" {
		cfg.DataDir = g.dataDir
	}
	return cfg, nil
}
