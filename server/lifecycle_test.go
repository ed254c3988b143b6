package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/sim"
	"github.com/agentstream/agentstream/sqlite"
)

// openStream starts a request and returns a reader of its SSE answer; the
// request ends with cancel.
func (e *env) openStream(ctx context.Context, method, path, body string, header map[string]string) (*sse.Reader, *http.Response) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	e.t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("%s %s: status %d: %s", method, path, resp.StatusCode, b)
	}
	return sse.NewReader(resp.Body), resp
}

func readN(t testing.TB, r *sse.Reader, n int) []sse.Event {
	t.Helper()
	var evs []sse.Event
	for len(evs) < n {
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("after %d events: %v", len(evs), err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func readToEnd(t testing.TB, r *sse.Reader) []sse.Event {
	t.Helper()
	var evs []sse.Event
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return evs
		}
		if err != nil {
			t.Fatalf("after %d events: %v", len(evs), err)
		}
		evs = append(evs, ev)
	}
}

// TestResume: read half a run, drop the connection, come back with
// Last-Event-ID: nothing twice, nothing missing, the text equals the
// stored answer.
func TestResume(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 40, Pace: 5 * time.Millisecond}, nil)
	th := e.newThread(`{}`)
	ctx, cancel := context.WithCancel(context.Background())
	r, resp := e.openStream(ctx, "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi"}`, nil)
	first := readN(t, r, 12)
	cancel() // the connection drops mid-run
	runID := resp.Header.Get("X-Run-Id")

	r2, _ := e.openStream(context.Background(), "GET", "/v1/runs/"+runID+"/events", "", map[string]string{"Last-Event-ID": first[len(first)-1].ID})
	rest := readToEnd(t, r2)
	n := checkNative(t, append(first, rest...))
	if n.end.Status != agentstream.RunCompleted {
		t.Fatalf("end %+v", n.end)
	}
	msgs := e.messages(th.ID)
	if msgs[len(msgs)-1].Content != n.text || len(sim.Split(n.text)) != 40 {
		t.Fatalf("joined text %q, stored %q", n.text, msgs[len(msgs)-1].Content)
	}
	// ?after=N reads the same as Last-Event-ID: N; no position reads all.
	r3, _ := e.openStream(context.Background(), "GET", "/v1/runs/"+runID+"/events?after=5", "", nil)
	if evs := readToEnd(t, r3); evs[0].ID != "6" || len(evs) != len(n.events)-5 {
		t.Fatalf("?after=5: first id %s, %d events", evs[0].ID, len(evs))
	}
	r4, _ := e.openStream(context.Background(), "GET", "/v1/runs/"+runID+"/events", "", nil)
	if evs := readToEnd(t, r4); len(evs) != len(n.events) {
		t.Fatalf("from the start: %d events, want %d", len(evs), len(n.events))
	}
	for _, bad := range []string{"?after=x", "?after=-1"} {
		resp := e.do("GET", "/v1/runs/"+runID+"/events"+bad, "")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(errorBody(t, resp).Message, "event id") {
			t.Fatalf("%s: status %d", bad, resp.StatusCode)
		}
	}
}

// TestEvictedLogAnsweredFromStore: once a finished run's events are gone
// from the log, reading them is answered from the store.
func TestEvictedLogAnsweredFromStore(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 5}, func(c *config.Config) { c.EventLog.Retention = time.Millisecond })
	th := e.newThread(`{}`)
	_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi"}`)
	n := checkNative(t, evs)
	time.Sleep(50 * time.Millisecond) // let the retention pass
	r, _ := e.openStream(context.Background(), "GET", "/v1/runs/"+n.runID+"/events", "", map[string]string{"Last-Event-ID": "3"})
	got := readToEnd(t, r)
	// The answer has no id of its own (the reader keeps 3); the terminal
	// event has the id it had in the log.
	if len(got) != 2 || got[0].Type != "message.completed" || got[1].Type != "run.completed" || got[0].ID != "" ||
		got[1].ID != evs[len(evs)-1].ID {
		t.Fatalf("from the store: %+v, want the answer without an id, then the end at id %s", got, evs[len(evs)-1].ID)
	}
	// At or past the end: 204, also without the log.
	for _, id := range []string{evs[len(evs)-1].ID, "1000"} {
		if status := e.status("GET", "/v1/runs/"+n.runID+"/events", map[string]string{"Last-Event-ID": id}); status != http.StatusNoContent {
			t.Fatalf("reader at %s after the log's retention: %d, want 204", id, status)
		}
	}
	if !strings.Contains(got[0].Data, strconv.Quote(n.text)[1:len(strconv.Quote(n.text))-1]) {
		t.Fatalf("message.completed %s lacks the answer %q", got[0].Data, n.text)
	}
}

