package e2e

// Helpers for the retention tests: a binary started with a fast sweeper
// and a development clock offset, the retention ledger as a client sees
// it, a sealer of the test's own built from the data directory's master
// key (to show that the store's ciphertexts no longer open), statistics
// aggregates to compare before and after, a scan of the data directory
// for personal data in plain text, and an archive package checked with
// nothing but archive/zip and crypto/sha256.

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// Names the retention tests look for, as ARCHITECTURE.md, the ledger and
// the event store document them.
const (
	retCaseAnsweredType = "kontakt.case.v1.CaseAnswered"
	retCaseArchivedType = "kontakt.case.v1.CaseArchived"
	retTombstoneType    = "$stream-deleted"
	retStatsStream      = "KONTAKT_STATS"
	retKindRedaction    = "redaction"
	retKindDeletion     = "deletion"
	retKindArchive      = "archive"
	retDay              = 24 * time.Hour
)

// retPersonalClasses are the ledger's names of the five personal data
// classes (pkg/seal.Class).
var retPersonalClasses = []string{"answer", "attachments", "contact", "freetext", "identity"}

// retEnv is a started binary with the routing queues, a reachable
// embedded NATS, a fast retention sweeper and, from the second start on,
// a development clock offset.
type retEnv struct {
	*routingEnv
	rt    retentionv1.RetentionServiceClient
	stats statisticsv1.StatisticsServiceClient
}

// retConfig is the retention part of the configuration: the clock
// offsetDays ahead (none for 0) and the sweeper every 200 ms on day 0 but
// only once a minute later. The sweeper also runs at start, which applies
// the deadlines that passed while the binary was stopped; a sweep that
// finds a case only because the interval came round would make the test
// wait a minute, so the hold's release must wake the sweeper by itself.
func retConfig(offsetDays int) string {
	if offsetDays == 0 {
		return "retention:\n  sweep_interval: 200ms\n"
	}
	return fmt.Sprintf("retention:\n  sweep_interval: 1m\n  dev_clock_offset: %dh\n", offsetDays*24)
}

// retStart starts kontakt on dataDir (empty: a fresh one) with the
// routing queues, the embedded NATS reachable and the clock offsetDays
// ahead.
func retStart(t *testing.T, dataDir string, offsetDays int) *retEnv {
	t.Helper()
	e := startRouting(t, dataDir, retConfig(offsetDays))
	return &retEnv{routingEnv: e, rt: retentionv1.NewRetentionServiceClient(e.conns[0]), stats: statisticsv1.NewStatisticsServiceClient(e.conns[1])}
}

// receipts reads the whole retention ledger through ListReceipts.
func (e *retEnv) receipts(t *testing.T) []*retentionv1.Receipt {
	t.Helper()
	ctx, cancel := e.as(t, dina)
	defer cancel()
	stream, err := e.rt.ListReceipts(ctx, &retentionv1.ListReceiptsRequest{})
	require.NoError(t, err)
	var out []*retentionv1.Receipt
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out = append(out, resp.GetReceipt())
	}
}

// retLedger is the ledger's receipts of one case, by kind.
type retLedger map[string][]*retentionv1.Receipt

// retByCase groups receipts by case id and kind.
func retByCase(rs []*retentionv1.Receipt) map[string]retLedger {
	out := map[string]retLedger{}
	for _, r := range rs {
		if out[r.GetCaseId()] == nil {
			out[r.GetCaseId()] = retLedger{}
		}
		out[r.GetCaseId()][r.GetKind()] = append(out[r.GetCaseId()][r.GetKind()], r)
	}
	return out
}

// redactedClasses is the sorted union of the classes of a case's
// redaction receipts, with each class as often as receipts name it.
func (l retLedger) redactedClasses() []string {
	var out []string
	for _, r := range l[retKindRedaction] {
		out = append(out, r.GetClasses()...)
	}
	slices.Sort(out)
	return out
}

// fullyRedacted says the case's redaction receipts cover every personal
// class.
func (l retLedger) fullyRedacted() bool {
	got := slices.Compact(l.redactedClasses())
	return slices.Equal(got, retPersonalClasses)
}

// waitLedger polls the ledger until done accepts it.
func (e *retEnv) waitLedger(t *testing.T, timeout time.Duration, what string, done func(map[string]retLedger) bool) map[string]retLedger {
	t.Helper()
	var last map[string]retLedger
	var n int
	if !eventually(timeout, func() bool {
		rs := e.receipts(t)
		n = len(rs)
		last = retByCase(rs)
		return done(last)
	}) {
		t.Fatalf("the ledger did not show %s within %s; %d receipts: %s", what, timeout, n, retDescribe(last))
	}
	return last
}

