package openai

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/agentstream/agentstream"
)

// The request body's struct types, as requestBody marshalled them with
// encoding/json before it wrote the body itself: the reference its output
// must equal byte for byte.
type (
	chatRequest struct {
		Model         string        `json:"model"`
		Messages      []chatMessage `json:"messages"`
		Tools         []chatTool    `json:"tools,omitempty"`
		Temperature   *float64      `json:"temperature,omitempty"`
		Stream        bool          `json:"stream"`
		StreamOptions streamOptions `json:"stream_options"`
	}
	streamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	}
	chatMessage struct {
		Role       string         `json:"role"`
		Content    *string        `json:"content,omitempty"`
		ToolCalls  []chatToolCall `json:"tool_calls,omitempty"`
		ToolCallID string         `json:"tool_call_id,omitempty"`
	}
	chatToolCall struct {
		ID       string           `json:"id"`
		Type     string           `json:"type"`
		Function chatFunctionCall `json:"function"`
	}
	chatFunctionCall struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	}
	chatTool struct {
		Type     string       `json:"type"`
		Function chatFunction `json:"function"`
	}
	chatFunction struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters"`
	}
)

// marshalledBody is requestBody as it was: the struct types above through
// json.Marshal. req must be valid (requestBody's errors are tested apart).
func marshalledBody(tb testing.TB, req agentstream.ModelRequest) []byte {
	tb.Helper()
	body := chatRequest{
		Model: req.Model, Temperature: req.Temperature,
		Stream: true, StreamOptions: streamOptions{IncludeUsage: true},
		Messages: make([]chatMessage, len(req.Messages)),
	}
	for i := range req.Messages {
		m := &req.Messages[i]
		out := &body.Messages[i]
		out.Role = string(m.Role)
		switch m.Role {
		case agentstream.RoleSystem, agentstream.RoleUser:
			out.Content = &m.Content
		case agentstream.RoleTool:
			out.Content, out.ToolCallID = &m.Content, m.ToolCallID
		case agentstream.RoleAssistant:
			if m.Content != "" || len(m.ToolCalls) == 0 {
				out.Content = &m.Content
			}
			for _, tc := range m.ToolCalls {
				args := tc.Arguments
				if args == "" {
					args = "{}"
				}
				out.ToolCalls = append(out.ToolCalls, chatToolCall{ID: tc.ID, Type: "function", Function: chatFunctionCall{Name: tc.Name, Arguments: args}})
			}
		}
	}
	for _, t := range req.Tools {
		params, err := functionParameters(t.Parameters)
		if err != nil {
			tb.Fatal(err)
		}
		body.Tools = append(body.Tools, chatTool{Type: "function", Function: chatFunction{Name: t.Name, Description: t.Description, Parameters: params}})
	}
	b, err := json.Marshal(body)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// oddText holds what JSON escapes: quotes, backslashes, controls, HTML's
// <, > and &, invalid UTF-8, U+2028 and U+2029, and plain multibyte text.
const oddText = "a \"quoted\" \\ line\nand\ttab\x01\x1f <b>&amp;</b> \xff\xfe bad \u2028\u2029 é 日本 🙂"

func TestRequestBodyAsMarshal(t *testing.T) {
	t.Parallel()
	user := func(s string) agentstream.Message { return agentstream.Message{Role: agentstream.RoleUser, Content: s} }
	for _, tc := range []struct {
		name string
		req  agentstream.ModelRequest
	}{
		{"short conversation", benchRequest()},
		{"odd text everywhere", agentstream.ModelRequest{Model: "m<" + oddText, Messages: []agentstream.Message{
			{Role: agentstream.RoleSystem, Content: oddText},
			user(oddText),
			{Role: agentstream.RoleAssistant, Content: oddText, ToolCalls: []agentstream.ToolCall{
				{ID: "c<1>", Name: "n&" + oddText, Arguments: `{"q":"<x>` + "\u2028" + `"}`},
				{ID: "c2", Name: "empty args"},
			}},
			{Role: agentstream.RoleTool, ToolCallID: "c<1>", Content: oddText},
			{Role: agentstream.RoleTool, Content: "no call id"},
			{Role: agentstream.RoleAssistant, ToolCalls: []agentstream.ToolCall{{ID: "c3", Name: "only a call", Arguments: "{}"}}},
			{Role: agentstream.RoleAssistant},
		}}},
		{"tools", agentstream.ModelRequest{Model: "m", Messages: []agentstream.Message{user("hi")}, Tools: []agentstream.ToolSpec{
			{Name: "current_time", Description: "The time <now> & " + oddText},
			{Name: "null schema", Parameters: json.RawMessage(" null ")},
			{Name: "spaced", Parameters: json.RawMessage(" {\n \"type\" : \"object\", \"properties\": {\"q\": {\"description\": \"<b> & \u2028\", \"maximum\": 1e400}} }\n")},
		}}},
		{"no messages", agentstream.ModelRequest{Model: "m"}},
	} {
		for _, temp := range []*float64{nil, ptr(0.0), ptr(0.7), ptr(1.0), ptr(-2.5), ptr(1e-7), ptr(1e21), ptr(123456789.125)} {
			req := tc.req
			req.Temperature = temp
			got, err := requestBody(req)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if want := marshalledBody(t, req); !bytes.Equal(got, want) {
				t.Errorf("%s, temperature %v:\n got %s\nwant %s", tc.name, temp, got, want)
			}
		}
	}
}

// FuzzRequestBody: for any texts, the body written is the one
// encoding/json marshals.
func FuzzRequestBody(f *testing.F) {
	f.Add("gpt", oddText, "c1", "tool", `{"a":1}`, " {\"d\": \"<x>\"} ", 0.5)
	f.Add("", "", "", "", "", "", 0.0)
	f.Fuzz(func(t *testing.T, model, text, callID, name, args, schema string, temp float64) {
		if model == "" {
			model = "m"
		}
		req := agentstream.ModelRequest{Model: model, Temperature: &temp, Messages: []agentstream.Message{
			{Role: agentstream.RoleSystem, Content: text},
			{Role: agentstream.RoleUser, Content: text + name},
			{Role: agentstream.RoleAssistant, Content: text, ToolCalls: []agentstream.ToolCall{{ID: callID, Name: name, Arguments: args}}},
			{Role: agentstream.RoleTool, ToolCallID: callID, Content: args},
		}, Tools: []agentstream.ToolSpec{{Name: name, Description: text, Parameters: json.RawMessage(schema)}}}
		if _, err := functionParameters(json.RawMessage(schema)); err != nil {
			req.Tools = nil
		}
		got, err := requestBody(req)
		if err != nil {
			if _, merr := json.Marshal(temp); merr == nil {
				t.Fatalf("requestBody: %v", err)
			}
			return // NaN or infinite: refused, as TestRequestBodyErrors checks
		}
		if want := marshalledBody(t, req); !bytes.Equal(got, want) {
			t.Errorf("\n got %s\nwant %s", got, want)
		}
	})
}
