package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/agentstream/agentstream"
)

// checkpointer saves the partial answers offered to it, one save at a
// time, on a goroutine of its own. An offer is the text that came since
// the previous offer (see partialText): while a save is under way, newer
// offers are joined, and saved together next.
type checkpointer struct {
	save func(agentstream.Message)

	mu      sync.Mutex
	next    *agentstream.Message
	running bool
	idle    chan struct{} // closed when a running loop ends
}

func (c *checkpointer) offer(m agentstream.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.next != nil {
		m.Content = c.next.Content + m.Content
	}
	c.next = &m
	if !c.running {
		c.running, c.idle = true, make(chan struct{})
		go c.loop(c.idle)
	}
}

func (c *checkpointer) loop(idle chan struct{}) {
	defer close(idle)
	for {
		c.mu.Lock()
		m := c.next
		c.next = nil
		if m == nil {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.save(*m)
	}
}

// wait returns once every offered answer has been saved.
func (c *checkpointer) wait() {
	c.mu.Lock()
	idle := c.idle
	c.mu.Unlock()
	if idle != nil {
		<-idle
	}
}

// partialText saves a streaming answer's text by increments
// (Store.CheckpointText): each save writes what came since the last one
// that succeeded, so that an answer's checkpoints cost in all what its
// text weighs, not its length times their number. A save that fails
// leaves its increment to the next, which is made from the same place (a
// failed save that the store did keep is replaced: see CheckpointText).
// One goroutine saves at a time (the checkpointer's).
//
// It is given the text that came since its previous call, not the answer
// so far: the model already gathers the whole answer, and a second copy
// of it, kept for the stream's whole length, was a share of the memory of
// every open stream (BenchmarkStreamMemory in ../server).
type partialText struct {
	pending string // text given but not saved yet
	stored  int64  // bytes of the text stored (storable)
}

// save saves what m.Content, the text that came since the previous call,
// and what is pending hold. The increment ends with the last complete
// character: a character whose bytes came in two pieces, or invalid bytes
// that the next piece may extend, go with the next save, so that the
// increments made storable one by one add up to the whole text made
// storable.
func (p *partialText) save(ctx context.Context, st agentstream.Store, runID string, m agentstream.Message) error {
	text := m.Content
	if p.pending != "" {
		text = p.pending + text
	}
	inc := completeText(text)
	if inc == "" {
		p.pending = text
		return nil
	}
	m.Content = inc
	m = m.Storable()
	if err := st.CheckpointText(ctx, runID, m, p.stored); err != nil {
		p.pending = text
		return err
	}
	// A copy of the few bytes left: a slice of text would keep it whole.
	p.pending = strings.Clone(text[len(inc):])
	p.stored += int64(len(m.Content))
	return nil
}

// completeText is s without the bytes at its end that do not end a valid
// character.
func completeText(s string) string {
	for s != "" {
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size > 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}

// execution is the state of one run while it executes.
type execution struct {
	r     *Runner
	run   agentstream.Run
	agent *compiledAgent
	// input[0] is the run's stored user message; history the thread's
	// messages when the run started, input last (nil until known). A
	// thread's first message is its whole history: input[:] then, the
	// message held once for the whole run, not copied.
	input   [1]agentstream.Message
	history []agentstream.Message
	// checkpointFailed is set when a checkpoint was not saved: a later one
	// may then have stored this run's messages in another order than msgs
	// (a next turn's answer before an earlier turn's tool results), so the
	// thread's history is not kept.
	checkpointFailed atomic.Bool
	// msgs are the assistant and tool messages this run produced, in order.
	msgs []agentstream.Message
	// saved counts the msgs a tool boundary's checkpoint stored: they are
	// complete and do not change, so later saves write only the rest.
	saved int
	// tools are the tools of the run, gathered when it starts.
	tools runTools
	// steps counts the run's model calls (step.started's step).
	steps int
	// deliver is given the events appended, for a run that executes
	// inline (Inline.Run); deliverMu keeps its calls one at a time and in
	// the log's order when tools append concurrently.
	deliver   func([]agentstream.Event)
	deliverMu sync.Mutex
}

// execute runs a run on the calling goroutine, which waits in it for the
// model for the whole run: the run comes by one pointer, and what
// is done once (setup, errors, tool turns) is in functions of its own,
// so that the frames below the model's read stay small. A stack is only
// halved when under a quarter of it is in use, so a few KB more in those
// frames cost 8 KiB more per open stream (BenchmarkStreamMemory in
// ../server). An inline run (Inline) waits under the HTTP handler's
// frames too, and all of them must stay under 3,296 bytes in use for its
// goroutine to live in 8 KiB: the frames from Inline.Run down to the
// model's body read take about 470 bytes today (TestInlineStackDepth in
// ../httpapi measures them with the handler's).
func (r *Runner) execute(st *runStart) {
	defer st.done()
	st.dequeued()
	x := newExecution(st)
	err := x.loop(st.ctx, st.system)
	x.finish(st.ctx, err)
}

// newExecution returns the run's execution, which Start made in place in
// st. Not inlined, so that execute's frame stays as it was.
//
//go:noinline
func newExecution(st *runStart) *execution {
	return &st.x
}

// append adds evs to the run's log and gives them to deliver, when the
// run executes inline. A failed append is logged: the run goes on.
func (x *execution) append(ctx context.Context, evs ...agentstream.Event) {
	if x.deliver == nil {
		x.r.appendEvents(ctx, x.run.ID, evs...)
		return
	}
	x.deliverMu.Lock()
	defer x.deliverMu.Unlock()
	last, ok := x.r.appendEvents(ctx, x.run.ID, evs...)
	if !ok {
		return
	}
	for i := range evs {
		evs[i].Seq = last - int64(len(evs)-1-i)
	}
	x.deliver(evs)
}

// loop runs model turns and tool calls until the model answers without
// calling a tool. It returns nil on success.
func (x *execution) loop(ctx context.Context, system string) error {
	if err := x.prepare(ctx); err != nil {
		return err
	}
	for turn := 1; ; turn++ {
		if err := x.mayCall(ctx, turn); err != nil {
			return err
		}
		msg, err := x.modelTurn(ctx, x.request(system))
		if err != nil {
			return err
		}
		if len(msg.ToolCalls) == 0 {
			return nil
		}
		x.toolTurn(ctx, msg)
	}
}

// prepare starts the run (when it waited in the queue) and gathers what
// its model requests are made of: the thread's history and the tools.
//
//go:noinline
func (x *execution) prepare(ctx context.Context) error {
	r := x.r
	if err := ctx.Err(); err != nil {
		return err
	}
	if x.run.Status != agentstream.RunRunning { // it waited: saved as queued
		started := r.now().UTC()
		if err := r.store.StartRun(ctx, x.run.ID, started); err != nil {
			return err
		}
		x.run.Status, x.run.StartedAt = agentstream.RunRunning, &started
	}
	x.append(ctx, agentstream.NewEvent(agentstream.EventRunStarted, agentstream.RunStartedData{RunID: x.run.ID}))

	history, ok := x.input[:], x.input[0].Seq == 1
	if !ok {
		history, ok = r.histories.get(x.run.ThreadID, x.input[0])
	}
	if !ok {
		var err error
		if history, err = r.store.ListMessages(ctx, x.run.ThreadID); err != nil {
			return err
		}
	}
	x.history = history
	x.tools = r.toolsFor(ctx, x.agent)
	return nil
}

// request returns the model request of the run's next turn: the system
// message, the history, then what the run's earlier turns produced (their
// answers and tool results, in order). It is made anew for each turn
// rather than kept and added to: nothing holds it while the answer
// streams (the model lets go of it once sent), where a request kept for
// the next turn held a copy of every message, hundreds of bytes each, for
// the whole stream (BenchmarkStreamMemory in ../server).
//
//go:noinline
func (x *execution) request(system string) *agentstream.ModelRequest {
	msgs := modelInput(system, x.history, len(x.msgs))
	return &agentstream.ModelRequest{
		Model:       x.agent.Model,
		Messages:    append(msgs, x.msgs...),
		Tools:       x.tools.specs,
		Temperature: x.agent.Temperature,
	}
}

// mayCall says whether the run may make its model call of this turn:
// nil, or why not.
//
//go:noinline
func (x *execution) mayCall(ctx context.Context, turn int) error {
	r := x.r
	if turn > x.agent.MaxTurns {
		return agentstream.Errorf(agentstream.CodeMaxTurns,
			"agent %q called tools %d times without giving an answer (max_turns is %d)", x.agent.Name, x.agent.MaxTurns, x.agent.MaxTurns)
	}
	// A run that used up its user's budget stops here, with what it
	// has saved; it does not start another call.
	switch used, retry, err := r.overBudget(ctx, x.run.UserID); {
	case err != nil && ctx.Err() == nil:
		r.logger.Warn("reading the user's token usage; the run goes on", "run_id", x.run.ID, "err", err)
	case retry > 0:
		return agentstream.Errorf(agentstream.CodeBudgetExceeded,
			"limits.daily_tokens (%d) reached for this user (%d tokens used today, UTC): the run stopped before its model call %d; what it produced is saved",
			r.cfg.Limits.DailyTokens, used, x.steps+1)
	}
	return nil
}

// toolTurn calls the tools msg asks for; the call (msg) and its results
// are then in x.msgs, for the next turn's request.
//
//go:noinline
func (x *execution) toolTurn(ctx context.Context, msg *agentstream.Message) {
	r := x.r
	x.callTools(ctx, msg.ToolCalls)
	// A tool boundary is a checkpoint: a crash from here on loses
	// only what the next turn streams.
	if err := r.store.CheckpointRun(ctx, x.run.ID, storable(x.msgs[x.saved:])); err != nil {
		x.checkpointFailed.Store(true)
		r.logger.Warn("checkpointing a run", "run_id", x.run.ID, "err", err)
	} else {
		x.saved = len(x.msgs)
	}
}

// countUsage adds the tokens of the model call that brought the run's
// usage from before to now to its user's count of the day, when a budget
// is set; whether or not the call (or the run) failed, since what the
// model reported was used.
func (x *execution) countUsage(ctx context.Context, before agentstream.Usage) {
	r := x.r
	if r.cfg.Limits.DailyTokens <= 0 {
		return
	}
	used := x.run.Usage.InputTokens + x.run.Usage.OutputTokens - before.InputTokens - before.OutputTokens
	if used <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.FinalizeTimeout)
	defer cancel()
	if err := r.store.AddUsage(ctx, x.run.UserID, r.now().UTC(), used); err != nil {
		r.logger.Warn("counting a model call's tokens against the user's budget", "run_id", x.run.ID, "tokens", used, "err", err)
	}
}

// modelTurn streams one model call, appending its deltas to the log, and
// records the assistant message it produced (partial on failure). It
// waits in the model's Stream: its start and end are in startTurn and
// endTurn, and what its deltas update is in a modelCall, on the heap (see
// execute): what it passes on is one pointer, and only x and t are kept
// in its frame across the call.
func (x *execution) modelTurn(ctx context.Context, req *agentstream.ModelRequest) (*agentstream.Message, error) {
	t := x.startTurn(ctx)
	var err error
	if t.to != nil {
		err = t.to.StreamTo(ctx, req, t.on, &t.res)
	} else {
		err = streamModel(t, req)
	}
	return x.endTurn(t, err)
}

// streamerTo is a Model that also streams with its request and answer
// by pointer (openai.Model): Stream's by value take room twice in the
// frame of its caller, which waits for the whole answer (see execute).
// StreamTo is called only on a model whose Streamer is the model itself:
// a type that embeds *openai.Model has StreamTo and Streamer promoted,
// but may have a Stream of its own (logging, a fallback), which must be
// the one called; its Streamer is the embedded model, not it.
type streamerTo interface {
	StreamTo(ctx context.Context, req *agentstream.ModelRequest, onDelta func(agentstream.ModelDelta), res *agentstream.ModelResult) error
	Streamer() agentstream.Model
}

// streamModel calls m's Stream for a model without StreamTo. Not inlined:
// its request and answer by value would take room in modelTurn's frame.
//
//go:noinline
func streamModel(t *modelCall, req *agentstream.ModelRequest) error {
	var err error
	t.res, err = t.x.agent.model.Stream(t.ctx, *req, t.on)
	return err
}

// modelCall is one model call's state that its deltas update.
type modelCall struct {
	x     *execution
	ctx   context.Context
	msg   *agentstream.Message
	saver *checkpointer
	// The answer so far is checkpointed every CheckpointInterval, so a
	// process that dies mid-answer loses at most that much of it. Only
	// the text since the last checkpoint is kept here (see partialText).
	unsaved        strings.Builder
	lastCheckpoint time.Time
	// Each delta goes to the log in this one array, not a slice made per
	// token: the log keeps the events, never the slice.
	delta [1]agentstream.Event
	res   agentstream.ModelResult
	// before is the run's usage before the call, for countUsage.
	before agentstream.Usage
	// to is the model when it is its own streamerTo (nil otherwise), and
	// on is onDelta: worked out in startTurn, not in modelTurn's frame.
	to streamerTo
	on func(agentstream.ModelDelta)
}

// onDelta is the model call's onDelta.
func (t *modelCall) onDelta(d agentstream.ModelDelta) {
	x, ctx := t.x, t.ctx
	switch {
	case d.ToolCall != nil:
		if d.ToolCall.Arguments == "" {
			return
		}
		x.append(ctx, agentstream.NewEvent(agentstream.EventToolArgumentsDelta, agentstream.ToolArgumentsDeltaData{
			CallID: d.ToolCall.ID, Name: d.ToolCall.Name, Delta: d.ToolCall.Arguments,
		}))
	case d.Text != "":
		t.delta[0] = agentstream.NewDeltaEvent(t.msg.ID, d.Text)
		x.append(ctx, t.delta[:]...)
		t.unsaved.WriteString(d.Text)
		if now := time.Now(); now.Sub(t.lastCheckpoint) >= x.r.cfg.CheckpointInterval {
			t.lastCheckpoint = now
			partial := *t.msg
			partial.Content, partial.Status, partial.CreatedAt = t.unsaved.String(), agentstream.MessagePartial, now.UTC()
			// Reset lets go of the text, which the offer keeps.
			t.unsaved.Reset()
			t.saver.offer(partial)
		}
	}
}

// startTurn starts a model call: its message, its step.started, and the
// checkpointer of its partial answers, in the modelCall it returns.
//
//go:noinline
func (x *execution) startTurn(ctx context.Context) *modelCall {
	before := x.run.Usage
	r := x.r
	msg := &agentstream.Message{
		ID: agentstream.NewID("msg_"), ThreadID: x.run.ThreadID, RunID: x.run.ID,
		Role: agentstream.RoleAssistant, Status: agentstream.MessageComplete,
	}
	x.steps++
	x.append(ctx, agentstream.NewEvent(agentstream.EventStepStarted, agentstream.StepStartedData{Step: x.steps, MessageID: msg.ID}))
	// Partial answers are saved beside the stream, not in its way: the
	// next token does not wait for the store (one writer for every run).
	// Each save writes only the text that came since the last one.
	var text partialText
	saver := &checkpointer{save: func(m agentstream.Message) {
		if err := text.save(ctx, r.store, x.run.ID, m); err != nil {
			x.checkpointFailed.Store(true)
			if ctx.Err() == nil {
				r.logger.Warn("checkpointing a partial answer", "run_id", x.run.ID, "err", err)
			}
		}
	}}
	t := &modelCall{x: x, ctx: ctx, msg: msg, saver: saver, lastCheckpoint: time.Now(), before: before}
	t.on = t.onDelta
	if m, ok := x.agent.model.(streamerTo); ok && m.Streamer() == x.agent.model {
		t.to = m
	}
	return t
}

// endTurn records what the model call t, which ended with err, produced,
// and counts its tokens. Its one pointer keeps modelTurn's frame small.
//
//go:noinline
func (x *execution) endTurn(t *modelCall, err error) (*agentstream.Message, error) {
	msg, err := x.recordTurn(t.ctx, t.msg, t.saver, &t.res, err)
	x.countUsage(t.ctx, t.before)
	return msg, err
}

// recordTurn records what a model call that ended with err produced.
func (x *execution) recordTurn(ctx context.Context, msg *agentstream.Message, saver *checkpointer, res *agentstream.ModelResult, err error) (*agentstream.Message, error) {
	r := x.r
	// What is saved next (a tool boundary, the end) must not be overwritten
	// by a partial checkpoint still on its way.
	saver.wait()
	x.run.Usage = x.run.Usage.Add(res.Usage)
	msg.Content = res.Content
	msg.CreatedAt = r.now().UTC()
	if err != nil {
		// Tool calls that never ran are dropped: the thread keeps what
		// the user saw, the partial text.
		if msg.Content != "" {
			msg.Status = agentstream.MessagePartial
			x.msgs = append(x.msgs, *msg)
		}
		return msg, err
	}
	msg.ToolCalls = res.ToolCalls
	x.msgs = append(x.msgs, *msg)
	if msg.Content != "" {
		x.append(ctx, agentstream.NewEvent(agentstream.EventMessageCompleted, agentstream.MessageCompletedData{
			MessageID: msg.ID, Role: msg.Role, Content: msg.Content,
		}))
	}
	// The formats that show steps (AG-UI's STEP_FINISHED, the AI SDK's
	// finish-step) and the model's reason to stop need it per call.
	done := agentstream.StepCompletedData{Step: x.steps, MessageID: msg.ID, FinishReason: res.FinishReason}
	if res.Usage != (agentstream.Usage{}) {
		u := res.Usage
		done.Usage = &u
	}
	x.append(ctx, agentstream.NewEvent(agentstream.EventStepCompleted, done))
	return msg, nil
}

// callTools runs the calls concurrently, at most MaxParallelTools at a
// time, each under its timeout, and returns the tool messages in the
// model's order. Each call's tool.call is streamed when it starts and its
// tool.result when it ends. Failures become the tool's output; they never
// fail the run.
func (x *execution) callTools(ctx context.Context, calls []agentstream.ToolCall) []agentstream.Message {
	r := x.r
	ctx = agentstream.WithRunInfo(ctx, agentstream.RunInfo{
		RunID: x.run.ID, ThreadID: x.run.ThreadID, UserID: x.run.UserID, Agent: x.run.Agent, Context: x.run.Context,
	})
	out := make([]agentstream.Message, len(calls))
	places := make(chan struct{}, r.cfg.MaxParallelTools)
	var wg sync.WaitGroup
	for i, c := range calls {
		select {
		case places <- struct{}{}:
		case <-ctx.Done():
			// Stopped while calls wait for a place: the rest are not made.
			out[i] = x.toolMessage(c, "error: "+errToolStopped.Error())
			continue
		}
		x.append(ctx, agentstream.NewEvent(agentstream.EventToolCall, agentstream.ToolCallData{
			CallID: c.ID, Name: c.Name, Arguments: argumentsJSON(c.Arguments),
		}))
		wg.Go(func() {
			defer func() { <-places }()
			start := time.Now()
			output, isErr := x.callTool(ctx, c)
			output = r.mask(output)
			d := time.Since(start)
			x.append(ctx, agentstream.NewEvent(agentstream.EventToolResult, agentstream.ToolResultData{
				CallID: c.ID, Name: c.Name, Output: output, IsError: isErr, DurationMS: d.Milliseconds(),
			}))
			out[i] = x.toolMessage(c, output)
		})
	}
	wg.Wait()
	x.msgs = append(x.msgs, out...)
	return out
}

// toolMessage is the tool message of call c's output.
func (x *execution) toolMessage(c agentstream.ToolCall, output string) agentstream.Message {
	return agentstream.Message{
		ID: agentstream.NewID("msg_"), ThreadID: x.run.ThreadID, RunID: x.run.ID,
		Role: agentstream.RoleTool, Content: output, ToolCallID: c.ID, ToolName: c.Name,
		Status: agentstream.MessageComplete, CreatedAt: x.r.now().UTC(),
	}
}

func (x *execution) callTool(ctx context.Context, c agentstream.ToolCall) (output string, isErr bool) {
	t, ok := x.tools.find(c.Name)
	if !ok {
		return fmt.Sprintf("error: there is no tool named %q", c.Name), true
	}
	args := json.RawMessage(c.Arguments)
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	if !json.Valid(args) {
		return "error: the arguments are not valid JSON: " + c.Arguments, true
	}
	if err := x.r.checkArguments(t.Spec(), args); err != nil {
		return "error: " + err.Error(), true
	}
	timeout := x.r.timeoutOf(t)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		out string
		err error
	}
	// The tool runs in its own goroutine so that one ignoring its context
	// still times out.
	done := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: fmt.Errorf("the tool crashed: %v", p)}
			}
		}()
		out, err := t.Call(ctx, args)
		done <- result{out, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			return "error: " + res.err.Error(), true
		}
		return res.out, false
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Sprintf("error: the tool did not answer within %s", timeout), true
		}
		return "error: " + errToolStopped.Error(), true
	}
}

