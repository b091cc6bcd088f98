package seal

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/seal/internal/keyspb"
)

const (
	recUUID = "0b7d6c1e-2f4a-4c1b-9a51-3c8e2d7f6a10"
	recULID = "01HZX3K8Q9V6T2M4N7P5R0S1W3"
)

func TestRefOf(t *testing.T) {
	for _, tc := range []struct {
		keyID string
		want  keyRef
		err   error
	}{
		{recUUID + ".contact", keyRef{recUUID, ClassContact, 0}, nil},
		{recUUID + ".answer.3", keyRef{recUUID, ClassAnswer, 3}, nil},
		{recULID + ".identity.4294967295", keyRef{recULID, ClassIdentity, math.MaxUint32}, nil},
		{recULID + ".freetext.0", keyRef{}, ErrInvalidKeyID},
		{recUUID, keyRef{}, ErrInvalidKeyID},
		{recUUID + ".secret", keyRef{}, ErrInvalidKeyID},
		{"19700101-1234.contact", keyRef{}, ErrInvalidKeyID},
	} {
		t.Run(tc.keyID, func(t *testing.T) {
			got, err := refOf(tc.keyID)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.keyID, got.keyID(), "refOf and keyID are inverse")
		})
	}
}

// op is one step applied to a record in TestCaseRecord.
type op struct {
	destroy bool // else add
	class   Class
	gen     uint32
	err     error // add's error
	changed bool  // destroy's answer
}

func add(c Class, gen uint32, err error) op { return op{class: c, gen: gen, err: err} }
func destroy(c Class, gen uint32, changed bool) op {
	return op{destroy: true, class: c, gen: gen, changed: changed}
}

func wrappedFor(c Class, gen uint32) []byte {
	return []byte(string(c) + "/" + string(rune('0'+gen%10)))
}

