package app

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// TestExtractCoversEverySealedField: every sealed field of every case
// event is one the register extract reads. An event that gains personal
// data fails here until buildSubjectCase puts it in the extract.
func TestExtractCoversEverySealedField(t *testing.T) {
	sealed := (&casev1.SealedPersonalData{}).ProtoReflect().Descriptor().FullName()
	msgs := casev1.File_kontakt_case_v1_events_proto.Messages()
	found := map[string][]string{}
	for i := range msgs.Len() {
		md := msgs.Get(i)
		fields := md.Fields()
		for j := range fields.Len() {
			fd := fields.Get(j)
			if fd.Kind() != protoreflect.MessageKind || fd.Message().FullName() != sealed {
				continue
			}
			found[string(md.Name())] = append(found[string(md.Name())], string(fd.Name()))
			require.True(t, slices.Contains(extractedFields[string(md.Name())], string(fd.Name())),
				"%s.%s holds sealed personal data that register extracts leave out", md.Name(), fd.Name())
		}
	}
	// And the other way round: the list names only sealed fields that
	// exist, so this test cannot pass on an empty descriptor walk.
	for ev, names := range extractedFields {
		require.ElementsMatch(t, names, found[ev], "extractedFields[%s]", ev)
	}
}
