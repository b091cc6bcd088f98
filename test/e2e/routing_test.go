package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

const (
	queued    = casev1.CaseStatus_CASE_STATUS_QUEUED
	assigned  = casev1.CaseStatus_CASE_STATUS_ASSIGNED
	forwarded = casev1.CaseStatus_CASE_STATUS_FORWARDED
	closed    = casev1.CaseStatus_CASE_STATUS_CLOSED
)

// TestRoutingWorkflowWithLiveQueue takes one question through the whole
// agent workflow while the agent UI's live view of kontaktcenter (and a
// case officer's view of gata) are open over gRPC-web, and checks every
// command's answer and that each watcher saw each change of its queue, in
// order.
func TestRoutingWorkflowWithLiveQueue(t *testing.T) {
	e := startRouting(t, "")
	probeKC := func() { e.register(t, fragaInput("Provärende", nil)) }
	probeGata := func() {
		_, n := e.register(t, fragaInput("Provärende till gata", nil))
		id := e.waitRouted(t, n).GetCaseId()
		ctx, cancel := e.as(t, sara)
		defer cancel()
		_, err := e.rc.MoveCase(ctx, &routingv1.MoveCaseRequest{CaseId: id, ToQueue: "gata"})
		require.NoError(t, err)
	}
	kc := e.watch(t, anna, "kontaktcenter", probeKC)
	gata := e.watch(t, olle, "gata", probeGata) // olle sees gata through his department

	// A generous bound: a change normally reaches the watcher in
	// milliseconds (the projector flushes after 5 ms idle).
	const bound = 5 * time.Second
	type observed struct {
		step, queue             string
		answerStatus, rowStatus casev1.CaseStatus
		answerAssignee, rowAss  string
		fromAnswer, fromCall    time.Duration
	}
	var seen []observed

	var caseID string
	// expect waits for the next change of the case on w and checks it;
	// answer is the command's answer, to compare with the watcher's row.
	expect := func(w *queueWatcher, step, change, queue string, answer *routingv1.CaseSummary, called, answered time.Time) watchEvent {
		t.Helper()
		ev := w.next(t, caseID, bound)
		require.Equal(t, change, ev.Change, "%s: watcher of %s got %v", step, w.queue, ev)
		require.Equal(t, queue, ev.Case.GetQueue(), "%s: %v", step, ev)
		require.Equal(t, caseID, ev.Case.GetCaseId())
		require.Less(t, ev.Got.Sub(called), bound, "%s: change reached the watcher of %s late", step, w.queue)
		seen = append(seen, observed{
			step: step, queue: w.queue, answerStatus: answer.GetStatus(), rowStatus: ev.Case.GetStatus(),
			answerAssignee: answer.GetAssignee(), rowAss: ev.Case.GetAssignee(),
			fromAnswer: ev.Got.Sub(answered), fromCall: ev.Got.Sub(called),
		})
		return ev
	}

	// Register: a question by phone, with contact details.
	ctx, cancel := e.as(t, anna)
	defer cancel()
	in := fragaInput("Sophämtningen uteblev", &intakev1.Contact{
		Name: "Sven Svensson", Phone: "070-123 45 67", Email: "sven.svensson@example.se",
	})
	called := time.Now()
	reg, err := e.ic.RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: in})
	answered := time.Now()
	require.NoError(t, err)
	caseID = reg.GetCaseId()
	ev := expect(kc, "register", "routed", "kontaktcenter",
		&routingv1.CaseSummary{Status: queued}, called, answered)
	require.Equal(t, reg.GetCaseNumber(), ev.Case.GetCaseNumber())
	require.Equal(t, casev1.CaseType_CASE_TYPE_FRAGA, ev.Case.GetType())
	require.Equal(t, casev1.Channel_CHANNEL_PHONE, ev.Case.GetChannel())
	require.Equal(t, "Sophämtningen uteblev", ev.Case.GetSubject(), "a member's live view shows the subject line")
	require.NotNil(t, ev.Case.GetDueAt(), "a question has a due time")

	// Claim (anna).
	called = time.Now()
	claim, err := e.rc.ClaimCase(ctx, &routingv1.ClaimCaseRequest{CaseId: caseID})
	answered = time.Now()
	require.NoError(t, err)
	require.Equal(t, assigned, claim.GetCase().GetStatus())
	require.Equal(t, "anna", claim.GetCase().GetAssignee())
	require.Equal(t, "kontaktcenter", claim.GetCase().GetQueue())
	ev = expect(kc, "claim", "assigned", "kontaktcenter", claim.GetCase(), called, answered)
	require.Equal(t, "anna", ev.Case.GetAssignee())

	// A note.
	called = time.Now()
	note, err := e.rc.AddNote(ctx, &routingv1.AddNoteRequest{CaseId: caseID, Text: "Ringde tillbaka, inget svar."})
	answered = time.Now()
	require.NoError(t, err)
	require.NotEmpty(t, note.GetNoteId())
	expect(kc, "note", "noted", "kontaktcenter", claim.GetCase(), called, answered)

	// Forward to the department queue gata.
	called = time.Now()
	fwd, err := e.rc.ForwardCase(ctx, &routingv1.ForwardCaseRequest{CaseId: caseID, ToQueue: "gata", Comment: "Gäller gatukontorets tömning."})
	answered = time.Now()
	require.NoError(t, err)
	require.Equal(t, forwarded, fwd.GetCase().GetStatus())
	require.Equal(t, "gata", fwd.GetCase().GetQueue())
	require.Empty(t, fwd.GetCase().GetAssignee())
	expect(kc, "forward", "left", "gata", fwd.GetCase(), called, answered)
	expect(gata, "forward", "forwarded", "gata", fwd.GetCase(), called, answered)

	// The case officer of stadsbyggnad (the department that owns gata).
	octx, ocancel := e.as(t, olle)
	defer ocancel()
	// Answering needs the case in hand (domain.Case.Answer: "an agent
	// claims the case first"), also for the officer it was forwarded to.
	_, err = e.rc.AnswerCase(octx, &routingv1.AnswerCaseRequest{CaseId: caseID, Answer: "Tömning sker på torsdag."})
	requireStatus(t, err, codes.PermissionDenied, "only the assignee or a supervisor may answer")
	called = time.Now()
	oclaim, err := e.rc.ClaimCase(octx, &routingv1.ClaimCaseRequest{CaseId: caseID})
	answered = time.Now()
	require.NoError(t, err)
	require.Equal(t, assigned, oclaim.GetCase().GetStatus())
	require.Equal(t, "olle", oclaim.GetCase().GetAssignee())
	expect(gata, "officer claim", "assigned", "gata", oclaim.GetCase(), called, answered)

	called = time.Now()
	ans, err := e.rc.AnswerCase(octx, &routingv1.AnswerCaseRequest{CaseId: caseID, Answer: "Tömning sker på torsdag."})
	answered = time.Now()
	require.NoError(t, err)
	require.Equal(t, assigned, ans.GetCase().GetStatus())
	expect(gata, "answer", "answered", "gata", ans.GetCase(), called, answered)

	called = time.Now()
	cl, err := e.rc.CloseCase(octx, &routingv1.CloseCaseRequest{CaseId: caseID, Resolution: casev1.Resolution_RESOLUTION_FORWARDED})
	answered = time.Now()
	require.NoError(t, err)
	require.Equal(t, closed, cl.GetCase().GetStatus())
	require.Empty(t, cl.GetCase().GetAssignee())
	expect(gata, "close", "closed", "gata", cl.GetCase(), called, answered)

	called = time.Now()
	re, err := e.rc.ReopenCase(octx, &routingv1.ReopenCaseRequest{CaseId: caseID})
	answered = time.Now()
	require.NoError(t, err)
	// domain.Case.Reopen: "FORWARDED if it was forwarded before it was
	// closed, so the same department picks it up again".
	require.Equal(t, forwarded, re.GetCase().GetStatus())
	require.Empty(t, re.GetCase().GetAssignee())
	expect(gata, "reopen", "reopened", "gata", re.GetCase(), called, answered)

	// Closed again, unclaimed, by the officer it is forwarded to.
	called = time.Now()
	cl2, err := e.rc.CloseCase(octx, &routingv1.CloseCaseRequest{CaseId: caseID, Resolution: casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY})
	answered = time.Now()
	require.NoError(t, err)
	require.Equal(t, closed, cl2.GetCase().GetStatus())
	expect(gata, "close again", "closed", "gata", cl2.GetCase(), called, answered)

	// Each watcher saw exactly the changes of its queue, in order, and is
	// still open.
	kinds := func(evs []watchEvent) []string {
		out := make([]string, 0, len(evs))
		for _, ev := range evs {
			out = append(out, ev.Change)
		}
		return out
	}
	time.Sleep(200 * time.Millisecond) // anything stray would have arrived by now
	require.Equal(t, []string{"routed", "assigned", "noted", "left"}, kinds(kc.forCase(caseID)))
	require.Equal(t, []string{"forwarded", "assigned", "answered", "closed", "reopened", "closed"}, kinds(gata.forCase(caseID)))
	for _, w := range []*queueWatcher{kc, gata} {
		open, err := w.open()
		require.True(t, open, "WatchQueue %s ended: %v", w.queue, err)
	}

	// The officer reads the whole history (an audited read).
	view, err := e.rc.GetCase(octx, &routingv1.GetCaseRequest{CaseId: caseID, Purpose: "handläggning"})
	require.NoError(t, err)
	var history []string
	var texts []string
	for _, h := range view.GetCase().GetHistory() {
		history = append(history, h.GetKind()+":"+h.GetActor())
		if h.GetText() != "" {
			texts = append(texts, h.GetText())
		}
	}
	require.Equal(t, []string{
		"registered:anna", "routed:", "assigned:anna", "noted:anna", "forwarded:anna",
		"assigned:olle", "answered:olle", "closed:olle", "reopened:olle", "closed:olle",
	}, history)
	require.Equal(t, []string{"Ringde tillbaka, inget svar.", "Gäller gatukontorets tömning.", "Tömning sker på torsdag."}, texts)
	require.Equal(t, closed, view.GetCase().GetSummary().GetStatus())
	require.Equal(t, "stadsbyggnad", view.GetCase().GetForwardedToDepartment())

	var lines []string
	var lat []time.Duration
	for _, o := range seen {
		lines = append(lines, fmt.Sprintf("  %-14s %-13s %7.1f ms after the answer, %7.1f ms after the call",
			o.step, o.queue, float64(o.fromAnswer.Microseconds())/1000, float64(o.fromCall.Microseconds())/1000))
		lat = append(lat, o.fromAnswer)
	}
	t.Logf("WatchQueue (gRPC-web) delivery, %d changes, max %.1f ms after the answer (bound %s):\n%s",
		len(seen), float64(slices.Max(lat).Microseconds())/1000, bound, strings.Join(lines, "\n"))

	// A watcher must learn that its stream is open (the server has
	// subscribed) without waiting for a change, so that the UI can list
	// the queue and then rely on the stream. Over native gRPC the response
	// headers say so at once; the browser UI speaks gRPC-web, where the
	// transcoder holds headers back until the first message (vanguard
	// v0.4.0), so the server must send something.
	t.Run("a watcher learns at once that its stream is open", func(t *testing.T) {
		opened := func(open func(ctx context.Context) error) time.Duration {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			start := time.Now()
			if err := open(ctx); err != nil || ctx.Err() != nil {
				return -1
			}
			return time.Since(start)
		}
		native := opened(func(ctx context.Context) error {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.token(t, anna))
			s, err := e.rc.WatchQueue(ctx, &routingv1.WatchQueueRequest{Queue: "felanmalan"})
			if err != nil {
				return err
			}
			_, err = s.Header()
			return err
		})
		web := opened(func(ctx context.Context) error {
			client := connect.NewClient[routingv1.WatchQueueRequest, routingv1.WatchQueueResponse](
				http.DefaultClient, "http://"+e.k.Addr+routingWatchMethod, connect.WithGRPCWeb())
			req := connect.NewRequest(&routingv1.WatchQueueRequest{Queue: "felanmalan"})
			req.Header().Set("Authorization", "Bearer "+e.token(t, anna))
			// Returns once the response begins: headers, or headers
			// with a first message.
			s, err := client.CallServerStream(ctx, req)
			if err != nil {
				return err
			}
			return s.Close()
		})
		show := func(d time.Duration) string {
			if d < 0 {
				return "nothing within 2 s"
			}
			return "after " + d.Round(10*time.Microsecond).String()
		}
		t.Logf("WatchQueue on a quiet queue: grpc-go headers %s; gRPC-web response %s", show(native), show(web))
		require.GreaterOrEqual(t, native, time.Duration(0), "grpc-go: no response headers within 2 s")
		require.GreaterOrEqual(t, web, time.Duration(0), "gRPC-web: nothing within 2 s on a quiet queue, so the client cannot tell that the stream is open")
	})

	// What the live view shows must be what the command answered: the
	// UI renders the row it is sent.
	t.Run("watcher rows agree with command answers", func(t *testing.T) {
		var differ []string
		for _, o := range seen {
			if o.step == "note" {
				continue // AddNote answers with a note id only
			}
			if o.answerStatus != o.rowStatus || o.answerAssignee != o.rowAss {
				differ = append(differ, fmt.Sprintf("%s (watcher of %s): command answered %s assignee %q, live view shows %s assignee %q",
					o.step, o.queue, o.answerStatus, o.answerAssignee, o.rowStatus, o.rowAss))
			}
		}
		require.Empty(t, differ, "the live view differs from the command's answer")
	})
}