func TestCaseRecord(t *testing.T) {
	type probe struct {
		class Class
		gen   uint32
		state keyState
	}
	for _, tc := range []struct {
		name   string
		ops    []op
		probes []probe
		want   *keyspb.CaseKeys
	}{
		{
			name:   "empty record: every key absent",
			probes: []probe{{ClassContact, 0, keyAbsent}, {ClassAnswer, 7, keyAbsent}},
			want:   nil,
		},
		{
			name: "keys of several classes, kept in enum order",
			ops:  []op{add(ClassAnswer, 0, nil), add(ClassContact, 0, nil), add(ClassContact, 0, ErrKeyExists), add(ClassFreeText, 1, nil)},
			probes: []probe{
				{ClassContact, 0, keyLive}, {ClassAnswer, 0, keyLive}, {ClassFreeText, 1, keyLive},
				{ClassFreeText, 0, keyAbsent}, {ClassIdentity, 0, keyAbsent},
			},
			want: &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{
				{Class: casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, Keys: []*keyspb.Key{{Generation: 0, Wrapped: wrappedFor(ClassContact, 0)}}},
				{Class: casev1.DataClass_DATA_CLASS_FREE_TEXT, Keys: []*keyspb.Key{{Generation: 1, Wrapped: wrappedFor(ClassFreeText, 1)}}},
				{Class: casev1.DataClass_DATA_CLASS_ANSWER, Keys: []*keyspb.Key{{Generation: 0, Wrapped: wrappedFor(ClassAnswer, 0)}}},
			}},
		},
		{
			name: "a redaction: generation 0 destroyed, generation 1 made, never 0 again",
			ops: []op{
				add(ClassContact, 0, nil), destroy(ClassContact, 0, true), destroy(ClassContact, 0, false),
				add(ClassContact, 0, ErrKeyDestroyed), add(ClassContact, 1, nil),
			},
			probes: []probe{{ClassContact, 0, keyDestroyed}, {ClassContact, 1, keyLive}, {ClassContact, 2, keyAbsent}},
			want: &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{
				{Class: casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, DestroyedBelow: 1, Keys: []*keyspb.Key{{Generation: 1, Wrapped: wrappedFor(ClassContact, 1)}}},
			}},
		},
		{
			name: "destroying a key never made leaves a tombstone",
			ops:  []op{destroy(ClassIdentity, 0, true), add(ClassIdentity, 0, ErrKeyDestroyed)},
			probes: []probe{
				{ClassIdentity, 0, keyDestroyed}, {ClassIdentity, 1, keyAbsent}, {ClassContact, 0, keyAbsent},
			},
			want: &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{
				{Class: casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER, DestroyedBelow: 1},
			}},
		},
		{
			name: "out of order destroys are kept apart, then fold into the mark",
			ops: []op{
				add(ClassAnswer, 1, nil), add(ClassAnswer, 3, nil),
				destroy(ClassAnswer, 3, true), destroy(ClassAnswer, 1, true), destroy(ClassAnswer, 1, false),
			},
			probes: []probe{
				{ClassAnswer, 0, keyAbsent}, {ClassAnswer, 1, keyDestroyed}, {ClassAnswer, 2, keyAbsent},
				{ClassAnswer, 3, keyDestroyed}, {ClassAnswer, 4, keyAbsent},
			},
			want: &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{
				{Class: casev1.DataClass_DATA_CLASS_ANSWER, Destroyed: []uint32{1, 3}},
			}},
		},
		{
			name: "filling the gaps raises the mark past every destroyed generation",
			ops: []op{
				destroy(ClassAnswer, 3, true), destroy(ClassAnswer, 1, true), destroy(ClassAnswer, 0, true),
				destroy(ClassAnswer, 2, true), add(ClassAnswer, 4, nil),
			},
			probes: []probe{{ClassAnswer, 3, keyDestroyed}, {ClassAnswer, 4, keyLive}},
			want: &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{
				{Class: casev1.DataClass_DATA_CLASS_ANSWER, DestroyedBelow: 4, Keys: []*keyspb.Key{{Generation: 4, Wrapped: wrappedFor(ClassAnswer, 4)}}},
			}},
		},
		{
			name:   "the highest generation: the mark passes it without wrapping",
			ops:    []op{destroy(ClassFreeText, math.MaxUint32, true), destroy(ClassFreeText, math.MaxUint32, false)},
			probes: []probe{{ClassFreeText, math.MaxUint32, keyDestroyed}, {ClassFreeText, 0, keyAbsent}},
			want: &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{
				{Class: casev1.DataClass_DATA_CLASS_FREE_TEXT, Destroyed: []uint32{math.MaxUint32}},
			}},
		},
		{
			name: "a deleted case: every class destroyed leaves only marks",
			ops: func() []op {
				var ops []op
				for _, c := range Classes() {
					ops = append(ops, add(c, 0, nil))
				}
				for _, c := range Classes() {
					ops = append(ops, destroy(c, 0, true))
				}
				return ops
			}(),
			probes: []probe{{ClassContact, 0, keyDestroyed}, {ClassAnswer, 0, keyDestroyed}},
			want: &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{
				{Class: casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, DestroyedBelow: 1},
				{Class: casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER, DestroyedBelow: 1},
				{Class: casev1.DataClass_DATA_CLASS_FREE_TEXT, DestroyedBelow: 1},
				{Class: casev1.DataClass_DATA_CLASS_ATTACHMENTS, DestroyedBelow: 1},
				{Class: casev1.DataClass_DATA_CLASS_ANSWER, DestroyedBelow: 1},
			}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r caseRecord
			for i, o := range tc.ops {
				before := r.clone()
				if o.destroy {
					require.Equal(t, o.changed, r.destroy(o.class, o.gen), "step %d", i)
					continue
				}
				err := r.add(o.class, o.gen, wrappedFor(o.class, o.gen))
				if o.err != nil {
					require.ErrorIs(t, err, o.err, "step %d", i)
					require.True(t, proto.Equal(before.pb, r.pb), "step %d: a refused add changes nothing", i)
					continue
				}
				require.NoError(t, err, "step %d", i)
			}
			if tc.want == nil {
				require.Nil(t, r.pb)
			} else {
				require.True(t, proto.Equal(tc.want, r.pb), "got %v", r.pb)
			}
			b, err := r.encode()
			require.NoError(t, err)
			back, err := decodeRecord(b)
			require.NoError(t, err, "every record the operations make is valid")
			b2, err := back.encode()
			require.NoError(t, err)
			require.Equal(t, b, b2, "encoding is deterministic")
			for _, p := range tc.probes {
				for _, rec := range []caseRecord{r, back} {
					st, w := rec.lookup(p.class, p.gen)
					require.Equal(t, p.state, st, "%s gen %d", p.class, p.gen)
					if st == keyLive {
						require.Equal(t, wrappedFor(p.class, p.gen), w)
					} else {
						require.Nil(t, w)
					}
				}
			}
		})
	}
}

