package readmodel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/services/routing/app"
)

// basicCase is one registered and routed case with an answer and a note.
func basicCase(id, queue string, at time.Time) []draft {
	return []draft{
		ev(id, registered(id, "KC-"+id, casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_PHONE, at)),
		ev(id, routed(id, queue, at.Add(time.Minute))),
		ev(id, &casev1.CaseAnswered{CaseId: id, AnsweredBy: "anna", Answer: sealedAs("k-"+id+"-answer", "ANSWERTEXT:"+id), AnsweredAt: ts(at.Add(2 * time.Minute))}),
		ev(id, &casev1.NoteAdded{CaseId: id, NoteId: "n1", Author: "anna", Text: sealedAs("k-"+id+"-answer", "NOTETEXT:"+id), AddedAt: ts(at.Add(3 * time.Minute))}),
	}
}

func TestApplyIsIdempotent(t *testing.T) {
	evs := history(0, slices.Concat(
		basicCase("a", "q", t0()),
		basicCase("b", "q", t0().Add(time.Hour)),
		[]draft{
			ev("a", &casev1.CaseAssigned{CaseId: "a", Assignee: "anna", AssignedAt: ts(t0().Add(time.Hour))}),
			ev("b", &casev1.CaseClosed{CaseId: "b", Resolution: casev1.Resolution_RESOLUTION_NO_ACTION, ClosedAt: ts(t0().Add(2 * time.Hour))}),
			ev("b", &casev1.CaseReopened{CaseId: "b", ReopenedAt: ts(t0().Add(3 * time.Hour))}),
			ev("a", &casev1.HoldPlaced{CaseId: "a", HoldId: "h1", PlacedAt: ts(t0().Add(3 * time.Hour))}),
		},
	)...)
	for _, tc := range []struct {
		name string
		// batches are applied in order after the whole history.
		again [][]eventstore.RecordedEvent
	}{
		{"the same batch again", [][]eventstore.RecordedEvent{evs}},
		{"every event again one by one", func() (out [][]eventstore.RecordedEvent) {
			for _, e := range evs {
				out = append(out, []eventstore.RecordedEvent{e})
			}
			return out
		}()},
		{"an overlapping suffix", [][]eventstore.RecordedEvent{evs[len(evs)/2:]}},
		{"the batch in reverse order", [][]eventstore.RecordedEvent{func() []eventstore.RecordedEvent {
			r := slices.Clone(evs)
			slices.Reverse(r)
			return r
		}()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var changes int
			s, _ := openStore(t, Options{Tokenizer: &fakeTokenizer{}, OnChange: func(app.Change) { changes++ }})
			require.NoError(t, s.Apply(t.Context(), evs...))
			want := dump(t, s)
			wantChanges := changes
			load, err := s.QueueLoad("q")
			require.NoError(t, err)
			require.Equal(t, app.QueueLoad{Queue: "q", Open: 2, Unassigned: 1, OpenByStatus: map[casev1.CaseStatus]int64{casev1.CaseStatus_CASE_STATUS_QUEUED: 1, casev1.CaseStatus_CASE_STATUS_ASSIGNED: 1}, OldestOpenAt: t0()}, load)

			for _, b := range tc.again {
				require.NoError(t, s.Apply(t.Context(), b...))
			}
			require.Equal(t, want, dump(t, s))
			require.Equal(t, wantChanges, changes, "no change is reported twice")
			checkConsistent(t, s)
			a, err := s.Get("a")
			require.NoError(t, err)
			require.Equal(t, 0, a.Reopenings)
			b, err := s.Get("b")
			require.NoError(t, err)
			require.Equal(t, 1, b.Reopenings, "re-applying never counts twice")
		})
	}
}

// TestBatchBoundariesDoNotMatter applies one long generated history in one
// batch and in random batches: the files must be identical, which is what
// makes a rebuild equal to incremental projection.
func TestBatchBoundariesDoNotMatter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	evs := history(0, genHistory(rng, 3000)...)
	one, _ := openStore(t, Options{Tokenizer: &fakeTokenizer{}})
	require.NoError(t, one.Apply(t.Context(), evs...))
	checkConsistent(t, one)

	many, _ := openStore(t, Options{Tokenizer: &fakeTokenizer{}})
	for rest := evs; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(40))
		require.NoError(t, many.Apply(t.Context(), rest[:n]...))
		rest = rest[n:]
	}
	require.Equal(t, dump(t, one), dump(t, many))
	loads, err := one.AllQueueLoads()
	require.NoError(t, err)
	require.NotEmpty(t, loads, "the history must leave open cases, or the comparison proves little")
}

