package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/sim"
)

// testNativeStream: a run streamed in the native format over real HTTP,
// against the simulator over real HTTP, then read back from the store.
// Part of TestLifecycle.
func testNativeStream(t *testing.T, b backend) {
	e := b.start(t, sim.Options{Tokens: 25}, nil)
	th := e.newThread(`{"title": "first", "metadata": {"k": "v"}}`)
	if th.Agent != "tester" || th.Title != "first" || th.Metadata["k"] != "v" || !strings.HasPrefix(th.ID, "thr_") {
		t.Fatalf("thread: %+v", th)
	}
	resp, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hello there", "context": {"topic": "greetings"}}`)
	for h, want := range map[string]string{"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Thread-Id": th.ID} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	n := checkNative(t, evs)
	if evs[0].Type != "run.created" || evs[1].Type != "run.started" || n.terminal.Type != "run.completed" {
		t.Fatalf("events: %v", evs)
	}
	if len(n.completed) != 1 {
		t.Fatalf("%d completed messages, want 1", len(n.completed))
	}
	if !strings.HasPrefix(n.text, sim.Prefix) || len(sim.Split(n.text)) != 25 {
		t.Fatalf("streamed text %q: want 25 simulated tokens", n.text)
	}
	if n.end.Usage.OutputTokens != 25 || n.end.Usage.InputTokens == 0 {
		t.Fatalf("usage %+v", n.end.Usage)
	}

	// The store matches what was streamed.
	msgs := e.messages(th.ID)
	if len(msgs) != 2 || msgs[0].Role != "user" || msgs[0].Content != "hello there" ||
		msgs[1].Role != "assistant" || msgs[1].Content != n.text || msgs[1].Status != "complete" ||
		msgs[0].Seq != 1 || msgs[1].Seq != 2 || msgs[1].RunID != n.runID {
		t.Fatalf("stored messages: %+v", msgs)
	}
	var run agentstream.Run
	e.json("GET", "/v1/runs/"+n.runID, "", http.StatusOK, &run)
	if run.Status != agentstream.RunCompleted || run.Usage != n.end.Usage || run.StartedAt == nil || run.FinishedAt == nil ||
		run.Context["topic"] != "greetings" {
		t.Fatalf("stored run: %+v", run)
	}
	// The instructions were rendered with the run's context.
	reqs := e.sim.Requests()
	if len(reqs) != 1 || reqs[0].Messages[0].Role != "system" || reqs[0].Messages[0].Content != "You test things. Topic: greetings." {
		t.Fatalf("model input: %+v", reqs)
	}
	var got agentstream.Thread
	e.json("GET", "/v1/threads/"+th.ID, "", http.StatusOK, &got)
	if got.ID != th.ID || !got.UpdatedAt.After(th.CreatedAt) {
		t.Fatalf("thread after the run: %+v", got)
	}
}

