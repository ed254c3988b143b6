package httpapi

import (
	"context"
	"testing"
	"time"
)

// TestLocalReaders: a run was seen since a time when a reader is attached,
// or attached or left at or after it; a record goes keep after its last
// reader left.
func TestLocalReaders(t *testing.T) {
	t.Parallel()
	const keep = 200 * time.Millisecond
	l := newLocalReaders(keep)
	seen := func(run string, since time.Time) bool {
		t.Helper()
		ok, err := l.Seen(context.Background(), run, since)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	before := time.Now()
	if seen("run_a", before) {
		t.Fatal("a run never read was seen")
	}
	release1 := l.Attach("run_a")
	release2 := l.Attach("run_a")
	if !seen("run_a", before) || !seen("run_a", time.Now().Add(time.Hour)) {
		t.Fatal("a run with readers attached was not seen")
	}
	if seen("run_b", before) {
		t.Fatal("another run was seen")
	}
	release1()
	release1() // a second call does nothing
	if !seen("run_a", time.Now().Add(time.Hour)) {
		t.Fatal("a run with one reader left was not seen")
	}
	release2()
	left := time.Now()
	if !seen("run_a", before) {
		t.Fatal("a run read since was not seen after its readers left")
	}
	if seen("run_a", left.Add(time.Millisecond)) {
		t.Fatal("a run was seen after its last reader left")
	}
	// The record goes after keep.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		l.mu.Lock()
		n := len(l.runs)
		l.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records left a minute after their readers", n)
		}
	}
	// A reader that comes back after the record was dropped counts again.
	defer l.Attach("run_a")()
	if !seen("run_a", left) {
		t.Fatal("a reader that came back was not seen")
	}
}