func TestApplyIsOneTransaction(t *testing.T) {
	errKeyService := errors.New("key service unavailable")
	good := history(0, basicCase("a", "q", t0())...)
	for _, tc := range []struct {
		name string
		// batch is applied after good; it must fail as a whole.
		batch   func() []eventstore.RecordedEvent
		prepare func(*fakeTokenizer)
		ctx     func() context.Context
		wantErr error
	}{
		{
			name: "tokenizer fails for the second case after the first was written",
			batch: func() []eventstore.RecordedEvent {
				return history(4, slices.Concat(basicCase("b", "q", t0()), basicCase("c", "q", t0()))...)
			},
			prepare: func(f *fakeTokenizer) { f.setFail("c", errKeyService) },
			wantErr: errKeyService,
		},
		{
			name: "the last event is malformed",
			batch: func() []eventstore.RecordedEvent {
				evs := history(4, append(basicCase("b", "q", t0()), ev("a", &casev1.CaseClosed{CaseId: "a"}))...)
				evs[len(evs)-1].Data = []byte{0xff, 0xff, 0xff}
				return evs
			},
			wantErr: ErrMalformedEvent,
		},
		{
			name: "the first event is malformed",
			batch: func() []eventstore.RecordedEvent {
				evs := history(4, basicCase("b", "q", t0())...)
				evs[0].Data = []byte{0x0a, 0x7f}
				return evs
			},
			wantErr: ErrMalformedEvent,
		},
		{
			name: "the context ends",
			batch: func() []eventstore.RecordedEvent {
				return history(4, basicCase("b", "q", t0())...)
			},
			ctx: func() context.Context {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx
			},
			wantErr: context.Canceled,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := &fakeTokenizer{}
			var changes []app.Change
			s, path := openStore(t, Options{Tokenizer: tok, OnChange: func(c app.Change) { changes = append(changes, c) }})
			require.NoError(t, s.Apply(t.Context(), good...))
			before := dump(t, s)
			changes = nil
			if tc.prepare != nil {
				tc.prepare(tok)
			}
			ctx := t.Context()
			if tc.ctx != nil {
				ctx = tc.ctx()
			}
			batch := tc.batch()
			err := s.Apply(ctx, batch...)
			require.ErrorIs(t, err, tc.wantErr)

			require.Equal(t, before, dump(t, s), "nothing of the failed batch is visible")
			require.Empty(t, changes, "no change is reported for a failed batch")
			cp, err := s.Checkpoint()
			require.NoError(t, err)
			require.Equal(t, eventstore.Position(4), cp)
			_, err = s.Get("b")
			require.ErrorIs(t, err, app.ErrNotFound)

			// Closed and opened again, the file still says the same.
			require.NoError(t, s.Close())
			s2, err := Open(path, Options{Tokenizer: tok})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s2.Close() })
			require.Equal(t, before, dump(t, s2))
		})
	}
}

func TestCheckpointSurvivesReopen(t *testing.T) {
	tok := &fakeTokenizer{}
	s, path := openStore(t, Options{Tokenizer: tok})
	cp, err := s.Checkpoint()
	require.NoError(t, err)
	require.Zero(t, cp)

	evs := history(0, slices.Concat(basicCase("a", "q", t0()), basicCase("b", "q", t0()))...)
	require.NoError(t, s.Apply(t.Context(), evs[:5]...))
	require.NoError(t, s.Close())

	s, err = Open(path, Options{Tokenizer: tok})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.False(t, s.NeedsRebuild())
	cp, err = s.Checkpoint()
	require.NoError(t, err)
	require.Equal(t, evs[4].Position, cp)
	b, err := s.Get("b")
	require.NoError(t, err)
	require.Equal(t, casev1.CaseStatus_CASE_STATUS_REGISTERED, b.Status, "b's routing came after the checkpoint")

	// Resuming from the whole history skips what was applied.
	require.NoError(t, s.Apply(t.Context(), evs...))
	b, err = s.Get("b")
	require.NoError(t, err)
	require.Equal(t, "q", b.Queue)
	checkConsistent(t, s)
	h, err := s.History("b")
	require.NoError(t, err)
	require.Len(t, h, 4, "each event once in the history")
}

func TestOpenReportsChangedSLA(t *testing.T) {
	s, path := openStore(t, Options{})
	require.False(t, s.NeedsRebuild())
	require.NoError(t, s.Close())

	sla := DefaultSLA()
	sla[casev1.CaseType_CASE_TYPE_FRAGA] = 3 * 24 * time.Hour
	s, err := Open(path, Options{SLA: sla})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.True(t, s.NeedsRebuild())
	require.NoError(t, s.wipe())
	require.False(t, s.NeedsRebuild())
}

