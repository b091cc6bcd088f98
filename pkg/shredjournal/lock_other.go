//go:build !unix

package shredjournal

import "os"

// lockFile does nothing where flock is unavailable: one process per
// journal directory is then the operator's to ensure.
func lockFile(*os.File) error { return nil }
