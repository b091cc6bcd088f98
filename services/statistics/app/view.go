package app

import (
	"slices"
	"strings"
)

// view is what a projector knows of the statistics stream beyond its own
// progress: how far it has read, and which record versions newer than
// its floor (the checkpoint whose versions are all in the stream) the
// stream holds.
type view struct {
	// tail is the stream sequence up to which every message was read, or
	// appended by this projector.
	tail uint64
	// floor is the newest version the projector is done with: it never
	// makes a version at or below it again.
	floor int64
	// present are the versions newer than floor read from the stream,
	// sorted by version.
	present []seen
	// inOrder says present is sorted by stream sequence too (projectors
	// append in version order, so it normally is).
	inOrder bool
	// created are, for versions newer than floor, the ids of records
	// whose lowest version read from the stream that is: for a record
	// registered after the checkpoint, its CaseRegistered's position.
	// Sorted by version.
	created []createdID
}

type seen struct {
	version int64
	seq     uint64
	sum     uint64
}

type createdID struct {
	version int64
	id      string
}

func newView(tail uint64, floor int64) *view {
	return &view{tail: tail, floor: floor, inOrder: true}
}

// add notes that the stream holds version at seq; the first copy counts.
func (v *view) add(seq uint64, version int64, sum uint64) {
	if version <= v.floor {
		return
	}
	i, found := slices.BinarySearchFunc(v.present, version, func(s seen, t int64) int { return cmpInt(s.version, t) })
	if found {
		return
	}
	if i < len(v.present) || len(v.present) > 0 && v.present[len(v.present)-1].seq > seq {
		v.inOrder = false
	}
	v.present = slices.Insert(v.present, i, seen{version: version, seq: seq, sum: sum})
}

// has reports whether the stream holds version, as far as the projector
// has read.
func (v *view) has(version int64) (seen, bool) {
	i, found := slices.BinarySearchFunc(v.present, version, func(s seen, t int64) int { return cmpInt(s.version, t) })
	if !found {
		return seen{}, false
	}
	return v.present[i], true
}

// addCreated notes that the record id has version as its lowest version
// read.
func (v *view) addCreated(version int64, id string) {
	if version <= v.floor {
		return
	}
	i, found := slices.BinarySearchFunc(v.created, version, func(c createdID, t int64) int { return cmpInt(c.version, t) })
	if found {
		return
	}
	v.created = slices.Insert(v.created, i, createdID{version: version, id: strings.Clone(id)})
}

// createdID returns the id of the record in the stream whose version is
// the registration at position version.
func (v *view) createdID(version int64) (string, bool) {
	i, found := slices.BinarySearchFunc(v.created, version, func(c createdID, t int64) int { return cmpInt(c.version, t) })
	if !found {
		return "", false
	}
	return v.created[i].id, true
}

// advance raises the floor to checkpoint once all versions up to it are
// in the stream, and forgets what is at or below it.
func (v *view) advance(checkpoint int64) {
	if checkpoint <= v.floor {
		return
	}
	v.floor = checkpoint
	i, _ := slices.BinarySearchFunc(v.present, checkpoint+1, func(s seen, t int64) int { return cmpInt(s.version, t) })
	v.present = v.present[i:]
	if len(v.present) == 0 {
		v.present, v.inOrder = nil, true
	}
	j, _ := slices.BinarySearchFunc(v.created, checkpoint+1, func(c createdID, t int64) int { return cmpInt(c.version, t) })
	v.created = v.created[j:]
	if len(v.created) == 0 {
		v.created = nil
	}
}

// scanFrom is where a restart must read the stream from: before every
// version newer than the floor the projector has read, and, when there
// is none, its tail.
func (v *view) scanFrom() uint64 {
	if len(v.present) == 0 {
		return v.tail
	}
	if v.inOrder {
		return v.present[0].seq - 1
	}
	low := v.present[0].seq
	for _, s := range v.present[1:] {
		low = min(low, s.seq)
	}
	return low - 1
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
