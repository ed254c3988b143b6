package agent

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/tools"
)

// streamToModel is a fakeModel that also has StreamTo, counting the calls
// that came through it.
type streamToModel struct {
	*fakeModel
	viaTo atomic.Int32
}

func (m *streamToModel) StreamTo(ctx context.Context, req *agentstream.ModelRequest, onDelta func(agentstream.ModelDelta), res *agentstream.ModelResult) error {
	m.viaTo.Add(1)
	var err error
	*res, err = m.Stream(ctx, *req, onDelta)
	return err
}

func (m *streamToModel) Streamer() agentstream.Model { return m }

// wrappedModel embeds a model with StreamTo (as a user's type may embed
// *openai.Model) and has a Stream of its own, which must not be bypassed.
type wrappedModel struct {
	*streamToModel
	own atomic.Int32
}

func (w *wrappedModel) Stream(ctx context.Context, req agentstream.ModelRequest, onDelta func(agentstream.ModelDelta)) (agentstream.ModelResult, error) {
	w.own.Add(1)
	return w.streamToModel.Stream(ctx, req, onDelta)
}

// TestModelStreamTo: a model with StreamTo is called through it (its
// request and answer by pointer), one without through Stream, and one
// that embeds a model with StreamTo but has a Stream of its own through
// that Stream; the run streams and saves the same answer, tool turn
// included, each way.
func TestModelStreamTo(t *testing.T) {
	t.Parallel()
	script := scripted(
		turn{text: []string{"let me ", "look"}, calls: []fakeCall{{id: "c1", name: "echo", pieces: []string{`{"q":`, `"x"}`}}}, usage: agentstream.Usage{InputTokens: 3, OutputTokens: 4}},
		turn{text: []string{"it is ", "x"}, usage: agentstream.Usage{InputTokens: 5, OutputTokens: 6}},
	)
	echo := tools.NewFunc("echo", "Echoes.", `{"type":"object"}`, func(_ context.Context, a json.RawMessage) (string, error) {
		return string(a), nil
	})
	for _, tc := range []struct {
		name      string
		streamTo  bool
		wrapped   bool
		wantViaTo int32
		wantOwn   int32
	}{
		{"Stream", false, false, 0, 0},
		{"StreamTo", true, false, 2, 0},
		{"wrapped", false, true, 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeModel{script: script}
			var model agentstream.Model = fake
			to := &streamToModel{fakeModel: fake}
			wrapped := &wrappedModel{streamToModel: to}
			switch {
			case tc.streamTo:
				model = to
			case tc.wrapped:
				model = wrapped
			}
			h := newHarness(t, setup{model: model, tools: []agentstream.Tool{echo}})
			th := h.thread(nil)
			run := h.start(th, "what is it?")
			evs := h.events(run.ID)
			end(t, evs, agentstream.EventRunCompleted)
			if got := to.viaTo.Load(); got != tc.wantViaTo {
				t.Errorf("%d calls through StreamTo, want %d", got, tc.wantViaTo)
			}
			if got := wrapped.own.Load(); got != tc.wantOwn {
				t.Errorf("%d calls through the wrapper's own Stream, want %d", got, tc.wantOwn)
			}
			var text string
			for _, ev := range evs {
				if ev.Type == agentstream.EventMessageDelta {
					text += decode[agentstream.MessageDeltaData](t, ev).Delta
				}
			}
			if text != "let me lookit is x" {
				t.Errorf("the deltas say %q", text)
			}
			msgs := h.messages(th.ID)
			if len(msgs) != 4 || msgs[1].Content != "let me look" || len(msgs[1].ToolCalls) != 1 || msgs[1].ToolCalls[0].Arguments != `{"q":"x"}` || msgs[3].Content != "it is x" {
				t.Fatalf("stored messages: %+v", msgs)
			}
			if u := h.stored(run.ID).Usage; u.InputTokens != 8 || u.OutputTokens != 10 {
				t.Errorf("the run's usage is %+v, want 8 in and 10 out", u)
			}
		})
	}
}
