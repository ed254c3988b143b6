package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// --- canned OpenAI SSE ---

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func chunkOf(choices []any, usage any) string {
	c := map[string]any{
		"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "test-model",
		"choices": choices,
	}
	if usage != nil {
		c["usage"] = usage
	} else {
		c["usage"] = nil
	}
	return mustJSON(c)
}

func choice(delta map[string]any, finish any) []any {
	return []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": nil}}
}

func roleChunk() string {
	return chunkOf(choice(map[string]any{"role": "assistant", "content": ""}, nil), nil)
}
func textChunk(s string) string {
	return chunkOf(choice(map[string]any{"content": s}, nil), nil)
}
func finishChunk(reason string) string { return chunkOf(choice(map[string]any{}, reason), nil) }
func usageChunk(in, out int) string {
	return chunkOf([]any{}, map[string]any{"prompt_tokens": in, "completion_tokens": out, "total_tokens": in + out})
}

// toolChunk is a piece of tool call index; id and name are sent when not empty.
func toolChunk(index int, id, name, args string) string {
	fn := map[string]any{"arguments": args}
	tc := map[string]any{"index": index, "function": fn}
	if id != "" {
		tc["id"] = id
		tc["type"] = "function"
	}
	if name != "" {
		fn["name"] = name
	}
	return chunkOf(choice(map[string]any{"tool_calls": []any{tc}}, nil), nil)
}

// sse writes Server-Sent Events the way OpenAI does.
type sse struct {
	w http.ResponseWriter
}

func startSSE(w http.ResponseWriter) sse {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	return sse{w}
}

func (s sse) send(data ...string) {
	for _, d := range data {
		fmt.Fprintf(s.w, "data: %s\n\n", d)
	}
	s.w.(http.Flusher).Flush()
}

func (s sse) done() { s.send("[DONE]") }

// streamAll answers with the chunks then [DONE].
func streamAll(chunks ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := startSSE(w)
		for _, c := range chunks {
			s.send(c)
		}
		s.done()
	}
}

// --- helpers ---

