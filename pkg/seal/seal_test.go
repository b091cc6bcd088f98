package seal_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

func TestSealOpenRoundTrip(t *testing.T) {
	srv := startServer(t)
	s := newSealer(t, srv, testMaster(t, 1))
	caseID := newCaseID()
	tests := []struct {
		class     seal.Class
		plaintext []byte
	}{
		{seal.ClassContact, []byte("Anna Andersson, anna@example.se, +46701234567")},
		{seal.ClassIdentity, []byte("197001011234")},
		{seal.ClassFreeText, []byte("Gatlyktan utanför Storgatan 1 är trasig.\nÅÄÖ åäö")},
		{seal.ClassAttachments, []byte("foto.jpg\x00kvitto.pdf")},
		{seal.ClassAnswer, bytes.Repeat([]byte{0xff, 0x00}, 32<<10)},
	}
	for _, tc := range tests {
		t.Run(string(tc.class), func(t *testing.T) {
			sealed, err := s.Seal(t.Context(), caseID, tc.class, 0, tc.plaintext)
			require.NoError(t, err)
			require.Equal(t, caseID+"."+string(tc.class), sealed.GetKeyId())
			require.Len(t, sealed.GetCiphertext(), len(tc.plaintext)+seal.Overhead)
			require.NotContains(t, string(sealed.GetCiphertext()), string(tc.plaintext))

			got, err := s.Open(t.Context(), caseID, sealed)
			require.NoError(t, err)
			require.Equal(t, tc.plaintext, got)
		})
	}
	t.Run("empty value", func(t *testing.T) {
		sealed, err := s.Seal(t.Context(), caseID, seal.ClassContact, 0, nil)
		require.NoError(t, err)
		got, err := s.Open(t.Context(), caseID, sealed)
		require.NoError(t, err)
		require.Empty(t, got)
	})
}

func TestSealMessageRoundTrip(t *testing.T) {
	srv := startServer(t)
	s := newSealer(t, srv, testMaster(t, 1))
	caseID := newCaseID()
	in := &casev1.ContactDetails{
		Name:          "Anna Andersson",
		Email:         "anna@example.se",
		Phone:         "+46701234567",
		PostalAddress: &casev1.PostalAddress{Street: "Storgatan 1", PostalCode: "43130", City: "Mölndal"},
	}
	sealed, err := s.SealMessage(t.Context(), caseID, seal.ClassContact, 0, in)
	require.NoError(t, err)
	require.NotContains(t, string(sealed.GetCiphertext()), "Andersson")

	var out casev1.ContactDetails
	require.NoError(t, s.OpenMessage(t.Context(), caseID, sealed, &out))
	require.True(t, proto.Equal(in, &out), "got %v", &out)

	// The sealed value survives being carried in an event.
	ev, err := proto.Marshal(&casev1.CaseRegistered{CaseId: caseID, Contact: sealed})
	require.NoError(t, err)
	var back casev1.CaseRegistered
	require.NoError(t, proto.Unmarshal(ev, &back))
	out.Reset()
	require.NoError(t, s.OpenMessage(t.Context(), caseID, back.GetContact(), &out))
	require.True(t, proto.Equal(in, &out))
}

func TestSealUsesAFreshNonceEachTime(t *testing.T) {
	srv := startServer(t)
	s := newSealer(t, srv, testMaster(t, 1))
	caseID := newCaseID()
	plaintext := []byte("samma text")
	seen := map[string]bool{}
	nonces := map[string]bool{}
	for range 20 {
		sealed, err := s.Seal(t.Context(), caseID, seal.ClassFreeText, 0, plaintext)
		require.NoError(t, err)
		ct := sealed.GetCiphertext()
		require.False(t, seen[string(ct)], "equal plaintexts gave equal ciphertexts")
		require.False(t, nonces[string(ct[:12])], "nonce reused")
		seen[string(ct)], nonces[string(ct[:12])] = true, true
	}
}

