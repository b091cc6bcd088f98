package statistics

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/readcheck"
	"github.com/kontakt-se/kontakt/services/statistics/adapters/store"
	"github.com/kontakt-se/kontakt/services/statistics/adapters/stream"
	"github.com/kontakt-se/kontakt/services/statistics/domain"
)

// Check compares the statistics read model with the case log and the
// statistics stream, for `kontakt check` on a stopped data directory. The
// file is opened read-only; the log up to its checkpoint is folded in
// memory with the projector's own fold (domain.ProjectDecoded, the same
// policy and id key), and the stream is read, never written. Two results:
//
//   - "cases": every live case's state and record as the log gives it,
//     and each one's record in the records the queries read;
//   - "records": every record the file holds against the newest version
//     per statistics id in the stream, which is the only copy of the
//     records of deleted cases. Versions of the last batch that a crash
//     left unpublished (the outbox) are counted apart: kontakt serve
//     publishes them at start.
//
// head is the log's head, for how far the file is behind. A data
// directory without the file compares as an empty read model.
func Check(ctx context.Context, cfg Config, es eventstore.Store, head eventstore.Position, js jetstream.JetStream) ([]readcheck.Result, error) {
	policy, err := cfg.policy()
	if err != nil {
		return nil, err
	}
	ids, err := domain.NewIDs(cfg.IDKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	gotCases := map[string]*domain.Case{}
	gotRecords := map[string]domain.Record{}
	pending := map[int64]bool{}
	var cp eventstore.Position
	path := filepath.Join(cfg.DataDir, FileName)
	if _, err := os.Stat(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	} else if err == nil {
		st, err := store.OpenReadOnly(path)
		if err != nil {
			return nil, fmt.Errorf("statistics read model (stop kontakt serve first): %w", err)
		}
		defer func() { _ = st.Close() }()
		state, err := st.State()
		if err != nil {
			return nil, err
		}
		cp = state.Checkpoint
		for _, m := range state.Outbox {
			pending[m.Version] = true
		}
		if err := st.EachCase(func(id string, c *domain.Case) error { gotCases[id] = c; return nil }); err != nil {
			return nil, err
		}
		recs, err := st.Records()
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			gotRecords[r.StatisticsID] = r
		}
	}

	// The log, folded as the projector folds it.
	wantCases := map[string]*domain.Case{}
	numbers := map[string]string{}
	err = readcheck.Replay(ctx, es, cp, func(_ context.Context, batch []projection.Event) error {
		for _, ev := range batch {
			id := ev.Recorded.Stream
			if m, ok := ev.Message.(*casev1.CaseRegistered); ok {
				numbers[id] = m.GetCaseNumber()
			}
			pos := int64(ev.Recorded.Position)
			step, err := domain.ProjectDecoded(wantCases[id], ev.Recorded, ev.Message, policy, func(seed string) string { return ids.For(seed, pos) })
			if err != nil {
				return err
			}
			switch {
			case step.Forget:
				delete(wantCases, id)
			case step.Case != nil:
				wantCases[id] = step.Case
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("statistics: %w", err)
	}

	cases := readcheck.New("statistics", "cases", cp, head)
	var differ, unrecorded []string
	for id, w := range wantCases {
		g, ok := gotCases[id]
		if !ok || !g.RegisteredAt.Equal(w.RegisteredAt) || !sameRecord(g.Record, w.Record) {
			differ = append(differ, numbers[id])
		}
		if r, ok := gotRecords[w.Record.StatisticsID]; !ok || !sameRecord(r, w.Record) {
			unrecorded = append(unrecorded, numbers[id])
		}
	}
	for id := range gotCases {
		if _, ok := wantCases[id]; !ok {
			differ = append(differ, numbers[id])
		}
	}
	cases.Counts["cases"] = len(wantCases)
	cases.Summary = fmt.Sprintf("%d live cases, each with its record", len(wantCases))
	cases.Cases("differ from the log", differ, len(wantCases))
	cases.Cases("have another record in the records the queries read", unrecorded, len(wantCases))

	// The records, against the stream.
	records := readcheck.New("statistics", "records", cp, head)
	out, err := stream.Open(ctx, js)
	if err != nil {
		return nil, err
	}
	inStream, err := out.Recount(ctx)
	if err != nil {
		return nil, err
	}
	var missing, different, unpublished int
	seen := map[string]bool{}
	for _, s := range inStream {
		seen[s.StatisticsID] = true
		g, ok := gotRecords[s.StatisticsID]
		switch {
		case !ok:
			missing++
		case g.Version > s.Version && pending[g.Version]:
			unpublished++
		case !sameRecord(g, s):
			different++
		}
	}
	extra := 0
	for id, g := range gotRecords {
		if seen[id] {
			continue
		}
		if pending[g.Version] {
			unpublished++
		} else {
			extra++
		}
	}
	records.Counts["records"], records.Counts["unpublished"] = len(inStream), unpublished
	records.Summary = fmt.Sprintf("%d records, as the statistics stream holds them", len(inStream))
	if unpublished > 0 {
		records.Summary += fmt.Sprintf("; %d versions of the last batch not yet published, which kontakt serve publishes at start", unpublished)
	}
	if missing > 0 {
		records.Differ("%s of the stream missing from the read model", readcheck.Count(missing, "record", "records"))
	}
	if different > 0 {
		records.Differ("%s different from the stream's newest version", readcheck.Count(different, "record", "records"))
	}
	if extra > 0 {
		records.Differ("%s of the read model not in the stream", readcheck.Count(extra, "record", "records"))
	}
	return []readcheck.Result{cases, records}, nil
}

// sameRecord compares two records in the form the stream and the API
// carry them, which is also what the file stores.
func sameRecord(a, b domain.Record) bool {
	return proto.Equal(a.ToProto(), b.ToProto())
}