func newModel(t testing.TB, url string, mod func(*Config)) *Model {
	t.Helper()
	cfg := Config{APIKey: "sk-test-secret-key", BaseURL: url + "/v1", MaxRetryDelay: 5 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func simpleRequest() agentstream.ModelRequest {
	return agentstream.ModelRequest{
		Model:    "test-model",
		Messages: []agentstream.Message{{Role: agentstream.RoleUser, Content: "hi"}},
	}
}

type recorder struct {
	deltas []agentstream.ModelDelta
}

func (r *recorder) on(d agentstream.ModelDelta) {
	if d.ToolCall != nil {
		c := *d.ToolCall
		d.ToolCall = &c
	}
	r.deltas = append(r.deltas, d)
}

func wantCode(t *testing.T, err error, code agentstream.Code) *agentstream.Error {
	t.Helper()
	var e *agentstream.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *agentstream.Error", err, err)
	}
	if e.Code != code {
		t.Fatalf("code %s (%v), want %s", e.Code, err, code)
	}
	return e
}

// --- tests ---

func TestStreamText(t *testing.T) {
	srv := httptest.NewServer(streamAll(
		roleChunk(), textChunk("Hel"), textChunk("lo"), textChunk(", "), textChunk("wörld"),
		finishChunk("stop"), usageChunk(12, 4),
	))
	defer srv.Close()
	m := newModel(t, srv.URL, nil)

	var rec recorder
	res, err := m.Stream(context.Background(), simpleRequest(), rec.on)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, d := range rec.deltas {
		if d.ToolCall != nil {
			t.Fatalf("unexpected tool call delta %+v", d.ToolCall)
		}
		texts = append(texts, d.Text)
	}
	if got, want := strings.Join(texts, "|"), "Hel|lo|, |wörld"; got != want {
		t.Errorf("deltas %q, want %q", got, want)
	}
	if res.Content != "Hello, wörld" {
		t.Errorf("Content %q", res.Content)
	}
	if res.Usage != (agentstream.Usage{InputTokens: 12, OutputTokens: 4}) {
		t.Errorf("Usage %+v", res.Usage)
	}
	if res.FinishReason != "stop" || len(res.ToolCalls) != 0 {
		t.Errorf("FinishReason %q, ToolCalls %v", res.FinishReason, res.ToolCalls)
	}
}

func TestStreamToolCalls(t *testing.T) {
	srv := httptest.NewServer(streamAll(
		roleChunk(),
		toolChunk(0, "call_a", "get_weather", ""),
		toolChunk(0, "", "", `{"ci`),
		toolChunk(1, "call_b", "get_time", `{"tz"`),
		toolChunk(0, "", "", `ty": "Pa`),
		toolChunk(1, "", "", `: "Europe/`),
		toolChunk(0, "", "", `ris"}`),
		toolChunk(1, "", "", `Paris"}`),
		finishChunk("tool_calls"),
		usageChunk(30, 20),
	))
	defer srv.Close()
	m := newModel(t, srv.URL, nil)

	var rec recorder
	res, err := m.Stream(context.Background(), simpleRequest(), rec.on)
	if err != nil {
		t.Fatal(err)
	}
	names := map[int]string{0: "get_weather", 1: "get_time"}
	ids := map[int]string{0: "call_a", 1: "call_b"}
	args := map[int]string{}
	for _, d := range rec.deltas {
		tc := d.ToolCall
		if tc == nil {
			if d.Text != "" {
				t.Fatalf("unexpected text delta %q", d.Text)
			}
			continue
		}
		if tc.ID != ids[tc.Index] || tc.Name != names[tc.Index] {
			t.Errorf("delta %+v: want ID %q, Name %q", tc, ids[tc.Index], names[tc.Index])
		}
		args[tc.Index] += tc.Arguments
	}
	want := []agentstream.ToolCall{
		{ID: "call_a", Name: "get_weather", Arguments: `{"city": "Paris"}`},
		{ID: "call_b", Name: "get_time", Arguments: `{"tz": "Europe/Paris"}`},
	}
	if fmt.Sprint(res.ToolCalls) != fmt.Sprint(want) {
		t.Errorf("ToolCalls %+v\nwant %+v", res.ToolCalls, want)
	}
	for i, w := range want {
		if args[i] != w.Arguments {
			t.Errorf("joined deltas of call %d: %q", i, args[i])
		}
	}
	if res.FinishReason != "tool_calls" || res.Content != "" || res.Usage.OutputTokens != 20 {
		t.Errorf("result %+v", res)
	}
}

// Some servers give every call index 0 and no ID at all, or send whole
// calls in one piece each.
func TestStreamToolCallsOddServers(t *testing.T) {
	t.Run("same index, distinct IDs", func(t *testing.T) {
		srv := httptest.NewServer(streamAll(
			toolChunk(0, "call_1", "a", `{"x":1}`),
			toolChunk(0, "call_2", "b", `{"y":`),
			toolChunk(0, "", "", `2}`),
			finishChunk("tool_calls"),
		))
		defer srv.Close()
		var rec recorder
		res, err := newModel(t, srv.URL, nil).Stream(context.Background(), simpleRequest(), rec.on)
		if err != nil {
			t.Fatal(err)
		}
		want := []agentstream.ToolCall{{ID: "call_1", Name: "a", Arguments: `{"x":1}`}, {ID: "call_2", Name: "b", Arguments: `{"y":2}`}}
		if fmt.Sprint(res.ToolCalls) != fmt.Sprint(want) {
			t.Errorf("ToolCalls %+v", res.ToolCalls)
		}
		if last := rec.deltas[len(rec.deltas)-1].ToolCall; last.Index != 1 || last.ID != "call_2" {
			t.Errorf("last delta %+v", last)
		}
	})
	t.Run("no ID", func(t *testing.T) {
		srv := httptest.NewServer(streamAll(
			toolChunk(0, "", "a", `{}`),
			finishChunk("tool_calls"),
		))
		defer srv.Close()
		var rec recorder
		res, err := newModel(t, srv.URL, nil).Stream(context.Background(), simpleRequest(), rec.on)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.ToolCalls) != 1 || !strings.HasPrefix(res.ToolCalls[0].ID, "call_") || res.ToolCalls[0].ID != rec.deltas[0].ToolCall.ID {
			t.Errorf("ToolCalls %+v, deltas %+v", res.ToolCalls, rec.deltas[0].ToolCall)
		}
	})
	t.Run("index out of range", func(t *testing.T) {
		srv := httptest.NewServer(streamAll(
			textChunk("x"),
			toolChunk(100000, "c", "a", `{}`),
			finishChunk("tool_calls"),
		))
		defer srv.Close()
		res, err := newModel(t, srv.URL, nil).Stream(context.Background(), simpleRequest(), nil)
		wantCode(t, err, agentstream.CodeUpstream)
		if res.Content != "x" {
			t.Errorf("partial Content %q", res.Content)
		}
	})
}

