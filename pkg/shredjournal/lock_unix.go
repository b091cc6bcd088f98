//go:build unix

package shredjournal

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock on the journal without
// waiting: two processes appending to one journal would interleave their
// lines. The kernel releases the lock when the process dies, so a crash
// never leaves the journal locked.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
