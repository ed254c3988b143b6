package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// race runs the functions at once (as near as goroutines allow) and
// returns their errors.
func race(fns ...func() error) []error {
	errs := make([]error, len(fns))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(func() {
			<-start
			errs[i] = fn()
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// testConcurrentCreateRun: two runs created at once on one thread; exactly
// one wins.
func (s suite) testConcurrentCreateRun(t *testing.T) {
	st := s.open(t)
	for i := range 20 {
		th := createThread(t, st, "user-1")
		run0, in0 := newRun(th, at(10))
		run1, in1 := newRun(th, at(11))
		var got [2]agentstream.Message
		errs := race(
			func() (err error) { got[0], err = st.CreateRun(t.Context(), run0, in0); return err },
			func() (err error) { got[1], err = st.CreateRun(t.Context(), run1, in1); return err },
		)
		var winner int
		switch {
		case errs[0] == nil && errors.Is(errs[1], agentstream.ErrConflict):
			winner = 0
		case errs[1] == nil && errors.Is(errs[0], agentstream.ErrConflict):
			winner = 1
		default:
			t.Fatalf("round %d: CreateRun errors %v and %v; want one nil and one ErrConflict", i, errs[0], errs[1])
		}
		wantIn := []agentstream.Message{in0, in1}[winner]
		checkMessage(t, got[winner], withSeq(wantIn, 1))
		checkMessages(t, st, th.ID, withSeq(wantIn, 1))
		loser := []agentstream.Run{run0, run1}[1-winner]
		_, err := st.GetRun(t.Context(), loser.UserID, loser.ID)
		wantErr(t, err, agentstream.ErrNotFound, "GetRun of the losing run")
	}
}

// testConcurrentManyThreads: whole runs on many threads at once all
// succeed.
func (s suite) testConcurrentManyThreads(t *testing.T) {
	st := s.open(t)
	const threads, runs = 8, 5
	ths := make([]agentstream.Thread, threads)
	for i := range ths {
		ths[i] = createThread(t, st, fmt.Sprintf("user-%d", i%3))
	}
	wants := make([][]agentstream.Message, threads)
	fns := make([]func() error, threads)
	for i, th := range ths {
		fns[i] = func() error {
			for r := range runs {
				run, in := newRun(th, at(10*r))
				in, err := st.CreateRun(t.Context(), run, in)
				if err != nil {
					return fmt.Errorf("CreateRun: %w", err)
				}
				if err := st.StartRun(t.Context(), run.ID, at(10*r+1)); err != nil {
					return fmt.Errorf("StartRun: %w", err)
				}
				a1 := assistant(run, "partial", agentstream.MessagePartial, at(10*r+2))
				if err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{a1}); err != nil {
					return fmt.Errorf("CheckpointRun: %w", err)
				}
				a1.Content, a1.Status = "complete", agentstream.MessageComplete
				a2 := assistant(run, "final", agentstream.MessageComplete, at(10*r+3))
				run.Status, run.StartedAt = agentstream.RunRunning, ptr(at(10*r+1))
				if err := st.FinishRun(t.Context(), finished(run, agentstream.RunCompleted, nil, agentstream.Usage{OutputTokens: 1}, at(10*r+4)),
					[]agentstream.Message{a1, a2}); err != nil {
					return fmt.Errorf("FinishRun: %w", err)
				}
				seq := int64(3 * r)
				wants[i] = append(wants[i], withSeq(in, seq+1), withSeq(a1, seq+2), withSeq(a2, seq+3))
			}
			return nil
		}
	}
	for i, err := range race(fns...) {
		if err != nil {
			t.Fatalf("thread %d: %v", i, err)
		}
	}
	for i, th := range ths {
		checkMessages(t, st, th.ID, wants[i]...)
	}
}

// testConcurrentAppends: writers append to and edit the messages of two
// running runs, on two threads, at once. Every thread's Seq stays 1, 2, 3…
// without duplicates or gaps, and in each writer's order.
func (s suite) testConcurrentAppends(t *testing.T) {
	st := s.open(t)
	const writers, rounds = 4, 12
	type thread struct {
		th  agentstream.Thread
		run agentstream.Run
		in  agentstream.Message
	}
	var ths [2]thread
	for i := range ths {
		th := createThread(t, st, "user-1")
		run, in := runningRun(t, st, th, at(10))
		ths[i] = thread{th, run, in}
	}
	// written[w][i] lists what writer w wrote to thread i, in order.
	var written [writers][2][]agentstream.Message
	fns := make([]func() error, writers)
	for w := range fns {
		fns[w] = func() error {
			for k := range rounds {
				i := (w + k) % 2
				run := ths[i].run
				batch := []agentstream.Message{
					assistant(run, fmt.Sprintf("w%d k%d", w, k), agentstream.MessagePartial, at(100+k)),
				}
				if k%3 == 0 {
					batch = append(batch, assistant(run, fmt.Sprintf("w%d k%d b", w, k), agentstream.MessageComplete, at(100+k)))
				}
				// Edit this writer's previous message on the thread.
				if prev := written[w][i]; len(prev) > 0 {
					last := &prev[len(prev)-1]
					last.Content += " (edited)"
					last.Status = agentstream.MessageComplete
					batch = append([]agentstream.Message{*last}, batch...)
				}
				if err := st.CheckpointRun(t.Context(), run.ID, batch); err != nil {
					return fmt.Errorf("round %d: CheckpointRun: %w", k, err)
				}
				n := 1 // new messages, at the end of batch
				if k%3 == 0 {
					n = 2
				}
				written[w][i] = append(written[w][i], batch[len(batch)-n:]...)
			}
			return nil
		}
	}
	for w, err := range race(fns...) {
		if err != nil {
			t.Fatalf("writer %d: %v", w, err)
		}
	}

	for i, th := range ths {
		got, err := st.ListMessages(t.Context(), th.th.ID)
		if err != nil {
			t.Fatalf("ListMessages: %v", err)
		}
		want := map[string]agentstream.Message{th.in.ID: th.in}
		for w := range writers {
			for _, m := range written[w][i] {
				want[m.ID] = m
			}
		}
		if len(got) != len(want) {
			t.Fatalf("thread %d: %d messages, want %d", i, len(got), len(want))
		}
		seqOf := map[string]int64{}
		for j, m := range got {
			if m.Seq != int64(j+1) {
				t.Fatalf("thread %d: message %d has Seq %d, want %d: %s", i, j, m.Seq, j+1, seqs(got))
			}
			w, ok := want[m.ID]
			if !ok {
				t.Fatalf("thread %d: unexpected message %s", i, m.ID)
			}
			checkMessage(t, m, withSeq(w, m.Seq))
			seqOf[m.ID] = m.Seq
		}
		for w := range writers {
			for j := 1; j < len(written[w][i]); j++ {
				a, b := written[w][i][j-1], written[w][i][j]
				if seqOf[a.ID] >= seqOf[b.ID] {
					t.Errorf("thread %d, writer %d: %s (Seq %d) written before %s (Seq %d)", i, w, a.ID, seqOf[a.ID], b.ID, seqOf[b.ID])
				}
			}
		}
	}
}

// testConcurrentCreateWhileFinishing: a run finishes while the next run on
// its thread is being created, retried until the thread is free. The new
// run's input always comes after the finished run's last messages.
func (s suite) testConcurrentCreateWhileFinishing(t *testing.T) {
	st := s.open(t)
	for i := range 10 {
		th := createThread(t, st, "user-1")
		runA, inA := runningRun(t, st, th, at(10))
		a1 := assistant(runA, "tool call", agentstream.MessageComplete, at(11))
		a2 := assistant(runA, "answer", agentstream.MessageComplete, at(12))
		runB, inB := newRun(th, at(20))
		errs := race(
			func() error {
				return st.FinishRun(t.Context(), finished(runA, agentstream.RunCompleted, nil, agentstream.Usage{}, at(13)),
					[]agentstream.Message{a1, a2})
			},
			func() error {
				deadline := time.Now().Add(10 * time.Second)
				for {
					_, err := st.CreateRun(t.Context(), runB, inB)
					if !errors.Is(err, agentstream.ErrConflict) || time.Now().After(deadline) {
						return err
					}
					time.Sleep(50 * time.Microsecond)
				}
			},
		)
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: FinishRun: %v; CreateRun: %v", i, errs[0], errs[1])
		}
		checkMessages(t, st, th.ID, inA, withSeq(a1, 2), withSeq(a2, 3), withSeq(inB, 4))
	}
}

// testConcurrentFinishRace: a run completes while it is cancelled; one
// FinishRun wins, the other gets ErrConflict and writes nothing.
func (s suite) testConcurrentFinishRace(t *testing.T) {
	st := s.open(t)
	for i := range 10 {
		th := createThread(t, st, "user-1")
		run, in := runningRun(t, st, th, at(10))
		a0 := assistant(run, "the answer", agentstream.MessageComplete, at(11))
		a1 := assistant(run, "the ans", agentstream.MessagePartial, at(11))
		dones := []agentstream.Run{
			finished(run, agentstream.RunCompleted, nil, agentstream.Usage{InputTokens: 1, OutputTokens: 2}, at(12)),
			finished(run, agentstream.RunCancelled, &agentstream.ErrorInfo{Code: agentstream.CodeCancelled, Message: "cancelled"}, agentstream.Usage{InputTokens: 1}, at(13)),
		}
		msgs := []agentstream.Message{a0, a1}
		errs := race(
			func() error { return st.FinishRun(t.Context(), dones[0], []agentstream.Message{a0}) },
			func() error { return st.FinishRun(t.Context(), dones[1], []agentstream.Message{a1}) },
		)
		var winner int
		switch {
		case errs[0] == nil && errors.Is(errs[1], agentstream.ErrConflict):
			winner = 0
		case errs[1] == nil && errors.Is(errs[0], agentstream.ErrConflict):
			winner = 1
		default:
			t.Fatalf("round %d: FinishRun errors %v and %v; want one nil and one ErrConflict", i, errs[0], errs[1])
		}
		checkRun(t, getRun(t, st, run), dones[winner])
		checkMessages(t, st, th.ID, in, withSeq(msgs[winner], 2))
	}
}

// testConcurrentCheckpointWhileFinishing: a checkpoint races the run's end.
// Either it lands first, before the final messages, or it gets ErrConflict
// and writes nothing.
func (s suite) testConcurrentCheckpointWhileFinishing(t *testing.T) {
	st := s.open(t)
	for i := range 10 {
		th := createThread(t, st, "user-1")
		run, in := runningRun(t, st, th, at(10))
		c := assistant(run, "checkpointed", agentstream.MessagePartial, at(11))
		f := assistant(run, "final", agentstream.MessageComplete, at(12))
		done := finished(run, agentstream.RunCompleted, nil, agentstream.Usage{}, at(13))
		errs := race(
			func() error { return st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{c}) },
			func() error { return st.FinishRun(t.Context(), done, []agentstream.Message{f}) },
		)
		if errs[1] != nil {
			t.Fatalf("round %d: FinishRun: %v", i, errs[1])
		}
		switch {
		case errs[0] == nil:
			checkMessages(t, st, th.ID, in, withSeq(c, 2), withSeq(f, 3))
		case errors.Is(errs[0], agentstream.ErrConflict):
			checkMessages(t, st, th.ID, in, withSeq(f, 2))
		default:
			t.Fatalf("round %d: CheckpointRun: %v; want nil or ErrConflict", i, errs[0])
		}
		checkRun(t, getRun(t, st, run), done)
	}
}

