package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/agent"
	"github.com/agentstream/agentstream/httpapi/wire"
)

type agentInfo struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Model       string   `json:"model"`
	Endpoint    string   `json:"endpoint,omitempty"` // its name only: never the URL or key
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
		out = append(out, agentInfo{a.Name, a.Description, a.Model, a.Endpoint, tools, a.Name == s.runner.DefaultAgent()})
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
	writeJSON(w, http.StatusCreated, shown(t))
}

// newThread returns a thread for user, not yet stored: named clientID by
// the user (its key derived from it), or by the server when clientID is
// empty.
func (s *Server) newThread(user, clientID string, req createThreadRequest) (agentstream.Thread, error) {
	a, err := s.runner.Agent(req.Agent)
	if err != nil {
		return agentstream.Thread{}, err
	}
	id := agentstream.NewID("thr_")
	if clientID != "" {
		if err := checkClientID("thread_id", clientID); err != nil {
			return agentstream.Thread{}, err
		}
		id = agentstream.ThreadKey(user, clientID)
	}
	// An empty object is no metadata or context: answered as the stores
	// read it back (null), not {} now and null later.
	if len(req.Metadata) == 0 {
		req.Metadata = nil
	}
	if len(req.Context) == 0 {
		req.Context = nil
	}
	now := timeNow()
	return agentstream.Thread{
		ID: id, ClientID: clientID, UserID: user, Agent: a.Name, Title: req.Title,
		Metadata: req.Metadata, Context: req.Context, CreatedAt: now, UpdatedAt: now,
	}, nil
}

type agentStart struct {
	agent, input, multitask string
	context                 map[string]any
	// history is the conversation before input that a client sent
	// (POST /v1/chat/completions): stored before it when the thread is
	// new, ignored when the thread exists (its messages are the history).
	history []agentstream.Message
	// inline, when set, asks for the run to execute on the request's
	// goroutine (agent.StartRequest.Inline): the request streams it.
	inline *agent.Inline
}

