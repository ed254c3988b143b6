package sqlite

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// TestBatchedWrites: many writers at once share SQLite transactions, and
// one that fails (a duplicate) is undone alone: the others in its batch
// are committed.
func TestBatchedWrites(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	const n = 400
	now := time.Now().UTC()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = agentstream.NewID("thr_")
		if i%10 == 9 {
			ids[i] = ids[i-1] // a duplicate: ErrConflict
		}
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			errs[i] = s.CreateThread(t.Context(), agentstream.Thread{ID: ids[i], UserID: "u", Agent: "a", CreatedAt: now, UpdatedAt: now})
		})
	}
	wg.Wait()
	conflicts := 0
	for i, err := range errs {
		switch {
		case err == nil:
			if _, gerr := s.GetThread(t.Context(), "u", ids[i]); gerr != nil {
				t.Fatalf("thread %d was created but is not stored: %v", i, gerr)
			}
		case errors.Is(err, agentstream.ErrConflict):
			conflicts++
		default:
			t.Fatalf("thread %d: %v", i, err)
		}
	}
	if conflicts != n/10 {
		t.Fatalf("%d conflicts, want %d (one per duplicate)", conflicts, n/10)
	}
	s.batch.mu.Lock()
	largest := s.batch.largest
	s.batch.mu.Unlock()
	if largest < 2 {
		t.Fatalf("400 concurrent writes never shared a transaction (largest batch %d)", largest)
	}
	t.Logf("largest batch: %d transactions", largest)
}

// TestBatchClosed: a write after Close fails as unavailable, and Close
// lets the writes already queued finish.
func TestBatchClosed(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	err = s.CreateThread(t.Context(), agentstream.Thread{ID: "thr_x", UserID: "u", Agent: "a", CreatedAt: now, UpdatedAt: now})
	if !errors.Is(err, agentstream.ErrUnavailable) {
		t.Fatalf("write after Close: %v, want ErrUnavailable", err)
	}
}
