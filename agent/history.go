package agent

import (
	"sync"
	"time"

	"github.com/agentstream/agentstream"
)

// Bounds of the history cache: how many threads it holds, how large all
// their histories may be together, and how many messages, and how large,
// one thread's history may be to be kept. A history's size is its
// content and tool arguments plus messageOverhead per message (the
// Message and its IDs). The total, not each thread, is what bounds the
// memory: a long conversation is what gains most from being kept (its
// read grows with it), so one thread may take up to a sixteenth of it.
const (
	maxCachedThreads      = 1024
	maxCachedBytes        = 16 << 20
	maxCachedMessages     = 4096
	maxCachedHistoryBytes = maxCachedBytes / 16
	messageOverhead       = 256
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
	now   func() time.Time
	mu    sync.Mutex
	m     map[string]history
	bytes int // the sizes of the histories in m
}

// history is a cached thread's messages, their size and when they were put.
type history struct {
	msgs []agentstream.Message
	size int
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
	size := len(msgs) * messageOverhead
	for _, m := range msgs {
		size += len(m.Content)
		for _, c := range m.ToolCalls {
			size += len(c.Arguments)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.remove(threadID)
	if size > maxCachedHistoryBytes || len(msgs) > maxCachedMessages {
		return
	}
	for len(h.m) >= maxCachedThreads || h.bytes+size > maxCachedBytes {
		for k := range h.m { // any one: map order is random
			h.remove(k)
			break
		}
	}
	h.m[threadID] = history{msgs: msgs, size: size, at: h.now()}
	h.bytes += size
}

// drop forgets the thread.
func (h *histories) drop(threadID string) {
	h.mu.Lock()
	h.remove(threadID)
	h.mu.Unlock()
}

// remove forgets the thread; h.mu is held.
func (h *histories) remove(threadID string) {
	if e, ok := h.m[threadID]; ok {
		h.bytes -= e.size
		delete(h.m, threadID)
	}
}

// ForgetThread drops what the runner keeps of a deleted thread (its
// history), so that a thread made again under the same key starts from
// its own messages. The server calls it on every instance (through Redis)
// when a thread is deleted.
func (r *Runner) ForgetThread(threadID string) {
	r.histories.drop(threadID)
}
