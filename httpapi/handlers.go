package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/agent"
)

type agentInfo struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Model       string   `json:"model"`
	Tools       []string `json:"tools"`
	Default     bool     `json:"default"`
}

func (s *Server) listAgents(w http.ResponseWriter, _ *http.Request, _ string) {
	agents := s.runner.Agents()
	sort.Slice(agents, func(i, j int) bool { return agents[i].Name < agents[j].Name })
	out := make([]agentInfo, 0, len(agents))
	for _, a := range agents {
		tools := a.Tools
		if tools == nil {
			tools = []string{}
		}
		out = append(out, agentInfo{a.Name, a.Description, a.Model, tools, a.Name == s.runner.DefaultAgent()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out})
}

type createThreadRequest struct {
	Agent    string         `json:"agent"`
	Title    string         `json:"title"`
	Metadata map[string]any `json:"metadata"`
	Context  map[string]any `json:"context"`
}

func (s *Server) createThread(w http.ResponseWriter, r *http.Request, user string) {
	var req createThreadRequest
	if err := s.decodeBody(w, r, &req, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := s.newThread(user, "", req)
	if err == nil {
		err = s.store.CreateThread(r.Context(), t)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.threads.put(t)
	writeJSON(w, http.StatusCreated, t)
}

// newThread returns a thread for user, not yet stored.
func (s *Server) newThread(user, id string, req createThreadRequest) (agentstream.Thread, error) {
	a, err := s.runner.Agent(req.Agent)
	if err != nil {
		return agentstream.Thread{}, err
	}
	if id == "" {
		id = agentstream.NewID("thr_")
	}
	now := timeNow()
	return agentstream.Thread{
		ID: id, UserID: user, Agent: a.Name, Title: req.Title,
		Metadata: req.Metadata, Context: req.Context, CreatedAt: now, UpdatedAt: now,
	}, nil
}

type agentStart struct {
	agent, input, multitask string
	context                 map[string]any
}

// startChat starts a run for /v1/chat on the thread the client named, on a
// thread of that id created for this user when it is unknown, or on a new
// thread. The thread is created only once the run is accepted. A thread
// of another user is answered as not found.
func (s *Server) startChat(r *http.Request, user, threadID string, a agentStart) (agentstream.Run, error) {
	req := agent.StartRequest{UserID: user, Agent: a.agent, Input: a.input, Context: a.context, Multitask: a.multitask}
	// Two tries: a first request racing another one that creates the same
	// thread id finds the thread on the second.
	for range 2 {
		t, err := agentstream.Thread{}, error(agentstream.ErrNotFound)
		if threadID != "" {
			t, err = s.threads.forRun(r.Context(), s.store, user, threadID)
		}
		switch {
		case err == nil:
			req.Thread, req.NewThread = t, false
		case errors.Is(err, agentstream.ErrNotFound):
			if req.Thread, err = s.newThread(user, threadID, createThreadRequest{Agent: a.agent}); err != nil {
				return agentstream.Run{}, err
			}
			req.NewThread = true
		default:
			return agentstream.Run{}, err
		}
		run, err := s.runner.Start(r.Context(), req)
		if err == nil && req.NewThread {
			s.threads.put(req.Thread) // created by Start
		}
		if !errors.Is(err, agent.ErrThreadTaken) {
			return run, err
		}
		if threadID == "" {
			return agentstream.Run{}, err // a fresh random id cannot be taken
		}
	}
	return agentstream.Run{}, agentstream.Errorf(agentstream.CodeNotFound, "thread %q not found", threadID)
}

func (s *Server) getThread(w http.ResponseWriter, r *http.Request, user string) {
	t, err := s.store.GetThread(r.Context(), user, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) listMessages(w http.ResponseWriter, r *http.Request, user string) {
	t, err := s.store.GetThread(r.Context(), user, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	msgs, err := s.store.ListMessages(r.Context(), t.ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if msgs == nil {
		msgs = []agentstream.Message{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": msgs})
}

type createRunRequest struct {
	Input        *string        `json:"input"`
	Agent        string         `json:"agent"`
	Context      map[string]any `json:"context"`
	OnDisconnect string         `json:"on_disconnect"`
	Multitask    string         `json:"multitask"`
}

// Disconnect policies: what a run does when the client that started it leaves.
const (
	OnDisconnectContinue = "continue"
	OnDisconnectCancel   = "cancel"
)

func checkEnum(field, v string, allowed ...string) error {
	if v == "" {
		return nil
	}
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return agentstream.Errorf(agentstream.CodeInvalidRequest, "field %q must be one of %s, not %q", field, strings.Join(allowed, ", "), v)
}

// checkRunOptions checks the run options both run-starting endpoints take.
func checkRunOptions(onDisconnect, multitask string) error {
	if err := checkEnum("on_disconnect", onDisconnect, OnDisconnectContinue, OnDisconnectCancel); err != nil {
		return err
	}
	return checkEnum("multitask", multitask, agent.MultitaskReject, agent.MultitaskEnqueue, agent.MultitaskInterrupt)
}

func (s *Server) createRun(w http.ResponseWriter, r *http.Request, user string) {
	var req createRunRequest
	if err := s.decodeBody(w, r, &req, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Input == nil {
		s.writeError(w, r, agentstream.Errorf(agentstream.CodeInvalidRequest, `field "input" is required`))
		return
	}
	if err := checkRunOptions(req.OnDisconnect, req.Multitask); err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := s.threads.forRun(r.Context(), s.store, user, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	run, err := s.runner.Start(r.Context(), agent.StartRequest{
		Thread: t, UserID: user, Agent: req.Agent, Input: *req.Input, Context: req.Context, Multitask: req.Multitask,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.followRun(w, r, run, 0, nativeEncoder{}, req.OnDisconnect)
}

// followRun streams a run its request started; when the client leaves
// before the end and the policy says cancel, the run is cancelled after
// the disconnect grace, unless a reader came to it meanwhile.
func (s *Server) followRun(w http.ResponseWriter, r *http.Request, run agentstream.Run, after int64, enc encoder, onDisconnect string) {
	if onDisconnect == "" {
		onDisconnect = s.opts.OnDisconnect
	}
	if !s.streamRun(w, r, run, after, enc) && r.Context().Err() != nil && onDisconnect == OnDisconnectCancel {
		s.cancelAfterGrace(run.ID)
	}
}

// runEvents streams a run's events after Last-Event-ID (or ?after=N), then
// follows it live: the read path of reconnecting clients and of clients
// that join a run another request started.
func (s *Server) runEvents(w http.ResponseWriter, r *http.Request, user string) {
	after, err := afterParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	run, err := s.store.GetRun(r.Context(), user, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// A position the log no longer holds, on a run that has not ended, is
	// a 410 before any stream starts (a finished run is answered from the
	// store instead). The probe does not wait: its context is already done.
	probe, cancel := context.WithCancel(r.Context())
	cancel()
	if _, _, err := s.log.Read(probe, run.ID, after, 1); errors.Is(err, agentstream.ErrGone) && !run.Status.Terminal() {
		s.writeError(w, r, err)
		return
	}
	s.streamRun(w, r, run, after, nativeEncoder{})
}

// afterParam is the position a reader resumes from: the Last-Event-ID
// header (an EventSource reconnecting) wins over ?after=N.
func afterParam(r *http.Request) (int64, error) {
	name, v := "Last-Event-ID", r.Header.Get("Last-Event-ID")
	if v == "" {
		name, v = "after", r.URL.Query().Get("after")
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, agentstream.Errorf(agentstream.CodeInvalidRequest, "%s must be an event id (a whole number ≥ 0), not %q", name, v)
	}
	return n, nil
}

// cancelRun stops a run and answers with the run once it has ended.
func (s *Server) cancelRun(w http.ResponseWriter, r *http.Request, user string) {
	run, err := s.store.GetRun(r.Context(), user, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if run.Status.Terminal() {
		s.writeError(w, r, agentstream.Errorf(agentstream.CodeConflict, "the run has already ended (%s)", run.Status))
		return
	}
	if !s.runner.Cancel(run.ID) {
		// Another instance runs it (or it is ending right now).
		if s.opts.RemoteCancel == nil {
			s.writeError(w, r, agentstream.Errorf(agentstream.CodeConflict, "the run is not active on this server"))
			return
		}
		if err := s.opts.RemoteCancel(r.Context(), run.ID); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	// Wait, bounded, for the terminal event: it follows the final commit,
	// so the run read next is the cancelled one.
	ctx, cancel := context.WithTimeout(r.Context(), s.cancelWait)
	defer cancel()
	for after := int64(0); ; {
		evs, end, err := s.log.Read(ctx, run.ID, after, readBatch)
		if err != nil || end {
			break
		}
		after = evs[len(evs)-1].Seq
	}
	if run, err = s.store.GetRun(r.Context(), user, run.ID); err != nil {
		s.writeError(w, r, err)
		return
	}
	// Not ended yet: the instance running it did not answer in time (it
	// may have died; its lease running out ends the run). The request
	// stands.
	status := http.StatusOK
	if !run.Status.Terminal() {
		status = http.StatusAccepted
	}
	writeJSON(w, status, run)
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, user string) {
	run, err := s.store.GetRun(r.Context(), user, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

// chat is the seed-compatible endpoint: {"query", "thread_id"?, "agent"?,
// "multitask"?, "on_disconnect"?, …context} in, the seed's data-only
// chunks out.
func (s *Server) chat(w http.ResponseWriter, r *http.Request, user string) {
	var body map[string]json.RawMessage
	if err := s.decodeBody(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	var query, threadID, agentName, multitask, onDisconnect string
	for _, f := range []struct {
		name     string
		dst      *string
		required bool
	}{
		{"query", &query, true}, {"thread_id", &threadID, false}, {"agent", &agentName, false},
		// The run options of /v1/threads/{id}/runs, never context.
		{"multitask", &multitask, false}, {"on_disconnect", &onDisconnect, false},
	} {
		raw, ok := body[f.name]
		delete(body, f.name)
		if !ok || string(raw) == "null" {
			if f.required {
				s.writeError(w, r, agentstream.Errorf(agentstream.CodeInvalidRequest, "field %q is required", f.name))
				return
			}
			continue
		}
		if err := json.Unmarshal(raw, f.dst); err != nil {
			s.writeError(w, r, agentstream.Errorf(agentstream.CodeInvalidRequest, "field %q must be a string", f.name))
			return
		}
	}
	if strings.TrimSpace(query) == "" {
		s.writeError(w, r, agentstream.Errorf(agentstream.CodeInvalidRequest, `field "query" is empty`))
		return
	}
	if err := checkRunOptions(onDisconnect, multitask); err != nil {
		s.writeError(w, r, err)
		return
	}
	// Every other field is the run's context, as the seed sent
	// pregnancy_week and baby_name.
	runCtx := make(map[string]any, len(body))
	for k, raw := range body {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			s.writeError(w, r, agentstream.Errorf(agentstream.CodeInvalidRequest, "field %q: %v", k, err))
			return
		}
		runCtx[k] = v
	}
	// Start checks the context against the agent's instructions, with the
	// thread's context under it, before it writes anything (the thread
	// included); checking the request's alone here would refuse a key the
	// thread supplies.
	run, err := s.startChat(r, user, threadID, agentStart{agent: agentName, input: query, multitask: multitask, context: runCtx})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.followRun(w, r, run, 0, &seedEncoder{threadID: run.ThreadID, runID: run.ID}, onDisconnect)
}
