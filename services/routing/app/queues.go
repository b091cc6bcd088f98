// Package app holds the routing service's commands and queries.
package app

import (
	"slices"
	"sync/atomic"

	"github.com/kontakt-se/kontakt/services/routing/domain"
)

// Queue is a configured work queue.
type Queue struct {
	Name       string
	Title      string
	Department string
	// Members are subject ids configured as belonging to the queue.
	Members []string
}

// Caller is who asks, as far as queue visibility is concerned.
type Caller struct {
	Subject string
	// Supervisor sees every queue.
	Supervisor bool
	// Queues are the queue names the caller's token says they belong to.
	Queues []string
	// Department is the caller's department (officers see its queues).
	Department string
}

// Queues answers which queues a caller may see, and holds the rules that
// route new cases to them. Queue membership comes from configuration and
// from token claims, so an identity provider can manage it without a
// redeploy; the configured part, and the rules, change when the
// configuration is reloaded (SIGHUP). Queues and rules are replaced
// together, as one value, so no reader ever sees rules that name a queue
// the queue list does not have, and readers need no lock.
type Queues struct {
	cur atomic.Pointer[queueSet]
}

// queueSet is one configuration of queues and rules; never changed once
// published.
type queueSet struct {
	queues []Queue
	rules  *domain.Rules
	// changed is closed when this set is replaced.
	changed chan struct{}
}

// NewQueues keeps the configured queues in their configured order, with
// the rules that route to them (nil where nothing is routed, as in tests
// of the query side).
func NewQueues(queues []Queue, rules *domain.Rules) *Queues {
	q := &Queues{}
	q.cur.Store(&queueSet{queues: cloneQueues(queues), rules: rules, changed: make(chan struct{})})
	return q
}

// Replace makes queues and rules the current configuration, and wakes
// everyone waiting on Changed. The caller has validated them exactly as
// at start-up.
func (q *Queues) Replace(queues []Queue, rules *domain.Rules) {
	old := q.cur.Swap(&queueSet{queues: cloneQueues(queues), rules: rules, changed: make(chan struct{})})
	close(old.changed)
}

// Changed returns a channel that is closed when the configuration is next
// replaced. A long-lived reader (WatchQueue) takes it before it checks
// access, and checks again when it closes, so no change slips in between.
func (q *Queues) Changed() <-chan struct{} { return q.cur.Load().changed }

// Rules are the current routing rules.
func (q *Queues) Rules() *domain.Rules { return q.cur.Load().rules }

func cloneQueues(queues []Queue) []Queue {
	out := make([]Queue, len(queues))
	for i, queue := range queues {
		queue.Members = slices.Clone(queue.Members)
		out[i] = queue
	}
	return out
}

// Visible returns the queues the caller belongs to; a supervisor sees all.
func (q *Queues) Visible(c Caller) []Queue {
	var out []Queue
	for _, queue := range q.cur.Load().queues {
		if c.Supervisor ||
			slices.Contains(c.Queues, queue.Name) ||
			slices.Contains(queue.Members, c.Subject) ||
			(c.Department != "" && queue.Department == c.Department) {
			out = append(out, queue)
		}
	}
	return out
}

// Known reports whether a queue is configured.
func (q *Queues) Known(name string) bool {
	for _, queue := range q.cur.Load().queues {
		if queue.Name == name {
			return true
		}
	}
	return false
}

// Department returns the department a queue belongs to, if any.
func (q *Queues) Department(name string) string {
	for _, queue := range q.cur.Load().queues {
		if queue.Name == name {
			return queue.Department
		}
	}
	return ""
}

// Names lists the configured queues' names.
func (q *Queues) Names() []string {
	queues := q.cur.Load().queues
	out := make([]string, 0, len(queues))
	for _, queue := range queues {
		out = append(out, queue.Name)
	}
	return out
}
