package memlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/logtest"
)

func TestConformance(t *testing.T) {
	logtest.Run(t, func(_ testing.TB, o logtest.Options) agentstream.EventLog {
		return New(Options{MaxRunBytes: o.MaxRunBytes, Retention: o.Retention})
	})
}

// TestConformanceSmallCaps runs the suite with caps well under the
// defaults, that still fit each of its logs.
func TestConformanceSmallCaps(t *testing.T) {
	logtest.Run(t, func(_ testing.TB, o logtest.Options) agentstream.EventLog {
		if o.MaxRunBytes == 0 {
			o.MaxRunBytes = 1 << 20
		}
		return New(Options{MaxRunBytes: o.MaxRunBytes, MaxTotalBytes: 1 << 20, Retention: o.Retention})
	})
}

var ctx = context.Background()

// sized is a message.delta of about n bytes, numbered i.
func sized(i, n int) agentstream.Event {
	return agentstream.NewEvent(agentstream.EventMessageDelta,
		agentstream.MessageDeltaData{MessageID: fmt.Sprint("msg_", i), Delta: strings.Repeat("x", n)})
}

// tagged is appender a's i-th delta: its message is a's, its text says
// i (and its length varies with i), so that untag can tell whether data
// read back is exactly what was appended.
func tagged(a, i int) agentstream.Event {
	return agentstream.NewDeltaEvent(fmt.Sprint("msg_", a), strings.Repeat(string(rune('a'+a)), 20+i%5*40)+fmt.Sprint(":", i))
}

// untag returns the a and i of an event tagged made, ok only when its
// data is exactly tagged(a, i)'s.
func untag(ev agentstream.Event) (a, i int, ok bool) {
	var d agentstream.MessageDeltaData
	if json.Unmarshal(ev.Data, &d) != nil {
		return 0, 0, false
	}
	_, colon, found := strings.Cut(d.Delta, ":")
	if _, err := fmt.Sscanf(d.MessageID, "msg_%d", &a); err != nil || !found {
		return 0, 0, false
	}
	if _, err := fmt.Sscanf(colon, "%d", &i); err != nil {
		return 0, 0, false
	}
	return a, i, string(tagged(a, i).Data) == string(ev.Data)
}

func ended(id string) agentstream.Event {
	return agentstream.NewEvent(agentstream.EventRunCompleted,
		agentstream.RunEndData{RunID: id, Status: agentstream.RunCompleted})
}

func mustAppend(t testing.TB, l *Log, id string, evs ...agentstream.Event) int64 {
	t.Helper()
	seq, err := l.Append(ctx, id, evs...)
	if err != nil {
		t.Fatalf("Append(%s): %v", id, err)
	}
	return seq
}

func statBytes(l *Log) int64 {
	_, b := l.Stats()
	return b
}

// readErr reads one event of id after `after`; the log must have it, be
// trimmed past it, or be gone, so the read never waits.
func readErr(l *Log, id string, after int64) error {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, _, err := l.Read(c, id, after, 1)
	return err
}

// checkSegments checks r's segments: all full but the last, which holds
// the newest event; each holding the text and full events of its
// entries, in order, and no more: the first only those of its entries from
// letGo on. The dropped events still held (from letGo to off) are
// outweighed by the retained ones, and none once r is closed. r.mu is
// held.
func checkSegments(t testing.TB, id string, r *runLog) {
	t.Helper()
	if len(r.segs) == 0 {
		if r.n != 0 || r.off != 0 {
			t.Errorf("run %s: no segments for %d events after %d", id, r.n, r.off)
		}
		return
	}
	for k, s := range r.segs[:len(r.segs)-1] {
		if len(s.ents) != segEvents {
			t.Errorf("run %s: segment %d of %d holds %d events", id, k, len(r.segs), len(s.ents))
		}
	}
	if last := r.segs[len(r.segs)-1]; r.off >= segEvents || (len(r.segs)-1)*segEvents+len(last.ents) != r.off+r.n {
		t.Errorf("run %s: %d segments, the last of %d, for %d dropped and %d retained events", id, len(r.segs), len(last.ents), r.off, r.n)
	}
	if r.letGo > r.off {
		t.Errorf("run %s: %d positions let go of, %d dropped", id, r.letGo, r.off)
	}
	for k, s := range r.segs {
		lo := 0
		if k == 0 {
			lo = r.letGo
		}
		var text, full uint32
		for _, e := range s.ents[lo:] {
			switch {
			case e.pre < 0 && e.start != full:
				t.Errorf("run %s: segment %d: a full event at %d, want %d", id, k, e.start, full)
			case e.pre < 0:
				full++
			case int(e.pre) >= len(s.pres) || e.start != text || e.end < e.start:
				t.Errorf("run %s: segment %d: a delta of prefix %d of %d at text %d:%d, want from %d", id, k, e.pre, len(s.pres), e.start, e.end, text)
				return
			default:
				text = e.end
			}
		}
		if int(text) != len(s.text) || int(full) != len(s.full) {
			t.Errorf("run %s: segment %d holds %d bytes of text and %d full events for %d and %d", id, k, len(s.text), len(s.full), text, full)
		}
	}
	var dead int64
	for j := r.letGo; j < r.off; j++ {
		s, e := r.entry(j)
		dead += s.size(e)
	}
	if (dead > r.bytes && !r.closed) || (r.closed && r.letGo != r.off) {
		t.Errorf("run %s: %d dropped events hold %d bytes (%d let go of), for %d retained bytes", id, r.off, dead, r.letGo, r.bytes)
	}
}

