package httpapi

import (
	"context"
	"encoding/json"
	"errors"
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
	c := newThreadCache(time.Now)
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
	if e, ok := c.m["thr_small"]; !ok || e.t.Title != "" || e.t.Metadata != nil || e.t.Context["k"] != "v" || e.t.UserID != "u" {
		t.Errorf("kept %+v, %v; want only user, agent and context", e.t, ok)
	}
}

// TestForgetThread: DELETE tells the other instances (RemoteForget) the
// deleted thread's key after the delete, and is answered 204 with the
// thread gone even when that fails; ForgetThread (what an instance does
// when told) makes the next run read its thread from the store.
func TestForgetThread(t *testing.T) {
	t.Parallel()
	store := &threadReads{}
	told := make(chan string, 4)
	var fail atomic.Bool
	var f *fixture
	f = newFixtureOn(t, Options{RemoteForget: func(ctx context.Context, key string) error {
		// The delete has committed by now.
		if _, err := f.store.GetThread(ctx, "", key); !errors.Is(err, agentstream.ErrNotFound) {
			t.Errorf("RemoteForget before the delete committed: the thread reads %v", err)
		}
		told <- key
		if fail.Load() {
			return agentstream.Errorf(agentstream.CodeUnavailable, "redis is down")
		}
		return nil
	}}, func(s agentstream.Store) agentstream.Store { store.Store = s; return store })

	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	newThread := func() agentstream.Thread {
		t.Helper()
		code, body := do(http.MethodPost, "/v1/threads", `{}`)
		var th agentstream.Thread
		if code != http.StatusCreated || json.Unmarshal([]byte(body), &th) != nil {
			t.Fatalf("create thread: %d %s", code, body)
		}
		return th
	}
	run := func(id string) {
		t.Helper()
		if code, body := do(http.MethodPost, "/v1/threads/"+id+"/runs", `{"input":"hi"}`); code != http.StatusOK {
			t.Fatalf("run: %d %s", code, body)
		}
	}

	for _, failing := range []bool{false, true} {
		fail.Store(failing)
		th := newThread()
		if code, body := do(http.MethodDelete, "/v1/threads/"+th.ID, ""); code != http.StatusNoContent {
			t.Fatalf("DELETE (RemoteForget failing: %v): %d %s", failing, code, body)
		}
		select {
		case key := <-told:
			if key != th.ID {
				t.Errorf("RemoteForget got %q, want the thread key %q", key, th.ID)
			}
		default:
			t.Fatalf("DELETE did not call RemoteForget")
		}
		if code, _ := do(http.MethodGet, "/v1/threads/"+th.ID, ""); code != http.StatusNotFound {
			t.Errorf("GET of the deleted thread (RemoteForget failing: %v): %d, want 404", failing, code)
		}
	}

	th := newThread()
	run(th.ID)
	before := store.n.Load()
	run(th.ID)
	if n := store.n.Load() - before; n != 0 {
		t.Fatalf("a cached thread was read %d times to start a run", n)
	}
	f.srv.ForgetThread(th.ID)
	run(th.ID)
	if n := store.n.Load() - before; n != 1 {
		t.Errorf("after ForgetThread the thread was read %d times to start a run, want 1", n)
	}
}

// TestThreadCacheExpires: a cached thread threadCacheTTL old is read
// again (it may have been deleted and made again while this instance
// missed the notice), and the read starts its time anew.
func TestThreadCacheExpires(t *testing.T) {
	t.Parallel()
	store := &threadReads{}
	f := newFixtureOn(t, Options{}, func(s agentstream.Store) agentstream.Store { store.Store = s; return store })
	now := time.Now().UTC()
	th := agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: "", Agent: "assistant", Context: map[string]any{"topic": "old"}, CreatedAt: now, UpdatedAt: now}
	if err := f.store.CreateThread(t.Context(), th); err != nil {
		t.Fatal(err)
	}
	clock := now
	c := newThreadCache(func() time.Time { return clock })
	get := func() agentstream.Thread {
		t.Helper()
		got, err := c.forRun(t.Context(), store, "", th.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	get()
	clock = clock.Add(threadCacheTTL - time.Second)
	get()
	if n := store.n.Load(); n != 1 {
		t.Fatalf("%d reads within threadCacheTTL, want 1", n)
	}
	// Deleted and made again with another context meanwhile.
	if err := f.store.DeleteThread(t.Context(), "", th.ID); err != nil {
		t.Fatal(err)
	}
	th.Context = map[string]any{"topic": "new"}
	if err := f.store.CreateThread(t.Context(), th); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Second)
	if got := get(); got.Context["topic"] != "new" || store.n.Load() != 2 {
		t.Errorf("after threadCacheTTL: context %v, %d reads; want the new thread, read again", got.Context, store.n.Load())
	}
	clock = clock.Add(threadCacheTTL - time.Second)
	if get(); store.n.Load() != 2 {
		t.Errorf("the read did not start the entry's time anew: %d reads", store.n.Load())
	}
}
