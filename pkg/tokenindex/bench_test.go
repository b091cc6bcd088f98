package tokenindex

import (
	"fmt"
	"os"
	"testing"
)

// BenchmarkRemoveBatch measures what removing tokens costs with the
// compaction that destroys their bytes, against the plain bbolt delete
// (same file, same transaction, no compaction) in the same run: one
// batch per iteration, at 50,000 live tokens (about 16,700 cases with an
// e-mail address, a phone number and a personnummer each). A batch is
// one case (a single erasure) or 256 cases (a projector batch of a
// sweep's redactions). The removed cases are put back, outside the timer,
// so every iteration starts from the same number of live tokens.
func BenchmarkRemoveBatch(b *testing.B) {
	const liveTokens = 50_000
	for _, cases := range []int{1, 256} {
		for _, mode := range []string{"compact", "plain-delete"} {
			b.Run(fmt.Sprintf("cases=%d/%s", cases, mode), func(b *testing.B) {
				x, path := openIndex(b)
				x.noCompact = mode == "plain-delete"
				all := people(b, x, liveTokens/3)
				owners := make([]string, 0, len(all))
				for o := range all {
					owners = append(owners, o)
				}
				next := 0
				b.ResetTimer()
				for range b.N {
					batch := make([]string, 0, cases)
					for range cases {
						batch = append(batch, owners[next%len(owners)])
						next++
					}
					if err := x.Update(func(tx *Tx) error {
						for _, o := range batch {
							if err := tx.Drop(o); err != nil {
								return err
							}
						}
						return nil
					}); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					// Put the cases back (the compaction that the removal
					// left pending is not timed either).
					if err := x.Update(func(tx *Tx) error {
						for _, o := range batch {
							if err := tx.Set(o, "", all[o]); err != nil {
								return err
							}
						}
						return nil
					}); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				b.StopTimer()
				if st, err := os.Stat(path); err == nil {
					b.ReportMetric(float64(st.Size())/(1<<20), "file-MiB")
				}
				b.ReportMetric(float64(cases*3), "tokens/batch")
			})
		}
	}
}
