package readmodel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
	"github.com/kontakt-se/kontakt/pkg/natstest"
	"github.com/kontakt-se/kontakt/services/routing/app"
)

// t0 is the start of the test histories.
func t0() time.Time { return time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC) }

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// seal makes a stand-in for sealed data. The read model treats it as
// opaque bytes, so the "ciphertext" may be readable: tests search the file
// for it.
func sealedAs(keyID, content string) *casev1.SealedPersonalData {
	return &casev1.SealedPersonalData{KeyId: keyID, Ciphertext: []byte(content)}
}

func typeOf(m proto.Message) string { return string(m.ProtoReflect().Descriptor().FullName()) }

// pending events, before a store gives them positions.
type draft struct {
	stream string
	msg    proto.Message // nil for a stream deletion
}

func ev(stream string, m proto.Message) draft { return draft{stream: stream, msg: m} }

// history numbers drafts like JetStream would: position = revision =
// sequence, starting after the given position.
func history(after eventstore.Position, drafts ...draft) []eventstore.RecordedEvent {
	out := make([]eventstore.RecordedEvent, 0, len(drafts))
	pos := after
	for _, d := range drafts {
		pos++
		r := eventstore.RecordedEvent{Stream: d.stream, Position: pos, Revision: eventstore.Revision(pos), Recorded: t0().Add(time.Duration(pos) * time.Second)}
		if d.msg == nil {
			r.Type = eventstore.TypeStreamDeleted
			r.Revision = 0
		} else {
			data, err := proto.Marshal(d.msg)
			if err != nil {
				panic(err)
			}
			r.ID = uuid.NewString()
			r.Type = typeOf(d.msg)
			r.Data = data
		}
		out = append(out, r)
	}
	return out
}

// registered builds a CaseRegistered with sealed data derived from the
// case id, so every case has its own ciphertexts and tokens.
func registered(id, number string, typ casev1.CaseType, ch casev1.Channel, at time.Time) *casev1.CaseRegistered {
	return &casev1.CaseRegistered{
		CaseId: id, CaseNumber: number, Type: typ, Channel: ch, Category: "avfall",
		RegisteredAt: ts(at), RegisteredBy: "agent-1",
		Contact:         sealedAs("k-"+id+"-contact", "CONTACT:"+id),
		Identity:        sealedAs("k-"+id+"-identity", "IDENTITY:"+id),
		FreeText:        sealedAs("k-"+id+"-free", "FREETEXT:"+id),
		AttachmentNames: sealedAs("k-"+id+"-att", "ATTNAMES:"+id),
		Attachments:     []*casev1.Attachment{{AttachmentId: "att-" + id, ContentType: "image/png", SizeBytes: 1234}},
	}
}

func routed(id, queue string, at time.Time) *casev1.CaseRouted {
	return &casev1.CaseRouted{CaseId: id, Queue: queue, Rule: "default", RoutedAt: ts(at)}
}

// fakeTokenizer derives tokens from the sealed bytes, as the real one
// derives them from the values inside. It can be told to fail, or to
// give none (as the real one does for a case whose keys are destroyed).
type fakeTokenizer struct {
	mu sync.Mutex
	// fail maps a case id to the error its tokens give; errNoTokens
	// gives no tokens and no error.
	fail  map[string]error
	calls atomic.Int64
}

// errNoTokens tells the fake tokenizer to give a case no tokens.
var errNoTokens = errors.New("no tokens: the case's keys are destroyed")

func tokenFor(kind string, s *casev1.SealedPersonalData) string {
	sum := sha256.Sum256(append([]byte(kind+"\x00"), s.GetCiphertext()...))
	return hex.EncodeToString(sum[:16])
}

func (f *fakeTokenizer) Tokens(_ context.Context, caseID string, contact, identity *casev1.SealedPersonalData) ([]string, error) {
	f.calls.Add(1)
	f.mu.Lock()
	err := f.fail[caseID]
	f.mu.Unlock()
	if errors.Is(err, errNoTokens) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	if contact != nil {
		out = append(out, tokenFor("contact", contact))
	}
	if identity != nil {
		out = append(out, tokenFor("identity", identity))
	}
	return out, nil
}

