package seal_test

import (
	"bytes"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/natsserver"
	"github.com/kontakt-se/kontakt/pkg/natstest"
	"github.com/kontakt-se/kontakt/pkg/seal"
)

// startServer starts an embedded NATS server with JetStream on a fresh
// store directory; it is shut down when the test ends.
func startServer(t testing.TB) *natsserver.Server {
	t.Helper()
	return natstest.Embedded(t, 0)
}

// connect opens a connection of its own, as a separate service instance
// would.
func connect(t testing.TB, srv *natsserver.Server) jetstream.JetStream {
	t.Helper()
	return natstest.JetStream(t, srv)
}

// newSealer returns a Sealer with its own connection and key store.
func newSealer(t testing.TB, srv *natsserver.Server, master seal.MasterKey) *seal.Sealer {
	t.Helper()
	store, err := seal.NewNATSKeyStore(t.Context(), connect(t, srv), seal.NATSKeyStoreConfig{})
	require.NoError(t, err)
	s, err := seal.NewSealer(store, master)
	require.NoError(t, err)
	return s
}

func testMaster(t testing.TB, fill byte) seal.MasterKey {
	t.Helper()
	k, err := seal.NewMasterKey(bytes.Repeat([]byte{fill}, seal.MasterKeySize))
	require.NoError(t, err)
	return k
}

func newCaseID() string { return uuid.NewString() }
