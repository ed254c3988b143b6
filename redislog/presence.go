package redislog

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Presence records in Redis when each run last had a reader on any
// instance, so that an instance can learn whether a run it would cancel
// (its client left, with on_disconnect cancel) was read since, elsewhere.
//
// The key {Prefix}{<runID>}:readers holds the time, in Unix milliseconds
// of the writing instance's clock, at which a reader of the run was last
// attached: written when a reader attaches and when it leaves, and every
// third of the window while readers stay attached. It expires twice the
// window after the last write. So for any time within the last window, a
// reader attached since then (still attached or gone) has written a time
// at or after it that has not expired. Clocks of instances are assumed to
// agree to well within the window.
type Presence struct {
	l      *Log
	window time.Duration

	mu     sync.Mutex
	runs   map[string]int // readers attached here, by run
	closed bool
	// writes counts the SETs under way, which Close waits for.
	writes sync.WaitGroup
	stop   chan struct{}
	done   chan struct{}
}

// Presence returns the reader presence of runs on this Log's Redis, for
// questions about the last window (default, when not positive, 5s). Close
// it before the Log.
func (l *Log) Presence(window time.Duration) *Presence {
	if window <= 0 {
		window = 5 * time.Second
	}
	p := &Presence{l: l, window: window, runs: make(map[string]int), stop: make(chan struct{}), done: make(chan struct{})}
	go p.refresh()
	return p
}

func (p *Presence) key(runID string) string { return p.l.opts.Prefix + "{" + runID + "}:readers" }

// Attach records a reader of runID until release is called (once; later
// calls do nothing). It does not wait for Redis.
func (p *Presence) Attach(runID string) (release func()) {
	p.mu.Lock()
	p.runs[runID]++
	p.mu.Unlock()
	p.write(runID)
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			if p.runs[runID]--; p.runs[runID] <= 0 {
				delete(p.runs, runID)
			}
			p.mu.Unlock()
			p.write(runID) // the time it left, so a reader since is seen
		})
	}
}

// write stamps runID's key with the time now, in the background.
func (p *Presence) write(runID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.writes.Add(1)
	go func() {
		defer p.writes.Done()
		ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
		defer cancel()
		p.set(ctx, runID)
	}()
}

func (p *Presence) set(ctx context.Context, runID string) {
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	if err := p.l.client.Set(ctx, p.key(runID), now, 2*p.window).Err(); err != nil {
		// A reader another instance cannot see makes its run cancelled
		// when on_disconnect says so, which is what it would be without
		// Presence: nothing worse.
		p.l.opts.Logger.Debug("redislog: recording a run's reader", "run_id", runID, "err", p.l.mapErr(ctx, err, "SET"))
	}
}

// refresh stamps, every third of the window, the runs with readers here.
func (p *Presence) refresh() {
	defer close(p.done)
	t := time.NewTicker(max(p.window/3, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		ids := make([]string, 0, len(p.runs))
		for id := range p.runs {
			ids = append(ids, id)
		}
		p.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
		now := strconv.FormatInt(time.Now().UnixMilli(), 10)
		_, err := p.l.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, id := range ids {
				pipe.Set(ctx, p.key(id), now, 2*p.window)
			}
			return nil
		})
		if err != nil {
			p.l.opts.Logger.Debug("redislog: refreshing runs' readers", "runs", len(ids), "err", p.l.mapErr(ctx, err, "SET"))
		}
		cancel()
	}
}

// Seen reports whether a reader of runID was attached, on any instance,
// at some time at or after since (which must be within the window).
// Errors are ErrUnavailable (or ctx's).
func (p *Presence) Seen(ctx context.Context, runID string, since time.Time) (bool, error) {
	p.mu.Lock()
	here := p.runs[runID] > 0
	p.mu.Unlock()
	if here {
		return true, nil
	}
	v, err := p.l.client.Get(ctx, p.key(runID)).Result()
	if err == redis.Nil {
		return false, nil
	}
	if err != nil {
		return false, p.l.mapErr(ctx, err, "GET")
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return false, nil // not a time: not a reader's
	}
	return ms >= since.UnixMilli(), nil
}

// Close stops refreshing and waits for the writes under way.
func (p *Presence) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
	<-p.done
	p.writes.Wait()
}