func (f *fakeTokenizer) setFail(caseID string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail == nil {
		f.fail = map[string]error{}
	}
	if err == nil {
		delete(f.fail, caseID)
		return
	}
	f.fail[caseID] = err
}

// tb is what the helpers need of a test: testing.T and rapid.T both
// have it.
type tb interface {
	require.TestingT
	Helper()
}

// openStore opens a read model in a fresh temporary file.
func openStore(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "routing.db")
	s, err := Open(path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

// dump returns every key and value of every bucket, hex encoded, and the
// token file's tokens (as the pseudo-bucket "token file"): two stores
// with equal dumps answer every query the same. The token epoch, random
// per file, is left out.
func dump(t tb, s *Store) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			m := map[string]string{}
			out[string(name)] = m
			return b.ForEach(func(k, v []byte) error {
				if string(name) == bucketMeta && string(k) == keyTokenEpoch {
					return nil
				}
				m[hex.EncodeToString(k)] = hex.EncodeToString(v)
				return nil
			})
		})
	}))
	toks := map[string]string{}
	require.NoError(t, s.tokens.Each(func(owner, slot string, ts []string) error {
		toks[owner+"/"+slot] = strings.Join(ts, ",")
		return nil
	}))
	out["token file"] = toks
	return out
}

// checkConsistent recounts everything that is derived from the rows (the
// queue counters, both open-case indexes, the number index and the
// unrouted index) and requires the stored copies to match; and it
// requires every token in the token file to belong to a stored case and
// to stand for a sealed value the case still holds (the fake tokenizer's
// tokens are derived from the ciphertexts), so no redacted, rectified or
// deleted value keeps one.
func checkConsistent(t tb, s *Store) {
	t.Helper()
	wantLoads := map[string]app.QueueLoad{}
	wantAge, wantDue := map[string]string{}, map[string]string{}
	wantNumbers, wantUnrouted := map[string]string{}, map[string]string{}
	possible := map[string][]string{} // case id -> tokens its values give
	var openDue []app.CaseRow         // the open cases, for PastDue
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketCases)).ForEach(func(k, v []byte) error {
			rec, err := decodeRecord(string(k), v)
			require.NoError(t, err)
			r := rec.row(s.sla)
			require.Equal(t, string(k), r.CaseID)
			if r.Number != "" {
				wantNumbers[hex.EncodeToString([]byte(r.Number))] = hex.EncodeToString(k)
			}
			if r.Status == casev1.CaseStatus_CASE_STATUS_REGISTERED {
				wantUnrouted[hex.EncodeToString(k)] = ""
			}
			possible[r.CaseID] = nil
			if r.Contact != nil {
				possible[r.CaseID] = append(possible[r.CaseID], tokenFor("contact", r.Contact))
			}
			if r.Identity != nil {
				possible[r.CaseID] = append(possible[r.CaseID], tokenFor("identity", r.Identity))
			}
			if !r.IsOpen() {
				return nil
			}
			l := wantLoads[r.Queue]
			l.Queue = r.Queue
			l.Open++
			if r.IsUnassigned() {
				l.Unassigned++
			}
			if l.OpenByStatus == nil {
				l.OpenByStatus = map[casev1.CaseStatus]int64{}
			}
			l.OpenByStatus[r.Status]++
			if l.OldestOpenAt.IsZero() || r.RegisteredAt.Before(l.OldestOpenAt) {
				l.OldestOpenAt = r.RegisteredAt
			}
			wantLoads[r.Queue] = l
			openDue = append(openDue, r)
			age, due, _, err := openEntries(&r)
			require.NoError(t, err)
			wantAge[hex.EncodeToString(age.key)] = hex.EncodeToString(age.value)
			wantDue[hex.EncodeToString(due.key)] = hex.EncodeToString(due.value)
			return nil
		})
	}))
	d := dump(t, s)
	require.Equal(t, wantAge, d[bucketByAge], "age index")
	require.Equal(t, wantDue, d[bucketByDue], "due index")
	require.Equal(t, wantNumbers, d[bucketNumbers], "number index")
	require.Equal(t, wantUnrouted, d[bucketUnrouted], "unrouted index")
	unrouted, err := s.Unrouted()
	require.NoError(t, err)
	require.Len(t, unrouted, len(wantUnrouted))
	require.NoError(t, s.tokens.Each(func(owner, slot string, toks []string) error {
		have, stored := possible[owner]
		require.True(t, stored, "the token file holds tokens of case %s, which the read model does not", owner)
		require.Subset(t, have, toks, "case %s keeps tokens of values it no longer holds", owner)
		for _, tok := range toks {
			found, err := s.FindByToken(tok)
			require.NoError(t, err)
			require.True(t, slices.ContainsFunc(found, func(r app.CaseRow) bool { return r.CaseID == owner }), "FindByToken misses case %s", owner)
		}
		return nil
	}))

	loads, err := s.AllQueueLoads()
	require.NoError(t, err)
	got := map[string]app.QueueLoad{}
	for _, l := range loads {
		got[l.Queue] = l
		one, err := s.QueueLoad(l.Queue)
		require.NoError(t, err)
		require.Equal(t, l, one)
	}
	require.Equal(t, wantLoads, got, "queue loads")

	// PastDue, at each due time and just after it, against a count of
	// the open rows.
	for _, at := range openDue {
		if at.DueAt.IsZero() {
			continue
		}
		for _, now := range []time.Time{at.DueAt, at.DueAt.Add(time.Nanosecond)} {
			want := 0
			for _, r := range openDue {
				if r.Queue == at.Queue && !r.DueAt.IsZero() && r.DueAt.Before(now) {
					want++
				}
			}
			n, err := s.PastDue(at.Queue, now)
			require.NoError(t, err)
			require.Equal(t, want, n, "cases past due in %s at %s", at.Queue, now)
		}
	}
}

