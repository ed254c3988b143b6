package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/mcp"
	"github.com/agentstream/agentstream/mcp/mcptest"
	"github.com/agentstream/agentstream/tools"
)

func TestName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 70)
	for _, tt := range []struct{ prefix, name, want string }{
		{"", "read_file", "read_file"},
		{"files_", "read_file", "files_read_file"},
		{"", "read-file-2", "read-file-2"},
		{"", "dotted.name/v1", "dotted_name_v1"},
		{"fs.", "read file", "fs_read_file"},
		{"", "café", "caf_"},
		{"", "", "_"},
		{"", strings.Repeat("a", 64), strings.Repeat("a", 64)},
		// Too long: 55 characters, "_", 8 hex digits of SHA-256(prefix+name).
		{"", long, strings.Repeat("a", 55) + "_6bd5e503"},
		{"p_", long, "p_" + strings.Repeat("a", 53) + "_5fcae5ac"},
	} {
		got := mcp.Name(tt.prefix, tt.name)
		if got != tt.want {
			t.Errorf("Name(%q, %q) = %q, want %q", tt.prefix, tt.name, got, tt.want)
		}
		if len(got) > mcp.MaxNameLen || strings.ContainsFunc(got, func(r rune) bool {
			return !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		}) {
			t.Errorf("Name(%q, %q) = %q: not a name model APIs accept", tt.prefix, tt.name, got)
		}
	}
	// Long names keep apart by their hash, and the rule does not change.
	a, b := mcp.Name("", long), mcp.Name("", long+"b")
	if a == b || len(a) != 64 || !strings.HasPrefix(a, strings.Repeat("a", 55)+"_") {
		t.Fatalf("long names: %q and %q", a, b)
	}
	if again := mcp.Name("", long); again != a {
		t.Fatalf("Name is not stable: %q then %q", a, again)
	}
}

