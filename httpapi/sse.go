package httpapi

import (
	"context"
	"errors"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/httpapi/wire"
)

// readBatch is how many events one log read takes at most: a reader that
// fell behind catches up in few writes.
const readBatch = 256

// maxWrite is the encoded size past which a batch is written out before
// the rest is encoded.
const maxWrite = 32 << 10

// streamRun sends the run's events after `after` to the client in enc's
// format, following the log live until the terminal event, the client
// leaving, or a log failure; it reports whether the terminal event was
// sent. Headers leave at once with a comment line; silence longer than the
// heartbeat gets a comment line too. When the log no longer holds the
// events (evicted after its retention, or trimmed) the end of a finished
// run is answered from the store.
//
// The handler's goroutine waits here, in the log's Read, for the whole
// stream, and a stack is only halved when under a quarter of it is in
// use: the start of the stream (openStream) and what is done on a read's
// failure (readFailed) are in functions of their own, so that the frames
// below that Read stay small (BenchmarkStreamMemory in ../server).
func (s *Server) streamRun(w http.ResponseWriter, r *http.Request, run *agentstream.Run, after int64, newEnc wire.NewEncoder) bool {
	st := s.openStream(w, r, run, after, newEnc)
	if st == nil {
		return false
	}
	return s.pump(st)
}

// pump follows an open stream's log from st.after, as streamRun says.
func (s *Server) pump(st *stream) bool {
	run := st.run
	st.hb = newPeriod(st.ctx, s.opts.Heartbeat)
	defer st.hb.stop()
	for {
		evs, end, err := s.log.Read(st.hb.ctx, run.ID, st.after, readBatch)
		if err != nil {
			if stop, sent := s.readFailed(st, err); stop {
				return sent
			}
			continue
		}
		if !st.sendEvents(evs) {
			return false
		}
		if end {
			return true
		}
	}
}

// stream is the state of one streamRun.
type stream struct {
	ctx context.Context
	run *agentstream.Run
	out *sseOut
	enc wire.Encoder
	// after is the id of the last event sent.
	after int64
	// One heartbeat period is one context, not one per read: a context
	// with a deadline per token was a measurable share of the CPU per
	// token. A period in which events were sent ends without a comment.
	// Set by pump.
	hb           *period
	sentInPeriod bool
	// endedQuietly counts heartbeats in a row at which the store says the
	// run ended though its log has not said so.
	endedQuietly int
}

// openStream sends a stream's headers and its encoder's start; nil means
// the client is gone.
//
//go:noinline
func (s *Server) openStream(w http.ResponseWriter, r *http.Request, run *agentstream.Run, after int64, newEnc wire.NewEncoder) *stream {
	enc := newEnc(wire.Stream{RunID: run.ID, ThreadID: run.ThreadID, Agent: run.Agent, Created: run.CreatedAt})
	if sk, ok := enc.(wire.Skipper); ok && after > 0 {
		s.skipTo(r.Context(), sk, run.ID, after)
	}
	h := w.Header()
	enc.Header(h)
	h.Set("X-Run-Id", run.ID)
	h.Set("X-Thread-Id", run.ThreadID)
	w.WriteHeader(http.StatusOK)

	// send sets a write deadline each time. It stays in force after the
	// handler returns, so the end of the response (the last chunk) is
	// bounded too; net/http clears it before the connection serves
	// another request.
	out := &sseOut{w: w, rc: http.NewResponseController(w), stall: s.opts.StallTimeout}
	bp := getWriteBuf()
	*bp = enc.Start(*bp)
	ok := out.send(*bp)
	putWriteBuf(bp)
	if !ok {
		return nil
	}
	return &stream{ctx: r.Context(), run: run, out: out, enc: enc, after: after}
}

// writeBufs are the buffers events are encoded into for a write. A
// stream's own, held for its whole life when it waits between events
// far longer than it writes, was a share of the memory of every open
// stream (BenchmarkStreamMemory in ../server).
var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// getWriteBuf returns an empty buffer from writeBufs.
func getWriteBuf() *[]byte {
	bp := writeBufs.Get().(*[]byte)
	*bp = (*bp)[:0]
	return bp
}

// putWriteBuf gives a buffer back, unless a batch grew it past a write.
func putWriteBuf(bp *[]byte) {
	if cap(*bp) <= 2*maxWrite {
		writeBufs.Put(bp)
	}
}

