// Package memlimit is an in-process agentstream.RateLimiter: a token
// bucket (golang.org/x/time/rate) per key, dropped once idle. It limits
// one process; instances that share a deployment share rates through
// Redis (redislog.RateLimiter).
package memlimit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/agentstream/agentstream"
)

var _ agentstream.RateLimiter = (*Limiter)(nil)

// Limiter allows each key perMinute actions a minute, burst at once.
type Limiter struct {
	limit rate.Limit
	burst int
	// idle is how long a bucket takes to fill: one unused that long is
	// full, as a new one would be, and is dropped.
	idle time.Duration
	now  func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	l    *rate.Limiter
	used time.Time
}

// New returns a Limiter of perMinute (> 0) actions a minute per key, burst
// (> 0) of them at once.
func New(perMinute, burst int) *Limiter {
	return newAt(perMinute, burst, time.Now)
}

func newAt(perMinute, burst int, now func() time.Time) *Limiter {
	perMinute, burst = max(perMinute, 1), max(burst, 1)
	return &Limiter{
		limit:   rate.Limit(float64(perMinute) / 60),
		burst:   burst,
		idle:    time.Duration(burst) * time.Minute / time.Duration(perMinute),
		now:     now,
		buckets: map[string]*bucket{},
	}
}

// Allow implements agentstream.RateLimiter.
func (l *Limiter) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b := l.buckets[key]
	if b == nil {
		b = &bucket{l: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.used = now
	r := b.l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // a refused action takes nothing
		return false, d, nil
	}
	return true, 0, nil
}

// sweep drops the buckets unused for idle, at most once per idle. Called
// with mu held.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < l.idle {
		return
	}
	l.lastSweep = now
	for k, b := range l.buckets {
		if now.Sub(b.used) >= l.idle {
			delete(l.buckets, k)
		}
	}
}

// size returns how many buckets are kept (for tests).
func (l *Limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