// TestCancelFromAnotherConnection: a cancel sent on its own connection
// ends both streams with run.cancelled; the partial answer is stored.
func TestCancelFromAnotherConnection(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 500, Pace: 10 * time.Millisecond}, nil)
	th := e.newThread(`{}`)
	r1, resp := e.openStream(context.Background(), "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi"}`, nil)
	runID := resp.Header.Get("X-Run-Id")
	readN(t, r1, 5)
	r2, _ := e.openStream(context.Background(), "GET", "/v1/runs/"+runID+"/events", "", nil)
	readN(t, r2, 5)

	var run agentstream.Run
	e.json("POST", "/v1/runs/"+runID+"/cancel", "", http.StatusOK, &run)
	if run.Status != agentstream.RunCancelled || run.Error == nil || run.Error.Code != agentstream.CodeCancelled {
		t.Fatalf("cancel answered %+v", run)
	}
	for i, r := range []*sse.Reader{r1, r2} {
		evs := readToEnd(t, r)
		if last := evs[len(evs)-1]; last.Type != "run.cancelled" {
			t.Fatalf("stream %d ended with %s", i, last.Type)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.sim.WaitActive(ctx, 0); err != nil {
		t.Fatalf("the upstream request is still open: %v", err)
	}
	msgs := e.messages(th.ID)
	if len(msgs) != 2 || msgs[1].Status != agentstream.MessagePartial || !strings.HasPrefix(msgs[1].Content, sim.Prefix) {
		t.Fatalf("stored %+v", msgs)
	}
	resp2 := e.do("POST", "/v1/runs/"+runID+"/cancel", "")
	if resp2.StatusCode != http.StatusConflict {
		t.Fatalf("cancelling an ended run: status %d", resp2.StatusCode)
	}
}

// TestDisconnect: with continue the run completes and is stored; with
// cancel the model request is closed within a second.
func TestDisconnect(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{"continue", "cancel"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			e := start(t, sim.Options{Tokens: 60, Pace: 5 * time.Millisecond}, nil)
			th := e.newThread(`{}`)
			ctx, cancel := context.WithCancel(context.Background())
			r, resp := e.openStream(ctx, "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi", "on_disconnect": "`+policy+`"}`, nil)
			runID := resp.Header.Get("X-Run-Id")
			readN(t, r, 5)
			cancel()
			wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer wcancel()
			if policy == "cancel" {
				closed := time.Now()
				if err := e.sim.WaitCanceled(wctx, 1); err != nil {
					t.Fatalf("the simulator never saw its request closed: %v", err)
				}
				if d := time.Since(closed); d > time.Second {
					t.Fatalf("the upstream request closed %s after the client left", d)
				}
			}
			// Either way the run ends and is saved.
			r2, _ := e.openStream(context.Background(), "GET", "/v1/runs/"+runID+"/events", "", nil)
			n := checkNative(t, readToEnd(t, r2))
			want := map[string]agentstream.RunStatus{"continue": agentstream.RunCompleted, "cancel": agentstream.RunCancelled}[policy]
			if n.end.Status != want {
				t.Fatalf("run ended %s, want %s", n.end.Status, want)
			}
			if policy == "continue" && e.messages(th.ID)[1].Content != n.text {
				t.Fatal("the finished run's answer is not stored")
			}
		})
	}
	e := start(t, sim.Options{}, nil)
	th := e.newThread(`{}`)
	resp := e.do("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi", "on_disconnect": "later"}`)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(errorBody(t, resp).Message, `"on_disconnect" must be one of`) {
		t.Fatalf("bad on_disconnect: status %d", resp.StatusCode)
	}
}

// TestMultitask: reject, enqueue and interrupt, and two requests racing.
func TestMultitask(t *testing.T) {
	t.Parallel()
	slow := sim.Options{Tokens: 80, Pace: 5 * time.Millisecond}
	begin := func(t *testing.T, e *env, th agentstream.Thread) (*sse.Reader, string) {
		r, resp := e.openStream(context.Background(), "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "first"}`, nil)
		readN(t, r, 3)
		return r, resp.Header.Get("X-Run-Id")
	}
	t.Run("reject", func(t *testing.T) {
		t.Parallel()
		e := start(t, slow, nil)
		th := e.newThread(`{}`)
		begin(t, e, th)
		resp := e.do("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "second", "multitask": "reject"}`)
		if resp.StatusCode != http.StatusConflict || errorBody(t, resp).Code != agentstream.CodeConflict {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("enqueue", func(t *testing.T) {
		t.Parallel()
		e := start(t, slow, nil)
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
		e := start(t, slow, nil)
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
		e := start(t, sim.Options{Tokens: 10}, nil)
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

// TestRestartInterruptsOrphans: a run a dead process left running is
// interrupted when the server starts, keeping the question and the
// checkpointed partial answer.
func TestRestartInterruptsOrphans(t *testing.T) {
	t.Parallel()
	// No server yet: the file has one owner at a time.
	dbPath := t.TempDir() + "/agentstream.db"
	// Simulate a crash: a running run with a checkpoint, written straight
	// to the store as a dying process would have left it.
	st, err := sqlite.Open(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	th := agentstream.Thread{ID: "thr_orphan", UserID: "local", Agent: "tester", CreatedAt: time.Now(), UpdatedAt: time.Now()}
	run := agentstream.Run{ID: "run_orphan", ThreadID: th.ID, UserID: "local", Agent: "tester", Status: agentstream.RunQueued, CreatedAt: time.Now()}
	in := agentstream.Message{ID: "msg_q", Role: agentstream.RoleUser, Content: "the question", Status: agentstream.MessageComplete, CreatedAt: time.Now()}
	partial := agentstream.Message{ID: "msg_a", Role: agentstream.RoleAssistant, Content: "half an answ", Status: agentstream.MessagePartial, CreatedAt: time.Now()}
	ctx := context.Background()
	if err := st.CreateThread(ctx, th); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRun(ctx, run, in); err != nil {
		t.Fatal(err)
	}
	if err := st.StartRun(ctx, run.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := st.CheckpointRun(ctx, run.ID, []agentstream.Message{partial}); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()

	// A server starting on that store recovers the run.
	e2 := start(t, sim.Options{Tokens: 3}, func(c *config.Config) { c.DatabaseURL = dbPath })
	var got agentstream.Run
	e2.json("GET", "/v1/runs/run_orphan", "", http.StatusOK, &got)
	if got.Status != agentstream.RunInterrupted || got.Error == nil || got.Error.Code != agentstream.CodeInterrupted {
		t.Fatalf("recovered run %+v", got)
	}
	msgs := e2.messages(th.ID)
	if len(msgs) != 2 || msgs[0].Content != "the question" || msgs[1].Content != "half an answ" || msgs[1].Status != agentstream.MessagePartial {
		t.Fatalf("recovered thread %+v", msgs)
	}
	// Reading its events answers from the store, and the thread takes runs.
	r, _ := e2.openStream(ctx, "GET", "/v1/runs/run_orphan/events", "", nil)
	if evs := readToEnd(t, r); evs[len(evs)-1].Type != "run.interrupted" {
		t.Fatalf("events of the recovered run: %+v", evs)
	}
	_, evs := e2.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "again"}`)
	if n := checkNative(t, evs); n.end.Status != agentstream.RunCompleted {
		t.Fatalf("a new run on the recovered thread: %+v", n.end)
	}
}

// TestShutdownDrains: on shutdown new runs get 503, a run still going at
// the deadline ends interrupted with its partial answer saved, and its
// open stream receives run.interrupted before the connection closes.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 2000, Pace: 5 * time.Millisecond}, func(c *config.Config) {
		c.HTTP.ShutdownTimeout = 300 * time.Millisecond
	})
	th, other := e.newThread(`{}`), e.newThread(`{}`)
	r, resp := e.openStream(context.Background(), "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "long"}`, nil)
	readN(t, r, 5)
	runID := resp.Header.Get("X-Run-Id")

	shut := make(chan error, 1)
	go func() { shut <- e.srv.Shutdown(context.Background()) }()
	// While draining, a new run is refused with 503 and Retry-After.
	deadline := time.Now().Add(5 * time.Second)
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
	evs := readToEnd(t, r)
	if last := evs[len(evs)-1]; last.Type != "run.interrupted" {
		t.Fatalf("the stream ended with %s, want run.interrupted", last.Type)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// The store holds the interrupted run and its partial answer.
	st, err := sqlite.Open(context.Background(), e.srv.Config().DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	run, err := st.GetRun(context.Background(), "local", runID)
	if err != nil || run.Status != agentstream.RunInterrupted {
		t.Fatalf("stored run %+v, %v", run, err)
	}
	msgs, err := st.ListMessages(context.Background(), th.ID)
	if err != nil || len(msgs) != 2 || msgs[1].Status != agentstream.MessagePartial || msgs[1].Content == "" {
		t.Fatalf("stored messages %+v, %v", msgs, err)
	}
}

// TestResumeFromDroppedEvents: a reader asking for events the log dropped
// to stay within event_log.max_run_bytes gets 410 and the code
// events_gone; one resuming from a kept position reads on.
func TestResumeFromDroppedEvents(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 400, Pace: 5 * time.Millisecond}, func(c *config.Config) { c.EventLog.MaxRunBytes = 4096 })
	th := e.newThread(`{}`)
	r, resp := e.openStream(context.Background(), "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "long"}`, nil)
	evs := readN(t, r, 100)
	runID := resp.Header.Get("X-Run-Id")
	gone := e.do("GET", "/v1/runs/"+runID+"/events?after=1", "")
	if gone.StatusCode != http.StatusGone || errorBody(t, gone).Code != agentstream.CodeGone {
		t.Fatalf("status %d, want 410 events_gone", gone.StatusCode)
	}
	r2, _ := e.openStream(context.Background(), "GET", "/v1/runs/"+runID+"/events", "", map[string]string{"Last-Event-ID": evs[len(evs)-1].ID})
	rest := readToEnd(t, r2)
	if rest[0].ID != strconv.Itoa(len(evs)+1) || rest[len(rest)-1].Type != "run.completed" {
		t.Fatalf("resuming from a kept position: first id %s, last %s", rest[0].ID, rest[len(rest)-1].Type)
	}
}
