package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Request is a chat completions request as the simulator received it.
type Request struct {
	Model    string
	Messages []Message
	Tools    []Tool
	Stream   bool
	// IncludeUsage is stream_options.include_usage.
	IncludeUsage bool
	Temperature  *float64
	// Header is the request's HTTP header.
	Header http.Header
}

// Message is one message of a Request. Content is the message's text; when
// the request sent content parts, it is their text parts joined.
type Message struct {
	Role       string
	Content    string
	Name       string
	ToolCalls  []ToolCall
	ToolCallID string
}

// ToolCall is a tool call of an assistant message of a Request.
type ToolCall struct {
	ID        string
	Name      string
	Arguments string
}

// Tool is a function tool offered by a Request. Parameters is its JSON
// Schema as sent.
type Tool struct {
	Name        string
	Description string
	Parameters  json.RawMessage
}

// LastMessage returns the request's last message, or the zero Message.
func (r *Request) LastMessage() Message {
	if len(r.Messages) == 0 {
		return Message{}
	}
	return r.Messages[len(r.Messages)-1]
}

// The request body as sent on the wire.
type (
	wireRequest struct {
		Model         string         `json:"model"`
		Messages      []wireMessage  `json:"messages"`
		Tools         []wireTool     `json:"tools"`
		Stream        bool           `json:"stream"`
		StreamOptions *streamOptions `json:"stream_options"`
		Temperature   *float64       `json:"temperature"`
	}
	streamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	}
	wireMessage struct {
		Role       string         `json:"role"`
		Content    wireContent    `json:"content"`
		Name       string         `json:"name"`
		ToolCalls  []wireToolCall `json:"tool_calls"`
		ToolCallID string         `json:"tool_call_id"`
	}
	wireToolCall struct {
		ID       string       `json:"id"`
		Type     string       `json:"type"`
		Function wireFunction `json:"function"`
	}
	wireFunction struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	}
	wireTool struct {
		Type     string           `json:"type"`
		Function wireToolFunction `json:"function"`
	}
	wireToolFunction struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	}
)

// wireContent is a message's content: a string, null, or an array of
// content parts whose text parts are kept.
type wireContent string

func (c *wireContent) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case len(data) == 0:
		return errors.New("empty content")
	case string(data) == "null":
		*c = ""
		return nil
	case data[0] == '"':
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*c = wireContent(s)
		return nil
	case data[0] == '[':
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(data, &parts); err != nil {
			return err
		}
		var b strings.Builder
		for _, p := range parts {
			if p.Type == "text" || p.Type == "" {
				b.WriteString(p.Text)
			}
		}
		*c = wireContent(b.String())
		return nil
	}
	return errors.New("content must be a string or an array of content parts")
}

// apiError is an error answered to the client in OpenAI's format.
type apiError struct {
	Status  int
	Message string
	Type    string
	Param   string
	Code    string
}

func (e *apiError) Error() string { return e.Message }

func invalid(param, code, format string, args ...any) *apiError {
	return &apiError{
		Status:  http.StatusBadRequest,
		Message: fmt.Sprintf(format, args...),
		Type:    "invalid_request_error",
		Param:   param,
		Code:    code,
	}
}

