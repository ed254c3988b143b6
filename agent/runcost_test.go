package agent

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/cpustat"
)

// callCounter counts the store calls a runner makes: each write method
// is one transaction on both stores, each read one query (or round trip).
type callCounter struct {
	agentstream.Store
	writes, reads atomic.Int64
}

func (s *callCounter) CreateThread(ctx context.Context, t agentstream.Thread) error {
	s.writes.Add(1)
	return s.Store.CreateThread(ctx, t)
}

func (s *callCounter) CreateRun(ctx context.Context, run agentstream.Run, input agentstream.Message, history ...agentstream.Message) (agentstream.Message, error) {
	s.writes.Add(1)
	return s.Store.CreateRun(ctx, run, input, history...)
}

func (s *callCounter) CreateRunLimited(ctx context.Context, run agentstream.Run, lim agentstream.RunLimits, input agentstream.Message, history ...agentstream.Message) (agentstream.Message, error) {
	s.writes.Add(1)
	return s.Store.CreateRunLimited(ctx, run, lim, input, history...)
}

func (s *callCounter) CreateThreadRun(ctx context.Context, t agentstream.Thread, run agentstream.Run, lim agentstream.RunLimits, input agentstream.Message, history ...agentstream.Message) (agentstream.Message, error) {
	s.writes.Add(1)
	return s.Store.CreateThreadRun(ctx, t, run, lim, input, history...)
}

func (s *callCounter) StartRun(ctx context.Context, runID string, at time.Time) error {
	s.writes.Add(1)
	return s.Store.StartRun(ctx, runID, at)
}

func (s *callCounter) CheckpointRun(ctx context.Context, runID string, msgs []agentstream.Message) error {
	s.writes.Add(1)
	return s.Store.CheckpointRun(ctx, runID, msgs)
}

func (s *callCounter) CheckpointText(ctx context.Context, runID string, m agentstream.Message, at int64) error {
	s.writes.Add(1)
	return s.Store.CheckpointText(ctx, runID, m, at)
}

func (s *callCounter) FinishRun(ctx context.Context, run agentstream.Run, msgs []agentstream.Message) error {
	s.writes.Add(1)
	return s.Store.FinishRun(ctx, run, msgs)
}

func (s *callCounter) AddUsage(ctx context.Context, userID string, at time.Time, tokens int64) error {
	s.writes.Add(1)
	return s.Store.AddUsage(ctx, userID, at, tokens)
}

func (s *callCounter) SetEndSeq(ctx context.Context, runID string, seq int64) (int64, error) {
	s.writes.Add(1)
	return s.Store.SetEndSeq(ctx, runID, seq)
}

func (s *callCounter) ListMessages(ctx context.Context, threadID string) ([]agentstream.Message, error) {
	s.reads.Add(1)
	return s.Store.ListMessages(ctx, threadID)
}

func (s *callCounter) GetThread(ctx context.Context, userID, threadID string) (agentstream.Thread, error) {
	s.reads.Add(1)
	return s.Store.GetThread(ctx, userID, threadID)
}

func (s *callCounter) Usage(ctx context.Context, userID string, at time.Time) (int64, error) {
	s.reads.Add(1)
	return s.Store.Usage(ctx, userID, at)
}

// twentyTokens is a model that answers 20 text deltas at once, as the
// `agentstream bench --tokens 20` runs of issue 15, and keeps nothing of
// its requests (the scripted fakeModel keeps them all).
type twentyTokens struct{}

var tokenTexts = func() []string {
	text := make([]string, 20)
	for i := range text {
		text[i] = fmt.Sprintf("tok%02d ", i)
	}
	return text
}()

func (twentyTokens) Stream(ctx context.Context, req agentstream.ModelRequest, onDelta func(agentstream.ModelDelta)) (agentstream.ModelResult, error) {
	if len(req.Messages) == 0 {
		return agentstream.ModelResult{}, errors.New("no messages")
	}
	var res agentstream.ModelResult
	for _, s := range tokenTexts {
		onDelta(agentstream.ModelDelta{Text: s})
		res.Content += s
	}
	res.FinishReason = "stop"
	return res, ctx.Err()
}

