// Package logtest is the conformance suite every agentstream.EventLog must
// pass: ordering, sequence numbers, blocking reads, terminal events, many
// concurrent readers (from the start or joining mid-log), error mapping,
// the per-run byte cap, retention after the terminal event and large
// events. Every log it writes stays under a megabyte, so a log that bounds
// its memory passes it with its default bounds.
package logtest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// Options are the settings a subtest asks of the log it gets. A zero field
// means the implementation's default.
type Options struct {
	// MaxRunBytes bounds one run's log: past it the oldest events are
	// dropped, the newest always kept, each event counting
	// agentstream.Event.Size bytes.
	MaxRunBytes int64
	// Retention is how long a run's events stay readable after its
	// terminal event.
	Retention time.Duration
}

// NewLog returns a fresh, empty log with the given options.
type NewLog func(t testing.TB, o Options) agentstream.EventLog

// Run runs the suite. newLog returns a fresh, empty log for each subtest;
// the subtests run in parallel.
func Run(t *testing.T, newLog NewLog) {
	def := func(t testing.TB) agentstream.EventLog { return newLog(t, Options{}) }
	t.Run("AppendAssignsSeq", func(t *testing.T) { t.Parallel(); testAppendAssignsSeq(t, def(t)) })
	t.Run("ReadAfter", func(t *testing.T) { t.Parallel(); testReadAfter(t, def(t)) })
	t.Run("ReadMax", func(t *testing.T) { t.Parallel(); testReadMax(t, def(t)) })
	t.Run("ReadWaitsForAppend", func(t *testing.T) { t.Parallel(); testReadWaits(t, def(t)) })
	t.Run("ReadWokenByTerminal", func(t *testing.T) { t.Parallel(); testReadWokenByTerminal(t, def(t)) })
	t.Run("ReadContextEnds", func(t *testing.T) { t.Parallel(); testReadContextEnds(t, def(t)) })
	t.Run("Terminal", func(t *testing.T) { t.Parallel(); testTerminal(t, def(t)) })
	t.Run("TerminalInBatch", func(t *testing.T) { t.Parallel(); testTerminalInBatch(t, def(t)) })
	t.Run("AppendAfterTerminal", func(t *testing.T) { t.Parallel(); testAppendAfterTerminal(t, def(t)) })
	t.Run("UnknownRun", func(t *testing.T) { t.Parallel(); testUnknownRun(t, def(t)) })
	t.Run("RunsAreSeparate", func(t *testing.T) { t.Parallel(); testRunsSeparate(t, def(t)) })
	t.Run("ManyReaders", func(t *testing.T) { t.Parallel(); testManyReaders(t, def(t)) })
	t.Run("IdleReaderDoesNotBlock", func(t *testing.T) { t.Parallel(); testIdleReader(t, def(t)) })
	t.Run("ReadersMidLog", func(t *testing.T) { t.Parallel(); testReadersMidLog(t, def(t)) })
	t.Run("ConcurrentAppenders", func(t *testing.T) { t.Parallel(); testConcurrentAppenders(t, def(t)) })
	t.Run("LargeEvents", func(t *testing.T) { t.Parallel(); testLargeEvents(t, def(t)) })
	t.Run("Bounds", func(t *testing.T) { t.Parallel(); testBounds(t, def(t)) })
	t.Run("AppendExpectedSeq", func(t *testing.T) { t.Parallel(); testAppendExpectedSeq(t, def(t)) })
	t.Run("AppendNone", func(t *testing.T) { t.Parallel(); testAppendNone(t, def(t)) })
	t.Run("BoundsTrimmed", func(t *testing.T) {
		t.Parallel()
		testBoundsTrimmed(t, newLog(t, Options{MaxRunBytes: runCap}))
	})
	t.Run("RunCap", func(t *testing.T) {
		t.Parallel()
		testRunCap(t, newLog(t, Options{MaxRunBytes: runCap}))
	})
	t.Run("RunCapKeepsNewest", func(t *testing.T) {
		t.Parallel()
		testRunCapKeepsNewest(t, newLog(t, Options{MaxRunBytes: runCap}))
	})
	t.Run("Retention", func(t *testing.T) {
		t.Parallel()
		testRetention(t, newLog(t, Options{Retention: retention}), retention)
	})
}

func runID() string { return agentstream.NewID("run_") }

