package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/postgres"
	"github.com/agentstream/agentstream/redislog"
	"github.com/agentstream/agentstream/server"
	"github.com/agentstream/agentstream/sim"
	"github.com/agentstream/agentstream/sqlite"
)

// backend is a store and an event log a server runs on. The lifecycle
// suite (TestLifecycle) runs on every combination, backends().
type backend struct {
	name string
	// redis is true when the log is Redis: the server is then one of
	// several instances, its runs hold leases, and the runs of a dead
	// instance are ended by another's sweep rather than at start.
	redis bool
	// services makes services of the test's own (a SQLite file or a
	// PostgreSQL schema; a Redis key prefix, whose keys go at cleanup) and
	// returns what points a config at them: every server of the test it is
	// given to shares them. It skips t when a service is not configured
	// (and fails it with CI=true).
	services func(t testing.TB) func(*config.Config)
}

// backends returns {SQLite, PostgreSQL} × {memlog, Redis}.
func backends() []backend {
	stores := []struct {
		name string
		url  func(t testing.TB) string
	}{
		{"sqlite", func(t testing.TB) string { return filepath.Join(t.TempDir(), "agentstream.db") }},
		{"postgres", func(t testing.TB) string {
			_, u := testenv.PostgresSchema(t)
			return u
		}},
	}
	var out []backend
	for _, st := range stores {
		out = append(out, backend{name: st.name + "-memlog", services: func(t testing.TB) func(*config.Config) {
			t.Helper()
			dbURL := st.url(t)
			return func(c *config.Config) { c.DatabaseURL, c.RedisURL = dbURL, "" }
		}}, backend{name: st.name + "-redis", redis: true, services: func(t testing.TB) func(*config.Config) {
			t.Helper()
			redisURL := testenv.RedisURL(t)
			dbURL, prefix := st.url(t), testenv.RedisPrefixCleaned(t, redisURL)
			return func(c *config.Config) {
				c.DatabaseURL, c.RedisURL, c.EventLog.RedisPrefix = dbURL, redisURL, prefix
				// The default, said out loud: readers get an event once
				// Redis holds it, a window after it was appended.
				c.EventLog.Coalesce = redislog.DefaultCoalesce
			}
		}})
	}
	return out
}

// start runs a server on services of the test's own for this backend;
// mod adjusts the config after them.
func (b backend) start(t testing.TB, simOpts sim.Options, mod func(*config.Config)) *env {
	t.Helper()
	return start(t, simOpts, both(b.services(t), mod))
}

// both applies one config change, then the other (nil: none).
func both(first, then func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		first(c)
		if then != nil {
			then(c)
		}
	}
}

// openStore opens the store at a config's database URL, as another
// process would, closed at cleanup (and maybe before).
func openStore(t testing.TB, dbURL string) agentstream.Store {
	t.Helper()
	var st agentstream.Store
	var err error
	if strings.HasPrefix(dbURL, "postgres://") {
		st, err = postgres.Open(context.Background(), dbURL)
	} else {
		st, err = sqlite.Open(context.Background(), dbURL)
	}
	if err != nil {
		t.Fatalf("opening the store at %s: %v", dbURL, err)
	}
	t.Cleanup(func() { _ = st.Close() }) // may be closed already
	return st
}

// streamCtx bounds a stream the test reads, so that a stream that never
// ends fails the test instead of hanging it.
func streamCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// env is a real agentstream server on a loopback port, talking over HTTP
// to a simulated model of its own.
type env struct {
	t   testing.TB
	url string
	sim *sim.Server
	srv *server.Server
}

func intPtr(n int) *int { return &n }

// testAgent is the agent most tests run: both built-in tools, few turns.
var testAgent = agentstream.Agent{
	Name: "tester", Instructions: "You test things.{{with .topic}} Topic: {{.}}.{{end}}",
	Tools: []string{"current_time", "due_date"}, MaxTurns: 3,
}

