package agent

import (
	"context"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

const testTTL = 300 * time.Millisecond

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
	// The lease runs out soon after the owner's last checkpoint.
	lease := now.Add(testTTL / 2)
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
