// Package mcptest is an MCP server for agentstream's tests, written with
// the go-sdk: tools that answer text, structured content or an error, that
// block until cancelled, that show what the client forwarded, that add a
// tool while the server runs; and what the server saw, recorded for the
// tests to read. The same server runs in the test process (over
// Streamable HTTP, StartHTTP) and as a child process over stdio (Build
// compiles the mcptestserver command).
package mcptest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Tool names of the test server.
const (
	// Echo answers "echo: " and its text argument.
	Echo = "echo"
	// TwoTexts answers two text contents, "first" and "second".
	TwoTexts = "two_texts"
	// Structured answers the structured content {"n":42,"ok":true} beside
	// the text "a summary".
	Structured = "structured"
	// Fail answers isError with the text "it broke".
	Fail = "fail"
	// Hang records "hang" and blocks until its call is cancelled, then
	// records "cancelled hang".
	Hang = "hang"
	// WhoAmI answers, as JSON, the call's _meta and the request's headers
	// named X-* (HTTP only): {"meta": {...}, "headers": {...}}.
	WhoAmI = "whoami"
	// AddTool adds the tool Late, which makes the server send
	// notifications/tools/list_changed.
	AddTool = "add_tool"
	// Late answers "late"; it exists once AddTool was called.
	Late = "late_tool"
	// Dotted is a name that model APIs refuse.
	Dotted = "dotted.name/v1"
)

// Long is a tool name longer than the 64 characters model APIs accept.
var Long = strings.Repeat("very_long_tool_name_", 4) + "end"

// A Recorder is told what the server sees, one event at a time:
// "start pid=N", "call NAME", "hang", "cancelled hang",
// "recv notifications/cancelled".
type Recorder func(event string)

// NewServer returns the test server, recording into rec.
func NewServer(rec Recorder) *sdk.Server {
	s := sdk.NewServer(&sdk.Implementation{Name: "mcptest", Version: "v1"}, nil)
	s.AddReceivingMiddleware(func(next sdk.MethodHandler) sdk.MethodHandler {
		return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
			if method == "notifications/cancelled" {
				rec("recv " + method)
			}
			return next(ctx, method, req)
		}
	})
	object := json.RawMessage(`{"type":"object"}`)
	text := func(s ...string) *sdk.CallToolResult {
		r := &sdk.CallToolResult{}
		for _, t := range s {
			r.Content = append(r.Content, &sdk.TextContent{Text: t})
		}
		return r
	}
	add := func(name, desc string, schema json.RawMessage, h sdk.ToolHandler) {
		s.AddTool(&sdk.Tool{Name: name, Description: desc, InputSchema: schema}, func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			rec("call " + name)
			return h(ctx, req)
		})
	}
	add(Echo, "Echoes its text.", json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}`),
		func(_ context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			var in struct {
				Text string `json:"text"`
			}
			if err := json.Unmarshal(req.Params.Arguments, &in); err != nil {
				return nil, err
			}
			return text("echo: " + in.Text), nil
		})
	add(TwoTexts, "Answers two texts.", object, func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		return text("first", "second"), nil
	})
	add(Structured, "Answers structured content.", object, func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		r := text("a summary")
		r.StructuredContent = map[string]any{"n": 42, "ok": true}
		return r, nil
	})
	add(Fail, "Fails.", object, func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		r := text("it broke")
		r.IsError = true
		return r, nil
	})
	add(Hang, "Blocks until cancelled.", object, func(ctx context.Context, _ *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		rec("hang")
		<-ctx.Done()
		rec("cancelled hang")
		return nil, ctx.Err()
	})
	add(WhoAmI, "Shows what the client forwarded.", object, func(_ context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		out := map[string]any{"meta": map[string]any{}, "headers": map[string]string{}}
		for k, v := range req.Params.Meta {
			if strings.HasPrefix(k, "agentstream/") {
				out["meta"].(map[string]any)[k] = v
			}
		}
		if req.Extra != nil {
			for k := range req.Extra.Header {
				if strings.HasPrefix(k, "X-") {
					out["headers"].(map[string]string)[k] = req.Extra.Header.Get(k)
				}
			}
		}
		b, err := json.Marshal(out)
		if err != nil {
			return nil, err
		}
		return text(string(b)), nil
	})
	add(AddTool, "Adds the tool late_tool.", object, func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		s.AddTool(&sdk.Tool{Name: Late, Description: "Added late.", InputSchema: object}, func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			rec("call " + Late)
			return text("late"), nil
		})
		return text("added"), nil
	})
	add(Dotted, "A name model APIs refuse.", object, func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		return text("dotted"), nil
	})
	add(Long, "A name too long for model APIs.", object, func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		return text("long"), nil
	})
	return s
}

// Events collects a server's events, safe for concurrent use.
type Events struct {
	mu   sync.Mutex
	list []string
}

// Record is the Recorder of e.
func (e *Events) Record(event string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, event)
}

// List returns the events so far.
func (e *Events) List() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.list...)
}

// HTTP is a test server over Streamable HTTP.
type HTTP struct {
	URL    string
	Events *Events
	Server *sdk.Server
	srv    *httptest.Server
}

// Close stops the HTTP server (and its sessions' connections).
func (h *HTTP) Close() {
	h.srv.CloseClientConnections()
	h.srv.Close()
}

// StartHTTP serves the test server over Streamable HTTP (sessions: the
// 2025 protocol) on a loopback port until t ends.
func StartHTTP(t testing.TB) *HTTP {
	t.Helper()
	ev := &Events{}
	s := NewServer(ev.Record)
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil)
	srv := httptest.NewServer(h)
	out := &HTTP{URL: srv.URL, Events: ev, Server: s, srv: srv}
	t.Cleanup(out.Close)
	return out
}

// Build compiles the mcptestserver command into a directory of t's and
// returns its path.
func Build(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mcptestserver")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/agentstream/agentstream/mcp/mcptest/mcptestserver")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the MCP test server: %v\n%s", err, out)
	}
	return bin
}

// EventsVar names the file the mcptestserver command appends its events
// to, one a line.
const EventsVar = "MCPTEST_EVENTS"

// StderrVar holds a line the mcptestserver command writes to its stderr
// when it starts (what a careless server prints of its environment).
const StderrVar = "MCPTEST_STDERR"

// FileEvents reads the events a mcptestserver wrote to path.
func FileEvents(t testing.TB, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// WaitFor polls events until one of them satisfies match, for up to 30s
// (generous: a loaded machine), and returns it.
func WaitFor(t testing.TB, what string, events func() []string, match func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, e := range events() {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s; events: %q", what, events())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pids returns the pids of the "start pid=N" events, in order.
func Pids(events []string) []int {
	var out []int
	for _, e := range events {
		var pid int
		if _, err := fmt.Sscanf(e, "start pid=%d", &pid); err == nil {
			out = append(out, pid)
		}
	}
	return out
}
