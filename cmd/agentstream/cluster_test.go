package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/sim"
)

// clusterLeaseTTL is short so that a dead instance's runs are swept within
// a couple of seconds.
const clusterLeaseTTL = 1500 * time.Millisecond

// longQuestion gets a long, paced answer from the cluster tests' model;
// any other question a short one.
const longQuestion = "tell me a long story"

// startCluster starts n `agentstream serve` processes sharing one
// PostgreSQL schema and the Redis at redisURL, against one simulated model;
// extraConfig ends their config file.
func startCluster(t *testing.T, n int, redisURL string, extraConfig string) ([]*serveProc, *sim.Running) {
	t.Helper()
	c := startClusterSpec(t, clusterSpec{n: n, redisURL: redisURL, extraConfig: extraConfig})
	return c.procs, c.model
}

// clusterSpec describes the cluster startClusterSpec starts; zero fields
// take startCluster's choices.
type clusterSpec struct {
	n        int
	redisURL string
	// redisFor, when set, is the Redis URL instance i uses instead of
	// redisURL (a proxy to it); the keys are the same.
	redisFor func(i int) string
	// leaseTTL defaults to clusterLeaseTTL, checkpoint to 200ms;
	// coalesce to the server's default.
	leaseTTL   time.Duration
	checkpoint time.Duration
	coalesce   time.Duration
	// decide answers the model requests; by default longQuestion gets a
	// long, paced answer, any other question a short one.
	decide func(*sim.Request) sim.Behavior
	// extraConfig ends the config file.
	extraConfig string
}

// cluster is what startClusterSpec started.
type cluster struct {
	procs  []*serveProc
	model  *sim.Running
	dbURL  string // the instances' PostgreSQL schema
	prefix string // their Redis keys' prefix
}

func startClusterSpec(t *testing.T, spec clusterSpec) *cluster {
	t.Helper()
	if spec.leaseTTL == 0 {
		spec.leaseTTL = clusterLeaseTTL
	}
	if spec.checkpoint == 0 {
		spec.checkpoint = 200 * time.Millisecond
	}
	if spec.decide == nil {
		spec.decide = func(r *sim.Request) sim.Behavior {
			if strings.HasPrefix(question(r), longQuestion) {
				return sim.Behavior{Tokens: 400, Pace: 10 * time.Millisecond, TTFT: -1}
			}
			return sim.Behavior{Tokens: 5, Pace: -1, TTFT: -1}
		}
	}
	c := &cluster{procs: make([]*serveProc, spec.n)}
	_, c.dbURL = testenv.PostgresSchema(t)
	c.model = startSim(t, spec.decide)
	// Keys of the test's own, deleted after the processes stop.
	c.prefix = testenv.RedisPrefixCleaned(t, spec.redisURL)
	var eventLog string
	if spec.coalesce != 0 {
		eventLog = fmt.Sprintf("  coalesce: %s\n", spec.coalesce)
	}
	for i := range c.procs {
		url := spec.redisURL
		if spec.redisFor != nil {
			url = spec.redisFor(i)
		}
		cfg := writeConfig(t, t.TempDir(), fmt.Sprintf("redis_url: %s\nevent_log:\n  redis_prefix: %q\n%sruns:\n  lease_ttl: %s\n  checkpoint_interval: %s\n%s",
			url, c.prefix, eventLog, spec.leaseTTL, spec.checkpoint, spec.extraConfig))
		c.procs[i] = startServe(t, cfg, c.dbURL, c.model.URL())
	}
	return c
}

