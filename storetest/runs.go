package storetest

import (
	"strconv"
	"testing"

	"github.com/agentstream/agentstream"
)

// getRun returns the stored run.
func getRun(t testing.TB, st agentstream.Store, run agentstream.Run) agentstream.Run {
	t.Helper()
	got, err := st.GetRun(t.Context(), run.UserID, run.ID)
	if err != nil {
		t.Fatalf("GetRun: %v", err)
	}
	return got
}

// checkUpdatedAt checks the stored thread's UpdatedAt.
func checkUpdatedAt(t testing.TB, st agentstream.Store, th agentstream.Thread, want agentstream.Run) {
	t.Helper()
	got, err := st.GetThread(t.Context(), th.UserID, th.ID)
	if err != nil {
		t.Fatalf("GetThread: %v", err)
	}
	if !normTime(got.UpdatedAt).Equal(normTime(want.CreatedAt)) {
		t.Errorf("thread UpdatedAt = %v, want %v (CreatedAt of run %s)", got.UpdatedAt, want.CreatedAt, want.ID)
	}
	if !normTime(got.CreatedAt).Equal(normTime(th.CreatedAt)) {
		t.Errorf("thread CreatedAt = %v, want %v (unchanged)", got.CreatedAt, th.CreatedAt)
	}
}

func (s suite) testCreateRunReturnsInput(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := newRun(th, at(10))
	run.Context = map[string]any{"baby_name": "Ada", "nested": map[string]any{"n": 1.0}}
	got, err := st.CreateRun(t.Context(), run, in)
	if err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	checkMessage(t, got, withSeq(in, 1))
	checkMessages(t, st, th.ID, withSeq(in, 1))
	checkRun(t, getRun(t, st, run), run)
	checkUpdatedAt(t, st, th, run)
}

func (s suite) testCreateRunSeqAcrossRuns(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")

	run1, in1 := runningRun(t, st, th, at(10))
	a1 := assistant(run1, "Thinking", agentstream.MessagePartial, at(11))
	if err := st.CheckpointRun(t.Context(), run1.ID, []agentstream.Message{a1}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	a1.Content, a1.Status = "Thinking done", agentstream.MessageComplete
	a2 := assistant(run1, "Answer", agentstream.MessageComplete, at(12))
	if err := st.FinishRun(t.Context(), finished(run1, agentstream.RunCompleted, nil, agentstream.Usage{}, at(13)),
		[]agentstream.Message{a1, a2}); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}

	run2, in2 := createRun(t, st, th, at(20))
	if in2.Seq != 4 {
		t.Errorf("second run's input Seq = %d, want 4", in2.Seq)
	}
	run2 = startRun(t, st, run2, at(21))
	a3 := assistant(run2, "Second answer", agentstream.MessageComplete, at(22))
	if err := st.FinishRun(t.Context(), finished(run2, agentstream.RunCompleted, nil, agentstream.Usage{}, at(23)),
		[]agentstream.Message{a3}); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}

	run3, in3 := createRun(t, st, th, at(30))
	if in3.Seq != 6 {
		t.Errorf("third run's input Seq = %d, want 6", in3.Seq)
	}
	checkMessages(t, st, th.ID,
		withSeq(in1, 1), withSeq(a1, 2), withSeq(a2, 3), withSeq(in2, 4), withSeq(a3, 5), withSeq(in3, 6))
	checkUpdatedAt(t, st, th, run3)
}

func (s suite) testCreateRunUnknownThread(t *testing.T) {
	st := s.open(t)
	th := newThread("user-1") // not saved
	run, in := newRun(th, at(10))
	_, err := st.CreateRun(t.Context(), run, in)
	wantErr(t, err, agentstream.ErrNotFound, "CreateRun on a missing thread")
	_, err = st.GetRun(t.Context(), run.UserID, run.ID)
	wantErr(t, err, agentstream.ErrNotFound, "GetRun of the refused run")
	checkMessages(t, st, th.ID)
}

