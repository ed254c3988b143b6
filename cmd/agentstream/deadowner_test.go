//go:build unix

package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/sim"
)

// holdingProxy forwards TCP connections to a target until hold, from which
// on what the clients send is held back, never passed (what they sent
// before still gets its answer); cut closes every connection, and what
// was held never reaches the target: the appends of an instance that die
// with it.
type holdingProxy struct {
	ln     net.Listener
	target string
	cutCh  chan struct{}

	mu        sync.Mutex
	held      bool
	heldBytes int64 // read from the clients since hold, not passed
	cutDone   bool
	conns     []net.Conn
}

// startHoldingProxy listens on a loopback port and forwards to target; it
// is cut at cleanup.
func startHoldingProxy(t testing.TB, target string) *holdingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdingProxy{ln: ln, target: target, cutCh: make(chan struct{})}
	go p.serve()
	t.Cleanup(p.cut)
	return p
}

func (p *holdingProxy) addr() string { return p.ln.Addr().String() }

func (p *holdingProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // cut
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.cutDone {
			p.mu.Unlock()
			_ = c.Close()
			_ = u.Close()
			return
		}
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go p.forward(u, c)
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := u.Read(buf)
				if n > 0 {
					if _, err := c.Write(buf[:n]); err != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			_ = c.Close()
			_ = u.Close()
		}()
	}
}

// forward passes what the client c sends to the target u, until hold.
func (p *holdingProxy) forward(u, c net.Conn) {
	defer func() {
		_ = c.Close()
		_ = u.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 && (!p.pass(n) || writeAll(u, buf[:n]) != nil) {
			return
		}
		if err != nil {
			return
		}
	}
}

func writeAll(c net.Conn, b []byte) error {
	_, err := c.Write(b)
	return err
}

// pass reports whether n bytes read from a client may go on; while held
// they wait for the cut, and never go.
func (p *holdingProxy) pass(n int) bool {
	p.mu.Lock()
	held := p.held
	if held {
		p.heldBytes += int64(n)
	}
	p.mu.Unlock()
	if !held {
		return true
	}
	<-p.cutCh
	return false
}

// hold stops passing what the clients send.
func (p *holdingProxy) hold() {
	p.mu.Lock()
	p.held = true
	p.mu.Unlock()
}

// heldBack is how many bytes were held back since hold.
func (p *holdingProxy) heldBack() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.heldBytes
}

// cut closes the listener and every connection, dropping what was held.
func (p *holdingProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cutDone {
		return
	}
	p.cutDone = true
	close(p.cutCh)
	_ = p.ln.Close()
	for _, c := range p.conns {
		_ = c.Close() // already closed if its peer went first
	}
}