// TestSeedContract: POST /v1/chat answers exactly as the original Django
// view did, tool start/end included.
func TestSeedContract(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 10}, nil)
	resp, evs := e.stream("POST", "/v1/chat", `{
		"query": "My last period started 2026-06-01: what is my due_date?",
		"agent": "pregnancy-companion", "pregnancy_week": 12, "baby_name": "Hana", "thread_id": "seed-thread-1"}`)
	chunks := seedChunks(t, evs)
	if len(chunks) < 5 {
		t.Fatalf("chunks: %v", chunks)
	}
	if chunks[0]["tool"] != "due_date" || chunks[0]["status"] != "start" || chunks[1]["tool"] != "due_date" || chunks[1]["status"] != "end" {
		t.Fatalf("tool start/end: %v", chunks[:2])
	}
	var answer strings.Builder
	for _, c := range chunks[2 : len(chunks)-2] {
		d, ok := c["delta"].(string)
		if !ok || c["complete"] != false || len(c) != 2 {
			t.Fatalf("delta chunk %v", c)
		}
		answer.WriteString(d)
	}
	final, done := chunks[len(chunks)-2], chunks[len(chunks)-1]
	if final["response"] != answer.String() || final["complete"] != true || final["thread_id"] != "seed-thread-1" {
		t.Fatalf("final chunk %v, deltas joined %q", final, answer.String())
	}
	if len(done) != 1 || done["status"] != "done" {
		t.Fatalf("last chunk %v", done)
	}
	// The due date the tool computed reached the answer.
	if !strings.Contains(answer.String(), "2027-03-08") {
		t.Fatalf("answer %q lacks the due date", answer.String())
	}
	if resp.Header.Get("X-Thread-Id") != "seed-thread-1" {
		t.Fatalf("X-Thread-Id %q", resp.Header.Get("X-Thread-Id"))
	}
	// Every other field became the run's context: the instructions say so.
	system := e.sim.Requests()[0].Messages[0].Content
	if !strings.Contains(system, "week 12 of pregnancy") || !strings.Contains(system, "name is Hana") {
		t.Fatalf("instructions not rendered with the context: %q", system)
	}
	// The client-named thread now holds the exchange, tool call included.
	msgs := e.messages("seed-thread-1")
	roles := make([]string, len(msgs))
	for i, m := range msgs {
		roles[i] = string(m.Role)
	}
	if strings.Join(roles, ",") != "user,assistant,tool,assistant" || msgs[3].Content != answer.String() ||
		msgs[1].ToolCalls[0].Name != "due_date" || msgs[2].ToolCallID != msgs[1].ToolCalls[0].ID {
		t.Fatalf("stored: %+v", msgs)
	}

	// A second question in the same thread carries on the conversation.
	_, evs = e.stream("POST", "/v1/chat", `{"query": "thanks", "thread_id": "seed-thread-1", "agent": "pregnancy-companion"}`)
	chunks = seedChunks(t, evs)
	if chunks[len(chunks)-2]["complete"] != true {
		t.Fatalf("second exchange: %v", chunks)
	}
	if got := len(e.messages("seed-thread-1")); got != 6 {
		t.Fatalf("%d messages after two exchanges, want 6", got)
	}
}

// TestSeedErrorChunk: a failed run ends the seed stream with
// {"error": …} then {"status": "done"}.
func TestSeedErrorChunk(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Fault: sim.Fault500}, func(c *config.Config) { c.OpenAI.MaxRetries = intPtr(0) })
	_, evs := e.stream("POST", "/v1/chat", `{"query": "hi"}`)
	chunks := seedChunks(t, evs)
	if len(chunks) != 2 || chunks[1]["status"] != "done" {
		t.Fatalf("chunks %v", chunks)
	}
	if msg, _ := chunks[0]["error"].(string); !strings.Contains(msg, "500") {
		t.Fatalf("error chunk %v", chunks[0])
	}
}

