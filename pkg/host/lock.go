package host

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// ErrDataDirInUse means another kontakt process holds the data directory.
var ErrDataDirInUse = errors.New("data directory in use")

// lockFileName is the file under the data directory whose lock says a
// process is using the directory.
const lockFileName = "kontakt.lock"

// lockDataDir takes an exclusive lock on the data directory for as long as
// the returned file stays open, and fails at once if another process holds
// it. Two processes on one data directory would share the embedded NATS
// store and the read-model files, which neither expects: without the lock
// the second opened the live JetStream store first, logged file-store
// warnings, and only then failed on a read-model file's own lock. The lock
// is flock(2), so the kernel drops it when the holder dies, kill -9
// included, and no stale lock file needs cleaning up.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: lock: %w", dir, unwrapPath(err))
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another kontakt process"
		if raw, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(string(bytes.TrimSpace(raw))); perr == nil {
				holder = fmt.Sprintf("another kontakt process (pid %d)", pid)
			}
		}
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is used by %s; stop it first", ErrDataDirInUse, dir, holder)
		}
		return nil, fmt.Errorf("data directory %s: lock: %w", dir, err)
	}
	// The pid is for the message above only; the lock is the flock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
