package agent

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/memlog"
	"github.com/agentstream/agentstream/sqlite"
)

// patience bounds every wait on a condition: generous, so that a loaded
// machine never fails a correct test.
const patience = 10 * time.Second

// turn is what the fake model does on one call: stream the text deltas,
// then the tool calls piece by piece, then (in this order of precedence)
// block until ctx ends, wait for release (or ctx), fail with err, or answer.
type turn struct {
	text  []string
	calls []fakeCall
	hold  bool
	wait  <-chan struct{}
	err   error
	usage agentstream.Usage
}

// fakeCall is a tool call streamed as the given argument pieces.
type fakeCall struct {
	id, name string
	pieces   []string
}

// fakeModel is a scripted agentstream.Model. It honours ctx as a real
// client does: when ctx ends it returns what it streamed so far with a
// CodeCancelled *agentstream.Error.
type fakeModel struct {
	script func(call int, req agentstream.ModelRequest) turn

	mu       sync.Mutex
	reqs     []agentstream.ModelRequest
	streamed int // calls that have streamed their deltas
}

// scripted answers call i with turns[i], and "ok" past the end.
func scripted(turns ...turn) func(int, agentstream.ModelRequest) turn {
	return func(i int, _ agentstream.ModelRequest) turn {
		if i < len(turns) {
			return turns[i]
		}
		return turn{text: []string{"ok"}}
	}
}

func (m *fakeModel) Stream(ctx context.Context, req agentstream.ModelRequest, onDelta func(agentstream.ModelDelta)) (agentstream.ModelResult, error) {
	req.Messages = slices.Clone(req.Messages)
	m.mu.Lock()
	n := len(m.reqs)
	m.reqs = append(m.reqs, req)
	m.mu.Unlock()
	tr := turn{text: []string{"ok"}}
	if m.script != nil {
		tr = m.script(n, req)
	}

	var res agentstream.ModelResult
	stopped := func() (agentstream.ModelResult, error) {
		return res, &agentstream.Error{Code: agentstream.CodeCancelled, Message: "the model call was cancelled", Err: context.Cause(ctx)}
	}
	if ctx.Err() != nil {
		return stopped()
	}
	for _, s := range tr.text {
		onDelta(agentstream.ModelDelta{Text: s})
		res.Content += s
	}
	for i, c := range tr.calls {
		var args string
		for _, p := range c.pieces {
			onDelta(agentstream.ModelDelta{ToolCall: &agentstream.ToolCallDelta{Index: i, ID: c.id, Name: c.name, Arguments: p}})
			args += p
		}
		res.ToolCalls = append(res.ToolCalls, agentstream.ToolCall{ID: c.id, Name: c.name, Arguments: args})
	}
	m.mu.Lock()
	m.streamed++
	m.mu.Unlock()

	switch {
	case tr.hold:
		<-ctx.Done()
		return stopped()
	case tr.wait != nil:
		select {
		case <-tr.wait:
		case <-ctx.Done():
			return stopped()
		}
	}
	if tr.err != nil {
		return res, tr.err
	}
	res.Usage = tr.usage
	res.FinishReason = "stop"
	if len(res.ToolCalls) > 0 {
		res.FinishReason = "tool_calls" // as OpenAI has it
	}
	return res, nil
}

// requests returns a copy of the requests the model got, in call order.
func (m *fakeModel) requests() []agentstream.ModelRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.reqs)
}

// waitStreamed waits until n calls have streamed their deltas (and are
// now blocked, waiting or done).
func (m *fakeModel) waitStreamed(t testing.TB, n int) {
	t.Helper()
	eventually(t, "the model to be called", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.streamed >= n
	})
}

// eventually polls cond until it holds, failing the test after patience.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// receive waits for a value on ch, failing the test after patience.
func receive[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatalf("gave up waiting for %s", what)
	}
	panic("unreachable")
}

// setup describes a harness. Zero fields take defaults: one agent
// "assistant" with instructions "You help." and every tool given.
type setup struct {
	cfg    Config
	agents []agentstream.Agent
	tools  []agentstream.Tool
	script func(int, agentstream.ModelRequest) turn
	// wrap, when set, wraps the store the runner uses.
	wrap func(agentstream.Store) agentstream.Store
	// wrapLog, when set, wraps the event log the runner uses.
	wrapLog func(agentstream.EventLog) agentstream.EventLog
	// sources and models are the runner's tool sources and model endpoints.
	sources map[string]agentstream.ToolSource
	models  map[string]agentstream.Model
	// mask is the runner's Deps.Mask.
	mask func(string) string
	// model, when set, is the runner's model instead of the scripted one.
	model agentstream.Model
}

// harness is a Runner on a real SQLite store and a real in-process log,
// talking to a fake model.
type harness struct {
	t     testing.TB
	db    *sqlite.Store
	log   *memlog.Log
	model *fakeModel
	r     *Runner
}