// TestRoutingConcurrentClaim lets two members claim one case at the same
// moment, 20 times: exactly one wins, the other is told who did.
func TestRoutingConcurrentClaim(t *testing.T) {
	e := startRouting(t, "")
	const rounds = 20
	ids := make([]string, rounds)
	numbers := make([]string, rounds)
	for i := range rounds {
		ids[i], numbers[i] = e.register(t, fragaInput(fmt.Sprintf("Kapplöpning %d", i), nil))
	}
	for _, n := range numbers {
		e.waitRouted(t, n)
	}
	// One connection per agent, warmed up, so neither starts with a dial.
	clients := []routingv1.RoutingServiceClient{e.routing(1), e.routing(2)}
	for j, p := range agents {
		ctx, cancel := e.as(t, p)
		_, err := clients[j].ListQueues(ctx, &routingv1.ListQueuesRequest{})
		cancel()
		require.NoError(t, err)
	}

	wins := map[string]int{}
	for i, id := range ids {
		barrier := make(chan struct{})
		var ready, done sync.WaitGroup
		resps := make([]*routingv1.ClaimCaseResponse, len(agents))
		errs := make([]error, len(agents))
		for j, p := range agents {
			ctx, cancel := e.as(t, p)
			defer cancel()
			ready.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				ready.Done()
				<-barrier
				resps[j], errs[j] = clients[j].ClaimCase(ctx, &routingv1.ClaimCaseRequest{CaseId: id})
			}()
		}
		ready.Wait()
		close(barrier)
		done.Wait()

		var winner, loser = -1, -1
		for j := range agents {
			if errs[j] == nil {
				require.Equal(t, -1, winner, "round %d: both claims succeeded", i)
				winner = j
			} else {
				loser = j
			}
		}
		require.NotEqual(t, -1, winner, "round %d: nobody won: %v / %v", i, errs[0], errs[1])
		require.NotEqual(t, -1, loser, "round %d: nobody lost", i)
		w := agents[winner].subject
		require.Equal(t, w, resps[winner].GetCase().GetAssignee())
		require.Equal(t, assigned, resps[winner].GetCase().GetStatus())
		requireStatus(t, errs[loser], codes.Aborted, "already assigned to "+w)
		wins[w]++
	}
	t.Logf("%d rounds: wins %v", rounds, wins)

	// The store holds one CaseAssigned per case.
	assignedPerCase := countType(e.events(t), caseAssignedType)
	for _, id := range ids {
		require.Equal(t, 1, assignedPerCase[id], "case %s", id)
	}
}