// TestClusterResumeOnAnotherInstance: a run started through A and read
// halfway there is read on through B from Last-Event-ID: nothing missing,
// nothing twice, the text equal to the answer stored.
func TestClusterResumeOnAnotherInstance(t *testing.T) {
	t.Parallel()
	procs, _ := startCluster(t, 2, testenv.RedisURL(t), "")
	a, b := procs[0], procs[1]
	th := a.newThread()
	sa := a.openStream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "`+longQuestion+`"}`, nil)
	for sa.deltas < 50 {
		sa.readUntil("50 deltas", isType(agentstream.EventMessageDelta))
	}
	last := sa.events[len(sa.events)-1].ID
	sb := b.openStream("GET", "/v1/runs/"+sa.runID+"/events", "", map[string]string{"Last-Event-ID": last})
	sb.runID = sa.runID
	_, end := sb.readToEnd()
	if end.Status != agentstream.RunCompleted {
		t.Fatalf("run ended %+v", end)
	}
	if want := strconv.Itoa(mustAtoi(t, last) + 1); sb.events[0].ID != want {
		t.Fatalf("B resumed at id %s, want %s", sb.events[0].ID, want)
	}
	msgs := b.messages(th.ID)
	if len(msgs) != 2 || msgs[1].Content != sa.text+sb.text || msgs[1].Status != agentstream.MessageComplete {
		t.Fatalf("stored answer %q (%s); A streamed %d bytes, B %d", msgs[len(msgs)-1].Content, msgs[len(msgs)-1].Status, len(sa.text), len(sb.text))
	}
}

func mustAtoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestClusterCancelOnAnotherInstance: a cancel sent to B stops the run on
// A: the model request is closed, A's stream ends run.cancelled, and B
// answers with the cancelled run.
func TestClusterCancelOnAnotherInstance(t *testing.T) {
	t.Parallel()
	procs, model := startCluster(t, 2, testenv.RedisURL(t), "")
	a, b := procs[0], procs[1]
	th := a.newThread()
	sa := a.openStream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "`+longQuestion+`"}`, nil)
	for sa.deltas < 10 {
		sa.readUntil("10 deltas", isType(agentstream.EventMessageDelta))
	}
	var cancelled agentstream.Run
	b.json("POST", "/v1/runs/"+sa.runID+"/cancel", "", http.StatusOK, &cancelled)
	if cancelled.Status != agentstream.RunCancelled {
		t.Fatalf("B answered %+v", cancelled)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := model.Server().WaitCanceled(ctx, 1); err != nil {
		t.Fatalf("the model request was not closed within a second of the cancel: %v", err)
	}
	if _, end := sa.readToEnd(); end.Status != agentstream.RunCancelled {
		t.Fatalf("A's stream ended %+v", end)
	}
	msgs := a.messages(th.ID)
	if len(msgs) != 2 || msgs[1].Status != agentstream.MessagePartial || !strings.HasPrefix(sa.text, msgs[1].Content) || msgs[1].Content == "" {
		t.Fatalf("stored %+v", msgs)
	}
}

// TestClusterInstanceDies: A is killed mid-run. Within its lease, B marks
// the run interrupted and B's reader gets run.interrupted; the question and
// the checkpointed partial answer are in PostgreSQL.
func TestClusterInstanceDies(t *testing.T) {
	t.Parallel()
	procs, _ := startCluster(t, 2, testenv.RedisURL(t), "")
	a, b := procs[0], procs[1]
	th := a.newThread()
	sa := a.openStream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "`+longQuestion+`"}`, nil)
	sb := b.openStream("GET", "/v1/runs/"+sa.runID+"/events", "", nil)
	sb.runID = sa.runID
	for sb.deltas < 40 {
		sb.readUntil("40 deltas on B", isType(agentstream.EventMessageDelta))
	}
	// Wait for a checkpoint, visible through B.
	for poll := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		msgs := b.messages(th.ID)
		if len(msgs) == 2 && msgs[1].Status == agentstream.MessagePartial && msgs[1].Content != "" {
			break
		}
		if time.Since(poll) > 10*time.Second {
			t.Fatalf("no checkpoint: %+v", msgs)
		}
	}
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	a.waitExit(procExitSlack)

	_, end := sb.readToEnd()
	took := time.Since(killed)
	if end.Status != agentstream.RunInterrupted || end.Error == nil || end.Error.Code != agentstream.CodeInterrupted {
		t.Fatalf("B's reader got %+v", end)
	}
	// The lease ran out, then a sweep (every third of the lease) found it.
	if took > clusterLeaseTTL+clusterLeaseTTL/3+5*time.Second {
		t.Errorf("run.interrupted came %v after the kill (lease %v)", took, clusterLeaseTTL)
	}
	t.Logf("run.interrupted reached B's reader %v after A was killed (lease %v)", took.Round(time.Millisecond), clusterLeaseTTL)
	if run := b.getRun(sa.runID); run.Status != agentstream.RunInterrupted || run.FinishedAt == nil {
		t.Fatalf("stored run %+v", run)
	}
	msgs := b.messages(th.ID)
	// The checkpoint and the events go their own ways: A may have saved
	// the last tokens in PostgreSQL before their events reached Redis, and
	// died before they did. So either text holds the other, whole.
	if len(msgs) != 2 || msgs[0].Role != agentstream.RoleUser || msgs[0].Content != longQuestion ||
		msgs[1].Status != agentstream.MessagePartial || msgs[1].Content == "" ||
		!strings.HasPrefix(sb.text, msgs[1].Content) && !strings.HasPrefix(msgs[1].Content, sb.text) {
		t.Fatalf("stored after the death of A: %+v; B read %q", msgs, sb.text)
	}
	// The thread takes a new run, on B.
	sb2 := b.openStream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "short"}`, nil)
	if _, end := sb2.readToEnd(); end.Status != agentstream.RunCompleted {
		t.Fatalf("a new run on the thread ended %+v", end)
	}
}

