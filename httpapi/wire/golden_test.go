package wire

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

var update = flag.Bool("update", false, "rewrite the golden files of the wire formats")

// goldenRuns are the event sequences the golden files pin, each as a live
// log gives it (ids 1, 2, 3…) or as storedEnd rebuilds a run's end
// (message.completed without ids, then the terminal event at its id).
func goldenRuns() map[string][]agentstream.Event {
	tool := []agentstream.Event{
		ev(1, agentstream.EventRunCreated, agentstream.RunCreatedData{RunID: "run_1", ThreadID: "thr_1", Agent: "default", Status: agentstream.RunRunning}),
		ev(2, agentstream.EventRunStarted, agentstream.RunStartedData{RunID: "run_1"}),
		ev(3, agentstream.EventToolArgumentsDelta, agentstream.ToolArgumentsDeltaData{CallID: "call_1", Name: "due_date", Delta: `{"lmp":`}),
		ev(4, agentstream.EventToolArgumentsDelta, agentstream.ToolArgumentsDeltaData{CallID: "call_1", Name: "due_date", Delta: `"2024-01-01"}`}),
		ev(5, agentstream.EventToolCall, agentstream.ToolCallData{CallID: "call_1", Name: "due_date", Arguments: json.RawMessage(`{"lmp":"2024-01-01"}`)}),
		ev(6, agentstream.EventMessageCompleted, agentstream.MessageCompletedData{MessageID: "msg_1", Role: agentstream.RoleAssistant}),
		ev(7, agentstream.EventToolResult, agentstream.ToolResultData{CallID: "call_1", Name: "due_date", Output: "2024-10-07", DurationMS: 3}),
		agentstream.NewDeltaEvent("msg_2", "Due <on> "),
		agentstream.NewDeltaEvent("msg_2", "\"Oct 7\"\n é \u2028 \xff"),
		ev(10, agentstream.EventMessageCompleted, agentstream.MessageCompletedData{MessageID: "msg_2", Role: agentstream.RoleAssistant, Content: "Due <on> \"Oct 7\"\n é \u2028 \ufffd"}),
		ev(11, agentstream.EventRunCompleted, agentstream.RunEndData{RunID: "run_1", Status: agentstream.RunCompleted, Usage: agentstream.Usage{InputTokens: 12, OutputTokens: 7}}),
	}
	tool[7].Seq, tool[8].Seq = 8, 9
	failed := []agentstream.Event{
		ev(1, agentstream.EventRunCreated, agentstream.RunCreatedData{RunID: "run_2", ThreadID: "thr_1", Agent: "default", Status: agentstream.RunQueued}),
		ev(2, agentstream.EventRunQueued, agentstream.RunQueuedData{Position: 1}),
		ev(3, agentstream.EventRunStarted, agentstream.RunStartedData{RunID: "run_2"}),
		ev(4, agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: "msg_3", Delta: "Part"}),
		ev(5, agentstream.EventRunFailed, agentstream.RunEndData{RunID: "run_2", Status: agentstream.RunFailed,
			Error: &agentstream.ErrorInfo{Code: "upstream_error", Message: "model API returned 500"}}),
	}
	rebuilt := []agentstream.Event{
		agentstream.NewEvent(agentstream.EventMessageCompleted, agentstream.MessageCompletedData{MessageID: "msg_1", Role: agentstream.RoleAssistant, Content: "Checking."}),
		agentstream.NewEvent(agentstream.EventMessageCompleted, agentstream.MessageCompletedData{MessageID: "msg_2", Role: agentstream.RoleAssistant, Content: "Due Oct 7."}),
		ev(1<<20+4, agentstream.EventRunCompleted, agentstream.RunEndData{RunID: "run_1", Status: agentstream.RunCompleted, Usage: agentstream.Usage{InputTokens: 3, OutputTokens: 4}}),
	}
	cancelled := []agentstream.Event{
		ev(1, agentstream.EventRunCreated, agentstream.RunCreatedData{RunID: "run_3", ThreadID: "thr_1", Agent: "default", Status: agentstream.RunRunning}),
		ev(2, agentstream.EventRunStarted, agentstream.RunStartedData{RunID: "run_3"}),
		ev(3, agentstream.EventRunCancelled, agentstream.RunEndData{RunID: "run_3", Status: agentstream.RunCancelled,
			Error: &agentstream.ErrorInfo{Code: "cancelled", Message: "the run was cancelled"}}),
	}
	return map[string][]agentstream.Event{"tool-run": tool, "failed": failed, "rebuilt-end": rebuilt, "cancelled": cancelled}
}

// TestGolden pins every byte each wire format writes for whole streams,
// live and rebuilt from the store: the opening, the events and the end.
// go test ./httpapi -run TestGolden -update rewrites the files.
func TestGolden(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"native", "seed", "ag-ui", "openai", "openai-usage"} {
		for name, evs := range goldenRuns() {
			t.Run(format+"/"+name, func(t *testing.T) {
				t.Parallel()
				got := encodeAll(t, format, evs)
				path := filepath.Join("testdata", "golden", format+"-"+name+".sse")
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
}

// encodeAll is the whole stream a format writes for evs, the way
// httpapi's streamRun writes it.
func encodeAll(t testing.TB, format string, evs []agentstream.Event) []byte {
	t.Helper()
	s := Stream{RunID: "run_1", ThreadID: "thr_1", Agent: "default", Created: time.Unix(1700000000, 0)}
	var enc Encoder
	if format == "openai-usage" {
		// What POST /v1/chat/completions streams with include_usage.
		enc = NewOpenAIStream(s, true)
	} else {
		newEnc, err := Lookup(format)
		if err != nil {
			t.Fatal(err)
		}
		enc = newEnc(s)
	}
	b := enc.Start(nil)
	for _, e := range evs {
		b = EncodeEvent(enc, b, e)
	}
	return b
}

func ev(seq int64, t agentstream.EventType, payload any) agentstream.Event {
	e := agentstream.NewEvent(t, payload)
	e.Seq = seq
	return e
}

// BenchmarkEncode1000Deltas encodes a run of 1,000 message.delta events,
// then its end, per op, in each wire format.
func BenchmarkEncode1000Deltas(b *testing.B) {
	evs := make([]agentstream.Event, 0, 1001)
	for i := range 1000 {
		e := agentstream.NewDeltaEvent("msg_01JD6Y3V8Q2Z5X7W9T4R6P8N0M", " token")
		e.Seq = int64(i + 1)
		evs = append(evs, e)
	}
	evs = append(evs, ev(1001, agentstream.EventRunCompleted, agentstream.RunEndData{RunID: "run_1", Status: agentstream.RunCompleted}))
	for _, format := range []string{"native", "seed"} {
		b.Run(format, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = encodeAll(b, format, evs)
			}
		})
	}
}
