package openai

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/agentstream/agentstream"
)

// The request body of a streamed chat completion, built here rather than
// through openai-go's parameter types: those marshal through reflection,
// 16 µs for a short conversation against 1.6 µs here
// (BenchmarkRequestBody), and under load openai-go's request path was a
// sixth of the server's CPU in a profile of short runs (BENCHMARKS.md,
// step 8). openai-go still sends the request (see Model.Stream).
// TestRequestSent checks the body field by field.
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
		Role string `json:"role"`
		// Content is nil only for an assistant message that only calls
		// tools: OpenAI requires content or tool_calls, and rejects
		// neither.
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

// emptySchema is sent for a tool without parameters: some servers require
// the field.
var emptySchema = json.RawMessage(`{"type":"object","properties":{}}`)

// requestBody encodes req as a streamed chat completions request.
// Errors are CodeInternal: a request the caller built wrong.
func requestBody(req agentstream.ModelRequest) ([]byte, error) {
	if req.Model == "" {
		return nil, agentstream.Errorf(agentstream.CodeInternal, "model request has no model name")
	}
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
			if len(m.ToolCalls) > 0 {
				out.ToolCalls = make([]chatToolCall, len(m.ToolCalls))
				for j, tc := range m.ToolCalls {
					args := tc.Arguments
					if args == "" {
						args = "{}" // arguments is a required string
					}
					out.ToolCalls[j] = chatToolCall{ID: tc.ID, Type: "function", Function: chatFunctionCall{Name: tc.Name, Arguments: args}}
				}
			}
		default:
			return nil, agentstream.Errorf(agentstream.CodeInternal, "model request has a message with role %q", m.Role)
		}
	}
	if len(req.Tools) > 0 {
		body.Tools = make([]chatTool, len(req.Tools))
		for i, t := range req.Tools {
			params, err := functionParameters(t.Parameters)
			if err != nil {
				return nil, agentstream.Wrap(agentstream.CodeInternal, err, "tool "+t.Name+" has an invalid parameters schema")
			}
			body.Tools[i] = chatTool{Type: "function", Function: chatFunction{Name: t.Name, Description: t.Description, Parameters: params}}
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		// A temperature that is NaN or infinite: JSON has no such number.
		return nil, agentstream.Wrap(agentstream.CodeInternal, err, "model request cannot be encoded")
	}
	return b, nil
}

// functionParameters checks a tool's JSON Schema, which is sent as
// written (numbers and key order included); none, or null, is an empty
// object schema.
func functionParameters(schema json.RawMessage) (json.RawMessage, error) {
	trimmed := bytes.TrimSpace(schema)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return emptySchema, nil
	}
	if trimmed[0] != '{' {
		return nil, errors.New("a parameters schema must be a JSON object")
	}
	if !json.Valid(trimmed) {
		return nil, errors.New("a parameters schema is not valid JSON")
	}
	return trimmed, nil
}
