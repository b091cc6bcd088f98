package receipt_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/receipt"
)

// knownAnswer is the worked example of ARCHITECTURE.md (Retention, "The
// ledger"): a first receipt of a ledger, its canonical bytes and its hash.
// The hash was computed with sha256sum from the bytes as the document
// prints them, not by this package; if this test fails, the encoding
// changed and every stored receipt would stop verifying.
var knownAnswer = struct {
	receipt   receipt.Receipt
	canonical string
	hash      string
	// stored is the receipt, hashed, as the ledger's stream stores it.
	stored string
}{
	receipt: receipt.Receipt{
		Kind:        receipt.KindRedaction,
		Key:         "3f2c1a9e-0b7d-4c55-9a1e-6d2b8f4c7e10.redaction.4",
		CaseID:      "3f2c1a9e-0b7d-4c55-9a1e-6d2b8f4c7e10",
		CaseNumber:  "KC-2026-000123",
		CaseType:    "fraga",
		Channel:     "email",
		PlanName:    "Mölndal stad, Kontaktcenter",
		PlanVersion: "2021.1",
		Rule:        "personuppgifter",
		Reason:      "retention",
		Classes:     []string{"contact", "identity"},
		// 10:00:00.5 in Sweden's summer time: the encoding uses UTC.
		At:   time.Date(2026, 6, 1, 10, 0, 0, 500_000_000, time.FixedZone("CEST", 2*3600)),
		Prev: receipt.GenesisPrev,
	},
	canonical: "kontakt-retention-ledger/1\n" +
		"prev 64:0000000000000000000000000000000000000000000000000000000000000000\n" +
		"kind 9:redaction\n" +
		"key 48:3f2c1a9e-0b7d-4c55-9a1e-6d2b8f4c7e10.redaction.4\n" +
		"case_id 36:3f2c1a9e-0b7d-4c55-9a1e-6d2b8f4c7e10\n" +
		"case_number 14:KC-2026-000123\n" +
		"case_type 5:fraga\n" +
		"channel 5:email\n" +
		"plan_name 28:Mölndal stad, Kontaktcenter\n" + // 28 bytes: ö is two
		"plan_version 6:2021.1\n" +
		"rule 15:personuppgifter\n" +
		"reason 9:retention\n" +
		"classes 2\n" +
		"class 7:contact\n" +
		"class 8:identity\n" +
		"at 22:2026-06-01T08:00:00.5Z\n" +
		"archive_sha256 0:\n",
	hash:   "93cedcf60b53a5bafef403f1f4d4f1623dd6f75fa4efb0e51f0ff168797ca346",
	stored: `{"kind":"redaction","key":"3f2c1a9e-0b7d-4c55-9a1e-6d2b8f4c7e10.redaction.4","case_id":"3f2c1a9e-0b7d-4c55-9a1e-6d2b8f4c7e10","case_number":"KC-2026-000123","case_type":"fraga","channel":"email","plan_name":"Mölndal stad, Kontaktcenter","plan_version":"2021.1","rule":"personuppgifter","reason":"retention","classes":["contact","identity"],"at":"2026-06-01T08:00:00.5Z","prev":"0000000000000000000000000000000000000000000000000000000000000000","hash":"93cedcf60b53a5bafef403f1f4d4f1623dd6f75fa4efb0e51f0ff168797ca346"}`,
}

func TestKnownAnswer(t *testing.T) {
	r := knownAnswer.receipt
	require.Equal(t, knownAnswer.canonical, string(receipt.Canonical(r)))
	require.Equal(t, knownAnswer.hash, receipt.ComputeHash(r))

	r.Hash = knownAnswer.hash
	stored, err := receipt.Normalise(r)
	require.NoError(t, err)
	stored.Prev, stored.Hash = r.Prev, r.Hash
	data, err := json.Marshal(stored)
	require.NoError(t, err)
	require.JSONEq(t, knownAnswer.stored, string(data))
	var back receipt.Receipt
	require.NoError(t, json.Unmarshal([]byte(knownAnswer.stored), &back))
	require.Equal(t, knownAnswer.hash, receipt.ComputeHash(back), "the stored form hashes to its hash")

	v := receipt.NewVerifier()
	require.NoError(t, v.Add(r), "the example is a valid first receipt")
	require.Equal(t, knownAnswer.hash, v.Head())
}

