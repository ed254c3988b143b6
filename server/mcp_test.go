package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/mcp"
	"github.com/agentstream/agentstream/mcp/mcptest"
	"github.com/agentstream/agentstream/server"
	"github.com/agentstream/agentstream/sim"
)

const hanaKey = "hana-key-0123456789"

// mcpEnv is a server whose agent "mcp" has the tools of the test MCP
// server twice: as a child process over stdio ("files", the tools named
// below), and over Streamable HTTP ("remote", its tools prefixed
// "remote_"). The simulator calls a tool when the question names it.
type mcpEnv struct {
	*env
	// events reads what the child process saw.
	events func() []string
	remote *mcptest.HTTP
	logs   *lockedBuffer
}

// The tools "files" offers (its allow-list).
var filesTools = []string{mcptest.Echo, mcptest.TwoTexts, mcptest.Structured, mcptest.Fail, mcptest.Hang, mcptest.Dotted, mcptest.Long}

func startMCP(t *testing.T, mod func(*config.Config)) *mcpEnv {
	t.Helper()
	bin := mcptest.Build(t)
	path := filepath.Join(t.TempDir(), "events")
	remote := mcptest.StartHTTP(t)
	logs := &lockedBuffer{}
	e := startLogged(t, sim.Options{Tokens: 3}, func(c *config.Config) {
		c.Auth.Keys = []config.APIKey{{Key: hanaKey, User: "hana"}}
		c.MCPServers = []config.MCPServer{
			{Name: "files", Command: bin, Env: map[string]string{mcptest.EventsVar: path}, Tools: filesTools,
				Forward: config.Forward{UserHeader: "X-User-Id", ContextHeaders: map[string]string{"pregnancy_week": "X-Pregnancy-Week"}}},
			{Name: "remote", URL: remote.URL, Prefix: "remote_", Tools: []string{mcptest.WhoAmI, mcptest.AddTool, mcptest.Late},
				Forward: config.Forward{UserHeader: "X-User-Id", ContextHeaders: map[string]string{"pregnancy_week": "X-Pregnancy-Week"}}},
		}
		c.Agents = append(c.Agents, agentstream.Agent{Name: "mcp", MCPServers: []string{"files", "remote"}, MaxTurns: 3})
		if mod != nil {
			mod(c)
		}
	}, slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelInfo}))
	return &mcpEnv{env: e, events: func() []string { return mcptest.FileEvents(t, path) }, remote: remote, logs: logs}
}

// as sends a request as hana.
func (e *mcpEnv) as(method, path, body string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+hanaKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	e.t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func (e *mcpEnv) thread() string {
	e.t.Helper()
	resp := e.as("POST", "/v1/threads", `{"agent": "mcp", "context": {"pregnancy_week": 20}}`)
	var th agentstream.Thread
	if err := json.NewDecoder(resp.Body).Decode(&th); err != nil || resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("creating a thread: %d %v", resp.StatusCode, err)
	}
	return th.ID
}

// run asks input on a thread of its own and reads the run's stream to
// its end.
func (e *mcpEnv) run(input string) nativeRun {
	e.t.Helper()
	return e.runOn(e.thread(), input)
}

func (e *mcpEnv) runOn(threadID, input string) nativeRun {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"input": input})
	resp := e.as("POST", "/v1/threads/"+threadID+"/runs", string(body))
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("run %q: status %d: %s", input, resp.StatusCode, b)
	}
	var evs []sse.Event
	r := sse.NewReader(resp.Body)
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return checkNative(e.t, evs)
		}
		if err != nil {
			e.t.Fatalf("reading the stream: %v", err)
		}
		evs = append(evs, ev)
	}
}

