package agent

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// testTTL is the lease of the lease tests: renewals come every third of
// it, each bounded by a third. At 300ms a busy machine (CI, the race
// detector) stalled renewals past a lease now and then, and the runner's
// own sweep ended its run.
const testTTL = time.Second

// TestLeaseRenewed: a run started with an owner holds a lease in the store,
// and the runner keeps extending it while the run goes on.
func TestLeaseRenewed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setup{
		cfg:    Config{Owner: "inst-a", LeaseTTL: testTTL},
		script: scripted(turn{text: []string{"thinking"}, hold: true}),
	})
	run := h.start(h.thread(nil), "hi")
	h.model.waitStreamed(t, 1)
	first := h.stored(run.ID)
	if first.Owner != "inst-a" || first.LeaseUntil == nil {
		t.Fatalf("stored run %+v: want owner inst-a with a lease", first)
	}
	eventually(t, "the lease to be renewed", func() bool {
		now := h.stored(run.ID)
		return now.LeaseUntil != nil && now.LeaseUntil.After(first.LeaseUntil.Add(testTTL/2))
	})
	// Renewed, it is not swept, however long it runs.
	time.Sleep(testTTL)
	if got := h.stored(run.ID); got.Status != agentstream.RunRunning {
		t.Fatalf("a renewed run was swept: %+v", got)
	}
	h.r.Cancel(run.ID)
	end(t, h.events(run.ID), agentstream.EventRunCancelled)
	if got := h.stored(run.ID); got.Owner != "" || got.LeaseUntil != nil {
		t.Fatalf("an ended run keeps its lease: %+v", got)
	}
}

// TestSweepDeadOwner: a run whose owner died (its lease ran out) is ended
// interrupted by another runner, keeping its checkpointed partial answer,
// and its log gets the terminal event, ending every reader's stream.
func TestSweepDeadOwner(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setup{cfg: Config{Owner: "inst-b", LeaseTTL: testTTL}})
	th := h.thread(nil)
	ctx := context.Background()
	now := time.Now().UTC()
	// The dead owner holds the lease while it writes what it did (a
	// lease of testTTL/2 from now ran out before the checkpoint on a busy
	// machine, and the sweep took the run first); it runs out soon after
	// the owner's last checkpoint, below.
	lease := now.Add(time.Hour)
	run := agentstream.Run{ID: agentstream.NewID("run_"), ThreadID: th.ID, UserID: th.UserID, Agent: "assistant",
		Status: agentstream.RunQueued, CreatedAt: now, Owner: "inst-dead", LeaseUntil: &lease}
	in := agentstream.Message{ID: agentstream.NewID("msg_"), ThreadID: th.ID, RunID: run.ID, Role: agentstream.RoleUser,
		Content: "hello", Status: agentstream.MessageComplete, CreatedAt: now}
	if _, err := h.db.CreateRun(ctx, run, in); err != nil {
		t.Fatal(err)
	}
	if err := h.db.StartRun(ctx, run.ID, now); err != nil {
		t.Fatal(err)
	}
	partial := agentstream.Message{ID: agentstream.NewID("msg_"), ThreadID: th.ID, RunID: run.ID, Role: agentstream.RoleAssistant,
		Content: "half an ans", Status: agentstream.MessagePartial, CreatedAt: now}
	if err := h.db.CheckpointRun(ctx, run.ID, []agentstream.Message{partial}); err != nil {
		t.Fatal(err)
	}
	// What the dead owner had streamed.
	if _, err := h.log.Append(ctx, run.ID,
		agentstream.NewEvent(agentstream.EventRunStarted, agentstream.RunStartedData{RunID: run.ID}),
		agentstream.NewEvent(agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: partial.ID, Delta: "half an ans"}),
	); err != nil {
		t.Fatal(err)
	}
	if ids, err := h.db.RenewLeases(ctx, "inst-dead", time.Now().UTC().Add(testTTL/2)); err != nil || len(ids) != 1 {
		t.Fatalf("RenewLeases: %v, %v", ids, err)
	}

	evs := h.events(run.ID) // the lease loop sweeps it once the lease is over
	e := end(t, evs, agentstream.EventRunInterrupted)
	if e.Error == nil || e.Error.Code != agentstream.CodeInterrupted || len(evs) != 3 {
		t.Fatalf("the swept run's log: %v, ending %+v", types(evs), e)
	}
	got := h.stored(run.ID)
	if got.Status != agentstream.RunInterrupted || got.Owner != "" || got.FinishedAt == nil {
		t.Fatalf("swept run stored %+v", got)
	}
	msgs := h.messages(th.ID)
	if len(msgs) != 2 || msgs[1].Content != "half an ans" || msgs[1].Status != agentstream.MessagePartial {
		t.Fatalf("the swept run's messages %+v: want the question and the partial answer", msgs)
	}
	if n := h.r.SweepExpired(ctx); n != 0 {
		t.Fatalf("a second sweep ended %d runs", n)
	}
}