func delta(i int) agentstream.Event {
	return agentstream.NewEvent(agentstream.EventMessageDelta,
		agentstream.MessageDeltaData{MessageID: "msg_1", Delta: fmt.Sprintf("tok%d ", i)})
}

// sized is a message.delta whose delta is n bytes, numbered i.
func sized(i, n int) agentstream.Event {
	return agentstream.NewEvent(agentstream.EventMessageDelta,
		agentstream.MessageDeltaData{MessageID: "msg_" + strconv.Itoa(i), Delta: strings.Repeat("x", n)})
}

func done(id string) agentstream.Event {
	return agentstream.NewEvent(agentstream.EventRunCompleted,
		agentstream.RunEndData{RunID: id, Status: agentstream.RunCompleted})
}

func mustAppend(t testing.TB, l agentstream.EventLog, id string, evs ...agentstream.Event) int64 {
	t.Helper()
	seq, err := l.Append(context.Background(), id, evs...)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return seq
}

// stallLimit bounds a read's wait for events it can have: past it the
// suite calls the read stuck. A lost wake-up waits for ever, or for the
// log's poll interval, which its conformance test sets longer than this.
// Under the race detector on a loaded machine a test process or its
// database has been starved past 5s (ManyReaders: 36 readers timed out at
// once, at seqs 29 to 225), so there it is longer.
var stallLimit = func() time.Duration {
	if underRace {
		return 30 * time.Second
	}
	return 5 * time.Second
}()

func read(t testing.TB, l agentstream.EventLog, id string, after int64, max int) ([]agentstream.Event, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stallLimit)
	defer cancel()
	evs, end, err := l.Read(ctx, id, after, max)
	if err != nil {
		t.Fatalf("Read(after=%d): %v", after, err)
	}
	return evs, end
}

// readAll reads from after to the terminal event and checks the sequence.
func readAll(t testing.TB, l agentstream.EventLog, id string, after int64, batch int) []agentstream.Event {
	t.Helper()
	var all []agentstream.Event
	for {
		evs, end := read(t, l, id, after, batch)
		for _, ev := range evs {
			if ev.Seq != after+1 {
				t.Fatalf("got seq %d after %d", ev.Seq, after)
			}
			after = ev.Seq
			all = append(all, ev)
		}
		if end {
			return all
		}
	}
}

func testAppendAssignsSeq(t *testing.T, l agentstream.EventLog) {
	id := runID()
	if got := mustAppend(t, l, id, delta(1)); got != 1 {
		t.Fatalf("first append: seq %d, want 1", got)
	}
	if got := mustAppend(t, l, id, delta(2), delta(3), delta(4)); got != 4 {
		t.Fatalf("batch append: seq %d, want 4", got)
	}
	// A shared log hands events out once it holds them: read until all 4
	// came.
	var evs []agentstream.Event
	for len(evs) < 4 {
		got, end := read(t, l, id, int64(len(evs)), 100)
		if end {
			t.Fatalf("read after %d: end of a run without a terminal event", len(evs))
		}
		evs = append(evs, got...)
	}
	if len(evs) != 4 {
		t.Fatalf("read: %d events; want 4", len(evs))
	}
	for i, ev := range evs {
		if ev.Seq != int64(i+1) || ev.Type != agentstream.EventMessageDelta {
			t.Fatalf("event %d: seq %d type %s", i, ev.Seq, ev.Type)
		}
		if string(ev.Data) != string(delta(i+1).Data) {
			t.Fatalf("event %d data %s, want %s", i, ev.Data, delta(i+1).Data)
		}
	}
}

func testReadAfter(t *testing.T, l agentstream.EventLog) {
	id := runID()
	for i := 1; i <= 10; i++ {
		mustAppend(t, l, id, delta(i))
	}
	evs, _ := read(t, l, id, 7, 100)
	if len(evs) != 3 || evs[0].Seq != 8 || evs[2].Seq != 10 {
		t.Fatalf("read after 7: %+v", evs)
	}
	// A negative cursor reads from the start.
	evs, _ = read(t, l, id, -5, 100)
	if len(evs) != 10 || evs[0].Seq != 1 {
		t.Fatalf("read after -5: %d events from %d", len(evs), evs[0].Seq)
	}
}

