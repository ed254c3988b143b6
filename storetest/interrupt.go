package storetest

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

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

// ownedRun creates a run on th held by owner until leaseUntil.
func ownedRun(t testing.TB, st agentstream.Store, th agentstream.Thread, created time.Time, owner string, leaseUntil time.Time) (agentstream.Run, agentstream.Message) {
	t.Helper()
	run, in := newRun(th, created)
	run.Owner, run.LeaseUntil = owner, &leaseUntil
	got, err := st.CreateRun(t.Context(), run, in)
	if err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	return run, got
}

// testRenewLeases: the owner's queued and running runs get the new lease
// and are returned; other owners' runs and ended runs are left alone.
func (s suite) testRenewLeases(t *testing.T) {
	st := s.open(t)
	queued, _ := ownedRun(t, st, createThread(t, st, "user-1"), at(1), "inst-a", at(10))
	running, _ := ownedRun(t, st, createThread(t, st, "user-2"), at(2), "inst-a", at(10))
	running = startRun(t, st, running, at(3))
	other, _ := ownedRun(t, st, createThread(t, st, "user-1"), at(4), "inst-b", at(10))
	ended, _ := ownedRun(t, st, createThread(t, st, "user-1"), at(5), "inst-a", at(10))
	ended = startRun(t, st, ended, at(6))
	endedRun := finished(ended, agentstream.RunCompleted, nil, agentstream.Usage{}, at(7))
	if err := st.FinishRun(t.Context(), endedRun, nil); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}

	ids, err := st.RenewLeases(t.Context(), "inst-a", at(40))
	if err != nil {
		t.Fatalf("RenewLeases: %v", err)
	}
	slices.Sort(ids)
	want := []string{queued.ID, running.ID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("RenewLeases returned %v, want %v", ids, want)
	}
	queued.LeaseUntil, running.LeaseUntil = ptr(at(40)), ptr(at(40))
	checkRun(t, getRun(t, st, queued), queued)
	checkRun(t, getRun(t, st, running), running)
	checkRun(t, getRun(t, st, other), other)
	checkRun(t, getRun(t, st, ended), endedRun)

	if ids, err := st.RenewLeases(t.Context(), "inst-nobody", at(50)); err != nil || ids == nil || len(ids) != 0 {
		t.Fatalf("RenewLeases of an owner without runs: %v (nil: %v), %v; want an empty list", ids, ids == nil, err)
	}
}

// testInterruptExpired: only runs whose lease ran out end; runs without a
// lease, with a lease still good, or already ended are left alone.
func (s suite) testInterruptExpired(t *testing.T) {
	st := s.open(t)
	thExpired := createThread(t, st, "user-1")
	expired, in := ownedRun(t, st, thExpired, at(1), "inst-dead", at(10))
	expired = startRun(t, st, expired, at(2))
	partial := assistant(expired, "half", agentstream.MessagePartial, at(3))
	if err := st.CheckpointRun(t.Context(), expired.ID, []agentstream.Message{partial}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	expiredQueued, _ := ownedRun(t, st, createThread(t, st, "user-2"), at(4), "inst-dead", at(10))
	alive, _ := ownedRun(t, st, createThread(t, st, "user-1"), at(5), "inst-alive", at(30))
	unleased, _ := createRun(t, st, createThread(t, st, "user-1"), at(6))
	justNow, _ := ownedRun(t, st, createThread(t, st, "user-1"), at(7), "inst-edge", at(20))

	got, err := st.InterruptExpiredRuns(t.Context(), at(20), interrupted)
	if err != nil {
		t.Fatalf("InterruptExpiredRuns: %v", err)
	}
	if len(got) != 2 || got[0].ID != expired.ID || got[1].ID != expiredQueued.ID {
		t.Fatalf("InterruptExpiredRuns returned %+v, want the two expired runs, oldest first", got)
	}
	for i, r := range []agentstream.Run{expired, expiredQueued} {
		want := finished(r, agentstream.RunInterrupted, &interrupted, agentstream.Usage{}, at(20))
		checkRun(t, got[i], want)
		checkRun(t, getRun(t, st, r), want)
	}
	checkMessages(t, st, thExpired.ID, in, withSeq(partial, 2))
	// A lease that ends exactly now still holds.
	for _, r := range []agentstream.Run{alive, unleased, justNow} {
		checkRun(t, getRun(t, st, r), r)
	}
	if got, err := st.InterruptExpiredRuns(t.Context(), at(20), interrupted); err != nil || len(got) != 0 {
		t.Fatalf("a second sweep: %+v, %v; want nothing", got, err)
	}
}

// testInterruptExpiredDeadline: InterruptExpiredRuns whose context ends
// while it works fails only if it ended nothing: a caller told of an error
// appends no terminal event, so a run ended without being returned is a
// run whose log never ends. The context here ends the first time the
// store waits on it (an SQLite store read the ended runs back after its
// write with it; the lease loop's sweep, bounded by a third of the lease,
// got an error for runs it had ended).
func (s suite) testInterruptExpiredDeadline(t *testing.T) {
	st := s.open(t)
	expired, _ := ownedRun(t, st, createThread(t, st, "user-1"), at(1), "inst-dead", at(10))
	ctx := &endsOnWait{Context: t.Context()}
	got, err := st.InterruptExpiredRuns(ctx, at(20), interrupted)
	stored := getRun(t, st, expired)
	switch {
	case err != nil && stored.Status != agentstream.RunQueued:
		t.Fatalf("InterruptExpiredRuns failed (%v) and ended the run: %+v", err, stored)
	case err == nil && (len(got) != 1 || got[0].ID != expired.ID):
		t.Fatalf("InterruptExpiredRuns returned %+v, want the expired run", got)
	}
	t.Logf("InterruptExpiredRuns with a context that ends on its first wait: %d runs, %v", len(got), err)
}

// endsOnWait is a context that ends (deadline exceeded) the first time
// anyone waits on its Done channel.
type endsOnWait struct {
	context.Context
	waited atomic.Bool
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *endsOnWait) Done() <-chan struct{} {
	c.waited.Store(true)
	return closedChan
}

func (c *endsOnWait) Err() error {
	if c.waited.Load() {
		return context.DeadlineExceeded
	}
	return nil
}
