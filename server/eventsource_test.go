package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/sim"
)

// eventSourceDir holds the Node client of TestEventSourceReconnect and its
// locked dependencies.
var eventSourceDir = filepath.Join("testdata", "eventsource")

// TestEventSourceReconnect: a WHATWG EventSource (the npm package
// eventsource, run by Node) reads a run through a proxy that cuts its first
// connection mid-run. The EventSource reconnects on its own with
// Last-Event-ID, and gets every event exactly once, in order, up to
// run.completed; the deltas join to the stored answer.
func TestEventSourceReconnect(t *testing.T) {
	t.Parallel()
	node := requireEventSourceClient(t)

	const tokens = 1000 // 5s of streaming at 5ms a token: the cut and the reconnection both fall mid-run
	e := start(t, sim.Options{Tokens: tokens, Pace: 5 * time.Millisecond}, nil)
	th := e.newThread(`{}`)

	// Start the run and leave at once: on_disconnect is continue, so the
	// run goes on without its first client.
	ctx, cancel := context.WithCancel(context.Background())
	r, resp := e.openStream(ctx, "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi"}`, nil)
	runID := resp.Header.Get("X-Run-Id")
	if evs := readN(t, r, 2); evs[1].Type != string(agentstream.EventRunStarted) || runID == "" {
		t.Fatalf("run %q began with %+v", runID, evs)
	}
	cancel()

	// About 170 events into the stream (close to a second into the run), the
	// first connection is cut.
	proxy := startCutProxy(t, e.url[len("http://"):], 16<<10)
	url := proxy.url + "/v1/runs/" + runID + "/events"

	cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer ccancel()
	cmd := exec.CommandContext(cctx, node, filepath.Join(eventSourceDir, "script.mjs"), url, "45000")
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	runErr := cmd.Run()
	took := time.Since(began)
	var got struct {
		Opens  int      `json:"opens"`
		Errors []string `json:"errors"`
		Events []struct {
			LastEventID string `json:"lastEventId"`
			Type        string `json:"type"`
			Data        string `json:"data"`
			Conn        int    `json:"conn"`
		} `json:"events"`
		Terminal string `json:"terminal"`
		TimedOut bool   `json:"timedOut"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || runErr != nil {
		t.Fatalf("the EventSource client, after %s: %v; decoding its answer: %v\nstdout: %s\nstderr: %s", took, runErr, err, stdout.Bytes(), stderr.Bytes())
	}
	t.Logf("the EventSource client took %s: %d events, %d opens, errors %q", took.Round(time.Millisecond), len(got.Events), got.Opens, got.Errors)

	// It reconnected by itself, over a new connection.
	conns := proxy.connections()
	if got.Opens < 2 || len(conns) < 2 {
		t.Fatalf("%d opens over %d connections, want a reconnection (errors %q)", got.Opens, len(conns), got.Errors)
	}
	if !conns[0].cut {
		t.Fatalf("the first connection carried %d bytes and was never cut", conns[0].answered)
	}
	// Every event exactly once, in order, ids 1..N, one terminal event and
	// it is run.completed; each message's deltas join to its
	// message.completed.
	evs := make([]sse.Event, len(got.Events))
	lastOnFirst := ""
	sawTerminalOnFirst, deltasAfter := false, 0
	for i, ev := range got.Events {
		evs[i] = sse.Event{ID: ev.LastEventID, Type: ev.Type, Data: ev.Data}
		switch {
		case ev.Conn == 1:
			lastOnFirst = ev.LastEventID
			sawTerminalOnFirst = sawTerminalOnFirst || agentstream.EventType(ev.Type).Terminal()
		case ev.Type == string(agentstream.EventMessageDelta):
			deltasAfter++
		}
	}
	n := checkNative(t, evs)
	if got.Terminal != string(agentstream.EventRunCompleted) || n.end.Status != agentstream.RunCompleted || n.runID != runID {
		t.Fatalf("the client ended on %q, run %s %+v", got.Terminal, n.runID, n.end)
	}
	// The cut fell mid-run: the first connection gave some events, the
	// reconnection the rest of the answer.
	if lastOnFirst == "" || sawTerminalOnFirst || deltasAfter == 0 {
		t.Fatalf("first connection: last id %q, terminal %v; %d deltas after it", lastOnFirst, sawTerminalOnFirst, deltasAfter)
	}
	// The reconnection asked for what followed the last event received.
	if h := conns[0].header(t); h.Get("Last-Event-ID") != "" {
		t.Fatalf("the first request sent Last-Event-ID %q", h.Get("Last-Event-ID"))
	}
	if id := conns[1].header(t).Get("Last-Event-ID"); id != lastOnFirst {
		t.Fatalf("the reconnection sent Last-Event-ID %q, want %q, the last id received before the cut", id, lastOnFirst)
	}
	// The deltas join to the stored answer.
	msgs := e.messages(th.ID)
	if last := msgs[len(msgs)-1]; last.Content != n.text || last.Status != agentstream.MessageComplete || len(sim.Split(n.text)) != tokens {
		t.Fatalf("joined text (%d tokens) %.60q…, stored %s %.60q…", len(sim.Split(n.text)), n.text, last.Status, last.Content)
	}

	var run agentstream.Run
	e.json("GET", "/v1/runs/"+runID, "", http.StatusOK, &run)
	live := run.FinishedAt != nil && conns[1].accepted.Before(*run.FinishedAt)
	t.Logf("cut after %d bytes at id %s; reconnected %s later (the run still going: %v); %d events",
		conns[0].answered, lastOnFirst, conns[1].accepted.Sub(conns[0].closed).Round(time.Millisecond), live, len(evs))
}

