package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/agent"
	"github.com/agentstream/agentstream/httpapi/wire"
)

// openAIRoutes answer their errors in OpenAI's shape
// ({"error": {"message", "type", "param", "code"}}), so that OpenAI's SDKs
// raise their own error classes; the status is the API's as everywhere.
var openAIRoutes = map[string]bool{
	"POST /v1/chat/completions": true,
	"GET /v1/models":            true,
	"GET /v1/models/{model}":    true,
}

// chatCompletionRequest is the body of POST /v1/chat/completions: OpenAI's
// fields agentstream uses, those it refuses, and its own run options.
// Every other field (temperature, top_p, max_tokens, stop, seed,
// response_format, user, metadata, …) is accepted and ignored: the
// agent's model settings are its own.
type chatCompletionRequest struct {
	Model         string              `json:"model"`
	Messages      []openAIChatMessage `json:"messages"`
	Stream        bool                `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	// Refused until client-side tools are supported.
	Tools     []json.RawMessage `json:"tools"`
	Functions []json.RawMessage `json:"functions"`
	N         *int              `json:"n"`
	// agentstream's run options, as /v1/chat takes them.
	Multitask    string `json:"multitask"`
	OnDisconnect string `json:"on_disconnect"`
}

// openAIChatMessage is one of the request's messages. Content is a string
// or an array of content parts, of which only text parts are taken.
type openAIChatMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCalls  json.RawMessage `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
}

