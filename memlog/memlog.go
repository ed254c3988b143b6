// Package memlog is the in-process EventLog: each run's events live in
// segments of 32 that readers index with their own cursor, so a slow
// reader holds nothing and never blocks the runner or other readers. An
// append wakes each waiting reader by a send on that reader's channel,
// which costs nothing when nobody waits; the channels are reused, so that
// a wait per token (a reader caught up with a streaming model) allocates
// nothing.
//
// The log is bounded. An event counts agentstream.Event.Size bytes:
// len(Data) + len(Type) + 48, what it takes as appended (a compact delta,
// below, takes less but counts the same, as in every EventLog); Stats
// reports the total.
//
//   - Per run: when an append takes a run's log over Options.MaxRunBytes,
//     its oldest events are dropped until it fits again, always keeping the
//     newest event (so one run holds at most MaxRunBytes plus one event,
//     and the terminal event, always the newest of a finished run, is never
//     dropped). Sequence numbers never change. A Read asking for a dropped
//     event (after < first kept seq - 1) fails with agentstream.ErrGone,
//     whose message names the first seq still kept; a reader at or past
//     that point is unaffected.
//   - In total: when the logs together exceed Options.MaxTotalBytes, whole
//     logs of finished runs (terminal event appended) are evicted, the
//     earliest finished first; if that is not enough, the oldest events of
//     the largest unfinished logs are dropped as above, again keeping each
//     log's newest event (so the total may exceed MaxTotalBytes by at most
//     one event per unfinished run). Reads of an evicted log get
//     ErrNotFound, as after its retention; the HTTP layer then answers
//     from the store.
//   - Finished runs: when the logs of finished runs together exceed
//     Options.MaxFinishedBytes, the earliest finished are evicted until
//     they fit. A finished run's events are a cache: the HTTP layer
//     answers a reader of an evicted run from the store, so this bound,
//     smaller than MaxTotalBytes, keeps a server that serves many short
//     runs from holding MaxTotalBytes of them for Retention.
//   - In time: a finished run's log is evicted Options.Retention after its
//     terminal event.
//
// Most of a run's events are message.delta, a token each, whose data
// repeat the message's id: a delta whose data is
// {"message_id":"<id>","delta":"<text>"} (as agentstream.NewDeltaEvent
// writes it) is kept compact: its escaped text, in its segment's text,
// and a 12-byte entry; the prefix up to the text is kept once per message
// (segments refer to it). About 22 bytes for a token of 5 characters,
// where the event as appended takes 48 and its data 64 or 80. Every other
// event (another type, or data of another shape) is kept as appended, its
// data shared with the caller. The split needs no parsing of the text, so
// any data is rebuilt exactly.
//
// Segments, rather than one array that doubles, keep what a run holds
// beyond its events to one part-filled segment (a log's first segment
// starts at 4 events and doubles up to 32), and appends copy no events
// once it is full: an open stream's log has room for at most 31 more events,
// where a doubled array has room for as many again as it holds. A
// finished log's last segment is trimmed to its events (it takes no
// more). Dropped events release their memory: a segment goes once all
// its events are dropped, and the dropped events at the start of the
// first one are let go (the segment copied without them) as soon as they
// outweigh the retained ones, or when the run finishes. So the memory in
// use stays within a small multiple of what Stats counts.
//
// A Read builds the data of the compact deltas it returns, in one buffer,
// and returns new events: two allocations. A reader following the run
// live shares them with the next reader that asks for the same newest
// events (the run's other live readers), and events kept as appended,
// read within a segment, are shared with the log. A reader catching up
// (a batch short of the newest event) builds its events without holding
// the log, from copies of the segments' headers, so that appends do not
// wait for it. A slice returned by
// Read stays valid (what it holds is never modified), holding its own
// events until its reader lets go of it. A run's own client (agent.Inline)
// gets its events from the run, not from the log.
package memlog

import (
	"bytes"
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentstream/agentstream"
)

var _ agentstream.ReadableOnAppend = (*Log)(nil)

// ReadableOnAppend implements agentstream.ReadableOnAppend: an appended
// event is in the log, for every reader, when Append returns.
func (l *Log) ReadableOnAppend() {}

