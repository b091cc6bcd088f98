package extract

import (
	"bytes"
	"encoding/json"
	"io"

	"google.golang.org/protobuf/encoding/protojson"

	retentionv1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/retention/v1"
)

// WriteJSON writes the extract exactly as the API answers it over REST
// (protojson of SubjectAccessResponse, lowerCamelCase names, enums by
// name, unset fields left out), so its schema is the documented one in
// proto/kontakt/retention/v1. protojson varies its whitespace on purpose;
// the output is indented again by encoding/json so the same extract gives
// the same bytes.
func WriteJSON(w io.Writer, resp *retentionv1.SubjectAccessResponse) error {
	raw, err := protojson.Marshal(resp)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err = buf.WriteTo(w)
	return err
}