// chain returns n receipts chained from the genesis, as a ledger stores
// them (Seq 1..n).
func chain(n int) []receipt.Receipt {
	out := make([]receipt.Receipt, n)
	prev := receipt.GenesisPrev
	for i := range out {
		r := knownAnswer.receipt
		r.Kind, r.Key, r.CaseID = receipt.KindDeletion, fmt.Sprintf("c%d.deletion", i), fmt.Sprintf("c%d", i)
		r.Classes = []string{"contact", "description"}
		r.At = r.At.Add(time.Duration(i) * time.Minute)
		r.Seq, r.Prev = uint64(i+1), prev
		r.Hash = receipt.ComputeHash(r)
		prev = r.Hash
		out[i] = r
	}
	return out
}

// clone deep-copies receipts so that a test case cannot change another's.
func clone(rs []receipt.Receipt) []receipt.Receipt {
	out := make([]receipt.Receipt, len(rs))
	for i, r := range rs {
		r.Classes = append([]string(nil), r.Classes...)
		out[i] = r
	}
	return out
}

func TestVerifierDetectsTampering(t *testing.T) {
	good := chain(6)
	tests := []struct {
		name    string
		tamper  func([]receipt.Receipt) []receipt.Receipt
		wantSeq uint64
		wantKey string
		want    string
	}{
		{
			name: "changed reason",
			tamper: func(rs []receipt.Receipt) []receipt.Receipt {
				rs[2].Reason = "on request"
				return rs
			},
			wantSeq: 3, wantKey: "c2.deletion", want: "altered",
		},
		{
			name: "changed time",
			tamper: func(rs []receipt.Receipt) []receipt.Receipt {
				rs[3].At = rs[3].At.Add(time.Nanosecond)
				return rs
			},
			wantSeq: 4, wantKey: "c3.deletion", want: "altered",
		},
		{
			name: "class removed",
			tamper: func(rs []receipt.Receipt) []receipt.Receipt {
				rs[0].Classes = rs[0].Classes[:1]
				return rs
			},
			wantSeq: 1, wantKey: "c0.deletion", want: "altered",
		},
		{
			name: "changed and rehashed",
			tamper: func(rs []receipt.Receipt) []receipt.Receipt {
				rs[1].CaseNumber = "KC-2026-999999"
				rs[1].Hash = receipt.ComputeHash(rs[1])
				return rs
			},
			wantSeq: 3, wantKey: "c2.deletion", want: "removed, inserted or reordered",
		},
		{
			name: "receipt removed",
			tamper: func(rs []receipt.Receipt) []receipt.Receipt {
				return append(rs[:3], rs[4:]...)
			},
			wantSeq: 5, wantKey: "c4.deletion", want: "removed, inserted or reordered",
		},
		{
			name: "first receipt removed",
			tamper: func(rs []receipt.Receipt) []receipt.Receipt {
				return rs[1:]
			},
			wantSeq: 2, wantKey: "c1.deletion", want: "removed, inserted or reordered",
		},
		{
			name: "receipts reordered",
			tamper: func(rs []receipt.Receipt) []receipt.Receipt {
				rs[2], rs[3] = rs[3], rs[2]
				return rs
			},
			wantSeq: 4, wantKey: "c3.deletion", want: "removed, inserted or reordered",
		},
		{
			name: "sequence numbers reordered",
			tamper: func(rs []receipt.Receipt) []receipt.Receipt {
				rs[4].Seq = 2
				return rs
			},
			wantSeq: 2, wantKey: "c4.deletion", want: "out of order",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := tc.tamper(clone(good))
			v := receipt.NewVerifier()
			var err error
			for _, r := range rs {
				if err = v.Add(r); err != nil {
					break
				}
			}
			require.ErrorIs(t, err, receipt.ErrChainBroken)
			require.ErrorContains(t, err, fmt.Sprintf("seq %d key %q", tc.wantSeq, tc.wantKey))
			require.ErrorContains(t, err, tc.want)
			require.ErrorIs(t, v.Add(rs[len(rs)-1]), receipt.ErrChainBroken, "a broken verifier stays broken")
		})
	}

	v := receipt.NewVerifier()
	for _, r := range good {
		require.NoError(t, v.Add(r))
	}
	require.Equal(t, len(good), v.Count())
	require.Equal(t, good[len(good)-1].Hash, v.Head())
}

