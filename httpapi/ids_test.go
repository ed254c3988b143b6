package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// TestLegacyClientIDs: threads whose client-chosen id was stored as their
// key, before ids belonged to their users, keep working for their owner
// (even with an id a new thread may not have), and no longer block
// anyone else.
func TestLegacyClientIDs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{Keys: map[string]string{"ka": "alice", "kb": "bob"}})
	now := time.Now().UTC()
	for _, id := range []string{"hana-1", "hana 1"} {
		if err := f.store.CreateThread(t.Context(), agentstream.Thread{ID: id, UserID: "alice", Agent: "assistant", CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	do := func(key, method, path, body string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body) // a run's stream: read to its end
		return resp.StatusCode, resp.Header, string(b)
	}
	questions := func(key, id string) []string {
		t.Helper()
		code, _, body := do(key, "GET", "/v1/threads/"+strings.ReplaceAll(id, " ", "%20")+"/messages", "")
		var out struct{ Data []agentstream.Message }
		if code != http.StatusOK || json.Unmarshal([]byte(body), &out) != nil {
			t.Fatalf("messages of %q: %d %s", id, code, body)
		}
		var qs []string
		for _, m := range out.Data {
			qs = append(qs, m.Content)
		}
		return qs
	}

	for _, tc := range []struct{ key, id, q string }{
		{"ka", "hana-1", "alice on her old thread"},
		{"ka", "hana 1", "alice on her old spaced thread"},
		{"kb", "hana-1", "bob on his own"},
	} {
		b, _ := json.Marshal(map[string]string{"query": tc.q, "thread_id": tc.id})
		code, h, body := do(tc.key, "POST", "/v1/chat", string(b))
		// idleModel fails every run: the question is stored all the same.
		if code != http.StatusOK || h.Get("X-Thread-Id") != tc.id || !strings.Contains(body, `"thread_id":"`+tc.id+`"`) {
			t.Fatalf("chat %s: %d, X-Thread-Id %q: %s", b, code, h.Get("X-Thread-Id"), body)
		}
	}
	if got := questions("ka", "hana-1"); len(got) != 1 || got[0] != "alice on her old thread" {
		t.Fatalf("alice's old hana-1: %q", got)
	}
	if got := questions("ka", "hana 1"); len(got) != 1 || got[0] != "alice on her old spaced thread" {
		t.Fatalf("alice's old \"hana 1\": %q", got)
	}
	if got := questions("kb", "hana-1"); len(got) != 1 || got[0] != "bob on his own" {
		t.Fatalf("bob's hana-1: %q", got)
	}
	code, _, body := do("ka", "GET", "/v1/threads/hana-1", "")
	if code != http.StatusOK || !strings.Contains(body, `"id":"hana-1"`) || !strings.Contains(body, `"user_id":"alice"`) {
		t.Fatalf("alice's GET hana-1: %d %s", code, body)
	}
	// Bob may not make a thread of an id outside the rules, even one
	// alice has from before.
	code, _, body = do("kb", "POST", "/v1/chat", `{"query": "hi", "thread_id": "hana 1"}`)
	if code != http.StatusBadRequest || !strings.Contains(body, `thread_id\" must be`) {
		t.Fatalf("bob's chat on \"hana 1\": %d %s", code, body)
	}
	if _, err := f.store.GetThread(t.Context(), "bob", agentstream.ThreadKey("bob", "hana 1")); err == nil {
		t.Fatal("the refused chat created a thread")
	}
}
