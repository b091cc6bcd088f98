package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	"github.com/kontakt-se/kontakt/pkg/auth"
	"github.com/kontakt-se/kontakt/pkg/receipt"
	"github.com/kontakt-se/kontakt/services/retention/domain"
	retentionports "github.com/kontakt-se/kontakt/services/retention/ports"
	retentionwire "github.com/kontakt-se/kontakt/services/retention/wire"
)

func newRetentionCmd(g *globalFlags, stdout io.Writer, lookupEnv env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "retention",
		Short: "Show the retention plan, preview what it will do, and verify the ledger of what it did.",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newRetentionPlanCmd(g, stdout, lookupEnv), newRetentionPreviewCmd(g, stdout, lookupEnv), newRetentionVerifyCmd(g, stdout, lookupEnv))
	for _, c := range cmd.Commands() {
		c.SilenceUsage = true
	}
	return cmd
}

// newRetentionPlanCmd prints the plan the configuration puts in force. It
// reads the configuration and the plan file itself, so it also checks a
// new plan before a server is started with it.
func newRetentionPlanCmd(g *globalFlags, stdout io.Writer, lookupEnv env) *cobra.Command {
	return &cobra.Command{
		Use:   "plan",
		Short: "Print the retention plan in force as a table (and check it).",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := g.loadConfig(lookupEnv)
			if err != nil {
				return err
			}
			p, err := retentionwire.LoadPlan(cfg)
			if err != nil {
				return err
			}
			return printPlan(stdout, p)
		},
	}
}

func printPlan(w io.Writer, p *domain.Plan) error {
	fmt.Fprintf(w, "%s, version %s\n", p.Name, p.Version)
	if p.Source != "" {
		fmt.Fprintf(w, "source: %s\n", p.Source)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tTYPES\tCHANNELS\tCASES\tCLASSES\tPERIOD\tFROM\tACTION")
	for _, r := range p.Rules {
		cases := "all"
		if r.Marked {
			cases = "marked bevaras"
		}
		var classes []string
		for _, c := range r.Classes {
			classes = append(classes, string(c))
		}
		period, from := r.Period.String(), r.From.String()
		if r.Action == domain.ActionKeep {
			period, from = "for ever", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, listOr(enumNames(r.Types, "CASE_TYPE_")), listOr(enumNames(r.Channels, "CHANNEL_")),
			cases, strings.Join(classes, ","), period, from, r.Action.String())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Archive packages: a case marked for preservation (or preserved by a rule) is written to an archive")
	fmt.Fprintln(w, "package at its first deadline under these rules, before that deadline removes anything, and again")
	fmt.Fprintln(w, "before a later removal if it received content since. A mark placed after all personal data and")
	fmt.Fprintln(w, "free text were redacted is refused: nothing is left to preserve. `kontakt retention preview` lists")
	fmt.Fprintln(w, "each marked case's package as an \"archive\" action with its date.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Data written after redaction: a case is still worked after its personal data was redacted (an")
	fmt.Fprintln(w, "open complaint is answered, a note or forwarding comment added, a value rectified). Such data is")
	fmt.Fprintln(w, "sealed under a fresh key and falls under its class's rule again, counted from when it was first")
	fmt.Fprintln(w, "written after the redaction: a period from registration counts from that write, a period from")
	fmt.Fprintln(w, "closure from the later of the closure and that write. Nothing is refused; `kontakt retention")
	fmt.Fprintln(w, "preview` shows the date each period counts from and marks the data written after redaction.")
	return nil
}

func enumNames[E interface{ String() string }](xs []E, prefix string) []string {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		out = append(out, strings.ToLower(strings.TrimPrefix(x.String(), prefix)))
	}
	return out
}

func listOr(xs []string) string {
	if len(xs) == 0 {
		return "all"
	}
	return strings.Join(xs, ",")
}

// newRetentionPreviewCmd asks a running server what the plan will do in
// the coming days; nothing is changed.
func newRetentionPreviewCmd(g *globalFlags, stdout io.Writer, lookupEnv env) *cobra.Command {
	var (
		conn  connFlags
		days  int
		cases bool
	)
	cmd := &cobra.Command{
		Use:   "preview",
		Short: "List what the plan will archive, redact or delete in the next days (counts per type, then the cases); changes nothing.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if days < 0 || days > 3660 {
				return usageError{fmt.Errorf("--days: want 0..3660, not %d", days)}
			}
			sc, closeFn, err := dialServer(cmd.Context(), g, lookupEnv, conn, auth.RoleSupervisor)
			if err != nil {
				return err
			}
			defer closeFn()
			ctx, cancel := context.WithTimeout(sc.withToken(cmd.Context()), statsTimeout)
			defer cancel()
			resp, err := retentionv1.NewRetentionServiceClient(sc.conn).Preview(ctx, &retentionv1.PreviewRequest{Days: int32(days)})
			if err != nil {
				st := status.Convert(err)
				return fmt.Errorf("preview %s: %s: %s", sc.addr, st.Code(), oneLine(st.Message()))
			}
			return printPreview(stdout, days, resp.GetItems(), cases)
		},
	}
	conn.register(cmd)
	cmd.Flags().IntVar(&days, "days", 30, "how many days ahead to look")
	cmd.Flags().BoolVar(&cases, "cases", true, "list the cases after the counts")
	return cmd
}