func testReadMax(t *testing.T, l agentstream.EventLog) {
	id := runID()
	for i := 1; i <= 10; i++ {
		mustAppend(t, l, id, delta(i))
	}
	mustAppend(t, l, id, done(id))
	evs, end := read(t, l, id, 0, 4)
	if len(evs) != 4 || end {
		t.Fatalf("max 4: %d events end=%v", len(evs), end)
	}
	evs, end = read(t, l, id, 8, 3)
	if len(evs) != 3 || !end || !evs[2].Type.Terminal() {
		t.Fatalf("last batch: %d events end=%v", len(evs), end)
	}
}

func testReadWaits(t *testing.T, l agentstream.EventLog) {
	id := runID()
	mustAppend(t, l, id, delta(1))
	got := make(chan []agentstream.Event, 1)
	go func() {
		evs, _, err := l.Read(context.Background(), id, 1, 10)
		if err != nil {
			t.Errorf("Read: %v", err)
		}
		got <- evs
	}()
	select {
	case evs := <-got:
		t.Fatalf("Read returned %d events before any was appended", len(evs))
	case <-time.After(50 * time.Millisecond):
	}
	mustAppend(t, l, id, delta(2))
	select {
	case evs := <-got:
		if len(evs) != 1 || evs[0].Seq != 2 {
			t.Fatalf("woken read: %+v", evs)
		}
	case <-time.After(stallLimit):
		t.Fatal("Read did not wake up after an append")
	}
}

func testReadContextEnds(t *testing.T, l agentstream.EventLog) {
	id := runID()
	mustAppend(t, l, id, delta(1))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, _, err := l.Read(ctx, id, 1, 10)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read with an expiring context: %v, want DeadlineExceeded", err)
	}
}

func testTerminal(t *testing.T, l agentstream.EventLog) {
	id := runID()
	mustAppend(t, l, id, delta(1), delta(2))
	if seq := mustAppend(t, l, id, done(id)); seq != 3 {
		t.Fatalf("terminal seq %d", seq)
	}
	evs := readAll(t, l, id, 0, 100)
	if len(evs) != 3 || !evs[2].Type.Terminal() {
		t.Fatalf("read %d events", len(evs))
	}
	// Reading at the end of a closed log returns at once.
	evs, end := read(t, l, id, 3, 10)
	if len(evs) != 0 || !end {
		t.Fatalf("read past the end: %d events end=%v", len(evs), end)
	}
	_, err := l.Append(context.Background(), id, delta(4))
	if !errors.Is(err, agentstream.ErrConflict) {
		t.Fatalf("append after terminal: %v, want ErrConflict", err)
	}
}

func testTerminalInBatch(t *testing.T, l agentstream.EventLog) {
	id := runID()
	_, err := l.Append(context.Background(), id, delta(1), done(id), delta(2))
	if !errors.Is(err, agentstream.ErrConflict) {
		t.Fatalf("append with events after the terminal one: %v, want ErrConflict", err)
	}
	// The rejected batch wrote nothing.
	mustAppend(t, l, id, delta(1))
	evs, _ := read(t, l, id, 0, 10)
	if len(evs) != 1 {
		t.Fatalf("after a rejected batch: %d events, want 1", len(evs))
	}
}

func testUnknownRun(t *testing.T, l agentstream.EventLog) {
	_, _, err := l.Read(context.Background(), runID(), 0, 10)
	if !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("read of an unknown run: %v, want ErrNotFound", err)
	}
}

func testRunsSeparate(t *testing.T, l agentstream.EventLog) {
	a, b := runID(), runID()
	mustAppend(t, l, a, delta(1), delta(2))
	if seq := mustAppend(t, l, b, delta(1)); seq != 1 {
		t.Fatalf("second run starts at seq %d", seq)
	}
	mustAppend(t, l, a, done(a))
	if seq := mustAppend(t, l, b, delta(2)); seq != 2 {
		t.Fatalf("second run still open after the first ended: seq %d", seq)
	}
}

