package storetest

import (
	"testing"

	"github.com/agentstream/agentstream"
)

var interrupted = agentstream.ErrorInfo{Code: agentstream.CodeInterrupted, Message: "the server stopped before the run ended"}

// testInterruptRuns: queued and running runs end interrupted with their
// messages kept; finished runs are left alone; the thread takes runs again.
func (s suite) testInterruptRuns(t *testing.T) {
	st := s.open(t)
	th1, th2, th3 := createThread(t, st, "user-1"), createThread(t, st, "user-2"), createThread(t, st, "user-1")
	running, in1 := runningRun(t, st, th1, at(10))
	partial := assistant(running, "half an ans", agentstream.MessagePartial, at(11))
	partial.Seq = 2
	if err := st.CheckpointRun(t.Context(), running.ID, []agentstream.Message{partial}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	queued, in2 := createRun(t, st, th2, at(12))
	done, _ := runningRun(t, st, th3, at(13))
	doneRun := finished(done, agentstream.RunCompleted, nil, agentstream.Usage{InputTokens: 1}, at(14))
	if err := st.FinishRun(t.Context(), doneRun, nil); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}

	got, err := st.InterruptRuns(t.Context(), at(20), interrupted)
	if err != nil {
		t.Fatalf("InterruptRuns: %v", err)
	}
	if len(got) != 2 || got[0].ID != running.ID || got[1].ID != queued.ID {
		t.Fatalf("InterruptRuns returned %+v, want the running then the queued run", got)
	}
	for _, r := range []agentstream.Run{running, queued} {
		want := finished(r, agentstream.RunInterrupted, &interrupted, agentstream.Usage{}, at(20))
		checkRun(t, getRun(t, st, r), want)
	}
	checkRun(t, getRun(t, st, done), doneRun)
	checkMessages(t, st, th1.ID, in1, partial)
	checkMessages(t, st, th2.ID, in2)
	// The threads take new runs again.
	createRun(t, st, th1, at(30))
	createRun(t, st, th2, at(31))
}

func (s suite) testInterruptRunsNone(t *testing.T) {
	st := s.open(t)
	got, err := st.InterruptRuns(t.Context(), at(1), interrupted)
	if err != nil || len(got) != 0 {
		t.Fatalf("InterruptRuns on an empty store: %+v, %v", got, err)
	}
}
