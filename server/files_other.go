//go:build !unix

package server

// openFileLimit: a system without RLIMIT_NOFILE (Windows) bounds the
// handles of a process by memory only.
func openFileLimit() (n uint64, ok bool) { return 0, false }
