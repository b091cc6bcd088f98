package readmodel

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
	"github.com/kontakt-se/kontakt/pkg/caseaccess"
	"github.com/kontakt-se/kontakt/pkg/casenames"
	"github.com/kontakt-se/kontakt/pkg/eventstore"
	"github.com/kontakt-se/kontakt/pkg/readcheck"
	"github.com/kontakt-se/kontakt/services/routing/app"
)

// ErrNoFile means the read model's file does not exist.
var ErrNoFile = errors.New("readmodel: no read model file")

// OpenReadOnly opens the read model's main file for reading only, for
// `kontakt check`: bbolt's shared lock, no write of any kind (no buckets
// created, no token file opened or compacted, no epoch repaired), so a
// check changes nothing it looks at. The store answers Census and
// Checkpoint; it has no token file, so FindByToken and Apply must not be
// called on it. A file that does not exist is ErrNoFile, not created.
func OpenReadOnly(path string, opts Options) (*Store, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoFile, path)
	}
	timeout := opts.OpenTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	s := &Store{sla: opts.SLA}
	if s.sla == nil {
		s.sla = DefaultSLA()
	}
	s.config = configString(s.sla)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("readmodel: open %s read-only: %w", path, err)
	}
	s.db = db
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte(bucketMeta))
		if meta == nil || string(meta.Get([]byte(keyConfig))) != s.config {
			s.needsRebuild = true
			return nil
		}
		for _, name := range allBuckets() {
			if tx.Bucket([]byte(name)) == nil {
				s.needsRebuild = true
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("readmodel: read %s: %w", path, err)
	}
	return s, nil
}

// CaseCensus is what the consistency check compares of one case: where
// it is, who holds it, its status and due time, and how far into its
// stream the read model has followed it.
type CaseCensus struct {
	Number string
	caseaccess.Facts
	Status   casev1.CaseStatus
	Open     bool
	OnHold   bool
	DueAt    time.Time
	Revision eventstore.Revision
}

// Census is what the read model holds, counted: every case's CaseCensus
// (from the case records), the open cases each queue's lists hold (the
// two open-case indexes, which ListQueue reads), each queue's counters
// (which the dashboards read) and the cases waiting for the router. A
// read model that is right agrees with itself in all of them, and with a
// read model built from the log.
type Census struct {
	Cases map[string]CaseCensus
	// ByAge and ByDue map a queue to the case ids in its open-case index.
	ByAge, ByDue map[string][]string
	Loads        map[string]app.QueueLoad
	Unrouted     []string
}