// checkLog checks the log's books: sequence numbers, byte counts, the
// dropped events still held, and the finished list.
func checkLog(t testing.TB, l *Log) {
	t.Helper()
	l.mu.RLock()
	defer l.mu.RUnlock()
	var total int64
	for id, r := range l.runs {
		r.mu.Lock()
		var b int64
		if r.n > 0 {
			for i, ev := range r.batch(r.off, r.n, false).build() {
				if ev.Seq != r.first+int64(i) {
					t.Errorf("run %s: event %d has seq %d, first is %d", id, i, ev.Seq, r.first)
				}
				b += ev.Size()
			}
		}
		if b != r.bytes {
			t.Errorf("run %s: counts %d bytes, holds %d", id, r.bytes, b)
		}
		checkSegments(t, id, r)
		if r.listed && !r.closed {
			t.Errorf("run %s: listed as finished but open", id)
		}
		total += b
		r.mu.Unlock()
	}
	if got := l.total.Load(); got != total {
		t.Errorf("total counts %d bytes, logs hold %d", got, total)
	}
	var prev *runLog
	var finished int64
	for r := l.oldest; r != nil; prev, r = r, r.next {
		if r.prev != prev || l.runs[r.id] != r {
			t.Errorf("finished list broken at run %s", r.id)
			return
		}
		r.mu.Lock()
		if r.listedBytes != r.bytes {
			t.Errorf("finished run %s: listed with %d bytes, holds %d", r.id, r.listedBytes, r.bytes)
		}
		r.mu.Unlock()
		finished += r.listedBytes
		if prev != nil && r.finishedAt.Before(prev.finishedAt) {
			t.Errorf("finished list out of order at run %s", r.id)
		}
	}
	if l.newest != prev {
		t.Error("finished list: newest is not its last")
	}
	if finished != l.finishedBytes {
		t.Errorf("finished logs count %d bytes, hold %d", l.finishedBytes, finished)
	}
}

func TestDefaults(t *testing.T) {
	o := Options{}.WithDefaults()
	if o.Retention != 10*time.Minute || o.MaxRunBytes != 4<<20 || o.MaxTotalBytes != 256<<20 || o.MaxFinishedBytes != 32<<20 {
		t.Fatalf("defaults: %+v", o)
	}
}

func TestRetentionEvicts(t *testing.T) {
	t.Parallel()
	l := New(Options{Retention: 20 * time.Millisecond})
	ev := agentstream.NewEvent(agentstream.EventRunCompleted, agentstream.RunEndData{RunID: "r", Status: agentstream.RunCompleted})
	appended := time.Now()
	if _, err := l.Append(ctx, "r", ev); err != nil {
		t.Fatal(err)
	}
	// A busy machine can pause this goroutine past the retention: the
	// read fails the test only if it really came within it.
	if _, _, err := l.Read(ctx, "r", 0, 10); err != nil && time.Since(appended) < 20*time.Millisecond {
		t.Fatalf("read within retention: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("log not evicted after its retention")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, _, err := l.Read(ctx, "r", 0, 10); !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("read after eviction: %v, want ErrNotFound", err)
	}
	if _, b := l.Stats(); b != 0 {
		t.Fatalf("%d bytes held after eviction", b)
	}
}

// TestRetentionOrder: one timer evicts finished runs in the order they
// finished, each after its own retention, and disarms when none is left.
func TestRetentionOrder(t *testing.T) {
	t.Parallel()
	const retention = 60 * time.Millisecond
	l := New(Options{Retention: retention})
	mustAppend(t, l, "a", ended("a"))
	time.Sleep(retention / 2)
	mustAppend(t, l, "b", ended("b"))
	mustAppend(t, l, "open", sized(1, 10))
	deadline := time.Now().Add(5 * time.Second)
	for {
		// b is read first: a pause between the two reads must not let
		// both go, a first seen kept and b then seen gone.
		bGone := errors.Is(readErr(l, "b", 0), agentstream.ErrNotFound)
		aGone := errors.Is(readErr(l, "a", 0), agentstream.ErrNotFound)
		if bGone && !aGone {
			t.Fatal("the later finished run was evicted first")
		}
		if aGone && bGone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("finished runs not evicted after their retention")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := readErr(l, "open", 0); err != nil {
		t.Fatalf("unfinished run: %v", err)
	}
	l.mu.RLock()
	armed := l.armed
	l.mu.RUnlock()
	if armed {
		t.Fatal("timer still armed with no finished run")
	}
	// A run finishing later re-arms it.
	mustAppend(t, l, "c", ended("c"))
	for l.Len() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("run finished after the timer disarmed was not evicted")
		}
		time.Sleep(2 * time.Millisecond)
	}
	checkLog(t, l)
}