// TestLeaseLost: a run whose lease another instance took (the store says it
// ended) is stopped by its runner at the next renewal, which saves nothing
// over the other instance's outcome and appends no second terminal event.
func TestLeaseLost(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setup{
		cfg:    Config{Owner: "inst-a", LeaseTTL: testTTL},
		script: scripted(turn{text: []string{"thinking"}, hold: true}, turn{text: []string{"ok"}}),
	})
	th := h.thread(nil)
	run := h.start(th, "hi")
	h.model.waitStreamed(t, 1)
	// Another instance sweeps it, as it would after a missed renewal.
	ctx := context.Background()
	swept, err := h.db.InterruptRuns(ctx, time.Now().UTC(), deadOwner)
	if err != nil || len(swept) != 1 {
		t.Fatalf("InterruptRuns: %v, %v", swept, err)
	}
	if _, err := h.log.Append(ctx, run.ID, agentstream.NewEvent(agentstream.EventRunInterrupted, agentstream.RunEndData{
		RunID: run.ID, Status: agentstream.RunInterrupted, Error: &deadOwner,
	})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the runner to let the run go", func() bool {
		r, q := h.r.Load()
		return r == 0 && q == 0
	})
	evs := h.events(run.ID)
	if e := end(t, evs, agentstream.EventRunInterrupted); e.Error == nil || e.Error.Message != deadOwner.Message {
		t.Fatalf("log ends %+v", e)
	}
	if got := h.stored(run.ID); got.Status != agentstream.RunInterrupted || got.Error == nil || got.Error.Message != deadOwner.Message {
		t.Fatalf("the sweeper's outcome was overwritten: %+v", got)
	}
	// The thread is free for a new run.
	next := h.start(th, "again")
	end(t, h.events(next.ID), agentstream.EventRunCompleted)
}

// slowLog makes every append of a swept run's terminal event slow, as a
// Redis far away or busy would.
type slowLog struct {
	agentstream.EventLog
	delay time.Duration
}

func (l slowLog) Append(ctx context.Context, runID string, evs ...agentstream.Event) (int64, error) {
	if len(evs) == 1 && evs[0].Type == agentstream.EventRunInterrupted {
		time.Sleep(l.delay)
	}
	return l.EventLog.Append(ctx, runID, evs...)
}

// renewCounter counts RenewLeases calls.
type renewCounter struct {
	agentstream.Store
	n *atomic.Int64
}

func (s renewCounter) RenewLeases(ctx context.Context, owner string, until time.Time) ([]string, error) {
	s.n.Add(1)
	return s.Store.RenewLeases(ctx, owner, until)
}

// TestSweepDoesNotHoldUpRenewals: ending many runs of a dead instance,
// each slow to end, does not stop this instance renewing its own leases
// meanwhile (when the sweep and the renewal took turns in one loop, none
// was renewed for as long as the sweep took, and another instance swept
// this one's runs in turn).
func TestSweepDoesNotHoldUpRenewals(t *testing.T) {
	t.Parallel()
	var renewals atomic.Int64
	h := newHarness(t, setup{
		cfg:     Config{Owner: "inst-b", LeaseTTL: testTTL},
		script:  scripted(turn{text: []string{"thinking"}, hold: true}),
		wrap:    func(s agentstream.Store) agentstream.Store { return renewCounter{s, &renewals} },
		wrapLog: func(l agentstream.EventLog) agentstream.EventLog { return slowLog{l, testTTL} },
	})
	ctx := context.Background()
	mine := h.start(h.thread(nil), "hi")
	h.model.waitStreamed(t, 1)
	// A dead instance's 40 runs, their leases over: ending them takes
	// 40 × testTTL ÷ 16 at a time, several lease periods.
	past := time.Now().UTC().Add(-time.Second)
	var dead []agentstream.Run
	for range 40 {
		th := h.thread(nil)
		run := agentstream.Run{ID: agentstream.NewID("run_"), ThreadID: th.ID, UserID: th.UserID, Agent: "assistant",
			Status: agentstream.RunRunning, StartedAt: &past, CreatedAt: past, Owner: "inst-dead", LeaseUntil: &past}
		in := agentstream.Message{ID: agentstream.NewID("msg_"), ThreadID: th.ID, RunID: run.ID, Role: agentstream.RoleUser,
			Content: "hello", Status: agentstream.MessageComplete, CreatedAt: past}
		if _, err := h.db.CreateRun(ctx, run, in); err != nil {
			t.Fatal(err)
		}
		dead = append(dead, run)
	}
	// Wait for the sweep to take them, then count renewals while it ends
	// them.
	eventually(t, "the dead runs to be swept", func() bool {
		return h.stored(dead[len(dead)-1].ID).Status == agentstream.RunInterrupted
	})
	before := renewals.Load()
	time.Sleep(2 * testTTL)
	if n := renewals.Load() - before; n < 3 {
		t.Fatalf("%d lease renewals in two lease periods of sweeping, want one every third of a period", n)
	}
	if got := h.stored(mine.ID); got.Status != agentstream.RunRunning {
		t.Fatalf("this instance's run while it swept a dead one's: %+v", got)
	}
	h.r.Cancel(mine.ID)
	end(t, h.events(mine.ID), agentstream.EventRunCancelled)
}

