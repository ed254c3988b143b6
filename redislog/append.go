package redislog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/redis/go-redis/v9"
)

// run is what a Log knows of a run it appends to.
type run struct {
	id string
	// first is held by the first append, which learns the run's next seq
	// from Redis.
	first sync.Mutex

	mu sync.Mutex
	// next is the seq of the next event appended; 0 until the first append
	// returns.
	next int64
	// flushed is the last seq in Redis, as of the last flush.
	flushed int64
	// pending are the events not yet in Redis, seq pending[0].Seq to
	// next-1; those before pending[0] and after flushed were dropped.
	pending      []agentstream.Event
	pendingBytes int64
	// sent are the newest events flushed to Redis (at most keepSent, the
	// last of them seq flushed when not empty), served from memory to
	// this Log's readers. Elements are never modified: readers share the
	// array.
	sent []agentstream.Event
	// unsentSince is when the oldest event not yet sent was appended.
	unsentSince time.Time
	// urgent is the last seq an append waits for: flush it without delay.
	urgent int64
	// closed: the terminal event has been appended, or Redis refused the
	// run's events for good. ended: the terminal event is in Redis.
	closed bool
	ended  bool
	// refused: Redis refused the run's events for good (ENDED, CONFLICT):
	// the log is someone else's, reads go to Redis.
	refused bool
	// removed: the run has left Log.runs; an append gets a fresh state.
	removed bool
	// flushing: a flush loop runs. timer starts one Coalesce after an
	// append, while timerArmed.
	flushing   bool
	timer      *time.Timer
	timerArmed bool
	// attempts counts the flush calls started; failed is the last that
	// failed, with failErr.
	attempts int64
	failed   int64
	failErr  error
	// flushedCh is closed, and replaced, after each flush call and when the
	// flush loop stops.
	flushedCh chan struct{}
	// failingSince is when the flushes started failing; zero while they
	// succeed. dropping: queued events were dropped during this failure.
	failingSince time.Time
	dropping     bool
	// report is the error the next append returns; reportLoss when it
	// tells of events lost (else a flush that later works clears it).
	report     error
	reportLoss bool
	// lastUse is when the run was last appended to.
	lastUse time.Time
}

// signal wakes those waiting for a flush. r.mu is held.
func (r *run) signal() {
	close(r.flushedCh)
	r.flushedCh = make(chan struct{})
}

// waitIdle waits until r has nothing queued and no flush running, or until
// stop fires (then false).
func (r *run) waitIdle(stop <-chan time.Time) bool {
	for {
		r.mu.Lock()
		idle := !r.flushing && len(r.pending) == 0
		ch := r.flushedCh
		r.mu.Unlock()
		if idle {
			return true
		}
		select {
		case <-ch:
		case <-stop:
			return false
		}
	}
}

// runFor returns runID's state, making it if needed.
func (l *Log) runFor(runID string) *run {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	rs := l.runs[runID]
	if rs == nil {
		rs = &run{id: runID, flushedCh: make(chan struct{}), lastUse: time.Now()}
		l.runs[runID] = rs
	}
	return rs
}

// getRun returns runID's state, or nil.
func (l *Log) getRun(runID string) *run {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	return l.runs[runID]
}

// remove drops rs from the Log's runs. rs.mu is held.
func (l *Log) remove(rs *run) {
	if rs.removed {
		return
	}
	rs.removed = true
	if rs.timer != nil {
		rs.timer.Stop()
		rs.timerArmed = false
	}
	l.rmu.Lock()
	if l.runs[rs.id] == rs {
		delete(l.runs, rs.id)
	}
	l.rmu.Unlock()
}