// natsHarness is an embedded JetStream server with one event store.
type natsHarness struct {
	nc     *nats.Conn
	es     *jetstream.Store
	js     natsjs.JetStream
	stream string
}

// startNATS starts an embedded server for the test; syncInterval > 0
// trades durability for speed (benchmarks only).
func startNATS(t testing.TB, syncInterval time.Duration) *natsHarness {
	t.Helper()
	srv := natstest.Embedded(t, syncInterval)
	nc, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return newHarness(t, nc)
}

func newHarness(t testing.TB, nc *nats.Conn) *natsHarness {
	t.Helper()
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	i := strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	cfg := jetstream.Config{StreamName: "RM_" + i, SubjectPrefix: "rm" + i + ".case"}
	es, err := jetstream.New(context.Background(), js, cfg)
	require.NoError(t, err)
	return &natsHarness{nc: nc, es: es, js: js, stream: cfg.StreamName}
}

// head is the WithHead function for the harness's stream.
func (h *natsHarness) head(ctx context.Context) (eventstore.Position, error) {
	st, err := h.js.Stream(ctx, h.stream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return eventstore.Position(info.State.LastSeq), nil
}

// append writes drafts in order, each with an exact expectation, and
// deletes streams for drafts without a message.
func (h *natsHarness) append(t testing.TB, drafts ...draft) {
	t.Helper()
	ctx := context.Background()
	revs := map[string]eventstore.Revision{}
	for _, d := range drafts {
		if d.msg == nil {
			require.NoError(t, h.es.Delete(ctx, d.stream))
			continue
		}
		data, err := proto.Marshal(d.msg)
		require.NoError(t, err)
		exp := eventstore.NoStream()
		if r, ok := revs[d.stream]; ok {
			exp = eventstore.Exact(r)
		} else if evs, err := h.es.Read(ctx, d.stream); err == nil {
			exp = eventstore.Exact(evs[len(evs)-1].Revision)
		}
		rev, err := h.es.Append(ctx, d.stream, exp, eventstore.Event{ID: uuid.NewString(), Type: typeOf(d.msg), Data: data})
		require.NoError(t, err)
		revs[d.stream] = rev
	}
}

// runProjector runs p until the test ends.
func runProjector(t testing.TB, p *Projector) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// waitCaughtUp waits until the read model's checkpoint reaches the head
// of the log.
func waitCaughtUp(t testing.TB, h *natsHarness, s *Store) {
	t.Helper()
	head, err := h.head(context.Background())
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		cp, err := s.Checkpoint()
		return err == nil && cp >= head
	}, 20*time.Second, 5*time.Millisecond, "read model did not reach position %d", head)
}

