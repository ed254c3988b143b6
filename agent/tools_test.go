package agent

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/tools"
)

// TestParallelToolCalls: two tools called in one turn are in flight at the
// same time (each waits for the other to start), and their results reach
// the model in the model's order, whichever ends first.
func TestParallelToolCalls(t *testing.T) {
	t.Parallel()
	var started sync.WaitGroup
	started.Add(2)
	both := make(chan struct{})
	go func() { started.Wait(); close(both) }()
	meet := func(name string, delay time.Duration) agentstream.Tool {
		return tools.NewFunc(name, "Waits for the other.", `{"type":"object"}`, func(ctx context.Context, _ json.RawMessage) (string, error) {
			started.Done()
			select {
			case <-both:
			case <-ctx.Done():
				return "", ctx.Err()
			}
			time.Sleep(delay) // the first called ends last
			return name + " done", nil
		})
	}
	h := newHarness(t, setup{
		tools: []agentstream.Tool{meet("first", 100*time.Millisecond), meet("second", 0)},
		script: scripted(
			turn{calls: []fakeCall{{id: "c1", name: "first", pieces: []string{"{}"}}, {id: "c2", name: "second", pieces: []string{"{}"}}}},
			turn{text: []string{"both done"}},
		),
	})
	run := h.start(h.thread(nil), "go")
	evs := h.events(run.ID)
	end(t, evs, agentstream.EventRunCompleted)
	for _, ev := range evs {
		if ev.Type == agentstream.EventToolResult && decode[agentstream.ToolResultData](t, ev).IsError {
			t.Fatalf("a call failed: %s (were they in flight together?)", ev.Data)
		}
	}
	reqs := h.model.requests()
	msgs := reqs[1].Messages
	n := len(msgs)
	if msgs[n-2].ToolCallID != "c1" || msgs[n-2].Content != "first done" || msgs[n-1].ToolCallID != "c2" || msgs[n-1].Content != "second done" {
		t.Fatalf("results reached the model as %+v, %+v; want c1 then c2", msgs[n-2], msgs[n-1])
	}
}