// argumentsJSON is the tool.call event's arguments: the parsed object, or
// the model's text as a JSON string when it is not valid JSON.
func argumentsJSON(s string) json.RawMessage {
	if s == "" {
		return json.RawMessage("{}")
	}
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}

// finish saves the run's outcome in one transaction, then appends the
// terminal event: a client that sees it can trust the stored thread. The
// terminal event's id is decided first (right after the run's last event)
// and saved with the outcome, so that an end rebuilt from the store later
// carries the same id. A store that fails is retried until
// FinalizeTimeout; past it the stream ends failed ("could not be saved")
// and the outcome is saved in the background once the store is back, so
// that the thread does not stay blocked by a run that is over.
func (x *execution) finish(runCtx context.Context, err error) {
	r := x.r
	ctx, cancel := context.WithTimeout(context.WithoutCancel(runCtx), r.cfg.FinalizeTimeout)
	defer cancel()

	now := r.now().UTC()
	x.run.FinishedAt = &now
	x.run.Status, x.run.Error = outcome(runCtx, err)
	if x.run.Error != nil {
		r.logger.Info("run ended", "run_id", x.run.ID, "status", x.run.Status, "code", x.run.Error.Code, "err", err)
	}
	if last, err := r.log.Append(ctx, x.run.ID); err == nil {
		x.run.EndSeq = last + 1
	} else {
		r.logger.Warn("reading a run's last event id", "run_id", x.run.ID, "err", err)
	}
	serr := r.saveEnd(ctx, x.run, x.msgs[x.saved:])
	// The thread's messages are now the history this run started from and
	// the messages it saved; the next run here starts from them.
	if serr == nil && x.history != nil && !x.checkpointFailed.Load() {
		// A copy: history may be x.input[:], which the cache must not
		// keep (it would keep the whole execution).
		r.histories.put(x.run.ThreadID, slices.Concat(x.history, storable(x.msgs)))
	} else {
		r.histories.drop(x.run.ThreadID)
	}
	switch {
	case errors.Is(serr, agentstream.ErrConflict):
		// Another instance ended the run when its lease ran out, and
		// appended its terminal event: there is nothing left to say.
		r.logger.Warn("the run was ended elsewhere (its lease ran out); its result was not saved", "run_id", x.run.ID)
		r.forget(x.run)
		return
	case serr != nil:
		r.logger.Error("saving a finished run; it is saved as failed once the store is back", "run_id", x.run.ID, "err", serr)
		x.run.Status = agentstream.RunFailed
		x.run.Error = &agentstream.ErrorInfo{Code: agentstream.CodeInternal, Message: "the run's result could not be saved"}
		r.saveLater(x.run, x.msgs[x.saved:])
	}
	end := agentstream.NewEvent(agentstream.TerminalEventFor(x.run.Status), agentstream.RunEndData{
		RunID: x.run.ID, Status: x.run.Status, Usage: x.run.Usage, Error: x.run.Error,
	})
	end.Seq = x.run.EndSeq
	x.append(ctx, end)
	r.forget(x.run)
}