// TestCrashMidTransaction kills a process that applies batches as fast as
// it can, then checks that the file holds exactly the batches up to its
// checkpoint.
func TestCrashMidTransaction(t *testing.T) {
	if path := os.Getenv("READMODEL_CRASH_FILE"); path != "" {
		crashWriter(t, path)
		return
	}
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			path := t.TempDir() + "/crash.db"
			cmd := newSelfCommand(t, "TestCrashMidTransaction", "READMODEL_CRASH_FILE="+path)
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			// Wait until the writer committed its first batch, let it
			// run a little longer, then kill it mid-stream.
			buf := make([]byte, 6)
			_, err = out.Read(buf)
			require.NoError(t, err)
			require.Equal(t, "ready\n", string(buf))
			time.Sleep(time.Duration(50+round*120) * time.Millisecond)
			require.NoError(t, cmd.Process.Kill())
			_ = cmd.Wait()

			s, err := Open(path, Options{Tokenizer: &fakeTokenizer{}})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			cp, err := s.Checkpoint()
			require.NoError(t, err)
			require.NotZero(t, cp)
			// Each case is two events; batches hold whole cases.
			require.Zero(t, cp%(2*crashPerBatch))
			n := int(cp / 2)
			load, err := s.QueueLoad("q")
			require.NoError(t, err)
			require.EqualValues(t, n, load.Open, "exactly the cases up to the checkpoint are open")
			for _, i := range []int{0, n - 1} {
				r, err := s.Get(crashCaseID(i))
				require.NoError(t, err)
				require.Equal(t, "q", r.Queue)
			}
			_, err = s.Get(crashCaseID(n))
			require.ErrorIs(t, err, app.ErrNotFound, "nothing after the checkpoint")
			// The token file commits first, so it may hold the next
			// batch's tokens, never more; lookups leave those cases out
			// until the batch is replayed.
			require.NoError(t, s.tokens.Each(func(owner, _ string, _ []string) error {
				require.Less(t, owner, crashCaseID(n+crashPerBatch), "the token file is more than one batch ahead")
				return nil
			}))
			rows, err := s.FindByToken(tokenFor("contact", sealedAs("k-"+crashCaseID(n)+"-contact", "CONTACT:"+crashCaseID(n))))
			require.NoError(t, err)
			require.Empty(t, rows, "a case after the checkpoint is not found")
			// The projector replays the batch after the checkpoint.
			require.NoError(t, s.Apply(context.Background(), crashBatch(n/crashPerBatch)...))
			checkConsistent(t, s)
		})
	}
}

func crashCaseID(i int) string { return fmt.Sprintf("crash-%07d", i) }

// crashPerBatch is how many cases crashWriter applies per batch.
const crashPerBatch = 50

// crashBatch is the b-th batch crashWriter applies.
func crashBatch(b int) []eventstore.RecordedEvent {
	var drafts []draft
	for i := b * crashPerBatch; i < (b+1)*crashPerBatch; i++ {
		id := crashCaseID(i)
		drafts = append(drafts, ev(id, registered(id, "KC-"+id, casev1.CaseType_CASE_TYPE_BREV, casev1.Channel_CHANNEL_LETTER, t0().Add(time.Duration(i)*time.Second))), ev(id, routed(id, "q", t0())))
	}
	return history(eventstore.Position(2*b*crashPerBatch), drafts...)
}

// crashWriter is the process TestCrashMidTransaction kills.
func crashWriter(t *testing.T, path string) {
	s, err := Open(path, Options{Tokenizer: &fakeTokenizer{}})
	require.NoError(t, err)
	for b := 0; ; b++ {
		require.NoError(t, s.Apply(context.Background(), crashBatch(b)...))
		if b == 0 {
			_, _ = os.Stdout.WriteString("ready\n")
		}
	}
}