func (s suite) testCreateRunOneActive(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run1, in1 := createRun(t, st, th, at(10))

	refused := func(what string) {
		t.Helper()
		run2, in2 := newRun(th, at(15))
		_, err := st.CreateRun(t.Context(), run2, in2)
		wantErr(t, err, agentstream.ErrConflict, what)
		_, err = st.GetRun(t.Context(), run2.UserID, run2.ID)
		wantErr(t, err, agentstream.ErrNotFound, "GetRun of the refused run")
		checkMessages(t, st, th.ID, in1)
		checkUpdatedAt(t, st, th, run1)
	}
	refused("CreateRun while another run is queued")
	run1 = startRun(t, st, run1, at(11))
	refused("CreateRun while another run is running")

	// Runs of other threads are not affected.
	other := createThread(t, st, "user-1")
	createRun(t, st, other, at(12))

	if err := st.FinishRun(t.Context(), finished(run1, agentstream.RunCompleted, nil, agentstream.Usage{}, at(13)), nil); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	run2, in2 := createRun(t, st, th, at(20))
	checkMessages(t, st, th.ID, in1, withSeq(in2, 2))
	checkUpdatedAt(t, st, th, run2)
}

func (s suite) testCreateRunDuplicateIDs(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run1, in1 := runningRun(t, st, th, at(10))
	if err := st.FinishRun(t.Context(), finished(run1, agentstream.RunCompleted, nil, agentstream.Usage{}, at(11)), nil); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}

	// A run whose ID is taken, on another thread.
	other := createThread(t, st, "user-1")
	dup, dupIn := newRun(other, at(20))
	dup.ID = run1.ID
	dupIn.RunID = run1.ID
	_, err := st.CreateRun(t.Context(), dup, dupIn)
	wantErr(t, err, agentstream.ErrConflict, "CreateRun with an existing run ID")
	checkMessages(t, st, other.ID)
	checkRun(t, getRun(t, st, run1), finished(run1, agentstream.RunCompleted, nil, agentstream.Usage{}, at(11)))

	// An input message whose ID is taken.
	run2, in2 := newRun(other, at(30))
	in2.ID = in1.ID
	_, err = st.CreateRun(t.Context(), run2, in2)
	wantErr(t, err, agentstream.ErrConflict, "CreateRun with an existing message ID")
	_, err = st.GetRun(t.Context(), run2.UserID, run2.ID)
	wantErr(t, err, agentstream.ErrNotFound, "GetRun of the refused run")
	checkMessages(t, st, other.ID)
	checkMessages(t, st, th.ID, in1)

	// The thread is still free for a run.
	_, in3 := createRun(t, st, other, at(40))
	checkMessages(t, st, other.ID, withSeq(in3, 1))
}

func (s suite) testCreateRunInputIDsFromRun(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := newRun(th, at(10))
	in.ThreadID, in.RunID = "", ""
	got, err := st.CreateRun(t.Context(), run, in)
	if err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	in.ThreadID, in.RunID = th.ID, run.ID
	checkMessage(t, got, withSeq(in, 1))
	checkMessages(t, st, th.ID, withSeq(in, 1))
}

func (s suite) testCreateRunInvalidStatus(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	for _, status := range []agentstream.RunStatus{agentstream.RunCompleted, agentstream.RunFailed,
		agentstream.RunCancelled, agentstream.RunInterrupted, "", "paused"} {
		run, in := newRun(th, at(10))
		run.Status = status
		_, err := st.CreateRun(t.Context(), run, in)
		wantErr(t, err, agentstream.ErrInvalid, "CreateRun of a run with status "+strconv.Quote(string(status)))
		_, err = st.GetRun(t.Context(), run.UserID, run.ID)
		wantErr(t, err, agentstream.ErrNotFound, "GetRun of the refused run")
	}
	checkMessages(t, st, th.ID)
	// The thread is still free for a run.
	createRun(t, st, th, at(20))
}

func (s suite) testCreateRunUnencodableContext(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := newRun(th, at(10))
	run.Context = map[string]any{"f": func() {}}
	_, err := st.CreateRun(t.Context(), run, in)
	wantErr(t, err, agentstream.ErrInvalid, "CreateRun with a context that is not JSON")
	_, err = st.GetRun(t.Context(), run.UserID, run.ID)
	wantErr(t, err, agentstream.ErrNotFound, "GetRun of the refused run")
	checkMessages(t, st, th.ID)
}

func (s suite) testStartRun(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, _ := createRun(t, st, th, at(10))
	if got := getRun(t, st, run); got.Status != agentstream.RunQueued || got.StartedAt != nil {
		t.Fatalf("new run: Status %q, StartedAt %v; want queued, nil", got.Status, got.StartedAt)
	}
	run = startRun(t, st, run, at(11))
	checkRun(t, getRun(t, st, run), run)
}