// Options configures a Log.
type Options struct {
	// Retention is how long a run's events stay readable after its terminal
	// event. Default 10 minutes. Later reads get ErrNotFound and are
	// answered from the store.
	Retention time.Duration
	// MaxRunBytes bounds one run's log: past it the oldest events are
	// dropped (the newest is always kept) and reads of them get ErrGone.
	// Default 4 MiB.
	MaxRunBytes int64
	// MaxTotalBytes bounds all logs together: past it finished runs' logs
	// are evicted, earliest finished first, then the largest unfinished
	// logs lose their oldest events. Default 256 MiB.
	MaxTotalBytes int64
	// MaxFinishedBytes bounds the logs of finished runs together: past
	// it, the earliest finished are evicted (their readers are answered
	// from the store). Default 32 MiB.
	MaxFinishedBytes int64
}

// Defaults of Options.
const (
	DefaultRetention     = 10 * time.Minute
	DefaultMaxRunBytes   = 4 << 20
	DefaultMaxTotalBytes = 256 << 20
	// DefaultMaxFinishedBytes holds about ten thousand finished 20-token
	// runs (some 3 KB each), or three hundred of 1,000 tokens: enough for
	// the clients that reconnect within seconds of a run's end, which is
	// when a finished log serves. Later readers get the run from the
	// store; so does everyone after a restart.
	DefaultMaxFinishedBytes = 32 << 20
)

// WithDefaults fills in unset fields.
func (o Options) WithDefaults() Options {
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.MaxRunBytes <= 0 {
		o.MaxRunBytes = DefaultMaxRunBytes
	}
	if o.MaxTotalBytes <= 0 {
		o.MaxTotalBytes = DefaultMaxTotalBytes
	}
	if o.MaxFinishedBytes <= 0 {
		o.MaxFinishedBytes = DefaultMaxFinishedBytes
	}
	return o
}

// Log is an in-process EventLog.
type Log struct {
	opts Options

	// total is the bytes of all retained events, of logs in runs.
	total atomic.Int64

	// mu guards runs, the finished list and armed. Lock order: mu, then a
	// runLog's mu.
	mu   sync.RWMutex
	runs map[string]*runLog
	// oldest and newest end the list of finished runs' logs still held, in
	// the order they finished (linked by prev and next).
	oldest, newest *runLog
	// finishedBytes is the bytes of the logs in the finished list.
	finishedBytes int64
	// timer evicts the oldest finished logs when their retention ends; it
	// is armed while the finished list is not empty.
	timer *time.Timer
	armed bool
}

// segEvents is the number of events of a full segment; firstSegEvents
// the room of a log's first segment, doubled as it fills up to
// segEvents, so that a short run takes little.
const (
	segEvents      = 32
	firstSegEvents = 4
)

// segment holds up to segEvents consecutive events of a run: each is an
// entry, either a compact message.delta or an event kept as appended.
// What a segment's arrays hold below their length is never modified: an
// append writes past it, a trim or a growth copies the segment. So a Read
// can hand out full (capped) without copying it.
type segment struct {
	ents []entry
	// text holds the escaped delta texts of the compact entries, in
	// order.
	text []byte
	// full holds the events kept as they were appended (Seq set).
	full []agentstream.Event
	// pres are the prefixes of the compact entries' data,
	// {"message_id":"<id>","delta":" (a message's one array, shared by
	// the segments its deltas are in).
	pres [][]byte
}

// entry is an event of a segment. A compact message.delta (pre >= 0) has
// the data pres[pre] + text[start:end] + `"}`; another event (pre < 0) is
// full[start].
type entry struct {
	start, end uint32
	pre        int32
}

// A message.delta's data as agentstream.NewDeltaEvent writes it:
// deltaHead, the message id's JSON string, deltaMid, the escaped delta,
// deltaEnd.
const (
	deltaHead = `{"message_id":"`
	deltaMid  = `","delta":"`
	deltaEnd  = `"}`
)

// deltaSize is the Size of a message.delta without its data.
var deltaSize = agentstream.Event{Type: agentstream.EventMessageDelta}.Size()