// The agent lists and calls the MCP servers' tools through the real
// server: text, several texts, structured content, isError, names mapped
// for model APIs, a prefix, forwarding; the tools it is not allowed are
// not offered.
func TestMCPTools(t *testing.T) {
	t.Parallel()
	e := startMCP(t, nil)
	for _, tt := range []struct {
		tool, output string
		isErr        bool
	}{
		{mcptest.Echo, "echo: example", false},
		{mcptest.TwoTexts, "first\nsecond", false},
		{mcptest.Structured, `{"n":42,"ok":true}`, false},
		{mcptest.Fail, "error: it broke", true},
		{"dotted_name_v1", "dotted", false},
		{mcp.Name("", mcptest.Long), "long", false},
	} {
		n := e.run("Please call " + tt.tool + " now.")
		if len(n.results) != 1 || n.results[0].Name != tt.tool || n.results[0].Output != tt.output || n.results[0].IsError != tt.isErr {
			t.Errorf("%s: results %+v, want output %q (error %v)", tt.tool, n.results, tt.output, tt.isErr)
			continue
		}
		if n.end.Status != agentstream.RunCompleted || !strings.Contains(n.text, "The tool "+tt.tool+" returned: "+tt.output) {
			t.Errorf("%s: end %+v, text %q", tt.tool, n.end, n.text)
		}
	}
	// Both servers forward hana's id and the thread's pregnancy week: the
	// HTTP one as headers and in _meta.
	n := e.run("Who am I? Ask remote_whoami.")
	if len(n.results) != 1 || n.results[0].IsError {
		t.Fatalf("remote_whoami: %+v", n.results)
	}
	want := `{"headers":{"X-Pregnancy-Week":"20","X-User-Id":"hana"},"meta":{"agentstream/context":{"pregnancy_week":20},"agentstream/user_id":"hana"}}`
	if got := n.results[0].Output; got != want {
		t.Fatalf("remote_whoami saw %s, want %s", got, want)
	}
	// The model is offered the allow-lists' tools, under their names, in
	// the servers' order, with their descriptions and schemas.
	reqs := e.sim.Requests()
	var offered []string
	for _, tl := range reqs[len(reqs)-1].Tools {
		offered = append(offered, tl.Name)
		if tl.Name == mcptest.Echo && (tl.Description != "Echoes its text." || !strings.Contains(string(tl.Parameters), `"required":["text"]`)) {
			t.Errorf("echo offered as %+v", tl)
		}
	}
	wantOffered := []string{mcptest.Echo, mcptest.TwoTexts, mcptest.Structured, mcptest.Fail, mcptest.Hang, "dotted_name_v1", mcp.Name("", mcptest.Long),
		"remote_" + mcptest.WhoAmI, "remote_" + mcptest.AddTool}
	slices.Sort(offered)
	slices.Sort(wantOffered)
	if !slices.Equal(offered, wantOffered) {
		t.Fatalf("the model was offered %v, want %v", offered, wantOffered)
	}
}