func TestRequestSent(t *testing.T) {
	var (
		body   []byte
		header http.Header
		path   string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		header, path = r.Header.Clone(), r.URL.Path
		streamAll(textChunk("ok"), finishChunk("stop"))(w, r)
	}))
	defer srv.Close()
	m := newModel(t, srv.URL, func(c *Config) { c.Headers = map[string]string{"X-Extra": "yes"} })

	temp := 0.25
	req := agentstream.ModelRequest{
		Model: "gpt-test",
		Messages: []agentstream.Message{
			{Role: agentstream.RoleSystem, Content: "be brief"},
			{Role: agentstream.RoleUser, Content: "weather?"},
			{Role: agentstream.RoleAssistant, ToolCalls: []agentstream.ToolCall{
				{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`},
				{ID: "call_2", Name: "now"},
			}},
			{Role: agentstream.RoleTool, ToolCallID: "call_1", ToolName: "get_weather", Content: "sunny"},
			{Role: agentstream.RoleTool, ToolCallID: "call_2", ToolName: "now", Content: "noon"},
			{Role: agentstream.RoleAssistant, Content: "Sunny at noon."},
			{Role: agentstream.RoleAssistant, Content: ""},
		},
		Tools: []agentstream.ToolSpec{
			{Name: "get_weather", Description: "Weather of a city", Parameters: json.RawMessage(
				`{"type":"object","properties":{"city":{"type":"string","maxLength":100000000000000000001}},"required":["city"]}`)},
			{Name: "now"},
		},
		Temperature: &temp,
	}
	if _, err := m.Stream(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}

	if path != "/v1/chat/completions" {
		t.Errorf("path %q", path)
	}
	if got := header.Get("Authorization"); got != "Bearer sk-test-secret-key" {
		t.Errorf("Authorization %q", got)
	}
	if header.Get("X-Extra") != "yes" {
		t.Errorf("X-Extra %q", header.Get("X-Extra"))
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	want := map[string]any{
		"model":          "gpt-test",
		"stream":         true,
		"stream_options": map[string]any{"include_usage": true},
		"temperature":    0.25,
		"messages": []any{
			map[string]any{"role": "system", "content": "be brief"},
			map[string]any{"role": "user", "content": "weather?"},
			map[string]any{"role": "assistant", "tool_calls": []any{
				map[string]any{"id": "call_1", "type": "function", "function": map[string]any{"name": "get_weather", "arguments": `{"city":"Paris"}`}},
				map[string]any{"id": "call_2", "type": "function", "function": map[string]any{"name": "now", "arguments": `{}`}},
			}},
			map[string]any{"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
			map[string]any{"role": "tool", "tool_call_id": "call_2", "content": "noon"},
			map[string]any{"role": "assistant", "content": "Sunny at noon."},
			map[string]any{"role": "assistant", "content": ""},
		},
		"tools": []any{
			map[string]any{"type": "function", "function": map[string]any{
				"name": "get_weather", "description": "Weather of a city",
				"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string", "maxLength": 1e20}}, "required": []any{"city"}},
			}},
			map[string]any{"type": "function", "function": map[string]any{
				"name": "now", "parameters": map[string]any{"type": "object", "properties": map[string]any{}},
			}},
		},
	}
	if g, w := mustJSON(got), mustJSON(want); g != w {
		t.Errorf("request body\n got %s\nwant %s", g, w)
	}
	// The schema is passed through as written, not re-encoded.
	if !strings.Contains(string(body), `"maxLength":100000000000000000001`) {
		t.Errorf("schema number re-encoded: %s", body)
	}
}

func TestNoAPIKeyIgnoresEnvironment(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "sk-from-env")
	t.Setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
	var auth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		streamAll(textChunk("ok"), finishChunk("stop"))(w, r)
	}))
	defer srv.Close()
	m := newModel(t, srv.URL, func(c *Config) { c.APIKey = "" })
	if _, err := m.Stream(context.Background(), simpleRequest(), nil); err != nil {
		t.Fatal(err)
	}
	if a := auth.Load(); a != "" {
		t.Errorf("Authorization %q sent", a)
	}
}

func TestRetries(t *testing.T) {
	errorBody := func(w http.ResponseWriter, status int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"message":%q,"type":"x","param":null,"code":null}}`, msg)
	}
	ok := streamAll(textChunk("ok"), finishChunk("stop"))
	tests := []struct {
		name       string
		cfg        func(*Config)
		handler    func(n int64, w http.ResponseWriter, r *http.Request) // n counts from 1
		wantN      int64
		wantCode   agentstream.Code // "" for success
		wantInMsg  string
		notWantMsg string
	}{
		{
			name: "500 always", wantN: 3, wantCode: agentstream.CodeUpstream, wantInMsg: "model API returned 500: boom",
			handler: func(n int64, w http.ResponseWriter, r *http.Request) { errorBody(w, 500, "boom") },
		},
		{
			name: "500 always, MaxRetries 4", cfg: func(c *Config) { c.MaxRetries = 4 }, wantN: 5, wantCode: agentstream.CodeUpstream,
			handler: func(n int64, w http.ResponseWriter, r *http.Request) { errorBody(w, 502, "bad gateway") },
		},
		{
			name: "retries disabled", cfg: func(c *Config) { c.DisableRetries = true }, wantN: 1, wantCode: agentstream.CodeUpstream,
			handler: func(n int64, w http.ResponseWriter, r *http.Request) { errorBody(w, 503, "later") },
		},
		{
			name: "429 then success", wantN: 2,
			handler: func(n int64, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", "0")
					errorBody(w, 429, "slow down")
					return
				}
				ok(w, r)
			},
		},
		{
			name: "429 always", wantN: 3, wantCode: agentstream.CodeRateLimited, wantInMsg: "slow down",
			handler: func(n int64, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After-Ms", "1")
				errorBody(w, 429, "slow down")
			},
		},
		{
			name: "429 with Retry-After over MaxRetryDelay", wantN: 1, wantCode: agentstream.CodeRateLimited,
			handler: func(n int64, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "3600")
				errorBody(w, 429, "quota")
			},
		},
		{
			name: "400 is not retried", wantN: 1, wantCode: agentstream.CodeUpstream, wantInMsg: "model API returned 400: bad model",
			handler: func(n int64, w http.ResponseWriter, r *http.Request) { errorBody(w, 400, "bad model") },
		},
		{
			name: "401 hides the key", wantN: 1, wantCode: agentstream.CodeUpstream, wantInMsg: "returned 401: Incorrect API key provided: [redacted]",
			notWantMsg: "secret",
			handler: func(n int64, w http.ResponseWriter, r *http.Request) {
				errorBody(w, 401, "Incorrect API key provided: sk-test-secret-key. You can find your API key at …")
			},
		},
		{
			name: "non-JSON 502", wantN: 3, wantCode: agentstream.CodeUpstream, wantInMsg: "model API returned 502",
			handler: func(n int64, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(502)
				io.WriteString(w, "<html>bad gateway</html>")
			},
		},
		{
			name: "connection reset then success", wantN: 2,
			handler: func(n int64, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					panic(http.ErrAbortHandler) // no response at all
				}
				ok(w, r)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int64
			var mu sync.Mutex
			var bodies []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					t.Errorf("reading the request body: %v", err)
				}
				mu.Lock()
				bodies = append(bodies, string(b))
				mu.Unlock()
				tt.handler(n.Add(1), w, r)
			}))
			defer srv.Close()
			m := newModel(t, srv.URL, tt.cfg)
			start := time.Now()
			res, err := m.Stream(context.Background(), simpleRequest(), nil)
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("took %v", el)
			}
			if got := n.Load(); got != tt.wantN {
				t.Errorf("%d requests, want %d", got, tt.wantN)
			}
			// Every attempt sends the whole body (sentBody).
			want, berr := requestBody(simpleRequest())
			if berr != nil {
				t.Fatal(berr)
			}
			mu.Lock()
			for i, b := range bodies {
				if b != string(want) {
					t.Errorf("attempt %d sent %q, want %q", i+1, b, want)
				}
			}
			mu.Unlock()
			if tt.wantCode == "" {
				if err != nil || res.Content != "ok" {
					t.Fatalf("res %+v, err %v", res, err)
				}
				return
			}
			e := wantCode(t, err, tt.wantCode)
			msg := e.Info().Message
			if !strings.Contains(msg, tt.wantInMsg) {
				t.Errorf("message %q lacks %q", msg, tt.wantInMsg)
			}
			if tt.notWantMsg != "" && (strings.Contains(msg, tt.notWantMsg) || strings.Contains(err.Error(), tt.notWantMsg)) {
				t.Errorf("message %q / error %q contains %q", msg, err, tt.notWantMsg)
			}
		})
	}
}