func (s suite) testStartRunUnknown(t *testing.T) {
	st := s.open(t)
	err := st.StartRun(t.Context(), agentstream.NewID("run_"), at(1))
	wantErr(t, err, agentstream.ErrNotFound, "StartRun of a missing run")
}

func (s suite) testStartRunNotQueued(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, _ := runningRun(t, st, th, at(10))
	wantErr(t, st.StartRun(t.Context(), run.ID, at(12)), agentstream.ErrConflict, "StartRun of a running run")
	checkRun(t, getRun(t, st, run), run) // StartedAt unchanged

	done := finished(run, agentstream.RunCompleted, nil, agentstream.Usage{}, at(13))
	if err := st.FinishRun(t.Context(), done, nil); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	wantErr(t, st.StartRun(t.Context(), run.ID, at(14)), agentstream.ErrConflict, "StartRun of a finished run")
	checkRun(t, getRun(t, st, run), done)
}

func (s suite) testCheckpointRun(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(10))

	// A partial assistant message, its tool call's arguments still invalid
	// JSON.
	a1 := assistant(run, "Let me check", agentstream.MessagePartial, at(11),
		agentstream.ToolCall{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Par`})
	if err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{a1}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	checkMessages(t, st, th.ID, in, withSeq(a1, 2))

	// The same message, complete, updated in place; a new tool message.
	a1.Content = "Let me check the weather."
	a1.Status = agentstream.MessageComplete
	a1.ToolCalls = []agentstream.ToolCall{
		{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`},
		{ID: "call_2", Name: "get_time", Arguments: `{}`},
	}
	r1 := toolResult(run, a1.ToolCalls[0], "sunny", at(12))
	if err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{a1, r1}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	checkMessages(t, st, th.ID, in, withSeq(a1, 2), withSeq(r1, 3))

	// New messages after an update of an earlier one; a partial message
	// stays partial.
	r2 := toolResult(run, a1.ToolCalls[1], "12:00", at(13))
	a2 := assistant(run, "It is sun", agentstream.MessagePartial, at(14))
	r1.Content = "sunny, 21°C"
	if err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{r1, r2, a2}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	checkMessages(t, st, th.ID, in, withSeq(a1, 2), withSeq(r1, 3), withSeq(r2, 4), withSeq(a2, 5))

	// Tool calls removed by an update.
	a1.ToolCalls = nil
	if err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{a1}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	checkMessages(t, st, th.ID, in, withSeq(a1, 2), withSeq(r1, 3), withSeq(r2, 4), withSeq(a2, 5))
	checkRun(t, getRun(t, st, run), run)
}

func (s suite) testCheckpointRunEmpty(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(10))
	if err := st.CheckpointRun(t.Context(), run.ID, nil); err != nil {
		t.Fatalf("CheckpointRun with no messages: %v", err)
	}
	if err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{}); err != nil {
		t.Fatalf("CheckpointRun with no messages: %v", err)
	}
	checkMessages(t, st, th.ID, in)
	checkRun(t, getRun(t, st, run), run)
}

func (s suite) testCheckpointRunUnknown(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, _ := newRun(th, at(10)) // not saved
	err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{assistant(run, "x", agentstream.MessageComplete, at(11))})
	wantErr(t, err, agentstream.ErrNotFound, "CheckpointRun of a missing run")
	checkMessages(t, st, th.ID)
}

func (s suite) testCheckpointRunFinished(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(10))
	a1 := assistant(run, "Answer", agentstream.MessageComplete, at(11))
	if err := st.FinishRun(t.Context(), finished(run, agentstream.RunCompleted, nil, agentstream.Usage{}, at(12)),
		[]agentstream.Message{a1}); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	late := a1
	late.Content = "Changed after the end"
	err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{late, assistant(run, "late", agentstream.MessageComplete, at(13))})
	wantErr(t, err, agentstream.ErrConflict, "CheckpointRun of a finished run")
	checkMessages(t, st, th.ID, in, withSeq(a1, 2))
}

