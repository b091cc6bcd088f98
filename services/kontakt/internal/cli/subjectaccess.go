package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	"github.com/kontakt-se/kontakt/pkg/auth"
	"github.com/kontakt-se/kontakt/services/kontakt/internal/extract"
	"github.com/kontakt-se/kontakt/services/kontakt/internal/report"
)

// subjectAccessTimeout bounds the extract: it opens every case of the
// person and reads each case's audit trail.
const subjectAccessTimeout = 10 * time.Minute

// extractFormats are the files subject-access can write, in the order it
// writes them.
var extractFormats = []string{"json", "html", "pdf"}

// newSubjectAccessCmd asks a running server for a person's register
// extract and writes it as files for the data-protection officer to send:
// the API's JSON and a document in Swedish (HTML, PDF). The files hold
// the person's data, so they are written for the caller alone (0600, in
// a directory made 0700), and nothing of the person is printed: only the
// paths and counts.
func newSubjectAccessCmd(g *globalFlags, stdout io.Writer, lookupEnv env) *cobra.Command {
	var (
		conn              connFlags
		pnr, email, phone string
		out, purpose      string
		formats           []string
		withoutActors     bool
	)
	cmd := &cobra.Command{
		Use:   "subject-access (--identity-number NR | --email ADDR | --phone NR) --out DIR [--format json,html,pdf]",
		Short: "Write a person's register extract (GDPR art. 15) as JSON and as a document in Swedish (HTML, PDF).",
		Long: "subject-access calls RetentionService/SubjectAccess on a running server (role dpo) and writes " +
			"extract.json (the API's answer), extract.html and extract.pdf (a document in Swedish to send to the " +
			"citizen) in DIR. The extract is recorded in the audit trail of every case it finds. The files hold " +
			"personal data: they are readable by you alone. Give the identifier as \"-\" to read it from standard " +
			"input, so it stays out of the shell's history and the process list.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, by, err := subjectKeyFlags(cmd, pnr, email, phone)
			if err != nil {
				return usageError{fmt.Errorf("subject-access: %w", err)}
			}
			if out == "" {
				return usageError{errors.New("subject-access: --out DIR is required")}
			}
			want, err := parseFormats(formats)
			if err != nil {
				return usageError{fmt.Errorf("subject-access: --format: %w", err)}
			}
			cfg, err := g.loadConfig(lookupEnv)
			if err != nil {
				return err
			}
			sc, closeFn, err := dialServer(cmd.Context(), g, lookupEnv, conn, auth.RoleDPO)
			if err != nil {
				return err
			}
			defer closeFn()
			ctx, cancel := context.WithTimeout(sc.withToken(cmd.Context()), subjectAccessTimeout)
			defer cancel()
			resp, err := retentionv1.NewRetentionServiceClient(sc.conn).SubjectAccess(ctx, &retentionv1.SubjectAccessRequest{Subject: key, Purpose: purpose})
			if err != nil {
				st := status.Convert(err)
				return fmt.Errorf("subject-access %s: %s: %s", sc.addr, st.Code(), oneLine(st.Message()))
			}

			loc, err := time.LoadLocation(report.TimeZone)
			if err != nil {
				return fmt.Errorf("subject-access: %w", err)
			}
			info := extract.Info{
				Controller: cfg.RegisterExtract.Controller, Contact: cfg.RegisterExtract.Contact, Purposes: cfg.RegisterExtract.Purposes,
				SearchedBy: by, Searched: searchedValue(key), Loc: loc, WithoutActors: withoutActors,
				Categories: map[string]string{}, Queues: map[string]extract.Queue{},
			}
			for _, c := range cfg.Categories {
				info.Categories[c.Code] = c.Title
			}
			for _, q := range cfg.Routing.Queues {
				info.Queues[q.Name] = extract.Queue{Title: q.Title, Department: q.Department}
			}
			doc := extract.Build(resp, info)
			var written []string
			for _, f := range want {
				name := filepath.Join(out, "extract."+f)
				var write func(io.Writer) error
				switch f {
				case "json":
					write = func(w io.Writer) error { return extract.WriteJSON(w, resp) }
				case "html":
					write = doc.WriteHTML
				case "pdf":
					write = func(w io.Writer) error { return doc.WritePDF(w, resp.GetGeneratedAt().AsTime()) }
				}
				if err := writePrivateFile(name, write); err != nil {
					return fmt.Errorf("subject-access: %w", err)
				}
				written = append(written, name)
			}
			reads := 0
			for _, c := range resp.GetCases() {
				reads += len(c.GetReads())
			}
			_, err = fmt.Fprintf(stdout, "wrote %s: %s, %s\n", strings.Join(written, ", "),
				count(len(resp.GetCases()), "case", "cases"), count(reads, "audit entry", "audit entries"))
			return err
		},
	}
	conn.register(cmd)
	cmd.Flags().StringVar(&pnr, "identity-number", "", "the person's personnummer or samordningsnummer (\"-\": read from standard input)")
	cmd.Flags().StringVar(&email, "email", "", "the person's e-mail address (\"-\": read from standard input)")
	cmd.Flags().StringVar(&phone, "phone", "", "the person's phone number (\"-\": read from standard input)")
	cmd.Flags().StringVar(&out, "out", "", "directory to write extract.json, extract.html and extract.pdf in (made 0700 if missing)")
	cmd.Flags().StringSliceVar(&formats, "format", extractFormats, "files to write: json, html, pdf")
	cmd.Flags().StringVar(&purpose, "purpose", "", "why, for the audit trail (default: registerutdrag (GDPR art. 15))")
	cmd.Flags().BoolVar(&withoutActors, "without-actors", false, "leave staff's user ids out of the HTML and PDF (the JSON keeps them)")
	return cmd
}