// BenchmarkRunCost makes short runs one after the other through a Runner
// on a real SQLite store and the in-process log, with a fake model that
// answers 20 tokens at once: what a run costs apart from the model. Each
// op is one run, started and read to its end. cpu-ns/run is the process's
// CPU time (all goroutines: runner, store, log, the reading client) per
// run; writes/run the store transactions; reads/run the store reads.
//
// "new-thread" starts each run on a new thread (the thread created by
// Start, as POST /v1/chat does); "long-thread" on a thread of 300 to 340
// messages, the history the runner kept from the thread's previous run,
// as a client that goes on with its conversation. The two should cost
// about the same: nothing a run does should grow with its thread, apart
// from giving the history to the model.
func BenchmarkRunCost(b *testing.B) {
	for _, long := range []bool{false, true} {
		name := "new-thread"
		if long {
			name = "long-thread"
		}
		b.Run(name, func(b *testing.B) {
			var cs *callCounter
			h := newHarness(b, setup{model: twentyTokens{}, wrap: func(s agentstream.Store) agentstream.Store {
				cs = &callCounter{Store: s}
				return cs
			}})
			ctx := context.Background()
			// grow makes a thread of 300 messages (one stored run brings
			// them) and makes one run on it, so that the runner knows its
			// history as it would after a run of its own.
			grow := func() agentstream.Thread {
				th := h.thread(nil)
				now := time.Now().UTC()
				run := agentstream.Run{ID: agentstream.NewID("run_"), ThreadID: th.ID, UserID: th.UserID, Agent: "assistant",
					Status: agentstream.RunRunning, CreatedAt: now, StartedAt: &now}
				var hist []agentstream.Message
				for i := range 297 {
					role := agentstream.RoleUser
					if i%2 == 1 {
						role = agentstream.RoleAssistant
					}
					hist = append(hist, agentstream.Message{ID: agentstream.NewID("msg_"), Role: role,
						Content: fmt.Sprintf("message %d of a long conversation", i), Status: agentstream.MessageComplete, CreatedAt: now})
				}
				input := agentstream.Message{ID: agentstream.NewID("msg_"), Role: agentstream.RoleUser, Content: "and?",
					Status: agentstream.MessageComplete, CreatedAt: now}
				if _, err := h.db.CreateRun(ctx, run, input, hist...); err != nil {
					b.Fatal(err)
				}
				run.Status, run.FinishedAt = agentstream.RunCompleted, &now
				answer := agentstream.Message{ID: agentstream.NewID("msg_"), Role: agentstream.RoleAssistant, Content: "so.",
					Status: agentstream.MessageComplete, CreatedAt: now}
				if err := h.db.FinishRun(ctx, run, []agentstream.Message{answer}); err != nil {
					b.Fatal(err)
				}
				h.events(h.start(th, "go on").ID)
				return th
			}
			oneRun := func(th agentstream.Thread) {
				var run agentstream.Run
				var err error
				if long {
					run, err = h.r.Start(ctx, StartRequest{Thread: th, UserID: th.UserID, Input: "go on"})
				} else {
					now := time.Now().UTC()
					nt := agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: "u1", CreatedAt: now, UpdatedAt: now}
					run, err = h.r.Start(ctx, StartRequest{Thread: nt, UserID: nt.UserID, Input: "hello", NewThread: true})
				}
				if err != nil {
					b.Fatalf("Start: %v", err)
				}
				evs := h.events(run.ID)
				if evs[len(evs)-1].Type != agentstream.EventRunCompleted {
					b.Fatalf("run ended with %v", types(evs))
				}
			}
			// Each long thread takes 20 runs: 300 to 340 messages.
			const runsPerThread = 20
			var threads []agentstream.Thread
			if long {
				for range b.N/runsPerThread + 1 {
					threads = append(threads, grow())
				}
			} else {
				oneRun(agentstream.Thread{}) // statements prepared, pools warm
			}
			runtime.GC()
			var writes, reads int64
			var cpu time.Duration
			b.ResetTimer()
			for i := range b.N {
				var th agentstream.Thread
				if long {
					th = threads[i/runsPerThread]
				}
				w0, r0, c0 := cs.writes.Load(), cs.reads.Load(), cpustat.Of(b)
				oneRun(th)
				writes += cs.writes.Load() - w0
				reads += cs.reads.Load() - r0
				cpu += cpustat.Of(b) - c0
			}
			b.StopTimer()
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/run")
			b.ReportMetric(float64(writes)/float64(b.N), "writes/run")
			b.ReportMetric(float64(reads)/float64(b.N), "reads/run")
		})
	}
}

// savesRecorder records the message IDs each CheckpointRun and FinishRun
// is given.
type savesRecorder struct {
	agentstream.Store
	mu    sync.Mutex
	saves [][]string
}