func TestStreamBroken(t *testing.T) {
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		wantInMsg string
	}{
		{
			name: "abort after flushing",
			handler: func(w http.ResponseWriter, r *http.Request) {
				s := startSSE(w)
				s.send(textChunk("par"), textChunk("tial"))
				panic(http.ErrAbortHandler)
			},
			wantInMsg: "model stream ended early: connection closed mid-stream",
		},
		{
			name: "hijacked and closed mid-chunk",
			handler: func(w http.ResponseWriter, r *http.Request) {
				s := startSSE(w)
				s.send(textChunk("par"), textChunk("tial"))
				conn, buf, err := w.(http.Hijacker).Hijack()
				if err != nil {
					panic(err)
				}
				// Half of a chunk of the chunked encoding, then close.
				buf.WriteString("40\r\ndata: {\"id\":")
				buf.Flush()
				conn.Close()
			},
			wantInMsg: "model stream ended early: connection closed mid-stream",
		},
		{
			name: "clean end without finish_reason",
			handler: func(w http.ResponseWriter, r *http.Request) {
				s := startSSE(w)
				s.send(textChunk("par"), textChunk("tial"))
			},
			wantInMsg: "model stream ended early: no finish_reason",
		},
		{
			name: "error event",
			handler: func(w http.ResponseWriter, r *http.Request) {
				s := startSSE(w)
				s.send(textChunk("par"), textChunk("tial"), `{"error":{"message":"overloaded","type":"server_error"}}`)
			},
			wantInMsg: "model stream sent an error: overloaded",
		},
		{
			name: "invalid chunk",
			handler: func(w http.ResponseWriter, r *http.Request) {
				s := startSSE(w)
				s.send(textChunk("par"), textChunk("tial"), `{"choices":[`)
			},
			wantInMsg: "model stream ended early",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			var rec recorder
			res, err := newModel(t, srv.URL, nil).Stream(context.Background(), simpleRequest(), rec.on)
			e := wantCode(t, err, agentstream.CodeUpstream)
			if !strings.Contains(e.Info().Message, tt.wantInMsg) {
				t.Errorf("message %q lacks %q", e.Info().Message, tt.wantInMsg)
			}
			if res.Content != "partial" || len(rec.deltas) != 2 {
				t.Errorf("partial result %+v, %d deltas", res, len(rec.deltas))
			}
		})
	}
}

