package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// TestKeyStoreOneSubjectPerCase: the data-key stream holds one subject,
// with one message, per case, however many classes the case has keys for,
// and also after an answer adds a key to a case that has keys already.
// JetStream keeps an in-memory index entry per subject and rebuilds it at
// every start; with a subject per key (2.2 per case) that index was most
// of kontakt's restart time and of its heap (issue 15).
func TestKeyStoreOneSubjectPerCase(t *testing.T) {
	e := startRouting(t, "")
	var ids []string
	for _, subject := range []string{"Sophämtning", "Gatubelysning", "Parkering"} {
		// Contact details and a description: two classes with keys.
		id, number := e.register(t, fragaInput(subject, &intakev1.Contact{Name: "Sven Svensson", Phone: "070-123 45 67", IdentityNumber: "19121212-1212"}))
		e.waitRouted(t, number)
		ids = append(ids, id)
	}
	// The answer seals into a class the case has no key for yet: a new key
	// in the case's existing record.
	ctx, cancel := e.as(t, sara)
	_, err := e.rc.AssignCase(ctx, &routingv1.AssignCaseRequest{CaseId: ids[0], Assignee: "sara"})
	require.NoError(t, err)
	_, err = e.rc.AnswerCase(ctx, &routingv1.AnswerCaseRequest{CaseId: ids[0], Answer: "Sophämtningen kommer på tisdag."})
	require.NoError(t, err)
	cancel()

	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := e.js.Stream(ctx, "KV_"+keysBucket)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(len(ids)), info.State.NumSubjects, "one subject per case in the key stream")
	require.Equal(t, uint64(len(ids)), info.State.Msgs, "one message per case: every replaced record erased")

	// And every key is there, under its case's one subject.
	store, err := seal.NewNATSKeyStore(ctx, e.js, seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	for _, id := range ids {
		for _, c := range []seal.Class{seal.ClassContact, seal.ClassIdentity, seal.ClassFreeText} {
			keyID, err := seal.KeyID(id, c, 0)
			require.NoError(t, err)
			w, err := store.Get(ctx, keyID)
			require.NoError(t, err, keyID)
			require.Len(t, w, seal.WrappedKeySize)
		}
	}
	answer, err := seal.KeyID(ids[0], seal.ClassAnswer, 0)
	require.NoError(t, err)
	_, err = store.Get(ctx, answer)
	require.NoError(t, err, "the answer's key")
}