// Append implements agentstream.EventLog. The first append of a run on
// this Log waits for Redis; later ones queue their events for the next
// flush and return at once, unless they hold the terminal event (or
// Coalesce is negative): those wait until their events are in Redis and
// return the flush's error. A failed earlier flush of the run is reported
// by the next Append, whose own events are taken all the same.
func (l *Log) Append(ctx context.Context, runID string, events ...agentstream.Event) (int64, error) {
	if l.closing.Load() {
		return 0, errClosed
	}
	terminal := false
	for _, ev := range events {
		if terminal {
			return 0, agentstream.Errorf(agentstream.CodeConflict, "events after the terminal event of run %s", runID)
		}
		terminal = ev.Type.Terminal()
	}
	if len(events) == 0 {
		return l.lastSeq(ctx, runID)
	}
	expected := events[0].Seq
	for {
		rs := l.runFor(runID)
		rs.mu.Lock()
		switch {
		case rs.removed:
			rs.mu.Unlock()
			continue
		case rs.closed:
			defer rs.mu.Unlock()
			if err := rs.takeReport(); err != nil {
				return 0, err
			}
			return 0, agentstream.Errorf(agentstream.CodeConflict, "run %s has ended: its event log is closed", runID)
		case rs.next > 0:
			return l.queue(ctx, rs, events, terminal)
		}
		rs.mu.Unlock()

		// The run's first append on this Log: Redis assigns the seqs.
		rs.first.Lock()
		rs.mu.Lock()
		again := rs.removed || rs.closed || rs.next > 0
		rs.mu.Unlock()
		if again {
			rs.first.Unlock()
			continue
		}
		token := l.writer + ":" + strconv.FormatInt(l.tokens.Add(1), 10)
		last, err := l.eval(ctx, runID, expected, token, events, terminal, expected != 0)
		rs.mu.Lock()
		rs.lastUse = time.Now()
		switch {
		case err == nil && !terminal:
			rs.next, rs.flushed = last+1, last
		default:
			// Ended, or failed: the next append starts afresh.
			l.remove(rs)
		}
		rs.mu.Unlock()
		rs.first.Unlock()
		if err != nil {
			return 0, l.mapErr(ctx, err, "append")
		}
		l.wake(runID)
		return last, nil
	}
}

// queue assigns seqs to events, queues them and, when they must be sent at
// once, waits for the flush. rs.mu is held; queue unlocks it.
func (l *Log) queue(ctx context.Context, rs *run, events []agentstream.Event, terminal bool) (int64, error) {
	if want := events[0].Seq; want != 0 && want != rs.next {
		rs.mu.Unlock()
		return 0, agentstream.Errorf(agentstream.CodeConflict, "run %s: the next event is %d, not %d", rs.id, rs.next, want)
	}
	now := time.Now()
	rs.lastUse = now
	if len(rs.pending) == 0 || rs.unsentSince.IsZero() {
		rs.unsentSince = now
	}
	for _, ev := range events {
		ev.Seq = rs.next
		rs.next++
		rs.pending = append(rs.pending, ev)
		rs.pendingBytes += ev.Size()
	}
	last := rs.next - 1
	rs.closed = terminal
	l.capPending(rs)
	if !terminal && l.opts.Coalesce > 0 {
		if !rs.flushing && !rs.timerArmed {
			l.arm(rs, l.opts.Coalesce)
		}
		report := rs.takeReport()
		rs.mu.Unlock()
		return last, report
	}
	rs.urgent = last
	if rs.timerArmed {
		rs.timer.Stop()
		rs.timerArmed = false
	}
	l.kick(rs)
	attempt := rs.attempts
	rs.mu.Unlock()
	err := l.waitFlushed(ctx, rs, last, attempt)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if err != nil {
		// The caller learns of the failure now; a loss is still reported.
		if !rs.reportLoss {
			rs.report = nil
		}
		return last, err
	}
	return last, rs.takeReport()
}

// takeReport returns the error the next append reports, and forgets it.
// r.mu is held.
func (r *run) takeReport() error {
	err := r.report
	r.report, r.reportLoss = nil, false
	return err
}

