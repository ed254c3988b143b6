package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/httpapi"
	"github.com/agentstream/agentstream/server"
	"github.com/agentstream/agentstream/sim"
	"github.com/agentstream/agentstream/tools"
)

// embedConfig is the config of the embedding tests: a loopback address,
// a SQLite file of the test's, and the OpenAI-compatible model at
// modelURL ("" leaves the openai: block empty: the simulated model, or
// WithModel's).
func embedConfig(t testing.TB, modelURL string, agents ...agentstream.Agent) config.Config {
	t.Helper()
	cfg := config.Config{
		Addr: "127.0.0.1:0", DatabaseURL: filepath.Join(t.TempDir(), "agentstream.db"),
		Agents: agents, DefaultAgent: agents[0].Name,
	}
	if modelURL != "" {
		cfg.OpenAI = config.OpenAI{APIKey: "sk-test", BaseURL: modelURL, MaxRetries: intPtr(2), IdleTimeout: 10 * time.Second}
	}
	return cfg
}

// startEmbedded runs server.New(cfg, opts…) as a Go program embedding
// agentstream would, and serves it until the test ends; its logs go to
// logs (and the test's log).
func startEmbedded(t testing.TB, cfg config.Config, logs *lockedBuffer, opts ...server.Option) *env {
	t.Helper()
	var h slog.Handler = slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})
	if logs != nil {
		h = slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})
	}
	srv, err := server.New(context.Background(), cfg, slog.New(h), opts...)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &env{t: t, url: "http://" + srv.Addr(), srv: srv}
}

// fastSim starts a simulator that answers at once.
func fastSim(t testing.TB) *sim.Running {
	t.Helper()
	running, err := sim.Start("127.0.0.1:0", sim.Options{Pace: -1, TTFT: -1, Tokens: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = running.Close() })
	return running
}

// orderStatus is a Go tool as docs/embedding.md writes one: it answers
// from the run it belongs to (agentstream.RunInfoFrom).
func orderStatus() agentstream.Tool {
	return tools.NewFunc("order_status", "Looks up one of the user's orders.",
		`{"type":"object","properties":{"order_id":{"type":"string","examples":["A-1001"]}},"required":["order_id"],"additionalProperties":false}`,
		func(ctx context.Context, args json.RawMessage) (string, error) {
			var in struct {
				OrderID string `json:"order_id"`
			}
			if err := json.Unmarshal(args, &in); err != nil {
				return "", err
			}
			ri, ok := agentstream.RunInfoFrom(ctx)
			if !ok {
				return "", errors.New("called outside a run")
			}
			out, err := json.Marshal(map[string]any{
				"order_id": in.OrderID, "status": "shipped", "user": ri.UserID, "run": ri.RunID,
				"thread": ri.ThreadID, "agent": ri.Agent, "currency": ri.Context["currency"],
			})
			return string(out), err
		})
}

// slowTool waits for its context: with a timeout of its own
// (agentstream.TimedTool), it ends long before runs.tool_timeout.
type slowTool struct{ timeout time.Duration }

func (slowTool) Spec() agentstream.ToolSpec {
	return agentstream.ToolSpec{Name: "slow_lookup", Description: "Never answers.", Parameters: json.RawMessage(`{"type":"object"}`)}
}

func (slowTool) Call(ctx context.Context, _ json.RawMessage) (string, error) {
	<-ctx.Done()
	return "", ctx.Err()
}

func (s slowTool) Timeout() time.Duration { return s.timeout }