// size is the Size of the event of e.
func (s *segment) size(e entry) int64 {
	if e.pre < 0 {
		return s.full[e.start].Size()
	}
	return deltaSize + int64(len(s.pres[e.pre])+int(e.end-e.start)+len(deltaEnd))
}

// compact returns the entry of a message.delta with data d, its escaped
// text appended to s.text, when d is pre + text + deltaEnd for a prefix
// pre of s or of a message.delta's shape; ok is false otherwise: the
// event is to be kept as it is. Only the split of d is looked for, so d
// is rebuilt exactly whatever it holds. r.mu is held.
func (r *runLog) compact(s *segment, d []byte) (e entry, ok bool) {
	pre := -1
	for i := len(s.pres) - 1; i >= 0; i-- {
		if framed(d, s.pres[i]) {
			pre = i
			break
		}
	}
	if pre < 0 {
		p := deltaPrefix(d)
		if p == nil {
			return entry{}, false
		}
		if !bytes.Equal(p, r.pre) {
			// A new message (or one interleaved with another): its
			// prefix, kept once for all its deltas.
			r.pre = bytes.Clone(p)
		}
		s.pres = append(s.pres, r.pre)
		pre = len(s.pres) - 1
	}
	text := d[len(s.pres[pre]) : len(d)-len(deltaEnd)]
	if uint64(len(s.text))+uint64(len(text)) > math.MaxUint32 {
		return entry{}, false
	}
	e = entry{start: uint32(len(s.text)), pre: int32(pre)}
	s.text = append(s.text, text...)
	e.end = uint32(len(s.text))
	return e, true
}

// framed reports whether d is pre + text + deltaEnd.
func framed(d, pre []byte) bool {
	return len(d) >= len(pre)+len(deltaEnd) && bytes.HasPrefix(d, pre) && bytes.HasSuffix(d, []byte(deltaEnd))
}

// deltaPrefix returns the start of d up to the delta's text when d is a
// message.delta's data (deltaHead, a string, deltaMid, text, deltaEnd),
// else nil.
func deltaPrefix(d []byte) []byte {
	if !bytes.HasPrefix(d, []byte(deltaHead)) {
		return nil
	}
	i := len(deltaHead)
	for i < len(d) && d[i] != '"' {
		if d[i] == '\\' {
			i++ // the escaped byte
		}
		i++
	}
	if i >= len(d) || !bytes.HasPrefix(d[i:], []byte(deltaMid)) {
		return nil
	}
	p := d[:i+len(deltaMid)]
	if !framed(d, p) {
		return nil
	}
	return p
}

type runLog struct {
	id string

	mu sync.Mutex
	// segs hold the events: the one at position j, counted from
	// segs[0].ents[0], is segs[j/segEvents].ents[j%segEvents]. Every
	// segment but the last is full; the first grows while it is the only
	// one. The first off positions of segs[0] are dropped events, the
	// first letGo of them let go of (their text and full events no longer
	// held); the n retained ones follow.
	segs  []segment
	off   int
	letGo int
	n     int
	// pre is the prefix of the last compact delta, shared by the segments
	// its message's deltas go on in.
	pre []byte
	// recent are the events of the last read that built deltas' data
	// and reached the newest event (at most segEvents), shared with the
	// readers that ask for them next: those following the run live ask
	// for the same ones. Let go once any event is dropped, or the run
	// ends.
	recent []agentstream.Event
	// first is the Seq of the first retained event, or the next Seq when
	// there is none.
	first int64
	// bytes is the size of the retained events.
	bytes  int64
	closed bool
	// waiting are the readers waiting for the next append, which wakes
	// each and empties the list. A reader that stops waiting (its context
	// ended) takes itself off.
	waiting []*waiter

	// Guarded by Log.mu: the finished list, and the bytes the log counts
	// in Log.finishedBytes (its bytes when it finished: a finished log
	// takes no appends and is never trimmed).
	listed      bool
	listedBytes int64
	finishedAt  time.Time
	prev, next  *runLog
}

// New returns an empty Log.
func New(opts Options) *Log {
	return &Log{opts: opts.WithDefaults(), runs: make(map[string]*runLog)}
}

