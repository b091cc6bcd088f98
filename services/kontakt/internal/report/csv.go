// Package report turns statistics rows (StatisticsService/Query) into the
// files the admin CLI hands out: a CSV export and a monthly HTML report
// with its charts. It does no I/O beyond the writers it is given, so it is
// tested without a server.
package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"github.com/kontakt-se/kontakt/services/kontakt/internal/sv"
)

// TimeZone is where statistics days, weeks and months begin; the server
// buckets in the same zone.
const TimeZone = "Europe/Stockholm"

// SuppressBelow is the default small-cell limit k; a suppressed cell is
// shown as "<5". The server's k is configurable but rows do not carry it.
const SuppressBelow = 5

// dimensions maps the names used on the command line and in the CSV
// header to the API's dimensions, in the order help text lists them.
var dimensions = []struct {
	name string
	dim  statisticsv1.Dimension
}{
	{"type", statisticsv1.Dimension_DIMENSION_TYPE},
	{"channel", statisticsv1.Dimension_DIMENSION_CHANNEL},
	{"category", statisticsv1.Dimension_DIMENSION_CATEGORY},
	{"queue", statisticsv1.Dimension_DIMENSION_QUEUE},
	{"department", statisticsv1.Dimension_DIMENSION_DEPARTMENT},
}

// DimensionNames lists the known dimension names.
func DimensionNames() []string {
	out := make([]string, len(dimensions))
	for i, d := range dimensions {
		out[i] = d.name
	}
	return out
}

// ParseDimensions parses dimension names (case-insensitive, surrounding
// blanks ignored) and returns the API values and the normalised names.
// An unknown, empty or repeated name is an error.
func ParseDimensions(names []string) ([]statisticsv1.Dimension, []string, error) {
	dims := make([]statisticsv1.Dimension, 0, len(names))
	norm := make([]string, 0, len(names))
	seen := map[string]bool{}
next:
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if seen[n] {
			return nil, nil, fmt.Errorf("dimension %q given twice", n)
		}
		seen[n] = true
		for _, d := range dimensions {
			if d.name == n {
				dims = append(dims, d.dim)
				norm = append(norm, n)
				continue next
			}
		}
		return nil, nil, fmt.Errorf("unknown dimension %q (known: %s)", n, strings.Join(DimensionNames(), ", "))
	}
	return dims, norm, nil
}

// CSVHeader is the export's header for the given dimension names.
func CSVHeader(dims []string) []string {
	h := []string{"bucket_start"}
	h = append(h, dims...)
	return append(h, "count", "suppressed",
		"median_time_to_first_response_s", "p90_time_to_first_response_s",
		"median_time_to_close_s", "p90_time_to_close_s",
		"first_contact_resolved", "closed")
}

// WriteCSV writes rows as CSV (RFC 4180, "\n" line ends). bucket_start is
// RFC 3339 in loc; a case type or channel is its Swedish name
// ("Felanmälan", "Telefon"), as the report shows it; durations are whole
// seconds; a duration the row lacks is an empty cell. A suppressed row leaves count and first_contact_resolved
// empty rather than 0, so a sum over the column does not silently treat
// "fewer than k" as none.
func WriteCSV(w io.Writer, dims []string, rows []*statisticsv1.Row, loc *time.Location) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader(dims)); err != nil {
		return err
	}
	rec := make([]string, 0, len(dims)+8)
	for i, r := range rows {
		if len(r.GetKeys()) != len(dims) {
			return fmt.Errorf("row %d has %d keys, want %d (one per dimension)", i+1, len(r.GetKeys()), len(dims))
		}
		rec = rec[:0]
		bucket := ""
		if r.GetBucketStart() != nil {
			bucket = r.GetBucketStart().AsTime().In(loc).Format(time.RFC3339)
		}
		rec = append(rec, bucket)
		for _, k := range r.GetKeys() {
			if k != "" {
				k = sv.APIKey(k)
			}
			rec = append(rec, k)
		}
		count, fcr, closed := strconv.FormatInt(r.GetCount(), 10), strconv.FormatInt(r.GetFirstContactResolved(), 10), strconv.FormatInt(r.GetClosed(), 10)
		if r.GetSuppressed() {
			count, fcr, closed = "", "", ""
		}
		rec = append(rec, count, strconv.FormatBool(r.GetSuppressed()),
			seconds(r.GetMedianTimeToFirstResponse()), seconds(r.GetP90TimeToFirstResponse()),
			seconds(r.GetMedianTimeToClose()), seconds(r.GetP90TimeToClose()),
			fcr, closed)
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// seconds formats a duration as whole seconds (a median of a few cases
// has no meaningful fraction); "" when unset.
func seconds(d *durationpb.Duration) string {
	if d == nil {
		return ""
	}
	return strconv.FormatFloat(math.Round(d.AsDuration().Seconds()), 'f', 0, 64)
}