func (s suite) testCheckpointRunQueued(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := createRun(t, st, th, at(10))
	err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{assistant(run, "early", agentstream.MessagePartial, at(11))})
	wantErr(t, err, agentstream.ErrConflict, "CheckpointRun of a queued run")
	checkMessages(t, st, th.ID, in)
	checkRun(t, getRun(t, st, run), run)
}

// testCheckpointRunForeignIDs: messages go to the run's thread, under the
// run, whatever their ThreadID and RunID say (CheckpointRun and FinishRun).
func (s suite) testCheckpointRunForeignIDs(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	other := createThread(t, st, "user-1")
	otherRun, otherIn := createRun(t, st, other, at(5))
	run, in := runningRun(t, st, th, at(10))

	a1 := assistant(run, "first", agentstream.MessagePartial, at(11))
	a1.ThreadID, a1.RunID = other.ID, otherRun.ID
	a2 := assistant(run, "second", agentstream.MessageComplete, at(12))
	a2.ThreadID, a2.RunID = "", ""
	if err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{a1, a2}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	a3 := assistant(run, "third", agentstream.MessageComplete, at(13))
	a3.ThreadID, a3.RunID = other.ID, "run_unknown"
	a1.Content, a1.Status = "first, done", agentstream.MessageComplete
	if err := st.FinishRun(t.Context(), finished(run, agentstream.RunCompleted, nil, agentstream.Usage{}, at(14)),
		[]agentstream.Message{a1, a3}); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	for _, m := range []*agentstream.Message{&a1, &a2, &a3} {
		m.ThreadID, m.RunID = th.ID, run.ID
	}
	checkMessages(t, st, th.ID, in, withSeq(a1, 2), withSeq(a2, 3), withSeq(a3, 4))
	checkMessages(t, st, other.ID, otherIn)
}

// testCheckpointRunMessageOfAnotherRun: a message whose ID is taken by a
// message of another run is ErrConflict, and nothing of the call is
// written (CheckpointRun and FinishRun).
func (s suite) testCheckpointRunMessageOfAnotherRun(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run1, in1 := runningRun(t, st, th, at(10))
	a1 := assistant(run1, "answer one", agentstream.MessageComplete, at(11))
	done1 := finished(run1, agentstream.RunCompleted, nil, agentstream.Usage{}, at(12))
	if err := st.FinishRun(t.Context(), done1, []agentstream.Message{a1}); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	run2, in2 := runningRun(t, st, th, at(20))
	mine := assistant(run2, "mine", agentstream.MessagePartial, at(21))
	if err := st.CheckpointRun(t.Context(), run2.ID, []agentstream.Message{mine}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}

	mineEdited := mine
	mineEdited.Content = "mine, edited"
	fresh := assistant(run2, "new", agentstream.MessageComplete, at(22))
	stolen := a1
	stolen.ThreadID, stolen.RunID = th.ID, run2.ID
	stolen.Content = "overwritten by another run"
	err := st.CheckpointRun(t.Context(), run2.ID, []agentstream.Message{mineEdited, fresh, stolen})
	wantErr(t, err, agentstream.ErrConflict, "CheckpointRun with the ID of another run's message")
	stolenInput := in1
	stolenInput.ThreadID, stolenInput.RunID = th.ID, run2.ID
	err = st.FinishRun(t.Context(), finished(run2, agentstream.RunCompleted, nil, agentstream.Usage{}, at(23)),
		[]agentstream.Message{mineEdited, fresh, stolenInput})
	wantErr(t, err, agentstream.ErrConflict, "FinishRun with the ID of another run's message")

	checkMessages(t, st, th.ID, in1, withSeq(a1, 2), withSeq(in2, 3), withSeq(mine, 4))
	checkRun(t, getRun(t, st, run1), done1)
	checkRun(t, getRun(t, st, run2), run2)
	// The run goes on.
	if err := st.CheckpointRun(t.Context(), run2.ID, []agentstream.Message{mineEdited, fresh}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	checkMessages(t, st, th.ID, in1, withSeq(a1, 2), withSeq(in2, 3), withSeq(mineEdited, 4), withSeq(fresh, 5))
}

func (s suite) testFinishRunCompleted(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(10))
	a1 := assistant(run, "Half an ans", agentstream.MessagePartial, at(11))
	if err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{a1}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	a1.Content, a1.Status = "Half an answer, then a call.", agentstream.MessageComplete
	a1.ToolCalls = []agentstream.ToolCall{{ID: "call_1", Name: "lookup", Arguments: `{"q":"x"}`}}
	r1 := toolResult(run, a1.ToolCalls[0], "found", at(12))
	a2 := assistant(run, "The answer.", agentstream.MessageComplete, at(13))
	done := finished(run, agentstream.RunCompleted, nil, agentstream.Usage{InputTokens: 1234, OutputTokens: 56}, at(14))
	if err := st.FinishRun(t.Context(), done, []agentstream.Message{a1, r1, a2}); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	checkRun(t, getRun(t, st, run), done)
	checkMessages(t, st, th.ID, in, withSeq(a1, 2), withSeq(r1, 3), withSeq(a2, 4))
}

