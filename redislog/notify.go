package redislog

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// watch is a run with waiting readers (or that had some a moment ago): its
// channel is subscribed to, and appends and notifications wake its
// readers.
type watch struct {
	// Guarded by Log.wmu.
	refs      int
	confirmed bool
	idleSince time.Time
	// ready is closed when Redis confirms the subscription.
	ready chan struct{}

	mu sync.Mutex
	// ch, when not nil, is closed by the next wake-up. Readers make it.
	ch chan struct{}
	// live: the subscription is confirmed. epoch counts confirmations (a
	// reconnect subscribes again): a read tells the run's last seq only if
	// it started in the current epoch.
	live  bool
	epoch uint64
	// last is the run's last seq in Redis as far as notifications and
	// reads tell, when known; ended once the log has ended. While the
	// subscription lives, any later append is notified: a reader at or
	// past last can wait without reading.
	known bool
	last  int64
	ended bool
}

// channel returns the channel the next wake-up closes, and the epoch.
func (w *watch) channel() (<-chan struct{}, uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch, w.epoch
}

func (w *watch) wake() {
	w.mu.Lock()
	w.wakeLocked()
	w.mu.Unlock()
}

func (w *watch) wakeLocked() {
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// subscribed records a confirmation of the subscription: the first, or a
// new one after a reconnect, which may have lost notifications.
func (w *watch) subscribed() {
	w.mu.Lock()
	w.live = true
	w.epoch++
	w.known = false
	w.wakeLocked()
	w.mu.Unlock()
}

// notified records a notification: the run's last seq is `last`.
func (w *watch) notified(last int64, ended bool) {
	w.mu.Lock()
	if w.live {
		w.last = max(w.last, last)
		w.known = true
	}
	w.ended = w.ended || ended
	w.wakeLocked()
	w.mu.Unlock()
}

// observe records what a read started in epoch found in Redis.
func (w *watch) observe(epoch uint64, last int64, ended bool) {
	w.mu.Lock()
	if w.live && w.epoch == epoch {
		w.last = max(w.last, last)
		w.known = true
	}
	w.ended = w.ended || ended
	w.mu.Unlock()
}

// caughtUp reports whether a reader after `after` has nothing to read in
// Redis: nothing was appended after it, or the notification is on its way.
func (w *watch) caughtUp(after int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.known && !w.ended && after >= w.last
}

// ahead reports whether notifications tell of events after `after`.
func (w *watch) ahead(after int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.live && w.known && w.last > after
}

// watch registers a waiting reader of runID, subscribing to the run's
// channel if needed, and waits (at most PollInterval) until the
// subscription is confirmed: from then on no notification is missed.
func (l *Log) watch(ctx context.Context, runID string) *watch {
	l.wmu.Lock()
	w := l.watches[runID]
	fresh := w == nil
	if fresh {
		w = &watch{ready: make(chan struct{})}
		l.watches[runID] = w
	}
	w.refs++
	l.wmu.Unlock()
	if fresh {
		l.subMu.Lock()
		sctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		err := l.ps.Subscribe(sctx, l.notifyChannel(runID))
		cancel()
		l.subMu.Unlock()
		if err != nil {
			// Go-redis subscribes again when it reconnects; meanwhile the
			// reader polls.
			l.opts.Logger.Debug("redislog: subscribing to a run's notifications", "run_id", runID, "err", err)
		}
	}
	t := time.NewTimer(l.opts.PollInterval)
	defer t.Stop()
	select {
	case <-w.ready:
	case <-t.C:
	case <-ctx.Done():
	case <-l.done:
	}
	return w
}

// lingering registers a reader of runID on the run's confirmed
// subscription, when there is one (left by an earlier Read), or returns nil.
func (l *Log) lingering(runID string) *watch {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	w := l.watches[runID]
	if w == nil || !w.confirmed {
		return nil
	}
	w.refs++
	return w
}

// unwatch unregisters a reader registered by watch. The subscription
// lingers for the reader's next Read.
func (l *Log) unwatch(runID string, w *watch) {
	l.wmu.Lock()
	w.refs--
	if w.refs == 0 {
		w.idleSince = time.Now()
	}
	l.wmu.Unlock()
}

// wake wakes the readers waiting for runID.
func (l *Log) wake(runID string) {
	l.wmu.RLock()
	w := l.watches[runID]
	l.wmu.RUnlock()
	if w != nil {
		w.wake()
	}
}

// receive handles what the Pub/Sub connection receives: confirmations of
// subscriptions, notifications of appends, cancel requests, deleted
// threads.
func (l *Log) receive(ch <-chan any) {
	defer l.bg.Done()
	notify, cancels, threads := l.notifyPrefix(), l.cancelChannel(), l.threadsChannel()
	for m := range ch {
		switch m := m.(type) {
		case *redis.Subscription:
			id, ok := strings.CutPrefix(m.Channel, notify)
			if m.Kind != "subscribe" || !ok {
				continue
			}
			l.wmu.Lock()
			w := l.watches[id]
			if w != nil && !w.confirmed {
				w.confirmed = true
				close(w.ready)
			}
			l.wmu.Unlock()
			if w != nil {
				// After a reconnect notifications may have been lost: the
				// readers read again.
				w.subscribed()
			}
		case *redis.Message:
			if m.Channel == cancels {
				l.cancelMu.Lock()
				fns := slices.Clone(l.onCancel)
				l.cancelMu.Unlock()
				for _, fn := range fns {
					go fn(m.Payload)
				}
				continue
			}
			if m.Channel == threads {
				l.cancelMu.Lock()
				fns := slices.Clone(l.onForget)
				l.cancelMu.Unlock()
				for _, fn := range fns {
					go fn(m.Payload)
				}
				continue
			}
			if id, ok := strings.CutPrefix(m.Channel, notify); ok {
				l.wmu.RLock()
				w := l.watches[id]
				l.wmu.RUnlock()
				if w != nil {
					payload, ended := strings.CutSuffix(m.Payload, ":end")
					last, _ := strconv.ParseInt(payload, 10, 64)
					w.notified(last, ended)
				}
			}
		}
	}
}

// sweep lets go, every sweepEvery, the subscriptions nobody waits on and
// the states of runs not appended to for IdleExpiry (Retention once
// closed).
func (l *Log) sweep() {
	defer l.bg.Done()
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		l.sweepWatches(time.Now())
		l.sweepRuns(time.Now())
	}
}

