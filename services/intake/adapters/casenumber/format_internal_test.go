package casenumber

import (
	"testing"
	"time"
)

// Case numbers grow past six digits without a leading zero, and parse
// accepts only the canonical form, because Open311 clients send numbers
// from the internet: a zero-padded or otherwise different spelling must
// not find a case.
func TestFormatAndParse(t *testing.T) {
	n := &Numbers{prefix: DefaultPrefix, loc: time.UTC}
	for _, tc := range []struct {
		year int
		seq  uint64
		want string
	}{
		{2026, 1, "KC-2026-000001"},
		{2026, 999999, "KC-2026-999999"},
		{2026, 1000000, "KC-2026-1000000"},
		{2027, 12345678, "KC-2027-12345678"},
	} {
		if got := n.format(tc.year, tc.seq); got != tc.want {
			t.Errorf("format(%d, %d) = %q, want %q", tc.year, tc.seq, got, tc.want)
		}
		year, seq, ok := n.parse(tc.want)
		if !ok || year != tc.year || seq != tc.seq {
			t.Errorf("parse(%q) = %d, %d, %v", tc.want, year, seq, ok)
		}
	}
	for _, bad := range []string{"KC-2026-01000000", "KC-2026-1", "KC-2026-000000", "KC-26-000001", "XX-2026-000001", "KC-2026-00000a", "KC-2026-"} {
		if _, _, ok := n.parse(bad); ok {
			t.Errorf("parse(%q) accepted a number that is not canonical", bad)
		}
	}
}