// TestRoutingAuthorisation checks who may do what, and that every refusal
// says why.
func TestRoutingAuthorisation(t *testing.T) {
	e := startRouting(t, "")
	idA, numA := e.register(t, fragaInput("Fall A", nil))
	idB, numB := e.register(t, fragaInput("Fall B", nil))
	idF, numF := e.register(t, fragaInput("Fall F", nil))
	for _, n := range []string{numA, numB, numF} {
		e.waitRouted(t, n)
	}
	actx, acancel := e.as(t, anna)
	defer acancel()
	_, err := e.rc.ForwardCase(actx, &routingv1.ForwardCaseRequest{CaseId: idF, ToQueue: "gata"})
	require.NoError(t, err)
	e.waitSummary(t, numF, "it forwarded to gata", func(s *routingv1.CaseSummary) bool { return s.GetQueue() == "gata" })

	do := func(p principal, f func(ctx context.Context) error) error {
		ctx, cancel := e.as(t, p)
		defer cancel()
		return f(ctx)
	}
	claim := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.rc.ClaimCase(ctx, &routingv1.ClaimCaseRequest{CaseId: id})
			return err
		}
	}
	getCase := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.rc.GetCase(ctx, &routingv1.GetCaseRequest{CaseId: id, Purpose: "test"})
			return err
		}
	}
	listQueue := func(q string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.rc.ListQueueCases(ctx, &routingv1.ListQueueCasesRequest{Queue: q})
			return err
		}
	}
	answer := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: id, Answer: "Svar."})
			return err
		}
	}
	closeCase := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.rc.CloseCase(ctx, &routingv1.CloseCaseRequest{CaseId: id, Resolution: casev1.Resolution_RESOLUTION_ANSWERED_DIRECTLY})
			return err
		}
	}
	forward := func(id, q string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.rc.ForwardCase(ctx, &routingv1.ForwardCaseRequest{CaseId: id, ToQueue: q})
			return err
		}
	}
	addNote := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.rc.AddNote(ctx, &routingv1.AddNoteRequest{CaseId: id, Text: "Anteckning."})
			return err
		}
	}
	release := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.rc.ReleaseCase(ctx, &routingv1.ReleaseCaseRequest{CaseId: id})
			return err
		}
	}
	reopen := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.rc.ReopenCase(ctx, &routingv1.ReopenCaseRequest{CaseId: id})
			return err
		}
	}
	assign := func(id, to string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.rc.AssignCase(ctx, &routingv1.AssignCaseRequest{CaseId: id, Assignee: to})
			return err
		}
	}
	move := func(id, to string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.rc.MoveCase(ctx, &routingv1.MoveCaseRequest{CaseId: id, ToQueue: to})
			return err
		}
	}
	allRouting := map[string]func(context.Context) error{
		"ListQueues": func(ctx context.Context) error {
			_, err := e.rc.ListQueues(ctx, &routingv1.ListQueuesRequest{})
			return err
		},
		"ListQueueCases": listQueue("kontaktcenter"),
		"WatchQueue": func(ctx context.Context) error {
			s, err := e.rc.WatchQueue(ctx, &routingv1.WatchQueueRequest{Queue: "kontaktcenter"})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		},
		"GetCase": getCase(idA),
		"FindCases": func(ctx context.Context) error {
			_, err := e.rc.FindCases(ctx, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_CaseNumber{CaseNumber: numA}})
			return err
		},
		"ClaimCase":   claim(idA),
		"ReleaseCase": release(idA),
		"AssignCase":  assign(idA, "bo"),
		"MoveCase":    move(idA, "felanmalan"),
		"AddNote":     addNote(idA),
		"ForwardCase": forward(idA, "gata"),
		"AnswerCase":  answer(idA),
		"CloseCase":   closeCase(idA),
		"ReopenCase":  reopen(idA),
		"ListAuditTrail": func(ctx context.Context) error {
			_, err := e.rc.ListAuditTrail(ctx, &routingv1.ListAuditTrailRequest{Subject: &routingv1.ListAuditTrailRequest_CaseId{CaseId: idA}})
			return err
		},
	}

	type row struct {
		name      string
		who       principal
		call      func(context.Context) error
		code      codes.Code
		fragments []string
	}
	table := []row{
		// An agent in no queue.
		{"non-member claims", cilla, claim(idA), codes.PermissionDenied, []string{"not in one of your queues"}},
		{"non-member reads", cilla, getCase(idA), codes.PermissionDenied, []string{"not in your queues"}},
		{"non-member lists the queue", cilla, listQueue("kontaktcenter"), codes.PermissionDenied, []string{`not a member of queue "kontaktcenter"`}},
		// An officer of another department, on a case forwarded to
		// stadsbyggnad.
		{"other department reads", olof, getCase(idF), codes.PermissionDenied, []string{"not in your queues and not forwarded to you"}},
		{"other department claims", olof, claim(idF), codes.PermissionDenied, []string{"nor forwarded to you or your department"}},
		{"other department answers", olof, answer(idF), codes.PermissionDenied, []string{"nor forwarded to you or your department"}},
		{"other department closes", olof, closeCase(idF), codes.PermissionDenied, []string{"nor forwarded to you or your department"}},
		{"other department notes", olof, addNote(idF), codes.PermissionDenied, []string{"nor forwarded to you or your department"}},
		{"other department lists gata", olof, listQueue("gata"), codes.PermissionDenied, []string{`not a member of queue "gata"`}},
		// The right department may.
		{"stadsbyggnad reads", olle, getCase(idF), codes.OK, nil},
		{"stadsbyggnad lists gata", olle, listQueue("gata"), codes.OK, nil},
	}
	for name, call := range allRouting {
		table = append(table, row{"analyst " + name, alva, call, codes.PermissionDenied, nil})
	}
	for _, tt := range table {
		t.Run(tt.name, func(t *testing.T) {
			requireStatus(t, do(tt.who, tt.call), tt.code, tt.fragments...)
		})
	}
	for _, tt := range []struct {
		name  string
		who   principal
		queue string
	}{{"non-member", cilla, "kontaktcenter"}, {"analyst", alva, "kontaktcenter"}, {"other department", olof, "gata"}} {
		t.Run("WatchQueue denied to "+tt.name, func(t *testing.T) {
			web, native, msg := e.watchCodes(t, tt.who, tt.queue)
			require.Equal(t, codes.PermissionDenied.String(), web.String(), "gRPC-web: %s", msg)
			require.Equal(t, codes.PermissionDenied.String(), native.String(), "grpc-go")
		})
	}
	t.Run("WatchQueue allowed to the department", func(t *testing.T) {
		web, native, msg := e.watchCodes(t, olle, "gata")
		require.Equal(t, codes.OK.String(), web.String(), msg)
		require.Equal(t, codes.OK.String(), native.String())
	})

	// Only the assignee or a supervisor answers, closes, forwards or
	// releases a claimed case; another member is told why.
	t.Run("only the assignee or a supervisor", func(t *testing.T) {
		require.NoError(t, do(anna, claim(idA)))
		requireStatus(t, do(bo, answer(idA)), codes.PermissionDenied, "only the assignee or a supervisor may answer")
		requireStatus(t, do(bo, closeCase(idA)), codes.PermissionDenied, "only the assignee, a supervisor or the officer the case was forwarded to may close")
		requireStatus(t, do(bo, forward(idA, "gata")), codes.PermissionDenied, "only the assignee or a supervisor may forward an assigned case")
		requireStatus(t, do(bo, release(idA)), codes.PermissionDenied, "only the assignee or a supervisor may release")
		requireStatus(t, do(bo, claim(idA)), codes.Aborted, "already assigned to anna")
		require.NoError(t, do(bo, addNote(idA)), "any member may add a note")
		ctx, cancel := e.as(t, sara)
		defer cancel()
		resp, err := e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: idA, Answer: "Svar från arbetsledaren."})
		require.NoError(t, err)
		require.Equal(t, "anna", resp.GetCase().GetAssignee(), "a supervisor's answer leaves the case with anna")
	})

	t.Run("a closed case is not forwarded until reopened", func(t *testing.T) {
		require.NoError(t, do(anna, closeCase(idA)))
		requireStatus(t, do(anna, forward(idA, "gata")), codes.FailedPrecondition, "a closed case cannot be forwarded until reopened")
		requireStatus(t, do(sara, forward(idA, "gata")), codes.FailedPrecondition, "a closed case cannot be forwarded until reopened")
		requireStatus(t, do(anna, answer(idA)), codes.FailedPrecondition, "a closed case cannot be answered until reopened")
		requireStatus(t, do(bo, claim(idA)), codes.FailedPrecondition, "a closed case cannot be claimed until reopened")
		requireStatus(t, do(anna, closeCase(idA)), codes.FailedPrecondition, "case is already closed")
		require.NoError(t, do(anna, addNote(idA)), "a note on a closed case is allowed")
		require.NoError(t, do(bo, reopen(idA)))
		requireStatus(t, do(bo, reopen(idA)), codes.FailedPrecondition, "only a closed case can be reopened")
		ctx, cancel := e.as(t, anna)
		defer cancel()
		resp, err := e.rc.ForwardCase(ctx, &routingv1.ForwardCaseRequest{CaseId: idA, ToQueue: "gata"})
		require.NoError(t, err)
		require.Equal(t, forwarded, resp.GetCase().GetStatus())
		require.Equal(t, "gata", resp.GetCase().GetQueue())
	})

	t.Run("a supervisor moves and reassigns", func(t *testing.T) {
		require.NoError(t, do(anna, claim(idB)))
		requireStatus(t, do(anna, assign(idB, "bo")), codes.PermissionDenied)
		requireStatus(t, do(anna, move(idB, "felanmalan")), codes.PermissionDenied)
		requireStatus(t, do(sara, move(idB, "finns-inte")), codes.InvalidArgument, "unknown queue")
		ctx, cancel := e.as(t, sara)
		defer cancel()
		as, err := e.rc.AssignCase(ctx, &routingv1.AssignCaseRequest{CaseId: idB, Assignee: "bo"})
		require.NoError(t, err)
		require.Equal(t, "bo", as.GetCase().GetAssignee())
		require.Equal(t, assigned, as.GetCase().GetStatus())
		requireStatus(t, do(sara, assign(idB, "bo")), codes.FailedPrecondition, "already assigned to bo")
		mv, err := e.rc.MoveCase(ctx, &routingv1.MoveCaseRequest{CaseId: idB, ToQueue: "felanmalan"})
		require.NoError(t, err)
		require.Equal(t, "felanmalan", mv.GetCase().GetQueue())
		require.Equal(t, queued, mv.GetCase().GetStatus(), "a move starts the case afresh in the new queue")
		require.Empty(t, mv.GetCase().GetAssignee())
		// bo is no member of felanmalan and no longer holds the case.
		requireStatus(t, do(bo, claim(idB)), codes.PermissionDenied, "not in one of your queues")
	})

	// The read model must agree with the domain after the move: the case
	// is unassigned in felanmalan, and bo, who held it, may no longer
	// read it.
	t.Run("read model after a move", func(t *testing.T) {
		s := e.waitSummary(t, numB, "it in felanmalan", func(s *routingv1.CaseSummary) bool { return s.GetQueue() == "felanmalan" })
		var wrong []string
		if s.GetAssignee() != "" || s.GetStatus() != queued {
			wrong = append(wrong, fmt.Sprintf("FindCases shows status %s assignee %q after the move (the command answered QUEUED, no assignee)", s.GetStatus(), s.GetAssignee()))
		}
		ctx, cancel := e.as(t, anna)
		defer cancel()
		list, err := e.rc.ListQueueCases(ctx, &routingv1.ListQueueCasesRequest{Queue: "felanmalan"})
		require.NoError(t, err)
		i := slices.IndexFunc(list.GetCases(), func(c *routingv1.CaseSummary) bool { return c.GetCaseId() == idB })
		require.GreaterOrEqual(t, i, 0, "the moved case is not listed in felanmalan")
		if c := list.GetCases()[i]; c.GetAssignee() != "" {
			wrong = append(wrong, fmt.Sprintf("ListQueueCases(felanmalan) shows status %s assignee %q", c.GetStatus(), c.GetAssignee()))
		}
		if err := do(bo, getCase(idB)); status.Code(err) != codes.PermissionDenied {
			wrong = append(wrong, fmt.Sprintf("bo, who held the case before the move and is no member of felanmalan, may still GetCase it (%s)", status.Code(err)))
		}
		require.Empty(t, wrong)
	})

	t.Run("the new queue's member claims the moved case", func(t *testing.T) {
		require.NoError(t, do(anna, claim(idB)))
	})
}

