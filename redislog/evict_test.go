package redislog

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// TestOneKeyEvicted: under a maxmemory policy such as allkeys-lru, or an
// operator's DEL, a run's stream or its books can go without the other.
// A reader, on the appending Log or another, then gets ErrGone or
// ErrNotFound at once, or the events Redis still has in order: never a
// wait for events that will not come, never an event at a seq it already
// had with other content, never the end of a run that goes on. Once the
// owner appends again, the log goes on from its next seq, without the
// events lost.
func TestOneKeyEvicted(t *testing.T) {
	for _, lost := range []string{"events", "meta"} {
		for _, finished := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/finished=%v", lost, finished), func(t *testing.T) {
				t.Parallel()
				oneKeyEvicted(t, lost, finished)
			})
		}
	}
}

func oneKeyEvicted(t *testing.T, lost string, finished bool) {
	prefix := testPrefix(t)
	a := openLog(t, "", Options{Prefix: prefix}) // the owner
	b := openLog(t, "", Options{Prefix: prefix}) // another instance
	raw := rawClient(t)
	ctx := context.Background()
	id := runID()
	last := int64(10)
	for i := 1; i < int(last); i++ {
		mustAppend(t, a, id, delta(i))
	}
	if finished {
		mustAppend(t, a, id, done(id))
	} else {
		mustAppend(t, a, id, delta(int(last)))
	}
	for _, l := range []*Log{a, b} {
		if evs := readTo(t, l, id, 0, last); int64(len(evs)) != last {
			t.Fatalf("before the loss: %d events", len(evs))
		}
	}
	key := prefix + "{" + id + "}:" + lost
	if n, err := raw.Del(ctx, key).Result(); err != nil || n != 1 {
		t.Fatalf("DEL %s: %d, %v", key, n, err)
	}

	// Every reader gets an answer at once: the events it asks for, in
	// order, or an error saying they are gone; and the end only of a
	// run that ended.
	check := func(when string, l *Log, name string, after, lastNow int64) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		evs, end, err := l.Read(rctx, id, after, 100)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			if after < lastNow || finished {
				t.Fatalf("%s, %s reader after %d: waited for events that will not come", when, name, after)
			}
			return
		case err != nil:
			if !errors.Is(err, agentstream.ErrGone) && !errors.Is(err, agentstream.ErrNotFound) {
				t.Fatalf("%s, %s reader after %d: %v, want events, ErrGone or ErrNotFound", when, name, after, err)
			}
			t.Logf("%s, %s reader after %d: %v", when, name, after, err)
			return
		}
		for i, ev := range evs {
			if ev.Seq != after+int64(i)+1 {
				t.Fatalf("%s, %s reader after %d: event %d has seq %d", when, name, after, i, ev.Seq)
			}
		}
		if len(evs) > 0 && evs[0].Seq <= last && !finished {
			// An event the reader could have had before the loss must be
			// the same event.
			if want := delta(int(evs[0].Seq)); string(evs[0].Data) != string(want.Data) {
				t.Fatalf("%s, %s reader after %d: seq %d is %s, want %s", when, name, after, evs[0].Seq, evs[0].Data, want.Data)
			}
		}
		if end && !finished {
			t.Fatalf("%s, %s reader after %d: told the run ended", when, name, after)
		}
		if end && len(evs) == 0 && after < last {
			t.Fatalf("%s, %s reader after %d: told the run ended without its last events", when, name, after)
		}
	}
	for _, after := range []int64{0, 5, last} {
		check("after the loss", a, "owner", after, last)
		check("after the loss", b, "other", after, last)
	}
	if finished {
		return
	}

	// The owner appends on: the log goes on from its next seq.
	mustAppend(t, a, id, delta(int(last)+1))
	mustAppend(t, a, id, done(id))
	end := last + 2
	for _, l := range []*Log{a, b} {
		evs := readTo(t, l, id, last, end)
		if int64(len(evs)) != 2 || evs[0].Seq != last+1 || !evs[1].Type.Terminal() {
			t.Fatalf("after the next appends: %+v", evs)
		}
		if err := readErr(l, id, 5); !errors.Is(err, agentstream.ErrGone) || !errContains(err, fmt.Sprint("before ", last+1)) {
			t.Fatalf("read of the lost events after the next appends: %v, want ErrGone naming %d", err, last+1)
		}
	}
	m := raw.HGetAll(ctx, prefix+"{"+id+"}:meta").Val()
	if m["first"] != fmt.Sprint(last+1) || m["last"] != fmt.Sprint(end) || m["end"] != fmt.Sprint(end) {
		t.Fatalf("books after the loss and the next appends: %v", m)
	}
	if n := raw.XLen(ctx, prefix+"{"+id+"}:events").Val(); n != 2 {
		t.Fatalf("the stream holds %d events, want the 2 since the loss", n)
	}
	for _, k := range []string{"events", "meta"} {
		if ttl := raw.PTTL(ctx, prefix+"{"+id+"}:"+k).Val(); ttl <= 0 {
			t.Fatalf("%s key: TTL %v after the run ended, want its retention", k, ttl)
		}
	}
}

