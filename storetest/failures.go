package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// calls returns one call of each Store method but Close, by name, all with
// valid arguments: the thread, run and message IDs are new.
func calls(st agentstream.Store, ctx context.Context) map[string]func() error {
	th := newThread("user-1")
	run, in := newRun(th, at(10))
	done := finished(run, agentstream.RunCompleted, nil, agentstream.Usage{}, at(12))
	msgs := []agentstream.Message{assistant(run, "x", agentstream.MessageComplete, at(11))}
	return map[string]func() error{
		"CreateThread": func() error { return st.CreateThread(ctx, th) },
		"GetThread":    func() error { _, err := st.GetThread(ctx, th.UserID, th.ID); return err },
		"ListMessages": func() error { _, err := st.ListMessages(ctx, th.ID); return err },
		"CreateRun":    func() error { _, err := st.CreateRun(ctx, run, in); return err },
		"CreateRunLimited": func() error {
			_, err := st.CreateRunLimited(ctx, run, agentstream.RunLimits{Active: 1, Queued: 1}, in)
			return err
		},
		"AddUsage":          func() error { return st.AddUsage(ctx, th.UserID, at(10), 1) },
		"Usage":             func() error { _, err := st.Usage(ctx, th.UserID, at(10)); return err },
		"StartRun":          func() error { return st.StartRun(ctx, run.ID, at(11)) },
		"CheckpointRun":     func() error { return st.CheckpointRun(ctx, run.ID, msgs) },
		"CheckpointText":    func() error { return st.CheckpointText(ctx, run.ID, msgs[0], 1) },
		"FinishRun":         func() error { return st.FinishRun(ctx, done, msgs) },
		"InterruptRuns":     func() error { _, err := st.InterruptRuns(ctx, at(13), interrupted); return err },
		"GetRun":            func() error { _, err := st.GetRun(ctx, run.UserID, run.ID); return err },
		"SetEndSeq":         func() error { _, err := st.SetEndSeq(ctx, run.ID, 3); return err },
		"Ping":              func() error { return st.Ping(ctx) },
		"ListMessagesAfter": func() error { _, err := st.ListMessagesAfter(ctx, th.ID, 0, 10); return err },
		"ListThreads":       func() error { _, err := st.ListThreads(ctx, th.UserID, nil, 10); return err },
		"UpdateThread": func() error {
			_, err := st.UpdateThread(ctx, th.UserID, th.ID, agentstream.ThreadUpdate{Title: ptr("x"), UpdatedAt: at(14)})
			return err
		},
		"DeleteThread": func() error { return st.DeleteThread(ctx, th.UserID, th.ID) },
		"ListRuns":     func() error { _, err := st.ListRuns(ctx, th.ID, nil, 10); return err },
	}
}

// testContextDone: every method called with a done context fails with an
// error that wraps the context's, and writes nothing.
func (s suite) testContextDone(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(10))

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	for _, ctx := range []context.Context{cancelled, expired} {
		for name, call := range calls(st, ctx) {
			if err := call(); !errors.Is(err, ctx.Err()) {
				t.Errorf("%s with a done context: %v, want %v", name, err, ctx.Err())
			}
		}
		// Calls on existing rows, which would write.
		err := st.CheckpointRun(ctx, run.ID, []agentstream.Message{assistant(run, "late", agentstream.MessagePartial, at(11))})
		wantErr(t, err, ctx.Err(), "CheckpointRun with a done context")
		err = st.CheckpointText(ctx, run.ID, assistant(run, "late", agentstream.MessagePartial, at(11)), 0)
		wantErr(t, err, ctx.Err(), "CheckpointText at 0 with a done context")
		err = st.CheckpointText(ctx, run.ID, assistant(run, "late", agentstream.MessagePartial, at(11)), 4)
		wantErr(t, err, ctx.Err(), "CheckpointText past 0 with a done context")
		err = st.FinishRun(ctx, finished(run, agentstream.RunCompleted, nil, agentstream.Usage{}, at(12)), nil)
		wantErr(t, err, ctx.Err(), "FinishRun with a done context")
		_, err = st.InterruptRuns(ctx, at(12), interrupted)
		wantErr(t, err, ctx.Err(), "InterruptRuns with a done context")
		_, err = st.CreateRun(ctx, run, in)
		wantErr(t, err, ctx.Err(), "CreateRun with a done context")
	}
	checkRun(t, getRun(t, st, run), run)
	checkMessages(t, st, th.ID, in)
	// The store works on.
	if err := st.CheckpointRun(t.Context(), run.ID, nil); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
}

// testCloseThenCallsFail: after Close every method returns an error; none
// panics.
func (s suite) testCloseThenCallsFail(t *testing.T) {
	st := s.newStore(t)
	if st == nil {
		t.Fatal("newStore returned nil")
	}
	th := createThread(t, st, "user-1")
	run, _ := runningRun(t, st, th, at(10))
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for name, call := range calls(st, t.Context()) {
		if err := call(); err == nil {
			t.Errorf("%s after Close: no error", name)
		}
	}
	if _, err := st.GetThread(t.Context(), th.UserID, th.ID); err == nil {
		t.Errorf("GetThread of an existing thread after Close: no error")
	}
	if err := st.CheckpointRun(t.Context(), run.ID, nil); err == nil {
		t.Errorf("CheckpointRun of a running run after Close: no error")
	}
}
