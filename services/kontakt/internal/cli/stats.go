package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	_ "time/tzdata" // Europe/Stockholm on hosts without zone data

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/auth"
	"github.com/kontakt-se/kontakt/pkg/config"
	"github.com/kontakt-se/kontakt/services/kontakt/internal/report"
	"github.com/kontakt-se/kontakt/services/routing/adapters/readmodel"
)

// statsTimeout bounds every call to the server, so a hung server does not
// hang a cron job.
const statsTimeout = 2 * time.Minute

// connFlags are the flags of the commands that call a running server.
type connFlags struct {
	addr, token string
}

func (c *connFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.addr, "addr", "", "server address host:port (default: the configuration's listen address)")
	cmd.Flags().StringVar(&c.token, "token", "", "bearer token (default: KONTAKT_TOKEN; in development mode one is minted from the dev key)")
}

func newStatsCmd(g *globalFlags, stdout io.Writer, lookupEnv env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Export anonymised statistics from a running server as CSV or a monthly HTML report.",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newStatsExportCmd(g, stdout, lookupEnv), newStatsReportCmd(g, stdout, lookupEnv))
	for _, c := range cmd.Commands() {
		c.SilenceUsage = true
	}
	return cmd
}

func newStatsExportCmd(g *globalFlags, stdout io.Writer, lookupEnv env) *cobra.Command {
	var (
		conn           connFlags
		from, to, gran string
		format, out    string
		groupBy        []string
		publishable    bool
	)
	cmd := &cobra.Command{
		Use:   "export --from YYYY-MM-DD --to YYYY-MM-DD [--group-by type,channel] [--granularity day|week|month] [--publishable] [--out FILE]",
		Short: "Export statistics rows as CSV.",
		Long: "Export calls StatisticsService/Query and writes one CSV row per group and time bucket. " +
			"Dates are days in Europe/Stockholm and --to is exclusive. Without --granularity the whole " +
			"range is one bucket. Suppressed cells (--publishable) have an empty count.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			loc, err := time.LoadLocation(report.TimeZone)
			if err != nil {
				return fmt.Errorf("stats export: %w", err)
			}
			start, end, err := parseRange(loc, from, to)
			if err != nil {
				return usageError{fmt.Errorf("stats export: %w", err)}
			}
			dims, names, err := report.ParseDimensions(splitList(groupBy))
			if err != nil {
				return usageError{fmt.Errorf("stats export: --group-by: %w", err)}
			}
			g8y, err := parseGranularity(gran)
			if err != nil {
				return usageError{fmt.Errorf("stats export: --granularity: %w", err)}
			}
			if format != "csv" {
				return usageError{fmt.Errorf("stats export: --format: unsupported format %q (known: csv)", format)}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			client, closeConn, err := dialStats(ctx, g, lookupEnv, conn)
			if err != nil {
				return fmt.Errorf("stats export: %w", err)
			}
			defer closeConn()
			rows, err := client.query(ctx, &statisticsv1.QueryRequest{
				From: timestamppb.New(start), To: timestamppb.New(end),
				GroupBy: dims, Granularity: g8y, Publishable: publishable,
			})
			if err != nil {
				return fmt.Errorf("stats export: %w", err)
			}
			return writeOut(out, stdout, func(w io.Writer) error { return report.WriteCSV(w, names, rows, loc) })
		},
	}
	conn.register(cmd)
	cmd.Flags().StringVar(&from, "from", "", "first day, YYYY-MM-DD (Europe/Stockholm)")
	cmd.Flags().StringVar(&to, "to", "", "day after the last, YYYY-MM-DD (exclusive)")
	cmd.Flags().StringSliceVar(&groupBy, "group-by", nil, "dimensions: "+strings.Join(report.DimensionNames(), ", "))
	cmd.Flags().StringVar(&gran, "granularity", "", "time bucket: day, week or month (default: the whole range)")
	cmd.Flags().BoolVar(&publishable, "publishable", false, "suppress cells with fewer than k cases")
	cmd.Flags().StringVar(&format, "format", "csv", "output format: csv")
	cmd.Flags().StringVar(&out, "out", "", "output file (default: standard output)")
	return cmd
}

