package redislog

import (
	"testing"

	"github.com/agentstream/agentstream"
)

// TestReadSentBehindFlushed: a flush whose batch capPending dropped from
// the queue while it was in flight (Redis slow, the run over
// max_run_bytes) moves flushed past the kept events without keeping any.
// A reader between the last kept event and flushed must be sent to Redis,
// not served an empty slice (which panicked, ending the process).
func TestReadSentBehindFlushed(t *testing.T) {
	t.Parallel()
	r := &run{}
	var evs []agentstream.Event
	for i := 1; i <= 9; i++ {
		ev := delta(i)
		ev.Seq = int64(i)
		evs = append(evs, ev)
	}
	r.keep(evs)
	// What flushLoop leaves after such a flush of events 10 to 15.
	r.flushed = 15
	r.keep(nil)
	for _, after := range []int64{9, 12, 14} {
		got, end, ok := r.readSent(after, 10)
		if ok || end || len(got) != 0 {
			t.Errorf("readSent(%d): %d events, end %v, ok %v; want a read of Redis", after, len(got), end, ok)
		}
	}
	// The kept events are still served.
	got, end, ok := r.readSent(4, 10)
	if !ok || end || len(got) != 5 || got[0].Seq != 5 || got[4].Seq != 9 {
		t.Fatalf("readSent(4): %v, end %v, ok %v; want events 5 to 9", got, end, ok)
	}
	if got, end, ok := r.readSent(15, 10); !ok || end || len(got) != 0 {
		t.Fatalf("readSent(15): %v, end %v, ok %v; want nothing yet", got, end, ok)
	}
}