// requireEventSourceClient returns the path of node, or skips the test when
// node or the client's npm packages are missing; under CI=true it fails
// instead.
func requireEventSourceClient(t *testing.T) string {
	t.Helper()
	missing := func(what string) {
		testenv.Missing(t, what, "install Node.js 20 or newer and npm, then run `npm ci --prefix server/testdata/eventsource`; bash .ci/run does both")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not on PATH")
	}
	if _, err := os.Stat(filepath.Join(eventSourceDir, "node_modules", "eventsource", "package.json")); err != nil {
		missing(eventSourceDir + "/node_modules has no eventsource package")
	}
	return node
}

// cutProxy forwards TCP connections to a server. It cuts the first one
// whose answer reaches cutAfter bytes, closing both sides there (short
// answers before it, a preflight say, pass whole); later ones it forwards
// whole.
type cutProxy struct {
	url      string
	target   string
	cutAfter int
	ln       net.Listener
	wg       sync.WaitGroup

	mu      sync.Mutex
	conns   []*proxied
	open    []net.Conn
	cutDone bool
}

// proxied is what one connection carried.
type proxied struct {
	accepted, closed time.Time
	request          bytes.Buffer // the bytes the client sent
	answered         int          // bytes of the answer forwarded
	cut              bool
}

func startCutProxy(t *testing.T, target string, cutAfter int) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{url: "http://" + ln.Addr().String(), target: target, cutAfter: cutAfter, ln: ln}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for _, c := range p.open {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		c := &proxied{accepted: time.Now()}
		p.conns = append(p.conns, c)
		p.open = append(p.open, client, server)
		p.mu.Unlock()
		var once sync.Once
		closeBoth := func() {
			once.Do(func() {
				_ = client.Close()
				_ = server.Close()
				p.mu.Lock()
				c.closed = time.Now()
				p.mu.Unlock()
			})
		}
		// The request, recorded on the way.
		p.wg.Go(func() {
			defer closeBoth()
			buf := make([]byte, 4096)
			for {
				k, err := client.Read(buf)
				if k > 0 {
					p.mu.Lock()
					c.request.Write(buf[:k])
					p.mu.Unlock()
					if _, err := server.Write(buf[:k]); err != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		})
		// The answer, cut short on the first connection whose answer
		// passes cutAfter.
		p.wg.Go(func() {
			defer closeBoth()
			buf := make([]byte, 4096)
			for {
				k, err := server.Read(buf)
				if k > 0 {
					p.mu.Lock()
					if !p.cutDone && c.answered+k >= p.cutAfter {
						k = p.cutAfter - c.answered
						c.cut, p.cutDone = true, true
					}
					c.answered += k
					cut := c.cut
					p.mu.Unlock()
					if _, err := client.Write(buf[:k]); err != nil || cut {
						return
					}
				}
				if err != nil {
					return
				}
			}
		})
	}
}

// connections returns a snapshot of what each connection carried, in the
// order they were accepted.
func (p *cutProxy) connections() []*proxied {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*proxied, len(p.conns))
	for i, c := range p.conns {
		out[i] = &proxied{accepted: c.accepted, closed: c.closed, answered: c.answered, cut: c.cut}
		out[i].request.Write(c.request.Bytes())
	}
	return out
}

// requestLine is the connection's first request line.
func (c *proxied) requestLine() string {
	line, _, _ := strings.Cut(c.request.String(), "\r\n")
	return line
}

// header parses the headers of the connection's first request.
func (c *proxied) header(t *testing.T) http.Header {
	t.Helper()
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(c.request.Bytes())))
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("the request %q: %v", c.request.Bytes(), err)
	}
	if req == nil {
		t.Fatalf("no request in %q", c.request.Bytes())
	}
	return req.Header
}