// Census counts what the store holds, in one read transaction.
func (s *Store) Census() (Census, error) {
	c := Census{Cases: map[string]CaseCensus{}, ByAge: map[string][]string{}, ByDue: map[string][]string{}, Loads: map[string]app.QueueLoad{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		if s.needsRebuild {
			return errors.New("the file was written with another layout or SLA")
		}
		err := tx.Bucket([]byte(bucketCases)).ForEach(func(k, v []byte) error {
			r, err := decodeRecord(string(k), v)
			if err != nil {
				return err
			}
			row := r.row(s.sla)
			c.Cases[string(k)] = CaseCensus{
				Number: row.Number, Facts: row.Facts, Status: row.Status, Open: row.IsOpen(),
				OnHold: row.OnHold, DueAt: row.DueAt, Revision: row.Revision,
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, ix := range []struct {
			bucket string
			into   map[string][]string
		}{{bucketByAge, c.ByAge}, {bucketByDue, c.ByDue}} {
			err := tx.Bucket([]byte(ix.bucket)).ForEach(func(k, _ []byte) error {
				queue, id, err := splitOpenKey(k)
				if err != nil {
					return err
				}
				ix.into[queue] = append(ix.into[queue], id)
				return nil
			})
			if err != nil {
				return err
			}
		}
		if err := tx.Bucket([]byte(bucketLoads)).ForEach(func(k, v []byte) error {
			l, err := decodeLoad(string(k), v)
			c.Loads[string(k)] = l
			return err
		}); err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketUnrouted)).ForEach(func(k, _ []byte) error {
			c.Unrouted = append(c.Unrouted, string(k))
			return nil
		})
	})
	if err != nil {
		return Census{}, fmt.Errorf("readmodel: census: %w", err)
	}
	return c, nil
}

// splitOpenKey returns the queue and the case id of an open-index key.
func splitOpenKey(k []byte) (queue, caseID string, err error) {
	id, err := caseIDFromOpenKey(k)
	if err != nil {
		return "", "", err
	}
	n := int(k[0])<<8 | int(k[1])
	return string(k[2 : 2+n]), id, nil
}

// Compare compares the census of a read model (got) with that of one
// built from the log up to the same checkpoint (want) and fills two
// results: "cases" (every case's queue, holder, status, due time and
// revision) and "queues" (open cases per queue and status, each queue's
// two lists, its counters, and the cases waiting for the router).
func Compare(got, want Census, cases, queues *readcheck.Result) {
	var differ []string
	open := 0
	for id, w := range want.Cases {
		if w.Open {
			open++
		}
		if g, ok := got.Cases[id]; !ok || g != w {
			differ = append(differ, w.Number)
		}
	}
	for id, g := range got.Cases {
		if _, ok := want.Cases[id]; !ok {
			differ = append(differ, g.Number)
		}
	}
	cases.Counts["cases"], cases.Counts["open"] = len(want.Cases), open
	cases.Summary = fmt.Sprintf("%d cases, %d open", len(want.Cases), open)
	cases.Cases("differ from the log", differ, len(want.Cases))

	byStatus := func(c Census) map[string]int {
		m := map[string]int{}
		for _, cc := range c.Cases {
			if cc.Open {
				m[cc.Queue+"\x00"+casenames.Status(cc.Status)]++
			}
		}
		return m
	}
	statusKey := func(k string) string {
		q, st, _ := strings.Cut(k, "\x00")
		return fmt.Sprintf("queue %s, status %s", q, st)
	}
	wantStatus := byStatus(want)
	queues.CompareCounts("open cases", byStatus(got), wantStatus, statusKey)
	lengths := func(m map[string][]string) map[string]int {
		out := map[string]int{}
		for q, ids := range m {
			out[q] = len(ids)
		}
		return out
	}
	queues.CompareCounts("cases in the list by age", lengths(got.ByAge), lengths(want.ByAge), func(q string) string { return "queue " + q })
	queues.CompareCounts("cases in the list by due time", lengths(got.ByDue), lengths(want.ByDue), func(q string) string { return "queue " + q })
	counters := func(c Census, unassigned bool) map[string]int {
		out := map[string]int{}
		for q, l := range c.Loads {
			if unassigned {
				out[q] = int(l.Unassigned)
			} else {
				out[q] = int(l.Open)
			}
		}
		return out
	}
	queueKey := func(q string) string { return "queue " + q + " counter" }
	queues.CompareCounts("open", counters(got, false), counters(want, false), queueKey)
	queues.CompareCounts("unassigned", counters(got, true), counters(want, true), queueKey)
	// The counters by status (the metrics' source) against the statuses
	// of the open cases the log gives.
	statusCounters := func(c Census) map[string]int {
		out := map[string]int{}
		for q, l := range c.Loads {
			for st, n := range l.OpenByStatus {
				out[q+"\x00"+casenames.Status(st)] = int(n)
			}
		}
		return out
	}
	queues.CompareCounts("open counter", statusCounters(got), wantStatus, statusKey)
	if len(got.Unrouted) != len(want.Unrouted) {
		queues.Differ("waiting for the router: %d in the read model, %d by the log", len(got.Unrouted), len(want.Unrouted))
	}
	inQueues := map[string]bool{}
	for k := range wantStatus {
		q, _, _ := strings.Cut(k, "\x00")
		inQueues[q] = true
	}
	queues.Counts["queues"], queues.Counts["open"], queues.Counts["unrouted"] = len(inQueues), open, len(want.Unrouted)
	// Per queue and status, in the counts and in words.
	var perQueue []string
	for _, q := range slices.Sorted(maps.Keys(inQueues)) {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(wantStatus)) {
			if kq, st, _ := strings.Cut(k, "\x00"); kq == q {
				parts = append(parts, fmt.Sprintf("%d %s", wantStatus[k], st))
				queues.Counts["open "+q+" "+st] = wantStatus[k]
			}
		}
		perQueue = append(perQueue, q+": "+strings.Join(parts, ", "))
	}
	queues.Summary = fmt.Sprintf("%s in %s, %d waiting for the router", readcheck.Count(open, "open case", "open cases"), readcheck.Count(len(inQueues), "queue", "queues"), len(want.Unrouted))
	if len(perQueue) > 0 {
		queues.Summary += " [" + strings.Join(perQueue, "; ") + "]"
	}
}
