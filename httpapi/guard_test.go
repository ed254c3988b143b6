package httpapi

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
)

// guardSend sends method path with body and its Content-Type (none when
// ct is "-") and Host (the server's own when host is ""); key, when not
// empty, is sent as a bearer token.
func guardSend(t testing.TB, f *fixture, method, path, ct, host, key, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ct != "-" {
		req.Header.Set("Content-Type", ct)
	}
	if host != "" {
		req.Host = host
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// TestContentTypeRefused: every endpoint that takes a body refuses one
// declared as a form or as text (what a cross-site page can post without
// a CORS preflight) with 415 and a message that says what to send, before
// doing anything; JSON, with or without parameters, and no Content-Type
// at all are taken.
func TestContentTypeRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	endpoints := []struct{ method, path, body string }{
		{"POST", "/v1/threads", `{}`},
		{"POST", "/v1/threads/thr_x/runs", `{"input":"hi"}`},
		{"PATCH", "/v1/threads/thr_x", `{"metadata":{}}`},
		{"POST", "/v1/runs/run_x/cancel", ``},
		{"POST", "/v1/runs/run_x/token", ``},
		{"POST", "/v1/chat", `{"query":"hi"}`},
		{"POST", "/v1/chat/completions", `{"model":"assistant","messages":[{"role":"user","content":"hi"}]}`},
		{"POST", "/api/chat", `{"messages":[]}`},
		{"POST", "/ag-ui/assistant", `{}`},
	}
	refused := []string{
		"application/x-www-form-urlencoded",
		"multipart/form-data; boundary=x",
		"text/plain",
		"text/plain;charset=UTF-8",
		"application/jsonp",
		"application/xml",
		"",
		"not a type",
	}
	for _, ep := range endpoints {
		for _, ct := range refused {
			resp := guardSend(t, f, ep.method, ep.path, ct, "", "", ep.body)
			if resp.StatusCode != http.StatusUnsupportedMediaType {
				b, _ := io.ReadAll(resp.Body)
				t.Errorf("%s %s with Content-Type %q: status %d (%s), want 415", ep.method, ep.path, ct, resp.StatusCode, b)
				continue
			}
			if ep.path == "/v1/chat/completions" {
				continue // OpenAI's error shape; its status is what matters
			}
			if e := decodeError(t, resp); e.Code != CodeUnsupportedMediaType || !strings.Contains(e.Message, "application/json") {
				t.Errorf("%s %s with %q: error %+v", ep.method, ep.path, ct, e)
			}
		}
	}
	// Nothing refused was done: no thread was created.
	resp := guardSend(t, f, "GET", "/v1/threads", "-", "", "", "")
	if b, _ := io.ReadAll(resp.Body); strings.Contains(string(b), `"id"`) {
		t.Fatalf("threads after refused posts: %s", b)
	}
	for _, ep := range endpoints {
		for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON", "-"} {
			if resp := guardSend(t, f, ep.method, ep.path, ct, "", "", ep.body); resp.StatusCode == http.StatusUnsupportedMediaType {
				t.Errorf("%s %s with Content-Type %q: 415", ep.method, ep.path, ct)
			}
		}
	}
	resp = guardSend(t, f, "GET", "/v1/threads", "-", "", "", "")
	if b, _ := io.ReadAll(resp.Body); !strings.Contains(string(b), `"id"`) {
		t.Fatalf("no thread after the accepted posts: %s", b)
	}
	// A form post the size of a body is answered too, without waiting
	// for its body.
	if resp := guardSend(t, f, "POST", "/v1/chat", "application/x-www-form-urlencoded", "", "", "query=hi"); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("form post: status %d", resp.StatusCode)
	}
}

