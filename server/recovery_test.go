package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/redislog"
	"github.com/agentstream/agentstream/sim"
	"github.com/agentstream/agentstream/sqlite"
)

// TestRestartOnSQLiteWithRedis: a server on a SQLite file with Redis owns
// the file, so the runs a dead process left running there are its to end
// at start, without waiting for their leases: each gets run.interrupted in
// Redis right after the events its log holds (the ids readers of the dead
// process saw), and a reader at that id gets 204.
func TestRestartOnSQLiteWithRedis(t *testing.T) {
	t.Parallel()
	redisURL := testenv.RedisURL(t)
	prefix := testenv.RedisPrefixCleaned(t, redisURL)
	dbPath := t.TempDir() + "/agentstream.db"
	ctx := context.Background()

	// What a process killed mid-run leaves: a running run in the file (with
	// a lease that has not run out), three of its events in Redis.
	st, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	lease := now.Add(time.Hour)
	th := agentstream.Thread{ID: "thr_dead", UserID: "local", Agent: "tester", CreatedAt: now, UpdatedAt: now}
	run := agentstream.Run{ID: agentstream.NewID("run_"), ThreadID: th.ID, UserID: "local", Agent: "tester",
		Status: agentstream.RunRunning, StartedAt: &now, CreatedAt: now, Owner: "dead-instance", LeaseUntil: &lease}
	in := agentstream.Message{ID: "msg_q", Role: agentstream.RoleUser, Content: "the question", Status: agentstream.MessageComplete, CreatedAt: now}
	if err := st.CreateThread(ctx, th); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRun(ctx, run, in); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	dead, err := redislog.Open(ctx, redisURL, redislog.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dead.Append(ctx, run.ID,
		agentstream.NewEvent(agentstream.EventRunCreated, agentstream.RunCreatedData{RunID: run.ID, ThreadID: th.ID, Agent: "tester", Status: agentstream.RunRunning}),
		agentstream.NewEvent(agentstream.EventRunStarted, agentstream.RunStartedData{RunID: run.ID}),
		agentstream.NewDeltaEvent("msg_a", "half"),
	); err != nil {
		t.Fatal(err)
	}
	_ = dead.Close()

	e := start(t, sim.Options{Tokens: 3}, func(c *config.Config) {
		c.DatabaseURL, c.RedisURL, c.EventLog.RedisPrefix = dbPath, redisURL, prefix
	})
	var got agentstream.Run
	e.json("GET", "/v1/runs/"+run.ID, "", http.StatusOK, &got)
	if got.Status != agentstream.RunInterrupted {
		t.Fatalf("the dead process's run after the start: %s, want interrupted at once", got.Status)
	}
	r, _ := e.openStream(ctx, "GET", "/v1/runs/"+run.ID+"/events", "", map[string]string{"Last-Event-ID": "3"})
	evs := readToEnd(t, r)
	if len(evs) != 1 || evs[0].Type != string(agentstream.EventRunInterrupted) || evs[0].ID != "4" {
		t.Fatalf("a reader of the dead process at id 3: %+v, want run.interrupted at id 4", evs)
	}
	if status := e.status("GET", "/v1/runs/"+run.ID+"/events", map[string]string{"Last-Event-ID": "4"}); status != http.StatusNoContent {
		t.Fatalf("a reader at the end: %d, want 204", status)
	}
	_, all := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "again"}`)
	if n := checkNative(t, all); n.end.Status != agentstream.RunCompleted {
		t.Fatalf("a new run on the thread: %+v", n.end)
	}
}