func newStatsReportCmd(g *globalFlags, stdout io.Writer, lookupEnv env) *cobra.Command {
	var (
		conn       connFlags
		month, out string
	)
	cmd := &cobra.Command{
		Use:   "report --month YYYY-MM --out report.html",
		Short: "Write a monthly HTML report with charts of publishable figures.",
		Long: "Report writes one self-contained HTML file (charts embedded as images) and, next to it, " +
			"each chart as report-<name>.png. All figures are publishable: groups with fewer than k " +
			"cases are shown as \"<5\".",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			loc, err := time.LoadLocation(report.TimeZone)
			if err != nil {
				return fmt.Errorf("stats report: %w", err)
			}
			if month == "" {
				return usageError{errors.New("stats report: --month is required")}
			}
			start, err := time.ParseInLocation("2006-01", month, loc)
			if err != nil {
				return usageError{fmt.Errorf("stats report: --month: want YYYY-MM, not %q", month)}
			}
			if out == "" {
				return usageError{errors.New("stats report: --out is required")}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			client, closeConn, err := dialStats(ctx, g, lookupEnv, conn)
			if err != nil {
				return fmt.Errorf("stats report: %w", err)
			}
			defer closeConn()
			now := time.Now()
			// The answer times are routing's, the due times agents see.
			m := &report.Month{Start: start, End: start.AddDate(0, 1, 0), Loc: loc, Now: now, AnswerTime: readmodel.DefaultSLA()}
			for _, q := range m.Queries() {
				rows, err := client.query(ctx, q.Request)
				if err != nil {
					return fmt.Errorf("stats report: %w", err)
				}
				*q.Into = rows
			}
			if m.Records, err = client.records(ctx); err != nil {
				return fmt.Errorf("stats report: %w", err)
			}
			charts, err := m.Charts()
			if err != nil {
				return fmt.Errorf("stats report: %w", err)
			}
			dir := filepath.Dir(out)
			for _, c := range charts {
				name := filepath.Join(dir, "report-"+c.Name+".png")
				if err := writeFileAtomic(name, func(w io.Writer) error { _, err := w.Write(c.PNG); return err }); err != nil {
					return fmt.Errorf("stats report: %w", err)
				}
			}
			if err := writeFileAtomic(filepath.Join(dir, "report-backlog.csv"), m.WriteBacklogCSV); err != nil {
				return fmt.Errorf("stats report: %w", err)
			}
			if err := writeFileAtomic(out, func(w io.Writer) error { return report.WriteHTML(w, m, charts, now) }); err != nil {
				return fmt.Errorf("stats report: %w", err)
			}
			_, err = fmt.Fprintf(stdout, "wrote %s, %d charts (report-*.png) and the backlog per day (report-backlog.csv) in %s\n", out, len(charts), dir)
			return err
		},
	}
	conn.register(cmd)
	cmd.Flags().StringVar(&month, "month", "", "month, YYYY-MM (Europe/Stockholm)")
	cmd.Flags().StringVar(&out, "out", "", "HTML file to write; the PNG charts go next to it")
	return cmd
}

// parseRange parses --from and --to as days in loc.
func parseRange(loc *time.Location, from, to string) (time.Time, time.Time, error) {
	if from == "" {
		return time.Time{}, time.Time{}, errors.New("--from is required")
	}
	if to == "" {
		return time.Time{}, time.Time{}, errors.New("--to is required")
	}
	start, err := time.ParseInLocation(time.DateOnly, from, loc)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("--from: want YYYY-MM-DD, not %q", from)
	}
	end, err := time.ParseInLocation(time.DateOnly, to, loc)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("--to: want YYYY-MM-DD, not %q", to)
	}
	if !start.Before(end) {
		return time.Time{}, time.Time{}, fmt.Errorf("--from %s must be before --to %s (--to is exclusive)", from, to)
	}
	return start, end, nil
}

func parseGranularity(s string) (statisticsv1.Granularity, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return statisticsv1.Granularity_GRANULARITY_UNSPECIFIED, nil
	case "day":
		return statisticsv1.Granularity_GRANULARITY_DAY, nil
	case "week":
		return statisticsv1.Granularity_GRANULARITY_WEEK, nil
	case "month":
		return statisticsv1.Granularity_GRANULARITY_MONTH, nil
	}
	return 0, fmt.Errorf("want day, week or month, not %q", s)
}

// splitList drops empty items, so "--group-by ”" means no grouping.
func splitList(items []string) []string {
	out := make([]string, 0, len(items))
	for _, s := range items {
		if strings.TrimSpace(s) != "" {
			out = append(out, s)
		}
	}
	return out
}

// statsClient calls StatisticsService with a bearer token.
type statsClient struct {
	addr  string
	token string
	c     statisticsv1.StatisticsServiceClient
}

