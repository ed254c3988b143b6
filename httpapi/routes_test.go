package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
)

// TestMethodNotAllowed: every route answers another method with 405, a
// JSON error body and Allow naming its methods; an unknown path is 404.
func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{Keys: map[string]string{"key-0123456789abcdef": "u1"}})
	routes := []struct {
		path  string
		allow string
	}{
		{"/healthz", "GET, HEAD"},
		{"/readyz", "GET, HEAD"},
		{"/v1/agents", "GET, HEAD"},
		{"/v1/threads", "GET, HEAD, POST"},
		{"/v1/threads/thr_x", "GET, HEAD, PATCH, DELETE"},
		{"/v1/threads/thr_x/messages", "GET, HEAD"},
		{"/v1/threads/thr_x/runs", "GET, HEAD, POST"},
		{"/v1/runs/run_x", "GET, HEAD"},
		{"/v1/runs/run_x/events", "GET, HEAD"},
		{"/v1/runs/run_x/cancel", "POST"},
		{"/v1/runs/run_x/token", "POST"},
		{"/v1/chat", "POST"},
		{"/api/chat", "POST"},
		{"/api/chat/chat_x/stream", "GET, HEAD"},
	}
	send := func(method, path string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, f.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}
	for _, rt := range routes {
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
			allowed := strings.Contains(", "+rt.allow+", ", ", "+m+", ")
			resp := send(m, rt.path)
			if allowed {
				// The route takes it: whatever it answers (401 without a
				// key, for the /v1 routes), it is not 404 or 405.
				if resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotFound {
					t.Errorf("%s %s: status %d", m, rt.path, resp.StatusCode)
				}
				continue
			}
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != rt.allow {
				t.Errorf("%s %s: status %d, Allow %q; want 405, Allow %q", m, rt.path, resp.StatusCode, resp.Header.Get("Allow"), rt.allow)
				continue
			}
			if m == "HEAD" {
				continue // no body
			}
			if e := decodeError(t, resp); e.Code != CodeMethodNotAllowed || !strings.Contains(e.Message, rt.allow) {
				t.Errorf("%s %s: error %+v", m, rt.path, e)
			}
		}
	}
	for _, path := range []string{"/", "/v1", "/v1/nothing", "/v1/threads/thr_x/other", "/v1/runs/run_x/events/more"} {
		resp := send("GET", path)
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Allow") != "" {
			t.Errorf("GET %s: status %d, Allow %q; want 404", path, resp.StatusCode, resp.Header.Get("Allow"))
			continue
		}
		if e := decodeError(t, resp); e.Code != agentstream.CodeNotFound {
			t.Errorf("GET %s: error %+v", path, e)
		}
	}
}

// decodeError reads an {"error": {"code", "message"}} body.
func decodeError(t testing.TB, resp *http.Response) agentstream.ErrorInfo {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Error agentstream.ErrorInfo `json:"error"`
	}
	if err := json.Unmarshal(b, &body); err != nil || body.Error.Code == "" || body.Error.Message == "" {
		t.Fatalf("error body %q: %v", b, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q", ct)
	}
	return body.Error
}
