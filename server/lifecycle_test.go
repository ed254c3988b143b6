package server_test

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/redislog"
	"github.com/agentstream/agentstream/sim"
)

// TestLifecycle runs a run's life end to end, over HTTP, on every backend,
// {SQLite, PostgreSQL} × {memlog, Redis}: what users see must not depend
// on which services hold the run. A backend whose service is not
// configured is skipped (a failure with CI=true).
func TestLifecycle(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		test func(t *testing.T, b backend)
	}{
		{"stream", testNativeStream},
		{"tools", testToolCallStored},
		{"history", testSecondRunSendsHistory},
		{"resume", testResume},
		{"retention", testRetention},
		{"trimmed", testTrimmedLiveRun},
		{"cancel", testCancelFromAnotherConnection},
		{"disconnect", testDisconnect},
		{"multitask", testMultitask},
		{"drain", testShutdownDrains},
		{"crash", testCrashRecovery},
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.test(t, b)
				})
			}
		})
	}
}

// maxID is the largest event id a reader can send.
var maxID = strconv.FormatInt(math.MaxInt64, 10)

// testResume: read half a run, drop the connection, come back with
// Last-Event-ID: nothing twice, nothing missing, the text equals the
// stored answer. Once the run has ended, within the retention, a reader
// gets exactly the events after its position, and 204 at or past the end.
func testResume(t *testing.T, b backend) {
	e := b.start(t, sim.Options{Tokens: 40, Pace: 5 * time.Millisecond}, nil)
	th := e.newThread(`{}`)
	ctx, cancel := context.WithCancel(streamCtx(t))
	r, resp := e.openStream(ctx, "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi"}`, nil)
	first := readN(t, r, 12)
	cancel() // the connection drops mid-run
	runID := resp.Header.Get("X-Run-Id")

	rest := e.readRun(runID, first[len(first)-1].ID)
	n := checkNative(t, append(first, rest...))
	if n.end.Status != agentstream.RunCompleted {
		t.Fatalf("end %+v", n.end)
	}
	msgs := e.messages(th.ID)
	if msgs[len(msgs)-1].Content != n.text || len(sim.Split(n.text)) != 40 {
		t.Fatalf("joined text %q, stored %q", n.text, msgs[len(msgs)-1].Content)
	}

	// The run has ended: the same events, under the same ids, from any
	// position before its end.
	last := len(n.events)
	for _, after := range []int{0, 5, last - 1} {
		id := ""
		if after > 0 {
			id = strconv.Itoa(after)
		}
		sameEvents(t, "after "+strconv.Itoa(after), e.readRun(runID, id), n.events[after:])
	}
	// ?after=N reads the same as Last-Event-ID: N.
	r3, _ := e.openStream(streamCtx(t), "GET", "/v1/runs/"+runID+"/events?after=5", "", nil)
	sameEvents(t, "?after=5", readToEnd(t, r3), n.events[5:])
	// At or past the end: 204, which stops an EventSource.
	for _, id := range []string{n.terminal.ID, strconv.Itoa(last + 1), "1000", maxID} {
		if status := e.status("GET", "/v1/runs/"+runID+"/events", map[string]string{"Last-Event-ID": id}); status != http.StatusNoContent {
			t.Fatalf("a reader at %s of a run that ended at %s: %d, want 204", id, n.terminal.ID, status)
		}
	}
	if status := e.status("GET", "/v1/runs/"+runID+"/events?after="+n.terminal.ID, nil); status != http.StatusNoContent {
		t.Fatalf("?after= the end: %d, want 204", status)
	}
	for _, bad := range []string{"?after=x", "?after=-1"} {
		resp := e.do("GET", "/v1/runs/"+runID+"/events"+bad, "")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(errorBody(t, resp).Message, "event id") {
			t.Fatalf("%s: status %d", bad, resp.StatusCode)
		}
	}
}

// testRetention: once a finished run's events are gone from the log
// (event_log.retention after its end), reading them is answered from the
// store: the answer without an id, then the terminal event at the id the
// log gave it; a reader at or past that id gets 204.
func testRetention(t *testing.T, b backend) {
	// Long enough for the run's own stream to read its end from the log,
	// on a loaded machine.
	e := b.start(t, sim.Options{Tokens: 5}, func(c *config.Config) { c.EventLog.Retention = time.Second })
	th := e.newThread(`{}`)
	_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi"}`)
	n := checkNative(t, evs)

	// Until the retention passes a reader after 3 reads the log, then the
	// end rebuilt from the store.
	var got []sse.Event
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got = e.readRun(n.runID, "3")
		if len(got) > 0 && got[0].ID == "" {
			break
		}
		sameEvents(t, "after 3, within the retention", got, evs[3:])
		if time.Now().After(deadline) {
			t.Fatal("the log still holds the run's events 30s after its retention of 1s")
		}
	}
	checkRebuiltEnd(t, "after 3, past the retention", got, n.text, n.terminal)
	checkRebuiltEnd(t, "from the start", e.readRun(n.runID, ""), n.text, n.terminal)
	end, _ := strconv.Atoi(n.terminal.ID)
	checkRebuiltEnd(t, "just before the end", e.readRun(n.runID, strconv.Itoa(end-1)), n.text, n.terminal)
	for _, id := range []string{n.terminal.ID, strconv.Itoa(end + 1), "1000", maxID} {
		if status := e.status("GET", "/v1/runs/"+n.runID+"/events", map[string]string{"Last-Event-ID": id}); status != http.StatusNoContent {
			t.Fatalf("a reader at %s after the log's retention: %d, want 204", id, status)
		}
	}
}

