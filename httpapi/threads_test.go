package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// threadReads counts the reads of threads.
type threadReads struct {
	agentstream.Store
	n atomic.Int64
}

func (s *threadReads) GetThread(ctx context.Context, userID, threadID string) (agentstream.Thread, error) {
	s.n.Add(1)
	return s.Store.GetThread(ctx, userID, threadID)
}

// TestThreadCache: starting a run reads its thread from the store only
// the first time this server meets the thread (never for one it created),
// another user still finds no such thread, and GET still reads the store.
func TestThreadCache(t *testing.T) {
	t.Parallel()
	store := &threadReads{}
	f := newFixtureOn(t, Options{Keys: map[string]string{"ka": "alice", "kb": "bob"}},
		func(s agentstream.Store) agentstream.Store { store.Store = s; return store })
	db := f.store

	do := func(key, method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body) // a run's stream: read to its end
		return resp.StatusCode, string(b)
	}
	run := func(key, threadID string) int {
		t.Helper()
		code, body := do(key, http.MethodPost, "/v1/threads/"+threadID+"/runs", `{"input":"hi"}`)
		if code == http.StatusOK && !strings.Contains(body, "event: run.failed") { // idleModel fails every run
			t.Fatalf("run stream: %s", body)
		}
		return code
	}

	code, body := do("ka", http.MethodPost, "/v1/threads", `{}`)
	var th agentstream.Thread
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &th) != nil {
		t.Fatalf("create thread: %d %s", code, body)
	}
	for range 2 {
		if code := run("ka", th.ID); code != http.StatusOK {
			t.Fatalf("run: %d", code)
		}
	}
	if n := store.n.Load(); n != 0 {
		t.Errorf("a thread created here was read %d times to start runs", n)
	}
	if code := run("kb", th.ID); code != http.StatusNotFound {
		t.Errorf("bob's run on alice's thread: %d, want 404", code)
	}

	// A thread this server has not met (another instance made it).
	now := time.Now().UTC()
	other := agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: "alice", Agent: "assistant", CreatedAt: now, UpdatedAt: now}
	if err := db.CreateThread(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	if code := run("kb", other.ID); code != http.StatusNotFound {
		t.Errorf("bob's run on alice's other thread: %d, want 404", code)
	}
	for range 2 {
		if code := run("ka", other.ID); code != http.StatusOK {
			t.Fatalf("run on the other thread: %d", code)
		}
	}
	// Bob's first refusal reads only his own thread of that id (the key
	// as given is cached as alice's); his second reads the key as given,
	// then his own thread of that id; alice's first run reads hers.
	if n := store.n.Load(); n != 4 {
		t.Errorf("%d thread reads, want 4 (1 and 2 for bob's refused runs, then alice's first run)", n)
	}
	if code, _ := do("ka", http.MethodGet, "/v1/threads/"+other.ID, ""); code != http.StatusOK || store.n.Load() != 5 {
		t.Errorf("GET thread: %d, %d reads; want 200 from the store", code, store.n.Load())
	}
}

func TestThreadCacheBound(t *testing.T) {
	t.Parallel()
	c := newThreadCache()
	for range maxCachedThreads + 10 {
		c.put(agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: "u"})
	}
	if n := len(c.m); n != maxCachedThreads {
		t.Errorf("%d threads kept, want %d", n, maxCachedThreads)
	}
	big := agentstream.Thread{ID: "thr_big", UserID: "u", Context: map[string]any{"doc": strings.Repeat("x", maxCachedContextSize)}}
	small := agentstream.Thread{ID: "thr_small", UserID: "u", Title: "kept out", Metadata: map[string]any{"a": 1}, Context: map[string]any{"k": "v"}}
	c.put(big)
	c.put(small)
	if _, ok := c.m["thr_big"]; ok {
		t.Error("a thread with a context over maxCachedContextSize was kept")
	}
	if got, ok := c.m["thr_small"]; !ok || got.Title != "" || got.Metadata != nil || got.Context["k"] != "v" || got.UserID != "u" {
		t.Errorf("kept %+v, %v; want only user, agent and context", got, ok)
	}
}
