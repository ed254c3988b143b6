package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/sim"
)

// storeBackends are the backends on memlog: one per store.
func storeBackends() []backend {
	var out []backend
	for _, b := range backends() {
		if !b.redis {
			out = append(out, b)
		}
	}
	return out
}

const (
	keyAda = "key-ada-0123456789abcdef"
	keyBob = "key-bob-0123456789abcdef"
)

// call sends a request as the key's user, checks the status and decodes
// the JSON answer into out (when not nil).
func call(e *env, key, method, path, body string, wantStatus int, out any) {
	e.t.Helper()
	resp := e.request(method, path, body, map[string]string{"Authorization": "Bearer " + key})
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, wantStatus, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: decoding %s: %v", method, path, b, err)
		}
	}
}

type threadPage struct {
	Data       []agentstream.Thread `json:"data"`
	NextCursor *string              `json:"next_cursor"`
}

// listAll pages through a listing limit at a time and returns the pages'
// items' ids.
func listAll(e *env, key, path string, limit int) []string {
	e.t.Helper()
	var ids []string
	cursor := ""
	for range 200 {
		q := fmt.Sprintf("?limit=%d", limit)
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		var p struct {
			Data       []struct{ ID string } `json:"data"`
			NextCursor *string               `json:"next_cursor"`
		}
		call(e, key, "GET", path+q, "", http.StatusOK, &p)
		if len(p.Data) > limit {
			e.t.Fatalf("%s: %d items, over the limit %d", path, len(p.Data), limit)
		}
		for _, it := range p.Data {
			ids = append(ids, it.ID)
		}
		if p.NextCursor == nil {
			return ids
		}
		cursor = *p.NextCursor
	}
	e.t.Fatalf("%s: no last page after 200", path)
	return nil
}

func chat(e *env, key, threadID, query string) {
	e.t.Helper()
	body := fmt.Sprintf(`{"query": %q, "thread_id": %q}`, query, threadID)
	resp := e.requestCtx(streamCtx(e.t), "POST", "/v1/chat", body, map[string]string{"Authorization": "Bearer " + key})
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("chat: status %d: %s", resp.StatusCode, b)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
}

func withKeys(c *config.Config) {
	c.Auth.Keys = []config.APIKey{{Key: keyAda, User: "ada"}, {Key: keyBob, User: "bob"}}
}

// TestThreadsList: GET /v1/threads lists the caller's threads newest first
// (client-chosen ids as chosen), in pages that neither skip nor repeat a
// thread while others are created; other users' threads never show; bad
// limits and cursors are 400. On both stores.
func TestThreadsList(t *testing.T) {
	t.Parallel()
	for _, b := range storeBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			e := b.start(t, sim.Options{}, withKeys)
			var want []string
			for i := range 7 {
				var th agentstream.Thread
				call(e, keyAda, "POST", "/v1/threads", fmt.Sprintf(`{"title": "t%d"}`, i), http.StatusCreated, &th)
				want = append(want, th.ID)
				call(e, keyBob, "POST", "/v1/threads", `{}`, http.StatusCreated, nil)
			}
			chat(e, keyAda, "mine", "hello")
			want = append(want, "mine")
			slices.Reverse(want)

			got := listAll(e, keyAda, "/v1/threads", 3)
			if !slices.Equal(got, want) {
				t.Fatalf("threads %v, want %v (newest first)", got, want)
			}
			var p threadPage
			call(e, keyAda, "GET", "/v1/threads", "", http.StatusOK, &p)
			if len(p.Data) != len(want) || p.NextCursor != nil || p.Data[0].ID != "mine" || p.Data[0].UserID != "ada" {
				t.Fatalf("default page: %d threads, next %v, first %+v", len(p.Data), p.NextCursor, p.Data[0])
			}
			if bobs := listAll(e, keyBob, "/v1/threads", 100); len(bobs) != 7 || slices.ContainsFunc(bobs, func(id string) bool { return slices.Contains(want, id) }) {
				t.Fatalf("bob's threads %v: want 7, none of ada's", bobs)
			}

			// Paging while threads are created: the ones there before the
			// listing started are each seen once.
			var wg sync.WaitGroup
			wg.Go(func() {
				for range 10 {
					resp := e.request("POST", "/v1/threads", `{}`, map[string]string{"Authorization": "Bearer " + keyAda})
					_, _ = io.Copy(io.Discard, resp.Body)
				}
			})
			during := listAll(e, keyAda, "/v1/threads", 2)
			wg.Wait()
			seen := map[string]int{}
			for _, id := range during {
				seen[id]++
				if seen[id] > 1 {
					t.Fatalf("thread %s listed twice: %v", id, during)
				}
			}
			for _, id := range want {
				if seen[id] != 1 {
					t.Fatalf("thread %s skipped while threads were created: %v", id, during)
				}
			}

			// A cursor of another listing, and bad values: 400, on every listing.
			var msgs struct {
				NextCursor *string `json:"next_cursor"`
			}
			call(e, keyAda, "GET", "/v1/threads/mine/messages?limit=1", "", http.StatusOK, &msgs)
			if msgs.NextCursor == nil {
				t.Fatal("messages of a thread with two, one at a time: no next_cursor")
			}
			for _, q := range []string{"limit=0", "limit=101", "limit=abc", "limit=", "limit=-1", "limit=1.5",
				"cursor=nope", "cursor=", "cursor=" + url.QueryEscape(*msgs.NextCursor)} {
				for _, path := range []string{"/v1/threads", "/v1/threads/mine/runs"} {
					resp := e.request("GET", path+"?"+q, "", map[string]string{"Authorization": "Bearer " + keyAda})
					if e := errorBody(t, resp); resp.StatusCode != http.StatusBadRequest || e.Code != agentstream.CodeInvalidRequest {
						t.Errorf("GET %s?%s: %d %+v, want 400", path, q, resp.StatusCode, e)
					}
				}
			}
			resp := e.request("GET", "/v1/threads/mine/messages?limit=101", "", map[string]string{"Authorization": "Bearer " + keyAda})
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("messages with limit=101: %d, want 400", resp.StatusCode)
			}
		})
	}
}

