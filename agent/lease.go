package agent

import (
	"context"
	"sync"
	"time"

	"github.com/agentstream/agentstream"
)

// sweepParallel bounds the terminal events of swept runs appended at once.
const sweepParallel = 16

var (
	// errLeaseLost stops a run that another instance ended because this
	// one failed to renew its lease in time (it could not reach the store).
	errLeaseLost = agentstream.Errorf(agentstream.CodeInterrupted,
		"the run's lease ran out (its server could not reach the store) and another server ended it")
	// deadOwner is the error of runs swept after their owner died.
	deadOwner = agentstream.ErrorInfo{Code: agentstream.CodeInterrupted,
		Message: "the server running the run stopped before it ended (its lease ran out)"}
)

// leaseLoop renews this runner's leases, and sweeps expired ones, at once
// and then every third of the lease TTL, until Shutdown. The two go on
// side by side: ending a dead instance's runs (a store write and a log
// append each, hundreds of them) must never hold up this instance's own
// renewal, or its runs' leases run out in turn and another instance ends
// them.
func (r *Runner) leaseLoop() {
	defer close(r.leasesDone)
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		r.every(r.cfg.LeaseTTL/3, func() {
			// This runner's leases are renewed first, in this goroutine,
			// so that a sweep never finds them over: the renewal loop can
			// be late (the machine busy, the store's write queue long),
			// and a runner ending its own live runs as if it had died
			// would be the worst outcome of a slow renewal.
			// The sweep ends leases that ran out before the renewal began:
			// this runner's, renewed from then on, are not among them
			// however long the renewal waited. After a failed renewal it
			// ends those over before the last renewal that succeeded
			// began, and none before any did.
			at := r.now().UTC()
			if !r.renewLeases() {
				from := r.renewedFrom.Load()
				if from == 0 {
					return
				}
				at = time.Unix(0, from).UTC()
			}
			r.sweepExpired(context.Background(), at)
		})
	}()
	r.every(r.cfg.LeaseTTL/3, func() { r.renewLeases() })
	<-swept
}

// every runs fn at once and then every d, until Shutdown.
func (r *Runner) every(d time.Duration, fn func()) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		fn()
		select {
		case <-r.stopLeases:
			return
		case <-tick.C:
		}
	}
}

// endLeases stops the lease loop once no run is left to hold a lease.
func (r *Runner) endLeases() {
	if r.stopLeases == nil {
		return
	}
	r.mu.Lock()
	select {
	case <-r.stopLeases:
	default:
		close(r.stopLeases)
	}
	r.mu.Unlock()
	<-r.leasesDone
}

// renewLeases extends the leases of this runner's runs, and stops the
// runs whose lease was taken: the store no longer lists them as ours. It
// reports whether the store renewed them.
func (r *Runner) renewLeases() bool {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.LeaseTTL/3)
	defer cancel()
	// Runs registered before the call started are the ones it must list.
	r.mu.Lock()
	mine := make([]string, 0, len(r.active))
	for id := range r.active {
		mine = append(mine, id)
	}
	r.mu.Unlock()
	start := r.now().UTC()
	held, err := r.store.RenewLeases(ctx, r.cfg.Owner, start.Add(r.cfg.LeaseTTL))
	if err != nil {
		r.logger.Warn("renewing run leases", "owner", r.cfg.Owner, "err", err)
		return false
	}
	for {
		// Two renewals may end out of order: keep the later start.
		old := r.renewedFrom.Load()
		if start.UnixNano() <= old || r.renewedFrom.CompareAndSwap(old, start.UnixNano()) {
			break
		}
	}
	listed := make(map[string]bool, len(held))
	for _, id := range held {
		listed[id] = true
	}
	for _, id := range mine {
		// A run missing from the list has ended: by itself (it is leaving
		// r.active), or by a sweeper, which it must learn of.
		if !listed[id] && r.stop(id, errLeaseLost) {
			r.logger.Debug("a run not held in the store was stopped", "run_id", id)
		}
	}
	return true
}

// SweepExpired ends, as interrupted, the runs whose lease ran out (their
// instance died or lost the store), and appends each one's terminal event
// so that every reader's stream ends. It returns how many it ended. The
// lease loop calls it; a server calls it at start to recover at once.
func (r *Runner) SweepExpired(ctx context.Context) int {
	return r.sweepExpired(ctx, r.now().UTC())
}

// sweepExpired is SweepExpired of the leases that ran out before at.
func (r *Runner) sweepExpired(ctx context.Context, at time.Time) int {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTTL/3)
	defer cancel()
	runs, err := r.store.InterruptExpiredRuns(ctx, at, deadOwner)
	if err != nil {
		r.logger.Warn("sweeping runs with expired leases", "err", err)
		return 0
	}
	// Their terminal events, a few at a time: a dead instance may leave
	// hundreds.
	places := make(chan struct{}, sweepParallel)
	var wg sync.WaitGroup
	for _, run := range runs {
		r.logger.Warn("a run's lease ran out: marked interrupted", "run_id", run.ID)
		places <- struct{}{}
		wg.Go(func() {
			defer func() { <-places }()
			r.EndInterrupted(context.WithoutCancel(ctx), run)
		})
	}
	wg.Wait()
	return len(runs)
}

// EndInterrupted appends the terminal event of a run the store ended
// without its owner (its lease ran out, or its server died and a server
// of the same SQLite file started), after the last event the log holds: the events of the dead owner that never reached the log were
// never read by anyone, so this id denotes nothing else, anywhere. Its id
// is then recorded in the store, for ends rebuilt from it. When the log
// cannot take it, readers rebuild the end from the store.
func (r *Runner) EndInterrupted(ctx context.Context, run agentstream.Run) {
	seq, err := r.log.Append(ctx, run.ID, agentstream.NewEvent(agentstream.EventRunInterrupted, agentstream.RunEndData{
		RunID: run.ID, Status: run.Status, Usage: run.Usage, Error: run.Error,
	}))
	if err != nil {
		r.logger.Warn("appending the terminal event of a run whose lease ran out", "run_id", run.ID, "err", err)
		return
	}
	if _, err := r.store.SetEndSeq(ctx, run.ID, seq); err != nil {
		r.logger.Warn("recording the terminal event's id of a run whose lease ran out", "run_id", run.ID, "err", err)
	}
}
