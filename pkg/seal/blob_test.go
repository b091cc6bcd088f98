package seal_test

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/seal"
)

func TestSealBlobRoundTripAndTampering(t *testing.T) {
	srv := startServer(t)
	s := newSealer(t, srv, testMaster(t, 1))
	ctx := t.Context()
	caseID, other := newCaseID(), newCaseID()

	sizes := []int{0, 1, seal.BlobSegmentSize - 1, seal.BlobSegmentSize, seal.BlobSegmentSize + 1, 3*seal.BlobSegmentSize + 17}
	for _, n := range sizes {
		pt := make([]byte, n)
		_, _ = rand.Read(pt)
		blob, err := s.SealBlob(ctx, caseID, seal.ClassAttachments, 0, "a/0", pt)
		require.NoError(t, err)
		if n >= 16 {
			require.False(t, bytes.Contains(blob, pt[:16]), "plaintext visible in the sealed blob of %d bytes", n)
		}
		got, err := s.OpenBlob(ctx, caseID, "a/0", blob)
		require.NoError(t, err, "size %d", n)
		require.Equal(t, len(pt), len(got))
		require.True(t, bytes.Equal(pt, got), "size %d", n)
	}

	pt := bytes.Repeat([]byte("x"), 2*seal.BlobSegmentSize+5)
	blob, err := s.SealBlob(ctx, caseID, seal.ClassAttachments, 0, "a/0", pt)
	require.NoError(t, err)
	header := 2 + int(blob[1])
	seg := seal.BlobSegmentSize + seal.Overhead
	swapped := append([]byte(nil), blob[:header]...)
	swapped = append(swapped, blob[header+seg:header+2*seg]...)
	swapped = append(swapped, blob[header:header+seg]...)
	swapped = append(swapped, blob[header+2*seg:]...)
	flipped := append([]byte(nil), blob...)
	flipped[len(flipped)-1] ^= 1

	for name, tc := range map[string]struct {
		caseID, name string
		blob         []byte
	}{
		"other name":         {caseID, "a/1", blob},
		"other case":         {other, "a/0", blob},
		"truncated at a seg": {caseID, "a/0", blob[:header+2*seg]},
		"segments swapped":   {caseID, "a/0", swapped},
		"bit flipped":        {caseID, "a/0", flipped},
		"no header":          {caseID, "a/0", blob[:1]},
	} {
		_, err := s.OpenBlob(ctx, tc.caseID, tc.name, tc.blob)
		require.ErrorIs(t, err, seal.ErrTampered, name)
	}

	require.NoError(t, s.Destroy(ctx, caseID, nil, seal.ClassAttachments))
	_, err = s.OpenBlob(ctx, caseID, "a/0", blob)
	require.ErrorIs(t, err, seal.ErrKeyDestroyed)
	_, err = s.SealBlob(ctx, caseID, seal.ClassAttachments, 0, "a/0", pt)
	require.ErrorIs(t, err, seal.ErrKeyDestroyed)
}
