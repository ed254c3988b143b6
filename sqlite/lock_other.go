//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || illumos)

package sqlite

import (
	"fmt"
	"os"
	"runtime"
)

// lockFD fails: without flock this platform cannot tell a live owner from
// a dead one, and a lock that a crash leaves behind would need hand
// cleaning; Exclusive opens are refused rather than unguarded.
func lockFD(*os.File) error {
	return fmt.Errorf("exclusive opens of a SQLite file are not supported on %s", runtime.GOOS)
}
