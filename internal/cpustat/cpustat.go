// Package cpustat reads the CPU time the process has used, for the
// benchmarks that report CPU per operation across all goroutines (the
// server's, the store's writer, the runtime's), which ns/op cannot show.
package cpustat

import (
	"testing"
	"time"
)

// Of is Process for a benchmark: it stops tb when the CPU time cannot be
// read, so that no figure is reported from nothing.
func Of(tb testing.TB) time.Duration {
	tb.Helper()
	d, ok := Process()
	if !ok {
		tb.Skip("the process's CPU time cannot be read on this system")
	}
	return d
}