// queues are the queues generated histories use; "kund" and "kundtjanst"
// share a prefix on purpose.
func queues() []string { return []string{"kund", "kundtjanst", "gata", "soc"} }

// genHistory generates n drafts over many cases: every kind of case
// event, in plausible but not always valid order, with unknown events,
// redactions, rectifications and deletions (a CaseDeleted followed by the
// stream's deletion). Deleted cases get no further events, as the store
// refuses them. It returns the drafts and the ids of cases never deleted.
func genHistory(rng *rand.Rand, n int) []draft {
	type gcase struct {
		id  string
		seq int
	}
	var live []*gcase
	var out []draft
	nextCase := 0
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	people := []string{"anna", "bertil", "cecilia"}
	for len(out) < n {
		if len(live) == 0 || rng.IntN(6) == 0 {
			nextCase++
			id := fmt.Sprintf("case-%04d", nextCase)
			at := t0().Add(time.Duration(rng.IntN(72*60)) * time.Minute)
			m := registered(id, fmt.Sprintf("KC-2026-%06d", nextCase), casev1.CaseType(rng.IntN(5)), casev1.Channel(rng.IntN(7)), at)
			if rng.IntN(4) == 0 {
				m.Contact, m.Identity = nil, nil // a visit: nothing to index
			}
			if rng.IntN(5) == 0 {
				// Two cases of one person share the tokens.
				other := fmt.Sprintf("case-%04d", max(1, nextCase-1))
				m.Contact = sealedAs("k-"+id+"-contact", "CONTACT:"+other)
			}
			out = append(out, ev(id, m))
			live = append(live, &gcase{id: id})
			continue
		}
		c := live[rng.IntN(len(live))]
		c.seq++
		at := t0().Add(time.Duration(72*60+len(out)) * time.Minute)
		id := c.id
		text := func() *casev1.SealedPersonalData {
			return sealedAs("k-"+id+"-answer", fmt.Sprintf("ANSWER:%s:%d", id, c.seq))
		}
		var m proto.Message
		switch rng.IntN(17) {
		case 0, 1:
			m = routed(id, pick(queues()), at)
		case 2:
			m = &casev1.CaseMoved{CaseId: id, ToQueue: pick(queues()), MovedBy: "sup", MovedAt: ts(at)}
		case 3, 4:
			m = &casev1.CaseAssigned{CaseId: id, Assignee: pick(people), AssignedBy: "sup", AssignedAt: ts(at)}
		case 5:
			m = &casev1.CaseReleased{CaseId: id, ReleasedBy: pick(people), ReleasedAt: ts(at)}
		case 6:
			f := &casev1.CaseForwarded{CaseId: id, Comment: text(), ForwardedBy: pick(people), ForwardedAt: ts(at)}
			if rng.IntN(2) == 0 {
				f.ToQueue, f.ToDepartment = pick(queues()), "dept"
			} else {
				f.ToOfficer = "officer-" + pick(people)
			}
			m = f
		case 7:
			m = &casev1.CaseAnswered{CaseId: id, AnsweredBy: pick(people), Answer: text(), AnsweredAt: ts(at)}
		case 8:
			m = &casev1.NoteAdded{CaseId: id, NoteId: fmt.Sprint(c.seq), Author: pick(people), Text: text(), AddedAt: ts(at)}
		case 9:
			m = &casev1.CaseClosed{CaseId: id, ClosedBy: pick(people), Resolution: casev1.Resolution(1 + rng.IntN(4)), ClosedAt: ts(at)}
		case 10:
			m = &casev1.CaseReopened{CaseId: id, ReopenedBy: pick(people), ReopenedAt: ts(at)}
		case 11:
			m = &casev1.HoldPlaced{CaseId: id, HoldId: pick([]string{"h1", "h2"}), PlacedBy: "dpo", PlacedAt: ts(at)}
		case 12:
			m = &casev1.HoldReleased{CaseId: id, HoldId: pick([]string{"h1", "h2"}), ReleasedBy: "dpo", ReleasedAt: ts(at)}
		case 13:
			var classes []casev1.DataClass
			for c := casev1.DataClass(1); c <= casev1.DataClass_DATA_CLASS_ANSWER; c++ {
				if rng.IntN(2) == 0 {
					classes = append(classes, c)
				}
			}
			m = &casev1.PersonalDataRedacted{CaseId: id, DataClasses: classes, Reason: "retention", RedactedAt: ts(at)}
		case 14:
			cl := casev1.DataClass(1 + rng.IntN(5))
			m = &casev1.PersonalDataRectified{CaseId: id, DataClass: cl, Value: sealedAs("k-"+id+"-r", fmt.Sprintf("RECTIFIED:%s:%d", id, c.seq)), RectifiedBy: "dpo", RectifiedAt: ts(at)}
		case 15:
			m = &casev1.CaseMarkedForPreservation{CaseId: id, MarkedBy: "archivist", MarkedAt: ts(at)}
		case 16:
			if rng.IntN(3) != 0 {
				m = &casev1.NoteAdded{CaseId: id, NoteId: fmt.Sprint(c.seq), Author: pick(people), Text: text(), AddedAt: ts(at)}
				break
			}
			out = append(out, ev(id, &casev1.CaseDeleted{CaseId: id, DeletedAt: ts(at)}), ev(id, nil))
			live = slices.DeleteFunc(live, func(g *gcase) bool { return g == c })
			continue
		}
		out = append(out, ev(id, m))
	}
	return out[:n]
}

