package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/tools"
)

// countingStore counts the reads of threads' messages.
type countingStore struct {
	agentstream.Store
	lists atomic.Int64
}

func (s *countingStore) ListMessages(ctx context.Context, threadID string) ([]agentstream.Message, error) {
	s.lists.Add(1)
	return s.Store.ListMessages(ctx, threadID)
}

// checkHistories checks that the first model request of each run was the
// thread's stored history up to that run's input, as a read of the store
// would have made it. firsts are the indexes of those requests in
// h.model.requests(), inputs the runs' inputs.
func checkHistories(t *testing.T, h *harness, threadID string, firsts []int, inputs []string) {
	t.Helper()
	stored := h.messages(threadID)
	reqs := h.model.requests()
	for k, input := range inputs {
		var upTo []agentstream.Message
		for _, m := range stored {
			upTo = append(upTo, m)
			if m.Role == agentstream.RoleUser && m.Content == input {
				break
			}
		}
		want := modelInput("You help.", upTo, 0)
		got := reqs[firsts[k]].Messages
		if g, w := sent(got), sent(want); g != w {
			t.Errorf("run %d (%q) started from\n%s\nwant (from the store)\n%s", k+1, input, g, w)
		}
	}
}

// sent renders what the model is sent of each message.
func sent(msgs []agentstream.Message) string {
	var s string
	for _, m := range msgs {
		calls, _ := json.Marshal(m.ToolCalls)
		s += fmt.Sprintf("  %s %q calls=%s tool_call_id=%q\n", m.Role, m.Content, calls, m.ToolCallID)
	}
	return s
}

// TestHistoryCache runs four turns of a conversation on one runner: a
// first run with a tool call, a plain one, one that fails after part of
// its answer, and a last one. None reads the thread back from the store,
// and each starts from exactly the history a read would have given.
func TestHistoryCache(t *testing.T) {
	t.Parallel()
	echo := tools.NewFunc("echo", "Echoes.", `{"type":"object"}`, func(_ context.Context, a json.RawMessage) (string, error) {
		return "echo:" + string(a), nil
	})
	store := &countingStore{}
	h := newHarness(t, setup{
		tools: []agentstream.Tool{echo},
		wrap:  func(s agentstream.Store) agentstream.Store { store.Store = s; return store },
		script: scripted(
			turn{calls: []fakeCall{{id: "call_1", name: "echo", pieces: []string{`{"x":1}`}}, {id: "call_2", name: "echo", pieces: []string{`{}`}}}},
			turn{text: []string{"First ", "answer."}},
			turn{text: []string{"Second."}},
			turn{text: []string{"Third, cut"}, err: agentstream.Errorf(agentstream.CodeUpstream, "model stream ended early")},
			turn{text: []string{"Fourth."}},
		),
	})
	th := h.thread(nil)
	inputs := []string{"one", "two", "three", "four"}
	var status []agentstream.RunStatus
	for _, input := range inputs {
		run := h.start(th, input)
		h.events(run.ID)
		status = append(status, h.stored(run.ID).Status)
	}
	if want := []agentstream.RunStatus{agentstream.RunCompleted, agentstream.RunCompleted, agentstream.RunFailed, agentstream.RunCompleted}; fmt.Sprint(status) != fmt.Sprint(want) {
		t.Errorf("runs ended %v, want %v", status, want)
	}
	if n := store.lists.Load(); n != 0 {
		t.Errorf("the thread was read from the store %d times, want 0", n)
	}
	checkHistories(t, h, th.ID, []int{0, 2, 3, 4}, inputs)
}

// TestHistoryCacheOtherInstance: a run made by another runner (another
// instance on the same store) makes this runner's cached history stale;
// its next run reads the store, and starts from the right history.
func TestHistoryCacheOtherInstance(t *testing.T) {
	t.Parallel()
	storeA := &countingStore{}
	h := newHarness(t, setup{wrap: func(s agentstream.Store) agentstream.Store { storeA.Store = s; return storeA }})
	storeB := &countingStore{Store: h.db}
	b, err := New(Config{DefaultModel: "test-model"}, Deps{Store: storeB, Log: h.log, Model: h.model,
		Agents: []agentstream.Agent{{Name: "assistant", Instructions: "You help."}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		_ = b.Shutdown(ctx)
	})
	th := h.thread(nil)
	runOn := func(r *Runner, input string) {
		t.Helper()
		run, err := r.Start(context.Background(), StartRequest{Thread: th, UserID: th.UserID, Input: input})
		if err != nil {
			t.Fatal(err)
		}
		h.events(run.ID)
		// The run's runner forgets it once its terminal event is out.
		eventually(t, "the run to be forgotten", func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.threads[th.ID] == nil
		})
	}
	runOn(h.r, "one")  // Seq 1: nothing to read
	runOn(h.r, "two")  // A's own history
	runOn(b, "three")  // B never saw the thread: reads it
	runOn(h.r, "four") // A's history is two messages short: reads it
	if a, bl := storeA.lists.Load(), storeB.lists.Load(); a != 1 || bl != 1 {
		t.Errorf("reads of the thread: A %d, B %d; want 1 and 1", a, bl)
	}
	checkHistories(t, h, th.ID, []int{0, 1, 2, 3}, []string{"one", "two", "three", "four"})
}

