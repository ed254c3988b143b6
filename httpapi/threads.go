package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/agentstream/agentstream"
)

// Bounds of threadCache: how many threads it holds, and how large a
// thread's context may be (as JSON) to be kept.
const (
	maxCachedThreads     = 4096
	maxCachedContextSize = 4 << 10
	// threadCacheTTL is how long a cached thread is used: an older one is
	// read again. It bounds how long a thread outlives its deletion on an
	// instance that missed the notice of it (ForgetThread, sent through
	// Redis, is lost while Pub/Sub reconnects); nothing a run has at hand
	// tells one incarnation of a client-chosen id from the next.
	threadCacheTTL = time.Minute
)

// threadCache keeps threads that runs are started on, with only what
// starting a run needs of them: their user, agent and context (and the id
// their user chose, to show), which never change while the thread exists
// (PATCH changes only its title and metadata, which runs do not use), so a
// thread created or read here need not be read again to start the next
// run on it, on this instance or after another instance ran one. Requests
// that show a thread (GET) still read the store. A deleted thread is
// dropped here by every instance (Server.ForgetThread, which the server
// calls on each instance through Redis); one that missed that learns it
// when starting a run on it fails with ErrNotFound (startChat drops it
// then), or when the entry is threadCacheTTL old.
type threadCache struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]cachedThread
}

// cachedThread is a cached thread and when it was put.
type cachedThread struct {
	t  agentstream.Thread
	at time.Time
}

func newThreadCache(now func() time.Time) *threadCache {
	return &threadCache{now: now, m: make(map[string]cachedThread)}
}

// get returns the live entry whose key is id, and whether there is one.
// Called with mu held.
func (c *threadCache) get(id string) (agentstream.Thread, bool) {
	e, ok := c.m[id]
	if !ok || c.now().Sub(e.at) >= threadCacheTTL {
		return agentstream.Thread{}, false
	}
	return e.t, true
}

// forRun returns the thread of userID that id names (resolveThread), for
// a run, from the cache or the store: ErrNotFound when there is none.
// The cache is keyed by thread keys, unique across users.
func (c *threadCache) forRun(ctx context.Context, store agentstream.Store, userID, id string) (agentstream.Thread, error) {
	if !lookupID(id) {
		return agentstream.Thread{}, errThreadNotFound()
	}
	asGiven, named := true, validClientID(id)
	c.mu.Lock()
	if t, ok := c.get(id); ok {
		if t.UserID == userID {
			c.mu.Unlock()
			return t, nil
		}
		asGiven = false // that key is another user's thread
	}
	if named {
		if t, ok := c.get(agentstream.ThreadKey(userID, id)); ok && t.UserID == userID {
			c.mu.Unlock()
			return t, nil
		}
	}
	c.mu.Unlock()
	t, err := lookupThread(ctx, store, userID, id, asGiven, named)
	if err != nil {
		return t, err
	}
	c.put(t)
	return t, nil
}

// resolveThread returns the thread of userID that id names: the user's
// thread whose key is id (one the server named, or one made before
// client-chosen ids belonged to their users), else the one the user named
// id (agentstream.ThreadKey). ErrNotFound otherwise: an id that no thread
// can have, and another user's thread, are answered as missing.
func resolveThread(ctx context.Context, store agentstream.Store, userID, id string) (agentstream.Thread, error) {
	if !lookupID(id) {
		return agentstream.Thread{}, errThreadNotFound()
	}
	return lookupThread(ctx, store, userID, id, true, validClientID(id))
}

// lookupThread reads the thread whose key is id (when asGiven), then the
// one whose key is derived from id (when named).
func lookupThread(ctx context.Context, store agentstream.Store, userID, id string, asGiven, named bool) (agentstream.Thread, error) {
	if asGiven {
		t, err := store.GetThread(ctx, userID, id)
		if err == nil || !errors.Is(err, agentstream.ErrNotFound) {
			return t, err
		}
	}
	if !named {
		return agentstream.Thread{}, errThreadNotFound()
	}
	return store.GetThread(ctx, userID, agentstream.ThreadKey(userID, id))
}

func errThreadNotFound() error {
	return agentstream.Errorf(agentstream.CodeNotFound, "thread not found")
}

// shown is t as the API shows it: with the id its user knows it by.
func shown(t agentstream.Thread) agentstream.Thread {
	t.ID = t.PublicID()
	return t
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
	t = agentstream.Thread{ID: t.ID, ClientID: t.ClientID, UserID: t.UserID, Agent: t.Agent, Context: t.Context}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[t.ID]; !ok && len(c.m) >= maxCachedThreads {
		for k := range c.m { // any one: map order is random
			delete(c.m, k)
			break
		}
	}
	c.m[t.ID] = cachedThread{t: t, at: c.now()}
}

// drop forgets the thread whose key is id (deleted).
func (c *threadCache) drop(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}
