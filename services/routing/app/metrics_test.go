package app_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/services/routing/app"
)

// firstResponses records what the commands observe.
type firstResponses struct {
	mu  sync.Mutex
	got []string
	d   []time.Duration
}

func (f *firstResponses) FirstResponse(queue string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, queue)
	f.d = append(f.d, d)
}

// A case's first answer is observed once, with its queue and the time
// since registration; a follow-up answer is not a first response.
func TestFirstResponseObservedOnceAtTheFirstAnswer(t *testing.T) {
	w := newTextWorld(t, nil)
	seen := &firstResponses{}
	w.cmds = app.NewCommands(app.CommandsConfig{Store: w.store, Sealer: w.sealer, Clock: time.Now, Logger: nil, Metrics: seen})
	id := w.routedCase(t)
	cs, err := w.cmds.Load(t.Context(), id)
	require.NoError(t, err)
	require.NotEmpty(t, cs.Queue)

	_, err = w.cmds.Answer(t.Context(), sup, id, "Sophämtningen kommer på tisdag.", casev1.AnswerDelivery_ANSWER_DELIVERY_UNSPECIFIED)
	require.NoError(t, err)
	_, err = w.cmds.Answer(t.Context(), sup, id, "Ett tillägg.", casev1.AnswerDelivery_ANSWER_DELIVERY_UNSPECIFIED)
	require.NoError(t, err)
	require.Equal(t, []string{cs.Queue}, seen.got)
	require.Positive(t, seen.d[0])
	require.Less(t, seen.d[0], time.Minute)

	// A refused answer observes nothing.
	_, err = w.cmds.Answer(t.Context(), sup, "no-such-case", "x", casev1.AnswerDelivery_ANSWER_DELIVERY_UNSPECIFIED)
	require.Error(t, err)
	require.Len(t, seen.got, 1)
}
