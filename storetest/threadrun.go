package storetest

import (
	"errors"
	"testing"

	"github.com/agentstream/agentstream"
)

// testCreateThreadRun: the thread, the run, its history and its input are
// stored as CreateThread and CreateRun would store them.
func (s suite) testCreateThreadRun(t *testing.T) {
	st := s.open(t)
	ctx := t.Context()
	th := newThread("user-1")
	th.Metadata, th.Context = map[string]any{"k": "v"}, map[string]any{"plan": "pro"}
	run, in := newRun(th, at(10))
	run.Status, run.StartedAt = agentstream.RunRunning, ptr(at(10))
	h1 := in
	h1.ID, h1.Content = agentstream.NewID("msg_"), "My name is Ada."
	got, err := st.CreateThreadRun(ctx, th, run, agentstream.RunLimits{Active: 1}, in, h1)
	if err != nil {
		t.Fatalf("CreateThreadRun: %v", err)
	}
	checkMessage(t, got, withSeq(in, 2))
	stored, err := st.GetThread(ctx, th.UserID, th.ID)
	if err != nil {
		t.Fatalf("GetThread: %v", err)
	}
	want := th
	want.UpdatedAt = run.CreatedAt // as CreateRun sets it
	checkThread(t, stored, want)
	storedRun, err := st.GetRun(ctx, run.UserID, run.ID)
	if err != nil {
		t.Fatalf("GetRun: %v", err)
	}
	checkRun(t, storedRun, run)
	checkMessages(t, st, th.ID, withSeq(h1, 1), withSeq(in, 2))
	// The run is the thread's active run, as any other.
	run2, in2 := newRun(th, at(11))
	_, err = st.CreateRun(ctx, run2, in2)
	wantErr(t, err, agentstream.ErrConflict, "CreateRun beside the active run CreateThreadRun made")
}

// testCreateThreadRunRefused: a taken thread ID is ErrConflict, a run past
// the user's limits is refused, a run not of the thread or a value no
// store keeps is ErrInvalid; in every case nothing is written, neither
// the thread nor the run.
func (s suite) testCreateThreadRunRefused(t *testing.T) {
	st := s.open(t)
	ctx := t.Context()
	nothing := func(th agentstream.Thread, run agentstream.Run, what string) {
		t.Helper()
		if _, err := st.GetRun(ctx, run.UserID, run.ID); !errors.Is(err, agentstream.ErrNotFound) {
			t.Fatalf("%s: the refused run was written: %v", what, err)
		}
		if _, err := st.GetThread(ctx, th.UserID, th.ID); !errors.Is(err, agentstream.ErrNotFound) {
			t.Fatalf("%s: the refused run's thread was written: %v", what, err)
		}
		if msgs, err := st.ListMessages(ctx, th.ID); err != nil || len(msgs) != 0 {
			t.Fatalf("%s: the refused run's messages were written: %v, %v", what, msgs, err)
		}
	}

	// Taken: the stored thread keeps what it had, and gets no run.
	taken := createThread(t, st, "user-1")
	run, in := newRun(taken, at(10))
	_, err := st.CreateThreadRun(ctx, taken, run, agentstream.RunLimits{}, in)
	wantErr(t, err, agentstream.ErrConflict, "CreateThreadRun of a taken thread ID")
	if _, err := st.GetRun(ctx, run.UserID, run.ID); !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("the run of a taken thread was written: %v", err)
	}
	if got, err := st.GetThread(ctx, taken.UserID, taken.ID); err != nil {
		t.Fatal(err)
	} else {
		checkThread(t, got, taken)
	}
	checkMessages(t, st, taken.ID)

	// Past the limits: the user's active run (on the taken thread) fills
	// Active 1.
	if _, err := st.CreateRun(ctx, run, in); err != nil {
		t.Fatal(err)
	}
	th := newThread("user-1")
	run, in = newRun(th, at(11))
	_, err = st.CreateThreadRun(ctx, th, run, agentstream.RunLimits{Active: 1}, in)
	wantErr(t, err, agentstream.ErrTooManyRuns, "CreateThreadRun past lim.Active")
	nothing(th, run, "past lim.Active")

	// A run of another thread, or of another user.
	th = newThread("user-1")
	other := newThread("user-1")
	run, in = newRun(other, at(12))
	_, err = st.CreateThreadRun(ctx, th, run, agentstream.RunLimits{}, in)
	wantErr(t, err, agentstream.ErrInvalid, "CreateThreadRun with a run of another thread")
	nothing(th, run, "a run of another thread")
	run, in = newRun(th, at(12))
	run.UserID = "user-2"
	_, err = st.CreateThreadRun(ctx, th, run, agentstream.RunLimits{}, in)
	wantErr(t, err, agentstream.ErrInvalid, "CreateThreadRun with a run of another user")
	nothing(th, run, "a run of another user")

	// A value no store keeps: in the thread, and in the input.
	th = newThread("user-1")
	th.Title = "nul \x00 byte"
	run, in = newRun(th, at(13))
	_, err = st.CreateThreadRun(ctx, th, run, agentstream.RunLimits{}, in)
	wantErr(t, err, agentstream.ErrInvalid, "CreateThreadRun of a thread with a NUL in its title")
	nothing(th, run, "a thread with a NUL")
	th = newThread("user-1")
	run, in = newRun(th, at(13))
	in.Content = "nul \x00 byte"
	_, err = st.CreateThreadRun(ctx, th, run, agentstream.RunLimits{}, in)
	wantErr(t, err, agentstream.ErrInvalid, "CreateThreadRun with a NUL in its input")
	nothing(th, run, "an input with a NUL")
}
