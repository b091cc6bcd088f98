package app_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	esjs "github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
	"github.com/kontakt-se/kontakt/services/intake/app"
)

// flakyRelease fails its first releases, as during a leader election of
// the idempotency bucket's stream.
type flakyRelease struct {
	app.Idempotency
	failures atomic.Int64
}

func (f *flakyRelease) Release(ctx context.Context, key string, rec app.IdempotencyRecord) error {
	if f.failures.Add(-1) >= 0 {
		return fmt.Errorf("no response for the test: %w", eventstore.ErrUnavailable)
	}
	return f.Idempotency.Release(ctx, key, rec)
}

// A failed form submission gives up its claim even when the first tries
// to release it fail, so the client's retry is served at once instead of
// being told to wait until the claim goes stale.
func TestFailedFormReleasesItsClaimDespiteFailures(t *testing.T) {
	fr := &flakyRelease{}
	fr.failures.Store(2)
	f := newFixtureWithIdempotency(t,
		func(s *esjs.Store) app.EventStore { return &plainStore{store: s, failFirstAppend: true} },
		func(i app.Idempotency) app.Idempotency { fr.Idempotency = i; return fr })
	in := phoneCase(1)
	in.Channel = casev1.Channel_CHANNEL_FORM
	_, err := f.svc.SubmitForm(t.Context(), "e-tjanst", "key-1", in)
	require.ErrorIs(t, err, eventstore.ErrConflict)
	require.Negative(t, fr.failures.Load(), "released after the failed tries")
	require.NotContains(t, f.log.String(), "could not release")

	r, err := f.svc.SubmitForm(t.Context(), "e-tjanst", "key-1", in)
	require.NoError(t, err, "the retry claims the key at once")
	require.False(t, r.Replayed)
	f.checkStored(t, map[int]app.Registered{1: r})
}