// testManyReaders streams a run to 50 readers at once: each sees every
// event exactly once, in order.
func testManyReaders(t *testing.T, l agentstream.EventLog) {
	id := runID()
	const readers, events = 50, 300
	mustAppend(t, l, id, delta(0))
	var wg sync.WaitGroup
	counts := make([]int, readers)
	for r := range readers {
		wg.Go(func() {
			counts[r] = len(readAll(t, l, id, 0, 1+r%7))
		})
	}
	for i := 1; i < events; i++ {
		mustAppend(t, l, id, delta(i))
	}
	mustAppend(t, l, id, done(id))
	wg.Wait()
	for r, n := range counts {
		if n != events+1 {
			t.Fatalf("reader %d saw %d events, want %d", r, n, events+1)
		}
	}
}

// testIdleReader: a reader that stopped reading holds nothing back.
func testIdleReader(t *testing.T, l agentstream.EventLog) {
	id := runID()
	mustAppend(t, l, id, delta(0))
	if evs, _ := read(t, l, id, 0, 1); len(evs) != 1 {
		t.Fatal("first read")
	}
	// The reader now never reads again; appends go on regardless.
	for i := 1; i <= 5000; i++ {
		mustAppend(t, l, id, delta(i))
	}
	mustAppend(t, l, id, done(id))
	if got := len(readAll(t, l, id, 1, 1000)); got != 5001 {
		t.Fatalf("late read: %d events", got)
	}
}

// testReadersMidLog: readers that join a log already under way, each at
// its own position, keep receiving every later event while several
// appenders add to it.
func testReadersMidLog(t *testing.T, l agentstream.EventLog) {
	id := runID()
	const before, appenders, each = 100, 4, 100
	for i := 1; i <= before; i++ {
		mustAppend(t, l, id, delta(i))
	}
	starts := []int64{1, 50, 99, before}
	counts := make([]int, len(starts))
	var readers sync.WaitGroup
	for i, after := range starts {
		readers.Go(func() {
			counts[i] = len(readAll(t, l, id, after, 1+i*3))
		})
	}
	var wg sync.WaitGroup
	for w := range appenders {
		wg.Go(func() {
			for i := range each {
				if _, err := l.Append(context.Background(), id, delta((w+1)*1000+i)); err != nil {
					t.Errorf("append: %v", err)
				}
			}
		})
	}
	wg.Wait()
	mustAppend(t, l, id, done(id))
	readers.Wait()
	for i, after := range starts {
		if want := before + appenders*each + 1 - int(after); counts[i] != want {
			t.Fatalf("reader from %d saw %d events, want %d", after, counts[i], want)
		}
	}
}

func testConcurrentAppenders(t *testing.T, l agentstream.EventLog) {
	id := runID()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if _, err := l.Append(context.Background(), id, delta(w*1000+i)); err != nil {
					t.Errorf("append: %v", err)
				}
			}
		})
	}
	wg.Wait()
	mustAppend(t, l, id, done(id))
	if got := len(readAll(t, l, id, 0, 64)); got != 401 {
		t.Fatalf("read %d events, want 401", got)
	}
}

func testReadWokenByTerminal(t *testing.T, l agentstream.EventLog) {
	id := runID()
	mustAppend(t, l, id, delta(1))
	type result struct {
		evs []agentstream.Event
		end bool
		err error
	}
	got := make(chan result, 1)
	go func() {
		evs, end, err := l.Read(context.Background(), id, 1, 10)
		got <- result{evs, end, err}
	}()
	time.Sleep(20 * time.Millisecond)
	mustAppend(t, l, id, done(id))
	select {
	case r := <-got:
		if r.err != nil || !r.end || len(r.evs) != 1 || r.evs[0].Seq != 2 || !r.evs[0].Type.Terminal() {
			t.Fatalf("woken read: %+v end=%v err=%v; want the terminal event, end", r.evs, r.end, r.err)
		}
	case <-time.After(stallLimit):
		t.Fatal("Read did not wake up after the terminal event")
	}
}

// testAppendAfterTerminal: once the terminal event is in, every later
// append fails, terminal or not, and writes nothing.
func testAppendAfterTerminal(t *testing.T, l agentstream.EventLog) {
	id := runID()
	mustAppend(t, l, id, delta(1), delta(2))
	mustAppend(t, l, id, done(id))
	for _, evs := range [][]agentstream.Event{{delta(3)}, {done(id)}, {delta(3), done(id)}} {
		if _, err := l.Append(context.Background(), id, evs...); !errors.Is(err, agentstream.ErrConflict) {
			t.Fatalf("append of %d events after the terminal one: %v, want ErrConflict", len(evs), err)
		}
	}
	evs := readAll(t, l, id, 0, 100)
	if len(evs) != 3 || !evs[2].Type.Terminal() {
		t.Fatalf("read %d events, want the 3 appended before the end", len(evs))
	}
}