// TestRoutingAuditedReads checks that every read of personal data is in
// the audit trail once, findable by case and by person, that queue lists
// are not audited, and that no audit log means no personal data.
func TestRoutingAuditedReads(t *testing.T) {
	e := startRouting(t, "")
	local := randDigits(t, 7)
	phoneNational := "070-" + local[:3] + " " + local[3:5] + " " + local[5:]
	phoneE164 := "+4670" + local
	pnr := personnummer(1990, 3, 14, 100+int(local[0]-'0')*10, false)
	contact := &intakev1.Contact{
		Name: "Maja Persson " + local, Phone: phoneNational, Email: "maja." + local + "@example.se", IdentityNumber: pnr,
	}
	id, number := e.register(t, fragaInput("Fråga om bygglov "+local, contact))
	e.waitRouted(t, number)
	personal := []string{contact.Name, local, contact.Email, pnr}

	start := time.Now().Add(-time.Second)
	type read struct {
		who     principal
		role    string
		purpose string
	}
	reads := []read{
		{anna, "agent", "återkoppling"},
		{anna, "agent", "återkoppling"},
		{sara, "supervisor", "kvalitetsgranskning"},
		{dina, "dpo", "registerutdrag"},
	}
	for _, r := range reads {
		ctx, cancel := e.as(t, r.who)
		resp, err := e.rc.GetCase(ctx, &routingv1.GetCaseRequest{CaseId: id, Purpose: r.purpose})
		cancel()
		require.NoError(t, err, r.who.subject)
		pd := resp.GetCase().GetPersonalData()
		require.Equal(t, contact.Name, pd.GetContact().GetName())
		require.Equal(t, contact.Email, pd.GetContact().GetEmail())
		require.Equal(t, phoneE164, pd.GetContact().GetPhone())
		require.Equal(t, pnr, pd.GetIdentity().GetNumber())
		require.Equal(t, "Fråga om bygglov "+local, pd.GetFreeText().GetSubject())
		require.Empty(t, pd.GetRedacted())
	}

	wantClasses := []casev1.DataClass{
		casev1.DataClass_DATA_CLASS_CONTACT_DETAILS, casev1.DataClass_DATA_CLASS_IDENTITY_NUMBER, casev1.DataClass_DATA_CLASS_FREE_TEXT,
	}
	slices.Sort(wantClasses)
	byCase := e.auditTrail(t, &routingv1.ListAuditTrailRequest{Subject: &routingv1.ListAuditTrailRequest_CaseId{CaseId: id}})
	require.Len(t, byCase, len(reads), "one audit record per GetCase")
	auditIDs := map[string]bool{}
	for i, rec := range byCase {
		r := reads[i]
		require.Equal(t, r.who.subject, rec.GetActor(), "record %d", i)
		require.Equal(t, r.role, rec.GetRole(), "record %d", i)
		require.Equal(t, r.purpose, rec.GetPurpose(), "record %d", i)
		require.Equal(t, id, rec.GetCaseId())
		require.Equal(t, getCaseRPC, rec.GetRpc())
		require.Equal(t, wantClasses, rec.GetDataClasses(), "record %d", i)
		require.NotEmpty(t, rec.GetAuditId())
		require.False(t, auditIDs[rec.GetAuditId()], "audit id used twice")
		auditIDs[rec.GetAuditId()] = true
		at := rec.GetReadAt().AsTime()
		require.True(t, at.After(start) && at.Before(time.Now().Add(time.Second)), "read_at %s", at)
		if i > 0 {
			require.False(t, at.Before(byCase[i-1].GetReadAt().AsTime()), "records are oldest first")
		}
	}

	// By the person: phone (national form), e-mail, identity number.
	listings := 0
	for name, req := range map[string]*routingv1.ListAuditTrailRequest{
		"phone":    {Subject: &routingv1.ListAuditTrailRequest_Phone{Phone: phoneNational}},
		"e-mail":   {Subject: &routingv1.ListAuditTrailRequest_Email{Email: strings.ToUpper(contact.Email)}},
		"identity": {Subject: &routingv1.ListAuditTrailRequest_IdentityNumber{IdentityNumber: tenDigit(pnr)}},
	} {
		// A listing by a person's identifier is a search for that person:
		// each one leaves a record, which the next listing shows.
		got := e.auditTrail(t, req)
		require.Len(t, got, len(byCase)+listings, "by %s", name)
		for i := range byCase {
			require.True(t, proto.Equal(byCase[i], got[i]), "by %s, record %d", name, i)
		}
		for _, rec := range got[len(byCase):] {
			require.Equal(t, dina.subject, rec.GetActor())
			require.Equal(t, listAuditTrailRPC, rec.GetRpc())
		}
		listings++
	}

	// Queue lists are not audited; a search by the person's phone is,
	// once per case found.
	ctx, cancel := e.as(t, anna)
	defer cancel()
	list, err := e.rc.ListQueueCases(ctx, &routingv1.ListQueueCasesRequest{Queue: "kontaktcenter"})
	require.NoError(t, err)
	require.True(t, slices.ContainsFunc(list.GetCases(), func(s *routingv1.CaseSummary) bool { return s.GetCaseId() == id }))
	_, err = e.rc.FindCases(ctx, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_Phone{Phone: phoneNational}, Purpose: "återuppringning"})
	require.NoError(t, err)
	trail := e.auditTrail(t, &routingv1.ListAuditTrailRequest{Subject: &routingv1.ListAuditTrailRequest_CaseId{CaseId: id}})
	require.Len(t, trail, len(reads)+listings+1, "ListQueueCases wrote an audit record, or FindCases did not write one")
	last := trail[len(trail)-1]
	require.Equal(t, findCasesRPC, last.GetRpc())
	require.Equal(t, anna.subject, last.GetActor())
	require.Equal(t, "återuppringning", last.GetPurpose())
	require.Equal(t, []casev1.DataClass{casev1.DataClass_DATA_CLASS_CONTACT_DETAILS}, last.GetDataClasses())

	// No audit log, no personal data.
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	require.NoError(t, e.js.DeleteStream(dctx, auditStream))
	resp, err := e.rc.GetCase(ctx, &routingv1.GetCaseRequest{CaseId: id, Purpose: "återkoppling"})
	requireStatus(t, err, codes.Unavailable)
	require.Nil(t, resp)
	msg := status.Convert(err).Message()
	for _, v := range personal {
		require.NotContains(t, msg, v)
	}
	t.Logf("GetCase without an audit log: %s: %s", status.Code(err), msg)
	// Reads that need no audit record still work.
	_, err = e.rc.ListQueueCases(ctx, &routingv1.ListQueueCasesRequest{Queue: "kontaktcenter"})
	require.NoError(t, err)

	t.Run("ListAuditTrail without an audit log is Unavailable", func(t *testing.T) {
		dpo, cancel := e.as(t, dina)
		defer cancel()
		_, err := e.rc.ListAuditTrail(dpo, &routingv1.ListAuditTrailRequest{Subject: &routingv1.ListAuditTrailRequest_CaseId{CaseId: id}})
		requireStatus(t, err, codes.Unavailable)
	})
}

