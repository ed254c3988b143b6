package httpapi

import (
	"context"
	"sync"

	"github.com/agentstream/agentstream"
)

// maxCachedThreads bounds threadCache.
const maxCachedThreads = 4096

// threadCache keeps threads that runs are started on. What starting a run
// needs of its thread — its user, agent and context — never changes once
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

// put records a stored thread.
func (c *threadCache) put(t agentstream.Thread) {
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
