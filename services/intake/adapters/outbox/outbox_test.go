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
	require.NoError(t, s.Apply([]app.OutboxItem{ack, later}, nil, nil, nil, 7))

	due, err := s.Due(now, 10)
	require.NoError(t, err)
	require.Equal(t, []app.OutboxItem{ack}, due, "only what is due")

	// A replayed batch adds nothing over an item already rescheduled.
	ack.Attempts, ack.NextAt = 2, now.Add(time.Minute)
	require.NoError(t, s.Put(ack))
	require.NoError(t, s.Apply([]app.OutboxItem{{CaseID: "a", Kind: casev1.MailKind_MAIL_KIND_ACKNOWLEDGEMENT, NextAt: now}}, nil, nil, nil, 8))
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
	require.NoError(t, s.Apply(nil, []string{ack.Key()}, nil, nil, 9))
	require.NoError(t, s.Put(ack))
	require.NoError(t, s.Remove(later.Key()))
	n, err = s.Len()
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestSentMailIndex(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "outbox.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, s.Apply(nil, nil, []app.SentMail{{MessageID: "<a1@k>", CaseID: "a"}, {MessageID: "<a2@k>", CaseID: "a"}, {MessageID: "<b1@k>", CaseID: "b"}}, nil, 1))
	for _, tt := range []struct{ id, want string }{{"<a1@k>", "a"}, {"<a2@k>", "a"}, {"<b1@k>", "b"}, {"<c@k>", ""}} {
		got, found, err := s.CaseOfMessage(tt.id)
		require.NoError(t, err)
		require.Equal(t, tt.want != "", found, tt.id)
		require.Equal(t, tt.want, got, tt.id)
	}
	// A deleted case's mails leave the index; another case's stay.
	require.NoError(t, s.Apply(nil, nil, nil, []string{"a"}, 2))
	for _, id := range []string{"<a1@k>", "<a2@k>"} {
		_, found, err := s.CaseOfMessage(id)
		require.NoError(t, err)
		require.False(t, found, id)
	}
	got, found, err := s.CaseOfMessage("<b1@k>")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "b", got)
}