func TestComputeHashCoversEveryField(t *testing.T) {
	base := knownAnswer.receipt
	base.Key, base.Kind, base.ArchiveSHA256 = "c1.archive", receipt.KindArchive, strings.Repeat("0f", 32)
	base.Classes = []string{"contact", "description"}
	tests := []struct {
		name   string
		mutate func(*receipt.Receipt)
	}{
		{"prev", func(r *receipt.Receipt) { r.Prev = strings.Repeat("1", 64) }},
		{"kind", func(r *receipt.Receipt) { r.Kind = receipt.KindDeletion }},
		{"key", func(r *receipt.Receipt) { r.Key = "c1.archive2" }},
		{"case id", func(r *receipt.Receipt) { r.CaseID = "c2" }},
		{"case number", func(r *receipt.Receipt) { r.CaseNumber = "x" }},
		{"case type", func(r *receipt.Receipt) { r.CaseType = "x" }},
		{"channel", func(r *receipt.Receipt) { r.Channel = "x" }},
		{"plan name", func(r *receipt.Receipt) { r.PlanName = "x" }},
		{"plan version", func(r *receipt.Receipt) { r.PlanVersion = "x" }},
		{"rule", func(r *receipt.Receipt) { r.Rule = "x" }},
		{"reason", func(r *receipt.Receipt) { r.Reason = "x" }},
		{"classes order", func(r *receipt.Receipt) { r.Classes = []string{"description", "contact"} }},
		{"classes joined", func(r *receipt.Receipt) { r.Classes = []string{"contact\nclass 11:description"} }},
		{"at", func(r *receipt.Receipt) { r.At = r.At.Add(time.Nanosecond) }},
		{"archive sha256", func(r *receipt.Receipt) { r.ArchiveSHA256 = strings.Repeat("f0", 32) }},
		{"value moved between fields", func(r *receipt.Receipt) { r.CaseType, r.Channel = r.CaseType+r.Channel, "" }},
	}
	want := receipt.ComputeHash(base)
	require.Len(t, want, 64)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := base
			r.Classes = append([]string(nil), base.Classes...)
			tc.mutate(&r)
			require.NotEqual(t, want, receipt.ComputeHash(r))
		})
	}

	same := base
	same.Seq, same.Hash = 99, "whatever"
	same.At = base.At.UTC()
	require.Equal(t, want, receipt.ComputeHash(same), "Seq, Hash and the time zone are not covered")
}

func TestNormalise(t *testing.T) {
	ok := knownAnswer.receipt
	ok.Seq, ok.Hash = 7, knownAnswer.hash
	got, err := receipt.Normalise(ok)
	require.NoError(t, err)
	require.Zero(t, got.Seq)
	require.Empty(t, got.Prev+got.Hash, "the chain fields are the store's to fill")
	require.Equal(t, time.UTC, got.At.Location())

	tests := []struct {
		name   string
		mutate func(*receipt.Receipt)
	}{
		{"unknown kind", func(r *receipt.Receipt) { r.Kind = "shredded" }},
		{"key with a space", func(r *receipt.Receipt) { r.Key = "a b" }},
		{"key too long", func(r *receipt.Receipt) { r.Key = strings.Repeat("a", receipt.MaxKeyLen+1) }},
		{"empty key token", func(r *receipt.Receipt) { r.Key = "a..b" }},
		{"no case id", func(r *receipt.Receipt) { r.CaseID = "" }},
		{"no time", func(r *receipt.Receipt) { r.At = time.Time{} }},
		{"archive without its hash", func(r *receipt.Receipt) { r.Kind = receipt.KindArchive }},
		{"archive hash not hex", func(r *receipt.Receipt) { r.ArchiveSHA256 = strings.Repeat("G", 64) }},
		{"invalid UTF-8", func(r *receipt.Receipt) { r.Rule = "\xff" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := knownAnswer.receipt
			tc.mutate(&r)
			_, err := receipt.Normalise(r)
			require.ErrorIs(t, err, receipt.ErrInvalid)
		})
	}
}
