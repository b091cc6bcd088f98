package server

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckOrigin(t *testing.T) {
	tests := []struct {
		origin string
		want   string // "" when the origin is accepted
	}{
		{origin: "http://localhost:5173"},
		{origin: "https://agent.molndal.se"},
		{origin: "http://[::1]:8080"},
		{origin: "http://localhost:5173/", want: `a browser sends its origin as "http://localhost:5173"`},
		{origin: "https://agent.molndal.se/ui", want: `a browser sends its origin as "https://agent.molndal.se"`},
		{origin: "https://agent.molndal.se:443", want: `a browser sends its origin as "https://agent.molndal.se"`},
		{origin: "http://localhost:80", want: `a browser sends its origin as "http://localhost"`},
		{origin: "https://Agent.Molndal.se", want: `a browser sends its origin as "https://agent.molndal.se"`},
		{origin: "https://agent.molndal.se?x=1", want: "never matches"},
		{origin: "https://user@agent.molndal.se", want: "never matches"},
		{origin: "localhost:5173", want: "is not an origin"},
		{origin: "ftp://files.example.se", want: "is not an origin"},
		{origin: "*", want: "would let every web page"},
		{origin: " ", want: "empty origin"},
	}
	for _, tt := range tests {
		t.Run(tt.origin, func(t *testing.T) {
			err := CheckOrigin(tt.origin)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}