func TestOpenRejectsTamperedCiphertext(t *testing.T) {
	srv := startServer(t)
	s := newSealer(t, srv, testMaster(t, 1))
	caseID := newCaseID()
	sealed, err := s.Seal(t.Context(), caseID, seal.ClassContact, 0, []byte("anna@example.se"))
	require.NoError(t, err)
	ct := sealed.GetCiphertext()

	flip := func(i int) []byte {
		c := bytes.Clone(ct)
		c[i] ^= 0x01
		return c
	}
	tests := []struct {
		name       string
		ciphertext []byte
	}{
		{"nonce bit flipped", flip(0)},
		{"ciphertext bit flipped", flip(12)},
		{"tag bit flipped", flip(len(ct) - 1)},
		{"truncated by one byte", ct[:len(ct)-1]},
		{"byte appended", append(bytes.Clone(ct), 0)},
		{"shorter than nonce and tag", ct[:seal.Overhead-1]},
		{"empty", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Open(t.Context(), caseID, &casev1.SealedPersonalData{KeyId: sealed.GetKeyId(), Ciphertext: tc.ciphertext})
			require.ErrorIs(t, err, seal.ErrTampered)
		})
	}
	t.Run("untouched still opens", func(t *testing.T) {
		_, err := s.Open(t.Context(), caseID, sealed)
		require.NoError(t, err)
	})
}

func TestOpenRejectsBlobMovedToAnotherCaseOrClass(t *testing.T) {
	srv := startServer(t)
	s := newSealer(t, srv, testMaster(t, 1))
	caseA, caseB := newCaseID(), newCaseID()
	sealed, err := s.Seal(t.Context(), caseA, seal.ClassContact, 0, []byte("anna@example.se"))
	require.NoError(t, err)
	// Make sure the target keys exist, so that a failure is the
	// authentication check and not a missing key.
	for _, c := range []struct {
		caseID string
		class  seal.Class
	}{{caseB, seal.ClassContact}, {caseA, seal.ClassFreeText}} {
		_, err := s.Seal(t.Context(), c.caseID, c.class, 0, []byte("x"))
		require.NoError(t, err)
	}

	tests := []struct {
		name    string
		caseID  string
		keyID   string
		wantErr error
	}{
		{"opened as another case", caseB, caseA + ".contact", seal.ErrTampered},
		{"key id rewritten to another case", caseB, caseB + ".contact", seal.ErrTampered},
		{"key id rewritten to another class", caseA, caseA + ".freetext", seal.ErrTampered},
		{"key id rewritten to a class without key", caseA, caseA + ".identity", seal.ErrKeyNotFound},
		{"key id malformed", caseA, caseA, seal.ErrTampered},
		{"key id with unknown class", caseA, caseA + ".secret", seal.ErrTampered},
		{"key id empty", caseA, "", seal.ErrTampered},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			moved := &casev1.SealedPersonalData{KeyId: tc.keyID, Ciphertext: sealed.GetCiphertext()}
			_, err := s.Open(t.Context(), tc.caseID, moved)
			require.ErrorIs(t, err, tc.wantErr)
		})
	}
	t.Run("nil sealed value", func(t *testing.T) {
		_, err := s.Open(t.Context(), caseA, nil)
		require.ErrorIs(t, err, seal.ErrTampered)
	})
	t.Run("in place still opens", func(t *testing.T) {
		_, err := s.Open(t.Context(), caseA, sealed)
		require.NoError(t, err)
	})
}

func TestSealRejectsBadInput(t *testing.T) {
	srv := startServer(t)
	s := newSealer(t, srv, testMaster(t, 1))
	tests := []struct {
		name    string
		caseID  string
		class   seal.Class
		wantErr error
	}{
		{"identity number as case id", "19700101-1234", seal.ClassContact, seal.ErrInvalidCaseID},
		{"uppercase uuid", strings.ToUpper(newCaseID()), seal.ClassContact, seal.ErrInvalidCaseID},
		{"nil uuid", "00000000-0000-0000-0000-000000000000", seal.ClassContact, seal.ErrInvalidCaseID},
		{"dot in case id", "01ARZ3NDEKTSV4RRFFQ69G5F.V", seal.ClassContact, seal.ErrInvalidCaseID},
		{"empty case id", "", seal.ClassContact, seal.ErrInvalidCaseID},
		{"unknown class", newCaseID(), "email", seal.ErrInvalidClass},
		{"empty class", newCaseID(), "", seal.ErrInvalidClass},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Seal(t.Context(), tc.caseID, tc.class, 0, []byte("x"))
			require.ErrorIs(t, err, tc.wantErr)
			require.NotContains(t, err.Error(), "19700101", "error repeats a possible identity number")
		})
	}
	t.Run("ulid case id is accepted", func(t *testing.T) {
		sealed, err := s.Seal(t.Context(), "01ARZ3NDEKTSV4RRFFQ69G5FAV", seal.ClassContact, 0, []byte("x"))
		require.NoError(t, err)
		_, err = s.Open(t.Context(), "01ARZ3NDEKTSV4RRFFQ69G5FAV", sealed)
		require.NoError(t, err)
	})
}