func (l *Log) sweepWatches(now time.Time) {
	// subMu is held from deciding to sending the UNSUBSCRIBE, so that a
	// new reader's SUBSCRIBE follows it.
	l.subMu.Lock()
	defer l.subMu.Unlock()
	var chans []string
	l.wmu.Lock()
	for id, w := range l.watches {
		// An unconfirmed subscription waits longer, for its confirmation.
		if w.refs == 0 && now.Sub(w.idleSince) >= linger && (w.confirmed || now.Sub(w.idleSince) >= 6*linger) {
			delete(l.watches, id)
			chans = append(chans, l.notifyChannel(id))
		}
	}
	l.wmu.Unlock()
	if len(chans) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		_ = l.ps.Unsubscribe(ctx, chans...)
		cancel()
	}
}

func (l *Log) sweepRuns(now time.Time) {
	l.rmu.Lock()
	runs := make([]*run, 0, len(l.runs))
	for _, rs := range l.runs {
		runs = append(runs, rs)
	}
	l.rmu.Unlock()
	for _, rs := range runs {
		rs.mu.Lock()
		idle := l.opts.IdleExpiry
		if rs.closed {
			idle = l.opts.Retention
		}
		if !rs.flushing && !rs.timerArmed && len(rs.pending) == 0 && now.Sub(rs.lastUse) >= idle {
			l.remove(rs)
		}
		rs.mu.Unlock()
	}
}