func retDescribe(m map[string]retLedger) string {
	var b strings.Builder
	for id, l := range m {
		fmt.Fprintf(&b, "\n  %s:", id)
		for kind, rs := range l {
			for _, r := range rs {
				fmt.Fprintf(&b, " %s(%s %v)", kind, r.GetRule(), r.GetClasses())
			}
		}
	}
	return b.String()
}

// sealer builds a sealer of the test's own, as an operator with the data
// directory could: the master key file under the data directory and the
// key bucket on the embedded NATS.
func (e *retEnv) sealer(t *testing.T) *seal.Sealer {
	t.Helper()
	master, err := seal.LoadMasterKey(filepath.Join(e.k.DataDir, "master.key"), nil, false)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := seal.NewNATSKeyStore(ctx, e.js, seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	s, err := seal.NewSealer(keys, master)
	require.NoError(t, err)
	return s
}

// retSealed is one sealed value of a case as the store holds it.
type retSealed struct {
	what   string // event type and field, for messages
	caseID string
	value  *casev1.SealedPersonalData
}

// caseEvents returns the stored messages of one case subject, in order.
func (e *retEnv) caseEvents(t *testing.T, caseID string) []storedEvent {
	t.Helper()
	var out []storedEvent
	for _, ev := range e.events(t) {
		if ev.Subject == caseSubjectPrefix+caseID {
			out = append(out, ev)
		}
	}
	return out
}

// sealedValues reads a case's stream and returns every sealed value of
// its CaseRegistered and CaseAnswered events.
func (e *retEnv) sealedValues(t *testing.T, caseID string) []retSealed {
	t.Helper()
	var out []retSealed
	add := func(what string, v *casev1.SealedPersonalData) {
		if v != nil {
			out = append(out, retSealed{what: what, caseID: caseID, value: v})
		}
	}
	registered := 0
	for _, ev := range e.caseEvents(t, caseID) {
		switch ev.Type {
		case caseRegisteredType:
			registered++
			cr := decodeRegistered(t, ev)
			add("CaseRegistered.contact", cr.GetContact())
			add("CaseRegistered.identity", cr.GetIdentity())
			add("CaseRegistered.free_text", cr.GetFreeText())
			add("CaseRegistered.attachment_names", cr.GetAttachmentNames())
		case retCaseAnsweredType:
			var ca casev1.CaseAnswered
			require.NoError(t, proto.Unmarshal(ev.Data, &ca))
			add("CaseAnswered.answer", ca.GetAnswer())
		}
	}
	require.Equal(t, 1, registered, "case %s: CaseRegistered events in the store", caseID)
	return out
}

// retOpen opens a sealed value with s.
func retOpen(s *seal.Sealer, v retSealed) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Open(ctx, v.caseID, v.value)
}

// statsQuery asks for the aggregates of the registration window
// [from, to), grouped by every dimension and by day, as the analyst.
func (e *retEnv) statsQuery(t *testing.T, from, to time.Time) *statisticsv1.QueryResponse {
	t.Helper()
	ctx, cancel := e.as(t, alva)
	defer cancel()
	resp, err := e.stats.Query(ctx, &statisticsv1.QueryRequest{
		From: timestamppb.New(from), To: timestamppb.New(to),
		GroupBy: []statisticsv1.Dimension{
			statisticsv1.Dimension_DIMENSION_TYPE, statisticsv1.Dimension_DIMENSION_CHANNEL, statisticsv1.Dimension_DIMENSION_CATEGORY,
			statisticsv1.Dimension_DIMENSION_QUEUE, statisticsv1.Dimension_DIMENSION_DEPARTMENT,
		},
		Granularity: statisticsv1.Granularity_GRANULARITY_DAY,
	})
	require.NoError(t, err)
	rows := resp.GetRows()
	slices.SortFunc(rows, func(a, b *statisticsv1.Row) int {
		if c := a.GetBucketStart().AsTime().Compare(b.GetBucketStart().AsTime()); c != 0 {
			return c
		}
		return strings.Compare(strings.Join(a.GetKeys(), "\x00"), strings.Join(b.GetKeys(), "\x00"))
	})
	return resp
}