// testTrimmedLiveRun: a reader asking for events the log dropped to stay
// within event_log.max_run_bytes, of a run that goes on, gets 410 and the
// code events_gone; one past the run's last event gets 400; ones resuming
// from kept positions read on to the end. Once the run has ended, one
// from before the kept events gets its end rebuilt from the store.
func testTrimmedLiveRun(t *testing.T, b backend) {
	// The model streams, then stalls: the run goes on with its log fixed.
	// 4 KiB hold about 35 events: the first are dropped, and a reader
	// that keeps up has half a second to spare (one further behind is
	// cut off, as the events it needs are gone).
	const tokens = 60
	e := b.start(t, sim.Options{Tokens: 2 * tokens, Pace: 15 * time.Millisecond, Fault: sim.FaultStall, FaultAfter: tokens},
		func(c *config.Config) { c.EventLog.MaxRunBytes = 4096 })
	th := e.newThread(`{}`)
	r, resp := e.openStream(streamCtx(t), "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "long"}`, nil)
	runID := resp.Header.Get("X-Run-Id")
	// run.created, run.started, step.started, then a delta a token.
	const last = tokens + 3
	evs := readN(t, r, last)
	lastID := evs[len(evs)-1].ID
	if lastID != strconv.Itoa(last) || evs[len(evs)-1].Type != string(agentstream.EventMessageDelta) {
		t.Fatalf("event %d is %+v, want the last delta at id %d", len(evs), evs[len(evs)-1], last)
	}

	gone := e.do("GET", "/v1/runs/"+runID+"/events?after=1", "")
	if gone.StatusCode != http.StatusGone || errorBody(t, gone).Code != agentstream.CodeGone {
		t.Fatalf("before the first kept event: status %d, want 410 events_gone", gone.StatusCode)
	}
	for _, id := range []string{strconv.Itoa(last + 1), "1000", maxID} {
		resp := e.request("GET", "/v1/runs/"+runID+"/events", "", map[string]string{"Last-Event-ID": id})
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("Last-Event-ID %s past the last event %s of a live run: status %d, want 400", id, lastID, resp.StatusCode)
		}
		if eb := errorBody(t, resp); eb.Code != agentstream.CodeInvalidRequest || !strings.Contains(eb.Message, "past the run's last event") {
			t.Fatalf("Last-Event-ID %s: %+v", id, eb)
		}
	}
	// From the one before the last, and from the last: both read on, live.
	r2, _ := e.openStream(streamCtx(t), "GET", "/v1/runs/"+runID+"/events", "", map[string]string{"Last-Event-ID": strconv.Itoa(last - 1)})
	sameEvents(t, "after the one before the last", readN(t, r2, 1), evs[len(evs)-1:])
	r3, _ := e.openStream(streamCtx(t), "GET", "/v1/runs/"+runID+"/events", "", map[string]string{"Last-Event-ID": lastID})

	var run agentstream.Run
	e.json("POST", "/v1/runs/"+runID+"/cancel", "", http.StatusOK, &run)
	tail := readToEnd(t, r)
	n := checkNative(t, append(evs, tail...))
	if n.end.Status != agentstream.RunCancelled {
		t.Fatalf("end %+v", n.end)
	}
	sameEvents(t, "the reader from the one before the last", readToEnd(t, r2), tail)
	sameEvents(t, "the reader from the last", readToEnd(t, r3), tail)

	// Ended: before the kept events, the end from the store; at it, 204.
	checkRebuiltEnd(t, "after 1, once ended", e.readRun(runID, "1"), n.text, n.terminal)
	for _, id := range []string{n.terminal.ID, "1000", maxID} {
		if status := e.status("GET", "/v1/runs/"+runID+"/events", map[string]string{"Last-Event-ID": id}); status != http.StatusNoContent {
			t.Fatalf("a reader at %s of the ended run: %d, want 204", id, status)
		}
	}
}