func (l *Log) get(runID string) *runLog {
	l.mu.RLock()
	r := l.runs[runID]
	l.mu.RUnlock()
	return r
}

// Append implements agentstream.EventLog. It drops the run's oldest events
// past MaxRunBytes and enforces MaxTotalBytes before returning. The
// events passed in are left as they are: a compact delta's text is
// copied.
func (l *Log) Append(_ context.Context, runID string, events ...agentstream.Event) (int64, error) {
	r := l.get(runID)
	if len(events) == 0 {
		if r == nil {
			return 0, nil
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.first + int64(r.n) - 1, nil
	}
	if r == nil {
		l.mu.Lock()
		if r = l.runs[runID]; r == nil {
			r = &runLog{id: runID, first: 1}
			l.runs[runID] = r
		}
		l.mu.Unlock()
	}

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, agentstream.Errorf(agentstream.CodeConflict, "run %s has ended: its event log is closed", runID)
	}
	terminal := false
	for _, ev := range events {
		if terminal {
			r.mu.Unlock()
			return 0, agentstream.Errorf(agentstream.CodeConflict, "events after the terminal event of run %s", runID)
		}
		terminal = ev.Type.Terminal()
	}
	seq := r.first + int64(r.n)
	if want := events[0].Seq; want != 0 && want != seq {
		r.mu.Unlock()
		return 0, agentstream.Errorf(agentstream.CodeConflict, "run %s: the next event is %d, not %d", runID, seq, want)
	}
	var added int64
	for _, ev := range events {
		ev.Seq = seq
		seq++
		r.push(ev)
		added += ev.Size()
	}
	last := seq - 1
	r.bytes += added
	dropped := r.trim(l.opts.MaxRunBytes)
	if terminal {
		// No more appends: the room left in the last segment, and the
		// dropped events of the first, would be held for Retention for
		// nothing.
		last := len(r.segs) - 1
		if s := &r.segs[last]; cap(s.ents) > len(s.ents) || cap(s.text) > len(s.text) || cap(s.full) > len(s.full) {
			r.segs[last] = r.segCopy(last, len(s.ents))
		}
		if r.letGo < r.off {
			r.segs[0] = r.segCopy(0, cap(r.segs[0].ents))
		}
		r.closed = true
		r.recent = nil
	}
	for i, w := range r.waiting {
		w.c <- struct{}{} // never blocks: see waiter
		r.waiting[i] = nil
	}
	r.waiting = r.waiting[:0]
	if terminal {
		r.waiting = nil // no reader waits on a closed log
	}
	r.mu.Unlock()

	if total := l.total.Add(added - dropped); terminal || total > l.opts.MaxTotalBytes {
		l.mu.Lock()
		if terminal && l.runs[runID] == r {
			l.finished(r)
		}
		l.enforce()
		l.mu.Unlock()
	}
	return last, nil
}

// entry returns the segment and entry at position j. r.mu is held.
func (r *runLog) entry(j int) (*segment, entry) {
	s := &r.segs[j/segEvents]
	return s, s.ents[j%segEvents]
}

// push appends ev, whose Seq is set. r.mu is held.
func (r *runLog) push(ev agentstream.Event) {
	j := r.off + r.n
	k := j / segEvents
	switch {
	case k == len(r.segs):
		c, text := segEvents, firstSegEvents*8
		if k == 0 {
			c = firstSegEvents
		} else {
			// Room for as much text as the segment before took, up to
			// 32 bytes a delta: a long one does not make room for more.
			text = min(len(r.segs[k-1].text), segEvents*32)
		}
		r.segs = append(r.segs, segment{ents: make([]entry, 0, c), text: make([]byte, 0, text)})
	case len(r.segs[k].ents) == cap(r.segs[k].ents):
		// The first segment, growing.
		r.segs[k] = r.segCopy(k, min(2*cap(r.segs[k].ents), segEvents))
	}
	s := &r.segs[k]
	e, ok := entry{}, false
	if ev.Type == agentstream.EventMessageDelta {
		e, ok = r.compact(s, ev.Data)
	}
	if !ok {
		e = entry{start: uint32(len(s.full)), pre: -1}
		s.full = append(s.full, ev)
	}
	s.ents = append(s.ents, e)
	r.n++
	if len(s.ents) == segEvents && cap(s.text)-len(s.text) > len(s.text)/8 {
		// A full segment takes no more text.
		s.text = exact(s.text)
	}
}