// TestConcurrentFirstSealSharesOneKey has two intake instances, each with
// its own NATS connection, seal the first value of the same cases at the
// same moment. Each must be able to open what the other sealed, which
// holds only if both ended up with the same data key.
func TestConcurrentFirstSealSharesOneKey(t *testing.T) {
	srv := startServer(t)
	master := testMaster(t, 1)
	sealers := []*seal.Sealer{newSealer(t, srv, master), newSealer(t, srv, master)}
	const cases = 30
	for i := range cases {
		caseID := newCaseID()
		start := make(chan struct{})
		results := make([]*casev1.SealedPersonalData, len(sealers))
		errs := make([]error, len(sealers))
		var wg sync.WaitGroup
		for j, s := range sealers {
			wg.Go(func() {
				<-start
				results[j], errs[j] = s.Seal(t.Context(), caseID, seal.ClassContact, 0, fmt.Appendf(nil, "value %d from instance %d", i, j))
			})
		}
		close(start)
		wg.Wait()
		for j := range sealers {
			require.NoError(t, errs[j], "case %d instance %d", i, j)
		}
		for j, s := range sealers {
			other := 1 - j
			got, err := s.Open(t.Context(), caseID, results[other])
			require.NoError(t, err, "case %d: instance %d cannot open instance %d's value", i, j, other)
			require.Equal(t, fmt.Sprintf("value %d from instance %d", i, other), string(got))
		}
	}
}