// stallServer sends the given chunks, then waits for the request to end
// (closing ended when it does).
func stallServer(t *testing.T, chunks ...string) (srv *httptest.Server, ended <-chan struct{}) {
	ch := make(chan struct{})
	var once sync.Once
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer once.Do(func() { close(ch) })
		// Like a real server, read the request first (net/http only
		// notices a closed connection once the body is consumed).
		io.Copy(io.Discard, r.Body)
		if len(chunks) > 0 {
			startSSE(w).send(chunks...)
		}
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
			t.Error("request never ended")
		}
	}))
	return srv, ch
}

func waitEnded(t *testing.T, ended <-chan struct{}) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(2 * time.Second):
		t.Fatal("server did not see the request end")
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Run("mid-stream", func(t *testing.T) {
		srv, ended := stallServer(t, textChunk("one"))
		defer srv.Close()
		m := newModel(t, srv.URL, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })
		start := time.Now()
		res, err := m.Stream(context.Background(), simpleRequest(), nil)
		el := time.Since(start)
		e := wantCode(t, err, agentstream.CodeUpstreamTimeout)
		if el < 200*time.Millisecond || el > 1500*time.Millisecond {
			t.Errorf("timed out after %v", el)
		}
		if res.Content != "one" {
			t.Errorf("partial Content %q", res.Content)
		}
		if !strings.Contains(e.Info().Message, "200ms") {
			t.Errorf("message %q", e.Info().Message)
		}
		waitEnded(t, ended)
	})
	t.Run("no response headers", func(t *testing.T) {
		var n atomic.Int64
		srv, ended := stallServer(t)
		defer srv.Close()
		inner := srv.Config.Handler
		srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1); inner.ServeHTTP(w, r) })
		m := newModel(t, srv.URL, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })
		start := time.Now()
		_, err := m.Stream(context.Background(), simpleRequest(), nil)
		el := time.Since(start)
		wantCode(t, err, agentstream.CodeUpstreamTimeout)
		if el > 1500*time.Millisecond {
			t.Errorf("timed out after %v", el)
		}
		waitEnded(t, ended)
		if n.Load() != 1 {
			t.Errorf("%d requests", n.Load())
		}
	})
	t.Run("slow onDelta is not idleness", func(t *testing.T) {
		srv := httptest.NewServer(streamAll(textChunk("a"), textChunk("b"), finishChunk("stop")))
		defer srv.Close()
		m := newModel(t, srv.URL, func(c *Config) { c.IdleTimeout = 100 * time.Millisecond })
		res, err := m.Stream(context.Background(), simpleRequest(), func(agentstream.ModelDelta) { time.Sleep(250 * time.Millisecond) })
		if err != nil || res.Content != "ab" {
			t.Fatalf("res %+v, err %v", res, err)
		}
	})
}

