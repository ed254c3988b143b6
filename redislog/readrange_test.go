package redislog

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/redis/go-redis/v9"
)

// TestNotifiedReadsAreRanges: a reader on another Log, woken by a
// notification, reads the new events with one XRANGE rather than the read
// script, and still ends on the terminal event.
func TestNotifiedReadsAreRanges(t *testing.T) {
	prefix := testPrefix(t)
	w := openLog(t, "", Options{Prefix: prefix, Coalesce: -1})
	r := openLog(t, "", Options{Prefix: prefix})
	var names cmdNames
	r.client.AddHook(cmdHook(func(_ bool, cmds ...redis.Cmder) { names.add(cmds...) }))
	id := runID()
	mustAppend(t, w, id, delta(0))
	const n = 40
	got := make(chan int64, n+2)
	errc := make(chan error, 1)
	go func() {
		// got is closed after errc is sent, so a waiter sees every event
		// before it learns the reader ended.
		defer close(got)
		after := int64(0)
		for {
			evs, end, err := r.Read(context.Background(), id, after, 100)
			if err != nil {
				errc <- err
				return
			}
			for _, ev := range evs {
				if ev.Seq != after+1 {
					errc <- errors.New("out of order")
					return
				}
				after = ev.Seq
				got <- after
			}
			if end {
				errc <- nil
				return
			}
		}
	}()
	waitSeq := func(seq int64) {
		t.Helper()
		for {
			select {
			case s, ok := <-got:
				if !ok {
					t.Fatalf("reader stopped before %d: %v", seq, <-errc)
				}
				if s >= seq {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the reader did not get %d", seq)
			}
		}
	}
	waitSeq(1)
	for i := 1; i <= n; i++ {
		mustAppend(t, w, id, delta(i))
		waitSeq(int64(i + 1))
	}
	mustAppend(t, w, id, done(id))
	waitSeq(n + 2)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	xr, scripts := names.count("xrange"), names.count("evalsha")+names.count("eval")
	// The first read, and a read that races a lingering watch's end or
	// the poll timer, run the script; the rest must be ranges.
	if xr < n*3/4 || scripts > n/4 {
		t.Fatalf("the reader ran %d XRANGE and %d read scripts for %d notified appends; want nearly an XRANGE each", xr, scripts, n)
	}
}

// TestNotifiedReadOfDroppedEvents: a reader whose next event was dropped
// (past MaxRunBytes) while it waited is told so, not given a later one.
func TestNotifiedReadOfDroppedEvents(t *testing.T) {
	prefix := testPrefix(t)
	w := openLog(t, "", Options{Prefix: prefix, Coalesce: -1, MaxRunBytes: 10 * delta(10).Size()})
	r := openLog(t, "", Options{Prefix: prefix})
	id := runID()
	mustAppend(t, w, id, delta(0))
	readTo(t, r, id, 0, 1)
	// A read with nothing to return subscribes; its watch lingers.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, _, _ = r.Read(ctx, id, 1, 10)
	cancel()
	for i := 1; i <= 30; i++ {
		mustAppend(t, w, id, delta(i))
	}
	r.wmu.RLock()
	wt := r.watches[id]
	r.wmu.RUnlock()
	if wt == nil {
		t.Fatal("no watch of the run")
	}
	for deadline := time.Now().Add(10 * time.Second); !wt.ahead(30); {
		if time.Now().After(deadline) {
			t.Fatal("the notifications did not come")
		}
		time.Sleep(5 * time.Millisecond)
	}
	err := readErr(r, id, 1)
	if !errors.Is(err, agentstream.ErrGone) {
		t.Fatalf("read after 1: %v, want ErrGone", err)
	}
	if first := goneFirst(t, err); first <= 2 {
		t.Fatalf("gone before %d", first)
	}
}

// cmdNames counts a client's commands by name.
type cmdNames struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *cmdNames) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[name]
}

func (h *cmdNames) add(cmds ...redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = map[string]int{}
	}
	for _, c := range cmds {
		h.n[c.Name()]++
	}
}
