package domain

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestIDs(t *testing.T) {
	_, err := NewIDs(nil)
	require.ErrorIs(t, err, ErrIDKey)
	_, err = NewIDs(make([]byte, MinIDKeySize-1))
	require.ErrorIs(t, err, ErrIDKey)

	key := []byte("0123456789abcdef0123456789abcdef")
	ids, err := NewIDs(key)
	require.NoError(t, err)
	again, err := NewIDs(key)
	require.NoError(t, err)
	other, err := NewIDs([]byte("another key, just as long as it!"))
	require.NoError(t, err)
	key[0] = 'x' // NewIDs copied it.

	format := regexp.MustCompile(`^[A-Z2-7]{26}$`)
	seen := map[string]bool{}
	for _, c := range []struct {
		seed string
		pos  int64
	}{{"SEEDONE", 7}, {"SEEDTWO", 7}, {"", 7}, {"", 8}} {
		id := ids.For(c.seed, c.pos)
		require.Regexp(t, format, id, "128 bits as base32, like crypto/rand.Text")
		require.Equal(t, id, again.For(c.seed, c.pos), "every instance derives the same id")
		require.NotEqual(t, id, other.For(c.seed, c.pos), "the id depends on the key")
		require.False(t, seen[id])
		seen[id] = true
	}
	require.Equal(t, ids.For("SEEDONE", 7), ids.For("SEEDONE", 99), "with a seed, the position does not matter")
}