// testSecondRunSendsHistory: the model sees the thread's earlier
// exchange. Part of TestLifecycle.
func testSecondRunSendsHistory(t *testing.T, b backend) {
	e := b.start(t, sim.Options{Tokens: 5}, nil)
	th := e.newThread(`{}`)
	_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "first question"}`)
	first := checkNative(t, evs)
	_, evs = e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "second question"}`)
	checkNative(t, evs)

	reqs := e.sim.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d model calls", len(reqs))
	}
	var got []string
	for _, m := range reqs[1].Messages {
		got = append(got, m.Role+": "+m.Content)
	}
	want := []string{"system: You test things.", "user: first question", "assistant: " + first.text, "user: second question"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("second model call got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// testToolCallStored: a streamed run with a tool call is stored as
// streamed: the question, the call, its result and the answer, and the
// run with its usage. Part of TestLifecycle.
func testToolCallStored(t *testing.T, b backend) {
	e := b.start(t, sim.Options{}, nil)
	th := e.newThread(`{}`)
	_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "What is the current_time?"}`)
	run := checkNative(t, evs)
	if run.end.Status != agentstream.RunCompleted || len(run.toolCalls) != 1 || len(run.results) != 1 {
		t.Fatalf("run ended %+v after %d tool calls and %d results, want one of each", run.end, len(run.toolCalls), len(run.results))
	}
	msgs := e.messages(th.ID)
	if len(msgs) != 4 || msgs[0].Role != agentstream.RoleUser || len(msgs[1].ToolCalls) != 1 || msgs[1].ToolCalls[0].ID != run.toolCalls[0].CallID ||
		msgs[2].ToolCallID != run.toolCalls[0].CallID || msgs[2].Content != run.results[0].Output || msgs[3].Content != run.text {
		t.Fatalf("stored: %+v", msgs)
	}
	var got agentstream.Run
	e.json("GET", "/v1/runs/"+run.runID, "", http.StatusOK, &got)
	if got.Status != agentstream.RunCompleted || got.Usage.OutputTokens == 0 || got.Usage != run.end.Usage {
		t.Fatalf("run %+v, streamed usage %+v", got, run.end.Usage)
	}
}

// TestToolLoop covers the tool loop: arguments split across many chunks,
// parallel calls, a failing tool, invalid arguments and max_turns.
func TestToolLoop(t *testing.T) {
	t.Parallel()
	afterTools := func(r *sim.Request) bool { return r.LastMessage().Role == "tool" }
	tests := []struct {
		name   string
		decide func(r *sim.Request) sim.Behavior
		check  func(t *testing.T, n nativeRun, msgs []agentstream.Message)
	}{
		{
			name: "split arguments",
			decide: func(r *sim.Request) sim.Behavior {
				if afterTools(r) {
					return sim.Behavior{}
				}
				return sim.Behavior{ArgChunk: 2, ToolCalls: []sim.ToolCallSpec{{Name: "current_time", Arguments: `{"timezone": "Asia/Seoul"}`}}}
			},
			check: func(t *testing.T, n nativeRun, msgs []agentstream.Message) {
				deltas := 0
				for _, ev := range n.events {
					if ev.Type == "tool.arguments.delta" {
						deltas++
					}
				}
				if deltas < 10 {
					t.Fatalf("%d argument deltas, want the arguments split across many", deltas)
				}
				call := n.toolCalls[0]
				if n.argDeltas[call.CallID] != `{"timezone": "Asia/Seoul"}` || string(call.Arguments) != `{"timezone":"Asia/Seoul"}` {
					t.Fatalf("arguments: deltas %q, call %s", n.argDeltas[call.CallID], call.Arguments)
				}
				if r := n.results[0]; r.IsError || !strings.Contains(r.Output, "+09:00") {
					t.Fatalf("result %+v", r)
				}
				if n.end.Status != agentstream.RunCompleted || !strings.Contains(n.text, "+09:00") {
					t.Fatalf("end %+v text %q", n.end, n.text)
				}
			},
		},
		{
			name: "parallel calls",
			decide: func(r *sim.Request) sim.Behavior {
				if afterTools(r) {
					return sim.Behavior{}
				}
				return sim.Behavior{ToolCalls: []sim.ToolCallSpec{
					{Name: "due_date", Arguments: `{"last_period": "2026-09-01"}`},
					{Name: "current_time", Arguments: `{}`},
				}}
			},
			check: func(t *testing.T, n nativeRun, msgs []agentstream.Message) {
				if len(n.toolCalls) != 2 || len(n.results) != 2 {
					t.Fatalf("calls %d results %d", len(n.toolCalls), len(n.results))
				}
				for _, r := range n.results {
					if r.IsError {
						t.Fatalf("result %+v", r)
					}
				}
				// Stored in call order: assistant, due_date result, current_time result, answer.
				if len(msgs) != 5 || msgs[2].ToolName != "due_date" || msgs[3].ToolName != "current_time" ||
					msgs[2].ToolCallID != msgs[1].ToolCalls[0].ID || msgs[3].ToolCallID != msgs[1].ToolCalls[1].ID {
					t.Fatalf("stored %+v", msgs)
				}
				if !strings.Contains(msgs[4].Content, "2027-06-08") {
					t.Fatalf("answer %q lacks the due_date output", msgs[4].Content)
				}
			},
		},
		{
			name: "tool error",
			decide: func(r *sim.Request) sim.Behavior {
				if afterTools(r) {
					return sim.Behavior{}
				}
				return sim.Behavior{ToolCalls: []sim.ToolCallSpec{{Name: "due_date", Arguments: `{"last_period": "2099-01-01"}`}}}
			},
			check: func(t *testing.T, n nativeRun, msgs []agentstream.Message) {
				if r := n.results[0]; !r.IsError || !strings.Contains(r.Output, "in the future") {
					t.Fatalf("result %+v", r)
				}
				// The model got the error as the tool's output and answered.
				if n.end.Status != agentstream.RunCompleted || !strings.Contains(n.text, "in the future") {
					t.Fatalf("end %+v text %q", n.end, n.text)
				}
			},
		},
		{
			name: "invalid arguments",
			decide: func(r *sim.Request) sim.Behavior {
				if afterTools(r) {
					return sim.Behavior{}
				}
				return sim.Behavior{ToolCalls: []sim.ToolCallSpec{{Name: "due_date", Arguments: `{"last_period": `}}}
			},
			check: func(t *testing.T, n nativeRun, msgs []agentstream.Message) {
				var s string
				if err := json.Unmarshal(n.toolCalls[0].Arguments, &s); err != nil || s != `{"last_period": ` {
					t.Fatalf("tool.call arguments %s: want the model's text as a JSON string", n.toolCalls[0].Arguments)
				}
				if r := n.results[0]; !r.IsError || !strings.Contains(r.Output, "not valid JSON") {
					t.Fatalf("result %+v", r)
				}
				if n.end.Status != agentstream.RunCompleted || msgs[1].ToolCalls[0].Arguments != `{"last_period": ` {
					t.Fatalf("end %+v, stored %+v", n.end, msgs)
				}
			},
		},
		{
			name: "unknown tool",
			decide: func(r *sim.Request) sim.Behavior {
				if afterTools(r) {
					return sim.Behavior{}
				}
				return sim.Behavior{ToolCalls: []sim.ToolCallSpec{{Name: "launch_rockets", Arguments: `{}`}}}
			},
			check: func(t *testing.T, n nativeRun, msgs []agentstream.Message) {
				if r := n.results[0]; !r.IsError || !strings.Contains(r.Output, `no tool named "launch_rockets"`) {
					t.Fatalf("result %+v", r)
				}
			},
		},
		{
			name: "max turns",
			decide: func(r *sim.Request) sim.Behavior {
				return sim.Behavior{ToolCalls: []sim.ToolCallSpec{{Name: "current_time", Arguments: `{}`}}}
			},
			check: func(t *testing.T, n nativeRun, msgs []agentstream.Message) {
				if n.end.Status != agentstream.RunFailed || n.end.Error == nil || n.end.Error.Code != agentstream.CodeMaxTurns ||
					!strings.Contains(n.end.Error.Message, "max_turns is 3") {
					t.Fatalf("end %+v", n.end)
				}
				if len(n.toolCalls) != 3 {
					t.Fatalf("%d tool calls, want 3 (one per turn)", len(n.toolCalls))
				}
				// Every turn's exchange is kept: user + 3 × (assistant, tool).
				if len(msgs) != 7 {
					t.Fatalf("%d stored messages", len(msgs))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, sim.Options{Tokens: 5, Decide: tt.decide}, nil)
			th := e.newThread(`{}`)
			_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "go"}`)
			n := checkNative(t, evs)
			tt.check(t, n, e.messages(th.ID))
		})
	}
}

