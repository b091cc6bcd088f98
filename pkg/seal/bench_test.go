package seal_test

import (
	"bytes"
	"testing"

	"github.com/kontakt-se/kontakt/pkg/seal"
)

// BenchmarkSeal measures sealing and opening a 1 KiB value whose key
// already exists, against the embedded NATS server. Each iteration makes
// two key store reads (one per operation), because Sealer has no key cache.
func BenchmarkSeal(b *testing.B) {
	srv := startServer(b)
	s := newSealer(b, srv, testMaster(b, 1))
	caseID := newCaseID()
	value := bytes.Repeat([]byte("x"), 1024)
	if _, err := s.Seal(b.Context(), caseID, seal.ClassFreeText, 0, value); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	for b.Loop() {
		sealed, err := s.Seal(b.Context(), caseID, seal.ClassFreeText, 0, value)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Open(b.Context(), caseID, sealed); err != nil {
			b.Fatal(err)
		}
	}
}
