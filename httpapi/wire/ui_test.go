package wire

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
)

// uiGoldenRuns are goldenRuns and a run of two model calls with a tool
// between them, as the runner writes it (message.completed, then
// step.completed, then the tool's events), and a failed tool.
func uiGoldenRuns() map[string][]agentstream.Event {
	runs := goldenRuns()
	delta := func(seq int64, msg, text string) agentstream.Event {
		e := agentstream.NewDeltaEvent(msg, text)
		e.Seq = seq
		return e
	}
	runs["steps"] = []agentstream.Event{
		ev(1, agentstream.EventRunCreated, agentstream.RunCreatedData{RunID: "run_1", ThreadID: "thr_1", Agent: "default", Status: agentstream.RunRunning}),
		ev(2, agentstream.EventRunStarted, agentstream.RunStartedData{RunID: "run_1"}),
		ev(3, agentstream.EventStepStarted, agentstream.StepStartedData{Step: 1, MessageID: "msg_1"}),
		delta(4, "msg_1", "Let me check."),
		ev(5, agentstream.EventToolArgumentsDelta, agentstream.ToolArgumentsDeltaData{CallID: "call_1", Name: "lookup", Delta: `{"q":"x"}`}),
		ev(6, agentstream.EventMessageCompleted, agentstream.MessageCompletedData{MessageID: "msg_1", Role: agentstream.RoleAssistant, Content: "Let me check."}),
		ev(7, agentstream.EventStepCompleted, agentstream.StepCompletedData{Step: 1, MessageID: "msg_1", FinishReason: "tool_calls"}),
		ev(8, agentstream.EventToolCall, agentstream.ToolCallData{CallID: "call_1", Name: "lookup", Arguments: json.RawMessage(`{"q": "x"}`)}),
		ev(9, agentstream.EventToolCall, agentstream.ToolCallData{CallID: "call_2", Name: "broken", Arguments: json.RawMessage(`"not json"`)}),
		ev(10, agentstream.EventToolResult, agentstream.ToolResultData{CallID: "call_2", Name: "broken", Output: "error: boom", IsError: true}),
		ev(11, agentstream.EventToolResult, agentstream.ToolResultData{CallID: "call_1", Name: "lookup", Output: `{"found":true}`}),
		ev(12, agentstream.EventStepStarted, agentstream.StepStartedData{Step: 2, MessageID: "msg_2"}),
		delta(13, "msg_2", "Found"),
		ev(14, agentstream.EventMessageCompleted, agentstream.MessageCompletedData{MessageID: "msg_2", Role: agentstream.RoleAssistant, Content: "Found it."}),
		ev(15, agentstream.EventStepCompleted, agentstream.StepCompletedData{Step: 2, MessageID: "msg_2", FinishReason: "stop"}),
		ev(16, agentstream.EventRunCompleted, agentstream.RunEndData{RunID: "run_1", Status: agentstream.RunCompleted}),
	}
	runs["interrupted"] = []agentstream.Event{
		ev(1, agentstream.EventRunCreated, agentstream.RunCreatedData{RunID: "run_1", ThreadID: "thr_1", Agent: "default", Status: agentstream.RunRunning}),
		ev(2, agentstream.EventStepStarted, agentstream.StepStartedData{Step: 1, MessageID: "msg_1"}),
		delta(3, "msg_1", "Half"),
		ev(4, agentstream.EventRunInterrupted, agentstream.RunEndData{RunID: "run_1", Status: agentstream.RunInterrupted}),
	}
	return runs
}

// TestUIGolden pins every byte of the UI message stream for whole runs,
// live and rebuilt from the store. server/aisdk_test.go has the AI SDK's
// own clients read the same files, so what is pinned is what they take.
// go test ./httpapi/wire -run TestUIGolden -update rewrites the files.
func TestUIGolden(t *testing.T) {
	t.Parallel()
	for name, evs := range uiGoldenRuns() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := encodeAll(t, "ui", evs)
			path := filepath.Join("testdata", "golden", "ui-"+name+".sse")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s differs\ngot:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}

// TestUIChunksBalanced checks on random runs what the AI SDK's client
// throws on: a text-delta or text-end without its text-start, a
// tool-input-delta or tool output without its call's start, a text still
// open at finish; and that start and finish come exactly once.
func TestUIChunksBalanced(t *testing.T) {
	t.Parallel()
	for seed := range uint64(300) {
		whole := encodeStream("ui", randomRun(seed), 0, true)
		open, calls := map[string]bool{}, map[string]bool{}
		starts, finishes := 0, 0
		for line := range strings.Lines(string(whole)) {
			data, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "data: ")
			if !ok || data == "[DONE]" {
				continue
			}
			var c struct{ Type, ID, ToolCallID string }
			if err := json.Unmarshal([]byte(data), &c); err != nil {
				t.Fatalf("seed %d: %v in %s", seed, err, data)
			}
			bad := false
			switch c.Type {
			case "start":
				starts++
			case "finish":
				finishes++
				bad = len(open) > 0
			case "text-start":
				bad = open[c.ID]
				open[c.ID] = true
			case "text-delta":
				bad = !open[c.ID]
			case "text-end":
				bad = !open[c.ID]
				delete(open, c.ID)
			case "tool-input-start":
				calls[c.ToolCallID] = true
			case "tool-input-delta", "tool-input-available", "tool-output-available", "tool-output-error":
				bad = !calls[c.ToolCallID]
			}
			if bad {
				t.Fatalf("seed %d: %s out of place in\n%s", seed, data, whole)
			}
		}
		if starts != 1 || finishes != 1 {
			t.Fatalf("seed %d: %d start, %d finish chunks in\n%s", seed, starts, finishes, whole)
		}
	}
}

// TestUIResumedMidTool: a stream resumed after a tool's call was sent
// does not start the call again, and a result whose call the reader never
// got still comes with its call.
func TestUIResumedMidTool(t *testing.T) {
	t.Parallel()
	call := ev(5, agentstream.EventToolCall, agentstream.ToolCallData{CallID: "c", Name: "n", Arguments: json.RawMessage(`{}`)})
	result := ev(6, agentstream.EventToolResult, agentstream.ToolResultData{CallID: "c", Name: "n", Output: "ok"})
	enc := NewUI(Stream{RunID: "r"})
	enc.(Skipper).Skip(call)
	if got, want := string(enc.Encode(nil, result)), "id: 6\ndata: {\"type\":\"tool-output-available\",\"toolCallId\":\"c\",\"output\":\"ok\"}\n\n"; got != want {
		t.Fatalf("after the call:\n got %q\nwant %q", got, want)
	}
	enc = NewUI(Stream{RunID: "r"})
	enc.(Skipper).Skip(ev(1, agentstream.EventRunStarted, agentstream.RunStartedData{RunID: "r"}))
	got := string(enc.Encode(nil, result))
	if !strings.Contains(got, `"tool-input-start","toolCallId":"c","toolName":"n"`) || !strings.Contains(got, `"tool-input-available","toolCallId":"c","toolName":"n","input":{}`) ||
		!strings.HasSuffix(got, "id: 6\ndata: {\"type\":\"tool-output-available\",\"toolCallId\":\"c\",\"output\":\"ok\"}\n\n") || strings.Count(got, "id: ") != 1 {
		t.Fatalf("result without its call: %q", got)
	}
}
