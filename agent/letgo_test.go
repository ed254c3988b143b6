package agent

import (
	"context"
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