// newSelfCommand runs one test of this test binary in a subprocess with
// extra environment, and kills it when the test ends.
func newSelfCommand(t *testing.T, test string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	t.Cleanup(func() {
		if cmd.Process != nil && cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// listQueue asks for one page of a queue.
func listQueue(s *Store, queue string, order routingv1.QueueOrder, types []casev1.CaseType, channels []casev1.Channel, pageSize int, token string) ([]app.CaseRow, string, error) {
	return s.ListQueue(app.QueueQuery{Queue: queue, Order: order, Types: types, Channels: channels, PageSize: pageSize, PageToken: token})
}

// batcher hands drafts to a store in batches of at least size events,
// numbered on from the last batch as the log would number them, for
// benchmarks that fill a store. applied, when set, sees every batch.
type batcher struct {
	s       *Store
	size    int
	pos     eventstore.Position
	pending []draft
	applied func([]eventstore.RecordedEvent)
}

func (b *batcher) add(t testing.TB, drafts ...draft) {
	b.pending = append(b.pending, drafts...)
	if len(b.pending) >= b.size {
		b.flush(t)
	}
}

func (b *batcher) flush(t testing.TB) {
	if len(b.pending) == 0 {
		return
	}
	evs := history(b.pos, b.pending...)
	require.NoError(t, b.s.Apply(context.Background(), evs...))
	if b.applied != nil {
		b.applied(evs)
	}
	b.pos = evs[len(evs)-1].Position
	b.pending = b.pending[:0]
}

// mustProjector is NewProjector for tests.
func mustProjector(t testing.TB, store eventstore.Store, rm *Store, logger *slog.Logger, opts ...ProjectorOption) *Projector {
	t.Helper()
	p, err := NewProjector(store, rm, logger, opts...)
	require.NoError(t, err)
	return p
}