// waitFlushed waits until Redis holds seq, or a flush call started after
// attempt fails.
func (l *Log) waitFlushed(ctx context.Context, rs *run, seq, attempt int64) error {
	for {
		rs.mu.Lock()
		flushed, failed, err, ch := rs.flushed, rs.failed, rs.failErr, rs.flushedCh
		rs.mu.Unlock()
		switch {
		case flushed >= seq:
			return nil
		case failed > attempt:
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-l.done:
			return errClosed
		}
	}
}

// keepSent is how many of a run's newest flushed events a Log keeps to
// serve its readers from memory. A reader that follows the run is at most
// a flush or two behind; one further back reads Redis.
const keepSent = 64

// keep adds flushed events, the next after sent, to sent, keeping the
// newest keepSent. The array moves when the dropped ones would outnumber
// the kept, so that it lets them go. r.mu is held.
func (r *run) keep(evs []agentstream.Event) {
	if len(evs) == 0 {
		return
	}
	if len(r.sent) > 0 && r.sent[len(r.sent)-1].Seq+1 != evs[0].Seq {
		r.sent = nil // a hole (dropped events): only what follows is kept
	}
	if len(evs) >= keepSent {
		r.sent = append([]agentstream.Event(nil), evs[len(evs)-keepSent:]...)
		return
	}
	if len(r.sent)+len(evs) > cap(r.sent) {
		keep := r.sent[max(0, len(r.sent)+len(evs)-keepSent):]
		moved := make([]agentstream.Event, len(keep), 2*keepSent)
		copy(moved, keep)
		r.sent = moved
	}
	r.sent = append(r.sent, evs...)
	if len(r.sent) > keepSent {
		r.sent = r.sent[len(r.sent)-keepSent:]
	}
}

// capPending drops the oldest queued events past MaxRunBytes, keeping the
// newest. rs.mu is held.
func (l *Log) capPending(rs *run) {
	k := 0
	for rs.pendingBytes > l.opts.MaxRunBytes && k < len(rs.pending)-1 {
		rs.pendingBytes -= rs.pending[k].Size()
		k++
	}
	if k == 0 {
		return
	}
	if !rs.dropping {
		rs.dropping = true
		l.opts.Logger.Warn("redislog: the run's queued events exceed max_run_bytes, dropping the oldest",
			"run_id", rs.id, "from_seq", rs.pending[0].Seq)
	}
	rs.pending = rs.pending[k:]
}

// arm starts rs's flush timer. rs.mu is held.
func (l *Log) arm(rs *run, d time.Duration) {
	rs.timerArmed = true
	if rs.timer == nil {
		rs.timer = time.AfterFunc(d, func() { l.timerFired(rs) })
		return
	}
	rs.timer.Reset(d)
}

func (l *Log) timerFired(rs *run) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if !rs.timerArmed {
		return
	}
	rs.timerArmed = false
	l.kick(rs)
}

// kick starts rs's flush loop unless it runs or nothing is queued. rs.mu is
// held.
func (l *Log) kick(rs *run) {
	if rs.flushing || len(rs.pending) == 0 {
		return
	}
	l.fmu.Lock()
	defer l.fmu.Unlock()
	if l.stopped {
		return
	}
	rs.flushing = true
	l.flushers.Add(1)
	go l.flushLoop(rs)
}

