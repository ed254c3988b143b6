package server_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/sim"
)

// TestStepEvents: each model call of a real run is a step in the native
// stream: step.started before the call's deltas, step.completed after
// them with the simulator's finish_reason ("tool_calls" for the call that
// asks for the tool, "stop" for the answer) and the call's usage; the
// seed stream shows none of it.
func TestStepEvents(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 5}, nil)
	th := e.newThread(`{}`)
	_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "What is the current_time?"}`)
	n := checkNative(t, evs)
	if n.end.Status != agentstream.RunCompleted || len(n.toolCalls) != 1 {
		t.Fatalf("run ended %+v with %d tool calls, want completed with one", n.end, len(n.toolCalls))
	}
	type step struct {
		started   agentstream.StepStartedData
		completed *agentstream.StepCompletedData
		deltas    int
	}
	var steps []*step
	var cur *step
	for _, ev := range evs {
		switch agentstream.EventType(ev.Type) {
		case agentstream.EventStepStarted:
			if cur != nil && cur.completed == nil {
				t.Fatalf("step.started before the step before it completed: %v", evs)
			}
			cur = &step{}
			steps = append(steps, cur)
			decodeData(t, ev, &cur.started)
		case agentstream.EventStepCompleted:
			if cur == nil || cur.completed != nil {
				t.Fatalf("step.completed without its step.started: %v", evs)
			}
			cur.completed = &agentstream.StepCompletedData{}
			decodeData(t, ev, cur.completed)
		case agentstream.EventMessageDelta, agentstream.EventToolArgumentsDelta:
			if cur == nil || cur.completed != nil {
				t.Fatalf("%s outside a step: %v", ev.Type, evs)
			}
			cur.deltas++
			if ev.Type == string(agentstream.EventMessageDelta) {
				var d agentstream.MessageDeltaData
				decodeData(t, ev, &d)
				if d.MessageID != cur.started.MessageID {
					t.Fatalf("delta of message %s in the step of message %s", d.MessageID, cur.started.MessageID)
				}
			}
		}
	}
	wantFinish := []string{"tool_calls", "stop"}
	if len(steps) != len(wantFinish) {
		t.Fatalf("%d steps, want %d: %v", len(steps), len(wantFinish), evs)
	}
	var usage agentstream.Usage
	for i, s := range steps {
		c := s.completed
		if s.started.Step != i+1 || c == nil || c.Step != i+1 || c.MessageID != s.started.MessageID || s.deltas == 0 {
			t.Fatalf("step %d: %+v, completed %+v, %d deltas", i+1, s.started, c, s.deltas)
		}
		if c.FinishReason != wantFinish[i] || c.Usage == nil || c.Usage.OutputTokens == 0 {
			t.Fatalf("step %d completed %+v (usage %v), want finish_reason %q and its usage", i+1, c, c.Usage, wantFinish[i])
		}
		usage = usage.Add(*c.Usage)
	}
	if usage != n.end.Usage {
		t.Fatalf("steps' usage adds to %+v, the run's is %+v", usage, n.end.Usage)
	}
}

func decodeData(t testing.TB, ev sse.Event, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(ev.Data), v); err != nil {
		t.Fatalf("%s data %q: %v", ev.Type, ev.Data, err)
	}
}

// TestEventsFormatSeed: GET /v1/runs/{id}/events?format=seed is the
// stream /v1/chat gave, resumable from any event id (the native
// stream's): the chunks after it, with the whole answer in the final
// chunk; the position rules are the native ones; an unknown format is a
// 400 that names the known ones.
func TestEventsFormatSeed(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 10}, nil)
	resp, chat := e.stream("POST", "/v1/chat", `{"query": "What is the current_time?", "thread_id": "fmt-seed"}`)
	runID := resp.Header.Get("X-Run-Id")
	chunks := seedChunks(t, chat)
	if len(chunks) < 5 || chunks[len(chunks)-1]["status"] != "done" {
		t.Fatalf("chat chunks %v", chunks)
	}
	final := chunks[len(chunks)-2]
	answer, _ := final["response"].(string)
	if answer == "" {
		t.Fatalf("final chunk %v", final)
	}
	path := "/v1/runs/" + runID + "/events"

	// From the start: the chat's chunks, but that the thread is named by
	// its key, as in X-Thread-Id (the run names it so).
	r, resp := e.openStream(streamCtx(t), "GET", path+"?format=seed", "", nil)
	key := resp.Header.Get("X-Thread-Id")
	if resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("X-Run-Id") != runID || !strings.HasPrefix(key, "thr_") {
		t.Fatalf("headers %v", resp.Header)
	}
	final["thread_id"] = key
	if got := seedChunks(t, readToEnd(t, r)); !sameJSON(got, chunks) {
		t.Fatalf("?format=seed from the start:\n%v\nwant the chat's\n%v", got, chunks)
	}

	// Resumed after each event the native stream numbers: the chunks of
	// the events after it, and the whole answer at the end.
	_, native := e.stream("GET", path, "")
	checkNative(t, native)
	for _, ev := range native[:len(native)-1] {
		var want []map[string]any
		for _, later := range native {
			if id, _ := strconv.Atoi(later.ID); id <= mustAtoi(t, ev.ID) {
				continue
			}
			switch agentstream.EventType(later.Type) {
			case agentstream.EventMessageDelta:
				var d agentstream.MessageDeltaData
				decodeData(t, later, &d)
				want = append(want, map[string]any{"delta": d.Delta, "complete": false})
			case agentstream.EventToolCall, agentstream.EventToolResult:
				status := "start"
				if later.Type == string(agentstream.EventToolResult) {
					status = "end"
				}
				want = append(want, map[string]any{"tool": "current_time", "status": status})
			}
		}
		want = append(want, final, map[string]any{"status": "done"})
		r, _ := e.openStream(streamCtx(t), "GET", path+"?format=seed", "", map[string]string{"Last-Event-ID": ev.ID})
		if got := seedChunks(t, readToEnd(t, r)); !sameJSON(got, want) {
			t.Fatalf("?format=seed after %s (%s):\n%v\nwant\n%v", ev.ID, ev.Type, got, want)
		}
	}

	last := native[len(native)-1].ID
	if status := e.status("GET", path+"?format=seed", map[string]string{"Last-Event-ID": last}); status != http.StatusNoContent {
		t.Fatalf("a seed reader at the terminal event: %d, want 204", status)
	}
	for _, q := range []string{"?format=xml", "?format=", "?format=NATIVE"} {
		resp := e.request("GET", path+q, "", nil)
		if q == "?format=" {
			// Empty is the default, native.
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d", q, resp.StatusCode)
			}
			continue
		}
		if e := errorBody(t, resp); resp.StatusCode != http.StatusBadRequest || e.Code != agentstream.CodeInvalidRequest ||
			!strings.Contains(e.Message, "native") || !strings.Contains(e.Message, "openai") || !strings.Contains(e.Message, "seed") {
			t.Fatalf("%s: %d %+v, want 400 naming the formats", q, resp.StatusCode, e)
		}
	}
	// A bad position is refused whatever the format.
	resp = e.request("GET", path+"?format=seed", "", map[string]string{"Last-Event-ID": "x"})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("Last-Event-ID x: %d", resp.StatusCode)
	}
}

func mustAtoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("id %q: %v", s, err)
	}
	return n
}

// sameJSON compares decoded chunks as JSON.
func sameJSON(a, b []map[string]any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}
