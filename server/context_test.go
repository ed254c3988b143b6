package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/httpapi"
	"github.com/agentstream/agentstream/sim"
)

// TestRequiredContextKeys: a key the instructions use outside an if or a
// with is required; a run without it is a 400 naming it that writes
// nothing, on both endpoints; the thread's context can supply it.
func TestRequiredContextKeys(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 3}, func(c *config.Config) {
		c.Agents = append(c.Agents, agentstream.Agent{
			Name: "nick", Instructions: "Address the user as {{.nickname}}.{{with .mood}} They feel {{.}}.{{end}}",
		})
	})
	refused := func(resp *http.Response) {
		t.Helper()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
		if eb := errorBody(t, resp); eb.Code != agentstream.CodeInvalidRequest || !strings.Contains(eb.Message, `"nickname"`) {
			t.Fatalf("error %+v: want invalid_request naming \"nickname\"", eb)
		}
	}
	refused(e.do("POST", "/v1/chat", `{"query": "hi", "agent": "nick", "thread_id": "nick-1", "mood": "fine"}`))
	if r := e.do("GET", "/v1/threads/nick-1", ""); r.StatusCode != http.StatusNotFound {
		t.Fatalf("the refused chat created its thread (status %d)", r.StatusCode)
	}
	refused(e.do("POST", "/v1/chat", `{"query": "hi", "agent": "nick", "nickname": null}`))

	th := e.newThread(`{"agent": "nick"}`)
	refused(e.do("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi", "context": {"mood": "fine"}}`))
	if msgs := e.messages(th.ID); len(msgs) != 0 {
		t.Fatalf("the refused run wrote %d messages", len(msgs))
	}
	if n := len(e.sim.Requests()); n != 0 {
		t.Fatalf("refused runs reached the model %d times", n)
	}

	// With the key, from the run, the chat or the thread, the run goes,
	// and the optional key may be missing.
	_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi", "context": {"nickname": "Sam"}}`)
	if n := checkNative(t, evs); n.end.Status != agentstream.RunCompleted {
		t.Fatalf("run with the key: %+v", n.end)
	}
	_, evs = e.stream("POST", "/v1/chat", `{"query": "hi", "agent": "nick", "nickname": "Kim"}`)
	if c := seedChunks(t, evs); c[len(c)-1]["status"] != "done" || c[len(c)-2]["complete"] != true {
		t.Fatalf("chat with the key: %v", c)
	}
	th2 := e.newThread(`{"agent": "nick", "context": {"nickname": "Lee"}}`)
	_, evs = e.stream("POST", "/v1/threads/"+th2.ID+"/runs", `{"input": "hi"}`)
	if n := checkNative(t, evs); n.end.Status != agentstream.RunCompleted {
		t.Fatalf("run on a thread with the key: %+v", n.end)
	}
	// On /v1/chat too, the thread's context counts: a thread made with the
	// key needs it in no request.
	th3 := e.newThread(`{"agent": "nick", "context": {"nickname": "Max"}}`)
	_, evs = e.stream("POST", "/v1/chat", `{"query": "hi", "agent": "nick", "thread_id": "`+th3.ID+`"}`)
	if c := seedChunks(t, evs); c[len(c)-2]["complete"] != true {
		t.Fatalf("chat on a thread with the key: %v", c)
	}
	var systems []string
	for _, req := range e.sim.Requests() {
		systems = append(systems, req.Messages[0].Content)
	}
	want := []string{"Address the user as Sam.", "Address the user as Kim.", "Address the user as Lee.", "Address the user as Max."}
	if strings.Join(systems, "|") != strings.Join(want, "|") {
		t.Fatalf("system messages %q, want %q", systems, want)
	}
}

// TestWrongMethod: through the real server, a route's path under another
// method is 405 with Allow.
func TestWrongMethod(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{}, nil)
	for _, tc := range []struct{ method, path, allow string }{
		{"GET", "/v1/chat", "POST"},
		{"DELETE", "/v1/runs/run_x", "GET, HEAD"},
		{"PUT", "/v1/threads/thr_x/runs", "GET, HEAD, POST"},
	} {
		resp := e.do(tc.method, tc.path, "")
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tc.allow {
			t.Fatalf("%s %s: status %d, Allow %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"))
		}
		if eb := errorBody(t, resp); eb.Code != httpapi.CodeMethodNotAllowed {
			t.Fatalf("%s %s: %+v", tc.method, tc.path, eb)
		}
	}
}