// flushLoop sends rs's queued events to Redis, one call at a time, until
// none is left that must go now; then it arms the timer for the rest. A
// failed call is retried with backoff until GiveUpAfter.
func (l *Log) flushLoop(rs *run) {
	defer l.flushers.Done()
	backoff := 20 * time.Millisecond
	rs.mu.Lock()
	defer rs.mu.Unlock()
	defer func() {
		rs.flushing = false
		if rs.ended {
			// Nothing more can come.
			l.remove(rs)
		}
		rs.signal()
	}()
	for len(rs.pending) > 0 {
		if l.ctx.Err() != nil {
			l.drop(rs, errClosed)
			return
		}
		n, b := 0, int64(0)
		for n < len(rs.pending) && n < maxBatchEvents && (n == 0 || b+rs.pending[n].Size() <= maxBatchBytes) {
			b += rs.pending[n].Size()
			n++
		}
		batch := rs.pending[:n:n]
		terminal := rs.closed && n == len(rs.pending)
		if n == len(rs.pending) {
			rs.unsentSince = time.Time{}
		}
		rs.attempts++
		attempt := rs.attempts
		rs.mu.Unlock()
		ctx, cancel := context.WithTimeout(l.ctx, attemptTimeout)
		last, err := l.evalShared(ctx, rs.id, batch[0].Seq, batch, terminal)
		cancel()
		rs.mu.Lock()

		batchLast := batch[n-1].Seq
		if err == nil && last < batchLast {
			err = fmt.Errorf("redislog: the append script returned %d for events up to %d", last, batchLast)
		}
		if err == nil {
			rs.flushed = max(rs.flushed, last)
			rs.ended = rs.ended || terminal
			k := 0
			for k < len(rs.pending) && rs.pending[k].Seq <= last {
				rs.pendingBytes -= rs.pending[k].Size()
				k++
			}
			rs.keep(rs.pending[:k])
			rs.pending = rs.pending[k:]
			if len(rs.pending) == 0 {
				rs.pending, rs.pendingBytes = nil, 0
			}
			if !rs.failingSince.IsZero() {
				l.opts.Logger.Info("redislog: flushing works again", "run_id", rs.id)
			}
			rs.failingSince, rs.dropping = time.Time{}, false
			if !rs.reportLoss {
				rs.report = nil
			}
			backoff = 20 * time.Millisecond
			rs.signal()
			// This Log's readers can have them now.
			l.wake(rs.id)
			if len(rs.pending) > 0 && rs.urgent < rs.pending[0].Seq && !l.closing.Load() && l.opts.Coalesce > 0 {
				if wait := l.opts.Coalesce - time.Since(rs.unsentSince); wait > 0 {
					l.arm(rs, wait)
					return
				}
			}
			continue
		}

		rs.failed = attempt
		if permanent(err) {
			rs.failErr = agentstream.Wrap(agentstream.CodeConflict, err,
				fmt.Sprintf("run %s: its event log has ended, or another instance appends to it; %d events dropped", rs.id, len(rs.pending)))
			l.opts.Logger.Warn("redislog: dropping a run's queued events", "run_id", rs.id, "err", err)
			rs.closed, rs.refused = true, true
			l.drop(rs, rs.failErr)
			return
		}
		rs.failErr = l.mapErr(context.Background(), err, "append")
		now := time.Now()
		if rs.failingSince.IsZero() {
			rs.failingSince = now
			if rs.report == nil {
				rs.report = rs.failErr
			}
			l.opts.Logger.Warn("redislog: flushing a run's events failed; retrying", "run_id", rs.id, "err", err)
		}
		if now.Sub(rs.failingSince) >= l.opts.GiveUpAfter {
			lost := agentstream.Wrap(agentstream.CodeUnavailable, err, fmt.Sprintf(
				"redislog: events %d to %d of run %s were lost, Redis at %s failing for %v",
				rs.pending[0].Seq, rs.next-1, rs.id, l.addr, l.opts.GiveUpAfter))
			l.opts.Logger.Error("redislog: giving up on a run's queued events", "run_id", rs.id, "err", lost)
			l.drop(rs, lost)
			return
		}
		rs.signal()
		rs.mu.Unlock()
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-l.ctx.Done():
			t.Stop()
		}
		backoff = min(2*backoff, 2*time.Second)
		rs.mu.Lock()
	}
}

// drop lets rs's queued events go, for err; the next append reports it.
// A closed run's state stays, so that appends keep failing, until the
// sweep. rs.mu is held.
func (l *Log) drop(rs *run, err error) {
	if len(rs.pending) > 0 && errors.Is(err, errClosed) {
		l.opts.Logger.Error("redislog: closed with events not flushed",
			"run_id", rs.id, "from_seq", rs.pending[0].Seq, "to_seq", rs.next-1)
	}
	rs.pending, rs.pendingBytes = nil, 0
	rs.report, rs.reportLoss = err, true
	// A failed attempt of its own, so that appends waiting for the
	// dropped events return err.
	rs.attempts++
	rs.failed, rs.failErr = rs.attempts, err
	rs.failingSince = time.Time{}
}