// exact returns a copy of s without room for more.
func exact[T any](s []T) []T {
	return append(make([]T, 0, len(s)), s...)
}

// segCopy returns a copy of segment k with room for c events, its text
// and full events taking no more than they hold, without the dropped
// events of the first segment (their entries left empty, their text and
// full events let go). r.mu is held.
func (r *runLog) segCopy(k, c int) segment {
	s := r.segs[k]
	lo := 0
	if k == 0 {
		lo = r.off
		r.letGo = r.off
	}
	// The retained entries' text and full events are at the end of
	// s.text and s.full, from those of the first retained entry on.
	t, f := uint32(len(s.text)), uint32(len(s.full))
	for _, e := range s.ents[lo:] {
		if e.pre < 0 {
			f = min(f, e.start)
		} else {
			t = min(t, e.start)
		}
	}
	moved := segment{
		ents: make([]entry, len(s.ents), c),
		text: exact(s.text[t:]),
		full: exact(s.full[f:]),
		pres: s.pres,
	}
	for i, e := range s.ents[lo:] {
		if e.pre < 0 {
			e.start -= f
		} else {
			e.start -= t
			e.end -= t
		}
		moved.ents[lo+i] = e
	}
	return moved
}

// trim drops r's oldest events until it holds at most limit bytes, keeping
// its newest event, and returns the bytes dropped. r.mu is held.
func (r *runLog) trim(limit int64) int64 {
	if r.bytes <= limit {
		return 0
	}
	k, dropped := 0, int64(0)
	for r.bytes-dropped > limit && k < r.n-1 {
		s, e := r.entry(r.off + k)
		dropped += s.size(e)
		k++
	}
	if k == 0 {
		return 0
	}
	// Slices returned by Read may share the dropped events: they stay as
	// they are.
	r.off += k
	r.n -= k
	r.first += int64(k)
	r.bytes -= dropped
	r.recent = nil
	for r.off >= segEvents {
		r.segs[0] = segment{}
		r.segs = r.segs[1:]
		r.off -= segEvents
		r.letGo = 0
	}
	var dead int64
	for j := r.letGo; j < r.off; j++ {
		s, e := r.entry(j)
		dead += s.size(e)
	}
	if dead > r.bytes {
		// Let the dropped events go: a copy of at most one segment.
		r.segs[0] = r.segCopy(0, cap(r.segs[0].ents))
	}
	return dropped
}

// finished puts r at the end of the finished list and makes sure the
// retention timer is armed. l.mu is held.
func (l *Log) finished(r *runLog) {
	// Read under l.mu: until r is listed, enforce may still trim it; once
	// listed, closed, its bytes never change.
	r.mu.Lock()
	r.listedBytes = r.bytes
	r.mu.Unlock()
	r.listed = true
	l.finishedBytes += r.listedBytes
	r.finishedAt = time.Now()
	r.prev = l.newest
	if l.newest != nil {
		l.newest.next = r
	} else {
		l.oldest = r
	}
	l.newest = r
	if !l.armed {
		l.armed = true
		if l.timer == nil {
			l.timer = time.AfterFunc(l.opts.Retention, l.expire)
		} else {
			l.timer.Reset(l.opts.Retention)
		}
	}
}

// expire evicts the finished logs whose retention has ended and re-arms
// the timer for the next one. One timer serves every finished run.
func (l *Log) expire() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for l.oldest != nil && now.Sub(l.oldest.finishedAt) >= l.opts.Retention {
		l.evict(l.oldest)
	}
	if l.oldest == nil {
		l.armed = false
		return
	}
	l.timer.Reset(l.opts.Retention - now.Sub(l.oldest.finishedAt))
}