func (s *savesRecorder) record(msgs []agentstream.Message) {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	s.mu.Lock()
	s.saves = append(s.saves, ids)
	s.mu.Unlock()
}

func (s *savesRecorder) CheckpointRun(ctx context.Context, runID string, msgs []agentstream.Message) error {
	s.record(msgs)
	return s.Store.CheckpointRun(ctx, runID, msgs)
}

func (s *savesRecorder) FinishRun(ctx context.Context, run agentstream.Run, msgs []agentstream.Message) error {
	s.record(msgs)
	return s.Store.FinishRun(ctx, run, msgs)
}

// TestSavesWriteEachMessageOnce: a run of two tool turns and an answer
// saves each turn's messages at its tool boundary and only the answer at
// its end, not the whole run again each time; the thread holds them all,
// in order.
func TestSavesWriteEachMessageOnce(t *testing.T) {
	t.Parallel()
	rec := &savesRecorder{}
	h := newHarness(t, setup{script: toolTurns(), tools: []agentstream.Tool{echoTool},
		wrap: func(s agentstream.Store) agentstream.Store { rec.Store = s; return rec }})
	th := h.thread(nil)
	run := h.start(th, "go")
	end(t, h.events(run.ID), agentstream.EventRunCompleted)
	msgs := h.messages(th.ID)
	if len(msgs) != 6 {
		t.Fatalf("the thread has %d messages, want 6 (question, 2 × call and result, answer)", len(msgs))
	}
	want := [][]string{{msgs[1].ID, msgs[2].ID}, {msgs[3].ID, msgs[4].ID}, {msgs[5].ID}}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if fmt.Sprint(rec.saves) != fmt.Sprint(want) {
		t.Errorf("saves %v, want %v", rec.saves, want)
	}
	if msgs[5].Content != "done" || msgs[1].Role != agentstream.RoleAssistant || msgs[2].Role != agentstream.RoleTool {
		t.Errorf("messages: %+v", msgs)
	}
}

// TestSavesAfterAFailedCheckpoint: messages whose tool boundary's
// checkpoint failed are saved by the next save, the next boundary's or the
// run's end.
func TestSavesAfterAFailedCheckpoint(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		failAt int
		want   string // the number of messages each save was given
	}{
		{1, "[2 4 1]"}, // the first boundary's two are saved at the second
		{2, "[2 2 3]"}, // the second boundary's two are saved at the end
	} {
		t.Run(fmt.Sprint("fail checkpoint ", c.failAt), func(t *testing.T) {
			t.Parallel()
			rec := &failingCheckpoint{failAt: c.failAt}
			h := newHarness(t, setup{script: toolTurns(), tools: []agentstream.Tool{echoTool},
				wrap: func(s agentstream.Store) agentstream.Store { rec.Store = s; return rec }})
			th := h.thread(nil)
			run := h.start(th, "go")
			end(t, h.events(run.ID), agentstream.EventRunCompleted)
			msgs := h.messages(th.ID)
			if len(msgs) != 6 || msgs[5].Content != "done" {
				t.Fatalf("the thread has %d messages, want 6: %+v", len(msgs), msgs)
			}
			for i, m := range msgs {
				if m.Seq != int64(i+1) {
					t.Errorf("message %d has seq %d", i, m.Seq)
				}
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if got := fmt.Sprint(rec.sizes); got != c.want {
				t.Errorf("saves of %s messages, want %s", got, c.want)
			}
		})
	}
}

// failingCheckpoint fails the failAt-th CheckpointRun (from 1) and records
// how many messages each CheckpointRun and FinishRun is given.
type failingCheckpoint struct {
	agentstream.Store
	failAt int
	mu     sync.Mutex
	calls  int
	sizes  []int
}

func (s *failingCheckpoint) CheckpointRun(ctx context.Context, runID string, msgs []agentstream.Message) error {
	s.mu.Lock()
	s.calls++
	s.sizes = append(s.sizes, len(msgs))
	fail := s.calls == s.failAt
	s.mu.Unlock()
	if fail {
		return errors.New("the store is down")
	}
	return s.Store.CheckpointRun(ctx, runID, msgs)
}

func (s *failingCheckpoint) FinishRun(ctx context.Context, run agentstream.Run, msgs []agentstream.Message) error {
	s.mu.Lock()
	s.sizes = append(s.sizes, len(msgs))
	s.mu.Unlock()
	return s.Store.FinishRun(ctx, run, msgs)
}
