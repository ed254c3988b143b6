package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/sse"
)

// aguiEnd reports whether e is an AG-UI stream's last event.
func aguiEnd(e sse.Event) bool {
	var d struct{ Type string }
	_ = json.Unmarshal([]byte(e.Data), &d)
	return d.Type == "RUN_FINISHED" || d.Type == "RUN_ERROR"
}

// checkAGUIOrder checks an AG-UI stream against the rules of order the
// @ag-ui/client verifier enforces (its verifyEvents): RUN_STARTED first;
// content, args and ends only for what is open; RUN_FINISHED only with
// nothing open; nothing after the end. Every event is a JSON object with
// a type, and the fields its schema requires.
func checkAGUIOrder(t *testing.T, stream []byte) {
	t.Helper()
	r := sse.NewReader(bytes.NewReader(stream))
	msgs, calls, steps := map[string]bool{}, map[string]bool{}, map[string]bool{}
	fail := func(i int, f string, a ...any) {
		t.Helper()
		t.Fatalf("event %d: %s in\n%s", i, fmt.Sprintf(f, a...), stream)
	}
	ended := false
	for i := 0; ; i++ {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%v in\n%s", err, stream)
		}
		var d map[string]any
		if err := json.Unmarshal([]byte(e.Data), &d); err != nil {
			fail(i, "data %q: %v", e.Data, err)
		}
		str := func(k string) string {
			v, ok := d[k].(string)
			if !ok {
				fail(i, "%v: field %s is not a string", d["type"], k)
			}
			return v
		}
		typ := str("type")
		if ended {
			fail(i, "%s after the end", typ)
		}
		if i == 0 && typ != "RUN_STARTED" {
			fail(i, "first event %s", typ)
		}
		switch typ {
		case "RUN_STARTED":
			if i != 0 {
				fail(i, "RUN_STARTED again")
			}
			str("threadId")
			str("runId")
		case "TEXT_MESSAGE_START":
			if id := str("messageId"); msgs[id] {
				fail(i, "message %s started twice", id)
			} else {
				msgs[id] = true
			}
		case "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END":
			id := str("messageId")
			if !msgs[id] {
				fail(i, "%s of message %s not open", typ, id)
			}
			if typ == "TEXT_MESSAGE_END" {
				delete(msgs, id)
			} else {
				str("delta")
			}
		case "TOOL_CALL_START":
			str("toolCallName")
			if id := str("toolCallId"); calls[id] {
				fail(i, "call %s started twice", id)
			} else {
				calls[id] = true
			}
		case "TOOL_CALL_ARGS", "TOOL_CALL_END":
			id := str("toolCallId")
			if !calls[id] {
				fail(i, "%s of call %s not open", typ, id)
			}
			if typ == "TOOL_CALL_END" {
				delete(calls, id)
			} else {
				str("delta")
			}
		case "TOOL_CALL_RESULT":
			str("messageId")
			str("toolCallId")
			str("content")
		case "STEP_STARTED", "STEP_FINISHED":
			name := str("stepName")
			if typ == "STEP_STARTED" == steps[name] {
				fail(i, "%s %q", typ, name)
			}
			steps[name] = typ == "STEP_STARTED"
			if !steps[name] {
				delete(steps, name)
			}
		case "RUN_FINISHED":
			if len(msgs)+len(calls)+len(steps) > 0 {
				fail(i, "RUN_FINISHED with %v %v %v open", msgs, calls, steps)
			}
			str("threadId")
			str("runId")
			ended = true
		case "RUN_ERROR":
			str("message")
			ended = true
		default:
			fail(i, "unknown type %s", typ)
		}
	}
	if !ended {
		t.Fatalf("no end in\n%s", stream)
	}
}

// TestAGUIOrder: every random run keeps the AG-UI client's rules of
// order (checkStreams checks that a resumed stream is the rest of it).
func TestAGUIOrder(t *testing.T) {
	t.Parallel()
	for seed := range uint64(300) {
		evs := randomRun(seed)
		checkAGUIOrder(t, encodeStream("ag-ui", evs, 0, true))
	}
}