// evict removes the finished log r. l.mu is held.
func (l *Log) evict(r *runLog) {
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		l.oldest = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	} else {
		l.newest = r.prev
	}
	r.prev, r.next, r.listed = nil, nil, false
	l.finishedBytes -= r.listedBytes
	r.listedBytes = 0
	if l.runs[r.id] == r {
		delete(l.runs, r.id)
	}
	r.mu.Lock()
	b := r.bytes
	r.mu.Unlock()
	l.total.Add(-b)
}

// enforce brings the finished logs under MaxFinishedBytes and the total
// under MaxTotalBytes: it evicts finished logs, earliest finished first,
// then trims the largest unfinished logs. l.mu is held.
func (l *Log) enforce() {
	for l.oldest != nil && (l.finishedBytes > l.opts.MaxFinishedBytes || l.total.Load() > l.opts.MaxTotalBytes) {
		l.evict(l.oldest)
	}
	for {
		over := l.total.Load() - l.opts.MaxTotalBytes
		if over <= 0 {
			return
		}
		var victim *runLog
		var most int64
		for _, r := range l.runs {
			if r.listed {
				continue
			}
			r.mu.Lock()
			b, n := r.bytes, r.n
			r.mu.Unlock()
			if n > 1 && b > most {
				victim, most = r, b
			}
		}
		if victim == nil {
			return // every log is down to its newest event
		}
		victim.mu.Lock()
		dropped := victim.trim(victim.bytes - over)
		victim.mu.Unlock()
		l.total.Add(-dropped)
	}
}

// Read implements agentstream.EventLog. It costs O(returned events).
// Events kept as appended are shared: a read of those only, within a
// segment, allocates nothing. A read that returns compact deltas
// allocates the events and one buffer for their data, built from the
// prefix and text each keeps, unless another reader built them (recent).
// ErrGone when events after `after` were dropped under the caps.
func (l *Log) Read(ctx context.Context, runID string, after int64, max int) ([]agentstream.Event, bool, error) {
	r := l.get(runID)
	if r == nil {
		return nil, false, agentstream.Errorf(agentstream.CodeNotFound, "no event log for run %s", runID)
	}
	if after < 0 {
		after = 0
	}
	if max <= 0 {
		max = 1
	}
	for {
		r.mu.Lock()
		if after < r.first-1 {
			first := r.first
			r.mu.Unlock()
			return nil, false, agentstream.Errorf(agentstream.CodeGone,
				"events before %d of run %s are no longer kept; read the thread's messages", first, runID)
		}
		i, n := after-(r.first-1), int64(r.n)
		if i < n {
			j, count := r.off+int(i), int(min(int64(max), n-i))
			done := r.closed && i+int64(count) == n
			if evs := r.shared(j, count); evs != nil {
				r.mu.Unlock()
				return evs, done, nil
			}
			if j+count == r.off+r.n && count <= segEvents && !r.closed {
				// A reader caught up: others may be, they share
				// these events. A big batch (a reader catching up) is
				// not held for them.
				evs := r.batch(j, count, false).build()
				r.recent = evs
				r.mu.Unlock()
				return evs, done, nil
			}
			// A reader catching up builds its events without holding
			// the log, which appends meanwhile.
			b := r.batch(j, count, true)
			r.mu.Unlock()
			return b.build(), done, nil
		}
		if r.closed {
			r.mu.Unlock()
			return nil, true, nil
		}
		w := waiters.Get().(*waiter)
		r.waiting = append(r.waiting, w)
		r.mu.Unlock()
		select {
		case <-w.c:
			waiters.Put(w)
		case <-ctx.Done():
			r.mu.Lock()
			r.stopWaiting(w)
			r.mu.Unlock()
			return nil, false, ctx.Err()
		}
	}
}

// shared returns the count events from position j on when they can be
// shared: all kept as appended, in one segment (a segment's full events
// are never modified), or built by an earlier read (recent); else nil.
// r.mu is held.
func (r *runLog) shared(j, count int) []agentstream.Event {
	s, p := &r.segs[j/segEvents], j%segEvents
	if p+count <= len(s.ents) {
		ents := s.ents[p : p+count]
		if a, b := ents[0], ents[count-1]; a.pre < 0 && b.pre < 0 && int(b.start-a.start) == count-1 {
			// Full events only: they take consecutive places in full.
			return s.full[a.start : b.start+1 : b.start+1]
		}
	}
	if c := r.recent; len(c) > 0 {
		seq := r.first + int64(j-r.off)
		if d := int(seq - c[0].Seq); d >= 0 && d+count <= len(c) {
			return c[d : d+count : d+count]
		}
	}
	return nil
}