// subjectKeyFlags builds the search key from the one identifier flag
// given, reading it from standard input when it is "-". It returns the
// key and what the document calls it.
func subjectKeyFlags(cmd *cobra.Command, pnr, email, phone string) (*retentionv1.SubjectKey, string, error) {
	set := 0
	for _, v := range []string{pnr, email, phone} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return nil, "", errors.New("give exactly one of --identity-number, --email and --phone")
	}
	read := func(v string) (string, error) {
		if v != "-" {
			return strings.TrimSpace(v), nil
		}
		line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read the identifier from standard input: %w", err)
		}
		if line = strings.TrimSpace(line); line == "" {
			return "", errors.New("standard input held no identifier")
		}
		return line, nil
	}
	switch {
	case pnr != "":
		v, err := read(pnr)
		return &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_IdentityNumber{IdentityNumber: v}}, "personnummer", err
	case email != "":
		v, err := read(email)
		return &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Email{Email: v}}, "e-postadress", err
	default:
		v, err := read(phone)
		return &retentionv1.SubjectKey{Key: &retentionv1.SubjectKey_Phone{Phone: v}}, "telefonnummer", err
	}
}

func searchedValue(k *retentionv1.SubjectKey) string {
	switch v := k.GetKey().(type) {
	case *retentionv1.SubjectKey_IdentityNumber:
		return v.IdentityNumber
	case *retentionv1.SubjectKey_Email:
		return v.Email
	case *retentionv1.SubjectKey_Phone:
		return v.Phone
	}
	return ""
}

// parseFormats checks --format against the known formats and returns
// them in the order they are written, each once.
func parseFormats(fs []string) ([]string, error) {
	var out []string
	for _, f := range splitList(fs) {
		f = strings.ToLower(strings.TrimSpace(f))
		if !slices.Contains(extractFormats, f) {
			return nil, fmt.Errorf("unknown format %q (known: %s)", f, strings.Join(extractFormats, ", "))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("give at least one of " + strings.Join(extractFormats, ", "))
	}
	slices.SortFunc(out, func(a, b string) int { return slices.Index(extractFormats, a) - slices.Index(extractFormats, b) })
	return out, nil
}

// writePrivateFile writes a file that holds personal data: readable by
// the caller alone, in a directory made for the caller alone when it is
// missing, written whole or not at all.
func writePrivateFile(path string, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return writeFileAtomicMode(path, 0o600, write)
}

// count writes n with the noun in the right number.
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