// TestHostRebinding: with no identity configured, only loopback names
// are served (DNS rebinding sends another site's name as Host); any
// other is 421 with a message naming it. With keys, any Host is served.
func TestHostRebinding(t *testing.T) {
	t.Parallel()
	local := newFixture(t, Options{})
	port := local.url[strings.LastIndex(local.url, ":"):]
	for _, host := range []string{"localhost" + port, "LOCALHOST" + port, "localhost", "127.0.0.1" + port, "127.0.0.1", "127.1.2.3" + port, "[::1]" + port, "[::1]", "localhost." + port} {
		if resp := guardSend(t, local, "GET", "/v1/agents", "-", host, "", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("Host %q: status %d, want 200", host, resp.StatusCode)
		}
	}
	for _, host := range []string{"evil.example" + port, "evil.example", "127.0.0.1.evil.example" + port, "localhost.evil.example", "10.0.0.1" + port, "[::2]" + port, "0.0.0.0" + port} {
		for _, ep := range []struct{ method, path string }{{"GET", "/v1/agents"}, {"POST", "/v1/threads"}, {"GET", "/v1/runs/run_x/events"}} {
			resp := guardSend(t, local, ep.method, ep.path, "application/json", host, "", `{}`)
			if resp.StatusCode != http.StatusMisdirectedRequest {
				t.Errorf("%s %s Host %q: status %d, want 421", ep.method, ep.path, host, resp.StatusCode)
				continue
			}
			if e := decodeError(t, resp); e.Code != CodeMisdirected || !strings.Contains(e.Message, host) {
				t.Errorf("Host %q: error %+v", host, e)
			}
		}
	}
	keyed := newFixture(t, Options{Keys: map[string]string{"key-0123456789abcdef": "u1"}})
	if resp := guardSend(t, keyed, "GET", "/v1/agents", "-", "api.example.com", "key-0123456789abcdef", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("with keys, Host api.example.com: status %d", resp.StatusCode)
	}
	if resp := guardSend(t, keyed, "GET", "/v1/agents", "-", "api.example.com", "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("with keys, no key: status %d", resp.StatusCode)
	}
}

func TestLoopbackHost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"localhost:8080", true},
		{"LocalHost:1", true},
		{"localhost.", true},
		{"127.0.0.1", true},
		{"127.0.0.1:80", true},
		{"127.255.0.1:80", true},
		{"[::1]:8080", true},
		{"[::1]", true},
		{"::1", true},
		{"", false},
		{"example.com", false},
		{"localhost.example.com", false},
		{"127.0.0.1.nip.io", false},
		{"192.168.1.1:80", false},
		{"[::ffff:10.0.0.1]:80", false},
		{"0.0.0.0", false},
		{"localhost:8080:1", false},
	}
	for _, tt := range tests {
		if got := loopbackHost(tt.host); got != tt.want {
			t.Errorf("loopbackHost(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

// TestJSONDepth: a body nesting deeper than maxJSONDepth is 400 naming
// the limit, on every decoder (one check in decodeBody); at the limit it
// is decoded as usual.
func TestJSONDepth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	nest := func(levels int) string { // an object of levels levels in all
		return `{"x":` + strings.Repeat("[", levels-1) + strings.Repeat("]", levels-1) + `}`
	}
	for _, path := range []string{"/v1/threads", "/v1/chat", "/v1/chat/completions", "/api/chat", "/ag-ui/assistant", "/v1/threads/thr_x/runs"} {
		resp := guardSend(t, f, "POST", path, "application/json", "", "", nest(maxJSONDepth+1))
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", path, resp.StatusCode)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), "more than 64 levels deep") {
			t.Errorf("%s: body %s does not name the limit", path, b)
		}
	}
	// At the limit: the strict decoder's own error, not the depth's.
	resp := guardSend(t, f, "POST", "/v1/threads", "application/json", "", "", nest(maxJSONDepth))
	if e := decodeError(t, resp); e.Code != agentstream.CodeInvalidRequest || strings.Contains(e.Message, "deep") || !strings.Contains(e.Message, `unknown field "x"`) {
		t.Fatalf("at the limit: %+v", e)
	}
	// Brackets inside strings are text, not nesting.
	deepText := `{"metadata":{"k":"` + strings.Repeat(`[{\"`, 100) + `"}}`
	if resp := guardSend(t, f, "POST", "/v1/threads", "application/json", "", "", deepText); resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("brackets in a string: status %d: %s", resp.StatusCode, b)
	}
}

func TestCheckJSONDepth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"flat", `{"a":1}`, true},
		{"64 arrays", strings.Repeat("[", 64) + strings.Repeat("]", 64), true},
		{"65 arrays", strings.Repeat("[", 65) + strings.Repeat("]", 65), false},
		{"65 objects", strings.Repeat(`{"a":`, 65) + "1" + strings.Repeat("}", 65), false},
		{"in a string", `{"a":"` + strings.Repeat("[", 200) + `"}`, true},
		{"escaped quote", `{"a":"\"` + strings.Repeat("[", 200) + `"}`, true},
		{"escaped backslash then quote", `{"a":"\\"}` + strings.Repeat("[", 65), false},
		{"siblings do not add", "[" + strings.Repeat("[[]],", 1000) + "1]", true},
	}
	for _, tt := range tests {
		err := checkJSONDepth([]byte(tt.in))
		if (err == nil) != tt.ok {
			t.Errorf("%s: err %v, want ok %v", tt.name, err, tt.ok)
		}
		if err != nil && agentstream.CodeOf(err) != agentstream.CodeInvalidRequest {
			t.Errorf("%s: code %s", tt.name, agentstream.CodeOf(err))
		}
	}
}