// logs is a slog handler's output, safe for concurrent use.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logs) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// waitLog waits up to 30s for the logs to contain s.
func (l *logs) wait(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(l.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for a log line with %q; logs:\n%s", s, l)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// start starts the servers for the test, closed at its end.
func start(t *testing.T, opts mcp.Options, cfgs ...mcp.Config) *mcp.Set {
	t.Helper()
	set, err := mcp.Start(context.Background(), cfgs, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(set.Close)
	return set
}

// stdio is a config of the test server as a child process, writing its
// events to the file it returns.
func stdio(t *testing.T, bin, name string) (mcp.Config, string) {
	t.Helper()
	events := filepath.Join(t.TempDir(), "events")
	return mcp.Config{Name: name, Command: bin, Env: map[string]string{mcptest.EventsVar: events}}, events
}

// toolsOf returns a source's tools by name.
func toolsOf(t *testing.T, src agentstream.ToolSource) map[string]agentstream.Tool {
	t.Helper()
	ts, err := src.Tools(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]agentstream.Tool{}
	for _, tl := range ts {
		out[tl.Spec().Name] = tl
	}
	return out
}

func names(m map[string]agentstream.Tool) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

var runInfo = agentstream.RunInfo{
	RunID: "run_1", ThreadID: "thr_1", UserID: "hana", Agent: "helper",
	Context: map[string]any{"pregnancy_week": 20, "baby_name": "Mina", "secret": "not forwarded"},
}

// transports runs f against the test server over stdio (a child process,
// the 2026 protocol) and over Streamable HTTP (the 2025 protocol, with
// sessions).
func transports(t *testing.T, f func(t *testing.T, cfg mcp.Config, events func() []string)) {
	bin := mcptest.Build(t)
	t.Run("stdio", func(t *testing.T) {
		t.Parallel()
		cfg, path := stdio(t, bin, "files")
		f(t, cfg, func() []string { return mcptest.FileEvents(t, path) })
	})
	t.Run("http", func(t *testing.T) {
		t.Parallel()
		h := mcptest.StartHTTP(t)
		f(t, mcp.Config{Name: "files", URL: h.URL}, h.Events.List)
	})
}

func TestCalls(t *testing.T) {
	t.Parallel()
	transports(t, func(t *testing.T, cfg mcp.Config, events func() []string) {
		cfg.Forward = tools.Forward{UserHeader: "X-User-Id", ContextHeaders: map[string]string{"pregnancy_week": "X-Pregnancy-Week", "baby_name": "X-Baby-Name"}}
		set := start(t, mcp.Options{}, cfg)
		src := set.Sources()["files"]
		ts := toolsOf(t, src)
		want := []string{mcptest.AddTool, mcptest.Echo, mcptest.Fail, mcptest.Hang, mcptest.Structured, mcptest.TwoTexts, mcptest.WhoAmI,
			"dotted_name_v1", mcp.Name("", mcptest.Long)}
		slices.Sort(want)
		if got := names(ts); !slices.Equal(got, want) {
			t.Fatalf("tools %v, want %v", got, want)
		}
		if spec := ts[mcptest.Echo].Spec(); spec.Description != "Echoes its text." || !strings.Contains(string(spec.Parameters), `"required":["text"]`) {
			t.Fatalf("echo's spec %+v", spec)
		}
		if tt, ok := ts[mcptest.Echo].(agentstream.TimedTool); !ok || tt.Timeout() != 0 {
			t.Fatalf("an MCP tool is a TimedTool with the server's timeout (0: the runner's)")
		}
		ctx := agentstream.WithRunInfo(context.Background(), runInfo)
		for _, tt := range []struct {
			tool, args, want, wantErr string
		}{
			{mcptest.Echo, `{"text":"hi"}`, "echo: hi", ""},
			{mcptest.TwoTexts, `{}`, "first\nsecond", ""},
			{mcptest.Structured, `{}`, `{"n":42,"ok":true}`, ""},
			{mcptest.Fail, `{}`, "", "it broke"},
			{"dotted_name_v1", `{}`, "dotted", ""},
			{mcp.Name("", mcptest.Long), `{}`, "long", ""},
		} {
			out, err := ts[tt.tool].Call(ctx, json.RawMessage(tt.args))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("%s: %q, %v; want the error %q", tt.tool, out, err, tt.wantErr)
				}
				continue
			}
			if err != nil || out != tt.want {
				t.Errorf("%s: %q, %v; want %q", tt.tool, out, err, tt.want)
			}
		}
		// The server got each call under its own name.
		for _, name := range []string{mcptest.Dotted, mcptest.Long} {
			mcptest.WaitFor(t, "the call of "+name, events, func(e string) bool { return e == "call "+name })
		}

		out, err := ts[mcptest.WhoAmI].Call(ctx, json.RawMessage(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		var seen struct {
			Meta    map[string]any    `json:"meta"`
			Headers map[string]string `json:"headers"`
		}
		if err := json.Unmarshal([]byte(out), &seen); err != nil {
			t.Fatalf("whoami: %q: %v", out, err)
		}
		wantMeta := map[string]any{mcp.MetaUserID: "hana", mcp.MetaContext: map[string]any{"pregnancy_week": float64(20), "baby_name": "Mina"}}
		if b, w := mustJSON(t, seen.Meta), mustJSON(t, wantMeta); b != w {
			t.Errorf("_meta %s, want %s", b, w)
		}
		if cfg.URL != "" {
			want := map[string]string{"X-User-Id": "hana", "X-Pregnancy-Week": "20", "X-Baby-Name": "Mina"}
			if b, w := mustJSON(t, seen.Headers), mustJSON(t, want); b != w {
				t.Errorf("headers %s, want %s", b, w)
			}
		}
		// Outside a run, nothing is forwarded.
		out, err = ts[mcptest.WhoAmI].Call(context.Background(), json.RawMessage(`{}`))
		if err != nil || out != `{"headers":{},"meta":{}}` {
			t.Errorf("whoami outside a run: %q, %v", out, err)
		}
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A call whose context ends is cancelled on the server: the go-sdk sends
// notifications/cancelled, and the tool's handler sees its context end.
func TestCancel(t *testing.T) {
	t.Parallel()
	transports(t, func(t *testing.T, cfg mcp.Config, events func() []string) {
		set := start(t, mcp.Options{}, cfg)
		hang := toolsOf(t, set.Sources()["files"])[mcptest.Hang]
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := hang.Call(ctx, json.RawMessage(`{}`))
			done <- err
		}()
		mcptest.WaitFor(t, "the server to run hang", events, func(e string) bool { return e == "hang" })
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("the cancelled call returned %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the cancelled call did not return")
		}
		mcptest.WaitFor(t, "notifications/cancelled", events, func(e string) bool { return e == "recv notifications/cancelled" })
		mcptest.WaitFor(t, "the handler to see its cancel", events, func(e string) bool { return e == "cancelled hang" })
		// The session goes on.
		if out, err := toolsOf(t, set.Sources()["files"])[mcptest.Echo].Call(context.Background(), json.RawMessage(`{"text":"still here"}`)); err != nil || out != "echo: still here" {
			t.Fatalf("after the cancel: %q, %v", out, err)
		}
	})
}

// A server whose tools change is read again, and offers the new tool.
func TestListChanged(t *testing.T) {
	t.Parallel()
	transports(t, func(t *testing.T, cfg mcp.Config, events func() []string) {
		var l logs
		set := start(t, mcp.Options{Logger: l.logger()}, cfg)
		src := set.Sources()["files"]
		if _, ok := toolsOf(t, src)[mcptest.Late]; ok {
			t.Fatal("late_tool before it was added")
		}
		if _, err := toolsOf(t, src)[mcptest.AddTool].Call(context.Background(), json.RawMessage(`{}`)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for toolsOf(t, src)[mcptest.Late] == nil {
			if time.Now().After(deadline) {
				t.Fatalf("late_tool never appeared; logs:\n%s", &l)
			}
			time.Sleep(20 * time.Millisecond)
		}
		out, err := toolsOf(t, src)[mcptest.Late].Call(context.Background(), json.RawMessage(`{}`))
		if err != nil || out != "late" {
			t.Fatalf("late_tool: %q, %v", out, err)
		}
		l.wait(t, "an MCP server's tools changed")
	})
}

// A tool announced later under a name another tool has is refused, with a
// log line; the other tools stay.
func TestLateClashRefused(t *testing.T) {
	t.Parallel()
	h := mcptest.StartHTTP(t)
	var l logs
	set := start(t, mcp.Options{Logger: l.logger(), Reserved: []string{mcptest.Late}}, mcp.Config{Name: "files", URL: h.URL})
	src := set.Sources()["files"]
	if _, err := toolsOf(t, src)[mcptest.AddTool].Call(context.Background(), json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	l.wait(t, "an MCP server's tool is named like a built-in, config or Go tool; it is refused")
	l.wait(t, "an MCP server's tools changed")
	ts := toolsOf(t, src)
	if _, ok := ts[mcptest.Late]; ok || ts[mcptest.Echo] == nil {
		t.Fatalf("tools after the clash: %v", names(ts))
	}
}

func TestAllowListAndPrefix(t *testing.T) {
	t.Parallel()
	h := mcptest.StartHTTP(t)
	var l logs
	set := start(t, mcp.Options{Logger: l.logger()},
		mcp.Config{Name: "a", URL: h.URL, Prefix: "a_", Tools: []string{mcptest.Echo, mcptest.Dotted, "no_such_tool"}},
		mcp.Config{Name: "b", URL: h.URL, Prefix: "b-"})
	a := toolsOf(t, set.Sources()["a"])
	if got := names(a); !slices.Equal(got, []string{"a_dotted_name_v1", "a_echo"}) {
		t.Fatalf("a's tools %v", got)
	}
	if out, err := a["a_echo"].Call(context.Background(), json.RawMessage(`{"text":"x"}`)); err != nil || out != "echo: x" {
		t.Fatalf("a_echo: %q, %v", out, err)
	}
	if b := toolsOf(t, set.Sources()["b"]); len(b) != 9 || b["b-echo"] == nil {
		t.Fatalf("b's tools %v", names(b))
	}
	l.wait(t, `allow-list (tools) names tools it does not have" mcp_server=a tools=[no_such_tool]`)
}

func TestClashAtStart(t *testing.T) {
	t.Parallel()
	h := mcptest.StartHTTP(t)
	_, err := mcp.Start(context.Background(), []mcp.Config{
		{Name: "a", URL: h.URL, Tools: []string{mcptest.Echo, mcptest.Fail}},
		{Name: "b", URL: h.URL, Tools: []string{mcptest.Echo, mcptest.Hang}},
		{Name: "c", URL: h.URL, Prefix: "c_", Tools: []string{mcptest.Echo}},
	}, mcp.Options{Reserved: []string{mcptest.Fail}})
	var probs mcp.Problems
	if !errors.As(err, &probs) {
		t.Fatalf("Start: %v, want Problems", err)
	}
	want := mcp.Problems{
		{Server: "a", Key: "tools", Message: `its tool "fail" is offered as "fail", the name of a built-in, config or Go tool: give the server a prefix, or leave the tool out of its allow-list (tools)`},
		{Server: "b", Key: "prefix", Message: `its tool "echo" and the tool "echo" of MCP server "a" are both offered as "echo": give one server a prefix, or leave the tool out of an allow-list (tools)`},
	}
	if !slices.Equal(probs, want) {
		t.Fatalf("problems:\n%v\nwant:\n%v", probs, want)
	}
	// Check finds the same, and the allow-list's unknown names.
	probs = mcp.Check(context.Background(), []mcp.Config{
		{Name: "a", URL: h.URL, Tools: []string{mcptest.Echo, "nope"}},
		{Name: "b", URL: h.URL, Tools: []string{mcptest.Echo}},
	}, mcp.Options{})
	want = mcp.Problems{
		{Server: "a", Key: "tools", Message: "the allow-list names tools the server does not have: nope"},
		{Server: "b", Key: "prefix", Message: `its tool "echo" and the tool "echo" of MCP server "a" are both offered as "echo": give one server a prefix, or leave the tool out of an allow-list (tools)`},
	}
	if !slices.Equal(probs, want) {
		t.Fatalf("Check:\n%v\nwant:\n%v", probs, want)
	}
}

// One server that cannot start does not stop the others, unless it is
// required; it is logged with its cause, and started once it can be.
func TestStartFailure(t *testing.T) {
	t.Parallel()
	h := mcptest.StartHTTP(t)
	bin := mcptest.Build(t)
	missing := filepath.Join(t.TempDir(), "no-such-server")
	failing := mcp.Config{Name: "failing", Command: bin, Args: []string{"--no-such-flag"}}
	t.Run("not required", func(t *testing.T) {
		t.Parallel()
		var l logs
		set := start(t, mcp.Options{Logger: l.logger(), MaxBackoff: 50 * time.Millisecond},
			mcp.Config{Name: "ok", URL: h.URL}, mcp.Config{Name: "missing", Command: missing}, failing)
		if len(toolsOf(t, set.Sources()["ok"])) == 0 {
			t.Fatal("the server that started has no tools")
		}
		if len(toolsOf(t, set.Sources()["missing"])) != 0 {
			t.Fatal("a server that never started has tools")
		}
		out := l.String()
		for _, want := range []string{
			`mcp_server=missing err="connecting: fork/exec ` + missing + `: no such file or directory"`,
			`mcp_server=failing err="connecting: `,
		} {
			if !strings.Contains(out, "an MCP server could not start; its tools are missing until it is back") || !strings.Contains(out, want) {
				t.Errorf("logs lack %q:\n%s", want, out)
			}
		}
		// The child's stderr says why it failed.
		if !strings.Contains(out, `flag provided but not defined: -no-such-flag`) {
			t.Errorf("the failing server's stderr is not in its error:\n%s", out)
		}
		if ok, err := set.Source("missing").Available(); ok || err == nil {
			t.Fatalf("missing: available %v, %v", ok, err)
		}
		// It is tried again, with backoff.
		l.wait(t, "an MCP server could not be reconnected; trying again\" mcp_server=missing")
	})
	t.Run("required", func(t *testing.T) {
		t.Parallel()
		req := mcp.Config{Name: "missing", Command: missing, Required: true}
		_, err := mcp.Start(context.Background(), []mcp.Config{{Name: "ok", URL: h.URL}, req}, mcp.Options{})
		var probs mcp.Problems
		if !errors.As(err, &probs) || len(probs) != 1 || probs[0].Server != "missing" ||
			!strings.Contains(probs[0].Message, "it is required, and it could not start: connecting: fork/exec") {
			t.Fatalf("Start: %v", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		// A server that never answers: sleep reads nothing from stdin.
		cfg := mcp.Config{Name: "silent", Command: "sleep", Args: []string{"60"}, ConnectTimeout: 300 * time.Millisecond, Required: true}
		_, err := mcp.Start(context.Background(), []mcp.Config{cfg}, mcp.Options{})
		if err == nil || !strings.Contains(err.Error(), "no answer within the connect timeout") {
			t.Fatalf("Start: %v", err)
		}
	})
}

// A stdio server killed mid-call gives that call a tool error; the server
// is restarted, and the next call reaches the new process.
func TestRestart(t *testing.T) {
	t.Parallel()
	cfg, path := stdio(t, mcptest.Build(t), "files")
	var l logs
	set := start(t, mcp.Options{Logger: l.logger()}, cfg)
	events := func() []string { return mcptest.FileEvents(t, path) }
	ts := toolsOf(t, set.Sources()["files"])
	done := make(chan error, 1)
	go func() {
		_, err := ts[mcptest.Hang].Call(context.Background(), json.RawMessage(`{}`))
		done <- err
	}()
	mcptest.WaitFor(t, "hang", events, func(e string) bool { return e == "hang" })
	pid := mcptest.Pids(events())[0]
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Logf("the call in flight: %v", err)
		if err == nil || !strings.HasPrefix(err.Error(), "MCP server files is not available: ") {
			t.Fatalf("the call to the killed server returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the call to the killed server did not return")
	}
	l.wait(t, "an MCP server went away; reconnecting")
	if !strings.Contains(l.String(), "signal: killed") {
		t.Errorf("the log does not say how the process ended:\n%s", &l)
	}
	mcptest.WaitFor(t, "a new process", events, func(string) bool { return len(mcptest.Pids(events())) == 2 })
	// The tools the run had still work: they reach the new process.
	out, err := ts[mcptest.Echo].Call(context.Background(), json.RawMessage(`{"text":"again"}`))
	if err != nil || out != "echo: again" {
		t.Fatalf("after the restart: %q, %v", out, err)
	}
	set.Close()
	// Closing stopped the new process.
	second := mcptest.Pids(events())[1]
	if err := syscall.Kill(second, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("the server's process %d is still there after Close (kill: %v)", second, err)
	}
	if _, err := ts[mcptest.Echo].Call(context.Background(), json.RawMessage(`{"text":"x"}`)); err == nil ||
		err.Error() != "MCP server files is not available: agentstream is shutting down" {
		t.Fatalf("a call after Close: %v", err)
	}
}

// An HTTP server that goes away: calls fail with a tool error; once it is
// back (a new session), calls reach it again.
func TestHTTPReconnect(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	serve := func(ln net.Listener) *http.Server {
		s := mcptest.NewServer(func(string) {})
		hs := &http.Server{Handler: sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = hs.Serve(ln) }()
		return hs
	}
	first := serve(ln)
	var l logs
	set := start(t, mcp.Options{Logger: l.logger(), MaxBackoff: 100 * time.Millisecond}, mcp.Config{Name: "remote", URL: "http://" + addr})
	echo := toolsOf(t, set.Sources()["remote"])[mcptest.Echo]
	if out, err := echo.Call(context.Background(), json.RawMessage(`{"text":"1"}`)); err != nil || out != "echo: 1" {
		t.Fatalf("before: %q, %v", out, err)
	}
	_ = first.Close()
	// Until the server is back, calls fail with a tool error.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := echo.Call(context.Background(), json.RawMessage(`{"text":"2"}`))
		if err != nil && strings.HasPrefix(err.Error(), "MCP server remote is not available: ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls to a server that went away: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	second := serve(ln2)
	t.Cleanup(func() { _ = second.Close() })
	for {
		out, err := echo.Call(context.Background(), json.RawMessage(`{"text":"3"}`))
		if err == nil && out == "echo: 3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls once the server is back: %q, %v; logs:\n%s", out, err, &l)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestChildEnv(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "sk-secret")
	t.Setenv("PATH", "/usr/bin")
	env := mcp.ChildEnv(map[string]string{"ROOT": "/srv/files", "PATH": "/opt/bin"})
	if slices.ContainsFunc(env, func(s string) bool { return strings.HasPrefix(s, "OPENAI_API_KEY=") }) {
		t.Fatalf("a secret of agentstream's environment is passed on: %v", env)
	}
	if !slices.Contains(env, "ROOT=/srv/files") || !slices.Contains(env, "PATH=/opt/bin") || slices.Contains(env, "PATH=/usr/bin") {
		t.Fatalf("env %v", env)
	}
	if home, ok := os.LookupEnv("HOME"); ok && !slices.Contains(env, "HOME="+home) {
		t.Fatalf("HOME is not inherited: %v", env)
	}
}

// A secret a child prints on stderr (the token its env gave it) is masked
// in the logged lines, the start error logged and check-config's problem.
func TestStderrSecretsMasked(t *testing.T) {
	t.Parallel()
	const token = "ghp-SECRET-0123456789"
	cfg := mcp.Config{Name: "leaky", Command: "sh",
		Args: []string{"-c", `echo "bad token $GH_TOKEN" >&2; exit 1`},
		Env:  map[string]string{"GH_TOKEN": token}}
	secrets := tools.NewSecrets(token)
	var l logs
	logger := slog.New(slog.NewTextHandler(&l, &slog.HandlerOptions{Level: slog.LevelDebug}))
	set, err := mcp.Start(context.Background(), []mcp.Config{cfg}, mcp.Options{Logger: logger, Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	l.wait(t, "an MCP server could not start")
	set.Close()
	out := l.String()
	if strings.Contains(out, token) || !strings.Contains(out, `bad token [redacted]`) {
		t.Errorf("logs: want the token masked:\n%s", out)
	}
	probs := mcp.Check(context.Background(), []mcp.Config{cfg}, mcp.Options{Secrets: secrets})
	if len(probs) != 1 || strings.Contains(probs[0].Message, token) || !strings.Contains(probs[0].Message, `bad token [redacted]`) {
		t.Fatalf("Check: %v; want one problem with the token masked", probs)
	}
}