// TestHistoriesBounds: a thread too large is not kept, and the cache holds
// at most maxCachedThreads threads.
func TestHistoriesBounds(t *testing.T) {
	t.Parallel()
	h := newHistories(time.Now)
	msg := func(seq int64, content string) agentstream.Message {
		return agentstream.Message{Seq: seq, Role: agentstream.RoleUser, Content: content}
	}
	h.put("small", []agentstream.Message{msg(1, "hi"), msg(2, "there")})
	if got, ok := h.get("small", msg(3, "next")); !ok || len(got) != 3 || got[2].Content != "next" {
		t.Errorf("get after put: %v, %v", got, ok)
	}
	if _, ok := h.get("small", msg(4, "gap")); ok {
		t.Error("a history of the wrong length was used")
	}
	h.put("small", []agentstream.Message{msg(1, string(make([]byte, maxCachedHistoryBytes+1)))})
	if _, ok := h.get("small", msg(2, "next")); ok {
		t.Error("a history over maxCachedHistoryBytes was kept")
	}
	h.put("long", make([]agentstream.Message, maxCachedMessages+1))
	if _, ok := h.get("long", msg(maxCachedMessages+2, "next")); ok {
		t.Error("a history over maxCachedMessages was kept")
	}
	for i := range maxCachedThreads + 10 {
		h.put(fmt.Sprint("t", i), []agentstream.Message{msg(1, "x")})
	}
	if n := len(h.m); n != maxCachedThreads {
		t.Errorf("%d threads kept, want %d", n, maxCachedThreads)
	}
	if got, ok := h.get("never", msg(1, "first")); !ok || len(got) != 1 {
		t.Errorf("a first message needs no history: %v, %v", got, ok)
	}
}

// TestHistoriesTotalBound: long histories are kept (a thread of 340
// messages, as in issue 15's runs), and together they stay within
// maxCachedBytes, the oldest or any others making room.
func TestHistoriesTotalBound(t *testing.T) {
	t.Parallel()
	h := newHistories(time.Now)
	long := func(n int) []agentstream.Message {
		msgs := make([]agentstream.Message, n)
		for i := range msgs {
			msgs[i] = agentstream.Message{Seq: int64(i + 1), Role: agentstream.RoleUser, Content: "a message of a long conversation, about a hundred bytes long, as a short answer would be....."}
		}
		return msgs
	}
	h.put("long", long(340))
	if got, ok := h.get("long", agentstream.Message{Seq: 341, Content: "next"}); !ok || len(got) != 341 {
		t.Fatalf("a thread of 340 messages was not kept: %d, %v", len(got), ok)
	}
	big := long(maxCachedHistoryBytes / (messageOverhead + 100)) // just under a thread's bound
	for i := range 40 {
		h.put(fmt.Sprint("big", i), big)
		sum := 0
		for _, e := range h.m {
			sum += e.size
		}
		if sum != h.bytes || h.bytes > maxCachedBytes {
			t.Fatalf("after %d puts: %d bytes kept (counted %d), bound %d", i+1, sum, h.bytes, maxCachedBytes)
		}
	}
	// Sixteen just-under-a-sixteenth histories and the long one fit; a
	// full cache evicts entries at random, the long one among them, until
	// the new one fits: 15 to 17 are left, never fewer (over-eviction).
	if n := len(h.m); n < 15 || n > 17 {
		t.Errorf("%d histories of a sixteenth of the bound kept, want 15 to 17", n)
	}
	h.put("big0", long(2)) // replaced: its size is counted once
	h.drop("big39")
	sum := 0
	for _, e := range h.m {
		sum += e.size
	}
	if sum != h.bytes {
		t.Errorf("%d bytes counted, %d kept", h.bytes, sum)
	}
}

