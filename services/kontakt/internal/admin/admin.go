// Package admin is the local admin socket of `kontakt serve`: a unix
// socket in <data_dir>/admin (a directory only kontakt's user may enter,
// 0700), on which the running process does the admin work only it can do,
// such as `kontakt backup` while serving (the read models' files are held
// by the process; bbolt copies them consistently only from inside it).
//
// Access is by file permission, not by token: whoever may enter the
// directory is kontakt's own user (or root), who can read the data
// directory anyway. The protocol is HTTP on the socket; the reply to a
// backup is a stream of JSON lines, progress events and then the result.
package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/kontakt-se/kontakt/pkg/host"
	"github.com/kontakt-se/kontakt/services/kontakt/internal/backup"
)

// BackupPath is the route of a backup.
const BackupPath = "/v1/backup"

// BackupRequest asks the running process for a backup.
type BackupRequest struct {
	// Out and KeysOut are absolute paths (the process's working directory
	// is not the caller's).
	Out     string `json:"out"`
	KeysOut string `json:"keys_out"`
}

// Line is one line of a backup's reply: a progress event, or at the end
// the result or the error.
type Line struct {
	Event  *backup.Event  `json:"event,omitempty"`
	Result *backup.Result `json:"result,omitempty"`
	Error  string         `json:"error,omitempty"`
}

// Server answers on the admin socket of a running process.
type Server struct {
	h    *host.Host
	path string
	ln   net.Listener
	srv  *http.Server
	log  *slog.Logger

	mu     sync.Mutex
	active bool
}

// Listen creates the socket's directory (0700) and the socket (0600),
// replacing one left by a process that died (this process holds the data
// directory's read models, so no other serves it).
func Listen(h *host.Host, path string, logger *slog.Logger) (*Server, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	s := &Server{h: h, path: path, ln: ln, log: logger}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+BackupPath, s.backup)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Serve answers until ctx ends, then closes the socket and removes it.
func (s *Server) Serve(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.srv.Serve(s.ln) }()
	select {
	case <-ctx.Done():
	case err := <-done:
		_ = os.Remove(s.path)
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-done
	_ = os.Remove(s.path)
	return nil
}

// backup takes a backup in this process, streaming its progress.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	var req BackupRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !filepath.IsAbs(req.Out) || (req.KeysOut != "" && !filepath.IsAbs(req.KeysOut)) {
		http.Error(w, "out and keys_out must be absolute paths", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	if s.active {
		s.mu.Unlock()
		http.Error(w, "a backup is running already", http.StatusConflict)
		return
	}
	s.active = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active = false
		s.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	var emu sync.Mutex
	send := func(l Line) {
		emu.Lock()
		defer emu.Unlock()
		_ = enc.Encode(l)
		if flusher != nil {
			flusher.Flush()
		}
	}
	var last time.Time
	progress := func(e backup.Event) {
		// Enough for a progress bar; the socket need not carry every chunk.
		if now := time.Now(); now.Sub(last) >= 100*time.Millisecond || e.Done == e.Total {
			last = now
			send(Line{Event: &e})
		}
	}
	s.log.Info("backup started (admin socket)")
	res, err := backup.Run(r.Context(), s.h, backup.Options{Out: req.Out, KeysOut: req.KeysOut, Online: true}, progress)
	if err != nil {
		s.log.Error("backup failed", "error", err)
		send(Line{Error: err.Error()})
		return
	}
	data, keys := res.Bytes()
	s.log.Info("backup written", "backup_id", res.Data.BackupID, "data_bytes", data, "keys_bytes", keys, "duration", res.Duration.Round(time.Millisecond).String())
	send(Line{Result: res})
}

// ErrNoServer means nothing answers on the socket: no server runs on the
// data directory (or one that predates the socket).
var ErrNoServer = errors.New("no kontakt serve answers on the admin socket")

// Backup asks the process on the socket for a backup, passing its
// progress to progress. It returns ErrNoServer when nobody listens.
func Backup(ctx context.Context, socket string, req BackupRequest, progress backup.Progress) (*backup.Result, error) {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://kontakt"+BackupPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(hreq)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, ErrNoServer
		}
		return nil, fmt.Errorf("admin socket %s: %w", socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := bufio.NewReader(resp.Body).ReadString('\n')
		return nil, fmt.Errorf("the running kontakt refused the backup: %s", msg)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 1<<16), 64<<20)
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("admin socket: %w", err)
		}
		switch {
		case l.Event != nil:
			if progress != nil {
				progress(*l.Event)
			}
		case l.Error != "":
			return nil, errors.New(l.Error)
		case l.Result != nil:
			return l.Result, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return nil, errors.New("the running kontakt ended the backup without a result (did it stop?)")
}
