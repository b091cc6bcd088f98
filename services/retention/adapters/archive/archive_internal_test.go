package archive

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFailedWriteLeavesNothingBehind makes the last step of a write fail and
// checks that the temporary file is gone and no package appeared.
func TestFailedWriteLeavesNothingBehind(t *testing.T) {
	errRename := errors.New("disk on fire")
	tests := []struct {
		name   string
		rename func(string, string) error
	}{
		{"rename fails", func(string, string) error { return errRename }},
		{"rename fails after the temporary file vanished", func(oldpath, _ string) error {
			require.NoError(t, os.Remove(oldpath))
			return errRename
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := Package{
				CaseID:     "c1",
				CaseNumber: "KC-2026-000001",
				CreatedAt:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
				Files:      []File{{Path: "case.json", Data: []byte("{}")}},
			}
			_, _, err := write(dir, p, tc.rename)
			require.ErrorIs(t, err, errRename)
			ents, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Empty(t, ents)
		})
	}
}
