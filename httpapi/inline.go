package httpapi

import (
	"context"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/agent"
)

// runInline executes a run its request started on the request's
// goroutine (agent.Inline) and sends the client each event as soon as the
// log has it, from the goroutine that appended it: the stream needs no
// goroutine waiting in the log beside the run's, and no hand-off per
// token. The run goes on when the client leaves (or is cancelled after the
// disconnect grace when cancel says so) and the handler returns when it
// has ended. Events the run did not deliver (its run.created, appended
// when it started; one another appended) are read from the log in order,
// and whatever is left when the run returns without its
// terminal event sent (another instance ended it) is followed from the log
// as streamRun does.
//
// The run waits for each write, as a relay's read of its model does: a
// client that stops reading holds it once the connection's buffers are
// full, for at most inlineStall (or the stall timeout when shorter), after
// which the client is dropped (it can resume) and the run goes on.
//
// A run that is not to execute inline (a worker executes it) is followed
// from the log (followLog).
func (s *Server) runInline(w http.ResponseWriter, r *http.Request, f *follow) {
	if !f.inline.Ready() {
		s.followLog(w, r, f)
		return
	}
	d := &direct{s: s, runID: f.run.ID, inline: f.inline}
	// The run executes whatever happens here: were d.open to panic,
	// this runs it before net/http recovers (Run runs it once).
	defer d.end()
	d.open(w, r, f)
	if d.st == nil {
		f.inline.Run(nil) // the client left at once: the run goes on
		return
	}
	f.inline.Run(d.deliver)
	s.closeDirect(d)
}

// end stops the cancel that the client's leaving starts, and runs the
// run when runInline did not (Run runs it once).
func (d *direct) end() {
	if d.stopGrace != nil {
		d.stopGrace()
	}
	d.inline.Run(nil)
}

// open opens the stream of runInline into d. It and closeDirect hold what
// runInline does before and after the run, so that runInline's frame,
// on the stack for the whole stream, stays small: a stack is only halved
// when under a quarter of it is in use (BenchmarkStreamMemory in
// ../server). d.st stays nil when the client left at once.
//
//go:noinline
func (d *direct) open(w http.ResponseWriter, r *http.Request, f *follow) {
	s := d.s
	d.st = s.openStream(w, r, f.run, 0, f.enc)
	if d.st != nil {
		d.st.out.setStall(min(s.opts.StallTimeout, inlineStall))
	}
	if s.cancelOnLeave(f) {
		// The grace starts when the client leaves, also after its
		// terminal event: cancelling an ended run does nothing.
		d.stopGrace = context.AfterFunc(r.Context(), func() { s.cancelAfterGrace(f.run.ID) })
	}
	if d.st != nil {
		d.mu.Lock() // beat reads hb under mu
		d.hb = time.AfterFunc(s.opts.Heartbeat, d.beat)
		d.mu.Unlock()
	}
}

// closeDirect ends d's direct writes once the run has returned and
// follows the rest of the run from the log when its terminal event was
// not sent (see direct.open).
//
//go:noinline
func (s *Server) closeDirect(d *direct) {
	if d.stop() {
		d.st.out.setStall(s.opts.StallTimeout) // a reader of the log
		s.pump(d.st)
	}
}

// inlineStall bounds how long a run waits for a write to the client that
// started it: a client whose connection's buffers stay full that long has
// almost always lost its network. Other readers are never waited for.
const inlineStall = 5 * time.Second

// direct is the state of one stream that runInline writes.
type direct struct {
	s     *Server
	runID string
	hb    *time.Timer
	// stopGrace, when set, stops the cancel that the client's leaving
	// starts (on_disconnect cancel).
	stopGrace func() bool
	inline    *agent.Inline

	mu sync.Mutex // held for a write: deliveries and heartbeats
	st *stream
	// gone: the client left (a write failed); ended: the terminal event
	// was sent; done: the run returned.
	gone, ended, done bool
}

// deliver sends evs, the run's next events, after any the client has not
// had before them. When the log does not give those back, evs wait too:
// the next delivery tries again, and what is left when the run returns is
// read from the log (runInline).
func (d *direct) deliver(evs []agentstream.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone || d.done || len(evs) == 0 {
		return
	}
	// An encoder that panics drops this client, not the process: the
	// delivery may be on a goroutine of the run's own (a tool call's).
	defer func() {
		if e := recover(); e != nil {
			d.gone = true
			d.s.logger.Error("writing a run's events panicked; its client is dropped", "run_id", d.runID, "panic", e, "stack", string(debug.Stack()))
		}
	}()
	st := d.st
	if first := evs[0].Seq; first > st.after+1 && !d.catchUp(first-1) {
		return
	}
	for len(evs) > 0 && evs[0].Seq <= st.after {
		evs = evs[1:]
	}
	if len(evs) == 0 {
		return
	}
	if !st.sendEvents(evs) {
		d.gone = true
		return
	}
	d.ended = evs[len(evs)-1].Type.Terminal()
}

// catchUp sends the log's events after the last one sent up to to: those
// the run did not deliver. False: the log did not give them within a
// heartbeat, or the client left (then gone is set).
//
// The events are in the log already (the runner executes inline only on
// a log readable on append), so they are read first under noWait: a
// context under the request's, made for a read that does not wait, would
// leave the request's context a map of children and a Done channel for
// the rest of the stream. A read that would wait fails at once under
// noWait, and is made again under a context of its own.
func (d *direct) catchUp(to int64) bool {
	st := d.st
	ctx := noWait
	for st.after < to {
		evs, _, err := d.s.log.Read(ctx, d.runID, st.after, int(min(to-st.after, readBatch)))
		if err != nil && ctx == noWait {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(st.ctx, d.s.opts.Heartbeat)
			defer cancel()
			continue
		}
		if err != nil {
			return false
		}
		if !st.sendEvents(evs) {
			d.gone = true
			return false
		}
	}
	return true
}

// noWait is a context already cancelled: a read under it returns what is
// there, or fails at once.
var noWait = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// beat sends a heartbeat when no event was sent for a period.
func (d *direct) beat() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone || d.done {
		return
	}
	if !d.st.sentInPeriod && !d.s.heartbeat(d.st.out, d.st.enc) {
		d.gone = true
		return
	}
	d.st.sentInPeriod = false
	d.hb.Reset(d.s.opts.Heartbeat)
}

// stop ends the stream's direct writes once the run has returned, and
// reports whether the rest is to be read from the log: the client is
// there and its terminal event was not sent.
func (d *direct) stop() bool {
	d.hb.Stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done = true
	return !d.gone && !d.ended
}
