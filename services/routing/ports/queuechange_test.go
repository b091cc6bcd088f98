package ports

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
)

// TestQueueChangesAreAllNamed keeps WatchQueueResponse's two names of a
// change together: every kind but UNSPECIFIED has exactly one text, and
// the text is the kind's name in lower case.
func TestQueueChangesAreAllNamed(t *testing.T) {
	seen := map[routingv1.QueueChange]string{}
	for text, kind := range queueChanges {
		require.Equal(t, "QUEUE_CHANGE_"+strings.ToUpper(text), kind.String(), "text %q", text)
		_, twice := seen[kind]
		require.False(t, twice, "%s has two texts", kind)
		seen[kind] = text
	}
	values := routingv1.QueueChange_QUEUE_CHANGE_UNSPECIFIED.Descriptor().Values()
	for i := range values.Len() {
		kind := routingv1.QueueChange(values.Get(i).Number())
		if kind == routingv1.QueueChange_QUEUE_CHANGE_UNSPECIFIED {
			continue
		}
		require.Contains(t, seen, kind, "%s has no change text", kind)
	}
}