// startChat starts a run for /v1/chat on the user's thread the client
// named (resolveThread), on a thread of that id created for this user
// when they have none (another user's thread of that id is none of
// theirs), or on a new thread. The thread is created only once the run is
// accepted; an id a new thread cannot have is refused before. The run
// returned has the thread's id as the user knows it (PublicID) for its
// ThreadID: what X-Thread-Id and the chunks show.
func (s *Server) startChat(r *http.Request, user, threadID string, a agentStart) (agentstream.Run, error) {
	req := agent.StartRequest{UserID: user, Agent: a.agent, Input: a.input, Context: a.context, Multitask: a.multitask, Inline: a.inline}
	// Two tries: a first request racing another one that creates the same
	// thread id finds the thread on the second.
	for range 2 {
		t, err := agentstream.Thread{}, error(agentstream.ErrNotFound)
		if threadID != "" {
			t, err = s.threads.forRun(r.Context(), s.store, user, threadID)
		}
		switch {
		case err == nil:
			req.Thread, req.NewThread, req.History = t, false, nil
		case errors.Is(err, agentstream.ErrNotFound):
			if req.Thread, err = s.newThread(user, threadID, createThreadRequest{Agent: a.agent}); err != nil {
				return agentstream.Run{}, err
			}
			req.NewThread, req.History = true, a.history
		default:
			return agentstream.Run{}, err
		}
		run, err := s.runner.Start(r.Context(), req)
		if errors.Is(err, agentstream.ErrNotFound) && !req.NewThread {
			// The cached thread was deleted (maybe by another instance):
			// read again, and make it anew when it is gone.
			s.threads.drop(req.Thread.ID)
			continue
		}
		if err == nil && req.NewThread {
			s.threads.put(req.Thread) // created by Start
		}
		if err == nil {
			run.ThreadID = req.Thread.PublicID()
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
	t, err := resolveThread(r.Context(), s.store, user, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, shown(t))
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

// startRun starts the run a request to /v1/threads/{id}/runs asks for, or answers
// why not (nil). It is kept out of the frames the stream waits under (see
// follow).
//
//go:noinline
func (s *Server) startRun(w http.ResponseWriter, r *http.Request, user string) *follow {
	var req createRunRequest
	if err := s.decodeBody(w, r, &req, true); err != nil {
		s.writeError(w, r, err)
		return nil
	}
	if req.Input == nil {
		s.writeError(w, r, agentstream.Errorf(agentstream.CodeInvalidRequest, `field "input" is required`))
		return nil
	}
	if err := checkRunOptions(req.OnDisconnect, req.Multitask); err != nil {
		s.writeError(w, r, err)
		return nil
	}
	t, err := s.threads.forRun(r.Context(), s.store, user, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	in := new(agent.Inline)
	run, err := s.runner.Start(r.Context(), agent.StartRequest{
		Thread: t, UserID: user, Agent: req.Agent, Input: *req.Input, Context: req.Context, Multitask: req.Multitask, Inline: in,
	})
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	run.ThreadID = t.PublicID() // for X-Thread-Id
	return &follow{run: &run, enc: wire.NewNative, onDisconnect: req.OnDisconnect, inline: in}
}

// follow is a run a request started, to stream. The routes that start a
// run do so in a function of their own that returns it (startRun…), and
// their apiRoute streams it (followRun): the handler's goroutine waits
// for the whole stream, and a stack is only halved when under a quarter
// of it is in use, so a request's decoding and checks must not stay on
// it (BenchmarkStreamMemory in ../server, TestInlineStackDepth).
type follow struct {
	run          *agentstream.Run
	after        int64 // the reader's position
	enc          wire.NewEncoder
	onDisconnect string
	// whole: the answer is wanted whole, not streamed (completeRun).
	whole bool
	// inline is the run to execute on the request's goroutine when it is
	// ready (it could start at once); otherwise a worker executes it and
	// the request reads its log.
	inline *agent.Inline
}

// followRun streams a run its request started; when the client leaves
// before the end and the policy says cancel, the run is cancelled after
// the disconnect grace, unless a reader came to it meanwhile. A run that
// is ready to execute inline is run by runInline, which is followRun's
// body: one frame fewer on the stack for the whole stream (see follow).
func (s *Server) followRun(w http.ResponseWriter, r *http.Request, f *follow) {
	s.runInline(w, r, f)
}

// cancelOnLeave says whether the run f follows is to be cancelled when
// its client leaves.
func (s *Server) cancelOnLeave(f *follow) bool {
	onDisconnect := f.onDisconnect
	if onDisconnect == "" {
		onDisconnect = s.opts.OnDisconnect
	}
	return onDisconnect == OnDisconnectCancel
}

// followLog is followRun for a run a worker executes: its events are read
// from the log, or its end waited for when it is wanted whole.
//
//go:noinline
func (s *Server) followLog(w http.ResponseWriter, r *http.Request, f *follow) {
	if f.whole {
		s.completeRun(w, r, *f.run, f.onDisconnect)
		return
	}
	if !s.streamRun(w, r, f.run, f.after, f.enc) && r.Context().Err() != nil && s.cancelOnLeave(f) {
		s.cancelAfterGrace(f.run.ID)
	}
}

// runEvents streams a run's events after Last-Event-ID (or ?after=N), in
// the wire format ?format= names (native by default), then follows it
// live: the read path of reconnecting clients and of clients
// that join a run another request started.
func (s *Server) runEvents(w http.ResponseWriter, r *http.Request, user string) {
	if f := s.openEvents(w, r, user); f != nil {
		s.streamRun(w, r, f.run, f.after, f.enc)
	}
}

// openEvents checks a request for a run's events, or answers why not (nil); see
// follow.
//
//go:noinline
func (s *Server) openEvents(w http.ResponseWriter, r *http.Request, user string) *follow {
	after, err := afterParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	enc, err := formatParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	run, err := s.store.GetRun(r.Context(), user, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	if !s.checkPosition(w, r, run, after) {
		return nil
	}
	return &follow{run: &run, after: after, enc: enc}
}

// formatParam is the wire format ?format= names: native when none.
func formatParam(r *http.Request) (wire.NewEncoder, error) {
	name := r.URL.Query().Get("format")
	if name == "" {
		return wire.NewNative, nil
	}
	return wire.Lookup(name)
}

// checkPosition answers, before any stream starts, a reader whose
// position cannot be streamed from, and reports whether the stream may
// start. Event ids belong to the run, whichever backend holds its log and
// whether or not it still holds it:
//   - at or past the terminal event: 204 No Content, which stops an
//     EventSource (nothing more will ever come);
//   - past the last event of a run that goes on: 400;
//   - before the first event kept, of a run that goes on: 410 (the
//     thread's messages have the rest); of a run that has ended, the
//     stream starts and is its end rebuilt from the store.
//
// The log answers without waiting (Bounds).
func (s *Server) checkPosition(w http.ResponseWriter, r *http.Request, run agentstream.Run, after int64) bool {
	ctx := r.Context()
	b, err := s.log.Bounds(ctx, run.ID)
	switch {
	case errors.Is(err, agentstream.ErrNotFound):
		// No log (never made, evicted after its retention, or lost with
		// Redis's data): a finished run's end comes from the store.
		if run.Status.Terminal() {
			if end, ok := s.endSeq(ctx, run, after); ok && after >= end {
				w.WriteHeader(http.StatusNoContent)
				return false
			}
		}
		return true
	case err != nil:
		s.writeError(w, r, err)
		return false
	}
	ended := b.End > 0 || run.Status.Terminal()
	switch {
	case b.End > 0 && after >= b.End, run.Status.Terminal() && run.EndSeq > 0 && after >= run.EndSeq:
		w.WriteHeader(http.StatusNoContent)
		return false
	case !ended && after > b.Last:
		s.writeError(w, r, agentstream.Errorf(agentstream.CodeInvalidRequest,
			"event %d is past the run's last event, %d: resume from an id this run gave", after, b.Last))
		return false
	case !ended && after+1 < b.First:
		s.writeError(w, r, agentstream.Errorf(agentstream.CodeGone,
			"events before %d of run %s are no longer kept; read the thread's messages", b.First, run.ID))
		return false
	}
	return true
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
	// Wait, bounded, for the run to end: for its terminal event (which
	// follows the final commit) and the stored run.
	ended, err := s.awaitEnd(r.Context(), run)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ended)
}

// awaitEnd waits, at most cancelWait, until the store has the run ended,
// and returns it. It checks the run's log, which tells at once when its
// terminal event is appended, every cancelPoll, and the store then (or
// every 20 checks: a terminal event can be lost).
func (s *Server) awaitEnd(ctx context.Context, run agentstream.Run) (agentstream.Run, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cancelWait)
	defer cancel()
	tick := time.NewTicker(cancelPoll)
	defer tick.Stop()
	for i := 0; ; i++ {
		if b, err := s.log.Bounds(ctx, run.ID); err == nil && b.End > 0 || i%20 == 0 {
			stored, err := s.store.GetRun(ctx, run.UserID, run.ID)
			if err == nil && stored.Status.Terminal() {
				return stored, nil
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			if err := context.Cause(ctx); !errors.Is(err, context.DeadlineExceeded) {
				return agentstream.Run{}, agentstream.Wrap(agentstream.CodeCancelled, err, "the request ended before the run did")
			}
			// The instance running it did not end it in time (it may have
			// died: its lease running out ends the run).
			return agentstream.Run{}, agentstream.Errorf(agentstream.CodeUnavailable,
				"the run was asked to stop but has not ended within %s; its server may be down, in which case it ends when its lease runs out; read it again shortly", s.cancelWait)
		}
	}
}

// cancelPoll is how often a cancel request checks whether the run ended.
const cancelPoll = 25 * time.Millisecond

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, user string) {
	run, err := s.store.GetRun(r.Context(), user, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

// POST /v1/chat is the seed-compatible endpoint: {"query", "thread_id"?, "agent"?,
// "multitask"?, "on_disconnect"?, …context} in, the seed's data-only
// chunks out. startChatRun starts the run a request to /v1/chat asks
// for, or answers why not (nil). It is kept out of the frames the stream waits under (see follow).
//
//go:noinline
func (s *Server) startChatRun(w http.ResponseWriter, r *http.Request, user string) *follow {
	var body map[string]json.RawMessage
	if err := s.decodeBody(w, r, &body, false); err != nil {
		s.writeError(w, r, err)
		return nil
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
				return nil
			}
			continue
		}
		if err := json.Unmarshal(raw, f.dst); err != nil {
			s.writeError(w, r, agentstream.Errorf(agentstream.CodeInvalidRequest, "field %q must be a string", f.name))
			return nil
		}
	}
	if strings.TrimSpace(query) == "" {
		s.writeError(w, r, agentstream.Errorf(agentstream.CodeInvalidRequest, `field "query" is empty`))
		return nil
	}
	if err := checkRunOptions(onDisconnect, multitask); err != nil {
		s.writeError(w, r, err)
		return nil
	}
	// Every other field is the run's context, as the seed sent
	// pregnancy_week and baby_name.
	runCtx := make(map[string]any, len(body))
	for k, raw := range body {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			s.writeError(w, r, agentstream.Errorf(agentstream.CodeInvalidRequest, "field %q: %v", k, err))
			return nil
		}
		runCtx[k] = v
	}
	// Start checks the context against the agent's instructions, with the
	// thread's context under it, before it writes anything (the thread
	// included); checking the request's alone here would refuse a key the
	// thread supplies.
	in := new(agent.Inline)
	run, err := s.startChat(r, user, threadID, agentStart{agent: agentName, input: query, multitask: multitask, context: runCtx, inline: in})
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	return &follow{run: &run, enc: wire.NewSeed, onDisconnect: onDisconnect, inline: in}
}
