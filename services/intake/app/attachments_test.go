package app_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	"github.com/kontakt-se/kontakt/pkg/blobstore"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/services/intake/adapters/idempotency"
	"github.com/kontakt-se/kontakt/services/intake/app"
	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// crashingStore refuses every append while crash is set, as a process
// that died after storing a case's content and before appending the case
// would have left things.
type crashingStore struct {
	app.EventStore
	crash bool
}

func (c *crashingStore) Append(ctx context.Context, stream string, exp eventstore.ExpectedRevision, ev eventstore.Event) (eventstore.Revision, error) {
	if c.crash {
		return 0, errors.New("the process died here")
	}
	return c.EventStore.Append(ctx, stream, exp, ev)
}

// Content is stored before the case; what a failed append leaves is
// found by the orphan sweep, which never touches a registered case's.
func TestAttachmentContentAndTheOrphanSweep(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	blobs, err := blobstore.Open(ctx, f.js, f.sealer, blobstore.Config{})
	require.NoError(t, err)
	idem, err := idempotency.New(ctx, f.js, idempotency.Config{})
	require.NoError(t, err)
	store := &crashingStore{EventStore: f.store, crash: true}
	svc, err := app.NewService(store, f.sealer, f.numbers, idem, time.Now, slog.New(slog.DiscardHandler), app.Config{
		PayloadKey: bytes.Repeat([]byte{9}, 32), Categories: domain.NewCategories([]domain.Category{{Code: "bygglov"}}),
		Attachments: blobs,
	})
	require.NoError(t, err)
	content := bytes.Repeat([]byte("%PDF-1.4 ritning "), 10000)
	in := func() *intakev1.CaseInput {
		return &intakev1.CaseInput{
			Type: casev1.CaseType_CASE_TYPE_FRAGA, Channel: casev1.Channel_CHANNEL_LETTER, Category: "bygglov",
			Description: "Se ritningen.",
			Attachments: []*intakev1.AttachmentInput{
				{Name: "ritning.pdf", ContentType: "application/pdf", SizeBytes: int64(len(content)), AttachmentId: "r1", Content: content},
				{Name: "annan.pdf", ContentType: "application/pdf", SizeBytes: 10, AttachmentId: "r2"},
			},
		}
	}

	_, err = svc.Register(ctx, in(), "anna")
	require.Error(t, err)
	orphans, err := blobs.Stored(ctx)
	require.NoError(t, err)
	require.Len(t, orphans, 1, "the content was stored before the append failed")

	store.crash = false
	r, err := svc.Register(ctx, in(), "anna")
	require.NoError(t, err)
	evs, err := f.store.Read(ctx, r.CaseID)
	require.NoError(t, err)
	var cr casev1.CaseRegistered
	require.NoError(t, proto.Unmarshal(evs[0].Data, &cr))
	require.True(t, cr.GetAttachments()[0].GetStored())
	require.False(t, cr.GetAttachments()[1].GetStored(), "a reference without content is not stored")
	got, err := blobs.Get(ctx, r.CaseID, 0)
	require.NoError(t, err)
	require.Equal(t, content, got)

	n, err := svc.SweepOrphanAttachments(ctx, time.Hour)
	require.NoError(t, err)
	require.Zero(t, n, "nothing is older than the grace period yet")
	n, err = svc.SweepOrphanAttachments(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the orphan goes, the registered case's content stays")
	left, err := blobs.Stored(ctx)
	require.NoError(t, err)
	require.Len(t, left, 1)
	require.Contains(t, left, r.CaseID)
}