// testCancelFromAnotherConnection: a cancel sent on its own connection
// answers 200 with the ended run, ends both streams with run.cancelled,
// closes the model request and keeps the partial answer; cancelling it
// again is a 409.
func testCancelFromAnotherConnection(t *testing.T, b backend) {
	// Three tokens, then the model stalls: the run goes on until cancelled.
	e := b.start(t, sim.Options{Tokens: 50, Fault: sim.FaultStall, FaultAfter: 3}, nil)
	th := e.newThread(`{}`)
	r1, resp := e.openStream(streamCtx(t), "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi"}`, nil)
	runID := resp.Header.Get("X-Run-Id")
	first := readN(t, r1, 5)
	r2, _ := e.openStream(streamCtx(t), "GET", "/v1/runs/"+runID+"/events", "", nil)
	sameEvents(t, "the second reader", readN(t, r2, 5), first)

	var run agentstream.Run
	e.json("POST", "/v1/runs/"+runID+"/cancel", "", http.StatusOK, &run)
	if run.Status != agentstream.RunCancelled || run.Error == nil || run.Error.Code != agentstream.CodeCancelled || run.FinishedAt == nil {
		t.Fatalf("cancel answered %+v", run)
	}
	rest := readToEnd(t, r1)
	n := checkNative(t, append(first, rest...))
	if n.end.Status != agentstream.RunCancelled {
		t.Fatalf("the run's stream ended %+v", n.end)
	}
	sameEvents(t, "the second reader's end", readToEnd(t, r2), rest)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.sim.WaitActive(ctx, 0); err != nil {
		t.Fatalf("the upstream request is still open: %v", err)
	}
	msgs := e.messages(th.ID)
	if len(msgs) != 2 || msgs[1].Status != agentstream.MessagePartial || msgs[1].Content != n.text || !strings.HasPrefix(n.text, sim.Prefix) {
		t.Fatalf("stored %+v, want the partial answer %q", msgs, n.text)
	}
	resp2 := e.do("POST", "/v1/runs/"+runID+"/cancel", "")
	if resp2.StatusCode != http.StatusConflict || errorBody(t, resp2).Code != agentstream.CodeConflict {
		t.Fatalf("cancelling an ended run: status %d", resp2.StatusCode)
	}
	if status := e.status("GET", "/v1/runs/"+runID+"/events", map[string]string{"Last-Event-ID": n.terminal.ID}); status != http.StatusNoContent {
		t.Fatalf("a reader at the end of the cancelled run: %d, want 204", status)
	}
}

// testDisconnect: with continue the run completes and is stored; with
// cancel and no disconnect grace the model request is closed, and the run
// ends cancelled (TestDisconnectGrace tests the grace).
func testDisconnect(t *testing.T, b backend) {
	for _, policy := range []string{"continue", "cancel"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			e := b.start(t, sim.Options{Tokens: 60, Pace: 5 * time.Millisecond}, func(c *config.Config) { c.Runs.DisconnectGrace = -1 })
			th := e.newThread(`{}`)
			ctx, cancel := context.WithCancel(streamCtx(t))
			r, resp := e.openStream(ctx, "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi", "on_disconnect": "`+policy+`"}`, nil)
			runID := resp.Header.Get("X-Run-Id")
			readN(t, r, 5)
			cancel()
			if policy == "cancel" {
				wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer wcancel()
				if err := e.sim.WaitCanceled(wctx, 1); err != nil {
					t.Fatalf("the simulator never saw its request closed: %v", err)
				}
			}
			// Either way the run ends and is saved.
			n := checkNative(t, e.readRun(runID, ""))
			want := map[string]agentstream.RunStatus{"continue": agentstream.RunCompleted, "cancel": agentstream.RunCancelled}[policy]
			if n.end.Status != want {
				t.Fatalf("run ended %s, want %s", n.end.Status, want)
			}
			if msgs := e.messages(th.ID); msgs[1].Content != n.text {
				t.Fatalf("stored %q, streamed %q", msgs[1].Content, n.text)
			}
		})
	}
}

