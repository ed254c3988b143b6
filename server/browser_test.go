package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/sim"
)

// browserDir holds the page, the playwright-core driver and its locked
// dependencies of TestBrowser.
var browserDir = filepath.Join("testdata", "browser")

// TestBrowser: Chromium (Debian's, driven by playwright-core) opens a page
// on another loopback origin than agentstream's, with API keys on and that
// origin allowed by http.cors. The page creates a thread and starts a run
// with fetch (preflighted: it sends Authorization and JSON), reads the
// run's first events and leaves; it gets a run token and resumes the run
// with an EventSource on ?after=…&token=…, through a proxy that cuts that
// connection mid-run, so the EventSource reconnects by itself with
// Last-Event-ID and the same token. Between them the page gets every event
// once, in order, to run.completed, and each message's deltas join to its
// content. A page of an origin not allowed cannot call at all.
func TestBrowser(t *testing.T) {
	t.Parallel()
	node, chromium := requireBrowser(t)

	page := httptest.NewServer(http.FileServer(http.Dir(browserDir)))
	t.Cleanup(page.Close)
	denied := httptest.NewServer(http.FileServer(http.Dir(browserDir)))
	t.Cleanup(denied.Close)

	const tokens = 600 // 3s at 5ms a token: the page leaves, and the cut falls, mid-run
	e := start(t, sim.Options{Tokens: tokens, Pace: 5 * time.Millisecond}, func(c *config.Config) {
		c.Auth.Keys = []config.APIKey{{Key: testKey, User: "u1"}}
		c.HTTP.CORS.AllowedOrigins = []string{page.URL}
	})
	// The EventSource's first connection is cut after 8 KiB of its answer.
	proxy := startCutProxy(t, strings.TrimPrefix(e.url, "http://"), 8<<10)

	args, _ := json.Marshal(map[string]any{
		"page": page.URL + "/page.html", "denied": denied.URL + "/page.html",
		"api": e.url, "stream": proxy.url, "key": testKey, "read": 5, "timeoutMs": 60000,
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(browserDir, "drive.mjs"), string(args))
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	type event struct {
		ID    string `json:"id"`
		Type  string `json:"type"`
		Data  string `json:"data"`
		Opens int    `json:"opens"`
	}
	var got struct {
		Demo struct {
			ThreadID     string  `json:"threadId"`
			RunID        string  `json:"runId"`
			ThreadHeader string  `json:"threadHeader"`
			Fetched      []event `json:"fetched"`
			Resumed      []event `json:"resumed"`
			Opens        int     `json:"opens"`
			ExpiresAt    string  `json:"expiresAt"`
		} `json:"demo"`
		Denied  string   `json:"denied"`
		Console []string `json:"console"`
		Error   string   `json:"error"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || runErr != nil || got.Error != "" {
		t.Fatalf("the browser: %v; decoding its answer: %v\nstdout: %.4000s\nstderr: %.4000s", runErr, err, stdout.Bytes(), stderr.Bytes())
	}
	d := got.Demo

	// The thread and the run are u1's, made by the page.
	var th agentstream.Thread
	getJSON(t, e, "/v1/threads/"+d.ThreadID, &th)
	var run agentstream.Run
	getJSON(t, e, "/v1/runs/"+d.RunID, &run)
	if th.Title != "from a page" || run.ThreadID != th.ID || d.ThreadHeader != d.ThreadID {
		t.Fatalf("thread %+v, run %+v, X-Thread-Id %q", th, run, d.ThreadHeader)
	}
	if exp, err := time.Parse(time.RFC3339, d.ExpiresAt); err != nil || time.Until(exp) < 5*time.Minute {
		t.Fatalf("the run token expires at %q (%v)", d.ExpiresAt, err)
	}

	// Every event once, in order: ids 1… from fetch, then on from the
	// EventSource, to the terminal event.
	all := append(append([]event{}, d.Fetched...), d.Resumed...)
	for i, ev := range all {
		if ev.ID != strconv.Itoa(i+1) {
			t.Fatalf("event %d has id %q (%s); fetched %d, resumed %d", i, ev.ID, ev.Type, len(d.Fetched), len(d.Resumed))
		}
	}
	if len(d.Fetched) != 5 || len(d.Resumed) == 0 || all[len(all)-1].Type != string(agentstream.EventRunCompleted) {
		t.Fatalf("fetched %d, resumed %d, ending %+v", len(d.Fetched), len(d.Resumed), all[len(all)-1])
	}
	// The EventSource reconnected mid-run, by itself.
	if d.Opens != 2 || d.Resumed[0].Opens != 1 || d.Resumed[len(d.Resumed)-1].Opens != 2 {
		t.Fatalf("EventSource opens %d; first event on open %d, last on %d", d.Opens, d.Resumed[0].Opens, d.Resumed[len(d.Resumed)-1].Opens)
	}
	var reconnected bool
	for _, c := range proxy.connections() {
		h := c.header(t)
		if h.Get("Last-Event-ID") == "" || !strings.Contains(c.requestLine(), "token=") {
			continue
		}
		reconnected = true
		n, err := strconv.Atoi(h.Get("Last-Event-ID"))
		if err != nil || n <= len(d.Fetched) || n >= len(all) {
			t.Fatalf("the reconnection sent Last-Event-ID %q", h.Get("Last-Event-ID"))
		}
	}
	if !reconnected {
		t.Fatal("no reconnection with Last-Event-ID and the token reached the server")
	}
	deltas := map[string]string{}
	completed := 0
	for _, ev := range all {
		switch agentstream.EventType(ev.Type) {
		case agentstream.EventMessageDelta:
			var m agentstream.MessageDeltaData
			if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
				t.Fatal(err)
			}
			deltas[m.MessageID] += m.Delta
		case agentstream.EventMessageCompleted:
			var m agentstream.MessageCompletedData
			if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
				t.Fatal(err)
			}
			completed++
			if m.Role == agentstream.RoleAssistant && m.Content != deltas[m.MessageID] {
				t.Fatalf("message %s: deltas %q, content %q", m.MessageID, deltas[m.MessageID], m.Content)
			}
		}
	}
	if completed == 0 {
		t.Fatal("no message.completed")
	}
	// The origin not allowed: the browser keeps the answer from the page.
	if !strings.Contains(got.Denied, "Failed to fetch") {
		t.Fatalf("a page of an origin not allowed: %q", got.Denied)
	}
}

// getJSON GETs path with the test key into out.
func getJSON(t *testing.T, e *env, path string, out any) {
	t.Helper()
	resp := e.request("GET", path, "", map[string]string{"Authorization": "Bearer " + testKey})
	defer func() { _ = resp.Body.Close() }()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d, %v", path, resp.StatusCode, err)
	}
}

// requireBrowser returns node's and Chromium's paths, or skips (fails
// under CI=true) when they or the driver's packages are missing.
func requireBrowser(t *testing.T) (node, chromium string) {
	t.Helper()
	missing := func(what string) {
		testenv.Missing(t, what, "install Debian's chromium, Node.js 20 or newer and npm, then run `npm ci --prefix server/testdata/browser`; bash .ci/run does all three")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not on PATH")
	}
	chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		missing("no " + chromium)
	}
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules", "playwright-core", "package.json")); err != nil {
		missing(browserDir + "/node_modules has no playwright-core package")
	}
	return node, chromium
}
