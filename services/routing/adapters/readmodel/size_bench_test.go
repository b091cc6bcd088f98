package readmodel

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	seal "github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/pkg/tokenindex"
)

// realSealed stands in for a value sealed by pkg/seal: the key id of
// generation 0 of the class, and random bytes as long as sealing a
// plaintext of n bytes makes them.
func realSealed(rng *rand.Rand, caseID string, class seal.Class, n int) *casev1.SealedPersonalData {
	keyID, err := seal.KeyID(caseID, class, 0)
	if err != nil {
		panic(err)
	}
	ct := make([]byte, n+seal.Overhead)
	for i := range ct {
		ct[i] = byte(rng.Uint32())
	}
	return &casev1.SealedPersonalData{KeyId: keyID, Ciphertext: ct}
}

// plaintextSize is the encoded size of a message, the plaintext sealing
// would encrypt.
func plaintextSize(m proto.Message) int { return proto.Size(m) }

// realisticCase is one case as intake registers it from a form: a UUID
// case id, contact details, a personnummer and a free text of typical
// size, sealed under their classes' keys; routed to a queue and, when
// worked, claimed, answered, noted and closed.
func realisticCase(rng *rand.Rand, i int, worked bool) []draft {
	id := uuid.NewString()
	at := t0().Add(time.Duration(i) * time.Second)
	contact := plaintextSize(&casev1.ContactDetails{Name: "Anna Andersson", Email: "anna.andersson@example.se", Phone: "+46701234567"})
	identity := plaintextSize(&casev1.IdentityNumber{Number: "198112189876"})
	free := plaintextSize(&casev1.FreeText{Subject: "Sophämtningen har uteblivit", Description: "Soporna har inte hämtats på två veckor i vårt område och kärlen är fulla. Kan ni skicka någon så snart som möjligt? Det börjar lukta illa."})
	out := []draft{
		ev(id, &casev1.CaseRegistered{
			CaseId: id, CaseNumber: "KC-2026-" + uuid.NewString()[:6], Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_FORM,
			Category: "avfall", RegisteredAt: ts(at), RegisteredBy: "form-client",
			Contact:  realSealed(rng, id, seal.ClassContact, contact),
			Identity: realSealed(rng, id, seal.ClassIdentity, identity),
			FreeText: realSealed(rng, id, seal.ClassFreeText, free),
		}),
		ev(id, &casev1.CaseRouted{CaseId: id, Queue: "kundtjanst", Rule: "default", RulesVersion: "1", RoutedAt: ts(at)}),
	}
	if !worked {
		return out
	}
	agent := "3b0d6c1e-agent-anna"
	answer := plaintextSize(&casev1.AnswerText{Text: "Hej! Tack för att du hör av dig. Vi har skickat en bil som hämtar soporna i morgon förmiddag. Vänliga hälsningar, kontaktcenter"})
	note := plaintextSize(&casev1.AnswerText{Text: "Ringt renhållningen, de tar det i morgon."})
	return append(out,
		ev(id, &casev1.CaseAssigned{CaseId: id, Assignee: agent, AssignedBy: agent, AssignedAt: ts(at.Add(time.Minute))}),
		ev(id, &casev1.NoteAdded{CaseId: id, NoteId: uuid.NewString(), Author: agent, Text: realSealed(rng, id, seal.ClassAnswer, note), AddedAt: ts(at.Add(2 * time.Minute))}),
		ev(id, &casev1.CaseAnswered{CaseId: id, AnsweredBy: agent, Answer: realSealed(rng, id, seal.ClassAnswer, answer), AnsweredAt: ts(at.Add(3 * time.Minute))}),
		ev(id, &casev1.CaseClosed{CaseId: id, ClosedBy: agent, Resolution: casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY, FirstContactResolution: true, ClosedAt: ts(at.Add(4 * time.Minute))}),
	)
}

// BenchmarkDiskPerCase projects 20,000 realistic cases and reports what
// the read model keeps on disk per case: the pages of the main file in
// use (the file's high-water mark less its free pages; bbolt grows the
// file in 16 MiB steps, so its length says little), each bucket's share
// of them, and the token file (pkg/tokenindex), which is compacted and
// so measured by its length. "routed" cases are registered and routed,
// as in the load test; "worked" ones are also claimed, noted,
// answered and closed. The events themselves are reported for scale.
func BenchmarkDiskPerCase(b *testing.B) {
	const n = 20_000
	for _, worked := range []bool{false, true} {
		name := "routed"
		if worked {
			name = "worked"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				rng := rand.New(rand.NewPCG(11, 11))
				s, path := openStore(b, Options{Tokenizer: &fakeTokenizer{}})
				s.db.NoSync = true
				var eventBytes int
				fill := &batcher{s: s, size: 256, applied: func(evs []eventstore.RecordedEvent) {
					for _, e := range evs {
						eventBytes += len(e.Data)
					}
				}}
				for i := range n {
					fill.add(b, realisticCase(rng, i, worked)...)
				}
				fill.flush(b)
				perCase := func(bytes int) float64 { return float64(bytes) / n / 1024 }
				require.NoError(b, s.db.View(func(tx *bolt.Tx) error {
					return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
						bs := bk.Stats()
						b.ReportMetric(perCase(bs.BranchAlloc+bs.LeafAlloc+bs.InlineBucketInuse), string(name)+"-KiB/case")
						return nil
					})
				}))
				require.NoError(b, s.Close())
				b.ReportMetric(perCase(inUse(b, path)), "main-KiB/case")
				b.ReportMetric(perCase(inUse(b, tokenindex.PathFor(path))), "tokens-KiB/case")
				b.ReportMetric(perCase(eventBytes), "event-data-KiB/case")
			}
		})
	}
}

// inUse is how many bytes of a bbolt file hold pages in use: its
// high-water mark less its free pages.
func inUse(t testing.TB, path string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		st := db.Stats()
		n = int(tx.Size()) - (st.FreePageN+st.PendingPageN)*db.Info().PageSize
		return nil
	}))
	return n
}

// BenchmarkUnrouted measures what the router's start-up and periodic
// sweep cost the read model (Store.Unrouted) with 20,000 cases stored,
// all routed but ten.
func BenchmarkUnrouted(b *testing.B) {
	const n = 20_000
	rng := rand.New(rand.NewPCG(12, 12))
	s, _ := openStore(b, Options{Tokenizer: &fakeTokenizer{}})
	s.db.NoSync = true
	fill := &batcher{s: s, size: 256}
	for i := range n {
		c := realisticCase(rng, i, false)
		if i%(n/10) == 0 {
			c = c[:1] // registered, not routed
		}
		fill.add(b, c...)
	}
	fill.flush(b)
	b.ReportAllocs()
	for b.Loop() {
		ids, err := s.Unrouted()
		require.NoError(b, err)
		require.Len(b, ids, 10)
	}
}