// privateRedis is a redis-server of the test's own, which it may stop and
// start again on the same port without touching anyone else's data.
type privateRedis struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func startPrivateRedis(t *testing.T) *privateRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Missing(t, "redis-server is not on PATH", "install Redis (apt-get install redis-server)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close() // redis-server takes the port
	r := &privateRedis{t: t, port: port}
	r.start(bin)
	t.Cleanup(r.stop)
	return r
}

func (r *privateRedis) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *privateRedis) start(bin string) {
	r.t.Helper()
	r.cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(r.port), "--save", "", "--appendonly", "no",
		"--dir", r.t.TempDir())
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("redis-server: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port))
		if err == nil {
			_ = conn.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on port %d did not start", r.port)
		}
	}
}

// waitReady waits until /readyz answers 200 (the services came back),
// failing the test after d.
func (p *serveProc) waitReady(d time.Duration) {
	p.t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		resp := p.do("GET", "/readyz", "")
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("/readyz still answers %d after %s", resp.StatusCode, d)
		}
	}
}

// stop kills the server: what it held is lost, as with a crash.
func (r *privateRedis) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait() // killed: the error says so
	r.cmd = nil
}

// TestClusterRedisRestart: Redis is killed during a run (losing every
// event it held) and started again. The run is not lost: it completes and
// its whole answer is stored; a reader that comes back after it ends gets
// the end of the run (from the store, the events being gone).
func TestClusterRedisRestart(t *testing.T) {
	t.Parallel()
	redis := startPrivateRedis(t)
	procs, _ := startCluster(t, 1, redis.url(), "")
	a := procs[0]
	th := a.newThread()
	sa := a.openStream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "`+longQuestion+`"}`, nil)
	for sa.deltas < 30 {
		sa.readUntil("30 deltas", isType(agentstream.EventMessageDelta))
	}
	bin := redis.cmd.Path
	redis.stop()
	// Load balancers learn of it from /readyz.
	resp := a.do("GET", "/readyz", "")
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz answered %d with Redis down, want 503", resp.StatusCode)
	}
	time.Sleep(300 * time.Millisecond) // the run goes on without Redis
	redis.start(bin)
	a.waitReady(10 * time.Second)

	// The stream may break while Redis is away; the run goes on.
	var run agentstream.Run
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if run = a.getRun(sa.runID); run.Status.Terminal() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run did not end after Redis came back: %+v", run)
		}
	}
	if run.Status != agentstream.RunCompleted {
		t.Fatalf("run ended %+v", run)
	}
	msgs := a.messages(th.ID)
	if len(msgs) != 2 || msgs[1].Status != agentstream.MessageComplete || len(strings.Fields(msgs[1].Content)) < 400 {
		t.Fatalf("stored answer after the Redis restart: %d messages, last %+v", len(msgs), msgs[len(msgs)-1])
	}
	// A reader coming back from where it was gets the end of the run.
	last := sa.events[len(sa.events)-1].ID
	back := a.openStream("GET", "/v1/runs/"+sa.runID+"/events", "", map[string]string{"Last-Event-ID": last})
	back.runID = sa.runID
	ev, end := back.readToEnd()
	if end.Status != agentstream.RunCompleted {
		t.Fatalf("the returning reader's stream ended %s %+v", ev.Type, end)
	}
	t.Logf("the first stream got %d events; the returning reader %d, from id %s (%s first)",
		len(sa.events), len(back.events), back.events[0].ID, back.events[0].Type)
}

// idBook is every event a run's readers were sent, by id, across all the
// streams of the run: an id must name one event (type and data) wherever
// it was read.
type idBook struct {
	runID  string
	events map[int64]string
}

func newIDBook(runID string) *idBook { return &idBook{runID: runID, events: make(map[int64]string)} }

// record notes that id was sent as ev, and fails when id already named
// another event.
func (b *idBook) record(id int64, ev sse.Event, where string) error {
	key := ev.Type + " " + ev.Data
	if old, ok := b.events[id]; ok && old != key {
		return fmt.Errorf("run %s: id %d is %q there, but was %q before (%s)", b.runID, id, key, old, where)
	}
	b.events[id] = key
	return nil
}

// streamRead is what one native stream of a run delivered.
type streamRead struct {
	last     int64     // the last event id it sent (its Last-Event-ID), or `after`
	terminal sse.Event // the terminal event, if it came (Type set)
	endID    int64     // the terminal event's id
	deltas   int
	events   int
	readErr  error // nil at a clean end of the stream
}

// readRunStream reads a native stream of run b.runID that resumes after
// `after`, recording every event in b, until the stream ends or breaks.
// It checks, and returns as problem, what no stream may do: ids not
// following on from after (an end rebuilt from the store may send
// message.completed without an id, then the terminal event at an id past
// those before), an id naming another event than elsewhere, anything
// after the terminal event. onEvent, when set, is called with each event
// that has an id.
func readRunStream(body io.Reader, b *idBook, after int64, where string, onEvent func(id int64, ev sse.Event)) (res streamRead, problem error) {
	r := sse.NewReader(body)
	res.last = after
	prevID, rebuilt := "", false
	for {
		ev, err := r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				res.readErr = err
			}
			return res, nil
		}
		res.events++
		if res.terminal.Type != "" {
			return res, fmt.Errorf("run %s (%s): %s after the terminal event", b.runID, where, ev.Type)
		}
		// The reader keeps the last id in force: an event that sets none
		// has the one before it.
		if ev.ID == prevID {
			if ev.Type != string(agentstream.EventMessageCompleted) {
				return res, fmt.Errorf("run %s (%s): %s without an id, after id %q", b.runID, where, ev.Type, prevID)
			}
			rebuilt = true
			continue
		}
		prevID = ev.ID
		id, err := strconv.ParseInt(ev.ID, 10, 64)
		switch {
		case err != nil:
			return res, fmt.Errorf("run %s (%s): %s has id %q", b.runID, where, ev.Type, ev.ID)
		case rebuilt && (id <= res.last || !agentstream.EventType(ev.Type).Terminal()):
			return res, fmt.Errorf("run %s (%s): %s at id %d after a rebuilt end's messages (last id %d)", b.runID, where, ev.Type, id, res.last)
		case !rebuilt && id != res.last+1:
			return res, fmt.Errorf("run %s (%s): %s at id %d after id %d", b.runID, where, ev.Type, id, res.last)
		}
		if err := b.record(id, ev, where); err != nil {
			return res, err
		}
		res.last = id
		if agentstream.EventType(ev.Type).Terminal() {
			res.terminal, res.endID = ev, id
		}
		if ev.Type == string(agentstream.EventMessageDelta) {
			res.deltas++
		}
		if onEvent != nil {
			onEvent(id, ev)
		}
	}
}

// request sends a request for a goroutine: errors are returned, not
// failed. The answer's body is the caller's to close.
func (p *serveProc) request(ctx context.Context, method, path, body string, header map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, p.url+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return p.stream.Do(req)
}

// requestJSON sends a request whose answer must be status want and JSON,
// decoded into v.
func (p *serveProc) requestJSON(ctx context.Context, method, path, body string, want int, v any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := p.request(ctx, method, path, body, nil)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	return json.Unmarshal(b, v)
}

// TestClusterInstanceKilledUnderLoad: three instances on PostgreSQL and
// Redis, 300 runs mid-stream (100 started through each, each read through
// the instance that started it), and A is killed with SIGKILL. Every
// client of A's runs resumes on B or C from the last id it was sent, as an
// EventSource does (half at once, half once the run has ended), and gets
// run.interrupted once A's leases run out; the runs of B and C complete
// untouched. No id ever names two different events: not across the
// streams of a run, not against its whole log read again afterwards, whose
// terminal event's id is the one the store records. A reader at the
// terminal event gets 204.
//
// A coalescing window of 100ms (2ms by default) keeps, at any time, a
// couple of each run's events queued on its instance and not yet in
// Redis: the events A dies with, which its readers must never have been
// sent.
func TestClusterInstanceKilledUnderLoad(t *testing.T) {
	t.Parallel()
	const (
		perInstance = 100
		tokens      = 200             // at 50ms: 10s of answer, ample to be mid-stream at the kill
		minDeltas   = 5               // every stream has this many when A is killed
		leaseTTL    = 6 * time.Second // renewals every 2s: a loaded machine (-race, 3 servers, 300 streams) keeps them
	)
	c := startClusterSpec(t, clusterSpec{
		n: 3, redisURL: testenv.RedisURL(t), leaseTTL: leaseTTL, checkpoint: time.Second, coalesce: 100 * time.Millisecond,
		decide: func(*sim.Request) sim.Behavior {
			return sim.Behavior{Tokens: tokens, Pace: 50 * time.Millisecond, TTFT: -1}
		},
	})
	a, survivors := c.procs[0], c.procs[1:]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	begun := time.Now()

	type client struct {
		instance int
		runID    string
		book     *idBook
		endType  string
		endID    int64
		endData  string
		resumes  int // streams opened on another instance
		// caughtUp counts the events besides the terminal one that the
		// resumed streams sent: in Redis, not yet sent by A when it died.
		caughtUp int
		brokeAt  int64
		// problems no client may meet.
		problems []error
	}
	clients := make([]*client, 3*perInstance)
	var (
		started   sync.WaitGroup // each client, once it has minDeltas deltas
		finished  sync.WaitGroup
		killed    = make(chan struct{})
		killedAt  time.Time
		lastEndMu sync.Mutex
		lastEnd   time.Time // the last run.interrupted a client of A got
	)
	started.Add(len(clients))
	finished.Add(len(clients))
	for i := range clients {
		cl := &client{instance: i % 3}
		clients[i] = cl
		go func() {
			defer finished.Done()
			once := sync.OnceFunc(started.Done)
			defer once()
			fail := func(err error) { cl.problems = append(cl.problems, err) }
			p := c.procs[cl.instance]
			var th agentstream.Thread
			if err := p.requestJSON(ctx, "POST", "/v1/threads", `{}`, http.StatusCreated, &th); err != nil {
				fail(err)
				return
			}
			resp, err := p.request(ctx, "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "tell me a story"}`, nil)
			if err != nil {
				fail(err)
				return
			}
			defer func() { _ = resp.Body.Close() }()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				fail(fmt.Errorf("starting a run on instance %d: status %d: %s", cl.instance, resp.StatusCode, b))
				return
			}
			cl.runID = resp.Header.Get("X-Run-Id")
			cl.book = newIDBook(cl.runID)
			deltas := 0
			res, problem := readRunStream(resp.Body, cl.book, 0, fmt.Sprintf("started on instance %d", cl.instance), func(_ int64, ev sse.Event) {
				if ev.Type != string(agentstream.EventMessageDelta) {
					return
				}
				if deltas++; deltas == minDeltas {
					once()
				}
			})
			if problem != nil {
				fail(problem)
				return
			}
			if res.terminal.Type != "" {
				cl.endType, cl.endID, cl.endData = res.terminal.Type, res.endID, res.terminal.Data
				if cl.instance == 0 {
					fail(fmt.Errorf("run %s ended %s on A before A was killed: the answers are too short for this machine", cl.runID, res.terminal.Type))
				}
				return
			}
			select {
			case <-killed:
			default:
				fail(fmt.Errorf("run %s: its stream on instance %d ended (%v) after %d events, without a terminal event, before any instance was killed",
					cl.runID, cl.instance, res.readErr, res.events))
				return
			}
			if cl.instance != 0 {
				fail(fmt.Errorf("run %s: its stream on instance %d, which was not killed, ended (%v) without a terminal event", cl.runID, cl.instance, res.readErr))
				return
			}
			// A is dead: reconnect to another instance with the last id
			// read, as an EventSource does, until the terminal event. Half
			// of A's clients come back at once, before the run is swept;
			// the other half once it has ended.
			cl.brokeAt = res.last
			last := res.last
			if (i/3)%2 == 1 {
				if err := awaitStatus(ctx, c.procs[1+i%2], cl.runID, agentstream.RunInterrupted); err != nil {
					fail(err)
					return
				}
			}
			for attempt := 0; ; attempt++ {
				if attempt == 5 || ctx.Err() != nil {
					fail(fmt.Errorf("run %s: no terminal event after %d resumptions from id %d", cl.runID, attempt, cl.brokeAt))
					return
				}
				target := 1 + (i+attempt)%2
				cl.resumes++
				resp, err := c.procs[target].request(ctx, "GET", "/v1/runs/"+cl.runID+"/events", "",
					map[string]string{"Last-Event-ID": strconv.FormatInt(last, 10)})
				if err != nil {
					fail(fmt.Errorf("run %s: resuming on instance %d: %w", cl.runID, target, err))
					return
				}
				if resp.StatusCode != http.StatusOK {
					b, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					fail(fmt.Errorf("run %s: resuming on instance %d after id %d (no terminal event read yet): status %d: %s",
						cl.runID, target, last, resp.StatusCode, b))
					return
				}
				res, problem := readRunStream(resp.Body, cl.book, last, fmt.Sprintf("resumed on instance %d after id %d", target, last), nil)
				_ = resp.Body.Close()
				if problem != nil {
					fail(problem)
					return
				}
				cl.caughtUp += res.events
				if res.terminal.Type != "" {
					cl.caughtUp--
					cl.endType, cl.endID, cl.endData = res.terminal.Type, res.endID, res.terminal.Data
					lastEndMu.Lock()
					lastEnd = time.Now()
					lastEndMu.Unlock()
					return
				}
				// A stream that ends without the terminal event is a
				// defect here (nothing can be gone or shutting down); the
				// EventSource would reconnect, and so does this client, to
				// say whether it would ever get it.
				fail(fmt.Errorf("run %s: the stream resumed on instance %d after id %d ended (%v) after %d events, without a terminal event",
					cl.runID, target, last, res.readErr, res.events))
				last = res.last
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}

	// Kill A a few seconds in, once every stream is mid-answer.
	waitGroup(t, &started, 60*time.Second, "every stream to have its first deltas")
	time.Sleep(time.Until(begun.Add(3 * time.Second)))
	close(killed)
	killedAt = time.Now()
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.waitExit(procExitSlack)
	waitGroup(t, &finished, 80*time.Second, "every client to get its run's terminal event")
	lastEndMu.Lock()
	if !lastEnd.IsZero() {
		t.Logf("A killed %v after the runs began; its runs' clients all had run.interrupted %v later (lease %v)",
			killedAt.Sub(begun).Round(time.Millisecond), lastEnd.Sub(killedAt).Round(time.Millisecond), leaseTTL)
	}
	lastEndMu.Unlock()

	problems, caughtUp, missed := 0, 0, 0
	for _, cl := range clients {
		for _, err := range cl.problems {
			if problems++; problems <= 20 {
				t.Error(err)
			}
		}
		if cl.caughtUp > 0 {
			caughtUp++
			missed += cl.caughtUp
		}
	}
	if problems > 0 {
		t.Fatalf("%d problems in all", problems)
	}
	t.Logf("%d of A's clients resumed with events A had not sent them yet (%d in all) before run.interrupted", caughtUp, missed)

	// What each client was sent agrees with its run's whole log, read
	// again from the start on a surviving instance, and with the store.
	ends := endSeqs(t, c.dbURL)
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	sem := make(chan struct{}, 32)
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- checkRunAfter(ctx, survivors[i%2], survivors[(i+1)%2], cl.book, cl.instance == 0, cl.endType, cl.endID, cl.endData, ends[cl.runID])
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			if problems++; problems <= 20 {
				t.Error(err)
			}
		}
	}
}