// TestMaxParallelTools: past MaxParallelTools the calls of a turn wait for
// a place; each call's tool.call is streamed when it starts.
func TestMaxParallelTools(t *testing.T) {
	t.Parallel()
	var running, most, started atomic.Int32
	slow := tools.NewFunc("slow", "Takes a while.", `{"type":"object"}`, func(ctx context.Context, _ json.RawMessage) (string, error) {
		n := running.Add(1)
		started.Add(1)
		defer running.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		// Stay until a second call runs beside this one (or no other is
		// left to start): the bound, not the timing, limits the overlap.
		for running.Load() < 2 && started.Load() < 5 {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		time.Sleep(10 * time.Millisecond)
		return "ok", nil
	})
	var calls []fakeCall
	for i := range 5 {
		calls = append(calls, fakeCall{id: "c" + string(rune('1'+i)), name: "slow", pieces: []string{"{}"}})
	}
	h := newHarness(t, setup{cfg: Config{MaxParallelTools: 2}, tools: []agentstream.Tool{slow},
		script: scripted(turn{calls: calls}, turn{text: []string{"done"}})})
	run := h.start(h.thread(nil), "go")
	evs := h.events(run.ID)
	end(t, evs, agentstream.EventRunCompleted)
	if m := most.Load(); m != 2 {
		t.Fatalf("%d calls ran at once, want 2 (max_parallel_tools)", m)
	}
	// tool.call, then tool.result of the first two, before the fifth starts.
	var order []string
	for _, ev := range evs {
		switch ev.Type {
		case agentstream.EventToolCall:
			order = append(order, "call")
		case agentstream.EventToolResult:
			order = append(order, "result")
		}
	}
	if got := strings.Join(order, " "); !strings.HasPrefix(got, "call call result") || strings.Count(got, "call") != 5 {
		t.Fatalf("events %s: want two calls, then a result before the third call", got)
	}
}

// TestInvalidArgumentsCorrected: arguments that do not match the tool's
// schema go back to the model as a tool error saying what is wrong, and the
// tool is not called; the model's second attempt succeeds.
func TestInvalidArgumentsCorrected(t *testing.T) {
	t.Parallel()
	var called atomic.Int32
	lookup := tools.NewFunc("lookup_order", "Looks up an order.",
		`{"type":"object","properties":{"order_id":{"type":"string"}},"required":["order_id"],"additionalProperties":false}`,
		func(_ context.Context, args json.RawMessage) (string, error) {
			called.Add(1)
			return "order " + string(args), nil
		})
	h := newHarness(t, setup{tools: []agentstream.Tool{lookup}, script: scripted(
		turn{calls: []fakeCall{{id: "c1", name: "lookup_order", pieces: []string{`{"order":12}`}}}},
		turn{calls: []fakeCall{{id: "c2", name: "lookup_order", pieces: []string{`{"order_id":"12"}`}}}},
		turn{text: []string{"found it"}},
	)})
	run := h.start(h.thread(nil), "go")
	evs := h.events(run.ID)
	end(t, evs, agentstream.EventRunCompleted)
	var results []agentstream.ToolResultData
	for _, ev := range evs {
		if ev.Type == agentstream.EventToolResult {
			results = append(results, decode[agentstream.ToolResultData](t, ev))
		}
	}
	if len(results) != 2 || !results[0].IsError || !strings.Contains(results[0].Output, "order_id") || results[1].IsError {
		t.Fatalf("tool results %+v: want an error naming order_id, then success", results)
	}
	if called.Load() != 1 {
		t.Fatalf("the tool was called %d times, want once (the valid attempt)", called.Load())
	}
	// The model saw the error as the tool's output.
	if msgs := h.model.requests()[1].Messages; !strings.Contains(msgs[len(msgs)-1].Content, "order_id") {
		t.Fatalf("the model's second request ends with %+v", msgs[len(msgs)-1])
	}
}

// timedTool is a tool with a timeout of its own.
type timedTool struct {
	agentstream.Tool
	d time.Duration
}

func (t timedTool) Timeout() time.Duration { return t.d }

// TestToolTimeoutOfItsOwn: a tool's own timeout bounds its calls instead of
// the runner's.
func TestToolTimeoutOfItsOwn(t *testing.T) {
	t.Parallel()
	stuck := tools.NewFunc("stuck", "Never answers.", `{"type":"object"}`, func(ctx context.Context, _ json.RawMessage) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	})
	h := newHarness(t, setup{cfg: Config{ToolTimeout: time.Minute}, tools: []agentstream.Tool{timedTool{stuck, 50 * time.Millisecond}},
		script: scripted(turn{calls: []fakeCall{{id: "c1", name: "stuck", pieces: []string{"{}"}}}}, turn{text: []string{"gave up"}})})
	run := h.start(h.thread(nil), "go")
	evs := h.events(run.ID)
	end(t, evs, agentstream.EventRunCompleted)
	for _, ev := range evs {
		if ev.Type == agentstream.EventToolResult {
			if r := decode[agentstream.ToolResultData](t, ev); !r.IsError || !strings.Contains(r.Output, "within 50ms") {
				t.Fatalf("tool.result %+v, want a timeout after 50ms", r)
			}
			return
		}
	}
	t.Fatal("no tool.result")
}

// TestRunInfoForTools: a Go tool reads whose run it is: run, thread, user,
// agent and the run's context.
func TestRunInfoForTools(t *testing.T) {
	t.Parallel()
	got := make(chan agentstream.RunInfo, 1)
	who := tools.NewFunc("who", "Says who.", `{"type":"object"}`, func(ctx context.Context, _ json.RawMessage) (string, error) {
		ri, ok := agentstream.RunInfoFrom(ctx)
		if !ok {
			return "", context.Canceled
		}
		got <- ri
		return "ok", nil
	})
	h := newHarness(t, setup{tools: []agentstream.Tool{who},
		script: scripted(turn{calls: []fakeCall{{id: "c1", name: "who", pieces: []string{"{}"}}}}, turn{text: []string{"done"}})})
	th := h.thread(map[string]any{"pregnancy_week": 12.0})
	run := h.start(th, "go")
	end(t, h.events(run.ID), agentstream.EventRunCompleted)
	ri := <-got
	if ri.RunID != run.ID || ri.ThreadID != th.ID || ri.UserID != th.UserID || ri.Agent != "assistant" || ri.Context["pregnancy_week"] != 12.0 {
		t.Fatalf("the tool saw %+v", ri)
	}
}

