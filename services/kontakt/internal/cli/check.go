package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kontakt-se/kontakt/pkg/host"
	"github.com/kontakt-se/kontakt/pkg/readcheck"
	retentionwire "github.com/kontakt-se/kontakt/services/retention/wire"
	routingwire "github.com/kontakt-se/kontakt/services/routing/wire"
	statisticswire "github.com/kontakt-se/kontakt/services/statistics/wire"
)

// errInconsistent is the failure of a check that found a read model that
// differs from the log: exit code 1, after the report.
var errInconsistent = errors.New("check: read models differ from the event log")

// checkable are the read models `kontakt check` compares with the log, in
// the order `all` checks them, as `kontakt rebuild` knows them.
var checkable = []struct {
	name  string
	check func(context.Context, *host.Host) ([]readcheck.Result, error)
}{
	{"routing", routingwire.CheckOffline},
	{"retention", retentionwire.CheckOffline},
	{"statistics", statisticswire.CheckOffline},
}

// newCheckCmd is `kontakt check`: a consistency check of the read models
// against the event log.
//
// It runs on a stopped data directory and takes the same lock as `serve`
// and `rebuild` (pkg/host's lockDataDir), refusing at once with one line
// while a server holds it, rather than reading a live store. That is
// what an operator needs from it: it is run after an incident, a crash,
// a restore or an upgrade, to decide whether a rebuild is needed, and the
// answer must be about files that stand still. Against a running server
// the log and the read models move while they are read, so a difference
// could be a projector a batch behind rather than a fault, and the
// embedded NATS server (the only way into the log) has no port to share
// by default. What it opens it opens for reading: the read-model files
// read-only (bbolt's shared lock, no bucket created, no token file), the
// log and the statistics stream through the embedded server, with
// nothing appended; the only file it writes is a scratch copy of the
// routing read model, built from the log under the data directory and
// removed when it is done.
func newCheckCmd(g *globalFlags, stdout io.Writer, lookupEnv env) *cobra.Command {
	names := make([]string, 0, len(checkable)+1)
	for _, c := range checkable {
		names = append(names, c.name)
	}
	names = append(names, "all")
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check [" + strings.Join(names, "|") + "]",
		Short: "Compare the read models with the event log, read-only (stop kontakt serve first).",
		Long: "Check replays the event log up to each read model's checkpoint and compares what the " +
			"read model holds with what the log gives: routing's cases and open cases per queue and " +
			"status, retention's case states and deadlines (and the cases due now), and the statistics " +
			"records of every live case and against the statistics stream. It prints one line per " +
			"check, OK or MISMATCH with the counts, naming the queue, status or case numbers that " +
			"differ. Exit code 0 when every read model is consistent, 1 when one is not (rebuild it " +
			"with `kontakt rebuild`), 2 for a usage error. Stop `kontakt serve` first: the data " +
			"directory is locked while it runs. Without an argument every read model is checked.",
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: names,
		RunE: func(cmd *cobra.Command, args []string) error {
			which := "all"
			if len(args) == 1 {
				which = args[0]
			}
			var chosen []int
			for i, c := range checkable {
				if which == c.name || which == "all" {
					chosen = append(chosen, i)
				}
			}
			if len(chosen) == 0 {
				return usageError{fmt.Errorf("check: unknown read model %q (known: %s)", which, strings.Join(names, ", "))}
			}
			ctx, b, done, err := openStopped(cmd, g, lookupEnv)
			if err != nil {
				return fmt.Errorf("check: %w", err)
			}
			defer done()
			var results []readcheck.Result
			for _, i := range chosen {
				rs, err := checkable[i].check(ctx, b)
				if err != nil {
					return fmt.Errorf("check %s: %w", checkable[i].name, err)
				}
				results = append(results, rs...)
			}
			consistent := true
			for _, r := range results {
				consistent = consistent && r.OK
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(struct {
					Consistent bool               `json:"consistent"`
					Results    []readcheck.Result `json:"results"`
				}{consistent, results}); err != nil {
					return err
				}
			} else {
				for _, r := range results {
					if _, err := fmt.Fprintln(stdout, r.Line()); err != nil {
						return err
					}
				}
			}
			if !consistent {
				return errInconsistent
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the results as JSON")
	return cmd
}