// TestRoutingFindCases finds a case by its number and, through the blind
// index, by the person's identifiers written differently from how they
// were registered.
func TestRoutingFindCases(t *testing.T) {
	e := startRouting(t, "")
	local := randDigits(t, 7)
	pnr := personnummer(1981, 12, 18, 200+int(local[1]-'0')*10, false)
	email := "kalle." + local + "@example.se"
	contact := &intakev1.Contact{
		Name: "Kalle Karlsson", Email: email, Phone: "+4670" + local, IdentityNumber: pnr,
	}
	subject := "Fråga om parkeringstillstånd " + local
	id, number := e.register(t, fragaInput(subject, contact))
	// A second person's case, which no search below may return.
	other, otherNumber := e.register(t, fragaInput("Någon annan", &intakev1.Contact{Name: "Eva", Phone: "070-765 43 21", Email: "eva@example.se"}))
	e.waitRouted(t, number)
	e.waitRouted(t, otherNumber)

	find := func(p principal, req *routingv1.FindCasesRequest) []*routingv1.CaseSummary {
		t.Helper()
		ctx, cancel := e.as(t, p)
		defer cancel()
		resp, err := e.rc.FindCases(ctx, req)
		require.NoError(t, err)
		return resp.GetCases()
	}
	keys := map[string]*routingv1.FindCasesRequest{
		"case number":        {Key: &routingv1.FindCasesRequest_CaseNumber{CaseNumber: number}},
		"e-mail, other case": {Key: &routingv1.FindCasesRequest_Email{Email: "  Kalle." + local + "@EXAMPLE.se "}},
		"phone, national":    {Key: &routingv1.FindCasesRequest_Phone{Phone: "070-" + local[:3] + " " + local[3:5] + " " + local[5:]}},
		"phone, 0046":        {Key: &routingv1.FindCasesRequest_Phone{Phone: "0046 70 " + local}},
		"identity, 10 digit": {Key: &routingv1.FindCasesRequest_IdentityNumber{IdentityNumber: tenDigit(pnr)}},
		"identity, dashed":   {Key: &routingv1.FindCasesRequest_IdentityNumber{IdentityNumber: dashed(tenDigit(pnr))}},
	}
	for name, req := range keys {
		t.Run(name, func(t *testing.T) {
			got := find(anna, req)
			require.Len(t, got, 1)
			require.Equal(t, id, got[0].GetCaseId())
			require.Equal(t, number, got[0].GetCaseNumber())
			require.Equal(t, subject, got[0].GetSubject(), "a member sees the subject line")
			require.Equal(t, "kontaktcenter", got[0].GetQueue())

			// Somebody who may not read the case finds only where to send
			// the caller (see TestFindCasesPrivacyByDefault).
			got = find(cilla, req)
			require.Len(t, got, 1)
			require.True(t, got[0].GetLimited())
			require.Equal(t, number, got[0].GetCaseNumber())
			require.Empty(t, got[0].GetCaseId(), "a non-member must not see the case id")
			require.Empty(t, got[0].GetSubject(), "a non-member must not see the subject line")
		})
	}
	t.Run("no match", func(t *testing.T) {
		require.Empty(t, find(anna, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_Email{Email: "ingen." + local + "@example.se"}}))
		require.Empty(t, find(anna, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_CaseNumber{CaseNumber: "KC-1999-000001"}}))
		got := find(anna, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_Phone{Phone: "070-765 43 21"}})
		require.Len(t, got, 1)
		require.Equal(t, other, got[0].GetCaseId())
	})
	t.Run("invalid key", func(t *testing.T) {
		ctx, cancel := e.as(t, anna)
		defer cancel()
		_, err := e.rc.FindCases(ctx, &routingv1.FindCasesRequest{Key: &routingv1.FindCasesRequest_Phone{Phone: "inte ett nummer"}})
		requireStatus(t, err, codes.InvalidArgument, "phone")
		require.NotContains(t, status.Convert(err).Message(), "inte ett nummer", "the error repeats the key")
	})
}