// TestHistoriesExpire: a cached history older than historyTTL is not
// used (it may belong to a thread deleted and made again while this
// instance missed the notice), and put starts its time anew.
func TestHistoriesExpire(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h := newHistories(func() time.Time { return now })
	msg := func(seq int64, content string) agentstream.Message {
		return agentstream.Message{Seq: seq, Role: agentstream.RoleUser, Content: content}
	}
	h.put("t", []agentstream.Message{msg(1, "old"), msg(2, "answer")})
	now = now.Add(historyTTL - time.Second)
	if _, ok := h.get("t", msg(3, "next")); !ok {
		t.Fatal("a history younger than historyTTL was not used")
	}
	now = now.Add(time.Second)
	if got, ok := h.get("t", msg(3, "next")); ok {
		t.Fatalf("a history historyTTL old was used: %v", got)
	}
	h.put("t", []agentstream.Message{msg(1, "new"), msg(2, "answer")})
	if got, ok := h.get("t", msg(3, "next")); !ok || got[0].Content != "new" {
		t.Errorf("a history put again: %v, %v", got, ok)
	}
}

// TestForgetThread: after ForgetThread (the thread was deleted, here or
// on another instance) the next run on that key reads its history from
// the store, not the runner's cache of the deleted thread.
func TestForgetThread(t *testing.T) {
	t.Parallel()
	store := &countingStore{}
	h := newHarness(t, setup{wrap: func(s agentstream.Store) agentstream.Store { store.Store = s; return store }})
	th := h.thread(nil)
	runOn := func(input string) {
		t.Helper()
		h.events(h.start(th, input).ID)
		eventually(t, "the run to be forgotten", func() bool {
			h.r.mu.Lock()
			defer h.r.mu.Unlock()
			return h.r.threads[th.ID] == nil
		})
	}
	runOn("one")
	runOn("two")
	if n := store.lists.Load(); n != 0 {
		t.Fatalf("the thread was read %d times before ForgetThread, want 0", n)
	}
	h.r.ForgetThread(th.ID)
	runOn("three")
	if n := store.lists.Load(); n != 1 {
		t.Errorf("the thread was read %d times after ForgetThread, want 1", n)
	}
	checkHistories(t, h, th.ID, []int{0, 1, 2}, []string{"one", "two", "three"})
}

// startCounter counts StartRun calls.
type startCounter struct {
	agentstream.Store
	starts atomic.Int64
}

func (s *startCounter) StartRun(ctx context.Context, runID string, at time.Time) error {
	s.starts.Add(1)
	return s.Store.StartRun(ctx, runID, at)
}

// TestStartedAtOnce: a run that finds a free worker is saved as running
// when it is created (no StartRun); one that must wait is saved as queued
// and started later; a refused run gives its worker back.
func TestStartedAtOnce(t *testing.T) {
	t.Parallel()
	store := &startCounter{}
	release := make(chan struct{})
	h := newHarness(t, setup{
		cfg:    Config{MaxConcurrentRuns: 1},
		wrap:   func(s agentstream.Store) agentstream.Store { store.Store = s; return store },
		script: scripted(turn{text: []string{"first"}, wait: release}, turn{text: []string{"second"}}),
	})
	th, other := h.thread(nil), h.thread(nil)
	first := h.start(th, "one")
	if first.Status != agentstream.RunRunning || first.StartedAt == nil || !first.StartedAt.Equal(first.CreatedAt) {
		t.Fatalf("a run with a free worker: %s, started %v, created %v", first.Status, first.StartedAt, first.CreatedAt)
	}
	h.model.waitStreamed(t, 1)
	if got := h.stored(first.ID); got.Status != agentstream.RunRunning || got.StartedAt == nil {
		t.Fatalf("stored %s, started %v", got.Status, got.StartedAt)
	}
	// The thread is busy: refused, and the worker is not kept.
	if _, err := h.r.Start(context.Background(), StartRequest{Thread: th, UserID: th.UserID, Input: "again"}); !errors.Is(err, agentstream.ErrConflict) {
		t.Fatalf("a second run on a busy thread: %v", err)
	}
	// The only worker is busy: the next run queues and is started later.
	second := h.start(other, "two")
	if second.Status != agentstream.RunQueued || second.StartedAt != nil {
		t.Fatalf("a run without a free worker: %s, started %v", second.Status, second.StartedAt)
	}
	close(release)
	for _, run := range []agentstream.Run{first, second} {
		evs := h.events(run.ID)
		if want := []agentstream.EventType{agentstream.EventRunCreated}; types(evs)[0] != want[0] || count(evs, agentstream.EventRunStarted) != 1 {
			t.Errorf("run %s events %v", run.ID, types(evs))
		}
		if got := h.stored(run.ID); got.Status != agentstream.RunCompleted {
			t.Errorf("run %s ended %s", run.ID, got.Status)
		}
	}
	if n := store.starts.Load(); n != 1 {
		t.Errorf("StartRun called %d times, want 1 (the queued run only)", n)
	}
	eventually(t, "the pool to empty", func() bool { r, q := h.r.Load(); return r == 0 && q == 0 })
}

