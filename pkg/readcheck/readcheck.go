// Package readcheck is what `kontakt check` is built from: each service
// compares its read model, opened read-only, with what the case log says
// it should hold, and reports the outcome as Results. The comparison
// itself belongs to each service (it knows what its model keeps); this
// package holds the parts they share: the result, the replay of the log up
// to a read model's checkpoint, and the wording of differences.
//
// A read model is compared at its own checkpoint, not at the log's head:
// a model a few events behind (the server was stopped before it caught
// up) is not wrong, and `kontakt serve` brings it up to date at start.
// How far behind it is goes into the result as Behind.
//
// Results never carry personal data or raw identifiers: counts, queue
// names, statuses and case numbers only (case numbers are what an
// operator looks a case up by, and they hold nothing personal).
package readcheck

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/projection"
)

// Result is the outcome of one check of one read model.
type Result struct {
	// Model is the read model checked ("routing", "retention",
	// "statistics").
	Model string `json:"read_model"`
	// Check names what was compared ("queues", "deadlines", ...).
	Check string `json:"check"`
	// OK is true when the read model holds what the log gives.
	OK bool `json:"ok"`
	// Checkpoint is the log position the read model has applied up to,
	// and Behind how many positions the log's head is ahead of it.
	Checkpoint uint64 `json:"checkpoint"`
	Behind     uint64 `json:"behind"`
	// Counts are what the log gives, by name ("cases", "open", ...).
	Counts map[string]int `json:"counts"`
	// Summary says the counts in words, for the one line per check.
	Summary string `json:"summary"`
	// Differences name what differs: queue and status with both counts,
	// or how many cases differ and their case numbers.
	Differences []string `json:"differences,omitempty"`
}

// Line is the result as one line of text: OK or MISMATCH, the model and
// check, the summary, and the differences after it.
func (r Result) Line() string {
	status := "OK"
	if !r.OK {
		status = "MISMATCH"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s %s %s: %s (log position %d", status, r.Model, r.Check, r.Summary, r.Checkpoint)
	if r.Behind > 0 {
		fmt.Fprintf(&b, ", %d behind the log's head; serve catches up at start", r.Behind)
	}
	b.WriteString(")")
	if len(r.Differences) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(r.Differences, "; "))
	}
	return b.String()
}

// New starts a result: OK until a difference is added.
func New(model, check string, checkpoint, head eventstore.Position) Result {
	r := Result{Model: model, Check: check, OK: true, Checkpoint: uint64(checkpoint), Counts: map[string]int{}}
	if head > checkpoint {
		r.Behind = uint64(head - checkpoint)
	}
	return r
}

// Differ adds a difference and marks the result a mismatch.
func (r *Result) Differ(format string, args ...any) {
	r.OK = false
	r.Differences = append(r.Differences, fmt.Sprintf(format, args...))
}

// CompareCounts adds a difference for every key whose count in the read
// model (got) is not the log's (want), in key order: what names, for
// example, the queue and status whose open cases differ. describe turns a
// key into words ("queue kundtjanst, status assigned").
func (r *Result) CompareCounts(what string, got, want map[string]int, describe func(key string) string) {
	keys := slices.Sorted(maps.Keys(want))
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if got[k] != want[k] {
			r.Differ("%s: %s %d in the read model, %d by the log", describe(k), what, got[k], want[k])
		}
	}
}

// maxNumbers is how many case numbers a difference names; the rest are
// counted.
const maxNumbers = 10

// Cases adds one difference saying how many of the cases differ and
// naming their case numbers (sorted; the first ten, and how many more).
// Cases without a number (one the log no longer holds) are counted only.
func (r *Result) Cases(what string, numbers []string, total int) {
	if len(numbers) == 0 {
		return
	}
	named := slices.DeleteFunc(slices.Clone(numbers), func(n string) bool { return n == "" })
	slices.SortFunc(named, cmp.Compare)
	named = slices.Compact(named)
	msg := fmt.Sprintf("%d of %d cases %s", len(numbers), total, what)
	if len(named) > 0 {
		shown := named[:min(len(named), maxNumbers)]
		msg += " (" + strings.Join(shown, ", ")
		if more := len(named) - len(shown); more > 0 {
			msg += fmt.Sprintf(" and %d more", more)
		}
		msg += ")"
	}
	r.Differ("%s", msg)
}

// ReplayBatchSize is how many events Replay hands apply at once.
const ReplayBatchSize = 4096

// Replay reads the log from its start up to and including position until,
// decodes each event once as the projection runner does
// (projection.Decode), and hands apply batches in log order. Events
// after until are never handed over, also when the event at until was
// purged since (a deleted case's). Nothing is written anywhere: what apply
// does with the events is up to the caller, which folds them into memory
// or into a scratch copy of a read model.
func Replay(ctx context.Context, store eventstore.Store, until eventstore.Position, apply func(context.Context, []projection.Event) error) error {
	if until == 0 {
		return nil
	}
	_, err := eventstore.SubscribeBatches(ctx, store, 0,
		eventstore.BatchOptions{Size: ReplayBatchSize, Idle: projection.DefaultIdle, Until: until},
		func(ctx context.Context, recorded []eventstore.RecordedEvent) error {
			n := len(recorded)
			for n > 0 && recorded[n-1].Position > until {
				n--
			}
			if n == 0 {
				return nil
			}
			batch, err := projection.Decode(recorded[:n])
			if err != nil {
				return err
			}
			return apply(ctx, batch)
		})
	if err != nil {
		return fmt.Errorf("replay the log up to position %d: %w", until, err)
	}
	return nil
}

// Count says n things in words: "1 queue", "4 queues".
func Count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
