package agent

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/tools"
)

// TestToolFailures: a tool that times out, panics or is not the agent's
// becomes an error output for the model; the run goes on and completes.
func TestToolFailures(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stubborn := tools.NewFunc("stubborn", "Ignores its context.", `{"type":"object"}`, func(context.Context, json.RawMessage) (string, error) {
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		return "too late", nil
	})
	crash := tools.NewFunc("crash", "Panics.", `{"type":"object"}`, func(context.Context, json.RawMessage) (string, error) {
		panic("boom")
	})
	echo := tools.NewFunc("echo", "Echoes.", `{"type":"object"}`, func(_ context.Context, a json.RawMessage) (string, error) {
		return string(a), nil
	})

	tests := []struct {
		name  string
		cfg   Config
		call  string
		wants []string
	}{
		{"timeout", Config{ToolTimeout: 50 * time.Millisecond}, "stubborn", []string{"did not answer within 50ms"}},
		{"panic", Config{}, "crash", []string{"crashed", "boom"}},
		{"a tool the agent was not given", Config{}, "echo", []string{`no tool named "echo"`}},
		{"a tool nobody has", Config{}, "ghost", []string{`no tool named "ghost"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, setup{
				cfg:    tt.cfg,
				tools:  []agentstream.Tool{stubborn, crash, echo},
				agents: []agentstream.Agent{{Name: "assistant", Tools: []string{"stubborn", "crash"}}},
				script: scripted(
					turn{calls: []fakeCall{{id: "call_1", name: tt.call, pieces: []string{`{"q":1}`}}}},
					turn{text: []string{"carried on"}},
				),
			})
			th := h.thread(nil)
			run := h.start(th, "go")
			evs := h.events(run.ID)
			end(t, evs, agentstream.EventRunCompleted)
			var result *agentstream.ToolResultData
			for _, ev := range evs {
				if ev.Type == agentstream.EventToolResult {
					r := decode[agentstream.ToolResultData](t, ev)
					result = &r
				}
			}
			if result == nil || !result.IsError || result.CallID != "call_1" || result.Name != tt.call {
				t.Fatalf("tool.result %+v", result)
			}
			for _, want := range tt.wants {
				if !strings.Contains(result.Output, want) {
					t.Fatalf("tool output %q lacks %q", result.Output, want)
				}
			}
			// The model's next turn saw the error as the tool's output.
			reqs := h.model.requests()
			if len(reqs) != 2 {
				t.Fatalf("%d model calls, want 2", len(reqs))
			}
			last := reqs[1].Messages[len(reqs[1].Messages)-1]
			if last.Role != agentstream.RoleTool || last.ToolCallID != "call_1" || last.Content != result.Output {
				t.Fatalf("second model call ends with %+v", last)
			}
			msgs := h.messages(th.ID)
			if len(msgs) != 4 || msgs[2].Content != result.Output || msgs[3].Content != "carried on" {
				t.Fatalf("stored %+v", msgs)
			}
		})
	}
}

// TestToolTurnEvents: the events of a run with one tool turn, in order.
func TestToolTurnEvents(t *testing.T) {
	t.Parallel()
	echo := tools.NewFunc("echo", "Echoes.", `{"type":"object"}`, func(_ context.Context, a json.RawMessage) (string, error) {
		return "echo:" + string(a), nil
	})
	h := newHarness(t, setup{
		tools: []agentstream.Tool{echo},
		script: scripted(
			turn{calls: []fakeCall{
				{id: "call_1", name: "echo", pieces: []string{"", `{"x":`, "", `1}`}},
				{id: "call_2", name: "echo", pieces: []string{"", `{oops`}},
			}, usage: agentstream.Usage{InputTokens: 10, OutputTokens: 4}},
			turn{text: []string{"Done", "", "!"}, usage: agentstream.Usage{InputTokens: 20, OutputTokens: 2}},
		),
	})
	th := h.thread(nil)
	run := h.start(th, "use the tool")
	evs := h.events(run.ID)

	for i, ev := range evs {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d: %v", i, ev.Seq, types(evs))
		}
	}
	want := []agentstream.EventType{
		agentstream.EventRunCreated,
		agentstream.EventRunStarted,
		agentstream.EventStepStarted,
		agentstream.EventToolArgumentsDelta, // call_1 {"x":
		agentstream.EventToolArgumentsDelta, // call_1 1}
		agentstream.EventToolArgumentsDelta, // call_2 {oops
		agentstream.EventStepCompleted,      // the model call ended; its tools run next
		agentstream.EventToolCall,
		agentstream.EventToolCall,
		agentstream.EventToolResult, // either call first: they run concurrently
		agentstream.EventToolResult,
		agentstream.EventStepStarted,
		agentstream.EventMessageDelta,
		agentstream.EventMessageDelta,
		agentstream.EventMessageCompleted,
		agentstream.EventStepCompleted,
		agentstream.EventRunCompleted,
	}
	if got := types(evs); !slices.Equal(got, want) {
		t.Fatalf("events\n  %v\nwant\n  %v", got, want)
	}

	var deltas []string
	for _, ev := range evs[3:6] {
		d := decode[agentstream.ToolArgumentsDeltaData](t, ev)
		if d.Name != "echo" || d.Delta == "" {
			t.Fatalf("tool.arguments.delta %+v", d)
		}
		deltas = append(deltas, d.CallID+" "+d.Delta)
	}
	if strings.Join(deltas, "|") != `call_1 {"x":|call_1 1}|call_2 {oops` {
		t.Fatalf("argument deltas %q", deltas)
	}

	c1, c2 := decode[agentstream.ToolCallData](t, evs[7]), decode[agentstream.ToolCallData](t, evs[8])
	if c1.CallID != "call_1" || c1.Name != "echo" || string(c1.Arguments) != `{"x":1}` {
		t.Fatalf("first tool.call %+v (%s)", c1, c1.Arguments)
	}
	if c2.CallID != "call_2" || string(c2.Arguments) != `"{oops"` {
		t.Fatalf("second tool.call %+v (%s): want the invalid arguments as a JSON string", c2, c2.Arguments)
	}
	// The raw event data keeps the object an object.
	if !strings.Contains(string(evs[7].Data), `"arguments":{"x":1}`) {
		t.Fatalf("tool.call data %s", evs[7].Data)
	}

	results := map[string]agentstream.ToolResultData{}
	for _, ev := range evs[9:11] {
		r := decode[agentstream.ToolResultData](t, ev)
		results[r.CallID] = r
	}
	if r := results["call_1"]; r.IsError || r.Output != `echo:{"x":1}` || r.Name != "echo" {
		t.Fatalf("call_1 result %+v", r)
	}
	if r := results["call_2"]; !r.IsError || !strings.Contains(r.Output, "not valid JSON") {
		t.Fatalf("call_2 result %+v", r)
	}

	msgs := h.messages(th.ID)
	if len(msgs) != 5 {
		t.Fatalf("stored %d messages: %+v", len(msgs), msgs)
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) || m.RunID != run.ID || m.Status != agentstream.MessageComplete {
			t.Fatalf("stored message %d: %+v", i, m)
		}
	}
	if m := msgs[1]; m.Role != agentstream.RoleAssistant || m.Content != "" || len(m.ToolCalls) != 2 ||
		m.ToolCalls[0].Arguments != `{"x":1}` || m.ToolCalls[1].Arguments != `{oops` {
		t.Fatalf("tool-calling message %+v", m)
	}
	// Tool messages are stored in call order, whichever finished first.
	if msgs[2].ToolCallID != "call_1" || msgs[3].ToolCallID != "call_2" || msgs[2].ToolName != "echo" {
		t.Fatalf("tool messages %+v, %+v", msgs[2], msgs[3])
	}

	d1, d2 := decode[agentstream.MessageDeltaData](t, evs[12]), decode[agentstream.MessageDeltaData](t, evs[13])
	done := decode[agentstream.MessageCompletedData](t, evs[14])
	if d1.Delta != "Done" || d2.Delta != "!" || d1.MessageID != msgs[4].ID || d2.MessageID != msgs[4].ID ||
		done.MessageID != msgs[4].ID || done.Content != "Done!" || done.Role != agentstream.RoleAssistant || msgs[4].Content != "Done!" {
		t.Fatalf("answer events %+v %+v %+v, stored %+v", d1, d2, done, msgs[4])
	}

	// Each model call is a step: its number, its message, why it stopped
	// and what it cost.
	steps := []struct {
		at   int
		want agentstream.StepCompletedData
	}{
		{6, agentstream.StepCompletedData{Step: 1, MessageID: msgs[1].ID, FinishReason: "tool_calls", Usage: &agentstream.Usage{InputTokens: 10, OutputTokens: 4}}},
		{15, agentstream.StepCompletedData{Step: 2, MessageID: msgs[4].ID, FinishReason: "stop", Usage: &agentstream.Usage{InputTokens: 20, OutputTokens: 2}}},
	}
	for i, st := range steps {
		started := decode[agentstream.StepStartedData](t, evs[[]int{2, 11}[i]])
		got := decode[agentstream.StepCompletedData](t, evs[st.at])
		if started.Step != st.want.Step || started.MessageID != st.want.MessageID || got.Usage == nil ||
			got.Step != st.want.Step || got.MessageID != st.want.MessageID || got.FinishReason != st.want.FinishReason || *got.Usage != *st.want.Usage {
			t.Fatalf("step %d: started %+v, completed %+v; want %+v", i+1, started, got, st.want)
		}
	}

	e := end(t, evs, agentstream.EventRunCompleted)
	wantUsage := agentstream.Usage{InputTokens: 30, OutputTokens: 6}
	if e.Usage != wantUsage || e.Error != nil || h.stored(run.ID).Usage != wantUsage {
		t.Fatalf("end %+v, stored usage %+v; want usage %+v", e, h.stored(run.ID).Usage, wantUsage)
	}

	// The second turn got the tool turn in call order.
	reqs := h.model.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d model calls", len(reqs))
	}
	if got := describe(reqs[1].Messages); strings.Join(got, "|") !=
		`system You help.|user use the tool|assistant  calls=call_1,call_2|tool echo:{"x":1} for=call_1|tool `+results["call_2"].Output+` for=call_2` {
		t.Fatalf("second model call got %q", got)
	}
	if len(reqs[0].Tools) != 1 || reqs[0].Tools[0].Name != "echo" {
		t.Fatalf("tools offered %+v", reqs[0].Tools)
	}
}

// TestUnstorableTextSaved: a model and a tool that write what a store
// refuses (NUL characters, invalid UTF-8) do not lose the run: the text is
// saved with those bytes replaced (agentstream.StorableText), the run
// completes, and the next run starts from the same history.
func TestUnstorableTextSaved(t *testing.T) {
	t.Parallel()
	// A tool whose output holds a NUL character.
	echo := tools.NewFunc("echo", "Echoes.", `{"type":"object"}`, func(_ context.Context, a json.RawMessage) (string, error) {
		return "echo\x00" + string(a), nil
	})
	h := newHarness(t, setup{
		tools:  []agentstream.Tool{echo},
		agents: []agentstream.Agent{{Name: "assistant", Tools: []string{"echo"}}},
		script: scripted(
			turn{calls: []fakeCall{{id: "call_1", name: "echo", pieces: []string{`{"text":"a\u0000b"}`}}}},
			turn{text: []string{"nul \x00 and ", "bad \xff bytes"}},
		),
	})
	th := h.thread(nil)
	run := h.start(th, "go")
	end(t, h.events(run.ID), agentstream.EventRunCompleted)
	msgs, err := h.db.ListMessages(context.Background(), th.ID)
	if err != nil || len(msgs) != 4 {
		t.Fatalf("stored %d messages, %v; want the question, the call, its result, the answer", len(msgs), err)
	}
	for _, m := range msgs {
		if !agentstream.ValidText(m.Content) {
			t.Fatalf("stored %q", m.Content)
		}
	}
	if got, want := msgs[3].Content, "nul \uFFFD and bad \uFFFD bytes"; got != want {
		t.Fatalf("stored answer %q, want %q", got, want)
	}
}