// sendEvents encodes and sends evs; false means the client is gone.
func (st *stream) sendEvents(evs []agentstream.Event) bool {
	bp := getWriteBuf()
	defer putWriteBuf(bp)
	buf := *bp
	for i := range evs {
		buf = wire.EncodeEvent(st.enc, buf, evs[i])
		st.after = evs[i].Seq
		// A reader that fell behind holds at most about one write's
		// worth of encoded events, however big the batch.
		if len(buf) >= maxWrite {
			*bp = buf
			if !st.out.send(buf) {
				return false
			}
			buf = buf[:0]
		}
	}
	*bp = buf
	if len(buf) > 0 && !st.out.send(buf) {
		return false
	}
	st.sentInPeriod = true
	return true
}

// readFailed handles a failed read of a stream's log: stop says whether
// the stream ends, and sent then whether its terminal event was sent.
//
//go:noinline
func (s *Server) readFailed(st *stream, err error) (stop, sent bool) {
	ctx, run, hb := st.ctx, st.run, st.hb
	switch {
	case ctx.Err() != nil:
		return true, false // the client left
	case errors.Is(err, context.DeadlineExceeded) && st.sentInPeriod:
		hb.renew()
		st.sentInPeriod = false
		return false, false
	case errors.Is(err, context.DeadlineExceeded):
		hb.renew()
		// A terminal event can be lost: an instance that died
		// between its store write and its append, a Redis that lost
		// its data. Two silent heartbeats after the store says the
		// run ended, the end is answered from the store.
		if stored, err := s.store.GetRun(ctx, run.UserID, run.ID); err == nil && stored.Status.Terminal() {
			if st.endedQuietly++; st.endedQuietly >= 2 {
				if sent, ok := s.endFromStore(ctx, st.out, st.enc, run, st.after); ok {
					return true, sent
				}
			}
		} else {
			st.endedQuietly = 0
		}
		return !s.heartbeat(st.out, st.enc), false
	case errors.Is(err, agentstream.ErrNotFound), errors.Is(err, agentstream.ErrGone):
		sent, ok := s.endFromStore(ctx, st.out, st.enc, run, st.after)
		if ok {
			return true, sent
		}
		if errors.Is(err, agentstream.ErrGone) {
			// The reader fell behind what the log keeps: the
			// stream ends, and resuming from here is a 410.
			s.logger.Warn("a reader fell behind the events its run's log keeps", "run_id", run.ID, "err", err)
			return true, false
		}
		// The run goes on without a log to read (Redis lost it; the
		// run's next flush makes it again): wait a heartbeat,
		// with a comment, and look again.
		select {
		case <-ctx.Done():
			return true, false
		case <-hb.ctx.Done():
		}
		hb.renew()
		return !s.heartbeat(st.out, st.enc), false
	}
	s.logger.Error("reading a run's events", "run_id", run.ID, "err", err)
	return true, false
}

// heartbeat writes enc's heartbeat, when it has one; false means the
// client is gone.
func (s *Server) heartbeat(out *sseOut, enc wire.Encoder) bool {
	bp := getWriteBuf()
	defer putWriteBuf(bp)
	b := enc.Heartbeat(*bp)
	return len(b) == 0 || out.send(b)
}

// skipTo shows sk the events up to and including after, which a resumed
// reader already has, as far as the log still holds them: a format whose
// bytes depend on earlier events goes on from where the reader left.
// checkPosition has made sure the log holds an event at after, or that
// the run has ended; a log that no longer holds them, or does not answer
// within a heartbeat, leaves sk with what it got.
func (s *Server) skipTo(ctx context.Context, sk wire.Skipper, runID string, after int64) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Heartbeat)
	defer cancel()
	for pos := int64(0); pos < after; {
		evs, end, err := s.log.Read(ctx, runID, pos, readBatch)
		if err != nil {
			return
		}
		for _, ev := range evs {
			if ev.Seq > after {
				return
			}
			sk.Skip(ev)
			pos = ev.Seq
		}
		if end || len(evs) == 0 {
			return
		}
	}
}

// endFromStore sends the end of a finished run rebuilt from the store
// (storedEnd) to a reader after `after`: nothing when the reader is at or
// past its terminal event. ok is false, and nothing is sent, when the run
// has not ended.
func (s *Server) endFromStore(ctx context.Context, out *sseOut, enc wire.Encoder, run *agentstream.Run, after int64) (sent, ok bool) {
	evs, ok := s.storedEnd(ctx, *run, after)
	if !ok || len(evs) == 0 {
		return false, ok
	}
	var buf []byte
	for _, ev := range evs {
		buf = wire.EncodeEvent(enc, buf, ev)
	}
	return out.send(buf), true
}