// testLargeEvents: events of hundreds of kilobytes, and data with
// multi-byte characters and escapes, come back byte for byte.
func testLargeEvents(t *testing.T, l agentstream.EventLog) {
	id := runID()
	odd := agentstream.NewEvent(agentstream.EventMessageDelta,
		agentstream.MessageDeltaData{MessageID: "msg_1", Delta: "é 😀 \"quoted\" \n\t\u0000 <>&"})
	want := []agentstream.Event{sized(1, 300<<10), odd, sized(2, 64<<10), sized(3, 1)}
	mustAppend(t, l, id, want[0])
	mustAppend(t, l, id, want[1:]...)
	mustAppend(t, l, id, sized(4, 200<<10), done(id))
	want = append(want, sized(4, 200<<10), done(id))
	got := readAll(t, l, id, 0, 2)
	if len(got) != len(want) {
		t.Fatalf("read %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Type != want[i].Type || string(got[i].Data) != string(want[i].Data) {
			t.Fatalf("event %d: type %s, %d bytes of data; want %s, %d bytes", i+1, got[i].Type, len(got[i].Data), want[i].Type, len(want[i].Data))
		}
	}
}

// runCap is the MaxRunBytes of the cap tests: room for about ten of their
// events.
const runCap = 10*(200+100) + 150

// firstKept returns the first seq a log capped at limit keeps of events
// (seq 1, 2, …): the oldest of the longest run of newest events that fits,
// and at least the newest.
func firstKept(events []agentstream.Event, limit int64) int64 {
	var b int64
	first := int64(len(events))
	for i := len(events) - 1; i >= 0; i-- {
		b += events[i].Size()
		if b > limit && i < len(events)-1 {
			break
		}
		first = int64(i + 1)
	}
	return first
}

// checkGone checks that a read after `after` fails with ErrGone naming
// the first seq kept.
func checkGone(t *testing.T, l agentstream.EventLog, id string, after, first int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := l.Read(ctx, id, after, 10)
	if !errors.Is(err, agentstream.ErrGone) {
		t.Fatalf("read after %d: %v, want ErrGone (first kept: %d)", after, err, first)
	}
	if !strings.Contains(err.Error(), strconv.FormatInt(first, 10)) {
		t.Fatalf("read after %d: %q does not name the first seq kept, %d", after, err, first)
	}
}