// TestThreadLifecycleAPI: PATCH (title replaced, metadata merged, agent
// and context refused), the runs listing and paged messages, then DELETE:
// the thread, its messages and its runs are 404, and a thread made again
// with the same client-chosen id starts empty (the model sees none of the
// old conversation). On both stores.
func TestThreadLifecycleAPI(t *testing.T) {
	t.Parallel()
	for _, b := range storeBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			e := b.start(t, sim.Options{}, withKeys)
			for i := range 3 {
				chat(e, keyAda, "kept", fmt.Sprintf("question %d", i))
			}

			// PATCH.
			var th agentstream.Thread
			call(e, keyAda, "PATCH", "/v1/threads/kept", `{"title": "Named", "metadata": {"a": 1, "b": "x"}}`, http.StatusOK, &th)
			th = agentstream.Thread{} // decoding into th again would merge into its map
			call(e, keyAda, "PATCH", "/v1/threads/kept", `{"metadata": {"a": null, "c": [true]}}`, http.StatusOK, &th)
			if th.ID != "kept" || th.Title != "Named" || !jsonEqual(th.Metadata, map[string]any{"b": "x", "c": []any{true}}) {
				t.Fatalf("patched thread %+v", th)
			}
			call(e, keyAda, "GET", "/v1/threads/kept", "", http.StatusOK, &th)
			if th.Title != "Named" || !th.UpdatedAt.After(th.CreatedAt) {
				t.Fatalf("thread after PATCH %+v", th)
			}
			for _, body := range []string{`{"agent": "tester"}`, `{"context": {"k": 1}}`, `{"title": 3}`, `{"unknown": 1}`, `[]`} {
				call(e, keyAda, "PATCH", "/v1/threads/kept", body, http.StatusBadRequest, nil)
			}
			call(e, keyBob, "PATCH", "/v1/threads/kept", `{"title": "theirs"}`, http.StatusNotFound, nil)
			call(e, keyAda, "PATCH", "/v1/threads/nothing", `{"title": "x"}`, http.StatusNotFound, nil)

			// Runs, newest first, in pages.
			var runs struct {
				Data       []agentstream.Run `json:"data"`
				NextCursor *string           `json:"next_cursor"`
			}
			call(e, keyAda, "GET", "/v1/threads/kept/runs", "", http.StatusOK, &runs)
			if len(runs.Data) != 3 || runs.NextCursor != nil {
				t.Fatalf("runs: %d, next %v; want 3, none", len(runs.Data), runs.NextCursor)
			}
			for i, r := range runs.Data {
				if r.ThreadID != agentstream.ThreadKey("ada", "kept") || r.Status != agentstream.RunCompleted || i > 0 && r.CreatedAt.After(runs.Data[i-1].CreatedAt) {
					t.Fatalf("run %d: %+v", i, r)
				}
			}
			var runIDs []string
			for _, r := range runs.Data {
				runIDs = append(runIDs, r.ID)
			}
			if paged := listAll(e, keyAda, "/v1/threads/kept/runs", 2); !slices.Equal(paged, runIDs) {
				t.Fatalf("runs in pages %v, want %v", paged, runIDs)
			}
			call(e, keyBob, "GET", "/v1/threads/kept/runs", "", http.StatusNotFound, nil)

			// Messages: all of them without limit, the same in pages.
			var all struct {
				Data       []agentstream.Message `json:"data"`
				NextCursor *string               `json:"next_cursor"`
			}
			call(e, keyAda, "GET", "/v1/threads/kept/messages", "", http.StatusOK, &all)
			if len(all.Data) != 6 || all.NextCursor != nil {
				t.Fatalf("messages: %d, next %v; want 6, none", len(all.Data), all.NextCursor)
			}
			var msgIDs []string
			for _, m := range all.Data {
				msgIDs = append(msgIDs, m.ID)
			}
			for _, limit := range []int{1, 4, 6, 100} {
				if paged := listAll(e, keyAda, "/v1/threads/kept/messages", limit); !slices.Equal(paged, msgIDs) {
					t.Fatalf("messages %d at a time %v, want %v", limit, paged, msgIDs)
				}
			}

			// DELETE.
			call(e, keyBob, "DELETE", "/v1/threads/kept", "", http.StatusNotFound, nil)
			resp := e.request("DELETE", "/v1/threads/kept", "", map[string]string{"Authorization": "Bearer " + keyAda})
			if resp.StatusCode != http.StatusNoContent {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("DELETE: %d %s, want 204", resp.StatusCode, b)
			}
			for _, path := range []string{"/v1/threads/kept", "/v1/threads/kept/messages", "/v1/threads/kept/runs", "/v1/runs/" + runIDs[0]} {
				call(e, keyAda, "GET", path, "", http.StatusNotFound, nil)
			}
			call(e, keyAda, "DELETE", "/v1/threads/kept", "", http.StatusNotFound, nil)
			if got := listAll(e, keyAda, "/v1/threads", 10); len(got) != 0 {
				t.Fatalf("threads after delete: %v", got)
			}

			// The same id again: a new thread; the model sees only the new
			// question, through every run (the history cache forgot the old).
			e.sim.Reset()
			chat(e, keyAda, "kept", "fresh start")
			chat(e, keyAda, "kept", "and again")
			call(e, keyAda, "GET", "/v1/threads/kept/messages", "", http.StatusOK, &all)
			if len(all.Data) != 4 || all.Data[0].Content != "fresh start" || all.Data[0].Seq != 1 {
				t.Fatalf("messages of the thread made again: %+v", all.Data)
			}
			for _, req := range e.sim.Requests() {
				for _, m := range req.Messages {
					if strings.HasPrefix(m.Content, "question ") {
						t.Fatalf("the model was sent the deleted thread's message %q", m.Content)
					}
				}
			}
		})
	}
}

