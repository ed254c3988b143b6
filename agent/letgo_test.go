package agent

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"weak"

	"github.com/agentstream/agentstream"
)

// letGoModel answers "ok", having looked whether anything but itself
// holds the messages of the request it was given.
type letGoModel struct {
	calls, held atomic.Int32
}

func (m *letGoModel) Stream(_ context.Context, req agentstream.ModelRequest, onDelta func(agentstream.ModelDelta)) (agentstream.ModelResult, error) {
	m.calls.Add(1)
	msgs := weak.Make(&req.Messages[0])
	runtime.GC() // req is not used past here: this frame holds nothing of it
	if msgs.Value() != nil {
		m.held.Add(1)
	}
	onDelta(agentstream.ModelDelta{Text: "ok"})
	return agentstream.ModelResult{Content: "ok", FinishReason: "stop"}, nil
}

// TestRequestNotHeldWhileStreaming: while the model streams its answer,
// the run holds nothing of the request it sent (a copy of every message
// of the conversation): the model may let go of it once sent.
func TestRequestNotHeldWhileStreaming(t *testing.T) {
	t.Parallel()
	model := &letGoModel{}
	h := newHarness(t, setup{model: model})
	th := h.thread(nil)
	run := h.start(th, "go")
	end(t, h.events(run.ID), agentstream.EventRunCompleted)
	if model.calls.Load() != 1 || model.held.Load() != 0 {
		t.Fatalf("%d calls, %d with their messages held by the run", model.calls.Load(), model.held.Load())
	}
}

// TestFirstHistoryCachedApart: a thread's first message is its run's
// history without a copy (the execution's own input), so the history
// cache must get a copy of it: the cache keeping the history of a run
// that produced no message must not keep the whole execution.
func TestFirstHistoryCachedApart(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setup{script: scripted(turn{err: errors.New("the model failed")})})
	th := h.thread(nil)
	st := runInline(t, h, th)
	runtime.GC()
	h.r.histories.mu.Lock()
	cached := h.r.histories.m[th.ID].msgs
	h.r.histories.mu.Unlock()
	if len(cached) != 1 || cached[0].Content != "go" {
		t.Fatalf("cached history %+v, want the input alone", cached)
	}
	if st.Value() != nil {
		t.Error("the history cache keeps the run's execution")
	}
}

// runInline runs a run of th inline to its end ("go", failed) and returns
// a weak pointer to what Start made for it.
func runInline(t testing.TB, h *harness, th agentstream.Thread) weak.Pointer[runStart] {
	t.Helper()
	in := new(Inline)
	run, err := h.r.Start(t.Context(), StartRequest{Thread: th, UserID: th.UserID, Input: "go", Inline: in})
	if err != nil {
		t.Fatal(err)
	}
	if !in.Ready() {
		t.Fatal("the run is not to execute inline")
	}
	in.Run(nil)
	end(t, h.events(run.ID), agentstream.EventRunFailed)
	return weak.Make(in.st)
}
