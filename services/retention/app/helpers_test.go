package app_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/kontakt-se/kontakt/pkg/caseaccess"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/audit"
	"github.com/kontakt-se/kontakt/pkg/blindindex"
	"github.com/kontakt-se/kontakt/pkg/caseevents"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/eventstore/jetstream"
	"github.com/kontakt-se/kontakt/pkg/identity"
	"github.com/kontakt-se/kontakt/pkg/natsserver"
	"github.com/kontakt-se/kontakt/pkg/natstest"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/receipt"
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/retention/adapters/archive"
	"github.com/kontakt-se/kontakt/services/retention/adapters/index"
	"github.com/kontakt-se/kontakt/services/retention/adapters/ledger"
	"github.com/kontakt-se/kontakt/services/retention/app"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

// t0 is "day 0" of every test history: cases are registered then unless a
// test says otherwise.
var t0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

// day is a moment on day n of the history: an hour after t0's time of day,
// so "day 90" is past a 90-day deadline and "day 89" is not.
func day(n int) time.Time { return t0.AddDate(0, 0, n).Add(time.Hour) }

// testClock is the injectable clock: a time the test moves forward.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(at time.Time) *testClock { return &testClock{now: at} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Set(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = at
}

// world is one embedded NATS server with JetStream (sync always, as
// kontakt runs), the master key and the blind index all instances share,
// and the clock.
type world struct {
	srv    *natsserver.Server
	master seal.MasterKey
	blind  *blindindex.Index
	clock  *testClock
}

func newWorld(t testing.TB) *world {
	t.Helper()
	srv := natstest.Embedded(t, 0)
	require.True(t, srv.SyncAlways(), "the tests run against a sync-always server")
	key := make([]byte, seal.MasterKeySize)
	_, err := rand.Read(key)
	require.NoError(t, err)
	master, err := seal.NewMasterKey(key)
	require.NoError(t, err)
	blindKey, err := master.DeriveKey(blindindex.KeyPurpose)
	require.NoError(t, err)
	blind, err := blindindex.New(blindKey)
	require.NoError(t, err)
	return &world{srv: srv, master: master, blind: blind, clock: newClock(t0)}
}

// backends are the real adapters on a connection of their own, as one
// kontakt process has them (node.openBackends, node.buildRetention).
type backends struct {
	js     natsjs.JetStream
	store  *jetstream.Store
	sealer *seal.Sealer
	ledger *ledger.Ledger
	audit  *audit.Log
}

func (w *world) connect(t testing.TB) *backends {
	t.Helper()
	ctx := t.Context()
	js := natstest.JetStream(t, w.srv)
	store, err := jetstream.New(ctx, js, jetstream.Config{})
	require.NoError(t, err)
	keys, err := seal.NewNATSKeyStore(ctx, js, seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	sealer, err := seal.NewSealer(keys, w.master)
	require.NoError(t, err)
	led, err := ledger.New(ctx, js, ledger.Config{})
	require.NoError(t, err)
	auditLog, err := audit.New(ctx, js, audit.Config{})
	require.NoError(t, err)
	return &backends{js: js, store: store, sealer: sealer, ledger: led, audit: auditLog}
}

// instance is one retention service: its backends, its own index file and
// archive directory, and (once started) its projector.
type instance struct {
	*backends
	w          *world
	svc        *app.Service
	idx        *index.Store
	idxPath    string
	archiveDir string

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan error
}

type instanceOpts struct {
	plan       *domain.Plan
	idxPath    string
	archiveDir string
	ledger     app.Ledger     // nil: the instance's own *ledger.Ledger
	store      app.EventStore // nil: the instance's own store
	sealer     app.Sealer     // nil: the instance's own sealer
	workers    int
	interval   time.Duration // the sweeper's interval, for RunSweeper
	journal    app.Journal   // nil: none
}

func plan(t testing.TB, name string) *domain.Plan {
	t.Helper()
	p, err := domain.Builtin(name)
	require.NoError(t, err)
	return p
}

// newInstance builds a service as node.buildRetention does. The index is
// closed (after the projector stopped) when the test ends.
func (w *world) newInstance(t testing.TB, b *backends, o instanceOpts) *instance {
	t.Helper()
	if o.plan == nil {
		o.plan = plan(t, "molndal")
	}
	if o.idxPath == "" {
		o.idxPath = filepath.Join(t.TempDir(), "index.db")
	}
	if o.archiveDir == "" {
		o.archiveDir = t.TempDir()
	}
	var l app.Ledger = b.ledger
	if o.ledger != nil {
		l = o.ledger
	}
	var store app.EventStore = b.store
	if o.store != nil {
		store = o.store
	}
	var sealer app.Sealer = b.sealer
	if o.sealer != nil {
		sealer = o.sealer
	}
	idx, err := index.Open(o.idxPath)
	require.NoError(t, err)
	svc, err := app.New(app.Options{
		Store: store, Sealer: sealer, Ledger: l, Index: idx, Archive: archive.Dir(o.archiveDir), Audit: b.audit,
		Blind: w.blind, Clock: w.clock.Now,
		Config: app.Config{Plan: o.plan, Workers: o.workers, SweepInterval: o.interval, Journal: o.journal},
	})
	require.NoError(t, err)
	in := &instance{backends: b, w: w, svc: svc, idx: idx, idxPath: o.idxPath, archiveDir: o.archiveDir}
	t.Cleanup(func() { in.stop(t) })
	return in
}

// start runs the projector until stop or the end of the test.
func (in *instance) start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	in.done = make(chan error, 1)
	go func() { in.done <- in.svc.RunProjector(ctx) }()
}