// testConcurrentStartRunRace: a queued run started twice at once; one
// StartRun wins, the other gets ErrConflict.
func (s suite) testConcurrentStartRunRace(t *testing.T) {
	st := s.open(t)
	for i := range 10 {
		th := createThread(t, st, "user-1")
		run, _ := createRun(t, st, th, at(10))
		starts := []time.Time{at(11), at(12)}
		errs := race(
			func() error { return st.StartRun(t.Context(), run.ID, starts[0]) },
			func() error { return st.StartRun(t.Context(), run.ID, starts[1]) },
		)
		var winner int
		switch {
		case errs[0] == nil && errors.Is(errs[1], agentstream.ErrConflict):
			winner = 0
		case errs[1] == nil && errors.Is(errs[0], agentstream.ErrConflict):
			winner = 1
		default:
			t.Fatalf("round %d: StartRun errors %v and %v; want one nil and one ErrConflict", i, errs[0], errs[1])
		}
		want := run
		want.Status, want.StartedAt = agentstream.RunRunning, &starts[winner]
		checkRun(t, getRun(t, st, run), want)
	}
}

// testConcurrentInterruptWhileFinishing: InterruptRuns races a run's end.
// Either the run finishes (and InterruptRuns leaves it out), or it is
// interrupted (and FinishRun gets ErrConflict and writes nothing).
func (s suite) testConcurrentInterruptWhileFinishing(t *testing.T) {
	st := s.open(t)
	for i := range 10 {
		th := createThread(t, st, "user-1")
		run, in := runningRun(t, st, th, at(10))
		a1 := assistant(run, "the answer", agentstream.MessageComplete, at(11))
		done := finished(run, agentstream.RunCompleted, nil, agentstream.Usage{OutputTokens: 3}, at(12))
		var got []agentstream.Run
		errs := race(
			func() error { return st.FinishRun(t.Context(), done, []agentstream.Message{a1}) },
			func() (err error) { got, err = st.InterruptRuns(t.Context(), at(13), interrupted); return err },
		)
		if errs[1] != nil {
			t.Fatalf("round %d: InterruptRuns: %v", i, errs[1])
		}
		switch {
		case errs[0] == nil:
			if len(got) != 0 {
				t.Fatalf("round %d: the run finished, yet InterruptRuns returned %+v", i, got)
			}
			checkRun(t, getRun(t, st, run), done)
			checkMessages(t, st, th.ID, in, withSeq(a1, 2))
		case errors.Is(errs[0], agentstream.ErrConflict):
			want := finished(run, agentstream.RunInterrupted, &interrupted, agentstream.Usage{}, at(13))
			if len(got) != 1 {
				t.Fatalf("round %d: FinishRun lost to InterruptRuns, which returned %d runs, want 1", i, len(got))
			}
			checkRun(t, got[0], want)
			checkRun(t, getRun(t, st, run), want)
			checkMessages(t, st, th.ID, in)
		default:
			t.Fatalf("round %d: FinishRun: %v; want nil or ErrConflict", i, errs[0])
		}
	}
}