// storedEnd rebuilds the end of a finished run from the store, for a
// reader whose events the log no longer holds: each assistant message of
// the run as message.completed, without an id (the log's ids of those
// events are not known here), then the terminal event with the id the
// run's log gave it (Run.EndSeq). None when the reader is at or past that
// id. It reports false when the run has not ended.
func (s *Server) storedEnd(ctx context.Context, run agentstream.Run, after int64) ([]agentstream.Event, bool) {
	run, err := s.store.GetRun(ctx, run.UserID, run.ID)
	if err != nil || !run.Status.Terminal() {
		return nil, false
	}
	end, ok := s.endSeq(ctx, run, after)
	if !ok {
		return nil, false
	}
	if after >= end {
		return nil, true
	}
	msgs, err := s.store.ListMessages(ctx, run.ThreadID)
	if err != nil {
		return nil, false
	}
	var evs []agentstream.Event
	for _, m := range msgs {
		if m.RunID == run.ID && m.Role == agentstream.RoleUser {
			// The run's input: what came before it under the run is the
			// history a client brought (Store.CreateRun), not the answer.
			evs = evs[:0]
		}
		if m.RunID == run.ID && m.Role == agentstream.RoleAssistant && m.Content != "" {
			evs = append(evs, agentstream.NewEvent(agentstream.EventMessageCompleted, agentstream.MessageCompletedData{
				MessageID: m.ID, Role: m.Role, Content: m.Content,
			}))
		}
	}
	terminal := agentstream.NewEvent(agentstream.TerminalEventFor(run.Status), agentstream.RunEndData{
		RunID: run.ID, Status: run.Status, Usage: run.Usage, Error: run.Error,
	})
	terminal.Seq = end
	return append(evs, terminal), true
}

// endSeq returns the id of an ended run's terminal event: the one stored
// with its end, or, for a run that ended without one known, one recorded
// now, which the first reader to record it fixes for every reader after:
//   - when the run's log still holds its events (a run interrupted after
//     its server died, whose terminal event could not be appended), right
//     after the last of them: a log hands out only what it holds, so no
//     reader has seen an id past it;
//   - when the log is gone too (it died with a single server's process,
//     or with Redis's data), lostLogGap past the reader's position: past
//     any id another reader of the run can have seen, so every reader
//     gets the terminal event and none has seen its id denote another.
func (s *Server) endSeq(ctx context.Context, run agentstream.Run, after int64) (int64, bool) {
	if run.EndSeq > 0 {
		return run.EndSeq, true
	}
	next := idPlus(after, lostLogGap)
	if b, err := s.log.Bounds(ctx, run.ID); err == nil {
		if b.End > 0 {
			return b.End, true
		}
		next = idPlus(max(after, b.Last), 1)
	}
	end, err := s.store.SetEndSeq(ctx, run.ID, next)
	if err != nil {
		s.logger.Warn("recording the id of a run's terminal event", "run_id", run.ID, "err", err)
		return 0, false
	}
	return end, true
}

// lostLogGap is how far past a reader's position the terminal event of a
// run whose log and end id were both lost is put: more events than a run
// streams (a million, each at least a token).
const lostLogGap = 1 << 20

// idPlus is id+n, or the largest id when that overflows: a reader may
// send any id up to it, and one at it is at or past the end.
func idPlus(id, n int64) int64 {
	if id > math.MaxInt64-n {
		return math.MaxInt64
	}
	return id + n
}

// period is a context that ends after d, renewed for another d on demand.
type period struct {
	parent context.Context
	d      time.Duration
	ctx    context.Context
	cancel context.CancelFunc
}

func newPeriod(parent context.Context, d time.Duration) *period {
	p := &period{parent: parent, d: d}
	p.renew()
	return p
}

func (p *period) renew() {
	if p.cancel != nil {
		p.cancel()
	}
	p.ctx, p.cancel = context.WithTimeout(p.parent, p.d)
}

func (p *period) stop() { p.cancel() }

// sseOut writes one stream's bytes.
type sseOut struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
	// moved is when the write deadline was last moved on.
	moved time.Time
}

// setStall bounds the next writes by d; the deadline moves at the next
// send.
func (o *sseOut) setStall(d time.Duration) { o.stall, o.moved = d, time.Time{} }

// send writes and flushes; false means the client is gone, or stopped
// reading for longer than the stall timeout.
func (o *sseOut) send(b []byte) bool {
	// Not every ResponseWriter has deadlines (a test recorder has none).
	// The deadline moves on at most every eighth of the stall timeout, not
	// at every write (a timer update per token): a client that stops
	// reading is dropped after 7/8 to all of the timeout.
	if now := time.Now(); now.Sub(o.moved) > o.stall/8 {
		_ = o.rc.SetWriteDeadline(now.Add(o.stall))
		o.moved = now
	}
	if _, err := o.w.Write(b); err != nil {
		return false
	}
	return o.rc.Flush() == nil
}