// TestBooksLostThenEnded: the books of a run are lost while its stream
// stays, and another instance ends it (as it ends a dead owner's run,
// without knowing the last seq): the terminal event takes the seq after
// the stream's last, not one a reader already had.
func TestBooksLostThenEnded(t *testing.T) {
	t.Parallel()
	prefix := testPrefix(t)
	a := openLog(t, "", Options{Prefix: prefix})
	b := openLog(t, "", Options{Prefix: prefix})
	raw := rawClient(t)
	ctx := context.Background()
	id := runID()
	for i := 1; i <= 10; i++ {
		mustAppend(t, a, id, delta(i))
	}
	readTo(t, b, id, 0, 10)
	if err := raw.Del(ctx, prefix+"{"+id+"}:meta").Err(); err != nil {
		t.Fatal(err)
	}
	if seq := mustAppend(t, b, id, done(id)); seq != 11 {
		t.Fatalf("the terminal event after the books were lost has seq %d, want 11", seq)
	}
	if evs := readTo(t, b, id, 10, 11); len(evs) != 1 || !evs[0].Type.Terminal() {
		t.Fatalf("the end: %+v", evs)
	}
	if err := readErr(b, id, 5); !errors.Is(err, agentstream.ErrGone) || !errContains(err, "before 11") {
		t.Fatalf("read of the events before the books were lost: %v, want ErrGone naming 11", err)
	}
}

// TestRetryAfterBooksLost: a flush that was applied but whose reply was
// lost is retried after the run's books were evicted, the stream kept.
// The retry finds its own events at those seqs and is taken (it was
// refused for good as another writer's, dropping the run's queue); the
// same seqs with other events are still another writer's.
func TestRetryAfterBooksLost(t *testing.T) {
	prefix := testPrefix(t)
	a := openLog(t, "", Options{Prefix: prefix})
	b := openLog(t, "", Options{Prefix: prefix})
	raw := rawClient(t)
	ctx := context.Background()
	numbered := func(from, to int, mk func(int) agentstream.Event) []agentstream.Event {
		var evs []agentstream.Event
		for i := from; i <= to; i++ {
			e := mk(i)
			e.Seq = int64(i)
			evs = append(evs, e)
		}
		return evs
	}
	for _, tc := range []struct {
		name   string
		retry  func(int) agentstream.Event
		refuse bool
	}{
		{"same events", delta, false},
		{"other events", func(i int) agentstream.Event { return delta(100 + i) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := runID()
			if last, err := a.evalShared(ctx, id, 1, numbered(1, 10, delta), false); err != nil || last != 10 {
				t.Fatalf("first call: %d, %v", last, err)
			}
			if err := raw.Del(ctx, prefix+"{"+id+"}:meta").Err(); err != nil {
				t.Fatal(err)
			}
			last, err := a.evalShared(ctx, id, 9, numbered(9, 10, tc.retry), false)
			if tc.refuse {
				if !errContains(err, "CONFLICT") {
					t.Fatalf("other events at 9 and 10 after the books were lost: %d, %v; want CONFLICT", last, err)
				}
				return
			}
			if err != nil || last != 10 {
				t.Fatalf("the retry of 9 and 10 after the books were lost: %d, %v", last, err)
			}
			// The log goes on after them, and a reader elsewhere reads the
			// same events at the same seqs.
			if last, err := a.evalShared(ctx, id, 11, numbered(11, 11, delta), false); err != nil || last != 11 {
				t.Fatalf("the next flush: %d, %v", last, err)
			}
			got := readTo(t, b, id, 8, 11)
			for i, ev := range got {
				if want := delta(9 + i); ev.Seq != int64(9+i) || string(ev.Data) != string(want.Data) {
					t.Fatalf("event %d: %d %s, want %d %s", i, ev.Seq, ev.Data, 9+i, want.Data)
				}
			}
		})
	}
}
