package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
)

func ev(seq int64, t agentstream.EventType, payload any) agentstream.Event {
	e := agentstream.NewEvent(t, payload)
	e.Seq = seq
	return e
}

func TestNativeEncoder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ev   agentstream.Event
		want string
	}{
		{"delta", ev(3, agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: "m", Delta: "line\nbreak"}),
			"id: 3\nevent: message.delta\ndata: {\"message_id\":\"m\",\"delta\":\"line\\nbreak\"}\n\n"},
		// Pretty-printed arguments from a model still make one data line.
		{"tool call", ev(9, agentstream.EventToolCall, agentstream.ToolCallData{CallID: "c", Name: "n", Arguments: json.RawMessage("{\n  \"a\": 1\n}")}),
			"id: 9\nevent: tool.call\ndata: {\"call_id\":\"c\",\"name\":\"n\",\"arguments\":{\"a\":1}}\n\n"},
		{"terminal", ev(10, agentstream.EventRunFailed, agentstream.RunEndData{RunID: "r", Status: agentstream.RunFailed, Error: &agentstream.ErrorInfo{Code: "upstream_error", Message: "boom"}}),
			"id: 10\nevent: run.failed\ndata: {\"run_id\":\"r\",\"status\":\"failed\",\"usage\":{\"input_tokens\":0,\"output_tokens\":0},\"error\":{\"code\":\"upstream_error\",\"message\":\"boom\"}}\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(nativeEncoder{}.encode(nil, tt.ev)); got != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestSeedEncoder(t *testing.T) {
	t.Parallel()
	run := []agentstream.Event{
		ev(1, agentstream.EventRunCreated, agentstream.RunCreatedData{RunID: "r", ThreadID: "t"}),
		ev(2, agentstream.EventRunStarted, agentstream.RunStartedData{RunID: "r"}),
		ev(3, agentstream.EventToolArgumentsDelta, agentstream.ToolArgumentsDeltaData{CallID: "c", Name: "due_date", Delta: "{}"}),
		ev(4, agentstream.EventToolCall, agentstream.ToolCallData{CallID: "c", Name: "due_date", Arguments: json.RawMessage("{}")}),
		ev(5, agentstream.EventToolResult, agentstream.ToolResultData{CallID: "c", Name: "due_date", Output: "x"}),
		ev(6, agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: "m", Delta: "Hello "}),
		ev(7, agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: "m", Delta: "\"world\""}),
		ev(8, agentstream.EventMessageCompleted, agentstream.MessageCompletedData{MessageID: "m", Role: "assistant", Content: "Hello \"world\""}),
		ev(9, agentstream.EventRunCompleted, agentstream.RunEndData{RunID: "r", Status: agentstream.RunCompleted}),
	}
	enc := &seedEncoder{threadID: "t", runID: "r"}
	var b []byte
	for _, e := range run {
		b = enc.encode(b, e)
	}
	want := strings.Join([]string{
		`data: {"tool":"due_date","status":"start"}`,
		`data: {"tool":"due_date","status":"end"}`,
		`data: {"delta":"Hello ","complete":false}`,
		`data: {"delta":"\"world\"","complete":false}`,
		`data: {"response":"Hello \"world\"","complete":true,"thread_id":"t","run_id":"r"}`,
		`data: {"status":"done"}`,
	}, "\n\n") + "\n\n"
	if string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}

	failed := &seedEncoder{threadID: "t", runID: "r"}
	got := string(failed.encode(nil, ev(4, agentstream.EventRunFailed, agentstream.RunEndData{
		RunID: "r", Status: agentstream.RunFailed, Error: &agentstream.ErrorInfo{Code: "upstream_error", Message: "model API returned 500"}})))
	want = `data: {"error":"model API returned 500","code":"upstream_error","thread_id":"t","run_id":"r"}` + "\n\n" + `data: {"status":"done"}` + "\n\n"
	if got != want {
		t.Fatalf("failure: got\n%s\nwant\n%s", got, want)
	}
}

func TestBodyErrors(t *testing.T) {
	t.Parallel()
	s := New(nil, nil, nil, Options{MaxBodyBytes: 64})
	tests := []struct {
		name, body string
		code       agentstream.Code
		want       string
	}{
		{"empty", "", agentstream.CodeInvalidRequest, "empty"},
		{"malformed", `{"input": "x",}`, agentstream.CodeInvalidRequest, "malformed JSON at byte"},
		{"cut", `{"input": "x"`, agentstream.CodeInvalidRequest, "ends in the middle"},
		{"wrong type", `{"input": 5}`, agentstream.CodeInvalidRequest, `field "input" must be a string, not number`},
		{"not an object", `[1,2]`, agentstream.CodeInvalidRequest, "must be a JSON object"},
		{"unknown field", `{"inptu": "x"}`, agentstream.CodeInvalidRequest, `unknown field "inptu"`},
		{"trailing data", `{"input": "x"} {}`, agentstream.CodeInvalidRequest, "after its JSON object"},
		{"too large", `{"input": "` + strings.Repeat("x", 100) + `"}`, agentstream.CodeTooLarge, "larger than 64 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/v1/threads/x/runs", strings.NewReader(tt.body))
			var req createRunRequest
			err := s.decodeBody(w, r, &req, true)
			e := agentstream.AsError(err)
			if err == nil || e.Code != tt.code || !strings.Contains(e.Message, tt.want) {
				t.Fatalf("error %v (code %s), want %s containing %q", err, agentstream.CodeOf(err), tt.code, tt.want)
			}
		})
	}
}

// BenchmarkEncoders encodes one message.delta per op into a reused buffer,
// as streamRun does, in each wire format.
func BenchmarkEncoders(b *testing.B) {
	delta := ev(42, agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: "msg_01JD6Y3V8Q2Z5X7W9T4R6P8N0M", Delta: " token"})
	for _, tc := range []struct {
		name string
		enc  encoder
	}{
		{"native", nativeEncoder{}},
		{"seed", &seedEncoder{threadID: "thr_1", runID: "run_1"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			for b.Loop() {
				buf = tc.enc.encode(buf[:0], delta)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}
