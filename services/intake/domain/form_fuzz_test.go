package domain_test

import (
	"strings"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	"github.com/kontakt-se/kontakt/pkg/fieldrules"
	"github.com/kontakt-se/kontakt/services/intake/domain"
)

// FuzzFormJSON feeds arbitrary bytes through what a form's JSON post goes
// through before a case is registered: JSON decoding (as the REST path
// does), the field rules and the domain rules. Nothing may panic, every
// refusal must name fields, and a payload that passes must survive a JSON
// round trip unchanged, so a retried submission hashes the same.
func FuzzFormJSON(f *testing.F) {
	seeds := []string{
		`{"idempotencyKey":"abc-12345678","case":{"type":"CASE_TYPE_SYNPUNKT","category":"parker","description":"Bra park"}}`,
		`{"idempotencyKey":"k-000000001","case":{"type":"CASE_TYPE_FELANMALAN","category":"gatubelysning","description":"Lampan","location":{"latitude":57.65,"longitude":12.01}}}`,
		`{"idempotency_key":"k-000000002","case":{"type":2,"channel":"CHANNEL_FORM","category":"x","subject":"s","contact":{"email":"a@b.se","phone":"070-1234567","identityNumber":"19121212-1212"}}}`,
		`{"case":{"type":"CASE_TYPE_FRAGA","category":"x","description":"utan nyckel"}}`,
		`{"idempotencyKey":"k-000000003","case":{"type":"CASE_TYPE_BREV","category":"x","attachments":[{"name":"a.pdf","contentType":"application/pdf","sizeBytes":"10","attachmentId":"1"}]}}`,
		`{"idempotencyKey":"k-000000004","case":{"type":"CASE_TYPE_FRAGA","category":"x","description":"` + strings.Repeat("å", 4001) + `"}}`,
		`[]`, `{"case":null}`, `{"idempotencyKey":1}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	v, err := protovalidate.New()
	require.NoError(f, err)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	categories := domain.NewCategories([]domain.Category{{Code: "x"}, {Code: "gatubelysning"}})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req intakev1.SubmitFormRequest
		if err := (protojson.UnmarshalOptions{}).Unmarshal(data, &req); err != nil {
			return
		}
		viols, err := fieldrules.Check(v, &req)
		require.NoError(t, err, "every field rule must evaluate")
		for _, viol := range viols {
			require.NotEmpty(t, viol.Field)
		}
		if len(viols) > 0 {
			return
		}
		reg, err := domain.Validate(req.GetCase(), domain.FromForm, now, categories)
		if err != nil {
			var ve *domain.ValidationError
			require.ErrorAs(t, err, &ve)
			require.NotEmpty(t, ve.Violations)
			return
		}
		require.NotZero(t, reg.Type)
		out, err := protojson.Marshal(&req)
		require.NoError(t, err)
		var again intakev1.SubmitFormRequest
		require.NoError(t, protojson.Unmarshal(out, &again))
		require.True(t, proto.Equal(&req, &again), "JSON round trip changed the submission")
	})
}