// testConcurrentRenewWhileSweeping: an owner renewing a run whose lease
// just ran out races a sweeper: the run is either renewed (and left alone)
// or interrupted (and not among the renewed), never both.
func (s suite) testConcurrentRenewWhileSweeping(t *testing.T) {
	st := s.open(t)
	for i := range 10 {
		run, _ := ownedRun(t, st, createThread(t, st, "user-1"), at(1), "inst-slow", at(10))
		var renewed []string
		var swept []agentstream.Run
		errs := race(
			func() (err error) { renewed, err = st.RenewLeases(t.Context(), "inst-slow", at(40)); return err },
			func() (err error) { swept, err = st.InterruptExpiredRuns(t.Context(), at(20), interrupted); return err },
		)
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: RenewLeases %v, InterruptExpiredRuns %v", i, errs[0], errs[1])
		}
		stored := getRun(t, st, run)
		switch {
		case len(renewed) == 1 && len(swept) == 0:
			if stored.Status != agentstream.RunQueued || stored.LeaseUntil == nil || stored.LeaseUntil.Sub(at(40)).Abs() >= time.Millisecond {
				t.Fatalf("round %d: renewed, but stored %+v", i, stored)
			}
			// End it, so the next round's owner holds one run.
			if _, err := st.InterruptRuns(t.Context(), at(50), interrupted); err != nil {
				t.Fatal(err)
			}
		case len(renewed) == 0 && len(swept) == 1:
			if stored.Status != agentstream.RunInterrupted {
				t.Fatalf("round %d: swept, but stored %+v", i, stored)
			}
		default:
			t.Fatalf("round %d: renewed %v and swept %d runs", i, renewed, len(swept))
		}
	}
}