// TestEmbeddedGoTools: tools a Go program adds with server.WithTools are
// named by the config's agents, called through the HTTP API with the run
// they belong to, and keep a timeout of their own.
func TestEmbeddedGoTools(t *testing.T) {
	t.Parallel()
	model := fastSim(t)
	cfg := embedConfig(t, model.URL(), agentstream.Agent{
		Name: "shop", Instructions: "You help with orders.", Tools: []string{"order_status", "slow_lookup", "current_time"}, MaxTurns: 3,
	})
	cfg.Runs.ToolTimeout = time.Minute
	e := startEmbedded(t, cfg, nil, server.WithTools(orderStatus()), server.WithTools(slowTool{timeout: 200 * time.Millisecond}))
	e.sim = model.Server()

	th := e.newThread(`{"agent": "shop", "context": {"currency": "EUR"}}`)
	_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "Where is my order? Use order_status."}`)
	n := checkNative(t, evs)
	if n.end.Status != agentstream.RunCompleted || len(n.toolCalls) != 1 || len(n.results) != 1 {
		t.Fatalf("run %+v, tool calls %+v, results %+v", n.end, n.toolCalls, n.results)
	}
	if c := n.toolCalls[0]; c.Name != "order_status" || string(c.Arguments) != `{"order_id":"A-1001"}` {
		t.Fatalf("tool call %+v", c)
	}
	var out map[string]any
	if r := n.results[0]; r.IsError || json.Unmarshal([]byte(r.Output), &out) != nil {
		t.Fatalf("tool result %+v", r)
	}
	want := map[string]any{"order_id": "A-1001", "status": "shipped", "user": httpapi.LocalUser, "run": n.runID,
		"thread": th.ID, "agent": "shop", "currency": "EUR"}
	for k, v := range want {
		if out[k] != v {
			t.Errorf("the tool's %s is %v, want %v (output %s)", k, out[k], v, n.results[0].Output)
		}
	}
	// The model offered the Go tools beside the built-in one, and got
	// the result back.
	reqs := e.sim.Requests()
	if len(reqs) != 2 || len(reqs[0].Tools) != 3 || reqs[0].Tools[0].Name != "order_status" || reqs[0].Tools[1].Name != "slow_lookup" {
		t.Fatalf("model requests: %+v", reqs)
	}
	if !strings.Contains(n.text, "The tool order_status returned: "+n.results[0].Output) {
		t.Errorf("answer %q does not quote the tool's output", n.text)
	}
	msgs := e.messages(th.ID)
	if len(msgs) != 4 || msgs[2].Role != agentstream.RoleTool || msgs[2].ToolName != "order_status" || msgs[2].Content != n.results[0].Output {
		t.Fatalf("stored messages %+v", msgs)
	}

	// A tool's own timeout, much shorter than runs.tool_timeout.
	_, evs = e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "Try slow_lookup."}`)
	n = checkNative(t, evs)
	if n.end.Status != agentstream.RunCompleted || len(n.results) != 1 || !n.results[0].IsError ||
		n.results[0].Output != "error: the tool did not answer within 200ms" {
		t.Fatalf("run %+v, results %+v", n.end, n.results)
	}
}

// source is a Go tool source whose tools change while the server runs.
type source struct {
	name  string
	mu    sync.Mutex
	tools []agentstream.Tool
	err   error
}

func (s *source) Name() string { return s.name }

func (s *source) Tools(context.Context) ([]agentstream.Tool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tools, s.err
}

func (s *source) set(err error, ts ...agentstream.Tool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tools, s.err = ts, err
}

func echoTool(name string) agentstream.Tool {
	return tools.NewFunc(name, "Echoes.", `{"type":"object"}`, func(context.Context, json.RawMessage) (string, error) {
		return name + " answered", nil
	})
}

// TestEmbeddedToolSource: a tool source added with WithToolSources gives
// each run the tools it has when the run starts.
func TestEmbeddedToolSource(t *testing.T) {
	t.Parallel()
	model := fastSim(t)
	src := &source{name: "catalog"}
	src.set(nil, echoTool("find_item"))
	cfg := embedConfig(t, model.URL(), agentstream.Agent{Name: "shop", MCPServers: []string{"catalog"}, MaxTurns: 3})
	e := startEmbedded(t, cfg, nil, server.WithToolSources(src))
	e.sim = model.Server()

	_, evs := e.stream("POST", "/v1/chat", `{"query": "find_item please", "thread_id": "src-1"}`)
	if c := seedChunks(t, evs); c[0]["tool"] != "find_item" || !strings.Contains(fmt.Sprint(c[len(c)-2]["response"]), "find_item answered") {
		t.Fatalf("chunks %v", c)
	}
	src.set(nil, echoTool("find_price"))
	_, evs = e.stream("POST", "/v1/chat", `{"query": "find_item or find_price?", "thread_id": "src-1"}`)
	if c := seedChunks(t, evs); c[0]["tool"] != "find_price" {
		t.Fatalf("chunks %v", c)
	}
	// A source that fails leaves its runs without its tools.
	src.set(errors.New("catalog down"))
	_, evs = e.stream("POST", "/v1/chat", `{"query": "find_price?", "thread_id": "src-1"}`)
	if c := seedChunks(t, evs); c[len(c)-1]["status"] != "done" || c[0]["tool"] != nil {
		t.Fatalf("chunks %v", c)
	}
	reqs := e.sim.Requests()
	if len(reqs) != 5 || reqs[0].Tools[0].Name != "find_item" || reqs[2].Tools[0].Name != "find_price" || len(reqs[4].Tools) != 0 {
		t.Fatalf("model requests %+v", reqs)
	}
}

// goModel is a Model written in Go: it answers with its name and the
// model name it was asked for.
type goModel struct {
	name  string
	calls atomic.Int32
}

