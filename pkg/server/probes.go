package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// ReadinessCheck reports whether one thing the process needs to answer
// correctly is in order; a non-nil error makes /readyz answer 503. Its
// text is shown on /readyz (on the metrics port, for the operator and the
// orchestrator): it must say what is wrong in the operator's words and
// hold no personal data.
type ReadinessCheck func(context.Context) error

// readinessTimeout bounds each check, so a hung dependency makes /readyz
// answer "not ready" quickly instead of making the probe itself time out.
const readinessTimeout = 2 * time.Second

type probes struct {
	mu     sync.Mutex
	names  []string
	checks map[string]ReadinessCheck
}

// AddReadinessCheck adds a check that /readyz runs. Orchestrators send
// traffic only to a ready process (Kubernetes readinessProbe), so a check
// belongs here when the process cannot answer correctly without it: the
// event store reachable, the read models caught up with the log. Liveness
// (/healthz) deliberately runs no checks: restarting the process would
// not make NATS reachable.
func (s *Server) AddReadinessCheck(name string, check ReadinessCheck) {
	s.probes.mu.Lock()
	defer s.probes.mu.Unlock()
	if s.probes.checks == nil {
		s.probes.checks = map[string]ReadinessCheck{}
	}
	if _, ok := s.probes.checks[name]; !ok {
		s.probes.names = append(s.probes.names, name)
	}
	s.probes.checks[name] = check
}

// stoppingAnswer starts a probe's plain-text answer and, once shutdown
// has begun, answers 503 "shutting down" and reports true: a process that
// is draining is neither live nor ready for new traffic.
func (s *Server) stoppingAnswer(w http.ResponseWriter) bool {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	select {
	case <-s.stopping:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "shutting down")
		return true
	default:
		return false
	}
}

// handleHealthz answers 200 while the process serves and 503 once it has
// begun to shut down.
func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	if !s.stoppingAnswer(w) {
		fmt.Fprintln(w, "ok")
	}
}

// handleReadyz runs every readiness check side by side and answers 200
// with one "name: ok" line each, or 503 naming each check that failed.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if s.stoppingAnswer(w) {
		return
	}
	s.probes.mu.Lock()
	names := slices.Clone(s.probes.names)
	checks := make([]ReadinessCheck, len(names))
	for i, n := range names {
		checks[i] = s.probes.checks[n]
	}
	s.probes.mu.Unlock()

	results := make([]error, len(names))
	var wg sync.WaitGroup
	for i, check := range checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), readinessTimeout)
			defer cancel()
			results[i] = check(ctx)
		})
	}
	wg.Wait()
	var b strings.Builder
	ready := true
	for i, n := range names {
		if results[i] != nil {
			ready = false
			fmt.Fprintf(&b, "%s: not ready: %v\n", n, results[i])
		} else {
			fmt.Fprintf(&b, "%s: ok\n", n)
		}
	}
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write([]byte(b.String()))
}
