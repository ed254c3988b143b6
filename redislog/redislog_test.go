package redislog

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/logtest"
	"github.com/redis/go-redis/v9"
)

// conformance opens the suite's logs. The poll is out of reach (a minute,
// past the suite's read limit): the suite's readers share the appending
// Log, so wake-ups alone must bring them every event, and a lost one fails
// the suite instead of costing a 2s poll.
func conformance(coalesce time.Duration) logtest.NewLog {
	return func(t testing.TB, o logtest.Options) agentstream.EventLog {
		return openLog(t, "", Options{MaxRunBytes: o.MaxRunBytes, Retention: o.Retention, Coalesce: coalesce,
			PollInterval: time.Minute})
	}
}

// TestConformance runs the suite with coalescing (the default 5ms).
func TestConformance(t *testing.T) { logtest.Run(t, conformance(0)) }

// TestConformanceNoCoalescing runs the suite with every append sent at
// once.
func TestConformanceNoCoalescing(t *testing.T) { logtest.Run(t, conformance(-1)) }

// TestConformanceLongWindow runs the suite with a window long enough that
// reads on the appending Log mostly come from its queue.
func TestConformanceLongWindow(t *testing.T) { logtest.Run(t, conformance(50*time.Millisecond)) }

func TestDefaults(t *testing.T) {
	o := Options{}.WithDefaults()
	if o.Prefix != "agentstream:" || o.MaxRunBytes != 4<<20 || o.Retention != 10*time.Minute ||
		o.IdleExpiry != 24*time.Hour || o.Coalesce != 2*time.Millisecond || o.PollInterval != 2*time.Second ||
		o.GiveUpAfter != time.Minute || o.Logger == nil {
		t.Fatalf("defaults: %+v", o)
	}
	if o := (Options{Coalesce: -1}).WithDefaults(); o.Coalesce != -1 {
		t.Fatalf("negative Coalesce became %v", o.Coalesce)
	}
}

