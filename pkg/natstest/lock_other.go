//go:build !unix

package natstest

import "os"

// lockFile does nothing where flock is unavailable; parallel builds then
// race, which is harmless because each build is renamed into place
// atomically.
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) error { return nil }
