package app_test

import (
	"bytes"
	"context"
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
	"github.com/kontakt-se/kontakt/pkg/seal"
	"github.com/kontakt-se/kontakt/services/routing/app"
	"github.com/kontakt-se/kontakt/services/routing/domain"
)

// textWorld is a store, a key store and the routing commands over them.
type textWorld struct {
	store  eventstore.Store
	keys   *seal.NATSKeyStore
	sealer *seal.Sealer
	cmds   *app.Commands
	rules  *domain.Rules
}

func newTextWorld(t *testing.T, wrap func(*seal.Sealer) app.Sealer) *textWorld {
	t.Helper()
	js := natstest.JetStream(t, natstest.Embedded(t, 0))
	store, err := esjs.New(t.Context(), js, esjs.Config{})
	require.NoError(t, err)
	keys, err := seal.NewNATSKeyStore(t.Context(), js, seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	master, err := seal.NewMasterKey(bytes.Repeat([]byte{7}, seal.MasterKeySize))
	require.NoError(t, err)
	sealer, err := seal.NewSealer(keys, master)
	require.NoError(t, err)
	var s app.Sealer = sealer
	if wrap != nil {
		s = wrap(sealer)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	return &textWorld{store: store, keys: keys, sealer: sealer, cmds: app.NewCommands(app.CommandsConfig{Store: store, Sealer: s, Clock: time.Now, Logger: logger}), rules: domain.DefaultRules("kontaktcenter")}
}

// routedCase registers and routes a case.
func (w *textWorld) routedCase(t *testing.T) string {
	t.Helper()
	id := registerCases(t, w.store, 1)[0]
	require.NoError(t, w.cmds.Route(t.Context(), id, w.rules))
	return id
}

// redact does what the retention service does at a deadline: append
// PersonalDataRedacted for the answer class, then destroy its keys up to
// the generation the case's events named before the event.
func (w *textWorld) redact(ctx context.Context, t *testing.T, caseID string) {
	cs, err := w.cmds.Load(ctx, caseID)
	require.NoError(t, err)
	ev := &casev1.PersonalDataRedacted{CaseId: caseID, DataClasses: []casev1.DataClass{casev1.DataClass_DATA_CLASS_ANSWER}, Reason: "retention", RedactedAt: timestamppb.Now()}
	data, err := proto.Marshal(ev)
	require.NoError(t, err)
	_, err = w.store.Append(ctx, caseID, eventstore.Exact(eventstore.Revision(cs.Version)), eventstore.Event{ID: uuid.NewString(), Type: domain.TypeOf(ev), Data: data})
	require.NoError(t, err)
	require.NoError(t, w.sealer.Destroy(ctx, caseID, cs.Generations, seal.ClassAnswer))
}

// texts returns the key ids of the case's answers, notes and comments,
// and what each opens to ("" when its key is destroyed).
func (w *textWorld) texts(t *testing.T, caseID string) (keyIDs, plain []string) {
	t.Helper()
	recs, err := w.store.Read(t.Context(), caseID)
	require.NoError(t, err)
	for _, r := range recs {
		m, err := domain.Decode(r.Type, r.Data)
		require.NoError(t, err)
		var sp *casev1.SealedPersonalData
		switch e := m.(type) {
		case *casev1.CaseAnswered:
			sp = e.GetAnswer()
		case *casev1.NoteAdded:
			sp = e.GetText()
		case *casev1.CaseForwarded:
			sp = e.GetComment()
		}
		if sp == nil {
			continue
		}
		keyIDs = append(keyIDs, sp.GetKeyId())
		b, err := w.sealer.Open(t.Context(), caseID, sp)
		if err != nil {
			require.ErrorIs(t, err, seal.ErrKeyDestroyed)
			plain = append(plain, "")
			continue
		}
		var at casev1.AnswerText
		require.NoError(t, proto.Unmarshal(b, &at))
		plain = append(plain, at.GetText())
	}
	return keyIDs, plain
}

var sup = domain.Actor{Subject: "sam", Supervisor: true}

// TestTextsAfterRedaction: an answer, a note and a forwarding comment
// written after the answer class was redacted are sealed under the next
// generation's key; before, every one of them failed with "data key
// destroyed" (500 Internal at the edge).
func TestTextsAfterRedaction(t *testing.T) {
	w := newTextWorld(t, nil)
	ctx := t.Context()
	id := w.routedCase(t)
	_, err := w.cmds.Answer(ctx, sup, id, "första svaret", casev1.AnswerDelivery_ANSWER_DELIVERY_UNSPECIFIED)
	require.NoError(t, err)
	w.redact(ctx, t, id)

	_, err = w.cmds.Answer(ctx, sup, id, "andra svaret", casev1.AnswerDelivery_ANSWER_DELIVERY_UNSPECIFIED)
	require.NoError(t, err)
	_, err = w.cmds.AddNote(ctx, sup, id, "anteckning")
	require.NoError(t, err)
	_, err = w.cmds.Forward(ctx, sup, id, "", "", "olle", "kommentar")
	require.NoError(t, err)
	keyIDs, plain := w.texts(t, id)
	require.Equal(t, []string{id + ".answer", id + ".answer.1", id + ".answer.1", id + ".answer.1"}, keyIDs)
	require.Equal(t, []string{"", "andra svaret", "anteckning", "kommentar"}, plain)

	// A second redaction ends generation 1; the next text starts the 2nd.
	w.redact(ctx, t, id)
	_, err = w.cmds.AddNote(ctx, sup, id, "efter andra gallringen")
	require.NoError(t, err)
	keyIDs, plain = w.texts(t, id)
	require.Equal(t, id+".answer.2", keyIDs[len(keyIDs)-1])
	require.Equal(t, []string{"", "", "", "", "efter andra gallringen"}, plain)
}

// racingSealer appends a redaction of the case just before the first
// Seal it is asked for, as the retention service may between a command's
// read and its seal.
type racingSealer struct {
	*seal.Sealer
	once   sync.Once
	redact func(ctx context.Context)
	gens   []uint32
}

func (r *racingSealer) Seal(ctx context.Context, caseID string, class seal.Class, gen uint32, b []byte) (*casev1.SealedPersonalData, error) {
	r.once.Do(func() { r.redact(ctx) })
	r.gens = append(r.gens, gen)
	return r.Sealer.Seal(ctx, caseID, class, gen, b)
}

// TestTextRacingARedaction: a redaction that lands after the command read
// the case makes the seal fail (its key is gone) and the command reads
// the case again and seals under the next generation.
func TestTextRacingARedaction(t *testing.T) {
	var rs *racingSealer
	w := newTextWorld(t, func(s *seal.Sealer) app.Sealer {
		rs = &racingSealer{Sealer: s}
		return rs
	})
	id := w.routedCase(t)
	rs.redact = func(ctx context.Context) { w.redact(ctx, t, id) }
	_, err := w.cmds.Answer(t.Context(), sup, id, "svar", casev1.AnswerDelivery_ANSWER_DELIVERY_UNSPECIFIED)
	require.NoError(t, err)
	require.Equal(t, []uint32{0, 1}, rs.gens, "sealed under generation 0, then again under 1")
	keyIDs, plain := w.texts(t, id)
	require.Equal(t, []string{id + ".answer.1"}, keyIDs)
	require.Equal(t, []string{"svar"}, plain)
}

// TestRefusedTextMakesNoKey: a text command the domain refuses is refused
// for its own reason before anything is sealed.
func TestRefusedTextMakesNoKey(t *testing.T) {
	w := newTextWorld(t, nil)
	id := w.routedCase(t)
	stranger := domain.Actor{Subject: "cilla", Agent: true}
	_, err := w.cmds.Answer(t.Context(), stranger, id, "svar", casev1.AnswerDelivery_ANSWER_DELIVERY_UNSPECIFIED)
	require.ErrorIs(t, err, domain.ErrNotPermitted)
	_, err = w.cmds.AddNote(t.Context(), sup, id, "")
	require.ErrorIs(t, err, domain.ErrInvalidArgument, "a note needs a text")
	_, err = w.keys.Get(t.Context(), id+".answer")
	require.ErrorIs(t, err, seal.ErrKeyNotFound, "no key was made")
}
