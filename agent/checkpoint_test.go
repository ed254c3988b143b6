package agent

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/agentstream/agentstream"
)

// TestIntervalCheckpoint: while an answer streams, what has arrived is
// saved as a partial message every CheckpointInterval (here: every delta),
// and the final save replaces it with the whole answer.
func TestIntervalCheckpoint(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h := newHarness(t, setup{
		cfg:    Config{CheckpointInterval: 1},
		script: scripted(turn{text: []string{"one ", "two ", "three"}, wait: release}),
	})
	th := h.thread(nil)
	run := h.start(th, "go")
	eventually(t, "the streaming answer is checkpointed", func() bool {
		msgs := h.messages(th.ID)
		return len(msgs) == 2 && msgs[1].Status == agentstream.MessagePartial && msgs[1].Content == "one two three"
	})
	if got := h.stored(run.ID).Status; got != agentstream.RunRunning {
		t.Fatalf("run %s while its answer streams", got)
	}
	close(release)
	h.waitEvents(run.ID, "the terminal event", func(evs []agentstream.Event) bool {
		return len(evs) > 0 && evs[len(evs)-1].Type.Terminal()
	})
	msgs := h.messages(th.ID)
	if len(msgs) != 2 || msgs[1].Status != agentstream.MessageComplete || msgs[1].Content != "one two three" {
		t.Fatalf("after the run: %+v", msgs)
	}
}

// slowCheckpoints is a store whose CheckpointRun waits for release.
type slowCheckpoints struct {
	agentstream.Store
	release chan struct{}
	calls   atomic.Int32
}

func (s *slowCheckpoints) CheckpointRun(ctx context.Context, runID string, msgs []agentstream.Message) error {
	s.calls.Add(1)
	<-s.release
	return s.Store.CheckpointRun(ctx, runID, msgs)
}

// TestCheckpointOffTheTokenPath: a store slow to save a checkpoint does not
// hold up the tokens behind it, and the newest text is saved once it can be.
func TestCheckpointOffTheTokenPath(t *testing.T) {
	t.Parallel()
	slow := &slowCheckpoints{release: make(chan struct{})}
	h := newHarness(t, setup{
		cfg:    Config{CheckpointInterval: 1},
		script: scripted(turn{text: []string{"a ", "b ", "c ", "d"}, hold: true}),
		wrap:   func(s agentstream.Store) agentstream.Store { slow.Store = s; return slow },
	})
	th := h.thread(nil)
	run := h.start(th, "go")
	// Every delta reaches the log while the first save is stuck.
	h.waitEvents(run.ID, "four deltas", func(evs []agentstream.Event) bool {
		return count(evs, agentstream.EventMessageDelta) == 4
	})
	eventually(t, "the first save to start", func() bool { return slow.calls.Load() >= 1 })
	n := slow.calls.Load()
	close(slow.release)
	if n != 1 {
		t.Fatalf("%d saves started while the first one was stuck, want 1", n)
	}
	eventually(t, "the newest text to be saved", func() bool {
		msgs := h.messages(th.ID)
		return len(msgs) == 2 && msgs[1].Content == "a b c d"
	})
	h.r.Cancel(run.ID)
	end(t, h.events(run.ID), agentstream.EventRunCancelled)
}