// parseRequest decodes and checks a chat completions request body. Strict
// adds the checks OpenAI makes of the conversation's shape.
func parseRequest(body []byte, strict bool) (*Request, *apiError) {
	var w wireRequest
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, jsonError(err)
	}
	if w.Model == "" {
		return nil, invalid("model", "missing_required_parameter", "you must provide a model parameter")
	}
	if len(w.Messages) == 0 {
		return nil, invalid("messages", "empty_array", "messages must contain at least one message")
	}
	r := &Request{
		Model:        w.Model,
		Stream:       w.Stream,
		IncludeUsage: w.StreamOptions != nil && w.StreamOptions.IncludeUsage,
		Temperature:  w.Temperature,
		Messages:     make([]Message, len(w.Messages)),
	}
	for i, m := range w.Messages {
		msg := Message{Role: m.Role, Content: string(m.Content), Name: m.Name, ToolCallID: m.ToolCallID}
		if len(m.ToolCalls) > 0 {
			msg.ToolCalls = make([]ToolCall, len(m.ToolCalls))
			for j, tc := range m.ToolCalls {
				msg.ToolCalls[j] = ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments}
			}
		}
		r.Messages[i] = msg
	}
	if len(w.Tools) > 0 {
		r.Tools = make([]Tool, len(w.Tools))
		for i, t := range w.Tools {
			r.Tools[i] = Tool{Name: t.Function.Name, Description: t.Function.Description, Parameters: t.Function.Parameters}
		}
	}
	if strict {
		if err := check(r, w.Tools); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// jsonError describes a decoding error without Go type names.
func jsonError(err error) *apiError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return invalid("", "invalid_json", "the request body is not valid JSON: %s (at byte %d)", syn.Error(), syn.Offset)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return invalid("", "invalid_json", "the request body must be a JSON object, not %s", typ.Value)
		}
		return invalid(field, "invalid_type", "invalid type for %s: got %s", field, typ.Value)
	}
	return invalid("", "invalid_json", "the request body is not a valid chat completions request: %s", err.Error())
}

// check makes the checks OpenAI makes of roles, tool call pairing, tool
// names and temperature.
func check(r *Request, tools []wireTool) *apiError {
	if t := r.Temperature; t != nil && (*t < 0 || *t > 2) {
		return invalid("temperature", "decimal_out_of_range", "temperature must be between 0 and 2, got %g", *t)
	}
	for i, t := range tools {
		if t.Type != "function" {
			return invalid(fmt.Sprintf("tools[%d].type", i), "invalid_value", "tools[%d].type must be \"function\", got %q", i, t.Type)
		}
		if !validToolName(t.Function.Name) {
			return invalid(fmt.Sprintf("tools[%d].function.name", i), "invalid_value",
				"tools[%d].function.name %q must be 1 to 64 letters, digits, underscores or dashes", i, t.Function.Name)
		}
		if p := bytes.TrimSpace(t.Function.Parameters); len(p) > 0 && p[0] != '{' {
			return invalid(fmt.Sprintf("tools[%d].function.parameters", i), "invalid_type",
				"tools[%d].function.parameters must be a JSON Schema object", i)
		}
	}
	// pending holds the tool call ids of the last assistant message that
	// tool messages have not answered yet.
	var pending []string
	var lastCalls map[string]bool
	for i, m := range r.Messages {
		param := fmt.Sprintf("messages[%d]", i)
		if m.Role != "tool" && len(pending) > 0 {
			return unanswered(param, pending)
		}
		switch m.Role {
		case "system", "developer", "user":
		case "assistant":
			lastCalls = nil
			for j, tc := range m.ToolCalls {
				if tc.ID == "" || tc.Name == "" {
					return invalid(fmt.Sprintf("%s.tool_calls[%d]", param, j), "missing_required_parameter",
						"%s.tool_calls[%d] must have an id and a function name", param, j)
				}
				if lastCalls == nil {
					lastCalls = make(map[string]bool)
				}
				lastCalls[tc.ID] = true
				pending = append(pending, tc.ID)
			}
		case "tool":
			if m.ToolCallID == "" {
				return invalid(param+".tool_call_id", "missing_required_parameter", "%s: a tool message must have a tool_call_id", param)
			}
			k := indexOf(pending, m.ToolCallID)
			if !lastCalls[m.ToolCallID] || k < 0 {
				return invalid(param+".role", "invalid_value",
					"%s: messages with role 'tool' must be a response to a preceding message with 'tool_calls' (no pending tool call %q)",
					param, m.ToolCallID)
			}
			pending = append(pending[:k], pending[k+1:]...)
		default:
			return invalid(param+".role", "invalid_value", "%s: unknown role %q", param, m.Role)
		}
	}
	if len(pending) > 0 {
		return unanswered("messages", pending)
	}
	return nil
}

func unanswered(param string, pending []string) *apiError {
	return invalid(param, "invalid_value",
		"an assistant message with tool_calls must be followed by tool messages responding to each tool_call_id; "+
			"the following tool_call_ids did not have response messages: %s", strings.Join(pending, ", "))
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func validToolName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
