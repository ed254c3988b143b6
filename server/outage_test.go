package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/sim"
)

// postgresBehindProxy is a server on a PostgreSQL schema of its own,
// reached through a proxy the test can cut.
func postgresBehindProxy(t *testing.T, simOpts sim.Options, mod func(*config.Config)) (*env, *testenv.Proxy) {
	t.Helper()
	_, dbURL := testenv.PostgresSchema(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartProxy(t, u.Host)
	u.Host = proxy.Addr()
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	e := start(t, simOpts, func(c *config.Config) {
		c.DatabaseURL = u.String()
		if mod != nil {
			mod(c)
		}
	})
	return e, proxy
}

// startOutageRuns starts n runs, each on a thread of its own, and reads
// each until its answer is complete (message.completed: the model is
// done), then cuts PostgreSQL: every run ends while the database is away.
func startOutageRuns(t *testing.T, e *env, proxy *testenv.Proxy, n int) ([]agentstream.Thread, []*sse.Reader, []string) {
	t.Helper()
	threads := make([]agentstream.Thread, n)
	readers := make([]*sse.Reader, n)
	runIDs := make([]string, n)
	for i := range n {
		threads[i] = e.newThread(`{}`)
		r, resp := e.openStream(context.Background(), "POST", "/v1/threads/"+threads[i].ID+"/runs", `{"input": "hi"}`, nil)
		readers[i], runIDs[i] = r, resp.Header.Get("X-Run-Id")
		readN(t, r, 2)
	}
	// Cut while the runs stream, before their ends.
	proxy.SetDown(true)
	for i, r := range readers {
		for {
			ev, err := r.Next()
			if err != nil {
				t.Fatalf("run %d: %v before its answer was complete", i, err)
			}
			// The answer is complete, and its step too: what is left is
			// the run's end.
			if ev.Type == string(agentstream.EventStepCompleted) {
				break
			}
			if agentstream.EventType(ev.Type).Terminal() {
				t.Fatalf("run %d ended %s before its answer was complete", i, ev.Type)
			}
		}
	}
	return threads, readers, runIDs
}

// TestPostgresDownAcrossRunEnds: PostgreSQL unreachable across the end of
// several runs, back within runs.finalize_timeout: each run's end waits
// for the database, and the runs end completed, stored whole.
func TestPostgresDownAcrossRunEnds(t *testing.T) {
	t.Parallel()
	e, proxy := postgresBehindProxy(t, sim.Options{Tokens: 40, Pace: 25 * time.Millisecond},
		func(c *config.Config) { c.Runs.FinalizeTimeout = time.Minute })
	threads, readers, runIDs := startOutageRuns(t, e, proxy, 3)
	time.Sleep(1500 * time.Millisecond) // the ends wait, retrying
	proxy.SetDown(false)
	for i, r := range readers {
		evs := readToEnd(t, r)
		if len(evs) != 1 || evs[0].Type != string(agentstream.EventRunCompleted) {
			t.Fatalf("run %d after the database came back: %+v, want run.completed", i, evs)
		}
		var run agentstream.Run
		e.json("GET", "/v1/runs/"+runIDs[i], "", http.StatusOK, &run)
		msgs := e.messages(threads[i].ID)
		if run.Status != agentstream.RunCompleted || len(msgs) != 2 || msgs[1].Status != agentstream.MessageComplete {
			t.Fatalf("run %d stored %s with messages %+v", i, run.Status, msgs)
		}
	}
}

// TestPostgresDownPastFinalizeTimeout: PostgreSQL unreachable across the
// end of several runs for longer than runs.finalize_timeout: the streams
// end failed ("could not be saved"); once the database is back the runs
// are saved failed with their answers, without a restart, and the threads
// take new runs (a 409 never outlives the outage).
func TestPostgresDownPastFinalizeTimeout(t *testing.T) {
	t.Parallel()
	e, proxy := postgresBehindProxy(t, sim.Options{Tokens: 40, Pace: 25 * time.Millisecond},
		func(c *config.Config) { c.Runs.FinalizeTimeout = 500 * time.Millisecond })
	threads, readers, runIDs := startOutageRuns(t, e, proxy, 3)
	for i, r := range readers {
		evs := readToEnd(t, r)
		if len(evs) != 1 || evs[0].Type != string(agentstream.EventRunFailed) || !strings.Contains(evs[0].Data, "could not be saved") {
			t.Fatalf("run %d with the database away: %+v, want run.failed (could not be saved)", i, evs)
		}
	}
	time.Sleep(time.Second)
	proxy.SetDown(false)
	for i := range readers {
		deadline := time.Now().Add(30 * time.Second)
		var run agentstream.Run
		for {
			resp := e.do("GET", "/v1/runs/"+runIDs[i], "")
			if resp.StatusCode == http.StatusOK {
				e.json("GET", "/v1/runs/"+runIDs[i], "", http.StatusOK, &run)
				if run.Status.Terminal() {
					break
				}
			}
			_ = resp.Body.Close()
			if time.Now().After(deadline) {
				t.Fatalf("run %d still %s 30s after the database came back", i, run.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
		msgs := e.messages(threads[i].ID)
		if run.Status != agentstream.RunFailed || run.Error == nil || !strings.Contains(run.Error.Message, "could not be saved") ||
			len(msgs) != 2 || msgs[1].Role != agentstream.RoleAssistant || msgs[1].Content == "" {
			t.Fatalf("run %d saved %+v with messages %+v; want failed as streamed, the answer kept", i, run, msgs)
		}
		// The thread takes a new run, at once.
		_, evs := e.stream("POST", "/v1/threads/"+threads[i].ID+"/runs", `{"input": "again"}`)
		if n := checkNative(t, evs); n.end.Status != agentstream.RunCompleted {
			t.Fatalf("a new run on thread %d ended %+v", i, n.end)
		}
	}
}