func printPreview(w io.Writer, days int, items []*retentionv1.DueItem, withCases bool) error {
	type key struct{ typ, action string }
	counts := map[key]int{}
	held := 0
	for _, it := range items {
		counts[key{shortType(it.GetCaseType()), shortAction(it.GetAction())}]++
		if it.GetOnHold() {
			held++
		}
	}
	fmt.Fprintf(w, "Due within %d days: %d actions (%d held back by holds)\n\n", days, len(items), held)
	keys := make([]key, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int { return strings.Compare(a.typ+a.action, b.typ+b.action) })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tACTION\tCASES")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", k.typ, k.action, counts[k])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n := rewrittenCount(items); n > 0 {
		fmt.Fprintf(w, "\n%d of them for data written after an earlier redaction of its class, counted from when it was written.\n", n)
	}
	if !withCases || len(items) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DUE\tCASE\tTYPE\tACTION\tCLASSES\tRULE\tCOUNTED FROM\tHOLD")
	for _, it := range items {
		var classes []string
		for _, c := range it.GetDataClasses() {
			classes = append(classes, strings.ToLower(strings.TrimPrefix(c.String(), "DATA_CLASS_")))
		}
		if len(classes) == 0 {
			classes = []string{"case"}
		}
		hold := ""
		if it.GetOnHold() {
			hold = "on hold"
		}
		from := "-"
		if it.GetCountedFrom() != nil {
			from = it.GetCountedFrom().AsTime().Format(time.DateOnly)
		}
		if it.GetWrittenAfterRedaction() {
			from += " (written after redaction)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", it.GetDueAt().AsTime().Format(time.DateOnly), it.GetCaseNumber(), shortType(it.GetCaseType()),
			shortAction(it.GetAction()), strings.Join(classes, ","), it.GetRule(), from, hold)
	}
	return tw.Flush()
}

// rewrittenCount counts the items for data written after an earlier
// redaction of its classes.
func rewrittenCount(items []*retentionv1.DueItem) int {
	n := 0
	for _, it := range items {
		if it.GetWrittenAfterRedaction() {
			n++
		}
	}
	return n
}

func shortType(t interface{ String() string }) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "CASE_TYPE_"))
}

func shortAction(a retentionv1.Action) string {
	return strings.ToLower(strings.TrimPrefix(a.String(), "ACTION_"))
}

// newRetentionVerifyCmd fetches every receipt of the ledger from a
// running server and checks the hash chain here, in the command, so the
// check does not rest on the server's word.
func newRetentionVerifyCmd(g *globalFlags, stdout io.Writer, lookupEnv env) *cobra.Command {
	var conn connFlags
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the hash chain of the retention ledger's receipts.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sc, closeFn, err := dialServer(cmd.Context(), g, lookupEnv, conn, auth.RoleDPO)
			if err != nil {
				return err
			}
			defer closeFn()
			ctx, cancel := context.WithTimeout(sc.withToken(cmd.Context()), 30*time.Minute)
			defer cancel()
			stream, err := retentionv1.NewRetentionServiceClient(sc.conn).ListReceipts(ctx, &retentionv1.ListReceiptsRequest{})
			if err != nil {
				st := status.Convert(err)
				return fmt.Errorf("receipts from %s: %s: %s", sc.addr, st.Code(), oneLine(st.Message()))
			}
			v := receipt.NewVerifier()
			kinds := map[string]int{}
			for {
				resp, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					st := status.Convert(err)
					return fmt.Errorf("receipts from %s: %s: %s", sc.addr, st.Code(), oneLine(st.Message()))
				}
				r := retentionports.ReceiptFromProto(resp.GetReceipt())
				if err := v.Add(r); err != nil {
					return fmt.Errorf("ledger does NOT verify: %w", err)
				}
				kinds[r.Kind]++
			}
			fmt.Fprintf(stdout, "ledger verified: %d receipts (%d redaction, %d deletion, %d archive), chain head %s\n",
				v.Count(), kinds[receipt.KindRedaction], kinds[receipt.KindDeletion], kinds[receipt.KindArchive], v.Head())
			return nil
		},
	}
	conn.register(cmd)
	return cmd
}
