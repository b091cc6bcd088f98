package app

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestView(t *testing.T) {
	v := newView(10, 100)
	require.EqualValues(t, 10, v.scanFrom(), "nothing read: the tail")
	v.add(11, 90, 1) // At or below the floor: done with.
	v.add(12, 101, 2)
	v.add(13, 105, 3)
	v.add(14, 101, 9) // A second copy: the first counts.
	v.addCreated(101, "A")
	v.addCreated(99, "old")
	v.tail = 14
	s, ok := v.has(101)
	require.True(t, ok)
	require.Equal(t, seen{version: 101, seq: 12, sum: 2}, s)
	_, ok = v.has(90)
	require.False(t, ok)
	id, ok := v.createdID(101)
	require.True(t, ok)
	require.Equal(t, "A", id)
	_, ok = v.createdID(99)
	require.False(t, ok)
	require.EqualValues(t, 11, v.scanFrom(), "before the first version newer than the floor")

	// A version older than one read before, further on (instances that
	// disagreed): the scan must still start before both.
	v.add(15, 103, 4)
	v.tail = 15
	require.False(t, v.inOrder)
	require.EqualValues(t, 11, v.scanFrom())
	v.advance(101)
	require.EqualValues(t, 12, v.scanFrom(), "now 105 at 13 and 103 at 15")
	_, ok = v.createdID(101)
	require.False(t, ok, "forgotten with the floor")
	v.advance(110)
	require.EqualValues(t, 15, v.scanFrom(), "all done: the tail")
	require.True(t, v.inOrder)
	v.advance(50)
	require.EqualValues(t, 110, v.floor, "the floor never goes down")
}