// TestDeleteThreadWhileStreaming: DELETE of a thread whose run streams
// cancels the run (its stream ends run.cancelled), waits for it, then
// deletes the thread. On both stores.
func TestDeleteThreadWhileStreaming(t *testing.T) {
	t.Parallel()
	for _, b := range storeBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			e := b.start(t, sim.Options{Tokens: 2000, Pace: 5 * time.Millisecond}, nil)
			th := e.newThread(`{}`)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r, resp := e.openStream(ctx, "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "long"}`, nil)
			runID := resp.Header.Get("X-Run-Id")
			readN(t, r, 5) // streaming
			if status := e.status("DELETE", "/v1/threads/"+th.ID, nil); status != http.StatusNoContent {
				t.Fatalf("DELETE while a run streams: %d, want 204", status)
			}
			evs := readToEnd(t, r)
			if last := evs[len(evs)-1]; last.Type != string(agentstream.EventRunCancelled) {
				t.Fatalf("the stream ended %s, want run.cancelled", last.Type)
			}
			for _, path := range []string{"/v1/threads/" + th.ID, "/v1/threads/" + th.ID + "/messages", "/v1/runs/" + runID} {
				if status := e.status("GET", path, nil); status != http.StatusNotFound {
					t.Fatalf("GET %s after delete: %d, want 404", path, status)
				}
			}
		})
	}
}

// jsonEqual compares a decoded JSON value with want, as JSON.
func jsonEqual(got, want any) bool {
	a, err1 := json.Marshal(got)
	b, err2 := json.Marshal(want)
	return err1 == nil && err2 == nil && string(a) == string(b)
}