// retStatsTotals sums the counts and first-contact resolutions of a
// response and counts the rows that have a time to close.
func retStatsTotals(r *statisticsv1.QueryResponse) (count, fcr, withClose int64) {
	for _, row := range r.GetRows() {
		count += row.GetCount()
		fcr += row.GetFirstContactResolved()
		if row.GetMedianTimeToClose() != nil {
			withClose++
		}
	}
	return count, fcr, withClose
}

// retStatsRecord is one version of a statistics record on KONTAKT_STATS.
type retStatsRecord struct {
	seq uint64
	rec *statisticsv1.StatisticsRecord
}

// statsRecords reads every message of KONTAKT_STATS (protojson records)
// through the embedded server, as an analyst's tool would.
func (e *retEnv) statsRecords(t *testing.T) []retStatsRecord {
	t.Helper()
	var out []retStatsRecord
	for _, m := range streamMessages(t, e.js, retStatsStream) {
		var rec statisticsv1.StatisticsRecord
		require.NoError(t, protojson.Unmarshal(m.Data, &rec), "record %d: %s", m.Sequence, m.Data)
		out = append(out, retStatsRecord{seq: m.Sequence, rec: &rec})
	}
	return out
}

// casesLastSeq is the last sequence of KONTAKT_CASES, the log position
// every later event comes after.
func (e *retEnv) casesLastSeq(t *testing.T) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, casesStream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	return info.State.LastSeq
}

// retScanDir reads every regular file under dir, except those under skip,
// and returns for each needle the files that contain it, and the files
// read.
func retScanDir(t *testing.T, dir, skip string, needles []string) (map[string][]string, []string) {
	t.Helper()
	found := map[string][]string{}
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && skip != "" && path == skip {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil // a temporary file of the running server
		}
		if err != nil {
			return err
		}
		files = append(files, path)
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found[n] = append(found[n], path)
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, files, "no files under %s", dir)
	return found, files
}

// retManifest is an archive package's manifest.json.
type retManifest struct {
	Format     string    `json:"format"`
	CaseID     string    `json:"case_id"`
	CaseNumber string    `json:"case_number"`
	CreatedAt  time.Time `json:"created_at"`
	Entries    []struct {
		Path   string `json:"path"`
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"entries"`
}

// retReadArchive opens an archive package with archive/zip and checks it
// against its manifest on the test's own terms: manifest.json is the last
// entry and lists every other entry, in order, with its size and SHA-256.
// It returns the manifest, the entries' contents and the hex SHA-256 of
// the whole file (what the archive receipt records).
func retReadArchive(t *testing.T, path string) (retManifest, map[string][]byte, string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	sum := sha256.Sum256(raw)
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	require.NoError(t, err, "%s is not a ZIP file", path)
	contents := map[string][]byte{}
	var names []string
	for _, f := range zr.File {
		rc, err := f.Open()
		require.NoError(t, err)
		b, err := io.ReadAll(rc)
		require.NoError(t, err, "entry %s", f.Name)
		require.NoError(t, rc.Close())
		_, dup := contents[f.Name]
		require.False(t, dup, "entry %s appears twice", f.Name)
		contents[f.Name] = b
		names = append(names, f.Name)
	}
	require.NotEmpty(t, names)
	require.Equal(t, "manifest.json", names[len(names)-1], "the manifest is the last entry")
	var m retManifest
	require.NoError(t, json.Unmarshal(contents["manifest.json"], &m), "manifest.json: %s", contents["manifest.json"])
	require.Len(t, m.Entries, len(names)-1, "the manifest lists every other entry")
	for i, ent := range m.Entries {
		require.Equal(t, names[i], ent.Path, "manifest entry %d", i)
		data := contents[ent.Path]
		require.Equal(t, ent.Size, int64(len(data)), "size of %s", ent.Path)
		h := sha256.Sum256(data)
		require.Equal(t, ent.SHA256, hex.EncodeToString(h[:]), "SHA-256 of %s", ent.Path)
	}
	return m, contents, hex.EncodeToString(sum[:])
}

// retFields returns the field paths of a status's BadRequest details.
func retFields(err error) []string {
	var out []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, fv := range br.GetFieldViolations() {
				out = append(out, fv.GetField())
			}
		}
	}
	return out
}

// retUUID returns a random version-4 UUID, an id no case or hold has.
func retUUID(t *testing.T) string {
	t.Helper()
	h := randHex(t, 16)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-8" + h[17:20] + "-" + h[20:]
}