// TestRoutingExactlyOnceAfterKill registers a burst of cases, kills the
// process with SIGKILL in the middle, restarts it on the same data and
// checks that every acknowledged case is routed exactly once.
func TestRoutingExactlyOnceAfterKill(t *testing.T) {
	const (
		total   = 200
		workers = 8
		killAt  = 100
	)
	dataDir := filepath.Join(t.TempDir(), "data")
	k1 := Start(t, Options{DataDir: dataDir, ExtraConfig: routingQueues})
	token := k1.Token(t, "anna", "agent")

	var mu sync.Mutex
	acked := map[string]bool{}
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	dial := func(k *Kontakt) []intakev1.IntakeServiceClient {
		clients := make([]intakev1.IntakeServiceClient, 4)
		for i := range clients {
			clients[i] = intakev1.NewIntakeServiceClient(k.Dial(t))
		}
		return clients
	}
	// burst registers n cases from workers goroutines; a worker stops at
	// its first error. It returns the errors.
	burst := func(clients []intakev1.IntakeServiceClient, n int) (failed []error) {
		var next atomic.Int64
		var wg sync.WaitGroup
		var fmu sync.Mutex
		for w := range workers {
			wg.Go(func() {
				for i := next.Add(1); i <= int64(n); i = next.Add(1) {
					ctx, cancel := withToken(token)
					resp, err := clients[w%len(clients)].RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: fragaInput(fmt.Sprintf("Skur %d", i), nil)})
					cancel()
					if err != nil {
						fmu.Lock()
						failed = append(failed, err)
						fmu.Unlock()
						return
					}
					mu.Lock()
					acked[resp.GetCaseId()] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return failed
	}

	clients := dial(k1)
	result := make(chan []error, 1)
	go func() { result <- burst(clients, total) }()
	if !eventually(60*time.Second, func() bool { return ackedCount() >= killAt }) {
		t.Fatalf("only %d cases acknowledged in 60 s", ackedCount())
	}
	k1.kill9(t)
	var failed []error
	select {
	case failed = <-result:
	case <-time.After(60 * time.Second):
		t.Fatal("the burst did not end after the kill")
	}
	require.NotEmpty(t, failed, "the burst finished before the kill")
	mu.Lock()
	beforeKill := len(acked)
	mu.Unlock()
	for _, err := range failed {
		require.Contains(t, []codes.Code{codes.Unavailable, codes.Canceled, codes.Internal, codes.DeadlineExceeded}, status.Code(err), "%v", err)
	}
	t.Logf("killed kontakt with SIGKILL after %d acknowledged cases; %d calls failed with an unknown outcome", beforeKill, len(failed))

	e := startRouting(t, dataDir)
	require.Empty(t, burst(dial(e.k), total-beforeKill), "registration after the restart")
	mu.Lock()
	require.Len(t, acked, total)
	mu.Unlock()

	// Wait until every acknowledged case is routed.
	var evs []storedEvent
	var routed, registered map[string]int
	ok := eventually(30*time.Second, func() bool {
		evs = e.events(t)
		routed, registered = routedPerCase(evs)
		for id := range acked {
			if routed[id] == 0 {
				return false
			}
		}
		// Cases that landed without an answer are routed too.
		for id := range registered {
			if routed[id] == 0 {
				return false
			}
		}
		return true
	})
	var missing []string
	for id := range registered {
		if routed[id] == 0 {
			missing = append(missing, id)
		}
	}
	require.True(t, ok, "not every case was routed within 30 s; %d unrouted: %v", len(missing), missing)
	// Let a duplicate, if any were coming, land.
	time.Sleep(500 * time.Millisecond)
	evs = e.events(t)
	routed, registered = routedPerCase(evs)
	for id := range acked {
		require.Equal(t, 1, registered[id], "case %s: CaseRegistered events", id)
		require.Equal(t, 1, routed[id], "case %s: CaseRouted events", id)
	}
	for id, n := range routed {
		require.Equal(t, 1, n, "case %s: CaseRouted events", id)
		require.Equal(t, 1, registered[id], "case %s routed but registered %d times", id, registered[id])
	}
	unacked := len(registered) - len(acked)
	t.Logf("%d cases in the store: %d acknowledged (%d before the kill), %d landed without an answer; each routed exactly once",
		len(registered), len(acked), beforeKill, unacked)

	// The read model survived the kill without applying anything twice:
	// kontaktcenter's counter is the number of cases.
	ctx, cancel := e.as(t, sara)
	defer cancel()
	var load int64
	require.True(t, eventually(10*time.Second, func() bool {
		resp, err := e.rc.ListQueues(ctx, &routingv1.ListQueuesRequest{})
		require.NoError(t, err)
		for _, q := range resp.GetQueues() {
			if q.GetName() == "kontaktcenter" {
				load = q.GetOpenCases()
			}
		}
		return load == int64(len(registered))
	}), "kontaktcenter has %d open cases, the store %d", load, len(registered))
}

// TestRoutingRetriesAFailedRoute makes the router's first attempt to route
// a case fail (the store refuses a second event on any case for a moment)
// and checks that the case is routed once the store accepts events again.
// The router says it learns of unrouted cases "at start and after every
// failure" from the read model's list.
func TestRoutingRetriesAFailedRoute(t *testing.T) {
	e := startRouting(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := e.js.Stream(ctx, casesStream)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	original := info.Config

	// Refuse every event after a case's first: registrations still land,
	// CaseRouted does not.
	refusing := original
	refusing.MaxMsgsPerSubject = 1
	refusing.Discard = jetstream.DiscardNew
	refusing.DiscardNewPerSubject = true
	_, err = e.js.UpdateStream(ctx, refusing)
	require.NoError(t, err)
	restored := false
	restore := func() {
		if !restored {
			_, err := e.js.UpdateStream(context.Background(), original)
			require.NoError(t, err)
			restored = true
		}
	}
	t.Cleanup(restore)

	id, number := e.register(t, fragaInput("Routas när lagret fungerar igen", nil))
	require.True(t, eventually(10*time.Second, func() bool {
		return strings.Contains(e.k.stderr.String(), "routing failed") && strings.Contains(e.k.stderr.String(), id)
	}), "the router did not report a failed routing of %s", id)
	restore()

	// A new case is routed at once: the router works again.
	_, control := e.register(t, fragaInput("Kontrollärende", nil))
	e.waitRouted(t, control)

	// The case whose routing failed must follow within a generous bound,
	// not wait for the next five-minute sweep.
	var last *routingv1.CaseSummary
	routed := eventually(20*time.Second, func() bool {
		last = e.summaryByNumber(t, number)
		return last != nil && last.GetQueue() != ""
	})
	require.True(t, routed, "case %s is still %s and in no queue 20 s after the store recovered", number, last.GetStatus())
	require.Equal(t, 1, countType(e.events(t), caseRoutedType)[id])
}

// TestRoutingBurstIsRoutedPromptly registers questions as fast as the
// binary takes them for 25 s, more than the router routes meanwhile, and
// checks that every one of them is in its queue soon after the burst: the
// router's backlog must not be dropped and left to a five-minute sweep.
func TestRoutingBurstIsRoutedPromptly(t *testing.T) {
	const (
		burstFor = 25 * time.Second
		writers  = 32
	)
	e := startRouting(t, "")
	token := e.token(t, anna)
	clients := make([]intakev1.IntakeServiceClient, 8)
	for i := range clients {
		clients[i] = intakev1.NewIntakeServiceClient(e.k.Dial(t))
	}
	var count atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	stop := time.Now().Add(burstFor)
	for w := range writers {
		wg.Go(func() {
			for time.Now().Before(stop) {
				ctx, cancel := withToken(token)
				_, err := clients[w%len(clients)].RegisterCase(ctx, &intakev1.RegisterCaseRequest{Case: fragaInput("Skur", nil)})
				cancel()
				if err != nil {
					errs <- err
					return
				}
				count.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	registered := count.Load()
	burstEnd := time.Now()

	ctx, cancel := e.as(t, sara)
	defer cancel()
	open := func() int64 {
		resp, err := e.rc.ListQueues(ctx, &routingv1.ListQueuesRequest{})
		require.NoError(t, err)
		for _, q := range resp.GetQueues() {
			if q.GetName() == "kontaktcenter" {
				return q.GetOpenCases()
			}
		}
		return 0
	}
	atEnd := open()
	// Done when all are queued; give up after 45 s, or after 10 s without
	// progress.
	n, last, moved := atEnd, atEnd, time.Now()
	for n < registered && time.Since(burstEnd) < 45*time.Second && time.Since(moved) < 10*time.Second {
		time.Sleep(250 * time.Millisecond)
		if n = open(); n != last {
			last, moved = n, time.Now()
		}
	}
	t.Logf("%d questions registered in %s (%.0f/s); %d in the queue when the burst ended, %d after %s",
		registered, burstFor, float64(registered)/burstFor.Seconds(), atEnd, n, time.Since(burstEnd).Round(time.Millisecond))
	require.Equal(t, registered, n, "%d registered cases are in no queue and routing has stopped making progress", registered-n)
}
