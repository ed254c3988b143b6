package redislog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/redis/go-redis/v9"
)

// Read implements agentstream.EventLog. A reader gets an event only once
// Redis holds it. Events this Log has flushed are served from memory while
// it keeps them; the rest cost one Redis round trip. A read with
// nothing to return waits for a local append, a notification from another
// instance, or PollInterval, then reads again.
func (l *Log) Read(ctx context.Context, runID string, after int64, max int) ([]agentstream.Event, bool, error) {
	if after < 0 {
		after = 0
	}
	if max <= 0 {
		max = 1
	}
	// A subscription left by this reader's previous Read saves it the
	// read before subscribing.
	w := l.lingering(runID)
	var poll *time.Timer
	defer func() {
		if w != nil {
			l.unwatch(runID, w)
		}
		if poll != nil {
			poll.Stop()
		}
	}()
	fromRedis := false
	for {
		select {
		case <-l.done:
			return nil, false, errClosed
		default:
		}
		// Take the wake-up channel before reading: an append after the
		// read closes it.
		var wake <-chan struct{}
		var epoch uint64
		if w != nil {
			wake, epoch = w.channel()
		}
		evs, end, err := l.readOnce(ctx, runID, after, max, fromRedis, w, epoch)
		if err != nil || len(evs) > 0 || end {
			return evs, end, err
		}
		if w == nil {
			// Nothing yet: subscribe to the run's notifications, then read
			// again, so nothing appended in between is missed.
			w = l.watch(ctx, runID)
			continue
		}
		if poll == nil {
			poll = time.NewTimer(l.opts.PollInterval)
		} else {
			poll.Reset(l.opts.PollInterval)
		}
		fromRedis = false
		select {
		case <-wake:
		case <-poll.C:
			// A notification may have been lost; and the run may have been
			// ended by another instance while this one held its state.
			fromRedis = true
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-l.done:
			return nil, false, errClosed
		}
	}
}

// readOnce reads without waiting. Readers have only what Redis holds:
// this Log serves the events of a run it appends to from memory (those it
// has flushed and still keeps), and what it knows Redis lacks yet without
// asking; the rest costs a Redis read. With w, the run's subscription (in
// epoch), it skips a read that notifications say would find nothing, and
// tells w what it finds.
func (l *Log) readOnce(ctx context.Context, runID string, after int64, limit int, fromRedis bool, w *watch, epoch uint64) ([]agentstream.Event, bool, error) {
	rs := l.getRun(runID)
	if !fromRedis {
		if rs != nil {
			rs.mu.Lock()
			if !rs.removed && !rs.refused && rs.next > 0 {
				evs, end, ok := rs.readSent(after, limit)
				rs.mu.Unlock()
				if ok {
					return evs, end, nil
				}
			} else {
				rs.mu.Unlock()
			}
		} else if w != nil {
			if w.caughtUp(after) {
				return nil, false, nil
			}
			if w.ahead(after) {
				evs, ok, err := l.readRange(ctx, runID, after, limit)
				if err != nil {
					return nil, false, err
				}
				if ok {
					return evs, evs[len(evs)-1].Type.Terminal(), nil
				}
			}
		}
	}

	res, err := readScript.Run(ctx, l.client, l.keys(runID), after, limit).Result()
	if errors.Is(err, redis.Nil) {
		if rs != nil {
			// Redis lost the log this Log appends to (a restart without
			// its data): what was flushed is gone; the next flush makes
			// the log again, from the first event it still holds.
			rs.mu.Lock()
			if !rs.removed && !rs.refused && rs.next > 0 {
				defer rs.mu.Unlock()
				if after < rs.flushed {
					first := rs.next
					if len(rs.pending) > 0 {
						first = rs.pending[0].Seq
					}
					return nil, false, gone(runID, first)
				}
				return nil, false, nil
			}
			rs.mu.Unlock()
		}
		return nil, false, agentstream.Errorf(agentstream.CodeNotFound,
			"no event log for run %s: never written, expired, or its books evicted or deleted", runID)
	}
	if err != nil {
		return nil, false, l.mapErr(ctx, err, "read")
	}
	first, last, endSeq, evs, err := parseRead(res)
	if err != nil {
		return nil, false, agentstream.Wrap(agentstream.CodeInternal, err, "redislog: unexpected reply to a read")
	}
	if w != nil {
		w.observe(epoch, last, endSeq > 0)
	}
	if after+1 < first {
		return nil, false, gone(runID, first)
	}
	end := endSeq > 0 && (after >= endSeq || len(evs) > 0 && evs[len(evs)-1].Seq >= endSeq)
	return evs, end, nil
}

