package sim

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
)

func TestMentions(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		text, name string
		want       bool
	}{
		{"what is the current_time?", "current_time", true},
		{"current_time", "current_time", true},
		{"`due_date`, please", "due_date", true},
		{"due_date's answer", "due_date", true},
		{"(order_status)", "order_status", true},
		{"the current_timezone", "current_time", false},
		{"my_current_time", "current_time", false},
		{"current_time-2", "current_time", false},
		{"time", "current_time", false},
		{"the time, then current_time", "time", true},
		{"current_time and time", "time", true},
		{"current_time", "time", false},
		{"", "x", false},
	} {
		if got := mentions(tt.text, tt.name); got != tt.want {
			t.Errorf("mentions(%q, %q) = %v, want %v", tt.text, tt.name, got, tt.want)
		}
	}
}

const orderParams = `{"type":"object","properties":{"order_id":{"type":"string","examples":["A-1001"]}},"required":["order_id"],"additionalProperties":false}`
const timeParamsInternal = `{"type":"object","properties":{"timezone":{"type":"string"}}}`

func TestDefaultToolCalls(t *testing.T) {
	t.Parallel()
	tools := []Tool{{Name: "current_time", Parameters: json.RawMessage(timeParamsInternal)}, {Name: "order_status", Parameters: json.RawMessage(orderParams)}}
	right := []ToolCallSpec{{Name: "current_time", Arguments: `{}`}, {Name: "order_status", Arguments: `{"order_id":"A-1001"}`}}
	wrong := []ToolCallSpec{{Name: "current_time", Arguments: `{"timezone":12345}`}, {Name: "order_status", Arguments: `{"order_id":12345}`}}
	for _, tt := range []struct {
		name, text, header string
		want               []ToolCallSpec
	}{
		{"none named", "hello", "", nil},
		{"one", "order_status?", "", right[1:]},
		{"both at once, in the tools' order", "order_status and current_time", "", right},
		{"wrong arguments", "order_status and current_time, with WRONG arguments", "", wrong},
		{"wrong, by header", "order_status and current_time", "wrong", wrong},
		{"valid, by header, over the message", "order_status with wrong arguments", "valid", right[1:]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &Request{Tools: tools, Messages: []Message{{Role: "user", Content: tt.text}}, Header: http.Header{}}
			if tt.header != "" {
				r.Header.Set(HeaderArguments, tt.header)
			}
			if got := Default(r).ToolCalls; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("calls %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestDefaultRetries: a call made with the wrong arguments that failed is
// made again with the sample ones, once; other failures are quoted.
func TestDefaultRetries(t *testing.T) {
	t.Parallel()
	tools := []Tool{{Name: "current_time", Parameters: json.RawMessage(timeParamsInternal)}, {Name: "order_status", Parameters: json.RawMessage(orderParams)}}
	conv := func(calls []ToolCall, results ...string) *Request {
		msgs := []Message{{Role: "user", Content: "q"}, {Role: "assistant", ToolCalls: calls}}
		for i, out := range results {
			msgs = append(msgs, Message{Role: "tool", ToolCallID: calls[i].ID, Content: out})
		}
		return &Request{Tools: tools, Messages: msgs, Header: http.Header{}}
	}
	wrongTime := ToolCall{ID: "c1", Name: "current_time", Arguments: `{"timezone":12345}`}
	wrongOrder := ToolCall{ID: "c2", Name: "order_status", Arguments: `{"order_id":12345}`}
	rightOrder := ToolCall{ID: "c3", Name: "order_status", Arguments: `{ "order_id": "A-1001" }`}
	for _, tt := range []struct {
		name      string
		r         *Request
		wantCalls []ToolCallSpec
		wantText  string
	}{
		{"both failed: both again", conv([]ToolCall{wrongTime, wrongOrder}, "error: bad timezone", "Error: no"),
			[]ToolCallSpec{{Name: "current_time", Arguments: `{}`}, {Name: "order_status", Arguments: `{"order_id":"A-1001"}`}}, ""},
		{"only the failed one again", conv([]ToolCall{wrongTime, wrongOrder}, "12:00", " error: the arguments do not match"),
			[]ToolCallSpec{{Name: "order_status", Arguments: `{"order_id":"A-1001"}`}}, ""},
		{"a failure with the sample arguments is quoted", conv([]ToolCall{rightOrder}, "error: the shop is down"),
			nil, "[simulated] The tool order_status returned: error: the shop is down."},
		{"a failure with other arguments is quoted", conv([]ToolCall{{ID: "c5", Name: "order_status", Arguments: `{"order_id":"Z-9"}`}}, "error: no such order"),
			nil, "[simulated] The tool order_status returned: error: no such order."},
		{"a success is quoted", conv([]ToolCall{wrongOrder}, "shipped"), nil, "[simulated] The tool order_status returned: shipped."},
		{"a tool no longer offered is not called", conv([]ToolCall{{ID: "c9", Name: "gone", Arguments: `{"x":1}`}}, "error: gone"),
			nil, "[simulated] The tool gone returned: error: gone."},
		{"the wrong arguments, spaced otherwise", conv([]ToolCall{{ID: "c4", Name: "order_status", Arguments: ` { "order_id" : 12345 } `}}, "error: order_id: wrong type"),
			[]ToolCallSpec{{Name: "order_status", Arguments: `{"order_id":"A-1001"}`}}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := Default(tt.r)
			if !reflect.DeepEqual(b.ToolCalls, tt.wantCalls) || b.Text != tt.wantText {
				t.Errorf("calls %+v, text %q; want %+v, %q", b.ToolCalls, b.Text, tt.wantCalls, tt.wantText)
			}
		})
	}
}