// TestUpstreamFaults: a 500 before the first token is retried then fails
// the run cleanly; a cut mid-stream fails it with the partial answer kept.
func TestUpstreamFaults(t *testing.T) {
	t.Parallel()
	t.Run("500 before the first token", func(t *testing.T) {
		t.Parallel()
		e := start(t, sim.Options{Fault: sim.Fault500}, func(c *config.Config) { c.OpenAI.MaxRetries = intPtr(2) })
		th := e.newThread(`{}`)
		_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi"}`)
		n := checkNative(t, evs)
		if got := len(e.sim.Requests()); got != 3 {
			t.Fatalf("the model was called %d times, want 3 (2 retries)", got)
		}
		if n.end.Status != agentstream.RunFailed || n.end.Error.Code != agentstream.CodeUpstream || !strings.Contains(n.end.Error.Message, "500") {
			t.Fatalf("end %+v", n.end)
		}
		msgs := e.messages(th.ID)
		if len(msgs) != 1 || msgs[0].Content != "hi" {
			t.Fatalf("stored %+v: want the question kept and nothing else", msgs)
		}
	})
	t.Run("500 then success", func(t *testing.T) {
		t.Parallel()
		e := start(t, sim.Options{Fault: sim.Fault500, FailFirst: 1, Tokens: 4}, nil)
		th := e.newThread(`{}`)
		_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi"}`)
		if n := checkNative(t, evs); n.end.Status != agentstream.RunCompleted {
			t.Fatalf("end %+v", n.end)
		}
	})
	t.Run("cut mid-stream", func(t *testing.T) {
		t.Parallel()
		e := start(t, sim.Options{Fault: sim.FaultCut, FaultAfter: 6, Tokens: 20}, nil)
		th := e.newThread(`{}`)
		_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi"}`)
		n := checkNative(t, evs)
		if n.end.Status != agentstream.RunFailed || n.end.Error.Code != agentstream.CodeUpstream {
			t.Fatalf("end %+v", n.end)
		}
		if got := len(sim.Split(n.text)); got != 6 {
			t.Fatalf("streamed %d tokens before the cut, want 6", got)
		}
		msgs := e.messages(th.ID)
		if len(msgs) != 2 || msgs[1].Status != agentstream.MessagePartial || msgs[1].Content != n.text {
			t.Fatalf("stored %+v: want the partial answer %q", msgs, n.text)
		}
		var run agentstream.Run
		e.json("GET", "/v1/runs/"+n.runID, "", http.StatusOK, &run)
		if run.Status != agentstream.RunFailed || run.Error == nil || run.Error.Code != agentstream.CodeUpstream {
			t.Fatalf("run %+v", run)
		}
	})
}