// A server that says its tools changed is read again: the next run has
// the new tool.
func TestMCPToolListChanged(t *testing.T) {
	t.Parallel()
	e := startMCP(t, nil)
	if n := e.run("Call remote_late_tool."); len(n.toolCalls) != 0 {
		t.Fatalf("remote_late_tool before it was added: %+v", n.toolCalls)
	}
	if n := e.run("Call remote_add_tool."); len(n.results) != 1 || n.results[0].Output != "added" {
		t.Fatalf("remote_add_tool: %+v", n.results)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := e.run("Call remote_late_tool.")
		if len(n.results) == 1 {
			if r := n.results[0]; r.IsError || r.Output != "late" {
				t.Fatalf("remote_late_tool: %+v", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("remote_late_tool never offered; logs:\n%s", e.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The stdio server killed while a run waits on its tool: that call is a
// tool error, the run completes, and the next run's call reaches the
// restarted server.
func TestMCPServerKilledMidRun(t *testing.T) {
	t.Parallel()
	e := startMCP(t, nil)
	killed := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			evs := e.events()
			for _, ev := range evs {
				if ev == "hang" {
					killed <- syscall.Kill(mcptest.Pids(evs)[0], syscall.SIGKILL)
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		killed <- errors.New("the server never ran hang")
	}()
	n := e.run("Call hang.")
	if err := <-killed; err != nil {
		t.Fatal(err)
	}
	if len(n.results) != 1 || !n.results[0].IsError || !strings.HasPrefix(n.results[0].Output, "error: MCP server files is not available: ") {
		t.Fatalf("the call of the killed server: %+v", n.results)
	}
	if n.end.Status != agentstream.RunCompleted {
		t.Fatalf("the run ended %+v", n.end)
	}
	mcptest.WaitFor(t, "the restarted server", e.events, func(string) bool { return len(mcptest.Pids(e.events())) == 2 })
	n = e.run("Call echo.")
	if len(n.results) != 1 || n.results[0].Output != "echo: example" {
		t.Fatalf("after the restart: %+v", n.results)
	}
	evs := e.events()
	if evs[len(evs)-1] != "call echo" || !strings.Contains(strings.Join(evs, "\n"), "start pid=") {
		t.Fatalf("the restarted server's events: %q", evs)
	}
	if !strings.Contains(e.logs.String(), `msg="an MCP server went away; reconnecting" mcp_server=files`) {
		t.Errorf("no log line names the server that went away:\n%s", e.logs)
	}
}

// Cancelling a run cancels its MCP call: the server gets
// notifications/cancelled and its handler sees the cancel.
func TestMCPRunCancelled(t *testing.T) {
	t.Parallel()
	e := startMCP(t, nil)
	th := e.thread()
	body, _ := json.Marshal(map[string]string{"input": "Call hang."})
	resp := e.as("POST", "/v1/threads/"+th+"/runs", string(body))
	r := sse.NewReader(resp.Body)
	var runID string
	for runID == "" {
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if ev.Type == string(agentstream.EventRunCreated) {
			var d agentstream.RunCreatedData
			if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
				t.Fatal(err)
			}
			runID = d.RunID
		}
	}
	mcptest.WaitFor(t, "the server to run hang", e.events, func(ev string) bool { return ev == "hang" })
	if resp := e.as("POST", "/v1/runs/"+runID+"/cancel", ""); resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("cancel: %d %s", resp.StatusCode, b)
	}
	mcptest.WaitFor(t, "notifications/cancelled", e.events, func(ev string) bool { return ev == "recv notifications/cancelled" })
	mcptest.WaitFor(t, "the handler to see its cancel", e.events, func(ev string) bool { return ev == "cancelled hang" })
}

// Shutdown stops the servers' child processes.
func TestMCPShutdownStopsChildren(t *testing.T) {
	t.Parallel()
	var pid int
	// Cleanups run last first: this one after the server's shutdown.
	t.Cleanup(func() {
		if pid == 0 {
			return
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("the MCP server's process %d is still there after shutdown (kill: %v)", pid, err)
		}
	})
	e := startMCP(t, nil)
	if n := e.run("Call echo."); len(n.results) != 1 || n.results[0].Output != "echo: example" {
		t.Fatalf("echo: %+v", n.results)
	}
	pid = mcptest.Pids(e.events())[0]
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the MCP server's process %d: %v", pid, err)
	}
}

// What stops the start (a required server that cannot start, two servers'
// tools under one name) is a problem at the server's line; a server that
// is not required is logged, and the others work.
func TestMCPStartProblems(t *testing.T) {
	t.Parallel()
	remote := mcptest.StartHTTP(t)
	missing := filepath.Join(t.TempDir(), "no-such-server")
	load := func(t *testing.T, servers string) config.Config {
		t.Helper()
		file := "addr: 127.0.0.1:0\ndatabase_url: " + filepath.Join(t.TempDir(), "a.db") + "\nmcp_servers:\n" + servers +
			"agents:\n  - name: helper\n    mcp_servers: [a]\n"
		c, err := config.Load("c.yaml", []byte(file))
		if err != nil {
			t.Fatalf("loading:\n%s\n%v", file, err)
		}
		return c
	}
	for _, tt := range []struct {
		name, servers, want string
	}{
		{"required", "  - name: a\n    url: " + remote.URL + "\n  - name: b\n    command: " + missing + "\n    required: true\n",
			"MCP servers:\nc.yaml:6:5: mcp_servers[1]: it is required, and it could not start: connecting: fork/exec " + missing + ": no such file or directory"},
		{"clash", "  - name: a\n    url: " + remote.URL + "\n  - name: b\n    url: " + remote.URL + "\n    tools: [echo]\n",
			`MCP servers:` + "\n" + `c.yaml:6:5: mcp_servers[1].prefix: its tool "echo" and the tool "echo" of MCP server "a" are both offered as "echo": give one server a prefix, or leave the tool out of an allow-list (tools)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := server.New(context.Background(), load(t, tt.servers), nil)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("server.New: %v\nwant: %s", err, tt.want)
			}
		})
	}
	t.Run("not required", func(t *testing.T) {
		logs := &lockedBuffer{}
		srv, err := server.New(context.Background(), load(t, "  - name: a\n    command: "+missing+"\n  - name: b\n    url: "+remote.URL+"\n"),
			slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = srv.Shutdown(context.Background()) }()
		if !strings.Contains(logs.String(), `msg="an MCP server could not start; its tools are missing until it is back (trying again in the background)" mcp_server=a err="connecting: fork/exec `+missing) {
			t.Fatalf("logs:\n%s", logs)
		}
	})
}
