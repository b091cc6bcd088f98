package outbox

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/services/intake/app"
)

func TestStoreKeepsItemsAndCheckpointAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	s, err := Open(path)
	require.NoError(t, err)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ack := app.OutboxItem{CaseID: "a", Kind: casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT, NextAt: now}
	later := app.OutboxItem{CaseID: "b", Kind: casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT, NextAt: now.Add(time.Hour)}
	require.NoError(t, s.Apply([]app.OutboxItem{ack, later}, nil, 7))

	due, err := s.Due(now, 10)
	require.NoError(t, err)
	require.Equal(t, []app.OutboxItem{ack}, due, "only what is due")

	// A replayed batch adds nothing over an item already rescheduled.
	ack.Attempts, ack.NextAt = 2, now.Add(time.Minute)
	require.NoError(t, s.Put(ack))
	require.NoError(t, s.Apply([]app.OutboxItem{{CaseID: "a", Kind: casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT, NextAt: now}}, nil, 8))
	due, err = s.Due(now.Add(time.Minute), 10)
	require.NoError(t, err)
	require.Equal(t, []app.OutboxItem{ack}, due)

	require.NoError(t, s.Close())
	s, err = Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	cp, err := s.Checkpoint()
	require.NoError(t, err)
	require.EqualValues(t, 8, cp)
	n, err := s.Len()
	require.NoError(t, err)
	require.Equal(t, 2, n)

	// A recorded outcome removes the item; a Put after that does not
	// bring it back.
	require.NoError(t, s.Apply(nil, []string{ack.Key()}, 9))
	require.NoError(t, s.Put(ack))
	require.NoError(t, s.Remove(later.Key()))
	n, err = s.Len()
	require.NoError(t, err)
	require.Zero(t, n)
}