// TestWorkerPool: with 2 running and a queue of 1, a fourth concurrent
// request gets 429 with Retry-After, and the third waits in the queue.
func TestWorkerPool(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 30, Pace: 20 * time.Millisecond}, func(c *config.Config) {
		c.Runs.MaxConcurrent, c.Runs.MaxQueued = 2, intPtr(1)
	})
	threads := make([]agentstream.Thread, 4)
	for i := range threads {
		threads[i] = e.newThread(`{}`)
	}
	var wg sync.WaitGroup
	results := make([]nativeRun, 3)
	for i := range 2 {
		wg.Go(func() {
			_, evs := e.stream("POST", "/v1/threads/"+threads[i].ID+"/runs", `{"input": "hi"}`)
			results[i] = checkNative(t, evs)
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.sim.WaitActive(ctx, 2); err != nil {
		t.Fatalf("two runs never reached the model: %v", err)
	}
	wg.Go(func() {
		_, evs := e.stream("POST", "/v1/threads/"+threads[2].ID+"/runs", `{"input": "hi"}`)
		results[2] = checkNative(t, evs)
	})
	// Wait until the third is queued, then the fourth is refused.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, queued := e.srv.Load(); queued == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the third run was never queued")
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp := e.do("POST", "/v1/threads/"+threads[3].ID+"/runs", `{"input": "hi"}`)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("fourth request: status %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if errorBody(t, resp).Code != agentstream.CodeOverloaded {
		t.Fatal("fourth request: wrong code")
	}
	wg.Wait()
	for i, r := range results {
		if r.end.Status != agentstream.RunCompleted {
			t.Fatalf("run %d: %+v", i, r.end)
		}
	}
	// The queued run said where it stood.
	if results[2].events[1].Type != "run.queued" || results[2].events[1].Data != `{"position":1}` {
		t.Fatalf("queued run's events: %v", results[2].events[:3])
	}
	if msgs := e.messages(threads[3].ID); len(msgs) != 0 {
		t.Fatalf("the refused request wrote %d messages", len(msgs))
	}
}

// TestBadInput: each bad request gets the JSON error body and writes nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{}, func(c *config.Config) { c.HTTP.MaxBodyBytes = 4096 })
	th := e.newThread(`{}`)
	big := `{"query": "` + strings.Repeat("x", 5000) + `"}`
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     agentstream.Code
		want                     string
	}{
		{"chat malformed", "POST", "/v1/chat", `{"query": "hi",`, 400, agentstream.CodeInvalidRequest, "malformed JSON"},
		{"chat missing query", "POST", "/v1/chat", `{"thread_id": "t-new-1"}`, 400, agentstream.CodeInvalidRequest, `"query" is required`},
		{"chat empty query", "POST", "/v1/chat", `{"query": "  ", "thread_id": "t-new-2"}`, 400, agentstream.CodeInvalidRequest, `"query" is empty`},
		{"chat query not a string", "POST", "/v1/chat", `{"query": 5, "thread_id": "t-new-3"}`, 400, agentstream.CodeInvalidRequest, `"query" must be a string`},
		{"chat unknown agent", "POST", "/v1/chat", `{"query": "hi", "agent": "nobody", "thread_id": "t-new-4"}`, 400, agentstream.CodeInvalidRequest, `unknown agent "nobody"`},
		{"chat oversized", "POST", "/v1/chat", big, 413, agentstream.CodeTooLarge, "larger than 4096 bytes"},
		{"run malformed", "POST", "/v1/threads/" + th.ID + "/runs", `{"input": `, 400, agentstream.CodeInvalidRequest, "malformed JSON"},
		{"run missing input", "POST", "/v1/threads/" + th.ID + "/runs", `{}`, 400, agentstream.CodeInvalidRequest, `"input" is required`},
		{"run unknown field", "POST", "/v1/threads/" + th.ID + "/runs", `{"input": "x", "agnet": "y"}`, 400, agentstream.CodeInvalidRequest, `unknown field "agnet"`},
		{"run unknown agent", "POST", "/v1/threads/" + th.ID + "/runs", `{"input": "x", "agent": "nobody"}`, 400, agentstream.CodeInvalidRequest, `unknown agent "nobody"`},
		{"run bad on_disconnect", "POST", "/v1/threads/" + th.ID + "/runs", `{"input": "hi", "on_disconnect": "later"}`, 400, agentstream.CodeInvalidRequest, `"on_disconnect" must be one of`},
		{"run oversized", "POST", "/v1/threads/" + th.ID + "/runs", strings.Replace(big, "query", "input", 1), 413, agentstream.CodeTooLarge, "larger than"},
		{"run unknown thread", "POST", "/v1/threads/thr_nope/runs", `{"input": "x"}`, 404, agentstream.CodeNotFound, "not found"},
		{"thread unknown agent", "POST", "/v1/threads", `{"agent": "nobody"}`, 400, agentstream.CodeInvalidRequest, `unknown agent "nobody"`},
		{"thread bad metadata", "POST", "/v1/threads", `{"metadata": [1]}`, 400, agentstream.CodeInvalidRequest, `"metadata" must be an object`},
		{"unknown thread", "GET", "/v1/threads/thr_nope", "", 404, agentstream.CodeNotFound, "not found"},
		{"unknown run", "GET", "/v1/runs/run_nope", "", 404, agentstream.CodeNotFound, "not found"},
		{"unknown route", "GET", "/v2/anything", "", 404, agentstream.CodeNotFound, "no route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(tt.method, tt.path, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if eb := errorBody(t, resp); eb.Code != tt.code || !strings.Contains(eb.Message, tt.want) {
				t.Fatalf("error %+v, want code %s and a message with %q", eb, tt.code, tt.want)
			}
		})
	}
	// Nothing was written: no model call, the thread is empty, and no
	// thread was created under the ids the bad chat requests named.
	if n := len(e.sim.Requests()); n != 0 {
		t.Fatalf("bad input reached the model %d times", n)
	}
	if msgs := e.messages(th.ID); len(msgs) != 0 {
		t.Fatalf("bad input wrote %d messages", len(msgs))
	}
	for i := 1; i <= 4; i++ {
		resp := e.do("GET", fmt.Sprintf("/v1/threads/t-new-%d", i), "")
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("thread t-new-%d exists after a bad request", i)
		}
	}
}