// TestEarlyEvictionSparesNewLog: a finished run evicted early by the total
// cap has no retention left pending that could remove a new log of the
// same run ID.
func TestEarlyEvictionSparesNewLog(t *testing.T) {
	t.Parallel()
	const retention = 30 * time.Millisecond
	l := New(Options{Retention: retention, MaxTotalBytes: 8 << 10})
	mustAppend(t, l, "r", sized(0, 1000), ended("r"))
	mustAppend(t, l, "other", sized(0, 7<<10))
	if err := readErr(l, "r", 0); !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("finished run over the total cap: %v, want ErrNotFound", err)
	}
	if seq := mustAppend(t, l, "r", sized(1, 10)); seq != 1 {
		t.Fatalf("new log of r starts at seq %d", seq)
	}
	time.Sleep(4 * retention)
	if err := readErr(l, "r", 0); err != nil {
		t.Fatalf("new log of r after the old one's retention: %v", err)
	}
	checkLog(t, l)
}

// firstKept is the first seq a log keeps under a cap, given its events'
// sizes (seq i has sizes[i-1]): the longest tail that fits, at least the
// newest event.
func firstKept(sizes []int64, limit int64) int64 {
	first, sum := int64(len(sizes)), sizes[len(sizes)-1]
	for first > 1 && sum+sizes[first-2] <= limit {
		first--
		sum += sizes[first-1]
	}
	return first
}

// TestSegments: a run's events are read back whole across its segments,
// each read as many as max asks for and the log holds, across segments.
func TestSegments(t *testing.T) {
	t.Parallel()
	l := New(Options{})
	const id, n = "segs", 3*segEvents + 5
	for i := range n {
		mustAppend(t, l, id, sized(i, 10))
	}
	mustAppend(t, l, id, ended(id))
	for _, max := range []int{1, 7, segEvents, math.MaxInt} {
		after := int64(0)
		for {
			evs, end, err := l.Read(ctx, id, after, max)
			if err != nil || int64(len(evs)) != min(int64(max), n+1-after) || evs[0].Seq != after+1 {
				t.Fatalf("max %d: read after %d: %d events, err %v", max, after, len(evs), err)
			}
			for k, ev := range evs {
				if ev.Seq != after+1+int64(k) {
					t.Fatalf("max %d: read after %d: event %d has seq %d", max, after, k, ev.Seq)
				}
			}
			after = evs[len(evs)-1].Seq
			if end {
				break
			}
		}
		if after != n+1 {
			t.Fatalf("max %d: read to %d, want %d", max, after, n+1)
		}
	}
	checkLog(t, l)
}

func TestRunCap(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	l := New(Options{MaxRunBytes: limit})
	const id = "run_cap"
	var sizes []int64
	var appended int64
	for i := 1; appended < 10*limit; i++ {
		ev := sized(i, 50+i%7*100)
		if seq := mustAppend(t, l, id, ev); seq != int64(i) {
			t.Fatalf("append %d got seq %d", i, seq)
		}
		sizes = append(sizes, ev.Size())
		appended += ev.Size()
		if b := statBytes(l); b > limit {
			t.Fatalf("after %d bytes appended the run holds %d, over its cap %d", appended, b, limit)
		}
	}
	checkLog(t, l)
	last := int64(len(sizes))
	first := firstKept(sizes, limit)
	if first <= 1 {
		t.Fatalf("nothing dropped after %d bytes under a cap of %d", appended, limit)
	}

	err := readErr(l, id, 0)
	if !errors.Is(err, agentstream.ErrGone) {
		t.Fatalf("read from the start: %v, want ErrGone", err)
	}
	if want := fmt.Sprintf("events before %d of run %s are no longer kept", first, id); !strings.Contains(err.Error(), want) {
		t.Fatalf("ErrGone says %q, want it to say %q", err, want)
	}
	if err := readErr(l, id, first-2); !errors.Is(err, agentstream.ErrGone) {
		t.Fatalf("read after %d (first kept %d): %v, want ErrGone", first-2, first, err)
	}
	// A read returns every event kept after its position, across
	// segments: read on to the newest.
	var evs []agentstream.Event
	for after := first - 1; after < last; {
		got, end, err := l.Read(ctx, id, after, 1<<20)
		if err != nil || end || int64(len(got)) != last-after || got[0].Seq != after+1 {
			t.Fatalf("read after %d (first kept %d): %d events, end=%v, err=%v", after, first, len(got), end, err)
		}
		evs = append(evs, got...)
		after = got[len(got)-1].Seq
	}
	if len(evs) != int(last-first+1) || evs[0].Seq != first || evs[len(evs)-1].Seq != last {
		t.Fatalf("read from the first kept: %d events, %d to %d, want %d to %d", len(evs), evs[0].Seq, evs[len(evs)-1].Seq, first, last)
	}

	// A reader at the head keeps following.
	got := make(chan []agentstream.Event, 1)
	go func() {
		evs, _, err := l.Read(ctx, id, last, 10)
		if err != nil {
			t.Errorf("read at the head: %v", err)
		}
		got <- evs
	}()
	time.Sleep(10 * time.Millisecond)
	if seq := mustAppend(t, l, id, sized(0, 10)); seq != last+1 {
		t.Fatalf("seq after trimming: %d, want %d", seq, last+1)
	}
	if evs := <-got; len(evs) != 1 || evs[0].Seq != last+1 {
		t.Fatalf("reader at the head got %+v", evs)
	}

	// A terminal event bigger than the cap is kept, alone.
	term := agentstream.NewEvent(agentstream.EventRunFailed, agentstream.RunEndData{
		RunID: id, Status: agentstream.RunFailed,
		Error: &agentstream.ErrorInfo{Code: agentstream.CodeInternal, Message: strings.Repeat("e", 2*limit)},
	})
	seq := mustAppend(t, l, id, term)
	if seq != last+2 {
		t.Fatalf("terminal seq %d, want %d", seq, last+2)
	}
	evs, end, err := l.Read(ctx, id, seq-1, 10)
	if err != nil || !end || len(evs) != 1 || evs[0].Seq != seq || !evs[0].Type.Terminal() {
		t.Fatalf("read of the terminal event: %+v end=%v err=%v", evs, end, err)
	}
	if _, end, err := l.Read(ctx, id, seq, 10); err != nil || !end {
		t.Fatalf("read past the terminal event: end=%v err=%v", end, err)
	}
	if err := readErr(l, id, seq-2); !errors.Is(err, agentstream.ErrGone) || !strings.Contains(err.Error(), fmt.Sprintf("before %d ", seq)) {
		t.Fatalf("read before the terminal event: %v", err)
	}
	if b := statBytes(l); b != term.Size() {
		t.Fatalf("holds %d bytes, want the terminal event's %d", b, term.Size())
	}
	checkLog(t, l)
}

