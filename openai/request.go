package openai

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/jsonstr"
)

// The request body of a streamed chat completion, written here byte for
// byte as encoding/json would marshal it (TestRequestBodyAsMarshal and
// FuzzRequestBody check that against the struct types it used to be
// marshalled from): not through openai-go's parameter types, which
// marshal through reflection (16 µs for a short conversation), nor through
// encoding/json, whose reflection and depth grew the stack of every run's
// goroutine (runtime.copystack) and cost a share of the server's CPU
// proportional to the history sent (BenchmarkRequestBody).
// openai-go still sends the request (see Model.Stream). TestRequestSent
// checks the body field by field.

// emptySchema is sent for a tool without parameters: some servers require
// the field.
var emptySchema = json.RawMessage(`{"type":"object","properties":{}}`)

// requestBody encodes req as a streamed chat completions request.
// Errors are CodeInternal: a request the caller built wrong.
func requestBody(req agentstream.ModelRequest) ([]byte, error) {
	if req.Model == "" {
		return nil, agentstream.Errorf(agentstream.CodeInternal, "model request has no model name")
	}
	var temperature []byte
	if req.Temperature != nil {
		t, err := json.Marshal(*req.Temperature)
		if err != nil {
			// NaN or infinite: JSON has no such number.
			return nil, agentstream.Wrap(agentstream.CodeInternal, err, "model request cannot be encoded")
		}
		temperature = t
	}
	size := 128 + len(req.Model)
	for i := range req.Messages {
		size += 64 + len(req.Messages[i].Content)
	}
	b := make([]byte, 0, size)
	b = append(b, `{"model":`...)
	b = jsonstr.Append(b, req.Model, true)
	b = append(b, `,"messages":[`...)
	for i := range req.Messages {
		m := &req.Messages[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"role":`...)
		b = jsonstr.Append(b, string(m.Role), true)
		switch m.Role {
		case agentstream.RoleSystem, agentstream.RoleUser:
			b = appendContent(b, m.Content)
		case agentstream.RoleTool:
			b = appendContent(b, m.Content)
			if m.ToolCallID != "" {
				b = append(b, `,"tool_call_id":`...)
				b = jsonstr.Append(b, m.ToolCallID, true)
			}
		case agentstream.RoleAssistant:
			// OpenAI requires content or tool calls, and rejects neither.
			if m.Content != "" || len(m.ToolCalls) == 0 {
				b = appendContent(b, m.Content)
			}
			if len(m.ToolCalls) > 0 {
				b = append(b, `,"tool_calls":[`...)
				for j, tc := range m.ToolCalls {
					if j > 0 {
						b = append(b, ',')
					}
					args := tc.Arguments
					if args == "" {
						args = "{}" // arguments is a required string
					}
					b = append(b, `{"id":`...)
					b = jsonstr.Append(b, tc.ID, true)
					b = append(b, `,"type":"function","function":{"name":`...)
					b = jsonstr.Append(b, tc.Name, true)
					b = append(b, `,"arguments":`...)
					b = jsonstr.Append(b, args, true)
					b = append(b, "}}"...)
				}
				b = append(b, ']')
			}
		default:
			return nil, agentstream.Errorf(agentstream.CodeInternal, "model request has a message with role %q", m.Role)
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	if len(req.Tools) > 0 {
		b = append(b, `,"tools":[`...)
		for i, t := range req.Tools {
			params, err := functionParameters(t.Parameters)
			if err != nil {
				return nil, agentstream.Wrap(agentstream.CodeInternal, err, "tool "+t.Name+" has an invalid parameters schema")
			}
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"type":"function","function":{"name":`...)
			b = jsonstr.Append(b, t.Name, true)
			if t.Description != "" {
				b = append(b, `,"description":`...)
				b = jsonstr.Append(b, t.Description, true)
			}
			b = append(b, `,"parameters":`...)
			b = appendRaw(b, params)
			b = append(b, "}}"...)
		}
		b = append(b, ']')
	}
	if temperature != nil {
		b = append(b, `,"temperature":`...)
		b = append(b, temperature...)
	}
	b = append(b, `,"stream":true,"stream_options":{"include_usage":true}}`...)
	return b, nil
}

func appendContent(b []byte, content string) []byte {
	b = append(b, `,"content":`...)
	return jsonstr.Append(b, content, true)
}

// appendRaw appends raw, valid JSON as encoding/json marshals a
// json.RawMessage: compacted, with <, >, &, U+2028 and U+2029 escaped.
func appendRaw(b, raw []byte) []byte {
	var compact bytes.Buffer
	compact.Grow(len(raw))
	_ = json.Compact(&compact, raw) // raw is valid: see functionParameters
	out := bytes.NewBuffer(b)
	json.HTMLEscape(out, compact.Bytes())
	return out.Bytes()
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