// eval runs the append script for events, the first of which has seq
// first (0: after the log's last); strict: first must be the log's next.
func (l *Log) eval(ctx context.Context, runID string, first int64, token string, events []agentstream.Event, terminal, strict bool) (int64, error) {
	c := l.newCall(runID, first, token, events, terminal, strict)
	keys, args := l.scriptArgs([]*appendCall{c})
	res, err := appendScript.Run(ctx, l.client, keys, args...).Result()
	if err != nil {
		return 0, err
	}
	l.settle([]*appendCall{c}, res)
	return c.last, c.err
}

// appendCall is one run's part of an append script call: a flush's, which
// waits to go with other runs' flushes, or a run's first append.
type appendCall struct {
	keys     []string
	first    int64
	token    string
	events   []agentstream.Event
	terminal bool
	strict   bool
	bytes    int64
	last     int64
	err      error
	done     chan struct{} // closed once last and err are set
}

func (l *Log) newCall(runID string, first int64, token string, events []agentstream.Event, terminal, strict bool) *appendCall {
	c := &appendCall{keys: l.keys(runID), first: first, token: token, events: events,
		terminal: terminal, strict: strict, done: make(chan struct{})}
	for _, ev := range events {
		c.bytes += ev.Size()
	}
	return c
}

// scriptArgs are the append script's KEYS and ARGV for calls (see
// appendScript).
func (l *Log) scriptArgs(calls []*appendCall) ([]string, []any) {
	keys := make([]string, 0, 2*len(calls))
	n := 9
	for _, c := range calls {
		keys = append(keys, c.keys...)
		n += 5 + 2*len(c.events)
	}
	args := make([]any, 0, n)
	args = append(args, l.opts.MaxRunBytes, ms(l.opts.IdleExpiry), ms(l.opts.Retention), l.notifyPrefix(),
		len(l.opts.Prefix), l.writer, l.overhead, time.Now().UnixMilli(), ms(l.refresh))
	for _, c := range calls {
		args = append(args, c.first, c.token, flag(c.terminal), flag(c.strict), len(c.events))
		for _, ev := range c.events {
			args = append(args, string(ev.Type), []byte(ev.Data))
		}
	}
	return keys, args
}

// settle gives each call its outcome from the script's reply res, one
// element per call.
func (l *Log) settle(calls []*appendCall, res any) {
	arr, ok := res.([]any)
	for i, c := range calls {
		switch {
		case !ok || len(arr) != len(calls):
			c.err = fmt.Errorf("redislog: the append script replied %T for %d runs", res, len(calls))
		default:
			switch v := arr[i].(type) {
			case int64:
				c.last = v
			case error: // an error reply of that run's (a redis.Error)
				c.err = v
			default:
				c.err = fmt.Errorf("redislog: the append script replied %T for a run", v)
			}
		}
	}
}

// maxPipeline bounds the flushes one pipeline carries.
const maxPipeline = 256