func TestCaseRecordCloneIsIndependent(t *testing.T) {
	var r caseRecord
	require.NoError(t, r.add(ClassContact, 0, []byte("k")))
	c := r.clone()
	require.True(t, c.destroy(ClassContact, 0))
	st, _ := r.lookup(ClassContact, 0)
	require.Equal(t, keyLive, st, "changing the clone must leave the record as read")
}

func TestGoneRecord(t *testing.T) {
	r := caseRecord{gone: true}
	for _, c := range Classes() {
		st, w := r.lookup(c, 0)
		require.Equal(t, keyDestroyed, st)
		require.Nil(t, w)
		require.ErrorIs(t, r.add(c, 5, []byte("k")), ErrKeyDestroyed)
		require.False(t, r.destroy(c, 5), "nothing to write: the marker already destroys everything")
	}
	require.True(t, r.clone().gone)
}

func TestDecodeRecordRefusesBrokenRecords(t *testing.T) {
	contact := casev1.DataClass_DATA_CLASS_CONTACT_DETAILS
	key := func(gen uint32) *keyspb.Key { return &keyspb.Key{Generation: gen, Wrapped: []byte("k")} }
	for _, tc := range []struct {
		name string
		pb   *keyspb.CaseKeys
	}{
		{"unspecified class", &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{{}}}},
		{"unknown class", &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{{Class: 99}}}},
		{"class twice", &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{{Class: contact}, {Class: contact}}}},
		{"classes out of order", &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{
			{Class: casev1.DataClass_DATA_CLASS_ANSWER}, {Class: contact},
		}}},
		{"live key below the mark", &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{{Class: contact, DestroyedBelow: 2, Keys: []*keyspb.Key{key(1)}}}}},
		{"live key listed as destroyed", &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{{Class: contact, Destroyed: []uint32{3}, Keys: []*keyspb.Key{key(3)}}}}},
		{"keys out of order", &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{{Class: contact, Keys: []*keyspb.Key{key(2), key(1)}}}}},
		{"key twice", &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{{Class: contact, Keys: []*keyspb.Key{key(1), key(1)}}}}},
		{"destroyed at the mark", &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{{Class: contact, DestroyedBelow: 2, Destroyed: []uint32{2}}}}},
		{"destroyed out of order", &keyspb.CaseKeys{Classes: []*keyspb.ClassKeys{{Class: contact, Destroyed: []uint32{5, 3}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := proto.Marshal(tc.pb)
			require.NoError(t, err)
			_, err = decodeRecord(b)
			require.ErrorIs(t, err, ErrTampered)
		})
	}
	_, err := decodeRecord([]byte{0xff, 0xff})
	require.ErrorIs(t, err, ErrTampered)
	r, err := decodeRecord(nil)
	require.NoError(t, err, "an empty record is a case without keys")
	st, _ := r.lookup(ClassContact, 0)
	require.Equal(t, keyAbsent, st)
}
