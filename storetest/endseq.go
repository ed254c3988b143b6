package storetest

import (
	"testing"

	"github.com/agentstream/agentstream"
)

// testEndSeqFinished: FinishRun records the terminal event's seq, GetRun
// returns it, and SetEndSeq keeps it (the first recorded wins).
func (s suite) testEndSeqFinished(t *testing.T) {
	st := s.open(t)
	run, _ := runningRun(t, st, createThread(t, st, "user-1"), at(1))
	done := finished(run, agentstream.RunCompleted, nil, agentstream.Usage{}, at(2))
	done.EndSeq = 42
	if err := st.FinishRun(t.Context(), done, nil); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	if got := getRun(t, st, run); got.EndSeq != 42 {
		t.Fatalf("GetRun: EndSeq %d, want 42", got.EndSeq)
	}
	got, err := st.SetEndSeq(t.Context(), run.ID, 7)
	if err != nil || got != 42 {
		t.Fatalf("SetEndSeq(7) on a run that ended at 42: %d, %v; want 42", got, err)
	}
	if got := getRun(t, st, run); got.EndSeq != 42 {
		t.Fatalf("GetRun after SetEndSeq: EndSeq %d, want 42", got.EndSeq)
	}
}

// testEndSeqUnknown: a run that ended without a known seq (FinishRun with
// none, or interrupted) has EndSeq 0 until SetEndSeq records one; then
// that one stays.
func (s suite) testEndSeqUnknown(t *testing.T) {
	st := s.open(t)
	a, _ := runningRun(t, st, createThread(t, st, "user-1"), at(1))
	if err := st.FinishRun(t.Context(), finished(a, agentstream.RunFailed, nil, agentstream.Usage{}, at(2)), nil); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	b, _ := runningRun(t, st, createThread(t, st, "user-2"), at(3))
	if _, err := st.InterruptRuns(t.Context(), at(4), interrupted); err != nil {
		t.Fatalf("InterruptRuns: %v", err)
	}
	for _, r := range []agentstream.Run{a, b} {
		if got := getRun(t, st, r); got.EndSeq != 0 {
			t.Fatalf("run %s: EndSeq %d before any is recorded, want 0", r.ID, got.EndSeq)
		}
		if got, err := st.SetEndSeq(t.Context(), r.ID, 9); err != nil || got != 9 {
			t.Fatalf("SetEndSeq(9): %d, %v; want 9", got, err)
		}
		if got, err := st.SetEndSeq(t.Context(), r.ID, 12); err != nil || got != 9 {
			t.Fatalf("SetEndSeq(12) after 9: %d, %v; want 9", got, err)
		}
		if got := getRun(t, st, r); got.EndSeq != 9 {
			t.Fatalf("GetRun: EndSeq %d, want 9", got.EndSeq)
		}
	}
}

// testEndSeqRefused: SetEndSeq refuses a run that has not ended (nothing
// recorded), an unknown run, and a seq that is not positive.
func (s suite) testEndSeqRefused(t *testing.T) {
	st := s.open(t)
	queued, _ := createRun(t, st, createThread(t, st, "user-1"), at(1))
	running, _ := runningRun(t, st, createThread(t, st, "user-1"), at(2))
	for _, r := range []agentstream.Run{queued, running} {
		_, err := st.SetEndSeq(t.Context(), r.ID, 5)
		wantErr(t, err, agentstream.ErrConflict, "SetEndSeq on a "+string(r.Status)+" run")
	}
	_, err := st.SetEndSeq(t.Context(), "run_missing", 5)
	wantErr(t, err, agentstream.ErrNotFound, "SetEndSeq on an unknown run")
	_, err = st.SetEndSeq(t.Context(), running.ID, 0)
	wantErr(t, err, agentstream.ErrInvalid, "SetEndSeq(0)")
	// The refused calls recorded nothing: the run ends with the seq it
	// brings.
	done := finished(running, agentstream.RunCompleted, nil, agentstream.Usage{}, at(3))
	done.EndSeq = 3
	if err := st.FinishRun(t.Context(), done, nil); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	if got := getRun(t, st, running); got.EndSeq != 3 {
		t.Fatalf("EndSeq %d, want 3", got.EndSeq)
	}
}
