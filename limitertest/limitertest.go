// Package limitertest is a conformance suite for agentstream.RateLimiter
// implementations. A limiter's tests call Run with a function that makes
// a fresh limiter of a rate per minute and a burst, whose keys no other
// limiter shares:
//
//	func TestLimiter(t *testing.T) {
//		limitertest.Run(t, func(t testing.TB, perMinute, burst int) agentstream.RateLimiter {
//			return mylimit.New(perMinute, burst)
//		})
//	}
//
// Subtests run in parallel. Besides what the interface documents, the
// suite holds limiters to this: a key's first burst actions are allowed at
// once and the next is refused with a wait of about one interval (a
// minute / perMinute); after the wait one more is allowed; keys are apart;
// a done context is an error that wraps its error.
package limitertest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// New makes a fresh limiter.
type New func(t testing.TB, perMinute, burst int) agentstream.RateLimiter

// Run runs the suite against limiters made by newLimiter.
func Run(t *testing.T, newLimiter New) {
	tests := []struct {
		name string
		fn   func(t *testing.T, newLimiter New)
	}{
		{"Burst", testBurst},
		{"Refill", testRefill},
		{"KeysApart", testKeysApart},
		{"Concurrent", testConcurrent},
		{"ContextDone", testContextDone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newLimiter)
		})
	}
}

func allow(t testing.TB, l agentstream.RateLimiter, key string) (bool, time.Duration) {
	t.Helper()
	ok, wait, err := l.Allow(t.Context(), key)
	if err != nil {
		t.Fatalf("Allow(%q): %v", key, err)
	}
	if ok && wait != 0 {
		t.Fatalf("Allow(%q) allowed with a wait of %v", key, wait)
	}
	if !ok && wait <= 0 {
		t.Fatalf("Allow(%q) refused with a wait of %v, want > 0", key, wait)
	}
	return ok, wait
}

// testBurst: burst actions at once, then a refusal whose wait is about one
// interval (a minute / perMinute); refusals take nothing.
func testBurst(t *testing.T, newLimiter New) {
	l := newLimiter(t, 60, 3) // one a second
	for i := range 3 {
		if ok, wait := allow(t, l, "user-1"); !ok {
			t.Fatalf("action %d of a burst of 3 refused (wait %v)", i+1, wait)
		}
	}
	for range 3 {
		ok, wait := allow(t, l, "user-1")
		if ok {
			t.Fatal("a fourth action at once allowed with a burst of 3")
		}
		// About a second: less, as time passed since (a slow machine
		// may take a while between calls).
		if wait > time.Second || wait < 100*time.Millisecond {
			t.Fatalf("refused with a wait of %v, want about 1s", wait)
		}
	}
}

// testRefill: after the wait a refusal gave, one more action is allowed,
// and only one.
func testRefill(t *testing.T, newLimiter New) {
	l := newLimiter(t, 60, 1) // one a second
	if ok, _ := allow(t, l, "user-1"); !ok {
		t.Fatal("the first action refused")
	}
	ok, wait := allow(t, l, "user-1")
	if ok {
		t.Fatal("a second action at once allowed with a burst of 1")
	}
	if wait > time.Second {
		t.Fatalf("wait %v, want at most 1s", wait)
	}
	time.Sleep(wait + 20*time.Millisecond)
	if ok, wait := allow(t, l, "user-1"); !ok {
		t.Fatalf("refused after the wait it gave (again %v)", wait)
	}
	if ok, _ := allow(t, l, "user-1"); ok {
		t.Fatal("two actions allowed after one interval")
	}
}

// testKeysApart: one key's use leaves another's whole.
func testKeysApart(t *testing.T, newLimiter New) {
	l := newLimiter(t, 1, 2)
	for range 2 {
		allow(t, l, "user-1")
	}
	if ok, _ := allow(t, l, "user-1"); ok {
		t.Fatal("a third action allowed with a burst of 2")
	}
	for i := range 2 {
		if ok, _ := allow(t, l, "user-2"); !ok {
			t.Fatalf("another key's action %d refused", i+1)
		}
	}
}

// testConcurrent: of many actions at once, exactly burst are allowed.
func testConcurrent(t *testing.T, newLimiter New) {
	l := newLimiter(t, 1, 5)
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			ok, _, err := l.Allow(t.Context(), "user-1")
			if err != nil {
				t.Errorf("Allow: %v", err)
			}
			if ok {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != 5 {
		t.Fatalf("%d of 40 actions at once allowed, want the burst, 5", n)
	}
}

// testContextDone: a done context is an error that wraps it, and takes
// nothing.
func testContextDone(t *testing.T, newLimiter New) {
	l := newLimiter(t, 1, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if ok, _, err := l.Allow(ctx, "user-1"); ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("Allow with a done context: %v, %v; want false and context.Canceled", ok, err)
	}
	if ok, _ := allow(t, l, "user-1"); !ok {
		t.Fatal("the action after a failed one refused: the failure took it")
	}
}
