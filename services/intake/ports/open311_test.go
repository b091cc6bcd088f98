package ports

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOpen311FormCharsets(t *testing.T) {
	latin1 := url.Values{"description": {"L\xe5mpan"}}
	tests := []struct {
		name    string
		vals    url.Values
		charset string
		want    string
		wantErr string
	}{
		{name: "UTF-8 without charset", vals: url.Values{"description": {"Lämpan"}}, want: "Lämpan"},
		{name: "Latin-1 without charset", vals: latin1, wantErr: "description: not valid UTF-8"},
		{name: "Latin-1 declared", vals: latin1, charset: "iso-8859-1", want: "Låmpan"},
		{name: "windows-1252 declared", vals: url.Values{"description": {"\x80 5"}}, charset: "windows-1252", want: "€ 5"},
		{name: "UTF-8 declared but not", vals: latin1, charset: "utf-8", wantErr: "description: not valid UTF-8"},
		{name: "every parameter that is not UTF-8 is named", vals: url.Values{"description": {"L\xe5mpan"}, "address_string": {"G\xe5ngv\xe4gen"}, "lat": {"57.1"}},
			wantErr: "address_string: not valid UTF-8; send UTF-8 or name the charset in Content-Type\ndescription: not valid UTF-8"},
		{name: "unknown charset", vals: latin1, charset: "x-klingon", wantErr: errUnknownCharset.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := toUTF8(tt.vals, tt.charset)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.NotContains(t, err.Error(), "mpan", "the error does not repeat the value")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got.Get("description"))
		})
	}
}

func TestIdempotencyKeyHeaderRule(t *testing.T) {
	for key, ok := range map[string]bool{
		"abcdefgh": true, "KC.2026:0001_x-y": true, "short": false, "has space x": false,
		string(make([]byte, 129)): false, "åäöåäöåäö": false,
	} {
		require.Equal(t, ok, validIdempotencyKey(key), "%q", key)
	}
}
