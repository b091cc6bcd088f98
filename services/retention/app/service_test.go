package app_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kontakt-se/kontakt/pkg/shredjournal"
	"github.com/kontakt-se/kontakt/services/retention/adapters/archive"
	"github.com/kontakt-se/kontakt/services/retention/adapters/index"
	"github.com/kontakt-se/kontakt/services/retention/app"
)

// TestNewRefusesMissingParts: New names what is missing instead of
// building a service that fails later.
func TestNewRefusesMissingParts(t *testing.T) {
	w := newWorld(t)
	b := w.connect(t)
	idx, err := index.Open(filepath.Join(t.TempDir(), "index.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = idx.Close() })
	full := func() app.Options {
		return app.Options{
			Store: b.store, Sealer: b.sealer, Ledger: b.ledger, Index: idx, Archive: archive.Dir(t.TempDir()),
			Audit: b.audit, Blind: w.blind, Config: app.Config{Plan: plan(t, "molndal")},
		}
	}
	_, err = app.New(full())
	require.NoError(t, err, "the full set builds")
	for _, tc := range []struct {
		name string
		drop func(*app.Options)
		want string
	}{
		{"no store", func(o *app.Options) { o.Store = nil }, "adapter is missing"},
		{"no index", func(o *app.Options) { o.Index = nil }, "adapter is missing"},
		{"no archive", func(o *app.Options) { o.Archive = nil }, "adapter is missing"},
		{"no plan", func(o *app.Options) { o.Plan = nil }, "no plan"},
		{"a journal without stored receipts", func(o *app.Options) {
			o.Ledger = struct{ app.Ledger }{b.ledger}
			o.Journal = nopJournal{}
		}, "shred journal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := full()
			tc.drop(&o)
			_, err := app.New(o)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

type nopJournal struct{}

func (nopJournal) Append(...shredjournal.Entry) error { return nil }
