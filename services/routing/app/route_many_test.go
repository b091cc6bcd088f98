package app_test

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	esjs "github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
	"github.com/kontakt-se/kontakt/pkg/natstest"
	"github.com/kontakt-se/kontakt/services/routing/app"
	"github.com/kontakt-se/kontakt/services/routing/domain"
)

// registerCases appends a CaseRegistered for n new cases.
func registerCases(t *testing.T, store eventstore.Store, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
		data, err := proto.Marshal(&casev1.CaseRegistered{
			CaseId: ids[i], CaseNumber: fmt.Sprintf("KC-2026-%06d", i+1),
			Type: casev1.CaseType_CASE_TYPE_FELANMALAN, Channel: casev1.Channel_CHANNEL_PHONE,
			Category: "Gata", RegisteredAt: timestamppb.Now(),
		})
		require.NoError(t, err)
		_, err = store.Append(t.Context(), ids[i], eventstore.NoStream(), eventstore.Event{
			ID: uuid.NewString(), Type: string((&casev1.CaseRegistered{}).ProtoReflect().Descriptor().FullName()), Data: data,
		})
		require.NoError(t, err)
	}
	return ids
}

// routedOnce checks that each case has exactly one CaseRouted.
func routedOnce(t *testing.T, store eventstore.Store, ids []string) {
	t.Helper()
	routed := string((&casev1.CaseRouted{}).ProtoReflect().Descriptor().FullName())
	for _, id := range ids {
		evs, err := store.Read(t.Context(), id)
		require.NoError(t, err)
		n := 0
		for _, ev := range evs {
			if ev.Type == routed {
				n++
			}
		}
		require.Equal(t, 1, n, "case %s", id)
	}
}

// RouteMany routes a burst with one batch, and routers racing over the
// same cases still route each exactly once.
func TestRouteMany(t *testing.T) {
	js := natstest.JetStream(t, natstest.Embedded(t, 0))
	store, err := esjs.New(t.Context(), js, esjs.Config{})
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	rules := domain.DefaultRules("kontaktcenter")
	cmds := app.NewCommands(app.CommandsConfig{Store: store, Clock: time.Now, Logger: logger})

	ids := registerCases(t, store, 40)
	missing := uuid.NewString()
	errs := cmds.RouteMany(t.Context(), append(ids[:30:30], missing), rules)
	require.Empty(t, errs, "a missing case is not an error")
	routedOnce(t, store, ids[:30])
	// All 30 CaseRouted went in one atomic batch.
	st, err := js.Stream(t.Context(), esjs.DefaultStreamName)
	require.NoError(t, err)
	batches := map[string]bool{}
	for _, id := range ids[:30] {
		m, err := st.GetLastMsgForSubject(t.Context(), esjs.DefaultSubjectPrefix+"."+id)
		require.NoError(t, err)
		batches[m.Header.Get("Nats-Batch-Id")] = true
	}
	require.Len(t, batches, 1)
	require.NotContains(t, batches, "")

	// Again, with routed and new cases mixed, from three routers at once.
	var wg sync.WaitGroup
	all := make([]map[string]error, 3)
	for i := range all {
		other := app.NewCommands(app.CommandsConfig{Store: store, Clock: time.Now, Logger: logger})
		wg.Go(func() { all[i] = other.RouteMany(t.Context(), ids, rules) })
	}
	wg.Wait()
	for _, e := range all {
		require.Empty(t, e)
	}
	routedOnce(t, store, ids)
}