// start runs a server against a simulator with simOpts; mod adjusts the
// config. The simulator streams fast unless simOpts says otherwise.
func start(t testing.TB, simOpts sim.Options, mod func(*config.Config)) *env {
	t.Helper()
	return startLogged(t, simOpts, mod, slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startLogged is start with the server logging to logs.
func startLogged(t testing.TB, simOpts sim.Options, mod func(*config.Config), logs slog.Handler) *env {
	t.Helper()
	if simOpts.Pace == 0 {
		simOpts.Pace = -1
	}
	if simOpts.TTFT == 0 {
		simOpts.TTFT = -1
	}
	running, err := sim.Start("127.0.0.1:0", simOpts)
	if err != nil {
		t.Fatalf("starting the simulator: %v", err)
	}
	t.Cleanup(func() { _ = running.Close() })
	e := startServer(t, running.URL(), mod, logs)
	e.sim = running.Server()
	return e
}

// startServer runs a server whose model is the OpenAI-compatible API at
// baseURL (a simulator of the test's, maybe in another process).
func startServer(t testing.TB, baseURL string, mod func(*config.Config), logs slog.Handler) *env {
	t.Helper()
	example, err := os.ReadFile(filepath.Join("..", "examples", "pregnancy-companion.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Decode(example)
	if err != nil {
		t.Fatalf("the example config: %v", err)
	}
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = filepath.Join(t.TempDir(), "agentstream.db")
	cfg.OpenAI = config.OpenAI{APIKey: "sk-test", BaseURL: baseURL, MaxRetries: intPtr(2), IdleTimeout: 10 * time.Second}
	cfg.Agents = append(cfg.Agents, testAgent)
	cfg.DefaultAgent = "tester"
	if mod != nil {
		mod(&cfg)
	}
	srv, err := server.New(context.Background(), cfg, slog.New(logs))
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

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// do sends a request and returns the response; the body is closed at cleanup.
func (e *env) do(method, path, body string) *http.Response {
	e.t.Helper()
	return e.request(method, path, body, nil)
}

// request sends a request with the given headers and returns the
// response; the body is closed at cleanup.
func (e *env) request(method, path, body string, header map[string]string) *http.Response {
	e.t.Helper()
	return e.requestCtx(context.Background(), method, path, body, header)
}

func (e *env) requestCtx(ctx context.Context, method, path, body string, header map[string]string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	e.t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// status sends a request without a body, with the given headers, and
// returns the answer's status (its body read and closed). An answer that
// does not end within a minute (a stream) fails the test.
func (e *env) status(method, path string, header map[string]string) int {
	e.t.Helper()
	resp := e.requestCtx(streamCtx(e.t), method, path, "", header)
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		e.t.Fatalf("%s %s %v: status %d, then reading the body: %v", method, path, header, resp.StatusCode, err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// json sends a request, checks the status and decodes the JSON answer.
func (e *env) json(method, path, body string, wantStatus int, out any) {
	e.t.Helper()
	resp := e.do(method, path, body)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, wantStatus, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: decoding %s: %v", method, path, b, err)
		}
	}
}

// stream sends a request and reads its whole SSE answer.
func (e *env) stream(method, path, body string) (*http.Response, []sse.Event) {
	e.t.Helper()
	resp := e.do(method, path, body)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("%s %s: status %d: %s", method, path, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		e.t.Fatalf("Content-Type %q", ct)
	}
	var evs []sse.Event
	r := sse.NewReader(resp.Body)
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return resp, evs
		}
		if err != nil {
			e.t.Fatalf("reading the stream after %d events: %v", len(evs), err)
		}
		evs = append(evs, ev)
	}
}

func (e *env) newThread(body string) agentstream.Thread {
	e.t.Helper()
	var th agentstream.Thread
	e.json("POST", "/v1/threads", body, http.StatusCreated, &th)
	return th
}

func (e *env) messages(threadID string) []agentstream.Message {
	e.t.Helper()
	var out struct {
		Data []agentstream.Message `json:"data"`
	}
	e.json("GET", "/v1/threads/"+threadID+"/messages", "", http.StatusOK, &out)
	return out.Data
}

// nativeRun is what a native stream said, checked for the protocol's
// invariants on the way.
type nativeRun struct {
	events   []sse.Event
	runID    string
	terminal sse.Event
	end      agentstream.RunEndData
	// text joins every delta of the run; completed maps message ids to
	// their message.completed content.
	text      string
	completed map[string]string
	toolCalls []agentstream.ToolCallData
	results   []agentstream.ToolResultData
	argDeltas map[string]string
}

// checkNative checks ids run 1..N without a gap, exactly one terminal
// event and it is last, and each message's deltas join to its
// message.completed content.
func checkNative(t testing.TB, evs []sse.Event) nativeRun {
	t.Helper()
	n := nativeRun{events: evs, completed: map[string]string{}, argDeltas: map[string]string{}}
	deltas := map[string]*strings.Builder{}
	terminals := 0
	for i, ev := range evs {
		if ev.ID != strconv.Itoa(i+1) {
			t.Fatalf("event %d has id %q, want %d (events: %v)", i, ev.ID, i+1, evs)
		}
		decode := func(v any) {
			if err := json.Unmarshal([]byte(ev.Data), v); err != nil {
				t.Fatalf("event %s data %q: %v", ev.Type, ev.Data, err)
			}
		}
		switch agentstream.EventType(ev.Type) {
		case agentstream.EventRunCreated:
			var d agentstream.RunCreatedData
			decode(&d)
			n.runID = d.RunID
		case agentstream.EventMessageDelta:
			var d agentstream.MessageDeltaData
			decode(&d)
			if deltas[d.MessageID] == nil {
				deltas[d.MessageID] = &strings.Builder{}
			}
			deltas[d.MessageID].WriteString(d.Delta)
			n.text += d.Delta
		case agentstream.EventMessageCompleted:
			var d agentstream.MessageCompletedData
			decode(&d)
			n.completed[d.MessageID] = d.Content
		case agentstream.EventToolArgumentsDelta:
			var d agentstream.ToolArgumentsDeltaData
			decode(&d)
			n.argDeltas[d.CallID] += d.Delta
		case agentstream.EventToolCall:
			var d agentstream.ToolCallData
			decode(&d)
			n.toolCalls = append(n.toolCalls, d)
		case agentstream.EventToolResult:
			var d agentstream.ToolResultData
			decode(&d)
			n.results = append(n.results, d)
		}
		if agentstream.EventType(ev.Type).Terminal() {
			terminals++
			n.terminal = ev
			decode(&n.end)
		}
	}
	if terminals != 1 || len(evs) == 0 || !agentstream.EventType(evs[len(evs)-1].Type).Terminal() {
		t.Fatalf("%d terminal events, want exactly one, last (events: %v)", terminals, evs)
	}
	for id, b := range deltas {
		if c, ok := n.completed[id]; ok && c != b.String() {
			t.Fatalf("message %s: deltas join to %q, message.completed says %q", id, b.String(), c)
		}
	}
	return n
}

// seedChunks decodes a /v1/chat stream's data lines.
func seedChunks(t testing.TB, evs []sse.Event) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, ev := range evs {
		if ev.Type != "message" || ev.ID != "" {
			t.Fatalf("the seed stream has only data lines; got event %q id %q", ev.Type, ev.ID)
		}
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader([]byte(ev.Data)))
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("chunk %q: %v", ev.Data, err)
		}
		out = append(out, m)
	}
	return out
}

func errorBody(t testing.TB, resp *http.Response) agentstream.ErrorInfo {
	t.Helper()
	var body struct {
		Error agentstream.ErrorInfo `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil || body.Error.Code == "" || body.Error.Message == "" {
		t.Fatalf("error body %q is not {\"error\": {\"code\", \"message\"}}: %v", b, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q", ct)
	}
	return body.Error
}

// openStream starts a request and returns a reader of its SSE answer; the
// request ends with cancel.
func (e *env) openStream(ctx context.Context, method, path, body string, header map[string]string) (*sse.Reader, *http.Response) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	e.t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("%s %s: status %d: %s", method, path, resp.StatusCode, b)
	}
	return sse.NewReader(resp.Body), resp
}

// readRun reads a run's events to their end, from lastEventID ("": from
// the start).
func (e *env) readRun(runID, lastEventID string) []sse.Event {
	e.t.Helper()
	var header map[string]string
	if lastEventID != "" {
		header = map[string]string{"Last-Event-ID": lastEventID}
	}
	r, _ := e.openStream(streamCtx(e.t), "GET", "/v1/runs/"+runID+"/events", "", header)
	return readToEnd(e.t, r)
}

func readN(t testing.TB, r *sse.Reader, n int) []sse.Event {
	t.Helper()
	var evs []sse.Event
	for len(evs) < n {
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("after %d events: %v", len(evs), err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func readToEnd(t testing.TB, r *sse.Reader) []sse.Event {
	t.Helper()
	var evs []sse.Event
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return evs
		}
		if err != nil {
			t.Fatalf("after %d events: %v", len(evs), err)
		}
		evs = append(evs, ev)
	}
}

// sameEvents fails t unless got and want are the same events: ids, types
// and data.
func sameEvents(t testing.TB, what string, got, want []sse.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d\ngot  %+v\nwant %+v", what, len(got), len(want), got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: event %d is %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

// checkRebuiltEnd checks the end of a run rebuilt from the store, as a
// reader whose events the log no longer holds gets it: the run's answer
// as message.completed without an id of its own, then the terminal event
// the log gave (its id, type and data).
func checkRebuiltEnd(t testing.TB, what string, got []sse.Event, answer string, terminal sse.Event) {
	t.Helper()
	if len(got) != 2 || got[0].Type != string(agentstream.EventMessageCompleted) || got[0].ID != "" {
		t.Fatalf("%s: %+v, want the answer without an id, then the end at id %s", what, got, terminal.ID)
	}
	var m agentstream.MessageCompletedData
	if err := json.Unmarshal([]byte(got[0].Data), &m); err != nil || m.Content != answer || m.Role != agentstream.RoleAssistant {
		t.Fatalf("%s: message.completed %s, want the answer %q (%v)", what, got[0].Data, answer, err)
	}
	if got[1] != terminal {
		t.Fatalf("%s: the end is %+v, want %+v", what, got[1], terminal)
	}
}

// waitRunEnd polls the run until it has ended.
func waitRunEnd(t testing.TB, e *env, runID string) agentstream.Run {
	t.Helper()
	var run agentstream.Run
	for deadline := time.Now().Add(2 * time.Minute); ; {
		e.json("GET", "/v1/runs/"+runID, "", http.StatusOK, &run)
		if run.Status.Terminal() {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run did not end: %+v", run)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockedBuffer is written by one goroutine while the test reads it.
type lockedBuffer = testenv.Buffer