func TestCallerCancels(t *testing.T) {
	t.Run("mid-stream", func(t *testing.T) {
		srv, ended := stallServer(t, textChunk("one"), textChunk("two"))
		defer srv.Close()
		m := newModel(t, srv.URL, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var n int
		res, err := m.Stream(ctx, simpleRequest(), func(agentstream.ModelDelta) {
			if n++; n == 2 {
				time.AfterFunc(50*time.Millisecond, cancel)
			}
		})
		wantCode(t, err, agentstream.CodeCancelled)
		if res.Content != "onetwo" {
			t.Errorf("partial Content %q", res.Content)
		}
		waitEnded(t, ended)
	})
	t.Run("waiting for headers", func(t *testing.T) {
		srv, ended := stallServer(t)
		defer srv.Close()
		m := newModel(t, srv.URL, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := m.Stream(ctx, simpleRequest(), nil)
		wantCode(t, err, agentstream.CodeCancelled)
		waitEnded(t, ended)
	})
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		m := newModel(t, "http://127.0.0.1:1", nil)
		_, err := m.Stream(ctx, simpleRequest(), nil)
		wantCode(t, err, agentstream.CodeCancelled)
	})
}

func TestConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	m := newModel(t, url, func(c *Config) { c.MaxRetries = 1 })
	_, err := m.Stream(context.Background(), simpleRequest(), nil)
	e := wantCode(t, err, agentstream.CodeUpstream)
	if !strings.HasPrefix(e.Info().Message, "model API request failed: ") || strings.Contains(e.Info().Message, "/chat/completions") {
		t.Errorf("message %q", e.Info().Message)
	}
}