func TestDestroy(t *testing.T) {
	srv := startServer(t)
	master := testMaster(t, 1)
	s1, s2 := newSealer(t, srv, master), newSealer(t, srv, master)

	// sealAll seals one value of every class of a new case with s1.
	sealAll := func(t *testing.T) (string, map[seal.Class]*casev1.SealedPersonalData) {
		caseID := newCaseID()
		out := map[seal.Class]*casev1.SealedPersonalData{}
		for _, c := range seal.Classes() {
			sealed, err := s1.Seal(t.Context(), caseID, c, 0, []byte("data of "+string(c)))
			require.NoError(t, err)
			out[c] = sealed
		}
		return caseID, out
	}

	t.Run("all classes: open fails in both instances, seal fails", func(t *testing.T) {
		caseID, sealed := sealAll(t)
		// s2 reads the keys before the destroy, as a long-running
		// instance would.
		for _, v := range sealed {
			_, err := s2.Open(t.Context(), caseID, v)
			require.NoError(t, err)
		}
		require.NoError(t, s1.Destroy(t.Context(), caseID, nil))
		for c, v := range sealed {
			for name, s := range map[string]*seal.Sealer{"same instance": s1, "second instance": s2} {
				_, err := s.Open(t.Context(), caseID, v)
				require.ErrorIs(t, err, seal.ErrKeyDestroyed, "%s, class %s", name, c)
				_, err = s.Seal(t.Context(), caseID, c, 0, []byte("new data"))
				require.ErrorIs(t, err, seal.ErrKeyDestroyed, "%s, class %s: seal after destroy", name, c)
			}
		}
	})

	t.Run("one class: the others stay readable", func(t *testing.T) {
		caseID, sealed := sealAll(t)
		require.NoError(t, s2.Destroy(t.Context(), caseID, nil, seal.ClassIdentity))
		for c, v := range sealed {
			for _, s := range []*seal.Sealer{s1, s2} {
				got, err := s.Open(t.Context(), caseID, v)
				if c == seal.ClassIdentity {
					require.ErrorIs(t, err, seal.ErrKeyDestroyed)
					continue
				}
				require.NoError(t, err, "class %s", c)
				require.Equal(t, "data of "+string(c), string(got))
			}
		}
		_, err := s1.Seal(t.Context(), caseID, seal.ClassIdentity, 0, []byte("197001011234"))
		require.ErrorIs(t, err, seal.ErrKeyDestroyed)
		_, err = s1.Seal(t.Context(), caseID, seal.ClassContact, 0, []byte("still fine"))
		require.NoError(t, err)
	})

	t.Run("idempotent", func(t *testing.T) {
		caseID, sealed := sealAll(t)
		for range 3 {
			require.NoError(t, s1.Destroy(t.Context(), caseID, nil, seal.ClassContact, seal.ClassContact))
			require.NoError(t, s2.Destroy(t.Context(), caseID, nil, seal.ClassContact))
		}
		_, err := s1.Open(t.Context(), caseID, sealed[seal.ClassContact])
		require.ErrorIs(t, err, seal.ErrKeyDestroyed)
	})

	t.Run("never-created keys: not found before, destroyed after", func(t *testing.T) {
		caseID := newCaseID()
		ghost := &casev1.SealedPersonalData{KeyId: caseID + ".answer", Ciphertext: make([]byte, 40)}
		_, err := s1.Open(t.Context(), caseID, ghost)
		require.ErrorIs(t, err, seal.ErrKeyNotFound)
		require.NotErrorIs(t, err, seal.ErrKeyDestroyed)

		require.NoError(t, s1.Destroy(t.Context(), caseID, nil))
		_, err = s1.Open(t.Context(), caseID, ghost)
		require.ErrorIs(t, err, seal.ErrKeyDestroyed)
		_, err = s2.Seal(t.Context(), caseID, seal.ClassAnswer, 0, []byte("x"))
		require.ErrorIs(t, err, seal.ErrKeyDestroyed, "a deleted case must not get a new key")
	})

	t.Run("concurrent destroy and seal of a new key", func(t *testing.T) {
		// Whatever the interleaving, afterwards the key is destroyed and
		// nothing sealed during the race opens.
		for range 10 {
			caseID := newCaseID()
			var sealed *casev1.SealedPersonalData
			var sealErr, destroyErr error
			var wg sync.WaitGroup
			wg.Go(func() { sealed, sealErr = s1.Seal(t.Context(), caseID, seal.ClassAnswer, 0, []byte("x")) })
			wg.Go(func() { destroyErr = s2.Destroy(t.Context(), caseID, nil, seal.ClassAnswer) })
			wg.Wait()
			require.NoError(t, destroyErr)
			if sealErr != nil {
				require.ErrorIs(t, sealErr, seal.ErrKeyDestroyed)
				continue
			}
			_, err := s1.Open(t.Context(), caseID, sealed)
			require.ErrorIs(t, err, seal.ErrKeyDestroyed)
		}
	})

	t.Run("a batch of cases, racing new keys", func(t *testing.T) {
		// DestroyBatch writes the tombstones of many keys at once; a key
		// created between its erase and the tombstones (the seals below
		// race it) makes the batch fail, and those keys are destroyed one
		// by one. Whatever the interleaving, every key is destroyed and
		// nothing sealed opens.
		for range 5 {
			var ds []seal.Destruction
			var sealed []*casev1.SealedPersonalData
			var cases []string
			for i := range 8 {
				caseID, all := sealAll(t)
				cases = append(cases, caseID)
				ds = append(ds, seal.Destruction{CaseID: caseID})
				if i%2 == 0 {
					ds[i].Classes = []seal.Class{seal.ClassContact, seal.ClassAnswer}
				}
				sealed = append(sealed, all[seal.ClassContact])
			}
			var racing []*casev1.SealedPersonalData
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, caseID := range cases {
				wg.Go(func() {
					v, err := s1.Seal(t.Context(), caseID, seal.ClassContact, 1, []byte("x"))
					if err == nil {
						mu.Lock()
						racing = append(racing, v)
						mu.Unlock()
					}
				})
			}
			// The racing keys are of generation 1: destroy those too.
			for _, caseID := range cases {
				ds = append(ds, seal.Destruction{CaseID: caseID, Gens: seal.Generations{seal.ClassContact: 1}, Classes: []seal.Class{seal.ClassContact}})
			}
			var destroyErr error
			wg.Go(func() { destroyErr = s2.DestroyBatch(t.Context(), ds) })
			wg.Wait()
			require.NoError(t, destroyErr)
			for _, v := range append(sealed, racing...) {
				caseID, _, _, err := seal.ParseKeyID(v.GetKeyId())
				require.NoError(t, err)
				_, err = s1.Open(t.Context(), caseID, v)
				require.ErrorIs(t, err, seal.ErrKeyDestroyed)
			}
			for i, caseID := range cases {
				if i%2 == 1 {
					_, err := s2.Seal(t.Context(), caseID, seal.ClassFreeText, 0, []byte("x"))
					require.ErrorIs(t, err, seal.ErrKeyDestroyed, "every class of a case destroyed whole")
				}
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		require.ErrorIs(t, s1.Destroy(t.Context(), "not-a-case-id", nil), seal.ErrInvalidCaseID)
		require.ErrorIs(t, s1.Destroy(t.Context(), newCaseID(), nil, "bogus"), seal.ErrInvalidClass)
	})
}

func TestWrongMasterKey(t *testing.T) {
	srv := startServer(t)
	right, wrong := testMaster(t, 1), testMaster(t, 2)
	require.NotEqual(t, right.ID(), wrong.ID())
	s := newSealer(t, srv, right)
	other := newSealer(t, srv, wrong)
	caseID := newCaseID()
	sealed, err := s.Seal(t.Context(), caseID, seal.ClassContact, 0, []byte("anna@example.se"))
	require.NoError(t, err)

	_, err = other.Open(t.Context(), caseID, sealed)
	require.ErrorIs(t, err, seal.ErrWrongMasterKey)
	require.Contains(t, err.Error(), right.ID(), "error names the master key that wrapped the data key")
	require.Contains(t, err.Error(), wrong.ID())

	_, err = other.Seal(t.Context(), caseID, seal.ClassContact, 0, []byte("x"))
	require.ErrorIs(t, err, seal.ErrWrongMasterKey)

	_, err = s.Open(t.Context(), caseID, sealed)
	require.NoError(t, err)
}

// tamperStore wraps a KeyStore and alters the wrapped keys it returns.
type tamperStore struct {
	seal.KeyStore
	alter func([]byte) []byte
}

func (s tamperStore) Get(ctx context.Context, keyID string) ([]byte, error) {
	b, err := s.KeyStore.Get(ctx, keyID)
	if err != nil {
		return nil, err
	}
	return s.alter(bytes.Clone(b)), nil
}

func TestTamperedWrappedKey(t *testing.T) {
	srv := startServer(t)
	master := testMaster(t, 1)
	store, err := seal.NewNATSKeyStore(t.Context(), connect(t, srv), seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	good, err := seal.NewSealer(store, master)
	require.NoError(t, err)
	caseA, caseB := newCaseID(), newCaseID()
	sealed, err := good.Seal(t.Context(), caseA, seal.ClassContact, 0, []byte("x"))
	require.NoError(t, err)
	_, err = good.Seal(t.Context(), caseB, seal.ClassContact, 0, []byte("x"))
	require.NoError(t, err)

	tests := []struct {
		name    string
		alter   func([]byte) []byte
		wantErr error
	}{
		{"bit flipped in encrypted key", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, seal.ErrTampered},
		// The nonce follows the version byte and the 8-byte master key id.
		{"bit flipped in nonce", func(b []byte) []byte { b[1+8] ^= 1; return b }, seal.ErrTampered},
		{"unknown version", func(b []byte) []byte { b[0] = 9; return b }, seal.ErrTampered},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, seal.ErrTampered},
		{"empty", func([]byte) []byte { return nil }, seal.ErrTampered},
		// A changed master key id reads as the wrong master key.
		{"bit flipped in master key id", func(b []byte) []byte { b[1] ^= 1; return b }, seal.ErrWrongMasterKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := seal.NewSealer(tamperStore{store, tc.alter}, master)
			require.NoError(t, err)
			_, err = s.Open(t.Context(), caseA, sealed)
			require.ErrorIs(t, err, tc.wantErr)
		})
	}
	t.Run("wrapped key of another key id", func(t *testing.T) {
		bKey, err := store.Get(t.Context(), caseB+".contact")
		require.NoError(t, err)
		s, err := seal.NewSealer(tamperStore{store, func([]byte) []byte { return bKey }}, master)
		require.NoError(t, err)
		_, err = s.Open(t.Context(), caseA, sealed)
		require.ErrorIs(t, err, seal.ErrTampered)
	})
}

func TestNewSealerRefusesMissingParts(t *testing.T) {
	srv := startServer(t)
	store, err := seal.NewNATSKeyStore(t.Context(), connect(t, srv), seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	_, err = seal.NewSealer(nil, testMaster(t, 1))
	require.Error(t, err)
	_, err = seal.NewSealer(store, seal.MasterKey{})
	require.ErrorIs(t, err, seal.ErrInvalidMasterKey)
}

// TestKeyGenerations: data written into a class after its redaction is
// sealed under the next generation's key, a fresh one; the destroyed key
// is never made again, and Destroy takes every generation up to the one
// the case's events name.
func TestKeyGenerations(t *testing.T) {
	srv := startServer(t)
	s1 := newSealer(t, srv, testMaster(t, 1))
	s2 := newSealer(t, srv, testMaster(t, 1)) // a second instance
	ctx := t.Context()
	open := func(s *seal.Sealer, caseID string, v *casev1.SealedPersonalData) (string, error) {
		b, err := s.Open(ctx, caseID, v)
		return string(b), err
	}

	t.Run("redaction, then a new answer under a fresh key", func(t *testing.T) {
		caseID := newCaseID()
		contact, err := s1.Seal(ctx, caseID, seal.ClassContact, 0, []byte("contact"))
		require.NoError(t, err)
		first, err := s1.Seal(ctx, caseID, seal.ClassAnswer, 0, []byte("first answer"))
		require.NoError(t, err)
		require.Equal(t, caseID+".answer", first.GetKeyId(), "generation 0 keeps the old key id")

		// The first redaction of the answer class (the case's events say
		// generation 0 before it).
		var gens seal.Generations
		require.NoError(t, s2.Destroy(ctx, caseID, gens, seal.ClassAnswer))
		gens.Apply(&casev1.PersonalDataRedacted{DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_ANSWER}})
		_, err = open(s1, caseID, first)
		require.ErrorIs(t, err, seal.ErrKeyDestroyed)
		_, err = s1.Seal(ctx, caseID, seal.ClassAnswer, 0, []byte("stale writer"))
		require.ErrorIs(t, err, seal.ErrKeyDestroyed, "a destroyed key is never made again")

		second, err := s1.Seal(ctx, caseID, seal.ClassAnswer, gens.Of(seal.ClassAnswer), []byte("second answer"))
		require.NoError(t, err)
		require.Equal(t, caseID+".answer.1", second.GetKeyId())
		for _, s := range []*seal.Sealer{s1, s2} {
			got, err := open(s, caseID, second)
			require.NoError(t, err)
			require.Equal(t, "second answer", got)
			got, err = open(s, caseID, contact)
			require.NoError(t, err, "another class is untouched")
			require.Equal(t, "contact", got)
		}

		// The second redaction destroys generation 1 (and 0 again).
		require.NoError(t, s2.Destroy(ctx, caseID, gens, seal.ClassAnswer))
		gens.Apply(&casev1.PersonalDataRedacted{DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_ANSWER}})
		for _, v := range []*casev1.SealedPersonalData{first, second} {
			_, err = open(s1, caseID, v)
			require.ErrorIs(t, err, seal.ErrKeyDestroyed, v.GetKeyId())
		}
		third, err := s2.Seal(ctx, caseID, seal.ClassAnswer, gens.Of(seal.ClassAnswer), []byte("third answer"))
		require.NoError(t, err)
		require.Equal(t, caseID+".answer.2", third.GetKeyId())

		// Deletion: every class, every generation up to the current.
		require.NoError(t, s1.Destroy(ctx, caseID, gens))
		for _, v := range []*casev1.SealedPersonalData{contact, third} {
			_, err = open(s2, caseID, v)
			require.ErrorIs(t, err, seal.ErrKeyDestroyed, v.GetKeyId())
		}
		_, err = s2.Seal(ctx, caseID, seal.ClassAnswer, 2, []byte("after deletion"))
		require.ErrorIs(t, err, seal.ErrKeyDestroyed)
	})

	t.Run("destroy stops at the generation given", func(t *testing.T) {
		caseID := newCaseID()
		var values []*casev1.SealedPersonalData
		for g := range uint32(3) {
			v, err := s1.Seal(ctx, caseID, seal.ClassFreeText, g, fmt.Appendf(nil, "generation %d", g))
			require.NoError(t, err)
			values = append(values, v)
		}
		require.NoError(t, s1.Destroy(ctx, caseID, seal.Generations{seal.ClassFreeText: 1}, seal.ClassFreeText))
		for g, v := range values {
			got, err := open(s2, caseID, v)
			if g <= 1 {
				require.ErrorIs(t, err, seal.ErrKeyDestroyed, "generation %d", g)
				continue
			}
			require.NoError(t, err)
			require.Equal(t, "generation 2", got)
		}
	})

	t.Run("a value moved to another generation does not open", func(t *testing.T) {
		caseID := newCaseID()
		v1, err := s1.Seal(ctx, caseID, seal.ClassAnswer, 1, []byte("x"))
		require.NoError(t, err)
		_, err = s1.Seal(ctx, caseID, seal.ClassAnswer, 2, []byte("y"))
		require.NoError(t, err)
		moved := &casev1.SealedPersonalData{KeyId: caseID + ".answer.2", Ciphertext: v1.GetCiphertext()}
		_, err = s1.Open(ctx, caseID, moved)
		require.ErrorIs(t, err, seal.ErrTampered)
	})
}