func (s suite) testFinishRunFailed(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(10))
	a1 := assistant(run, "The answer is", agentstream.MessagePartial, at(11))
	done := finished(run, agentstream.RunFailed,
		&agentstream.ErrorInfo{Code: agentstream.CodeUpstream, Message: "the model API failed: 502"},
		agentstream.Usage{InputTokens: 10}, at(12))
	if err := st.FinishRun(t.Context(), done, []agentstream.Message{a1}); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	checkRun(t, getRun(t, st, run), done)
	checkMessages(t, st, th.ID, in, withSeq(a1, 2))
}

func (s suite) testFinishRunQueued(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := createRun(t, st, th, at(10))
	done := finished(run, agentstream.RunCancelled,
		&agentstream.ErrorInfo{Code: agentstream.CodeCancelled, Message: "cancelled"}, agentstream.Usage{}, at(11))
	if err := st.FinishRun(t.Context(), done, nil); err != nil {
		t.Fatalf("FinishRun of a queued run: %v", err)
	}
	got := getRun(t, st, run)
	if got.StartedAt != nil {
		t.Errorf("StartedAt = %v, want nil", *got.StartedAt)
	}
	checkRun(t, got, done)
	checkMessages(t, st, th.ID, in)
}

func (s suite) testFinishRunClearsOwner(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := newRun(th, at(10))
	run.Status, run.StartedAt = agentstream.RunRunning, ptr(at(10))
	run.Owner, run.LeaseUntil = "instance-a", ptr(at(40))
	if _, err := st.CreateRun(t.Context(), run, in); err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	checkRun(t, getRun(t, st, run), run)
	done := finished(run, agentstream.RunInterrupted,
		&agentstream.ErrorInfo{Code: agentstream.CodeInterrupted, Message: "the server stopped"}, agentstream.Usage{}, at(11))
	if err := st.FinishRun(t.Context(), done, nil); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	got := getRun(t, st, run)
	if got.Owner != "" || got.LeaseUntil != nil {
		t.Errorf("finished run: Owner %q, LeaseUntil %v; want empty", got.Owner, got.LeaseUntil)
	}
	checkRun(t, got, done)
}

func (s suite) testFinishRunTerminal(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(10))
	a1 := assistant(run, "Answer", agentstream.MessageComplete, at(11))
	done := finished(run, agentstream.RunCompleted, nil, agentstream.Usage{InputTokens: 5, OutputTokens: 6}, at(12))
	if err := st.FinishRun(t.Context(), done, []agentstream.Message{a1}); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}

	for _, status := range []agentstream.RunStatus{agentstream.RunCompleted, agentstream.RunFailed, agentstream.RunCancelled, agentstream.RunInterrupted} {
		changed := a1
		changed.Content = "Rewritten by a second FinishRun"
		late := assistant(run, "New from a second FinishRun", agentstream.MessageComplete, at(13))
		again := finished(run, status, &agentstream.ErrorInfo{Code: agentstream.CodeCancelled, Message: "late"},
			agentstream.Usage{InputTokens: 99, OutputTokens: 99}, at(14))
		err := st.FinishRun(t.Context(), again, []agentstream.Message{changed, late})
		wantErr(t, err, agentstream.ErrConflict, "FinishRun ("+string(status)+") of a finished run")
		// Nothing of the refused call is written: neither the run nor the
		// messages.
		checkRun(t, getRun(t, st, run), done)
		checkMessages(t, st, th.ID, in, withSeq(a1, 2))
	}
}

