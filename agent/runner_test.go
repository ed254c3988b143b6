package agent

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/memlog"
	"github.com/agentstream/agentstream/tools"
)

// TestCancel: a run blocked in the model is cancelled; the partial answer
// is saved and the run ends cancelled, in the log and in the store.
func TestCancel(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setup{script: scripted(turn{text: []string{"Hello, ", "wor"}, hold: true})})
	th := h.thread(nil)
	run := h.start(th, "hi")
	h.waitEvents(run.ID, "two deltas", func(evs []agentstream.Event) bool {
		return count(evs, agentstream.EventMessageDelta) == 2
	})
	if h.r.Cancel("run_unknown") {
		t.Fatal("Cancel of an unknown run returned true")
	}
	if !h.r.Cancel(run.ID) {
		t.Fatal("Cancel of a running run returned false")
	}

	evs := h.events(run.ID)
	e := end(t, evs, agentstream.EventRunCancelled)
	if e.Status != agentstream.RunCancelled || e.Error == nil || e.Error.Code != agentstream.CodeCancelled || e.RunID != run.ID {
		t.Fatalf("terminal event %+v", e)
	}
	if n := count(evs, agentstream.EventMessageCompleted); n != 0 {
		t.Fatalf("%d message.completed for a partial answer", n)
	}
	msgs := h.messages(th.ID)
	if len(msgs) != 2 || msgs[0].Content != "hi" || msgs[1].Role != agentstream.RoleAssistant ||
		msgs[1].Content != "Hello, wor" || msgs[1].Status != agentstream.MessagePartial || msgs[1].RunID != run.ID {
		t.Fatalf("stored %+v: want the input and the partial answer", msgs)
	}
	got := h.stored(run.ID)
	if got.Status != agentstream.RunCancelled || got.Error == nil || got.Error.Code != agentstream.CodeCancelled || got.FinishedAt == nil {
		t.Fatalf("stored run %+v", got)
	}
	eventually(t, "the run to leave the active set", func() bool { return !h.r.Cancel(run.ID) })

	// The thread is free again: a new run starts and completes.
	next := h.start(th, "again")
	end(t, h.events(next.ID), agentstream.EventRunCompleted)
}