func TestListQueue(t *testing.T) {
	// 40 cases in queue q, registered in shuffled order; some closed,
	// some in other queues (one whose name starts like q's).
	rng := rand.New(rand.NewPCG(7, 7))
	types := []casev1.CaseType{casev1.CaseType_CASE_TYPE_FRAGA, casev1.CaseType_CASE_TYPE_FELANMALAN, casev1.CaseType_CASE_TYPE_SYNPUNKT, casev1.CaseType_CASE_TYPE_BREV}
	channels := []casev1.Channel{casev1.Channel_CHANNEL_PHONE, casev1.Channel_CHANNEL_EMAIL, casev1.Channel_CHANNEL_FORM}
	type model struct {
		id       string
		typ      casev1.CaseType
		ch       casev1.Channel
		reg, due time.Time
	}
	var open []model
	var drafts []draft
	for _, i := range rng.Perm(60) {
		id := fmt.Sprintf("c%02d", i)
		m := model{id: id, typ: types[i%4], ch: channels[i%3], reg: t0().Add(time.Duration(i) * time.Hour)}
		m.due = m.reg.Add(DefaultSLA()[m.typ])
		queue := "q"
		switch {
		case i%10 == 3:
			queue = "qa"
		case i%10 == 7:
			queue = "other"
		}
		drafts = append(drafts, ev(id, registered(id, "KC-"+id, m.typ, m.ch, m.reg)), ev(id, routed(id, queue, t0())))
		if i%10 == 5 {
			drafts = append(drafts, ev(id, &casev1.CaseClosed{CaseId: id, ClosedAt: ts(t0())}))
			continue
		}
		if queue == "q" {
			open = append(open, m)
		}
	}
	s, _ := openStore(t, Options{})
	require.NoError(t, s.Apply(t.Context(), history(0, drafts...)...))
	require.Len(t, open, 42)

	ids := func(ms []model) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.id)
		}
		return out
	}
	byAge := slices.Clone(open)
	sort.Slice(byAge, func(i, j int) bool { return byAge[i].reg.Before(byAge[j].reg) })
	byDue := slices.Clone(open)
	sort.Slice(byDue, func(i, j int) bool {
		if !byDue[i].due.Equal(byDue[j].due) {
			return byDue[i].due.Before(byDue[j].due)
		}
		return byDue[i].id < byDue[j].id
	})
	require.NotEqual(t, ids(byAge), ids(byDue), "the orders must differ for the test to tell them apart")
	filter := func(ms []model, keep func(model) bool) []model {
		return slices.DeleteFunc(slices.Clone(ms), func(m model) bool { return !keep(m) })
	}

	for _, tc := range []struct {
		name     string
		order    routingv1.QueueOrder
		types    []casev1.CaseType
		channels []casev1.Channel
		pageSize int
		want     []model
	}{
		{"age, unspecified order", routingv1.QueueOrder_QUEUE_ORDER_UNSPECIFIED, nil, nil, 5, byAge},
		{"age", routingv1.QueueOrder_QUEUE_ORDER_AGE, nil, nil, 7, byAge},
		{"age, page size divides the count", routingv1.QueueOrder_QUEUE_ORDER_AGE, nil, nil, 6, byAge},
		{"due", routingv1.QueueOrder_QUEUE_ORDER_DUE, nil, nil, 4, byDue},
		{"due, one page", routingv1.QueueOrder_QUEUE_ORDER_DUE, nil, nil, 0, byDue},
		{"types", routingv1.QueueOrder_QUEUE_ORDER_AGE, types[:2], nil, 3,
			filter(byAge, func(m model) bool { return m.typ == types[0] || m.typ == types[1] })},
		{"channels", routingv1.QueueOrder_QUEUE_ORDER_DUE, nil, channels[2:], 3,
			filter(byDue, func(m model) bool { return m.ch == channels[2] })},
		{"types and channels", routingv1.QueueOrder_QUEUE_ORDER_AGE, types[3:], channels[:1], 2,
			filter(byAge, func(m model) bool { return m.typ == types[3] && m.ch == channels[0] })},
		{"nothing matches", routingv1.QueueOrder_QUEUE_ORDER_AGE, []casev1.CaseType{casev1.CaseType_CASE_TYPE_UNSPECIFIED}, nil, 3, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			token := ""
			for pages := 0; ; pages++ {
				require.Less(t, pages, 100)
				rows, next, err := listQueue(s, "q", tc.order, tc.types, tc.channels, tc.pageSize, token)
				require.NoError(t, err)
				size := tc.pageSize
				if size == 0 {
					size = DefaultPageSize
				}
				require.LessOrEqual(t, len(rows), size)
				if next != "" {
					require.Len(t, rows, size, "only a full page has a next page")
				}
				for _, r := range rows {
					require.Equal(t, "q", r.Queue)
					require.NotEqual(t, casev1.CaseStatus_CASE_STATUS_CLOSED, r.Status)
					got = append(got, r.CaseID)
				}
				if next == "" {
					break
				}
				token = next
			}
			require.Equal(t, ids(tc.want), got)
		})
	}

	t.Run("invalid page tokens", func(t *testing.T) {
		_, next, err := listQueue(s, "q", routingv1.QueueOrder_QUEUE_ORDER_AGE, nil, nil, 2, "")
		require.NoError(t, err)
		require.NotEmpty(t, next)
		for _, tc := range []struct {
			name, queue string
			order       routingv1.QueueOrder
			token       string
		}{
			{"garbage", "q", routingv1.QueueOrder_QUEUE_ORDER_AGE, "not base64!"},
			{"other queue", "qa", routingv1.QueueOrder_QUEUE_ORDER_AGE, next},
			{"other order", "q", routingv1.QueueOrder_QUEUE_ORDER_DUE, next},
			{"truncated", "q", routingv1.QueueOrder_QUEUE_ORDER_AGE, next[:len(next)-3]},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, _, err := listQueue(s, tc.queue, tc.order, nil, nil, 2, tc.token)
				require.ErrorIs(t, err, app.ErrInvalidPageToken)
			})
		}
	})

	t.Run("pages stay stable while the queue changes", func(t *testing.T) {
		s, _ := openStore(t, Options{})
		var drafts []draft
		for i := range 10 {
			id := fmt.Sprintf("s%d", i)
			drafts = append(drafts, ev(id, registered(id, "KC-"+id, types[0], channels[0], t0().Add(time.Duration(i)*time.Hour))), ev(id, routed(id, "q", t0())))
		}
		require.NoError(t, s.Apply(t.Context(), history(0, drafts...)...))
		page1, next, err := listQueue(s, "q", routingv1.QueueOrder_QUEUE_ORDER_AGE, nil, nil, 4, "")
		require.NoError(t, err)
		require.Equal(t, "s3", page1[3].CaseID)
		// The last case of page 1 leaves and an older case arrives.
		require.NoError(t, s.Apply(t.Context(), history(20,
			ev("s3", &casev1.CaseClosed{CaseId: "s3"}),
			ev("old", registered("old", "KC-old", types[0], channels[0], t0().Add(-time.Hour))),
			ev("old", routed("old", "q", t0())),
		)...))
		page2, _, err := listQueue(s, "q", routingv1.QueueOrder_QUEUE_ORDER_AGE, nil, nil, 4, next)
		require.NoError(t, err)
		var got []string
		for _, r := range page2 {
			got = append(got, r.CaseID)
		}
		require.Equal(t, []string{"s4", "s5", "s6", "s7"}, got)
	})

	t.Run("page size is capped", func(t *testing.T) {
		s, _ := openStore(t, Options{})
		var drafts []draft
		for i := range MaxPageSize + 20 {
			id := fmt.Sprintf("m%04d", i)
			drafts = append(drafts, ev(id, registered(id, "", types[0], channels[0], t0().Add(time.Duration(i)*time.Second))), ev(id, routed(id, "q", t0())))
		}
		require.NoError(t, s.Apply(t.Context(), history(0, drafts...)...))
		rows, next, err := listQueue(s, "q", routingv1.QueueOrder_QUEUE_ORDER_AGE, nil, nil, 10_000, "")
		require.NoError(t, err)
		require.Len(t, rows, MaxPageSize)
		require.NotEmpty(t, next)
		rows, next, err = listQueue(s, "q", routingv1.QueueOrder_QUEUE_ORDER_AGE, nil, nil, -1, "")
		require.NoError(t, err)
		require.Len(t, rows, DefaultPageSize)
		require.NotEmpty(t, next)
	})
}