// slowRenewals makes every RenewLeases take d, whatever its context says,
// as a store whose write queue is long (SQLite's batcher does not drop a
// write whose context ends once it is queued).
type slowRenewals struct {
	agentstream.Store
	d time.Duration
}

func (s slowRenewals) RenewLeases(ctx context.Context, owner string, until time.Time) ([]string, error) {
	time.Sleep(s.d)
	return s.Store.RenewLeases(context.WithoutCancel(ctx), owner, until)
}

// TestSlowRenewalsNotSwept: a runner whose renewals take longer than half
// a lease, so that between a renewal's start plus the lease and its commit
// its own leases are over, does not end its own live run: its sweep ends
// only leases that ran out before the sweep's own renewal began. (Its
// sweep used to run beside the renewals and find its own run's lease over.)
func TestSlowRenewalsNotSwept(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setup{
		cfg:    Config{Owner: "inst-a", LeaseTTL: testTTL},
		script: scripted(turn{text: []string{"thinking"}, hold: true}),
		wrap:   func(s agentstream.Store) agentstream.Store { return slowRenewals{s, testTTL * 7 / 10} },
	})
	run := h.start(h.thread(nil), "hi")
	h.model.waitStreamed(t, 1)
	time.Sleep(4 * testTTL)
	if got := h.stored(run.ID); got.Status != agentstream.RunRunning {
		t.Fatalf("a live run of a runner with slow renewals: %+v", got)
	}
	h.r.Cancel(run.ID)
	end(t, h.events(run.ID), agentstream.EventRunCancelled)
}

// failingRenewals lets the first RenewLeases through and fails the rest,
// as a store this runner can no longer write its leases to.
type failingRenewals struct {
	agentstream.Store
	n *atomic.Int64
}

func (s failingRenewals) RenewLeases(ctx context.Context, owner string, until time.Time) ([]string, error) {
	if s.n.Add(1) > 1 {
		return nil, agentstream.Errorf(agentstream.CodeUnavailable, "renewals fail in this test")
	}
	return s.Store.RenewLeases(ctx, owner, until)
}

// TestSweepAfterFailedRenewals: while its renewals fail, a runner still
// ends a dead instance's runs whose leases ran out before its last
// renewal that succeeded, and still not its own live run.
func TestSweepAfterFailedRenewals(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	h := newHarness(t, setup{
		cfg:    Config{Owner: "inst-a", LeaseTTL: testTTL},
		script: scripted(turn{text: []string{"thinking"}, hold: true}),
		wrap:   func(s agentstream.Store) agentstream.Store { return failingRenewals{s, &calls} },
	})
	mine := h.start(h.thread(nil), "hi")
	h.model.waitStreamed(t, 1)
	eventually(t, "a renewal to fail", func() bool { return calls.Load() > 1 })
	ctx := context.Background()
	th := h.thread(nil)
	past := time.Now().UTC().Add(-time.Hour)
	dead := agentstream.Run{ID: agentstream.NewID("run_"), ThreadID: th.ID, UserID: th.UserID, Agent: "assistant",
		Status: agentstream.RunRunning, StartedAt: &past, CreatedAt: past, Owner: "inst-dead", LeaseUntil: &past}
	in := agentstream.Message{ID: agentstream.NewID("msg_"), ThreadID: th.ID, RunID: dead.ID, Role: agentstream.RoleUser,
		Content: "hello", Status: agentstream.MessageComplete, CreatedAt: past}
	if _, err := h.db.CreateRun(ctx, dead, in); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the dead run to be swept", func() bool {
		return h.stored(dead.ID).Status == agentstream.RunInterrupted
	})
	time.Sleep(2 * testTTL) // past this runner's own lease, never renewed again
	if got := h.stored(mine.ID); got.Status != agentstream.RunRunning {
		t.Fatalf("this runner's live run, its renewals failing: %+v", got)
	}
	h.r.Cancel(mine.ID)
	end(t, h.events(mine.ID), agentstream.EventRunCancelled)
}