// TestTotalCap: over the total cap, finished runs go first, earliest
// finished first; then the largest unfinished run loses its oldest events.
func TestTotalCap(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	l := New(Options{MaxTotalBytes: limit})
	fill := func(id string, n int64) {
		for start := statBytes(l); statBytes(l)-start < n; {
			mustAppend(t, l, id, sized(0, 1000))
		}
	}
	fill("a", 12<<10)
	fill("b", 12<<10)
	fill("c", 12<<10)
	for _, id := range []string{"b", "a", "c"} { // the order they finish
		mustAppend(t, l, id, ended(id))
	}
	fill("small", 8<<10)
	if runs, b := l.Stats(); runs != 4 || b > limit {
		t.Fatalf("before the cap: %d runs, %d bytes", runs, b)
	}
	order := []string{"b", "a", "c"}
	evicted := func() int {
		n := 0
		for i, id := range order {
			err := readErr(l, id, 0)
			switch {
			case errors.Is(err, agentstream.ErrNotFound):
				if n != i {
					t.Fatalf("run %s evicted before %s", id, order[n])
				}
				n++
			case err != nil:
				t.Fatalf("finished run %s: %v", id, err)
			}
		}
		return n
	}
	trimmed := func(id string) bool {
		err := readErr(l, id, 0)
		if err != nil && !errors.Is(err, agentstream.ErrGone) {
			t.Fatalf("unfinished run %s: %v", id, err)
		}
		return err != nil
	}
	for i := 0; i == 0 || !trimmed("big"); i++ {
		if i > 1000 {
			t.Fatal("the growing run is never trimmed")
		}
		mustAppend(t, l, "big", sized(i, 1000))
		if b := statBytes(l); b > limit {
			t.Fatalf("append %d: %d bytes held, over the cap %d", i, b, limit)
		}
		if n := evicted(); trimmed("big") && n != len(order) {
			t.Fatalf("unfinished run trimmed while %d finished runs are held", len(order)-n)
		}
		if trimmed("small") {
			t.Fatal("the smaller unfinished run was trimmed first")
		}
	}
	// Appends to the smaller run trim the larger.
	for i := range 20 {
		mustAppend(t, l, "small", sized(i, 1000))
		if b := statBytes(l); b > limit {
			t.Fatalf("append %d to the small run: %d bytes held", i, b)
		}
		if trimmed("small") {
			t.Fatal("the smaller unfinished run was trimmed")
		}
	}
	if runs, _ := l.Stats(); runs != 2 {
		t.Fatalf("%d runs held, want the 2 unfinished", runs)
	}
	checkLog(t, l)
}