// TestCancelDuringTool: cancelling while a tool runs cancels the tool's
// context; the assistant message that called it is kept.
func TestCancelDuringTool(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	causes := make(chan error, 1)
	wait := tools.NewFunc("wait", "Waits until stopped.", `{"type":"object"}`, func(ctx context.Context, _ json.RawMessage) (string, error) {
		close(entered)
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return "", ctx.Err()
	})
	h := newHarness(t, setup{
		tools:  []agentstream.Tool{wait},
		script: scripted(turn{calls: []fakeCall{{id: "call_1", name: "wait", pieces: []string{`{}`}}}}),
	})
	th := h.thread(nil)
	run := h.start(th, "wait for it")
	receive(t, entered, "the tool to be called")
	if !h.r.Cancel(run.ID) {
		t.Fatal("Cancel returned false")
	}
	if cause := receive(t, causes, "the tool's context to end"); !errors.Is(cause, errCancelled) {
		t.Fatalf("the tool's context ended with %v, want the cancel", cause)
	}

	evs := h.events(run.ID)
	if e := end(t, evs, agentstream.EventRunCancelled); e.Error == nil || e.Error.Code != agentstream.CodeCancelled {
		t.Fatalf("terminal event %+v", e)
	}
	if n := count(evs, agentstream.EventToolResult); n != 1 {
		t.Fatalf("%d tool.result events, want 1: %v", n, types(evs))
	}
	msgs := h.messages(th.ID)
	if len(msgs) != 3 {
		t.Fatalf("stored %d messages, want input, tool call, tool result: %+v", len(msgs), msgs)
	}
	if m := msgs[1]; m.Role != agentstream.RoleAssistant || len(m.ToolCalls) != 1 || m.ToolCalls[0].ID != "call_1" || m.ToolCalls[0].Name != "wait" {
		t.Fatalf("assistant message %+v: want the tool call kept", m)
	}
	if m := msgs[2]; m.Role != agentstream.RoleTool || m.ToolCallID != "call_1" || !strings.HasPrefix(m.Content, "error: ") {
		t.Fatalf("tool message %+v", m)
	}
	if got := h.stored(run.ID); got.Status != agentstream.RunCancelled {
		t.Fatalf("stored run %+v", got)
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()

	t.Run("interrupts at the deadline", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, setup{script: scripted(turn{text: []string{"part"}, hold: true})})
		th := h.thread(nil)
		run := h.start(th, "hi")
		h.model.waitStreamed(t, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := h.r.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v, want the deadline", err)
		}
		// Shutdown waited for the run to be saved: no polling needed.
		got := h.stored(run.ID)
		if got.Status != agentstream.RunInterrupted || got.Error == nil || got.Error.Code != agentstream.CodeInterrupted {
			t.Fatalf("stored run %+v", got)
		}
		msgs := h.messages(th.ID)
		if len(msgs) != 2 || msgs[1].Content != "part" || msgs[1].Status != agentstream.MessagePartial {
			t.Fatalf("stored %+v: want the partial answer", msgs)
		}
		if e := end(t, h.events(run.ID), agentstream.EventRunInterrupted); e.Error == nil || e.Error.Code != agentstream.CodeInterrupted {
			t.Fatalf("terminal event %+v", e)
		}

		other := h.thread(nil)
		_, err := h.r.Start(context.Background(), StartRequest{Thread: other, UserID: "u1", Input: "late"})
		if code := codeOf(t, err); code != agentstream.CodeUnavailable {
			t.Fatalf("Start after Shutdown: %v, want unavailable", err)
		}
		if msgs := h.messages(other.ID); len(msgs) != 0 {
			t.Fatalf("the refused Start wrote %+v", msgs)
		}
	})

	t.Run("no runs", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, setup{})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.r.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		_, err := h.r.Start(context.Background(), StartRequest{Thread: h.thread(nil), UserID: "u1", Input: "late"})
		if code := codeOf(t, err); code != agentstream.CodeUnavailable {
			t.Fatalf("Start after Shutdown: %v", err)
		}
	})

	t.Run("the run finishes before the deadline", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		h := newHarness(t, setup{script: scripted(turn{text: []string{"done"}, wait: release})})
		run := h.start(h.thread(nil), "hi")
		h.model.waitStreamed(t, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut := make(chan error, 1)
		go func() { shut <- h.r.Shutdown(ctx) }()
		waitClosed(t, h)
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned %v while a run was going", err)
		default:
		}
		close(release)
		if err := receive(t, shut, "Shutdown"); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if got := h.stored(run.ID); got.Status != agentstream.RunCompleted {
			t.Fatalf("stored run %+v", got)
		}
		end(t, h.events(run.ID), agentstream.EventRunCompleted)
	})

	t.Run("waits for a Start saving its run", func(t *testing.T) {
		t.Parallel()
		gate := newGatedStore()
		h := newHarness(t, setup{wrap: gate.wrap})
		th := h.thread(nil)
		started := make(chan agentstream.Run, 1)
		go func() { started <- h.start(th, "hi") }()
		receive(t, gate.entered, "Start to save its run")

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut := make(chan error, 1)
		go func() { shut <- h.r.Shutdown(ctx) }()
		waitClosed(t, h)
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned %v while a Start was saving its run", err)
		case <-time.After(100 * time.Millisecond):
		}
		close(gate.release)
		run := receive(t, started, "Start")
		if err := receive(t, shut, "Shutdown"); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if got := h.stored(run.ID); got.Status != agentstream.RunCompleted {
			t.Fatalf("stored run %+v: Shutdown returned before the run ended", got)
		}
	})

	t.Run("interrupts a run whose Start was saving it at the deadline", func(t *testing.T) {
		t.Parallel()
		gate := newGatedStore()
		h := newHarness(t, setup{wrap: gate.wrap, script: scripted(turn{hold: true})})
		th := h.thread(nil)
		started := make(chan agentstream.Run, 1)
		go func() { started <- h.start(th, "hi") }()
		receive(t, gate.entered, "Start to save its run")

		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		shut := make(chan error, 1)
		go func() { shut <- h.r.Shutdown(ctx) }()
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // let Shutdown interrupt what it knows of
		close(gate.release)
		run := receive(t, started, "Start")
		if err := receive(t, shut, "Shutdown to interrupt the run"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v", err)
		}
		if got := h.stored(run.ID); got.Status != agentstream.RunInterrupted {
			t.Fatalf("stored run %+v", got)
		}
		end(t, h.events(run.ID), agentstream.EventRunInterrupted)
	})
}

