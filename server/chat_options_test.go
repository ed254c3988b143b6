package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/sim"
)

// seedEnd reads a /v1/chat stream to its end and returns its last chunk
// before {"status": "done"}.
func seedEnd(t testing.TB, r *sse.Reader) map[string]any {
	t.Helper()
	chunks := seedChunks(t, readToEnd(t, r))
	if len(chunks) < 2 || chunks[len(chunks)-1]["status"] != "done" {
		t.Fatalf("the seed stream did not end with done: %v", chunks)
	}
	return chunks[len(chunks)-2]
}

// TestChatRunOptions: /v1/chat takes multitask and on_disconnect as
// /v1/threads/{id}/runs does, validated the same way, and never as context.
func TestChatRunOptions(t *testing.T) {
	t.Parallel()
	slow := sim.Options{Tokens: 80, Pace: 5 * time.Millisecond}
	// begin starts a chat on thread and reads its first chunks.
	begin := func(t *testing.T, e *env, thread, extra string) (*sse.Reader, string, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		r, resp := e.openStream(ctx, "POST", "/v1/chat", `{"query": "first", "thread_id": "`+thread+`"`+extra+`}`, nil)
		readN(t, r, 3)
		return r, resp.Header.Get("X-Run-Id"), cancel
	}
	t.Run("reject", func(t *testing.T) {
		t.Parallel()
		e := start(t, slow, nil)
		begin(t, e, "busy", "")
		resp := e.do("POST", "/v1/chat", `{"query": "second", "thread_id": "busy"}`)
		if resp.StatusCode != http.StatusConflict || !strings.Contains(errorBody(t, resp).Message, `multitask "enqueue"`) {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("enqueue", func(t *testing.T) {
		t.Parallel()
		e := start(t, slow, nil)
		r1, first, _ := begin(t, e, "busy", "")
		r2, resp := e.openStream(context.Background(), "POST", "/v1/chat",
			`{"query": "second", "thread_id": "busy", "multitask": "enqueue", "on_disconnect": "continue", "topic": "t"}`, nil)
		if end := seedEnd(t, r2); end["complete"] != true {
			t.Fatalf("the enqueued run ended %v", end)
		}
		if end := seedEnd(t, r1); end["complete"] != true {
			t.Fatalf("the first run ended %v", end)
		}
		var got []string
		for _, m := range e.messages("busy") {
			got = append(got, string(m.Role)+":"+m.Content[:min(6, len(m.Content))])
		}
		if strings.Join(got, ",") != "user:first,assistant:[simul,user:second,assistant:[simul" {
			t.Fatalf("thread: %v", got)
		}
		// The options are not context; the other fields are.
		var runs [2]agentstream.Run
		e.json("GET", "/v1/runs/"+first, "", http.StatusOK, &runs[0])
		e.json("GET", "/v1/runs/"+resp.Header.Get("X-Run-Id"), "", http.StatusOK, &runs[1])
		if runs[0].FinishedAt == nil || runs[1].StartedAt == nil || runs[1].StartedAt.Before(*runs[0].FinishedAt) {
			t.Fatalf("the enqueued run started before the first ended: %+v, %+v", runs[0], runs[1])
		}
		if len(runs[1].Context) != 1 || runs[1].Context["topic"] != "t" {
			t.Fatalf("the enqueued run's context is %v, want only the topic", runs[1].Context)
		}
	})
	t.Run("interrupt", func(t *testing.T) {
		t.Parallel()
		e := start(t, slow, nil)
		r1, _, _ := begin(t, e, "busy", "")
		r2, resp := e.openStream(context.Background(), "POST", "/v1/chat", `{"query": "second", "thread_id": "busy", "multitask": "interrupt"}`, nil)
		if end := seedEnd(t, r2); end["complete"] != true {
			t.Fatalf("the interrupting run ended %v", end)
		}
		if end := seedEnd(t, r1); end["code"] != string(agentstream.CodeCancelled) {
			t.Fatalf("the first run ended %v, want cancelled", end)
		}
		var run agentstream.Run
		e.json("GET", "/v1/runs/"+resp.Header.Get("X-Run-Id"), "", http.StatusOK, &run)
		if len(run.Context) != 0 {
			t.Fatalf("the run's context is %v, want none", run.Context)
		}
	})
	t.Run("on_disconnect", func(t *testing.T) {
		t.Parallel()
		e := start(t, sim.Options{Tokens: 2000, Pace: 5 * time.Millisecond}, func(c *config.Config) {
			c.Runs.DisconnectGrace = 100 * time.Millisecond
		})
		_, runID, leave := begin(t, e, "leaving", `, "on_disconnect": "cancel"`)
		leave()
		if run := waitRunEnd(t, e, runID); run.Status != agentstream.RunCancelled {
			t.Fatalf("the run ended %s, want cancelled", run.Status)
		}
		var run agentstream.Run
		e.json("GET", "/v1/runs/"+runID, "", http.StatusOK, &run)
		if len(run.Context) != 0 {
			t.Fatalf("the run's context is %v, want none", run.Context)
		}
	})
	t.Run("bad values", func(t *testing.T) {
		t.Parallel()
		e := start(t, sim.Options{}, nil)
		for _, tc := range []struct{ body, want string }{
			{`"multitask": "later"`, `"multitask" must be one of reject, enqueue, interrupt, not "later"`},
			{`"on_disconnect": "later"`, `"on_disconnect" must be one of continue, cancel, not "later"`},
			{`"multitask": 5`, `"multitask" must be a string`},
			{`"on_disconnect": true`, `"on_disconnect" must be a string`},
		} {
			resp := e.do("POST", "/v1/chat", `{"query": "hi", "thread_id": "bad-options", `+tc.body+`}`)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("%s: status %d, want 400", tc.body, resp.StatusCode)
			}
			if eb := errorBody(t, resp); eb.Code != agentstream.CodeInvalidRequest || !strings.Contains(eb.Message, tc.want) {
				t.Fatalf("%s: error %+v, want %q", tc.body, eb, tc.want)
			}
		}
		if r := e.do("GET", "/v1/threads/bad-options", ""); r.StatusCode != http.StatusNotFound {
			t.Fatalf("a refused request created its thread (status %d)", r.StatusCode)
		}
		if n := len(e.sim.Requests()); n != 0 {
			t.Fatalf("refused requests reached the model %d times", n)
		}
	})
}