// aguiGoldenRuns are runs only the AG-UI golden files pin: steps, a tool
// call whose arguments came whole, a run ended by a cancel with a message
// and a step open, and an end rebuilt from the store after a reader read
// part of a message.
func aguiGoldenRuns() map[string][]agentstream.Event {
	steps := []agentstream.Event{
		ev(1, agentstream.EventRunCreated, agentstream.RunCreatedData{RunID: "run_1", ThreadID: "thr_1", Agent: "default", Status: agentstream.RunQueued}),
		ev(2, agentstream.EventRunQueued, agentstream.RunQueuedData{Position: 1}),
		ev(3, agentstream.EventRunStarted, agentstream.RunStartedData{RunID: "run_1"}),
		ev(4, agentstream.EventStepStarted, agentstream.StepStartedData{Step: 1, MessageID: "msg_1"}),
		ev(5, agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: "msg_1", Delta: "Let me look."}),
		ev(6, agentstream.EventToolCall, agentstream.ToolCallData{CallID: "call_1", Name: "lookup", Arguments: json.RawMessage(`{"q":"x"}`)}),
		ev(7, agentstream.EventToolCall, agentstream.ToolCallData{CallID: "call_2", Name: "lookup", Arguments: json.RawMessage(`"not json"`)}),
		ev(8, agentstream.EventMessageCompleted, agentstream.MessageCompletedData{MessageID: "msg_1", Role: agentstream.RoleAssistant, Content: "Let me look."}),
		ev(9, agentstream.EventStepCompleted, agentstream.StepCompletedData{Step: 1, MessageID: "msg_1", FinishReason: "tool_calls"}),
		ev(10, agentstream.EventToolResult, agentstream.ToolResultData{CallID: "call_1", Name: "lookup", Output: "found"}),
		ev(11, agentstream.EventToolResult, agentstream.ToolResultData{CallID: "call_2", Name: "lookup", Output: "bad arguments", IsError: true}),
		ev(12, agentstream.EventStepStarted, agentstream.StepStartedData{Step: 2, MessageID: "msg_2"}),
		ev(13, agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: "msg_2", Delta: "Found"}),
		ev(14, agentstream.EventRunCancelled, agentstream.RunEndData{RunID: "run_1", Status: agentstream.RunCancelled, Usage: agentstream.Usage{InputTokens: 5, OutputTokens: 2},
			Error: &agentstream.ErrorInfo{Code: "cancelled", Message: "the run was cancelled"}}),
	}
	return map[string][]agentstream.Event{"steps-cancelled": steps}
}

// TestAGUIGolden pins the AG-UI streams of aguiGoldenRuns, and of a
// reader resumed after event 2 of the golden tool run whose end was then
// rebuilt from the store (the rest of msg_2's text, then the end).
func TestAGUIGolden(t *testing.T) {
	t.Parallel()
	runs := aguiGoldenRuns()
	tool := goldenRuns()["tool-run"]
	// Read up to event 8 (the first delta of msg_2), then the log is gone.
	resumed := append(slices.Clone(tool[:8]),
		agentstream.NewEvent(agentstream.EventMessageCompleted, agentstream.MessageCompletedData{MessageID: "msg_2", Role: agentstream.RoleAssistant, Content: "Due <on> and more"}),
		tool[len(tool)-1])
	cases := map[string][]byte{
		"steps-cancelled":  encodeAll(t, "ag-ui", runs["steps-cancelled"]),
		"resumed-rebuilt":  encodeResumed(resumed, 8),
		"client-run-id":    encodeWith(NewAGUIRun("client-run-7"), tool[len(tool)-1:]),
		"interrupted-none": encodeWith(NewAGUI, []agentstream.Event{ev(3, agentstream.EventRunInterrupted, agentstream.RunEndData{RunID: "run_1", Status: agentstream.RunInterrupted})}),
	}
	for name, got := range cases {
		t.Run(name, func(t *testing.T) {
			checkGolden(t, filepath.Join("testdata", "golden", "ag-ui-"+name+".sse"), got)
		})
	}
}

// encodeResumed is the AG-UI stream of a reader resumed after event
// `after`: the events up to it skipped, those rebuilt (Seq 0) sent.
func encodeResumed(evs []agentstream.Event, after int64) []byte {
	enc := NewAGUI(Stream{RunID: "run_1", ThreadID: "thr_1"})
	var b []byte
	for _, e := range evs {
		if e.Seq > 0 && e.Seq <= after {
			enc.(Skipper).Skip(e)
			continue
		}
		b = EncodeEvent(enc, b, e)
	}
	return b
}

func encodeWith(newEnc NewEncoder, evs []agentstream.Event) []byte {
	enc := newEnc(Stream{RunID: "run_1", ThreadID: "thr_1", Agent: "default"})
	b := enc.Start(nil)
	for _, e := range evs {
		b = EncodeEvent(enc, b, e)
	}
	return b
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
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
}

// TestAGUIIDOnLast: a log event that makes several AG-UI events gives
// its id to the last of them only, so a reader cut inside the group
// resumes before it and reads it whole.
func TestAGUIIDOnLast(t *testing.T) {
	t.Parallel()
	enc := NewAGUI(Stream{RunID: "r", ThreadID: "t"})
	b := enc.Encode(nil, ev(5, agentstream.EventToolCall, agentstream.ToolCallData{CallID: "c", Name: "n", Arguments: json.RawMessage(`{}`)}))
	want := `data: {"type":"RUN_STARTED","threadId":"t","runId":"r"}

data: {"type":"TOOL_CALL_START","toolCallId":"c","toolCallName":"n"}

data: {"type":"TOOL_CALL_ARGS","toolCallId":"c","delta":"{}"}

id: 5
data: {"type":"TOOL_CALL_END","toolCallId":"c"}

`
	if string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}
	if strings.Count(string(b), "id: ") != 1 {
		t.Fatal("more than one id")
	}
}
