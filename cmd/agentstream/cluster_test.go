package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
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
// PostgreSQL schema and the Redis at redisURL, against one simulated model.
func startCluster(t *testing.T, n int, redisURL string, extraConfig string) ([]*serveProc, *sim.Running) {
	t.Helper()
	_, dbURL := testenv.PostgresSchema(t)
	model := startSim(t, func(r *sim.Request) sim.Behavior {
		if strings.HasPrefix(question(r), longQuestion) {
			return sim.Behavior{Tokens: 400, Pace: 10 * time.Millisecond, TTFT: -1}
		}
		return sim.Behavior{Tokens: 5, Pace: -1, TTFT: -1}
	})
	dir := t.TempDir()
	// Keys of the test's own, deleted after the processes stop.
	prefix := testenv.RedisPrefixCleaned(t, redisURL)
	cfg := writeConfig(t, dir, fmt.Sprintf("redis_url: %s\nevent_log:\n  redis_prefix: %q\nruns:\n  lease_ttl: %s\n  checkpoint_interval: 200ms\n%s",
		redisURL, prefix, clusterLeaseTTL, extraConfig))
	procs := make([]*serveProc, n)
	for i := range procs {
		procs[i] = startServe(t, cfg, dbURL, model.URL())
	}
	return procs, model
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
	if len(msgs) != 2 || msgs[0].Role != agentstream.RoleUser || msgs[0].Content != longQuestion ||
		msgs[1].Status != agentstream.MessagePartial || msgs[1].Content == "" || !strings.HasPrefix(sb.text, msgs[1].Content) {
		t.Fatalf("stored after the death of A: %+v", msgs)
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
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp := a.do("GET", "/readyz", "")
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still answers %d after Redis came back", resp.StatusCode)
		}
	}

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
