package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/tools"
)

// TestInlineDeliversTheLog: a run executed inline hands its deliver every
// event it appends after its run.created, each once, in the log's order
// and under the log's Seq, also when parallel tool calls append at once.
func TestInlineDeliversTheLog(t *testing.T) {
	t.Parallel()
	echo := tools.NewFunc("echo", "Echoes.", `{"type":"object"}`, func(_ context.Context, args json.RawMessage) (string, error) {
		return string(args), nil
	})
	var calls []fakeCall
	for i := range 6 {
		calls = append(calls, fakeCall{id: "c" + string(rune('1'+i)), name: "echo", pieces: []string{`{"n":`, string(rune('1'+i)) + "}"}})
	}
	h := newHarness(t, setup{cfg: Config{MaxParallelTools: 6}, tools: []agentstream.Tool{echo},
		script: scripted(turn{text: []string{"let me ", "see"}, calls: calls}, turn{text: []string{"all ", "done"}})})
	th := h.thread(nil)
	in := new(Inline)
	run, err := h.r.Start(t.Context(), StartRequest{Thread: th, UserID: th.UserID, Input: "go", Inline: in})
	if err != nil {
		t.Fatal(err)
	}
	if !in.Ready() {
		t.Fatal("a run that can start at once on an in-process log is not ready to run inline")
	}
	var (
		mu        sync.Mutex
		delivered []agentstream.Event
		calls1    int
	)
	in.Run(func(evs []agentstream.Event) {
		if !mu.TryLock() {
			t.Error("deliver called while another call was under way")
			mu.Lock()
		}
		defer mu.Unlock()
		if evs[0].Type == agentstream.EventToolCall || evs[0].Type == agentstream.EventToolResult {
			// Long enough for the other calls' events to come meanwhile.
			time.Sleep(2 * time.Millisecond)
		}
		calls1++
		delivered = append(delivered, evs...)
	})
	logged := h.events(run.ID)
	end(t, logged, agentstream.EventRunCompleted)
	if len(delivered) != len(logged)-1 || calls1 == 0 {
		t.Fatalf("delivered %d events (%v), the log holds %d (%v)", len(delivered), types(delivered), len(logged), types(logged))
	}
	if logged[0].Type != agentstream.EventRunCreated {
		t.Fatalf("the log starts with %s", logged[0].Type)
	}
	for i, ev := range delivered {
		want := logged[i+1]
		if ev.Seq != want.Seq || ev.Type != want.Type || !bytes.Equal(ev.Data, want.Data) {
			t.Fatalf("delivered event %d is %d %s %s; the log's is %d %s %s", i, ev.Seq, ev.Type, ev.Data, want.Seq, want.Type, want.Data)
		}
	}
	if n := count(delivered, agentstream.EventToolResult); n != 6 {
		t.Fatalf("%d tool results delivered, want 6", n)
	}
	if got := h.stored(run.ID); got.Status != agentstream.RunCompleted {
		t.Fatalf("stored run %+v", got)
	}
}

// notReadable is an event log that hands events to readers after Append
// returns, as a shared log may: runs on it are never inline.
type notReadable struct{ agentstream.EventLog }

// TestInlineNotReady: a run that waits in the queue, or whose log does not
// hand events to readers on Append, is not ready to run inline; a worker
// executes it, as any other.
func TestInlineNotReady(t *testing.T) {
	t.Parallel()
	t.Run("shared log", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, setup{wrapLog: func(l agentstream.EventLog) agentstream.EventLog { return notReadable{l} }})
		run, in := startInline(t, h)
		if in.Ready() {
			t.Fatal("ready to run inline on a log that is not ReadableOnAppend")
		}
		end(t, h.events(run.ID), agentstream.EventRunCompleted)
	})
	t.Run("queued", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		h := newHarness(t, setup{cfg: Config{MaxConcurrentRuns: 1},
			script: scripted(turn{text: []string{"busy"}, wait: release}, turn{text: []string{"second"}})})
		busy := h.start(h.thread(nil), "first")
		h.model.waitStreamed(t, 1)
		run, in := startInline(t, h)
		if in.Ready() {
			t.Fatal("a queued run is ready to run inline")
		}
		close(release)
		end(t, h.events(busy.ID), agentstream.EventRunCompleted)
		end(t, h.events(run.ID), agentstream.EventRunCompleted)
	})
}

// startInline starts a run on a new thread asking for it to run inline.
func startInline(t *testing.T, h *harness) (agentstream.Run, *Inline) {
	t.Helper()
	th := h.thread(nil)
	in := new(Inline)
	run, err := h.r.Start(t.Context(), StartRequest{Thread: th, UserID: th.UserID, Input: "go", Inline: in})
	if err != nil {
		t.Fatal(err)
	}
	return run, in
}
