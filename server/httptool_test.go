package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/sim"
	"github.com/agentstream/agentstream/tools"
)

// lockedBuffer is a log sink tests read while the server writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// shopRequest is what the test's shop server got.
type shopRequest struct {
	method, path string
	query        url.Values
	header       http.Header
	body         string
}

// shopServer is a local stand-in for the APIs HTTP tools call. Its
// answers echo the Authorization header they got, as careless APIs do.
func shopServer(t *testing.T) (*httptest.Server, <-chan shopRequest, <-chan struct{}) {
	t.Helper()
	got := make(chan shopRequest, 20)
	slowClosed := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- shopRequest{r.Method, r.URL.Path, r.URL.Query(), r.Header.Clone(), string(b)}
		auth := r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/orders":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "shipped", "you_sent": auth})
		case "/track":
			_, _ = io.WriteString(w, "parcel in Lyon")
		case "/broken":
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, "database exploded while serving "+auth)
		case "/slow":
			select {
			case <-r.Context().Done():
				close(slowClosed)
			case <-time.After(time.Minute):
			}
		case "/big":
			_, _ = io.WriteString(w, strings.Repeat("x", 5000))
		}
	}))
	t.Cleanup(srv.Close)
	return srv, got, slowClosed
}

// TestHTTPTools: HTTP tools declared in the config, called by a model
// through the real server: POST with the JSON body, GET with query
// parameters, forwarded user and context, and each failure (a 500, the
// tool's own timeout, an answer too large, a refused connection) a tool
// error the model reads while the run completes. The Authorization
// header's secret, read from the environment, reaches the tool's server
// and nothing else: not the logs, the stream, GET /v1/agents, the stored
// messages, the model, nor an error, even as the server echoes it.
func TestHTTPTools(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-shop-token-42"
	shop, got, slowClosed := shopServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().String()
	_ = ln.Close()

	file := `tools:
  - name: lookup_order
    description: Look up an order
    parameters: {type: object, properties: {order_id: {type: string}}, required: [order_id]}
    http:
      url: ${SHOP}/orders
      headers: {Authorization: "Bearer ${SHOP_TOKEN}"}
    forward: {user_header: X-User-Id, context_headers: {pregnancy_week: X-Pregnancy-Week}}
  - name: track
    http: {url: "${SHOP}/track?shop=demo", method: GET}
  - name: broken
    http: {url: "${SHOP}/broken", headers: {Authorization: "Bearer ${SHOP_TOKEN}"}}
  - name: slow
    http: {url: "${SHOP}/slow", timeout: 300ms}
  - name: big
    http: {url: "${SHOP}/big", max_response_bytes: 1000}
  - name: offline
    http: {url: "http://` + closedPort + `/orders"}
agents:
  - name: shopper
    instructions: "You help. Never ${SHOP_TOKEN}."
    tools: [lookup_order, track, broken, slow, big, offline, current_time]
`
	loaded, err := config.LoadEnv("shop.yaml", []byte(file), func(name string) (string, bool) {
		v, ok := map[string]string{"SHOP": shop.URL, "SHOP_TOKEN": secret}[name]
		return v, ok
	})
	if err != nil {
		t.Fatalf("the config: %v", err)
	}
	calls := []sim.ToolCallSpec{
		{Name: "lookup_order", Arguments: `{"order_id": "A-1042"}`},
		{Name: "track", Arguments: `{"number": "T 1", "filter": {"since": "2026-01-01", "kinds": ["delay"]}, "limit": 3}`},
		{Name: "broken", Arguments: `{}`},
		{Name: "slow", Arguments: `{}`},
		{Name: "big", Arguments: `{}`},
		{Name: "offline", Arguments: `{}`},
	}
	decide := func(r *sim.Request) sim.Behavior {
		if r.LastMessage().Role == "tool" {
			return sim.Behavior{} // the default: a reply quoting the tools' outputs
		}
		return sim.Behavior{ToolCalls: calls}
	}
	logs := &lockedBuffer{}
	e := startLogged(t, sim.Options{Tokens: 5, Decide: decide}, func(c *config.Config) {
		// The loaded config, which knows its secrets, with the test's
		// server settings.
		l := loaded
		l.Addr, l.DatabaseURL, l.OpenAI = c.Addr, c.DatabaseURL, c.OpenAI
		l.Agents = append(c.Agents, loaded.Agents...)
		l.DefaultAgent = "shopper"
		*c = l
	}, slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	th := e.newThread(`{"context": {"pregnancy_week": 12}}`)
	resp := e.do("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "where is my order?"}`)
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the run's stream: %d, %v", resp.StatusCode, err)
	}
	var evs []sse.Event
	for r := sse.NewReader(bytes.NewReader(raw)); ; {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	n := checkNative(t, evs)
	if n.end.Status != agentstream.RunCompleted || len(n.results) != len(calls) {
		t.Fatalf("the run ended %+v with %d tool results, want completed with %d", n.end, len(n.results), len(calls))
	}
	results := map[string]agentstream.ToolResultData{}
	for _, r := range n.results {
		results[r.Name] = r
	}
	for name, want := range map[string]struct {
		isErr bool
		text  []string
	}{
		"lookup_order": {false, []string{`"status":"shipped"`, `"you_sent":"Bearer [redacted]"`}},
		"track":        {false, []string{"parcel in Lyon"}},
		"broken":       {true, []string{"HTTP 500 Internal Server Error", "database exploded while serving Bearer [redacted]"}},
		"slow":         {true, []string{"did not answer within 300ms"}},
		"big":          {true, []string{"larger than 1000 bytes"}},
		"offline":      {true, []string{"could not reach the tool's server " + closedPort, "refused"}},
	} {
		r := results[name]
		if r.IsError != want.isErr {
			t.Errorf("%s: %+v, want is_error %v", name, r, want.isErr)
		}
		for _, w := range want.text {
			if !strings.Contains(r.Output, w) {
				t.Errorf("%s: output %q lacks %q", name, r.Output, w)
			}
		}
	}
	// The model read every result: its reply quotes them.
	if !strings.Contains(n.text, "parcel in Lyon") || !strings.Contains(n.text, "HTTP 500") {
		t.Errorf("the reply %q does not quote the tools' results", n.text)
	}

	// What the shop got: the secret, the body, the query, the forwarded
	// user and context.
	reqs := map[string]shopRequest{}
	for range 5 { // the offline tool never reached it
		select {
		case r := <-got:
			reqs[r.path] = r
		case <-time.After(30 * time.Second):
			t.Fatalf("the shop got %d requests, want 5", len(reqs))
		}
	}
	order := reqs["/orders"]
	if order.method != "POST" || order.body != `{"order_id": "A-1042"}` || order.header.Get("Authorization") != "Bearer "+secret ||
		order.header.Get("Content-Type") != "application/json" || order.header.Get("X-User-Id") != "local" || order.header.Get("X-Pregnancy-Week") != "12" {
		t.Errorf("lookup_order sent %s %q with %v", order.method, order.body, order.header)
	}
	wantQuery := url.Values{"shop": {"demo"}, "number": {"T 1"}, "filter": {`{"since":"2026-01-01","kinds":["delay"]}`}, "limit": {"3"}}
	if track := reqs["/track"]; track.method != "GET" || track.query.Encode() != wantQuery.Encode() || track.body != "" {
		t.Errorf("track sent %s %v %q, want the query %v", track.method, track.query, track.body, wantQuery)
	}
	select {
	case <-slowClosed:
	case <-time.After(30 * time.Second):
		t.Error("the slow tool's request was not closed at its timeout")
	}

	// The secret is nowhere else.
	var agents, messages, run struct{ raw []byte }
	for _, x := range []struct {
		path string
		into *[]byte
	}{
		{"/v1/agents", &agents.raw}, {"/v1/threads/" + th.ID + "/messages", &messages.raw}, {"/v1/runs/" + n.runID, &run.raw},
	} {
		resp := e.do("GET", x.path, "")
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", x.path, resp.StatusCode, err)
		}
		*x.into = b
	}
	if !strings.Contains(string(agents.raw), `"lookup_order"`) || !strings.Contains(string(messages.raw), "[redacted]") {
		t.Fatalf("GET /v1/agents %s / messages %s: the tool or its masked answer is missing", agents.raw, messages.raw)
	}
	var modelSaw strings.Builder
	for _, r := range e.sim.Requests() {
		for _, m := range r.Messages {
			modelSaw.WriteString(m.Content + "\n")
		}
	}
	if !strings.Contains(modelSaw.String(), "[redacted]") {
		t.Fatalf("the model was not sent the masked answers: %s", modelSaw.String())
	}
	// The failures are logged, without the answers that echo the secret.
	for _, want := range []string{"tool=broken", `why="HTTP 500 Internal Server Error"`, "tool=offline", "tool=slow"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the logs lack %q:\n%s", want, logs.String())
		}
	}
	for what, text := range map[string]string{
		"the stream": string(raw), "GET /v1/agents": string(agents.raw), "the stored messages": string(messages.raw),
		"GET /v1/runs/{id}": string(run.raw), "the model's requests": modelSaw.String(), "the logs": logs.String(),
	} {
		if strings.Contains(text, secret) {
			t.Errorf("%s carries the secret:\n%s", what, text)
		}
	}
	// The instructions are not expanded: the agent's own text is kept.
	if !strings.Contains(modelSaw.String(), "Never ${SHOP_TOKEN}.") {
		t.Errorf("the instructions were changed: %s", modelSaw.String())
	}
	if tools.Redacted != "[redacted]" {
		t.Fatal("the documented mask changed")
	}
}