func newHarness(t testing.TB, s setup) *harness {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })

	toolMap := map[string]agentstream.Tool{}
	var names []string
	for _, tool := range s.tools {
		toolMap[tool.Spec().Name] = tool
		names = append(names, tool.Spec().Name)
	}
	if s.agents == nil {
		s.agents = []agentstream.Agent{{Name: "assistant", Instructions: "You help.", Tools: names}}
	}
	if s.cfg.DefaultModel == "" {
		s.cfg.DefaultModel = "test-model"
	}
	var store agentstream.Store = db
	if s.wrap != nil {
		store = s.wrap(db)
	}
	h := &harness{t: t, db: db, log: memlog.New(memlog.Options{}), model: &fakeModel{script: s.script}}
	var log agentstream.EventLog = h.log
	if s.wrapLog != nil {
		log = s.wrapLog(h.log)
	}
	var model agentstream.Model = h.model
	if s.model != nil {
		model = s.model
	}
	h.r, err = New(s.cfg, Deps{Store: store, Log: log, Model: model, Agents: s.agents, Tools: toolMap,
		Sources: s.sources, Models: s.models, Mask: s.mask})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// Registered after the store's Close, so it runs before it: interrupt
	// whatever still runs and wait until it is saved.
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan struct{})
		go func() { _ = h.r.Shutdown(ctx); close(done) }()
		select {
		case <-done:
		case <-time.After(patience):
			t.Error("the runner did not shut down")
		}
	})
	return h
}

// thread creates a thread of user "u1" with the given context.
func (h *harness) thread(threadCtx map[string]any) agentstream.Thread {
	h.t.Helper()
	now := time.Now().UTC()
	th := agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: "u1", Context: threadCtx, CreatedAt: now, UpdatedAt: now}
	if err := h.db.CreateThread(context.Background(), th); err != nil {
		h.t.Fatal(err)
	}
	return th
}

// start starts a run of the thread's agent on th.
func (h *harness) start(th agentstream.Thread, input string) agentstream.Run {
	h.t.Helper()
	run, err := h.r.Start(context.Background(), StartRequest{Thread: th, UserID: th.UserID, Input: input})
	if err != nil {
		h.t.Fatalf("Start: %v", err)
	}
	return run
}

// events reads the run's whole log, up to its terminal event.
func (h *harness) events(runID string) []agentstream.Event {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var all []agentstream.Event
	for {
		evs, end, err := h.log.Read(ctx, runID, int64(len(all)), 100)
		if err != nil {
			h.t.Fatalf("reading the log of %s after %d events %v: %v", runID, len(all), types(all), err)
		}
		all = append(all, evs...)
		if end {
			return all
		}
	}
}

// waitEvents reads the run's log until cond holds for what was read.
func (h *harness) waitEvents(runID string, what string, cond func([]agentstream.Event) bool) []agentstream.Event {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var all []agentstream.Event
	for !cond(all) {
		evs, _, err := h.log.Read(ctx, runID, int64(len(all)), 100)
		if err != nil {
			h.t.Fatalf("waiting for %s: got %v: %v", what, types(all), err)
		}
		all = append(all, evs...)
	}
	return all
}

// messages returns the thread's stored messages.
func (h *harness) messages(threadID string) []agentstream.Message {
	h.t.Helper()
	msgs, err := h.db.ListMessages(context.Background(), threadID)
	if err != nil {
		h.t.Fatal(err)
	}
	return msgs
}

// stored returns the stored run.
func (h *harness) stored(runID string) agentstream.Run {
	h.t.Helper()
	run, err := h.db.GetRun(context.Background(), "u1", runID)
	if err != nil {
		h.t.Fatal(err)
	}
	return run
}

func types(evs []agentstream.Event) []agentstream.EventType {
	out := make([]agentstream.EventType, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type
	}
	return out
}

func count(evs []agentstream.Event, typ agentstream.EventType) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

// decode returns an event's payload.
func decode[T any](t testing.TB, ev agentstream.Event) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(ev.Data, &v); err != nil {
		t.Fatalf("decoding %s %s: %v", ev.Type, ev.Data, err)
	}
	return v
}

// end checks the log ends with the given terminal event and returns its payload.
func end(t testing.TB, evs []agentstream.Event, want agentstream.EventType) agentstream.RunEndData {
	t.Helper()
	if len(evs) == 0 || evs[len(evs)-1].Type != want {
		t.Fatalf("events %v: want the last to be %s", types(evs), want)
	}
	return decode[agentstream.RunEndData](t, evs[len(evs)-1])
}

// codeOf fails the test unless err is an *agentstream.Error, and returns its code.
func codeOf(t testing.TB, err error) agentstream.Code {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	var e *agentstream.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *agentstream.Error", err, err)
	}
	return e.Code
}