// checkRunAfter checks a run that ended: the terminal event its client got
// (run.interrupted if its instance was killed, else run.completed) is the
// one the whole log, read from the start on p, ends with, at the id the
// store records (endSeq); every id of that log names the event the
// client's streams were sent under it; a reader at the terminal event gets
// 204, on p and on q.
func checkRunAfter(ctx context.Context, p, q *serveProc, b *idBook, killed bool, endType string, endID int64, endData string, endSeq int64) error {
	want := agentstream.EventRunCompleted
	if killed {
		want = agentstream.EventRunInterrupted
	}
	if endType != string(want) {
		return fmt.Errorf("run %s ended %s, want %s", b.runID, endType, want)
	}
	var data agentstream.RunEndData
	if err := json.Unmarshal([]byte(endData), &data); err != nil || data.RunID != b.runID ||
		killed && (data.Error == nil || data.Error.Code != agentstream.CodeInterrupted) {
		return fmt.Errorf("run %s ended with %s %s", b.runID, endType, endData)
	}
	if endSeq != endID {
		return fmt.Errorf("run %s: its terminal event came at id %d, the store records %d", b.runID, endID, endSeq)
	}
	resp, err := p.request(ctx, "GET", "/v1/runs/"+b.runID+"/events", "", nil)
	if err != nil {
		return err
	}
	res, problem := readRunStream(resp.Body, b, 0, "read again from the start", nil)
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("run %s read again from the start: status %d", b.runID, resp.StatusCode)
	case problem != nil:
		return problem
	case res.readErr != nil || res.endID != endID:
		return fmt.Errorf("run %s read again from the start: ended at id %d (%v), want its terminal event at %d", b.runID, res.endID, res.readErr, endID)
	}
	for _, s := range []*serveProc{p, q} {
		resp, err := s.request(ctx, "GET", "/v1/runs/"+b.runID+"/events", "", map[string]string{"Last-Event-ID": strconv.FormatInt(endID, 10)})
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("run %s: a reader at its terminal event (id %d) got %d, want 204", b.runID, endID, resp.StatusCode)
		}
	}
	return nil
}

