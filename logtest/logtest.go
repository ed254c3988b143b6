// Package logtest is the conformance suite every agentstream.EventLog must
// pass: ordering, sequence numbers, blocking reads, terminal events, many
// concurrent readers (from the start or joining mid-log) and error mapping.
// Every log it writes stays under a megabyte, so a log that bounds its
// memory passes it with its default bounds.
package logtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// Run runs the suite. newLog returns a fresh, empty log for each subtest.
func Run(t *testing.T, newLog func(t testing.TB) agentstream.EventLog) {
	t.Run("AppendAssignsSeq", func(t *testing.T) { t.Parallel(); testAppendAssignsSeq(t, newLog(t)) })
	t.Run("ReadAfter", func(t *testing.T) { t.Parallel(); testReadAfter(t, newLog(t)) })
	t.Run("ReadMax", func(t *testing.T) { t.Parallel(); testReadMax(t, newLog(t)) })
	t.Run("ReadWaitsForAppend", func(t *testing.T) { t.Parallel(); testReadWaits(t, newLog(t)) })
	t.Run("ReadContextEnds", func(t *testing.T) { t.Parallel(); testReadContextEnds(t, newLog(t)) })
	t.Run("Terminal", func(t *testing.T) { t.Parallel(); testTerminal(t, newLog(t)) })
	t.Run("TerminalInBatch", func(t *testing.T) { t.Parallel(); testTerminalInBatch(t, newLog(t)) })
	t.Run("UnknownRun", func(t *testing.T) { t.Parallel(); testUnknownRun(t, newLog(t)) })
	t.Run("RunsAreSeparate", func(t *testing.T) { t.Parallel(); testRunsSeparate(t, newLog(t)) })
	t.Run("ManyReaders", func(t *testing.T) { t.Parallel(); testManyReaders(t, newLog(t)) })
	t.Run("IdleReaderDoesNotBlock", func(t *testing.T) { t.Parallel(); testIdleReader(t, newLog(t)) })
	t.Run("ReadersMidLog", func(t *testing.T) { t.Parallel(); testReadersMidLog(t, newLog(t)) })
	t.Run("ConcurrentAppenders", func(t *testing.T) { t.Parallel(); testConcurrentAppenders(t, newLog(t)) })
}

func runID() string { return agentstream.NewID("run_") }

func delta(i int) agentstream.Event {
	return agentstream.NewEvent(agentstream.EventMessageDelta,
		agentstream.MessageDeltaData{MessageID: "msg_1", Delta: fmt.Sprintf("tok%d ", i)})
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

func read(t testing.TB, l agentstream.EventLog, id string, after int64, max int) ([]agentstream.Event, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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
	evs, end := read(t, l, id, 0, 100)
	if end || len(evs) != 4 {
		t.Fatalf("read: %d events, end=%v; want 4, false", len(evs), end)
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
	case <-time.After(5 * time.Second):
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