func TestChangeFeed(t *testing.T) {
	var changes []app.Change
	s, _ := openStore(t, Options{OnChange: func(c app.Change) { changes = append(changes, c) }})
	at := t0()
	evs := history(0,
		ev("a", registered("a", "KC-a", casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_PHONE, at)),
		ev("a", routed("a", "q1", at.Add(time.Minute))),
		ev("a", &casev1.CaseAssigned{CaseId: "a", Assignee: "anna", AssignedAt: ts(at.Add(2 * time.Minute))}),
		ev("a", &casev1.CaseMoved{CaseId: "a", FromQueue: "q1", ToQueue: "q2", MovedAt: ts(at.Add(3 * time.Minute))}),
		ev("a", &casev1.CaseReleased{CaseId: "a"}),
		ev("a", &casev1.CaseMarkedForPreservation{CaseId: "a"}),
		ev("a", &casev1.CaseForwarded{CaseId: "a", ToQueue: "q3", ToDepartment: "soc", Comment: sealedAs("k", "x")}),
		ev("a", &casev1.CaseForwarded{CaseId: "a", ToOfficer: "handl-1"}),
		ev("a", &casev1.CaseAnswered{CaseId: "a", Answer: sealedAs("k", "y")}),
		ev("a", &casev1.NoteAdded{CaseId: "a", Text: sealedAs("k", "z")}),
		ev("a", &casev1.HoldPlaced{CaseId: "a", HoldId: "h"}),
		ev("a", &casev1.HoldReleased{CaseId: "a", HoldId: "h"}),
		ev("a", &casev1.CaseClosed{CaseId: "a"}),
		ev("a", &casev1.CaseReopened{CaseId: "a"}),
		ev("a", &casev1.PersonalDataRedacted{CaseId: "a", DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_FREE_TEXT}}),
		ev("a", &casev1.PersonalDataRectified{CaseId: "a", DataClass: casev1.DataClass_DATA_CLASS_FREE_TEXT, Value: sealedAs("k2", "new")}),
		ev("nobody", &casev1.CaseAssigned{CaseId: "nobody", Assignee: "anna"}),
		ev("a", &casev1.CaseDeleted{CaseId: "a"}),
		ev("a", nil),
	)
	// Split in three batches: changes come in log order across batches.
	require.NoError(t, s.Apply(t.Context(), evs[:3]...))
	require.NoError(t, s.Apply(t.Context(), evs[3:10]...))
	require.NoError(t, s.Apply(t.Context(), evs[10:]...))

	type want struct{ kind, queue, prev string }
	wants := []want{
		{app.ChangeRegistered, "", ""}, {app.ChangeRouted, "q1", ""}, {app.ChangeAssigned, "q1", ""},
		{app.ChangeMoved, "q2", "q1"}, {app.ChangeReleased, "q2", ""},
		{app.ChangeForwarded, "q3", "q2"}, {app.ChangeForwarded, "q3", ""},
		{app.ChangeAnswered, "q3", ""}, {app.ChangeNoted, "q3", ""}, {app.ChangeHeld, "q3", ""}, {app.ChangeHeld, "q3", ""},
		{app.ChangeClosed, "q3", ""}, {app.ChangeReopened, "q3", ""}, {app.ChangeRedacted, "q3", ""}, {app.ChangeRectified, "q3", ""},
		{app.ChangeDeleted, "q3", ""},
	}
	var got []want
	for i, c := range changes {
		got = append(got, want{c.Kind, c.Queue, c.PreviousQueue})
		require.Equal(t, "a", c.Row.CaseID)
		if i > 0 {
			require.Greater(t, c.Position, changes[i-1].Position)
		}
	}
	require.Equal(t, wants, got)
	require.Equal(t, at.Add(3*time.Minute), changes[3].At, "At is the event's own time")
	require.Equal(t, evs[4].Recorded, changes[4].At, "or when it was recorded")
	require.Equal(t, "anna", changes[2].Row.Assignee)
	require.True(t, changes[9].Row.OnHold)
	require.False(t, changes[10].Row.OnHold)
	require.Equal(t, []casev1.DataClass{casev1.DataClass_DATA_CLASS_FREE_TEXT}, changes[13].Row.Redacted)
	require.Empty(t, changes[14].Row.Redacted, "rectification gives the class a value again")
	require.Empty(t, changes[12].Row.Redacted, "snapshots do not change afterwards")
}

