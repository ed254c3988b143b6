package openai

import (
	"encoding/json"

	"github.com/agentstream/agentstream"
	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/param"
	"github.com/openai/openai-go/v3/shared"
)

// buildParams turns a ModelRequest into chat completions parameters.
// Errors are CodeInternal: a request the caller built wrong.
func buildParams(req agentstream.ModelRequest) (oai.ChatCompletionNewParams, error) {
	var p oai.ChatCompletionNewParams
	if req.Model == "" {
		return p, agentstream.Errorf(agentstream.CodeInternal, "model request has no model name")
	}
	p.Model = req.Model
	p.StreamOptions.IncludeUsage = param.NewOpt(true)
	if req.Temperature != nil {
		p.Temperature = param.NewOpt(*req.Temperature)
	}
	p.Messages = make([]oai.ChatCompletionMessageParamUnion, 0, len(req.Messages))
	for i := range req.Messages {
		m, err := messageParam(&req.Messages[i])
		if err != nil {
			return p, err
		}
		p.Messages = append(p.Messages, m)
	}
	if len(req.Tools) > 0 {
		p.Tools = make([]oai.ChatCompletionToolUnionParam, 0, len(req.Tools))
		for _, t := range req.Tools {
			params, err := functionParameters(t.Parameters)
			if err != nil {
				return p, agentstream.Wrap(agentstream.CodeInternal, err, "tool "+t.Name+" has an invalid parameters schema")
			}
			def := shared.FunctionDefinitionParam{Name: t.Name, Parameters: params}
			if t.Description != "" {
				def.Description = param.NewOpt(t.Description)
			}
			p.Tools = append(p.Tools, oai.ChatCompletionFunctionTool(def))
		}
	}
	return p, nil
}

func messageParam(m *agentstream.Message) (oai.ChatCompletionMessageParamUnion, error) {
	switch m.Role {
	case agentstream.RoleSystem:
		return oai.SystemMessage(m.Content), nil
	case agentstream.RoleUser:
		return oai.UserMessage(m.Content), nil
	case agentstream.RoleTool:
		return oai.ToolMessage(m.Content, m.ToolCallID), nil
	case agentstream.RoleAssistant:
		var a oai.ChatCompletionAssistantMessageParam
		// Content is omitted when the message only calls tools: OpenAI
		// requires content or tool_calls, and rejects neither.
		if m.Content != "" || len(m.ToolCalls) == 0 {
			a.Content.OfString = param.NewOpt(m.Content)
		}
		if len(m.ToolCalls) > 0 {
			a.ToolCalls = make([]oai.ChatCompletionMessageToolCallUnionParam, len(m.ToolCalls))
			for i, tc := range m.ToolCalls {
				args := tc.Arguments
				if args == "" {
					args = "{}" // arguments is a required string
				}
				a.ToolCalls[i].OfFunction = &oai.ChatCompletionMessageFunctionToolCallParam{
					ID: tc.ID,
					Function: oai.ChatCompletionMessageFunctionToolCallFunctionParam{
						Name:      tc.Name,
						Arguments: args,
					},
				}
			}
		}
		return oai.ChatCompletionMessageParamUnion{OfAssistant: &a}, nil
	}
	return oai.ChatCompletionMessageParamUnion{}, agentstream.Errorf(agentstream.CodeInternal, "model request has a message with role %q", m.Role)
}

// emptySchema is sent for a tool without parameters: some servers require
// the field.
var emptySchema = shared.FunctionParameters{"type": "object", "properties": map[string]any{}}

// functionParameters converts a JSON Schema object. Its members are kept
// as raw JSON, so the schema is sent as written (numbers and nested key
// order included) without being decoded.
func functionParameters(schema json.RawMessage) (shared.FunctionParameters, error) {
	if len(schema) == 0 || string(schema) == "null" {
		return emptySchema, nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(schema, &members); err != nil {
		return nil, err
	}
	if members == nil {
		return emptySchema, nil
	}
	params := make(shared.FunctionParameters, len(members))
	for k, v := range members {
		params[k] = v
	}
	return params, nil
}
