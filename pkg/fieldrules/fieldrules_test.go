package fieldrules

import (
	"strings"
	"testing"

	"buf.build/go/protovalidate"
	"github.com/stretchr/testify/require"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	intakev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/intake/v1"
	routingv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/routing/v1"
	statisticsv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/statistics/v1"
	"google.golang.org/protobuf/proto"
)

// TestViolationsReadWell holds every protovalidate rule kind the API uses
// to a message a UI can show next to its field.
func TestViolationsReadWell(t *testing.T) {
	v, err := protovalidate.New()
	require.NoError(t, err)
	validCase := func() *intakev1.CaseInput {
		return &intakev1.CaseInput{Type: casev1.CaseType_CASE_TYPE_FRAGA, Category: "ovrigt"}
	}
	tests := []struct {
		name  string
		msg   proto.Message
		field string
		want  string
	}{
		{name: "required message", msg: &intakev1.RegisterCaseRequest{}, field: "case", want: "is required"},
		{name: "enum not in [0]", msg: &intakev1.RegisterCaseRequest{Case: &intakev1.CaseInput{Category: "ovrigt"}}, field: "case.type", want: "is required"},
		{name: "enum not defined", msg: &intakev1.RegisterCaseRequest{Case: func() *intakev1.CaseInput {
			c := validCase()
			c.Channel = 99
			return c
		}()}, field: "case.channel", want: "is not one of the allowed values"},
		{name: "min_len 1", msg: &intakev1.RegisterCaseRequest{Case: &intakev1.CaseInput{Type: casev1.CaseType_CASE_TYPE_FRAGA}}, field: "case.category", want: "is required"},
		{name: "max_len", msg: &intakev1.RegisterCaseRequest{Case: func() *intakev1.CaseInput {
			c := validCase()
			c.Subject = strings.Repeat("x", 201)
			return c
		}()}, field: "case.subject", want: "must be at most 200 characters"},
		{name: "min_len above 1", msg: &intakev1.RegisterCaseRequest{Case: func() *intakev1.CaseInput {
			c := validCase()
			c.Attachments = []*intakev1.AttachmentInput{{Name: "a.pdf", ContentType: "x", SizeBytes: 1, AttachmentId: "a"}}
			return c
		}()}, field: "case.attachments[0].content_type", want: "must be at least 3 characters"},
		{name: "gt and lte", msg: &intakev1.RegisterCaseRequest{Case: func() *intakev1.CaseInput {
			c := validCase()
			c.Attachments = []*intakev1.AttachmentInput{{Name: "a.pdf", ContentType: "application/pdf", SizeBytes: 0, AttachmentId: "a"}}
			return c
		}()}, field: "case.attachments[0].size_bytes", want: "must be greater than 0 and at most 26214400"},
		{name: "gte and lte", msg: &intakev1.RegisterCaseRequest{Case: func() *intakev1.CaseInput {
			c := validCase()
			c.Location = &intakev1.LocationInput{Latitude: 91}
			return c
		}()}, field: "case.location.latitude", want: "must be from -90 to 90"},
		{name: "pattern", msg: &routingv1.GetCaseRequest{CaseId: "KC-1"}, field: "case_id", want: "is not in the expected format"},
		{name: "oneof required", msg: &routingv1.FindCasesRequest{}, field: "key", want: "is required"},
		{name: "repeated items not in [0]", msg: &statisticsv1.QueryRequest{GroupBy: []statisticsv1.Dimension{0}}, field: "group_by[0]", want: "is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			viols, err := Check(v, tt.msg)
			require.NoError(t, err)
			got := map[string]string{}
			for _, fv := range viols {
				got[fv.Field] = fv.Description
				require.NotContains(t, fv.Description, "value ", "protovalidate's wording: %q", fv.Description)
				require.NotContains(t, fv.Description, "list [", "protovalidate's wording: %q", fv.Description)
				require.NotContains(t, fv.Description, "^", "a pattern leaked: %q", fv.Description)
			}
			require.Equal(t, tt.want, got[tt.field], "violations: %v", got)
		})
	}
}