// saveEnd saves a run's outcome, trying again while the store fails (not
// for a conflict, an answer) until ctx ends.
func (r *Runner) saveEnd(ctx context.Context, run agentstream.Run, msgs []agentstream.Message) error {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := r.store.FinishRun(ctx, run, storable(msgs))
		if err == nil || errors.Is(err, agentstream.ErrConflict) || errors.Is(err, agentstream.ErrNotFound) ||
			errors.Is(err, agentstream.ErrInvalid) {
			return err
		}
		// One line per run's outage; the caller says how it ended.
		if attempt == 1 {
			r.logger.Warn("saving a finished run failed; trying again", "run_id", run.ID, "err", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		case <-r.base.Done():
			// Shutdown's deadline passed: no more waiting here (saveLater
			// goes on while Shutdown lets it).
			t.Stop()
			return err
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// storable returns msgs with their text made storable: a model or a tool
// can write what a store would refuse (a NUL, invalid UTF-8).
func storable(msgs []agentstream.Message) []agentstream.Message {
	out := make([]agentstream.Message, len(msgs))
	for i, m := range msgs {
		out[i] = m.Storable()
	}
	return out
}

// saveLater saves, in the background, the end of a run whose FinishRun
// failed for longer than FinalizeTimeout, as soon as the store takes it,
// until Shutdown gives up on it (then the next start, or the run's lease
// running out, ends it as interrupted).
func (r *Runner) saveLater(run agentstream.Run, msgs []agentstream.Message) {
	r.unsaved.Add(1)
	go func() {
		defer r.unsaved.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-r.stopUnsaved:
				cancel()
			case <-ctx.Done():
			}
		}()
		if err := r.saveEnd(ctx, run, msgs); err != nil && !errors.Is(err, agentstream.ErrConflict) {
			r.logger.Error("a finished run could not be saved before shutdown", "run_id", run.ID, "err", err)
			return
		}
		r.logger.Info("a finished run whose save had failed is saved", "run_id", run.ID, "status", run.Status)
	}()
}

// forget drops an ended run from the runner's books.
func (r *Runner) forget(run agentstream.Run) {
	r.mu.Lock()
	delete(r.active, run.ID)
	if t := r.threads[run.ThreadID]; t != nil && t.runID == run.ID {
		delete(r.threads, run.ThreadID)
		if t.done != nil { // made only for a run waiting for this one
			close(t.done)
		}
	}
	r.mu.Unlock()
}

// outcome maps how the loop ended to the run's status and error.
func outcome(ctx context.Context, err error) (agentstream.RunStatus, *agentstream.ErrorInfo) {
	if err == nil {
		return agentstream.RunCompleted, nil
	}
	if cause := context.Cause(ctx); cause != nil {
		switch {
		case errors.Is(cause, errInterrupted):
			return agentstream.RunInterrupted, errInterrupted.Info()
		case errors.Is(cause, errCancelled):
			return agentstream.RunCancelled, errCancelled.Info()
		}
	}
	return agentstream.RunFailed, agentstream.AsError(err).Info()
}

// modelInput is the system message, then the thread's history made valid
// for a chat API: tool calls without a result (a run that died between the
// call and the result) are dropped, and so are results whose call is gone.
// The slice returned has room for extra more messages.
func modelInput(system string, history []agentstream.Message, extra int) []agentstream.Message {
	answered := map[string]bool{}
	for _, m := range history {
		if m.Role == agentstream.RoleTool {
			answered[m.ToolCallID] = true
		}
	}
	out := make([]agentstream.Message, 0, len(history)+1+extra)
	if system != "" {
		out = append(out, agentstream.Message{Role: agentstream.RoleSystem, Content: system})
	}
	called := map[string]bool{}
	for _, m := range history {
		switch m.Role {
		case agentstream.RoleAssistant:
			var calls []agentstream.ToolCall
			for _, c := range m.ToolCalls {
				if answered[c.ID] {
					calls = append(calls, c)
					called[c.ID] = true
				}
			}
			m.ToolCalls = calls
			if m.Content == "" && len(calls) == 0 {
				continue
			}
		case agentstream.RoleTool:
			if !called[m.ToolCallID] {
				continue
			}
		}
		out = append(out, m)
	}
	return out
}