func TestRedaction(t *testing.T) {
	const (
		contact  = casev1.DataClass_DATA_CLASS_CONTACT_DETAILS
		identity = casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER
		free     = casev1.DataClass_DATA_CLASS_FREE_TEXT
		att      = casev1.DataClass_DATA_CLASS_ATTACHMENTS
		answer   = casev1.DataClass_DATA_CLASS_ANSWER
	)
	reg := registered("a", "KC-a", casev1.CaseType_CASE_TYPE_FRAGA, casev1.Channel_CHANNEL_EMAIL, t0())
	contactTok, identityTok := tokenFor("contact", reg.GetContact()), tokenFor("identity", reg.GetIdentity())
	setup := slices.Concat(basicCase("a", "q", t0()), []draft{
		ev("a", &casev1.CaseForwarded{CaseId: "a", ToQueue: "q2", Comment: sealedAs("k-a-answer", "COMMENTTEXT:a")}),
	})
	ciphertexts := map[casev1.DataClass][]string{
		contact: {"CONTACT:a"}, identity: {"IDENTITY:a"}, free: {"FREETEXT:a"}, att: {"ATTNAMES:a"},
		answer: {"ANSWERTEXT:a", "NOTETEXT:a", "COMMENTTEXT:a"},
	}
	for _, tc := range []struct {
		name    string
		classes []casev1.DataClass
		// wantTokens are the tokens that still find the case.
		wantTokens []string
	}{
		{"contact details", []casev1.DataClass{contact}, []string{identityTok}},
		{"identity number", []casev1.DataClass{identity}, []string{contactTok}},
		{"contact and identity", []casev1.DataClass{identity, contact}, nil},
		{"free text", []casev1.DataClass{free}, []string{contactTok, identityTok}},
		{"attachment names", []casev1.DataClass{att}, []string{contactTok, identityTok}},
		{"answers", []casev1.DataClass{answer}, []string{contactTok, identityTok}},
		{"everything", []casev1.DataClass{answer, att, free, identity, contact}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openStore(t, Options{Tokenizer: &fakeTokenizer{}})
			evs := history(0, setup...)
			require.NoError(t, s.Apply(t.Context(), evs...))
			for _, tok := range []string{contactTok, identityTok} {
				rows, err := s.FindByToken(tok)
				require.NoError(t, err)
				require.Len(t, rows, 1)
			}
			require.NoError(t, s.Apply(t.Context(), history(eventstore.Position(len(evs)),
				ev("a", &casev1.PersonalDataRedacted{CaseId: "a", DataClasses: tc.classes, Reason: "erasure"}))...))

			row, err := s.Get("a")
			require.NoError(t, err)
			want := slices.Clone(tc.classes)
			slices.Sort(want)
			require.Equal(t, want, row.Redacted)
			require.Equal(t, slices.Contains(tc.classes, contact), row.Contact == nil)
			require.Equal(t, slices.Contains(tc.classes, identity), row.Identity == nil)
			require.Equal(t, slices.Contains(tc.classes, free), row.FreeText == nil)
			require.Equal(t, slices.Contains(tc.classes, att), row.AttachmentNames == nil)
			require.Len(t, row.Attachments, 1, "attachment metadata holds no names and stays")
			hist, err := s.History("a")
			require.NoError(t, err)
			texts := 0
			for _, h := range hist {
				if h.Text != nil {
					texts++
				}
			}
			if slices.Contains(tc.classes, answer) {
				require.Zero(t, texts)
			} else {
				require.Equal(t, 3, texts)
			}

			for _, tok := range []string{contactTok, identityTok} {
				rows, err := s.FindByToken(tok)
				require.NoError(t, err)
				require.Equal(t, slices.Contains(tc.wantTokens, tok), len(rows) == 1, "token %s", tok[:6])
			}
			// No copy of a redacted class is left in any bucket.
			all := fmt.Sprint(dump(t, s))
			for class, cts := range ciphertexts {
				for _, ct := range cts {
					require.Equal(t, !slices.Contains(tc.classes, class), bytes.Contains([]byte(all), []byte(fmt.Sprintf("%x", ct))), "ciphertext %s", ct)
				}
			}
			checkConsistent(t, s)
		})
	}

	t.Run("rectification replaces the copy and the tokens", func(t *testing.T) {
		s, _ := openStore(t, Options{Tokenizer: &fakeTokenizer{}})
		evs := history(0, setup...)
		newContact := sealedAs("k-a-contact-2", "NEWCONTACT:a")
		evs = append(evs, history(eventstore.Position(len(evs)),
			ev("a", &casev1.PersonalDataRedacted{CaseId: "a", DataClasses: []casev1.DataClass{contact}}),
			ev("a", &casev1.PersonalDataRectified{CaseId: "a", DataClass: contact, Value: newContact}),
		)...)
		require.NoError(t, s.Apply(t.Context(), evs...))
		row, err := s.Get("a")
		require.NoError(t, err)
		require.True(t, proto.Equal(newContact, row.Contact))
		require.Empty(t, row.Redacted)
		rows, err := s.FindByToken(contactTok)
		require.NoError(t, err)
		require.Empty(t, rows)
		rows, err = s.FindByToken(tokenFor("contact", newContact))
		require.NoError(t, err)
		require.Len(t, rows, 1)
		checkConsistent(t, s)
	})

	t.Run("a destroyed key skips the tokens, other errors stop", func(t *testing.T) {
		tok := &fakeTokenizer{}
		tok.setFail("a", fmt.Errorf("key of case a: %w", errNoTokens))
		s, _ := openStore(t, Options{Tokenizer: tok})
		require.NoError(t, s.Apply(t.Context(), history(0, setup...)...))
		_, err := s.Get("a")
		require.NoError(t, err)
		rows, err := s.FindByToken(contactTok)
		require.NoError(t, err)
		require.Empty(t, rows)
		checkConsistent(t, s)
	})
}