// staticSource is a tool source with a fixed list.
type staticSource struct {
	name  string
	tools []agentstream.Tool
}

func (s staticSource) Name() string { return s.name }
func (s staticSource) Tools(context.Context) ([]agentstream.Tool, error) {
	return s.tools, nil
}

// TestToolSourcesAndEndpoints: an agent gets its tool sources' tools as
// each run starts, and calls its own model endpoint; a name a source
// shares with the agent's own tool is left out. Unknown sources,
// endpoints and the reserved keys are refused at New.
func TestToolSourcesAndEndpoints(t *testing.T) {
	t.Parallel()
	echo := tools.NewFunc("echo", "Echoes.", `{"type":"object"}`, func(_ context.Context, a json.RawMessage) (string, error) { return "echo", nil })
	remote := tools.NewFunc("read_file", "Reads a file.", `{"type":"object"}`, func(_ context.Context, a json.RawMessage) (string, error) { return "file", nil })
	shadow := tools.NewFunc("echo", "Another echo.", `{"type":"object"}`, func(_ context.Context, a json.RawMessage) (string, error) { return "shadow", nil })
	local := &fakeModel{script: scripted(turn{calls: []fakeCall{{id: "c1", name: "read_file", pieces: []string{"{}"}}}}, turn{text: []string{"local answer"}})}
	h := newHarness(t, setup{
		tools:   []agentstream.Tool{echo},
		sources: map[string]agentstream.ToolSource{"files": staticSource{"files", []agentstream.Tool{remote, shadow}}},
		models:  map[string]agentstream.Model{"local": local},
		agents:  []agentstream.Agent{{Name: "assistant", Tools: []string{"echo"}, MCPServers: []string{"files"}, Endpoint: "local"}},
	})
	run := h.start(h.thread(nil), "go")
	evs := h.events(run.ID)
	end(t, evs, agentstream.EventRunCompleted)
	if n := len(h.model.requests()); n != 0 {
		t.Fatalf("the default model got %d requests, want none", n)
	}
	reqs := local.requests()
	if len(reqs) != 2 {
		t.Fatalf("the agent's endpoint got %d requests, want 2", len(reqs))
	}
	var names []string
	for _, s := range reqs[0].Tools {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "echo,read_file" {
		t.Fatalf("tools offered: %v, want echo then read_file (the source's echo left out)", names)
	}
	for _, bad := range []agentstream.Agent{
		{Name: "a", MCPServers: []string{"nope"}},
		{Name: "a", Endpoint: "nope"},
		{Name: "a", Handoffs: []string{"billing"}},
		{Name: "a", RequireApproval: []string{"echo"}},
	} {
		_, err := New(Config{DefaultModel: "m", DefaultAgent: "a"}, Deps{Store: h.db, Log: h.log, Model: h.model, Agents: []agentstream.Agent{bad}})
		if err == nil {
			t.Fatalf("New accepted %+v", bad)
		}
	}
}

// TestSchemaCacheBounded: a tool source that keeps changing its tools'
// schemas does not grow the cache without end.
func TestSchemaCacheBounded(t *testing.T) {
	t.Parallel()
	c := newSchemaCache()
	for i := range maxSchemas + 10 {
		cs := c.get(json.RawMessage(`{"type":"object","description":"v` + strconv.Itoa(i) + `"}`))
		if cs.err != nil || cs.resolved == nil {
			t.Fatalf("schema %d: %+v", i, cs)
		}
	}
	c.mu.Lock()
	n := len(c.m)
	c.mu.Unlock()
	if n > maxSchemas {
		t.Fatalf("the cache holds %d schemas, over its bound of %d", n, maxSchemas)
	}
}