func (m *goModel) Stream(ctx context.Context, req agentstream.ModelRequest, onDelta func(agentstream.ModelDelta)) (agentstream.ModelResult, error) {
	m.calls.Add(1)
	if err := ctx.Err(); err != nil {
		return agentstream.ModelResult{}, agentstream.Errorf(agentstream.CodeCancelled, "cancelled")
	}
	text := m.name + " answers " + req.Model
	for _, w := range strings.SplitAfter(text, " ") {
		onDelta(agentstream.ModelDelta{Text: w})
	}
	return agentstream.ModelResult{Content: text, FinishReason: "stop", Usage: agentstream.Usage{InputTokens: 1, OutputTokens: 3}}, nil
}

// TestEmbeddedModels: WithModel replaces the openai: block (the simulator
// is not started) and WithEndpoint adds an endpoint agents pick.
func TestEmbeddedModels(t *testing.T) {
	t.Parallel()
	def, local := &goModel{name: "default"}, &goModel{name: "local"}
	cfg := embedConfig(t, "",
		agentstream.Agent{Name: "plain"},
		agentstream.Agent{Name: "near", Endpoint: "local", Model: "llama3"},
	)
	cfg.Model = "house-model"
	var logs lockedBuffer
	e := startEmbedded(t, cfg, &logs, server.WithModel(def), server.WithEndpoint("local", local))

	_, evs := e.stream("POST", "/v1/threads/"+e.newThread(`{"agent": "plain"}`).ID+"/runs", `{"input": "hi"}`)
	if n := checkNative(t, evs); n.end.Status != agentstream.RunCompleted || n.text != "default answers house-model" {
		t.Fatalf("run %+v, text %q", n.end, n.text)
	}
	_, evs = e.stream("POST", "/v1/threads/"+e.newThread(`{"agent": "near"}`).ID+"/runs", `{"input": "hi"}`)
	if n := checkNative(t, evs); n.end.Status != agentstream.RunCompleted || n.text != "local answers llama3" {
		t.Fatalf("run %+v, text %q", n.end, n.text)
	}
	if def.calls.Load() != 1 || local.calls.Load() != 1 {
		t.Fatalf("calls: default %d, local %d", def.calls.Load(), local.calls.Load())
	}
	// Logged at Serve, which may not have run yet: wait for it.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "agentstream listening") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	l := logs.String()
	if !strings.Contains(l, "simulated=false") || strings.Contains(l, "simulated model") {
		t.Fatalf("the simulator was started beside WithModel's model:\n%s", l)
	}
}

// TestEmbeddedOptionsRefused: what cannot work is refused by server.New,
// before it listens, with a message saying what.
func TestEmbeddedOptionsRefused(t *testing.T) {
	t.Parallel()
	named := func(name string) agentstream.Tool {
		return tools.NewFunc(name, "", `{"type":"object"}`, func(context.Context, json.RawMessage) (string, error) { return "", nil })
	}
	agent := agentstream.Agent{Name: "shop", Tools: []string{"order_status"}}
	tests := []struct {
		name  string
		agent agentstream.Agent
		opts  []server.Option
		want  string
	}{
		{"a Go tool the agent names is missing", agent, nil, `tools[0]: unknown tool "order_status"; the tools are current_time, due_date`},
		{"named like a built-in tool", agent, []server.Option{server.WithTools(orderStatus(), named("due_date"))},
			`the tool "due_date" added in Go is named like a tool the config already has`},
		{"twice", agent, []server.Option{server.WithTools(orderStatus()), server.WithTools(orderStatus())},
			`the tool "order_status" is added in Go twice`},
		{"a name models refuse", agent, []server.Option{server.WithTools(orderStatus(), named("order status"))},
			`the tool "order status" added in Go: model APIs accept only`},
		{"a nil tool", agent, []server.Option{server.WithTools(orderStatus(), nil)}, "server.WithTools: a nil tool"},
		{"a nil model", agent, []server.Option{server.WithTools(orderStatus()), server.WithModel(nil)}, "server.WithModel: a nil model"},
		{"a source the agent names is missing", agentstream.Agent{Name: "shop", MCPServers: []string{"catalog"}},
			[]server.Option{server.WithToolSources(&source{name: "files"})}, `unknown MCP server "catalog"; the MCP servers are files`},
		{"a source twice", agentstream.Agent{Name: "shop"},
			[]server.Option{server.WithToolSources(&source{name: "files"}, &source{name: "files"})}, `the tool source "files" is added in Go twice`},
		{"an endpoint the agent names is missing", agentstream.Agent{Name: "shop", Endpoint: "local"},
			[]server.Option{server.WithEndpoint("remote", &goModel{})}, `unknown model endpoint "local"; the model endpoints are remote`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := embedConfig(t, "http://127.0.0.1:9/v1", tt.agent)
			srv, err := server.New(context.Background(), cfg, nil, tt.opts...)
			if err == nil {
				_ = srv.Shutdown(context.Background())
				t.Fatalf("server.New accepted it")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}
