// Package app holds the routing service's commands and queries.
package app

import (
	"slices"
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

// Queues answers which queues a caller may see. Queue membership comes
// from configuration and from token claims, so an identity provider can
// manage it without a redeploy.
type Queues struct {
	queues []Queue
}

// NewQueues keeps the configured queues in their configured order.
func NewQueues(queues []Queue) *Queues {
	return &Queues{queues: slices.Clone(queues)}
}

// Visible returns the queues the caller belongs to; a supervisor sees all.
func (q *Queues) Visible(c Caller) []Queue {
	var out []Queue
	for _, queue := range q.queues {
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
	for _, queue := range q.queues {
		if queue.Name == name {
			return true
		}
	}
	return false
}

// Department returns the department a queue belongs to, if any.
func (q *Queues) Department(name string) string {
	for _, queue := range q.queues {
		if queue.Name == name {
			return queue.Department
		}
	}
	return ""
}

// Names lists the configured queues' names.
func (q *Queues) Names() []string {
	out := make([]string, 0, len(q.queues))
	for _, queue := range q.queues {
		out = append(out, queue.Name)
	}
	return out
}
