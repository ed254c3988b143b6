package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/agent"
	"github.com/agentstream/agentstream/httpapi/wire"
)

// uiChatRequest is what the Vercel AI SDK's useChat (its
// DefaultChatTransport) posts to /api/chat: the chat's id, its whole
// conversation, what asked for an answer, and the fields of the
// transport's body option (agent, context and the run options here).
type uiChatRequest struct {
	ID        string            `json:"id"`
	Messages  []json.RawMessage `json:"messages"`
	Trigger   string            `json:"trigger"`
	MessageID string            `json:"messageId"`
	Agent     string            `json:"agent"`
	Context   map[string]any    `json:"context"`
	Multitask string            `json:"multitask"`
	OnDisc    string            `json:"on_disconnect"`
	Tools     json.RawMessage   `json:"tools"`
}

// uiMessage is what is read of the AI SDK's UIMessage, the last one: its
// other fields (id, metadata, and any a later SDK adds) are not needed.
type uiMessage struct {
	Role  string            `json:"role"`
	Parts []json.RawMessage `json:"parts"`
}

// POST /api/chat starts a run for useChat and answers with the AI SDK's UI
// message stream. The chat's id is its thread (a client-chosen id of this
// user; unknown, it is created). Only the last message is read, the
// user's new one: the thread already holds the rest of the conversation,
// so the history the client sends again is ignored. Client-side tools and
// regenerating an answer are refused until agentstream supports them.
// startUIChat starts the run of a useChat request, or answers why not
// (nil); see follow.
//
//go:noinline
func (s *Server) startUIChat(w http.ResponseWriter, r *http.Request, user string) *follow {
	var req uiChatRequest
	if err := s.decodeBody(w, r, &req, true); err != nil {
		s.writeError(w, r, err)
		return nil
	}
	input, err := req.input()
	if err == nil {
		err = checkRunOptions(req.OnDisc, req.Multitask)
	}
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	in := new(agent.Inline)
	run, err := s.startChat(r, user, req.ID, agentStart{agent: req.Agent, input: input, multitask: req.Multitask, context: req.Context, inline: in})
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	return &follow{run: &run, enc: wire.NewUI, onDisconnect: req.OnDisc, inline: in}
}

// input checks the request and returns the run's input: the text of its
// last message, which must be the user's.
func (req *uiChatRequest) input() (string, error) {
	invalid := func(format string, args ...any) (string, error) {
		return "", agentstream.Errorf(agentstream.CodeInvalidRequest, format, args...)
	}
	switch req.Trigger {
	case "", "submit-message":
	case "regenerate-message":
		return invalid(`trigger "regenerate-message" is not supported yet: send the question again as a new user message`)
	default:
		return invalid(`field "trigger" must be "submit-message", not %q`, req.Trigger)
	}
	if req.ID == "" {
		return invalid(`field "id" is required: the chat's id, which names its thread`)
	}
	if len(req.Tools) > 0 && string(req.Tools) != "null" {
		return invalid(`client-side tools are not supported yet: field "tools" must be absent; the agent's tools run on the server`)
	}
	if len(req.Messages) == 0 {
		return invalid(`field "messages" must hold the user's new message last`)
	}
	n := len(req.Messages) - 1
	var last uiMessage
	if err := json.Unmarshal(req.Messages[n], &last); err != nil {
		return invalid("messages[%d] must be a UIMessage {id, role, parts}: %v", n, err)
	}
	if last.Role != "user" {
		// useChat sends the assistant's message last when the client
		// added a tool's result (addToolResult): a client-side tool.
		return invalid(`the last message must be the user's, not %q: client-side tools are not supported yet`, last.Role)
	}
	var text []string
	for i, raw := range last.Parts {
		var p struct {
			Type string  `json:"type"`
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return invalid("messages[%d].parts[%d]: %v", n, i, err)
		}
		switch {
		case p.Type == "text" && p.Text != nil:
			text = append(text, *p.Text)
		case p.Type == "step-start":
		default:
			return invalid("messages[%d].parts[%d]: a user's message may hold text parts only, not %q", n, i, p.Type)
		}
	}
	input := strings.Join(text, "\n")
	if strings.TrimSpace(input) == "" {
		return invalid("the last message has no text")
	}
	return input, nil
}

// uiChatStream is what useChat({resume: true}) asks for after a page
// reload: the thread's active run, from its start, in the UI message
// stream; 204 when it has none (or there is no such thread yet, as for a
// chat that never sent a message).
func (s *Server) uiChatStream(w http.ResponseWriter, r *http.Request, user string) {
	skipBody(w, r)
	t, err := resolveThread(r.Context(), s.store, user, r.PathValue("id"))
	if agentstream.AsError(err).Code == agentstream.CodeNotFound {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// The thread's running run is the oldest active one among its newest
	// (queued runs wait behind it).
	runs, err := s.store.ListRuns(r.Context(), t.ID, nil, maxActiveRuns)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var run agentstream.Run
	for _, rn := range runs {
		if !rn.Status.Terminal() {
			run = rn
		}
	}
	if run.ID == "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	release := s.readers.Attach(run.ID)
	defer release()
	if s.opts.Presence != nil {
		defer s.opts.Presence.Attach(run.ID)()
	}
	run.ThreadID = t.PublicID()
	s.streamRun(w, r, &run, 0, wire.NewUI)
}

// maxActiveRuns is how many of a thread's newest runs are looked at for
// its running one: a thread has one running run and a few queued.
const maxActiveRuns = 16
