package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/agent"
	"github.com/agentstream/agentstream/httpapi/wire"
)

// aguiInput is the AG-UI protocol's RunAgentInput (@ag-ui/core 1.0), as
// far as agentstream reads it. Its other fields are ignored: state (an
// agentstream agent keeps no shared state), forwardedProps,
// parentRunId and protocolVersion (docs/protocol.md, "AG-UI").
type aguiInput struct {
	ThreadID *string         `json:"threadId"`
	RunID    *string         `json:"runId"`
	Messages []aguiMessageIn `json:"messages"`
	Tools    []any           `json:"tools"`
	Context  []aguiContext   `json:"context"`
	Resume   []any           `json:"resume"`
}

type aguiMessageIn struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type aguiContext struct {
	Description *string `json:"description"`
	Value       *string `json:"value"`
}

// POST /ag-ui/{agent}: an AG-UI client (HttpAgent) running
// the agent on the thread threadId names, created for the user when they
// have none (client-chosen ids are scoped to their user, as /v1/chat's).
// The thread keeps the history: only the request's last message, a user
// one, is the run's input; the earlier messages are ignored. The answer
// is the run's AG-UI events, whose runId is the client's; agentstream's
// run id rides in X-Run-Id and the events' id: lines, so the stream
// resumes on GET /v1/runs/{id}/events?format=ag-ui. startAGUIRun starts
// the run of an AG-UI request, or answers why not (nil); see follow.
//
//go:noinline
func (s *Server) startAGUIRun(w http.ResponseWriter, r *http.Request, user string) *follow {
	var in aguiInput
	if err := s.decodeBody(w, r, &in, false); err != nil {
		s.writeError(w, r, err)
		return nil
	}
	input, runCtx, err := in.check()
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	inline := new(agent.Inline)
	run, err := s.startChat(r, user, *in.ThreadID, agentStart{agent: r.PathValue("agent"), input: input, context: runCtx, inline: inline})
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	return &follow{run: &run, enc: wire.NewAGUIRun(*in.RunID), inline: inline}
}

// check returns the run's input and context of a RunAgentInput, or why
// it cannot start a run.
func (in aguiInput) check() (string, map[string]any, error) {
	bad := func(f string, a ...any) (string, map[string]any, error) {
		return "", nil, agentstream.Errorf(agentstream.CodeInvalidRequest, f, a...)
	}
	if in.ThreadID == nil || *in.ThreadID == "" {
		return bad(`field "threadId" is required`)
	}
	if in.RunID == nil {
		return bad(`field "runId" is required`)
	}
	if len(in.Tools) > 0 {
		return bad(`field "tools": client-side tools are not supported yet; send "tools": [] and configure the agent's tools on the server`)
	}
	if len(in.Resume) > 0 {
		return bad(`field "resume": agentstream runs never stop for an interrupt, so there is none to resume`)
	}
	if len(in.Messages) == 0 {
		return bad(`field "messages" must end with the user's message`)
	}
	last := in.Messages[len(in.Messages)-1]
	if last.Role != "user" {
		return bad(`the last of "messages" must be the user's message (role "user"), not %q; regenerating an answer is not supported yet`, last.Role)
	}
	input, err := aguiText(last.Content)
	if err != nil {
		return "", nil, err
	}
	runCtx := make(map[string]any, len(in.Context))
	for i, c := range in.Context {
		if c.Description == nil || c.Value == nil || *c.Description == "" {
			return bad(`"context"[%d] must be {"description": "…", "value": "…"} with a description`, i)
		}
		runCtx[*c.Description] = *c.Value
	}
	return input, runCtx, nil
}

// aguiText is a user message's text: its content, a string or an array
// of parts of which only text parts are taken.
func aguiText(content json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(content, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if json.Unmarshal(content, &parts) != nil {
		return "", agentstream.Errorf(agentstream.CodeInvalidRequest, `the user message's "content" must be a string or an array of parts`)
	}
	var b strings.Builder
	for i, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return "", agentstream.Errorf(agentstream.CodeInvalidRequest, `the user message's part %d is %q: only text parts are supported`, i, p.Type)
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(*p.Text)
	}
	return b.String(), nil
}
