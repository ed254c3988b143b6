package memlimit

import (
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/limitertest"
)

func TestLimiter(t *testing.T) {
	t.Parallel()
	limitertest.Run(t, func(t testing.TB, perMinute, burst int) agentstream.RateLimiter {
		return New(perMinute, burst)
	})
}

// TestIdleDropped: a key unused for as long as its bucket takes to fill is
// dropped (it would be full anyway); one in use is kept.
func TestIdleDropped(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	l := newAt(60, 2, clock) // fills in 2s
	for _, k := range []string{"a", "b", "c"} {
		if ok, _, err := l.Allow(t.Context(), k); !ok || err != nil {
			t.Fatalf("Allow(%s): %v, %v", k, ok, err)
		}
	}
	advance(time.Second)
	if _, _, err := l.Allow(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	advance(1500 * time.Millisecond)
	if _, _, err := l.Allow(t.Context(), "d"); err != nil {
		t.Fatal(err)
	}
	if n := l.size(); n != 2 {
		t.Fatalf("%d keys kept, want 2 (a, used 1.5s ago, and d)", n)
	}
	// A dropped key starts full, as it would have been.
	for range 2 {
		if ok, _, _ := l.Allow(t.Context(), "b"); !ok {
			t.Fatal("a dropped key did not start with its burst")
		}
	}
}
