package agent

import (
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