// TestClusterDeadOwnerQueuedEvents is the race of an instance that dies
// with events queued for Redis, made deterministic. A reaches Redis
// through a proxy that, mid-run, holds back everything A sends: the run
// goes on, its text checkpointed in PostgreSQL, its events queued on A and
// not in Redis. A's own reader of the run must not be sent those events.
// Then A is killed, what it held back never reaching Redis; B sweeps the
// run (its lease ran out) and appends run.interrupted after the last event
// Redis holds. A's reader resumes on B from the last id it was sent and
// gets run.interrupted, at an id it never saw as another event, the one
// the store records; a reader at that id gets 204.
func TestClusterDeadOwnerQueuedEvents(t *testing.T) {
	t.Parallel()
	redisURL := testenv.RedisURL(t)
	ro, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startHoldingProxy(t, ro.Addr)
	viaProxy, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	viaProxy.Host = proxy.addr()
	c := startClusterSpec(t, clusterSpec{
		n: 2, redisURL: redisURL,
		redisFor: func(i int) string {
			if i == 0 {
				return viaProxy.String()
			}
			return redisURL
		},
		// 30s of answer: A's run is running when it dies.
		decide: func(*sim.Request) sim.Behavior {
			return sim.Behavior{Tokens: 3000, Pace: 10 * time.Millisecond, TTFT: -1}
		},
	})
	a, b := c.procs[0], c.procs[1]
	rdb := redis.NewClient(ro)
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
	defer cancel()

	// A's reader: the stream of the run A starts, read in the background.
	th := a.newThread()
	resp, err := a.request(ctx, "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "tell me a long story"}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("starting a run on A: status %d", resp.StatusCode)
	}
	runID := resp.Header.Get("X-Run-Id")
	book := newIDBook(runID)
	var (
		mu   sync.Mutex
		seen []int64 // the ids A's reader was sent
		text string  // and its text
	)
	readerDone := make(chan struct{})
	var res streamRead
	var problem error
	go func() {
		defer close(readerDone)
		res, problem = readRunStream(resp.Body, book, 0, "A's reader", func(id int64, ev sse.Event) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, id)
			if ev.Type == string(agentstream.EventMessageDelta) {
				var d agentstream.MessageDeltaData
				if json.Unmarshal([]byte(ev.Data), &d) == nil {
					text += d.Delta
				}
			}
		})
	}()
	readerState := func() (last int64, n int, txt string) {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) > 0 {
			last = seen[len(seen)-1]
		}
		return last, len(seen), text
	}
	waitFor(t, 30*time.Second, "20 events on A's reader", func() bool {
		_, n, _ := readerState()
		return n >= 20
	})

	// Hold back A's appends. A goes on: its flushes are stuck in the
	// proxy, and its checkpoints (PostgreSQL) show the text it queued.
	proxy.hold()
	events, meta := c.prefix+"{"+runID+"}:events", c.prefix+"{"+runID+"}:meta"
	var inRedis int64
	var redisText string
	waitFor(t, 30*time.Second, "A to queue text that Redis does not hold", func() bool {
		inRedis, redisText = redisLog(t, rdb, events, meta)
		msgs := b.messages(th.ID)
		return proxy.heldBack() > 0 && len(msgs) == 2 && len(msgs[1].Content) > len(redisText)+20
	})
	// Whatever A's reader would be sent from A's queue it would have by now.
	time.Sleep(300 * time.Millisecond)
	inRedis, redisText = redisLog(t, rdb, events, meta)
	seenLast, seenN, seenText := readerState()
	if seenLast > inRedis || !strings.HasPrefix(redisText, seenText) {
		t.Fatalf("A's reader was sent events up to id %d (%d bytes of text); Redis holds up to %d (%d bytes): it had events Redis did not",
			seenLast, len(seenText), inRedis, len(redisText))
	}
	t.Logf("A holds back %d bytes for Redis; its reader has %d events (to id %d), Redis %d", proxy.heldBack(), seenN, seenLast, inRedis)

	// A dies; what it held back never reaches Redis.
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	a.waitExit(procExitSlack)
	proxy.cut()
	select {
	case <-readerDone:
	case <-time.After(requestTimeout):
		t.Fatal("A's reader's stream did not break with A")
	}
	if problem != nil {
		t.Fatal(problem)
	}
	if res.terminal.Type != "" || res.readErr == nil {
		t.Fatalf("A's reader's stream ended with %q (%v), want a broken stream without a terminal event", res.terminal.Type, res.readErr)
	}
	// A's reader resumes on B from its last id: B sweeps the run and
	// appends run.interrupted after Redis's last event.
	back, err := b.request(ctx, "GET", "/v1/runs/"+runID+"/events", "", map[string]string{"Last-Event-ID": strconv.FormatInt(res.last, 10)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = back.Body.Close() }()
	if back.StatusCode != http.StatusOK {
		t.Fatalf("resuming on B after id %d: status %d", res.last, back.StatusCode)
	}
	resumed, problem := readRunStream(back.Body, book, res.last, "resumed on B", nil)
	if problem != nil {
		t.Fatal(problem)
	}
	if resumed.readErr != nil || resumed.terminal.Type != string(agentstream.EventRunInterrupted) {
		t.Fatalf("the stream resumed on B ended with %q (%v) after %d events, want run.interrupted", resumed.terminal.Type, resumed.readErr, resumed.events)
	}
	// Right after the last event Redis held when A stopped sending:
	// nothing A held back reached it, before or after the kill.
	if resumed.endID != inRedis+1 {
		t.Fatalf("run.interrupted came at id %d, want %d: right after the last event Redis holds", resumed.endID, inRedis+1)
	}
	t.Logf("A's reader resumed on B after id %d and got %d events, run.interrupted at id %d, %v after the kill",
		res.last, resumed.events, resumed.endID, time.Since(killed).Round(time.Millisecond))

	// Every id agrees with the whole log read again on B, with the store,
	// and a reader at the end gets 204.
	if err := checkRunAfter(ctx, b, b, book, true, resumed.terminal.Type, resumed.endID, resumed.terminal.Data,
		endSeqs(t, c.dbURL)[runID]); err != nil {
		t.Fatal(err)
	}
}

// redisLog returns the last seq of a run's log in Redis and the text of its
// message.delta events.
func redisLog(t testing.TB, rdb *redis.Client, events, meta string) (int64, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	last, err := rdb.HGet(ctx, meta, "last").Int64()
	if err != nil {
		t.Fatalf("reading the run's books in Redis (%s): %v", meta, err)
	}
	entries, err := rdb.XRange(ctx, events, "-", "+").Result()
	if err != nil {
		t.Fatalf("reading the run's events in Redis: %v", err)
	}
	var text strings.Builder
	for _, e := range entries {
		if e.Values["t"] != string(agentstream.EventMessageDelta) {
			continue
		}
		var d agentstream.MessageDeltaData
		data, _ := e.Values["d"].(string)
		if err := json.Unmarshal([]byte(data), &d); err != nil {
			t.Fatalf("event %s in Redis: %v", e.ID, err)
		}
		text.WriteString(d.Delta)
	}
	return last, text.String()
}

// waitFor polls cond every 20ms until it holds, for at most d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
	}
}
