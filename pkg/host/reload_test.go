package host

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/config"
)

func TestReloadAppliesAllOrNothing(t *testing.T) {
	errBadFile := errors.New("config key routing.queues: at least one queue is needed")
	errBadRules := errors.New("rules.yaml:3: unknown queue")
	tests := []struct {
		name        string
		load        func() (config.Config, error)
		secondPart  error
		wantErr     error
		wantApplied []string
	}{
		{name: "every part accepts", load: func() (config.Config, error) { return config.Default(), nil }, wantApplied: []string{"first", "second"}},
		{name: "the file is refused", load: func() (config.Config, error) { return config.Config{}, errBadFile }, wantErr: errBadFile},
		{name: "one part refuses", load: func() (config.Config, error) { return config.Default(), nil }, secondPart: errBadRules, wantErr: errBadRules},
		{name: "no reload configured", wantErr: ErrReloadUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &Host{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), opts: Options{Reload: tt.load}}
			var applied []string
			part := func(name string, err error) ReloadFunc {
				return func(config.Config) (func(), error) {
					if err != nil {
						return nil, err
					}
					return func() { applied = append(applied, name) }, nil
				}
			}
			h.OnReload(part("first", nil))
			h.OnReload(part("second", tt.secondPart))
			err := h.Reload()
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Empty(t, applied, "a refused configuration changes nothing")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantApplied, applied)
		})
	}
}
