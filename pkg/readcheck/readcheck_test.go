package readcheck

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestResultWording(t *testing.T) {
	numbers := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("KC-2026-%06d", n-i)
		}
		return out
	}
	for _, tc := range []struct {
		name           string
		got, want      map[string]int
		differ         []string
		head           uint64
		wantOK         bool
		wantLine       string
		wantDifference []string
	}{
		{
			name: "consistent", got: map[string]int{"a": 2}, want: map[string]int{"a": 2}, head: 7, wantOK: true,
			wantLine: "OK       m c: s (log position 7)",
		},
		{
			name: "behind the head", got: map[string]int{}, want: map[string]int{}, head: 9, wantOK: true,
			wantLine: "OK       m c: s (log position 7, 2 behind the log's head; serve catches up at start)",
		},
		{
			name: "a key missing on either side", got: map[string]int{"a": 1, "c": 4}, want: map[string]int{"a": 2, "b": 3}, head: 7,
			wantDifference: []string{"key a: open 1 in the read model, 2 by the log", "key b: open 0 in the read model, 3 by the log", "key c: open 4 in the read model, 0 by the log"},
		},
		{
			name: "case numbers sorted, ten named", differ: append(numbers(12), ""), head: 7,
			wantDifference: []string{"13 of 20 cases differ (KC-2026-000001, KC-2026-000002, KC-2026-000003, KC-2026-000004, KC-2026-000005, KC-2026-000006, KC-2026-000007, KC-2026-000008, KC-2026-000009, KC-2026-000010 and 2 more)"},
		},
		{
			name: "cases without a number are counted", differ: []string{""}, head: 7,
			wantDifference: []string{"1 of 20 cases differ"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New("m", "c", 7, 0)
			r.Behind = tc.head - 7
			r.Summary = "s"
			r.CompareCounts("open", tc.got, tc.want, func(k string) string { return "key " + k })
			r.Cases("differ", tc.differ, 20)
			require.Equal(t, tc.wantOK, r.OK)
			require.Equal(t, tc.wantDifference, r.Differences)
			if tc.wantLine != "" {
				require.Equal(t, tc.wantLine, r.Line())
			}
			if !tc.wantOK {
				require.Contains(t, r.Line(), "MISMATCH m c: s (log position 7): "+tc.wantDifference[0])
			}
		})
	}
}

func TestNewCountsHowFarBehind(t *testing.T) {
	require.Equal(t, uint64(3), New("m", "c", 7, 10).Behind)
	require.Equal(t, uint64(0), New("m", "c", 7, 7).Behind)
}

func TestCount(t *testing.T) {
	require.Equal(t, "1 queue", Count(1, "queue", "queues"))
	require.Equal(t, "0 queues", Count(0, "queue", "queues"))
	require.Equal(t, "4 queues", Count(4, "queue", "queues"))
}
