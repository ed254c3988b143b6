// Package memlog is the in-process EventLog: each run's events live in a
// slice that readers index with their own cursor, so a slow reader holds
// nothing and never blocks the runner or other readers. Appends wake
// waiting readers by closing a channel, which costs the same for one
// reader or thousands.
package memlog

import (
	"context"
	"sync"
	"time"

	"github.com/agentstream/agentstream"
)

var _ agentstream.EventLog = (*Log)(nil)

// Options configures a Log.
type Options struct {
	// Retention is how long a run's events stay readable after its terminal
	// event. Default 10 minutes. Later reads get ErrNotFound and are
	// answered from the store.
	Retention time.Duration
}

// WithDefaults fills in unset fields.
func (o Options) WithDefaults() Options {
	if o.Retention <= 0 {
		o.Retention = 10 * time.Minute
	}
	return o
}

// Log is an in-process EventLog.
type Log struct {
	opts Options

	mu   sync.RWMutex
	runs map[string]*runLog
}

type runLog struct {
	mu     sync.Mutex
	events []agentstream.Event
	closed bool
	// wake is closed and replaced on every append, waking all waiters.
	wake chan struct{}
}

// New returns an empty Log.
func New(opts Options) *Log {
	return &Log{opts: opts.WithDefaults(), runs: make(map[string]*runLog)}
}

func (l *Log) get(runID string) *runLog {
	l.mu.RLock()
	r := l.runs[runID]
	l.mu.RUnlock()
	return r
}

// Append implements agentstream.EventLog.
func (l *Log) Append(_ context.Context, runID string, events ...agentstream.Event) (int64, error) {
	r := l.get(runID)
	if r == nil {
		l.mu.Lock()
		if r = l.runs[runID]; r == nil {
			r = &runLog{wake: make(chan struct{})}
			l.runs[runID] = r
		}
		l.mu.Unlock()
	}

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, agentstream.Errorf(agentstream.CodeConflict, "run %s has ended: its event log is closed", runID)
	}
	terminal := false
	for _, ev := range events {
		if terminal {
			r.mu.Unlock()
			return 0, agentstream.Errorf(agentstream.CodeConflict, "events after the terminal event of run %s", runID)
		}
		terminal = ev.Type.Terminal()
	}
	for _, ev := range events {
		ev.Seq = int64(len(r.events)) + 1
		r.events = append(r.events, ev)
	}
	last := int64(len(r.events))
	if terminal {
		r.closed = true
	}
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()

	if terminal {
		time.AfterFunc(l.opts.Retention, func() { l.evict(runID, r) })
	}
	return last, nil
}

func (l *Log) evict(runID string, r *runLog) {
	l.mu.Lock()
	if l.runs[runID] == r {
		delete(l.runs, runID)
	}
	l.mu.Unlock()
}

// Read implements agentstream.EventLog.
func (l *Log) Read(ctx context.Context, runID string, after int64, max int) ([]agentstream.Event, bool, error) {
	r := l.get(runID)
	if r == nil {
		return nil, false, agentstream.Errorf(agentstream.CodeNotFound, "no event log for run %s", runID)
	}
	if after < 0 {
		after = 0
	}
	if max <= 0 {
		max = 1
	}
	for {
		r.mu.Lock()
		n := int64(len(r.events))
		if after < n {
			end := min(n, after+int64(max))
			// Events are never modified once appended, so the slice can be
			// shared: a later append may move the backing array but leaves
			// this one intact.
			evs := r.events[after:end:end]
			done := r.closed && end == n
			r.mu.Unlock()
			return evs, done, nil
		}
		if r.closed {
			r.mu.Unlock()
			return nil, true, nil
		}
		wake := r.wake
		r.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// Len returns how many runs' logs are held, for tests and metrics.
func (l *Log) Len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.runs)
}
