package server

import (
	"testing"

	"github.com/stretchr/testify/require"

	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
)

func TestJSONFieldPath(t *testing.T) {
	md := (&intakev1.SubmitFormRequest{}).ProtoReflect().Descriptor()
	tests := []struct{ path, want string }{
		{"idempotency_key", "idempotencyKey"},
		{"case.contact.postal_address.postal_code", "case.contact.postalAddress.postalCode"},
		{"case.attachments[0].content_type", "case.attachments[0].contentType"},
		{"case.chat_transcript", "case.chatTranscript"},
		{"case", "case"},
		// Names the message does not hold (a oneof, a made-up path)
		// are converted as protoc converts a field name.
		{"some_oneof", "someOneof"},
		{`labels["a.b_c"].long_name`, `labels["a.b_c"].longName`},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			require.Equal(t, tt.want, JSONFieldPath(md, tt.path))
		})
	}
	require.Equal(t, "caseId", JSONFieldPath(nil, "case_id"), "without a descriptor")
}