// TestKeys checks the layout other tools may rely on: the stream and the
// books, their fields and expiry.
func TestKeys(t *testing.T) {
	prefix := testPrefix(t)
	l := openLog(t, "", Options{Prefix: prefix, Retention: time.Hour})
	c := rawClient(t)
	ctx := context.Background()
	id := runID()
	mustAppend(t, l, id, delta(1))
	mustAppend(t, l, id, delta(2), done(id))
	events, meta := prefix+"{"+id+"}:events", prefix+"{"+id+"}:meta"
	entries, err := c.XRange(ctx, events, "-", "+").Result()
	if err != nil || len(entries) != 3 {
		t.Fatalf("XRANGE: %v, %d entries", err, len(entries))
	}
	for i, e := range entries {
		want := delta(i + 1)
		if i == 2 {
			want = done(id)
		}
		if e.ID != "0-"+strconv.Itoa(i+1) || e.Values["t"] != string(want.Type) || e.Values["d"] != string(want.Data) {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
	m, err := c.HGetAll(ctx, meta).Result()
	if err != nil {
		t.Fatal(err)
	}
	size := delta(1).Size() + delta(2).Size() + done(id).Size()
	if m["first"] != "1" || m["last"] != "3" || m["end"] != "3" || m["bytes"] != strconv.FormatInt(size, 10) {
		t.Fatalf("meta %v, want first 1 last 3 end 3 bytes %d", m, size)
	}
	for _, k := range []string{events, meta} {
		if ttl := c.PTTL(ctx, k).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
			t.Fatalf("%s expires in %v, want the retention (1h)", k, ttl)
		}
	}
	open := runID()
	mustAppend(t, l, open, delta(1))
	if ttl := c.PTTL(ctx, prefix+"{"+open+"}:meta").Val(); ttl < 23*time.Hour {
		t.Fatalf("an open run's log expires in %v, want IdleExpiry (24h)", ttl)
	}
}

// TestTwoLogs: one Log appends a run the way the runner does (a token at a
// time, in bursts and pauses), readers on another Log follow it live and
// each sees every event once, in order.
func TestTwoLogs(t *testing.T) {
	prefix := testPrefix(t)
	a := openLog(t, "", Options{Prefix: prefix})
	b := openLog(t, "", Options{Prefix: prefix})
	id := runID()
	const n = 2000
	mustAppend(t, a, id, delta(0))
	var wg sync.WaitGroup
	results := make([][]agentstream.Event, 4)
	for r := range results {
		wg.Go(func() { results[r] = readTo(t, b, id, int64(r*100), n+2) })
	}
	for i := 1; i <= n; i++ {
		mustAppend(t, a, id, delta(i))
		switch {
		case i%500 == 0:
			time.Sleep(20 * time.Millisecond)
		case i%50 == 0:
			time.Sleep(time.Millisecond)
		}
	}
	mustAppend(t, a, id, done(id))
	wg.Wait()
	for r, evs := range results {
		if want := n + 2 - r*100; len(evs) != want {
			t.Fatalf("reader %d: %d events, want %d", r, len(evs), want)
		}
		for _, ev := range evs[:len(evs)-1] {
			if string(ev.Data) != string(delta(int(ev.Seq)-1).Data) {
				t.Fatalf("reader %d: event %d is %s", r, ev.Seq, ev.Data)
			}
		}
	}
	// The owner dropped the run's state once its end was in Redis.
	if rs := a.getRun(id); rs != nil {
		t.Fatal("the appending Log still holds the ended run")
	}
}

// TestManyWaitingReaders: readers waiting for events hold no connection:
// 100 of them wait on a Log whose pool has 2.
func TestManyWaitingReaders(t *testing.T) {
	prefix := testPrefix(t)
	a := openLog(t, "", Options{Prefix: prefix})
	u, err := url.Parse(redisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_size", "2")
	u.RawQuery = q.Encode()
	b := openLog(t, u.String(), Options{Prefix: prefix})
	id := runID()
	mustAppend(t, a, id, delta(1))
	var wg sync.WaitGroup
	const readers = 100
	counts := make([]int, readers)
	for r := range readers {
		wg.Go(func() { counts[r] = len(readTo(t, b, id, 1, 4)) })
	}
	time.Sleep(200 * time.Millisecond)
	mustAppend(t, a, id, delta(2))
	time.Sleep(50 * time.Millisecond)
	mustAppend(t, a, id, delta(3), done(id))
	wg.Wait()
	for r, n := range counts {
		if n != 3 {
			t.Fatalf("reader %d: %d events", r, n)
		}
	}
}

// TestFlushedReadsStayLocal: a reader gets an event only once Redis holds
// it; the appending Log serves the newest flushed events from memory,
// without a command, and wakes its readers when a flush lands.
func TestFlushedReadsStayLocal(t *testing.T) {
	l := openLog(t, "", Options{Coalesce: 500 * time.Millisecond})
	id := runID()
	mustAppend(t, l, id, delta(1))
	for i := 2; i <= 50; i++ {
		mustAppend(t, l, id, delta(i))
	}
	// Queued, not flushed: a reader has nothing yet.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	evs, _, err := l.Read(ctx, id, 1, 100)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || len(evs) != 0 {
		t.Fatalf("read of events not in Redis: %d events, %v; want none until the flush", len(evs), err)
	}
	if b, err := l.Bounds(context.Background(), id); err != nil || b.Last != 1 {
		t.Fatalf("Bounds before the flush: %+v, %v; want last 1", b, err)
	}
	if evs := readTo(t, l, id, 1, 50); len(evs) != 49 {
		t.Fatalf("read %d events after the flush, want 49", len(evs))
	}
	before := l.Commands()
	if evs := readTo(t, l, id, 1, 50); len(evs) != 49 {
		t.Fatalf("read %d events again, want 49", len(evs))
	}
	if n := l.Commands() - before; n != 0 {
		t.Fatalf("reading flushed events kept in memory sent %d commands", n)
	}
	// A reader behind the kept part reads Redis.
	mustAppend(t, l, id, done(id))
	if evs := readTo(t, l, id, 0, 51); len(evs) != 51 || !evs[50].Type.Terminal() {
		t.Fatalf("read %d events from the start", len(evs))
	}
}

// TestFlushWakesLocalReader: a reader waiting on the appending Log is woken
// by the flush of the next event, not before it.
func TestFlushWakesLocalReader(t *testing.T) {
	l := openLog(t, "", Options{Coalesce: 300 * time.Millisecond})
	id := runID()
	mustAppend(t, l, id, delta(1))
	got := make(chan []agentstream.Event, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		evs, _, _ := l.Read(ctx, id, 1, 10)
		got <- evs
	}()
	time.Sleep(50 * time.Millisecond)
	appended := time.Now()
	mustAppend(t, l, id, delta(2))
	select {
	case evs := <-got:
		if len(evs) != 1 || evs[0].Seq != 2 {
			t.Fatalf("woken read: %+v", evs)
		}
		// The coalescing window is 300ms: the event cannot be read
		// before its flush.
		if d := time.Since(appended); d < 250*time.Millisecond {
			t.Fatalf("the reader had event 2 %v after its append, before its flush", d)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("the flush did not wake the reader")
	}
}

// TestCoalescing: a burst of appends costs a few calls, not one each.
func TestCoalescing(t *testing.T) {
	l := openLog(t, "", Options{Coalesce: 20 * time.Millisecond})
	id := runID()
	mustAppend(t, l, id, delta(0))
	before := l.Commands()
	for i := 1; i <= 200; i++ {
		mustAppend(t, l, id, delta(i))
	}
	mustAppend(t, l, id, done(id))
	if n := l.Commands() - before; n > 10 {
		t.Fatalf("200 appends and the end cost %d commands", n)
	}
	if evs := readTo(t, l, id, 0, 202); len(evs) != 202 {
		t.Fatalf("read %d events", len(evs))
	}
}

func TestCancelAcrossLogs(t *testing.T) {
	prefix := testPrefix(t)
	a := openLog(t, "", Options{Prefix: prefix})
	b := openLog(t, "", Options{Prefix: prefix})
	other := openLog(t, "", Options{}) // another prefix: another deployment
	gotA, gotB, gotOther := make(chan string, 4), make(chan string, 4), make(chan string, 4)
	a.OnCancel(func(id string) { gotA <- id })
	b.OnCancel(func(id string) { gotB <- id })
	other.OnCancel(func(id string) { gotOther <- id })
	id := runID()
	if err := a.RequestCancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan string{"A": gotA, "B": gotB} {
		select {
		case got := <-ch:
			if got != id {
				t.Fatalf("%s got a cancel request for %q, want %q", name, got, id)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s got no cancel request", name)
		}
	}
	select {
	case got := <-gotOther:
		t.Fatalf("a Log with another prefix got a cancel request for %s", got)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestForgetThreadAcrossLogs: a deleted thread's key published by one Log
// reaches the handlers of every Log with its prefix, and no other.
func TestForgetThreadAcrossLogs(t *testing.T) {
	prefix := testPrefix(t)
	a := openLog(t, "", Options{Prefix: prefix})
	b := openLog(t, "", Options{Prefix: prefix})
	other := openLog(t, "", Options{}) // another prefix: another deployment
	gotA, gotB, gotOther := make(chan string, 4), make(chan string, 4), make(chan string, 4)
	cancels := make(chan string, 4)
	a.OnThreadForgotten(func(key string) { gotA <- key })
	b.OnThreadForgotten(func(key string) { gotB <- key })
	b.OnCancel(func(id string) { cancels <- id })
	other.OnThreadForgotten(func(key string) { gotOther <- key })
	key := agentstream.ThreadKey("alice", "t1")
	if err := a.RequestForgetThread(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan string{"A": gotA, "B": gotB} {
		select {
		case got := <-ch:
			if got != key {
				t.Fatalf("%s was told to forget %q, want %q", name, got, key)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s was not told to forget the thread", name)
		}
	}
	select {
	case got := <-gotOther:
		t.Fatalf("a Log with another prefix was told to forget %s", got)
	case got := <-cancels:
		t.Fatalf("a deleted thread reached the cancel handlers as %s", got)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestUnreachable(t *testing.T) {
	start := time.Now()
	_, err := Open(context.Background(), "redis://127.0.0.1:1/0", Options{})
	if !errors.Is(err, agentstream.ErrUnavailable) || !errContains(err, "127.0.0.1:1") {
		t.Fatalf("Open of an unreachable Redis: %v, want ErrUnavailable naming the address", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("Open took %v to fail", d)
	}
	t.Log(err)
	if _, err := Open(context.Background(), "http://nowhere", Options{}); !errors.Is(err, agentstream.ErrInvalid) {
		t.Fatalf("Open of a bad URL: %v, want ErrInvalid", err)
	}
	if _, err := Open(context.Background(), redisURL(t), Options{Prefix: "a{b}:"}); !errors.Is(err, agentstream.ErrInvalid) {
		t.Fatalf("Open with a prefix holding braces: %v, want ErrInvalid", err)
	}
}

func TestPingAndClose(t *testing.T) {
	l := openLog(t, "", Options{})
	if err := l.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := runID()
	mustAppend(t, l, id, delta(1))
	waiting := make(chan error, 1)
	go func() {
		_, _, err := l.Read(context.Background(), id, 1, 10)
		waiting <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, agentstream.ErrUnavailable) {
			t.Fatalf("waiting reader after Close: %v, want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting reader outlived Close")
	}
	if _, err := l.Append(context.Background(), id, delta(2)); !errors.Is(err, agentstream.ErrUnavailable) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := l.Ping(context.Background()); !errors.Is(err, agentstream.ErrUnavailable) {
		t.Fatalf("Ping after Close: %v", err)
	}
}

// TestCloseFlushes: Close sends what is queued.
func TestCloseFlushes(t *testing.T) {
	prefix := testPrefix(t)
	a := openLog(t, "", Options{Prefix: prefix, Coalesce: time.Hour})
	id := runID()
	mustAppend(t, a, id, delta(1))
	for i := 2; i <= 10; i++ {
		mustAppend(t, a, id, delta(i))
	}
	b := openLog(t, "", Options{Prefix: prefix})
	if evs, _, err := b.Read(context.Background(), id, 0, 100); err != nil || len(evs) != 1 {
		t.Fatalf("before Close: %d events, %v; want only the first", len(evs), err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if evs := readTo(t, b, id, 0, 10); len(evs) != 10 {
		t.Fatalf("after Close: %d events", len(evs))
	}
}

// TestAppendElsewhereAfterEnd: once the run has ended, an append from any
// Log fails.
func TestAppendElsewhereAfterEnd(t *testing.T) {
	prefix := testPrefix(t)
	a := openLog(t, "", Options{Prefix: prefix})
	b := openLog(t, "", Options{Prefix: prefix})
	id := runID()
	mustAppend(t, a, id, delta(1), done(id))
	if _, err := b.Append(context.Background(), id, delta(3)); !errors.Is(err, agentstream.ErrConflict) {
		t.Fatalf("append on another Log after the end: %v, want ErrConflict", err)
	}
	if _, err := a.Append(context.Background(), id, done(id)); !errors.Is(err, agentstream.ErrConflict) {
		t.Fatalf("append after the end: %v, want ErrConflict", err)
	}
}

// TestEndedElsewhere: the run is declared dead and interrupted by another
// instance while its owner still streams; the owner's later events are
// refused and its next append says so, and its readers see the log end.
func TestEndedElsewhere(t *testing.T) {
	prefix := testPrefix(t)
	owner := openLog(t, "", Options{Prefix: prefix, PollInterval: 100 * time.Millisecond})
	other := openLog(t, "", Options{Prefix: prefix})
	id := runID()
	mustAppend(t, owner, id, delta(1))
	mustAppend(t, owner, id, delta(2))
	readTo(t, other, id, 0, 2)
	interrupted := agentstream.NewEvent(agentstream.EventRunInterrupted, agentstream.RunEndData{RunID: id, Status: agentstream.RunInterrupted})
	if seq := mustAppend(t, other, id, interrupted); seq != 3 {
		t.Fatalf("interrupted at %d", seq)
	}
	// The owner's reader at 2 learns of the end (by polling Redis: the
	// owner's own books know nothing of it).
	evs := readTo(t, owner, id, 2, 3)
	if len(evs) != 1 || evs[0].Type != agentstream.EventRunInterrupted {
		t.Fatalf("owner's reader: %+v", evs)
	}
	mustAppend(t, owner, id, delta(3)) // queued, refused at its flush
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := owner.Append(context.Background(), id, delta(4))
		if errors.Is(err, agentstream.ErrConflict) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the owner's appends after the end elsewhere: %v, want ErrConflict", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := owner.Append(context.Background(), id, delta(5)); !errors.Is(err, agentstream.ErrConflict) {
		t.Fatalf("the owner's next append: %v, want ErrConflict", err)
	}
	for _, l := range []*Log{owner, other} {
		if evs := readTo(t, l, id, 0, 3); len(evs) != 3 || !evs[2].Type.Terminal() {
			t.Fatalf("the log: %d events", len(evs))
		}
	}
}

// TestTwoWriters: another Log appends to a run its owner streams; the
// owner's colliding events are refused rather than lost silently, and the
// owner stops appending.
func TestTwoWriters(t *testing.T) {
	prefix := testPrefix(t)
	owner := openLog(t, "", Options{Prefix: prefix})
	other := openLog(t, "", Options{Prefix: prefix})
	id := runID()
	mustAppend(t, owner, id, delta(1))
	mustAppend(t, owner, id, delta(2))
	readTo(t, other, id, 0, 2)
	if seq := mustAppend(t, other, id, delta(100)); seq != 3 {
		t.Fatalf("the other writer's event: seq %d", seq)
	}
	mustAppend(t, owner, id, delta(3)) // seq 3 here too: refused at its flush
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := owner.Append(context.Background(), id, delta(4))
		if errors.Is(err, agentstream.ErrConflict) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the owner's appends after the collision: %v, want ErrConflict", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The owner's readers now read the log as Redis has it.
	for _, l := range []*Log{owner, other} {
		evs := readTo(t, l, id, 2, 3)
		if len(evs) != 1 || string(evs[0].Data) != string(delta(100).Data) {
			t.Fatalf("event 3: %+v", evs)
		}
	}
}

// TestDataLoss: Redis loses its data (a restart without persistence);
// readers get ErrNotFound until the owner's next flush recreates the log
// from its next event, and ErrGone for the events lost.
func TestDataLoss(t *testing.T) {
	prefix := testPrefix(t)
	a := openLog(t, "", Options{Prefix: prefix})
	b := openLog(t, "", Options{Prefix: prefix})
	c := rawClient(t)
	ctx := context.Background()
	id := runID()
	for i := 1; i <= 10; i++ {
		mustAppend(t, a, id, delta(i))
	}
	readTo(t, b, id, 0, 10)
	// The owner serves only events it knows flushed: read through it too,
	// so that its books have all ten before they are lost (b can read them
	// from Redis before a has the reply of its flush).
	readTo(t, a, id, 0, 10)
	// What a restart does to this run: its keys and the script cache go.
	if err := c.Del(ctx, prefix+"{"+id+"}:events", prefix+"{"+id+"}:meta").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := readErr(b, id, 0); !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("read of the lost log elsewhere: %v, want ErrNotFound", err)
	}
	if err := readErr(a, id, 0); !errors.Is(err, agentstream.ErrGone) || !errContains(err, "11") {
		t.Fatalf("read of the lost events on the owner: %v, want ErrGone naming 11", err)
	}
	for i := 11; i <= 15; i++ {
		mustAppend(t, a, id, delta(i))
	}
	// Until the owner's flush the log does not exist.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		err := readErr(b, id, 10)
		if err == nil {
			break
		}
		if !errors.Is(err, agentstream.ErrNotFound) || time.Now().After(deadline) {
			t.Fatalf("read after the loss: %v", err)
		}
	}
	evs := readTo(t, b, id, 10, 15)
	if len(evs) != 5 || evs[0].Seq != 11 {
		t.Fatalf("after the loss: %d events from %d", len(evs), evs[0].Seq)
	}
	if err := readErr(b, id, 0); !errors.Is(err, agentstream.ErrGone) || !errContains(err, "before 11") {
		t.Fatalf("read of the lost events: %v, want ErrGone naming 11", err)
	}
	mustAppend(t, a, id, done(id))
	if evs := readTo(t, b, id, 15, 16); len(evs) != 1 || !evs[0].Type.Terminal() {
		t.Fatalf("the end: %+v", evs)
	}
	if m := c.HGetAll(ctx, prefix+"{"+id+"}:meta").Val(); m["first"] != "11" || m["last"] != "16" || m["end"] != "16" {
		t.Fatalf("meta after the loss: %v", m)
	}
}

// TestRedisDown: while Redis cannot be reached the owner keeps its events
// queued (and readable locally), reports the failure on its next append,
// and delivers everything, without a gap, once Redis is back.
func TestRedisDown(t *testing.T) {
	prefix := testPrefix(t)
	p, url := newProxy(t)
	a := openLog(t, url, Options{Prefix: prefix})
	b := openLog(t, "", Options{Prefix: prefix})
	id := runID()
	for i := 1; i <= 5; i++ {
		mustAppend(t, a, id, delta(i))
	}
	readTo(t, b, id, 0, 5)

	p.setDown(true)
	next := 6
	var failure error
	for deadline := time.Now().Add(20 * time.Second); failure == nil; next++ {
		if time.Now().After(deadline) {
			t.Fatal("no append reported the failed flushes")
		}
		seq, err := a.Append(context.Background(), id, delta(next))
		if seq != int64(next) {
			t.Fatalf("append %d while Redis is down: seq %d, %v", next, seq, err)
		}
		failure = err
		time.Sleep(20 * time.Millisecond)
	}
	if !errors.Is(failure, agentstream.ErrUnavailable) {
		t.Fatalf("reported failure: %v, want ErrUnavailable", failure)
	}
	last := int64(next - 1)
	// Readers, the owner's included, get nothing Redis does not hold.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	evs, _, err := a.Read(ctx, id, 5, 100)
	cancel()
	if len(evs) != 0 || err == nil {
		t.Fatalf("owner read while Redis is down: %d events, %v; want none", len(evs), err)
	}
	if err := readErr(a, id, 0); !errors.Is(err, agentstream.ErrUnavailable) {
		t.Fatalf("owner read of flushed events while Redis is down: %v, want ErrUnavailable", err)
	}

	p.setDown(false)
	if evs := readTo(t, b, id, 5, last); len(evs) != int(last-5) {
		t.Fatalf("after Redis came back: %d events, want %d", len(evs), last-5)
	}
	mustAppend(t, a, id, done(id))
	if evs := readTo(t, b, id, 0, last+1); len(evs) != int(last+1) {
		t.Fatalf("the whole run: %d events", len(evs))
	}
}

// TestGiveUp: when Redis stays down past GiveUpAfter the queued events are
// dropped, the next append says they were lost, and the run goes on from
// its next seq: the log has lost those events.
func TestGiveUp(t *testing.T) {
	prefix := testPrefix(t)
	p, url := newProxy(t)
	a := openLog(t, url, Options{Prefix: prefix, GiveUpAfter: 300 * time.Millisecond})
	b := openLog(t, "", Options{Prefix: prefix})
	id := runID()
	for i := 1; i <= 3; i++ {
		mustAppend(t, a, id, delta(i))
	}
	readTo(t, b, id, 0, 3)

	p.setDown(true)
	next := 4
	var lost error
	for deadline := time.Now().Add(30 * time.Second); ; next++ {
		if time.Now().After(deadline) {
			t.Fatal("no append reported lost events")
		}
		_, err := a.Append(context.Background(), id, delta(next))
		if errContains(err, "were lost") {
			lost = err
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !errors.Is(lost, agentstream.ErrUnavailable) {
		t.Fatalf("lost: %v, want ErrUnavailable", lost)
	}
	t.Log(lost)
	p.setDown(false)
	// The end waits for its flush; should a call still fail, the Log
	// retries it.
	end, err := a.Append(context.Background(), id, done(id))
	if end != int64(next+1) {
		t.Fatalf("the end: seq %d, %v", end, err)
	}
	readTo(t, b, id, end-1, end)
	// The events queued when the Log gave up were lost: the log starts
	// after them.
	err = readErr(b, id, 3)
	if !errors.Is(err, agentstream.ErrGone) {
		t.Fatalf("read of the lost events: %v, want ErrGone", err)
	}
	first := goneFirst(t, err)
	if first <= 4 || first > end {
		t.Fatalf("ErrGone %q: first kept %d, want in 5..%d", err, first, end)
	}
	if evs := readTo(t, b, id, first-1, end); int64(len(evs)) != end-first+1 || !evs[len(evs)-1].Type.Terminal() {
		t.Fatalf("read from %d: %d events", first, len(evs))
	}
}

// goneFirst returns the first seq kept that an ErrGone names.
func goneFirst(t testing.TB, err error) int64 {
	t.Helper()
	var first int64
	if _, serr := fmt.Sscanf(err.Error(), "events before %d", &first); serr != nil {
		t.Fatalf("ErrGone %q names no seq", err)
	}
	return first
}

// TestPubSubReconnect: a reader on a Log whose connections are cut gets
// the events appended meanwhile without waiting for its poll.
func TestPubSubReconnect(t *testing.T) {
	prefix := testPrefix(t)
	p, url := newProxy(t)
	a := openLog(t, "", Options{Prefix: prefix})
	b := openLog(t, url, Options{Prefix: prefix, PollInterval: time.Minute})
	id := runID()
	mustAppend(t, a, id, delta(1))
	readTo(t, b, id, 0, 1)
	got := make(chan error, 1)
	go func() {
		_ = readTo(t, b, id, 1, 3)
		got <- nil
	}()
	time.Sleep(100 * time.Millisecond)
	p.cut()
	mustAppend(t, a, id, delta(2))
	time.Sleep(100 * time.Millisecond)
	mustAppend(t, a, id, delta(3))
	select {
	case <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("the reader did not get the events after the reconnect")
	}
}

// TestScript drives the append script directly: idempotent retries, the
// lost head, the end, another writer.
func TestScript(t *testing.T) {
	prefix := testPrefix(t)
	// Room for 10 events of two-digit number.
	a := openLog(t, "", Options{Prefix: prefix, MaxRunBytes: 10 * delta(10).Size()})
	b := openLog(t, "", Options{Prefix: prefix})
	ctx := context.Background()
	id := runID()
	evs := func(from, to int) []agentstream.Event {
		var out []agentstream.Event
		for i := from; i <= to; i++ {
			out = append(out, delta(i))
		}
		return out
	}
	check := func(what string, got int64, err error, want int64) {
		t.Helper()
		if err != nil || got != want {
			t.Fatalf("%s: %d, %v; want %d", what, got, err, want)
		}
	}
	last, err := a.eval(ctx, id, 0, "tok1", evs(1, 3), false, false)
	check("first append", last, err, 3)
	last, err = a.eval(ctx, id, 0, "tok1", evs(1, 3), false, false)
	check("its retry", last, err, 3)
	last, err = a.eval(ctx, id, 4, "", evs(4, 6), false, false)
	check("explicit seqs", last, err, 6)
	last, err = a.eval(ctx, id, 4, "", evs(4, 6), false, false)
	check("their retry", last, err, 6)
	last, err = a.eval(ctx, id, 5, "", evs(5, 8), false, false)
	check("a retry with more", last, err, 8)
	if got := readTo(t, b, id, 0, 8); len(got) != 8 {
		t.Fatalf("read %d events", len(got))
	}
	// Another writer's events at seqs taken: CONFLICT.
	if _, err := b.eval(ctx, id, 8, "", evs(8, 8), false, false); !redis.HasErrorPrefix(err, "CONFLICT") {
		t.Fatalf("another writer at a taken seq: %v", err)
	}
	// Events 9..11 never come: the log loses its head and stays capped.
	last, err = a.eval(ctx, id, 12, "", evs(12, 25), false, false)
	check("after a gap", last, err, 25)
	if err := readErr(b, id, 8); !errors.Is(err, agentstream.ErrGone) || !errContains(err, "before 16") {
		t.Fatalf("read across the gap: %v, want ErrGone naming 16 (cap: 10 events)", err)
	}
	if got := readTo(t, b, id, 15, 25); len(got) != 10 {
		t.Fatalf("read %d events after the gap", len(got))
	}
	last, err = a.eval(ctx, id, 26, "", []agentstream.Event{done(id)}, true, false)
	check("the end", last, err, 26)
	last, err = a.eval(ctx, id, 26, "", []agentstream.Event{done(id)}, true, false)
	check("the end, retried", last, err, 26)
	if _, err := a.eval(ctx, id, 27, "", evs(27, 27), false, false); !redis.HasErrorPrefix(err, "ENDED") {
		t.Fatalf("append after the end: %v", err)
	}
	if _, err := b.eval(ctx, id, 0, "tok2", evs(27, 27), false, false); !redis.HasErrorPrefix(err, "ENDED") {
		t.Fatalf("append after the end, seq 0: %v", err)
	}
}

// TestQueueCapped: while Redis is down the queue holds at most
// MaxRunBytes, newest kept; the dropped events read as gone.
func TestQueueCapped(t *testing.T) {
	prefix := testPrefix(t)
	p, url := newProxy(t)
	capBytes := 20 * delta(100).Size()
	a := openLog(t, url, Options{Prefix: prefix, MaxRunBytes: capBytes})
	b := openLog(t, "", Options{Prefix: prefix})
	id := runID()
	mustAppend(t, a, id, delta(100))
	p.setDown(true)
	for i := 2; i <= 100; i++ {
		_, _ = a.Append(context.Background(), id, delta(100+i))
	}
	rs := a.getRun(id)
	rs.mu.Lock()
	n, size, head := len(rs.pending), rs.pendingBytes, rs.pending[0].Seq
	rs.mu.Unlock()
	if size > capBytes || n < 19 || head != 101-int64(n) {
		t.Fatalf("queue: %d events from %d, %d bytes; cap %d", n, head, size, capBytes)
	}
	p.setDown(false)
	if _, err := a.Append(context.Background(), id, done(id)); err != nil {
		t.Log(err)
	}
	readTo(t, b, id, 100, 101)
	err := readErr(b, id, 0)
	if !errors.Is(err, agentstream.ErrGone) {
		t.Fatalf("read from the start: %v, want ErrGone", err)
	}
	first := goneFirst(t, err)
	if first < head || first > head+2 {
		t.Fatalf("first kept %d, want about %d (the queue's head, then capped)", first, head)
	}
	if evs := readTo(t, b, id, first-1, 101); int64(len(evs)) != 102-first || !evs[len(evs)-1].Type.Terminal() {
		t.Fatalf("read %d events", len(evs))
	}
}

// TestCloseWhileDown: Close gives up on flushing after its bound.
func TestCloseWhileDown(t *testing.T) {
	p, url := newProxy(t)
	a := openLog(t, url, Options{Coalesce: time.Hour})
	id := runID()
	mustAppend(t, a, id, delta(1))
	mustAppend(t, a, id, delta(2))
	p.setDown(true)
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > closeTimeout+2*time.Second {
		t.Fatalf("Close took %v", d)
	}
}

// TestFlushesSharePipeline: flushes of many runs that come while a
// pipeline is out go together in the next one, in one script call, each
// run getting its own outcome (a run ended in Redis meanwhile is refused,
// one whose books are not a hash fails, the others are written), and a
// call that finds Redis without the script runs again with its text.
func TestFlushesSharePipeline(t *testing.T) {
	l := openLog(t, "", Options{Coalesce: -1})
	const runs = 20
	ids := make([]string, runs)
	for i := range ids {
		ids[i] = runID()
		mustAppend(t, l, ids[i], delta(0))
	}
	raw := rawClient(t)
	ctx := context.Background()
	// A pipeline is out: the flushes wait.
	l.pmu.Lock()
	l.psending = true
	l.pmu.Unlock()
	errs := make([]error, runs)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { _, errs[i] = l.Append(ctx, id, delta(1), done(id)) })
	}
	waitFlushes(t, l, runs)
	// Meanwhile run 0's log ended elsewhere, run 1's books became a string
	// (WRONGTYPE), and Redis lost its scripts.
	if err := raw.HSet(ctx, l.keys(ids[0])[1], "end", 1).Err(); err != nil {
		t.Fatal(err)
	}
	if err := raw.Set(ctx, l.keys(ids[1])[1], "x", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := raw.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var calls scriptCalls
	l.client.AddHook(calls.hook())
	l.flushers.Add(1)
	go l.sendPipelines()
	wg.Wait()
	// Run 1's flush, retried, can then go through.
	if err := raw.Del(ctx, l.keys(ids[1])[1]).Err(); err != nil {
		t.Fatal(err)
	}
	// Run 1's flush is retried alone every 20ms while its books are a
	// string: a retry that came before this look (a busy machine pauses
	// the test past 20ms) is one more EVALSHA, of that run only.
	got, per := calls.get(), calls.runsPer()
	retries := 0
	for i := 2; i < len(got) && got[i] == "evalsha" && per[i] == 1; i++ {
		retries++
	}
	if len(got) != 2+retries || !slices.Equal(got[:2], []string{"evalsha", "eval"}) || per[0] != runs || per[1] != runs {
		t.Errorf("script calls for %d runs' flushes: %v, of %v runs; want one EVALSHA, then one EVAL after NOSCRIPT, of all the runs (then retries of run 1)", runs, got, per)
	}
	if !errors.Is(errs[0], agentstream.ErrConflict) {
		t.Errorf("the ended run's append: %v, want a conflict", errs[0])
	}
	if errs[1] == nil || !errContains(errs[1], "WRONGTYPE") {
		t.Errorf("the append of the run whose books are a string: %v, want WRONGTYPE", errs[1])
	}
	for i, id := range ids[2:] {
		if errs[i+2] != nil {
			t.Fatalf("run %d: %v", i+2, errs[i+2])
		}
		evs := readTo(t, l, id, 0, 3)
		if len(evs) != 3 || evs[2].Type != agentstream.EventRunCompleted {
			t.Fatalf("run %d: read %+v", i+2, evs)
		}
	}
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if l.psending || len(l.pcalls) != 0 {
		t.Errorf("after the pipelines: sending %v, %d calls waiting", l.psending, len(l.pcalls))
	}
}

// TestFlushesSplitInCalls: flushes carrying more than maxBatchEvents
// events together go in several script calls of one pipeline, in order.
func TestFlushesSplitInCalls(t *testing.T) {
	l := openLog(t, "", Options{Coalesce: -1})
	const runs = 5
	per := maxBatchEvents/2 + 1 // two runs' flushes overflow a call
	ids := make([]string, runs)
	for i := range ids {
		ids[i] = runID()
		mustAppend(t, l, ids[i], delta(0))
	}
	l.pmu.Lock()
	l.psending = true
	l.pmu.Unlock()
	errs := make([]error, runs)
	var wg sync.WaitGroup
	for i, id := range ids {
		evs := make([]agentstream.Event, 0, per+1)
		for j := range per {
			evs = append(evs, delta(j+1))
		}
		evs = append(evs, done(id))
		wg.Go(func() { _, errs[i] = l.Append(context.Background(), id, evs...) })
	}
	waitFlushes(t, l, runs)
	var calls scriptCalls
	l.client.AddHook(calls.hook())
	l.flushers.Add(1)
	go l.sendPipelines()
	wg.Wait()
	if got := calls.get(); len(got) != runs || calls.pipelines.Load() != 1 {
		t.Errorf("script calls %v in %d pipelines, want %d in one", got, calls.pipelines.Load(), runs)
	}
	for i, id := range ids {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
		if evs := readTo(t, l, id, 0, int64(per+2)); len(evs) != per+2 || !evs[per+1].Type.Terminal() {
			t.Fatalf("run %d: read %d events", i, len(evs))
		}
	}
}

// TestExpirySetSeldom: an open run's appends leave its expiry alone until
// it is IdleExpiry/16 old; then, and at the end, they set it again.
func TestExpirySetSeldom(t *testing.T) {
	prefix := testPrefix(t)
	l := openLog(t, "", Options{Prefix: prefix, Coalesce: -1, IdleExpiry: 16 * time.Hour, Retention: time.Hour})
	raw := rawClient(t)
	ctx := context.Background()
	id := runID()
	events, meta := l.keys(id)[0], l.keys(id)[1]
	ttls := func() (time.Duration, time.Duration) {
		t.Helper()
		return raw.PTTL(ctx, events).Val(), raw.PTTL(ctx, meta).Val()
	}
	mustAppend(t, l, id, delta(1))
	if e, m := ttls(); e <= 16*time.Hour || e > 17*time.Hour || m <= 16*time.Hour || m > 17*time.Hour {
		t.Fatalf("a new log expires in %v, %v; want IdleExpiry and a sixteenth (17h)", e, m)
	}
	for _, k := range []string{events, meta} {
		if err := raw.PExpire(ctx, k, 5*time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend(t, l, id, delta(2))
	if e, m := ttls(); e > 5*time.Hour || m > 5*time.Hour {
		t.Fatalf("an append set the expiry again (%v, %v) though it was set a moment ago", e, m)
	}
	// The expiry was set more than an hour ago (a sixteenth of 16h).
	if err := raw.HSet(ctx, meta, "xp", time.Now().Add(-61*time.Minute).UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, id, delta(3))
	if e, m := ttls(); e <= 16*time.Hour || m <= 16*time.Hour {
		t.Fatalf("after an hour the append left the expiry at %v, %v; want 17h", e, m)
	}
	for _, k := range []string{events, meta} {
		if err := raw.PExpire(ctx, k, 5*time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend(t, l, id, done(id))
	if e, m := ttls(); e <= 59*time.Minute || e > time.Hour || m <= 59*time.Minute || m > time.Hour {
		t.Fatalf("the ended log expires in %v, %v; want the retention (1h)", e, m)
	}
}

// scriptCalls records the append script's calls (EVALSHA, EVAL), alone or
// in pipelines (see hook).
type scriptCalls struct {
	mu        sync.Mutex
	names     []string
	runs      []int64 // of each call: its keys are two per run
	pipelines atomic.Int64
}

func (h *scriptCalls) get() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.names)
}

// runsPer returns the runs each call carried, in the order of get.
func (h *scriptCalls) runsPer() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.runs)
}

func (h *scriptCalls) add(cmds ...redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range cmds {
		if name := c.Name(); name == "evalsha" || name == "eval" {
			h.names = append(h.names, name)
			var keys int64
			if args := c.Args(); len(args) > 2 {
				keys, _ = strconv.ParseInt(fmt.Sprint(args[2]), 10, 64) // a bad count reads as 0 runs, which no check wants
			}
			h.runs = append(h.runs, keys/2)
		}
	}
}

// hook records the calls as a go-redis hook.
func (h *scriptCalls) hook() redis.Hook {
	return cmdHook(func(pipeline bool, cmds ...redis.Cmder) {
		if name := cmds[0].Name(); pipeline && (name == "evalsha" || name == "eval") {
			h.pipelines.Add(1)
		}
		h.add(cmds...)
	})
}

// waitFlushes waits until n flushes wait for the script call under way.
func waitFlushes(t testing.TB, l *Log, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		l.pmu.Lock()
		got := len(l.pcalls)
		l.pmu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d flushes waiting, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