// testRunCap: past MaxRunBytes the oldest events go and reads of them get
// ErrGone, while a reader past the trimmed part reads on undisturbed.
func testRunCap(t *testing.T, l agentstream.EventLog) {
	id := runID()
	const n = 60
	var all []agentstream.Event
	appendOne := func(ev agentstream.Event) {
		all = append(all, ev)
		mustAppend(t, l, id, ev)
	}
	for i := 1; i <= n/2; i++ {
		appendOne(sized(i, 200))
	}
	// A reader a few events behind the newest keeps up while the log is
	// trimmed under it: the appender waits for it, so it is never more
	// than 4 events behind (the cap holds about 10).
	var pos atomic.Int64
	pos.Store(n/2 - 3)
	type result struct {
		n   int
		err error
	}
	got := make(chan result, 1)
	go func() {
		count := 0
		for {
			ctx, cancel := context.WithTimeout(context.Background(), stallLimit)
			evs, end, err := l.Read(ctx, id, pos.Load(), 4)
			cancel()
			if err != nil {
				got <- result{count, fmt.Errorf("read after %d: %w", pos.Load(), err)}
				return
			}
			for _, ev := range evs {
				if ev.Seq != pos.Load()+1 {
					got <- result{count, fmt.Errorf("got seq %d after %d", ev.Seq, pos.Load())}
					return
				}
				pos.Store(ev.Seq)
				count++
			}
			if end {
				got <- result{count, nil}
				return
			}
		}
	}()
	for i := n/2 + 1; i <= n; i++ {
		for deadline := time.Now().Add(stallLimit); pos.Load() < int64(i-4); {
			if time.Now().After(deadline) {
				t.Fatalf("reader stuck at %d", pos.Load())
			}
			time.Sleep(100 * time.Microsecond)
		}
		appendOne(sized(i, 200))
	}
	appendOne(done(id))
	select {
	case r := <-got:
		if r.err != nil || r.n != n/2+4 {
			t.Fatalf("reader past the trim: %d events, %v; want %d, to the terminal one", r.n, r.err, n/2+4)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader past the trim did not finish")
	}

	first := firstKept(all, runCap)
	if first < 2 || first > n-5 {
		t.Fatalf("bad test: first kept %d", first)
	}
	checkGone(t, l, id, 0, first)
	checkGone(t, l, id, first-2, first)
	evs := readAll(t, l, id, first-1, 3)
	if int64(len(evs)) != n+2-first || evs[0].Seq != first {
		t.Fatalf("read from the first kept: %d events from %d, want %d from %d", len(evs), evs[0].Seq, n+2-first, first)
	}
	for i, ev := range evs {
		if string(ev.Data) != string(all[first-1+int64(i)].Data) {
			t.Fatalf("event %d changed", ev.Seq)
		}
	}
}

// testRunCapKeepsNewest: an event over the cap by itself is kept, being the
// newest, until the next one comes; the terminal event stays.
func testRunCapKeepsNewest(t *testing.T, l agentstream.EventLog) {
	id := runID()
	mustAppend(t, l, id, sized(1, 10), sized(2, 10))
	big := sized(3, 2*runCap)
	if seq := mustAppend(t, l, id, big); seq != 3 {
		t.Fatalf("big event: seq %d", seq)
	}
	evs, end := read(t, l, id, 2, 10)
	if len(evs) != 1 || end || string(evs[0].Data) != string(big.Data) {
		t.Fatalf("the newest event, over the cap: %d events end=%v", len(evs), end)
	}
	mustAppend(t, l, id, done(id))
	checkGone(t, l, id, 2, 4)
	evs, end = read(t, l, id, 3, 10)
	if len(evs) != 1 || !end || evs[0].Seq != 4 {
		t.Fatalf("after the big event: %d events end=%v", len(evs), end)
	}
}

// retention is the Retention of testRetention.
const retention = 300 * time.Millisecond

// testRetention: a finished run's log is readable for its retention, then
// gone (ErrNotFound) for good.
func testRetention(t *testing.T, l agentstream.EventLog, retention time.Duration) {
	id := runID()
	mustAppend(t, l, id, delta(1), delta(2))
	mustAppend(t, l, id, done(id))
	ended := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, end, err := l.Read(ctx, id, 0, 10)
	switch {
	case errors.Is(err, agentstream.ErrNotFound) && time.Since(ended) < retention:
		t.Fatalf("log gone %v after its end, before its retention (%v)", time.Since(ended), retention)
	case err == nil && (len(evs) != 3 || !end):
		t.Fatalf("read within the retention: %d events end=%v", len(evs), end)
	case err != nil && !errors.Is(err, agentstream.ErrNotFound):
		t.Fatalf("read within the retention: %v", err)
	}
	deadline := time.Now().Add(retention + 10*time.Second)
	for {
		_, _, err := l.Read(ctx, id, 0, 10)
		if errors.Is(err, agentstream.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatalf("read after the retention: %v, want ErrNotFound", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("log still there %v after its end (retention %v)", time.Since(ended), retention)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, _, err := l.Read(ctx, id, 3, 10); !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("read at the end after the retention: %v, want ErrNotFound", err)
	}
}

// caughtUp reads from after until it has read through seq.
func caughtUp(t testing.TB, l agentstream.EventLog, id string, after, seq int64) {
	t.Helper()
	for after < seq {
		evs, _ := read(t, l, id, after, 100)
		for _, ev := range evs {
			if ev.Seq != after+1 {
				t.Fatalf("got seq %d after %d", ev.Seq, after)
			}
			after = ev.Seq
		}
	}
}

func bounds(t testing.TB, l agentstream.EventLog, id string) agentstream.LogBounds {
	t.Helper()
	b, err := l.Bounds(context.Background(), id)
	if err != nil {
		t.Fatalf("Bounds: %v", err)
	}
	return b
}

// testBounds: Bounds tells what a reader can have, without waiting: the
// events read so far at least, and the terminal event once appended.
func testBounds(t *testing.T, l agentstream.EventLog) {
	id := runID()
	if _, err := l.Bounds(context.Background(), id); !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("Bounds of an unknown run: %v, want ErrNotFound", err)
	}
	mustAppend(t, l, id, delta(1), delta(2), delta(3))
	caughtUp(t, l, id, 0, 3)
	if b := bounds(t, l, id); b != (agentstream.LogBounds{First: 1, Last: 3}) {
		t.Fatalf("Bounds after 3 events: %+v, want first 1, last 3, no end", b)
	}
	if seq := mustAppend(t, l, id, done(id)); seq != 4 {
		t.Fatalf("terminal event: seq %d, want 4", seq)
	}
	// The terminal event's Append returns once readers can have it.
	if b := bounds(t, l, id); b != (agentstream.LogBounds{First: 1, Last: 4, End: 4}) {
		t.Fatalf("Bounds after the terminal event: %+v, want first 1, last 4, end 4", b)
	}
	// Bounds does not wait, even on a log with nothing new.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := l.Bounds(ctx, id); err != nil {
		t.Fatalf("Bounds: %v", err)
	}
}

// testBoundsTrimmed: past the run's byte cap, First is the first event
// kept: a read from before it gets ErrGone.
func testBoundsTrimmed(t *testing.T, l agentstream.EventLog) {
	id := runID()
	var all []agentstream.Event
	for i := 1; i <= 30; i++ {
		ev := sized(i, 200)
		all = append(all, ev)
		mustAppend(t, l, id, ev)
	}
	all = append(all, done(id))
	mustAppend(t, l, id, done(id))
	first := firstKept(all, runCap)
	b := bounds(t, l, id)
	if b.First != first || b.Last != 31 || b.End != 31 {
		t.Fatalf("Bounds: %+v, want first %d, last 31, end 31", b, first)
	}
	checkGone(t, l, id, first-2, first)
}

// testAppendExpectedSeq: an append whose first event names a seq other
// than the log's next one appends nothing and fails with ErrConflict; one
// that names the next seq appends as usual.
func testAppendExpectedSeq(t *testing.T, l agentstream.EventLog) {
	id := runID()
	early := delta(1)
	early.Seq = 2
	if _, err := l.Append(context.Background(), id, early); !errors.Is(err, agentstream.ErrConflict) {
		t.Fatalf("first append expecting seq 2: %v, want ErrConflict", err)
	}
	first := delta(1)
	first.Seq = 1
	if seq := mustAppend(t, l, id, first, delta(2)); seq != 2 {
		t.Fatalf("append expecting seq 1: last seq %d, want 2", seq)
	}
	for _, want := range []int64{1, 2, 4, 9} {
		end := done(id)
		end.Seq = want
		if _, err := l.Append(context.Background(), id, end); !errors.Is(err, agentstream.ErrConflict) {
			t.Fatalf("terminal event expecting seq %d after 2: %v, want ErrConflict", want, err)
		}
	}
	if last, err := l.Append(context.Background(), id); err != nil || last != 2 {
		t.Fatalf("Append of no events after the refused ones: %d, %v; want 2", last, err)
	}
	end := done(id)
	end.Seq = 3
	if seq := mustAppend(t, l, id, end); seq != 3 {
		t.Fatalf("terminal event expecting seq 3: %d", seq)
	}
	evs := readAll(t, l, id, 0, 10)
	if len(evs) != 3 || evs[2].Type != agentstream.EventRunCompleted {
		t.Fatalf("log after the refused appends: %d events, want the 2 deltas and the terminal event", len(evs))
	}
}

// testAppendNone: an Append of no events returns the run's last seq (0 for
// a run without a log) and creates nothing.
func testAppendNone(t *testing.T, l agentstream.EventLog) {
	id := runID()
	if last, err := l.Append(context.Background(), id); err != nil || last != 0 {
		t.Fatalf("Append of no events to an unknown run: %d, %v; want 0", last, err)
	}
	if _, err := l.Bounds(context.Background(), id); !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("Bounds after an Append of no events: %v, want ErrNotFound (no log made)", err)
	}
	mustAppend(t, l, id, delta(1), delta(2))
	if last, err := l.Append(context.Background(), id); err != nil || last != 2 {
		t.Fatalf("Append of no events after 2: %d, %v; want 2", last, err)
	}
}