func (s suite) testFinishRunNotTerminal(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(10))
	for _, status := range []agentstream.RunStatus{agentstream.RunQueued, agentstream.RunRunning, "", "paused"} {
		again := finished(run, status, nil, agentstream.Usage{InputTokens: 3}, at(11))
		err := st.FinishRun(t.Context(), again, []agentstream.Message{assistant(run, "x", agentstream.MessageComplete, at(11))})
		wantErr(t, err, agentstream.ErrInvalid, "FinishRun with status "+strconv.Quote(string(status)))
	}
	checkRun(t, getRun(t, st, run), run)
	checkMessages(t, st, th.ID, in)
}

func (s suite) testFinishRunUnknown(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, _ := newRun(th, at(10)) // not saved
	done := finished(run, agentstream.RunCompleted, nil, agentstream.Usage{}, at(11))
	err := st.FinishRun(t.Context(), done, []agentstream.Message{assistant(run, "x", agentstream.MessageComplete, at(11))})
	wantErr(t, err, agentstream.ErrNotFound, "FinishRun of a missing run")
	checkMessages(t, st, th.ID)
}

func (s suite) testGetRunRoundTrip(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := newRun(th, at(10))
	run.Agent = "other-agent"
	run.Status = agentstream.RunRunning
	run.Context = map[string]any{
		"baby_name": "Ada",
		"weights":   []any{3.2, 4.1},
		"profile":   map[string]any{"allergies": []any{}, "notes": nil, "twin": false},
	}
	run.StartedAt = ptr(at(11))
	run.Owner, run.LeaseUntil = "instance-a", ptr(at(41))
	if _, err := st.CreateRun(t.Context(), run, in); err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	checkRun(t, getRun(t, st, run), run)

	done := finished(run, agentstream.RunFailed,
		&agentstream.ErrorInfo{Code: agentstream.CodeMaxTurns, Message: "the agent called tools 10 times without answering"},
		agentstream.Usage{InputTokens: 1 << 40, OutputTokens: 7}, at(12))
	if err := st.FinishRun(t.Context(), done, nil); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	checkRun(t, getRun(t, st, run), done)
}

func (s suite) testGetRunMissing(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	createRun(t, st, th, at(10))
	_, err := st.GetRun(t.Context(), "user-1", agentstream.NewID("run_"))
	wantErr(t, err, agentstream.ErrNotFound, "GetRun of a missing run")
}

func (s suite) testGetRunOtherUser(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, _ := createRun(t, st, th, at(10))
	_, err := st.GetRun(t.Context(), "user-2", run.ID)
	wantErr(t, err, agentstream.ErrNotFound, "GetRun of another user's run")
	_, err = st.GetRun(t.Context(), "", run.ID)
	wantErr(t, err, agentstream.ErrNotFound, "GetRun with an empty user")
}

// testCreateRunWithHistory: the history a client brings is stored before
// the input, in order, under the run, in the same transaction; a history
// message the stores cannot keep refuses the whole run.
func (s suite) testCreateRunWithHistory(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := newRun(th, at(10))
	h1 := in
	h1.ID, h1.Content = agentstream.NewID("msg_"), "My name is Ada."
	h2 := assistant(run, "Hello Ada.", agentstream.MessageComplete, at(10))
	// The store puts them on the run's thread and under the run,
	// whatever they say.
	h2.ThreadID, h2.RunID = "elsewhere", "run_other"
	got, err := st.CreateRun(t.Context(), run, in, h1, h2)
	if err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	checkMessage(t, got, withSeq(in, 3))
	h2.ThreadID, h2.RunID = th.ID, run.ID
	checkMessages(t, st, th.ID, withSeq(h1, 1), withSeq(h2, 2), withSeq(in, 3))

	th2 := createThread(t, st, "user-1")
	run2, in2 := newRun(th2, at(11))
	bad := in2
	bad.ID, bad.Content = agentstream.NewID("msg_"), "nul \x00 byte"
	if _, err := st.CreateRun(t.Context(), run2, in2, bad); agentstream.CodeOf(err) != agentstream.CodeInvalidRequest {
		t.Fatalf("CreateRun with a NUL in its history: %v, want invalid_request", err)
	}
	checkMessages(t, st, th2.ID)
	if _, err := st.GetRun(t.Context(), run2.UserID, run2.ID); agentstream.CodeOf(err) != agentstream.CodeNotFound {
		t.Fatalf("GetRun of the refused run: %v, want not_found", err)
	}
}
