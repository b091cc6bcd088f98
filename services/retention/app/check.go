package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/kontakt-se/kontakt/pkg/projection"
	"github.com/kontakt-se/kontakt/pkg/readcheck"
	"github.com/kontakt-se/kontakt/services/retention/domain"
)

// ReplayIndex is a deadline index in memory, as `kontakt check` folds the
// log into it with Replay. Entries are kept encoded as the index file
// keeps them (JSON), so an entry read back is a copy and an event that
// does not fit its case leaves it as it was, exactly as in the file.
type ReplayIndex struct {
	entries map[string][]byte
}

var _ IndexTx = (*ReplayIndex)(nil)

// NewReplayIndex returns an empty index in memory.
func NewReplayIndex() *ReplayIndex { return &ReplayIndex{entries: map[string][]byte{}} }

// Get returns a copy of a case's entry.
func (x *ReplayIndex) Get(caseID string) (*Entry, bool, error) {
	b, ok := x.entries[caseID]
	if !ok {
		return nil, false, nil
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, false, err
	}
	return &e, true, nil
}

// Put stores an entry.
func (x *ReplayIndex) Put(e *Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	x.entries[e.Case.ID] = b
	return nil
}

// Delete drops a case.
func (x *ReplayIndex) Delete(caseID string) error {
	delete(x.entries, caseID)
	return nil
}

// SetTokens, DropTokens and OnCommit do nothing: a check computes no
// tokens (they would need the keys and hold what personal data stands
// for) and commits nothing.
func (x *ReplayIndex) SetTokens(string, string, []string) {}

// DropTokens does nothing (see SetTokens).
func (x *ReplayIndex) DropTokens(string) {}

// OnCommit does nothing (see SetTokens).
func (x *ReplayIndex) OnCommit(func()) {}

// Replay applies a batch of events to tx as the projector applies them to
// the index (the same apply, with the same plan), computing no tokens and
// running no effects: no key is destroyed, no receipt written, no stream
// deleted. It is how `kontakt check` learns what a correct index holds.
func Replay(plan *domain.Plan, tx IndexTx, batch []projection.Event) error {
	s := &Service{cfg: Config{Plan: plan}, log: slog.New(slog.DiscardHandler)}
	for i := range batch {
		if _, err := s.apply(tx, batch[i].Recorded, batch[i].Message, tokenPair{}); err != nil {
			return err
		}
	}
	return nil
}

// PlanFingerprint names a plan as the index records it (Index.Plan).
func PlanFingerprint(plan *domain.Plan) string { return plan.Name + "@" + plan.Version }

// IndexView is what `kontakt check` reads of an index: every entry, the
// due-time index the sweeper reads, and the plan the due times were
// computed with.
type IndexView struct {
	Entries map[string]*Entry
	// Due maps a case to the time the due-time index lists it at.
	Due  map[string]time.Time
	Plan string
}

// View returns the replayed index as an IndexView: the due-time index a
// correct file holds is every entry with a due time.
func (x *ReplayIndex) View(plan *domain.Plan) (IndexView, error) {
	v := IndexView{Entries: map[string]*Entry{}, Due: map[string]time.Time{}, Plan: PlanFingerprint(plan)}
	for id := range x.entries {
		e, _, err := x.Get(id)
		if err != nil {
			return IndexView{}, err
		}
		v.Entries[id] = e
		if !e.NextDue.IsZero() {
			v.Due[id] = e.NextDue
		}
	}
	return v, nil
}

// CompareIndex compares an index (got) with the one the log gives (want)
// at the same checkpoint and fills two results: "cases" (every case's
// retention state: type, times, holds, marks, what is redacted) and
// "deadlines" (every case's next deadline, the due-time index the
// sweeper reads, and the cases due at now). Due times computed with
// another plan than the configured one are not compared: kontakt serve
// recomputes them at start.
func CompareIndex(got, want IndexView, now time.Time, cases, deadlines *readcheck.Result) error {
	var stateDiffer, dueDiffer []string
	for id, w := range want.Entries {
		g, ok := got.Entries[id]
		if !ok {
			stateDiffer = append(stateDiffer, w.Case.Number)
			continue
		}
		gs, err := json.Marshal(g.Case)
		if err != nil {
			return err
		}
		ws, err := json.Marshal(w.Case)
		if err != nil {
			return err
		}
		if !bytes.Equal(gs, ws) {
			stateDiffer = append(stateDiffer, w.Case.Number)
		}
		if got.Plan == want.Plan && !g.NextDue.Equal(w.NextDue) {
			dueDiffer = append(dueDiffer, w.Case.Number)
		}
	}
	for id, g := range got.Entries {
		if _, ok := want.Entries[id]; !ok {
			stateDiffer = append(stateDiffer, g.Case.Number)
		}
	}
	cases.Counts["cases"] = len(want.Entries)
	cases.Summary = fmt.Sprintf("%d cases", len(want.Entries))
	cases.Cases("differ from the log", stateDiffer, len(want.Entries))

	dueNow := 0
	for _, at := range want.Due {
		if !at.After(now) {
			dueNow++
		}
	}
	deadlines.Counts["scheduled"], deadlines.Counts["due_now"] = len(want.Due), dueNow
	deadlines.Summary = fmt.Sprintf("%d cases with a deadline, %d due now", len(want.Due), dueNow)
	if got.Plan != want.Plan {
		deadlines.Summary += fmt.Sprintf("; computed with plan %s, kontakt serve recomputes them with %s at start", got.Plan, want.Plan)
		return nil
	}
	deadlines.Cases("have another deadline than the log gives", dueDiffer, len(want.Entries))
	// The sweeper reads the due-time index, not the entries: a case
	// missing there is never swept.
	var listed []string
	for id, at := range want.Due {
		if g, ok := got.Due[id]; !ok || !g.Equal(at.UTC()) {
			listed = append(listed, want.Entries[id].Case.Number)
		}
	}
	for id := range got.Due {
		if _, ok := want.Due[id]; !ok {
			number := ""
			if e, ok := got.Entries[id]; ok {
				number = e.Case.Number
			}
			listed = append(listed, number)
		}
	}
	deadlines.Cases("are listed wrongly for the sweeper", listed, len(want.Entries))
	gotNow := 0
	for _, at := range got.Due {
		if !at.After(now) {
			gotNow++
		}
	}
	if gotNow != dueNow {
		deadlines.Differ("due now: %d in the read model, %d by the log", gotNow, dueNow)
	}
	return nil
}