func TestDeletionDropsEverything(t *testing.T) {
	for _, tc := range []struct {
		name   string
		delete []draft
	}{
		{"CaseDeleted", []draft{ev("a", &casev1.CaseDeleted{CaseId: "a", CaseNumber: "KC-a"})}},
		{"stream deleted", []draft{ev("a", nil)}},
		{"CaseDeleted, then stream deleted", []draft{ev("a", &casev1.CaseDeleted{CaseId: "a"}), ev("a", nil)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var changes []app.Change
			s, _ := openStore(t, Options{Tokenizer: &fakeTokenizer{}, OnChange: func(c app.Change) { changes = append(changes, c) }})
			// Case b stays and shares the queue; the empty store with b
			// alone is what must remain.
			onlyB, _ := openStore(t, Options{Tokenizer: &fakeTokenizer{}})
			bEvs := history(0, basicCase("b", "q", t0().Add(time.Hour))...)
			require.NoError(t, onlyB.Apply(t.Context(), bEvs...))

			evs := history(4, slices.Concat(basicCase("a", "q", t0()), []draft{
				ev("a", &casev1.HoldPlaced{CaseId: "a", HoldId: "h"}),
			})...)
			require.NoError(t, s.Apply(t.Context(), bEvs...))
			require.NoError(t, s.Apply(t.Context(), evs...))
			load, err := s.QueueLoad("q")
			require.NoError(t, err)
			require.EqualValues(t, 2, load.Open)

			changes = nil
			require.NoError(t, s.Apply(t.Context(), history(evs[len(evs)-1].Position, tc.delete...)...))
			_, err = s.Get("a")
			require.ErrorIs(t, err, app.ErrNotFound)
			_, err = s.FindByNumber("KC-a")
			require.ErrorIs(t, err, app.ErrNotFound)
			_, err = s.History("a")
			require.ErrorIs(t, err, app.ErrNotFound)
			load, err = s.QueueLoad("q")
			require.NoError(t, err)
			require.Equal(t, app.QueueLoad{Queue: "q", Open: 1, Unassigned: 1, OpenByStatus: map[casev1.CaseStatus]int64{casev1.CaseStatus_CASE_STATUS_QUEUED: 1}, OldestOpenAt: t0().Add(time.Hour)}, load)
			require.Len(t, changes, 1, "one deletion, reported once")
			require.Equal(t, app.ChangeDeleted, changes[0].Kind)
			require.Equal(t, "q", changes[0].Queue)

			got, want := dump(t, s), dump(t, onlyB)
			delete(got, bucketMeta)
			delete(want, bucketMeta)
			require.Equal(t, want, got, "nothing of case a is left")
			checkConsistent(t, s)
		})
	}
}