// TestHeartbeat: comment lines keep a silent stream alive.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 3, TTFT: 400 * time.Millisecond}, func(c *config.Config) { c.HTTP.Heartbeat = 50 * time.Millisecond })
	th := e.newThread(`{}`)
	resp := e.do("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi"}`)
	b := new(strings.Builder)
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if !strings.HasPrefix(b.String(), ": ok\n\n") {
		t.Fatalf("stream does not open with a comment: %q", b.String()[:20])
	}
	if got := strings.Count(b.String(), ": heartbeat\n\n"); got < 3 {
		t.Fatalf("%d heartbeats during 400ms of silence at a 50ms interval", got)
	}
}

// TestSeedStreamHasOnlyDataLines: the seed's clients may parse every
// non-empty line as data, so that stream carries no comments, not even
// heartbeats during a silence.
func TestSeedStreamHasOnlyDataLines(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 3, TTFT: 200 * time.Millisecond}, func(c *config.Config) { c.HTTP.Heartbeat = 20 * time.Millisecond })
	resp := e.do("POST", "/v1/chat", `{"query": "hi"}`)
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" {
			continue
		}
		lines++
		if !strings.HasPrefix(line, "data: {") {
			t.Fatalf("line %q in the seed stream", line)
		}
	}
	if lines != 5 { // 3 deltas, the response, done
		t.Fatalf("%d lines: %s", lines, body)
	}
}

// TestChatRefusedWritesNothing: a /v1/chat request refused for lack of
// capacity does not create the thread it names, and a thread of another
// user's id is never revealed.
func TestChatRefusedWritesNothing(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 40, Pace: 20 * time.Millisecond}, func(c *config.Config) {
		c.Runs.MaxConcurrent, c.Runs.MaxQueued = 1, intPtr(0)
	})
	var wg sync.WaitGroup
	wg.Go(func() { e.stream("POST", "/v1/chat", `{"query": "one", "thread_id": "busy-1"}`) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.sim.WaitActive(ctx, 1); err != nil {
		t.Fatal(err)
	}
	resp := e.do("POST", "/v1/chat", `{"query": "two", "thread_id": "refused-1"}`)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", resp.StatusCode)
	}
	if r := e.do("GET", "/v1/threads/refused-1", ""); r.StatusCode != http.StatusNotFound {
		t.Fatalf("the refused request created its thread (status %d)", r.StatusCode)
	}
	wg.Wait()
}

// TestDebugAddr: with debug_addr set, the profiler answers there, and not
// on the API's address.
func TestDebugAddr(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{}, func(c *config.Config) { c.DebugAddr = "127.0.0.1:0" })
	resp := e.do("GET", "/debug/pprof/", "")
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("the API serves the profiler")
	}
	resp, err := http.Get("http://" + e.srv.DebugAddr() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("profiler: %d %.100s", resp.StatusCode, body)
	}
}