// TestFinishedCap: finished runs' logs are held up to MaxFinishedBytes
// together, far under MaxTotalBytes, the earliest finished evicted first;
// unfinished runs are not touched by it, however large, and a finished
// log holds no spare room.
func TestFinishedCap(t *testing.T) {
	t.Parallel()
	const limit = 8 << 10
	l := New(Options{MaxFinishedBytes: limit})
	for i := range 20 { // an unfinished run alone over the finished cap
		mustAppend(t, l, "open", sized(i, 1000))
	}
	openBytes := statBytes(l)
	// Runs of about 3 KiB finish one after the other: at most two fit.
	var order []string
	for n := range 8 {
		id := fmt.Sprint("run_", n)
		for i := range 3 {
			mustAppend(t, l, id, sized(i, 1000))
		}
		mustAppend(t, l, id, ended(id))
		order = append(order, id)
		l.mu.RLock()
		fb := l.finishedBytes
		l.mu.RUnlock()
		if fb > limit {
			t.Fatalf("after %s finished: finished logs hold %d bytes, over %d", id, fb, limit)
		}
		// The held ones are the newest finished, without gaps.
		held := 0
		for j, prev := range order {
			err := readErr(l, prev, 0)
			switch {
			case err == nil:
				held++
			case errors.Is(err, agentstream.ErrNotFound):
				if held > 0 {
					t.Fatalf("after %s finished: %s evicted, an earlier one kept", id, order[j])
				}
			default:
				t.Fatalf("finished run %s: %v", prev, err)
			}
		}
		if held != min(len(order), 2) {
			t.Fatalf("after %s finished: %d finished runs held, want %d", id, held, min(len(order), 2))
		}
		if err := readErr(l, "open", 0); err != nil {
			t.Fatalf("unfinished run: %v", err)
		}
		l.mu.RLock()
		r := l.runs[id]
		l.mu.RUnlock()
		r.mu.Lock()
		if s := r.segs[len(r.segs)-1]; cap(s.ents) != len(s.ents) || cap(s.text) != len(s.text) || cap(s.full) != len(s.full) || r.letGo != r.off {
			t.Errorf("finished run %s holds room for %d events in its last segment of %d (text %d of %d, full %d of %d), and %d dropped events of %d not let go of",
				id, cap(s.ents), len(s.ents), cap(s.text), len(s.text), cap(s.full), len(s.full), r.off-r.letGo, r.off)
		}
		r.mu.Unlock()
		checkLog(t, l)
	}
	if runs, b := l.Stats(); runs != 3 || b <= openBytes || b > openBytes+limit {
		t.Fatalf("%d runs and %d bytes held; want the unfinished one (%d bytes) and 2 finished", runs, b, openBytes)
	}
	// A finished run larger than the cap alone is not held.
	for i := range 10 {
		mustAppend(t, l, "big", sized(i, 1000))
	}
	mustAppend(t, l, "big", ended("big"))
	if err := readErr(l, "big", 0); !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("a finished run over the finished cap: %v, want ErrNotFound", err)
	}
	if runs, _ := l.Stats(); runs != 1 {
		t.Fatalf("%d runs held, want the unfinished one", runs)
	}
	checkLog(t, l)
}

// TestTotalCapKeepsNewest: unfinished runs keep their newest event even
// when those alone exceed the total cap.
func TestTotalCapKeepsNewest(t *testing.T) {
	t.Parallel()
	l := New(Options{MaxTotalBytes: 4 << 10})
	mustAppend(t, l, "a", sized(1, 100), sized(2, 3000))
	seq := mustAppend(t, l, "b", sized(1, 3000))
	if err := readErr(l, "a", 1); err != nil {
		t.Fatalf("newest event of a: %v", err)
	}
	if err := readErr(l, "b", seq-1); err != nil {
		t.Fatalf("newest event of b: %v", err)
	}
	if err := readErr(l, "a", 0); !errors.Is(err, agentstream.ErrGone) {
		t.Fatalf("oldest event of a: %v, want ErrGone", err)
	}
	checkLog(t, l)
}

// TestIdleReaderHoldsNothing: a reader that read once and stopped does not
// keep the log from dropping events.
func TestIdleReaderHoldsNothing(t *testing.T) {
	t.Parallel()
	const runCap, totalCap = 32 << 10, 48 << 10
	l := New(Options{MaxRunBytes: runCap, MaxTotalBytes: totalCap})
	mustAppend(t, l, "a", sized(0, 500))
	mustAppend(t, l, "b", sized(0, 500))
	idle, _, err := l.Read(ctx, "a", 0, 10)
	if err != nil || len(idle) != 1 {
		t.Fatalf("first read: %d events, %v", len(idle), err)
	}
	for i := range 20000 {
		mustAppend(t, l, "a", sized(i, 500))
		mustAppend(t, l, "b", sized(i, 500))
		if b := statBytes(l); b > totalCap {
			t.Fatalf("append %d: %d bytes held", i, b)
		}
	}
	l.mu.RLock()
	r := l.runs["a"]
	l.mu.RUnlock()
	r.mu.Lock()
	room := 0
	for _, s := range r.segs {
		room += cap(s.ents)
	}
	if r.bytes > runCap || room > r.n+2*segEvents {
		t.Errorf("run holds %d bytes in %d events, its segments have room for %d", r.bytes, r.n, room)
	}
	r.mu.Unlock()
	if err := readErr(l, "a", idle[0].Seq); !errors.Is(err, agentstream.ErrGone) {
		t.Fatalf("the idle reader's next read: %v, want ErrGone", err)
	}
	// What the idle reader got is intact.
	if idle[0].Seq != 1 || string(idle[0].Data) != string(sized(0, 500).Data) {
		t.Fatalf("the idle reader's event changed: %d %s", idle[0].Seq, idle[0].Data)
	}
	checkLog(t, l)
}