// testMultitask: reject, enqueue and interrupt, and two requests racing.
func testMultitask(t *testing.T, b backend) {
	slow := sim.Options{Tokens: 80, Pace: 5 * time.Millisecond}
	begin := func(t *testing.T, e *env, th agentstream.Thread) (*sse.Reader, string) {
		r, resp := e.openStream(streamCtx(t), "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "first"}`, nil)
		readN(t, r, 4) // to the first delta: created, started, step.started, delta
		return r, resp.Header.Get("X-Run-Id")
	}
	t.Run("reject", func(t *testing.T) {
		t.Parallel()
		e := b.start(t, slow, nil)
		th := e.newThread(`{}`)
		begin(t, e, th)
		resp := e.do("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "second", "multitask": "reject"}`)
		if resp.StatusCode != http.StatusConflict || errorBody(t, resp).Code != agentstream.CodeConflict {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("enqueue", func(t *testing.T) {
		t.Parallel()
		e := b.start(t, slow, nil)
		th := e.newThread(`{}`)
		r1, _ := begin(t, e, th)
		_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "second", "multitask": "enqueue"}`)
		if n := checkNative(t, evs); n.end.Status != agentstream.RunCompleted {
			t.Fatalf("second run: %+v", n.end)
		}
		if evs := readToEnd(t, r1); evs[len(evs)-1].Type != "run.completed" {
			t.Fatal("the first run did not complete")
		}
		var got []string
		for _, m := range e.messages(th.ID) {
			got = append(got, string(m.Role)+":"+m.Content[:min(6, len(m.Content))])
		}
		if strings.Join(got, ",") != "user:first,assistant:[simul,user:second,assistant:[simul" {
			t.Fatalf("thread: %v", got)
		}
	})
	t.Run("interrupt", func(t *testing.T) {
		t.Parallel()
		e := b.start(t, slow, nil)
		th := e.newThread(`{}`)
		r1, _ := begin(t, e, th)
		_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "second", "multitask": "interrupt"}`)
		if n := checkNative(t, evs); n.end.Status != agentstream.RunCompleted {
			t.Fatalf("second run: %+v", n.end)
		}
		if evs := readToEnd(t, r1); evs[len(evs)-1].Type != "run.cancelled" {
			t.Fatalf("the first run ended %s, want run.cancelled", evs[len(evs)-1].Type)
		}
		msgs := e.messages(th.ID)
		if len(msgs) != 4 || msgs[1].Status != agentstream.MessagePartial || msgs[3].Status != agentstream.MessageComplete {
			t.Fatalf("thread: %+v", msgs)
		}
	})
	t.Run("racing", func(t *testing.T) {
		t.Parallel()
		e := b.start(t, sim.Options{Tokens: 10}, nil)
		th := e.newThread(`{}`)
		var wg sync.WaitGroup
		statuses := make([]int, 2)
		for i := range 2 {
			wg.Go(func() {
				resp := e.do("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "race"}`)
				statuses[i] = resp.StatusCode
				_, _ = io.Copy(io.Discard, resp.Body)
			})
		}
		wg.Wait()
		ok, conflict := 0, 0
		for _, s := range statuses {
			switch s {
			case http.StatusOK:
				ok++
			case http.StatusConflict:
				conflict++
			}
		}
		// One wins; the other is refused, unless the first had already
		// ended when the second arrived.
		if ok < 1 || ok+conflict != 2 {
			t.Fatalf("statuses %v", statuses)
		}
		// With enqueue both run, one after the other.
		for i := range 2 {
			wg.Go(func() {
				_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "queued race `+strconv.Itoa(i)+`", "multitask": "enqueue"}`)
				if n := checkNative(t, evs); n.end.Status != agentstream.RunCompleted {
					t.Errorf("enqueued run: %+v", n.end)
				}
			})
		}
		wg.Wait()
	})
}

// testShutdownDrains: on shutdown new runs get 503 (and /readyz), a run
// that ends before the deadline completes, a run still going at the
// deadline ends interrupted with its partial answer saved, and every open
// stream receives its run's terminal event before the connection closes.
func testShutdownDrains(t *testing.T, b backend) {
	// "short" streams a few tokens; "long" streams three, then the model
	// stalls until the run is stopped.
	decide := func(r *sim.Request) sim.Behavior {
		if r.LastMessage().Content == "long" {
			return sim.Behavior{Fault: sim.FaultStall, FaultAfter: 3}
		}
		return sim.Behavior{Tokens: 10, Pace: 10 * time.Millisecond}
	}
	e := b.start(t, sim.Options{Decide: decide}, func(c *config.Config) {
		// Ten times what the short run has left to do, and then some.
		c.HTTP.ShutdownTimeout = 1500 * time.Millisecond
	})
	long, short, other := e.newThread(`{}`), e.newThread(`{}`), e.newThread(`{}`)
	rLong, resp := e.openStream(streamCtx(t), "POST", "/v1/threads/"+long.ID+"/runs", `{"input": "long"}`, nil)
	longFirst := readN(t, rLong, 5)
	longID := resp.Header.Get("X-Run-Id")
	rLong2, _ := e.openStream(streamCtx(t), "GET", "/v1/runs/"+longID+"/events", "", nil)
	sameEvents(t, "the long run's second reader", readN(t, rLong2, 5), longFirst)
	rShort, resp := e.openStream(streamCtx(t), "POST", "/v1/threads/"+short.ID+"/runs", `{"input": "short"}`, nil)
	shortFirst := readN(t, rShort, 3)
	shortID := resp.Header.Get("X-Run-Id")

	shut := make(chan error, 1)
	go func() { shut <- e.srv.Shutdown(context.Background()) }()
	// While draining, a new run is refused with 503 and Retry-After.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := e.do("POST", "/v1/threads/"+other.ID+"/runs", `{"input": "late"}`)
		if resp.StatusCode == http.StatusServiceUnavailable {
			if resp.Header.Get("Retry-After") == "" || errorBody(t, resp).Code != agentstream.CodeUnavailable {
				t.Fatal("503 without Retry-After or the unavailable code")
			}
			// Load balancers learn it from /readyz.
			if ready := e.do("GET", "/readyz", ""); ready.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("/readyz answers %d while draining, want 503", ready.StatusCode)
			}
			break
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if time.Now().After(deadline) {
			t.Fatalf("new runs still accepted while shutting down (status %d)", resp.StatusCode)
		}
		time.Sleep(5 * time.Millisecond)
	}
	shortRun := checkNative(t, append(shortFirst, readToEnd(t, rShort)...))
	if shortRun.end.Status != agentstream.RunCompleted {
		t.Fatalf("the run that could finish ended %+v", shortRun.end)
	}
	longRest := readToEnd(t, rLong)
	longRun := checkNative(t, append(longFirst, longRest...))
	if longRun.end.Status != agentstream.RunInterrupted || longRun.end.Error == nil || longRun.end.Error.Code != agentstream.CodeInterrupted {
		t.Fatalf("the run still going at the deadline ended %+v, want interrupted", longRun.end)
	}
	sameEvents(t, "the long run's second reader", readToEnd(t, rLong2), longRest)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	// The store holds both ends and both answers.
	st := openStore(t, e.srv.Config().DatabaseURL)
	ctx := context.Background()
	for _, c := range []struct {
		runID, threadID, text string
		status                agentstream.RunStatus
		msg                   agentstream.MessageStatus
	}{
		{shortID, short.ID, shortRun.text, agentstream.RunCompleted, agentstream.MessageComplete},
		{longID, long.ID, longRun.text, agentstream.RunInterrupted, agentstream.MessagePartial},
	} {
		run, err := st.GetRun(ctx, "local", c.runID)
		if err != nil || run.Status != c.status {
			t.Fatalf("stored run %+v, %v; want %s", run, err, c.status)
		}
		msgs, err := st.ListMessages(ctx, c.threadID)
		if err != nil || len(msgs) != 2 || msgs[1].Status != c.msg || msgs[1].Content != c.text || c.text == "" {
			t.Fatalf("stored messages of the %s run %+v, %v; want the answer %q", c.status, msgs, err, c.text)
		}
	}
}

// orphan is a run a dead process left running, with a checkpointed
// partial answer.
type orphan struct {
	thread  agentstream.Thread
	run     agentstream.Run
	partial string
}

// writeOrphan writes, straight to the store, a running run as a process
// that died would have left it: the question and a checkpointed partial
// answer. owner and leaseUntil are its lease (none without Redis).
func writeOrphan(t testing.TB, st agentstream.Store, name, owner string, leaseUntil *time.Time) orphan {
	t.Helper()
	now := time.Now().UTC()
	o := orphan{
		thread:  agentstream.Thread{ID: "thr_" + name, UserID: "local", Agent: "tester", CreatedAt: now, UpdatedAt: now},
		run:     agentstream.Run{ID: "run_" + name, ThreadID: "thr_" + name, UserID: "local", Agent: "tester", Status: agentstream.RunQueued, CreatedAt: now, Owner: owner, LeaseUntil: leaseUntil},
		partial: "half an answ",
	}
	in := agentstream.Message{ID: "msg_q_" + name, Role: agentstream.RoleUser, Content: "the question", Status: agentstream.MessageComplete, CreatedAt: now}
	partial := agentstream.Message{ID: "msg_a_" + name, Role: agentstream.RoleAssistant, Content: o.partial, Status: agentstream.MessagePartial, CreatedAt: now}
	ctx := context.Background()
	if err := st.CreateThread(ctx, o.thread); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRun(ctx, o.run, in); err != nil {
		t.Fatal(err)
	}
	if err := st.StartRun(ctx, o.run.ID, now); err != nil {
		t.Fatal(err)
	}
	if err := st.CheckpointRun(ctx, o.run.ID, []agentstream.Message{partial}); err != nil {
		t.Fatal(err)
	}
	return o
}

// checkRecovered checks, over the API, a run a dead process left running
// and a server ended: interrupted, the question and the partial answer
// kept.
func checkRecovered(t *testing.T, e *env, o orphan) {
	t.Helper()
	got := waitRunEnd(t, e, o.run.ID)
	if got.Status != agentstream.RunInterrupted || got.Error == nil || got.Error.Code != agentstream.CodeInterrupted {
		t.Fatalf("recovered run %+v", got)
	}
	msgs := e.messages(o.thread.ID)
	if len(msgs) != 2 || msgs[0].Content != "the question" || msgs[1].Content != o.partial || msgs[1].Status != agentstream.MessagePartial {
		t.Fatalf("recovered thread %+v", msgs)
	}
}

// checkInterruptedEnd checks a recovered run's terminal event as a reader
// got it, and returns its id.
func checkInterruptedEnd(t *testing.T, what string, ev sse.Event, runID string) int64 {
	t.Helper()
	var d agentstream.RunEndData
	id, err := strconv.ParseInt(ev.ID, 10, 64)
	if err == nil {
		err = json.Unmarshal([]byte(ev.Data), &d)
	}
	if err != nil || ev.Type != string(agentstream.EventRunInterrupted) || d.Status != agentstream.RunInterrupted || d.RunID != runID ||
		d.Error == nil || d.Error.Code != agentstream.CodeInterrupted {
		t.Fatalf("%s: the end is %+v, want run.interrupted of %s with an id (%v)", what, ev, runID, err)
	}
	return id
}

// testCrashRecovery: runs a process left running when it died are ended
// interrupted by the next server, keeping the question and the
// checkpointed partial answer; their readers get run.interrupted at an id
// past every id given, and 204 at it.
//
// Without Redis the server owns its store, so it interrupts them all at
// start; the log died with the process, so the end comes from the store.
// With Redis the dead instance's runs hold leases: a server ends those
// whose lease ran out (at start, or when it runs out while it serves),
// after the events the dead instance left in Redis.
func testCrashRecovery(t *testing.T, b backend) {
	svc := b.services(t)
	var cfg config.Config
	svc(&cfg)
	st := openStore(t, cfg.DatabaseURL)
	if !b.redis {
		// No server yet: a store has one server at a time.
		o := writeOrphan(t, st, "orphan", "", nil)
		other := writeOrphan(t, st, "other", "", nil)
		_ = st.Close()
		e := start(t, sim.Options{Tokens: 3}, svc)
		checkRecovered(t, e, o)

		// A client of the dead process that had event 7 resumes: the end,
		// after any id the dead process gave; the same for every reader.
		got := e.readRun(o.run.ID, "7")
		if len(got) != 2 {
			t.Fatalf("resuming the recovered run after 7: %+v", got)
		}
		end := checkInterruptedEnd(t, "after 7", got[1], o.run.ID)
		if end <= 7 {
			t.Fatalf("the end is at %d, not past the reader's 7", end)
		}
		checkRebuiltEnd(t, "after 7", got, o.partial, got[1])
		checkRebuiltEnd(t, "from the start", e.readRun(o.run.ID, ""), o.partial, got[1])
		for _, id := range []string{got[1].ID, maxID} {
			if status := e.status("GET", "/v1/runs/"+o.run.ID+"/events", map[string]string{"Last-Event-ID": id}); status != http.StatusNoContent {
				t.Fatalf("a reader at %s of the recovered run: %d, want 204", id, status)
			}
		}
		// A first reader at the largest id: nothing can come after it.
		if status := e.status("GET", "/v1/runs/"+other.run.ID+"/events", map[string]string{"Last-Event-ID": maxID}); status != http.StatusNoContent {
			t.Fatalf("a first reader at %s of a recovered run: %d, want 204", maxID, status)
		}
		got = e.readRun(other.run.ID, "")
		if len(got) != 2 {
			t.Fatalf("reading the other recovered run: %+v", got)
		}
		checkInterruptedEnd(t, "from the start", got[1], other.run.ID)
		checkRebuiltEnd(t, "from the start", got, other.partial, got[1])
		checkNewRun(t, e, o.thread.ID)
		return
	}

	// The dead instance: its runs' leases, and the events it sent Redis.
	expired := time.Now().Add(-time.Minute)
	gone := writeOrphan(t, st, "expired", "dead-instance", &expired)
	soon := time.Now().Add(time.Second)
	dying := writeOrphan(t, st, "dying", "dead-instance", &soon)
	_ = st.Close()
	dead, err := redislog.Open(context.Background(), cfg.RedisURL, redislog.Options{Prefix: cfg.EventLog.RedisPrefix, Coalesce: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dead.Close() }) // closed below, unless the test fails first
	left := map[string][]sse.Event{}
	for _, o := range []orphan{gone, dying} {
		evs := []agentstream.Event{
			agentstream.NewEvent(agentstream.EventRunCreated, agentstream.RunCreatedData{RunID: o.run.ID, ThreadID: o.thread.ID, Agent: "tester", Status: agentstream.RunRunning}),
			agentstream.NewEvent(agentstream.EventRunStarted, agentstream.RunStartedData{RunID: o.run.ID}),
		}
		for _, w := range []string{"half ", "an ", "answ"} {
			evs = append(evs, agentstream.NewEvent(agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: "msg_a_" + o.run.ID[4:], Delta: w}))
		}
		if _, err := dead.Append(context.Background(), o.run.ID, evs...); err != nil {
			t.Fatal(err)
		}
		for i, ev := range evs {
			left[o.run.ID] = append(left[o.run.ID], sse.Event{ID: strconv.Itoa(i + 1), Type: string(ev.Type), Data: string(ev.Data)})
		}
	}
	if err := dead.Close(); err != nil {
		t.Fatal(err)
	}

	e := start(t, sim.Options{Tokens: 3}, both(svc, func(c *config.Config) {
		// Short leases, so that the dying one runs out soon; renewed
		// every third of it.
		c.Runs.LeaseTTL = time.Second
	}))
	// A reader of the dying run follows it live, from the start.
	live, _ := e.openStream(streamCtx(t), "GET", "/v1/runs/"+dying.run.ID+"/events", "", nil)
	sameEvents(t, "the dying run's events", readN(t, live, 5), left[dying.run.ID])

	checkRecovered(t, e, gone)
	got := e.readRun(gone.run.ID, "")
	n := checkNative(t, got)
	sameEvents(t, "the dead instance's events", got[:5], left[gone.run.ID])
	if end := checkInterruptedEnd(t, "the expired run", n.terminal, gone.run.ID); end != 6 {
		t.Fatalf("the end is at %d, want 6: right after the dead instance's events", end)
	}
	sameEvents(t, "after 2", e.readRun(gone.run.ID, "2"), got[2:])
	for _, id := range []string{"6", "1000", maxID} {
		if status := e.status("GET", "/v1/runs/"+gone.run.ID+"/events", map[string]string{"Last-Event-ID": id}); status != http.StatusNoContent {
			t.Fatalf("a reader at %s of the recovered run: %d, want 204", id, status)
		}
	}

	// The dying run's lease runs out while its reader waits: the reader
	// gets the end.
	rest := readToEnd(t, live)
	if len(rest) != 1 || checkInterruptedEnd(t, "the dying run", rest[0], dying.run.ID) != 6 {
		t.Fatalf("the live reader of the dying run got %+v after the dead instance's events, want run.interrupted at 6", rest)
	}
	checkRecovered(t, e, dying)
	checkNewRun(t, e, gone.thread.ID)
}

// checkNewRun checks a thread takes a run that completes.
func checkNewRun(t *testing.T, e *env, threadID string) {
	t.Helper()
	_, evs := e.stream("POST", "/v1/threads/"+threadID+"/runs", `{"input": "again"}`)
	if n := checkNative(t, evs); n.end.Status != agentstream.RunCompleted {
		t.Fatalf("a new run on the recovered thread: %+v", n.end)
	}
}
