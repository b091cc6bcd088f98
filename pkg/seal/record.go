package seal

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/seal/internal/keyspb"
)

// keyRef says where a data key lives in the NATS key store: in the record
// of its case (one record, and so one JetStream subject, per case), under
// its class and generation. The mapping is pure, so every process finds a
// key without a lookup table.
type keyRef struct {
	caseID string
	class  Class
	gen    uint32
}

// refOf maps a key id made by KeyID to its place in its case's record.
func refOf(keyID string) (keyRef, error) {
	caseID, class, gen, err := ParseKeyID(keyID)
	if err != nil {
		return keyRef{}, err
	}
	return keyRef{caseID: caseID, class: class, gen: gen}, nil
}

// keyID is the inverse of refOf.
func (r keyRef) keyID() string {
	id, _ := KeyID(r.caseID, r.class, r.gen) // r came from ParseKeyID, so it is valid.
	return id
}

// keyState is what a case's record says about one of its keys.
type keyState int

const (
	// keyAbsent: the key was never created (nor destroyed).
	keyAbsent keyState = iota
	// keyLive: the record holds the wrapped key.
	keyLive
	// keyDestroyed: the key was destroyed, or never created and destroyed
	// all the same; it is never made again.
	keyDestroyed
)

// caseRecord is the decoded record of one case in the key store: its live
// wrapped keys and which keys were destroyed (keyspb.CaseKeys). The zero
// value is a case with no record yet. Its methods are pure, so the rules
// of creating and destroying keys are tested without a server.
type caseRecord struct {
	pb *keyspb.CaseKeys
	// gone marks a case whose last message is a marker rather than a
	// record (a KV delete or purge written by an operator's tool, or a
	// server marker): every key of the case counts as destroyed, so a
	// marker never lets a key be made again.
	gone bool
}

// decodeRecord parses and checks a stored record. A record that breaks
// the format's invariants is refused as tampered rather than read,
// because reading it could revive a destroyed key.
func decodeRecord(b []byte) (caseRecord, error) {
	pb := &keyspb.CaseKeys{}
	if err := proto.Unmarshal(b, pb); err != nil {
		return caseRecord{}, fmt.Errorf("%w: key record does not parse", ErrTampered)
	}
	prev := casev1.DataClass_DATA_CLASS_UNSPECIFIED
	for _, ck := range pb.GetClasses() {
		if _, err := ClassFromProto(ck.GetClass()); err != nil || ck.GetClass() <= prev {
			return caseRecord{}, fmt.Errorf("%w: key record has an unknown, repeated or unordered class", ErrTampered)
		}
		prev = ck.GetClass()
		if !ascending(ck.GetDestroyed()) || (len(ck.GetDestroyed()) > 0 && uint64(ck.GetDestroyed()[0]) <= ck.GetDestroyedBelow()) {
			return caseRecord{}, fmt.Errorf("%w: key record's destroyed generations are out of order", ErrTampered)
		}
		gens := make([]uint32, len(ck.GetKeys()))
		for i, k := range ck.GetKeys() {
			gens[i] = k.GetGeneration()
			if isDestroyed(ck, k.GetGeneration()) {
				return caseRecord{}, fmt.Errorf("%w: key record holds a destroyed key", ErrTampered)
			}
		}
		if !ascending(gens) {
			return caseRecord{}, fmt.Errorf("%w: key record's keys are out of order", ErrTampered)
		}
	}
	return caseRecord{pb: pb}, nil
}

// ascending reports whether gens is strictly ascending, as the record
// keeps its generations so that lookups can search them.
func ascending(gens []uint32) bool {
	for i := 1; i < len(gens); i++ {
		if gens[i] <= gens[i-1] {
			return false
		}
	}
	return true
}

// encode returns the record's bytes. There are no maps in the format and
// the classes and generations are kept sorted, so equal records encode to
// equal bytes.
func (r caseRecord) encode() ([]byte, error) {
	if r.pb == nil {
		return []byte{}, nil
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.pb)
	if err != nil {
		return nil, fmt.Errorf("seal: encode key record: %w", err)
	}
	return b, nil
}

// clone returns a copy that the mutating methods can change without
// touching r, so a failed write leaves what was read intact.
func (r caseRecord) clone() caseRecord {
	if r.pb == nil {
		return caseRecord{gone: r.gone}
	}
	return caseRecord{pb: proto.CloneOf(r.pb), gone: r.gone}
}