// readRange reads the events after `after` with a plain XRANGE, one
// command where the read script runs three: for a reader that a
// notification told there are some. ok is false unless the first event
// returned is after+1; as a log's events have no holes (the script starts
// the log afresh rather than leave one), the read then needs no books. A
// log that lost its head, ended or is gone is left to the read script.
func (l *Log) readRange(ctx context.Context, runID string, after int64, limit int) ([]agentstream.Event, bool, error) {
	res, err := l.client.Do(ctx, "XRANGE", l.keys(runID)[0], "(0-"+strconv.FormatInt(after, 10), "+", "COUNT", limit).Result()
	if err != nil {
		return nil, false, l.mapErr(ctx, err, "XRANGE")
	}
	entries, ok := res.([]any)
	if !ok {
		return nil, false, agentstream.Errorf(agentstream.CodeInternal, "redislog: unexpected reply to XRANGE: %T", res)
	}
	if len(entries) == 0 {
		return nil, false, nil
	}
	evs := make([]agentstream.Event, 0, len(entries))
	for _, e := range entries {
		ev, err := parseEntry(e)
		if err != nil {
			return nil, false, agentstream.Wrap(agentstream.CodeInternal, err, "redislog: unexpected reply to XRANGE")
		}
		evs = append(evs, ev)
	}
	if evs[0].Seq != after+1 {
		return nil, false, nil
	}
	return evs, true, nil
}

// readSent answers a read of the run this Log appends to from memory,
// when it can: nothing when the reader has every event flushed to Redis
// (end when the last is the terminal event), else the flushed events
// after `after` still kept. ok is false when the read must go to Redis.
// r.mu is held.
func (r *run) readSent(after int64, limit int) (evs []agentstream.Event, end, ok bool) {
	if after >= r.flushed {
		return nil, r.ended, true
	}
	// sent may end before flushed: a flush whose events max_run_bytes
	// dropped from the queue while it was in flight keeps none of them.
	// A reader between the two reads Redis.
	if len(r.sent) == 0 || after+1 < r.sent[0].Seq || after >= r.sent[len(r.sent)-1].Seq {
		return nil, false, false
	}
	i := int(after + 1 - r.sent[0].Seq)
	j := min(len(r.sent), i+limit)
	// The kept events are never modified: the slice can be shared.
	evs = r.sent[i:j:j]
	return evs, r.ended && evs[len(evs)-1].Seq == r.flushed, true
}

func gone(runID string, first int64) error {
	return agentstream.Errorf(agentstream.CodeGone,
		"events before %d of run %s are no longer kept; read the thread's messages", first, runID)
}

// Bounds implements agentstream.EventLog: the run's books in Redis, which
// hold what any reader can have.
func (l *Log) Bounds(ctx context.Context, runID string) (agentstream.LogBounds, error) {
	m, err := l.client.HMGet(ctx, l.keys(runID)[1], "first", "last", "end").Result()
	if err != nil {
		return agentstream.LogBounds{}, l.mapErr(ctx, err, "HMGET")
	}
	if len(m) != 3 || m[1] == nil {
		return agentstream.LogBounds{}, agentstream.Errorf(agentstream.CodeNotFound, "no event log for run %s", runID)
	}
	var b agentstream.LogBounds
	for i, dst := range []*int64{&b.First, &b.Last, &b.End} {
		v, ok := m[i].(string)
		if !ok {
			continue // end is absent while the run goes on
		}
		if *dst, err = strconv.ParseInt(v, 10, 64); err != nil {
			return agentstream.LogBounds{}, agentstream.Wrap(agentstream.CodeInternal, err, "redislog: unexpected books")
		}
	}
	return b, nil
}

// parseRead decodes the read script's reply: {first, last, end, entries?}.
func parseRead(res any) (first, last, end int64, evs []agentstream.Event, err error) {
	arr, ok := res.([]any)
	if !ok || len(arr) < 3 {
		return 0, 0, 0, nil, fmt.Errorf("reply %T", res)
	}
	first, ok1 := arr[0].(int64)
	last, ok2 := arr[1].(int64)
	end, ok3 := arr[2].(int64)
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, 0, nil, fmt.Errorf("books %v", arr[:3])
	}
	if len(arr) < 4 {
		return first, last, end, nil, nil
	}
	entries, ok := arr[3].([]any)
	if !ok {
		return 0, 0, 0, nil, fmt.Errorf("entries %T", arr[3])
	}
	evs = make([]agentstream.Event, 0, len(entries))
	for _, e := range entries {
		ev, err := parseEntry(e)
		if err != nil {
			return 0, 0, 0, nil, err
		}
		evs = append(evs, ev)
	}
	return first, last, end, evs, nil
}

// parseEntry decodes a stream entry: [0-<seq>, [t, type, d, data]].
func parseEntry(e any) (agentstream.Event, error) {
	ea, ok := e.([]any)
	if !ok || len(ea) != 2 {
		return agentstream.Event{}, fmt.Errorf("entry %v", e)
	}
	id, _ := ea[0].(string)
	seq, err := strconv.ParseInt(strings.TrimPrefix(id, "0-"), 10, 64)
	if err != nil {
		return agentstream.Event{}, fmt.Errorf("entry ID %q", id)
	}
	fields, ok := ea[1].([]any)
	if !ok {
		return agentstream.Event{}, fmt.Errorf("entry %s fields %T", id, ea[1])
	}
	ev := agentstream.Event{Seq: seq}
	for i := 0; i+1 < len(fields); i += 2 {
		k, _ := fields[i].(string)
		v, _ := fields[i+1].(string)
		switch k {
		case "t":
			ev.Type = agentstream.EventType(v)
		case "d":
			ev.Data = []byte(v)
		}
	}
	return ev, nil
}