// waitClosed waits until Shutdown has closed the runner to new runs and
// is waiting for the others.
func waitClosed(t testing.TB, h *harness) {
	t.Helper()
	eventually(t, "Shutdown to close the pool", func() bool {
		p := h.r.pool
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.closed
	})
}

// gatedStore holds the first CreateRun until release is closed.
type gatedStore struct {
	agentstream.Store
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func newGatedStore() *gatedStore {
	return &gatedStore{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gatedStore) wrap(s agentstream.Store) agentstream.Store {
	g.Store = s
	return g
}

func (g *gatedStore) CreateRun(ctx context.Context, run agentstream.Run, input agentstream.Message, history ...agentstream.Message) (agentstream.Message, error) {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.entered)
		<-g.release
	}
	return g.Store.CreateRun(ctx, run, input, history...)
}

func TestStartValidation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setup{agents: []agentstream.Agent{
		{Name: "assistant", Instructions: "You help."},
		{Name: "strict", Instructions: "Hello {{.x.y}}"},
		{Name: "missing", Instructions: `{{template "nope"}}`},
	}})
	th := h.thread(nil)
	tests := []struct {
		name string
		req  StartRequest
		want string
	}{
		{"empty input", StartRequest{Input: ""}, "input is empty"},
		{"blank input", StartRequest{Input: " \n\t"}, "input is empty"},
		{"unknown agent", StartRequest{Input: "hi", Agent: "nobody"}, `unknown agent "nobody"`},
		{"thread of an unknown agent", StartRequest{Input: "hi", Thread: agentstream.Thread{Agent: "ghost"}}, `unknown agent "ghost"`},
		{"context that does not fit", StartRequest{Input: "hi", Agent: "strict", Context: map[string]any{"x": "a string"}}, `agent "strict"`},
		{"thread context that does not fit", StartRequest{Input: "hi", Agent: "strict", Thread: agentstream.Thread{Context: map[string]any{"x": 5}}}, `agent "strict"`},
		{"instructions that cannot render", StartRequest{Input: "hi", Agent: "missing"}, `agent "missing"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			req.Thread.ID, req.Thread.UserID, req.UserID = th.ID, th.UserID, th.UserID
			_, err := h.r.Start(context.Background(), req)
			if code := codeOf(t, err); code != agentstream.CodeInvalidRequest || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v (%s), want invalid_request with %q", err, code, tt.want)
			}
			// Check agrees with Start on the agent and the context.
			if strings.TrimSpace(tt.req.Input) != "" {
				name := req.Agent
				if name == "" {
					name = req.Thread.Agent
				}
				if err := h.r.Check(name, mergeContext(req.Thread.Context, req.Context)); agentstream.CodeOf(err) != agentstream.CodeInvalidRequest {
					t.Fatalf("Check: %v, want invalid_request", err)
				}
			}
		})
	}
	if err := h.r.Check("strict", map[string]any{"x": map[string]any{"y": 1}}); err != nil {
		t.Fatalf("Check of a fitting context: %v", err)
	}
	if msgs := h.messages(th.ID); len(msgs) != 0 {
		t.Fatalf("invalid requests wrote %+v", msgs)
	}
	if n := len(h.model.requests()); n != 0 {
		t.Fatalf("invalid requests reached the model %d times", n)
	}
	if r, q := h.r.Load(); r != 0 || q != 0 {
		t.Fatalf("load %d, %d after invalid requests", r, q)
	}
}

// TestStartConflict: a second run on a busy thread is a conflict, and
// refused Starts give their place in the pool back.
func TestStartConflict(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setup{
		cfg:    Config{MaxConcurrentRuns: 2, MaxQueuedRuns: -1},
		script: func(int, agentstream.ModelRequest) turn { return turn{hold: true} },
	})
	th := h.thread(nil)
	first := h.start(th, "one")
	for range 3 {
		_, err := h.r.Start(context.Background(), StartRequest{Thread: th, UserID: "u1", Input: "two"})
		if code := codeOf(t, err); code != agentstream.CodeConflict || !errors.Is(err, agentstream.ErrConflict) {
			t.Fatalf("second run on a busy thread: %v", err)
		}
	}
	for range 3 {
		_, err := h.r.Start(context.Background(), StartRequest{Thread: agentstream.Thread{ID: "thr_missing"}, UserID: "u1", Input: "x"})
		if !errors.Is(err, agentstream.ErrNotFound) {
			t.Fatalf("run on a missing thread: %v", err)
		}
	}
	if msgs := h.messages(th.ID); len(msgs) != 1 || msgs[0].RunID != first.ID {
		t.Fatalf("stored %+v: want the first run's input alone", msgs)
	}
	// Two workers, no queue: one is taken, so exactly one more fits.
	second := h.start(h.thread(nil), "other thread")
	_, err := h.r.Start(context.Background(), StartRequest{Thread: h.thread(nil), UserID: "u1", Input: "x"})
	if code := codeOf(t, err); code != agentstream.CodeOverloaded {
		t.Fatalf("third run with two workers and no queue: %v", err)
	}
	h.r.Cancel(first.ID)
	h.r.Cancel(second.ID)
	end(t, h.events(first.ID), agentstream.EventRunCancelled)
	end(t, h.events(second.ID), agentstream.EventRunCancelled)
}

func TestNew(t *testing.T) {
	t.Parallel()
	echo := tools.NewFunc("echo", "Echoes.", `{"type":"object"}`, func(_ context.Context, a json.RawMessage) (string, error) { return string(a), nil })
	deps := func(agents ...agentstream.Agent) Deps {
		return Deps{
			Store: nopStore{}, Log: memlog.New(memlog.Options{}), Model: &fakeModel{},
			Agents: agents, Tools: map[string]agentstream.Tool{"echo": echo},
		}
	}
	cfg := Config{DefaultModel: "m"}
	ok := agentstream.Agent{Name: "assistant", Instructions: "Hi {{.name}}", Tools: []string{"echo"}}
	tests := []struct {
		name string
		cfg  Config
		deps Deps
		want string
	}{
		{"no store", cfg, func() Deps { d := deps(ok); d.Store = nil; return d }(), "required"},
		{"no log", cfg, func() Deps { d := deps(ok); d.Log = nil; return d }(), "required"},
		{"no model", cfg, func() Deps { d := deps(ok); d.Model = nil; return d }(), "required"},
		{"no default model", Config{}, deps(ok), "DefaultModel"},
		{"unknown tool", cfg, deps(agentstream.Agent{Name: "assistant", Tools: []string{"echo", "nope"}}), `unknown tool "nope"`},
		{"bad template", cfg, deps(agentstream.Agent{Name: "assistant", Instructions: "Hi {{.name"}), `agent "assistant": instructions`},
		{"duplicate agent", cfg, deps(ok, agentstream.Agent{Name: "assistant"}), `"assistant" is declared twice`},
		{"missing default agent", cfg, deps(agentstream.Agent{Name: "other"}), `default agent "assistant"`},
		{"named default agent missing", Config{DefaultModel: "m", DefaultAgent: "boss"}, deps(ok), `default agent "boss"`},
		{"agent without a name", cfg, deps(ok, agentstream.Agent{}), "no name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := New(tt.cfg, tt.deps)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, %v; want an error with %q", r, err, tt.want)
			}
		})
	}

	r, err := New(cfg, deps(ok, agentstream.Agent{Name: "other", Model: "special", MaxTurns: 3}))
	if err != nil {
		t.Fatal(err)
	}
	a, err := r.Agent("")
	if err != nil || a.Name != "assistant" || a.Model != "m" || a.MaxTurns != agentstream.DefaultMaxTurns {
		t.Fatalf("default agent %+v, %v", a, err)
	}
	if a, err := r.Agent("other"); err != nil || a.Model != "special" || a.MaxTurns != 3 {
		t.Fatalf("agent other %+v, %v", a, err)
	}
	if _, err := r.Agent("nobody"); agentstream.CodeOf(err) != agentstream.CodeInvalidRequest {
		t.Fatalf("unknown agent: %v", err)
	}
	if n := len(r.Agents()); n != 2 || r.DefaultAgent() != "assistant" {
		t.Fatalf("%d agents, default %q", n, r.DefaultAgent())
	}
}

// nopStore is a Store for New, which never calls it.
type nopStore struct{ agentstream.Store }

// failingStore fails some of its calls.
type failingStore struct {
	agentstream.Store
	startErr, finishErr error
}

func (s failingStore) StartRun(ctx context.Context, runID string, at time.Time) error {
	if s.startErr != nil {
		return s.startErr
	}
	return s.Store.StartRun(ctx, runID, at)
}

func (s failingStore) FinishRun(ctx context.Context, run agentstream.Run, msgs []agentstream.Message) error {
	if s.finishErr != nil {
		return s.finishErr
	}
	return s.Store.FinishRun(ctx, run, msgs)
}

func TestStoreFailures(t *testing.T) {
	t.Parallel()

	t.Run("FinishRun fails", func(t *testing.T) {
		t.Parallel()
		// A failing FinishRun is retried for FinalizeTimeout.
		h := newHarness(t, setup{wrap: func(s agentstream.Store) agentstream.Store {
			return failingStore{Store: s, finishErr: errors.New("disk full")}
		}, cfg: Config{FinalizeTimeout: 200 * time.Millisecond}})
		run := h.start(h.thread(nil), "hi")
		evs := h.events(run.ID)
		e := end(t, evs, agentstream.EventRunFailed)
		if e.Status != agentstream.RunFailed || e.Error == nil || e.Error.Code != agentstream.CodeInternal ||
			!strings.Contains(e.Error.Message, "could not be saved") || strings.Contains(e.Error.Message, "disk full") {
			t.Fatalf("terminal event %+v", e)
		}
		if n := count(evs, agentstream.EventMessageCompleted); n != 1 {
			t.Fatalf("the answer was streamed %d times before the failure", n)
		}
		eventually(t, "the run to leave the active set", func() bool { return !h.r.Cancel(run.ID) })
	})

	for _, tt := range []struct {
		name     string
		err      error
		wantCode agentstream.Code
		wantMsg  string
	}{
		{"StartRun fails with a domain error", agentstream.Errorf(agentstream.CodeUnavailable, "the database is down"), agentstream.CodeUnavailable, "the database is down"},
		{"StartRun fails with another error", errors.New("secret driver detail"), agentstream.CodeInternal, "internal error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, setup{wrap: func(s agentstream.Store) agentstream.Store {
				return failingStore{Store: s, startErr: tt.err}
			}})
			// Saved as queued (multitask enqueue), the run is started by
			// a StartRun when a worker takes it.
			th := h.thread(nil)
			run, err := h.r.Start(context.Background(), StartRequest{Thread: th, UserID: th.UserID, Input: "hi", Multitask: MultitaskEnqueue})
			if err != nil {
				t.Fatal(err)
			}
			evs := h.events(run.ID)
			e := end(t, evs, agentstream.EventRunFailed)
			if e.Error == nil || e.Error.Code != tt.wantCode || e.Error.Message != tt.wantMsg {
				t.Fatalf("terminal event %+v, want %s %q", e, tt.wantCode, tt.wantMsg)
			}
			if count(evs, agentstream.EventRunStarted) != 0 || len(h.model.requests()) != 0 {
				t.Fatalf("the run went on after StartRun failed: %v", types(evs))
			}
			if got := h.stored(run.ID); got.Status != agentstream.RunFailed || got.Error == nil || got.Error.Code != tt.wantCode {
				t.Fatalf("stored run %+v", got)
			}
		})
	}
}

// TestContextMerge: the run's context overrides the thread's key by key;
// the instructions are rendered with the merge.
func TestContextMerge(t *testing.T) {
	t.Parallel()
	temp := 0.25
	h := newHarness(t, setup{agents: []agentstream.Agent{{
		Name: "assistant", Instructions: "a={{.a}} b={{.b}} c={{.c}}", Temperature: &temp,
	}}})
	threadCtx := map[string]any{"a": "thread-a", "b": "thread-b"}
	th := h.thread(threadCtx)
	run, err := h.r.Start(context.Background(), StartRequest{
		Thread: th, UserID: "u1", Input: "hi", Context: map[string]any{"b": "run-b", "c": "run-c"},
	})
	if err != nil {
		t.Fatal(err)
	}
	end(t, h.events(run.ID), agentstream.EventRunCompleted)

	reqs := h.model.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d model calls", len(reqs))
	}
	msgs := reqs[0].Messages
	if len(msgs) != 2 || msgs[0].Role != agentstream.RoleSystem || msgs[0].Content != "a=thread-a b=run-b c=run-c" ||
		msgs[1].Role != agentstream.RoleUser || msgs[1].Content != "hi" {
		t.Fatalf("model input %+v", msgs)
	}
	if reqs[0].Model != "test-model" || reqs[0].Temperature == nil || *reqs[0].Temperature != temp {
		t.Fatalf("model request %+v", reqs[0])
	}
	want := map[string]any{"a": "thread-a", "b": "run-b", "c": "run-c"}
	if !reflect.DeepEqual(run.Context, want) || !reflect.DeepEqual(h.stored(run.ID).Context, want) {
		t.Fatalf("run context %v, stored %v; want %v", run.Context, h.stored(run.ID).Context, want)
	}
	if !reflect.DeepEqual(threadCtx, map[string]any{"a": "thread-a", "b": "thread-b"}) {
		t.Fatalf("the thread's context was changed: %v", threadCtx)
	}
}

// outageStore fails FinishRun while down is set, as a store that cannot be
// reached, and counts the calls.
type outageStore struct {
	agentstream.Store
	down  *atomic.Bool
	calls *atomic.Int64
}

func (s outageStore) FinishRun(ctx context.Context, run agentstream.Run, msgs []agentstream.Message) error {
	s.calls.Add(1)
	if s.down.Load() {
		return agentstream.Errorf(agentstream.CodeUnavailable, "the store cannot be reached")
	}
	return s.Store.FinishRun(ctx, run, msgs)
}

// TestFinishRetried: a store that fails at a run's end for less than
// FinalizeTimeout delays the terminal event until the outcome is saved: the
// run ends as it would have.
func TestFinishRetried(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	var calls atomic.Int64
	down.Store(true)
	h := newHarness(t, setup{wrap: func(s agentstream.Store) agentstream.Store {
		return outageStore{Store: s, down: &down, calls: &calls}
	}, cfg: Config{FinalizeTimeout: time.Minute}})
	run := h.start(h.thread(nil), "hi")
	eventually(t, "FinishRun to be tried again", func() bool { return calls.Load() >= 3 })
	down.Store(false)
	evs := h.events(run.ID)
	e := end(t, evs, agentstream.EventRunCompleted)
	if e.Error != nil {
		t.Fatalf("terminal event %+v", e)
	}
	stored, err := h.db.GetRun(context.Background(), "u1", run.ID)
	if err != nil || stored.Status != agentstream.RunCompleted || stored.EndSeq != evs[len(evs)-1].Seq {
		t.Fatalf("stored run: %+v, %v; want completed, ending at %d", stored, err, evs[len(evs)-1].Seq)
	}
}

// TestFinishSavedLater: a store down for longer than FinalizeTimeout at a
// run's end: the stream ends failed, and once the store is back the run is
// saved as failed with its answer, so that the thread takes runs again.
func TestFinishSavedLater(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	var calls atomic.Int64
	down.Store(true)
	h := newHarness(t, setup{wrap: func(s agentstream.Store) agentstream.Store {
		return outageStore{Store: s, down: &down, calls: &calls}
	}, cfg: Config{FinalizeTimeout: 300 * time.Millisecond}})
	th := h.thread(nil)
	run := h.start(th, "hi")
	evs := h.events(run.ID)
	e := end(t, evs, agentstream.EventRunFailed)
	if e.Error == nil || !strings.Contains(e.Error.Message, "could not be saved") {
		t.Fatalf("terminal event %+v", e)
	}
	if stored, _ := h.db.GetRun(context.Background(), "u1", run.ID); stored.Status != agentstream.RunRunning {
		t.Fatalf("stored run while the store is down: %s, want still running", stored.Status)
	}
	down.Store(false)
	eventually(t, "the run to be saved once the store is back", func() bool {
		stored, err := h.db.GetRun(context.Background(), "u1", run.ID)
		return err == nil && stored.Status == agentstream.RunFailed
	})
	stored, _ := h.db.GetRun(context.Background(), "u1", run.ID)
	if stored.EndSeq != evs[len(evs)-1].Seq || stored.Error == nil || !strings.Contains(stored.Error.Message, "could not be saved") {
		t.Fatalf("saved run %+v: want failed as streamed, ending at %d", stored, evs[len(evs)-1].Seq)
	}
	msgs, err := h.db.ListMessages(context.Background(), th.ID)
	if err != nil || len(msgs) != 2 || msgs[1].Role != agentstream.RoleAssistant {
		t.Fatalf("messages after the late save: %+v, %v; want the question and the answer", msgs, err)
	}
	// The thread is free again.
	h.start(th, "again")
}

// downLog refuses every append, as an event log that cannot be reached.
type downLog struct{ agentstream.EventLog }

func (downLog) Append(context.Context, string, ...agentstream.Event) (int64, error) {
	return 0, agentstream.Errorf(agentstream.CodeUnavailable, "redis is down")
}

// TestStartRefusedWithoutLog: a run whose run.created the log refuses is
// refused with CodeUnavailable, never started with a log missing its head;
// its question stays saved, the run ended failed, the thread free.
func TestStartRefusedWithoutLog(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	h := newHarness(t, setup{wrapLog: func(l agentstream.EventLog) agentstream.EventLog { return downLog{l} },
		script: func(int, agentstream.ModelRequest) turn { calls.Add(1); return turn{text: []string{"never"}} }})
	th := h.thread(nil)
	_, err := h.r.Start(context.Background(), StartRequest{Thread: th, UserID: th.UserID, Input: "hi"})
	if agentstream.CodeOf(err) != agentstream.CodeUnavailable {
		t.Fatalf("Start with the log down: %v, want CodeUnavailable", err)
	}
	msgs, err := h.db.ListMessages(context.Background(), th.ID)
	if err != nil || len(msgs) != 1 || msgs[0].Content != "hi" {
		t.Fatalf("messages: %+v, %v; want the question", msgs, err)
	}
	run, err := h.db.GetRun(context.Background(), th.UserID, msgs[0].RunID)
	if err != nil || run.Status != agentstream.RunFailed || run.Error == nil || run.Error.Code != agentstream.CodeUnavailable {
		t.Fatalf("the refused run: %+v, %v; want failed, unavailable", run, err)
	}
	if running, queued := h.r.Load(); running != 0 || queued != 0 || calls.Load() != 0 {
		t.Fatalf("after the refusal: %d running, %d queued, %d model calls", running, queued, calls.Load())
	}
}

// TestStartChecksBeforeWriting: a run whose input no store keeps (a NUL)
// on a new thread is refused with CodeInvalidRequest, and the thread is
// not created.
func TestStartChecksBeforeWriting(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setup{})
	now := time.Now().UTC()
	th := agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: "u1", Agent: "assistant", CreatedAt: now, UpdatedAt: now}
	_, err := h.r.Start(context.Background(), StartRequest{Thread: th, UserID: "u1", Input: "a\x00b", NewThread: true})
	if agentstream.CodeOf(err) != agentstream.CodeInvalidRequest {
		t.Fatalf("Start with a NUL in the input: %v, want CodeInvalidRequest", err)
	}
	if _, err := h.db.GetThread(context.Background(), "u1", th.ID); !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("the new thread after the refusal: %v, want not found", err)
	}
}

// TestNewThreadOneWrite: a run on a new thread creates the thread and the
// run in one store write (CreateThreadRun, no CreateThread), and a taken
// thread ID is ErrThreadTaken with nothing written to the stored thread.
func TestNewThreadOneWrite(t *testing.T) {
	t.Parallel()
	var cs *callCounter
	h := newHarness(t, setup{wrap: func(s agentstream.Store) agentstream.Store {
		cs = &callCounter{Store: s}
		return cs
	}})
	now := time.Now().UTC()
	th := agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: "u1", Agent: "assistant", CreatedAt: now, UpdatedAt: now}
	run, err := h.r.Start(context.Background(), StartRequest{Thread: th, UserID: "u1", Input: "hi", NewThread: true})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if w := cs.writes.Load(); w != 1 {
		t.Errorf("%d store writes to start a run on a new thread, want 1", w)
	}
	end(t, h.events(run.ID), agentstream.EventRunCompleted)
	if msgs := h.messages(th.ID); len(msgs) != 2 || msgs[0].Content != "hi" || msgs[1].Content != "ok" {
		t.Fatalf("the new thread's messages: %+v", msgs)
	}
	_, err = h.r.Start(context.Background(), StartRequest{Thread: th, UserID: "u1", Input: "again", NewThread: true})
	if !errors.Is(err, ErrThreadTaken) {
		t.Fatalf("Start of a taken thread ID: %v, want ErrThreadTaken", err)
	}
	if msgs := h.messages(th.ID); len(msgs) != 2 {
		t.Fatalf("the taken thread got messages: %+v", msgs)
	}
}

// TestNewThreadRefusedByLimits: a run on a new thread refused for the
// user's limits leaves no thread behind.
func TestNewThreadRefusedByLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setup{cfg: Config{Limits: Limits{ConcurrentRuns: 1}},
		script: scripted(turn{hold: true})})
	h.start(h.thread(nil), "hold")
	h.model.waitStreamed(t, 1)
	now := time.Now().UTC()
	th := agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: "u1", Agent: "assistant", CreatedAt: now, UpdatedAt: now}
	_, err := h.r.Start(context.Background(), StartRequest{Thread: th, UserID: "u1", Input: "hi", NewThread: true})
	if agentstream.CodeOf(err) != agentstream.CodeTooManyRuns {
		t.Fatalf("Start past limits.concurrent_runs: %v, want CodeTooManyRuns", err)
	}
	if _, err := h.db.GetThread(context.Background(), "u1", th.ID); !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("the refused run's new thread: %v, want not found", err)
	}
	if running, queued := h.r.Load(); running != 1 || queued != 0 {
		t.Fatalf("after the refusal: %d running, %d queued; want the held run only", running, queued)
	}
}

// TestThreadDoneMadeForWaiter: a run's done channel is made only when a
// run waits for it (an open stream holds none for nothing), and it closes
// when the run ends, which starts the waiting run.
func TestThreadDoneMadeForWaiter(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h := newHarness(t, setup{script: scripted(turn{text: []string{"a"}, wait: release})})
	th := h.thread(nil)
	first := h.start(th, "first")
	h.model.waitStreamed(t, 1)
	if id, done := activeRun(h, th.ID); id != first.ID || done != nil {
		t.Fatalf("active run %q with done %v, want %s with none", id, done, first.ID)
	}
	second := make(chan error, 1)
	go func() {
		_, err := h.r.Start(context.Background(), StartRequest{Thread: th, UserID: th.UserID, Input: "second", Multitask: MultitaskEnqueue})
		second <- err
	}()
	var done chan struct{}
	eventually(t, "the second run to wait for the first", func() bool {
		_, done = activeRun(h, th.ID)
		return done != nil
	})
	close(release)
	receive(t, done, "the first run's done to close")
	if err := receive(t, second, "the second Start"); err != nil {
		t.Fatal(err)
	}
}

// activeRun is the runner's active run of a thread and its done channel.
func activeRun(h *harness, threadID string) (string, chan struct{}) {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	if t := h.r.threads[threadID]; t != nil {
		return t.runID, t.done
	}
	return "", nil
}