// text is the message's text: its string content, or its text parts
// joined.
func (m openAIChatMessage) text(i int) (string, error) {
	if len(m.Content) == 0 || string(m.Content) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(m.Content, &parts); err != nil {
		return "", agentstream.Errorf(agentstream.CodeInvalidRequest, "messages[%d].content must be a string or an array of content parts", i)
	}
	var b strings.Builder
	for j, p := range parts {
		if p.Type != "text" {
			return "", agentstream.Errorf(agentstream.CodeInvalidRequest, "messages[%d].content[%d] is a %q part; only text parts are supported", i, j, p.Type)
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}

// ThreadHeader binds a chat completion to a thread: the request's last
// user message is a run on the user's thread of that id (created when
// they have none), and the response's X-Thread-Id names it too.
const ThreadHeader = "X-Thread-Id"

// chatInput is what a chat completion's messages make: the run's input
// (the last message, which must be the user's) and the conversation
// before it (user and assistant messages with text, for a new thread;
// system and developer messages are dropped: the agent's instructions
// are its own).
func chatInput(msgs []openAIChatMessage) (string, []agentstream.Message, error) {
	if len(msgs) == 0 {
		return "", nil, agentstream.Errorf(agentstream.CodeInvalidRequest, `field "messages" must hold at least one message`)
	}
	var history []agentstream.Message
	for i, m := range msgs {
		if m.Role == "tool" || m.Role == "function" || (len(m.ToolCalls) > 0 && string(m.ToolCalls) != "null" && string(m.ToolCalls) != "[]") {
			return "", nil, agentstream.Errorf(agentstream.CodeInvalidRequest,
				"messages[%d]: client-side tool calls are not supported; the agent's tools run on the server", i)
		}
		text, err := m.text(i)
		if err != nil {
			return "", nil, err
		}
		switch m.Role {
		case "system", "developer":
			if i == len(msgs)-1 {
				break
			}
			continue
		case "user", "assistant":
		default:
			return "", nil, agentstream.Errorf(agentstream.CodeInvalidRequest,
				"messages[%d].role must be system, developer, user or assistant, not %q", i, m.Role)
		}
		if i == len(msgs)-1 {
			if m.Role != "user" {
				return "", nil, agentstream.Errorf(agentstream.CodeInvalidRequest, "the last message must be the user's (role \"user\"), not %q", m.Role)
			}
			if strings.TrimSpace(text) == "" {
				return "", nil, agentstream.Errorf(agentstream.CodeInvalidRequest, "the last message has no text")
			}
			return text, history, nil
		}
		if text != "" {
			history = append(history, agentstream.Message{Role: agentstream.Role(m.Role), Content: text})
		}
	}
	return "", nil, agentstream.Errorf(agentstream.CodeInvalidRequest, "the last message must be the user's (role \"user\")")
}

// OpenAI's POST /v1/chat/completions: model names the
// agent, the last user message is the run's input, and the answer is
// streamed as chat.completion.chunk objects, or answered whole.
// startCompletion starts the run of a chat completion request, or answers
// why not (nil); see follow.
//
//go:noinline
func (s *Server) startCompletion(w http.ResponseWriter, r *http.Request, user string) *follow {
	var req chatCompletionRequest
	if err := s.decodeBody(w, r, &req, false); err != nil {
		s.writeError(w, r, err)
		return nil
	}
	if err := checkChatCompletion(req); err != nil {
		s.writeError(w, r, err)
		return nil
	}
	if _, err := s.runner.Agent(req.Model); err != nil {
		s.writeError(w, r, agentstream.Errorf(agentstream.CodeNotFound, "the model %q does not exist: models are agentstream's agents (GET /v1/models)", req.Model))
		return nil
	}
	input, history, err := chatInput(req.Messages)
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	if err := checkRunOptions(req.OnDisconnect, req.Multitask); err != nil {
		s.writeError(w, r, err)
		return nil
	}
	// A streamed answer executes on this request's goroutine when it can
	// (agent.Inline); a whole one is waited for.
	var in *agent.Inline
	if req.Stream {
		in = new(agent.Inline)
	}
	run, err := s.startChat(r, user, r.Header.Get(ThreadHeader), agentStart{agent: req.Model, input: input, multitask: req.Multitask, history: history, inline: in})
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	if !req.Stream {
		return &follow{run: &run, onDisconnect: req.OnDisconnect, whole: true}
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	return &follow{run: &run, enc: func(st wire.Stream) wire.Encoder { return wire.NewOpenAIStream(st, includeUsage) }, onDisconnect: req.OnDisconnect, inline: in}
}

func checkChatCompletion(req chatCompletionRequest) error {
	if req.Model == "" {
		return agentstream.Errorf(agentstream.CodeInvalidRequest, `field "model" is required: the name of an agent (GET /v1/models)`)
	}
	if len(req.Tools) > 0 || len(req.Functions) > 0 {
		return agentstream.Errorf(agentstream.CodeInvalidRequest, "client-side tools (tools, functions) are not supported: the agent's tools run on the server")
	}
	if req.N != nil && *req.N != 1 {
		return agentstream.Errorf(agentstream.CodeInvalidRequest, `field "n" must be 1: a run gives one answer`)
	}
	return nil
}

// chatCompletion is the whole answer of a chat completion not streamed.
type chatCompletion struct {
	ID      string                 `json:"id"`
	Object  string                 `json:"object"`
	Created int64                  `json:"created"`
	Model   string                 `json:"model"`
	Choices []chatCompletionChoice `json:"choices"`
	Usage   wire.OpenAIUsage       `json:"usage"`
}

type chatCompletionChoice struct {
	Index        int               `json:"index"`
	Message      chatCompletionMsg `json:"message"`
	FinishReason string            `json:"finish_reason"`
	Logprobs     *struct{}         `json:"logprobs"`
}

type chatCompletionMsg struct {
	Role    string  `json:"role"`
	Content string  `json:"content"`
	Refusal *string `json:"refusal"`
}

// completeRun waits for the run's end and answers it whole: the text the
// stream would have sent, or the run's error in OpenAI's shape with its
// status. A client that leaves first is treated as a stream's would be
// (on_disconnect).
func (s *Server) completeRun(w http.ResponseWriter, r *http.Request, run agentstream.Run, onDisconnect string) {
	if onDisconnect == "" {
		onDisconnect = s.opts.OnDisconnect
	}
	ans, err := s.collectRun(r.Context(), run)
	if err != nil {
		if r.Context().Err() != nil && onDisconnect == OnDisconnectCancel {
			s.cancelAfterGrace(run.ID)
		}
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("X-Run-Id", run.ID)
	w.Header().Set("X-Thread-Id", run.ThreadID)
	if ans.End.Status != agentstream.RunCompleted {
		e := agentstream.ErrorInfo{Code: agentstream.CodeInternal, Message: "the run ended without an answer"}
		if ans.End.Error != nil {
			e = *ans.End.Error
		}
		s.writeError(w, r, agentstream.Errorf(e.Code, "%s", e.Message))
		return
	}
	writeJSON(w, http.StatusOK, chatCompletion{
		ID: wire.OpenAICompletionID(run.ID), Object: "chat.completion", Created: run.CreatedAt.Unix(), Model: run.Agent,
		Choices: []chatCompletionChoice{{Message: chatCompletionMsg{Role: "assistant", Content: ans.Content()}, FinishReason: ans.FinishReason()}},
		Usage:   wire.NewOpenAIUsage(ans.End.Usage),
	})
}

// collectRun reads the run's events until its terminal event, as a
// stream of it would (the end rebuilt from the store when the log no
// longer has it), into the answer they make.
func (s *Server) collectRun(ctx context.Context, run agentstream.Run) (*wire.OpenAIAnswer, error) {
	ans := &wire.OpenAIAnswer{}
	fromStore := func(after int64) bool {
		evs, ok := s.storedEnd(ctx, run, after)
		for _, ev := range evs {
			ans.Add(ev)
		}
		return ok && ans.End != nil
	}
	var after int64
	// endedQuietly counts silent heartbeats at which the store says the
	// run ended though its log has not: at two, the end comes from the
	// store, as streamRun does.
	endedQuietly := 0
	hb := newPeriod(ctx, s.opts.Heartbeat)
	defer hb.stop()
	for {
		evs, end, err := s.log.Read(hb.ctx, run.ID, after, readBatch)
		switch {
		case ctx.Err() != nil:
			return nil, agentstream.Wrap(agentstream.CodeCancelled, ctx.Err(), "the request ended before the run did")
		case errors.Is(err, context.DeadlineExceeded):
			hb.renew()
			if stored, err := s.store.GetRun(ctx, run.UserID, run.ID); err == nil && stored.Status.Terminal() {
				if endedQuietly++; endedQuietly >= 2 && fromStore(after) {
					return ans, nil
				}
			} else {
				endedQuietly = 0
			}
			continue
		case errors.Is(err, agentstream.ErrNotFound), errors.Is(err, agentstream.ErrGone):
			if fromStore(after) {
				return ans, nil
			}
			// The run goes on without a log to read: look again in a
			// heartbeat.
			select {
			case <-ctx.Done():
			case <-hb.ctx.Done():
				hb.renew()
			}
			continue
		case err != nil:
			return nil, err
		}
		for _, ev := range evs {
			ans.Add(ev)
			after = ev.Seq
		}
		if end {
			return ans, nil
		}
	}
}

// openAIModel is an agent as OpenAI's model list shows it.
type openAIModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func modelOf(a agentstream.Agent) openAIModel {
	// Agents have no creation time: 0, as OpenAI's SDKs need a number.
	return openAIModel{ID: a.Name, Object: "model", OwnedBy: "agentstream"}
}

// listModels is OpenAI's GET /v1/models: the agents, by name.
func (s *Server) listModels(w http.ResponseWriter, _ *http.Request, _ string) {
	agents := s.runner.Agents()
	sort.Slice(agents, func(i, j int) bool { return agents[i].Name < agents[j].Name })
	out := make([]openAIModel, 0, len(agents))
	for _, a := range agents {
		out = append(out, modelOf(a))
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out})
}

// getModel is OpenAI's GET /v1/models/{model}.
func (s *Server) getModel(w http.ResponseWriter, r *http.Request, _ string) {
	name := r.PathValue("model")
	a, err := s.runner.Agent(name)
	if err != nil || name == "" {
		s.writeError(w, r, agentstream.Errorf(agentstream.CodeNotFound, "the model %q does not exist", name))
		return
	}
	writeJSON(w, http.StatusOK, modelOf(a))
}
