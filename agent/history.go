package agent

import (
	"sync"
	"time"

	"github.com/agentstream/agentstream"
)

// Bounds of the history cache: how many threads it holds, and how many
// messages, and how large (content and tool arguments), a thread's
// history may be to be kept.
const (
	maxCachedThreads      = 1024
	maxCachedMessages     = 256
	maxCachedHistoryBytes = 32 << 10
	// historyTTL is how long a cached history is used: an older one is
	// read again from the store. It bounds how long a history outlives its
	// thread's deletion on an instance that missed the notice of it
	// (Runner.ForgetThread, sent through Redis, is lost while Pub/Sub
	// reconnects): nothing a run has at hand tells one incarnation of a
	// thread key from the next.
	historyTTL = time.Minute
)

// histories keeps the messages of threads whose last run ended on this
// runner, so that the next run on such a thread need not read them back
// from the store (a read that grows with the thread, under load about a
// twentieth of a short run's cost).
//
// A thread's messages are numbered from 1 without gaps (Message.Seq), and
// a thread has at most one queued or running run, whose messages are all
// saved before it stops being active: when a run's input was stored with
// Seq n, the thread's history is exactly its n-1 earlier messages and the
// input, and nothing is added to them until the run ends. So a cached
// history of n-1 messages is the thread's history; any other count (a run
// made by another instance meanwhile, say) is a miss, and the store is
// read. A first message (Seq 1) needs no cache at all.
type histories struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]history
}

// history is a cached thread's messages and when they were put.
type history struct {
	msgs []agentstream.Message
	at   time.Time
}

func newHistories(now func() time.Time) *histories {
	return &histories{now: now, m: make(map[string]history)}
}

// get returns the thread's history ending with input, the stored input
// message of the run about to start, or false when only the store knows
// it.
func (h *histories) get(threadID string, input agentstream.Message) ([]agentstream.Message, bool) {
	if input.Seq == 1 {
		return []agentstream.Message{input}, true
	}
	h.mu.Lock()
	e, ok := h.m[threadID]
	h.mu.Unlock()
	if !ok || int64(len(e.msgs))+1 != input.Seq || h.now().Sub(e.at) >= historyTTL {
		return nil, false
	}
	cached := e.msgs
	out := make([]agentstream.Message, len(cached), len(cached)+1)
	copy(out, cached)
	return append(out, input), true
}

// put records msgs, which it keeps, as the thread's whole history once
// a run on it has ended and its messages are saved; a thread too large to
// keep is dropped.
func (h *histories) put(threadID string, msgs []agentstream.Message) {
	size := 0
	for _, m := range msgs {
		size += len(m.Content)
		for _, c := range m.ToolCalls {
			size += len(c.Arguments)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if size > maxCachedHistoryBytes || len(msgs) > maxCachedMessages {
		delete(h.m, threadID)
		return
	}
	if _, ok := h.m[threadID]; !ok && len(h.m) >= maxCachedThreads {
		for k := range h.m { // any one: map order is random
			delete(h.m, k)
			break
		}
	}
	h.m[threadID] = history{msgs: msgs, at: h.now()}
}

// drop forgets the thread.
func (h *histories) drop(threadID string) {
	h.mu.Lock()
	delete(h.m, threadID)
	h.mu.Unlock()
}

// ForgetThread drops what the runner keeps of a deleted thread (its
// history), so that a thread made again under the same key starts from
// its own messages. The server calls it on every instance (through Redis)
// when a thread is deleted.
func (r *Runner) ForgetThread(threadID string) {
	r.histories.drop(threadID)
}