// TestConcurrentTrim: appenders and readers of several runs with caps so
// small that the log trims all the time. Readers get contiguous events or
// ErrGone, never a gap or a duplicate; Append's seqs are 1, 2, 3… without
// gaps.
func TestConcurrentTrim(t *testing.T) {
	t.Parallel()
	const (
		runs      = 4
		appenders = 3
		each      = 400
		readers   = 4
	)
	// Finished logs are held to less than one run's cap, so that runs
	// finishing while others append evict each other too.
	l := New(Options{MaxRunBytes: 3 << 10, MaxTotalBytes: 8 << 10, MaxFinishedBytes: 2 << 10})
	var wg sync.WaitGroup
	var gones atomic.Int64
	for run := range runs {
		id := fmt.Sprint("run_", run)
		mustAppend(t, l, id, sized(0, 10))
		var finished atomic.Bool
		seqs := make([][]int64, appenders)
		var appending sync.WaitGroup
		for a := range appenders {
			appending.Go(func() {
				for i := range each {
					seq, err := l.Append(ctx, id, tagged(a, i))
					if err != nil {
						t.Errorf("append: %v", err)
						return
					}
					seqs[a] = append(seqs[a], seq)
					if i%50 == 0 {
						runtime.Gosched()
					}
				}
			})
		}
		wg.Go(func() {
			appending.Wait()
			last := mustAppend(t, l, id, ended(id))
			finished.Store(true)
			seen := make([]bool, last+1)
			for _, s := range seqs {
				for _, seq := range s {
					if seq < 2 || seq >= last || seen[seq] {
						t.Errorf("run %s: Append returned seq %d twice or out of range", id, seq)
						return
					}
					seen[seq] = true
				}
			}
			if last != 1+appenders*each+1 {
				t.Errorf("run %s: terminal seq %d, want %d", id, last, 1+appenders*each+1)
			}
		})
		// What each reader read of each appender's events: the seq of
		// its i-th, checked against the seq Append returned.
		read := make([]map[[2]int]int64, readers)
		var reading sync.WaitGroup
		for r := range readers {
			read[r] = map[[2]int]int64{}
			reading.Go(func() {
				batch := []int{1, 3, 16, 256}[r]
				var after, kept int64
				for {
					evs, end, err := l.Read(ctx, id, after, batch)
					switch {
					case errors.Is(err, agentstream.ErrGone):
						gones.Add(1)
						var first int64
						if _, serr := fmt.Sscanf(err.Error(), "events before %d ", &first); serr != nil || first-1 <= after || first < kept {
							t.Errorf("run %s after %d: %v (first kept before: %d)", id, after, err, kept)
							return
						}
						after, kept = first-1, first
						continue
					case errors.Is(err, agentstream.ErrNotFound):
						if !finished.Load() {
							t.Errorf("run %s evicted before it finished", id)
						}
						return
					case err != nil:
						t.Errorf("run %s: %v", id, err)
						return
					}
					for i, ev := range evs {
						if ev.Seq != after+1+int64(i) {
							t.Errorf("run %s after %d: event %d has seq %d", id, after, i, ev.Seq)
							return
						}
						// Data built while the run appends and trims is
						// exactly the event's, whose seq is checked below.
						if ev.Type == agentstream.EventMessageDelta && ev.Seq > 1 {
							a, i, ok := untag(ev)
							if !ok {
								t.Errorf("run %s: event %d is %s", id, ev.Seq, ev.Data)
								return
							}
							read[r][[2]int{a, i}] = ev.Seq
						}
					}
					if len(evs) > 0 {
						after = evs[len(evs)-1].Seq
					}
					if end {
						if len(evs) == 0 || !evs[len(evs)-1].Type.Terminal() {
							t.Errorf("run %s: the end after %d is not the terminal event", id, after)
						}
						return
					}
				}
			})
		}
		wg.Go(func() {
			reading.Wait()
			appending.Wait()
			for r, m := range read {
				for k, seq := range m {
					if want := seqs[k[0]][k[1]]; seq != want {
						t.Errorf("run %s, reader %d: event %d of appender %d read at seq %d, appended at %d", id, r, k[1], k[0], seq, want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	t.Logf("readers fell behind the caps %d times", gones.Load())
	checkLog(t, l)
	if _, b := l.Stats(); b > 8<<10 {
		t.Fatalf("%d bytes held after every run finished", b)
	}
}

// collected returns the memory statistics after two collections.
func collected() runtime.MemStats {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m
}

func heapInuse() uint64 { return collected().HeapInuse }

// TestMemoryReleased: dropped events are garbage, whether a run is
// trimmed by its own appends or, idle, by another run's.
func TestMemoryReleased(t *testing.T) {
	const mib = 1 << 20
	base := heapInuse()
	l := New(Options{MaxRunBytes: mib})
	for i := 0; i < 50*mib/1000; i++ {
		mustAppend(t, l, "r", sized(i, 1000))
	}
	grown := int64(heapInuse()) - int64(base)
	t.Logf("50 MiB appended under a 1 MiB cap: heap grew %.1f MiB", float64(grown)/mib)
	if grown > 20*mib {
		t.Errorf("50 MiB appended under a 1 MiB cap: heap grew %d MiB", grown/mib)
	}
	runtime.KeepAlive(l)
	l = nil

	// An idle run trimmed by the total cap lets go too.
	base = heapInuse()
	l = New(Options{MaxRunBytes: 64 * mib, MaxTotalBytes: 48 * mib})
	for i := 0; i < 40*mib/1000; i++ {
		mustAppend(t, l, "idle", sized(i, 1000))
	}
	mustAppend(t, l, "big", sized(0, 44*mib))
	if b := statBytes(l); b > 48*mib {
		t.Fatalf("%d MiB held over a 48 MiB cap", b/mib)
	}
	grown = int64(heapInuse()) - int64(base)
	t.Logf("idle run trimmed to fit 48 MiB: heap grew %.1f MiB", float64(grown)/mib)
	// Keeping the dropped events would hold about 40 + 44 MiB.
	if grown > 72*mib {
		t.Errorf("48 MiB held: heap grew %d MiB", grown/mib)
	}
	checkLog(t, l)
	runtime.KeepAlive(l)
}

func BenchmarkAppend(b *testing.B) {
	l := New(Options{})
	ev := agentstream.NewEvent(agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: "msg_1", Delta: "token "})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Append(ctx, "run", ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadBack reads a finished run of 1,000 deltas back in batches
// of 256, as a reader catching up does. One op is the whole run read.
func BenchmarkReadBack(b *testing.B) {
	l := New(Options{})
	const id, n = "run", 1000
	for i := range n {
		mustAppend(b, l, id, agentstream.NewDeltaEvent("msg_01JE5GQ8ZK3V7XN2M4P6R8T0WY", fmt.Sprint(" tok", i%10)))
	}
	mustAppend(b, l, id, ended(id))
	b.ReportAllocs()
	for b.Loop() {
		for after, end := int64(0), false; !end; {
			evs, e, err := l.Read(ctx, id, after, 256)
			if err != nil {
				b.Fatal(err)
			}
			after, end = evs[len(evs)-1].Seq, e
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(n+1), "ns/event")
}

// BenchmarkAppendRead appends a delta and reads it back, as a reader
// following the run live does, without waiting for it: the cost of
// building its data.
func BenchmarkAppendRead(b *testing.B) {
	l := New(Options{})
	const id = "run"
	ev := agentstream.NewEvent(agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: "msg_1", Delta: "token "})
	b.ReportAllocs()
	for b.Loop() {
		seq := mustAppend(b, l, id, ev)
		if evs, _, err := l.Read(ctx, id, seq-1, 256); err != nil || len(evs) != 1 {
			b.Fatal(len(evs), err)
		}
	}
}

// BenchmarkRunMemory measures the live heap 1,000 open runs' logs take
// with a given number of tokens each (after run.created, run.started and
// step.started, as a run appends them): heap-B/run, and heap-B/token
// (that, less the same for no token, per token).
func BenchmarkRunMemory(b *testing.B) {
	for _, tokens := range []int{0, 4, 16, 64, 256} {
		b.Run(fmt.Sprint("tokens=", tokens), func(b *testing.B) {
			const runs = 1000
			var perRun float64
			for b.Loop() {
				perRun = runMemory(b, runs, tokens) / runs
			}
			b.ReportMetric(perRun, "heap-B/run")
			if tokens > 0 {
				b.ReportMetric((perRun-runMemory(b, runs, 0)/runs)/float64(tokens), "heap-B/token")
			}
		})
	}
}

// runMemory returns the live heap the logs of runs runs of tokens tokens
// take.
func runMemory(b *testing.B, runs, tokens int) float64 {
	b.Helper()
	before := heapLive()
	l := New(Options{})
	words := []string{" the", " quick", " brown", " fox", " jumps", ",", " over", " lazy", " dogs", "."}
	for i := range runs {
		id, msg := agentstream.NewID("run_"), agentstream.NewID("msg_")
		mustAppend(b, l, id, agentstream.NewEvent(agentstream.EventRunCreated, agentstream.RunCreatedData{RunID: id, ThreadID: agentstream.NewID("thr_"), Agent: "assistant", Status: agentstream.RunQueued}))
		mustAppend(b, l, id, agentstream.NewEvent(agentstream.EventRunStarted, agentstream.RunStartedData{RunID: id}))
		mustAppend(b, l, id, agentstream.NewEvent(agentstream.EventStepStarted, agentstream.StepStartedData{Step: 1, MessageID: msg}))
		for k := range tokens {
			mustAppend(b, l, id, agentstream.NewDeltaEvent(msg, words[(i+k)%len(words)]))
		}
	}
	after := heapLive()
	runtime.KeepAlive(l)
	return float64(int64(after) - int64(before))
}

// heapLive returns the bytes of live heap objects, after a collection.
func heapLive() uint64 { return collected().HeapAlloc }

// BenchmarkAppendWhileCatchUp appends deltas while a reader reads the
// run's first 9,000 events again and again in batches of 256, as readers
// catching up do: what such a reader costs the appender.
func BenchmarkAppendWhileCatchUp(b *testing.B) {
	l := New(Options{MaxRunBytes: 1 << 30, MaxTotalBytes: 1 << 30})
	ev := agentstream.NewDeltaEvent("msg_01JE5GQ8ZK3V7XN2M4P6R8T0WY", " tok")
	for range 10000 {
		mustAppend(b, l, "run", ev)
	}
	c, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c.Err() == nil {
			for after := int64(0); after < 9000; {
				evs, _, err := l.Read(c, "run", after, 256)
				if err != nil {
					return
				}
				after = evs[len(evs)-1].Seq
			}
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		mustAppend(b, l, "run", ev)
	}
	cancel()
	<-done
}

// BenchmarkRead follows a live appender with 1 and 1000 readers reading
// in batches of 256, as the SSE handler does. One op is one appended event,
// delivered to every reader. With lag=0 the appender waits for every
// reader to have each event before appending the next (readers are caught
// up and wait for each append, as when a model streams tokens); with
// lag=4096 it runs up to 4096 events ahead of the slowest reader (readers
// take full batches). Either way the default caps never trim what a reader
// still needs.
func BenchmarkRead(b *testing.B) {
	for _, lag := range []int64{0, 4096} {
		for _, readers := range []int{1, 1000} {
			b.Run(fmt.Sprintf("lag=%d/readers=%d", lag, readers), func(b *testing.B) { benchRead(b, readers, lag) })
		}
	}
}

func benchRead(b *testing.B, readers int, lag int64) {
	const batch = 256
	check := max(1, lag/16)
	l := New(Options{})
	const id = "run_bench"
	ev := agentstream.NewEvent(agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: "msg_1", Delta: "token "})
	type pos struct {
		seq atomic.Int64
		_   [56]byte // one cache line each
	}
	at := make([]pos, readers)
	var reads atomic.Int64
	var wg sync.WaitGroup
	if _, err := l.Append(ctx, id, ev); err != nil {
		b.Fatal(err)
	}
	for r := range readers {
		wg.Go(func() {
			var after, n int64
			for {
				evs, end, err := l.Read(ctx, id, after, batch)
				if err != nil {
					b.Error(err)
					return
				}
				n++
				if len(evs) > 0 {
					after = evs[len(evs)-1].Seq
					at[r].seq.Store(after)
				}
				if end {
					reads.Add(n)
					return
				}
			}
		})
	}
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		seq, err := l.Append(ctx, id, ev)
		if err != nil {
			b.Fatal(err)
		}
		if seq%check == 0 {
			for r := range at {
				for seq-at[r].seq.Load() > lag {
					runtime.Gosched()
				}
			}
		}
	}
	if _, err := l.Append(ctx, id, ended(id)); err != nil {
		b.Fatal(err)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.ReportMetric(float64(reads.Load())/float64(b.N)/float64(readers), "reads/op/reader")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N)/float64(readers), "ns/delivery")
}

// TestWaitEnds: a reader whose context ends while it waits takes itself
// off the run's list, and one that an append woke at the same moment
// consumes the wake-up, so that its channel goes back to the pool empty
// (a full one would block the next append that wakes it). Readers still
// waiting get the next event.
func TestWaitEnds(t *testing.T) {
	t.Parallel()
	l := New(Options{})
	const id = "run_wait"
	delta := agentstream.NewEvent(agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: "msg_1", Delta: "a"})
	if _, err := l.Append(ctx, id, delta); err != nil {
		t.Fatal(err)
	}
	r := l.get(id)
	waitingReaders := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.waiting)
	}

	// The context ends first: off the list.
	cctx, cancel := context.WithCancel(ctx)
	got := make(chan error)
	go func() {
		_, _, err := l.Read(cctx, id, 1, 10)
		got <- err
	}()
	for waitingReaders() != 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel: %v", err)
	}
	if n := waitingReaders(); n != 0 {
		t.Fatalf("%d readers still listed after the only one left", n)
	}

	// An append wakes the reader as its context ends: the wake-up is
	// consumed.
	w := waiters.Get().(*waiter)
	r.mu.Lock()
	r.waiting = append(r.waiting, w)
	r.mu.Unlock()
	if _, err := l.Append(ctx, id, delta); err != nil {
		t.Fatal(err)
	}
	if len(w.c) != 1 || waitingReaders() != 0 {
		t.Fatalf("after the append: %d signals, %d listed; want 1, 0", len(w.c), waitingReaders())
	}
	r.mu.Lock()
	r.stopWaiting(w)
	r.mu.Unlock()
	if len(w.c) != 0 {
		t.Fatal("the wake-up was left in the channel")
	}

	// Another reader, waiting, still gets the next event.
	go func() {
		evs, _, err := l.Read(ctx, id, 2, 10)
		if err == nil && (len(evs) != 1 || evs[0].Seq != 3) {
			err = fmt.Errorf("read %d events, want event 3", len(evs))
		}
		got <- err
	}()
	for waitingReaders() != 1 {
		time.Sleep(time.Millisecond)
	}
	if _, err := l.Append(ctx, id, delta); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}
