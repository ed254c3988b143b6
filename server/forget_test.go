package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/redislog"
	"github.com/agentstream/agentstream/sim"
)

// TestDeletedThreadForgottenEverywhere: two instances sharing PostgreSQL
// and Redis. B runs on the client-chosen thread t1 (and so caches it and
// its history); A deletes t1 and makes it again with another agent and as
// many messages. B's next run on t1 uses the new thread's agent and
// history: B was told of the deletion through Redis and dropped both
// caches.
func TestDeletedThreadForgottenEverywhere(t *testing.T) {
	t.Parallel()
	redisURL := testenv.RedisURL(t)
	_, dbURL := testenv.PostgresSchema(t)
	prefix := testenv.RedisPrefixCleaned(t, redisURL)
	mod := func(c *config.Config) {
		c.DatabaseURL, c.RedisURL, c.EventLog.RedisPrefix = dbURL, redisURL, prefix
	}
	a, b := start(t, sim.Options{}, mod), start(t, sim.Options{}, mod)

	// What every instance hears of deleted threads, heard here too.
	watcher, err := redislog.Open(t.Context(), redisURL, redislog.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = watcher.Close() })
	forgotten := make(chan string, 4)
	watcher.OnThreadForgotten(func(key string) { forgotten <- key })

	chat := func(e *env, body string) {
		t.Helper()
		_, evs := e.stream("POST", "/v1/chat", body)
		if len(evs) == 0 || evs[len(evs)-1].Data != `{"status":"done"}` {
			t.Fatalf("the chat did not end done: %v", evs)
		}
	}
	chat(b, `{"query": "the old question", "agent": "pregnancy-companion", "thread_id": "t1", "baby_name": "Old"}`)
	chat(b, `{"query": "the old follow-up", "thread_id": "t1"}`)

	resp := a.do("DELETE", "/v1/threads/t1", "")
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE on A: %d", resp.StatusCode)
	}
	select {
	case <-forgotten:
	case <-time.After(10 * time.Second):
		t.Fatal("the deletion was not published")
	}
	chat(a, `{"query": "the new question", "agent": "tester", "thread_id": "t1"}`)
	chat(a, `{"query": "the new follow-up", "thread_id": "t1"}`)

	// The new thread has 4 messages, as B's cached history of the old one.
	b.sim.Reset()
	chat(b, `{"query": "the last question", "thread_id": "t1", "topic": "new"}`)
	reqs := b.sim.Requests()
	if len(reqs) == 0 {
		t.Fatal("B's run sent the model nothing")
	}
	var sent []string
	for _, m := range reqs[0].Messages {
		sent = append(sent, m.Role+": "+m.Content)
	}
	all := strings.Join(sent, "\n")
	if !strings.HasPrefix(all, "system: You test things. Topic: new.") {
		t.Errorf("B's run did not run the new thread's agent:\n%s", all)
	}
	if strings.Contains(all, "the old") || !strings.Contains(all, "the new question") || !strings.Contains(all, "the new follow-up") {
		t.Errorf("B's run did not start from the new thread's history:\n%s", all)
	}
}
