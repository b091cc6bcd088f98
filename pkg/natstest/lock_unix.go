//go:build unix

package natstest

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock on f, so that test binaries of
// several packages, which go test runs in parallel, build the server only
// once. The kernel releases the lock if the process dies.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
}

func unlockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