// class returns the record's entry for c, or nil.
func (r caseRecord) class(c Class) *keyspb.ClassKeys {
	dc := c.ToProto()
	for _, ck := range r.pb.GetClasses() {
		if ck.GetClass() == dc {
			return ck
		}
	}
	return nil
}

// classForWrite returns the record's entry for c, adding an empty one in
// enum order if there is none.
func (r *caseRecord) classForWrite(c Class) *keyspb.ClassKeys {
	if ck := r.class(c); ck != nil {
		return ck
	}
	if r.pb == nil {
		r.pb = &keyspb.CaseKeys{}
	}
	dc := c.ToProto()
	ck := &keyspb.ClassKeys{Class: dc}
	i, _ := slices.BinarySearchFunc(r.pb.Classes, dc, func(e *keyspb.ClassKeys, t casev1.DataClass) int {
		return int(e.GetClass()) - int(t)
	})
	r.pb.Classes = slices.Insert(r.pb.Classes, i, ck)
	return ck
}

// isDestroyed reports whether generation gen of the class was destroyed.
func isDestroyed(ck *keyspb.ClassKeys, gen uint32) bool {
	if uint64(gen) < ck.GetDestroyedBelow() {
		return true
	}
	_, found := slices.BinarySearch(ck.GetDestroyed(), gen)
	return found
}

// keyIndex returns the index of generation gen among the class's live keys.
func keyIndex(ck *keyspb.ClassKeys, gen uint32) (int, bool) {
	return slices.BinarySearchFunc(ck.GetKeys(), gen, func(k *keyspb.Key, g uint32) int {
		switch {
		case k.GetGeneration() < g:
			return -1
		case k.GetGeneration() > g:
			return 1
		}
		return 0
	})
}

// lookup returns the state of a key and, when it is live, its wrapped
// bytes.
func (r caseRecord) lookup(class Class, gen uint32) (keyState, []byte) {
	if r.gone {
		return keyDestroyed, nil
	}
	ck := r.class(class)
	if ck == nil {
		return keyAbsent, nil
	}
	if isDestroyed(ck, gen) {
		return keyDestroyed, nil
	}
	if i, ok := keyIndex(ck, gen); ok {
		return keyLive, ck.GetKeys()[i].GetWrapped()
	}
	return keyAbsent, nil
}

// add stores a new key. It fails with ErrKeyExists when the key is live
// and with ErrKeyDestroyed when it was destroyed, and then leaves the
// record unchanged.
func (r *caseRecord) add(class Class, gen uint32, wrapped []byte) error {
	switch st, _ := r.lookup(class, gen); st {
	case keyLive:
		return ErrKeyExists
	case keyDestroyed:
		return ErrKeyDestroyed
	}
	ck := r.classForWrite(class)
	i, _ := keyIndex(ck, gen)
	ck.Keys = slices.Insert(ck.Keys, i, &keyspb.Key{Generation: gen, Wrapped: slices.Clone(wrapped)})
	return nil
}

// destroy removes a key (if it is live) and marks it destroyed (even if
// it never existed). It reports whether the record changed: destroying a
// destroyed key changes nothing.
func (r *caseRecord) destroy(class Class, gen uint32) bool {
	if st, _ := r.lookup(class, gen); st == keyDestroyed {
		return false
	}
	ck := r.classForWrite(class)
	if i, ok := keyIndex(ck, gen); ok {
		ck.Keys = slices.Delete(ck.Keys, i, i+1)
	}
	if uint64(gen) != ck.DestroyedBelow {
		i, _ := slices.BinarySearch(ck.Destroyed, gen)
		ck.Destroyed = slices.Insert(ck.Destroyed, i, gen)
		return true
	}
	// gen is the mark: raise it past gen and every destroyed generation
	// that follows without a gap.
	ck.DestroyedBelow++
	for len(ck.Destroyed) > 0 && uint64(ck.Destroyed[0]) == ck.DestroyedBelow {
		ck.Destroyed = ck.Destroyed[1:]
		ck.DestroyedBelow++
	}
	if len(ck.Destroyed) == 0 {
		ck.Destroyed = nil
	}
	return true
}
