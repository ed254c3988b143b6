package sim_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/agentstream/agentstream/sim"
)

// TestWrongArgumentsConversation: over HTTP, as a client loops, a message
// asking for wrong arguments gets parallel calls with wrong arguments,
// their errors a corrected second attempt, and its results the answer.
func TestWrongArgumentsConversation(t *testing.T) {
	r := start(t, fast(sim.Options{}))
	tools := []tool{
		fnTool("order_status", `{"type":"object","properties":{"order_id":{"type":"string","examples":["A-1001"]}},"required":["order_id"]}`),
		fnTool("due_date", `{"type":"object","properties":{"last_period":{"type":"string","format":"date"}},"required":["last_period"]}`),
	}
	history := []msg{user("Check order_status and due_date with wrong arguments.")}
	turn := func(want ...function) []toolCall {
		t.Helper()
		s := readStream(t, post(t, context.Background(), r.URL(), chatRequest{Model: "m", Stream: true, Tools: tools, Messages: history}, nil).Body, nil)
		if s.err != nil || !s.done || s.finish != "tool_calls" || len(s.calls) != len(want) {
			t.Fatalf("err %v, done %v, finish %q, calls %+v; want %+v", s.err, s.done, s.finish, s.calls, want)
		}
		for i, c := range s.calls {
			if c.Function != want[i] {
				t.Errorf("call %d: %+v, want %+v", i, c.Function, want[i])
			}
		}
		return s.calls
	}
	// Two calls in one reply, each with its own index.
	calls := turn(function{"order_status", `{"order_id":12345}`}, function{"due_date", `{"last_period":12345}`})
	history = append(history, msg{Role: "assistant", ToolCalls: calls},
		msg{Role: "tool", ToolCallID: calls[0].ID, Content: "error: order_id: has type integer, want string"},
		msg{Role: "tool", ToolCallID: calls[1].ID, Content: "error: last_period: has type integer, want string"})
	calls = turn(function{"order_status", `{"order_id":"A-1001"}`}, function{"due_date", `{"last_period":"2025-01-15"}`})
	history = append(history, msg{Role: "assistant", ToolCalls: calls},
		msg{Role: "tool", ToolCallID: calls[0].ID, Content: "shipped"},
		msg{Role: "tool", ToolCallID: calls[1].ID, Content: "error: 2025-01-15 is more than 44 weeks ago"})
	// A failure of the corrected call is quoted, not tried again.
	s := readStream(t, post(t, context.Background(), r.URL(), chatRequest{Model: "m", Stream: true, Tools: tools, Messages: history}, nil).Body, nil)
	want := "[simulated] The tool order_status returned: shipped. The tool due_date returned: error: 2025-01-15 is more than 44 weeks ago."
	if s.finish != "stop" || s.contentJoined != want {
		t.Fatalf("finish %q, content %q; want %q", s.finish, s.contentJoined, want)
	}

	// By header, and a header the simulator does not know.
	history = history[:1]
	history[0] = user("order_status?")
	resp := post(t, context.Background(), r.URL(), chatRequest{Model: "m", Stream: true, Tools: tools, Messages: history}, map[string]string{sim.HeaderArguments: "wrong"})
	if s := readStream(t, resp.Body, nil); len(s.calls) != 1 || s.calls[0].Function.Arguments != `{"order_id":12345}` {
		t.Fatalf("calls %+v", s.calls)
	}
	resp = post(t, context.Background(), r.URL(), chatRequest{Model: "m", Tools: tools, Messages: history}, map[string]string{sim.HeaderArguments: "sometimes"})
	if msg, _, code := errorBody(t, resp); resp.StatusCode != http.StatusBadRequest || code != "invalid_header" || msg == "" {
		t.Fatalf("status %d, code %q, message %q", resp.StatusCode, code, msg)
	}
}