// batch is what a read needs to build count events: the segments that
// hold them (the first from position p on) and the first one's Seq.
type batch struct {
	segs     []segment
	p, count int
	seq      int64
}

// batch returns the batch of count events from position j on; own when
// it is to be built without r.mu: its segments are then copies of the
// log's (what they hold is never modified, and appends write past it).
// r.mu is held.
func (r *runLog) batch(j, count int, own bool) batch {
	segs := r.segs[j/segEvents : (j+count-1)/segEvents+1]
	if own {
		segs = slices.Clone(segs)
	}
	return batch{segs: segs, p: j % segEvents, count: count, seq: r.first + int64(j-r.off)}
}

// entry returns the segment and entry of the batch's event x.
func (b batch) entry(x int) (*segment, entry) {
	k := b.p + x
	s := &b.segs[k/segEvents]
	return s, s.ents[k%segEvents]
}

// build returns the batch's events, the deltas' data built in one
// buffer.
func (b batch) build() []agentstream.Event {
	size := 0
	for x := range b.count {
		if s, e := b.entry(x); e.pre >= 0 {
			size += len(s.pres[e.pre]) + int(e.end-e.start) + len(deltaEnd)
		}
	}
	out := make([]agentstream.Event, b.count)
	buf := make([]byte, 0, size)
	for x := range out {
		s, e := b.entry(x)
		if e.pre < 0 {
			out[x] = s.full[e.start]
			continue
		}
		a := len(buf)
		buf = append(buf, s.pres[e.pre]...)
		buf = append(buf, s.text[e.start:e.end]...)
		buf = append(buf, deltaEnd...)
		out[x] = agentstream.Event{Seq: b.seq + int64(x), Type: agentstream.EventMessageDelta, Data: buf[a:len(buf):len(buf)]}
	}
	return out
}

// waiter is a reader's wake-up. Its channel holds one signal, and an
// append sends one only to the waiters it finds in a log's list, which it
// then empties: a waiter is in at most one list, and back in the pool
// only once its channel is empty again, so the send never blocks.
type waiter struct{ c chan struct{} }

var waiters = sync.Pool{New: func() any { return &waiter{c: make(chan struct{}, 1)} }}

// stopWaiting takes w, whose reader no longer waits, off r's list, or,
// when an append already took it off, consumes the signal that append
// sent, then returns w to the pool. r.mu is held.
func (r *runLog) stopWaiting(w *waiter) {
	for i, x := range r.waiting {
		if x == w {
			last := len(r.waiting) - 1
			r.waiting[i] = r.waiting[last]
			r.waiting[last] = nil
			r.waiting = r.waiting[:last]
			waiters.Put(w)
			return
		}
	}
	<-w.c // sent under r.mu, before the append took w off
	waiters.Put(w)
}

// Bounds implements agentstream.EventLog.
func (l *Log) Bounds(_ context.Context, runID string) (agentstream.LogBounds, error) {
	r := l.get(runID)
	if r == nil {
		return agentstream.LogBounds{}, agentstream.Errorf(agentstream.CodeNotFound, "no event log for run %s", runID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := agentstream.LogBounds{First: r.first, Last: r.first + int64(r.n) - 1}
	if r.closed {
		b.End = b.Last
	}
	return b, nil
}

// Stats returns how many runs' logs are held and the bytes of their
// retained events, as the caps count them.
func (l *Log) Stats() (runs int, bytes int64) {
	l.mu.RLock()
	runs = len(l.runs)
	l.mu.RUnlock()
	return runs, l.total.Load()
}

// Len returns how many runs' logs are held: the runs of Stats.
func (l *Log) Len() int {
	runs, _ := l.Stats()
	return runs
}
