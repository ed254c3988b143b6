//go:build unix

package server

import "syscall"

// openFileLimit is the process's soft RLIMIT_NOFILE: how many file
// descriptors it may hold. Go (1.19 and later) raises the soft limit to
// the hard one when the process starts, so this is the hard limit unless
// something lowered it since. ok is false when it cannot be read.
func openFileLimit() (n uint64, ok bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return rl.Cur, true
}
