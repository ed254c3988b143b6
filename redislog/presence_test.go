package redislog

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// TestPresence: a reader attached through one Log's Presence is seen
// through another's (another instance), now and after it left, but not
// from after it left; an attached reader stays seen past the key's
// expiry, refreshed; the key expires once nobody reads the run.
func TestPresence(t *testing.T) {
	t.Parallel()
	const window = 300 * time.Millisecond
	prefix := testPrefix(t)
	here := openLog(t, "", Options{Prefix: prefix}).Presence(window)
	t.Cleanup(here.Close)
	there := openLog(t, "", Options{Prefix: prefix}).Presence(window)
	t.Cleanup(there.Close)
	ctx := context.Background()
	seen := func(p *Presence, run string, since time.Time) bool {
		t.Helper()
		ok, err := p.Seen(ctx, run, since)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	// eventually waits, bounded, for what Attach and release write in the
	// background.
	eventually := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	run := runID()
	before := time.Now()
	if seen(there, run, before) {
		t.Fatal("a run never read was seen")
	}
	release := here.Attach(run)
	if !seen(here, run, time.Now()) {
		t.Fatal("a reader attached here is not seen here")
	}
	eventually("a reader attached on one instance is never seen on another", func() bool { return seen(there, run, before) })
	// Refreshed while attached: still seen after the key would have
	// expired (2 windows) without refreshes.
	time.Sleep(3 * window)
	if !seen(there, run, before) {
		t.Fatal("an attached reader was not refreshed")
	}
	release()
	left := time.Now()
	eventually("a reader that left is not seen since before it left", func() bool {
		return seen(there, run, left.Add(-5*time.Millisecond))
	})
	if seen(there, run, left.Add(time.Second)) {
		t.Fatal("a reader is seen from after it left")
	}
	// Once nobody reads the run, its key goes within 2 windows.
	raw := rawClient(t)
	eventually("the key of a run without readers never expired", func() bool {
		n, err := raw.Exists(ctx, here.key(run)).Result()
		return err == nil && n == 0
	})
	if seen(there, run, before) {
		t.Fatal("a run was seen after its key expired")
	}
}

// TestPresenceUnavailable: with Redis gone, Seen says so (the caller then
// does as if no reader came); Attach and release do not block.
func TestPresenceUnavailable(t *testing.T) {
	t.Parallel()
	l := openLog(t, "", Options{})
	p := l.Presence(time.Second)
	t.Cleanup(p.Close)
	_ = l.Close()
	p.Attach(runID())()
	if _, err := p.Seen(context.Background(), runID(), time.Now()); !errors.Is(err, agentstream.ErrUnavailable) {
		t.Fatalf("Seen with Redis closed: %v, want ErrUnavailable", err)
	}
}