func TestNothingStoredThatWasNotGiven(t *testing.T) {
	// Every field the read model has no use for carries a marker; none may
	// reach the file. The sealed free text carries one too, as a control
	// that the search finds what is there.
	const control = "CONTROLMARKER-sealed"
	reg := registered("a", "KC-a", casev1.CaseType_CASE_TYPE_FELANMALAN, casev1.Channel_CHANNEL_FORM, t0())
	reg.FreeText = sealedAs("k-a-free", control)
	reg.CoarseLocation = &casev1.CoarseLocation{Latitude: 59.33, Longitude: 18.06}
	markers := []string{"MARKER-rule", "MARKER-rulesversion", "MARKER-noteid", "MARKER-reason", "MARKER-plan", "MARKER-redactrule", "MARKER-holdreason", "MARKER-preservation", "MARKER-metadata", "MARKER-eventid", "MARKER-fromqueue"}
	evs := history(0,
		ev("a", reg),
		ev("a", &casev1.CaseRouted{CaseId: "a", Queue: "q", Rule: markers[0], RulesVersion: markers[1]}),
		ev("a", &casev1.CaseMoved{CaseId: "a", FromQueue: markers[10], ToQueue: "q2"}),
		ev("a", &casev1.NoteAdded{CaseId: "a", NoteId: markers[2], Author: "anna", Text: sealedAs("k", "n")}),
		ev("a", &casev1.HoldPlaced{CaseId: "a", HoldId: "h", Reason: markers[6]}),
		ev("a", &casev1.CaseMarkedForPreservation{CaseId: "a", Reason: markers[7]}),
		ev("a", &casev1.PersonalDataRedacted{CaseId: "a", DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_ATTACHMENTS}, Reason: markers[3], PlanVersion: markers[4], Rule: markers[5]}),
	)
	for i := range evs {
		evs[i].Metadata = map[string]string{"correlation-id": markers[8]}
		evs[i].ID = markers[9] + fmt.Sprint(i)
	}
	s, path := openStore(t, Options{Tokenizer: &fakeTokenizer{}})
	require.NoError(t, s.Apply(t.Context(), evs...))
	require.NoError(t, s.Close())
	file, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(file), control, "the control marker must be found")
	for _, m := range markers {
		require.NotContains(t, string(file), m)
	}
}