// stop ends the projector (if it runs) and closes the index.
func (in *instance) stop(t testing.TB) {
	in.stopOnce.Do(func() {
		if in.cancel != nil {
			in.cancel()
			select {
			case err := <-in.done:
				if err != nil {
					t.Errorf("projector: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("projector did not stop")
			}
		}
		if err := in.idx.Close(); err != nil {
			t.Errorf("close index: %v", err)
		}
	})
}

// caughtUp waits until the index has applied the whole log, including
// the effects of what it applied (keys destroyed, receipts written,
// streams removed): effects run before the checkpoint moves. The
// checkpoint is read before the head, so a tombstone written by a
// deletion effect is waited for too.
func (in *instance) caughtUp(t testing.TB) {
	t.Helper()
	in.caughtUpWithin(t, 30*time.Second)
}

func (in *instance) caughtUpWithin(t testing.TB, limit time.Duration) {
	t.Helper()
	ctx := t.Context()
	var cp, head eventstore.Position
	require.Eventually(t, func() bool {
		var err error
		cp, err = in.idx.Checkpoint()
		require.NoError(t, err)
		head, err = in.store.Head(ctx)
		require.NoError(t, err)
		return cp >= head
	}, limit, 5*time.Millisecond, "index checkpoint %d never reached the log's head %d", cp, head)
}

// applyBatch hands the index one batch of events, as the projection
// runner does.
func applyBatch(t testing.TB, in *instance, recs []eventstore.RecordedEvent) {
	t.Helper()
	batch, err := projection.Decode(recs)
	require.NoError(t, err)
	require.NoError(t, in.svc.Model().Apply(t.Context(), batch))
}

// sweep runs one pass at the clock's time once the index has caught up.
func (in *instance) sweep(t testing.TB) int {
	t.Helper()
	in.caughtUp(t)
	n, err := in.svc.Sweep(t.Context())
	require.NoError(t, err)
	in.caughtUp(t)
	return n
}

// caseSpec describes a case to register. Zero fields are left out of the
// registration.
type caseSpec struct {
	typ      casev1.CaseType
	channel  casev1.Channel
	at       time.Time // zero: t0
	name     string
	email    string
	phone    string
	identity string // 12 digits
	subject  string
	text     string
	chat     string
	files    []string
	// fileIDs are sealed with the names (as intake seals them now);
	// without them each attachment gets a plain id (as before).
	fileIDs []string
}

// testCase is a registered case with the sealed values its events carry,
// so tests can try to open them again after a redaction.
type testCase struct {
	ID, Number string
	Spec       caseSpec
	Sealed     map[seal.Class][]*casev1.SealedPersonalData
}

var caseSeq atomic.Int64

func nextNumber() string { return fmt.Sprintf("KC-2026-%06d", caseSeq.Add(1)) }

// register appends CaseRegistered with the spec's personal data sealed,
// as intake does.
func (b *backends) register(t testing.TB, s caseSpec) *testCase {
	t.Helper()
	ctx := t.Context()
	if s.at.IsZero() {
		s.at = t0
	}
	if s.typ == casev1.CaseType_CASE_TYPE_UNSPECIFIED {
		s.typ = casev1.CaseType_CASE_TYPE_FRAGA
	}
	if s.channel == casev1.Channel_CHANNEL_UNSPECIFIED {
		s.channel = casev1.Channel_CHANNEL_EMAIL
	}
	tc := &testCase{ID: uuid.NewString(), Number: nextNumber(), Spec: s, Sealed: map[seal.Class][]*casev1.SealedPersonalData{}}
	sealIt := func(class seal.Class, m proto.Message) *casev1.SealedPersonalData {
		sp, err := b.sealer.SealMessage(ctx, tc.ID, class, 0, m)
		require.NoError(t, err)
		tc.Sealed[class] = append(tc.Sealed[class], sp)
		return sp
	}
	reg := &casev1.CaseRegistered{
		CaseId: tc.ID, CaseNumber: tc.Number, Type: s.typ, Channel: s.channel, Category: "avfall",
		RegisteredAt: timestamppb.New(s.at), RegisteredBy: "agent-1",
	}
	if s.name != "" || s.email != "" || s.phone != "" {
		// The number as intake stores it: in E.164 (identity.NormalisePhone).
		phone := s.phone
		if phone != "" {
			var err error
			phone, err = identity.NormalisePhone(phone)
			require.NoError(t, err)
		}
		reg.Contact = sealIt(seal.ClassContact, &casev1.ContactDetails{Name: s.name, Email: s.email, Phone: phone})
	}
	if s.identity != "" {
		reg.Identity = sealIt(seal.ClassIdentity, &casev1.IdentityNumber{Number: s.identity})
	}
	if s.subject != "" || s.text != "" || s.chat != "" {
		reg.FreeText = sealIt(seal.ClassFreeText, &casev1.FreeText{Subject: s.subject, Description: s.text, ChatTranscript: s.chat})
	}
	if len(s.files) > 0 {
		reg.AttachmentNames = sealIt(seal.ClassAttachments, &casev1.AttachmentNames{Names: s.files, AttachmentIds: s.fileIDs})
		for i := range s.files {
			a := &casev1.Attachment{ContentType: "application/pdf", SizeBytes: 1000 + int64(i)}
			if s.fileIDs == nil {
				a.AttachmentId = fmt.Sprintf("att-%s-%d", tc.ID, i)
			}
			reg.Attachments = append(reg.Attachments, a)
		}
	}
	data, err := proto.Marshal(reg)
	require.NoError(t, err)
	_, err = b.store.Append(ctx, tc.ID, eventstore.NoStream(), eventstore.Event{ID: uuid.NewString(), Type: caseevents.TypeOf(reg), Data: data})
	require.NoError(t, err)
	return tc
}

// appendEvent appends an event to a case at its current revision.
func (b *backends) appendEvent(t testing.TB, caseID string, m proto.Message) {
	t.Helper()
	ctx := t.Context()
	recs, err := b.store.Read(ctx, caseID)
	require.NoError(t, err)
	data, err := proto.Marshal(m)
	require.NoError(t, err)
	_, err = b.store.Append(ctx, caseID, eventstore.Exact(recs[len(recs)-1].Revision), eventstore.Event{ID: uuid.NewString(), Type: caseevents.TypeOf(m), Data: data})
	require.NoError(t, err)
}

// answer appends CaseAnswered with a sealed answer an hour after t0, as
// routing does.
func (b *backends) answer(t testing.TB, tc *testCase, text string) {
	t.Helper()
	b.answerAt(t, tc, text, t0.Add(time.Hour))
}

// answerAt appends CaseAnswered at the given time, sealed under the
// answer class's current generation as the case's events give it, as
// routing does.
func (b *backends) answerAt(t testing.TB, tc *testCase, text string, at time.Time) *casev1.SealedPersonalData {
	t.Helper()
	var gens seal.Generations
	for _, e := range b.events(t, tc.ID) {
		gens.Apply(e.msg)
	}
	sp, err := b.sealer.SealMessage(t.Context(), tc.ID, seal.ClassAnswer, gens.Of(seal.ClassAnswer), &casev1.AnswerText{Text: text})
	require.NoError(t, err)
	tc.Sealed[seal.ClassAnswer] = append(tc.Sealed[seal.ClassAnswer], sp)
	b.appendEvent(t, tc.ID, &casev1.CaseAnswered{CaseId: tc.ID, AnsweredBy: "agent-1", Answer: sp, AnsweredAt: timestamppb.New(at)})
	return sp
}

// storedEvent is a case event as read back from the store.
type storedEvent struct {
	rec eventstore.RecordedEvent
	msg proto.Message
}

// events reads and decodes a case's stream.
func (b *backends) events(t testing.TB, caseID string) []storedEvent {
	t.Helper()
	recs, err := b.store.Read(t.Context(), caseID)
	require.NoError(t, err)
	out := make([]storedEvent, 0, len(recs))
	for _, r := range recs {
		m, err := caseevents.Decode(r.Type, r.Data)
		if errors.Is(err, caseevents.ErrUnknown) {
			m, err = nil, nil // a newer writer's event: msg stays nil
		}
		require.NoError(t, err)
		out = append(out, storedEvent{rec: r, msg: m})
	}
	return out
}

// redactions returns a case's PersonalDataRedacted events with their
// revisions.
func (b *backends) redactions(t testing.TB, caseID string) ([]*casev1.PersonalDataRedacted, []eventstore.Revision) {
	t.Helper()
	var out []*casev1.PersonalDataRedacted
	var revs []eventstore.Revision
	for _, e := range b.events(t, caseID) {
		if m, ok := e.msg.(*casev1.PersonalDataRedacted); ok {
			out = append(out, m)
			revs = append(revs, e.rec.Revision)
		}
	}
	return out, revs
}

// typesOf lists the short type names of a case's events.
func (b *backends) typesOf(t testing.TB, caseID string) []string {
	t.Helper()
	var out []string
	for _, e := range b.events(t, caseID) {
		if e.msg == nil {
			out = append(out, e.rec.Type)
			continue
		}
		out = append(out, string(e.msg.ProtoReflect().Descriptor().Name()))
	}
	return out
}

// receipts reads the whole ledger and checks its chain.
func (b *backends) receipts(t testing.TB) []receipt.Receipt {
	t.Helper()
	var out []receipt.Receipt
	require.NoError(t, b.ledger.Scan(t.Context(), func(r receipt.Receipt) error {
		out = append(out, r)
		return nil
	}))
	n, _, err := ledger.Verify(t.Context(), b.ledger)
	require.NoError(t, err, "the ledger's hash chain verifies")
	require.Equal(t, len(out), n)
	return out
}

// receiptsOf filters receipts by case and kind.
func receiptsOf(rs []receipt.Receipt, caseID, kind string) []receipt.Receipt {
	var out []receipt.Receipt
	for _, r := range rs {
		if r.CaseID == caseID && r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// requireDestroyed checks that every sealed value of the given classes
// no longer opens because its key is gone.
func (b *backends) requireDestroyed(t testing.TB, tc *testCase, classes ...seal.Class) {
	t.Helper()
	for _, c := range classes {
		for _, sp := range tc.Sealed[c] {
			_, err := b.sealer.Open(t.Context(), tc.ID, sp)
			require.ErrorIs(t, err, seal.ErrKeyDestroyed, "case %s class %s", tc.Number, c)
		}
	}
}

// requireOpens checks that the sealed values of the given classes still
// open.
func (b *backends) requireOpens(t testing.TB, tc *testCase, classes ...seal.Class) {
	t.Helper()
	for _, c := range classes {
		for _, sp := range tc.Sealed[c] {
			_, err := b.sealer.Open(t.Context(), tc.ID, sp)
			require.NoError(t, err, "case %s class %s", tc.Number, c)
		}
	}
}

// token is the blind-index token of an e-mail address, as the index keeps
// it.
func (w *world) emailToken(email string) string { return w.blind.Token(blindindex.Email, email) }

// classNames turns proto data classes into the plan's names, sorted.
func classNames(dcs []casev1.DataClass) []string {
	var out []string
	for _, dc := range dcs {
		c, err := seal.ClassFromProto(dc)
		if err != nil {
			out = append(out, dc.String())
			continue
		}
		out = append(out, string(c))
	}
	slices.Sort(out)
	return out
}

func allClassNames() []string {
	out := []string{"answer", "attachments", "contact", "freetext", "identity"}
	return out
}

// personnummer returns a valid 12-digit personnummer for a date
// (YYYYMMDD) and a three-digit serial, with its Luhn check digit.
func personnummer(date, serial string) string {
	nine := date[2:] + serial
	sum := 0
	for i, c := range []byte(nine) {
		d := int(c - '0')
		if i%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return date + serial + fmt.Sprint((10-sum%10)%10)
}

// isNotFound reports whether a read failed because the stream is gone.
func isNotFound(err error) bool {
	return errors.Is(err, eventstore.ErrStreamNotFound) || errors.Is(err, eventstore.ErrStreamDeleted)
}

// supervisor is who marks cases for preservation in these tests.
var supervisor = caseaccess.Caller{Subject: "arkivarie", Supervisor: true}

// markCase marks a case for preservation as supervisor.
func markCase(ctx context.Context, t *testing.T, svc *app.Service, caseID, reason string) {
	t.Helper()
	_, err := svc.MarkForPreservation(ctx, supervisor, "supervisor", caseID, reason)
	require.NoError(t, err)
}