func (s *statsClient) query(ctx context.Context, req *statisticsv1.QueryRequest) ([]*statisticsv1.Row, error) {
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.token)
	resp, err := s.c.Query(ctx, req)
	if err != nil {
		st := status.Convert(err)
		return nil, fmt.Errorf("query %s: %s: %s", s.addr, st.Code(), oneLine(st.Message()))
	}
	return resp.GetRows(), nil
}

// records reads every statistics record as it is now, the newest
// version of each (StreamRecords up to the end of the stream).
func (s *statsClient) records(ctx context.Context) ([]*statisticsv1.StatisticsRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.token)
	st, err := s.c.StreamRecords(ctx, &statisticsv1.StreamRecordsRequest{StopAtEnd: true})
	newest := map[string]*statisticsv1.StatisticsRecord{}
	for err == nil {
		var resp *statisticsv1.StreamRecordsResponse
		if resp, err = st.Recv(); err == nil {
			r := resp.GetRecord()
			if old := newest[r.GetStatisticsId()]; old == nil || old.GetVersion() < r.GetVersion() {
				newest[r.GetStatisticsId()] = r
			}
		}
	}
	if !errors.Is(err, io.EOF) {
		st := status.Convert(err)
		return nil, fmt.Errorf("records %s: %s: %s", s.addr, st.Code(), oneLine(st.Message()))
	}
	out := make([]*statisticsv1.StatisticsRecord, 0, len(newest))
	for _, r := range newest {
		out = append(out, r)
	}
	return out, nil
}

// dialStats connects to a running server's statistics service.
func dialStats(ctx context.Context, g *globalFlags, lookupEnv env, f connFlags) (*statsClient, func(), error) {
	sc, closeFn, err := dialServer(ctx, g, lookupEnv, f, auth.RoleAnalyst)
	if err != nil {
		return nil, nil, err
	}
	return &statsClient{addr: sc.addr, token: sc.token, c: statisticsv1.NewStatisticsServiceClient(sc.conn)}, closeFn, nil
}

// serverConn is a connection to a running server with the token to send.
type serverConn struct {
	addr, token string
	conn        *grpc.ClientConn
}

// withToken adds the bearer token to a call's context.
func (s *serverConn) withToken(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.token)
}

// dialServer resolves the address and token and connects. Loopback is
// dialled without TLS (the single binary listens in plain text there);
// any other host gets TLS, so a token never crosses a network in clear.
// In development mode a token with role is minted from the dev key.
func dialServer(_ context.Context, g *globalFlags, lookupEnv env, f connFlags, role auth.Role) (*serverConn, func(), error) {
	addr, token := f.addr, f.token
	if token == "" {
		token, _ = lookupEnv("KONTAKT_TOKEN")
	}
	var cfg config.Config
	if addr == "" || token == "" {
		var err error
		if cfg, err = g.loadConfig(lookupEnv); err != nil {
			return nil, nil, err
		}
	}
	if addr == "" {
		addr = dialAddr(cfg.Listen)
	}
	if token == "" {
		if cfg.Mode != config.Development {
			return nil, nil, usageError{errors.New("no token: pass --token or set KONTAKT_TOKEN (only development mode mints one)")}
		}
		key, err := loadDevKey(cfg)
		if err != nil {
			return nil, nil, err
		}
		if token, err = key.Mint("kontakt-cli", []auth.Role{role}, nil, "", time.Hour, time.Now()); err != nil {
			return nil, nil, err
		}
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("--addr: want host:port, not %q", addr)}
	}
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	if isLoopback(host) {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	return &serverConn{addr: addr, token: token, conn: conn}, func() { _ = conn.Close() }, nil
}

// dialAddr turns a listen address into one to dial: a wildcard host
// (":8080", "0.0.0.0:8080", "[::]:8080") is reached on loopback.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return listen
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// writeOut writes to the file path, or to stdout when path is empty.
func writeOut(path string, stdout io.Writer, write func(io.Writer) error) error {
	if path == "" {
		return write(stdout)
	}
	return writeFileAtomic(path, write)
}

// writeFileAtomic writes through a temporary file in the same directory
// and renames it, so a failed run leaves no half-written file.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	// A report goes where it is asked to, parent directories included.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return writeFileAtomicMode(path, 0o644, write)
}

// writeFileAtomicMode is writeFileAtomic into an existing directory with
// the file's mode chosen. The temporary file is created 0600
// (os.CreateTemp), so the content is never readable by others before the
// mode is set.
func writeFileAtomicMode(path string, mode os.FileMode, write func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err = write(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