// awaitStatus polls, through p, until the run has status want.
func awaitStatus(ctx context.Context, p *serveProc, runID string, want agentstream.RunStatus) error {
	for {
		var run agentstream.Run
		if err := p.requestJSON(ctx, "GET", "/v1/runs/"+runID, "", http.StatusOK, &run); err != nil {
			return err
		}
		if run.Status == want {
			return nil
		}
		if run.Status.Terminal() {
			return fmt.Errorf("run %s ended %s, want %s", runID, run.Status, want)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("run %s still %s: %w", runID, run.Status, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// endSeqs reads, from the store's runs table, the id of every ended run's
// terminal event. A swept run's id is recorded just after its terminal
// event is appended, so a reader can see the event a moment before the
// store has its id: it reads again, for a few seconds, while an ended run
// has none.
func endSeqs(t testing.TB, dbURL string) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connecting to the cluster's database: %v", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		rows, err := conn.Query(ctx, `SELECT id, COALESCE(end_seq, 0), status FROM runs`)
		if err != nil {
			t.Fatalf("reading runs.end_seq: %v", err)
		}
		ends := make(map[string]int64)
		missing := false
		for rows.Next() {
			var id string
			var seq int64
			var status agentstream.RunStatus
			if err := rows.Scan(&id, &seq, &status); err != nil {
				t.Fatal(err)
			}
			ends[id] = seq
			missing = missing || status.Terminal() && seq == 0
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("reading runs.end_seq: %v", err)
		}
		if !missing || time.Now().After(deadline) {
			return ends
		}
	}
}

// waitGroup waits for wg, at most d.
func waitGroup(t testing.TB, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("waited %v for %s", d, what)
	}
}