func TestBadRequest(t *testing.T) {
	m := newModel(t, "http://127.0.0.1:1", nil)
	for name, req := range map[string]agentstream.ModelRequest{
		"no model":   {Messages: simpleRequest().Messages},
		"bad role":   {Model: "m", Messages: []agentstream.Message{{Role: "robot"}}},
		"bad schema": {Model: "m", Tools: []agentstream.ToolSpec{{Name: "t", Parameters: json.RawMessage(`[1]`)}}},
	} {
		if _, err := m.Stream(context.Background(), req, nil); agentstream.CodeOf(err) != agentstream.CodeInternal {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestConfig(t *testing.T) {
	d := Config{}.WithDefaults()
	if d.BaseURL != DefaultBaseURL || d.MaxRetries != 2 || d.IdleTimeout != 60*time.Second || d.MaxRetryDelay != 8*time.Second {
		t.Errorf("defaults %+v", d)
	}
	if d := (Config{IdleTimeout: time.Second}).WithDefaults(); d.MaxRetryDelay != 500*time.Millisecond {
		t.Errorf("MaxRetryDelay %v", d.MaxRetryDelay)
	}
	if d := (Config{DisableRetries: true}).WithDefaults(); d.MaxRetries != 0 {
		t.Errorf("MaxRetries %d", d.MaxRetries)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	for _, good := range []Config{
		{BaseURL: "http://localhost:11434/v1"},
		{BaseURL: "https://example.com/openai/v1/", Headers: map[string]string{"X-A": "b"}},
	} {
		if _, err := New(good); err != nil {
			t.Errorf("%+v: %v", good, err)
		}
	}
	for name, bad := range map[string]Config{
		"no scheme":         {BaseURL: "localhost:8080/v1"},
		"ftp":               {BaseURL: "ftp://example.com/v1"},
		"no host":           {BaseURL: "http:///v1"},
		"unparsable":        {BaseURL: "http://[::1"},
		"negative retries":  {MaxRetries: -1},
		"negative idle":     {IdleTimeout: -time.Second},
		"negative delay":    {MaxRetryDelay: -time.Second},
		"delay over idle":   {IdleTimeout: time.Second, MaxRetryDelay: 2 * time.Second},
		"bad header name":   {Headers: map[string]string{"X A": "b"}},
		"header with CR LF": {Headers: map[string]string{"X-A": "b\r\nEvil: 1"}},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("%s: New(%+v) succeeded", name, bad)
		}
	}
}

// The model is safe for concurrent use.
func TestConcurrentStreams(t *testing.T) {
	srv := httptest.NewServer(streamAll(textChunk("a"), toolChunk(0, "c", "f", "{}"), finishChunk("stop"), usageChunk(1, 2)))
	defer srv.Close()
	m := newModel(t, srv.URL, nil)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 10 {
				res, err := m.Stream(context.Background(), simpleRequest(), func(agentstream.ModelDelta) {})
				if err != nil || res.Content != "a" || len(res.ToolCalls) != 1 {
					t.Errorf("res %+v, err %v", res, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// openai-go closes the body as soon as it reads [DONE]; the end of the
// chunked body often comes a moment later. The connection must still be
// reused.
func TestConnectionReuse(t *testing.T) {
	var conns atomic.Int64
	h := streamAll(textChunk("a"), finishChunk("stop"), usageChunk(1, 1))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(w, r)
		time.Sleep(20 * time.Millisecond) // the body ends after [DONE] is flushed
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	m := newModel(t, srv.URL, nil)
	for range 5 {
		if _, err := m.Stream(context.Background(), simpleRequest(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 5 sequential calls", n)
	}
}

// A server that keeps the response open after [DONE] costs a bounded wait.
func TestHeldOpenAfterDone(t *testing.T) {
	srv, ended := stallServer(t, textChunk("a"), finishChunk("stop"), "[DONE]")
	defer srv.Close()
	m := newModel(t, srv.URL, nil)
	start := time.Now()
	res, err := m.Stream(context.Background(), simpleRequest(), nil)
	if err != nil || res.Content != "a" {
		t.Fatalf("res %+v, err %v", res, err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %v", el)
	}
	waitEnded(t, ended)
}

// Retry-After-Ms and Retry-After set the wait before a retry, instead of
// the exponential backoff (0.5s, 1s, …).
func TestRetryAfterHonoured(t *testing.T) {
	for _, h := range [][2]string{{"Retry-After", "0"}, {"Retry-After-Ms", "10"}} {
		t.Run(h[0], func(t *testing.T) {
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) <= 2 {
					w.Header().Set(h[0], h[1])
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				streamAll(textChunk("ok"), finishChunk("stop"))(w, r)
			}))
			defer srv.Close()
			m := newModel(t, srv.URL, func(c *Config) { c.MaxRetryDelay = 0 }) // the default, 8s
			start := time.Now()
			if _, err := m.Stream(context.Background(), simpleRequest(), nil); err != nil {
				t.Fatal(err)
			}
			if el := time.Since(start); el > 300*time.Millisecond || n.Load() != 3 {
				t.Errorf("%d requests in %v", n.Load(), el)
			}
		})
	}
}

// TestH2C: with H2C, calls to an http:// API go over HTTP/2 without TLS;
// without it, over HTTP/1.1.
func TestH2C(t *testing.T) {
	t.Parallel()
	for _, h2c := range []bool{false, true} {
		var proto atomic.Int32
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			proto.Store(int32(r.ProtoMajor))
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
		}))
		srv.Config.Protocols = new(http.Protocols)
		srv.Config.Protocols.SetHTTP1(true)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
		srv.Start()
		t.Cleanup(srv.Close)
		m, err := New(Config{BaseURL: srv.URL + "/v1", H2C: h2c})
		if err != nil {
			t.Fatal(err)
		}
		res, err := m.Stream(context.Background(), simpleRequest(), nil)
		if err != nil || res.Content != "hi" {
			t.Fatalf("h2c=%v: %+v, %v", h2c, res, err)
		}
		want := int32(1)
		if h2c {
			want = 2
		}
		if got := proto.Load(); got != want {
			t.Fatalf("h2c=%v: the request came over HTTP/%d", h2c, got)
		}
	}
}

// TestSentBody: a call's request body reads whole, again for another
// attempt, and not once the call has its answer; a reader lets go of the
// body once it has read it.
func TestSentBody(t *testing.T) {
	t.Parallel()
	body := []byte(`{"model":"m","messages":[]}`)
	s := &sentBody{}
	s.b.Store(&body)
	for i := range 2 {
		rc, err := s.reopen()
		if err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
		got, err := io.ReadAll(rc)
		if err != nil || string(got) != string(body) {
			t.Fatalf("attempt %d read %q, %v; want %q", i+1, got, err, body)
		}
		if r := rc.(*bodyReader); r.b != nil {
			t.Errorf("attempt %d: the reader holds %d bytes after reading them", i+1, len(r.b))
		}
		if err := rc.Close(); err != nil {
			t.Error(err)
		}
	}
	s.b.Store(nil)
	if _, err := s.reopen(); !errors.Is(err, errBodyGone) {
		t.Errorf("reopened after the answer: %v, want errBodyGone", err)
	}
	if got, err := io.ReadAll(s.open()); err != nil || len(got) != 0 {
		t.Errorf("a reader after the answer read %q, %v", got, err)
	}
}

// TestHTTP1ConcurrentStreams: without H2C, as with a local model server
// over HTTP/1.1, the default client opens a connection per streaming
// call and caps none: every call is under way at once. The server
// answers none until all have arrived, so a cap on connections per host
// would hold calls back and fail the test.
func TestHTTP1ConcurrentStreams(t *testing.T) {
	t.Parallel()
	const calls = 300
	var arrived sync.WaitGroup
	arrived.Add(calls)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	var mu sync.Mutex
	conns := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		conns[r.RemoteAddr] = r.ProtoMajor == 1
		mu.Unlock()
		arrived.Done()
		s := startSSE(w)
		select {
		case <-all:
		case <-r.Context().Done():
			return
		}
		s.send(textChunk("hi"), finishChunk("stop"))
		s.done()
	}))
	t.Cleanup(srv.Close)
	m := newModel(t, srv.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for range calls {
		wg.Go(func() {
			res, err := m.Stream(ctx, simpleRequest(), nil)
			if err == nil && res.Content != "hi" {
				err = fmt.Errorf("content %q", res.Content)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	mu.Lock()
	defer mu.Unlock()
	for err := range errs {
		t.Fatalf("a call failed (%d of %d arrived): %v", len(conns), calls, err)
	}
	if len(conns) != calls {
		t.Errorf("%d calls came over %d connections, want one each", calls, len(conns))
	}
	for addr, http1 := range conns {
		if !http1 {
			t.Errorf("the call from %s was not HTTP/1.1", addr)
		}
	}
}