// evalShared is eval for a flush (seq first given, not strict, no token),
// sent with the other runs' flushes: while a pipeline is out, the flushes
// that come wait and go together in the next, in one script call (or a
// few, each of at most maxBatchEvents events and maxBatchBytes, in one
// pipeline), so that many runs cost one round trip and one call instead of
// one each, with no delay added when nothing is out. A run has one flush
// at a time, and the script calls and the pipelines go one after the
// other in the order of their flushes, so a run's events reach Redis in
// order. A caller whose ctx ends stops waiting, but its call may still
// run: the retry of the same events is then skipped by the script (its
// seqs are in the log, from this writer).
func (l *Log) evalShared(ctx context.Context, runID string, first int64, events []agentstream.Event, terminal bool) (int64, error) {
	c := l.newCall(runID, first, "", events, terminal, false)
	l.pmu.Lock()
	l.pcalls = append(l.pcalls, c)
	start := !l.psending
	l.psending = true
	l.pmu.Unlock()
	if start {
		// The caller's flush loop is counted: Close's Wait cannot have
		// seen zero.
		l.flushers.Add(1)
		go l.sendPipelines()
	}
	select {
	case <-c.done:
		return c.last, c.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// sendPipelines sends the waiting calls, maxPipeline at a time, until
// none is left.
func (l *Log) sendPipelines() {
	defer l.flushers.Done()
	for {
		l.pmu.Lock()
		n := min(len(l.pcalls), maxPipeline)
		if n == 0 {
			l.pcalls, l.psending = nil, false
			l.pmu.Unlock()
			return
		}
		calls := l.pcalls[:n:n]
		l.pcalls = l.pcalls[n:]
		l.pmu.Unlock()
		ctx, cancel := context.WithTimeout(l.ctx, attemptTimeout)
		l.sendPipeline(ctx, calls)
		cancel()
		for _, c := range calls {
			close(c.done)
		}
	}
}

// groups splits calls, in order, into script calls of at most
// maxBatchEvents events and maxBatchBytes (each at least one call), so
// that one script never holds Redis for long.
func groups(calls []*appendCall) [][]*appendCall {
	var out [][]*appendCall
	start, events, bytes := 0, 0, int64(0)
	for i, c := range calls {
		if i > start && (events+len(c.events) > maxBatchEvents || bytes+c.bytes > maxBatchBytes) {
			out = append(out, calls[start:i:i])
			start, events, bytes = i, 0, 0
		}
		events += len(c.events)
		bytes += c.bytes
	}
	return append(out, calls[start:])
}

// sendPipeline runs calls, in order, in one round trip (two when Redis
// had to be sent the script), and gives each its own outcome.
func (l *Log) sendPipeline(ctx context.Context, calls []*appendCall) {
	gs := groups(calls)
	if len(gs) == 1 {
		keys, args := l.scriptArgs(calls)
		res, err := appendScript.Run(ctx, l.client, keys, args...).Result()
		if err != nil {
			for _, c := range calls {
				c.err = err
			}
			return
		}
		l.settle(calls, res)
		return
	}
	type group struct {
		keys []string
		args []any
	}
	parts := make([]group, len(gs))
	cmds := make([]*redis.Cmd, len(gs))
	pipe := l.client.Pipeline()
	for i, g := range gs {
		parts[i].keys, parts[i].args = l.scriptArgs(g)
		cmds[i] = appendScript.EvalSha(ctx, pipe, parts[i].keys, parts[i].args...)
	}
	_, _ = pipe.Exec(ctx) // each command holds its own outcome
	// NOSCRIPT: that call did not run (Redis lost its scripts); as
	// Script.Run does, it runs again with the script's text, in order.
	var again []int
	for i, cmd := range cmds {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		pipe := l.client.Pipeline()
		for _, i := range again {
			cmds[i] = appendScript.Eval(ctx, pipe, parts[i].keys, parts[i].args...)
		}
		_, _ = pipe.Exec(ctx)
	}
	for i, g := range gs {
		res, err := cmds[i].Result()
		if err != nil {
			for _, c := range g {
				c.err = err
			}
			continue
		}
		l.settle(g, res)
	}
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func ms(d time.Duration) int64 { return max(1, d.Milliseconds()) }

// lastSeq returns the run's last seq: an Append of no events.
func (l *Log) lastSeq(ctx context.Context, runID string) (int64, error) {
	if rs := l.getRun(runID); rs != nil {
		rs.mu.Lock()
		next := rs.next
		rs.mu.Unlock()
		if next > 0 {
			return next - 1, nil
		}
	}
	last, err := l.client.HGet(ctx, l.keys(runID)[1], "last").Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, l.mapErr(ctx, err, "HGET")
	}
	return last, nil
}