// TestStartedAtOnceRefused: a run that took a free worker and is then
// refused (the thread is busy) gives the worker back.
func TestStartedAtOnceRefused(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h := newHarness(t, setup{cfg: Config{MaxConcurrentRuns: 2}, script: scripted(turn{text: []string{"a"}, wait: release})})
	th := h.thread(nil)
	first := h.start(th, "one")
	h.model.waitStreamed(t, 1)
	if _, err := h.r.Start(context.Background(), StartRequest{Thread: th, UserID: th.UserID, Input: "again"}); !errors.Is(err, agentstream.ErrConflict) {
		t.Fatalf("a second run on a busy thread: %v", err)
	}
	if r, q := h.r.Load(); r != 1 || q != 0 {
		t.Fatalf("load %d running, %d queued after the refusal; want 1, 0", r, q)
	}
	close(release)
	h.events(first.ID)
	eventually(t, "the pool to empty", func() bool { r, q := h.r.Load(); return r == 0 && q == 0 })
}

// checkpointFails fails every checkpoint; finishFails every FinishRun.
type checkpointFails struct{ agentstream.Store }

func (s checkpointFails) CheckpointRun(context.Context, string, []agentstream.Message) error {
	return errors.New("disk full")
}

func (s checkpointFails) CheckpointText(context.Context, string, agentstream.Message, int64) error {
	return errors.New("disk full")
}

type finishFails struct{ agentstream.Store }

func (s finishFails) FinishRun(context.Context, agentstream.Run, []agentstream.Message) error {
	return errors.New("disk full")
}

// TestHistoryNotKept: a thread's history is kept only when the run's
// messages are known to be stored as the runner has them: not when
// FinishRun failed (the store may hold a partial answer of the same count)
// nor when a checkpoint failed (a later one may have stored the messages
// in another order).
func TestHistoryNotKept(t *testing.T) {
	t.Parallel()
	echo := tools.NewFunc("echo", "Echoes.", `{"type":"object"}`, func(_ context.Context, a json.RawMessage) (string, error) {
		return string(a), nil
	})
	toolTurn := scripted(turn{calls: []fakeCall{{id: "call_1", name: "echo", pieces: []string{`{}`}}}}, turn{text: []string{"done"}})
	for _, tc := range []struct {
		name string
		wrap func(agentstream.Store) agentstream.Store
		keep bool
	}{
		{"stored", nil, true},
		{"FinishRun fails", func(s agentstream.Store) agentstream.Store { return finishFails{s} }, false},
		{"a checkpoint fails", func(s agentstream.Store) agentstream.Store { return checkpointFails{s} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A failing FinishRun is retried for FinalizeTimeout.
			h := newHarness(t, setup{wrap: tc.wrap, tools: []agentstream.Tool{echo}, script: toolTurn,
				cfg: Config{FinalizeTimeout: 200 * time.Millisecond}})
			th := h.thread(nil)
			run := h.start(th, "one")
			h.events(run.ID)
			eventually(t, "the run to be forgotten", func() bool { return !h.r.Cancel(run.ID) })
			h.r.histories.mu.Lock()
			_, kept := h.r.histories.m[th.ID]
			h.r.histories.mu.Unlock()
			if kept != tc.keep {
				t.Errorf("history kept: %v, want %v", kept, tc.keep)
			}
		})
	}
}

// TestQueuedWhenWaiting: a run that may wait for its thread's active run
// (multitask enqueue or interrupt) is saved as queued and started by
// StartRun, even with a worker free.
func TestQueuedWhenWaiting(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{MultitaskEnqueue, MultitaskInterrupt} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			store := &startCounter{}
			h := newHarness(t, setup{wrap: func(s agentstream.Store) agentstream.Store { store.Store = s; return store }})
			th := h.thread(nil)
			run, err := h.r.Start(context.Background(), StartRequest{Thread: th, UserID: th.UserID, Input: "hi", Multitask: mode})
			if err != nil {
				t.Fatal(err)
			}
			if run.Status != agentstream.RunQueued {
				t.Errorf("created %s, want queued", run.Status)
			}
			h.events(run.ID)
			if n := store.starts.Load(); n != 1 {
				t.Errorf("StartRun called %d times, want 1", n)
			}
		})
	}
}
