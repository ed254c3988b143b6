package httpapi

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/agentstream/agentstream"
)

// Bounds of threadCache: how many threads it holds, and how large a
// thread's context may be (as JSON) to be kept.
const (
	maxCachedThreads     = 4096
	maxCachedContextSize = 4 << 10
)

// threadCache keeps threads that runs are started on, with only what
// starting a run needs of them: their user, agent and context, which never change once
// the thread is stored (threads are never deleted; only their UpdatedAt
// moves, which runs do not use), so a thread created or read here need not
// be read again to start the next run on it, on this instance or after
// another instance ran one. Requests that show a thread (GET) still read
// the store.
type threadCache struct {
	mu sync.Mutex
	m  map[string]agentstream.Thread
}

func newThreadCache() *threadCache {
	return &threadCache{m: make(map[string]agentstream.Thread)}
}

// forRun returns the thread for a run of userID, from the cache or the
// store: ErrNotFound when it does not exist or belongs to another user,
// as GetThread answers.
func (c *threadCache) forRun(ctx context.Context, store agentstream.Store, userID, threadID string) (agentstream.Thread, error) {
	c.mu.Lock()
	t, ok := c.m[threadID]
	c.mu.Unlock()
	if ok {
		if t.UserID != userID {
			return agentstream.Thread{}, agentstream.Errorf(agentstream.CodeNotFound, "thread not found")
		}
		return t, nil
	}
	t, err := store.GetThread(ctx, userID, threadID)
	if err != nil {
		return t, err
	}
	c.put(t)
	return t, nil
}

// put records a stored thread: what a run needs of it. One whose context
// is large is not kept, so the cache stays within about
// maxCachedThreads × maxCachedContextSize.
func (c *threadCache) put(t agentstream.Thread) {
	if len(t.Context) > 0 {
		b, err := json.Marshal(t.Context)
		if err != nil || len(b) > maxCachedContextSize {
			return
		}
	}
	t = agentstream.Thread{ID: t.ID, UserID: t.UserID, Agent: t.Agent, Context: t.Context}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[t.ID]; !ok && len(c.m) >= maxCachedThreads {
		for k := range c.m { // any one: map order is random
			delete(c.m, k)
			break
		}
	}
	c.m[t.ID] = t
}
